//! The node agent's binding latency (`cargo xtask bench agent`, root):
//! 100 pods made one after another as a runtime makes them (`ptp` with
//! `host-local`, then `policyc-cni`), each ADD timed from the moment
//! `policyc-cni` sends it to the moment it returns, which is when the
//! agent has the pod's programs attached and its entries in force (one
//! bind and one generation flip per ADD, as they come one at a time).
//! Then the agent's resident memory, and one probe that the last pod is
//! enforced. The agent's state directory is a tmpfs, as its default
//! `/run/policyc` is on a node. Two series in one run, one per `run
//! --attach` mechanism (tcx first, as the baseline); then 1 000 local pods
//! (a /21 of `host-local`), 20 local pods beside 150 000 cluster pods, and
//! churn at 100 pods a second. Ignored in the normal run: it takes about
//! ten minutes.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;
use support::cni::{http_get, write_cluster, Bed};

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

/// Writes `count` pods of other nodes into the cluster directory, as the
/// API lists a large cluster's: `app=client`, one IPv6 address each in
/// `fd00:a9::/64` (ipcache entries only: no traffic goes to them).
fn write_remote_pods(dir: &std::path::Path, count: usize) {
    let mut text = String::with_capacity(count * 260);
    for i in 0..count {
        text.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: r{i}, namespace: web, labels: {{app: client}}}}\n\
             spec: {{nodeName: far-{}, containers: [{{name: main}}]}}\nstatus: {{podIPs: [{{ip: 'fd00:a9::{:x}:{:x}'}}]}}\n",
            i % 5000,
            i >> 16,
            i & 0xffff
        ));
    }
    std::fs::write(dir.join("remote.yaml"), text).unwrap();
}

/// One series: `pods` pods added one by one to an agent attaching with
/// `attach`, with `remote` pods of other nodes in the cluster; the ADD
/// times, sorted, and the agent's resident memory (KiB).
fn series(tag: &str, offset: u32, attach: &str) -> (Vec<Duration>, u64) {
    series_of(Bed::new(tag, offset), attach, PODS, 0)
}

/// Starts the agent of `bed` on `bundle` and `cluster`, serving metrics,
/// and waits until it is ready (bounded).
fn start_ready(bed: &mut Bed, remote: usize) {
    let (bundle, cluster) = (bed.bundle.clone(), bed.cluster.clone());
    let metrics = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    bed.start_agent(&bundle, &cluster, Some(metrics));
    // Ready once the first cluster list is bound: what a DaemonSet's
    // readiness waits for before the node takes pods.
    let started = Instant::now();
    while !http_get(metrics, "/readyz").is_some_and(|a| a.starts_with("HTTP/1.1 200")) {
        assert!(started.elapsed() < Duration::from_secs(600), "the agent never became ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    if remote > 0 {
        println!("agent ready with {remote} cluster pods after {:.1} s", started.elapsed().as_secs_f64());
    }
}

fn series_of(mut bed: Bed, attach: &str, local: usize, remote: usize) -> (Vec<Duration>, u64) {
    let _state = Tmpfs::mount(bed.dir.0.join("state"));
    bed.agent_args = vec!["--attach".into(), attach.into()];
    let names: Vec<String> = (0..local).map(|i| format!("p{i:04}")).collect();
    let mut pods: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "client")).collect();
    pods.push(("server", "server"));
    write_cluster(&bed.cluster, bed.n, &pods);
    if remote > 0 {
        write_remote_pods(&bed.cluster, remote);
    }
    start_ready(&mut bed, remote);
    bed.add_pod("server", 1);
    let mut took: Vec<Duration> = names.iter().map(|name| bed.add_pod_serving(name, 1, false)).collect();
    let rss = resident_kib(bed.agent.as_ref().unwrap().id());
    took.sort();
    // The figures first: a failed check below must not lose a long run's.
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    eprintln!(
        "{local} local pods, {remote} cluster pods: p50 {:.1} ms, p99 {:.1} ms, {:.1} MiB",
        ms(percentile(&took, 50.0)),
        ms(percentile(&took, 99.0)),
        rss as f64 / 1024.0
    );
    bed.expect(names.last().unwrap(), "server", true, "the last pod is bound as a client");
    assert_eq!(bed.agent_report()["endpoints"], local + 1);
    if remote > 0 {
        let fill = policyc_loader::status::status(&bed.paths).unwrap().fill["ipcache"];
        assert!(fill[0].max(fill[1]) > remote, "the cluster's pods are in the ipcache: {fill:?}");
    }
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

/// Pods of other nodes in the ipcache for [`add_to_enforced_at_scale`]
/// (`POLICYC_BENCH_CLUSTER_PODS`, default 150 000).
fn cluster_pods() -> usize {
    std::env::var("POLICYC_BENCH_CLUSTER_PODS").ok().and_then(|v| v.parse().ok()).unwrap_or(150_000)
}

/// 1 000 local pods by default (`POLICYC_BENCH_LOCAL_PODS`), from the
/// wide bed's /21 ([`Bed::wide`]); then 20 local pods beside the cluster's
/// pods in the ipcache.
#[test]
#[ignore = "benchmark: cargo xtask bench agent"]
fn add_to_enforced_at_scale() {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let local: usize = std::env::var("POLICYC_BENCH_LOCAL_PODS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    println!("agent at scale (`run --attach tc`): CNI ADD to enforced and resident memory");
    println!("| local pods | cluster pods | p50 ms | p99 ms | max ms | resident MiB |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
    for (local, remote) in [(local, 0), (20, cluster_pods())] {
        let bed = if remote == 0 { Bed::wide("ag-bench-local") } else { Bed::new("ag-bench-remote", 134) };
        let (took, rss) = series_of(bed, "tc", local, remote);
        println!(
            "| {local} | {remote} | {:.1} | {:.1} | {:.1} | {:.1} |",
            ms(percentile(&took, 50.0)),
            ms(percentile(&took, 99.0)),
            ms(took[took.len() - 1]),
            rss as f64 / 1024.0
        );
    }
}

/// Pod churn (`run --attach tc`): pods made at `POLICYC_BENCH_CHURN_RATE`
/// a second (default 100) for `POLICYC_BENCH_CHURN_SECONDS` (default 20),
/// each deleted (CNI DEL, `ptp` DEL, its netns) about a second after its
/// ADD, by worker threads as a busy node's runtime would; every ADD timed
/// as above. The agent's resident memory once the first second's pods
/// are in and at the end, and the rate the bed actually reached (each pod
/// costs a netns and two plugin runs, on a shared machine).
#[test]
#[ignore = "benchmark: cargo xtask bench agent"]
fn add_to_enforced_under_churn() {
    let env = |name: &str, default: u64| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let (rate, seconds) = (env("POLICYC_BENCH_CHURN_RATE", 100), env("POLICYC_BENCH_CHURN_SECONDS", 20));
    let total = usize::try_from(rate * seconds).unwrap();
    let mut bed = Bed::wide("ag-bench-churn");
    let _state = Tmpfs::mount(bed.dir.0.join("state"));
    bed.agent_args = vec!["--attach".into(), "tc".into()];
    let names: Vec<String> = (0..total).map(|i| format!("c{i:05}")).collect();
    let mut pods: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "client")).collect();
    pods.push(("server", "server"));
    write_cluster(&bed.cluster, bed.n, &pods);
    start_ready(&mut bed, 0);
    bed.add_pod("server", 1);
    let agent = bed.agent.as_ref().unwrap().id();
    let next = AtomicUsize::new(0);
    let took = Mutex::new(Vec::with_capacity(total));
    let alive = Mutex::new(Vec::<String>::new());
    let _leftovers = ChurnLeftovers(&alive);
    let rss_start = Mutex::new(None);
    let lifetime = Duration::from_secs(1);
    let started = Instant::now();
    let interval = Duration::from_secs(1) / u32::try_from(rate).unwrap();
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                let mut mine: std::collections::VecDeque<(Instant, usize, String)> = std::collections::VecDeque::new();
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let due = started + interval * u32::try_from(i).unwrap();
                    while mine.front().is_some_and(|(at, _, _)| at.elapsed() >= lifetime || i >= total) {
                        let (_, old, result) = mine.pop_front().unwrap();
                        churn_delete(&bed, &names[old], &result, &alive);
                    }
                    if i >= total {
                        break;
                    }
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let (t, result) = churn_add(&bed, &names[i], &alive);
                    took.lock().unwrap().push(t);
                    mine.push_back((Instant::now(), i, result));
                    if started.elapsed() >= Duration::from_secs(1) {
                        rss_start.lock().unwrap().get_or_insert_with(|| resident_kib(agent));
                    }
                }
            });
        }
    });
    let elapsed = started.elapsed();
    let rss_end = resident_kib(agent);
    let left = alive.lock().unwrap().clone();
    assert!(left.is_empty(), "every churned pod was deleted: {left:?}");
    let mut took = took.into_inner().unwrap();
    took.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!("agent under churn (`run --attach tc`): {total} pods made and deleted, asked at {rate} a second");
    println!("| reached pods/s | p50 ms | p99 ms | max ms | resident MiB at 1 s | at the end |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
    println!(
        "| {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
        total as f64 / elapsed.as_secs_f64(),
        ms(percentile(&took, 50.0)),
        ms(percentile(&took, 99.0)),
        ms(took[took.len() - 1]),
        mib(rss_start.into_inner().unwrap().unwrap_or(rss_end)),
        mib(rss_end)
    );
    assert_eq!(bed.agent_report()["endpoints"], 1, "only the server is left");
}

/// Makes churned pod `name` (netns, `ptp`, `policyc-cni` ADD); the ADD's
/// time and `ptp`'s result. Its netns is listed in `alive` until
/// [`churn_delete`].
fn churn_add(bed: &Bed, name: &str, alive: &Mutex<Vec<String>>) -> (Duration, String) {
    let (netns, id) = (format!("pc{}-{name}", bed.tag), format!("{}-{name}", bed.tag));
    support::netns::ip(&["netns", "add", &netns]);
    alive.lock().unwrap().push(netns.clone());
    let result = bed.ptp("ADD", &id, &netns, name);
    let started = Instant::now();
    policyc_cni::plugin::run(&bed.env("ADD", &id, &netns, name), &bed.policyc_conf(&result))
        .unwrap_or_else(|e| panic!("policyc-cni ADD of web/{name}: {e}"));
    (started.elapsed(), result)
}

/// Deletes churned pod `name` as a runtime does: `policyc-cni` DEL, `ptp`
/// DEL, the netns.
fn churn_delete(bed: &Bed, name: &str, result: &str, alive: &Mutex<Vec<String>>) {
    let (netns, id) = (format!("pc{}-{name}", bed.tag), format!("{}-{name}", bed.tag));
    let conf = bed.policyc_conf(result);
    policyc_cni::plugin::run(&bed.env("DEL", &id, &netns, name), &conf)
        .unwrap_or_else(|e| panic!("policyc-cni DEL of web/{name}: {e}"));
    bed.ptp("DEL", &id, &netns, name);
    support::netns::ip(&["netns", "del", &netns]);
    alive.lock().unwrap().retain(|n| *n != netns);
}

/// Deletes the netns of churned pods left by a failed run.
struct ChurnLeftovers<'a>(&'a Mutex<Vec<String>>);

impl Drop for ChurnLeftovers<'_> {
    fn drop(&mut self) {
        for netns in self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).drain(..) {
            let _ = Command::new("ip").args(["netns", "del", &netns]).output();
        }
    }
}
