//! The live cluster as the agent reads it from `--cluster DIR`: manifests
//! in the format `policyc compile` reads (Pods, Namespaces, Nodes, as
//! `kubectl get pods,namespaces,nodes -A -o yaml` prints them), read and
//! lowered by the compiler's own front end, so each pod's identity labels
//! are exactly the compiler's (Cilium's label filter, namespace labels,
//! service account: `policyc::lower::identity_labels`).

use policyc::diag::Diagnostic;
use policyc_ir::cluster::EndpointKind;
use policyc_ir::labels::Labels;
use std::net::IpAddr;
use std::path::Path;

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

/// Every pod of the cluster, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterView {
    /// The pods, in name order.
    pub pods: Vec<LivePod>,
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
        Ok(ClusterView { pods })
    }

    /// Pod `name`.
    pub fn pod(&self, name: &str) -> Option<&LivePod> {
        self.pods.binary_search_by(|p| p.name.as_str().cmp(name)).ok().map(|i| &self.pods[i])
    }
}
