//! The library compile API: manifests in, a bundle per node out.
//!
//! [`compile`] does it in one call, for a caller that only wants the
//! result (a node agent, a test). It runs three steps that a caller who
//! shows progress may also run one by one, as `policyc compile` does to
//! print warnings before the slow part starts:
//!
//! 1. [`check`] reads the inputs (paths, or texts already in memory),
//!    checks and lowers them and runs the lint rules;
//! 2. [`Checked::build`] resolves identities (keeping the previous bundle's
//!    numbers) and emits every node's bundle, into memory or into a
//!    staging directory next to the output;
//! 3. [`Checked::commit`] moves staged bundles into place, so that the
//!    previous bundles are replaced only once every node has succeeded.
//!
//! Nothing here prints: results and failures ([`CompileError`]) are values
//! the caller renders.

mod emit_diagnostic;
mod error;
pub mod phases;
mod source_hash;
mod staging;
mod stats;
pub mod tiers;

pub use emit_diagnostic::emit_diagnostic;
pub use error::{CompileError, EmitFailure, OutputError, PreviousError, RejectedError};
pub use source_hash::source_hash;
pub use stats::NodeStats;

use crate::diag::Diagnostic;
use crate::emit::maps::read_identity_table;
use crate::emit::write::Written;
use crate::emit::{emit_each, Bundle, BundleOptions, DEFAULT_POLICY_MAP_CAPACITY};
use crate::front::{source::read_paths, Input};
use crate::lint::LintOptions;
use crate::pipeline::{load_input, Loaded};
use phases::Phases;
use policyc_bundle::digest::Digests;
use policyc_ir::resolve::{resolve_with_previous, Resolved};
use staging::Staging;
use std::path::PathBuf;

/// What a compile reads.
#[derive(Debug)]
pub enum Inputs {
    /// Files or directories of YAML/JSON manifests (`-` for stdin).
    Paths(Vec<PathBuf>),
    /// Sources already read (see [`Input::add_source`]).
    Read(Input),
}

/// Where a compile's bundles go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Nowhere: check and count only (file digests are placeholders of the
    /// right length, so the byte counts are those of a real bundle).
    DryRun,
    /// Into [`Built::bundles`].
    Memory,
    /// Into `DIR/<node>/`, each replacing a previous bundle there.
    Directory(PathBuf),
}

/// Settings of a compile.
#[derive(Clone, Debug)]
pub struct CompileOptions {
    /// Lint rule settings.
    pub lint: LintOptions,
    /// Compile only this node's bundle.
    pub node: Option<String>,
    /// A previous bundle directory (`OUT/<node>`): its identity numbers are
    /// kept for label sets still present.
    pub previous: Option<PathBuf>,
    /// Capacity of each endpoint's policy map.
    pub policy_map_capacity: usize,
    /// Where the bundles go.
    pub output: Output,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            lint: LintOptions::default(),
            node: None,
            previous: None,
            policy_map_capacity: DEFAULT_POLICY_MAP_CAPACITY,
            output: Output::DryRun,
        }
    }
}

/// Inputs read, checked and linted.
#[derive(Debug)]
pub struct Checked {
    /// The inputs, their model and every diagnostic.
    pub loaded: Loaded,
    /// Time spent per step so far.
    pub timings: Phases,
}

/// The bundles of a compile, built but (for [`Output::Directory`]) not yet
/// in place.
#[derive(Debug)]
pub struct Built {
    /// Identities and policy maps.
    pub resolved: Resolved,
    /// What each node's bundle holds, in node order.
    pub nodes: Vec<NodeStats>,
    /// The bundles, in node order, with [`Output::Memory`]; empty otherwise.
    pub bundles: Vec<Bundle>,
    staging: Option<Staging>,
}

impl Built {
    /// Whether bundles wait in a staging directory for [`Checked::commit`].
    pub fn is_staged(&self) -> bool {
        self.staging.is_some()
    }
}

/// A whole compile's result.
#[derive(Debug)]
pub struct CompileReport {
    /// The inputs, their model, diagnostics (warnings) and timings.
    pub checked: Checked,
    /// Identities, policy maps and bundles.
    pub built: Built,
    /// The bundle directories written, with [`Output::Directory`].
    pub written: Vec<PathBuf>,
}

/// Compiles `inputs`: [`check`], [`Checked::build`], [`Checked::commit`].
pub fn compile(inputs: Inputs, options: &CompileOptions) -> Result<CompileReport, CompileError> {
    let mut checked = check(inputs, &options.lint)?;
    let mut built = checked.build(options)?;
    let written = checked.commit(&mut built)?;
    Ok(CompileReport { checked, built, written })
}

/// Checks `lint`, then reads, checks, lowers and lints `inputs`. The
/// diagnostics may hold errors: [`Checked::build`] refuses those.
pub fn check(inputs: Inputs, lint: &LintOptions) -> Result<Checked, CompileError> {
    lint.check().map_err(CompileError::Options)?;
    let mut timings = Phases::start();
    let input = match inputs {
        Inputs::Paths(paths) => read_paths(&paths),
        Inputs::Read(input) => input,
    };
    let mut loaded = load_input(input);
    timings.mark("read");
    crate::lint::run(&mut loaded, lint);
    timings.mark("lint");
    Ok(Checked { loaded, timings })
}

impl Checked {
    /// Resolves and emits the bundles of the checked inputs, unless the
    /// diagnostics fail them under `options.lint`.
    pub fn build(&mut self, options: &CompileOptions) -> Result<Built, CompileError> {
        let loaded = &self.loaded;
        let rejected = |unenforced: Vec<Diagnostic>| {
            let mut diagnostics: Vec<Diagnostic> =
                loaded.diagnostics.iter().filter(|d| d.is_error() || options.lint.deny_warnings).cloned().collect();
            diagnostics.extend(unenforced);
            diagnostics.sort();
            CompileError::Rejected(RejectedError { diagnostics })
        };
        if crate::lint::fails(loaded, &options.lint) {
            return Err(rejected(Vec::new()));
        }
        let previous =
            options.previous.as_ref().map(|dir| read_previous(&dir.join("maps/identities.txt"))).transpose()?;
        let previous_service_ids = options.previous.as_deref().map(read_previous_service_ids).transpose()?.flatten();
        let cluster = &loaded.lowered.cluster;
        let resolved = resolve_with_previous(cluster, previous.as_ref());
        self.timings.mark("resolve");
        let unenforced = tiers::unenforced(loaded, &resolved);
        if !unenforced.is_empty() {
            return Err(rejected(unenforced));
        }
        let only = options.node.as_deref();
        let staging = match &options.output {
            Output::Directory(out) => {
                Some(Staging::new(out, &crate::emit::node_names(cluster), only).map_err(CompileError::Output)?)
            }
            Output::DryRun | Output::Memory => None,
        };
        // Without a bundle to keep, only the lengths of the digests matter
        // (to the bytes the summary reports), not their values.
        let digests = if options.output == Output::DryRun { Digests::Placeholder } else { Digests::Sha256 };
        let bundle_options = BundleOptions {
            policy_map_capacity: options.policy_map_capacity,
            source_hash: source_hash(loaded),
            digests,
            previous_service_ids,
        };
        let keep = options.output == Output::Memory;
        // Bundles are written to the staging directory as they are built,
        // so memory holds a few nodes' files, not the cluster's.
        let written = Written::default();
        let emitted = emit_each(cluster, &resolved, only, &bundle_options, |bundle| {
            let stats = NodeStats::of(&resolved, &bundle);
            if let Some(staging) = &staging {
                bundle.write_shared(&staging.node_dir(&bundle.node), &written)?;
            }
            Ok((stats, keep.then_some(bundle)))
        });
        self.timings.mark(if staging.is_some() { "emit and write" } else { "emit" });
        match emitted {
            Ok(emitted) => {
                let (nodes, bundles): (Vec<NodeStats>, Vec<Option<Bundle>>) = emitted.into_iter().unzip();
                Ok(Built { resolved, nodes, bundles: bundles.into_iter().flatten().collect(), staging })
            }
            Err(error) => {
                if let Some(staging) = &staging {
                    staging.discard();
                }
                let diagnostic = emit_diagnostic(loaded, &resolved, &error);
                Err(CompileError::Emit(Box::new(EmitFailure { error, diagnostic })))
            }
        }
    }

    /// Moves `built`'s staged bundles into place and returns their
    /// directories (none when nothing was staged).
    pub fn commit(&mut self, built: &mut Built) -> Result<Vec<PathBuf>, CompileError> {
        let Some(staging) = built.staging.take() else {
            return Ok(Vec::new());
        };
        let dirs = staging.commit(built.nodes.iter().map(|s| s.node.as_str())).map_err(CompileError::Output)?;
        self.timings.mark("move into place");
        Ok(dirs)
    }
}

/// Reads the backend and reverse-NAT ids of a previous bundle; `None` when
/// it has no service tables.
fn read_previous_service_ids(
    dir: &std::path::Path,
) -> Result<Option<crate::emit::services::PreviousIds>, CompileError> {
    let (backends, rev_nat) = (dir.join(policyc_bundle::BACKENDS_FILE), dir.join(policyc_bundle::REVNAT_FILE));
    if !backends.exists() && !rev_nat.exists() {
        return Ok(None);
    }
    let read = |path: &std::path::Path| {
        std::fs::read_to_string(path)
            .map_err(|e| CompileError::Previous(PreviousError { path: path.to_path_buf(), message: e.to_string() }))
    };
    let (b, r) = (read(&backends)?, read(&rev_nat)?);
    crate::emit::services::PreviousIds::parse(&b, &r)
        .map(Some)
        .map_err(|message| CompileError::Previous(PreviousError { path: dir.to_path_buf(), message }))
}

/// Reads the identity table of a previous bundle.
fn read_previous(path: &std::path::Path) -> Result<policyc_ir::identity::IdentityTable, CompileError> {
    std::fs::read_to_string(path)
        .map_err(|e| e.to_string())
        .and_then(|t| read_identity_table(&t))
        .map_err(|message| CompileError::Previous(PreviousError { path: path.to_path_buf(), message }))
}
