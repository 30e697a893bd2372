//! `observe`: the flow events the programs put on the pinned `events` ring
//! buffer (each drop and each new allowed connection), with pod names, and
//! the per-endpoint counters of the pinned `forwarded` (packets that
//! passed) and `metrics` (drops by reason) maps.
//!
//! Names come from the node's own state: the record of the last apply
//! (endpoint id → `ns/pod`) and the active generation of the `endpoints`
//! map (address → endpoint id), so an address of a local pod prints as the
//! pod. Reading the ring buffer consumes its events: like `hubble observe`
//! on one node, there is meant to be one reader at a time.

use crate::error::{kernel, LoaderError, Operation};
use crate::kernel::aya::AyaKernel;
use crate::kernel::Kernel;
use crate::paths::Paths;
use crate::record::Record;
use aya::maps::ring_buf::RingBuf;
use aya::maps::{HashMap, Map, MapData, PerCpuArray, PerCpuHashMap};
use policyc_ebpf::abi::{
    forwarded_index, DropCode, EndpointKey, EndpointValue, FlowEvent, MetricsKey, MetricsValue, DIR_EGRESS,
    DIR_INGRESS, EVENT_DROP, EVENT_NEW_ALLOWED, FAMILY_IPV4,
};
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

const ENDPOINT_KEY: usize = std::mem::size_of::<EndpointKey>();
const ENDPOINT_VALUE: usize = std::mem::size_of::<EndpointValue>();
const METRICS_KEY: usize = std::mem::size_of::<MetricsKey>();
const METRICS_VALUE: usize = std::mem::size_of::<MetricsValue>();

fn open(paths: &Paths, name: &str) -> Result<Map, LoaderError> {
    let path = paths.map(name);
    let data = MapData::from_pin(&path)
        .map_err(|e| kernel(Operation::OpenMap, path.display(), format!("cannot open `{}`", path.display()), e))?;
    Map::from_map_data(data)
        .map_err(|e| kernel(Operation::OpenMap, path.display(), format!("cannot use `{}`", path.display()), e))
}

/// A flow event with its addresses and names resolved.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Flow {
    /// `bpf_ktime_get_ns` (monotonic, since boot) of the packet.
    pub timestamp_ns: u64,
    /// `dropped` or `allowed` (a new connection).
    pub verdict: &'static str,
    /// Drop reason by name, for drops.
    pub reason: Option<&'static str>,
    /// The drop code, for drops.
    pub code: Option<i32>,
    /// `ingress` or `egress` of `endpoint`.
    pub direction: &'static str,
    /// The endpoint whose program saw the packet (`ns/pod`, or its id).
    pub endpoint: String,
    /// Source address.
    pub src: IpAddr,
    /// Source pod, if it is local.
    pub src_pod: Option<String>,
    /// Source port (ICMP: identifier).
    pub sport: u16,
    /// Destination address.
    pub dst: IpAddr,
    /// Destination pod, if it is local.
    pub dst_pod: Option<String>,
    /// Destination port (ICMP: type).
    pub dport: u16,
    /// IANA protocol number.
    pub protocol: u8,
    /// Source identity.
    pub src_identity: u32,
    /// Destination identity.
    pub dst_identity: u32,
    /// The deciding rule's cookie (0: the default).
    pub rule_cookie: u32,
    /// Packet length.
    pub length: u32,
}

impl Flow {
    /// One line for people, like `hubble observe`.
    pub fn render(&self) -> String {
        let side = |ip: IpAddr, port: u16, pod: &Option<String>| match pod {
            Some(p) => format!("{p} ({})", socket(ip, port)),
            None => socket(ip, port),
        };
        let proto = match self.protocol {
            1 => "icmp".to_string(),
            6 => "tcp".to_string(),
            17 => "udp".to_string(),
            58 => "icmpv6".to_string(),
            132 => "sctp".to_string(),
            n => format!("proto {n}"),
        };
        let mut line = format!(
            "{:>14.6} {} {} -> {} {proto} {} of {}",
            self.timestamp_ns as f64 / 1e9,
            self.verdict.to_uppercase(),
            side(self.src, self.sport, &self.src_pod),
            side(self.dst, self.dport, &self.dst_pod),
            self.direction,
            self.endpoint
        );
        if let Some(reason) = self.reason {
            line.push_str(&format!(" ({reason})"));
        }
        if self.rule_cookie != 0 {
            line.push_str(&format!(" rule {}", self.rule_cookie));
        }
        line
    }

    /// Whether the flow passes the filters (each `None` passes).
    pub fn matches(&self, filter: &FlowFilter) -> bool {
        let pods = [self.src_pod.as_deref(), self.dst_pod.as_deref()];
        filter.verdict.as_deref().is_none_or(|v| v == self.verdict)
            && filter
                .namespace
                .as_deref()
                .is_none_or(|ns| pods.iter().flatten().any(|p| p.split_once('/').is_some_and(|(n, _)| n == ns)))
            && filter.pod.as_deref().is_none_or(|pod| {
                pods.iter().flatten().any(|p| *p == pod || p.split_once('/').is_some_and(|(_, name)| name == pod))
            })
    }
}

fn socket(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(_) => format!("{ip}:{port}"),
        IpAddr::V6(_) => format!("[{ip}]:{port}"),
    }
}

/// Which flows to show.
#[derive(Clone, Debug, Default)]
pub struct FlowFilter {
    /// `dropped` or `allowed`.
    pub verdict: Option<String>,
    /// Either end is a pod of this namespace.
    pub namespace: Option<String>,
    /// Either end is this pod (`ns/pod` or `pod`).
    pub pod: Option<String>,
}

/// Flow events lost to a full ring buffer on one CPU (as Hubble reports
/// lost events).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LostEvents {
    /// The CPU whose program found the ring buffer full.
    pub cpu: usize,
    /// Events lost there.
    pub lost: u64,
}

impl LostEvents {
    /// One line for people, as `hubble observe` prints its lost events.
    pub fn render(&self) -> String {
        format!("EVENTS LOST: ring buffer full, CPU {}: {}", self.cpu, self.lost)
    }
}

fn open_events_lost(paths: &Paths) -> Result<PerCpuArray<MapData, u64>, LoaderError> {
    PerCpuArray::try_from(open(paths, "events_lost")?)
        .map_err(|e| kernel(Operation::OpenMap, "events_lost", "events_lost", e))
}

fn read_events_lost(map: &PerCpuArray<MapData, u64>) -> Result<Vec<u64>, LoaderError> {
    let values = map.get(&0, 0).map_err(|e| kernel(Operation::ReadMap, "events_lost", "reading events_lost", e))?;
    Ok(values.iter().copied().collect())
}

/// Flow events lost so far on each CPU that lost any, since the maps were
/// pinned.
pub fn events_lost(paths: &Paths) -> Result<Vec<LostEvents>, LoaderError> {
    let per_cpu = read_events_lost(&open_events_lost(paths)?)?;
    Ok(per_cpu.into_iter().enumerate().filter(|(_, n)| *n > 0).map(|(cpu, lost)| LostEvents { cpu, lost }).collect())
}

/// A reader of the node's flow events.
pub struct Observer {
    ring: RingBuf<MapData>,
    lost: PerCpuArray<MapData, u64>,
    /// Per CPU, the lost events already reported.
    lost_reported: Vec<u64>,
    endpoints: BTreeMap<u16, String>,
    pods: BTreeMap<IpAddr, String>,
}

fn address(family: u8, bytes: [u8; 16]) -> IpAddr {
    if family == FAMILY_IPV4 {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(bytes))
    }
}

impl Observer {
    /// Opens the pinned ring buffer and reads the names of the node's
    /// endpoints.
    pub fn open(paths: &Paths) -> Result<Observer, LoaderError> {
        let ring =
            RingBuf::try_from(open(paths, "events")?).map_err(|e| kernel(Operation::OpenMap, "events", "events", e))?;
        let record = Record::read(paths)?.unwrap_or_default();
        let endpoints: BTreeMap<u16, String> = record.endpoints.iter().map(|(n, e)| (e.id, n.clone())).collect();
        let generation = AyaKernel::new(paths).read_state()?.generation as u8;
        let map: HashMap<MapData, [u8; ENDPOINT_KEY], [u8; ENDPOINT_VALUE]> =
            HashMap::try_from(open(paths, "endpoints")?)
                .map_err(|e| kernel(Operation::OpenMap, "endpoints", "endpoints", e))?;
        let mut pods = BTreeMap::new();
        for item in map.iter() {
            let (k, v) = item.map_err(|e| kernel(Operation::ReadMap, "endpoints", "reading endpoints", e))?;
            let (k, v) = (EndpointKey::from_bytes(&k), EndpointValue::from_bytes(&v));
            if k.generation != generation {
                continue;
            }
            if let Some(name) = u16::try_from(v.endpoint_id).ok().and_then(|id| endpoints.get(&id)) {
                pods.insert(address(k.family, k.addr), name.clone());
            }
        }
        let lost = open_events_lost(paths)?;
        Ok(Observer { ring, lost, lost_reported: Vec::new(), endpoints, pods })
    }

    /// Waits until the ring buffer wakes its reader or `timeout` passes;
    /// whether it was woken.
    ///
    /// The programs send events without waking the reader until 64 are
    /// waiting (`EVENTS_WAKEUP_BYTES` in `observe.h`: a wakeup per event
    /// cost most of a new connection's time), so a reader that waits
    /// without a timeout would see a quiet node's few events late or
    /// never: the timeout bounds that delay, and a burst wakes it at once.
    pub fn wait(&self, timeout: Duration) -> Result<bool, LoaderError> {
        let timeout = Timespec::try_from(timeout).unwrap_or(Timespec { tv_sec: i64::MAX, tv_nsec: 0 });
        let mut fds = [PollFd::new(&self.ring, PollFlags::IN)];
        match poll(&mut fds, Some(&timeout)) {
            Ok(ready) => Ok(ready > 0),
            // A signal: the caller drains and waits again.
            Err(rustix::io::Errno::INTR) => Ok(false),
            Err(e) => Err(kernel(Operation::ReadMap, "events", "waiting for flow events", std::io::Error::from(e))),
        }
    }

    /// Events lost on each CPU since the last call (the first call: since
    /// the maps were pinned), CPUs that lost none left out.
    pub fn newly_lost(&mut self) -> Result<Vec<LostEvents>, LoaderError> {
        let now = read_events_lost(&self.lost)?;
        self.lost_reported.resize(now.len(), 0);
        let mut out = Vec::new();
        for (cpu, (n, seen)) in now.iter().zip(self.lost_reported.iter_mut()).enumerate() {
            if *n > *seen {
                out.push(LostEvents { cpu, lost: n - *seen });
            }
            *seen = *n;
        }
        Ok(out)
    }

    /// Every event waiting in the ring buffer, oldest first (consumed).
    pub fn drain(&mut self) -> Vec<Flow> {
        let mut events = Vec::new();
        while let Some(item) = self.ring.next() {
            events.extend(FlowEvent::from_bytes(&item));
        }
        events.iter().map(|ev| self.resolve(ev)).collect()
    }

    fn resolve(&self, ev: &FlowEvent) -> Flow {
        let (src, dst) = (address(ev.family, ev.saddr), address(ev.family, ev.daddr));
        let drop = ev.kind == EVENT_DROP;
        Flow {
            timestamp_ns: ev.timestamp_ns,
            verdict: if drop {
                "dropped"
            } else if ev.kind == EVENT_NEW_ALLOWED {
                "allowed"
            } else {
                "unknown"
            },
            reason: drop.then(|| DropCode::from_code(ev.code).map_or("unknown", DropCode::name)),
            code: drop.then_some(ev.code),
            direction: if ev.direction == DIR_EGRESS { "egress" } else { "ingress" },
            endpoint: self.endpoints.get(&ev.endpoint_id).cloned().unwrap_or_else(|| format!("#{}", ev.endpoint_id)),
            src,
            src_pod: self.pods.get(&src).cloned(),
            sport: ev.sport,
            dst,
            dst_pod: self.pods.get(&dst).cloned(),
            dport: ev.dport,
            protocol: ev.protocol,
            src_identity: ev.src_identity,
            dst_identity: ev.dst_identity,
            rule_cookie: ev.rule_cookie,
            length: ev.length,
        }
    }
}

/// One counter of the `metrics` map, summed over CPUs.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Counter {
    /// `ns/pod`, or `#id` for an endpoint the record does not name.
    pub endpoint: String,
    /// Endpoint id.
    pub endpoint_id: u16,
    /// `ingress` or `egress`.
    pub direction: &'static str,
    /// 0 (forwarded) or the magnitude of a drop code.
    pub reason: u8,
    /// `forwarded` or the drop reason's name.
    pub reason_name: &'static str,
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
}

/// Every counter with packets, sorted by endpoint id, direction and reason.
pub fn counters(paths: &Paths) -> Result<Vec<Counter>, LoaderError> {
    let record = Record::read(paths)?.unwrap_or_default();
    let names: BTreeMap<u16, String> = record.endpoints.iter().map(|(n, e)| (e.id, n.clone())).collect();
    let counter =
        |endpoint_id: u16, direction: u8, reason: u8, values: &mut dyn Iterator<Item = &[u8; METRICS_VALUE]>| {
            let (packets, bytes) =
                values.map(MetricsValue::from_bytes).fold((0, 0), |(p, b), v| (p + v.packets, b + v.bytes));
            Counter {
                endpoint: names.get(&endpoint_id).cloned().unwrap_or_else(|| format!("#{endpoint_id}")),
                endpoint_id,
                direction: if direction == DIR_EGRESS { "egress" } else { "ingress" },
                reason,
                reason_name: if reason == 0 {
                    "forwarded"
                } else {
                    DropCode::from_code(-i32::from(reason)).map_or("unknown", DropCode::name)
                },
                packets,
                bytes,
            }
        };
    let mut out = Vec::new();
    // Forwarded packets: an array slot for every possible endpoint id and
    // direction, read whole so that an endpoint the record no longer names
    // still shows; slots that never counted a packet are left out.
    let forwarded: PerCpuArray<MapData, [u8; METRICS_VALUE]> = PerCpuArray::try_from(open(paths, "forwarded")?)
        .map_err(|e| kernel(Operation::OpenMap, "forwarded", "forwarded", e))?;
    for endpoint_id in 0..=u16::MAX {
        for direction in [DIR_INGRESS, DIR_EGRESS] {
            let values = forwarded
                .get(&forwarded_index(endpoint_id, direction), 0)
                .map_err(|e| kernel(Operation::ReadMap, "forwarded", "reading forwarded", e))?;
            let c = counter(endpoint_id, direction, 0, &mut values.iter());
            if c.packets > 0 {
                out.push(c);
            }
        }
    }
    let drops: PerCpuHashMap<MapData, [u8; METRICS_KEY], [u8; METRICS_VALUE]> =
        PerCpuHashMap::try_from(open(paths, "metrics")?)
            .map_err(|e| kernel(Operation::OpenMap, "metrics", "metrics", e))?;
    for item in drops.iter() {
        let (k, values) = item.map_err(|e| kernel(Operation::ReadMap, "metrics", "reading metrics", e))?;
        let key = MetricsKey::from_bytes(&k);
        out.push(counter(key.endpoint_id, key.direction, key.reason, &mut values.iter()));
    }
    out.sort_by(|a, b| (a.endpoint_id, a.direction, a.reason).cmp(&(b.endpoint_id, b.direction, b.reason)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow() -> Flow {
        Flow {
            timestamp_ns: 1_500_000_000,
            verdict: "dropped",
            reason: Some("policy-denied"),
            code: Some(-133),
            direction: "egress",
            endpoint: "web/client".into(),
            src: "10.200.1.12".parse().unwrap(),
            src_pod: Some("web/client".into()),
            sport: 40000,
            dst: "10.200.1.21".parse().unwrap(),
            dst_pod: Some("data/db".into()),
            dport: 9100,
            protocol: 6,
            src_identity: 256,
            dst_identity: 257,
            rule_cookie: 0,
            length: 60,
        }
    }

    #[test]
    fn renders_and_filters() {
        let f = flow();
        assert_eq!(
            f.render(),
            "      1.500000 DROPPED web/client (10.200.1.12:40000) -> data/db (10.200.1.21:9100) tcp egress of web/client (policy-denied)"
        );
        let by = |verdict: Option<&str>, namespace: Option<&str>, pod: Option<&str>| {
            f.matches(&FlowFilter {
                verdict: verdict.map(Into::into),
                namespace: namespace.map(Into::into),
                pod: pod.map(Into::into),
            })
        };
        assert!(by(None, None, None));
        assert!(by(Some("dropped"), Some("data"), Some("db")));
        assert!(by(None, None, Some("web/client")));
        assert!(!by(Some("allowed"), None, None));
        assert!(!by(None, Some("shop"), None));
        assert!(!by(None, None, Some("cache")));
    }
}
