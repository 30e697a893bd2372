//! `apply`: put a bundle in force on this node.
//!
//! Order of work, so that a refusal leaves the node as it was:
//! 1. read and check the bundle (format, layouts, entries, capacities,
//!    program settings); take the lock;
//! 2. check the pinned maps that exist; find every local endpoint's
//!    interface; load every changed program through the verifier;
//! 3. write the inactive generation of the ipcache, endpoints and policy
//!    maps (no packet reads it);
//! 4. flip the generation slot: the one write that switches the node;
//! 5. switch programs with `BPF_LINK_UPDATE` (or attach new endpoints),
//!    detach endpoints that left, and write the record.
//!
//! Known gap (issue 4): programs are switched after the flip, one hook at
//! a time, so an endpoint whose settings gain a lookup is judged by its old
//! program against the new generation until its link is updated. The
//! settings only ever enable lookups (`policyc_ebpf::config`), so loading
//! programs with the union of old and new settings before the flip closes
//! that window; that is part of the atomic-apply work.

use crate::attach::{self, Attachment};
use crate::bundle::{Bundle, BundleEndpoint};
use crate::error::{kernel, LoaderError};
use crate::maps::{self, MapOps};
use crate::paths::Paths;
use crate::programs;
use crate::record::{Record, RecordedEndpoint};
use crate::route;
use policyc_ebpf::abi::StateValue;
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
}

/// What an apply did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ApplyReport {
    /// Hash of the bundle now in force.
    pub bundle_hash: String,
    /// The bundle was already in force: nothing was written.
    pub unchanged: bool,
    /// Generation now active.
    pub generation: u8,
    /// Map operations per map.
    pub maps: BTreeMap<String, MapOps>,
    /// `(endpoint, program, how)` for each program put in place.
    pub programs: Vec<(String, String, Attachment)>,
    /// Endpoints whose programs were detached (gone from the bundle).
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

fn programs_hash(e: &BundleEndpoint) -> String {
    let mut h = Sha256::new();
    h.update(&e.from_program);
    h.update(&e.to_program);
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
    let routes = route::host_routes().map_err(|e| kernel("cannot read the route tables", e))?;
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

/// Removes map pins that this apply created, after a refusal.
fn remove_new_pins(paths: &Paths, existed: &[&str]) {
    for layout in policyc_ebpf::abi::MAPS {
        if !existed.contains(&layout.name) {
            // Best effort: the apply is failing already, with its own error.
            let _ = std::fs::remove_file(paths.map(layout.name));
        }
    }
}

/// Applies the bundle in `dir`.
pub fn apply(paths: &Paths, dir: &Path, options: &ApplyOptions) -> Result<ApplyReport, LoaderError> {
    let mut phases = Phases { start: Instant::now(), done: Vec::new() };
    let bundle = Bundle::read(&crate::bundle::locate(dir)?)?;
    let _lock = lock(paths)?;
    let record = Record::read(paths)?;
    phases.mark("read");

    let existed = maps::check_pinned(paths)?;
    let in_force = record.as_ref().is_some_and(|r| {
        r.bundle_hash == bundle.hash
            && existed.len() == policyc_ebpf::abi::MAPS.len()
            && r.endpoints.values().all(|e| paths.link(&e.stem, "from").exists() && paths.link(&e.stem, "to").exists())
    });
    if in_force {
        let generation = maps::read_state(paths)?.generation as u8;
        return Ok(ApplyReport { bundle_hash: bundle.hash, unchanged: true, generation, ..Default::default() });
    }
    let interfaces = interfaces(&bundle, options)?;
    let previous = record.unwrap_or_default();
    let changed: Vec<&BundleEndpoint> = bundle
        .endpoints
        .iter()
        .filter(|e| interfaces.contains_key(&e.name))
        .filter(|e| {
            previous.endpoints.get(&e.name).is_none_or(|r| {
                r.programs != programs_hash(e)
                    || r.interface != interfaces[&e.name]
                    || !paths.link(&r.stem, "from").exists()
            })
        })
        .collect();
    let mut loaded = Vec::new();
    for e in &changed {
        match programs::load_endpoint(paths, e) {
            Ok(l) => loaded.push((*e, l)),
            Err(err) => {
                remove_new_pins(paths, &existed);
                return Err(err);
            }
        }
    }
    phases.mark("verify");

    // Before the first program load the maps may not exist yet; they do now.
    let state = if existed.contains(&"state") || !loaded.is_empty() {
        maps::read_state(paths)?
    } else {
        return Err(LoaderError::Kernel(
            "the maps do not exist yet and no endpoint of this bundle has an interface to load programs for".into(),
        ));
    };
    let target = (1 - (state.generation & 1)) as u8;
    let ops = maps::write_generation(paths, &bundle, target)?;
    phases.mark("sync");
    maps::write_state(paths, StateValue { generation: u32::from(target), serial: state.serial.wrapping_add(1) })?;
    phases.mark("switch");

    let mut report = ApplyReport {
        bundle_hash: bundle.hash.clone(),
        generation: target,
        maps: ops.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        skipped: bundle.endpoints.iter().filter(|e| e.addresses.is_empty()).map(|e| e.name.clone()).collect(),
        ..Default::default()
    };
    for (e, mut l) in loaded {
        let interface = &interfaces[&e.name];
        if let Some(old) =
            previous.endpoints.get(&e.name).filter(|old| old.interface != *interface || old.stem != e.stem)
        {
            for t in Template::ALL {
                attach::detach(&paths.link(&old.stem, t.suffix()))?;
            }
        }
        for t in Template::ALL {
            let how = attach::attach(l.program(t)?, t, interface, &paths.link(&e.stem, t.suffix()))?;
            report.programs.push((e.name.clone(), t.program_name().to_string(), how));
        }
    }
    for (name, old) in &previous.endpoints {
        if !interfaces.contains_key(name) {
            for t in Template::ALL {
                attach::detach(&paths.link(&old.stem, t.suffix()))?;
            }
            report.detached.push(name.clone());
        }
    }
    let record = Record {
        bundle_hash: bundle.hash.clone(),
        node: bundle.node.clone(),
        source_hash: bundle.source_hash.clone(),
        generation: target,
        endpoints: bundle
            .endpoints
            .iter()
            .filter_map(|e| {
                let interface = interfaces.get(&e.name)?.clone();
                Some((
                    e.name.clone(),
                    RecordedEndpoint { stem: e.stem.clone(), interface, id: e.id, programs: programs_hash(e) },
                ))
            })
            .collect(),
    };
    record.write(paths)?;
    phases.mark("attach");
    report.phases = phases.done;
    Ok(report)
}
