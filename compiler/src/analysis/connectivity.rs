//! The connectivity table: every allowed connection between the endpoints
//! of the input and the outside addresses, like netpol-analyzer's
//! connection list.
//!
//! It is computed with the reference evaluator ([`policyc_ir::eval`]), not
//! the compiled maps, so that it states the semantics. Verdicts are constant
//! between the port numbers and addresses that policies mention, so the
//! evaluator runs once per elementary port segment and address segment
//! rather than once per port and address.

use policyc_ir::cidr::{from_u128, Cidr};
use policyc_ir::cluster::Cluster;
use policyc_ir::eval::{eval, Decision, Party, Query};
use policyc_ir::ids::EndpointId;
use policyc_ir::policy::{Peer, Peers, PortSpec};
use policyc_ir::protocol::{PortRange, Protocol};
use policyc_ir::tier::TierPeer;
use std::collections::BTreeSet;
use std::net::IpAddr;

/// The protocols the table covers, in output order.
pub const PROTOCOLS: [Protocol; 4] = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp, Protocol::Icmp];

/// One side of a row: an endpoint, a node, or a range of outside
/// addresses.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Side {
    /// An endpoint.
    Endpoint(EndpointId),
    /// A node (index into `Cluster::nodes`): `host` to the endpoints on it,
    /// `remote-node` to the others, as each node's ipcache maps its
    /// addresses.
    Node(usize),
    /// The inclusive range of outside addresses `[first, last]`.
    Addresses(IpAddr, IpAddr),
}

/// What is allowed between two peers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Allowed {
    /// Per protocol of [`PROTOCOLS`]: allowed port (ICMP type) ranges.
    pub ranges: [Vec<PortRange>; 4],
    /// Per protocol: the parts of `ranges` allowed only through the L7
    /// proxy (an allow rule with L7 `rules`), with the parser (`http`,
    /// `kafka`, `dns`; several joined by `+`).
    pub l7: [Vec<(PortRange, String)>; 4],
}

impl Allowed {
    /// Whether nothing is allowed.
    pub fn is_empty(&self) -> bool {
        self.ranges.iter().all(Vec::is_empty)
    }

    /// Whether everything is allowed (every port of every protocol).
    pub fn is_all(&self) -> bool {
        PROTOCOLS.iter().zip(&self.ranges).all(|(p, r)| r.as_slice() == [full_range(*p)])
    }

    /// Items with the ports allowed only through the L7 proxy marked, as
    /// `connectivity` prints them: `TCP/80 (L7 http)`, `TCP/81-65535`;
    /// without L7, as [`Allowed::items`].
    pub fn marked_items(&self) -> Vec<String> {
        let mut out = Vec::new();
        for ((p, ranges), l7) in PROTOCOLS.iter().zip(&self.ranges).zip(&self.l7) {
            for range in ranges {
                let inside: Vec<&(PortRange, String)> =
                    l7.iter().filter(|(r, _)| r.lo <= range.hi && r.hi >= range.lo).collect();
                if inside.is_empty() && *range == full_range(*p) {
                    out.push(p.name().to_string());
                    continue;
                }
                let mut next = u32::from(range.lo);
                for (r, parser) in inside {
                    let (lo, hi) = (r.lo.max(range.lo), r.hi.min(range.hi));
                    if u32::from(lo) > next {
                        out.push(format!("{}/{}", p.name(), PortRange { lo: next as u16, hi: lo - 1 }));
                    }
                    out.push(format!("{}/{} (L7 {parser})", p.name(), PortRange { lo, hi }));
                    next = u32::from(hi) + 1;
                }
                if next <= u32::from(range.hi) {
                    out.push(format!("{}/{}", p.name(), PortRange { lo: next as u16, hi: range.hi }));
                }
            }
        }
        out
    }

    /// What `connectivity` prints: `all`, or the marked items.
    pub fn summary(&self) -> Vec<String> {
        if self.is_all() && self.l7.iter().all(Vec::is_empty) {
            vec!["all".to_string()]
        } else {
            self.marked_items()
        }
    }

    /// Items as the JSON contract writes them: `TCP`, `TCP/80`, `UDP/53-54`, `ICMP/8`.
    pub fn items(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (p, ranges) in PROTOCOLS.iter().zip(&self.ranges) {
            if ranges.as_slice() == [full_range(*p)] {
                out.push(p.name().to_string());
            } else {
                out.extend(ranges.iter().map(|r| format!("{}/{r}", p.name())));
            }
        }
        out
    }
}

/// A row of the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// Sender.
    pub src: Side,
    /// Receiver.
    pub dst: Side,
    /// What may flow.
    pub allowed: Allowed,
}

/// The ports the table considers for `p`: 1-65535, or ICMP types 0-255.
pub fn full_range(p: Protocol) -> PortRange {
    if p.is_icmp() {
        PortRange { lo: 0, hi: 255 }
    } else {
        PortRange { lo: 1, hi: u16::MAX }
    }
}

/// Computes every row with something allowed, between every pair of
/// distinct endpoints and between endpoints and outside address ranges
/// (the IPv4 space cut at every prefix a policy names, IPv6 too if a
/// policy names an IPv6 prefix, and each of `externals` on its own), in
/// the table's order. Judged per class ([`crate::analysis::table`]); every
/// row is a value, so large clusters write the table instead.
pub fn connectivity(cluster: &Cluster, externals: &[IpAddr]) -> Vec<Row> {
    crate::analysis::table::Table::new(cluster, externals).rows()
}

/// The evaluator's party for a side.
pub fn party(p: &Side) -> Party {
    match p {
        Side::Endpoint(i) => Party::Endpoint(*i),
        Side::Node(n) => Party::Node(*n),
        Side::Addresses(first, _) => Party::External(*first),
    }
}

/// What `cluster` allows from `src` to `dst`, per protocol.
pub fn allowed_between(cluster: &Cluster, src: Party, dst: Party, cuts: &[BTreeSet<u32>; 4]) -> Allowed {
    let mut allowed = Allowed::default();
    for (pi, &protocol) in PROTOCOLS.iter().enumerate() {
        let full = full_range(protocol);
        let starts: Vec<u32> =
            cuts[pi].iter().copied().filter(|&c| c >= u32::from(full.lo) && c <= u32::from(full.hi)).collect();
        let mut ranges: Vec<PortRange> = Vec::new();
        let mut l7: Vec<(PortRange, String)> = Vec::new();
        for (k, &start) in starts.iter().enumerate() {
            let end = starts.get(k + 1).map(|n| n - 1).unwrap_or(u32::from(full.hi));
            let verdict = eval(cluster, &Query { src, dst, protocol, port: start as u16 });
            if !verdict.allowed() {
                continue;
            }
            let (lo, hi) = (start as u16, end as u16);
            match ranges.last_mut() {
                Some(last) if u32::from(last.hi) + 1 == start => last.hi = hi,
                _ => ranges.push(PortRange { lo, hi }),
            }
            if let Some(parser) = l7_parser(cluster, [verdict.egress.as_ref(), verdict.ingress.as_ref()]) {
                match l7.last_mut() {
                    Some((last, p)) if u32::from(last.hi) + 1 == start && *p == parser => last.hi = hi,
                    _ => l7.push((PortRange { lo, hi }, parser)),
                }
            }
        }
        allowed.ranges[pi] = ranges;
        allowed.l7[pi] = l7;
    }
    allowed
}

/// The L7 parsers of the rules that let an allowed connection through
/// the proxy (either end's decision: egress, ingress), joined by `+`;
/// `None` without L7.
pub fn l7_parser(cluster: &Cluster, decisions: [Option<&Decision>; 2]) -> Option<String> {
    let parsers: BTreeSet<&str> = decisions
        .into_iter()
        .flatten()
        .filter_map(|d| match d {
            Decision::Redirected(rules) => Some(rules),
            _ => None,
        })
        .flatten()
        .filter_map(|r| cluster.policy(r.policy).rules[r.rule_index()].l7.as_ref().map(|l7| l7.parser.as_str()))
        .collect();
    (!parsers.is_empty()).then(|| parsers.into_iter().collect::<Vec<_>>().join("+"))
}

/// Per protocol, the ports where a verdict may change: the first port of
/// the protocol's range and the bounds of every range and named port.
pub fn port_cuts(cluster: &Cluster) -> [BTreeSet<u32>; 4] {
    let mut cuts: [BTreeSet<u32>; 4] = Default::default();
    for (pi, p) in PROTOCOLS.iter().enumerate() {
        cuts[pi].insert(u32::from(full_range(*p).lo));
    }
    let mut add = |protocol: Option<Protocol>, lo: u16, hi: u16| {
        for (pi, p) in PROTOCOLS.iter().enumerate() {
            if protocol.is_none_or(|q| q == *p) {
                cuts[pi].insert(u32::from(lo));
                cuts[pi].insert(u32::from(hi) + 1);
            }
        }
    };
    for policy in &cluster.policies {
        for rule in &policy.rules {
            for m in rule.ports.iter().flatten() {
                if let PortSpec::Range(r) = m.ports {
                    add(m.protocol, r.lo, r.hi);
                }
            }
        }
    }
    for rule in cluster.tier_policies.iter().flat_map(|p| &p.rules) {
        for m in rule.ports.iter().flatten() {
            if let PortSpec::Range(r) = m.ports {
                add(m.protocol, r.lo, r.hi);
            }
        }
    }
    for e in &cluster.endpoints {
        for np in &e.named_ports {
            add(Some(np.protocol), np.port, np.port);
        }
    }
    cuts
}

/// Outside address ranges on which every policy decides the same way.
/// Nodes' addresses are not outside addresses (they are `host` or
/// `remote-node`, never matched by a CIDR rule: "By default, CIDR-based
/// selectors do not match in-cluster entities (pods or nodes)",
/// <https://docs.cilium.io/en/stable/security/policy/language/>), so each
/// is cut out of the segments. The API server's addresses outside the
/// cluster are segments of their own.
pub fn address_segments(cluster: &Cluster, externals: &[IpAddr]) -> Vec<(IpAddr, IpAddr)> {
    let mut prefixes: Vec<Cidr> = Vec::new();
    for policy in &cluster.policies {
        for rule in &policy.rules {
            if let Peers::Only(peers) = &rule.peers {
                for peer in peers {
                    if let Peer::Cidr { cidr, except } = peer {
                        prefixes.push(*cidr);
                        prefixes.extend(except.iter().copied());
                    }
                }
            }
        }
    }
    for peer in cluster.tier_policies.iter().flat_map(|p| &p.rules).flat_map(|r| &r.peers) {
        if let TierPeer::Networks(cidrs) = peer {
            prefixes.extend(cidrs.iter().copied());
        }
    }
    prefixes.extend(externals.iter().map(|ip| Cidr::host(*ip)));
    // An API server address outside the cluster is `world` and
    // `kube-apiserver` at once (`policyc_ir::reserved`): its own segment.
    // One that is a pod's keeps the pod's identity (W0210): no segment.
    prefixes
        .extend(cluster.apiserver.iter().filter(|ip| cluster.endpoint_by_ip(**ip).is_none()).map(|ip| Cidr::host(*ip)));
    let node_ips: BTreeSet<IpAddr> = cluster.nodes.iter().flat_map(|n| n.ips.iter().copied()).collect();
    prefixes.extend(node_ips.iter().map(|ip| Cidr::host(*ip)));
    let mut out = Vec::new();
    for ipv6 in [false, true] {
        let family: Vec<Cidr> = prefixes.iter().copied().filter(|c| c.is_ipv6() == ipv6).collect();
        if ipv6 && family.is_empty() {
            continue;
        }
        let max = if ipv6 { u128::MAX } else { u128::from(u32::MAX) };
        let mut cuts: BTreeSet<u128> = BTreeSet::from([0]);
        for c in &family {
            let (lo, hi) = c.range();
            cuts.insert(lo);
            if hi < max {
                cuts.insert(hi + 1);
            }
        }
        let cuts: Vec<u128> = cuts.into_iter().collect();
        for (k, &start) in cuts.iter().enumerate() {
            let end = cuts.get(k + 1).map(|n| n - 1).unwrap_or(max);
            let (first, last) = (from_u128(start, ipv6), from_u128(end, ipv6));
            if !(first == last && node_ips.contains(&first)) {
                out.push((first, last));
            }
        }
    }
    out
}

/// The name of a peer in output: `ns/pod`, `ns/name[Kind]`, `node:NAME` or
/// `ip:FIRST-LAST` (`ip:ADDR` for a single address).
pub fn peer_name(cluster: &Cluster, p: &Side) -> String {
    match p {
        Side::Endpoint(i) => cluster.endpoint(*i).display_name(),
        Side::Node(n) => format!("node:{}", cluster.nodes[*n].name),
        Side::Addresses(a, b) if a == b => format!("ip:{a}"),
        Side::Addresses(a, b) => format!("ip:{a}-{b}"),
    }
}

/// Rows as the JSON contract: a sorted array of `{src, dst, allowed}`.
pub fn to_json(cluster: &Cluster, rows: &[Row]) -> serde_json::Value {
    let mut items: Vec<(String, String, serde_json::Value)> = rows
        .iter()
        .map(|r| {
            let summary = r.allowed.summary();
            let allowed = if summary == ["all"] { serde_json::json!("all") } else { serde_json::json!(summary) };
            (peer_name(cluster, &r.src), peer_name(cluster, &r.dst), allowed)
        })
        .collect();
    items.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    serde_json::Value::Array(
        items.into_iter().map(|(s, d, a)| serde_json::json!({"src": s, "dst": d, "allowed": a})).collect(),
    )
}

/// Rows as a text table, one `src -> dst allowed` line each, sorted.
pub fn to_table(cluster: &Cluster, rows: &[Row]) -> String {
    let mut lines: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| {
            let allowed = r.allowed.summary().join(",");
            (peer_name(cluster, &r.src), peer_name(cluster, &r.dst), allowed)
        })
        .collect();
    lines.sort();
    let w_src = lines.iter().map(|l| l.0.len()).max().unwrap_or(3).max(3);
    let w_dst = lines.iter().map(|l| l.1.len()).max().unwrap_or(3).max(3);
    let mut out = String::new();
    for (s, arrow, d, a) in std::iter::once(("SRC", "  ", "DST", "ALLOWED"))
        .chain(lines.iter().map(|(s, d, a)| (s.as_str(), "->", d.as_str(), a.as_str())))
    {
        pad(&mut out, s, w_src);
        out.push(' ');
        out.push_str(arrow);
        out.push(' ');
        pad(&mut out, d, w_dst);
        out.push_str("  ");
        out.push_str(a);
        out.push('\n');
    }
    out
}

/// Appends `text` padded with spaces to `width` characters, as `{:width$}`
/// would: a format width is limited to 65 535 and panics beyond it, and
/// names from the input may be longer.
pub fn pad(out: &mut String, text: &str, width: usize) {
    out.push_str(text);
    out.extend(std::iter::repeat_n(' ', width.saturating_sub(text.chars().count())));
}

#[cfg(test)]
mod tests {
    #[test]
    fn pads_past_the_width_a_format_allows() {
        let mut out = String::new();
        super::pad(&mut out, "é", 70_000);
        assert_eq!(out.chars().count(), 70_000);
        let mut short = String::new();
        super::pad(&mut short, "abcdef", 3);
        assert_eq!(short, "abcdef");
    }

    #[test]
    fn l7_restricted_ports_are_marked() {
        use super::{full_range, Allowed, PortRange, Protocol};
        let mut a = Allowed::default();
        a.ranges[0] = vec![PortRange { lo: 80, hi: 90 }];
        a.l7[0] = vec![(PortRange { lo: 80, hi: 80 }, "http".into()), (PortRange { lo: 85, hi: 86 }, "kafka".into())];
        assert_eq!(a.summary(), ["TCP/80 (L7 http)", "TCP/81-84", "TCP/85-86 (L7 kafka)", "TCP/87-90"]);
        assert_eq!(a.items(), ["TCP/80-90"]);
        // Everything allowed, part of it through the proxy: not `all`.
        let mut all = Allowed::default();
        for (i, p) in [Protocol::Tcp, Protocol::Udp, Protocol::Sctp, Protocol::Icmp].into_iter().enumerate() {
            all.ranges[i] = vec![full_range(p)];
        }
        assert_eq!(all.summary(), ["all"]);
        all.l7[0] = vec![(PortRange { lo: 1, hi: 65535 }, "http".into())];
        assert_eq!(all.summary(), ["TCP/1-65535 (L7 http)", "UDP", "SCTP", "ICMP"]);
    }
}
