//! `--cluster kube`: the live cluster from the Kubernetes API, through
//! kube-rs watchers, reduced to the same [`ClusterView`] the directory
//! source reads, so that everything after the source is one code path.
//!
//! Five watches (list, then watch from the list's resource version; kube-rs
//! re-lists when the version is gone, and backs off while the API server
//! is away, keeping what it had):
//!
//! - this node's pods (field selector `spec.nodeName=NODE`) and every other
//!   pod (`spec.nodeName!=NODE`): disjoint, together every pod;
//! - namespaces (their labels are part of each pod's identity);
//! - nodes (their addresses are `host` here and `remote-node` elsewhere);
//! - the EndpointSlices of Service `default/kubernetes` (label
//!   `kubernetes.io/service-name=kubernetes`): the API server's addresses,
//!   the `kube-apiserver` entity.
//!
//! The reducer ([`KubeState`]) keeps only what binding needs of each
//! object (a pod's labels, service account, node, addresses; a namespace's
//! labels; a node's addresses; a slice's ready addresses), not the objects:
//! memory grows with the cluster's pods, not with their specs. A pod's
//! identity labels are computed by the compiler's own function
//! ([`policyc::lower::identity_labels`]), as for the directory source.
//! What a pod contributes follows the compiler's reading of a Pod
//! manifest: addresses from `status.podIPs` and `status.podIP`, the
//! service account from `spec.serviceAccountName` (else the deprecated
//! `serviceAccount`), host-network pods left out (their traffic is their
//! node's). Pods in phase `Succeeded` or `Failed` are left out as well:
//! their containers have ended and their sandbox is torn down, so the
//! address may already be another pod's (Kubernetes, "Pod Lifecycle":
//! <https://kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/>).
//!
//! A view is published only once every watch has listed (so the agent's
//! `/readyz` means "the first cluster list is bound", as with a directory)
//! and then after every change; the controller takes the newest.

use super::cluster::{ClusterView, Interner, LiveNode, LivePod};
use super::log;
use futures_util::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, ResourceExt};
use policyc_ir::cluster::NamedPort;
use policyc_ir::labels::Labels;
use policyc_ir::protocol::Protocol;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::watch as channel;

/// What the agent keeps of a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRecord {
    /// `spec.nodeName`.
    pub node: Option<String>,
    /// `metadata.labels`, as given (shared by the pods that have the same:
    /// a workload's replicas).
    pub labels: Arc<Labels>,
    /// `spec.serviceAccountName` (or `serviceAccount`).
    pub service_account: Option<String>,
    /// `status.podIPs`, then `status.podIP`, each once.
    pub ips: Vec<IpAddr>,
    /// The containers' named ports, sorted, each once (protocol TCP when
    /// not given, as the API defaults it).
    pub named_ports: Vec<NamedPort>,
}

impl PodRecord {
    /// This record with its labels shared with the pods that have the same.
    fn interned(self, interner: &mut Interner) -> PodRecord {
        let labels = Arc::try_unwrap(self.labels).unwrap_or_else(|shared| (*shared).clone());
        PodRecord { labels: interner.labels(labels), ..self }
    }
}

/// Parses `text` as an address; anything else is not one (the API server
/// validates addresses; a bad one is skipped, never a failure).
fn ip(text: &str) -> Option<IpAddr> {
    text.parse().ok()
}

/// What binding needs of `pod`, or `None` when it is no endpoint (host
/// network, or its containers have ended).
pub fn pod_record(pod: &Pod) -> Option<PodRecord> {
    let spec = pod.spec.as_ref();
    if spec.and_then(|s| s.host_network).unwrap_or(false) {
        return None;
    }
    let status = pod.status.as_ref();
    if matches!(status.and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed")) {
        return None;
    }
    let mut ips = Vec::new();
    let listed = status.and_then(|s| s.pod_ips.as_ref()).into_iter().flatten().map(|p| p.ip.as_str());
    for address in listed.chain(status.and_then(|s| s.pod_ip.as_deref())).filter_map(ip) {
        if !ips.contains(&address) {
            ips.push(address);
        }
    }
    let mut named_ports: Vec<NamedPort> = spec
        .into_iter()
        .flat_map(|s| &s.containers)
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let port = u16::try_from(p.container_port).ok()?;
            let protocol = Protocol::parse(p.protocol.as_deref().unwrap_or("TCP"))?;
            Some(NamedPort { name: p.name.clone()?, protocol, port })
        })
        .collect();
    named_ports.sort();
    named_ports.dedup();
    Some(PodRecord {
        named_ports,
        node: spec.and_then(|s| s.node_name.clone()),
        labels: Arc::new(Labels::from_pairs(pod.labels().iter().map(|(k, v)| (k.clone(), v.clone())))),
        service_account: spec.and_then(|s| s.service_account_name.clone().or_else(|| s.service_account.clone())),
        ips,
    })
}

/// A node's addresses (`status.addresses`; host names left out).
pub fn node_addresses(node: &Node) -> Vec<IpAddr> {
    let listed = node.status.as_ref().and_then(|s| s.addresses.as_ref()).into_iter().flatten();
    let mut ips: Vec<IpAddr> = listed.filter_map(|a| ip(&a.address)).collect();
    ips.sort();
    ips.dedup();
    ips
}

/// A slice's ready addresses (`conditions.ready` unset counts as ready, as
/// the API documents; `FQDN` slices hold names, not addresses).
pub fn slice_addresses(slice: &EndpointSlice) -> Vec<IpAddr> {
    if slice.address_type == "FQDN" {
        return Vec::new();
    }
    let ready = slice.endpoints.iter().filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true));
    let mut ips: Vec<IpAddr> = ready.flat_map(|e| e.addresses.iter()).filter_map(|a| ip(a)).collect();
    ips.sort();
    ips.dedup();
    ips
}

/// One watched kind: what is known by key, and the buffer of a list in
/// progress (which replaces it whole when the list is done: objects
/// deleted while the watch was away are gone then).
#[derive(Debug)]
pub struct Known<T> {
    objects: BTreeMap<String, T>,
    listing: Option<BTreeMap<String, T>>,
    listed: bool,
}

impl<T> Default for Known<T> {
    fn default() -> Self {
        Known { objects: BTreeMap::new(), listing: None, listed: false }
    }
}

impl<T: PartialEq> Known<T> {
    /// Applies `event`, keyed by `key` and reduced by `reduce` (`None`:
    /// not kept, as a deletion); whether what is known changed.
    pub fn apply<K>(
        &mut self,
        event: Event<K>,
        key: impl Fn(&K) -> String,
        mut reduce: impl FnMut(&K) -> Option<T>,
    ) -> bool {
        match event {
            Event::Init => {
                self.listing = Some(BTreeMap::new());
                false
            }
            Event::InitApply(object) => {
                if let (Some(listing), Some(value)) = (self.listing.as_mut(), reduce(&object)) {
                    listing.insert(key(&object), value);
                }
                false
            }
            Event::InitDone => {
                let listed = self.listing.take().unwrap_or_default();
                let changed = !self.listed || listed != self.objects;
                self.objects = listed;
                self.listed = true;
                changed
            }
            Event::Apply(object) => {
                let key = key(&object);
                match reduce(&object) {
                    Some(value) => {
                        let changed = self.objects.get(&key) != Some(&value);
                        self.objects.insert(key, value);
                        changed
                    }
                    None => self.objects.remove(&key).is_some(),
                }
            }
            Event::Delete(object) => self.objects.remove(&key(&object)).is_some(),
        }
    }
}

fn namespaced<K: ResourceExt>(object: &K) -> String {
    format!("{}/{}", object.namespace().unwrap_or_default(), object.name_any())
}

fn cluster_scoped<K: ResourceExt>(object: &K) -> String {
    object.name_any()
}

/// The cluster as the watches have shown it.
#[derive(Debug, Default)]
pub struct KubeState {
    /// This node's pods by `<ns>/<name>`.
    pub local_pods: Known<PodRecord>,
    /// The other pods (other nodes', unscheduled) by `<ns>/<name>`.
    pub other_pods: Known<PodRecord>,
    /// Namespaces' labels by name.
    pub namespaces: Known<Labels>,
    /// Nodes' addresses by name.
    pub nodes: Known<Vec<IpAddr>>,
    /// `default/kubernetes`'s ready addresses by slice.
    pub apiserver: Known<Vec<IpAddr>>,
    /// One copy of each pod label set and node name.
    interner: Interner,
}

/// An event of one of the watches.
#[derive(Debug)]
pub enum Update {
    /// Of this node's pods.
    LocalPod(Event<Pod>),
    /// Of the other pods.
    OtherPod(Event<Pod>),
    /// Of namespaces.
    Namespace(Event<Namespace>),
    /// Of nodes.
    Node(Event<Node>),
    /// Of `default/kubernetes`'s EndpointSlices.
    ApiServer(Event<EndpointSlice>),
}

fn namespace_labels(n: &Namespace) -> Option<Labels> {
    Some(Labels::from_pairs(n.labels().iter().map(|(k, v)| (k.clone(), v.clone()))))
}

impl KubeState {
    /// Applies `update`; whether what is known changed.
    pub fn apply(&mut self, update: Update) -> bool {
        match update {
            Update::LocalPod(event) => {
                let interner = &mut self.interner;
                self.local_pods.apply(event, namespaced, |p| pod_record(p).map(|r| r.interned(interner)))
            }
            Update::OtherPod(event) => {
                let interner = &mut self.interner;
                self.other_pods.apply(event, namespaced, |p| pod_record(p).map(|r| r.interned(interner)))
            }
            Update::Namespace(event) => self.namespaces.apply(event, cluster_scoped, namespace_labels),
            Update::Node(event) => self.nodes.apply(event, cluster_scoped, |n| Some(node_addresses(n))),
            Update::ApiServer(event) => self.apiserver.apply(event, namespaced, |s| Some(slice_addresses(s))),
        }
    }

    /// Every watch has listed at least once.
    pub fn listed(&self) -> bool {
        self.local_pods.listed
            && self.other_pods.listed
            && self.namespaces.listed
            && self.nodes.listed
            && self.apiserver.listed
    }

    /// The view binding reads: every pod with its identity labels (the
    /// compiler's), the nodes, the API server's addresses.
    pub fn view(&mut self) -> ClusterView {
        // The watches are disjoint; while a pod moves from one to the
        // other (scheduled here), this node's watch says where it is.
        let mut records: BTreeMap<&String, &PodRecord> = self.other_pods.objects.iter().collect();
        records.extend(self.local_pods.objects.iter());
        // Identity labels are computed once per namespace, label set and
        // service account (label sets are shared, so the pointer names
        // one), not once per pod.
        let mut identity: std::collections::HashMap<(&str, *const Labels, Option<&str>), Arc<Labels>> =
            std::collections::HashMap::new();
        let interner = &mut self.interner;
        let pods = records
            .into_iter()
            .map(|(name, r)| {
                let namespace = name.split_once('/').map_or("", |(ns, _)| ns);
                let key = (namespace, Arc::as_ptr(&r.labels), r.service_account.as_deref());
                let labels = identity
                    .entry(key)
                    .or_insert_with(|| {
                        interner.labels(policyc::lower::identity_labels(
                            namespace,
                            &r.labels,
                            self.namespaces.objects.get(namespace),
                            r.service_account.as_deref(),
                        ))
                    })
                    .clone();
                LivePod {
                    name: name.clone(),
                    node: r.node.as_deref().map(|n| interner.node(n)),
                    labels,
                    ips: r.ips.clone(),
                    named_ports: r.named_ports.clone(),
                }
            })
            .collect();
        let nodes =
            self.nodes.objects.iter().map(|(name, ips)| LiveNode { name: name.clone(), ips: ips.clone() }).collect();
        let mut apiserver: Vec<IpAddr> = self.apiserver.objects.values().flatten().copied().collect();
        apiserver.sort();
        apiserver.dedup();
        drop(identity);
        self.interner.prune();
        // Once listed, the API says where the API server is, even nowhere.
        ClusterView { pods, nodes, apiserver: Some(apiserver) }
    }
}

/// The reduced cluster, shared between the task that applies the watches'
/// events and the controller, which builds a view from it at most once a
/// poll: a burst of events costs one view, not one each.
#[derive(Clone)]
pub struct Shared {
    state: Arc<Mutex<KubeState>>,
    changes: channel::Receiver<u64>,
}

impl Shared {
    /// The view, if every watch has listed and something changed since the
    /// last call.
    pub fn poll(&mut self) -> Option<ClusterView> {
        if !self.changes.has_changed().unwrap_or(false) {
            return None;
        }
        self.changes.mark_unchanged();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.listed().then(|| state.view())
    }
}

/// Applies `updates` to a new state for ever, counting changes; returns the
/// shared state. Errors of a watch (the API server away, a refused list)
/// are logged once each until it recovers; kube-rs retries with backoff and
/// what is known stays.
pub fn start<S>(updates: S) -> Shared
where
    S: Stream<Item = Result<Update, watcher::Error>> + Send + 'static,
{
    let state = Arc::new(Mutex::new(KubeState::default()));
    let (tx, changes) = channel::channel(0u64);
    let shared = Shared { state: state.clone(), changes };
    tokio::spawn(async move {
        let mut updates = std::pin::pin!(updates);
        let mut last_error: Option<String> = None;
        while let Some(update) = updates.next().await {
            match update {
                Err(e) => {
                    let message = e.to_string();
                    if last_error.as_ref() != Some(&message) {
                        log(&format!("kube: a watch failed, keeping what is known (retrying): {message}"));
                        last_error = Some(message);
                    }
                }
                Ok(update) => {
                    last_error = None;
                    let changed = state.lock().unwrap_or_else(PoisonError::into_inner).apply(update);
                    if changed {
                        tx.send_modify(|n| *n += 1);
                    }
                }
            }
        }
    });
    shared
}

/// The five watches of node `node` through `client`, as one stream.
pub fn watches(client: Client, node: &str) -> impl Stream<Item = Result<Update, watcher::Error>> + Send {
    let config = watcher::Config::default;
    let pods: Api<Pod> = Api::all(client.clone());
    let local = watcher::watcher(pods.clone(), config().fields(&format!("spec.nodeName={node}")))
        .default_backoff()
        .map(|e| e.map(Update::LocalPod));
    let other = watcher::watcher(pods, config().fields(&format!("spec.nodeName!={node}")))
        .default_backoff()
        .map(|e| e.map(Update::OtherPod));
    let namespaces = watcher::watcher(Api::<Namespace>::all(client.clone()), config())
        .default_backoff()
        .map(|e| e.map(Update::Namespace));
    let nodes =
        watcher::watcher(Api::<Node>::all(client.clone()), config()).default_backoff().map(|e| e.map(Update::Node));
    let slices = watcher::watcher(
        Api::<EndpointSlice>::namespaced(client, "default"),
        config().labels("kubernetes.io/service-name=kubernetes"),
    )
    .default_backoff()
    .map(|e| e.map(Update::ApiServer));
    futures_util::stream::select_all([local.boxed(), other.boxed(), namespaces.boxed(), nodes.boxed(), slices.boxed()])
}

/// Connects to the API server (in-cluster configuration, else the
/// kubeconfig) and starts the watches of node `node`.
pub async fn connect(node: &str) -> Result<Shared, String> {
    let client = Client::try_default().await.map_err(|e| format!("cannot reach the Kubernetes API: {e}"))?;
    Ok(start(watches(client, node)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodIP, PodSpec, PodStatus};
    use kube::api::ObjectMeta;

    fn pod(name: &str, phase: &str, ips: &[&str]) -> Pod {
        Pod {
            metadata: ObjectMeta { name: Some(name.into()), namespace: Some("web".into()), ..ObjectMeta::default() },
            spec: Some(PodSpec { node_name: Some("n1".into()), ..PodSpec::default() }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                pod_ip: ips.first().map(|s| s.to_string()),
                pod_ips: Some(ips.iter().map(|s| PodIP { ip: s.to_string() }).collect()),
                ..PodStatus::default()
            }),
        }
    }

    #[test]
    fn a_relist_replaces_what_was_known_and_counts_as_one_change() {
        let mut w: Known<PodRecord> = Known::default();
        let apply = |w: &mut Known<PodRecord>, e| w.apply(e, namespaced, pod_record);
        assert!(!apply(&mut w, Event::Init));
        assert!(!apply(&mut w, Event::InitApply(pod("a", "Running", &["10.200.1.1"]))));
        assert!(!apply(&mut w, Event::InitApply(pod("b", "Running", &["10.200.1.2"]))));
        assert!(apply(&mut w, Event::InitDone), "the first list is a change");
        assert!(!apply(&mut w, Event::Apply(pod("a", "Running", &["10.200.1.1"]))), "the same again");
        assert!(apply(&mut w, Event::Apply(pod("a", "Succeeded", &["10.200.1.1"]))), "ended: gone");
        assert_eq!(w.objects.keys().collect::<Vec<_>>(), ["web/b"]);
        // The watch was away: a new list without `b` deletes it.
        apply(&mut w, Event::Init);
        apply(&mut w, Event::InitApply(pod("c", "Running", &["10.200.1.3", "10.200.1.3"])));
        assert!(apply(&mut w, Event::InitDone));
        assert_eq!(w.objects.keys().collect::<Vec<_>>(), ["web/c"]);
        assert_eq!(w.objects["web/c"].ips, ["10.200.1.3".parse::<IpAddr>().unwrap()], "each address once");
        apply(&mut w, Event::Init);
        apply(&mut w, Event::InitApply(pod("c", "Running", &["10.200.1.3"])));
        assert!(!apply(&mut w, Event::InitDone), "the same list again changes nothing");
        assert!(apply(&mut w, Event::Delete(pod("c", "Running", &[]))));
        assert!(!apply(&mut w, Event::Delete(pod("c", "Running", &[]))));
    }
}
