//! `--bundle oci://REF`: a thread of its own pulls the artifact at every
//! `--poll-interval` (once, for a reference pinned to a digest), through
//! the digest-checked cache under `STATE/oci` (`policyc-oci`), and offers
//! the controller the newest bundle directory it materialized. A pull that
//! fails (registry unreachable, a blob that does not match its digest, no
//! bundle for this node) is logged and counted, and the last good one
//! stays: what is in force is not touched.
//!
//! The pull blocks on the network, so it runs on a thread of its own, not
//! on the controller's runtime, which keeps answering the CNI plugin.

use super::log;
use super::source::{Current, PullCounters};
use crate::status::AppliedArtifact;
use policyc_oci::{ArtifactRef, ClientOptions, Puller};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `--bundle oci://REF`, `--poll-interval`, `--plain-http`.
#[derive(Clone, Debug)]
pub struct ArtifactSource {
    /// The artifact.
    pub reference: ArtifactRef,
    /// How to reach its registry.
    pub client: ClientOptions,
    /// Time between pulls of a tag.
    pub interval: Duration,
}

/// The puller thread and what it last pulled.
pub struct Pulling {
    latest: Arc<Mutex<Option<Current>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Pulling {
    /// Starts pulling `source` for `node` into the cache `cache_dir`.
    pub fn start(
        source: ArtifactSource,
        node: &str,
        cache_dir: &Path,
        counters: Arc<Mutex<PullCounters>>,
    ) -> Result<Pulling, String> {
        let mut puller = Puller::new(source.reference.clone(), node, cache_dir, &source.client)
            .map_err(|e| format!("`--bundle {}`: {e}", source.reference))?;
        let latest = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let (shared, stopping) = (latest.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("policyc-pull".into())
            .spawn(move || pull_loop(&mut puller, &source, &shared, &stopping, &counters))
            .map_err(|e| format!("cannot start the puller: {e}"))?;
        Ok(Pulling { latest, stop, thread: Some(thread) })
    }

    /// The newest bundle pulled, if any yet.
    pub fn current(&self) -> Option<Current> {
        self.latest.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

impl Drop for Pulling {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            // A pull under way ends within the client's timeouts.
            let _ = thread.join();
        }
    }
}

fn pull_loop(
    puller: &mut Puller,
    source: &ArtifactSource,
    latest: &Mutex<Option<Current>>,
    stop: &AtomicBool,
    counters: &Mutex<PullCounters>,
) {
    let mut last_problem: Option<String> = None;
    let mut last_digest: Option<String> = None;
    while !stop.load(Ordering::Relaxed) {
        let outcome = puller.pull();
        let mut count = counters.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match outcome {
            Ok(pulled) => {
                count.pulls += 1;
                count.fetched += (pulled.manifests_fetched + pulled.blobs_fetched) as u64;
                count.bytes += pulled.bytes_fetched;
                drop(count);
                if last_digest.as_ref() != Some(&pulled.digest) {
                    log(&format!(
                        "pulled `{}`: {} ({} blob(s), {} bytes fetched; the rest from the cache)",
                        source.reference,
                        pulled.digest,
                        pulled.manifests_fetched + pulled.blobs_fetched,
                        pulled.bytes_fetched
                    ));
                    last_digest = Some(pulled.digest.clone());
                }
                last_problem = None;
                let artifact = AppliedArtifact { reference: source.reference.to_string(), digest: pulled.digest };
                *latest.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                    Some(Current { dir: pulled.dir, artifact: Some(artifact) });
                if source.reference.pinned().is_some() {
                    // A digest names content that never changes.
                    return;
                }
            }
            Err(e) => {
                count.failures += 1;
                drop(count);
                let message = e.to_string();
                if last_problem.as_ref() != Some(&message) {
                    log(&format!("pull of `{}` failed, keeping what is in force: {message}", source.reference));
                    last_problem = Some(message);
                }
            }
        }
        let until = Instant::now() + source.interval;
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if now >= until {
                break;
            }
            std::thread::park_timeout(until - now);
        }
    }
}
