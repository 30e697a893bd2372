//! **Plan**: which programs each endpoint needs and which map operations
//! make the target generation hold the desired state.

use super::*;
use crate::references::References;

/// One endpoint's program work.
pub(super) struct EndpointPlan<'a> {
    pub(super) endpoint: &'a BundleEndpoint,
    pub(super) interface: String,
    /// Settings of the programs to put in place before the switch: those
    /// of old and new policy together, when the new policy needs a lookup
    /// the attached programs skip.
    pub(super) prepare: Option<EndpointConfig>,
    /// Whether the exact new programs go in after the switch (not needed
    /// when the prepared ones are already exactly them).
    pub(super) finish: bool,
    /// A previous attachment on another interface or stem, to detach.
    pub(super) replaces: Option<RecordedEndpoint>,
    /// Whether the links go in a new place (a new endpoint, or one on
    /// another interface or stem): attached before the switch, so that
    /// nothing after it creates a link or pins one.
    pub(super) moves: bool,
}

/// `config` with every lookup on. A program made from it judges any
/// generation exactly (settings only ever enable lookups), so an endpoint
/// attached in a new place before the switch enforces the old generation
/// until the switch (an endpoint the old generation does not list is
/// dropped: its `endpoints` lookup misses) and the new one after it, and
/// keeps enforcing it exactly if the program with its own settings cannot
/// replace it after the switch.
fn every_lookup(config: &EndpointConfig) -> EndpointConfig {
    config.union(&EndpointConfig::of_lookups(u8::MAX))
}

/// The endpoint ids the active generation lists (its `endpoints` map):
/// none if the map was not pinned, else from what this process wrote there
/// ([`KnownGenerations`], while the trusted record names it), else read
/// from the map (a node's own endpoints: a few hundred entries). A program
/// attached before the switch judges its packets by the active
/// generation, which drops every new connection of an endpoint id it does
/// not list (`DROP_INVALID_SOURCE`/`DROP_UNKNOWN_TARGET` in
/// `ebpf-templates/include/datapath.h`), whatever lookups the program
/// makes: such an endpoint's exact program is exact in either generation.
pub(super) fn listed_ids(
    kernel: &impl Kernel,
    record: &Record,
    trusted: bool,
    active: u8,
    existed: &[&str],
    known: Option<&KnownGenerations>,
) -> Result<BTreeSet<u32>, LoaderError> {
    if !existed.contains(&ENDPOINTS.name) {
        return Ok(BTreeSet::new());
    }
    let written_for = record.generations[usize::from(active)].as_deref().filter(|_| trusted);
    if let Some(ids) = written_for.zip(known).and_then(|(hash, known)| known.endpoint_ids(active, hash)) {
        return Ok(ids);
    }
    let mut ids = BTreeSet::new();
    for (key, value) in kernel.entries(&ENDPOINTS)? {
        if ENDPOINTS.generation_of(&key) == Some(active) {
            let value: [u8; 12] = value.as_slice().try_into().map_err(|_| {
                LoaderError::Object(format!("an entry of `{}` of {} bytes", ENDPOINTS.name, value.len()))
            })?;
            ids.insert(known::endpoint_id(&value));
        }
    }
    Ok(ids)
}

/// What each endpoint's programs need. `listed` is what [`listed_ids`]
/// gives, asked only when an endpoint goes in a new place.
pub(super) fn plan_programs<'a>(
    kernel: &impl Kernel,
    desired: &'a DesiredState,
    interfaces: &BTreeMap<String, String>,
    record: &Record,
    paths: &Paths,
    mut listed: impl FnMut() -> Result<BTreeSet<u32>, LoaderError>,
) -> Result<Vec<EndpointPlan<'a>>, LoaderError> {
    let mut listed_ids: Option<BTreeSet<u32>> = None;
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
                    moves: false,
                }
            }
            None => {
                let listed = match &listed_ids {
                    Some(ids) => ids,
                    None => listed_ids.insert(listed()?),
                };
                let prepare = if listed.contains(&u32::from(e.id)) { every_lookup(&e.config) } else { e.config };
                EndpointPlan {
                    endpoint: e,
                    interface: interface.clone(),
                    prepare: Some(prepare),
                    finish: prepare != e.config,
                    replaces: recorded.cloned(),
                    moves: true,
                }
            }
        };
        out.push(plan);
    }
    Ok(out)
}

/// The map operations of an apply, and what its sync keeps in the store.
pub(super) struct Planned {
    pub(super) plan: SyncPlan,
    /// What the plan was diffed against: `record`, `memory` (what this
    /// process wrote, [`KnownGenerations`]), `live maps` or `empty maps`.
    pub(super) source: &'static str,
    /// What the target generation holds once synced, to keep in
    /// [`ApplyOptions::known`] (when there is one).
    pub(super) wanted: Option<Generation>,
    /// Pieces read from the new bundle, to keep; `None`: the whole bundle
    /// was read, keep all of it.
    pub(super) read: Option<Vec<(String, String)>>,
    /// The new bundle's references, to keep with its manifest (`None` for
    /// a state in memory, which the store does not keep).
    pub(super) references: Option<References>,
}

impl<K: Kernel> Run<'_, K> {
    /// **Plan**: the map operations that make the target generation hold
    /// the desired state. Planning reads (and checks) the changed pieces of
    /// a bundle: a corrupt one refuses it here, before any program is
    /// loaded or map pinned.
    pub(super) fn plan(&mut self, ready: &Ready) -> Result<(Planned, ApplyReport), LoaderError> {
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
                    let (plan, read, references) = (done.plan, Some(done.read), Some(done.references));
                    return Ok(Planned { plan, source: "record", read, references, wanted: None });
                }
            }
        }
        let whole = self.desired.whole()?;
        let wanted = Generation::of_bundle(&whole, target);
        let written_for = ready.record.generations[usize::from(target)].as_deref();
        let known = match (&self.options.known, written_for) {
            (Some(known), Some(hash)) if ready.trusted && !self.options.reconcile => known.take(target, hash),
            _ => None,
        };
        let (current, source) = match known {
            Some(current) => (current, "memory"),
            None if self.kernel.is_pinned(&paths.map("state")) => {
                (Generation::read_live(self.kernel, target)?, "live maps")
            }
            None => (Generation::default(), "empty maps"),
        };
        let references = matches!(self.desired, DesiredState::Directory(_)).then(|| whole.references());
        let plan = SyncPlan::new(&current, &wanted);
        Ok(Planned { plan, source, read: None, references, wanted: self.options.known.is_some().then_some(wanted) })
    }

    /// What a dry run reports: the plan, nothing written, nothing loaded.
    pub(super) fn dry_run(mut self, ready: Ready, planned: Planned, mut report: ApplyReport) -> ApplyReport {
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
}
