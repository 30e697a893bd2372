//! Live binding: the desired state of the node from the compiled policy
//! and the live pods.
//!
//! The bundle fixes identities (label sets), the policy of each identity
//! and the CIDR and node entries of the ipcache; the live side says which
//! address has which identity and which local interface is which
//! endpoint. So:
//!
//! - every pod of the cluster with addresses and a label set the bundle
//!   knows puts `/32` (`/128`) ipcache entries with that identity;
//! - every address of the node itself ([`node_addresses`]) is `host`, so
//!   the pod's own node may always reach it (kubelet's probes); so are
//!   this node's live `Node` addresses, the other nodes' are
//!   `remote-node`, the API server's `kube-apiserver` (after the bundle's
//!   own entries, which stay as compiled); these win over a pod's address;
//! - every local pod (a sandbox the CNI plugin bound, or a pod of this
//!   node whose address has an exact `/32` (`/128`) host route: never a
//!   broader route, which would be the node's uplink) becomes an endpoint
//!   on its host-side interface, with the policy and program settings of
//!   the bundle's endpoint of the same identity (of the same name first,
//!   whose named ports are the pod's);
//! - a pod whose label set the bundle does not know, or a local pod whose
//!   identity has no policy in this node's bundle, gets its identity and
//!   policy computed on the node from the bundle's normalized policy
//!   ([`super::computed`]), and the local pods whose policies select such
//!   an identity gain its entries; these identities are reported;
//! - a local pod whose labels are not known yet, or one the node cannot
//!   compute (a bundle without normalized policy, the range of
//!   node-computed identities full) is **held default-deny**: the `init`
//!   identity, which Cilium
//!   gives an endpoint whose labels it cannot determine yet
//!   (<https://docs.cilium.io/en/latest/security/policy/lifecycle/>,
//!   "Init Identity"), enforcement on in both directions and no policy
//!   entry, so nothing passes; and it is reported.
//!
//! Binding is a pure function of its inputs, and so is the hash of what it
//! builds: a restarted agent that binds the same pods finds its state in
//! force already, and applies nothing.

use super::cluster::ClusterView;
use super::compiled::{Compiled, Template};
use super::computed::{Computed, PodInput};
use super::node_addresses;
use super::sandboxes::Sandboxes;
use crate::bundle::Bundle;
use crate::desired::DesiredState;
use crate::entries::address_bytes;
use crate::manifest::BundleEndpoint;
use crate::route::{self, Route};
use policyc_ebpf::abi::{
    EndpointKey, EndpointValue, IpcacheKey, IpcacheValue, PolicyKey, PolicyValue, DIR_EGRESS, DIR_INGRESS,
    ENDPOINT_ENFORCE_EGRESS, ENDPOINT_ENFORCE_INGRESS, IPCACHE_KEY_HEADER_BITS,
};
use policyc_ebpf::config::EndpointConfig;
use policyc_ir::identity::Identity;
use policyc_ir::labels::Labels;
use policyc_ir::normalized::is_node_computed;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

/// What the node looks like: its exact host routes, its interfaces and
/// its own addresses.
#[derive(Clone, Debug, Default)]
pub struct Host {
    /// Routes of the main table (only `/32` and `/128` ones are used).
    pub routes: Vec<Route>,
    /// Interface names.
    pub interfaces: BTreeSet<String>,
    /// The node's own addresses ([`node_addresses`]): `host` in the
    /// ipcache.
    pub addresses: BTreeSet<IpAddr>,
}

impl Host {
    /// This process's network namespace.
    pub fn read() -> std::io::Result<Host> {
        Ok(Host {
            routes: route::host_routes()?,
            interfaces: route::host_interfaces()?,
            addresses: node_addresses::read()?,
        })
    }

    /// The interface of the exact host route to `ip`.
    fn exact_interface(&self, ip: IpAddr) -> Option<String> {
        route::interface_for(&self.routes, ip).ok().map(str::to_string)
    }
}

/// A local pod held default-deny, and why.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Held {
    /// `<ns>/<pod>`.
    pub pod: String,
    /// Why its policy is not the bundle's.
    pub reason: String,
}

/// An identity computed on the node: not in the reviewed bundle.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct ComputedIdentity {
    /// The number ([`policyc_ir::normalized::NODE_COMPUTED_MIN`] and up).
    pub identity: u32,
    /// Its label set, as `identities.txt` writes one.
    pub labels: String,
    /// The pods (`<ns>/<pod>`) that have it.
    pub pods: Vec<String>,
    /// Always true: computed on the node, not in the reviewed bundle.
    pub computed_on_node: bool,
}

/// The desired state of the node, and what binding found.
#[derive(Clone, Debug)]
pub struct Binding {
    /// What to apply (its manifest's hash covers the bundle and the
    /// binding).
    pub desired: DesiredState,
    /// Host-side interface of each local endpoint.
    pub interfaces: BTreeMap<String, String>,
    /// Local pods held default-deny.
    pub held: Vec<Held>,
    /// Local pods not bound at all (no interface), and why.
    pub unbound: Vec<Held>,
    /// Cluster pods whose addresses are not in the ipcache, and why.
    pub not_in_ipcache: Vec<Held>,
    /// Container ids of the sandboxes this state binds.
    pub sandboxes: BTreeSet<String>,
    /// Identities computed on the node, in number order.
    pub computed: Vec<ComputedIdentity>,
}

impl Binding {
    /// Local endpoints bound.
    pub fn endpoints(&self) -> usize {
        self.desired.endpoints().len()
    }
}

struct Local {
    addresses: Vec<IpAddr>,
    interface: String,
    sandbox: Option<String>,
}

/// The policy a local pod takes.
enum Model<'a> {
    /// A bundle endpoint's, with the entries of peers computed on the node.
    Compiled(u32, &'a Template, &'a [(PolicyKey, PolicyValue)]),
    /// Computed on the node.
    Computed(&'a super::computed::Model),
}

/// The identity of local pod `name` and the policy it takes, or why it is
/// held.
fn model<'a>(
    compiled: &'a Compiled,
    computed: Option<&'a Computed>,
    cluster: &ClusterView,
    name: &str,
) -> Result<Model<'a>, String> {
    let pod =
        cluster.pod(name).ok_or_else(|| "its labels are not known yet (not in the cluster source)".to_string())?;
    let on_node = computed.and_then(|c| c.models.get(name));
    let compiled_identity = compiled.identity(pod);
    if let Some(identity) = compiled_identity {
        if let Some(template) = compiled.template(identity, name) {
            let peers = on_node.map_or(&[][..], |m| m.computed_peers.as_slice());
            return Ok(Model::Compiled(identity, template, peers));
        }
    }
    if let Some(m) = on_node {
        return Ok(Model::Computed(m));
    }
    if let Some(error) = computed.and_then(|c| c.error.as_ref()) {
        return Err(format!("its policy cannot be computed on the node: {error}"));
    }
    Err(match (compiled_identity, &compiled.normalized) {
        (_, None) if compiled_identity.is_none() => format!(
            "its label set `{}` is not in the bundle (which has no normalized policy to compute it from)",
            pod.labels
        ),
        (Some(identity), None) => format!(
            "identity {identity} has no policy in this node's bundle (no endpoint of it compiled with addresses)"
        ),
        _ => {
            format!("its label set `{}` is not in the bundle and the node-computed identities are used up", pod.labels)
        }
    })
}

/// The pods whose identity or policy the node computes: every pod whose
/// label set the bundle does not know (a remote one once per label set and
/// named ports), and every local pod whenever there is one such label set
/// (its policies may select it) or its identity has no compiled model.
fn node_inputs(
    compiled: &Compiled,
    cluster: &ClusterView,
    identities: &[Option<u32>],
    local: &BTreeMap<String, Local>,
) -> Vec<PodInput> {
    let mut inputs = BTreeSet::new();
    let mut any_unknown = false;
    for (pod, known) in cluster.pods.iter().zip(identities) {
        let is_local = local.contains_key(&pod.name);
        any_unknown |= known.is_none() && (is_local || !pod.ips.is_empty());
        if is_local || (known.is_none() && !pod.ips.is_empty()) {
            let without_model = known.is_none_or(|id| compiled.template(id, &pod.name).is_none());
            // Remote pods only matter by label set and named ports: the
            // inputs (and so the cache) do not change with their names.
            let name = if is_local { pod.name.clone() } else { String::new() };
            inputs.insert((
                !is_local || without_model,
                PodInput { name, labels: (*pod.labels).clone(), named_ports: pod.named_ports.clone(), local: is_local },
            ));
        }
    }
    // Local pods with a compiled model are computed only for the peers
    // computed on the node.
    inputs.into_iter().filter(|(needed, _)| any_unknown || *needed).map(|(_, input)| input).collect()
}

/// `config` with the by-peer lookups that `entries` need.
fn with_peer_lookups(config: EndpointConfig, entries: &[(PolicyKey, PolicyValue)]) -> EndpointConfig {
    let has = |direction: u8| entries.iter().any(|(k, _)| k.direction == direction && k.peer_identity != 0);
    EndpointConfig {
        ingress_by_peer: config.ingress_by_peer || has(DIR_INGRESS),
        egress_by_peer: config.egress_by_peer || has(DIR_EGRESS),
        ..config
    }
}

fn ipcache_entry(ip: IpAddr, identity: u32) -> (IpcacheKey, IpcacheValue) {
    let (family, addr) = address_bytes(ip);
    let bits = if ip.is_ipv4() { 32 } else { 128 };
    (
        IpcacheKey { prefixlen: IPCACHE_KEY_HEADER_BITS + bits, generation: 0, family, pad: 0, addr },
        IpcacheValue { identity, flags: 0 },
    )
}

/// The hash of a bound state: the bundle's, the local endpoints and
/// interfaces, and the bytes of every entry as the kernel stores them,
/// streamed into the digest (a text of 150 000 entries would be tens of
/// megabytes made at every bind).
fn fingerprint(
    bundle: &str,
    endpoints: &[BundleEndpoint],
    interfaces: &BTreeMap<String, String>,
    ipcache: &[(IpcacheKey, IpcacheValue)],
    endpoint_entries: &[(EndpointKey, EndpointValue)],
    policy: &[(PolicyKey, PolicyValue)],
) -> String {
    let mut digest = Sha256::new();
    digest.update(format!("{bundle}\n{endpoints:?}\n{interfaces:?}\n").as_bytes());
    for (k, v) in ipcache {
        digest.update(k.prefixlen.to_le_bytes());
        digest.update(k.data());
        digest.update(v.to_bytes());
    }
    digest.update(b"\n");
    for (k, v) in endpoint_entries {
        digest.update(k.to_bytes());
        digest.update(v.to_bytes());
    }
    digest.update(b"\n");
    for (k, v) in policy {
        digest.update(k.prefixlen.to_le_bytes());
        digest.update(k.data());
        digest.update(v.to_bytes());
    }
    let hex: String = digest.finalize().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// The address of a `/32` (`/128`) ipcache entry (`None` for a shorter
/// prefix: a CIDR, not one address).
fn entry_address(key: &IpcacheKey) -> Option<IpAddr> {
    let v4: [u8; 4] = key.addr[..4].try_into().ok()?;
    let (v4, v6) = (IpAddr::from(v4), IpAddr::from(key.addr));
    let ip = if address_bytes(v4) == (key.family, key.addr) { v4 } else { v6 };
    let bits = if ip.is_ipv4() { 32 } else { 128 };
    (key.prefixlen == IPCACHE_KEY_HEADER_BITS + bits && address_bytes(ip) == (key.family, key.addr)).then_some(ip)
}

/// Binds the live pods to the compiled policy on `node`.
pub fn bind(compiled: &Compiled, cluster: &ClusterView, sandboxes: &Sandboxes, node: &str, host: &Host) -> Binding {
    let mut unbound = Vec::new();
    // Local pods: CNI sandboxes first, then this node's pods with an exact
    // host route.
    let mut local: BTreeMap<String, Local> = BTreeMap::new();
    for s in sandboxes.iter() {
        local.insert(
            s.pod_name(),
            Local {
                addresses: s.addresses.clone(),
                interface: s.interface.clone(),
                sandbox: Some(s.container_id.clone()),
            },
        );
    }
    for pod in cluster.pods.iter().filter(|p| p.node.as_deref() == Some(node) && !p.ips.is_empty()) {
        if local.contains_key(&pod.name) {
            continue;
        }
        match host.exact_interface(pod.ips[0]) {
            Some(interface) => {
                local.insert(pod.name.clone(), Local { addresses: pod.ips.clone(), interface, sandbox: None });
            }
            None => unbound.push(Held {
                pod: pod.name.clone(),
                reason: format!("no /32 or /128 host route to {} (and no CNI ADD)", pod.ips[0]),
            }),
        }
    }
    local.retain(|name, l| {
        let present = host.interfaces.contains(&l.interface);
        if !present {
            unbound.push(Held { pod: name.clone(), reason: format!("interface `{}` does not exist", l.interface) });
        }
        present
    });

    // Each cluster pod's compiled identity, looked up once per label set
    // (pods of one label set share it: [`super::cluster::Interner`]) unless
    // an admin rule splits the set, where addresses and ports decide.
    let mut by_set: HashMap<*const Labels, Option<u32>> = HashMap::new();
    let identities: Vec<Option<u32>> = cluster
        .pods
        .iter()
        .map(|p| match compiled.is_split(&p.labels) {
            true => compiled.identity(p),
            false => *by_set.entry(Arc::as_ptr(&p.labels)).or_insert_with(|| compiled.identity(p)),
        })
        .collect();
    let inputs = node_inputs(compiled, cluster, &identities, &local);
    let computed = if inputs.is_empty() { None } else { compiled.compute(node, inputs) };
    let computed = computed.as_deref();
    let ids = policyc_bundle::ids::endpoint_ids(local.keys().map(String::as_str));
    let mut held = Vec::new();
    let mut endpoints = Vec::new();
    let mut endpoint_entries = Vec::new();
    let mut policy = Vec::new();
    let mut interfaces = BTreeMap::new();
    let mut bound_sandboxes = BTreeSet::new();
    // Addresses of local pods, with their identity: these win over any
    // cluster pod's stale address.
    let mut addresses: BTreeMap<IpAddr, (u32, &str)> = BTreeMap::new();
    for (name, l) in &local {
        let id = ids.get(name.as_str()).copied().unwrap_or(0);
        let (ns, pod) = name.split_once('/').unwrap_or(("", name));
        let with_id = |entries: &[(PolicyKey, PolicyValue)]| {
            entries.iter().map(|(k, v)| (PolicyKey { endpoint_id: id, ..*k }, *v)).collect::<Vec<_>>()
        };
        let (identity, flags, config, policy_file) = match model(compiled, computed, cluster, name) {
            Ok(Model::Compiled(identity, t, peers)) => {
                policy.extend(with_id(&t.policy));
                policy.extend(with_id(peers));
                let config = EndpointConfig { endpoint_id: u32::from(id), ..t.endpoint.config };
                // Entries of computed peers may need the by-peer lookup.
                let config = if peers.is_empty() { config } else { with_peer_lookups(config, peers) };
                (identity, t.flags, config, t.endpoint.policy_file.clone())
            }
            Ok(Model::Computed(m)) => {
                policy.extend(with_id(&m.policy));
                let config = EndpointConfig { endpoint_id: u32::from(id), ..m.config };
                (m.identity, m.flags, config, String::new())
            }
            Err(reason) => {
                held.push(Held { pod: name.clone(), reason });
                let config = EndpointConfig { endpoint_id: u32::from(id), ..EndpointConfig::default() };
                (Identity::INIT.get(), ENDPOINT_ENFORCE_INGRESS | ENDPOINT_ENFORCE_EGRESS, config, String::new())
            }
        };
        for &ip in &l.addresses {
            let (family, addr) = address_bytes(ip);
            endpoint_entries.push((
                EndpointKey { generation: 0, family, pad: 0, addr },
                EndpointValue { endpoint_id: u32::from(id), identity, flags },
            ));
            addresses.insert(ip, (identity, name.as_str()));
        }
        endpoints.push(BundleEndpoint {
            name: name.clone(),
            stem: policyc_bundle::stem::endpoint_stem(&[ns, pod]),
            id,
            addresses: l.addresses.clone(),
            policy_file,
            config,
        });
        interfaces.insert(name.clone(), l.interface.clone());
        bound_sandboxes.extend(l.sandbox.clone());
    }

    let mut not_in_ipcache = Vec::new();
    let computed_identity = |labels: &Labels| computed.and_then(|c| c.identities.get(labels).copied().flatten());
    for (pod, known) in
        cluster.pods.iter().zip(&identities).filter(|(p, _)| !local.contains_key(&p.name) && !p.ips.is_empty())
    {
        let Some(identity) = known.or_else(|| computed_identity(&pod.labels)) else {
            not_in_ipcache.push(Held {
                pod: pod.name.clone(),
                reason: format!("its label set `{}` is not in the bundle and was not computed on the node", pod.labels),
            });
            continue;
        };
        for &ip in &pod.ips {
            match addresses.get(&ip) {
                Some((_, other)) => not_in_ipcache
                    .push(Held { pod: pod.name.clone(), reason: format!("its address {ip} is `{other}`'s") }),
                None => {
                    addresses.insert(ip, (identity, pod.name.as_str()));
                }
            }
        }
    }
    // A source that names the API server's addresses moves
    // `kube-apiserver` there (Cilium's entity follows `default/kubernetes`'s
    // endpoints, `pkg/ipcache/metadata.go`): the bundle's entries of it
    // were the snapshot's. Identity 7 (a remote node running the API
    // server) leaves, and the live nodes below take it again where they
    // run it; a compiled outside address keeps its CIDR identity (which
    // carries `reserved:kube-apiserver`) only while it is still the API
    // server's, as do the compiled `remote-node` entries of a node that
    // does not run it now.
    let live_apiserver: Option<BTreeSet<IpAddr>> = cluster.apiserver.as_ref().map(|a| a.iter().copied().collect());
    let runs_apiserver =
        |n: &super::cluster::LiveNode| live_apiserver.as_ref().is_some_and(|a| n.ips.iter().any(|ip| a.contains(ip)));
    let mut ipcache = compiled.base_ipcache.clone();
    if let Some(live) = &live_apiserver {
        let now_apiserver_nodes: BTreeSet<IpAddr> =
            cluster.nodes.iter().filter(|n| runs_apiserver(n)).flat_map(|n| n.ips.iter().copied()).collect();
        ipcache.retain(|(k, v)| {
            let ip = entry_address(k);
            match v.identity {
                id if id == Identity::KUBE_APISERVER.get() => false,
                id if id == Identity::REMOTE_NODE.get() => !ip.is_some_and(|ip| now_apiserver_nodes.contains(&ip)),
                id if compiled.apiserver_cidrs.contains(&id) => ip.is_some_and(|ip| live.contains(&ip)),
                _ => true,
            }
        });
    }
    let mut taken: BTreeSet<(u32, [u8; 16], u8)> =
        ipcache.iter().map(|(k, _)| (k.prefixlen, k.addr, k.family)).collect();
    // The node's own addresses are `host`, beside those its `Node` object
    // lists (which the bundle already maps): the pod's own node may always
    // reach it. A compiled entry of the same address stays as compiled.
    // Then the live nodes' addresses (`host` for this node, `remote-node`
    // for the others, as the compiler maps a `Node` object's), then the
    // API server's (`kube-apiserver`) where no node has them: Cilium gives
    // an address that is both a node's and the API server's both labels,
    // which one identity cannot, so the node's entity is kept.
    let live = cluster.nodes.iter().flat_map(|n| {
        let identity = match (n.name == node, runs_apiserver(n)) {
            (true, _) => Identity::HOST,
            (false, true) => Identity::KUBE_APISERVER,
            (false, false) => Identity::REMOTE_NODE,
        };
        n.ips.iter().map(move |&ip| (ip, identity))
    });
    let apiserver = cluster.apiserver.iter().flatten().map(|&ip| (ip, Identity::KUBE_APISERVER));
    for (ip, identity) in host.addresses.iter().map(|&ip| (ip, Identity::HOST)).chain(live).chain(apiserver) {
        let entry = ipcache_entry(ip, identity.get());
        if taken.insert((entry.0.prefixlen, entry.0.addr, entry.0.family)) {
            ipcache.push(entry);
        }
    }
    for (&ip, (identity, name)) in &addresses {
        let entry = ipcache_entry(ip, *identity);
        if taken.contains(&(entry.0.prefixlen, entry.0.addr, entry.0.family)) {
            not_in_ipcache.push(Held { pod: name.to_string(), reason: format!("its address {ip} is a node's") });
        } else {
            ipcache.push(entry);
        }
    }

    // The identities computed on the node, with their pods: status,
    // metrics and the log name them.
    let mut computed_identities: BTreeMap<u32, ComputedIdentity> = BTreeMap::new();
    let node_computed = addresses.values().filter(|(identity, _)| is_node_computed(Identity(*identity)));
    for (identity, name) in node_computed.take(if computed.is_some() { usize::MAX } else { 0 }) {
        let entry = computed_identities.entry(*identity).or_insert_with(|| ComputedIdentity {
            identity: *identity,
            labels: cluster.pod(name).map(|p| p.labels.to_string()).unwrap_or_default(),
            pods: Vec::new(),
            computed_on_node: true,
        });
        if !entry.pods.iter().any(|p| p == name) {
            entry.pods.push(name.to_string());
        }
    }
    let bundle = &compiled.bundle;
    let mut listed = bundle.listed.clone();
    if let Some(c) = computed {
        listed.identities.extend(c.identities.values().flatten());
        listed.rules.extend(&c.cookies);
    }
    let mut manifest = bundle.manifest.clone();
    manifest.hash = fingerprint(bundle.hash(), &endpoints, &interfaces, &ipcache, &endpoint_entries, &policy);
    manifest.endpoints = endpoints.clone();
    let desired = DesiredState::Memory(Bundle {
        manifest,
        ipcache,
        endpoint_entries,
        policy,
        // The compiled node's services (its bundle's hash, in the
        // fingerprint, covers them).
        services: bundle.services.clone(),
        endpoints,
        templates: bundle.templates.clone(),
        listed,
    });
    let mut computed = computed_identities.into_values().collect::<Vec<_>>();
    for c in &mut computed {
        c.pods.sort();
    }
    Binding { desired, interfaces, held, unbound, not_in_ipcache, sandboxes: bound_sandboxes, computed }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::Route;
    use policyc::compile::{compile, CompileOptions, Inputs, Output};
    use policyc_cni::protocol::Sandbox;
    use policyc_ir::normalized::is_node_computed;
    use std::path::PathBuf;

    const REPOSITORY: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: web}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: kubernetes, namespace: default, labels: {kubernetes.io/service-name: kubernetes}}
addressType: IPv4
endpoints: [{addresses: [10.200.5.1]}]
ports: [{name: https, port: 6443, protocol: TCP}]
---
apiVersion: v1
kind: Node
metadata: {name: n1}
status: {addresses: [{type: InternalIP, address: 10.200.9.254}]}
---
apiVersion: v1
kind: Pod
metadata: {name: server, namespace: web, labels: {app: server}}
spec: {nodeName: n1, containers: [{name: main}]}
status: {podIP: 10.200.9.201, podIPs: [{ip: 10.200.9.201}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: web, labels: {app: client}}
spec: {nodeName: n2, containers: [{name: main}]}
status: {podIP: 10.200.8.202, podIPs: [{ip: 10.200.8.202}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: server-from-client, namespace: web}
spec:
  podSelector: {matchLabels: {app: server}}
  ingress: [{from: [{podSelector: {matchLabels: {app: client}}}]}]
"#;

    struct Fixture {
        dir: PathBuf,
        compiled: Compiled,
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn fixture(tag: &str) -> Fixture {
        fixture_of(tag, REPOSITORY)
    }

    /// `repository` compiled for node n1.
    fn fixture_of(tag: &str, repository: &str) -> Fixture {
        let dir = std::env::temp_dir().join(format!("policyc-agent-binding-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("repo")).unwrap();
        std::fs::write(dir.join("repo/cluster.yaml"), repository).unwrap();
        let options = CompileOptions {
            node: Some("n1".into()),
            output: Output::Directory(dir.join("out")),
            ..Default::default()
        };
        compile(Inputs::Paths(vec![dir.join("repo")]), &options).unwrap();
        let compiled = Compiled::read(&dir.join("out/n1")).unwrap();
        Fixture { dir, compiled }
    }

    /// The live cluster: `pods` as `(name, app, node, ip)`.
    fn cluster(f: &Fixture, pods: &[(&str, &str, &str, Option<&str>)]) -> ClusterView {
        let mut text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: web}\n".to_string();
        for (name, app, node, ip) in pods {
            let status = ip.map_or(String::new(), |ip| format!("\nstatus: {{podIPs: [{{ip: {ip}}}]}}"));
            text.push_str(&format!(
                "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: web, labels: {{app: {app}}}}}\n\
                 spec: {{nodeName: {node}, containers: [{{name: main}}]}}{status}\n"
            ));
        }
        let dir = f.dir.join("live");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("pods.yaml"), text).unwrap();
        ClusterView::read(&dir).unwrap()
    }

    fn sandboxes(f: &Fixture, list: &[(&str, &str, &str)]) -> Sandboxes {
        let dir = f.dir.join(format!("sandboxes-{}", list.len()));
        let _ = std::fs::remove_dir_all(&dir);
        let (mut s, _) = Sandboxes::load(&dir).unwrap();
        for (pod, interface, ip) in list {
            s.add(Sandbox {
                container_id: format!("c-{pod}"),
                namespace: "web".into(),
                pod: (*pod).into(),
                netns: "/run/netns/x".into(),
                interface: (*interface).into(),
                addresses: vec![ip.parse().unwrap()],
            })
            .unwrap();
        }
        s
    }

    fn host(interfaces: &[&str], routes: &[(&str, u8, &str)]) -> Host {
        Host {
            routes: routes
                .iter()
                .map(|(dest, prefix_len, interface)| Route {
                    dest: dest.parse().unwrap(),
                    prefix_len: *prefix_len,
                    metric: 0,
                    interface: (*interface).into(),
                })
                .collect(),
            interfaces: interfaces.iter().map(|s| s.to_string()).collect(),
            addresses: BTreeSet::new(),
        }
    }

    fn ipcache_identity(b: &Bundle, ip: &str) -> Option<u32> {
        let (family, addr) = address_bytes(ip.parse().unwrap());
        b.ipcache
            .iter()
            .find(|(k, _)| k.family == family && k.addr == addr && k.prefixlen == IPCACHE_KEY_HEADER_BITS + 32)
            .map(|(_, v)| v.identity)
    }

    fn whole(binding: &Binding) -> &Bundle {
        match &binding.desired {
            DesiredState::Memory(b) => b,
            DesiredState::Directory(_) => unreachable!("binding builds memory states"),
        }
    }

    #[test]
    fn a_cni_pod_takes_its_identitys_policy_at_its_live_address() {
        let f = fixture("live");
        let view = cluster(&f, &[("server", "server", "n1", None), ("client", "client", "n2", Some("10.200.7.5"))]);
        let binding = bind(
            &f.compiled,
            &view,
            &sandboxes(&f, &[("server", "veth-s", "10.200.9.33")]),
            "n1",
            &host(&["veth-s"], &[]),
        );
        let b = whole(&binding);
        assert!(binding.held.is_empty(), "{:?}", binding.held);
        assert_eq!(binding.interfaces["web/server"], "veth-s");
        let server =
            f.compiled.identities.iter().find(|(l, _)| l.get("app") == Some("server")).map(|(_, i)| *i).unwrap();
        let client =
            f.compiled.identities.iter().find(|(l, _)| l.get("app") == Some("client")).map(|(_, i)| *i).unwrap();
        // Live addresses in; the snapshot's (10.200.9.201, 10.200.8.202) out.
        assert_eq!(ipcache_identity(b, "10.200.9.33"), Some(server));
        assert_eq!(ipcache_identity(b, "10.200.7.5"), Some(client));
        assert_eq!(ipcache_identity(b, "10.200.9.201"), None);
        assert_eq!(ipcache_identity(b, "10.200.8.202"), None);
        assert_eq!(ipcache_identity(b, "10.200.9.254"), Some(Identity::HOST.get()), "the node's own address stays");
        let e = &b.endpoints[0];
        assert_eq!((e.name.as_str(), e.addresses.len()), ("web/server", 1));
        let t = f.compiled.template(server, "web/server").unwrap();
        assert_eq!(b.policy.len(), t.policy.len());
        assert!(!b.policy.is_empty() && b.policy.iter().all(|(k, _)| k.endpoint_id == e.id));
        assert_eq!(b.endpoint_entries[0].1.flags, t.flags);
        assert_ne!(t.flags & ENDPOINT_ENFORCE_INGRESS, 0, "the server is isolated for ingress");
    }

    #[test]
    fn a_split_label_set_takes_the_identity_of_the_facts_a_live_pod_has() {
        // An admin `networks` peer holding one of two `app=client` pods:
        // two compiled identities for one label set.
        let repository = REPOSITORY.replace(
            "status: {podIP: 10.200.8.202, podIPs: [{ip: 10.200.8.202}]}",
            "status: {podIP: 10.200.8.202, podIPs: [{ip: 10.200.8.202}]}\n---\napiVersion: v1\nkind: Pod\n\
             metadata: {name: client-2, namespace: web, labels: {app: client}}\n\
             spec: {nodeName: n2, containers: [{name: main}]}\nstatus: {podIPs: [{ip: 10.200.7.202}]}\n---\n\
             apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\nmetadata: {name: fence}\n\
             spec: {priority: 1, subject: {namespaces: {}}, egress: [{action: Deny, to: [{networks: [10.200.8.0/24]}]}]}",
        );
        let f = fixture_of("split", &repository);
        let clients: Vec<u32> =
            f.compiled.identities.iter().filter(|(l, _)| l.get("app") == Some("client")).map(|(_, i)| *i).collect();
        assert_eq!(clients.len(), 2, "{:?}", f.compiled.identities);
        // client-3 is new, at an address inside the prefix; client-2 moved
        // inside it.
        let view = cluster(
            &f,
            &[
                ("client", "client", "n2", Some("10.200.8.202")),
                ("client-2", "client", "n2", Some("10.200.8.9")),
                ("client-3", "client", "n2", Some("10.200.7.9")),
            ],
        );
        let binding = bind(&f.compiled, &view, &sandboxes(&f, &[]), "n1", &host(&[], &[]));
        assert!(binding.computed.is_empty(), "{:?}", binding.computed);
        let b = whole(&binding);
        let inside = ipcache_identity(b, "10.200.8.202").unwrap();
        let outside = ipcache_identity(b, "10.200.7.9").unwrap();
        assert_ne!(inside, outside);
        assert!(clients.contains(&inside) && clients.contains(&outside));
        assert_eq!(ipcache_identity(b, "10.200.8.9"), Some(inside), "the moved pod takes the inside identity");
    }

    #[test]
    fn unknown_labels_are_held_default_deny_and_reported() {
        let f = fixture("held");
        let view = cluster(&f, &[]);
        let boxes = sandboxes(&f, &[("late", "veth-b", "10.200.9.41")]);
        let binding = bind(&f.compiled, &view, &boxes, "n1", &host(&["veth-b"], &[]));
        let reasons: Vec<(&str, &str)> = binding.held.iter().map(|h| (h.pod.as_str(), h.reason.as_str())).collect();
        assert_eq!(reasons, [("web/late", "its labels are not known yet (not in the cluster source)")]);
        let b = whole(&binding);
        assert!(b.policy.is_empty());
        for (_, v) in &b.endpoint_entries {
            assert_eq!(
                (v.identity, v.flags),
                (Identity::INIT.get(), ENDPOINT_ENFORCE_INGRESS | ENDPOINT_ENFORCE_EGRESS)
            );
        }
        assert_eq!(ipcache_identity(b, "10.200.9.41"), Some(Identity::INIT.get()));
    }

    #[test]
    fn a_label_set_the_bundle_does_not_know_is_computed_on_the_node_and_reported() {
        let f = fixture("computed");
        let view = cluster(&f, &[("stranger", "stranger", "n1", None), ("client", "client", "n2", Some("10.200.7.5"))]);
        let boxes = sandboxes(&f, &[("stranger", "veth-a", "10.200.9.40")]);
        let binding = bind(&f.compiled, &view, &boxes, "n1", &host(&["veth-a"], &[]));
        assert!(binding.held.is_empty(), "{:?}", binding.held);
        let [c] = binding.computed.as_slice() else { panic!("{:?}", binding.computed) };
        assert!(is_node_computed(Identity(c.identity)), "{}", c.identity);
        assert!(c.labels.starts_with("app=stranger,") && c.computed_on_node, "{c:?}");
        assert_eq!(c.pods, ["web/stranger"]);
        let b = whole(&binding);
        assert_eq!(ipcache_identity(b, "10.200.9.40"), Some(c.identity));
        let (_, value) = b.endpoint_entries[0];
        assert_eq!((value.identity, value.flags), (c.identity, 0), "no policy isolates `app=stranger`");
        assert!(b.listed.identities.contains(&c.identity), "listed, so the loader's reference check passes");
        // The same pods, bound again (a restarted agent): the same number
        // and the same state.
        let again = bind(&f.compiled, &view, &boxes, "n1", &host(&["veth-a"], &[]));
        assert_eq!(again.computed, binding.computed);
        assert_eq!(again.desired.manifest().hash, binding.desired.manifest().hash);
    }

    #[test]
    fn a_compiled_pods_policy_gains_the_entries_of_a_job_pod_it_selects() {
        let f = fixture("job");
        // A Job's pod: `app=client` (which the server's policy allows) and
        // a `job-name` no compiled label set has.
        let text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: web}\n---\napiVersion: v1\nkind: Pod\n\
                    metadata: {name: server, namespace: web, labels: {app: server}}\n\
                    spec: {nodeName: n1, containers: [{name: main}]}\n---\napiVersion: v1\nkind: Pod\n\
                    metadata: {name: run-1, namespace: web, labels: {app: client, job-name: run}}\n\
                    spec: {nodeName: n2, containers: [{name: main}]}\nstatus: {podIPs: [{ip: 10.200.7.9}]}\n";
        let dir = f.dir.join("live-job");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("pods.yaml"), text).unwrap();
        let view = ClusterView::read(&dir).unwrap();
        let boxes = sandboxes(&f, &[("server", "veth-s", "10.200.9.33")]);
        let binding = bind(&f.compiled, &view, &boxes, "n1", &host(&["veth-s"], &[]));
        let b = whole(&binding);
        let [c] = binding.computed.as_slice() else { panic!("{:?}", binding.computed) };
        assert_eq!(c.pods, ["web/run-1"]);
        assert_eq!(ipcache_identity(b, "10.200.7.9"), Some(c.identity));
        let client =
            f.compiled.identities.iter().find(|(l, _)| l.get("app") == Some("client")).map(|(_, i)| *i).unwrap();
        let peer_entries = |peer: u32| -> Vec<(u8, u32, u8)> {
            b.policy
                .iter()
                .filter(|(k, _)| k.peer_identity == peer)
                .map(|(k, v)| (k.direction, k.prefixlen, v.verdict))
                .collect()
        };
        assert!(!peer_entries(client).is_empty());
        assert_eq!(peer_entries(c.identity), peer_entries(client), "the Job's pod is allowed as a client is");
        let server =
            f.compiled.identities.iter().find(|(l, _)| l.get("app") == Some("server")).map(|(_, i)| *i).unwrap();
        let compiled = &f.compiled.template(server, "web/server").unwrap().policy;
        assert_eq!(b.policy.len(), compiled.len() + peer_entries(c.identity).len(), "the compiled entries stay");
    }

    #[test]
    fn only_an_exact_host_route_binds_a_pod_without_a_cni_add() {
        let f = fixture("routes");
        let view = cluster(&f, &[("server", "server", "n1", Some("10.200.9.50"))]);
        let none = sandboxes(&f, &[]);
        let broad = bind(
            &f.compiled,
            &view,
            &none,
            "n1",
            &host(&["eth0"], &[("10.200.9.0", 24, "eth0"), ("0.0.0.0", 0, "eth0")]),
        );
        assert_eq!(broad.endpoints(), 0, "never the uplink");
        assert_eq!(broad.unbound[0].reason, "no /32 or /128 host route to 10.200.9.50 (and no CNI ADD)");
        let exact = bind(
            &f.compiled,
            &view,
            &none,
            "n1",
            &host(&["eth0", "veth9"], &[("10.200.9.0", 24, "eth0"), ("10.200.9.50", 32, "veth9")]),
        );
        assert_eq!(exact.interfaces["web/server"], "veth9");
    }

    #[test]
    fn the_same_inputs_give_the_same_hash_and_a_relabel_another() {
        let f = fixture("hash");
        let boxes = sandboxes(&f, &[("server", "veth-s", "10.200.9.33")]);
        let h = host(&["veth-s"], &[]);
        let hash = |view: &ClusterView| bind(&f.compiled, view, &boxes, "n1", &h).desired.manifest().hash.clone();
        let first = hash(&cluster(&f, &[("server", "server", "n1", None)]));
        assert_eq!(hash(&cluster(&f, &[("server", "server", "n1", None)])), first);
        assert_ne!(hash(&cluster(&f, &[("server", "client", "n1", None)])), first);
        assert_ne!(first, f.compiled.hash(), "the binding is part of the hash");
    }

    #[test]
    fn the_nodes_own_addresses_are_host_and_win_over_a_pods() {
        let f = fixture("node-addresses");
        let view = cluster(
            &f,
            &[("client", "client", "n2", Some("10.200.7.5")), ("other", "client", "n2", Some("10.200.9.1"))],
        );
        let addresses = ["10.200.9.1", "10.200.9.254", "fd00:9::1"].iter().map(|a| a.parse().unwrap()).collect();
        let h = Host { addresses, ..host(&[], &[]) };
        let binding = bind(&f.compiled, &view, &sandboxes(&f, &[]), "n1", &h);
        let b = whole(&binding);
        let host_id = Some(Identity::HOST.get());
        assert_eq!(ipcache_identity(b, "10.200.9.1"), host_id, "a ptp gateway on a pod's veth is the node's");
        assert_eq!(ipcache_identity(b, "10.200.9.254"), host_id, "the Node object's address, compiled, once");
        let v6 = address_bytes("fd00:9::1".parse().unwrap());
        let v6_entry = b.ipcache.iter().find(|(k, _)| (k.family, k.addr) == v6).unwrap();
        assert_eq!((v6_entry.0.prefixlen, v6_entry.1.identity), (IPCACHE_KEY_HEADER_BITS + 128, Identity::HOST.get()));
        let same = |ip: &str| {
            let (family, addr) = address_bytes(ip.parse().unwrap());
            b.ipcache.iter().filter(|(k, _)| (k.family, k.addr) == (family, addr)).count()
        };
        assert_eq!((same("10.200.9.254"), same("10.200.9.1")), (1, 1), "one entry an address");
        let reasons: Vec<(&str, &str)> =
            binding.not_in_ipcache.iter().map(|h| (h.pod.as_str(), h.reason.as_str())).collect();
        assert_eq!(reasons, [("web/other", "its address 10.200.9.1 is a node's")]);
        assert!(ipcache_identity(b, "10.200.7.5").is_some());
    }

    #[test]
    fn live_nodes_and_the_api_server_get_their_entities_where_the_bundle_has_none() {
        use super::super::cluster::LiveNode;
        let f = fixture("live-nodes");
        let mut view = cluster(&f, &[]);
        let node = |name: &str, ip: &str| LiveNode { name: name.into(), ips: vec![ip.parse().unwrap()] };
        view.nodes = vec![node("n1", "10.200.9.253"), node("n2", "10.200.8.254"), node("n3", "10.200.9.254")];
        view.apiserver = Some(vec!["10.200.5.1".parse().unwrap(), "10.200.8.254".parse().unwrap()]);
        let binding = bind(&f.compiled, &view, &sandboxes(&f, &[]), "n1", &host(&[], &[]));
        let b = whole(&binding);
        assert_eq!(ipcache_identity(b, "10.200.9.253"), Some(Identity::HOST.get()), "this node's live address");
        assert_eq!(
            ipcache_identity(b, "10.200.8.254"),
            Some(Identity::KUBE_APISERVER.get()),
            "a remote node running the API server: identity 7, as the compiler gives it"
        );
        assert_eq!(ipcache_identity(b, "10.200.9.254"), Some(Identity::HOST.get()), "as compiled, though n3 claims it");
        let outside = ipcache_identity(b, "10.200.5.1").unwrap();
        assert!(f.compiled.apiserver_cidrs.contains(&outside), "still the API server's: its compiled CIDR identity");
    }

    /// The addresses whose identity carries `reserved:kube-apiserver`:
    /// identity 7, or a compiled outside address's CIDR identity.
    fn apiserver_entries(f: &Fixture, b: &Bundle) -> Vec<IpAddr> {
        let mut ips: Vec<IpAddr> = b
            .ipcache
            .iter()
            .filter(|(_, v)| {
                v.identity == Identity::KUBE_APISERVER.get() || f.compiled.apiserver_cidrs.contains(&v.identity)
            })
            .map(|(k, _)| entry_address(k).unwrap())
            .collect();
        ips.sort();
        ips
    }

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|ip| ip.parse().unwrap()).collect()
    }

    #[test]
    fn the_api_server_follows_its_endpoint_slices_in_a_directory() {
        let f = fixture("apiserver-dir");
        let none = sandboxes(&f, &[]);
        // A directory without `default/kubernetes`'s endpoints keeps the
        // bundle's `kube-apiserver` entry as compiled.
        let view = cluster(&f, &[]);
        assert_eq!(view.apiserver, None);
        let compiled = bind(&f.compiled, &view, &none, "n1", &host(&[], &[]));
        assert_eq!(apiserver_entries(&f, whole(&compiled)), ips(&["10.200.5.1"]));
        // The API server moved: the directory's slice says where.
        let slice = "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
                     metadata: {name: kubernetes-x, namespace: default, labels: {kubernetes.io/service-name: kubernetes}}\n\
                     addressType: IPv4\nendpoints: [{addresses: [10.200.5.7]}, {addresses: [10.200.5.8], conditions: {ready: false}}]\n";
        let dir = f.dir.join("live");
        std::fs::write(dir.join("apiserver.yaml"), slice).unwrap();
        let view = ClusterView::read(&dir).unwrap();
        assert_eq!(view.apiserver, Some(ips(&["10.200.5.7"])), "ready addresses only");
        let moved = bind(&f.compiled, &view, &none, "n1", &host(&[], &[]));
        let b = whole(&moved);
        assert_eq!(apiserver_entries(&f, b), ips(&["10.200.5.7"]), "identity 7 moved, the old address left");
        assert_eq!(ipcache_identity(b, "10.200.5.7"), Some(Identity::KUBE_APISERVER.get()));
        assert_eq!(ipcache_identity(b, "10.200.5.1"), None, "world again (`0.0.0.0/0`)");
        assert_ne!(moved.desired.manifest().hash, compiled.desired.manifest().hash);
        // Onto a node: all of that node's addresses are identity 7 (a
        // remote node running the API server), and back to `remote-node`
        // when it moves off.
        use super::super::cluster::LiveNode;
        let mut view = view;
        view.nodes = vec![LiveNode { name: "n2".into(), ips: ips(&["10.200.8.254", "fd00:8::254"]) }];
        view.apiserver = Some(ips(&["10.200.8.254"]));
        let on_node = bind(&f.compiled, &view, &none, "n1", &host(&[], &[]));
        assert_eq!(apiserver_entries(&f, whole(&on_node)), ips(&["10.200.8.254", "fd00:8::254"]));
        view.apiserver = Some(ips(&["10.200.5.7"]));
        let off = bind(&f.compiled, &view, &none, "n1", &host(&[], &[]));
        assert_eq!(ipcache_identity(whole(&off), "10.200.8.254"), Some(Identity::REMOTE_NODE.get()));
        assert_eq!(apiserver_entries(&f, whole(&off)), ips(&["10.200.5.7"]));
    }

    #[cfg(feature = "kube")]
    #[test]
    fn the_api_server_follows_its_endpoint_slices_from_the_api() {
        use super::super::kube::{KubeState, Update};
        use k8s_openapi::api::discovery::v1::EndpointSlice;
        use kube::runtime::watcher::Event;
        let f = fixture("apiserver-kube");
        let recorded = |name: &str| {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/kube").join(name);
            std::fs::read_to_string(path).unwrap()
        };
        // The recorded list of `default/kubernetes`'s slices, then its
        // recorded watch event (an endpoint no longer ready, one added).
        let list: serde_json::Value = serde_json::from_str(&recorded("apiserver.list.json")).unwrap();
        let listed: Vec<EndpointSlice> = serde_json::from_value(list["items"].clone()).unwrap();
        let watched: Vec<EndpointSlice> = recorded("apiserver.watch.jsonl")
            .lines()
            .map(|l| serde_json::from_value(serde_json::from_str::<serde_json::Value>(l).unwrap()["object"].clone()))
            .collect::<Result<_, _>>()
            .unwrap();
        let mut state = KubeState::default();
        for update in [Update::LocalPod, Update::OtherPod] {
            state.apply(update(Event::Init));
            state.apply(update(Event::InitDone));
        }
        state.apply(Update::Namespace(Event::Init));
        state.apply(Update::Namespace(Event::InitDone));
        state.apply(Update::Node(Event::Init));
        state.apply(Update::Node(Event::InitDone));
        state.apply(Update::ApiServer(Event::Init));
        for slice in listed {
            state.apply(Update::ApiServer(Event::InitApply(slice)));
        }
        assert!(state.apply(Update::ApiServer(Event::InitDone)));
        let none = sandboxes(&f, &[]);
        let first = bind(&f.compiled, &state.view(), &none, "n1", &host(&[], &[]));
        assert_eq!(apiserver_entries(&f, whole(&first)), ips(&["10.200.62.1", "10.200.62.3"]), "not the compiled one");
        for slice in watched {
            assert!(state.apply(Update::ApiServer(Event::Apply(slice))));
        }
        let moved = bind(&f.compiled, &state.view(), &none, "n1", &host(&[], &[]));
        assert_eq!(apiserver_entries(&f, whole(&moved)), ips(&["10.200.62.3", "10.200.62.4"]));
    }

    #[test]
    fn the_cluster_readers_compact_form_gives_the_same_view_with_label_sets_shared() {
        let f = fixture("wire");
        let mut view = cluster(
            &f,
            &[("a", "client", "n2", Some("10.200.7.5")), ("b", "client", "n2", None), ("c", "server", "n1", None)],
        );
        view.apiserver = Some(ips(&["10.200.5.7"]));
        let back = ClusterView::from_wire(view.to_wire().as_bytes()).unwrap();
        assert_eq!(back, view);
        assert!(Arc::ptr_eq(&back.pods[0].labels, &back.pods[1].labels), "one copy of a label set");
        assert!(ClusterView::from_wire(b"{").unwrap_err().starts_with("the cluster reader's answer:"));
    }
}
