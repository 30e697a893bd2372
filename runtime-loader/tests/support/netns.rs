//! Network-namespace "pods" for the kernel tests: each a namespace joined
//! to the host by a veth pair, as a point-to-point CNI does it (the pod's
//! addresses on its `eth0` as /32 and /128, a default route through a
//! link-local gateway whose MAC is the host side's, a permanent neighbour
//! so no proxy ARP is needed; on the host a /32 (/128) route to the pod
//! over the host-side veth, and forwarding on for those interfaces only),
//! servers in them, and TCP and UDP probes from sockets made inside them.
//! Everything made is undone on drop, panics included.

use policyc_loader::paths::Paths;
use rustix::thread::{move_into_link_name_space, LinkNameSpaceType};
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A probe that saw silence where an answer was expected is repeated once
/// with this timeout, to tell a slow machine from a drop.
pub const RETRY_TIMEOUT: Duration = Duration::from_secs(2);
/// Server threads stop after this long even if the test is stuck.
pub const SERVER_LIFETIME: Duration = Duration::from_secs(240);

/// The ports servers listen on and probes try.
pub struct Ports {
    /// TCP ports.
    pub tcp: &'static [u16],
    /// UDP ports.
    pub udp: &'static [u16],
}

/// Runs `ip ARGS`, panicking with its stderr on failure.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap_or_else(|e| panic!("cannot run `ip`: {e}"));
    assert!(out.status.success(), "`ip {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
}

pub fn require_ip() {
    let found = Command::new("ip").arg("-V").output().map(|o| o.status.success()).unwrap_or(false);
    assert!(found, "the netns test needs iproute2's `ip` (apt-get install iproute2)");
}

fn write_sysctl(path: &Path, value: &str) {
    std::fs::write(path, value).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// One pod: its namespace, veth names and addresses.
pub struct Pod {
    /// `<ns>/<pod>`: what its servers answer.
    pub name: String,
    /// Its index among the cluster's endpoints.
    pub endpoint: usize,
    /// Its network namespace.
    pub netns: String,
    /// The host side of its veth pair.
    pub host_if: String,
    /// Its addresses.
    pub ips: Vec<IpAddr>,
}

/// Everything the test made, undone on drop (panics included): the
/// loader's root (uninstalled), the namespaces (and with them the veths and
/// host routes), the sysctls; servers are told to stop.
#[derive(Default)]
pub struct Testbed {
    netns: Vec<String>,
    /// Sysctls to restore: (path, old value).
    sysctls: Vec<(PathBuf, String)>,
    /// The loader's root to uninstall.
    pub loader: Option<Paths>,
    /// Tells the servers to stop.
    pub stop: Arc<AtomicBool>,
}

impl Testbed {
    /// Makes `pods` (namespaces, veths, addresses, routes, forwarding).
    pub fn make_pods(&mut self, pods: &[Pod]) {
        for (i, pod) in pods.iter().enumerate() {
            make_pod(self, pod, i);
        }
        // IPv6 forwarding per interface needs `force_forwarding` (Linux 6.17);
        // elsewhere it is the host-wide switch, restored on drop.
        for pod in pods {
            let force = PathBuf::from(format!("/proc/sys/net/ipv6/conf/{}/force_forwarding", pod.host_if));
            if force.exists() {
                self.set_sysctl(force, "1");
            } else {
                self.set_sysctl(PathBuf::from("/proc/sys/net/ipv6/conf/all/forwarding"), "1");
                break;
            }
        }
    }

    /// Sets a sysctl, to be restored on drop.
    pub fn set_sysctl(&mut self, path: PathBuf, value: &str) {
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
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
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
pub enum Seen {
    /// The destination pod answered (so the request and its reply passed).
    Answered,
    /// Nothing came back: dropped.
    Silent,
    /// Anything else (a reset, an ICMP error, a wrong answer): never right.
    Odd(String),
}

pub fn silent(kind: ErrorKind) -> bool {
    matches!(kind, ErrorKind::TimedOut | ErrorKind::WouldBlock)
}

pub fn tcp_probe(dst: SocketAddr, want: &str, timeout: Duration) -> Seen {
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

pub fn udp_probe(dst: SocketAddr, want: &str, timeout: Duration) -> Seen {
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

/// A server in every pod: TCP listeners on every policy port and UDP on
/// the UDP ones, each answering with the pod's name.
pub fn start_servers(pods: &[Pod], ports: &Ports, stop: &Arc<AtomicBool>) {
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

/// This run's subnet number (`10.200.<n>.0/24`), `offset` apart for each
/// test of the run, so that concurrent runs do not meet.
pub fn subnet(offset: u32) -> u32 {
    16 + (std::process::id() + offset) % 224
}
