//! Services end to end: the service tables of every golden case with
//! Services agree with the reference answer (`ir::service::connect`) line
//! by line, and the CLI traces through a Service, lists Services in
//! `connectivity` and explains one.

use policyc::emit::{emit, BundleOptions};
use policyc::pipeline::load;
use policyc_bundle::backends::BackendLine;
use policyc_bundle::services::{Action, Scope, ServiceLine};
use policyc_ir::eval::Party;
use policyc_ir::service::connect::{connect, DropReason, Outcome, ServiceQuery};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn service_cases() -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(root().join("tests/golden"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("svc-"))
        .map(|p| p.join("input"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 5, "{cases:?}");
    cases
}

#[test]
fn service_tables_agree_with_the_reference_answer() {
    for case in service_cases() {
        let loaded = load(std::slice::from_ref(&case));
        assert!(!loaded.has_errors(), "{}: {:#?}", case.display(), loaded.diagnostics);
        let cluster = &loaded.lowered.cluster;
        let resolved = policyc_ir::resolve::resolve(cluster);
        let mut checked = 0;
        for bundle in emit(cluster, &resolved, None, &BundleOptions::default()).unwrap() {
            let node = cluster.nodes.iter().position(|n| n.name == bundle.node).expect("a Node object");
            let ids: BTreeMap<(IpAddr, u16), u32> = BackendLine::parse_all("b", 1, &bundle.files["maps/backends.txt"])
                .unwrap()
                .into_iter()
                .map(|b| ((b.address.addr, b.address.port), b.id))
                .collect();
            for line in ServiceLine::parse_all("s", 1, &bundle.files["maps/services.txt"]).unwrap() {
                let internal = line.scope == Scope::Int || line.kind.name() == "ClusterIP";
                if internal && !line.sources.is_empty() {
                    // A node's or pod's address outside the source ranges is
                    // dropped before any backend (`connect`); the table's
                    // sources field says the same.
                    continue;
                }
                let src = if internal {
                    Party::Node(node)
                } else {
                    // Inside the source ranges, if any.
                    Party::External(line.sources.first().map_or("203.0.113.99".parse().unwrap(), |c| c.addr()))
                };
                let (address, protocol, port) = (line.frontend.addr, line.frontend.protocol, line.frontend.port);
                let q = ServiceQuery { src, via: Some(node), address, protocol, port };
                let want = match connect(cluster, &q) {
                    Outcome::Backends { backends, .. } => {
                        let listed = backends.iter().filter_map(|b| Some((b.backend.address?, b.backend.port)));
                        format!("{:?}", listed.map(|k| ids[&k]).collect::<BTreeSet<u32>>())
                    }
                    Outcome::Refused { .. } => "Reject".to_string(),
                    Outcome::Dropped { reason: DropReason::NoLocalEndpoint, .. } => "Drop".to_string(),
                    other => panic!("{}: {line}: {other:?}", case.display()),
                };
                let got = match &line.action {
                    Action::Backends(list) => format!("{:?}", list.iter().copied().collect::<BTreeSet<u32>>()),
                    other => format!("{other:?}"),
                };
                assert_eq!(got, want, "{} node {}: {line}", case.display(), bundle.node);
                checked += 1;
            }
        }
        assert!(checked > 0, "{}: no service line checked", case.display());
    }
}

fn policyc(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_policyc")).args(args).current_dir(root()).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

const CASE: &str = "tests/golden/svc-node-ports-and-policies/input";

#[test]
fn trace_follows_a_connection_through_the_service_to_each_backend() {
    let (code, out, _) =
        policyc(&["trace", CASE, "--from", "shop/client", "--to", "svc:shop/api", "--port", "80", "--exit-code"]);
    assert_eq!(code, 1, "a backend denies: {out}");
    assert!(
        out.starts_with(
            "shop/client -> svc:shop/api TCP/80 via 10.96.1.10:80/TCP (ClusterIP): 1 of 2 backend(s) allowed\n"
        ),
        "{out}"
    );
    assert!(out.contains("  shop/client -> shop/api-a TCP/8080: ALLOWED\n"), "{out}");
    assert!(out.contains("  shop/client -> shop/api-b TCP/8080: DENIED\n"), "{out}");

    let (code, out, _) =
        policyc(&["trace", CASE, "--from", "shop/client", "--to", "svc:shop/api", "--port", "80", "--output", "json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["dst"], "svc:shop/api");
    assert_eq!(v["outcome"], "backends");
    assert_eq!(v["backends"].as_array().unwrap().len(), 2);
    assert_eq!(v["backends"][1]["ingress"]["verdict"], "deny");

    // From outside, to the load-balancer IP: once per node; outside the
    // source ranges, dropped.
    let (_, out, _) =
        policyc(&["trace", CASE, "--from-cidr", "198.51.100.7", "--to-cidr", "192.0.2.20", "--port", "80"]);
    assert!(
        out.contains("(arriving at node node-a) via 192.0.2.20:80/TCP (LoadBalancer): 1 of 1 backend(s) allowed"),
        "{out}"
    );
    assert!(
        out.contains("(arriving at node node-b) via 192.0.2.20:80/TCP (LoadBalancer): 0 of 1 backend(s) allowed"),
        "{out}"
    );
    let (_, out, _) =
        policyc(&["trace", CASE, "--from-cidr", "203.0.113.7", "--to-cidr", "192.0.2.20", "--port", "80"]);
    assert!(out.contains("DROPPED: the source is outside the Service's loadBalancerSourceRanges"), "{out}");
    // A node port from outside with `externalTrafficPolicy: Local`: the client address is kept.
    let (_, out, _) =
        policyc(&["trace", CASE, "--from-cidr", "203.0.113.7", "--to-cidr", "10.200.255.1", "--port", "30080"]);
    assert!(out.contains("ip:203.0.113.7 -> shop/api-a TCP/8080: ALLOWED"), "{out}");
    assert!(!out.contains("masquerades"), "{out}");

    // No endpoints: refused; a cluster IP on a port the Service lacks: dropped.
    let other = "tests/golden/svc-selector-backends/input";
    let (_, out, _) = policyc(&["trace", other, "--from", "shop/client", "--to", "svc:shop/nothing", "--port", "80"]);
    assert!(out.contains("REFUSED: no endpoints"), "{out}");
    let (_, out, _) = policyc(&["trace", other, "--from", "shop/client", "--to", "svc:shop/web", "--port", "81"]);
    assert!(out.contains("DROPPED: the Service defines no such port"), "{out}");
    // Unknown and headless Services are usage errors.
    let (code, _, err) = policyc(&["trace", other, "--from", "shop/client", "--to", "svc:shop/wbe", "--port", "80"]);
    assert_eq!(code, 2);
    assert!(err.contains("did you mean `svc:shop/web`?"), "{err}");
    let (code, _, err) =
        policyc(&["trace", other, "--from", "shop/client", "--to", "svc:shop/web-headless", "--port", "80"]);
    assert_eq!(code, 2);
    assert!(err.contains("has no cluster IP"), "{err}");
}

#[test]
fn connectivity_lists_services_and_explain_describes_one() {
    let (code, out, _) = policyc(&["connectivity", CASE, "--output", "json"]);
    assert_eq!(code, 0);
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["src"] == "shop/client" && r["dst"] == "svc:shop/api")
        .expect("a row to the Service");
    assert_eq!(row["allowed"], serde_json::json!(["TCP/80 (some backends)"]));
    let (_, table, _) = policyc(&["connectivity", CASE]);
    assert!(
        table.lines().any(|l| l.split_whitespace().collect::<Vec<_>>()
            == ["shop/client", "->", "svc:shop/api-local", "TCP/80,UDP/53"]),
        "{table}"
    );

    let (code, out, _) = policyc(&["explain", "svc:shop/api-local", CASE]);
    assert_eq!(code, 0);
    assert!(out.starts_with("svc:shop/api-local (NodePort)\n  internalTrafficPolicy Local, externalTrafficPolicy Cluster, session affinity ClientIP 60s\n"), "{out}");
    assert!(
        out.contains("    node node-a: shop/api-a 10.200.1.10:8080\n    node node-b: shop/api-b 10.200.2.10:8080\n"),
        "{out}"
    );
    assert!(out.contains("    every node's address:30081/TCP (NodePort)\n"), "{out}");
    let (_, out, _) = policyc(&["explain", "svc:shop/api", CASE, "--output", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["type"], "LoadBalancer");
    assert_eq!(v["ports"][0]["reached_by"], serde_json::json!(["shop/api-a", "shop/api-b", "shop/client"]));
}

#[test]
fn previous_backend_and_reverse_nat_ids_are_kept() {
    let out = std::env::temp_dir().join(format!("policyc-sv-previous-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let first = out.join("first");
    let (code, _, err) = policyc(&["compile", CASE, "--out", first.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    // Give one backend and one frontend other ids in the previous bundle,
    // as a compile with other colliding keys could have.
    let node = first.join("node-a");
    let backends = std::fs::read_to_string(node.join("maps/backends.txt")).unwrap();
    let (old_id, rest) = backends.lines().next().unwrap().split_once(' ').unwrap();
    std::fs::write(node.join("maps/backends.txt"), format!("7 {rest}\n")).unwrap();
    let revnat = std::fs::read_to_string(node.join("maps/revnat.txt")).unwrap();
    let (old_rev, frontend) = revnat.lines().next().unwrap().split_once(' ').unwrap();
    std::fs::write(node.join("maps/revnat.txt"), format!("9 {frontend}\n")).unwrap();

    let second = out.join("second");
    let (code, _, err) =
        policyc(&["compile", CASE, "--out", second.to_str().unwrap(), "--previous", node.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let backends = std::fs::read_to_string(second.join("node-a/maps/backends.txt")).unwrap();
    assert!(backends.lines().any(|l| l == format!("7 {rest}")), "{backends}");
    assert!(!backends.contains(&format!("{old_id} {rest}")), "{backends}");
    let services = std::fs::read_to_string(second.join("node-a/maps/services.txt")).unwrap();
    let revnat = std::fs::read_to_string(second.join("node-a/maps/revnat.txt")).unwrap();
    assert!(revnat.lines().any(|l| l == format!("9 {frontend}")), "{revnat}");
    assert!(!revnat.lines().any(|l| l.starts_with(&format!("{old_rev} "))), "{revnat}");
    assert!(services.contains(&format!("{frontend} ext ")), "{services}");
    let _ = std::fs::remove_dir_all(&out);
}
