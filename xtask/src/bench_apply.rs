//! `cargo xtask bench apply [--quick]` (root): what the loader's applies
//! cost, in one run, beside `iptables-restore`:
//!
//! - **(a) changes** on a node whose policy holds [`ENTRIES`] entries (one
//!   pod whose ingress policy allows outside /32s and a client workload on
//!   [`PORTS`] ports): a one-rule change (one more /32 on one port) and a
//!   one-pod change (one more client pod on another node). Both
//!   generations hold the base before each timed apply, so it writes the
//!   change and nothing else; its JSON report gives the map operations.
//! - **(b) `iptables-restore`**, legacy and nft backends, of the equivalent
//!   [`ENTRIES`]-rule table (`-s A/32 -p tcp --dport P -j ACCEPT`) with one
//!   rule added, in a network namespace made for the run, so the host's
//!   tables are never touched.
//! - **(c) from scratch**: apply of a bundle of [`ENDPOINTS`] local
//!   endpoints to an empty node (every program verified and attached),
//!   their interfaces being veth pairs with /32 routes in a network
//!   namespace made for the run, where the loader runs (`nsenter`); once
//!   with the kernel's RCU as it is, once with expedited grace periods
//!   (`/sys/kernel/rcu_expedited`, put back afterwards), since each tcx
//!   attach waits for a grace period.
//!
//! Every apply is timed as a user runs it: a whole `policyc-loader`
//! process; the in-process time (the sum of the phases the loader reports)
//! is shown too, which is what a resident loader (a DaemonSet watching for
//! bundles) would pay. The loader's state directory is a tmpfs, as its
//! default `/run/policyc` is on a node (this machine's `/run` is on disk):
//! its record lives exactly as long as the bpffs pins it describes, and on
//! ext4 every record write, a file replaced, costs a writeback. A timed apply starts after [`GRACE`], so that it does not wait
//! for the previous apply's switch grace (which only back-to-back applies
//! pay). Best of [`RUNS`] for (a) and (b).
//!
//! With `POLICYC_BENCH_BASELINE_LOADER=<policyc-loader of another build>`,
//! the one-rule apply is timed again with that loader and then with this
//! one, each from its own `--reconcile` of the base, and the ratio shown.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RUNS: usize = 5;
/// Policy entries of the node in (a) and rules of the table in (b).
const ENTRIES: usize = 50_000;
/// Ports each allowed peer gets.
const PORTS: usize = 500;
/// Client pods of (a)'s base cluster.
const CLIENTS: usize = 20;
/// Local endpoints of (c).
const ENDPOINTS: usize = 1_000;
/// Longer than the loader's switch grace (10 ms).
const GRACE: Duration = Duration::from_millis(30);
const VETH: &str = "pcbench0";
const NETNS: &str = "pcbench";
const SCRATCH_NETNS: &str = "pcbench-eps";
const ROOT: &str = "policyc-bench";
const SCRATCH_ROOT: &str = "policyc-bench-scratch";

/// Deletes what the run made, even when it fails.
struct Cleanup {
    loader: PathBuf,
    states: Vec<PathBuf>,
}

impl Cleanup {
    /// Removes what this or an earlier, interrupted run made.
    fn run(&self) {
        for (root, state) in [ROOT, SCRATCH_ROOT].into_iter().zip(&self.states) {
            let _ = Command::new(&self.loader)
                .args(["--root", root, "--state"])
                .arg(state)
                .arg("uninstall")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = Command::new("umount").arg(&self.states[0]).stderr(Stdio::null()).status();
        let _ = Command::new("ip").args(["link", "del", VETH]).stderr(Stdio::null()).status();
        for netns in [NETNS, SCRATCH_NETNS] {
            let _ = Command::new("ip").args(["netns", "del", netns]).stderr(Stdio::null()).status();
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.run();
    }
}

pub(crate) fn sh(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.stderr(Stdio::piped()).output().map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn timed(cmd: &mut Command) -> Result<(Duration, String), String> {
    let start = Instant::now();
    let out = sh(cmd)?;
    Ok((start.elapsed(), out))
}

/// Runs `ip -batch` with `lines` (in network namespace `netns`).
fn ip_batch(netns: &str, lines: &str) -> Result<(), String> {
    let file = crate::bench::target_dir().join("bench/apply").join(format!("{netns}.ip"));
    std::fs::write(&file, lines).map_err(|e| e.to_string())?;
    sh(Command::new("ip").args(["-n", netns, "-batch"]).arg(&file)).map(drop)
}

const HEADER: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo\n---\n";

fn node(name: &str, address: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\nstatus:\n  addresses:\n    \
         - type: InternalIP\n      address: {address}\n---\n"
    )
}

fn pod(name: &str, app: &str, node: &str, ip: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: demo\n  labels:\n    app: {app}\n\
         spec:\n  nodeName: {node}\n  containers:\n    - name: main\n      image: demo\n\
         status:\n  podIP: {ip}\n  podIPs:\n    - ip: {ip}\n---\n"
    )
}

/// The outside /32s of (a)'s policy: with the clients, `ENTRIES / PORTS`
/// peers on [`PORTS`] ports.
fn outside(i: usize) -> String {
    format!("198.18.{}.{}/32", i / 250, i % 250 + 1)
}

/// (a)'s cluster; `rule` adds one rule, `pod` one client pod.
fn changes_cluster(rule: bool, pod_added: bool) -> String {
    let mut out = String::from(HEADER);
    out += &node("node-a", "10.200.255.1");
    out += &node("node-b", "10.200.255.2");
    out += &pod("server", "server", "node-a", "10.200.60.2");
    for i in 0..CLIENTS + usize::from(pod_added) {
        out += &pod(&format!("client-{i}"), "client", "node-b", &format!("10.200.61.{}", i + 1));
    }
    out += "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: server\n  namespace: demo\n\
            spec:\n  endpointSelector:\n    matchLabels:\n      app: server\n  ingress:\n    - fromCIDR:\n";
    for i in 0..ENTRIES / PORTS - 1 {
        let _ = writeln!(out, "        - {}", outside(i));
    }
    let ports = |out: &mut String| {
        out.push_str("      toPorts:\n        - ports:\n");
        for p in 0..PORTS {
            let _ = writeln!(out, "            - port: \"{}\"\n              protocol: TCP", 1000 + 2 * p);
        }
    };
    ports(&mut out);
    out.push_str("    - fromEndpoints:\n        - matchLabels:\n            app: client\n");
    ports(&mut out);
    if rule {
        out.push_str(
            "    - fromCIDR:\n        - 192.0.2.77/32\n      toPorts:\n        - ports:\n            - port: \"9999\"\n              protocol: TCP\n",
        );
    }
    out
}

/// (b)'s table: the rules of (a)'s policy, one per peer and port.
fn iptables_rules(changed: bool) -> String {
    let mut out = String::from("*filter\n:PCBENCH - [0:0]\n-F PCBENCH\n");
    let peers = (0..ENTRIES / PORTS - 1).map(outside).chain(std::iter::once("10.200.61.0/27".to_string()));
    for peer in peers {
        for p in 0..PORTS {
            let _ = writeln!(out, "-A PCBENCH -s {peer} -p tcp --dport {} -j ACCEPT", 1000 + 2 * p);
        }
    }
    if changed {
        out.push_str("-A PCBENCH -s 192.0.2.77/32 -p tcp --dport 9999 -j ACCEPT\n");
    }
    out.push_str("COMMIT\n");
    out
}

/// The address of (c)'s endpoint `i`.
fn scratch_ip(i: usize) -> String {
    format!("10.200.{}.{}", 100 + i / 250, i % 250 + 1)
}

/// (c)'s cluster: `endpoints` pods in ten apps, each app admitting the next
/// on its own port.
fn scratch_cluster(endpoints: usize) -> String {
    let mut out = String::from(HEADER);
    out += &node("node-a", "10.200.255.1");
    for i in 0..endpoints {
        out += &pod(&format!("pod-{i}"), &format!("app-{}", i % 10), "node-a", &scratch_ip(i));
    }
    for k in 0..10 {
        let _ = write!(
            out,
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: app-{k}\n  namespace: demo\n\
             spec:\n  podSelector:\n    matchLabels:\n      app: app-{k}\n  ingress:\n    - from:\n        \
             - podSelector:\n            matchLabels:\n              app: app-{}\n      ports:\n        - port: {}\n---\n",
            (k + 1) % 10,
            8000 + k
        );
    }
    out
}

/// A compiled bundle of `yaml` for node-a, in `dir`.
fn compile(policyc: &Path, dir: &Path, yaml: &str) -> Result<PathBuf, String> {
    let input = dir.join("input");
    std::fs::create_dir_all(&input).map_err(|e| e.to_string())?;
    std::fs::write(input.join("cluster.yaml"), yaml).map_err(|e| e.to_string())?;
    let out = dir.join("out");
    // One endpoint holds every entry: above Cilium's per-endpoint default
    // capacity, which the compiler enforces.
    sh(Command::new(policyc)
        .arg("compile")
        .arg(&input)
        .args(["--node", "node-a", "--policy-map-capacity", "200000", "--out"])
        .arg(&out))?;
    Ok(out.join("node-a"))
}

/// The policy entries a bundle holds (from its manifest).
fn policy_entries(bundle: &Path) -> Result<u64, String> {
    let text = std::fs::read_to_string(bundle.join("manifest.json")).map_err(|e| e.to_string())?;
    let manifest: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    manifest["maps"]
        .as_array()
        .and_then(|maps| maps.iter().find(|m| m["name"] == "policy"))
        .and_then(|m| m["entries"].as_u64())
        .ok_or_else(|| "the manifest has no policy map".to_string())
}

/// What one timed apply did, from the loader's JSON report.
struct Applied {
    took: Duration,
    operations: u64,
    programs: usize,
    phases: Vec<(String, f64)>,
}

impl Applied {
    fn of(took: Duration, json: &str) -> Result<Applied, String> {
        let report: serde_json::Value = serde_json::from_str(json).map_err(|e| format!("loader report: {e}"))?;
        let operations = report["maps"].as_object().map_or(0, |m| {
            m.values()
                .map(|o| ["added", "updated", "removed"].iter().map(|k| o[*k].as_u64().unwrap_or(0)).sum::<u64>())
                .sum()
        });
        // Programs attached with a new link (the report also lists links
        // given another program in place).
        let programs =
            report["programs"].as_array().map_or(0, |p| p.iter().filter(|x| x[3].as_str() == Some("Created")).count());
        let phases = report["phases"]
            .as_array()
            .map(|p| p.iter().filter_map(|x| Some((x[0].as_str()?.to_string(), x[1].as_f64()?))).collect())
            .unwrap_or_default();
        Ok(Applied { took, operations, programs, phases })
    }

    /// The time the loader reports for its phases: the apply without
    /// process start and exit.
    fn in_process(&self) -> Duration {
        Duration::from_secs_f64(self.phases.iter().map(|(_, ms)| ms).sum::<f64>() / 1e3)
    }

    fn phases(&self) -> String {
        self.phases.iter().map(|(name, ms)| format!("{name} {ms:.1}")).collect::<Vec<_>>().join(", ")
    }
}

/// A `policyc-loader` command for `root`, reporting in JSON.
fn loader(bin: &Path, root: &str, state: &Path) -> Command {
    let mut c = Command::new(bin);
    c.args(["--root", root, "--state"]).arg(state).arg("--json");
    c
}

/// (a): the best of [`RUNS`] applies of `changed` over `base`.
fn time_change(bin: &Path, state: &Path, base: &Path, changed: &Path) -> Result<Applied, String> {
    let apply = |bundle: &Path, reconcile: bool| {
        let mut c = loader(bin, ROOT, state);
        c.arg("apply").arg(bundle).args(["--interface", &format!("demo/server={VETH}")]);
        if reconcile {
            c.arg("--reconcile");
        }
        c
    };
    let mut best: Option<Applied> = None;
    for _ in 0..RUNS {
        sh(&mut apply(base, true))?;
        sh(&mut apply(base, true))?;
        std::thread::sleep(GRACE);
        let (took, json) = timed(&mut apply(changed, false))?;
        let applied = Applied::of(took, &json)?;
        if best.as_ref().is_none_or(|b| applied.took < b.took) {
            best = Some(applied);
        }
    }
    best.ok_or_else(|| "no run".into())
}

/// (b): the best of [`RUNS`] restores of the changed table over the base,
/// with `restore` (`iptables-legacy-restore` or `iptables-nft-restore`).
fn time_iptables(restore: &str, dir: &Path) -> Result<Duration, String> {
    let (base, changed) = (dir.join("iptables-base.rules"), dir.join("iptables-changed.rules"));
    std::fs::write(&base, iptables_rules(false)).map_err(|e| e.to_string())?;
    std::fs::write(&changed, iptables_rules(true)).map_err(|e| e.to_string())?;
    let run = |file: &Path| -> Result<Duration, String> {
        let f = std::fs::File::open(file).map_err(|e| e.to_string())?;
        timed(Command::new("ip").args(["netns", "exec", NETNS, restore, "--noflush"]).stdin(f)).map(|(d, _)| d)
    };
    let mut best = Duration::MAX;
    for _ in 0..RUNS {
        run(&base)?;
        best = best.min(run(&changed)?);
    }
    Ok(best)
}

/// The kernel's switch for expedited RCU grace periods: set for the life
/// of this value, then put back as it was.
struct ExpeditedRcu {
    previous: String,
}

const RCU_EXPEDITED: &str = "/sys/kernel/rcu_expedited";

impl ExpeditedRcu {
    fn set() -> Result<ExpeditedRcu, String> {
        let previous = std::fs::read_to_string(RCU_EXPEDITED).map_err(|e| format!("{RCU_EXPEDITED}: {e}"))?;
        std::fs::write(RCU_EXPEDITED, "1").map_err(|e| format!("{RCU_EXPEDITED}: {e}"))?;
        Ok(ExpeditedRcu { previous })
    }
}

impl Drop for ExpeditedRcu {
    fn drop(&mut self) {
        let _ = std::fs::write(RCU_EXPEDITED, self.previous.trim());
    }
}

/// (c): applies of `endpoints` endpoints to an empty node, with the
/// kernel's RCU as it is and then with expedited grace periods (the
/// second is `None` where the switch cannot be set).
fn time_scratch(
    policyc: &Path,
    bin: &Path,
    work: &Path,
    endpoints: usize,
) -> Result<(Applied, Option<Applied>), String> {
    let dir = work.join("scratch");
    let bundle = compile(policyc, &dir, &scratch_cluster(endpoints))?;
    sh(Command::new("ip").args(["netns", "add", SCRATCH_NETNS]))?;
    let mut links = String::new();
    for i in 0..endpoints {
        let _ = writeln!(links, "link add pce{i} type veth peer name pce{i}p");
    }
    ip_batch(SCRATCH_NETNS, &links)?;
    let mut up = String::new();
    for i in 0..endpoints {
        let _ = writeln!(up, "link set pce{i} up\nlink set pce{i}p up\nroute add {}/32 dev pce{i}", scratch_ip(i));
    }
    ip_batch(SCRATCH_NETNS, &up)?;
    let state = dir.join("state");
    let run = || -> Result<Applied, String> {
        // The loader, in the endpoints' network namespace.
        let in_netns = || {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net=/run/netns/{SCRATCH_NETNS}")).arg(bin);
            c.args(["--root", SCRATCH_ROOT, "--state"]).arg(&state);
            c
        };
        let (took, json) = timed(in_netns().arg("--json").arg("apply").arg(&bundle))?;
        let applied = Applied::of(took, &json)?;
        sh(in_netns().arg("uninstall"))?;
        Ok(applied)
    };
    let default = run()?;
    let expedited = match ExpeditedRcu::set() {
        Ok(_expedited) => Some(run()?),
        Err(e) => {
            eprintln!("xtask: cannot set expedited RCU ({e}): no expedited row");
            None
        }
    };
    Ok((default, expedited))
}

/// How long the kernel takes to attach a tcx program here, alone: each
/// attach waits for an RCU grace period under the rtnl lock, so attaches
/// do not overlap. Measured as the mean of (c)'s `prepare` phase (where
/// every new link is created, before the switch) per new link.
fn per_attach(scratch: &Applied) -> Option<f64> {
    let prepare = scratch.phases.iter().find(|(p, _)| p == "prepare")?.1;
    (scratch.programs > 0).then(|| prepare / scratch.programs as f64)
}

fn ratio(slow: Option<Duration>, fast: Duration) -> String {
    slow.map_or("-".to_string(), |s| format!("{:.0}x", s.as_secs_f64() / fast.as_secs_f64()))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Runs the benchmark.
pub fn run(quick: bool) -> Result<(), String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|l| l.split_whitespace().next()) != Some("0") {
        return Err("bench apply loads programs and makes veths and netns: run it as root".into());
    }
    crate::cargo(&["build", "--release", "-p", "policyc", "-p", "policyc-loader"], &[])?;
    let bin = crate::bench::target_dir().join("release");
    let (policyc, loader_bin) = (bin.join("policyc"), bin.join("policyc-loader"));
    let work = crate::bench::target_dir().join("bench/apply");
    let state = work.join("state");
    let cleanup = Cleanup { loader: loader_bin.clone(), states: vec![state.clone(), work.join("scratch/state")] };
    cleanup.run();
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&state).map_err(|e| e.to_string())?;
    sh(Command::new("mount").args(["-t", "tmpfs", "policyc-bench"]).arg(&state))?;
    sh(Command::new("ip").args(["link", "add", VETH, "type", "veth", "peer", "name", "pcbench0p"]))?;
    sh(Command::new("ip").args(["link", "set", VETH, "up"]))?;
    sh(Command::new("ip").args(["netns", "add", NETNS]))?;

    let base = compile(&policyc, &work.join("base"), &changes_cluster(false, false))?;
    let rule = compile(&policyc, &work.join("rule"), &changes_cluster(true, false))?;
    let pod = compile(&policyc, &work.join("pod"), &changes_cluster(false, true))?;
    let entries = policy_entries(&base)?;
    let rule_change = time_change(&loader_bin, &state, &base, &rule)?;
    // Another loader build to compare the one-rule apply with, in the same
    // run (a loader of another commit, built as this one is).
    let baseline = match std::env::var_os("POLICYC_BENCH_BASELINE_LOADER") {
        Some(other) => Some((
            time_change(Path::new(&other), &state, &base, &rule)?,
            time_change(&loader_bin, &state, &base, &rule)?,
        )),
        None => None,
    };
    let pod_change = time_change(&loader_bin, &state, &base, &pod)?;
    sh(loader(&loader_bin, ROOT, &state).arg("uninstall"))?;

    let mut iptables = Vec::new();
    for restore in ["iptables-legacy-restore", "iptables-nft-restore"] {
        let present = Command::new(restore).arg("--version").output().is_ok_and(|o| o.status.success());
        if !present {
            eprintln!("xtask: {restore} not found (apt-get install iptables): no {restore} row");
        }
        iptables.push((restore, if present { Some(time_iptables(restore, &work)?) } else { None }));
    }

    let endpoints = if quick { ENDPOINTS / 10 } else { ENDPOINTS };
    let scratch = time_scratch(&policyc, &loader_bin, &work, endpoints)?;

    println!("policyc apply benchmark (whole processes; (a) and (b) best of {RUNS})");
    println!("\n(a) a node with {entries} policy entries; (b) an iptables table of {ENTRIES} rules, one rule added\n");
    println!("{:<46}  {:>10}  {:>10}  {:>10}  {:>8}", "", "ms", "map writes", "vs legacy", "vs nft");
    for (name, a) in [("one rule added", &rule_change), ("one pod added", &pod_change)] {
        for (how, took) in [("process", a.took), ("in-process", a.in_process())] {
            println!(
                "{:<46}  {:>10.2}  {:>10}  {:>10}  {:>8}",
                format!("policyc apply, {name} ({how})"),
                ms(took),
                a.operations,
                ratio(iptables[0].1, took),
                ratio(iptables[1].1, took)
            );
        }
    }
    for (restore, took) in &iptables {
        let shown = took.map_or("-".to_string(), |d| format!("{:.1}", ms(d)));
        println!("{:<46}  {shown:>10}", format!("{restore} --noflush"));
    }
    if let Some((other, this)) = &baseline {
        println!(
            "\none rule added, POLICYC_BENCH_BASELINE_LOADER then this loader (best of {RUNS} each): \
             process {:.2} ms vs {:.2} ms (x{:.2}), in-process {:.2} ms vs {:.2} ms (x{:.2})",
            ms(other.took),
            ms(this.took),
            this.took.as_secs_f64() / other.took.as_secs_f64(),
            ms(other.in_process()),
            ms(this.in_process()),
            this.in_process().as_secs_f64() / other.in_process().as_secs_f64()
        );
        println!("phases of the baseline's one-rule apply (ms): {}", other.phases());
    }
    println!("\nphases of the one-rule apply (ms): {}", rule_change.phases());
    println!("phases of the one-pod apply (ms): {}", pod_change.phases());
    let (scratch, expedited) = scratch;
    for (how, applied) in [("", Some(&scratch)), (", expedited RCU", expedited.as_ref())] {
        let Some(applied) = applied else { continue };
        println!(
            "\n(c) apply from scratch of {endpoints} endpoints{how} ({} stub programs loaded and attached): {:.2} s",
            applied.programs,
            applied.took.as_secs_f64()
        );
        println!("phases (ms): {}", applied.phases());
        if let Some(each) = per_attach(applied) {
            println!("attaches (the loader's default, tc filters): {each:.2} ms each");
        }
    }
    println!(
        "\nthe kernel attaches tcx programs one at a time (under the rtnl lock), each waiting for an RCU grace \
         period unless grace periods are expedited (rcupdate.rcu_expedited=1 or {RCU_EXPEDITED})"
    );
    Ok(())
}
