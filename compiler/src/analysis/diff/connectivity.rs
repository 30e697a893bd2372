//! Connections opened and closed between two trees, with the policies
//! that decide them.
//!
//! Endpoints are matched by display name (`ns/pod`), outside addresses by
//! range (the union of both trees' cuts). Each tree is judged per class
//! ([`super::per_class`]); adjacent port ranges with the same change and
//! the same reasons merge into one.

use super::per_class::{self, TreeJudge};
use crate::analysis::connectivity::{address_segments, full_range};
pub use crate::analysis::reason::{PolicyRef, Reason, Verdict};
use crate::pipeline::Loaded;
use policyc_ir::cidr::{from_u128, to_u128};
use policyc_ir::cluster::Cluster;
use policyc_ir::protocol::{Direction, PortRange, Protocol};
use std::collections::BTreeSet;
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
    /// The ranges of `ports` that pass only through the L7 proxy where
    /// they pass (the new tree for an opened connection, the old one for a
    /// closed one), with the parser (`http`; several joined by `+`), as
    /// `connectivity` marks them.
    pub l7: Vec<(Protocol, PortRange, String)>,
}

impl ConnectivityChange {
    /// Ports as the connectivity table writes them (`TCP` for every port,
    /// `TCP/5432`, `UDP/53-54`, `TCP/80 (L7 http)`).
    pub fn port_items(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|(p, r)| match self.l7.iter().find(|(q, s, _)| q == p && s == r) {
                Some((_, _, parser)) => format!("{}/{r} (L7 {parser})", p.name()),
                None if *r == full_range(*p) => p.name().to_string(),
                None => format!("{}/{r}", p.name()),
            })
            .collect()
    }
}

/// Every connection opened or closed from `old` to `new`, judged per
/// class ([`super::per_class`]).
pub fn changes(old: &Loaded, new: &Loaded) -> Vec<ConnectivityChange> {
    let (oc, nc) = (&old.lowered.cluster, &new.lowered.cluster);
    let names: BTreeSet<String> = [oc, nc].iter().flat_map(|c| c.endpoints.iter().map(|e| e.display_name())).collect();
    let mut peers: Vec<Peer> = names.into_iter().map(Peer::Endpoint).collect();
    let nodes: BTreeSet<&String> = oc.nodes.iter().chain(&nc.nodes).map(|n| &n.name).collect();
    peers.extend(nodes.into_iter().map(|name| Peer::Node(name.clone())));
    peers.extend(merged_segments(oc, nc).into_iter().map(|(a, b)| Peer::Addresses(a, b)));
    let (mut o, mut n) = (TreeJudge::new(old), TreeJudge::new(new));
    per_class::changes(&mut o, &mut n, &peers)
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
