//! Random clusters written as manifests, through the whole front end:
//! nodes, host-network pods, Service `default/kubernetes` with its
//! EndpointSlice (the API server on a node, outside the cluster, or both),
//! Cilium rules with entities, `reserved:` selectors, `toServices` and
//! requirements in allow and deny rules. The compiled maps (the Rust
//! lookup mirroring the datapath) must agree with `eval` on every packet
//! between endpoints, nodes and outside addresses; host-network pods must
//! not be endpoints. `ir/tests/support/random_cluster.rs` draws clusters
//! in the IR itself; this one checks what reading and lowering make of
//! the same features.

use policyc::pipeline::load;
use policyc_ir::eval::{eval, Party, Query};
use policyc_ir::lookup::{Datapath, Packet};
use policyc_ir::protocol::Protocol;
use policyc_ir::resolve::resolve;
use proptest::prelude::*;
use std::fmt::Write;
use std::net::IpAddr;
use std::path::PathBuf;

const NAMESPACES: [&str; 2] = ["alpha", "beta"];
const APPS: [&str; 3] = ["web", "db", "api"];
const NODES: [(&str, &str); 2] = [("n1", "10.200.255.1"), ("n2", "10.200.255.2")];
const OUTSIDE: [&str; 3] = ["192.0.2.5", "192.0.2.77", "8.8.8.8"];
const ENTITIES: [&str; 7] = ["host", "remote-node", "kube-apiserver", "cluster", "world", "all", "health"];

/// A pod: namespace, app, node, host network.
type PodSpec = (usize, usize, usize, bool);

/// One rule: deny?, ingress?, peer kind and its choice, a port or none,
/// and a requirement on `app` or none.
type RuleSpec = (bool, bool, usize, usize, Option<u16>, Option<usize>);

/// A policy: namespace, the app it selects, its rules.
type PolicySpec = (usize, usize, Vec<RuleSpec>);

fn manifests(pods: &[PodSpec], apiserver: usize, policies: &[PolicySpec]) -> String {
    let mut out = String::new();
    for (name, ip) in NODES {
        let _ = write!(
            out,
            "apiVersion: v1\nkind: Node\nmetadata: {{name: {name}}}\nstatus: {{addresses: [{{type: InternalIP, address: {ip}}}]}}\n---\n"
        );
    }
    for ns in NAMESPACES {
        let _ = write!(out, "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n---\n");
    }
    for (i, &(ns, app, node, host_network)) in pods.iter().enumerate() {
        let ip = if host_network { NODES[node].1.to_string() } else { format!("10.200.1.{}", i + 1) };
        let _ = write!(
            out,
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: pod{i}, namespace: {}, labels: {{app: {}}}}}\nspec: {{nodeName: {}, hostNetwork: {host_network}, containers: [{{name: main}}]}}\nstatus: {{podIP: {ip}}}\n---\n",
            NAMESPACES[ns], APPS[app], NODES[node].0
        );
    }
    // Services: `db` by selector in each namespace, and the API server.
    for ns in NAMESPACES {
        let _ = write!(
            out,
            "apiVersion: v1\nkind: Service\nmetadata: {{name: db, namespace: {ns}, labels: {{tier: data}}}}\nspec: {{selector: {{app: db}}, ports: [{{port: 80}}]}}\n---\n"
        );
    }
    let apiserver_ips: &[&str] = match apiserver {
        0 => &[],
        1 => &[NODES[0].1],
        2 => &[OUTSIDE[0]],
        _ => &[NODES[1].1, OUTSIDE[0]],
    };
    if !apiserver_ips.is_empty() {
        let _ = write!(
            out,
            "apiVersion: v1\nkind: Service\nmetadata: {{name: kubernetes, namespace: default}}\nspec: {{ports: [{{port: 443}}]}}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: kubernetes, namespace: default, labels: {{kubernetes.io/service-name: kubernetes}}}}\naddressType: IPv4\nendpoints: [{{addresses: [{}]}}]\n---\n",
            apiserver_ips.join(", ")
        );
    }
    for (p, (ns, app, rules)) in policies.iter().enumerate() {
        let _ = write!(
            out,
            "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {{name: p{p}, namespace: {}}}\nspec:\n  endpointSelector: {{matchLabels: {{app: {}}}}}\n",
            NAMESPACES[*ns], APPS[*app]
        );
        // Items by section, each section written once.
        let mut sections: std::collections::BTreeMap<&str, String> = std::collections::BTreeMap::new();
        for &(deny, ingress, kind, choice, port, requirement) in rules {
            let section = match (ingress, deny) {
                (true, false) => "ingress",
                (true, true) => "ingressDeny",
                (false, false) => "egress",
                (false, true) => "egressDeny",
            };
            let side = if ingress { "from" } else { "to" };
            let peer = match kind {
                0 => format!("{side}Endpoints: [{{matchLabels: {{app: {}}}}}]", APPS[choice % 3]),
                1 => format!("{side}Entities: [{}]", ENTITIES[choice % ENTITIES.len()]),
                2 => format!("{side}Endpoints: [{{matchLabels: {{\"reserved:{}\": \"\"}}}}]", ENTITIES[choice % 3]),
                3 => format!("{side}CIDR: [192.0.2.0/24]"),
                // toServices exists in egress rules only.
                _ if ingress => format!("{side}Endpoints: [{{}}]"),
                _ if choice % 2 == 0 => "toServices: [{k8sService: {serviceName: db}}]".to_string(),
                _ => "toServices: [{k8sServiceSelector: {selector: {matchLabels: {tier: data}}}}]".to_string(),
            };
            let items = sections.entry(section).or_default();
            let _ = writeln!(items, "    - {peer}");
            if let Some(port) = port {
                let _ = writeln!(items, "      toPorts: [{{ports: [{{port: \"{port}\", protocol: TCP}}]}}]");
            }
            if let Some(app) = requirement {
                let _ = writeln!(items, "    - {side}Requires: [{{matchLabels: {{app: {}}}}}]", APPS[app]);
            }
        }
        for (section, items) in sections {
            let _ = write!(out, "  {section}:\n{items}");
        }
        out.push_str("---\n");
    }
    out
}

fn rule() -> impl Strategy<Value = RuleSpec> {
    (
        prop_oneof![3 => Just(false), 1 => Just(true)],
        any::<bool>(),
        0usize..5,
        0usize..7,
        proptest::option::of(prop_oneof![Just(80u16), Just(443)]),
        proptest::option::weighted(0.2, 0usize..3),
    )
}

fn scenario() -> impl Strategy<Value = (Vec<PodSpec>, usize, Vec<PolicySpec>)> {
    (
        proptest::collection::vec((0usize..2, 0usize..3, 0usize..2, proptest::bool::weighted(0.25)), 2..6),
        0usize..4,
        proptest::collection::vec((0usize..2, 0usize..3, proptest::collection::vec(rule(), 1..4)), 1..4),
    )
}

/// A scratch directory of its own under the system's temporary directory.
fn scratch(case: u64) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("policyc-random-manifests-{}-{case}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn compiled_maps_agree_with_eval_on_random_manifests((pods, apiserver, policies) in scenario()) {
        static CASE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let dir = scratch(CASE.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let text = manifests(&pods, apiserver, &policies);
        std::fs::write(dir.join("cluster.yaml"), &text).unwrap();
        let loaded = load(std::slice::from_ref(&dir));
        std::fs::remove_dir_all(&dir).unwrap();
        prop_assert!(!loaded.has_errors(), "{:?}\n{text}", loaded.diagnostics);
        let cluster = &loaded.lowered.cluster;
        for (i, &(_, _, _, host_network)) in pods.iter().enumerate() {
            let is_endpoint = cluster.endpoints.iter().any(|e| e.name == format!("pod{i}"));
            prop_assert_eq!(is_endpoint, !host_network, "pod{} (hostNetwork: {})", i, host_network);
        }
        prop_assert_eq!(cluster.apiserver.is_empty(), apiserver == 0);
        let resolved = resolve(cluster);
        let datapath = Datapath::new(&resolved);
        let mut peers: Vec<(IpAddr, Party)> = Vec::new();
        for (i, e) in cluster.endpoints_with_ids() {
            peers.extend(e.ips.iter().map(|&ip| (ip, Party::Endpoint(i))));
        }
        for (n, node) in cluster.nodes.iter().enumerate() {
            peers.extend(node.ips.iter().map(|&ip| (ip, Party::Node(n))));
        }
        peers.extend(OUTSIDE.iter().map(|a| { let ip: IpAddr = a.parse().unwrap(); (ip, Party::External(ip)) }));
        for &(src_ip, src) in &peers {
            for &(dst_ip, dst) in &peers {
                if src == dst || (!matches!(src, Party::Endpoint(_)) && !matches!(dst, Party::Endpoint(_))) {
                    continue;
                }
                for (protocol, port) in [(Protocol::Tcp, 80), (Protocol::Tcp, 443), (Protocol::Udp, 53)] {
                    let want = eval(cluster, &Query { src, dst, protocol, port }).allowed();
                    let got = datapath.judge(&Packet { src: src_ip, dst: dst_ip, protocol, port }).allowed();
                    prop_assert_eq!(got, want, "{} -> {} {}/{}\n{}", src_ip, dst_ip, protocol, port, text);
                }
            }
        }
    }
}
