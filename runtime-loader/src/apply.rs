//! `apply`: put a bundle in force on this node, atomically and
//! incrementally.
//!
//! 1. **Check** (no writes): read and check the bundle (format, layouts,
//!    entries, capacities); take the appliers' lock; check the pinned maps
//!    that exist; find each local endpoint's interface; specialize and load
//!    through the verifier every program this apply will attach.
//! 2. **Plan**: the inactive generation's current content comes from the
//!    record's copy of the bundle it holds (no map reads), or, where the
//!    record is not trusted or `--reconcile` is given, from the live maps;
//!    the plan is the difference to the new bundle. `--dry-run` stops here.
//! 3. **Sync** the inactive generation (no packet reads it), after marking
//!    it unknown in the record.
//! 4. **Prepare programs**: an endpoint whose new policy needs a lookup its
//!    attached program skips gets, before the switch, a program with the
//!    lookups of both (settings only ever enable lookups, so it judges
//!    either generation exactly).
//! 5. **Switch**: one write of the `state` slot flips every program of the
//!    node to the new generation at once. This is the only commit point:
//!    killed before it, the old policy is in force; after it, the new one.
//! 6. **Finish**: programs with exactly the new settings replace the
//!    prepared ones (`BPF_LINK_UPDATE`), new endpoints are attached,
//!    departed ones detached, and the record is written.
//!
//! The old generation is left as it was until the next apply, which takes
//! the lock and syncs it only after packets of this apply's switch are long
//! done (a packet reads the slot once, and runs for microseconds).

use crate::attach::{self, Attachment};
use crate::bundle::{locate, Bundle, BundleEndpoint};
use crate::error::LoaderError;
use crate::maps::{self, Generation, MapOps, SyncPlan};
use crate::paths::Paths;
use crate::programs::{self, LoadedEndpoint};
use crate::record::{self, Record, RecordedEndpoint};
use crate::route;
use policyc_ebpf::abi::{StateValue, MAPS};
use policyc_ebpf::config::EndpointConfig;
use policyc_ebpf::Template;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::{File, TryLockError};
use std::path::Path;
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

fn hash(from: &[u8], to: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(from);
    h.update(to);
    format!("{:x}", h.finalize())
}

/// Takes the appliers' lock; held until the returned file is dropped.
pub fn lock(paths: &Paths) -> Result<File, LoaderError> {
    std::fs::create_dir_all(&paths.state)
        .map_err(|e| LoaderError::Record(format!("cannot create `{}`: {e}", paths.state.display())))?;
    let file = File::create(paths.lock()).map_err(|e| LoaderError::Locked(e.to_string()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(LoaderError::Locked(format!("`{}` is held", paths.lock().display()))),
        Err(TryLockError::Error(e)) => Err(LoaderError::Locked(e.to_string())),
    }
}

/// The host-side interface of each endpoint that has addresses.
fn interfaces(bundle: &Bundle, options: &ApplyOptions) -> Result<BTreeMap<String, String>, LoaderError> {
    let routes = route::host_routes().map_err(|e| LoaderError::Kernel(format!("cannot read the route tables: {e}")))?;
    let mut out = BTreeMap::new();
    for e in bundle.endpoints.iter().filter(|e| !e.addresses.is_empty()) {
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
        if !Path::new("/sys/class/net").join(&interface).exists() {
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
    bundle: &'a Bundle,
    interfaces: &BTreeMap<String, String>,
    record: &Record,
    paths: &Paths,
) -> Vec<EndpointPlan<'a>> {
    let mut out = Vec::new();
    for e in &bundle.endpoints {
        let Some(interface) = interfaces.get(&e.name) else { continue };
        let recorded = record.endpoints.get(&e.name);
        let same_place = recorded.filter(|r| {
            r.interface == *interface
                && r.stem == e.stem
                && paths.link(&r.stem, "from").exists()
                && paths.link(&r.stem, "to").exists()
        });
        let plan = match same_place {
            Some(r) if r.programs == hash(&e.from_program, &e.to_program) && r.config == e.config => continue,
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

/// Removes map pins that this apply created, after a refusal.
fn remove_new_pins(paths: &Paths, existed: &[&str]) {
    for layout in MAPS {
        if !existed.contains(&layout.name) {
            // Best effort: the apply is failing already, with its own error.
            let _ = std::fs::remove_file(paths.map(layout.name));
        }
    }
}

/// An endpoint's programs loaded for the steps of its plan.
struct LoadedPrograms {
    prepared: Option<LoadedEndpoint>,
    finished: Option<LoadedEndpoint>,
}

fn load_all(paths: &Paths, bundle: &Bundle, plans: &[EndpointPlan]) -> Result<Vec<LoadedPrograms>, LoaderError> {
    let mut out = Vec::new();
    for p in plans {
        let e = p.endpoint;
        let prepared = match &p.prepare {
            Some(config) => {
                let union = BundleEndpoint {
                    from_program: bundle.program(Template::FromContainer, config)?,
                    to_program: bundle.program(Template::ToContainer, config)?,
                    ..e.clone()
                };
                Some(programs::load_endpoint(paths, &union)?)
            }
            None => None,
        };
        let finished = if p.finish { Some(programs::load_endpoint(paths, e)?) } else { None };
        out.push(LoadedPrograms { prepared, finished });
    }
    Ok(out)
}

/// The inactive generation's current content, and where it came from.
fn current_content(
    paths: &Paths,
    record: &Record,
    trusted: bool,
    target: u8,
    options: &ApplyOptions,
) -> Result<(Generation, &'static str), LoaderError> {
    if trusted && !options.reconcile {
        if let Some(hash) = &record.generations[usize::from(target)] {
            if let Ok(copy) = Bundle::read(&paths.generation_copy(target)) {
                if copy.hash == *hash {
                    return Ok((Generation::of_bundle(&copy, target), "record"));
                }
            }
        }
    }
    if !paths.map("state").exists() {
        return Ok((Generation::default(), "empty maps"));
    }
    Ok((Generation::read_live(paths, target)?, "live maps"))
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
    let mut phases = Phases { start: Instant::now(), done: Vec::new() };
    let bundle = Bundle::read(&locate(dir)?)?;
    let _lock = lock(paths)?;
    let record = match Record::read(paths) {
        Ok(r) => r.unwrap_or_default(),
        Err(_) if options.reconcile => Record::default(),
        Err(e) => return Err(e),
    };
    let existed = maps::check_pinned(paths)?;
    let state = if existed.contains(&"state") { maps::read_state(paths)? } else { StateValue::default() };
    let trusted = record.serial == state.serial && existed.len() == MAPS.len();
    let interfaces = interfaces(&bundle, options)?;
    let plans = plan_programs(&bundle, &interfaces, &record, paths);
    let departed: Vec<(String, RecordedEndpoint)> = record
        .endpoints
        .iter()
        .filter(|(name, _)| !interfaces.contains_key(*name))
        .map(|(n, r)| (n.clone(), r.clone()))
        .collect();
    let in_force = trusted
        && !options.reconcile
        && record.bundle_hash == bundle.hash
        && record.generations[usize::from(record.generation)].as_deref() == Some(bundle.hash.as_str())
        && u32::from(record.generation) == state.generation
        && plans.is_empty()
        && departed.is_empty();
    if in_force {
        return Ok(ApplyReport {
            bundle_hash: bundle.hash,
            unchanged: true,
            generation: record.generation,
            ..Default::default()
        });
    }
    phases.mark("check");

    let target = 1 - (state.generation & 1) as u8;
    let mut report = ApplyReport {
        bundle_hash: bundle.hash.clone(),
        generation: target,
        skipped: bundle.endpoints.iter().filter(|e| e.addresses.is_empty()).map(|e| e.name.clone()).collect(),
        ..Default::default()
    };
    if options.dry_run {
        let (current, source) = current_content(paths, &record, trusted, target, options)?;
        let plan = SyncPlan::new(&current, &Generation::of_bundle(&bundle, target));
        report.dry_run = true;
        report.diffed_against = source.into();
        report.maps = plan.ops.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        for p in &plans {
            for t in Template::ALL {
                if p.prepare.is_some() {
                    report.programs.push((p.endpoint.name.clone(), t.program_name(), ProgramStep::Prepare, None));
                }
                if p.finish {
                    report.programs.push((p.endpoint.name.clone(), t.program_name(), ProgramStep::Finish, None));
                }
            }
        }
        report.detached = departed.into_iter().map(|(n, _)| n).collect();
        phases.mark("plan");
        report.phases = phases.done;
        return Ok(report);
    }

    let loaded = match load_all(paths, &bundle, &plans) {
        Ok(loaded) => loaded,
        Err(e) => {
            remove_new_pins(paths, &existed);
            return Err(e);
        }
    };
    if !paths.map("state").exists() {
        return Err(LoaderError::Kernel(
            "the maps do not exist yet and no endpoint of this bundle has an interface to load programs for".into(),
        ));
    }
    phases.mark("verify");

    let (current, source) = current_content(paths, &record, trusted, target, options)?;
    let plan = SyncPlan::new(&current, &Generation::of_bundle(&bundle, target));
    report.diffed_against = source.into();
    phases.mark("plan");

    // From here on the node changes. The record first says that the
    // target generation is unknown (and, if the record was not trusted,
    // so is the other), so that a crash in what follows is read back.
    let state = maps::read_state(paths)?;
    let mut record = Record { serial: state.serial, ..record };
    if !trusted {
        record.generations = [None, None];
    }
    record.generations[usize::from(target)] = None;
    record.write(paths)?;
    plan.execute(paths)?;
    record::save_generation(paths, target, &bundle.dir)?;
    phases.mark("sync");

    let mut loaded: Vec<(&EndpointPlan, Option<LoadedEndpoint>, Option<LoadedEndpoint>)> =
        plans.iter().zip(loaded).map(|(p, l)| (p, l.prepared, l.finished)).collect();
    for (p, prepared, _) in &mut loaded {
        if let Some(l) = prepared {
            let config = p.prepare.unwrap_or(p.endpoint.config);
            for t in Template::ALL {
                let how = attach::attach(l.program(t)?, t, &p.interface, &paths.link(&p.endpoint.stem, t.suffix()))?;
                report.programs.push((p.endpoint.name.clone(), t.program_name(), ProgramStep::Prepare, Some(how)));
            }
            let programs = hash(
                &bundle.program(Template::FromContainer, &config)?,
                &bundle.program(Template::ToContainer, &config)?,
            );
            record
                .endpoints
                .insert(p.endpoint.name.clone(), recorded_endpoint(p.endpoint, &p.interface, &config, programs));
        }
    }
    record.write(paths)?;
    phases.mark("prepare");

    let switched = StateValue { generation: u32::from(target), serial: state.serial.wrapping_add(1) };
    maps::write_state(paths, switched)?;
    record.serial = switched.serial;
    record.generation = target;
    record.generations[usize::from(target)] = Some(bundle.hash.clone());
    record.bundle_hash = bundle.hash.clone();
    record.node = bundle.node.clone();
    record.source_hash = bundle.source_hash.clone();
    record.write(paths)?;
    phases.mark("switch");

    for (p, _, fin) in &mut loaded {
        let Some(fin) = fin else { continue };
        if let Some(old) = &p.replaces {
            for t in Template::ALL {
                attach::detach(&paths.link(&old.stem, t.suffix()))?;
            }
        }
        for t in Template::ALL {
            let how = attach::attach(fin.program(t)?, t, &p.interface, &paths.link(&p.endpoint.stem, t.suffix()))?;
            report.programs.push((p.endpoint.name.clone(), t.program_name(), ProgramStep::Finish, Some(how)));
        }
        let e = p.endpoint;
        record.endpoints.insert(
            e.name.clone(),
            recorded_endpoint(e, &p.interface, &e.config, hash(&e.from_program, &e.to_program)),
        );
    }
    for (name, old) in departed {
        for t in Template::ALL {
            attach::detach(&paths.link(&old.stem, t.suffix()))?;
        }
        record.endpoints.remove(&name);
        report.detached.push(name);
    }
    record.write(paths)?;
    phases.mark("finish");
    report.maps = plan.ops.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    report.phases = phases.done;
    Ok(report)
}
