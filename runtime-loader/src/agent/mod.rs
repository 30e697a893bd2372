//! `policyc-loader run`: the node agent.
//!
//! Policy is compiled and reviewed ahead of time; addresses are bound live
//! on the node. The agent holds the compiled bundle ([`compiled`]), the
//! cluster's pods as a directory of manifests or the Kubernetes API shows
//! them ([`cluster`], [`kube`]), the node's own addresses
//! ([`node_addresses`]) and
//! the pod sandboxes the chained CNI plugin `policyc-cni` announced
//! ([`sandboxes`]); from them it builds the node's desired state
//! ([`binding`]) and puts it in force through the loader's atomic,
//! generation-flipping apply. One task owns all of it ([`controller`]):
//! it polls the bundle (a directory, or an OCI artifact pulled by
//! [`pull`], [`source`]) and the cluster directory ([`watch`]), answers the
//! plugin on a unix socket ([`server`]) once a pod's policy is in force,
//! batches the changes of a short window into one flip (bound and applied
//! on one thread, [`worker`]), and serves metrics ([`metrics`]).
//!
//! What is in force stays in force when the agent stops (SIGTERM, a crash,
//! `kill -9`): maps and links are pinned. A restarted agent re-reads the
//! kept sandboxes, binds the same state, finds it in force, and flips
//! nothing.

pub mod binding;
pub mod cluster;
pub mod compiled;
pub mod computed;
pub mod controller;
#[cfg(feature = "kube")]
pub mod kube;
pub mod metrics;
pub mod node_addresses;
#[cfg(feature = "oci")]
pub mod pull;
pub mod sandboxes;
pub mod server;
pub mod source;
pub mod watch;
pub mod worker;

use crate::paths::Paths;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Settings of the agent.
#[derive(Clone, Debug)]
pub struct AgentOptions {
    /// This node's name.
    pub node: String,
    /// The bundle: a directory, or an artifact in a registry.
    pub bundle: source::BundleSource,
    /// Where the live cluster comes from.
    pub cluster: ClusterOption,
    /// Where `agent.sock` is.
    pub socket: PathBuf,
    /// The loader's places (pins, record, kept sandboxes).
    pub paths: Paths,
    /// How often the bundle and the cluster are polled.
    pub poll: Duration,
    /// How long changes are gathered into one apply.
    pub batch: Duration,
    /// Where to serve metrics, if anywhere.
    pub metrics: Option<SocketAddr>,
    /// Log JSON objects rather than text.
    pub json_logs: bool,
    /// How new pods' programs are attached (`apply --attach`).
    pub attach: crate::kernel::Mechanism,
}

/// `--cluster`: `kube`, or a directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterOption {
    /// The Kubernetes API (in-cluster configuration, else the kubeconfig).
    Kube,
    /// A directory of manifests (`./kube` for one named `kube`).
    Directory(PathBuf),
}

impl std::str::FromStr for ClusterOption {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<ClusterOption, Self::Err> {
        Ok(if text == "kube" { ClusterOption::Kube } else { ClusterOption::Directory(PathBuf::from(text)) })
    }
}

impl AgentOptions {
    /// Where the bound sandboxes are kept.
    pub fn sandboxes_dir(&self) -> PathBuf {
        self.paths.state.join("sandboxes")
    }
}

/// Log lines as JSON objects (`--log-json`) rather than text.
static JSON_LOGS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Writes a log line on stderr: text, or with `--log-json` one JSON object
/// (`ts`: Unix seconds, `msg`) per line, as log collectors read them.
pub fn log(message: &str) {
    if JSON_LOGS.load(std::sync::atomic::Ordering::Relaxed) {
        let ts = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let line = serde_json::json!({ "ts": ts.as_secs_f64(), "component": "policyc-loader run", "msg": message });
        eprintln!("{line}");
    } else {
        eprintln!("policyc-loader run: {message}");
    }
}

/// Runs the agent until SIGTERM or SIGINT; what is in force stays.
pub fn run(options: AgentOptions) -> Result<(), String> {
    JSON_LOGS.store(options.json_logs, std::sync::atomic::Ordering::Relaxed);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async move {
        let health = Arc::new(Mutex::new(controller::Health::default()));
        let listener = server::bind(&options.socket)?;
        if let Some(address) = options.metrics {
            let http = tokio::net::TcpListener::bind(address)
                .await
                .map_err(|e| format!("cannot serve metrics on `{address}`: {e}"))?;
            tokio::spawn(metrics::serve(http, health.clone()));
        }
        let socket = options.socket.clone();
        let source = match &options.cluster {
            ClusterOption::Directory(dir) => {
                cluster::ClusterSource::Directory { dir: dir.clone(), seen: watch::Watched::default() }
            }
            #[cfg(feature = "kube")]
            ClusterOption::Kube => cluster::ClusterSource::Kube(kube::connect(&options.node).await?),
            #[cfg(not(feature = "kube"))]
            ClusterOption::Kube => return Err("`--cluster kube`: built without the `kube` feature".into()),
        };
        let controller = controller::Controller::new(options, source, health)?;
        let (calls_tx, calls_rx) = tokio::sync::mpsc::channel(1024);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(server::serve(listener, calls_tx));
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| format!("cannot watch SIGTERM: {e}"))?;
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            let _ = stop_tx.send(());
        });
        log(&format!("listening on `{}`", socket.display()));
        controller.run(calls_rx, stop_rx).await;
        // Plugins that come now find no agent and are told to retry.
        let _ = std::fs::remove_file(&socket);
        log("stopping; everything in force stays in force");
        Ok(())
    })
}
