//! The analyses judged per class of alike endpoints and per group of
//! alike peers (`analysis::engine`) agree with the reference evaluator
//! asked for every pair, on every golden case, the example cluster, the
//! conformance corpora and clusters built to tell classes and nodes apart:
//! every decision with its reasons, the rows, and the text and JSON
//! written as they are produced.

use policyc::analysis::connectivity::PROTOCOLS;
use policyc::analysis::connectivity::{
    address_segments, allowed_between, connectivity, peer_name, port_cuts, to_json, to_table, Row, Side,
};
use policyc::analysis::engine::{Engine, PeerKey};
use policyc::analysis::table::Table;
use policyc::front::source::read_paths;
use policyc::pipeline::{load_input, Loaded};
use policyc_ir::cluster::Cluster;
use policyc_ir::eval::{decide, Party};
use policyc_ir::protocol::Direction;
use std::path::{Path, PathBuf};

fn inputs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(root.join("tests/golden"))
        .unwrap()
        .map(|e| e.unwrap().path().join("input"))
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    cases.push(root.join("examples/policies"));
    cases
}

fn load(path: &Path) -> Option<Loaded> {
    let loaded = load_input(read_paths(&[path.to_path_buf()]));
    (!loaded.has_errors()).then_some(loaded)
}

/// Every row, pair by pair, with the evaluator: the table before classes.
fn pairwise(cluster: &Cluster) -> Vec<Row> {
    let cuts = port_cuts(cluster);
    let mut peers: Vec<Side> = cluster.endpoints_with_ids().map(|(i, _)| Side::Endpoint(i)).collect();
    peers.extend((0..cluster.nodes.len()).map(Side::Node));
    peers.extend(address_segments(cluster, &[]).into_iter().map(|(a, b)| Side::Addresses(a, b)));
    let mut rows = Vec::new();
    for src in &peers {
        for dst in &peers {
            let endpoint = |s: &Side| matches!(s, Side::Endpoint(_));
            if src == dst || !(endpoint(src) || endpoint(dst)) {
                continue;
            }
            let allowed = allowed_between(
                cluster,
                policyc::analysis::connectivity::party(src),
                policyc::analysis::connectivity::party(dst),
                &cuts,
            );
            // A segment is judged by its first address: every address
            // that may be judged otherwise (its last, an API server's) must
            // agree, or the segments are cut too coarsely.
            for side in [src, dst] {
                let Side::Addresses(first, last) = side else { continue };
                let inside = cluster.apiserver.iter().filter(|ip| (first..=last).contains(ip));
                for &probe in inside.chain([last]) {
                    let at = |s: &Side| match s {
                        Side::Addresses(..) => policyc_ir::eval::Party::External(probe),
                        other => policyc::analysis::connectivity::party(other),
                    };
                    let there = allowed_between(cluster, at(src), at(dst), &cuts);
                    assert_eq!(there, allowed, "{probe} is judged as {first} is");
                }
            }
            if !allowed.is_empty() {
                rows.push(Row { src: src.clone(), dst: dst.clone(), allowed });
            }
        }
    }
    rows
}

fn sorted(cluster: &Cluster, mut rows: Vec<Row>) -> Vec<(String, String, Vec<String>)> {
    rows.sort_by_key(|r| (peer_name(cluster, &r.src), peer_name(cluster, &r.dst)));
    rows.into_iter()
        .map(|r| (peer_name(cluster, &r.src), peer_name(cluster, &r.dst), r.allowed.marked_items()))
        .collect()
}

/// Every decision the engine gives, subject by subject and peer by peer,
/// is the evaluator's at both ends of its port range, reasons included
/// (rule, policy and tier ids mapped back from the representatives).
fn decisions_are_the_evaluators(name: &str, cluster: &Cluster) {
    let mut engine = Engine::new(cluster, &[]);
    engine.fill();
    let node_of = |e: &policyc_ir::cluster::Endpoint| {
        e.node.as_ref().and_then(|n| cluster.nodes.iter().position(|x| &x.name == n))
    };
    let segments = engine.segments().to_vec();
    for (i, e) in cluster.endpoints_with_ids() {
        let mut peers: Vec<(Party, PeerKey)> = cluster
            .endpoints_with_ids()
            .filter(|&(j, _)| j != i)
            .map(|(j, _)| (Party::Endpoint(j), PeerKey::Class(engine.class_of(j))))
            .collect();
        peers.extend((0..cluster.nodes.len()).map(|n| (Party::Node(n), engine.node_peer(n, node_of(e)))));
        peers.extend(segments.iter().enumerate().map(|(s, &(a, _))| (Party::External(a), PeerKey::Segment(s))));
        for (party, key) in peers {
            for dir in Direction::BOTH {
                let runs = engine.runs_towards(i, dir, key);
                for (pi, pieces) in engine.runs(runs).iter().enumerate() {
                    for &(range, d) in pieces {
                        for port in [range.lo, range.hi] {
                            let want = decide(cluster, i, party, dir, PROTOCOLS[pi], port);
                            assert_eq!(
                                engine.decision(d),
                                &want,
                                "{name}: {e} {dir} with {party:?} {}/{port}",
                                PROTOCOLS[pi].name()
                            );
                        }
                    }
                }
            }
        }
    }
}

fn check(name: &str, cluster: &Cluster) {
    decisions_are_the_evaluators(name, cluster);
    let expected = pairwise(cluster);
    assert_eq!(sorted(cluster, connectivity(cluster, &[])), sorted(cluster, expected.clone()), "{name}: rows");
    let table = Table::new(cluster, &[]);
    let mut text = Vec::new();
    table.write_table(None, &mut text).unwrap();
    assert_eq!(String::from_utf8(text).unwrap(), to_table(cluster, &expected), "{name}: table");
    let mut json = Vec::new();
    table.write_json(None, &[], &mut json).unwrap();
    let want = serde_json::to_string_pretty(&to_json(cluster, &expected)).unwrap() + "\n";
    assert_eq!(String::from_utf8(json).unwrap(), want, "{name}: json");
    // A selector keeps the rows with a matching endpoint on either end.
    if let Some(e) = cluster.endpoints.first() {
        let ns = e.namespace.clone();
        let selector = policyc::select::parse_selector(&format!("ns={ns}")).unwrap();
        let kept: Vec<Row> = expected
            .iter()
            .filter(|r| {
                [&r.src, &r.dst]
                    .iter()
                    .any(|s| matches!(s, Side::Endpoint(i) if selector.matches(&cluster.endpoint(*i).labels)))
            })
            .cloned()
            .collect();
        let mut text = Vec::new();
        table.write_table(Some(&selector), &mut text).unwrap();
        assert_eq!(String::from_utf8(text).unwrap(), to_table(cluster, &kept), "{name}: --select");
    }
}

#[test]
fn per_class_rows_are_the_pairwise_rows() {
    let mut checked = 0;
    for input in inputs() {
        if let Some(loaded) = load(&input) {
            check(&input.display().to_string(), &loaded.lowered.cluster);
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} inputs checked");
}

/// The conformance corpora's cases (`normalized.yaml`), those small
/// enough for the pair-by-pair reference to stay quick (all but one).
#[test]
fn per_class_agrees_on_the_conformance_corpora() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance");
    let mut checked = 0;
    for corpus in ["netpol-analyzer", "netpol-analyzer-anp"] {
        let cases = root.join(corpus).join("cases");
        assert!(
            cases.is_dir(),
            "conformance corpus missing at {} (CI clones the repo beside shared/)",
            cases.display()
        );
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(&cases).unwrap().map(|e| e.unwrap().path()).collect();
        dirs.sort();
        for case in dirs {
            let Some(loaded) = load(&case.join("normalized.yaml")) else { continue };
            let cluster = &loaded.lowered.cluster;
            // One case (`ipblockstest_4`) cuts the address space into
            // more than a thousand segments: minutes pair by pair.
            if cluster.endpoints.len() > SMALL_CASE.0 || address_segments(cluster, &[]).len() > SMALL_CASE.1 {
                continue;
            }
            check(&case.display().to_string(), cluster);
            checked += 1;
        }
    }
    assert!(checked >= 100, "only {checked} conformance cases checked");
}

/// The most endpoints and outside segments a conformance case may have to
/// be checked pair by pair here.
const SMALL_CASE: (usize, usize) = (40, 100);

/// Pods of one label set on different nodes, one of them unscheduled,
/// named ports that differ within a label set, a host policy's entities,
/// requirements and L7: classes and node groups must not merge what the
/// evaluator tells apart.
const MIXED: &str = "\
apiVersion: v1
kind: Node
metadata: {name: n1}
status: {addresses: [{type: InternalIP, address: 10.200.255.1}]}
---
apiVersion: v1
kind: Node
metadata: {name: n2}
status: {addresses: [{type: InternalIP, address: 10.200.255.2}]}
---
apiVersion: v1
kind: Pod
metadata: {name: a1, namespace: x, labels: {app: a}}
spec: {nodeName: n1, containers: [{name: c, ports: [{name: web, containerPort: 80}]}]}
status: {podIP: 10.200.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: a2, namespace: x, labels: {app: a}}
spec: {nodeName: n2, containers: [{name: c, ports: [{name: web, containerPort: 8080}]}]}
status: {podIP: 10.200.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: a3, namespace: x, labels: {app: a}}
spec: {containers: [{name: c, ports: [{name: web, containerPort: 80}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b1, namespace: x, labels: {app: b, role: client}}
spec: {nodeName: n1, containers: [{name: c}]}
status: {podIP: 10.200.0.3}
---
apiVersion: v1
kind: Pod
metadata: {name: b2, namespace: y, labels: {app: b}}
spec: {nodeName: n2, containers: [{name: c}]}
status: {podIP: 10.200.0.4}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: to-web, namespace: x}
spec:
  podSelector: {matchLabels: {app: b}}
  policyTypes: [Egress]
  egress:
    - to: [{podSelector: {matchLabels: {app: a}}}]
      ports: [{port: web}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: a-in, namespace: x}
spec:
  endpointSelector: {matchLabels: {app: a}}
  ingress:
    - fromEntities: [remote-node]
      toPorts: [{ports: [{port: \"9100\"}]}]
    - fromEndpoints: [{matchLabels: {role: client}}]
      toPorts: [{ports: [{port: web, protocol: TCP}], rules: {http: [{method: GET}]}}]
    - fromCIDRSet: [{cidr: 192.0.2.0/24, except: [192.0.2.128/25]}]
  ingressDeny:
    - fromEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: y}}]
      toPorts: [{ports: [{port: \"80\"}]}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: b-req, namespace: y}
spec:
  endpointSelector: {}
  ingress:
    - fromRequires: [{matchLabels: {app: a}}]
    - fromEndpoints: [{}]
    - fromEntities: [host]
";

#[test]
fn classes_keep_apart_what_nodes_named_ports_and_requirements_tell_apart() {
    let mut input = policyc::front::Input::default();
    input.add_source("mixed.yaml", MIXED.to_string());
    let loaded = load_input(input);
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    check("mixed", &loaded.lowered.cluster);
}

/// Admin and baseline tiers and the API server: pods of one label set
/// whose addresses fall in different admin `networks` prefixes, nodes told
/// apart by the API server (one runs it, and one of its addresses is
/// outside the cluster), by an admin `nodes` selector and by `networks`,
/// `Pass` to a NetworkPolicy, a named port in an admin egress rule, and a
/// baseline deny: classes and node classes must keep them apart.
const TIERS: &str = "\
apiVersion: v1
kind: Node
metadata: {name: n1, labels: {role: control}}
status: {addresses: [{type: InternalIP, address: 10.200.255.1}]}
---
apiVersion: v1
kind: Node
metadata: {name: n2}
status: {addresses: [{type: InternalIP, address: 10.200.255.2}]}
---
apiVersion: v1
kind: Node
metadata: {name: n3}
status: {addresses: [{type: InternalIP, address: 10.200.254.3}]}
---
apiVersion: v1
kind: Node
metadata: {name: n4}
status: {addresses: [{type: InternalIP, address: 10.200.255.4}]}
---
apiVersion: v1
kind: Endpoints
metadata: {name: kubernetes, namespace: default}
subsets: [{addresses: [{ip: 10.200.255.2}, {ip: 192.0.2.10}], ports: [{name: https, port: 6443}]}]
---
apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {team: x}}
---
apiVersion: v1
kind: Pod
metadata: {name: a1, namespace: x, labels: {app: a}}
spec: {nodeName: n1, containers: [{name: c, ports: [{name: web, containerPort: 80}]}]}
status: {podIP: 10.200.1.1}
---
apiVersion: v1
kind: Pod
metadata: {name: a2, namespace: x, labels: {app: a}}
spec: {nodeName: n2, containers: [{name: c, ports: [{name: web, containerPort: 80}]}]}
status: {podIP: 10.200.2.1}
---
apiVersion: v1
kind: Pod
metadata: {name: a3, namespace: x, labels: {app: a}}
spec: {nodeName: n2, containers: [{name: c, ports: [{name: web, containerPort: 80}]}]}
status: {podIP: 10.200.2.2}
---
apiVersion: v1
kind: Pod
metadata: {name: a4, namespace: x, labels: {app: a}}
spec: {containers: [{name: c, ports: [{name: web, containerPort: 8080}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b1, namespace: x, labels: {app: b}}
spec: {nodeName: n3, containers: [{name: c}]}
status: {podIP: 10.200.3.1}
---
apiVersion: v1
kind: Pod
metadata: {name: b2, namespace: x, labels: {app: b}}
spec: {nodeName: n4, containers: [{name: c}]}
status: {podIP: 10.200.2.9}
---
apiVersion: v1
kind: Pod
metadata: {name: c1, namespace: x, labels: {app: c}}
spec: {nodeName: n1, containers: [{name: c}]}
status: {podIP: 10.200.5.1}
---
apiVersion: v1
kind: Pod
metadata: {name: d1, namespace: x, labels: {app: d}}
spec: {nodeName: n1, containers: [{name: c, ports: [{name: web, containerPort: 8080}]}]}
status: {podIP: 10.200.1.2}
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: b-only}
spec:
  priority: 1
  subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: b}}}}
  ingress:
    - {name: from-c, action: Allow, from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: c}}}}], ports: [{portNumber: {protocol: TCP, port: 9000}}]}
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: guard}
spec:
  priority: 5
  subject: {namespaces: {}}
  egress:
    - {name: to-control, action: Allow, to: [{nodes: {matchLabels: {role: control}}}]}
    - {name: no-two, action: Deny, to: [{networks: [10.200.2.0/24, 10.200.254.0/24]}], ports: [{portRange: {start: 1000, end: 2000}}]}
    - {name: web, action: Allow, to: [{pods: {namespaceSelector: {}, podSelector: {}}}], ports: [{namedPort: web}]}
    - {name: pass-cluster, action: Pass, to: [{networks: [10.200.0.0/16]}]}
    - {name: no-ssh, action: Deny, to: [{networks: [0.0.0.0/0]}], ports: [{portNumber: {protocol: TCP, port: 22}}]}
  ingress:
    - {name: from-b, action: Pass, from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: b}}}}], ports: [{portNumber: {protocol: TCP, port: 443}}]}
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: BaselineAdminNetworkPolicy
metadata: {name: default}
spec:
  subject: {namespaces: {}}
  ingress:
    - {name: deny-b, action: Deny, from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: b}}}}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-out, namespace: x}
spec:
  podSelector: {matchLabels: {app: b}}
  policyTypes: [Egress]
  egress:
    - ports: [{port: 53, protocol: UDP}, {port: 7000}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: a-api, namespace: x}
spec:
  endpointSelector: {matchLabels: {app: a}}
  egress:
    - toEntities: [kube-apiserver]
      toPorts: [{ports: [{port: \"6443\"}]}]
    - toEntities: [remote-node]
      toPorts: [{ports: [{port: \"10250\"}]}]
";

#[test]
fn classes_keep_apart_what_tiers_and_the_api_server_tell_apart() {
    let mut input = policyc::front::Input::default();
    input.add_source("tiers.yaml", TIERS.to_string());
    let loaded = load_input(input);
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    let cluster = &loaded.lowered.cluster;
    assert_eq!(cluster.tier_policies.len(), 3);
    assert_eq!(cluster.apiserver.len(), 2);
    check("tiers", cluster);
}

#[test]
fn a_bad_selector_is_reported_before_the_input_is_read() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_policyc"))
        .args(["connectivity", "/nonexistent/per-class-input", "--select", "tier in data"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error: --select:") && !stderr.contains("per-class-input"), "{stderr}");
}
