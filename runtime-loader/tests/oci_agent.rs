//! The node agent pulling its bundle from a real OCI registry on loopback
//! (`policyc-loader run --bundle oci://REF --plain-http --poll-interval 1`),
//! with pods made through the real CNI plugins and real TCP between them
//! (the bed of `agent_cni.rs`):
//!
//! - the pods are enforced from the first probe after their ADD, with the
//!   bundle the registry served; `status` names the artifact's digest;
//! - a publish of a changed policy under the same tag is pulled and put
//!   in force; `status`, `/metrics` and the log name the new digest;
//! - the registry gone: pulls fail and are counted, and what is in force
//!   stays; a restarted agent that cannot reach the registry leaves it in
//!   force too.
//!
//! Names carry `oc` and the process id; addresses are this run's /24.

mod support;

use policyc_loader::status::status;
use policyc_oci::{publish, ArtifactRef, ClientOptions};
use std::path::Path;
use std::time::{Duration, Instant};
use support::cni::{http_get, send_signal, write_cluster, Bed};
use support::registry::Registry;

fn plain() -> ClientOptions {
    ClientOptions { plain_http: true, ..ClientOptions::default() }
}

fn artifact_digest(bed: &Bed) -> Option<String> {
    status(&bed.paths).unwrap().artifact.map(|a| a.digest)
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "{what} within 20 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn agent_pulls_its_bundle_and_keeps_it_when_the_registry_goes() {
    let mut bed = Bed::new("oc-agent", 171);
    let mut registry = Registry::start("oc-agent-registry");
    let text = registry.reference("policies:live");
    let reference = ArtifactRef::parse(&text).unwrap();
    let bundles = bed.bundle.parent().unwrap().to_path_buf();
    let first = publish(&bundles, &reference, &plain()).expect("publish");
    let (cluster, n) = (bed.cluster.clone(), bed.n);
    write_cluster(&cluster, n, &[("client", "client"), ("server", "server"), ("intruder", "intruder")]);
    let metrics = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    bed.agent_args = ["--plain-http", "--poll-interval", "1"].map(String::from).to_vec();
    bed.start_agent(Path::new(&text), &cluster, Some(metrics));

    bed.add_pod("client", 1);
    bed.add_pod("intruder", 1);
    bed.add_pod("server", 1);
    bed.expect("intruder", "server", false, "the first probe, bundle from the registry");
    bed.expect("client", "server", true, "the first probe, bundle from the registry");
    assert_eq!(artifact_digest(&bed), Some(first.digest.clone()), "status names the artifact");
    assert_eq!(bed.agent_report()["artifact"]["digest"], first.digest.as_str());

    // A changed policy, published under the same tag.
    bed.recompile(&["client", "intruder"]);
    let second = publish(&bundles, &reference, &plain()).expect("publish the change");
    assert_ne!(second.digest, first.digest);
    bed.converge("intruder", "server", true, "the published change admits app=intruder");
    wait_for("status names the new digest", || artifact_digest(&bed).as_deref() == Some(second.digest.as_str()));
    let text = http_get(metrics, "/metrics").unwrap();
    assert!(text.contains(&format!("policyc_agent_artifact_info{{digest=\"{}\"", second.digest)), "{text}");
    assert!(!text.contains("policyc_agent_artifact_blobs_fetched_total 0\n"), "{text}");

    // The registry goes: pulls fail, what is in force stays.
    registry.stop();
    wait_for("a failed pull counted", || {
        http_get(metrics, "/metrics").is_some_and(|t| !t.contains("policyc_agent_artifact_pull_failures_total 0\n"))
    });
    bed.expect("intruder", "server", true, "registry gone");
    bed.expect("client", "server", true, "registry gone");
    let before = status(&bed.paths).unwrap();
    assert_eq!(before.artifact.as_ref().map(|a| a.digest.as_str()), Some(second.digest.as_str()));

    // A restart that cannot reach the registry: nothing is applied, what
    // is pinned keeps enforcing.
    send_signal(bed.agent.as_ref().unwrap(), "KILL");
    bed.agent.take().unwrap().wait().unwrap();
    bed.start_agent(Path::new(&registry.reference("policies:live")), &cluster, None);
    std::thread::sleep(Duration::from_millis(1500));
    bed.expect("intruder", "server", true, "restarted without the registry");
    bed.expect("client", "server", true, "restarted without the registry");
    let after = status(&bed.paths).unwrap();
    assert_eq!(after.generation, before.generation, "no flip");
    assert_eq!(after.artifact, before.artifact);
}
