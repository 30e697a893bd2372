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
//! do not meet. Everything made is undone on drop, panics included.

mod support;

use policyc_ir::eval::{eval, Party, Query};
use policyc_ir::protocol::Protocol;
use policyc_loader::apply::{apply, ApplyOptions};
use policyc_loader::observe::{counters, Flow, Observer};
use policyc_loader::paths::Paths;
use rustix::net::{ipproto, sockopt, AddressFamily, RecvFlags, SendFlags, SocketType};
use rustix::thread::{move_into_link_name_space, LinkNameSpaceType};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{compile, require_root, TempDir};

/// How long a probe waits for its answer: the veths are local, so an
/// allowed answer takes well under a millisecond; silence this long is a
/// drop.
const PROBE_TIMEOUT: Duration = Duration::from_millis(300);
/// A probe that saw silence where an answer was expected is repeated once
/// with this timeout, to tell a slow machine from a drop.
const RETRY_TIMEOUT: Duration = Duration::from_secs(2);
/// Probes run at once (each is a thread in its source namespace).
const PARALLEL: usize = 16;
/// Server threads stop after this long even if the test is stuck.
const SERVER_LIFETIME: Duration = Duration::from_secs(240);

/// The ports servers listen on and probes try.
struct Ports {
    tcp: &'static [u16],
    udp: &'static [u16],
}

/// The test cluster's policy ports.
const TEST_PORTS: Ports = Ports { tcp: &[5432, 6379, 8080, 9100], udp: &[5353] };
/// The example cluster's (`examples/policies`): every port its policies
/// name for node-a's pods, and neighbours of the ranges' edges.
const EXAMPLE_PORTS: Ports = Ports { tcp: &[80, 443, 5432, 6379, 8080, 9100, 9109, 9187], udp: &[53] };

fn cluster_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/netns/cluster")
}

/// Runs `ip ARGS`, panicking with its stderr on failure.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap_or_else(|e| panic!("cannot run `ip`: {e}"));
    assert!(out.status.success(), "`ip {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
}

fn require_ip() {
    let found = Command::new("ip").arg("-V").output().map(|o| o.status.success()).unwrap_or(false);
    assert!(found, "the netns test needs iproute2's `ip` (apt-get install iproute2)");
}

fn write_sysctl(path: &Path, value: &str) {
    std::fs::write(path, value).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// One pod: its namespace, veth names and addresses.
struct Pod {
    name: String,
    endpoint: usize,
    netns: String,
    host_if: String,
    ips: Vec<IpAddr>,
}

/// Everything the test made, undone on drop (panics included).
#[derive(Default)]
struct Testbed {
    netns: Vec<String>,
    /// Sysctls to restore: (path, old value).
    sysctls: Vec<(PathBuf, String)>,
    loader: Option<Paths>,
    stop: Arc<AtomicBool>,
}

impl Testbed {
    fn set_sysctl(&mut self, path: PathBuf, value: &str) {
        let old = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        write_sysctl(&path, value);
        self.sysctls.push((path, old.trim().to_string()));
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(paths) = &self.loader {
            if paths.root.exists() {
                let _ = policyc_loader::uninstall::uninstall(paths);
            }
        }
        // Deleting a namespace deletes its veth end, and with it the pair
        // and the host routes over it.
        for ns in &self.netns {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        for (path, old) in self.sysctls.iter().rev() {
            if path.exists() {
                let _ = std::fs::write(path, old);
            }
        }
    }
}

/// Runs `f` on a thread inside network namespace `ns`; sockets it makes
/// belong to that namespace for their whole life.
fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    let file = File::open(format!("/run/netns/{ns}")).unwrap_or_else(|e| panic!("netns {ns}: {e}"));
    std::thread::scope(|s| {
        s.spawn(|| {
            move_into_link_name_space(file.as_fd(), Some(LinkNameSpaceType::Network))
                .unwrap_or_else(|e| panic!("setns into {ns}: {e}"));
            f()
        })
        .join()
        .expect("netns thread")
    })
}

/// Makes pod `i`'s namespace, veth pair, addresses and routes.
fn make_pod(bed: &mut Testbed, pod: &Pod, i: usize) {
    let pid = std::process::id();
    let peer = format!("{}p", pod.host_if);
    let host_mac = format!("02:0c:{:02x}:{:02x}:{:02x}:01", (pid >> 8) & 0xff, pid & 0xff, i);
    let pod_mac = format!("02:0c:{:02x}:{:02x}:{:02x}:02", (pid >> 8) & 0xff, pid & 0xff, i);
    ip(&["netns", "add", &pod.netns]);
    bed.netns.push(pod.netns.clone());
    ip(&[
        "link",
        "add",
        &pod.host_if,
        "address",
        &host_mac,
        "type",
        "veth",
        "peer",
        "name",
        &peer,
        "address",
        &pod_mac,
    ]);
    ip(&["link", "set", &peer, "netns", &pod.netns]);
    let n = pod.netns.as_str();
    ip(&["-n", n, "link", "set", &peer, "name", "eth0"]);
    ip(&["-n", n, "link", "set", "lo", "up"]);
    ip(&["-n", n, "link", "set", "eth0", "up"]);
    // Host side: no DAD on its link-local address, forwarding for packets
    // arriving from the pod, then up.
    let conf = |family: &str, key: &str| PathBuf::from(format!("/proc/sys/net/{family}/conf/{}/{key}", pod.host_if));
    bed.set_sysctl(conf("ipv6", "accept_dad"), "0");
    bed.set_sysctl(conf("ipv4", "forwarding"), "1");
    ip(&["link", "set", &pod.host_if, "up"]);
    for addr in &pod.ips {
        let (len, gateway, family) = match addr {
            IpAddr::V4(_) => ("32", "169.254.1.1", "-4"),
            IpAddr::V6(_) => ("128", "fe80::1", "-6"),
        };
        let cidr = format!("{addr}/{len}");
        ip(&["-n", n, family, "addr", "add", &cidr, "dev", "eth0", "nodad"]);
        ip(&["-n", n, family, "neigh", "replace", gateway, "lladdr", &host_mac, "dev", "eth0", "nud", "permanent"]);
        ip(&["-n", n, family, "route", "replace", "default", "via", gateway, "dev", "eth0", "onlink"]);
        ip(&[family, "route", "add", &cidr, "dev", &pod.host_if]);
        ip(&[
            family,
            "neigh",
            "replace",
            &addr.to_string(),
            "lladdr",
            &pod_mac,
            "dev",
            &pod.host_if,
            "nud",
            "permanent",
        ]);
    }
}

/// What a probe saw.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    /// The destination pod answered (so the request and its reply passed).
    Answered,
    /// Nothing came back: dropped.
    Silent,
    /// Anything else (a reset, an ICMP error, a wrong answer): never right.
    Odd(String),
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
        Query { src: Party::Endpoint(src), dst: Party::Endpoint(dst), protocol, port }
    }
}

fn silent(kind: ErrorKind) -> bool {
    matches!(kind, ErrorKind::TimedOut | ErrorKind::WouldBlock)
}

fn tcp_probe(dst: SocketAddr, want: &str, timeout: Duration) -> Seen {
    let mut stream = match TcpStream::connect_timeout(&dst, timeout) {
        Ok(s) => s,
        Err(e) if silent(e.kind()) => return Seen::Silent,
        Err(e) => return Seen::Odd(format!("connect: {e}")),
    };
    stream.set_read_timeout(Some(RETRY_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(RETRY_TIMEOUT)).unwrap();
    if let Err(e) = stream.write_all(b"hello\n") {
        return Seen::Odd(format!("write: {e}"));
    }
    let mut answer = String::new();
    match stream.read_to_string(&mut answer) {
        Ok(_) if answer.trim() == want => Seen::Answered,
        Ok(_) => Seen::Odd(format!("answer `{}`", answer.trim())),
        Err(e) => Seen::Odd(format!("connected, then no answer: {e}")),
    }
}

fn udp_probe(dst: SocketAddr, want: &str, timeout: Duration) -> Seen {
    let socket = UdpSocket::bind(if dst.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }).unwrap();
    socket.set_read_timeout(Some(timeout)).unwrap();
    socket.send_to(b"hello", dst).unwrap();
    let mut buf = [0u8; 256];
    match socket.recv_from(&mut buf) {
        Ok((n, from)) if from.ip() == dst.ip() && &buf[..n] == want.as_bytes() => Seen::Answered,
        Ok((n, from)) => Seen::Odd(format!("answer `{}` from {from}", String::from_utf8_lossy(&buf[..n]))),
        Err(e) if silent(e.kind()) => Seen::Silent,
        Err(e) => Seen::Odd(format!("recv: {e}")),
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

/// A server in every pod: TCP listeners on every policy port and UDP on
/// the UDP ones, each answering with the pod's name.
fn start_servers(pods: &[Pod], ports: &Ports, stop: &Arc<AtomicBool>) {
    for pod in pods {
        let (listeners, udp) = in_netns(&pod.netns, || {
            // `[::]` takes IPv4 too (bindv6only is 0 in a new namespace).
            let tcp: Vec<TcpListener> = ports
                .tcp
                .iter()
                .map(|p| TcpListener::bind(("::", *p)).unwrap_or_else(|e| panic!("listen on {p}: {e}")))
                .collect();
            let udp: Vec<UdpSocket> = ports
                .udp
                .iter()
                .map(|p| UdpSocket::bind(("::", *p)).unwrap_or_else(|e| panic!("bind udp {p}: {e}")))
                .collect();
            (tcp, udp)
        });
        let name = pod.name.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            for l in &listeners {
                l.set_nonblocking(true).unwrap();
            }
            for u in &udp {
                u.set_nonblocking(true).unwrap();
            }
            let start = Instant::now();
            let mut buf = [0u8; 256];
            while !stop.load(Ordering::SeqCst) && start.elapsed() < SERVER_LIFETIME {
                let mut idle = true;
                for l in &listeners {
                    if let Ok((mut s, _)) = l.accept() {
                        idle = false;
                        let _ = s.set_nonblocking(false);
                        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
                        let _ = s.read(&mut buf);
                        let _ = s.write_all(format!("{name}\n").as_bytes());
                    }
                }
                for u in &udp {
                    if let Ok((_, from)) = u.recv_from(&mut buf) {
                        idle = false;
                        let _ = u.send_to(name.as_bytes(), from);
                    }
                }
                if idle {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        });
    }
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
    for (i, pod) in pods.iter().enumerate() {
        make_pod(&mut bed, pod, i);
    }
    // IPv6 forwarding per interface needs `force_forwarding` (Linux 6.17);
    // elsewhere it is the host-wide switch, restored on drop.
    for pod in &pods {
        let force = PathBuf::from(format!("/proc/sys/net/ipv6/conf/{}/force_forwarding", pod.host_if));
        if force.exists() {
            bed.set_sysctl(force, "1");
        } else {
            bed.set_sysctl(PathBuf::from("/proc/sys/net/ipv6/conf/all/forwarding"), "1");
            break;
        }
    }
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
    assert_eq!(report.programs.len(), 2 * pods.len(), "{report:?}");

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

/// This run's subnet number, `offset` apart for each test of the run.
fn subnet(offset: u32) -> u32 {
    16 + (std::process::id() + offset) % 224
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
