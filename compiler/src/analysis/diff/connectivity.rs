//! Connections opened and closed between two trees, with the policies
//! that decide them.
//!
//! Endpoints are matched by display name (`ns/pod`), outside addresses by
//! range. Verdicts are constant between the ports and addresses either
//! tree's policies mention, so both trees are judged once per segment of
//! the union of their cuts. Adjacent segments with the same change and the
//! same reasons merge into one port range.

use crate::analysis::connectivity::{address_segments, full_range, port_cuts, PROTOCOLS};
use crate::analysis::reason::Citations;
pub use crate::analysis::reason::{PolicyRef, Reason, Verdict};
use crate::pipeline::Loaded;
use policyc_ir::cidr::{from_u128, to_u128};
use policyc_ir::cluster::Cluster;
use policyc_ir::eval::{eval, Decision, Party, Query};
use policyc_ir::ids::EndpointId;
use policyc_ir::protocol::{Direction, PortRange, Protocol};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// A peer present in either tree.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Peer {
    /// An endpoint, by display name.
    Endpoint(String),
    /// A node, by name (`host` to the endpoints on it, `remote-node` to
    /// the others).
    Node(String),
    /// Outside addresses `[first, last]`.
    Addresses(IpAddr, IpAddr),
}

impl Peer {
    /// `ns/pod`, `node:NAME`, `ip:ADDR` or `ip:FIRST-LAST`, as
    /// `connectivity` writes it.
    pub fn name(&self) -> String {
        match self {
            Peer::Endpoint(name) => name.clone(),
            Peer::Node(name) => format!("node:{name}"),
            Peer::Addresses(a, b) if a == b => format!("ip:{a}"),
            Peer::Addresses(a, b) => format!("ip:{a}-{b}"),
        }
    }
}

/// Opened or closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Change {
    /// Allowed in the new tree, not in the old one.
    Opened,
    /// Allowed in the old tree, not in the new one.
    Closed,
}

impl Change {
    /// `opened` or `closed`.
    pub fn name(self) -> &'static str {
        match self {
            Change::Opened => "opened",
            Change::Closed => "closed",
        }
    }
}

/// A direction whose decision flipped, and why.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cause {
    /// Egress of the source or ingress of the destination.
    pub direction: Direction,
    /// The endpoint deciding.
    pub endpoint: String,
    /// The decision in the new tree.
    pub now: Reason,
    /// The decision in the old tree.
    pub was: Reason,
}

/// Connections between two peers that opened (or closed) for the same reasons.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConnectivityChange {
    /// Opened or closed.
    pub change: Change,
    /// Sender.
    pub src: Peer,
    /// Receiver.
    pub dst: Peer,
    /// The directions that flipped; a connection needs both to pass, so
    /// these are what opened (closed) it.
    pub causes: Vec<Cause>,
    /// The protocols and port (ICMP type) ranges affected, in order.
    pub ports: Vec<(Protocol, PortRange)>,
}

impl ConnectivityChange {
    /// Ports as the connectivity table writes them (`TCP` for every port,
    /// `TCP/5432`, `UDP/53-54`).
    pub fn port_items(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|(p, r)| if *r == full_range(*p) { p.name().to_string() } else { format!("{}/{r}", p.name()) })
            .collect()
    }
}

/// One tree, ready to judge peers by name.
struct Side<'a> {
    cluster: &'a Cluster,
    citations: Citations<'a>,
    by_name: BTreeMap<String, EndpointId>,
    nodes: BTreeMap<String, usize>,
}

/// One direction as judged in one tree (`None` for an outside peer).
type Judged = [Option<Reason>; 2];

impl<'a> Side<'a> {
    fn new(loaded: &'a Loaded) -> Self {
        let cluster = &loaded.lowered.cluster;
        let by_name = cluster.endpoints_with_ids().map(|(i, e)| (e.display_name(), i)).collect();
        let nodes = cluster.nodes.iter().enumerate().map(|(i, n)| (n.name.clone(), i)).collect();
        Side { cluster, citations: Citations::new(loaded), by_name, nodes }
    }

    /// The party of `peer` in this tree; `None` if the endpoint is absent.
    fn party(&self, peer: &Peer) -> Option<Party> {
        match peer {
            Peer::Endpoint(name) => self.by_name.get(name).map(|&i| Party::Endpoint(i)),
            Peer::Node(name) => self.nodes.get(name).map(|&n| Party::Node(n)),
            Peer::Addresses(first, _) => Some(Party::External(*first)),
        }
    }

    /// `[egress of src, ingress of dst]`; whether the connection passes.
    fn judge(&self, src: &Peer, dst: &Peer, protocol: Protocol, port: u16) -> (Judged, bool) {
        let (Some(s), Some(d)) = (self.party(src), self.party(dst)) else {
            // No decision in this tree: every endpoint's direction is "absent".
            let missing: Vec<String> =
                [src, dst].into_iter().filter(|p| self.party(p).is_none()).map(Peer::name).collect();
            let absent = |peer: &Peer| {
                matches!(peer, Peer::Endpoint(_)).then(|| Reason {
                    verdict: Verdict::Absent,
                    by: Vec::new(),
                    missing: missing.clone(),
                    passed: Vec::new(),
                })
            };
            return ([absent(src), absent(dst)], false);
        };
        let verdict = eval(self.cluster, &Query { src: s, dst: d, protocol, port });
        let reason = |d: &Option<Decision>| d.as_ref().map(|d| self.citations.reason(d));
        ([reason(&verdict.egress), reason(&verdict.ingress)], verdict.allowed())
    }
}

/// What a change is grouped by: one [`ConnectivityChange`] per key.
type GroupKey = (Change, Peer, Peer, Vec<Cause>);

/// Every connection opened or closed from `old` to `new`.
pub fn changes(old: &Loaded, new: &Loaded) -> Vec<ConnectivityChange> {
    let (o, n) = (Side::new(old), Side::new(new));
    let names: BTreeSet<&String> = o.by_name.keys().chain(n.by_name.keys()).collect();
    let mut peers: Vec<Peer> = names.into_iter().map(|s| Peer::Endpoint(s.clone())).collect();
    let nodes: BTreeSet<&String> = o.nodes.keys().chain(n.nodes.keys()).collect();
    peers.extend(nodes.into_iter().map(|name| Peer::Node(name.clone())));
    peers.extend(merged_segments(o.cluster, n.cluster).into_iter().map(|(a, b)| Peer::Addresses(a, b)));
    let cuts = merged_port_cuts(o.cluster, n.cluster);

    let mut grouped: BTreeMap<GroupKey, Vec<(Protocol, PortRange)>> = BTreeMap::new();
    for src in &peers {
        for dst in &peers {
            // No policy applies between two peers that are not endpoints.
            let endpoint = |p: &Peer| matches!(p, Peer::Endpoint(_));
            if src == dst || !(endpoint(src) || endpoint(dst)) {
                continue;
            }
            for (pi, &protocol) in PROTOCOLS.iter().enumerate() {
                let full = full_range(protocol);
                let starts: Vec<u32> =
                    cuts[pi].iter().copied().filter(|&c| c >= u32::from(full.lo) && c <= u32::from(full.hi)).collect();
                // The run being built: (change, causes, range).
                let mut run: Option<(Change, Vec<Cause>, PortRange)> = None;
                for (k, &start) in starts.iter().enumerate() {
                    let end = starts.get(k + 1).map(|x| x - 1).unwrap_or(u32::from(full.hi));
                    let range = PortRange { lo: start as u16, hi: end as u16 };
                    let (was, was_ok) = o.judge(src, dst, protocol, range.lo);
                    let (now, now_ok) = n.judge(src, dst, protocol, range.lo);
                    let step = (was_ok != now_ok).then(|| {
                        let change = if now_ok { Change::Opened } else { Change::Closed };
                        (change, causes(src, dst, change, was, now))
                    });
                    match (&mut run, step) {
                        (Some((c, cs, r)), Some((change, causes))) if *c == change && *cs == causes => r.hi = range.hi,
                        (_, step) => {
                            if let Some((c, cs, r)) = run.take() {
                                grouped.entry((c, src.clone(), dst.clone(), cs)).or_default().push((protocol, r));
                            }
                            run = step.map(|(change, causes)| (change, causes, range));
                        }
                    }
                }
                if let Some((c, cs, r)) = run {
                    grouped.entry((c, src.clone(), dst.clone(), cs)).or_default().push((protocol, r));
                }
            }
        }
    }
    grouped
        .into_iter()
        .map(|((change, src, dst, causes), ports)| ConnectivityChange { change, src, dst, causes, ports })
        .collect()
}

/// The directions whose decision flipped the way the connection did.
fn causes(src: &Peer, dst: &Peer, change: Change, was: Judged, now: Judged) -> Vec<Cause> {
    let mut out = Vec::new();
    for ((direction, subject), (w, n)) in
        [(Direction::Egress, src), (Direction::Ingress, dst)].into_iter().zip(was.into_iter().zip(now))
    {
        let (Some(was), Some(now)) = (w, n) else { continue };
        let flipped = match change {
            Change::Opened => !was.verdict.passes() && now.verdict.passes(),
            Change::Closed => was.verdict.passes() && !now.verdict.passes(),
        };
        if flipped {
            out.push(Cause { direction, endpoint: subject.name(), now, was });
        }
    }
    out
}

/// Per protocol, the union of both trees' port cuts.
fn merged_port_cuts(a: &Cluster, b: &Cluster) -> [BTreeSet<u32>; 4] {
    let mut cuts = port_cuts(a);
    for (mine, theirs) in cuts.iter_mut().zip(port_cuts(b)) {
        mine.extend(theirs);
    }
    cuts
}

/// Outside address ranges on which both trees decide the same way
/// everywhere: the union of both trees' segment starts, per family, with
/// either tree's node addresses (which are nodes, not outside) cut out.
fn merged_segments(a: &Cluster, b: &Cluster) -> Vec<(IpAddr, IpAddr)> {
    let mut starts: [BTreeSet<u128>; 2] = Default::default();
    let node_ips: BTreeSet<IpAddr> = [a, b].iter().flat_map(|c| &c.nodes).flat_map(|n| n.ips.iter().copied()).collect();
    for c in [a, b] {
        for (first, last) in address_segments(c, &[]) {
            let family = &mut starts[usize::from(first.is_ipv6())];
            family.insert(to_u128(first));
            // A segment ends before a cut-out node address.
            if let Some(next) = to_u128(last).checked_add(1) {
                family.insert(next);
            }
        }
    }
    let mut out = Vec::new();
    for (family, starts) in starts.iter().enumerate() {
        let ipv6 = family == 1;
        let max = if ipv6 { u128::MAX } else { u128::from(u32::MAX) };
        let starts: Vec<u128> = starts.iter().copied().collect();
        for (k, &start) in starts.iter().enumerate() {
            let end = starts.get(k + 1).map(|n| n - 1).unwrap_or(max);
            if start > max {
                continue;
            }
            let (first, last) = (from_u128(start, ipv6), from_u128(end, ipv6));
            if !(first == last && node_ips.contains(&first)) {
                out.push((first, last));
            }
        }
    }
    out
}
