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

mod support;

use aya::programs::{SchedClassifier, TestRun, TestRunOptions};
use aya::EbpfLoader;
use policyc_ebpf::abi::{
    IpcacheKey, IpcacheValue, PolicyKey, PolicyValue, DIR_INGRESS, FAMILY_IPV4, IPCACHE_KEY_HEADER_BITS,
    POLICY_KEY_EXACT_BITS, VERDICT_ALLOW,
};
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
        b.policy.push((key, PolicyValue { verdict: VERDICT_ALLOW, pad: 0, proxy_port: 0, rule_cookie: 1 }));
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
    b
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

    let mut empty = EbpfLoader::new().load(policyc_ebpf::EMPTY_PROGRAM).expect("load the empty program");
    empty_program(&mut empty).load().expect("verify the empty program");

    let allowed = ProbePacket { src: client_ip, dst: server_ip, protocol: TCP, sport: 40_000, dport: 8080 }.to_bytes();
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
            let [mut empty_repeat, mut from_est, mut to_est, mut to_denied] = [f64::INFINITY; 4];
            for _ in 0..ROUNDS {
                empty_repeat = empty_repeat.min(empty_once());
                from_est = from_est.min(once(&mut probe, client_ip, Template::FromContainer, &allowed));
                to_est = to_est.min(once(&mut probe, server_ip, Template::ToContainer, &allowed));
                to_denied = to_denied.min(once(&mut probe, server_ip, Template::ToContainer, &world));
            }

            let mut new_allowed = Vec::with_capacity(SINGLE_RUNS);
            let mut empty_single = Vec::with_capacity(SINGLE_RUNS);
            for run in 0..SINGLE_RUNS {
                let sport = 20_000 + run as u16;
                let allowed =
                    ProbePacket { src: client_ip, dst: server_ip, protocol: TCP, sport, dport: 8080 }.to_bytes();
                events.drain();
                let (ret, d) = probe.run(server_ip, Template::ToContainer, &allowed, 1).unwrap();
                assert_ne!(ret, TC_ACT_SHOT);
                new_allowed.push(ns(d));
                let opts = TestRunOptions { data_in: Some(&allowed), repeat: 1, ..Default::default() };
                empty_single.push(ns(empty_program(&mut empty).test_run(opts).unwrap().duration));
            }
            let empty_single = median(empty_single);
            rows.push((policy, ipcache, "from established", from_est, empty_repeat));
            rows.push((policy, ipcache, "to established", to_est, empty_repeat));
            rows.push((policy, ipcache, "to new denied", to_denied, empty_repeat));
            rows.push((policy, ipcache, "to new allowed", median(new_allowed), empty_single));
            rows.push((policy, ipcache, "empty repeat", empty_repeat, empty_repeat));
            rows.push((policy, ipcache, "empty single", empty_single, empty_single));
            drop(events);
            drop(probe);
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
    println!("established path, worst ratio to the empty program: {worst_established:.2}× (target ≤ 3×)");
}
