//! The phases that change the node: **sync** the target generation,
//! **prepare** programs, **switch** (the one commit point), **finish**.

use super::*;

/// Threads attaching programs. The kernel serializes tcx attaches (under
/// the rtnl lock, each waiting for an RCU grace period, about 18 ms here
/// unless grace periods are expedited), so threads overlap only the rest
/// for tcx (0.8× one thread in `cargo xtask bench attach`); tc filters
/// wait for a grace period only where none has passed since the last
/// swap, and many threads share one (0.15× one thread there).
const ATTACH_THREADS: usize = 64;

/// Puts `loaded` in place of `p`'s programs (both hooks). Where `p` moves
/// the endpoint, the links it had go too: first, where the new links take
/// their pins (same stem, another interface), else once the new ones run.
fn put_in_place<K: Kernel>(
    kernel: &K,
    paths: &Paths,
    p: &EndpointPlan,
    loaded: &Mutex<K::Program>,
    mechanism: Mechanism,
) -> Result<Vec<Attachment>, LoaderError> {
    let old = p.replaces.as_ref().filter(|_| p.moves);
    let detach_old = |old: &RecordedEndpoint| -> Result<(), LoaderError> {
        for t in Template::ALL {
            kernel.detach(&paths.link(&old.stem, t.suffix()), &old.interface)?;
        }
        Ok(())
    };
    if let Some(old) = old.filter(|old| old.stem == p.endpoint.stem) {
        detach_old(old)?;
    }
    // Each endpoint's programs are attached by one thread only.
    let mut loaded = loaded.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let hows = Template::ALL
        .into_iter()
        .map(|t| kernel.attach(&mut loaded, t, &p.interface, &paths.link(&p.endpoint.stem, t.suffix()), mechanism))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(old) = old.filter(|old| old.stem != p.endpoint.stem) {
        detach_old(old)?;
    }
    Ok(hows)
}

/// [`put_in_place`] for each endpoint, on many threads: how each program
/// went in, or why not, per endpoint, in order.
fn attach_each<K: Kernel>(
    kernel: &K,
    paths: &Paths,
    endpoints: &[(&EndpointPlan, &Mutex<K::Program>)],
    mechanism: Mechanism,
) -> Vec<Result<Vec<Attachment>, LoaderError>> {
    let each = policyc_ir::parallel::try_map_on(ATTACH_THREADS, endpoints, |(p, loaded)| {
        Ok::<_, std::convert::Infallible>(put_in_place(kernel, paths, p, loaded, mechanism))
    });
    match each {
        Ok(each) => each,
        Err(never) => match never {},
    }
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
    pub(super) fn sync(&mut self, ready: &Ready, planned: &mut Planned) -> Result<Record, LoaderError> {
        let (paths, target) = (self.paths, ready.target);
        let state = self.kernel.read_state()?;
        let mut record = Record { serial: state.serial, ..ready.record.clone() };
        if !ready.trusted {
            record.generations = [None, None];
        }
        record.generations[usize::from(target)] = None;
        record.write(paths)?;
        std::thread::sleep(record::grace_left(record.switched_at_ns, record::now_ns()));
        if let Some(known) = &self.options.known {
            known.forget(target);
        }
        planned.plan.execute(self.kernel)?;
        if let (Some(known), Some(wanted)) = (&self.options.known, planned.wanted.take()) {
            known.keep(target, &self.desired.manifest().hash, wanted);
        }
        // Only a directory's pieces can be kept: an in-memory state is
        // diffed against the live maps by the next apply.
        if let DesiredState::Directory(manifest) = self.desired {
            match &planned.read {
                Some(pieces) => store::save_pieces(paths, pieces.iter().map(|(d, t)| (d.as_str(), t.as_str())))?,
                None => store::save_bundle(paths, manifest)?,
            }
            store::save_manifest(paths, target, manifest)?;
            if let Some(references) = &planned.references {
                store::save_references(paths, target, &manifest.hash, references)?;
            }
        }
        self.phases.mark("sync");
        Ok(record)
    }

    /// **Prepare programs**: an endpoint whose new policy needs a lookup
    /// its attached program skips gets, before the switch, a program with
    /// the lookups of both (settings only ever enable lookups, so it judges
    /// either generation exactly); an endpoint in a new place (new, or on
    /// another interface or stem) gets its links, with every lookup, and
    /// loses those of its old place. Refused, the endpoints moved are put
    /// back ([`Run::roll_back`]).
    pub(super) fn prepare(
        &mut self,
        mut record: Record,
        loaded: &[(&EndpointPlan, LoadedPrograms<K::Program>)],
        report: &mut ApplyReport,
    ) -> Result<Record, LoaderError> {
        let digest = self.desired.manifest().templates_digest();
        let prepared: Vec<_> = loaded.iter().filter_map(|(p, l)| Some((*p, l.prepared.as_ref()?))).collect();
        let before = record.clone();
        // Recorded before they are attached: killed mid-way, the record
        // names every link this apply may have made (the next apply
        // attaches afresh an endpoint whose links are not pinned, or
        // detaches a departed one).
        for (p, _) in &prepared {
            let config = p.prepare.unwrap_or(p.endpoint.config);
            record
                .endpoints
                .insert(p.endpoint.name.clone(), recorded_endpoint(p.endpoint, &p.interface, &config, digest.clone()));
        }
        // Each record write replaces a file (about 0.1 ms on ext4, which
        // writes the new one back when it replaces the old): only when the
        // endpoints it records changed.
        if !prepared.is_empty() {
            record.write(self.paths)?;
        }
        let mut refused = None;
        for ((p, _), hows) in prepared.iter().zip(attach_each(self.kernel, self.paths, &prepared, self.options.attach))
        {
            match hows {
                Ok(hows) => {
                    for (t, how) in Template::ALL.into_iter().zip(hows) {
                        report.programs.push((
                            p.endpoint.name.clone(),
                            t.program_name(),
                            ProgramStep::Prepare,
                            Some(how),
                        ));
                    }
                }
                Err(e) => {
                    refused.get_or_insert(e);
                }
            }
        }
        if let Some(e) = refused {
            self.roll_back(&before, record, loaded);
            return Err(e);
        }
        self.phases.mark("prepare");
        Ok(record)
    }

    /// After a refusal before the switch: the links of new endpoints are
    /// detached again, and an endpoint that moved gets back its old place
    /// where its old links still run, so that the old policy is in force as
    /// it was. Best effort: a link that cannot be detached stays recorded
    /// (it enforces the old generation exactly, as prepared).
    pub(super) fn roll_back(
        &self,
        before: &Record,
        mut record: Record,
        loaded: &[(&EndpointPlan, LoadedPrograms<K::Program>)],
    ) {
        let (kernel, paths) = (self.kernel, self.paths);
        let pinned = |stem: &str| Template::ALL.iter().all(|t| kernel.is_pinned(&paths.link(stem, t.suffix())));
        for (p, _) in loaded.iter().filter(|(p, _)| p.moves) {
            let e = p.endpoint;
            let back = match &p.replaces {
                None => None,
                Some(old) if old.stem != e.stem && pinned(&old.stem) => Some(old),
                // Its old links are gone: the new ones stay.
                Some(_) => continue,
            };
            let detached =
                Template::ALL.iter().all(|t| kernel.detach(&paths.link(&e.stem, t.suffix()), &p.interface).is_ok());
            if detached {
                match back.or(before.endpoints.get(&e.name)) {
                    Some(old) => record.endpoints.insert(e.name.clone(), old.clone()),
                    None => record.endpoints.remove(&e.name),
                };
            }
        }
        // Best effort too: a record that names a link no longer pinned is
        // attached afresh by the next apply.
        let _ = record.write(paths);
    }

    /// **Switch**: one write of the `state` slot flips every program of
    /// the node to the new generation at once: the only commit point.
    /// Refused, the endpoints moved are put back; after it, nothing is
    /// refused: a failure to write the record is one of `unfinished`.
    pub(super) fn switch(
        &mut self,
        ready: &Ready,
        before: &Record,
        mut record: Record,
        loaded: &[(&EndpointPlan, LoadedPrograms<K::Program>)],
        unfinished: &mut Vec<(String, LoaderError)>,
    ) -> Result<Record, LoaderError> {
        let manifest = self.desired.manifest();
        let switched = StateValue { generation: u32::from(ready.target), serial: record.serial.wrapping_add(1) };
        if let Err(e) = self.kernel.switch(switched) {
            self.roll_back(before, record, loaded);
            return Err(e);
        }
        record.switched_at_ns = record::now_ns();
        record.serial = switched.serial;
        record.generation = ready.target;
        record.generations[usize::from(ready.target)] = Some(manifest.hash.clone());
        record.bundle_hash = manifest.hash.clone();
        record.node = manifest.node.clone();
        record.source_hash = manifest.source_hash.clone();
        record.unfinished = Vec::new();
        if let Err(e) = record.write(self.paths) {
            unfinished.push(("the record of the switch is not written (the next apply reads the live maps)".into(), e));
        }
        self.phases.mark("switch");
        Ok(record)
    }

    /// **Finish**: programs with exactly the new settings replace the
    /// prepared ones (`BPF_LINK_UPDATE` of links that exist), departed
    /// endpoints are detached, the record is written, and what no
    /// generation holds any more goes. Nothing here creates or pins a link,
    /// and every step is tried: where one fails, what ran before it keeps
    /// running (a prepared program, exact in either generation; a departed
    /// endpoint's programs, which drop what the new generation does not
    /// list), the record says so, and the apply ends in
    /// [`LoaderError::Unfinished`].
    pub(super) fn finish(
        &mut self,
        departed: Vec<(String, RecordedEndpoint)>,
        mut record: Record,
        loaded: &[(&EndpointPlan, LoadedPrograms<K::Program>)],
        report: &mut ApplyReport,
        mut unfinished: Vec<(String, LoaderError)>,
    ) -> Result<(), LoaderError> {
        let (kernel, paths, manifest) = (self.kernel, self.paths, self.desired.manifest());
        let finished: Vec<_> = loaded.iter().filter_map(|(p, l)| Some((*p, l.finished.as_ref()?))).collect();
        let endpoints_changed = !finished.is_empty() || !departed.is_empty();
        for ((p, _), hows) in finished.iter().zip(attach_each(kernel, paths, &finished, self.options.attach)) {
            let e = p.endpoint;
            match hows {
                Ok(hows) => {
                    for (t, how) in Template::ALL.into_iter().zip(hows) {
                        report.programs.push((e.name.clone(), t.program_name(), ProgramStep::Finish, Some(how)));
                    }
                    let exact = recorded_endpoint(e, &p.interface, &e.config, manifest.templates_digest());
                    record.endpoints.insert(e.name.clone(), exact);
                }
                Err(err) => unfinished.push((
                    format!("endpoint `{}` keeps its program with the lookups of old and new policy", e.name),
                    err,
                )),
            }
        }
        for (name, old) in departed {
            let detach = |t: &Template| kernel.detach(&paths.link(&old.stem, t.suffix()), &old.interface).map(drop);
            match Template::ALL.iter().try_for_each(detach) {
                Ok(()) => {
                    record.endpoints.remove(&name);
                    report.detached.push(name);
                }
                Err(err) => unfinished.push((
                    format!("endpoint `{name}` left the bundle but keeps its programs on `{}`", old.interface),
                    err,
                )),
            }
        }
        if endpoints_changed {
            // Bodies that no attached stub calls any more.
            let calls = record.endpoints.values().map(|e| e.programs.clone()).collect();
            if let Err(e) = kernel.unpin_bodies_except(&calls) {
                unfinished.push(("bodies no program calls stay pinned".into(), e));
            }
        }
        // Pieces neither generation holds any more.
        let other = 1 - record.generation;
        let kept =
            record.generations[usize::from(other)].as_deref().and_then(|h| store::read_manifest(paths, other, h));
        let in_store: Option<&Manifest> = match self.desired {
            DesiredState::Directory(m) => Some(m),
            DesiredState::Memory(_) => None,
        };
        if let Err(e) = store::collect_garbage(paths, &in_store.into_iter().chain(kept.as_ref()).collect::<Vec<_>>()) {
            unfinished.push(("pieces of bundles no generation holds stay in the store".into(), e));
        }
        // Written last, so that it lists every step that failed.
        record.unfinished = unfinished.iter().map(|(what, e)| format!("{what}: {e}")).collect();
        if endpoints_changed || !unfinished.is_empty() {
            if let Err(e) = record.write(paths) {
                unfinished.push(("the record of the endpoints is not written".into(), e));
            }
        }
        self.phases.mark("finish");
        if unfinished.is_empty() {
            return Ok(());
        }
        Err(LoaderError::Unfinished {
            bundle_hash: manifest.hash.clone(),
            generation: record.generation,
            failures: unfinished,
        })
    }
}
