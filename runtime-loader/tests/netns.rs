//! Real traffic between network-namespace "pods", judged by the applied
//! bundle and compared with the reference evaluator.
//!
//! Each pod of `tests/netns/cluster/` becomes a network namespace joined to
//! the host by a veth pair, as a point-to-point CNI does it: the pod's
//! addresses on its `eth0` (/32, /128), a default route through a link-local
//! gateway whose MAC is the host side's (permanent neighbour, no proxy ARP
//! needed), and on the host a /32 (/128) route to the pod over the host-side
//! veth, with forwarding switched on for those interfaces only. The bundle
//! is compiled from the manifests and applied with the loader library,
//! which finds each pod's interface through those host routes. Then, for
//! every ordered pair of pods and every policy port: a TCP connect with a
//! request and the destination pod's answer, a UDP request and answer, and
//! an ICMP echo, each from a socket made inside the source namespace (a
//! thread that `setns`es into it). The observed matrix must equal
//! `ir::eval`'s; an allowed probe proves its replies pass too (the answer
//! names the destination pod); a denied one must be silent (a timeout, not
//! a reset). A denied connect must show in the `metrics` counters and as a
//! drop flow event; `policyc-loader uninstall` then removes everything and
//! the pair connects.
//!
//! Names are suffixed with the process id, and the cluster's addresses are
//! moved to a /24 (and /112) chosen by the process id, so concurrent runs
//! do not meet. Everything made is undone on drop, panics included. The
//! pods, servers and TCP/UDP probes are `tests/support/netns.rs`'s, shared
//! with the atomic apply test.

mod support;

use policyc_ir::eval::{eval, Party, Query};
use policyc_ir::ids::EndpointId;
use policyc_ir::protocol::Protocol;
use policyc_loader::apply::{apply, ApplyOptions, ProgramStep};
use policyc_loader::kernel::Attachment;
use policyc_loader::observe::{counters, Flow, Observer};
use policyc_loader::paths::Paths;
use rustix::net::{ipproto, sockopt, AddressFamily, RecvFlags, SendFlags, SocketType};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};
use support::netns::{
    in_netns, require_ip, start_servers, subnet, tcp_probe, udp_probe, Pod, Ports, Seen, Testbed, RETRY_TIMEOUT,
};
use support::{compile, require_root, TempDir};

/// How long a probe waits for its answer: the veths are local, so an
/// allowed answer takes well under a millisecond; silence this long is a
/// drop.
const PROBE_TIMEOUT: Duration = Duration::from_millis(300);
/// Probes run at once (each is a thread in its source namespace).
const PARALLEL: usize = 16;
/// The test cluster's policy ports.
const TEST_PORTS: Ports = Ports { tcp: &[5432, 6379, 8080, 9100], udp: &[5353] };
/// The example cluster's (`examples/policies`): every port its policies
/// name for node-a's pods, and neighbours of the ranges' edges.
const EXAMPLE_PORTS: Ports = Ports { tcp: &[80, 443, 5432, 6379, 8080, 9100, 9109, 9187], udp: &[53] };

fn cluster_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/netns/cluster")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Probe {
    Tcp(u16),
    Udp(u16),
    Echo,
}

impl Probe {
    fn query(self, src: usize, dst: usize, v4: bool) -> Query {
        let (protocol, port) = match self {
            Probe::Tcp(p) => (Protocol::Tcp, p),
            Probe::Udp(p) => (Protocol::Udp, p),
            Probe::Echo if v4 => (Protocol::Icmp, 8),
            Probe::Echo => (Protocol::Icmpv6, 128),
        };
        Query { src: Party::Endpoint(EndpointId::new(src)), dst: Party::Endpoint(EndpointId::new(dst)), protocol, port }
    }
}

fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Identifiers of echo requests: unique per probe, since a raw socket sees
/// every ICMP packet of its namespace.
static ECHO_ID: AtomicU16 = AtomicU16::new(1);

/// An ICMP (ICMPv6) echo request from a raw socket, and its reply.
fn echo_probe(dst: IpAddr, timeout: Duration) -> Seen {
    let id = ECHO_ID.fetch_add(1, Ordering::Relaxed);
    let (family, protocol, request_type, reply_type) = match dst {
        IpAddr::V4(_) => (AddressFamily::INET, ipproto::ICMP, 8u8, 0u8),
        IpAddr::V6(_) => (AddressFamily::INET6, ipproto::ICMPV6, 128, 129),
    };
    let fd = rustix::net::socket(family, SocketType::RAW, Some(protocol)).expect("raw ICMP socket (root)");
    let mut packet = vec![request_type, 0, 0, 0];
    packet.extend_from_slice(&id.to_be_bytes());
    packet.extend_from_slice(&1u16.to_be_bytes());
    packet.extend_from_slice(b"policyc netns echo");
    if dst.is_ipv4() {
        // The kernel fills in ICMPv6 checksums of raw sockets, not ICMP's.
        let sum = checksum(&packet);
        packet[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    rustix::net::sendto(&fd, &packet, SendFlags::empty(), &SocketAddr::new(dst, 0)).expect("send echo request");
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 1500];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Seen::Silent;
        }
        sockopt::set_socket_timeout(&fd, sockopt::Timeout::Recv, Some(left)).unwrap();
        let n = match rustix::net::recvfrom(&fd, &mut buf[..], RecvFlags::empty()) {
            Ok((n, _, _)) => n,
            Err(e) if e == rustix::io::Errno::AGAIN || e == rustix::io::Errno::INTR => continue,
            Err(e) => return Seen::Odd(format!("recv: {e}")),
        };
        // IPv4 raw sockets deliver the IP header too; IPv6 ones do not.
        let (icmp, src) = if dst.is_ipv4() {
            let ihl = usize::from(buf[0] & 0x0f) * 4;
            let src = IpAddr::from([buf[12], buf[13], buf[14], buf[15]]);
            (&buf[ihl.min(n)..n], Some(src))
        } else {
            (&buf[..n], None)
        };
        if icmp.len() >= 8 && icmp[0] == reply_type && icmp[4..6] == id.to_be_bytes() {
            if src.is_some_and(|s| s != dst) {
                return Seen::Odd(format!("echo reply from {src:?}"));
            }
            return Seen::Answered;
        }
    }
}

fn run_probe(netns: &str, dst: IpAddr, probe: Probe, want: &str, timeout: Duration) -> Seen {
    in_netns(netns, || match probe {
        Probe::Tcp(port) => tcp_probe(SocketAddr::new(dst, port), want, timeout),
        Probe::Udp(port) => udp_probe(SocketAddr::new(dst, port), want, timeout),
        Probe::Echo => echo_probe(dst, timeout),
    })
}

/// One row of the matrix: (src pod, dst pod, dst address, probe).
type Case = (usize, usize, IpAddr, Probe);

fn cases(pods: &[Pod], ports: &Ports) -> Vec<Case> {
    let mut out = Vec::new();
    for (s, src) in pods.iter().enumerate() {
        for (d, dst) in pods.iter().enumerate() {
            if s == d {
                continue;
            }
            for &addr in &dst.ips {
                if !src.ips.iter().any(|a| a.is_ipv4() == addr.is_ipv4()) {
                    continue;
                }
                let tcp = ports.tcp.iter().map(|p| Probe::Tcp(*p));
                let probes = tcp.chain(ports.udp.iter().map(|p| Probe::Udp(*p))).chain([Probe::Echo]);
                for probe in probes {
                    out.push((s, d, addr, probe));
                }
            }
        }
    }
    out
}

/// Runs every case, [`PARALLEL`] at a time; a silent case whose expected
/// answer is in `expect` is tried once more with [`RETRY_TIMEOUT`].
fn observe_matrix(pods: &[Pod], cases: &[Case], expect: impl Fn(&Case) -> bool) -> Vec<Seen> {
    let mut seen = Vec::with_capacity(cases.len());
    for chunk in cases.chunks(PARALLEL) {
        let results: Vec<Seen> = std::thread::scope(|s| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|&(src, dst, addr, probe)| {
                    let (netns, want) = (pods[src].netns.as_str(), pods[dst].name.as_str());
                    s.spawn(move || run_probe(netns, addr, probe, want, PROBE_TIMEOUT))
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("probe thread")).collect()
        });
        seen.extend(results);
    }
    for (case, result) in cases.iter().zip(seen.iter_mut()) {
        if *result == Seen::Silent && expect(case) {
            let &(src, dst, addr, probe) = case;
            *result = run_probe(&pods[src].netns, addr, probe, &pods[dst].name, RETRY_TIMEOUT);
        }
    }
    seen
}

fn describe(pods: &[Pod], case: &Case) -> String {
    let (src, dst, addr, probe) = case;
    format!("{} -> {} ({addr}) {probe:?}", pods[*src].name, pods[*dst].name)
}

/// Sum over CPUs of the packets counted for `endpoint`, `direction`,
/// `reason`.
fn counted(paths: &Paths, endpoint: &str, direction: &str, reason: u8) -> u64 {
    counters(paths)
        .expect("metrics")
        .iter()
        .filter(|c| c.endpoint == endpoint && c.direction == direction && c.reason == reason)
        .map(|c| c.packets)
        .sum()
}

/// A denied TCP connect: silent, counted under `reason` at `endpoint`'s
/// `direction`, and a drop event naming both pods.
#[allow(clippy::too_many_arguments)]
fn check_denied_connect(
    paths: &Paths,
    observer: &mut Observer,
    pods: &[Pod],
    src: usize,
    dst: usize,
    port: u16,
    judged_by: usize,
    direction: &str,
    reason: u8,
) {
    let dst_ip = pods[dst].ips[0];
    let what = format!("{} -> {}:{port}", pods[src].name, pods[dst].name);
    let before = counted(paths, &pods[judged_by].name, direction, reason);
    observer.drain();
    let started = Instant::now();
    let seen = run_probe(&pods[src].netns, dst_ip, Probe::Tcp(port), &pods[dst].name, PROBE_TIMEOUT);
    assert_eq!(seen, Seen::Silent, "{what}: a denied connect must time out (dropped, not reset)");
    assert!(started.elapsed() >= PROBE_TIMEOUT, "{what}: gave up before the timeout");
    let after = counted(paths, &pods[judged_by].name, direction, reason);
    assert!(after > before, "{what}: counter {direction}/{reason} of {} stayed at {before}", pods[judged_by].name);
    let flows: Vec<Flow> = observer.drain();
    let drop = flows.iter().find(|f| {
        f.verdict == "dropped"
            && f.dst == dst_ip
            && f.dport == port
            && f.protocol == 6
            && f.src_pod.as_deref() == Some(pods[src].name.as_str())
    });
    let drop = drop.unwrap_or_else(|| panic!("{what}: no drop event among {flows:#?}"));
    assert_eq!(drop.code, Some(-i32::from(reason)), "{what}: {drop:?}");
    assert_eq!(drop.direction, direction, "{what}: {drop:?}");
    assert_eq!(drop.endpoint, pods[judged_by].name, "{what}: {drop:?}");
    assert_eq!(drop.dst_pod.as_deref(), Some(pods[dst].name.as_str()), "{what}: {drop:?}");
    eprintln!("denied as expected: {}", drop.render());
}

/// One node's pods of a cluster made into network namespaces, its bundle
/// applied, and what real traffic does checked against `ir::eval`.
struct Run {
    bed: Testbed,
    pods: Vec<Pod>,
    paths: Paths,
    root: String,
    state: TempDir,
    _work: TempDir,
    /// Probes `ir::eval` allows, and denies (all of them checked).
    allowed: usize,
    denied: usize,
}

/// Copies the manifests of `dir` with `substitutions` made (this run's
/// addresses), compiles them, makes `node`'s addressed pods into
/// namespaces, checks that every probe is answered without policy, applies
/// the node's bundle through the loader library, and checks every probe
/// against `ir::eval`.
fn matrix_matches_eval(tag: &str, dir: &Path, substitutions: &[(&str, String)], node: &str, ports: &Ports) -> Run {
    let pid = std::process::id();
    let work = TempDir::new(&format!("netns-{tag}"));
    let manifests = work.0.join("cluster");
    std::fs::create_dir_all(&manifests).unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let mut text = std::fs::read_to_string(&path).unwrap();
        for (from, to) in substitutions {
            text = text.replace(from, to);
        }
        std::fs::write(manifests.join(path.file_name().unwrap()), text).unwrap();
    }
    let (loaded, bundles) = compile(&manifests, &work).expect("the cluster compiles without errors");
    let cluster = &loaded.lowered.cluster;
    assert!(bundles.contains_key(node), "a bundle for {node}");

    let mut pods = Vec::new();
    let local =
        cluster.endpoints.iter().enumerate().filter(|(_, e)| !e.ips.is_empty() && e.node.as_deref() == Some(node));
    for (endpoint, e) in local {
        let i = pods.len();
        pods.push(Pod {
            name: e.display_name(),
            endpoint,
            netns: format!("policyc-{pid}-{tag}-{}", e.name),
            host_if: format!("pc{tag}{}h{i}", pid % 1_000_000),
            ips: e.ips.clone(),
        });
    }

    let mut bed = Testbed::default();
    bed.make_pods(&pods);
    start_servers(&pods, ports, &bed.stop);

    let cases = cases(&pods, ports);
    // Without policy every probe is answered: the network itself works.
    let open = observe_matrix(&pods, &cases, |_| true);
    let broken: Vec<String> = cases
        .iter()
        .zip(&open)
        .filter(|(_, s)| **s != Seen::Answered)
        .map(|(c, s)| format!("{}: {s:?}", describe(&pods, c)))
        .collect();
    assert!(broken.is_empty(), "without policy, the netns network does not carry:\n{}", broken.join("\n"));

    let state = TempDir::new(&format!("netns-{tag}-state"));
    let root = format!("policyc-test-netns-{tag}-{pid}");
    let paths = Paths::new(Path::new("/sys/fs/bpf"), &root, &state.0.join(&root));
    bed.loader = Some(paths.clone());
    let report = apply(&paths, &work.0.join(node), &ApplyOptions::default()).expect("apply");
    // Every pod's links are created before the switch (with every lookup
    // on), then given its exact programs in place.
    let created = report
        .programs
        .iter()
        .filter(|(_, _, step, how)| *step == ProgramStep::Prepare && *how == Some(Attachment::Created));
    assert_eq!(created.count(), 2 * pods.len(), "{report:?}");

    let expected: Vec<bool> = cases
        .iter()
        .map(|&(s, d, addr, probe)| {
            eval(cluster, &probe.query(pods[s].endpoint, pods[d].endpoint, addr.is_ipv4())).allowed()
        })
        .collect();
    let started = Instant::now();
    let seen = observe_matrix(&pods, &cases, |c| expected[cases.iter().position(|x| x == c).unwrap()]);
    let mut table = String::new();
    let mut wrong = Vec::new();
    for ((case, want), got) in cases.iter().zip(&expected).zip(&seen) {
        let ok = match got {
            Seen::Answered => *want,
            Seen::Silent => !*want,
            Seen::Odd(_) => false,
        };
        let line = format!(
            "{} {:<40} eval {:<5} seen {got:?}\n",
            if ok { " " } else { "✗" },
            describe(&pods, case),
            if *want { "allow" } else { "deny" }
        );
        table.push_str(&line);
        if !ok {
            wrong.push(line);
        }
    }
    let allowed = expected.iter().filter(|a| **a).count();
    eprintln!(
        "{tag}: {} probes ({allowed} allowed) in {:.1} s:\n{table}",
        cases.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(wrong.is_empty(), "the datapath disagrees with ir::eval on {} probe(s):\n{}", wrong.len(), wrong.concat());
    Run { bed, pods, paths, root, state, _work: work, allowed, denied: cases.len() - allowed }
}

/// The policyc compile of `examples/policies`, applied on node-a, enforces
/// on real traffic between node-a's pods exactly what `ir::eval` (and so
/// `policyc connectivity`) says.
#[test]
fn example_cluster_on_node_a_matches_eval() {
    require_root();
    let _turn = support::turn();
    require_ip();
    let n = subnet(112);
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/policies");
    let substitutions = [("10.200.1.", format!("10.200.{n}.")), ("fd00:200::", format!("fd00:200::{n:x}:"))];
    let run = matrix_matches_eval("x", &example, &substitutions, "node-a", &EXAMPLE_PORTS);
    assert_eq!(run.pods.len(), 4, "node-a runs four pods of the example");
    // Node-a holds the locked-down data and payments pods: few of their
    // flows are allowed, and each is checked, as is every denial.
    assert!(run.allowed >= 4 && run.denied >= 100, "allowed {}, denied {}", run.allowed, run.denied);
}

#[test]
fn netns_traffic_matches_eval() {
    require_root();
    let _turn = support::turn();
    require_ip();
    // This run's subnets: 10.200.<n>.0/24 and fd00:200::<n>:0/112.
    let n = subnet(0);
    let substitutions = [("10.200.240.", format!("10.200.{n}.")), ("fd00:200::f0:", format!("fd00:200::{n:x}:"))];
    let Run { bed: _bed, pods, paths, root, state, _work, allowed, denied } =
        matrix_matches_eval("t", &cluster_dir(), &substitutions, "node-a", &TEST_PORTS);
    assert!(allowed > 10 && denied > 10, "the cluster must allow and deny a fair share");
    assert_eq!(pods.len(), 5, "the test cluster has five pods");
    assert!(pods.iter().filter(|p| p.ips.len() == 2).count() >= 2, "dual-stack pods talk over IPv6 too");

    // Denied connects: silent, counted and reported.
    let by_name: BTreeMap<&str, usize> = pods.iter().enumerate().map(|(i, p)| (p.name.as_str(), i)).collect();
    let (client, db) = (by_name["web/client"], by_name["data/db"]);
    let mut observer = Observer::open(&paths).expect("events ring buffer");
    // The deny rule on db's ingress (deny beats the NetworkPolicy allow).
    check_denied_connect(&paths, &mut observer, &pods, client, db, 5432, db, "ingress", 181);
    // No rule allows client's egress to db's metrics port.
    check_denied_connect(&paths, &mut observer, &pods, client, db, 9100, client, "egress", 133);

    let loader = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_policyc-loader"))
            .args(["--bpffs", "/sys/fs/bpf", "--root", &root, "--state"])
            .arg(&state.0)
            .args(args)
            .output()
            .unwrap()
    };
    let out = loader(&["observe", "--counters"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "observe --counters: {}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("data/db ingress policy-deny-rule: "), "observe --counters printed:\n{text}");
    assert!(text.contains("web/client egress policy-denied: "), "observe --counters printed:\n{text}");

    // Uninstall through the binary: everything goes, traffic flows.
    let out = loader(&["uninstall"]);
    assert!(out.status.success(), "uninstall: {}", String::from_utf8_lossy(&out.stderr));
    assert!(!paths.root.exists(), "uninstall left {}", paths.root.display());
    let seen = run_probe(&pods[client].netns, pods[db].ips[0], Probe::Tcp(5432), "data/db", RETRY_TIMEOUT);
    assert_eq!(seen, Seen::Answered, "after uninstall, web/client -> data/db:5432 must connect");
}

/// Admin tiers on real traffic (`tests/netns/tiers/`): an admin `Deny`
/// beats a NetworkPolicy allow (client → db:5432), an admin `Pass` falls to
/// the NetworkPolicy tier, which allows (monitor → db:9100), and a baseline
/// `Deny` applies only to pods no NetworkPolicy isolates (monitor →
/// frontend is dropped; monitor → db is the NetworkPolicy's to decide),
/// and an admin `networks` `Deny` holding one of two pods of one label set
/// drops that one only (client → frontend-2, not frontend: split
/// identities). The matrix must equal `ir::eval`'s, and these cases must be
/// in it as described.
#[test]
fn admin_tiers_on_real_traffic() {
    require_root();
    let _turn = support::turn();
    require_ip();
    let n = subnet(56);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/netns/tiers");
    let substitutions = [("10.200.241.", format!("10.200.{n}.")), ("fd00:200::f1:", format!("fd00:200::{n:x}:"))];
    let ports = Ports { tcp: &[5432, 8080, 9100], udp: &[53] };
    let run = matrix_matches_eval("td", &dir, &substitutions, "node-a", &ports);
    let by_name: BTreeMap<&str, usize> = run.pods.iter().enumerate().map(|(i, p)| (p.name.as_str(), i)).collect();
    let seen = |src: &str, dst: &str, port: u16| {
        let (s, d) = (&run.pods[by_name[src]], &run.pods[by_name[dst]]);
        run_probe(&s.netns, d.ips[0], Probe::Tcp(port), dst, PROBE_TIMEOUT)
    };
    for (src, dst, port, answered, why) in [
        ("web/client", "data/db", 5432, false, "the admin deny beats the NetworkPolicy allow"),
        ("web/frontend", "data/db", 5432, true, "no admin rule matches: the NetworkPolicy allows"),
        ("ops/monitor", "data/db", 9100, true, "the admin Pass hands it to the NetworkPolicy, which allows"),
        ("web/frontend", "data/db", 9100, false, "the admin deny-metrics rule after the Pass"),
        ("ops/monitor", "web/frontend", 8080, false, "the baseline deny, as no NetworkPolicy selects frontend"),
        ("web/client", "web/frontend", 8080, true, "no tier matches: default allow"),
        ("web/client", "web/frontend-2", 8080, false, "the admin networks deny holds frontend-2's address only"),
    ] {
        let want = if answered { Seen::Answered } else { Seen::Silent };
        assert_eq!(seen(src, dst, port), want, "{src} -> {dst}:{port}: {why}");
    }
}
