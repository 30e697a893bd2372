//! The datapath's counters and conntrack on the real kernel
//! (`BPF_PROG_TEST_RUN`): every packet a program passes is counted once
//! under its endpoint and direction in `forwarded`, whether conntrack
//! or policy let it through (new, established and reply packets), every
//! drop once under its reason in `metrics`, with the packet's bytes; and an
//! IPv4 connection lives in `conntrack4`, keyed as its first packet was
//! seen by the hook that allowed it; flow events a full ring buffer
//! refuses are counted per CPU in `events_lost`.
//!
//! The node is `tests/faults/cluster/`: server's ingress allows client on
//! TCP 8080, nothing else is enforced.

mod support;

use aya::maps::{HashMap, Map, MapData};
use policyc_ebpf::abi::{Ct4Key, CtValue, DropCode, DIR_EGRESS, DIR_INGRESS};
use policyc_ebpf::Template;
use policyc_loader::observe::{counters, events_lost, Counter, Observer};
use policyc_loader::packet::{ProbePacket, TCP};
use policyc_loader::paths::Paths;
use policyc_loader::probe::{Probe, TC_ACT_SHOT};
use std::mem::size_of;
use std::net::IpAddr;
use std::path::Path;
use support::{compile, require_root, scratch_paths, turn, TempDir};

/// `(packets, bytes)` counted for endpoint `id`, `direction`, `reason`.
fn counted(list: &[Counter], id: u16, direction: u8, reason: u8) -> (u64, u64) {
    let direction = if direction == DIR_EGRESS { "egress" } else { "ingress" };
    list.iter()
        .find(|c| c.endpoint_id == id && c.direction == direction && c.reason == reason)
        .map_or((0, 0), |c| (c.packets, c.bytes))
}

fn conntrack4(paths: &Paths) -> Vec<(Ct4Key, CtValue)> {
    let data = MapData::from_pin(paths.map("conntrack4")).expect("conntrack4 is pinned");
    let map: HashMap<MapData, [u8; size_of::<Ct4Key>()], [u8; size_of::<CtValue>()]> =
        HashMap::try_from(Map::from_map_data(data).unwrap()).unwrap();
    let mut out: Vec<(Ct4Key, CtValue)> = map
        .iter()
        .map(|item| {
            let (k, v) = item.unwrap();
            let key = Ct4Key {
                saddr: k[0..4].try_into().unwrap(),
                daddr: k[4..8].try_into().unwrap(),
                sport: u16::from_be_bytes([k[8], k[9]]),
                dport: u16::from_be_bytes([k[10], k[11]]),
                protocol: k[12],
                direction: k[13],
                pad: u16::from_ne_bytes([k[14], k[15]]),
            };
            let value = CtValue {
                expires_ns: u64::from_ne_bytes(v[0..8].try_into().unwrap()),
                rule_cookie: u32::from_ne_bytes(v[8..12].try_into().unwrap()),
                endpoint_id: u16::from_ne_bytes([v[12], v[13]]),
                flags: u16::from_ne_bytes([v[14], v[15]]),
                backend_id: u32::from_ne_bytes(v[16..20].try_into().unwrap()),
                rev_nat: u16::from_ne_bytes([v[20], v[21]]),
                pad: 0,
            };
            (key, value)
        })
        .collect();
    out.sort_by_key(|(k, _)| k.direction);
    out
}

#[test]
fn every_packet_is_counted_once_where_it_was_decided() {
    require_root();
    let _turn = turn();
    let out = TempDir::new("datapath-counters");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/faults/cluster");
    let (_, bundles) = compile(&dir, &out).expect("the fault cluster compiles");
    let bundle = &bundles["node-a"];
    let endpoint = |name: &str| bundle.endpoints.iter().find(|e| e.name == name).expect(name).clone();
    let (client, server) = (endpoint("demo/client"), endpoint("demo/server"));
    let (client_ip, server_ip): (IpAddr, IpAddr) = (client.addresses[0], server.addresses[0]);
    let paths = scratch_paths("datapath-counters", &out);
    let mut probe = Probe::load(paths.clone(), bundle).expect("probe loads");

    let request = ProbePacket { src: client_ip, dst: server_ip, protocol: TCP, sport: 40_000, dport: 8080 }.to_bytes();
    let reply = ProbePacket { src: server_ip, dst: client_ip, protocol: TCP, sport: 8080, dport: 40_000 }.to_bytes();
    let world =
        ProbePacket { src: "10.200.99.7".parse().unwrap(), dst: server_ip, protocol: TCP, sport: 40_001, dport: 8080 }
            .to_bytes();
    let before = counters(&paths).unwrap();
    assert!(before.is_empty(), "a fresh root counts nothing: {before:?}");

    // The first request is new at both hooks; then 9 established ones.
    for (ip, template) in [(client_ip, Template::FromContainer), (server_ip, Template::ToContainer)] {
        let (ret, _) = probe.run(ip, template, &request, 1).unwrap();
        assert_ne!(ret, TC_ACT_SHOT, "{template:?} passes the request");
        let (ret, _) = probe.run(ip, template, &request, 9).unwrap();
        assert_ne!(ret, TC_ACT_SHOT, "{template:?} passes the established request");
    }
    // One entry per hook that allowed it, each serving only its endpoint.
    let ct = conntrack4(&paths);
    let octets = |ip: IpAddr| match ip {
        IpAddr::V4(a) => a.octets(),
        IpAddr::V6(_) => panic!("the fault cluster is IPv4"),
    };
    let key = |direction| Ct4Key {
        saddr: octets(client_ip),
        daddr: octets(server_ip),
        sport: 40_000,
        dport: 8080,
        protocol: TCP,
        direction,
        pad: 0,
    };
    assert_eq!(ct.iter().map(|(k, _)| *k).collect::<Vec<_>>(), [key(DIR_INGRESS), key(DIR_EGRESS)]);
    assert_eq!(ct.iter().map(|(_, v)| v.endpoint_id).collect::<Vec<_>>(), [server.id, client.id]);
    assert!(ct.iter().all(|(_, v)| v.expires_ns > 0));

    // Replies pass as replies at both of the other hooks (5 packets each).
    for (ip, template) in [(server_ip, Template::FromContainer), (client_ip, Template::ToContainer)] {
        let (ret, _) = probe.run(ip, template, &reply, 5).unwrap();
        assert_ne!(ret, TC_ACT_SHOT, "{template:?} passes the reply");
    }
    // A world peer is refused by server's ingress, 3 times.
    let (ret, _) = probe.run(server_ip, Template::ToContainer, &world, 3).unwrap();
    assert_eq!(ret, TC_ACT_SHOT, "server's ingress refuses the world");

    let list = counters(&paths).unwrap();
    let (req, rep, w) = (request.len() as u64, reply.len() as u64, world.len() as u64);
    let policy = -DropCode::Policy.code() as u8;
    assert_eq!(counted(&list, client.id, DIR_EGRESS, 0), (10, 10 * req));
    assert_eq!(counted(&list, server.id, DIR_INGRESS, 0), (10, 10 * req));
    assert_eq!(counted(&list, server.id, DIR_EGRESS, 0), (5, 5 * rep));
    assert_eq!(counted(&list, client.id, DIR_INGRESS, 0), (5, 5 * rep));
    assert_eq!(counted(&list, server.id, DIR_INGRESS, policy), (3, 3 * w));
    assert_eq!(list.len(), 5, "nothing else is counted: {list:?}");
    let dropped = list.iter().find(|c| c.reason == policy).unwrap();
    assert_eq!((dropped.reason_name, dropped.direction), ("policy-denied", "ingress"));
    assert!(list.iter().filter(|c| c.reason == 0).all(|c| c.reason_name == "forwarded"));

    // A probe leaves nothing pinned: maps, bodies and its root are gone.
    drop(probe);
    assert!(!paths.root.exists(), "the probe left pins under `{}`", paths.root.display());
}

/// Flow events that find the ring buffer full are counted per CPU in
/// `events_lost`, and every event is either read or counted there: with
/// no reader, 20 000 denied packets (one drop event each) overflow the
/// 1 MiB ring buffer (about 11 900 events of 88 bytes with their headers).
#[test]
fn events_a_full_ring_buffer_refuses_are_counted_as_lost() {
    require_root();
    let _turn = turn();
    let out = TempDir::new("datapath-events-lost");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/faults/cluster");
    let (_, bundles) = compile(&dir, &out).expect("the fault cluster compiles");
    let bundle = &bundles["node-a"];
    let server = bundle.endpoints.iter().find(|e| e.name == "demo/server").expect("demo/server").clone();
    let server_ip = server.addresses[0];
    let paths = scratch_paths("datapath-events-lost", &out);
    let mut probe = Probe::load(paths.clone(), bundle).expect("probe loads");
    let mut observer = Observer::open(&paths).expect("the ring buffer opens");
    assert_eq!(events_lost(&paths).unwrap(), [], "a fresh root has lost nothing");
    assert_eq!(observer.newly_lost().unwrap(), []);

    const SENT: u64 = 20_000;
    let world =
        ProbePacket { src: "10.200.99.7".parse().unwrap(), dst: server_ip, protocol: TCP, sport: 40_001, dport: 8080 }
            .to_bytes();
    let (ret, _) = probe.run(server_ip, Template::ToContainer, &world, SENT as u32).unwrap();
    assert_eq!(ret, TC_ACT_SHOT, "the world is denied");

    let lost: u64 = events_lost(&paths).unwrap().iter().map(|l| l.lost).sum();
    let newly: u64 = observer.newly_lost().unwrap().iter().map(|l| l.lost).sum();
    let read = observer.drain().len() as u64;
    assert!(lost > 0 && read > 0, "{read} events read, {lost} lost: the buffer should have overflowed");
    assert_eq!(read + lost, SENT, "every event is read or counted as lost");
    assert_eq!(newly, lost, "the reader reports each loss once");
    assert_eq!(observer.newly_lost().unwrap(), [], "and not again");
}
