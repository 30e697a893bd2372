//! Per-packet cost of the datapath programs with `BPF_PROG_TEST_RUN`,
//! beside the empty program (`policyc_ebpf::EMPTY_PROGRAM`) timed in the
//! same run. Ignored by `cargo test`; `cargo xtask bench datapath` runs it.
//!
//! The node is `tests/faults/cluster/` (client, and server whose ingress
//! allows client on TCP 8080), its bundle grown with synthetic entries to
//! 10, 1 000 and 100 000 policy entries (server ingress entries for other
//! peer identities, in the same trie the packet's lookups walk) and 100 and
//! 100 000 ipcache entries (/32s of other identities), loaded into a
//! scratch root. Rows, each the kernel's mean time per run (the least of
//! [`ROUNDS`] runs of repeat [`REPEAT`] unless said otherwise; the rounds
//! interleave the empty program and the three repeat rows, so a stretch
//! in which the shared machine is slower falls on all of them alike):
//! - `from established`: client's `from_container` on a client → server
//!   TCP packet whose connection is already tracked (parse, clock,
//!   conntrack hit, forwarded counter); repeat 100 000.
//! - `to established`: server's `to_container`, same packet; repeat 100 000.
//! - `to new denied`: server's `to_container` on a packet from a world
//!   address (not in conntrack, no policy entry): parse, clock, two
//!   conntrack misses, state, endpoint, ipcache LPM, policy LPM lookups,
//!   drop event, drop counter; repeat 100 000. The ring buffer fills after
//!   about 10 000 events, so most runs take `bpf_ringbuf_output`'s "full"
//!   exit.
//! - `to new allowed`: server's `to_container` on the first packet of a
//!   new client connection (a source port of its own each run), with the
//!   ring buffer drained before each run (policy lookup, conntrack create,
//!   new-connection event); the median of [`SINGLE_RUNS`] runs of repeat
//!   1, whose floor is the empty program timed the same way (`empty
//!   single`), since a single run's time carries the test-run timer's own
//!   cost. (Emptying conntrack before each run instead walks every bucket
//!   of both conntrack tables, which leaves the caches cold and added
//!   microseconds to the run that followed.)
//!
//! - Services (issue 15): the bundle also holds a Service
//!   (`10.200.250.1:80/TCP` to the server's 8080). `from established
//!   service`: client's `from_container` on a packet of a tracked
//!   connection to it (conntrack hit on the service entry, state, backend
//!   lookup, DNAT with checksums); repeat 100 000. `from new` and `from new
//!   service`: the client's `from_container` on the first packet of a new
//!   direct connection and of a new one to the Service (service lookup,
//!   backend slot and backend lookups, DNAT, two conntrack entries), single
//!   runs as `to new allowed`. Targets: established service / from
//!   established ≤ 1.2, new service / new ≤ 1.5.
//!
//! Beside them, in the same rounds, the reference programs of
//! `bench/reference.c` (`policyc_ebpf::REFERENCE_PROGRAMS`), their maps
//! filled with as many entries as policyc's at each size: `parse only`,
//! `parse + ct lookup` (the established packet's connection found in an
//! LRU hash), `cilium-style allowed` (client's packet: ipcache LPM, policy
//! hash hit) and `cilium-style denied` (the world packet: LPM miss, policy
//! hash miss). The ratios the issue asks for: established / parse + ct
//! lookup (≤ 1.2), new denied / cilium-style denied (≤ 1.0), new allowed /
//! new denied (≤ 2).

mod support;

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::HashMap;
use aya::programs::{SchedClassifier, TestRun, TestRunOptions};
use aya::{Ebpf, EbpfLoader};
use policyc_ebpf::abi::{
    IpcacheKey, IpcacheValue, PolicyKey, PolicyValue, DIR_INGRESS, FAMILY_IPV4, IPCACHE_KEY_DATA,
    IPCACHE_KEY_HEADER_BITS, POLICY_KEY_EXACT_BITS, VERDICT_ALLOW,
};
use policyc_ebpf::lb::{Lb4Backend, Lb4BackendKey, Lb4Key, Lb4ReverseNat, Lb4ReverseNatKey, Lb4Service};
use policyc_ebpf::Template;
use policyc_loader::bundle::Bundle;
use policyc_loader::observe::Observer;
use policyc_loader::packet::{ProbePacket, TCP};
use policyc_loader::probe::{Probe, TC_ACT_SHOT};
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;
use support::{compile, require_root, scratch_paths, TempDir};

const REPEAT: u32 = 100_000;
/// Each repeat-[`REPEAT`] figure is the least of this many runs, one per
/// round (the machine is shared; the minimum is the least disturbed).
const ROUNDS: usize = 5;
const SINGLE_RUNS: usize = 2_000;
const POLICY_SIZES: [usize; 3] = [10, 1_000, 100_000];
const IPCACHE_SIZES: [usize; 2] = [100, 100_000];

/// Synthetic peers' identities start here (far above the cluster's).
const SYNTHETIC_IDENTITY: u32 = 1_000_000;

fn grow(bundle: &Bundle, server: u16, policy: usize, ipcache: usize) -> Bundle {
    let mut b = bundle.clone();
    assert!(b.policy.len() <= policy && b.ipcache.len() <= ipcache, "the base bundle is larger than the sizes");
    let mut i = 0u32;
    while b.policy.len() < policy {
        let key = PolicyKey {
            prefixlen: POLICY_KEY_EXACT_BITS + 24,
            generation: 0,
            direction: DIR_INGRESS,
            endpoint_id: server,
            peer_identity: SYNTHETIC_IDENTITY + i,
            pad: 0,
            protocol: TCP,
            port: 8080,
        };
        // The precedence of an explicit peer's NetworkPolicy allow.
        let value = PolicyValue {
            verdict: VERDICT_ALLOW,
            pad: 0,
            proxy_port: 0,
            rule_cookie: 1,
            precedence: 2 << 30 | 1 << 1 | 1,
        };
        b.policy.push((key, value));
        i += 1;
    }
    let mut i = 0u32;
    while b.ipcache.len() < ipcache {
        // 10.0.0.0/8 minus nothing the cluster uses: 10.1.x.y onwards.
        let a = 0x0a01_0000 + i;
        let mut addr = [0u8; 16];
        addr[..4].copy_from_slice(&a.to_be_bytes());
        let key =
            IpcacheKey { prefixlen: IPCACHE_KEY_HEADER_BITS + 32, generation: 0, family: FAMILY_IPV4, pad: 0, addr };
        b.ipcache.push((key, IpcacheValue { identity: SYNTHETIC_IDENTITY + i % 50_000, flags: 0 }));
        i += 1;
    }
    with_service(&mut b, server_ip_of(bundle, server));
    b
}

/// The Service address of the bench: `SERVICE_VIP:80/TCP` to the server's
/// TCP 8080 (its one backend).
const SERVICE_VIP: [u8; 4] = [10, 200, 250, 1];

fn server_ip_of(bundle: &Bundle, server: u16) -> [u8; 4] {
    let e = bundle.endpoints.iter().find(|e| e.id == server).expect("the server");
    match e.addresses[0] {
        IpAddr::V4(a) => a.octets(),
        IpAddr::V6(_) => panic!("the bench pods are IPv4"),
    }
}

/// Adds the bench's Service to `b`'s service maps.
fn with_service(b: &mut Bundle, server: [u8; 4]) {
    let key = Lb4Key { address: SERVICE_VIP, dport: 80, backend_slot: 0, proto: TCP, scope: 0, generation: 0, pad: 0 };
    let master = Lb4Service { backend_id: 0, count: 1, rev_nat: 1, flags: 0, pad: [0; 3] };
    let slot = Lb4Service { backend_id: 1, count: 0, rev_nat: 1, flags: 0, pad: [0; 3] };
    b.services.services = vec![(key, master), (Lb4Key { backend_slot: 1, ..key }, slot)];
    let backend = Lb4Backend { address: server, port: 8080, proto: TCP, flags: 0 };
    b.services.backends = vec![(Lb4BackendKey { backend_id: 1, generation: 0, pad: [0; 3] }, backend)];
    let frontend = Lb4ReverseNat { address: SERVICE_VIP, port: 80, pad: 0 };
    b.services.revnat = vec![(Lb4ReverseNatKey { rev_nat: 1, generation: 0, pad: 0 }, frontend)];
}

/// One run of repeat [`REPEAT`], in ns per run.
fn once(probe: &mut Probe, ip: IpAddr, t: Template, frame: &[u8]) -> f64 {
    ns(probe.run(ip, t, frame, REPEAT).unwrap().1)
}

fn ns(d: Duration) -> f64 {
    d.as_nanos() as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn empty_program(ebpf: &mut aya::Ebpf) -> &mut SchedClassifier {
    ebpf.program_mut("empty").expect("`empty` in bench/empty.o").try_into().unwrap()
}

const REFERENCES: [&str; 3] = ["parse_only", "parse_ct", "cilium_style"];

fn reference_program<'a>(ebpf: &'a mut Ebpf, name: &str) -> &'a mut SchedClassifier {
    ebpf.program_mut(name).unwrap_or_else(|| panic!("`{name}` in bench/reference.o")).try_into().unwrap()
}

/// A policy key's bytes as a hash key: prefix length, then data.
fn policy_hash_key(key: &PolicyKey) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..4].copy_from_slice(&key.prefixlen.to_ne_bytes());
    out[4..].copy_from_slice(&key.data());
    out
}

/// The reference programs, verified, their maps filled like policyc's at
/// `policy` and `ipcache` entries: the client's address and identity in
/// the ipcache, the client allowed on TCP 8080 in the policy, the
/// client's connection in conntrack.
fn reference(client: IpAddr, server: IpAddr, client_identity: u32, policy: usize, ipcache: usize) -> Ebpf {
    let mut ebpf = EbpfLoader::new().load(policyc_ebpf::REFERENCE_PROGRAMS).expect("load the reference programs");
    for name in REFERENCES {
        reference_program(&mut ebpf, name).load().unwrap_or_else(|e| panic!("verify `{name}`: {e}"));
    }
    let (IpAddr::V4(client), IpAddr::V4(server)) = (client, server) else { panic!("the bench pods are IPv4") };
    let ipcache_entry = |addr: [u8; 4], identity: u32| {
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&addr);
        let key =
            IpcacheKey { prefixlen: IPCACHE_KEY_HEADER_BITS + 32, generation: 0, family: FAMILY_IPV4, pad: 0, addr: a };
        (Key::<[u8; IPCACHE_KEY_DATA]>::new(key.prefixlen, key.data()), IpcacheValue { identity, flags: 0 }.to_bytes())
    };
    let mut trie: LpmTrie<_, [u8; IPCACHE_KEY_DATA], [u8; 8]> =
        LpmTrie::try_from(ebpf.map_mut("ref_ipcache").expect("ref_ipcache")).unwrap();
    let (key, value) = ipcache_entry(client.octets(), client_identity);
    trie.insert(&key, value, 0).unwrap();
    for i in 1..ipcache as u32 {
        let (key, value) = ipcache_entry((0x0a01_0000 + i).to_be_bytes(), SYNTHETIC_IDENTITY + i % 50_000);
        trie.insert(&key, value, 0).unwrap();
    }
    let mut policies: HashMap<_, [u8; 16], [u8; 12]> =
        HashMap::try_from(ebpf.map_mut("ref_policy").expect("ref_policy")).unwrap();
    let allow =
        PolicyValue { verdict: VERDICT_ALLOW, pad: 0, proxy_port: 0, rule_cookie: 1, precedence: 2 << 30 | 1 << 1 | 1 }
            .to_bytes();
    for i in 0..policy as u32 {
        let peer_identity = if i == 0 { client_identity } else { SYNTHETIC_IDENTITY + i };
        let key = PolicyKey {
            prefixlen: POLICY_KEY_EXACT_BITS + 24,
            generation: 0,
            direction: DIR_INGRESS,
            endpoint_id: 0,
            peer_identity,
            pad: 0,
            protocol: TCP,
            port: 8080,
        };
        policies.insert(policy_hash_key(&key), allow, 0).unwrap();
    }
    let mut conntrack: HashMap<_, [u8; 16], [u8; 24]> =
        HashMap::try_from(ebpf.map_mut("ref_conntrack").expect("ref_conntrack")).unwrap();
    let mut key = [0u8; 16];
    key[..4].copy_from_slice(&client.octets());
    key[4..8].copy_from_slice(&server.octets());
    key[8..10].copy_from_slice(&40_000u16.to_be_bytes());
    key[10..12].copy_from_slice(&8080u16.to_be_bytes());
    key[12] = TCP;
    conntrack.insert(key, [0u8; 24], 0).unwrap();
    ebpf
}

/// One run of reference program `name` of repeat [`REPEAT`] on `frame`, in
/// ns per run; its verdict must be `expect_pass`.
fn reference_once(ebpf: &mut Ebpf, name: &str, frame: &[u8], expect_pass: bool) -> f64 {
    let opts = TestRunOptions { data_in: Some(frame), repeat: REPEAT, ..Default::default() };
    let run = reference_program(ebpf, name).test_run(opts).expect("test run");
    assert_eq!(run.return_value != TC_ACT_SHOT, expect_pass, "`{name}` verdict");
    ns(run.duration)
}

#[test]
#[ignore = "benchmark: cargo xtask bench datapath"]
fn bench_datapath() {
    require_root();
    let out = TempDir::new("bench-datapath");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/faults/cluster");
    let (_, bundles) = compile(&dir, &out).expect("the bench cluster compiles");
    let base = &bundles["node-a"];
    let endpoint = |name: &str| base.endpoints.iter().find(|e| e.name == name).expect(name).clone();
    let (client, server) = (endpoint("demo/client"), endpoint("demo/server"));
    let (client_ip, server_ip): (IpAddr, IpAddr) = (client.addresses[0], server.addresses[0]);
    let client_identity = base
        .ipcache
        .iter()
        .find(|(k, _)| {
            k.prefixlen == IPCACHE_KEY_HEADER_BITS + 32
                && IpAddr::from(<[u8; 4]>::try_from(&k.addr[..4]).unwrap()) == client_ip
        })
        .map(|(_, v)| v.identity)
        .expect("the client's address in the ipcache");

    let mut empty = EbpfLoader::new().load(policyc_ebpf::EMPTY_PROGRAM).expect("load the empty program");
    empty_program(&mut empty).load().expect("verify the empty program");

    let allowed = ProbePacket { src: client_ip, dst: server_ip, protocol: TCP, sport: 40_000, dport: 8080 }.to_bytes();
    let to_service =
        ProbePacket { src: client_ip, dst: IpAddr::from(SERVICE_VIP), protocol: TCP, sport: 40_002, dport: 80 }
            .to_bytes();
    let world =
        ProbePacket { src: "203.0.113.7".parse().unwrap(), dst: server_ip, protocol: TCP, sport: 40_001, dport: 8080 }
            .to_bytes();

    let mut rows: Vec<(usize, usize, &str, f64, f64)> = Vec::new();
    for &policy in &POLICY_SIZES {
        for &ipcache in &IPCACHE_SIZES {
            let bundle = grow(base, server.id, policy, ipcache);
            let paths = scratch_paths(&format!("bench-{policy}-{ipcache}"), &out);
            let mut probe = Probe::load(paths.clone(), &bundle).expect("probe loads");
            let mut events = Observer::open(&paths).expect("events");
            let mut empty_once = || {
                let opts = TestRunOptions { data_in: Some(&allowed), repeat: REPEAT, ..Default::default() };
                ns(empty_program(&mut empty).test_run(opts).expect("test run").duration)
            };

            // Established: the first run tracks the connection.
            let (ret, _) = probe.run(client_ip, Template::FromContainer, &allowed, 1).unwrap();
            assert_ne!(ret, TC_ACT_SHOT, "client's egress passes");
            let (ret, _) = probe.run(server_ip, Template::ToContainer, &allowed, 1).unwrap();
            assert_ne!(ret, TC_ACT_SHOT, "server's ingress allows client on 8080");
            let (ret, _) = probe.run(server_ip, Template::ToContainer, &world, 1).unwrap();
            assert_eq!(ret, TC_ACT_SHOT, "server's ingress denies the world");
            let (ret, out) = probe.run_frame(client_ip, Template::FromContainer, &to_service).unwrap();
            assert_ne!(ret, TC_ACT_SHOT, "client's egress to the Service passes");
            assert_eq!(out[30..34], allowed[30..34], "the Service's packet goes to the server");
            let mut refs = reference(client_ip, server_ip, client_identity, policy, ipcache);
            let [mut parse_only, mut parse_ct, mut cilium_allowed, mut cilium_denied] = [f64::INFINITY; 4];
            let [mut empty_repeat, mut from_est, mut to_est, mut to_denied] = [f64::INFINITY; 4];
            let mut from_est_service = f64::INFINITY;
            for _ in 0..ROUNDS {
                parse_only = parse_only.min(reference_once(&mut refs, "parse_only", &allowed, true));
                parse_ct = parse_ct.min(reference_once(&mut refs, "parse_ct", &allowed, true));
                cilium_allowed = cilium_allowed.min(reference_once(&mut refs, "cilium_style", &allowed, true));
                cilium_denied = cilium_denied.min(reference_once(&mut refs, "cilium_style", &world, false));
                empty_repeat = empty_repeat.min(empty_once());
                from_est = from_est.min(once(&mut probe, client_ip, Template::FromContainer, &allowed));
                to_est = to_est.min(once(&mut probe, server_ip, Template::ToContainer, &allowed));
                to_denied = to_denied.min(once(&mut probe, server_ip, Template::ToContainer, &world));
                from_est_service =
                    from_est_service.min(once(&mut probe, client_ip, Template::FromContainer, &to_service));
            }

            let mut new_allowed = Vec::with_capacity(SINGLE_RUNS);
            let mut empty_single = Vec::with_capacity(SINGLE_RUNS);
            let (mut from_new, mut from_new_service) = (Vec::new(), Vec::new());
            for run in 0..SINGLE_RUNS {
                let sport = 20_000 + run as u16;
                let allowed =
                    ProbePacket { src: client_ip, dst: server_ip, protocol: TCP, sport, dport: 8080 }.to_bytes();
                events.drain();
                let (ret, d) = probe.run(server_ip, Template::ToContainer, &allowed, 1).unwrap();
                assert_ne!(ret, TC_ACT_SHOT);
                new_allowed.push(ns(d));
                // The client's egress of a new connection, direct and to
                // the Service (source ports of their own).
                events.drain();
                let (ret, d) = probe.run(client_ip, Template::FromContainer, &allowed, 1).unwrap();
                assert_ne!(ret, TC_ACT_SHOT);
                from_new.push(ns(d));
                let service = ProbePacket {
                    src: client_ip,
                    dst: IpAddr::from(SERVICE_VIP),
                    protocol: TCP,
                    sport: sport + SINGLE_RUNS as u16,
                    dport: 80,
                }
                .to_bytes();
                events.drain();
                let (ret, d) = probe.run(client_ip, Template::FromContainer, &service, 1).unwrap();
                assert_ne!(ret, TC_ACT_SHOT);
                from_new_service.push(ns(d));
                let opts = TestRunOptions { data_in: Some(&allowed), repeat: 1, ..Default::default() };
                empty_single.push(ns(empty_program(&mut empty).test_run(opts).unwrap().duration));
            }
            let empty_single = median(empty_single);
            rows.push((policy, ipcache, "from established", from_est, empty_repeat));
            rows.push((policy, ipcache, "to established", to_est, empty_repeat));
            rows.push((policy, ipcache, "to new denied", to_denied, empty_repeat));
            rows.push((policy, ipcache, "to new allowed", median(new_allowed), empty_single));
            rows.push((policy, ipcache, "from established service", from_est_service, empty_repeat));
            rows.push((policy, ipcache, "from new", median(from_new), empty_single));
            rows.push((policy, ipcache, "from new service", median(from_new_service), empty_single));
            rows.push((policy, ipcache, "empty repeat", empty_repeat, empty_repeat));
            rows.push((policy, ipcache, "parse only", parse_only, empty_repeat));
            rows.push((policy, ipcache, "parse + ct lookup", parse_ct, empty_repeat));
            rows.push((policy, ipcache, "cilium-style allowed", cilium_allowed, empty_repeat));
            rows.push((policy, ipcache, "cilium-style denied", cilium_denied, empty_repeat));
            rows.push((policy, ipcache, "empty single", empty_single, empty_single));
            drop(events);
            drop(probe);
            drop(refs);
        }
    }

    println!("| policy entries | ipcache entries | path | ns/packet | × empty |");
    println!("| ---: | ---: | --- | ---: | ---: |");
    for (policy, ipcache, path, t, floor) in &rows {
        println!("| {policy} | {ipcache} | {path} | {t:.1} | {:.2} |", t / floor);
    }
    println!();
    // The two sizes are timed seconds apart, so a busier machine shows as
    // growth; the ratio to the empty program timed beside each takes that
    // out, and both are printed.
    println!("growth from 10 to 100 000 policy entries (same ipcache size), in ns and in × empty:");
    for path in ["from established", "to established", "to new denied", "to new allowed"] {
        for &ipcache in &IPCACHE_SIZES {
            let at = |policy: usize| {
                rows.iter().find(|r| r.0 == policy && r.1 == ipcache && r.2 == path).map(|r| (r.3, r.3 / r.4)).unwrap()
            };
            let ((ns_10, ratio_10), (ns_100k, ratio_100k)) = (at(10), at(100_000));
            println!(
                "  {path:<17} ipcache {ipcache:>6}: {:.2}× ns, {:.2}× ratio",
                ns_100k / ns_10,
                ratio_100k / ratio_10
            );
        }
    }
    let worst_established =
        rows.iter().filter(|r| r.2.ends_with("established")).map(|r| r.3 / r.4).fold(0.0f64, f64::max);
    println!("services (issue 15 targets): a connection to a Service beside a direct one, same run:");
    println!(
        "| policy entries | ipcache entries | established service / established (≤ 1.2) | new service / new (≤ 1.5) |"
    );
    println!("| ---: | ---: | ---: | ---: |");
    for &policy in &POLICY_SIZES {
        for &ipcache in &IPCACHE_SIZES {
            let at =
                |path: &str| rows.iter().find(|r| r.0 == policy && r.1 == ipcache && r.2 == path).map(|r| r.3).unwrap();
            println!(
                "| {policy} | {ipcache} | {:.2} | {:.2} |",
                at("from established service") / at("from established"),
                at("from new service") / at("from new")
            );
        }
    }
    println!("established path, worst ratio to the empty program: {worst_established:.2}× (target ≤ 3×)");
    println!();
    println!("policyc's paths against the references timed beside them (issue 17 targets):");
    println!("| policy entries | ipcache entries | established / parse + ct (≤ 1.2) | new denied / cilium-style denied (≤ 1.0) | new allowed / new denied (≤ 2) |");
    println!("| ---: | ---: | ---: | ---: | ---: |");
    for &policy in &POLICY_SIZES {
        for &ipcache in &IPCACHE_SIZES {
            let at =
                |path: &str| rows.iter().find(|r| r.0 == policy && r.1 == ipcache && r.2 == path).map(|r| r.3).unwrap();
            let established = at("from established").max(at("to established"));
            println!(
                "| {policy} | {ipcache} | {:.2} | {:.2} | {:.2} |",
                established / at("parse + ct lookup"),
                at("to new denied") / at("cilium-style denied"),
                at("to new allowed") / at("to new denied")
            );
        }
    }
}
