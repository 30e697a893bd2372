//! The node agent's binding latency (`cargo xtask bench agent`, root):
//! 100 pods made one after another as a runtime makes them (`ptp` with
//! `host-local`, then `policyc-cni`), each ADD timed from the moment
//! `policyc-cni` sends it to the moment it returns, which is when the
//! agent has the pod's programs attached and its entries in force (one
//! bind and one generation flip per ADD, as they come one at a time).
//! Then the agent's resident memory, and one probe that the last pod is
//! enforced. The agent's state directory is a tmpfs, as its default
//! `/run/policyc` is on a node. Two series in one run, one per `run --attach` mechanism (tcx
//! first, as the baseline). Ignored in the normal run: it takes about two
//! minutes.

mod support;

use std::path::PathBuf;
use std::process::Command;
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

/// A tmpfs mounted on a directory, as the agent's `/run/policyc` is on a
/// node (this machine's `/run` is on disk, where each replaced record file
/// is written back, and a busy disk stalls it); lazily unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: PathBuf) -> Tmpfs {
        std::fs::create_dir_all(&dir).unwrap();
        let ok = Command::new("mount").args(["-t", "tmpfs", "policyc-agent-bench"]).arg(&dir).status().unwrap();
        assert!(ok.success(), "cannot mount a tmpfs on {}", dir.display());
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// One series: [`PODS`] pods added one by one to an agent attaching with
/// `attach`; the ADD times, sorted, and the agent's resident memory (KiB).
fn series(tag: &str, offset: u32, attach: &str) -> (Vec<Duration>, u64) {
    let mut bed = Bed::new(tag, offset);
    let _state = Tmpfs::mount(bed.dir.0.join("state"));
    bed.agent_args = vec!["--attach".into(), attach.into()];
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
    assert_eq!(bed.agent_report()["endpoints"], PODS + 1);
    took.sort();
    (took, rss)
}

#[test]
#[ignore = "benchmark: cargo xtask bench agent"]
fn add_to_enforced_at_100_local_pods() {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("agent: CNI ADD to enforced, {PODS} pods added one by one to a node with 1 pod, by `run --attach`");
    println!("| --attach | p50 ms | p99 ms | max ms | p99 × tcx | resident MiB |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    let mut tcx_p99 = None;
    for (tag, offset, attach) in [("agent-bench-tcx", 131, "tcx"), ("agent-bench-tc", 132, "tc")] {
        let (took, rss) = series(tag, offset, attach);
        let p99 = ms(percentile(&took, 99.0));
        let base = *tcx_p99.get_or_insert(p99);
        println!(
            "| {attach} | {:.1} | {p99:.1} | {:.1} | {:.2} | {:.1} |",
            ms(percentile(&took, 50.0)),
            ms(took[took.len() - 1]),
            p99 / base,
            rss as f64 / 1024.0
        );
    }
}
