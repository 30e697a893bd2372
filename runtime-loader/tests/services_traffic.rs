//! Real traffic to Services through the datapath's translation
//! (`ebpf-templates/include/lb.h`): network-namespace pods on one node
//! (`tests/support/netns.rs`), each with servers that answer with the
//! pod's name, and a bundle compiled from manifests written here with this
//! run's addresses. Service addresses are a /28 of 10.200.250.0/24 of this
//! run, blackholed on the host, so a packet the datapath does not
//! translate dies there instead of leaving the machine.
//!
//! Checked, each with a bounded number of connections:
//! - a ClusterIP (TCP and UDP) reaches every ready backend and only those;
//! - an established TCP connection keeps its backend across an apply that
//!   changes the service's backends, and is reset once an apply removes
//!   its backend, while a UDP flow then goes on to a backend that is left;
//! - a Service without endpoints refuses at once (ECONNREFUSED, from the
//!   datapath's ICMP port unreachable), not after a timeout;
//! - a backend whose ingress policy denies the client is not reachable
//!   through the Service either (policy judges the translated packet);
//! - a pod reaches itself through its Service (hairpin);
//! - ClientIP affinity sends a client's connections to one backend.
//!
//! Names carry the test's short name `sd` and the process id; everything
//! made is undone on drop, panics included.

mod support;

use policyc_loader::apply::{apply, ApplyOptions};
use policyc_loader::paths::Paths;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::netns::{in_netns, require_ip, subnet, Pod, Testbed};
use support::{compile, require_root, TempDir};

/// The backends' ports.
const TCP_PORT: u16 = 8080;
const UDP_PORT: u16 = 5353;
/// Connections tried to see every backend of a Service: with two or three
/// backends picked by a hash of the source port, the chance that one is
/// never picked in this many is below 1e-10.
const TRIES: usize = 64;
/// How long an answer may take on local veths, generously.
const TIMEOUT: Duration = Duration::from_secs(2);
/// Servers stop after this long even if the test is stuck.
const SERVER_LIFETIME: Duration = Duration::from_secs(120);

/// The manifests of this run: `subnet` is its pods' /24 (10.200.S.0/24),
/// `vip` the first address of its Services' /28; at `stage` 0 `api-a` and
/// `api-b` are the backends of `api` (and `sticky`), at 1 `api-c` joins
/// them, at 2 it is the only one left.
fn manifests(subnet: u32, vip: u32, stage: u8) -> String {
    let pod = |name: &str, app: &str, host: u32| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: shop, labels: {{app: {app}}}}}\n\
             spec:\n  nodeName: node-a\n  containers:\n    - name: main\n      ports:\n\
             \x20       - {{name: http, containerPort: {TCP_PORT}, protocol: TCP}}\n\
             \x20       - {{name: dns, containerPort: {UDP_PORT}, protocol: UDP}}\n\
             status:\n  phase: Running\n  conditions: [{{type: Ready, status: \"True\"}}]\n\
             \x20 podIP: 10.200.{subnet}.{host}\n  podIPs: [{{ip: 10.200.{subnet}.{host}}}]\n---\n"
        )
    };
    let service = |name: &str, app: &str, offset: u32, extra: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop}}\n\
             spec:\n  clusterIP: 10.200.250.{}\n  selector: {{app: {app}}}\n{extra}  ports:\n\
             \x20   - {{name: http, port: 80, targetPort: {TCP_PORT}, protocol: TCP}}\n\
             \x20   - {{name: dns, port: 53, targetPort: {UDP_PORT}, protocol: UDP}}\n---\n",
            vip + offset
        )
    };
    let mut out = String::from(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {kubernetes.io/metadata.name: shop}}\n---\n\
         apiVersion: v1\nkind: Node\nmetadata: {name: node-a}\nstatus:\n  addresses: [{type: InternalIP, address: 10.200.255.1}]\n---\n",
    );
    out += &pod("client", "client", 10);
    let old = if stage == 2 { "api-old" } else { "api" };
    out += &pod("api-a", old, 21);
    out += &pod("api-b", old, 22);
    out += &pod("api-c", if stage >= 1 { "api" } else { "api-later" }, 23);
    out += &pod("guarded", "guarded", 24);
    out += &pod("solo", "solo", 25);
    out += &service("api", "api", 0, "");
    out += &service("empty", "nothing", 1, "");
    out += &service("guarded", "guarded", 2, "");
    out += &service("sticky", "api", 3, "  sessionAffinity: ClientIP\n");
    out += &service("solo", "solo", 4, "");
    // `guarded` takes connections from `admin` pods only.
    out += "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: guarded, namespace: shop}\n\
            spec:\n  podSelector: {matchLabels: {app: guarded}}\n  ingress:\n\
            \x20   - from: [{podSelector: {matchLabels: {app: admin}}}]\n";
    out
}

/// The blackhole route of this run's Service addresses on the host,
/// removed on drop.
struct Blackhole(String);

impl Blackhole {
    fn new(prefix: String) -> Blackhole {
        support::netns::ip(&["route", "add", "blackhole", &prefix]);
        Blackhole(prefix)
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["route", "del", "blackhole", &self.0]).output();
    }
}

/// Servers in `pod`: on TCP, each connection gets the pod's name at once,
/// then `bye <name>` after a line from the client (so a connection can be
/// checked to still reach the same backend later); on UDP, the name.
fn serve(pod: &Pod, stop: &Arc<AtomicBool>) {
    let (tcp, udp) = in_netns(&pod.netns, || {
        (
            TcpListener::bind(("0.0.0.0", TCP_PORT)).expect("listen"),
            UdpSocket::bind(("0.0.0.0", UDP_PORT)).expect("bind udp"),
        )
    });
    tcp.set_nonblocking(true).unwrap();
    udp.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let (name, stop_tcp) = (pod.name.clone(), stop.clone());
    std::thread::spawn(move || {
        let start = Instant::now();
        while !stop_tcp.load(Ordering::SeqCst) && start.elapsed() < SERVER_LIFETIME {
            match tcp.accept() {
                Ok((mut s, _)) => {
                    let name = name.clone();
                    std::thread::spawn(move || {
                        let _ = s.set_nonblocking(false);
                        let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
                        let _ = s.write_all(format!("{name}\n").as_bytes());
                        let mut line = String::new();
                        if BufReader::new(&s).read_line(&mut line).is_ok() && !line.is_empty() {
                            let _ = s.write_all(format!("bye {name}\n").as_bytes());
                        }
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    });
    let (name, stop) = (pod.name.clone(), stop.clone());
    std::thread::spawn(move || {
        let start = Instant::now();
        let mut buf = [0u8; 64];
        while !stop.load(Ordering::SeqCst) && start.elapsed() < SERVER_LIFETIME {
            if let Ok((_, from)) = udp.recv_from(&mut buf) {
                let _ = udp.send_to(name.as_bytes(), from);
            }
        }
    });
}

/// The name a TCP connection to `dst` first reads.
fn tcp_name(dst: SocketAddr) -> Result<String, std::io::Error> {
    let s = TcpStream::connect_timeout(&dst, TIMEOUT)?;
    s.set_read_timeout(Some(TIMEOUT))?;
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line)?;
    Ok(line.trim().to_string())
}

/// The name a UDP request to `dst` is answered with, from `dst`'s address.
fn udp_name(dst: SocketAddr) -> Result<String, String> {
    let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
    socket.set_read_timeout(Some(TIMEOUT)).unwrap();
    socket.send_to(b"hello", dst).unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = socket.recv_from(&mut buf).map_err(|e| format!("recv: {e}"))?;
    if from != dst {
        return Err(format!("answer from {from}, not the service address {dst}"));
    }
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// The names [`TRIES`] new connections (TCP, or UDP requests from new
/// ports) from `netns` to `dst` get.
fn names_seen(netns: &str, dst: SocketAddr, udp: bool) -> BTreeSet<String> {
    in_netns(netns, || {
        (0..TRIES)
            .map(|i| {
                if udp {
                    udp_name(dst).unwrap_or_else(|e| panic!("UDP request {i} to {dst}: {e}"))
                } else {
                    tcp_name(dst).unwrap_or_else(|e| panic!("connection {i} to {dst}: {e}"))
                }
            })
            .collect()
    })
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

#[test]
fn services_are_load_balanced_by_the_datapath() {
    require_root();
    require_ip();
    let _turn = support::turn();
    let pid = std::process::id();
    let s = subnet(7);
    // This run's /28 of Service addresses.
    let vip = 16 * (pid % 16);
    let work = TempDir::new("sd-services");
    let write = |stage: u8| {
        let dir = work.0.join(format!("stage-{stage}"));
        std::fs::create_dir_all(dir.join("in")).unwrap();
        std::fs::write(dir.join("in/cluster.yaml"), manifests(s, vip, stage)).unwrap();
        let out = TempDir(dir.join("out"));
        std::fs::create_dir_all(&out.0).unwrap();
        let (_, bundles) = compile(&dir.join("in"), &out).expect("the manifests compile");
        assert!(bundles.contains_key("node-a"));
        let path = out.0.join("node-a");
        std::mem::forget(out); // removed with `work`
        path
    };
    let (first, later, last) = (write(0), write(1), write(2));

    let names = ["client", "api-a", "api-b", "api-c", "guarded", "solo"];
    let pods: Vec<Pod> = names
        .iter()
        .zip([10, 21, 22, 23, 24, 25])
        .enumerate()
        .map(|(i, (name, host))| Pod {
            name: format!("shop/{name}"),
            endpoint: i,
            netns: format!("sd-{pid}-{name}"),
            host_if: format!("sd{}h{i}", pid % 1_000_000),
            ips: vec![IpAddr::V4(Ipv4Addr::new(10, 200, s as u8, host))],
        })
        .collect();
    let mut bed = Testbed::default();
    bed.make_pods(&pods);
    let _blackhole = Blackhole::new(format!("10.200.250.{vip}/28"));
    for pod in &pods {
        serve(pod, &bed.stop);
    }
    let state = TempDir::new("sd-services-state");
    let root = format!("policyc-test-sd-{pid}");
    let paths = Paths::new(Path::new("/sys/fs/bpf"), &root, &state.0.join(&root));
    bed.loader = Some(paths.clone());
    let service =
        |offset: u32, port: u16| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 200, 250, (vip + offset) as u8)), port);
    let (api, empty, guarded, sticky, solo) = (0, 1, 2, 3, 4);
    let client = &pods[0].netns;

    // Before any bundle, a Service address goes nowhere: the blackhole.
    let untranslated = in_netns(client, || tcp_name(service(api, 80)));
    assert!(untranslated.is_err(), "without the datapath, {} answered: {untranslated:?}", service(api, 80));

    let report = apply(&paths, &first, &ApplyOptions::default()).expect("apply");
    let written = report.maps.get("lb4_services").map(|o| o.added).unwrap_or(0);
    // api (2 backends), empty (0), guarded (1), sticky (2), solo (1): TCP and UDP each.
    assert_eq!(written, 2 * (3 + 1 + 2 + 3 + 2), "lb4_services entries written: {:?}", report.maps);

    // A ClusterIP reaches every ready backend and only those (api-c is not selected yet).
    assert_eq!(names_seen(client, service(api, 80), false), set(&["shop/api-a", "shop/api-b"]), "TCP");
    assert_eq!(names_seen(client, service(api, 53), true), set(&["shop/api-a", "shop/api-b"]), "UDP");

    // No endpoints: refused at once.
    let started = Instant::now();
    let refused = in_netns(client, || tcp_name(service(empty, 80)));
    let took = started.elapsed();
    match refused {
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
        other => panic!("a Service without endpoints must refuse (ECONNREFUSED), got {other:?}"),
    }
    assert!(took < Duration::from_millis(500), "refused only after {took:?}");

    // Policy is judged on the backend: `guarded` does not take `client`.
    let denied = in_netns(client, || tcp_name(service(guarded, 80)));
    match denied {
        Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {}
        other => panic!("the guarded backend's ingress policy must drop the client's connection, got {other:?}"),
    }

    // Hairpin: `solo` reaches itself through its Service.
    let own = in_netns(&pods[5].netns, || tcp_name(service(solo, 80)));
    assert_eq!(own.expect("hairpin connection"), "shop/solo");
    let own = in_netns(&pods[5].netns, || udp_name(service(solo, 53)));
    assert_eq!(own.expect("hairpin UDP"), "shop/solo");

    // ClientIP affinity: one backend for every connection of the client.
    let stuck = names_seen(client, service(sticky, 80), false);
    assert_eq!(stuck.len(), 1, "affinity: {stuck:?}");

    // An established connection keeps its backend across an apply that
    // changes the backends (api-c joins).
    let (stream, first_name) = in_netns(client, || {
        let s = TcpStream::connect_timeout(&service(api, 80), TIMEOUT).expect("connect");
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut reader = BufReader::new(s.try_clone().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).expect("name");
        (s, line.trim().to_string())
    });
    apply(&paths, &later, &ApplyOptions::default()).expect("second apply");
    let mut stream = stream;
    stream.write_all(b"hello\n").expect("write after the apply");
    let mut rest = String::new();
    let _ = stream.read_to_string(&mut rest);
    assert_eq!(rest.trim(), format!("bye {first_name}"), "the connection moved or broke across the apply");
    assert_eq!(
        names_seen(client, service(api, 80), false),
        set(&["shop/api-a", "shop/api-b", "shop/api-c"]),
        "after the apply, new connections reach every backend"
    );

    // An apply that removes the backends of a running connection: TCP
    // ends with a reset (the backend that is left does not know the
    // connection), UDP goes on to the backend that is left.
    let (stream, udp) = in_netns(client, || {
        // A connection on api-a or api-b (two of three backends: a few tries).
        let stream = (0..20)
            .find_map(|_| {
                let s = TcpStream::connect_timeout(&service(api, 80), TIMEOUT).expect("connect");
                s.set_read_timeout(Some(TIMEOUT)).unwrap();
                let mut line = String::new();
                BufReader::new(s.try_clone().unwrap()).read_line(&mut line).expect("name");
                (line.trim() != "shop/api-c").then_some(s)
            })
            .expect("a connection on api-a or api-b in 20 tries");
        let udp = (0..20)
            .find_map(|_| {
                let u = UdpSocket::bind("0.0.0.0:0").unwrap();
                u.set_read_timeout(Some(TIMEOUT)).unwrap();
                u.send_to(b"hello", service(api, 53)).unwrap();
                let mut buf = [0u8; 64];
                let (n, _) = u.recv_from(&mut buf).expect("UDP answer");
                (&buf[..n] != b"shop/api-c").then_some(u)
            })
            .expect("a UDP flow on api-a or api-b in 20 tries");
        (stream, udp)
    });
    apply(&paths, &last, &ApplyOptions::default()).expect("third apply");
    let mut stream = stream;
    let started = Instant::now();
    let _ = stream.write_all(
        b"hello
",
    );
    let mut rest = String::new();
    let ended = stream.read_to_string(&mut rest);
    assert!(
        matches!(&ended, Err(e) if e.kind() == ErrorKind::ConnectionReset),
        "a connection whose backend left must be reset, got {ended:?} `{rest}`"
    );
    assert!(started.elapsed() < TIMEOUT, "the reset took {:?}", started.elapsed());
    udp.send_to(b"hello", service(api, 53)).unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = udp.recv_from(&mut buf).expect("the UDP flow gets an answer after its backend left");
    assert_eq!((&buf[..n], from), (&b"shop/api-c"[..], service(api, 53)), "the UDP flow re-selects");
}

/// The ones' complement sum of `bytes` (RFC 1071), folded, not inverted.
fn ones_sum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The TCP/UDP pseudo-header and L4 bytes of IPv4 frame `f` (no options).
fn pseudo_and_l4(f: &[u8]) -> Vec<u8> {
    let l4 = &f[34..];
    let mut out = f[26..34].to_vec();
    out.extend_from_slice(&[0, f[23]]);
    out.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    out.extend_from_slice(l4);
    out
}

/// Fills in the IPv4 header checksum and the TCP or UDP one of frame `f`.
fn with_checksums(mut f: Vec<u8>) -> Vec<u8> {
    f[24..26].copy_from_slice(&[0, 0]);
    let ip = !ones_sum(&f[14..34]);
    f[24..26].copy_from_slice(&ip.to_be_bytes());
    let at = if f[23] == 6 { 34 + 16 } else { 34 + 6 };
    f[at..at + 2].copy_from_slice(&[0, 0]);
    let l4 = !ones_sum(&pseudo_and_l4(&f));
    f[at..at + 2].copy_from_slice(&l4.to_be_bytes());
    f
}

/// Whether frame `f`'s IPv4 header checksum and its L4 checksum (TCP, UDP
/// unless 0, or ICMP) verify, as a receiver computes them.
fn checksums_verify(f: &[u8]) -> bool {
    let ip = ones_sum(&f[14..34]) == 0xffff;
    let l4 = match f[23] {
        1 => ones_sum(&f[34..]) == 0xffff,
        17 if f[40..42] == [0, 0] => true,
        _ => ones_sum(&pseudo_and_l4(f)) == 0xffff,
    };
    ip && l4
}

fn frame(src: [u8; 4], dst: [u8; 4], protocol: u8, sport: u16, dport: u16) -> Vec<u8> {
    let packet =
        policyc_loader::packet::ProbePacket { src: IpAddr::from(src), dst: IpAddr::from(dst), protocol, sport, dport };
    let mut f = packet.to_bytes();
    // A payload, so that the checksums cover more than headers.
    f.extend_from_slice(b"policyc service checksum\n");
    let total = (f.len() - 14) as u16;
    f[16..18].copy_from_slice(&total.to_be_bytes());
    if protocol == 17 {
        let len = (f.len() - 34) as u16;
        f[38..40].copy_from_slice(&len.to_be_bytes());
    }
    f
}

/// `TC_ACT_UNSPEC` as the test run returns it: the packet goes on.
const PASS: u32 = u32::MAX;
/// `TC_ACT_REDIRECT`.
const REDIRECT: u32 = 7;

#[test]
fn dnat_and_reverse_nat_keep_checksums_right() {
    require_root();
    let _turn = support::turn();
    let (s, vip) = (subnet(8) as u8, 16 * (std::process::id() % 16) as u8);
    let work = TempDir::new("sd-checksums");
    std::fs::create_dir_all(work.0.join("in")).unwrap();
    std::fs::write(work.0.join("in/cluster.yaml"), manifests(u32::from(s), u32::from(vip), 0)).unwrap();
    let (_, bundles) = compile(&work.0.join("in"), &work).expect("the manifests compile");
    let state = TempDir::new("sd-checksums-state");
    let paths = support::scratch_paths("sd-checksums", &state);
    let mut probe = policyc_loader::probe::Probe::load(paths, &bundles["node-a"]).expect("probe");
    let client = [10, 200, s, 10];
    let backends = [[10, 200, s, 21], [10, 200, s, 22]];
    let from = policyc_ebpf::Template::FromContainer;
    let to = policyc_ebpf::Template::ToContainer;

    for (protocol, port, target, zero_udp) in
        [(6u8, 80u16, TCP_PORT, false), (17, 53, UDP_PORT, false), (17, 53, UDP_PORT, true)]
    {
        let sport = 40000 + u16::from(protocol) + u16::from(zero_udp);
        let mut request = with_checksums(frame(client, [10, 200, 250, vip], protocol, sport, port));
        if zero_udp {
            request[40..42].copy_from_slice(&[0, 0]);
        }
        let what = format!("protocol {protocol} to port {port} (UDP checksum 0: {zero_udp})");
        let (ret, out) = probe.run_frame(IpAddr::from(client), from, &request).expect("test run");
        assert_eq!(ret, PASS, "{what}: the request must pass");
        let backend: [u8; 4] = out[30..34].try_into().unwrap();
        assert!(backends.contains(&backend), "{what}: destination {backend:?} is not a backend");
        assert_eq!(u16::from_be_bytes([out[36], out[37]]), target, "{what}: destination port");
        assert_eq!(&out[26..30], &client, "{what}: the source stays the client");
        assert!(checksums_verify(&out), "{what}: checksums after DNAT: {out:02x?}");
        if zero_udp {
            assert_eq!(&out[40..42], &[0, 0], "{what}: a UDP checksum of 0 stays 0");
        }
        // The backend's reply, through the client's to_container.
        let reply = with_checksums(frame(backend, client, protocol, target, sport));
        let (ret, back) = probe.run_frame(IpAddr::from(client), to, &reply).expect("test run");
        assert_eq!(ret, PASS, "{what}: the reply must pass");
        assert_eq!(&back[26..30], &[10, 200, 250, vip], "{what}: the reply comes from the service address");
        assert_eq!(u16::from_be_bytes([back[34], back[35]]), port, "{what}: the reply's source port");
        assert!(checksums_verify(&back), "{what}: checksums after reverse NAT: {back:02x?}");
    }

    // No endpoints: the SYN becomes an ICMP port unreachable sent back.
    let syn = with_checksums(frame(client, [10, 200, 250, vip + 1], 6, 41000, 80));
    let (ret, icmp) = probe.run_frame(IpAddr::from(client), from, &syn).expect("test run");
    assert_eq!(ret, REDIRECT, "the refused SYN is redirected back into the pod");
    assert_eq!(icmp.len(), 14 + 20 + 8 + 28, "{icmp:02x?}");
    assert_eq!((icmp[23], icmp[34], icmp[35]), (1, 3, 3), "ICMP destination port unreachable: {icmp:02x?}");
    assert_eq!(&icmp[26..30], &[10, 200, 250, vip + 1], "from the service address");
    assert_eq!(&icmp[30..34], &client, "to the client");
    assert_eq!(&icmp[0..6], &syn[6..12], "to the client's MAC");
    assert_eq!(&icmp[42..70], &syn[14..42], "quoting the refused packet's IP header and 8 bytes");
    assert!(checksums_verify(&icmp), "ICMP error checksums: {icmp:02x?}");
}
