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
use policyc_ir::cluster::{EndpointKind, NamedPort};
use policyc_ir::labels::Labels;
use std::collections::HashSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A pod of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LivePod {
    /// `<ns>/<pod>`.
    pub name: String,
    /// The node it runs on (shared by its node's pods: [`Interner`]).
    pub node: Option<Arc<str>>,
    /// Its identity labels (shared by every pod of its label set:
    /// [`Interner`]).
    pub labels: Arc<Labels>,
    /// Its addresses (`status.podIPs`).
    pub ips: Vec<IpAddr>,
    /// Its named container ports.
    pub named_ports: Vec<NamedPort>,
}

/// [`ClusterView::to_wire`]'s form.
#[derive(serde::Serialize)]
struct Wire<'a> {
    label_sets: Vec<&'a Labels>,
    nodes: Vec<(&'a str, &'a [IpAddr])>,
    apiserver: Option<&'a [IpAddr]>,
    pods: Vec<WirePod<'a>>,
}

/// A pod in [`Wire`]: its label set by number.
#[derive(serde::Serialize)]
struct WirePod<'a> {
    name: &'a str,
    node: Option<&'a str>,
    labels: usize,
    ips: &'a [IpAddr],
    named_ports: &'a [NamedPort],
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
    /// The ready addresses of Service `default/kubernetes` (its
    /// EndpointSlices, or its legacy Endpoints in a directory), if the
    /// source names them: they replace the bundle's `kube-apiserver`
    /// entries, so identity 7 follows the API server live. `None` (a
    /// directory without them) keeps the bundle's entries as compiled.
    pub apiserver: Option<Vec<IpAddr>>,
}

/// One shared copy of each label set and node name: 150 000 pods have a
/// few hundred label sets and a few thousand nodes, and a label set is a
/// tree of strings (about a kilobyte), so the view holds each once.
#[derive(Debug, Default)]
pub struct Interner {
    labels: HashSet<Arc<Labels>>,
    nodes: HashSet<Arc<str>>,
}

impl Interner {
    /// The shared copy of `labels`.
    pub fn labels(&mut self, labels: Labels) -> Arc<Labels> {
        if let Some(shared) = self.labels.get(&labels) {
            return Arc::clone(shared);
        }
        let shared = Arc::new(labels);
        self.labels.insert(Arc::clone(&shared));
        shared
    }

    /// Forgets what only the interner still holds (label sets and nodes
    /// no pod has any more), so that churn does not grow it.
    pub fn prune(&mut self) {
        self.labels.retain(|l| Arc::strong_count(l) > 1);
        self.nodes.retain(|n| Arc::strong_count(n) > 1);
    }

    /// The shared copy of node name `name`.
    pub fn node(&mut self, name: &str) -> Arc<str> {
        if let Some(shared) = self.nodes.get(name) {
            return Arc::clone(shared);
        }
        let shared: Arc<str> = Arc::from(name);
        self.nodes.insert(Arc::clone(&shared));
        shared
    }
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
        let mut interner = Interner::default();
        let cluster = loaded.lowered.cluster;
        let mut pods: Vec<LivePod> = cluster
            .endpoints
            .into_iter()
            .filter(|e| e.kind == EndpointKind::Pod)
            .map(|e| LivePod {
                name: format!("{}/{}", e.namespace, e.name),
                node: e.node.as_deref().map(|n| interner.node(n)),
                labels: interner.labels(e.labels),
                ips: e.ips,
                named_ports: e.named_ports,
            })
            .collect();
        pods.sort_by(|a, b| a.name.cmp(&b.name));
        let nodes = cluster.nodes.into_iter().map(|n| LiveNode { name: n.name, ips: n.ips }).collect();
        // The compiler lowers `default/kubernetes`'s EndpointSlices (or
        // Endpoints) to the API server's ready addresses; a directory
        // without them says nothing about the API server.
        let apiserver = (!cluster.apiserver.is_empty()).then_some(cluster.apiserver);
        Ok(ClusterView { pods, nodes, apiserver })
    }

    /// [`ClusterView::read`] in a child process (`policyc-loader
    /// read-cluster DIR`, this same binary), the view coming back in a
    /// compact form ([`ClusterView::to_wire`]). The compiler's front end
    /// holds every document of the directory at once (at 150 000 pods about
    /// a gigabyte for a moment), on several threads; glibc kept almost all
    /// of it resident in the agent after it was freed (measured: 867 MB
    /// held by the allocator, 29 MB in use). A child gives it all back when
    /// it exits, and a front end that failed on bad input fails alone.
    pub fn read_apart(dir: &Path) -> Result<ClusterView, String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find this program to read the cluster: {e}"))?;
        let out = std::process::Command::new(exe)
            .arg("read-cluster")
            .arg(dir)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("cannot start the cluster reader: {e}"))?;
        if !out.status.success() {
            let text = String::from_utf8_lossy(&out.stderr);
            return Err(text.trim().trim_start_matches("error: ").to_string());
        }
        ClusterView::from_wire(&out.stdout)
    }

    /// The view as `read-cluster` prints it: each label set and node name
    /// once, pods naming them by number.
    pub fn to_wire(&self) -> String {
        let mut sets: std::collections::HashMap<*const Labels, usize> = std::collections::HashMap::new();
        let mut label_sets = Vec::new();
        let pods = self
            .pods
            .iter()
            .map(|p| {
                let labels = *sets.entry(Arc::as_ptr(&p.labels)).or_insert_with(|| {
                    label_sets.push(&*p.labels);
                    label_sets.len() - 1
                });
                WirePod { name: &p.name, node: p.node.as_deref(), labels, ips: &p.ips, named_ports: &p.named_ports }
            })
            .collect();
        let nodes = self.nodes.iter().map(|n| (n.name.as_str(), n.ips.as_slice())).collect();
        let wire = Wire { label_sets, nodes, apiserver: self.apiserver.as_deref(), pods };
        serde_json::to_string(&wire).unwrap_or_default()
    }

    /// Reads [`ClusterView::to_wire`]'s text.
    pub fn from_wire(text: &[u8]) -> Result<ClusterView, String> {
        #[derive(serde::Deserialize)]
        struct Pod {
            name: String,
            node: Option<String>,
            labels: usize,
            ips: Vec<IpAddr>,
            named_ports: Vec<NamedPort>,
        }
        #[derive(serde::Deserialize)]
        struct Owned {
            label_sets: Vec<Labels>,
            nodes: Vec<(String, Vec<IpAddr>)>,
            apiserver: Option<Vec<IpAddr>>,
            pods: Vec<Pod>,
        }
        let wire: Owned = serde_json::from_slice(text).map_err(|e| format!("the cluster reader's answer: {e}"))?;
        let sets: Vec<Arc<Labels>> = wire.label_sets.into_iter().map(Arc::new).collect();
        let mut interner = Interner::default();
        let pods = wire
            .pods
            .into_iter()
            .map(|p| {
                let labels =
                    sets.get(p.labels).cloned().ok_or("the cluster reader's answer: a bad label set number")?;
                let node = p.node.as_deref().map(|n| interner.node(n));
                Ok(LivePod { name: p.name, node, labels, ips: p.ips, named_ports: p.named_ports })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let nodes = wire.nodes.into_iter().map(|(name, ips)| LiveNode { name, ips }).collect();
        Ok(ClusterView { pods, nodes, apiserver: wire.apiserver })
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
                let read =
                    || ClusterView::read_apart(dir).map_err(|e| format!("cluster `{}` refused: {e}", dir.display()));
                seen.refresh(watch::tree_fingerprint(dir), read, "keeping the pods bound")
            }
            #[cfg(feature = "kube")]
            ClusterSource::Kube(shared) => shared.poll(),
        }
    }
}
