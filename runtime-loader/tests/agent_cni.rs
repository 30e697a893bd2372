//! The node agent with real CNI plugins, the real kernel and real traffic.
//!
//! Pods are made as a container runtime makes them: a network namespace,
//! then the conflist's plugins in order with the CNI environment: Debian's
//! reference `ptp` with `host-local` IPAM (veth pair, addresses from this
//! run's 10.200.N.0/24, /32 host routes), then `policyc-cni` with the
//! `ptp` result as `prevResult` (run in-process through
//! `policyc_cni::plugin::run`, the function its binary calls with its
//! environment and stdin). The agent is the real `policyc-loader run`
//! process, with a bundle compiled by the `policyc` library and a cluster
//! directory the test edits. Each step checks real TCP between the pods:
//!
//! - a pod's policy is in force from the first probe after its ADD returns;
//! - the node reaches an ingress-isolated pod (kubelet's probes) from the
//!   address it picks, which only the agent's reading of the node's own
//!   addresses maps to `host`;
//! - relabelling a pod in the cluster directory moves it to the identity of
//!   its new labels and back;
//! - a pod deleted (DEL) and re-created with a new address and sandbox is
//!   enforced at its new address, and a late DEL of its old sandbox
//!   changes nothing;
//! - a pod whose label set the bundle does not know is held default-deny
//!   and reported;
//! - a bundle update (recompiled in place) is picked up and applied;
//! - `kill -9` of the agent leaves enforcement as it was, and the
//!   restarted agent adopts what is pinned without a flip (same generation
//!   and serial in the loader's record); it is ready on `/readyz`;
//! - SIGTERM leaves everything in force.
//!
//! Names (namespaces, the loader's root, the state directory, the CNI
//! network and IPAM directory) carry `agent` and the process id; the
//! addresses are this run's /24, blackholed on the host. Everything is
//! undone on drop, panics included.

mod support;

use policyc_cni::plugin::run as cni_run;
use policyc_loader::status::status;
use std::time::{Duration, Instant};
use support::cni::{http_get, send_signal, write_cluster, Bed};

#[test]
fn agent_binds_cni_pods_and_follows_the_cluster() {
    let mut bed = Bed::new("agent-cni", 97);
    let (bundle, cluster, n) = (bed.bundle.clone(), bed.cluster.clone(), bed.n);
    write_cluster(
        &cluster,
        n,
        &[("client", "client"), ("server", "server"), ("intruder", "intruder"), ("stranger", "stranger")],
    );

    bed.start_agent(&bundle, &cluster, None);

    // A node with no pods yet, then pods: each in force when ADD returns.
    bed.add_pod("client", 1);
    bed.add_pod("intruder", 1);
    let took = bed.add_pod("server", 1);
    bed.expect("intruder", "server", false, "first probe after the server's ADD");
    bed.expect("client", "server", true, "first probe after the server's ADD");
    bed.expect("server", "client", true, "client is not isolated");
    eprintln!("ADD of web/server to enforced: {:.1} ms", took.as_secs_f64() * 1000.0);
    // The node's own addresses are `host`: a probe from the node passes
    // the server's ingress policy. Its source is ptp's gateway on the
    // server's veth, an address no Node object lists (the agent finds it).
    let gateway: serde_json::Value = serde_json::from_str(&bed.pods[2].result).unwrap();
    let gateway = gateway["ips"][0]["gateway"].as_str().unwrap().to_string();
    assert_ne!(gateway, format!("10.200.{n}.254"), "the probe's source is not the Node object's address");
    assert_eq!(bed.probe_from_node("server"), support::netns::Seen::Answered, "from the node (source {gateway})");

    // Relabelled: the intruder becomes a client, then an intruder again.
    write_cluster(
        &cluster,
        n,
        &[("client", "client"), ("server", "server"), ("intruder", "client"), ("stranger", "stranger")],
    );
    bed.converge("intruder", "server", true, "intruder relabelled app=client");
    write_cluster(
        &cluster,
        n,
        &[("client", "client"), ("server", "server"), ("intruder", "intruder"), ("stranger", "stranger")],
    );
    bed.converge("intruder", "server", false, "intruder relabelled back");

    // Deleted, then re-created with a new sandbox and address.
    let old = bed.delete_pod("server");
    assert!(!bed.paths.link("web.server", "to").exists(), "a deleted pod's programs are detached once its DEL returns");
    bed.add_pod("server", 2);
    assert_ne!(bed.pod("server").ips, old.pod.ips, "host-local gives the re-created pod a new address");
    bed.expect("intruder", "server", false, "re-created server");
    bed.expect("client", "server", true, "re-created server");
    // The old sandbox's DEL, late: nothing of the new one changes.
    let late = bed.env("DEL", &old.container_id, &old.pod.netns, "server");
    cni_run(&late, &bed.policyc_conf(&old.result)).expect("a DEL of an unknown sandbox succeeds");
    bed.expect("client", "server", true, "after the old sandbox's late DEL");
    assert_eq!(bed.agent_report()["endpoints"], 3);

    // A label set the bundle does not know: held default-deny, reported.
    bed.add_pod("stranger", 1);
    bed.expect("stranger", "client", false, "held pod's egress");
    bed.expect("client", "stranger", false, "held pod's ingress");
    let report = bed.agent_report();
    let held = report["held"].as_array().unwrap();
    assert_eq!(held.len(), 1, "{report}");
    assert_eq!(held[0]["pod"], "web/stranger");
    assert!(held[0]["reason"].as_str().unwrap().contains("is not in the bundle"), "{report}");

    // A bundle update: the policy admits intruders too, then no more.
    bed.recompile(&["client", "intruder"]);
    bed.converge("intruder", "server", true, "a bundle admitting app=intruder");
    bed.expect("client", "server", true, "a bundle admitting app=intruder");
    bed.expect("stranger", "server", false, "a bundle admitting app=intruder");
    bed.recompile(&["client"]);
    bed.converge("intruder", "server", false, "the bundle back");

    // kill -9 under traffic: enforcement unchanged; the restart adopts
    // what is pinned without a flip.
    let before = status(&bed.paths).unwrap();
    send_signal(bed.agent.as_ref().unwrap(), "KILL");
    bed.agent.take().unwrap().wait().unwrap();
    bed.expect("client", "server", true, "agent killed");
    bed.expect("intruder", "server", false, "agent killed");
    let metrics = {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        free.local_addr().unwrap()
    };
    bed.start_agent(&bundle, &cluster, Some(metrics));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !http_get(metrics, "/readyz").is_some_and(|a| a.starts_with("HTTP/1.1 200")) {
        assert!(Instant::now() < deadline, "the restarted agent never became ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    let after = status(&bed.paths).unwrap();
    let json = |s: &policyc_loader::status::Status| serde_json::to_value(s).unwrap();
    let (before, after) = (json(&before), json(&after));
    assert_eq!(after["generation"], before["generation"], "no flip on restart (generation and serial)");
    assert_eq!(after["record"]["bundle_hash"], before["record"]["bundle_hash"], "the same state in force");
    let metrics_text = http_get(metrics, "/metrics").unwrap();
    assert!(metrics_text.contains("policyc_agent_endpoints 4\n"), "{metrics_text}");
    assert!(metrics_text.contains("policyc_agent_applies_total 0\n"), "the restart applied nothing: {metrics_text}");
    bed.expect("client", "server", true, "after the restart");
    bed.expect("intruder", "server", false, "after the restart");

    // SIGTERM: the agent stops, its policy stays.
    send_signal(bed.agent.as_ref().unwrap(), "TERM");
    let exit = bed.agent.take().unwrap().wait().unwrap();
    assert!(exit.success(), "SIGTERM is a clean stop: {exit}");
    bed.expect("client", "server", true, "after SIGTERM");
    bed.expect("intruder", "server", false, "after SIGTERM");
}
