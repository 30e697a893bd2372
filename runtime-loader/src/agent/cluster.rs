//! The live cluster as the agent binds it ([`ClusterView`]), and where it
//! comes from ([`ClusterSource`]): `--cluster DIR`, manifests in the format
//! `policyc compile` reads (Pods, Namespaces, Nodes, as `kubectl get
//! pods,namespaces,nodes -A -o yaml` prints them), read and lowered by the
//! compiler's own front end; or `--cluster kube`, the Kubernetes API
//! ([`super::kube`]). Either way each pod's identity labels are exactly
//! the compiler's (Cilium's label filter, namespace labels, service
//! account: `policyc::lower::identity_labels`), and everything after the
//! view is one code path.

#[cfg(feature = "kube")]
use super::kube::Shared;
use super::watch::{self, Watched};
use policyc::diag::Diagnostic;
use policyc_ir::cluster::EndpointKind;
use policyc_ir::labels::Labels;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// A pod of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LivePod {
    /// `<ns>/<pod>`.
    pub name: String,
    /// The node it runs on.
    pub node: Option<String>,
    /// Its identity labels.
    pub labels: Labels,
    /// Its addresses (`status.podIPs`).
    pub ips: Vec<IpAddr>,
}

/// A node of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveNode {
    /// Its name.
    pub name: String,
    /// Its addresses (`status.addresses`).
    pub ips: Vec<IpAddr>,
}

/// Every pod and node of the cluster, by name, and the API server's
/// addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterView {
    /// The pods, in name order.
    pub pods: Vec<LivePod>,
    /// The nodes, in name order.
    pub nodes: Vec<LiveNode>,
    /// The ready addresses of Service `default/kubernetes` (the `kube`
    /// source only: a directory names none).
    pub apiserver: Vec<IpAddr>,
}

fn render(d: &Diagnostic) -> String {
    let l = &d.location;
    let mut at = l.file.clone().unwrap_or_else(|| "<input>".into());
    if let Some(pos) = l.pos {
        at = format!("{at}:{}:{}", pos.line, pos.col);
    }
    if let Some(object) = &l.object {
        at = format!("{at}: {object}");
    }
    if let Some(path) = &l.path {
        at = format!("{at}: {path}");
    }
    format!("{at}: {}", d.message)
}

impl ClusterView {
    /// Reads the manifests of `dir`; an input error refuses the whole
    /// directory (the caller keeps the view it had), naming every error.
    pub fn read(dir: &Path) -> Result<ClusterView, String> {
        let loaded = policyc::pipeline::load(&[dir.to_path_buf()]);
        if loaded.has_errors() {
            let errors: Vec<String> = loaded.diagnostics.iter().filter(|d| d.is_error()).map(render).collect();
            return Err(errors.join("; "));
        }
        let mut pods: Vec<LivePod> = loaded
            .lowered
            .cluster
            .endpoints
            .into_iter()
            .filter(|e| e.kind == EndpointKind::Pod)
            .map(|e| LivePod {
                name: format!("{}/{}", e.namespace, e.name),
                node: e.node,
                labels: e.labels,
                ips: e.ips,
            })
            .collect();
        pods.sort_by(|a, b| a.name.cmp(&b.name));
        let nodes = loaded.lowered.cluster.nodes.into_iter().map(|n| LiveNode { name: n.name, ips: n.ips }).collect();
        Ok(ClusterView { pods, nodes, apiserver: Vec::new() })
    }

    /// Pod `name`.
    pub fn pod(&self, name: &str) -> Option<&LivePod> {
        self.pods.binary_search_by(|p| p.name.as_str().cmp(name)).ok().map(|i| &self.pods[i])
    }
}

/// Where the live cluster comes from.
pub enum ClusterSource {
    /// A directory of manifests, polled.
    Directory {
        /// The directory.
        dir: PathBuf,
        /// What was last read of it.
        seen: Watched,
    },
    /// The Kubernetes API's watches.
    #[cfg(feature = "kube")]
    Kube(Shared),
}

impl ClusterSource {
    /// The view, if it changed since the last call (and can be read: an
    /// unreadable directory is logged once and the last view kept).
    pub fn poll(&mut self) -> Option<ClusterView> {
        match self {
            ClusterSource::Directory { dir, seen } => {
                let dir = &*dir;
                let read = || ClusterView::read(dir).map_err(|e| format!("cluster `{}` refused: {e}", dir.display()));
                seen.refresh(watch::tree_fingerprint(dir), read, "keeping the pods bound")
            }
            #[cfg(feature = "kube")]
            ClusterSource::Kube(shared) => shared.poll(),
        }
    }
}
