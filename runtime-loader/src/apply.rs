//! `apply`: put a bundle in force on this node, atomically and
//! incrementally.
//!
//! 1. **Check** (no writes): read and check the bundle's manifest (format,
//!    layouts, capacities) and the desired state as a whole
//!    ([`crate::validate`]); take the appliers' lock; check the pinned maps
//!    that exist; find each local endpoint's interface.
//! 2. **Plan**: the manifest of the bundle the inactive generation holds
//!    is kept ([`crate::store`]); compared with the new manifest, it says
//!    which pieces of which files changed, and only those are read and
//!    diffed ([`crate::incremental`]): no map reads, and no reading of
//!    what did not change. Where the record is not trusted or `--reconcile`
//!    is given, the whole bundle is read and diffed against the live maps.
//!    Every piece read is checked against its digest and parsed.
//! 3. **Verify**: specialize and load through the verifier every program
//!    this apply will attach. `--dry-run` loads them into a scratch root
//!    that it removes, and stops here: it refuses what `apply` refuses
//!    before its first write.
//! 4. **Sync** the inactive generation (no packet reads it), after marking
//!    it unknown in the record, and keep the pieces read.
//! 5. **Prepare programs**: an endpoint whose new policy needs a lookup its
//!    attached program skips gets, before the switch, a program with the
//!    lookups of both (settings only ever enable lookups, so it judges
//!    either generation exactly). An endpoint in a new place (new, or on
//!    another interface or stem) gets its links here too, with every
//!    lookup on (exact in any generation), and its old links go: so
//!    every link is created and pinned before the switch. Where the active
//!    generation does not list the endpoint's id, it drops the endpoint's
//!    new connections whatever the program looks up, so the endpoint gets
//!    its exact programs here and nothing after the switch (an apply from
//!    scratch loads and attaches each stub once). Links are tc filters or
//!    tcx links ([`ApplyOptions::attach`]; an endpoint keeps the one it was
//!    attached with). Refused, the links of new endpoints are detached
//!    again.
//! 6. **Switch**: one write of the `state` slot flips every program of the
//!    node to the new generation at once. This is the only commit point:
//!    killed before it, the old policy is in force; after it, the new one.
//! 7. **Finish**: programs with exactly the new settings replace the
//!    prepared ones (`BPF_LINK_UPDATE` of existing links), departed
//!    endpoints are detached, and the record is written. Nothing here
//!    fails for a reason known before the switch; where the kernel refuses
//!    anyway, every other step is still done, what ran before keeps
//!    running (a prepared program, which enforces the new generation
//!    exactly), the record lists it (`status` shows it) and the apply ends
//!    in [`LoaderError::Unfinished`] (exit code 3): the bundle is in
//!    force, and applying again finishes.
//!
//! The old generation is left as it was until the next apply, which takes
//! the lock and syncs it only once [`record::SWITCH_GRACE`] has passed since
//! this apply's switch (recorded), so that packets that read the slot
//! before the switch are done (a packet reads the slot once, and runs for
//! microseconds).
//!
//! The phases are the methods of one run ([`apply_desired`]), each in a
//! file of its own, over a [`DesiredState`] that a bundle directory or
//! memory provides. They reach the kernel only through [`Kernel`], so unit
//! tests drive them through the in-memory kernel and fail any call.

use crate::desired::DesiredState;
use crate::error::LoaderError;
use crate::generation_maps::ENDPOINTS;
use crate::incremental;
use crate::kernel::aya::AyaKernel;
use crate::kernel::{Attachment, Kernel, Mechanism};
use crate::lock::{lock, LockWait};
use crate::manifest::{BundleEndpoint, Manifest, Templates};
use crate::maps::{Generation, MapOps, SyncPlan};
use crate::paths::Paths;
use crate::record::{self, Record, RecordedEndpoint};
use crate::route;
use crate::store;
use crate::validate;
use policyc_ebpf::abi::StateValue;
use policyc_ebpf::config::EndpointConfig;
use policyc_ebpf::Template;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

/// Settings of an apply.
#[derive(Clone, Debug, Default)]
pub struct ApplyOptions {
    /// Explicit host-side interfaces by endpoint (`ns/pod`), before routes.
    pub interfaces: BTreeMap<String, String>,
    /// Read the live maps rather than trust the record.
    pub reconcile: bool,
    /// Check, plan and verify only: write nothing, load programs only into
    /// a scratch root.
    pub dry_run: bool,
    /// How long to wait for another applier.
    pub lock: LockWait,
    /// How endpoints attached afresh are attached (those attached before
    /// keep theirs).
    pub attach: Mechanism,
    /// What this process wrote into each generation, for a caller that
    /// applies again and again (the agent): plans diff against it rather
    /// than read the live maps, while the record says it is still so.
    pub known: Option<KnownGenerations>,
}

/// What happens to an endpoint's programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum ProgramStep {
    /// Before the switch, programs with the lookups of old and new policy.
    Prepare,
    /// After the switch, programs with exactly the new settings.
    Finish,
}

/// What an apply did (or, with `--dry-run`, would do).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ApplyReport {
    /// Hash of the bundle.
    pub bundle_hash: String,
    /// The bundle was already in force: nothing was written.
    pub unchanged: bool,
    /// Nothing was written: a plan only.
    pub dry_run: bool,
    /// Generation active afterwards.
    pub generation: u8,
    /// Where the inactive generation's content came from: `record` or
    /// `live maps`.
    pub diffed_against: String,
    /// Map operations per map.
    pub maps: BTreeMap<String, MapOps>,
    /// `(endpoint, program, step, how)` for each program put in place
    /// (`how` is `None` in a dry run).
    pub programs: Vec<(String, &'static str, ProgramStep, Option<Attachment>)>,
    /// Endpoints whose programs were detached.
    pub detached: Vec<String>,
    /// Endpoints without addresses (host network, workloads): nothing to
    /// attach.
    pub skipped: Vec<String>,
    /// Milliseconds per phase, in order.
    pub phases: Vec<(String, f64)>,
}

struct Phases {
    start: Instant,
    done: Vec<(String, f64)>,
}

impl Phases {
    fn mark(&mut self, name: &str) {
        let now = Instant::now();
        self.done.push((name.to_string(), (now - self.start).as_secs_f64() * 1000.0));
        self.start = now;
    }
}

/// Applies the bundle in `dir` (a bundle, or a directory holding one).
pub fn apply(paths: &Paths, dir: &Path, options: &ApplyOptions) -> Result<ApplyReport, LoaderError> {
    let started = Instant::now();
    let desired = DesiredState::from_directory(dir)?;
    apply_desired(&AyaKernel::new(paths), paths, &desired, options, started)
}

/// Puts `desired` in force through `kernel`, in the phases the module
/// describes; phase times count from `started`.
pub fn apply_desired<K: Kernel>(
    kernel: &K,
    paths: &Paths,
    desired: &DesiredState,
    options: &ApplyOptions,
    started: Instant,
) -> Result<ApplyReport, LoaderError> {
    let mut run = Run { kernel, paths, desired, options, phases: Phases { start: started, done: Vec::new() } };
    validate::desired(desired)?;
    let _lock = lock(paths, &options.lock)?;
    let checked = match run.check()? {
        Checked::InForce(report) => return Ok(report),
        Checked::Go(checked) => checked,
    };
    let (mut planned, mut report) = run.plan(&checked)?;
    if options.dry_run {
        run.verify_dry(&checked)?;
        return Ok(run.dry_run(checked, planned, report));
    }
    let loaded = run.verify(&checked)?;
    let record = run.sync(&checked, &mut planned)?;
    let loaded: Vec<(&EndpointPlan, LoadedPrograms<K::Program>)> = checked.plans.iter().zip(loaded).collect();
    let before = record.clone();
    let record = run.prepare(record, &loaded, &mut report)?;
    let mut unfinished = Vec::new();
    let record = run.switch(&checked, &before, record, &loaded, &mut unfinished)?;
    run.finish(checked.departed, record, &loaded, &mut report, unfinished)?;
    report.maps = planned.plan.ops.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    report.phases = run.phases.done;
    Ok(report)
}

/// One apply's inputs, and the time of its phases.
struct Run<'a, K> {
    kernel: &'a K,
    paths: &'a Paths,
    desired: &'a DesiredState,
    options: &'a ApplyOptions,
    phases: Phases,
}

mod check;
mod known;
mod plan;
#[cfg(test)]
mod tests;
mod verify;
mod write;

use check::{Checked, Ready};
pub use known::KnownGenerations;
use plan::{listed_ids, plan_programs, EndpointPlan, Planned};
use verify::LoadedPrograms;
