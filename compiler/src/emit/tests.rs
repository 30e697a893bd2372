use super::*;
use policyc_ir::cidr::Cidr;
use policyc_ir::cluster::{Endpoint, EndpointKind, NamedPort, Node};
use policyc_ir::ids::{PolicyId, RuleRef};
use policyc_ir::labels::Labels;
use policyc_ir::policy::{Action, Peer, Peers, Policy, PolicyKind, PolicyOrigin, PortMatch, PortSpec, Rule, Subject};
use policyc_ir::protocol::{Direction, PortRange, Protocol};
use policyc_ir::resolve::resolve;
use policyc_ir::selector::{LabelSelector, Requirement};
use std::sync::Arc;

fn pod(name: &str, app: &str, ip: &str, node: &str) -> Endpoint {
    Endpoint {
        namespace: "shop".into(),
        name: name.into(),
        kind: EndpointKind::Pod,
        labels: Labels::from_pairs([("app", app), ("io.kubernetes.pod.namespace", "shop")]),
        ips: vec![ip.parse().unwrap()],
        node: Some(node.into()),
        named_ports: vec![],
    }
}

fn cluster() -> Cluster {
    let api = LabelSelector::everything().with(Requirement::equals("app", "api"));
    let web = LabelSelector::everything().with(Requirement::equals("app", "web"));
    Cluster {
        namespaces: Default::default(),
        endpoints: vec![pod("api", "api", "10.0.1.2", "node-a"), pod("web", "web", "10.0.2.2", "node-b")],
        nodes: vec![
            Node { name: "node-a".into(), labels: Labels::new(), ips: vec!["192.168.0.1".parse().unwrap()] },
            Node { name: "node-b".into(), labels: Labels::new(), ips: vec!["192.168.0.2".parse().unwrap()] },
        ],
        policies: vec![Policy {
            origin: PolicyOrigin {
                kind: PolicyKind::CiliumNetworkPolicy,
                namespace: Some("shop".into()),
                name: "api".into(),
                spec_path: "spec".into(),
            },
            subject: Subject::Endpoints(api),
            default_deny: [true, false],
            requires: [vec![], vec![]],
            deny_requires: [Vec::new(), Vec::new()],
            rules: vec![
                Rule {
                    path: "spec.ingress[0]".into(),
                    direction: Direction::Ingress,
                    action: Action::Allow,
                    peers: Peers::Only(vec![Peer::Endpoints(web)]),
                    ports: Some(vec![PortMatch {
                        protocol: Some(Protocol::Tcp),
                        ports: PortSpec::Range(PortRange { lo: 8080, hi: 8081 }),
                    }]),
                    l7: None,
                },
                Rule {
                    path: "spec.ingressDeny[0]".into(),
                    direction: Direction::Ingress,
                    action: Action::Deny,
                    peers: Peers::Only(vec![Peer::Cidr {
                        cidr: Cidr::parse_strict("203.0.113.0/24").unwrap(),
                        except: vec![],
                    }]),
                    ports: None,
                    l7: None,
                },
            ],
        }],
        tier_policies: Vec::new(),
        apiserver: vec![],
        services: vec![],
    }
}

fn options() -> BundleOptions {
    BundleOptions { source_hash: "sha256:abc".into(), ..BundleOptions::default() }
}

#[test]
fn renders_each_map_of_each_node() {
    let cluster = cluster();
    let resolved = resolve(&cluster);
    let bundles = emit(&cluster, &resolved, None, &options()).unwrap();
    assert_eq!(bundles.iter().map(|b| b.node.as_str()).collect::<Vec<_>>(), ["node-a", "node-b"]);
    let a = &bundles[0];
    let api = resolved.endpoints[0].identity.unwrap();
    let web = resolved.endpoints[1].identity.unwrap();
    assert_eq!(
        a.files.keys().collect::<Vec<_>>(),
        [
            "manifest.json",
            "maps/endpoints.txt",
            "maps/identities.txt",
            "maps/ipcache.txt",
            format!("maps/policy/{api}.txt").as_str(),
            "maps/rules.txt",
            "normalized-policy.json"
        ]
    );
    // The normalized policy reads back, and is one text for every node.
    let normalized = policyc_bundle::normalized::from_text(&a.files["normalized-policy.json"]).unwrap();
    assert_eq!(normalized.table(), resolved.table);
    assert!(Arc::ptr_eq(&a.files["normalized-policy.json"], &bundles[1].files["normalized-policy.json"]));
    assert_eq!(a.programs.keys().collect::<Vec<_>>(), ["programs/from_container.o", "programs/to_container.o"]);
    let cidr = resolved.cidr_identities[&Cidr::parse_strict("203.0.113.0/24").unwrap()];
    assert!(cidr.is_cidr());
    assert_eq!(
        *a.files["maps/ipcache.txt"],
        format!(
            "0.0.0.0/0 9 world\n10.0.1.2/32 {api} endpoint:shop/api\n10.0.2.2/32 {web} endpoint:shop/web\n\
             192.168.0.1/32 1 host\n192.168.0.2/32 6 node:node-b\n203.0.113.0/24 {cidr} cidr\n::/0 10 world\n"
        )
    );
    // Cookies are the cluster's: the same whatever node a bundle is for.
    let names = maps::RuleNames::new(&cluster);
    let (allow, deny) =
        (names.cookie(RuleRef::new(PolicyId::new(0), 0)), names.cookie(RuleRef::new(PolicyId::new(0), 1)));
    assert_eq!(
        *a.files[&format!("maps/policy/{api}.txt")],
        format!(
            "ingress {web} 6/8080/23 allow {allow} CiliumNetworkPolicy/shop/api:spec.ingress[0]\n\
             ingress {cidr} 0/0/0 deny {deny} CiliumNetworkPolicy/shop/api:spec.ingressDeny[0]\n"
        )
    );
    let mut table = [
        format!("{allow} CiliumNetworkPolicy/shop/api:spec.ingress[0]\n"),
        format!("{deny} CiliumNetworkPolicy/shop/api:spec.ingressDeny[0]\n"),
    ];
    table.sort_by_key(|line| line.split(' ').next().unwrap().parse::<u32>().unwrap());
    assert_eq!(*a.files["maps/rules.txt"], table.concat());
    let ids = endpoint_ids_of(a);
    assert_eq!(*a.files["maps/endpoints.txt"], format!("10.0.1.2 {} {api} ingress shop/api\n", ids[0]));
    let identities = &a.files["maps/identities.txt"];
    assert!(identities.starts_with("1 reserved reserved:host\n2 reserved reserved:world\n"));
    assert!(identities.contains(&format!("{api} endpoint app=api,io.kubernetes.pod.namespace=shop\n")));
    assert!(identities.ends_with(&format!("{cidr} cidr cidr:203.0.113.0/24\n")));
    // node-b's ipcache sees node-a as a remote node and itself as host.
    assert!(bundles[1].files["maps/ipcache.txt"].contains("192.168.0.1/32 6 node:node-a\n192.168.0.2/32 1 host\n"));
    let manifest: serde_json::Value = serde_json::from_str(&a.files["manifest.json"]).unwrap();
    assert_eq!(manifest["format_version"], 7);
    assert_eq!(manifest["node"], "node-a");
    assert_eq!(manifest["source_hash"], "sha256:abc");
    let maps: Vec<(&str, Option<u64>)> = manifest["maps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["name"].as_str().unwrap(), m["entries"].as_u64()))
        .collect();
    assert_eq!(
        maps,
        [
            ("state", None),
            ("clock", None),
            ("ipcache", Some(7)),
            ("endpoints", Some(1)),
            ("policy", Some(2)),
            ("policy_exact", None),
            ("conntrack4", None),
            ("conntrack6", None),
            ("lb4_services", None),
            ("lb4_backends", None),
            ("lb4_reverse_nat", None),
            ("lb4_affinity", None),
            ("metrics", None),
            ("forwarded", None),
            ("events", None),
            ("events_lost", None)
        ]
    );
    // The api pod's programs carry its id and the lookups its policy needs:
    // ingress entries for specific peers only, no egress entries.
    let endpoint = &manifest["endpoints"][0];
    assert_eq!(endpoint["name"], "shop/api");
    assert_eq!(endpoint["stem"], "shop.api");
    assert_eq!(endpoint["policy_file"], format!("maps/policy/{api}.txt"));
    assert_eq!(endpoint["id"].as_u64().unwrap().to_string(), ids[0]);
    assert_eq!(endpoint["config"]["endpoint_id"], endpoint["id"]);
    assert_eq!(endpoint["config"]["ingress_by_peer"], true);
    assert_eq!(endpoint["config"]["ingress_any_peer"], false);
    assert_eq!(endpoint["config"]["egress_by_peer"], false);
    // The bundle carries the templates as built; the loader specializes.
    for template in policyc_ebpf::Template::ALL {
        let path = manifest["programs"][template.suffix()].as_str().unwrap();
        assert_eq!(a.programs[path], template.bytes());
    }
    let cookies = &a.files["maps/rules.txt"];
    assert_eq!(cookies.lines().count(), 2);
    assert!(cookies.contains(" CiliumNetworkPolicy/shop/api:spec.ingress[0]\n"));
}

fn endpoint_ids_of(bundle: &Bundle) -> Vec<String> {
    bundle.files["maps/endpoints.txt"].lines().map(|l| l.split(' ').nth(1).unwrap().to_string()).collect()
}

#[test]
fn deterministic_and_endpoint_ids_stable() {
    let cluster = cluster();
    let first = emit(&cluster, &resolve(&cluster), None, &options()).unwrap();
    let second = emit(&cluster, &resolve(&cluster), None, &options()).unwrap();
    assert_eq!(first, second);
    let mut grown = cluster.clone();
    grown.endpoints.insert(1, pod("cache", "cache", "10.0.1.3", "node-a"));
    let after = emit(&grown, &resolve(&grown), Some("node-a"), &options()).unwrap();
    let api_line =
        |b: &Bundle| b.files["maps/endpoints.txt"].lines().find(|l| l.ends_with("shop/api")).unwrap().to_string();
    assert_eq!(api_line(&first[0]), api_line(&after[0]));
}

#[test]
fn placeholder_digests_leave_every_file_as_long_and_only_digests_differ() {
    let cluster = cluster();
    let resolved = resolve(&cluster);
    let real = emit(&cluster, &resolved, None, &options()).unwrap();
    let measured = BundleOptions { digests: Digests::Placeholder, ..options() };
    let placeholder = emit(&cluster, &resolved, None, &measured).unwrap();
    for (real, placeholder) in real.iter().zip(&placeholder) {
        assert_eq!(real.programs, placeholder.programs);
        assert_eq!(real.files.keys().collect::<Vec<_>>(), placeholder.files.keys().collect::<Vec<_>>());
        for (path, text) in &real.files {
            let other = &placeholder.files[path];
            assert_eq!(text.len(), other.len(), "{path}");
            if path != "manifest.json" {
                assert_eq!(text, other, "{path}");
            }
        }
        let zeros = "0".repeat(64);
        assert!(placeholder.files["manifest.json"].contains(&zeros));
        assert!(!real.files["manifest.json"].contains(&zeros));
    }
}

#[test]
fn capacity_and_unknown_node_are_errors() {
    let cluster = cluster();
    let resolved = resolve(&cluster);
    let small = BundleOptions { policy_map_capacity: 1, ..options() };
    match emit(&cluster, &resolved, None, &small) {
        Err(EmitError::Capacity(c)) => {
            assert_eq!((c.node.as_str(), c.map.as_str(), c.entries, c.capacity), ("node-a", "policy/shop.api", 2, 1));
        }
        other => panic!("expected a capacity error, got {other:?}"),
    }
    assert_eq!(emit(&cluster, &resolved, Some("node-z"), &options()), Err(EmitError::UnknownNode("node-z".into())));
    let mut broken = resolved.clone();
    broken.ipcache.clear();
    assert!(matches!(emit(&cluster, &broken, None, &options()), Err(EmitError::Invalid(_))));
}

#[test]
fn writes_and_replaces_a_bundle_directory() {
    let cluster = cluster();
    let bundle = emit(&cluster, &resolve(&cluster), Some("node-a"), &options()).unwrap().remove(0);
    let root = std::env::temp_dir().join(format!("policyc-emit-test-{}", std::process::id()));
    let dir = root.join("node-a");
    let _ = std::fs::remove_dir_all(&root);
    bundle.write_to(&dir).unwrap();
    std::fs::write(dir.join("maps/policy/stale.txt"), "old").unwrap();
    bundle.write_to(&dir).unwrap();
    assert!(!dir.join("maps/policy/stale.txt").exists());
    assert_eq!(std::fs::read_to_string(dir.join("maps/ipcache.txt")).unwrap(), *bundle.files["maps/ipcache.txt"]);
    let other = root.join("not-a-bundle");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "mine").unwrap();
    assert!(matches!(bundle.write_to(&other), Err(EmitError::Io(_))));
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn identity_table_round_trips_through_identities_txt() {
    let cluster = cluster();
    let resolved = resolve(&cluster);
    let text = policyc_bundle::join(&maps::identities(&resolved));
    assert_eq!(maps::read_identity_table(&text).unwrap(), resolved.table);
    assert!(maps::read_identity_table("256 endpoint app").is_err());
    assert!(maps::read_identity_table("x endpoint app=a").is_err());
}

#[test]
fn endpoints_of_one_identity_share_a_policy_file_unless_their_named_ports_differ() {
    let mut cluster = cluster();
    let http = |port| NamedPort { name: "http".into(), protocol: Protocol::Tcp, port };
    for (name, ip, port) in [("api-1", "10.0.1.3", 8080), ("api-2", "10.0.1.4", 8080)] {
        let mut p = pod(name, "api", ip, "node-a");
        p.named_ports = vec![http(port)];
        cluster.endpoints.push(p);
    }
    let named = |cluster: &mut Cluster| {
        cluster.policies[0].rules[0].ports =
            Some(vec![PortMatch { protocol: Some(Protocol::Tcp), ports: PortSpec::Named("http".into()) }]);
    };
    let files_of = |cluster: &Cluster| -> BTreeMap<String, String> {
        let resolved = resolve(cluster);
        let bundle = emit(cluster, &resolved, Some("node-a"), &options()).unwrap().remove(0);
        let manifest: serde_json::Value = serde_json::from_str(&bundle.files["manifest.json"]).unwrap();
        let files = manifest["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["name"].as_str().unwrap().to_string(), e["policy_file"].as_str().unwrap().to_string()))
            .collect::<BTreeMap<_, _>>();
        for file in files.values() {
            assert!(bundle.files.contains_key(file), "{file} is not in the bundle");
        }
        let policy_files = bundle.files.keys().filter(|f| f.starts_with("maps/policy/")).count();
        assert_eq!(policy_files, files.values().collect::<BTreeSet<_>>().len(), "a policy file nobody uses");
        files
    };
    // A port policy: the three api pods have one map and one file.
    let api = resolve(&cluster).endpoints[0].identity.unwrap();
    let shared = format!("maps/policy/{api}.txt");
    assert!(files_of(&cluster).values().all(|f| *f == shared));
    // A named port: `api` (no such port) differs from `api-1` and `api-2`,
    // so each map is named after its first endpoint.
    named(&mut cluster);
    let files = files_of(&cluster);
    assert_eq!(files["shop/api"], format!("maps/policy/{api}.shop.api.txt"));
    assert_eq!(files["shop/api-1"], format!("maps/policy/{api}.shop.api-1.txt"));
    assert_eq!(files["shop/api-2"], files["shop/api-1"]);
}
