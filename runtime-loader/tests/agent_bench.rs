//! The node agent's binding latency (`cargo xtask bench agent`, root):
//! 100 pods made one after another as a runtime makes them (`ptp` with
//! `host-local`, then `policyc-cni`), each ADD timed from the moment
//! `policyc-cni` sends it to the moment it returns, which is when the
//! agent has the pod's programs attached and its entries in force (one
//! bind and one generation flip per ADD, as they come one at a time).
//! Then the agent's resident memory, and one probe that the last pod is
//! enforced. Ignored in the normal run: it takes about a minute.

mod support;

use std::time::Duration;
use support::cni::{write_cluster, Bed};

const PODS: usize = 100;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
#[ignore = "benchmark: cargo xtask bench agent"]
fn add_to_enforced_at_100_local_pods() {
    let mut bed = Bed::new("agent-bench", 131);
    let names: Vec<String> = (0..PODS).map(|i| format!("p{i:03}")).collect();
    let mut pods: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "client")).collect();
    pods.push(("server", "server"));
    let (n, bundle, cluster) = (bed.n, bed.bundle.clone(), bed.cluster.clone());
    write_cluster(&cluster, n, &pods);
    bed.start_agent(&bundle, &cluster, None);
    bed.add_pod("server", 1);
    let mut took: Vec<Duration> = names.iter().map(|name| bed.add_pod_serving(name, 1, false)).collect();
    bed.expect(names.last().unwrap(), "server", true, "the last pod is bound as a client");
    let rss = resident_kib(bed.agent.as_ref().unwrap().id());
    took.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("agent: CNI ADD to enforced, {PODS} pods added one by one to a node with 1 pod");
    println!(
        "  p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(percentile(&took, 50.0)),
        ms(percentile(&took, 99.0)),
        ms(took[took.len() - 1])
    );
    println!("  agent resident memory with {} local pods: {:.1} MiB", PODS + 1, rss as f64 / 1024.0);
    assert_eq!(bed.agent_report()["endpoints"], PODS + 1);
}
