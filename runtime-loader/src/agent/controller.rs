//! The agent's one owner of state: the compiled bundle, the cluster view,
//! the bound sandboxes; it re-binds and applies when any of them changes,
//! batching the changes of a short window into one generation flip, and
//! answers the CNI plugin's requests. A change after a quiet spell is
//! applied at once; changes that come while an apply runs, or within the
//! batch window after it, go into the next flip together.

use super::binding::{bind, Binding, ComputedIdentity, Held, Host};
use super::cluster::{ClusterSource, ClusterView};
use super::compiled::Compiled;
use super::metrics::Histogram;
use super::sandboxes::Sandboxes;
use super::server::Call;
use super::source::{Active, PullCounters};
use super::watch::{self, Watched};
use super::worker::Worker;
use super::{log, AgentOptions};
use crate::apply::{apply_desired, ApplyOptions, ApplyReport, KnownGenerations};
use crate::error::LoaderError;
use crate::kernel::aya::AyaKernel;
use crate::lock::LockWait;
use policyc_cni::protocol::{Reply, Request};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// After a failed apply, the next try waits this long.
const RETRY: Duration = Duration::from_secs(1);

/// What a pending request waits for.
enum Awaited {
    /// Its sandbox in force (ADD).
    InForce(String),
    /// The next apply (DEL).
    NextApply,
}

/// What the agent reports in `agent.json` beside the loader's record.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct AgentStatus {
    /// Node.
    pub node: String,
    /// Hash of the compiled bundle in force.
    pub bundle_hash: String,
    /// Hash of the bound state in force (the loader record's bundle hash).
    pub binding_hash: String,
    /// Active generation.
    pub generation: u8,
    /// Local endpoints bound.
    pub endpoints: usize,
    /// The OCI artifact the bundle came from (`--bundle oci://REF`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact: Option<crate::status::AppliedArtifact>,
    /// Local pods held default-deny.
    pub held: Vec<Held>,
    /// Local pods not bound (no interface).
    pub unbound: Vec<Held>,
    /// Cluster pods left out of the ipcache.
    pub not_in_ipcache: Vec<Held>,
    /// Identities computed on the node (not in the reviewed bundle).
    pub computed: Vec<ComputedIdentity>,
}

/// Counters and the last apply, for `/metrics` and `/readyz`.
#[derive(Clone, Debug, Default)]
pub struct Health {
    /// The first bundle is in force and the first cluster list bound.
    pub ready: bool,
    /// Applies that changed the node.
    pub applies: u64,
    /// Applies that failed.
    pub failed_applies: u64,
    /// Seconds each apply took (changing or not).
    pub apply_seconds: Histogram,
    /// Seconds from a sandbox's ADD to its policy in force.
    pub add_seconds: Histogram,
    /// What is in force.
    pub status: AgentStatus,
    /// Pulls of `--bundle oci://REF` (shared with the puller thread).
    pub pulls: Arc<std::sync::Mutex<PullCounters>>,
}

/// The controller's state.
pub struct Controller {
    options: AgentOptions,
    compiled: Option<Arc<Compiled>>,
    /// The artifact `compiled` came from, if any.
    compiled_artifact: Option<crate::status::AppliedArtifact>,
    bundle_source: Active,
    bundle_seen: Watched,
    cluster: Option<Arc<ClusterView>>,
    cluster_source: ClusterSource,
    sandboxes: Sandboxes,
    in_force: BTreeSet<String>,
    waiting: Vec<(Awaited, Instant, oneshot::Sender<Reply>)>,
    dirty_since: Option<Instant>,
    /// When the last apply ended.
    last_apply: Instant,
    last_held: Vec<Held>,
    last_computed: Vec<ComputedIdentity>,
    last_error: Option<String>,
    health: Arc<std::sync::Mutex<Health>>,
    /// What this agent's applies wrote into each generation: the next
    /// flips plan against it instead of reading the live maps whole.
    known: KnownGenerations,
    /// The thread that binds and applies.
    worker: Worker,
}

impl Controller {
    /// A controller with the sandboxes kept in the state directory, the
    /// cluster from `cluster_source`.
    pub fn new(
        options: AgentOptions,
        cluster_source: ClusterSource,
        health: Arc<std::sync::Mutex<Health>>,
    ) -> Result<Controller, String> {
        let (sandboxes, problems) = Sandboxes::load(&options.sandboxes_dir())?;
        for p in problems {
            log(&format!("a kept sandbox is unreadable and left out: {p}"));
        }
        let pulls = health.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pulls.clone();
        let bundle_source = Active::start(&options.bundle, &options.node, &options.paths, pulls)?;
        Ok(Controller {
            options,
            compiled: None,
            compiled_artifact: None,
            bundle_source,
            bundle_seen: Watched::default(),
            cluster: None,
            cluster_source,
            sandboxes,
            in_force: BTreeSet::new(),
            waiting: Vec::new(),
            // The first apply binds what a previous agent left.
            dirty_since: Some(Instant::now()),
            last_apply: Instant::now(),
            last_held: Vec::new(),
            last_computed: Vec::new(),
            last_error: None,
            health,
            known: KnownGenerations::default(),
            worker: Worker::start()?,
        })
    }

    fn mark_dirty(&mut self) {
        self.dirty_since.get_or_insert_with(Instant::now);
    }

    /// Runs until `stop` fires.
    pub async fn run(mut self, mut calls: mpsc::Receiver<Call>, mut stop: oneshot::Receiver<()>) {
        let mut next_poll = Instant::now();
        loop {
            let now = Instant::now();
            if now >= next_poll {
                self.poll();
                next_poll = now + self.options.poll;
            }
            let ready = self.compiled.is_some() && self.cluster.is_some();
            // Every request already queued joins this flip.
            while let Ok((request, reply)) = calls.try_recv() {
                self.handle(request, reply);
            }
            // The first change after a quiet spell is applied at once;
            // changes within `batch` of the last apply wait for the end of
            // that window and go into one flip (as do those that came
            // while an apply ran, queued above).
            let due = self.dirty_since.map(|since| since.max(self.last_apply + self.options.batch));
            match due {
                Some(due) if ready && now >= due => {
                    self.apply().await;
                    self.last_apply = Instant::now();
                    continue;
                }
                _ => {}
            }
            let wake = match due {
                Some(due) if ready => next_poll.min(due),
                _ => next_poll,
            };
            tokio::select! {
                call = calls.recv() => match call {
                    Some((request, reply)) => self.handle(request, reply),
                    None => return,
                },
                _ = tokio::time::sleep_until(wake.into()) => {}
                _ = &mut stop => return,
            }
        }
    }

    fn handle(&mut self, request: Request, reply: oneshot::Sender<Reply>) {
        let now = Instant::now();
        // Plugins that gave up (their connection closed) wait no more:
        // the list stays bounded while no bundle or cluster has come yet.
        self.waiting.retain(|(_, _, reply)| !reply.is_closed());
        match request {
            Request::Add(sandbox) => {
                let id = sandbox.container_id.clone();
                match self.sandboxes.add(sandbox) {
                    Err(message) => {
                        let _ = reply.send(Reply::Failed { message });
                    }
                    Ok(false) if self.in_force.contains(&id) && self.dirty_since.is_none() => {
                        let _ = reply.send(Reply::Done);
                    }
                    Ok(changed) => {
                        if changed {
                            self.mark_dirty();
                        }
                        self.waiting.push((Awaited::InForce(id), now, reply));
                    }
                }
            }
            Request::Del { container_id } => match self.sandboxes.remove(&container_id) {
                Ok(true) => {
                    self.mark_dirty();
                    self.waiting.push((Awaited::NextApply, now, reply));
                }
                Ok(false) => {
                    let _ = reply.send(Reply::Done);
                }
                Err(message) => {
                    let _ = reply.send(Reply::Failed { message });
                }
            },
            Request::Check { container_id } => {
                let answer = if self.sandboxes.get(&container_id).is_none() {
                    Reply::Unknown
                } else if self.in_force.contains(&container_id) {
                    Reply::Done
                } else {
                    Reply::Failed { message: format!("sandbox `{container_id}` is bound but not in force yet") }
                };
                let _ = reply.send(answer);
            }
        }
    }

    /// Re-reads the bundle if it changed and takes the cluster source's new view; an
    /// unreadable or invalid one is logged and the last good one kept.
    fn poll(&mut self) {
        let current = self.bundle_source.current();
        let (bundle, node) = (current.as_ref().map(|c| c.dir.clone()).unwrap_or_default(), &self.options.node);
        let read_bundle = || {
            let c = Compiled::read(&bundle).map_err(|e| format!("bundle `{}` refused: {e}", bundle.display()))?;
            if c.bundle.manifest.node != *node {
                return Err(format!(
                    "bundle `{}` is for node `{}`, not `{node}`",
                    bundle.display(),
                    c.bundle.manifest.node
                ));
            }
            Ok(c)
        };
        // A pulled bundle never changes in place: its artifact digest says
        // whether it is new.
        let fingerprint = match current.as_ref().map(|c| &c.artifact) {
            None => Err("no bundle pulled yet".to_string()),
            Some(Some(artifact)) => Ok(artifact.digest.clone()),
            Some(None) => watch::bundle_fingerprint(&bundle),
        };
        if let Some(c) = self.bundle_seen.refresh(fingerprint, read_bundle, "keeping what is in force") {
            if self.compiled.as_ref().is_none_or(|old| old.hash() != c.hash()) {
                log(&format!("bundle {} read", c.hash()));
                self.compiled = Some(Arc::new(c));
            }
            // A new artifact with this node's bundle unchanged is in force
            // as well: the next (unchanged) apply says so.
            self.compiled_artifact = current.and_then(|c| c.artifact);
            self.mark_dirty();
        }
        if let Some(view) = self.cluster_source.poll() {
            if self.cluster.as_deref() != Some(&view) {
                self.cluster = Some(Arc::new(view));
                self.mark_dirty();
            }
        }
    }

    /// Binds and applies (on the apply thread), then answers what waited.
    async fn apply(&mut self) {
        let (Some(compiled), Some(cluster)) = (self.compiled.clone(), self.cluster.clone()) else { return };
        self.dirty_since = None;
        let sandboxes = self.sandboxes.clone();
        let (node, paths) = (self.options.node.clone(), self.options.paths.clone());
        let (known, attach) = (self.known.clone(), self.options.attach);
        let started = Instant::now();
        let outcome = self
            .worker
            .run(move || -> Result<(Binding, ApplyReport, f64), String> {
                let host = Host::read().map_err(|e| format!("cannot read the host's routes and interfaces: {e}"))?;
                let binding = bind(&compiled, &cluster, &sandboxes, &node, &host);
                let bind_ms = started.elapsed().as_secs_f64() * 1000.0;
                let options = ApplyOptions {
                    interfaces: binding.interfaces.clone(),
                    lock: LockWait { timeout: Duration::from_secs(10), on_wait: None },
                    known: Some(known),
                    attach,
                    ..ApplyOptions::default()
                };
                match apply_desired(&AyaKernel::new(&paths), &paths, &binding.desired, &options, Instant::now()) {
                    Ok(report) => Ok((binding, report, bind_ms)),
                    // A node with no pod yet and nothing pinned: there is
                    // nothing to enforce, and no program to create the maps
                    // with until the first pod comes.
                    Err(LoaderError::NoMaps) if binding.endpoints() == 0 => {
                        let report = ApplyReport { unchanged: true, ..ApplyReport::default() };
                        Ok((binding, report, bind_ms))
                    }
                    Err(e) => Err(e.to_string()),
                }
            })
            .await
            .unwrap_or_else(Err);
        let seconds = started.elapsed().as_secs_f64();
        match outcome {
            Ok((binding, report, bind_ms)) => {
                self.last_error = None;
                self.applied(binding, report, seconds, bind_ms)
            }
            Err(message) => {
                // A failure that repeats is logged once.
                if self.last_error.as_ref() != Some(&message) {
                    log(&format!("apply failed, keeping what is in force (retrying every {RETRY:?}): {message}"));
                    self.last_error = Some(message.clone());
                }
                let mut health = self.health.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                health.failed_applies += 1;
                drop(health);
                for (_, _, reply) in self.waiting.drain(..) {
                    let _ = reply.send(Reply::Failed { message: message.clone() });
                }
                self.dirty_since = Some(Instant::now() + RETRY);
            }
        }
    }

    fn applied(&mut self, binding: Binding, report: ApplyReport, seconds: f64, bind_ms: f64) {
        if !report.unchanged {
            let phases: Vec<String> = report.phases.iter().map(|(p, ms)| format!("{p} {ms:.1}")).collect();
            log(&format!(
                "applied {} (generation {} active, {} endpoints, {:.1} ms: bind {:.1}, {} ms)",
                report.bundle_hash,
                report.generation,
                binding.endpoints(),
                seconds * 1000.0,
                bind_ms,
                phases.join(", ")
            ));
        }
        if binding.held != self.last_held {
            for h in &binding.held {
                log(&format!("pod `{}` held default-deny: {}", h.pod, h.reason));
            }
            self.last_held = binding.held.clone();
        }
        if binding.computed != self.last_computed {
            for c in &binding.computed {
                log(&format!(
                    "identity {} computed on the node (not in the reviewed bundle): labels `{}`, pods {}",
                    c.identity,
                    c.labels,
                    c.pods.join(", ")
                ));
            }
            self.last_computed = binding.computed.clone();
        }
        self.in_force = binding.sandboxes.clone();
        let now = Instant::now();
        let mut add_seconds = Vec::new();
        let mut still = Vec::new();
        for (awaited, since, reply) in self.waiting.drain(..) {
            match awaited {
                Awaited::InForce(id) if !self.in_force.contains(&id) => {
                    let why = binding
                        .unbound
                        .iter()
                        .find(|u| self.sandboxes.get(&id).is_some_and(|s| s.pod_name() == u.pod))
                        .map_or_else(
                            || "it was replaced by a newer sandbox of its pod".to_string(),
                            |u| u.reason.clone(),
                        );
                    if self.sandboxes.get(&id).is_some() && self.dirty_since.is_some() {
                        still.push((Awaited::InForce(id), since, reply));
                    } else {
                        let _ = reply.send(Reply::Failed { message: format!("sandbox `{id}` is not bound: {why}") });
                    }
                }
                Awaited::InForce(_) => {
                    add_seconds.push((now - since).as_secs_f64());
                    let _ = reply.send(Reply::Done);
                }
                Awaited::NextApply => {
                    let _ = reply.send(Reply::Done);
                }
            }
        }
        self.waiting = still;
        let compiled_hash = self.compiled.as_ref().map(|c| c.hash().to_string()).unwrap_or_default();
        if status_artifact_changed(&self.health, self.compiled_artifact.as_ref()) {
            if let Some(a) = &self.compiled_artifact {
                log(&format!("artifact {} ({}) in force", a.digest, a.reference));
            }
        }
        if let Err(e) = crate::status::write_applied_artifact(
            &self.options.paths,
            self.compiled_artifact.as_ref(),
            &report.bundle_hash,
        ) {
            log(&format!("cannot record the artifact in force: {e}"));
        }
        let status = AgentStatus {
            node: self.options.node.clone(),
            artifact: self.compiled_artifact.clone(),
            bundle_hash: compiled_hash,
            binding_hash: report.bundle_hash.clone(),
            generation: report.generation,
            endpoints: binding.endpoints(),
            held: binding.held,
            unbound: binding.unbound,
            not_in_ipcache: binding.not_in_ipcache,
            computed: binding.computed,
        };
        let path = self.options.paths.state.join("agent.json");
        let text = serde_json::to_string_pretty(&status).unwrap_or_default();
        let tmp = path.with_extension("tmp");
        if let Err(e) = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &path)) {
            log(&format!("cannot write `{}`: {e}", path.display()));
        }
        let mut health = self.health.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        health.ready = true;
        if !report.unchanged {
            health.applies += 1;
        }
        health.apply_seconds.observe(seconds);
        for s in add_seconds {
            health.add_seconds.observe(s);
        }
        health.status = status;
    }
}

/// Whether `artifact` differs from the one the last status reported.
fn status_artifact_changed(
    health: &std::sync::Mutex<Health>,
    artifact: Option<&crate::status::AppliedArtifact>,
) -> bool {
    let health = health.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    health.status.artifact.as_ref() != artifact
}
