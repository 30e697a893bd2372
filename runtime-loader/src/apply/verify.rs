//! **Verify**: every program the apply attaches, through the verifier,
//! before anything is written.

use super::*;

/// An endpoint's programs loaded for the steps of its plan.
pub(super) struct LoadedPrograms<P> {
    pub(super) prepared: Option<Mutex<P>>,
    pub(super) finished: Option<Mutex<P>>,
}

/// The programs `plans` load: `(endpoint, settings)`, in order.
fn jobs<'a>(plans: &'a [EndpointPlan]) -> Vec<(&'a str, EndpointConfig)> {
    let mut jobs = Vec::new();
    for p in plans {
        jobs.extend(p.prepare.map(|config| (p.endpoint.name.as_str(), config)));
        if p.finish {
            jobs.push((p.endpoint.name.as_str(), p.endpoint.config));
        }
    }
    jobs
}

fn load_all<K: Kernel>(
    kernel: &K,
    templates: &Templates,
    plans: &[EndpointPlan],
) -> Result<Vec<LoadedPrograms<K::Program>>, LoaderError> {
    let mut loaded = kernel.load(templates, &jobs(plans))?.into_iter();
    Ok(plans
        .iter()
        .map(|p| LoadedPrograms {
            prepared: p.prepare.and_then(|_| loaded.next()).map(Mutex::new),
            finished: if p.finish { loaded.next().map(Mutex::new) } else { None },
        })
        .collect())
}

impl<K: Kernel> Run<'_, K> {
    /// **Verify**: specialize and load through the verifier every program
    /// this apply will attach (the first load creates the maps that are not
    /// pinned yet; a refusal unpins them again).
    pub(super) fn verify(&mut self, ready: &Ready) -> Result<Vec<LoadedPrograms<K::Program>>, LoaderError> {
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
}

impl<K: Kernel> Run<'_, K> {
    /// **Verify** for `--dry-run`: what [`Run::verify`] loads, loaded
    /// through the verifier into a scratch root, and its refusal when no
    /// maps would exist; nothing of the node changes.
    pub(super) fn verify_dry(&mut self, ready: &Ready) -> Result<(), LoaderError> {
        if ready.plans.is_empty() {
            if !self.kernel.is_pinned(&self.paths.map("state")) {
                return Err(LoaderError::NoMaps);
            }
        } else {
            self.kernel.check_load(&self.desired.templates()?, &jobs(&ready.plans))?;
        }
        self.phases.mark("verify");
        Ok(())
    }
}
