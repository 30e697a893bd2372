//! Cost of attaching programs to many interfaces from scratch, by attach
//! mechanism, with the kernel's default RCU settings. Ignored by `cargo
//! test`; `cargo xtask bench attach` runs it (root).
//!
//! An apply from scratch attaches two programs (both hooks) per endpoint.
//! A tcx attach that creates an interface's first program swaps the
//! device's `bpf_mprog` entry and waits for a normal RCU grace period
//! (`tcx_entry_sync()`, `synchronize_rcu()`, in kernel/bpf/tcx.c) while it
//! holds the RTNL lock; a legacy tc (cls_bpf) filter is published through
//! `mini_qdisc_pair_swap()`, which waits only if a grace period has not
//! already passed, and then an expedited one (net/sched/sch_generic.c).
//! Each row attaches the empty program to both hooks of [`ENDPOINTS`]
//! fresh veth pairs (up, as a pod's are) and times the attaches alone:
//! - `tcx`: one after the other (what the loader does);
//! - `tcx, N threads`: the interfaces split among N threads, each with its
//!   own copy of the program, to see whether grace periods overlap;
//! - `tc (cls_bpf)`: `clsact` qdisc, then a filter per hook;
//! - `tc (cls_bpf), N threads`: the same split among threads.
//!
//!
//! Then the loader itself (`apply` of a compiled bundle from scratch: read
//! and check, plan, load every stub through the verifier, sync the maps,
//! attach, switch, finish) with 1 000 pods each on its veth, by `--attach`
//! mechanism: `tc` (the default) on all of them, `tcx` on
//! [`TCX_SEQUENTIAL_ENDPOINTS`] (scaled like the tcx row, and marked so).
//!
//! The veths are `pcsc<i>` / `pcsc<i>p` (the `scale` helper's prefix),
//! removed after each row and on any failure.

mod support;

use aya::programs::links::LinkOrder;
use aya::programs::tc::{qdisc_add_clsact, NlOptions, TcAttachOptions};
use aya::programs::{SchedClassifier, TcAttachType};
use aya::{Ebpf, EbpfLoader};
use policyc_loader::apply::{apply, ApplyOptions, ApplyReport};
use policyc_loader::kernel::Mechanism;
use policyc_loader::uninstall::uninstall;
use std::fmt::Write as _;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{require_root, scratch_paths, TempDir};

/// Endpoints per row (two attaches each).
const ENDPOINTS: usize = 1_000;
/// The sequential tcx row is the slow one being replaced: it runs on this
/// many endpoints, and its per-attach time is scaled to [`ENDPOINTS`].
const TCX_SEQUENTIAL_ENDPOINTS: usize = 100;
const THREADS: [usize; 2] = [8, 64];
const PREFIX: &str = "pcsc";

/// `ip -batch -` of `lines` (`-force`: on past failed lines); its status
/// and stderr.
fn ip_batch(lines: &str, force: bool) -> (bool, String) {
    let mut child = Command::new("ip")
        .args(if force { &["-force", "-batch", "-"][..] } else { &["-batch", "-"][..] })
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run `ip` (apt-get install iproute2)");
    child.stdin.take().expect("stdin").write_all(lines.as_bytes()).expect("write to `ip`");
    let out = child.wait_with_output().expect("wait for `ip`");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).trim().to_string())
}

/// `count` veth pairs, up; deleted on drop (which also detaches whatever
/// was attached to them).
struct Veths {
    count: usize,
}

impl Veths {
    fn new(count: usize) -> Veths {
        // A leftover of an interrupted run would make `link add` fail.
        drop(Veths { count });
        let veths = Veths { count };
        let mut add = String::new();
        for i in 0..count {
            let _ = writeln!(add, "link add {PREFIX}{i} type veth peer name {PREFIX}{i}p");
            let _ = writeln!(add, "link set {PREFIX}{i} up");
            let _ = writeln!(add, "link set {PREFIX}{i}p up");
        }
        let (ok, stderr) = ip_batch(&add, false);
        assert!(ok, "`ip -batch` failed: {stderr}");
        veths
    }

    fn name(i: usize) -> String {
        format!("{PREFIX}{i}")
    }
}

impl Drop for Veths {
    fn drop(&mut self) {
        // Best effort (links that are not there fail their line).
        let lines: String = (0..self.count).map(|i| format!("link del {}\n", Veths::name(i))).collect();
        let _ = ip_batch(&lines, true);
    }
}

/// The empty program, loaded through the verifier.
fn empty() -> Ebpf {
    let mut ebpf = EbpfLoader::new().load(policyc_ebpf::EMPTY_PROGRAM).expect("load the empty program");
    program(&mut ebpf).load().expect("verify the empty program");
    ebpf
}

fn program(ebpf: &mut Ebpf) -> &mut SchedClassifier {
    ebpf.program_mut("empty").expect("`empty` in bench/empty.o").try_into().expect("a classifier")
}

/// Attaches `ebpf`'s program to both hooks of each interface of `range`.
fn attach_all(ebpf: &mut Ebpf, mechanism: Mechanism, range: std::ops::Range<usize>) {
    let prog = program(ebpf);
    for i in range {
        let name = Veths::name(i);
        if let Mechanism::Tc = mechanism {
            qdisc_add_clsact(&name).unwrap_or_else(|e| panic!("clsact on `{name}`: {e}"));
        }
        for hook in [TcAttachType::Ingress, TcAttachType::Egress] {
            let options = match mechanism {
                Mechanism::Tcx => TcAttachOptions::TcxOrder(LinkOrder::default()),
                Mechanism::Tc => TcAttachOptions::Netlink(NlOptions::default()),
            };
            prog.attach_with_options(&name, hook, options).unwrap_or_else(|e| panic!("attach to `{name}`: {e}"));
        }
    }
}

/// Time to attach to both hooks of `endpoints` interfaces, split among
/// `threads` threads.
fn time(mechanism: Mechanism, endpoints: usize, threads: usize) -> Duration {
    let veths = Veths::new(endpoints);
    let mut programs: Vec<Ebpf> = (0..threads).map(|_| empty()).collect();
    let chunk = endpoints.div_ceil(threads);
    let start = Instant::now();
    std::thread::scope(|s| {
        for (t, ebpf) in programs.iter_mut().enumerate() {
            let range = t * chunk..((t + 1) * chunk).min(endpoints);
            s.spawn(move || attach_all(ebpf, mechanism, range));
        }
    });
    let took = start.elapsed();
    // Deleting the interfaces detaches everything at once; the programs'
    // own links then find nothing to detach.
    drop(veths);
    drop(programs);
    took
}

/// A cluster of `pods` pods on one node, `p0` a server that admits the
/// others (role `client`) on TCP 80, in `10.200.64.0/20`.
fn cluster(pods: usize) -> String {
    let mut out = String::from(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo\n---\n\
         apiVersion: v1\nkind: Node\nmetadata:\n  name: node-a\nstatus:\n  addresses:\n    - type: InternalIP\n      address: 10.200.255.1\n---\n",
    );
    for i in 0..pods {
        let (role, ip) = (if i == 0 { "server" } else { "client" }, format!("10.200.{}.{}", 64 + i / 250, 2 + i % 250));
        let _ = write!(
            out,
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p{i}\n  namespace: demo\n  labels:\n    role: {role}\n\
             spec:\n  nodeName: node-a\n  containers:\n    - name: main\n      image: demo\n\
             status:\n  podIP: {ip}\n  podIPs:\n    - ip: {ip}\n---\n"
        );
    }
    out += "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: server\n  namespace: demo\n\
            spec:\n  endpointSelector:\n    matchLabels:\n      role: server\n  ingress:\n    - fromEndpoints:\n\
            \x20       - matchLabels:\n            role: client\n      toPorts:\n        - ports:\n\
            \x20           - port: \"80\"\n              protocol: TCP\n";
    out
}

/// `policyc-loader apply` of a bundle of `endpoints` pods from scratch
/// (nothing pinned) with `mechanism`: its time and report. Uninstalled
/// and the veths removed afterwards, also on failure.
fn loader_apply(mechanism: Mechanism, endpoints: usize) -> (Duration, ApplyReport) {
    let out = TempDir::new("at-bench");
    let input = out.0.join("input");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("cluster.yaml"), cluster(endpoints)).unwrap();
    let compiled = TempDir(out.0.join("compiled"));
    let (_, bundles) = support::compile(&input, &compiled).expect("the cluster compiles");
    let bundle = compiled.0.join(bundles.keys().next().unwrap());
    let veths = Veths::new(endpoints);
    let paths = scratch_paths("at-bench", &out);
    struct Uninstall<'a>(&'a policyc_loader::paths::Paths);
    impl Drop for Uninstall<'_> {
        fn drop(&mut self) {
            if let Err(e) = uninstall(self.0) {
                eprintln!("cleanup: uninstall of {} failed: {e}", self.0.root.display());
            }
        }
    }
    let _installed = Uninstall(&paths);
    let interfaces = (0..endpoints).map(|i| (format!("demo/p{i}"), Veths::name(i))).collect();
    let options = ApplyOptions { interfaces, attach: mechanism, ..ApplyOptions::default() };
    let start = Instant::now();
    let report = apply(&paths, &bundle, &options).expect("apply from scratch");
    let took = start.elapsed();
    drop(veths);
    (took, report)
}

#[test]
#[ignore = "benchmark: cargo xtask bench attach"]
fn bench_attach() {
    require_root();
    let rcu = std::fs::read_to_string("/sys/kernel/rcu_expedited").expect("/sys/kernel/rcu_expedited");
    assert_eq!(rcu.trim(), "0", "the comparison is for the kernel's default RCU (rcu_expedited 0)");

    let mut rows: Vec<(String, usize, Duration)> = Vec::new();
    rows.push(("tcx".into(), TCX_SEQUENTIAL_ENDPOINTS, time(Mechanism::Tcx, TCX_SEQUENTIAL_ENDPOINTS, 1)));
    for threads in THREADS {
        rows.push((format!("tcx, {threads} threads"), ENDPOINTS, time(Mechanism::Tcx, ENDPOINTS, threads)));
    }
    rows.push(("tc (cls_bpf)".into(), ENDPOINTS, time(Mechanism::Tc, ENDPOINTS, 1)));
    for threads in THREADS {
        rows.push((format!("tc (cls_bpf), {threads} threads"), ENDPOINTS, time(Mechanism::Tc, ENDPOINTS, threads)));
    }

    let per_attach = |endpoints: usize, took: Duration| took.as_secs_f64() * 1e3 / (2 * endpoints) as f64;
    let baseline = per_attach(rows[0].1, rows[0].2);
    println!("attach from scratch, both hooks of each endpoint, default RCU (rcu_expedited 0)");
    println!("| mechanism | endpoints | attaches | s | ms/attach | s for {ENDPOINTS} endpoints | × tcx |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (what, endpoints, took) in &rows {
        let each = per_attach(*endpoints, *took);
        println!(
            "| {what} | {endpoints} | {} | {:.2} | {each:.3} | {:.2} | {:.3} |",
            2 * endpoints,
            took.as_secs_f64(),
            each * (2 * ENDPOINTS) as f64 / 1e3,
            each / baseline
        );
    }

    println!();
    println!("policyc-loader apply from scratch (one server, the others its clients), default RCU");
    println!("| --attach | endpoints | s | s for {ENDPOINTS} endpoints | phases (ms) |");
    println!("| --- | ---: | ---: | ---: | --- |");
    for (mechanism, endpoints) in [(Mechanism::Tc, ENDPOINTS), (Mechanism::Tcx, TCX_SEQUENTIAL_ENDPOINTS)] {
        let (took, report) = loader_apply(mechanism, endpoints);
        // No generation lists the endpoints: each gets its exact programs
        // before the switch, and nothing after it.
        assert_eq!(report.programs.len(), 2 * endpoints, "every endpoint attached once: {:?}", report.programs);
        let phases: Vec<String> = report.phases.iter().map(|(p, ms)| format!("{p} {ms:.0}")).collect();
        let scaled = took.as_secs_f64() * ENDPOINTS as f64 / endpoints as f64;
        let mark = if endpoints == ENDPOINTS { "" } else { " (scaled)" };
        println!(
            "| {mechanism:?} | {endpoints} | {:.2} | {scaled:.2}{mark} | {} |",
            took.as_secs_f64(),
            phases.join(", ")
        );
    }
}
