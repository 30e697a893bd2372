//! `policyc compile`: check, resolve and emit a bundle per node.

use super::phases::Phases;
use super::{load_and_lint, report, CompileArgs, EXIT_ERRORS, EXIT_OK, EXIT_USAGE};
use crate::diag::render::{render, Format};
use crate::diag::{codes, Diagnostic, Location};
use crate::emit::maps::{endpoint_stem, read_identity_table};
use crate::emit::write::Written;
use crate::emit::{emit_each, Bundle, BundleOptions, CapacityError, EmitError};
use crate::pipeline::Loaded;
use policyc_bundle::digest::Digests;
use policyc_ir::resolve::{resolve_with_previous, Resolved};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::mem::ManuallyDrop;
use std::path::{Path, PathBuf};

/// Runs `compile`.
pub fn run(args: &CompileArgs) -> u8 {
    let mut phases = Phases::start();
    // The model is not freed: `policyc compile` exits right after, and
    // freeing a large cluster's millions of small allocations one by one
    // took 6% of its compile time; the system takes the memory back at once.
    let loaded = ManuallyDrop::new(match load_and_lint(&args.paths, &args.lint, &mut phases) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    });
    // Human diagnostics are shown as soon as they are known; a machine
    // format (JSON, SARIF, GitHub) is one document holding every
    // diagnostic, an emission's too, printed once the compile is over.
    let machine = args.format != Format::Human;
    if !machine {
        report(&loaded, args.format);
    }
    if crate::lint::fails(&loaded, &args.lint) {
        if machine {
            report(&loaded, args.format);
        }
        return EXIT_ERRORS;
    }
    let previous = match &args.previous {
        Some(dir) => {
            let path = dir.join("maps/identities.txt");
            match std::fs::read_to_string(&path).map_err(|e| e.to_string()).and_then(|t| read_identity_table(&t)) {
                Ok(table) => Some(table),
                Err(e) => {
                    eprintln!("error: cannot read the previous identities `{}`: {e}", path.display());
                    return EXIT_USAGE;
                }
            }
        }
        None => None,
    };
    let cluster = &loaded.lowered.cluster;
    let resolved = ManuallyDrop::new(resolve_with_previous(cluster, previous.as_ref()));
    phases.mark("resolve");
    let staging = match &args.out {
        Some(out) if !args.dry_run => {
            match Staging::new(out, &crate::emit::node_names(cluster), args.node.as_deref()) {
                Ok(staging) => Some(staging),
                Err(e) => {
                    eprintln!("error: {e}");
                    return EXIT_ERRORS;
                }
            }
        }
        _ => None,
    };
    // Without a bundle to write, only the lengths of the digests matter (to
    // the bytes the summary reports), not their values.
    let digests = if staging.is_some() { Digests::Sha256 } else { Digests::Placeholder };
    let options =
        BundleOptions { policy_map_capacity: args.policy_map_capacity, source_hash: source_hash(&loaded), digests };
    // Bundles are written to a staging directory as they are built, so
    // memory holds a few nodes' files, not the cluster's; they replace the
    // previous bundles only once every node has succeeded.
    let written = Written::default();
    let emitted = emit_each(cluster, &resolved, args.node.as_deref(), &options, |bundle| {
        let stats = NodeStats::of(&resolved, &bundle);
        if let Some(staging) = &staging {
            bundle.write_shared(&staging.dir.join(&bundle.node), &written)?;
        }
        Ok(stats)
    });
    phases.mark(if staging.is_some() { "emit and write" } else { "emit" });
    let stats = match emitted {
        Ok(stats) => stats,
        Err(e) => {
            if let Some(staging) = &staging {
                staging.discard();
            }
            return report_emit_error(&loaded, &resolved, e, args.format);
        }
    };
    if machine {
        report(&loaded, args.format);
    }
    eprint!("{}", summary(&loaded, &resolved, &stats));
    let Some(staging) = staging else {
        eprintln!("dry run: nothing written");
        if args.timings {
            eprint!("{}", phases.line());
        }
        return EXIT_OK;
    };
    match staging.commit(stats.iter().map(|s| s.node.as_str())) {
        Ok(dirs) => {
            phases.mark("move into place");
            for dir in dirs {
                eprintln!("wrote {}", dir.display());
            }
            if args.timings {
                eprint!("{}", phases.line());
            }
            EXIT_OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_ERRORS
        }
    }
}

/// Reports why no bundle was written (in a machine format, together with
/// every other diagnostic); the exit code.
fn report_emit_error(loaded: &Loaded, resolved: &Resolved, e: EmitError, format: Format) -> u8 {
    let d = match e {
        EmitError::Capacity(c) => capacity_diagnostic(loaded, resolved, &c),
        EmitError::UnknownNode(node) => {
            let known = crate::emit::node_names(&loaded.lowered.cluster);
            let hint = crate::diag::did_you_mean(&node, known.iter().map(String::as_str))
                .map(|s| format!("did you mean `{s}`?"))
                .unwrap_or_else(|| format!("nodes in the input: {}", known.join(", ")));
            Diagnostic::new(codes::UNKNOWN_NODE, Location::default(), format!("no node `{node}` in the input"))
                .with_help(hint)
        }
        e => {
            if format != Format::Human {
                report(loaded, format);
            }
            eprintln!("error: {e}");
            return EXIT_ERRORS;
        }
    };
    match format {
        Format::Human => eprint!("{}", render(&[d], format, &loaded.input.sources)),
        _ => {
            let mut all = loaded.diagnostics.clone();
            all.push(d);
            print!("{}", render(&all, format, &loaded.input.sources));
        }
    }
    EXIT_ERRORS
}

/// A hidden directory next to the bundles, where a compile writes its
/// bundles before moving them into place.
struct Staging {
    out: PathBuf,
    dir: PathBuf,
}

impl Staging {
    /// Checks that every bundle directory `out/<node>` that will be written
    /// is absent, empty or a previous bundle (which [`Bundle::write_to`]
    /// would replace), and creates the staging directory.
    fn new(out: &Path, nodes: &[String], only: Option<&str>) -> Result<Staging, String> {
        for node in nodes.iter().filter(|n| only.is_none_or(|o| o == n.as_str())) {
            let dir = out.join(node);
            let is_bundle = dir.join("manifest.json").is_file();
            let is_empty = !dir.exists() || std::fs::read_dir(&dir).map(|mut d| d.next().is_none()).unwrap_or(false);
            if !is_bundle && !is_empty {
                return Err(format!("`{}` exists and is not a bundle; refusing to overwrite it", dir.display()));
            }
        }
        let dir = out.join(format!(".policyc-staging-{}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| format!("cannot remove `{}`: {e}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
        Ok(Staging { out: out.to_path_buf(), dir })
    }

    /// Moves the staged bundles of `nodes` into place, replacing previous
    /// bundles, and returns their directories.
    fn commit<'a>(self, nodes: impl Iterator<Item = &'a str>) -> Result<Vec<PathBuf>, String> {
        let mut written = Vec::new();
        for node in nodes {
            let target = self.out.join(node);
            if target.exists() {
                std::fs::remove_dir_all(&target).map_err(|e| format!("cannot remove `{}`: {e}", target.display()))?;
            }
            std::fs::rename(self.dir.join(node), &target)
                .map_err(|e| format!("cannot move the bundle into `{}`: {e}", target.display()))?;
            written.push(target);
        }
        self.discard();
        Ok(written)
    }

    /// Removes the staging directory (after a failure, with what it holds).
    fn discard(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What one node's bundle holds, for the summary.
struct NodeStats {
    node: String,
    endpoints: usize,
    entries: usize,
    largest: usize,
    programs: usize,
    files: usize,
    bytes: usize,
}

impl NodeStats {
    fn of(resolved: &Resolved, bundle: &Bundle) -> NodeStats {
        let local: Vec<_> =
            resolved.endpoints.iter().filter(|e| e.node.as_deref() == Some(bundle.node.as_str())).collect();
        NodeStats {
            node: bundle.node.clone(),
            endpoints: local.len(),
            entries: local.iter().map(|e| e.policy.entries.len()).sum(),
            largest: local.iter().map(|e| e.policy.entries.len()).max().unwrap_or(0),
            programs: bundle.programs.len(),
            files: bundle.files.len() + bundle.programs.len(),
            bytes: bundle.files.values().map(|text| text.len()).sum::<usize>()
                + bundle.programs.values().map(|bytes| bytes.len()).sum::<usize>(),
        }
    }
}

/// SHA-256 of the input texts in source order (files sorted by path).
/// Paths are left out so that the same manifests compiled from another
/// directory give the same bundle.
pub fn source_hash(loaded: &Loaded) -> String {
    let mut h = Sha256::new();
    for text in loaded.input.sources.values() {
        h.update((text.len() as u64).to_le_bytes());
        h.update(text.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// What a compile produced, per node.
fn summary(loaded: &Loaded, resolved: &Resolved, stats: &[NodeStats]) -> String {
    let c = &loaded.lowered.cluster;
    let mut out = format!(
        "{} endpoint(s), {} policy spec(s), {} identities ({} cluster-local, {} CIDR), {} ipcache entries\n",
        c.endpoints.len(),
        c.policies.len(),
        resolved.identities.len(),
        resolved.table.len(),
        resolved.cidr_identities.len(),
        resolved.ipcache.len()
    );
    for s in stats {
        out.push_str(&format!(
            "node {}: {} local endpoint(s), {} policy entries (largest map {}), {} program(s), {} file(s), {} bytes\n",
            s.node, s.endpoints, s.entries, s.largest, s.programs, s.files, s.bytes
        ));
    }
    out
}

/// A capacity overflow as a diagnostic that names the endpoint and the
/// policies whose rules fill its map.
fn capacity_diagnostic(loaded: &Loaded, resolved: &Resolved, c: &CapacityError) -> Diagnostic {
    let c_map = c.map.strip_prefix("policy/").unwrap_or(&c.map);
    let endpoint = resolved.endpoints.iter().find(|e| {
        e.node.as_deref() == Some(c.node.as_str()) && endpoint_stem(&loaded.lowered.cluster, e.index) == c_map
    });
    let mut per_policy: BTreeMap<usize, usize> = BTreeMap::new();
    let mut location = Location::default();
    if let Some(e) = endpoint {
        for entry in &e.policy.entries {
            *per_policy.entry(entry.rule.policy).or_default() += 1;
        }
        location = loaded.lowered.endpoint_locations.get(e.index).cloned().unwrap_or_default();
    }
    let mut ranked: Vec<(usize, usize)> = per_policy.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let cluster = &loaded.lowered.cluster;
    let names: Vec<String> =
        ranked.iter().take(5).map(|(p, n)| format!("{} ({n} entries)", cluster.policies[*p].origin)).collect();
    let who = endpoint.map(|e| e.name.clone()).unwrap_or_else(|| c.map.clone());
    Diagnostic::new(
        codes::POLICY_MAP_CAPACITY,
        location,
        format!("the policy map of `{who}` on node `{}` needs {} entries but holds {}", c.node, c.entries, c.capacity),
    )
    .with_help(format!(
        "the largest contributors: {}; narrow their peers or port ranges, or raise --policy-map-capacity",
        if names.is_empty() { "unknown".to_string() } else { names.join(", ") }
    ))
}
