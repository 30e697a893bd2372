//! `apply`: put a bundle in force on this node, atomically and
//! incrementally.
//!
//! 1. **Check** (no writes): read and check the bundle's manifest (format,
//!    layouts, capacities); take the appliers' lock; check the pinned maps
//!    that exist; find each local endpoint's interface.
//! 2. **Plan**: the manifest of the bundle the inactive generation holds
//!    is kept ([`crate::store`]); compared with the new manifest, it says
//!    which pieces of which files changed, and only those are read and
//!    diffed ([`crate::incremental`]): no map reads, and no reading of
//!    what did not change. Where the record is not trusted or `--reconcile`
//!    is given, the whole bundle is read and diffed against the live maps.
//!    Every piece read is checked against its digest and parsed.
//!    `--dry-run` stops here.
//! 3. **Verify**: specialize and load through the verifier every program
//!    this apply will attach.
//! 4. **Sync** the inactive generation (no packet reads it), after marking
//!    it unknown in the record, and keep the pieces read.
//! 5. **Prepare programs**: an endpoint whose new policy needs a lookup its
//!    attached program skips gets, before the switch, a program with the
//!    lookups of both (settings only ever enable lookups, so it judges
//!    either generation exactly).
//! 6. **Switch**: one write of the `state` slot flips every program of the
//!    node to the new generation at once. This is the only commit point:
//!    killed before it, the old policy is in force; after it, the new one.
//! 7. **Finish**: programs with exactly the new settings replace the
//!    prepared ones (`BPF_LINK_UPDATE`), new endpoints are attached,
//!    departed ones detached, and the record is written.
//!
//! The old generation is left as it was until the next apply, which takes
//! the lock and syncs it only once [`record::SWITCH_GRACE`] has passed since
//! this apply's switch (recorded), so that packets that read the slot
//! before the switch are done (a packet reads the slot once, and runs for
//! microseconds).

use crate::desired::DesiredState;
use crate::error::LoaderError;
use crate::incremental;
use crate::kernel::aya::AyaKernel;
use crate::kernel::{Attachment, Kernel};
use crate::lock::{lock, LockWait};
use crate::manifest::{BundleEndpoint, Manifest, Templates};
use crate::maps::{Generation, MapOps, SyncPlan};
use crate::paths::Paths;
use crate::record::{self, Record, RecordedEndpoint};
use crate::route;
use crate::store;
use policyc_ebpf::abi::StateValue;
use policyc_ebpf::config::EndpointConfig;
use policyc_ebpf::Template;
use std::collections::BTreeMap;
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
    /// Plan only: write nothing, load nothing.
    pub dry_run: bool,
    /// How long to wait for another applier.
    pub lock: LockWait,
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

/// The host-side interface of each endpoint that has addresses.
fn interfaces(
    kernel: &impl Kernel,
    endpoints: &[BundleEndpoint],
    options: &ApplyOptions,
) -> Result<BTreeMap<String, String>, LoaderError> {
    // The route tables are read only if an endpoint needs them.
    let routed = endpoints.iter().any(|e| !e.addresses.is_empty() && !options.interfaces.contains_key(&e.name));
    let routes = if routed { kernel.host_routes()? } else { Vec::new() };
    let present = kernel.host_interfaces()?;
    let mut out = BTreeMap::new();
    for e in endpoints.iter().filter(|e| !e.addresses.is_empty()) {
        let interface = match options.interfaces.get(&e.name) {
            Some(name) => name.clone(),
            None => {
                let ip = e.addresses[0];
                route::interface_for(&routes, ip)
                    .ok_or_else(|| LoaderError::Interface {
                        endpoint: e.name.clone(),
                        reason: format!("no route to {ip}"),
                    })?
                    .to_string()
            }
        };
        if !present.contains(&interface) {
            return Err(LoaderError::Interface {
                endpoint: e.name.clone(),
                reason: format!("interface `{interface}` does not exist"),
            });
        }
        out.insert(e.name.clone(), interface);
    }
    Ok(out)
}

/// One endpoint's program work.
struct EndpointPlan<'a> {
    endpoint: &'a BundleEndpoint,
    interface: String,
    /// Settings of the programs to put in place before the switch: those
    /// of old and new policy together, when the new policy needs a lookup
    /// the attached programs skip.
    prepare: Option<EndpointConfig>,
    /// Whether the exact new programs go in after the switch (not needed
    /// when the prepared ones are already exactly them).
    finish: bool,
    /// A previous attachment on another interface or stem, to detach.
    replaces: Option<RecordedEndpoint>,
}

fn plan_programs<'a>(
    kernel: &impl Kernel,
    desired: &'a DesiredState,
    interfaces: &BTreeMap<String, String>,
    record: &Record,
    paths: &Paths,
) -> Vec<EndpointPlan<'a>> {
    let templates = desired.manifest().templates_digest();
    let mut out = Vec::new();
    for e in desired.endpoints() {
        let Some(interface) = interfaces.get(&e.name) else { continue };
        let recorded = record.endpoints.get(&e.name);
        let same_place = recorded.filter(|r| {
            r.interface == *interface
                && r.stem == e.stem
                && kernel.is_pinned(&paths.link(&r.stem, "from"))
                && kernel.is_pinned(&paths.link(&r.stem, "to"))
        });
        let plan = match same_place {
            Some(r) if r.programs == templates && r.config == e.config => continue,
            Some(r) => {
                let union = e.config.union(&r.config);
                let prepare = (!r.config.covers(&e.config)).then_some(union);
                EndpointPlan {
                    endpoint: e,
                    interface: interface.clone(),
                    finish: prepare.is_none() || union != e.config,
                    prepare,
                    replaces: None,
                }
            }
            None => EndpointPlan {
                endpoint: e,
                interface: interface.clone(),
                prepare: None,
                finish: true,
                replaces: recorded.cloned(),
            },
        };
        out.push(plan);
    }
    out
}

/// An endpoint's programs loaded for the steps of its plan.
struct LoadedPrograms<P> {
    prepared: Option<Mutex<P>>,
    finished: Option<Mutex<P>>,
}

fn load_all<K: Kernel>(
    kernel: &K,
    templates: &Templates,
    plans: &[EndpointPlan],
) -> Result<Vec<LoadedPrograms<K::Program>>, LoaderError> {
    let mut jobs = Vec::new();
    for p in plans {
        jobs.extend(p.prepare.map(|config| (p.endpoint.name.as_str(), config)));
        if p.finish {
            jobs.push((p.endpoint.name.as_str(), p.endpoint.config));
        }
    }
    let mut loaded = kernel.load(templates, &jobs)?.into_iter();
    Ok(plans
        .iter()
        .map(|p| LoadedPrograms {
            prepared: p.prepare.and_then(|_| loaded.next()).map(Mutex::new),
            finished: if p.finish { loaded.next().map(Mutex::new) } else { None },
        })
        .collect())
}

/// Threads attaching programs. The kernel serializes tcx attaches (under
/// the rtnl lock, each waiting for an RCU grace period, about 13 ms here
/// unless grace periods are expedited); threads overlap the rest (opening
/// and pinning links). Measured with 100 new endpoints: attaching took
/// 2.99 s on one thread, 2.74 s on these; 36 and 14 ms with expedited RCU.
const ATTACH_THREADS: usize = 64;

/// Attaches the loaded programs of each endpoint (both hooks), on many
/// threads; with `replace`, first detaches what a plan replaces (an old
/// interface or stem). How each program went in, per endpoint, in order.
fn attach_each<K: Kernel>(
    kernel: &K,
    paths: &Paths,
    endpoints: &[(&EndpointPlan, &Mutex<K::Program>)],
    replace: bool,
) -> Result<Vec<Vec<Attachment>>, LoaderError> {
    policyc_ir::parallel::try_map_on(ATTACH_THREADS, endpoints, |(p, loaded)| {
        if let Some(old) = p.replaces.as_ref().filter(|_| replace) {
            for t in Template::ALL {
                kernel.detach(&paths.link(&old.stem, t.suffix()))?;
            }
        }
        // Each endpoint's programs are attached by one thread only.
        let mut loaded = loaded.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Template::ALL
            .into_iter()
            .map(|t| kernel.attach(&mut loaded, t, &p.interface, &paths.link(&p.endpoint.stem, t.suffix())))
            .collect()
    })
}

/// The map operations of an apply, and what its sync keeps in the store.
struct Planned {
    plan: SyncPlan,
    /// What the plan was diffed against: `record`, `live maps` or `empty
    /// maps`.
    source: &'static str,
    /// Pieces read from the new bundle, to keep; `None`: the whole bundle
    /// was read, keep all of it.
    read: Option<Vec<(String, String)>>,
}

fn recorded_endpoint(
    e: &BundleEndpoint,
    interface: &str,
    config: &EndpointConfig,
    programs: String,
) -> RecordedEndpoint {
    RecordedEndpoint { stem: e.stem.clone(), interface: interface.to_string(), id: e.id, programs, config: *config }
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
    let _lock = lock(paths, &options.lock)?;
    let checked = match run.check()? {
        Checked::InForce(report) => return Ok(report),
        Checked::Go(checked) => checked,
    };
    let (planned, mut report) = run.plan(&checked)?;
    if options.dry_run {
        return Ok(run.dry_run(checked, planned, report));
    }
    let loaded = run.verify(&checked)?;
    let record = run.sync(&checked, &planned)?;
    let loaded: Vec<(&EndpointPlan, LoadedPrograms<K::Program>)> = checked.plans.iter().zip(loaded).collect();
    let record = run.prepare(record, &loaded, &mut report)?;
    let record = run.switch(&checked, record)?;
    run.finish(checked.departed, record, &loaded, &mut report)?;
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

/// What the check found, for the phases that follow.
struct Ready<'a> {
    record: Record,
    /// The datapath maps pinned before this apply.
    existed: Vec<&'static str>,
    /// Whether the record describes the maps (its serial is the slot's).
    trusted: bool,
    /// The generation this apply writes.
    target: u8,
    plans: Vec<EndpointPlan<'a>>,
    departed: Vec<(String, RecordedEndpoint)>,
}

enum Checked<'a> {
    /// The desired state is in force already: nothing to do.
    InForce(ApplyReport),
    Go(Ready<'a>),
}

impl<'a, K: Kernel> Run<'a, K> {
    /// **Check** (no writes): the record, the pinned maps, each local
    /// endpoint's interface; what each endpoint's programs need.
    fn check(&mut self) -> Result<Checked<'a>, LoaderError> {
        let (kernel, paths, options) = (self.kernel, self.paths, self.options);
        let manifest = self.desired.manifest();
        let record = match Record::read(paths) {
            Ok(r) => r.unwrap_or_default(),
            Err(_) if options.reconcile => Record::default(),
            Err(e) => return Err(e),
        };
        let existed = kernel.existing_maps()?;
        let state = if existed.contains(&"state") { kernel.read_state()? } else { StateValue::default() };
        let trusted = record.serial == state.serial && existed.len() == policyc_ebpf::abi::MAPS.len();
        let interfaces = interfaces(kernel, self.desired.endpoints(), options)?;
        let plans = plan_programs(kernel, self.desired, &interfaces, &record, paths);
        let departed: Vec<(String, RecordedEndpoint)> = record
            .endpoints
            .iter()
            .filter(|(name, _)| !interfaces.contains_key(*name))
            .map(|(n, r)| (n.clone(), r.clone()))
            .collect();
        let in_force = trusted
            && !options.reconcile
            && record.bundle_hash == manifest.hash
            && record.generations[usize::from(record.generation)].as_deref() == Some(manifest.hash.as_str())
            && u32::from(record.generation) == state.generation
            && plans.is_empty()
            && departed.is_empty();
        if in_force {
            return Ok(Checked::InForce(ApplyReport {
                bundle_hash: manifest.hash.clone(),
                unchanged: true,
                generation: record.generation,
                ..Default::default()
            }));
        }
        self.phases.mark("check");
        let target = 1 - (state.generation & 1) as u8;
        Ok(Checked::Go(Ready { record, existed, trusted, target, plans, departed }))
    }

    /// **Plan**: the map operations that make the target generation hold
    /// the desired state. Planning reads (and checks) the changed pieces of
    /// a bundle: a corrupt one refuses it here, before any program is
    /// loaded or map pinned.
    fn plan(&mut self, ready: &Ready) -> Result<(Planned, ApplyReport), LoaderError> {
        let manifest = self.desired.manifest();
        let planned = self.plan_sync(ready)?;
        let report = ApplyReport {
            bundle_hash: manifest.hash.clone(),
            generation: ready.target,
            diffed_against: planned.source.into(),
            skipped: self
                .desired
                .endpoints()
                .iter()
                .filter(|e| e.addresses.is_empty())
                .map(|e| e.name.clone())
                .collect(),
            ..Default::default()
        };
        self.phases.mark("plan");
        Ok((planned, report))
    }

    /// Plans the sync of the target generation: from the changed pieces
    /// when the record says what the target holds and the store has it,
    /// else from the whole desired state and the live maps.
    fn plan_sync(&self, ready: &Ready) -> Result<Planned, LoaderError> {
        let (paths, target) = (self.paths, ready.target);
        if let (true, false, DesiredState::Directory(manifest)) = (ready.trusted, self.options.reconcile, self.desired)
        {
            let old = ready.record.generations[usize::from(target)]
                .as_deref()
                .and_then(|h| store::read_manifest(paths, target, h));
            if let Some(old) = old {
                if let Some(done) = incremental::plan(paths, &old, manifest, target)? {
                    return Ok(Planned { plan: done.plan, source: "record", read: Some(done.read) });
                }
            }
        }
        let whole = self.desired.whole()?;
        let (current, source) = if self.kernel.is_pinned(&paths.map("state")) {
            (Generation::read_live(self.kernel, target)?, "live maps")
        } else {
            (Generation::default(), "empty maps")
        };
        Ok(Planned { plan: SyncPlan::new(&current, &Generation::of_bundle(&whole, target)), source, read: None })
    }

    /// What a dry run reports: the plan, nothing written, nothing loaded.
    fn dry_run(mut self, ready: Ready, planned: Planned, mut report: ApplyReport) -> ApplyReport {
        report.dry_run = true;
        report.maps = planned.plan.ops.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        for p in &ready.plans {
            for t in Template::ALL {
                if p.prepare.is_some() {
                    report.programs.push((p.endpoint.name.clone(), t.program_name(), ProgramStep::Prepare, None));
                }
                if p.finish {
                    report.programs.push((p.endpoint.name.clone(), t.program_name(), ProgramStep::Finish, None));
                }
            }
        }
        report.detached = ready.departed.into_iter().map(|(n, _)| n).collect();
        report.phases = std::mem::take(&mut self.phases.done);
        report
    }

    /// **Verify**: specialize and load through the verifier every program
    /// this apply will attach (the first load creates the maps that are not
    /// pinned yet; a refusal unpins them again).
    fn verify(&mut self, ready: &Ready) -> Result<Vec<LoadedPrograms<K::Program>>, LoaderError> {
        // The templates are read (and checked) only when a program changes.
        let templates = if ready.plans.is_empty() { None } else { Some(self.desired.templates()?) };
        let loaded = match templates.as_ref().map(|t| load_all(self.kernel, t, &ready.plans)).transpose() {
            Ok(loaded) => loaded.unwrap_or_default(),
            Err(e) => {
                self.kernel.unpin_maps_except(&ready.existed);
                return Err(e);
            }
        };
        if !self.kernel.is_pinned(&self.paths.map("state")) {
            return Err(LoaderError::NoMaps);
        }
        self.phases.mark("verify");
        Ok(loaded)
    }

    /// **Sync** the target generation (no packet reads it), after marking
    /// it unknown in the record so that a crash in what follows is read
    /// back, and keep what was read in the store.
    fn sync(&mut self, ready: &Ready, planned: &Planned) -> Result<Record, LoaderError> {
        let (paths, target) = (self.paths, ready.target);
        let state = self.kernel.read_state()?;
        let mut record = Record { serial: state.serial, ..ready.record.clone() };
        if !ready.trusted {
            record.generations = [None, None];
        }
        record.generations[usize::from(target)] = None;
        record.write(paths)?;
        std::thread::sleep(record::grace_left(record.switched_at_ns, record::now_ns()));
        planned.plan.execute(self.kernel)?;
        // Only a directory's pieces can be kept: an in-memory state is
        // diffed against the live maps by the next apply.
        if let DesiredState::Directory(manifest) = self.desired {
            match &planned.read {
                Some(pieces) => store::save_pieces(paths, pieces.iter().map(|(d, t)| (d.as_str(), t.as_str())))?,
                None => store::save_bundle(paths, manifest)?,
            }
            store::save_manifest(paths, target, manifest)?;
        }
        self.phases.mark("sync");
        Ok(record)
    }

    /// **Prepare programs**: an endpoint whose new policy needs a lookup
    /// its attached program skips gets, before the switch, a program with
    /// the lookups of both (settings only ever enable lookups, so it judges
    /// either generation exactly).
    fn prepare(
        &mut self,
        mut record: Record,
        loaded: &[(&EndpointPlan, LoadedPrograms<K::Program>)],
        report: &mut ApplyReport,
    ) -> Result<Record, LoaderError> {
        let digest = self.desired.manifest().templates_digest();
        let prepared: Vec<_> = loaded.iter().filter_map(|(p, l)| Some((*p, l.prepared.as_ref()?))).collect();
        for (p, hows) in prepared.iter().zip(attach_each(self.kernel, self.paths, &prepared, false)?) {
            let config = p.0.prepare.unwrap_or(p.0.endpoint.config);
            for (t, how) in Template::ALL.into_iter().zip(hows) {
                report.programs.push((p.0.endpoint.name.clone(), t.program_name(), ProgramStep::Prepare, Some(how)));
            }
            record.endpoints.insert(
                p.0.endpoint.name.clone(),
                recorded_endpoint(p.0.endpoint, &p.0.interface, &config, digest.clone()),
            );
        }
        // Each record write replaces a file (about 0.1 ms on ext4, which
        // writes the new one back when it replaces the old): only when the
        // endpoints it records changed.
        if !prepared.is_empty() {
            record.write(self.paths)?;
        }
        self.phases.mark("prepare");
        Ok(record)
    }

    /// **Switch**: one write of the `state` slot flips every program of
    /// the node to the new generation at once: the only commit point.
    fn switch(&mut self, ready: &Ready, mut record: Record) -> Result<Record, LoaderError> {
        let manifest = self.desired.manifest();
        let switched = StateValue { generation: u32::from(ready.target), serial: record.serial.wrapping_add(1) };
        self.kernel.switch(switched)?;
        record.switched_at_ns = record::now_ns();
        record.serial = switched.serial;
        record.generation = ready.target;
        record.generations[usize::from(ready.target)] = Some(manifest.hash.clone());
        record.bundle_hash = manifest.hash.clone();
        record.node = manifest.node.clone();
        record.source_hash = manifest.source_hash.clone();
        record.write(self.paths)?;
        self.phases.mark("switch");
        Ok(record)
    }

    /// **Finish**: programs with exactly the new settings replace the
    /// prepared ones, new endpoints are attached, departed ones detached,
    /// the record is written, and what no generation holds any more goes.
    fn finish(
        &mut self,
        departed: Vec<(String, RecordedEndpoint)>,
        mut record: Record,
        loaded: &[(&EndpointPlan, LoadedPrograms<K::Program>)],
        report: &mut ApplyReport,
    ) -> Result<(), LoaderError> {
        let (kernel, paths, manifest) = (self.kernel, self.paths, self.desired.manifest());
        let finished: Vec<_> = loaded.iter().filter_map(|(p, l)| Some((*p, l.finished.as_ref()?))).collect();
        let endpoints_changed = !finished.is_empty() || !departed.is_empty();
        for (p, hows) in finished.iter().zip(attach_each(kernel, paths, &finished, true)?) {
            for (t, how) in Template::ALL.into_iter().zip(hows) {
                report.programs.push((p.0.endpoint.name.clone(), t.program_name(), ProgramStep::Finish, Some(how)));
            }
            let e = p.0.endpoint;
            record
                .endpoints
                .insert(e.name.clone(), recorded_endpoint(e, &p.0.interface, &e.config, manifest.templates_digest()));
        }
        for (name, old) in departed {
            for t in Template::ALL {
                kernel.detach(&paths.link(&old.stem, t.suffix()))?;
            }
            record.endpoints.remove(&name);
            report.detached.push(name);
        }
        if endpoints_changed {
            record.write(paths)?;
            // Bodies that no attached stub calls any more.
            kernel.unpin_bodies_except(&record.endpoints.values().map(|e| e.programs.clone()).collect())?;
        }
        // Pieces neither generation holds any more.
        let other = 1 - record.generation;
        let kept =
            record.generations[usize::from(other)].as_deref().and_then(|h| store::read_manifest(paths, other, h));
        let in_store: Option<&Manifest> = match self.desired {
            DesiredState::Directory(m) => Some(m),
            DesiredState::Memory(_) => None,
        };
        store::collect_garbage(paths, &in_store.into_iter().chain(kept.as_ref()).collect::<Vec<_>>())?;
        self.phases.mark("finish");
        Ok(())
    }
}

#[cfg(test)]
mod tests;
