//! The phases that change the node: **sync** the target generation,
//! **prepare** programs, **switch** (the one commit point), **finish**.

use super::*;

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

fn recorded_endpoint(
    e: &BundleEndpoint,
    interface: &str,
    config: &EndpointConfig,
    programs: String,
) -> RecordedEndpoint {
    RecordedEndpoint { stem: e.stem.clone(), interface: interface.to_string(), id: e.id, programs, config: *config }
}

impl<K: Kernel> Run<'_, K> {
    /// **Sync** the target generation (no packet reads it), after marking
    /// it unknown in the record so that a crash in what follows is read
    /// back, and keep what was read in the store.
    pub(super) fn sync(&mut self, ready: &Ready, planned: &Planned) -> Result<Record, LoaderError> {
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
    pub(super) fn prepare(
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
    pub(super) fn switch(&mut self, ready: &Ready, mut record: Record) -> Result<Record, LoaderError> {
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
    pub(super) fn finish(
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
