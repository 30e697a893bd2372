//! Atomic, incremental, crash-safe apply, on the real kernel (root):
//!
//! - *no mix*: while `apply A` / `apply B` alternate, packets run through
//!   the programs (`BPF_PROG_TEST_RUN`, against the live pinned maps) never
//!   see a mix of A and B: between A and B a pod's labels change (so its
//!   identity number changes) together with the policy that names it, and
//!   any mix would drop traffic both allow; and real traffic between the
//!   pods (network namespaces on veths with host routes,
//!   `tests/support/netns.rs`) flows throughout: every TCP connect and UDP
//!   request both allow is answered, every one both deny is not;
//! - *crash*: `policyc-loader apply` killed with SIGKILL at random moments
//!   leaves A or B exactly in force (the probe program and real traffic
//!   through the programs attached at that moment agree), and the next
//!   apply converges;
//! - *incremental*: the map operations of an apply follow the size of the
//!   change, not of the policy;
//! - *overflow*: a bundle over a map's capacity is refused before anything
//!   is written.

mod support;

use aya::programs::{SchedClassifier, TestRun, TestRunOptions};

use policyc_ebpf::Template;
use policyc_loader::apply::{apply, ApplyOptions};
use policyc_loader::bundle::Bundle;
use policyc_loader::kernel::aya::AyaKernel;
use policyc_loader::kernel::Kernel;
use policyc_loader::packet::{ProbePacket, TCP};
use policyc_loader::paths::Paths;
use policyc_loader::programs::{self, LoadedEndpoint};
use policyc_loader::status::status;
use policyc_loader::uninstall::uninstall;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use support::netns::{require_ip, start_servers, subnet, Pod, Ports, Testbed};
use support::{require_root, scratch_paths, turn, TempDir};

/// Host-side veth interfaces standing for pods; deleted on drop.
struct Veths(Vec<String>);

impl Veths {
    fn new(tag: &str, count: usize) -> Veths {
        let mut names = Vec::new();
        for i in 0..count {
            let name = format!("pc{tag}{}x{i}", std::process::id() % 100_000);
            let status = Command::new("ip")
                .args(["link", "add", &name, "type", "veth", "peer", "name", &format!("{name}p")])
                .status()
                .expect("`ip` (iproute2) is needed");
            assert!(status.success(), "cannot create veth {name}");
            names.push(name.clone());
            let up = Command::new("ip").args(["link", "set", &name, "up"]).status().unwrap();
            assert!(up.success());
        }
        Veths(names)
    }
}

impl Drop for Veths {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = Command::new("ip").args(["link", "del", name]).status();
        }
    }
}

/// Uninstalls the root when dropped, even after a failed assertion.
struct Installed(Paths);

impl Drop for Installed {
    fn drop(&mut self) {
        if let Err(e) = uninstall(&self.0) {
            eprintln!("cleanup: uninstall of {} failed: {e}", self.0.root.display());
        }
    }
}

fn pod(name: &str, role: &str, ip: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: demo\n  labels:\n    role: {role}\n\
         spec:\n  nodeName: node-a\n  containers:\n    - name: main\n      image: demo\n\
         status:\n  podIP: {ip}\n  podIPs:\n    - ip: {ip}\n---\n"
    )
}

/// The test cluster: `server` admits role `allowed` on the given ports;
/// `client` has role `client_role`; `other` has role `z`; plus `extra`
/// filler pods with roles of their own.
fn manifests(client_role: &str, allowed: &str, ports: &[u16], extra: usize) -> String {
    manifests_in(50, client_role, allowed, ports, extra)
}

/// [`manifests`] with the pods in `10.200.<net>.0/24`.
fn manifests_in(net: u32, client_role: &str, allowed: &str, ports: &[u16], extra: usize) -> String {
    let mut out = String::from(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo\n---\n\
         apiVersion: v1\nkind: Node\nmetadata:\n  name: node-a\nstatus:\n  addresses:\n    - type: InternalIP\n      address: 10.200.255.1\n---\n",
    );
    out += &pod("server", "server", &format!("10.200.{net}.2"));
    out += &pod("client", client_role, &format!("10.200.{net}.3"));
    out += &pod("other", "z", &format!("10.200.{net}.4"));
    for i in 0..extra {
        out += &pod(&format!("filler-{i}"), &format!("filler-{i}"), &format!("10.200.51.{}", i + 2));
    }
    let ports: String =
        ports.iter().map(|p| format!("            - port: \"{p}\"\n              protocol: TCP\n")).collect();
    out += &format!(
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: server\n  namespace: demo\n\
         spec:\n  endpointSelector:\n    matchLabels:\n      role: server\n  ingress:\n    - fromEndpoints:\n\
         \x20       - matchLabels:\n            role: {allowed}\n      toPorts:\n        - ports:\n{ports}"
    );
    out
}

/// The test cluster with one more ingress rule on the server: `port` open
/// to every peer (wildcard-peer policy entries, a lookup the server's
/// programs otherwise skip).
fn with_open_port(text: String, port: u16) -> String {
    text + &format!("    - toPorts:\n        - ports:\n            - port: \"{port}\"\n              protocol: TCP\n")
}

/// The test cluster with one more ingress rule on the server: UDP `port`
/// from role `allowed`.
fn with_udp_port(text: String, allowed: &str, port: u16) -> String {
    text + &format!(
        "    - fromEndpoints:\n        - matchLabels:\n            role: {allowed}\n\
         \x20     toPorts:\n        - ports:\n            - port: \"{port}\"\n              protocol: UDP\n"
    )
}

/// Compiles `text` into a bundle directory under `out`.
fn bundle(out: &Path, name: &str, text: &str) -> PathBuf {
    let input = out.join(format!("{name}-input"));
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("cluster.yaml"), text).unwrap();
    let scratch = TempDir(out.join(format!("{name}-scratch")));
    let (_, bundles) = support::compile(&input, &scratch).expect("input compiles");
    let node = bundles.keys().next().unwrap();
    let dir = out.join(format!("{name}-bundle"));
    std::fs::rename(scratch.0.join(node), &dir).unwrap();
    dir
}

fn options(interfaces: &[String], pods: &[&str]) -> ApplyOptions {
    let interfaces = pods.iter().zip(interfaces).map(|(p, i)| (format!("demo/{p}"), i.clone())).collect();
    ApplyOptions { interfaces, ..ApplyOptions::default() }
}

fn interface_args(options: &ApplyOptions) -> Vec<String> {
    options.interfaces.iter().flat_map(|(p, i)| ["--interface".to_string(), format!("{p}={i}")]).collect()
}

/// The server's `to_container`, with the lookups of both bundles, bound
/// to the live maps of `paths` (a program the apply never swaps: what it
/// sees is the maps' doing alone).
fn server_probe(paths: &Paths, bundle_dir: &Path) -> LoadedEndpoint {
    let bundle = Bundle::read(bundle_dir).unwrap();
    let server = bundle.endpoints.iter().find(|e| e.name == "demo/server").unwrap();
    programs::load_endpoint(paths, "demo/server", &bundle.templates, &server.config).unwrap()
}

/// Whether the server (`10.200.<net>.2`) admits a new connection from
/// `10.200.<net>.<src>` to `port`.
fn admits(probe: &LoadedEndpoint, net: u32, src: u8, port: u16, sport: u16) -> bool {
    let program: &SchedClassifier = probe.stub.program("to_container").unwrap().try_into().unwrap();
    let (src, dst) = (format!("10.200.{net}.{src}").parse().unwrap(), format!("10.200.{net}.2").parse().unwrap());
    let frame = ProbePacket { src, dst, protocol: TCP, sport, dport: port }.to_bytes();
    let result = program.test_run(TestRunOptions { data_in: Some(&frame), ..TestRunOptions::default() }).unwrap();
    result.return_value != 2
}

/// `[client:80, other:80, client:8080]`: A admits only the first, B the
/// first and the third.
fn verdicts(probe: &LoadedEndpoint, net: u32, sport: u16) -> [bool; 3] {
    [admits(probe, net, 3, 80, sport), admits(probe, net, 4, 80, sport), admits(probe, net, 3, 8080, sport)]
}

const A: [bool; 3] = [true, false, false];
const B: [bool; 3] = [true, false, true];

/// Bundles A and B of the test cluster, the pods as network namespaces
/// with servers (TCP 80 and 8080, UDP 5353), A applied, and the server's
/// probe program on the live maps. Fields drop in order: the root is
/// uninstalled before the namespaces and files go.
struct AB {
    probe: LoadedEndpoint,
    paths: Paths,
    opts: ApplyOptions,
    a: PathBuf,
    b: PathBuf,
    /// The pods' subnet: `10.200.<net>.0/24`.
    net: u32,
    /// server, client, other.
    pods: Vec<Pod>,
    _installed: Installed,
    _bed: Testbed,
    _out: TempDir,
}

/// UDP port both A and B open from the client to the server.
const UDP_PORT: u16 = 5353;

impl AB {
    fn new(tag: &str, offset: u32) -> AB {
        require_ip();
        let net = subnet(offset);
        let out = TempDir::new(&format!("atomic-{tag}"));
        let a = with_udp_port(manifests_in(net, "x", "x", &[80], 0), "x", UDP_PORT);
        let b = with_udp_port(manifests_in(net, "y", "y", &[80, 8080], 0), "y", UDP_PORT);
        let (a, b) = (bundle(&out.0, "a", &a), bundle(&out.0, "b", &b));
        let pid = std::process::id();
        let pods: Vec<Pod> = ["server", "client", "other"]
            .iter()
            .enumerate()
            .map(|(i, name)| Pod {
                name: format!("demo/{name}"),
                endpoint: i,
                netns: format!("policyc-{pid}-{tag}-{name}"),
                host_if: format!("pc{tag}{}h{i}", pid % 1_000_000),
                ips: vec![format!("10.200.{net}.{}", i + 2).parse().unwrap()],
            })
            .collect();
        let mut bed = Testbed::default();
        bed.make_pods(&pods);
        start_servers(&pods, &Ports { tcp: &[80, 8080], udp: &[UDP_PORT] }, &bed.stop);
        let interfaces: Vec<String> = pods.iter().map(|p| p.host_if.clone()).collect();
        let opts = options(&interfaces, &["server", "client", "other"]);
        let paths = scratch_paths(tag, &out);
        let installed = Installed(paths.clone());
        apply(&paths, &a, &opts).unwrap();
        let probe = server_probe(&paths, &b);
        AB { probe, paths, opts, a, b, net, pods, _installed: installed, _bed: bed, _out: out }
    }
}

/// Real traffic to the server that both A and B decide alike: the client's
/// TCP connects to port 80 and UDP requests to [`UDP_PORT`] (both allow:
/// each must be answered), and the same from `other` (both deny: each must
/// go unanswered).
mod traffic {
    use super::support::netns::{in_netns, tcp_probe, udp_probe, Pod, Seen};
    use super::UDP_PORT;
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    /// An allowed TCP exchange (connect, request, answer) slower than this
    /// had its SYN or SYN-ACK sent again (after 1 s): the handshake is what
    /// policy decides (later packets pass by conntrack), so a dropped one
    /// shows as a wait even though the exchange then succeeds. On veths it
    /// takes well under a millisecond.
    const RETRANSMITTED: Duration = Duration::from_millis(900);
    /// How long a denied probe waits for an answer that must not come.
    const DENIED_WAIT: Duration = Duration::from_millis(100);

    /// Probes made, and what went wrong.
    #[derive(Debug, Default)]
    pub struct Observed {
        /// Probes of traffic both allow.
        pub allowed: usize,
        /// Probes of traffic both deny.
        pub denied: usize,
        /// Each probe that did not see what both bundles say.
        pub wrong: Vec<String>,
    }

    fn server(pods: &[Pod], port: u16) -> SocketAddr {
        SocketAddr::new(pods[0].ips[0], port)
    }

    /// One allowed TCP connect and one UDP request, from the client.
    fn allowed_round(pods: &[Pod], seen: &mut Observed) {
        let started = Instant::now();
        let tcp = tcp_probe(server(pods, 80), "demo/server", Duration::from_secs(3));
        let took = started.elapsed();
        if tcp != Seen::Answered || took > RETRANSMITTED {
            seen.wrong.push(format!("client -> server:80/tcp (allowed by A and B): {tcp:?} after {took:?}"));
        }
        let udp = udp_probe(server(pods, UDP_PORT), "demo/server", RETRANSMITTED);
        if udp != Seen::Answered {
            seen.wrong.push(format!("client -> server:{UDP_PORT}/udp (allowed by A and B): {udp:?}"));
        }
        seen.allowed += 2;
    }

    /// One denied TCP connect and one UDP request, from `other`.
    fn denied_round(pods: &[Pod], seen: &mut Observed) {
        let tcp = tcp_probe(server(pods, 80), "demo/server", DENIED_WAIT);
        if tcp != Seen::Silent {
            seen.wrong.push(format!("other -> server:80/tcp (denied by A and B): {tcp:?}"));
        }
        let udp = udp_probe(server(pods, UDP_PORT), "demo/server", DENIED_WAIT);
        if udp != Seen::Silent {
            seen.wrong.push(format!("other -> server:{UDP_PORT}/udp (denied by A and B): {udp:?}"));
        }
        seen.denied += 2;
    }

    /// One round of each, at once (the denied one waits out its silence).
    pub fn check_once(pods: &[Pod]) -> Observed {
        std::thread::scope(|s| {
            let denied = s.spawn(|| {
                in_netns(&pods[2].netns, || {
                    let mut seen = Observed::default();
                    denied_round(pods, &mut seen);
                    seen
                })
            });
            let mut seen = in_netns(&pods[1].netns, || {
                let mut seen = Observed::default();
                allowed_round(pods, &mut seen);
                seen
            });
            let denied = denied.join().expect("denied traffic thread");
            seen.denied = denied.denied;
            seen.wrong.extend(denied.wrong);
            seen
        })
    }

    /// Threads making denied rounds at once: each waits out its silence, so
    /// several keep denied traffic as dense as the applies.
    const DENIED_THREADS: usize = 4;

    /// Rounds of each until `stop` is set (or two minutes pass): allowed
    /// ones back to back from one thread, denied ones from
    /// [`DENIED_THREADS`].
    pub fn run_until(pods: &[Pod], stop: &std::sync::atomic::AtomicBool) -> Observed {
        use std::sync::atomic::Ordering::Relaxed;
        let deadline = Instant::now() + Duration::from_secs(120);
        let go = || !stop.load(Relaxed) && Instant::now() < deadline;
        std::thread::scope(|s| {
            let denied: Vec<_> = (0..DENIED_THREADS)
                .map(|_| {
                    s.spawn(|| {
                        in_netns(&pods[2].netns, || {
                            let mut seen = Observed::default();
                            while go() {
                                denied_round(pods, &mut seen);
                            }
                            seen
                        })
                    })
                })
                .collect();
            let mut seen = in_netns(&pods[1].netns, || {
                let mut seen = Observed::default();
                while go() {
                    allowed_round(pods, &mut seen);
                }
                seen
            });
            for thread in denied {
                let denied = thread.join().expect("denied traffic thread");
                seen.denied += denied.denied;
                seen.wrong.extend(denied.wrong);
            }
            seen
        })
    }
}

#[test]
fn alternating_applies_never_show_a_mix() {
    require_root();
    let _turn = turn();
    let AB { probe, paths, opts, a, b, net, pods, .. } = &AB::new("nomix", 37);
    assert_eq!(verdicts(probe, *net, 1), A);
    let before = traffic::check_once(pods);
    assert!(before.wrong.is_empty(), "with A in force: {:?}", before.wrong);

    let stop = std::sync::atomic::AtomicBool::new(false);
    let (applies, observed, real) = std::thread::scope(|s| {
        let prober = s.spawn(|| {
            let mut seen: BTreeMap<[bool; 3], usize> = BTreeMap::new();
            let mut sport = 2u16;
            let deadline = Instant::now() + Duration::from_secs(120);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
                sport = sport.wrapping_add(1).max(2);
                *seen.entry(verdicts(probe, *net, sport)).or_default() += 1;
            }
            seen
        });
        let real = s.spawn(|| traffic::run_until(pods, &stop));
        let mut applies = 0;
        for i in 0..100 {
            apply(paths, if i % 2 == 0 { b } else { a }, opts).unwrap();
            applies += 1;
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (applies, prober.join().unwrap(), real.join().unwrap())
    });
    assert_eq!(applies, 100);
    let mixed: Vec<_> = observed.iter().filter(|(v, _)| **v != A && **v != B).collect();
    assert!(mixed.is_empty(), "verdicts that are neither A nor B: {mixed:?} (all: {observed:?})");
    assert!(observed.contains_key(&A) && observed.contains_key(&B), "the prober saw both: {observed:?}");
    assert!(real.wrong.is_empty(), "real traffic during the applies: {:#?}", real.wrong);
    assert!(real.allowed >= 100 && real.denied >= 40, "too little real traffic ran: {real:?}");
    eprintln!(
        "no mix over {applies} applies: {observed:?}; real traffic: {} allowed probes answered, {} denied unanswered",
        real.allowed, real.denied
    );
}

/// A small xorshift: randomized kill points without a crate.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn killed_applies_leave_old_or_new_and_converge() {
    require_root();
    let _turn = turn();
    let AB { probe, paths, opts, a, b, net, pods, .. } = &AB::new("crash", 149);
    let loader = env!("CARGO_BIN_EXE_policyc-loader");
    let root = paths.root.file_name().unwrap().to_str().unwrap().to_string();
    let base_args = ["--bpffs", "/sys/fs/bpf", "--root", &root, "--state"];
    let state_parent = paths.state.parent().unwrap().to_path_buf();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id()));
    let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
    let mut sport = 2u16;
    // Kill points are drawn over the length of a whole apply through the
    // binary, measured here: half again the fastest of a few, so that kills
    // land in every phase, the last ones included, but mostly mid-apply.
    // The span then follows the machine: it shrinks after an apply that
    // finished before its kill and grows a little after one that did not,
    // so a machine that gets faster or slower mid-test (other tests share
    // it) still lands most kills mid-apply.
    let mut span = Duration::MAX;
    for target in [&b, &a, &b, &a] {
        let started = Instant::now();
        let run = Command::new(loader)
            .args(base_args)
            .arg(&state_parent)
            .arg("apply")
            .arg(target)
            .args(interface_args(opts))
            .output()
            .unwrap();
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
        span = span.min(started.elapsed());
    }
    let measured = span.as_micros() as u64 * 3 / 2;
    let mut span = measured;
    let mut i = 0;
    while outcomes.get("killed").copied().unwrap_or(0) < 100 {
        assert!(i < 500, "fewer than 100 of {i} kills landed mid-apply: {outcomes:?}");
        let (target, expected) = if i % 2 == 0 { (&b, B) } else { (&a, A) };
        let mut child = Command::new(loader)
            .args(base_args)
            .arg(&state_parent)
            .arg("apply")
            .arg(target)
            .args(interface_args(opts))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(rng.below(span)));
        let _ = child.kill();
        let status = child.wait().unwrap();
        sport = sport.wrapping_add(1).max(2);
        let now = verdicts(probe, *net, sport);
        assert!(now == A || now == B, "after a kill at iteration {i}: {now:?} is neither A nor B");
        // Real traffic through the programs attached at that moment.
        let real = traffic::check_once(pods);
        assert!(real.wrong.is_empty(), "after a kill at iteration {i}: {:?}", real.wrong);
        *outcomes.entry(if status.success() { "finished" } else { "killed" }).or_default() += 1;
        span = if status.success() { (span * 3 / 4).max(100) } else { (span * 21 / 20).min(4 * measured) };
        // The next apply converges, through the binary as an operator would.
        let rerun = Command::new(loader)
            .args(base_args)
            .arg(&state_parent)
            .arg("apply")
            .arg(target)
            .args(interface_args(opts))
            .output()
            .unwrap();
        assert!(rerun.status.success(), "rerun failed: {}", String::from_utf8_lossy(&rerun.stderr));
        sport = sport.wrapping_add(1).max(2);
        assert_eq!(verdicts(probe, *net, sport), expected, "after the rerun at iteration {i}");
        i += 1;
    }
    eprintln!("crash test: {outcomes:?} (kill points over {measured} µs at first, {span} µs at the end)");
}

/// Map writes and removals of an apply.
fn ops(report: &policyc_loader::apply::ApplyReport) -> usize {
    report.maps.values().map(|o| o.added + o.updated + o.removed).sum()
}

#[test]
fn map_operations_follow_the_change() {
    require_root();
    let _turn = turn();
    let out = TempDir::new("atomic-incr");
    // (change, client role, allowed ports, fillers beyond the base's)
    let changes: [(&str, &str, &[u16], usize); 3] = [
        ("port", "x", &[80, 443, 8080, 9090], 0),
        ("pod", "x", &[80, 443, 8080], 1),
        ("labels", "w", &[80, 443, 8080], 0),
    ];
    let mut measured: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    let mut totals = Vec::new();
    for (size, fillers) in [("small", 4usize), ("large", 40)] {
        let base = bundle(&out.0, &format!("{size}-base"), &manifests("x", "x", &[80, 443, 8080], fillers));
        let mut pods = vec!["server".to_string(), "client".into(), "other".into()];
        pods.extend((0..=fillers).map(|i| format!("filler-{i}")));
        let veths = Veths::new(&size[..1], pods.len());
        let names: Vec<&str> = pods.iter().map(String::as_str).collect();
        let opts = options(&veths.0, &names);
        let paths = scratch_paths(&format!("incr-{size}"), &out);
        let _installed = Installed(paths.clone());
        let first = apply(&paths, &base, &opts).unwrap();
        totals.push(ops(&first));
        for (change, role, ports, more) in changes {
            let changed = bundle(&out.0, &format!("{size}-{change}"), &manifests(role, "x", ports, fillers + more));
            // Both generations hold the base: the next write costs the change.
            apply(&paths, &base, &ApplyOptions { reconcile: true, ..opts.clone() }).unwrap();
            let report = apply(&paths, &changed, &opts).unwrap();
            assert_eq!(report.diffed_against, "record", "the apply diffs in memory");
            let back = apply(&paths, &base, &opts).unwrap();
            assert_eq!(ops(&back), 0, "going back finds the old generation holding the base");
            eprintln!("{size} ({} entries): {change} costs {} map operations", ops(&first), ops(&report));
            measured.entry(change).or_default().push(ops(&report));
        }
    }
    assert!(totals[1] >= 3 * totals[0], "the large cluster is larger: {totals:?}");
    for (change, costs) in &measured {
        // One more port: one policy entry; one more pod: its ipcache and
        // endpoint entries; a label change: the pod's new identity in the
        // ipcache and endpoints, and the three port entries of the identity
        // nobody has any more.
        assert!(costs[0] > 0 && costs[0] <= 5, "{change}: {costs:?}");
        assert_eq!(costs[0], costs[1], "{change} costs the same at both sizes: {costs:?} (totals {totals:?})");
    }
}

#[test]
fn programs_gaining_a_lookup_switch_before_the_flip() {
    use policyc_loader::apply::ProgramStep;
    use policyc_loader::attach::Attachment;
    require_root();
    let _turn = turn();
    let out = TempDir::new("atomic-prepare");
    let a = bundle(&out.0, "a", &manifests("x", "x", &[80], 0));
    let c = bundle(&out.0, "c", &with_open_port(manifests("x", "x", &[80], 0), 8443));
    let veths = Veths::new("p", 3);
    let opts = options(&veths.0, &["server", "client", "other"]);
    let paths = scratch_paths("prepare", &out);
    let _installed = Installed(paths.clone());
    apply(&paths, &a, &opts).unwrap();
    let server_steps = |report: &policyc_loader::apply::ApplyReport| -> Vec<(&'static str, ProgramStep)> {
        report.programs.iter().filter(|(e, ..)| e == "demo/server").map(|(_, p, step, _)| (*p, *step)).collect()
    };
    // A -> C: the server's programs gain the wildcard lookup, so C's
    // programs (A's lookups and more) go in before the flip; they are
    // already exact, so nothing follows it.
    let to_c = apply(&paths, &c, &opts).unwrap();
    let steps = server_steps(&to_c);
    assert_eq!(steps, [("from_container", ProgramStep::Prepare), ("to_container", ProgramStep::Prepare)]);
    assert!(
        to_c.programs.iter().all(|(.., how)| *how == Some(Attachment::Replaced)),
        "existing links are updated in place: {:?}",
        to_c.programs
    );
    let other_steps: Vec<_> = to_c.programs.iter().filter(|(e, ..)| e != "demo/server").collect();
    assert!(other_steps.is_empty(), "endpoints whose programs do not change are left alone: {other_steps:?}");
    // C -> A: the attached programs have the wildcard lookup, which judges
    // A's generation as well; they stay until the flip, and A's exact
    // programs (without it) go in only after.
    let to_a = apply(&paths, &a, &opts).unwrap();
    let steps = server_steps(&to_a);
    assert_eq!(steps, [("from_container", ProgramStep::Finish), ("to_container", ProgramStep::Finish)]);
    // What the kernel runs on the server's interface (BPF_PROG_QUERY): one
    // program per hook, through its pinned link.
    let kernel = AyaKernel::new(&paths);
    for t in Template::ALL {
        assert_eq!(kernel.attached(&veths.0[0], t).unwrap().len(), 1, "{}", t.program_name());
    }
    let record = policyc_loader::record::Record::read(&paths).unwrap().unwrap();
    let server = &record.endpoints["demo/server"];
    let c = server.config;
    assert_eq!(
        (c.ingress_by_peer, c.ingress_any_peer, c.egress_by_peer, c.egress_any_peer),
        (true, false, false, false),
        "the record holds A's exact lookups at the end"
    );
}

#[test]
fn an_overflowing_bundle_is_refused_before_any_write() {
    require_root();
    let _turn = turn();
    let out = TempDir::new("atomic-overflow");
    let a = bundle(&out.0, "a", &manifests("x", "x", &[80], 0));
    let veths = Veths::new("o", 3);
    let opts = options(&veths.0, &["server", "client", "other"]);
    let paths = scratch_paths("overflow", &out);
    let _installed = Installed(paths.clone());
    apply(&paths, &a, &opts).unwrap();
    let before = format!("{:?}", status(&paths).unwrap());
    // One generation of the ipcache holds 512 000 entries.
    let big = out.0.join("big");
    let copy = Command::new("cp").arg("-r").arg(&a).arg(&big).status().unwrap();
    assert!(copy.success());
    let mut text = std::fs::read_to_string(big.join("maps/ipcache.txt")).unwrap();
    for i in 0..512_000u32 {
        text.push_str(&format!("{}/32 2 cidr\n", std::net::Ipv4Addr::from(0x0b00_0000 + i)));
    }
    std::fs::write(big.join("maps/ipcache.txt"), text).unwrap();
    support::redigest(&big, "maps/ipcache.txt");
    let err = apply(&paths, &big, &opts).unwrap_err().to_string();
    assert!(err.contains("map `ipcache` would hold") && err.contains("at most 512000"), "{err}");
    assert_eq!(format!("{:?}", status(&paths).unwrap()), before, "nothing changed");
}
