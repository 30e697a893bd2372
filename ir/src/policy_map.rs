//! Per-endpoint policy maps: entries keyed by (peer identity, direction,
//! protocol, port prefix) with a verdict, as the datapath's LPM policy map
//! holds them.
//!
//! The 24 bits `protocol(8) | port(16)` of a key form one space; an entry
//! covers an aligned block of it given by a prefix length (0 = every protocol
//! and port, 8 = one protocol, 24 = one port). For one (peer, direction) the
//! blocks are disjoint, so a longest-prefix lookup hits at most one, and the
//! verdict of the block is already the combination of every rule covering
//! it. The datapath looks up the peer's identity and the wildcard identity
//! [`Identity::ANY`] and takes the entry of higher precedence; see
//! [`PolicyMap::decide`].
//!
//! Precedence ([`Precedence`]) carries the order of cluster-admin tiers
//! into each entry, the idea of Cilium's ordered policy (CFP-23380,
//! "Ordered network policy", whose policy-map entries carry a precedence
//! so that one lookup per key still decides): admin-tier entries above the
//! NetworkPolicy tier above the baseline tier; first match inside the
//! admin and baseline tiers (an earlier rule has the higher precedence);
//! deny > redirect > allow inside the NetworkPolicy tier. Each of these
//! orders is a maximum over the rules covering a packet, so the maximum of
//! the two lookups' maxima is the answer. An admin `Pass` is not: it
//! discards the admin rules after it but not the tiers below, so where an
//! endpoint has a `Pass` in a direction, the wildcard's spans are folded
//! into every explicit peer's entries, and an explicit peer's entry wins a
//! tie with the wildcard's (the low bit of [`Precedence::value`]).

use crate::identity::Identity;
use crate::ids::RuleRef;
use crate::protocol::Direction;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Bits of the protocol/port space of a key.
pub const PORT_SPACE_BITS: u8 = 24;
/// Largest value of the protocol/port space.
pub const PORT_SPACE_MAX: u32 = (1 << PORT_SPACE_BITS) - 1;

/// The point of the protocol/port space for `protocol` and `port`.
pub fn port_space_point(protocol: u8, port: u16) -> u32 {
    u32::from(protocol) << 16 | u32::from(port)
}

/// A policy map key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct PolicyKey {
    /// Peer identity; [`Identity::ANY`] for every peer.
    pub identity: Identity,
    /// Direction relative to the endpoint owning the map.
    pub direction: Direction,
    /// IANA protocol number (meaningful for the first `prefix_len` bits).
    pub protocol: u8,
    /// Port or ICMP type (meaningful for the first `prefix_len - 8` bits).
    pub port: u16,
    /// Prefix length over the 24 bits `protocol | port`.
    pub prefix_len: u8,
}

impl PolicyKey {
    /// The key's bits in the protocol/port space.
    pub fn point(&self) -> u32 {
        port_space_point(self.protocol, self.port)
    }

    /// The first and last point of the block the key covers; `None` if
    /// `prefix_len` is over 24.
    pub fn block(&self) -> Option<(u32, u32)> {
        let host_bits = PORT_SPACE_BITS.checked_sub(self.prefix_len)?;
        let size = 1u32 << host_bits;
        let lo = self.point() & !(size - 1);
        Some((lo, lo + (size - 1)))
    }

    /// Whether the key's bits beyond its prefix are zero.
    pub fn is_aligned(&self) -> bool {
        self.block().is_some_and(|(lo, _)| lo == self.point())
    }

    /// Whether the key's block holds `point`.
    pub fn covers(&self, point: u32) -> bool {
        self.block().is_some_and(|(lo, hi)| lo <= point && point <= hi)
    }
}

impl fmt::Display for PolicyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let peer = if self.identity.is_any() { "any".to_string() } else { self.identity.to_string() };
        write!(f, "{} {peer} ", self.direction)?;
        match self.prefix_len {
            0 => f.write_str("*/*"),
            1..=7 => write!(f, "{}/{} */*", self.protocol, self.prefix_len),
            8 => write!(f, "{}/*", self.protocol),
            24 => write!(f, "{}/{}", self.protocol, self.port),
            n => write!(f, "{}/{}/{}", self.protocol, self.port, n - 8),
        }
    }
}

/// What a policy map entry does with matching traffic.
///
/// Ordered as the lattice rules combine in: allow < redirect < deny.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum MapVerdict {
    /// Pass.
    Allow,
    /// Pass through the L7 proxy with this parser (`http`, `dns`, ...).
    Redirect(String),
    /// Drop.
    Deny,
}

impl MapVerdict {
    /// Strength in the lattice, ignoring the redirect's parser.
    pub fn rank(&self) -> u8 {
        match self {
            MapVerdict::Allow => 1,
            MapVerdict::Redirect(_) => 2,
            MapVerdict::Deny => 3,
        }
    }
}

impl fmt::Display for MapVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapVerdict::Allow => f.write_str("allow"),
            MapVerdict::Redirect(parser) => write!(f, "redirect:{parser}"),
            MapVerdict::Deny => f.write_str("deny"),
        }
    }
}

/// Largest first-match position a precedence can tell apart; later ones
/// share it (no real cluster comes near 2^29 admin rules).
pub const ORDER_MAX: u32 = (1 << 29) - 1;

/// Which tier gave an entry its verdict, and where in the tier's
/// first-match order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum Precedence {
    /// NetworkPolicy and Cilium rules: deny > redirect > allow.
    NetworkPolicy,
    /// The admin-tier rule at this first-match position decided.
    Admin(u32),
    /// An admin-tier `Pass` at this first-match position left the tier;
    /// the verdict is that of the tiers below (or the endpoint's default).
    Passed(u32),
    /// The baseline-tier rule at this first-match position decided.
    Baseline(u32),
}

impl Precedence {
    /// The number the datapath compares (higher wins): the tier in the top
    /// two bits (admin 3, NetworkPolicy 2, baseline 1), then the inverted
    /// first-match position (or the verdict's strength in the
    /// NetworkPolicy tier), then 1 for an explicit peer's entry, so that it
    /// wins a tie with the wildcard's.
    pub fn value(self, verdict: &MapVerdict, explicit_peer: bool) -> u32 {
        let (band, rank) = match self {
            Precedence::Admin(order) | Precedence::Passed(order) => (3, ORDER_MAX - order.min(ORDER_MAX)),
            Precedence::NetworkPolicy => (2, u32::from(verdict.rank())),
            Precedence::Baseline(order) => (1, ORDER_MAX - order.min(ORDER_MAX)),
        };
        band << 30 | rank << 1 | u32::from(explicit_peer)
    }
}

impl fmt::Display for Precedence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Precedence::NetworkPolicy => f.write_str("np"),
            Precedence::Admin(order) => write!(f, "admin/{order}"),
            Precedence::Passed(order) => write!(f, "pass/{order}"),
            Precedence::Baseline(order) => write!(f, "baseline/{order}"),
        }
    }
}

/// What a rule does over a span of the protocol/port space, before spans
/// are combined into blocks.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SpanAction {
    /// A final verdict.
    Verdict(MapVerdict),
    /// An admin `Pass`: the tiers below decide.
    Pass,
}

/// One rule's contribution to a span: its tier position and action.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SpanVerdict {
    /// Where the rule sits.
    pub precedence: Precedence,
    /// What it does.
    pub action: SpanAction,
}

impl SpanVerdict {
    /// A NetworkPolicy-tier verdict.
    pub fn network_policy(verdict: MapVerdict) -> Self {
        SpanVerdict { precedence: Precedence::NetworkPolicy, action: SpanAction::Verdict(verdict) }
    }

    /// The strength spans are combined by (the wildcard's, without the
    /// explicit-peer bit).
    fn strength(&self) -> u32 {
        match &self.action {
            SpanAction::Verdict(v) => self.precedence.value(v, false),
            SpanAction::Pass => self.precedence.value(&MapVerdict::Allow, false),
        }
    }
}

/// One policy map entry.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct PolicyEntry {
    /// The key.
    pub key: PolicyKey,
    /// The verdict.
    pub verdict: MapVerdict,
    /// The first (in policy and rule order) of the rules that produced the
    /// verdict: a reviewer's and a trace's pointer to the cause. The entry
    /// names one rule rather than all of them because a map line is
    /// written once per endpoint and peer identity: listing every
    /// contributing rule made bundles grow with rules × identities ×
    /// endpoints.
    pub rule: RuleRef,
    /// How many rules produced the verdict (at least 1).
    pub rule_count: u32,
    /// The tier and position that gave the verdict.
    pub precedence: Precedence,
}

impl PolicyEntry {
    /// The number the datapath compares for this entry.
    pub fn precedence_value(&self) -> u32 {
        self.precedence.value(&self.verdict, !self.key.identity.is_any())
    }
}

/// The policy map of one endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PolicyMap {
    /// Per direction (`[ingress, egress]`): whether traffic no entry allows
    /// is dropped.
    pub enforced: [bool; 2],
    /// Entries sorted by key.
    pub entries: Vec<PolicyEntry>,
}

/// The outcome of one direction's policy lookup.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MapDecision {
    /// The verdict of the higher-precedence entry of the peer's and the
    /// wildcard's.
    pub verdict: Option<MapVerdict>,
    /// Whether the direction is in default deny.
    pub enforced: bool,
    /// The rule named by each entry that gave the verdict (the peer's, the
    /// wildcard's or both), sorted: each is one of the rules deciding the
    /// packet.
    pub rules: Vec<RuleRef>,
}

impl MapDecision {
    /// Whether the packet passes: deny drops, allow and redirect pass, and
    /// with no entry the enforcement flag decides.
    pub fn passes(&self) -> bool {
        match self.verdict {
            Some(MapVerdict::Deny) => false,
            Some(_) => true,
            None => !self.enforced,
        }
    }
}

impl PolicyMap {
    /// The entry for `identity` and `direction` whose block holds `point`
    /// (an exact-identity LPM lookup).
    pub fn lookup(&self, identity: Identity, direction: Direction, point: u32) -> Option<&PolicyEntry> {
        let start = self.entries.partition_point(|e| (e.key.identity, e.key.direction) < (identity, direction));
        self.entries[start..]
            .iter()
            .take_while(|e| e.key.identity == identity && e.key.direction == direction)
            .find(|e| e.key.covers(point))
    }

    /// What the datapath decides for traffic with `peer` in `direction`:
    /// the higher-precedence entry of the peer's and the wildcard's; deny
    /// drops, allow and redirect pass, and no entry passes only if the
    /// direction is not enforced.
    pub fn decide(&self, direction: Direction, peer: Identity, protocol: u8, port: u16) -> MapDecision {
        let point = port_space_point(protocol, port);
        let hits: Vec<&PolicyEntry> = [peer, Identity::ANY]
            .into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter_map(|id| self.lookup(id, direction, point))
            .collect();
        // The programs look the peer up first and replace its hit only with
        // a strictly higher precedence.
        let winner =
            hits.iter().copied().reduce(|a, b| if b.precedence_value() > a.precedence_value() { b } else { a });
        let verdict = winner.map(|e| e.verdict.clone());
        let mut rules: Vec<RuleRef> = hits
            .iter()
            .filter(|e| winner.is_some_and(|w| w.precedence_value() >> 1 == e.precedence_value() >> 1))
            .map(|e| e.rule)
            .collect();
        rules.sort();
        rules.dedup();
        MapDecision { verdict, enforced: self.enforced[direction.index()], rules }
    }
}

/// The verdicts of rules over the protocol/port space of one (peer,
/// direction), turned into disjoint aligned blocks.
#[derive(Clone, Debug, Default)]
pub struct VerdictSpace {
    spans: Vec<(u32, u32, SpanVerdict, RuleRef)>,
}

/// One block of a [`VerdictSpace`]: `prefix_len` bits of `point` fixed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// First point of the block.
    pub point: u32,
    /// Prefix length over the 24-bit space.
    pub prefix_len: u8,
    /// The verdict over the block.
    pub verdict: MapVerdict,
    /// Rules giving a verdict of that strength, sorted.
    pub rules: Vec<RuleRef>,
    /// The tier and position of the verdict.
    pub precedence: Precedence,
}

impl VerdictSpace {
    /// An empty space (no verdict anywhere).
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether no span was added.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Adds the NetworkPolicy-tier `verdict` from `rule` over the points
    /// `lo..=hi` (clamped to the space; empty if `lo > hi`).
    pub fn add(&mut self, lo: u32, hi: u32, verdict: MapVerdict, rule: RuleRef) {
        self.add_span(lo, hi, SpanVerdict::network_policy(verdict), rule);
    }

    /// Adds `verdict` (of any tier) from `rule` over `lo..=hi`.
    pub fn add_span(&mut self, lo: u32, hi: u32, verdict: SpanVerdict, rule: RuleRef) {
        let hi = hi.min(PORT_SPACE_MAX);
        if lo <= hi {
            self.spans.push((lo, hi, verdict, rule));
        }
    }

    /// Disjoint maximal aligned blocks, sorted, each with the strongest
    /// verdict over it. Neighbouring points merge into one block only when
    /// they have the same verdict and the same rules, so tracing stays exact.
    /// `default_deny`: what a `Pass` with nothing below it gives (the
    /// direction's enforcement).
    pub fn blocks(&self, default_deny: bool) -> Vec<Block> {
        // A sweep over span boundaries: at each boundary spans start or end,
        // and the active spans are counted per (strength, action, rule), so
        // the strongest is the last key and its rules the keys of the same
        // strength before it.
        let mut events: BTreeMap<u32, (Vec<usize>, Vec<usize>)> = BTreeMap::new();
        for (i, &(lo, hi, ..)) in self.spans.iter().enumerate() {
            events.entry(lo).or_default().0.push(i);
            events.entry(hi + 1).or_default().1.push(i);
        }
        type Active<'a> = BTreeMap<(u32, &'a SpanVerdict, RuleRef), usize>;
        let key = |i: usize| (self.spans[i].2.strength(), &self.spans[i].2, self.spans[i].3);
        let mut active: Active<'_> = BTreeMap::new();
        let mut runs: Vec<(u32, u32, MapVerdict, Vec<RuleRef>, Precedence)> = Vec::new();
        let points: Vec<u32> = events.keys().copied().collect();
        for (n, point) in points.iter().enumerate() {
            let (starts, ends) = &events[point];
            for &i in ends {
                if let Some(count) = active.get_mut(&key(i)) {
                    *count -= 1;
                    if *count == 0 {
                        active.remove(&key(i));
                    }
                }
            }
            for &i in starts {
                *active.entry(key(i)).or_default() += 1;
            }
            let Some(&next) = points.get(n + 1) else { break };
            let Some(&(strongest, top, top_rule)) = active.last_key_value().map(|(k, _)| k) else { continue };
            let decided = |below: u32| -> Option<(MapVerdict, Vec<RuleRef>)> {
                let mut candidates = active.keys().rev().filter(|(s, ..)| *s <= below);
                let &(s, v, _) = candidates.next()?;
                let SpanAction::Verdict(verdict) = &v.action else { return None };
                let mut rules: Vec<RuleRef> =
                    active.keys().rev().filter(|(t, ..)| *t == s).map(|&(_, _, r)| r).collect();
                rules.sort();
                rules.dedup();
                Some((verdict.clone(), rules))
            };
            let (verdict, rules, precedence) = match (&top.action, top.precedence) {
                (SpanAction::Pass, Precedence::Admin(order)) => {
                    // The admin rules after the `Pass` are skipped: the
                    // strongest span below the admin tier decides.
                    match decided((3 << 30) - 1) {
                        Some((verdict, rules)) => (verdict, rules, Precedence::Passed(order)),
                        None => {
                            let verdict = if default_deny { MapVerdict::Deny } else { MapVerdict::Allow };
                            (verdict, vec![top_rule], Precedence::Passed(order))
                        }
                    }
                }
                _ => match decided(strongest) {
                    Some((verdict, rules)) => (verdict, rules, top.precedence),
                    // Only an admin span is a `Pass`.
                    None => continue,
                },
            };
            let (lo, hi) = (*point, next - 1);
            match runs.last_mut() {
                Some(last) if last.1 + 1 == lo && last.2 == verdict && last.3 == rules && last.4 == precedence => {
                    last.1 = hi
                }
                _ => runs.push((lo, hi, verdict, rules, precedence)),
            }
        }
        let mut out = Vec::new();
        for (lo, hi, verdict, rules, precedence) in runs {
            for (point, prefix_len) in range_to_prefixes(lo, hi) {
                out.push(Block { point, prefix_len, verdict: verdict.clone(), rules: rules.clone(), precedence });
            }
        }
        out
    }
}

/// The fewest aligned blocks `(first point, prefix length)` of the 24-bit
/// space that exactly cover `lo..=hi`, in order.
pub fn range_to_prefixes(lo: u32, hi: u32) -> Vec<(u32, u8)> {
    let hi = hi.min(PORT_SPACE_MAX);
    let mut out = Vec::new();
    let mut lo = u64::from(lo);
    let hi = u64::from(hi);
    while lo <= hi {
        let mut host_bits = if lo == 0 { u32::from(PORT_SPACE_BITS) } else { lo.trailing_zeros().min(24) };
        while lo + (1u64 << host_bits) - 1 > hi {
            host_bits -= 1;
        }
        // `lo < 2^24` and `host_bits <= 24`, so both narrowings are exact.
        out.push((lo as u32, PORT_SPACE_BITS - host_bits as u8));
        lo += 1u64 << host_bits;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::PolicyId;
    use proptest::prelude::*;

    const R0: RuleRef = RuleRef::new(PolicyId::new(0), 0);
    const R1: RuleRef = RuleRef::new(PolicyId::new(0), 1);

    #[test]
    fn prefixes_of_ranges() {
        assert_eq!(range_to_prefixes(0, PORT_SPACE_MAX), vec![(0, 0)]);
        assert_eq!(range_to_prefixes(6 << 16, 6 << 16 | 0xffff), vec![(6 << 16, 8)]);
        assert_eq!(range_to_prefixes(80, 80), vec![(80, 24)]);
        assert_eq!(range_to_prefixes(80, 83), vec![(80, 22)]);
        assert_eq!(range_to_prefixes(79, 81), vec![(79, 24), (80, 23)]);
        assert!(range_to_prefixes(5, 4).is_empty());
    }

    #[test]
    fn deny_carves_a_port_out_of_an_allowed_range() {
        let mut space = VerdictSpace::new();
        space.add(port_space_point(6, 0), port_space_point(6, 0xffff), MapVerdict::Allow, R0);
        space.add(port_space_point(6, 80), port_space_point(6, 80), MapVerdict::Deny, R1);
        let blocks = space.blocks(false);
        let deny: Vec<&Block> = blocks.iter().filter(|b| b.verdict == MapVerdict::Deny).collect();
        assert_eq!(
            deny,
            vec![&Block {
                point: port_space_point(6, 80),
                prefix_len: 24,
                verdict: MapVerdict::Deny,
                rules: vec![R1],
                precedence: Precedence::NetworkPolicy,
            }]
        );
        let map = PolicyMap {
            enforced: [true, false],
            entries: blocks
                .into_iter()
                .map(|b| PolicyEntry {
                    key: PolicyKey {
                        identity: Identity::ANY,
                        direction: Direction::Ingress,
                        protocol: (b.point >> 16) as u8,
                        port: b.point as u16,
                        prefix_len: b.prefix_len,
                    },
                    verdict: b.verdict,
                    rule: b.rules[0],
                    rule_count: b.rules.len() as u32,
                    precedence: b.precedence,
                })
                .collect(),
        };
        assert!(!map.decide(Direction::Ingress, Identity(300), 6, 80).passes());
        assert!(map.decide(Direction::Ingress, Identity(300), 6, 81).passes());
        assert!(!map.decide(Direction::Ingress, Identity(300), 17, 81).passes());
        assert!(map.decide(Direction::Egress, Identity(300), 17, 81).passes());
    }

    proptest! {
        #[test]
        fn blocks_are_disjoint_aligned_and_exact(
            spans in proptest::collection::vec((0u32..300, 0u32..300, 0u8..4, 0usize..3), 0..12),
        ) {
            let mut space = VerdictSpace::new();
            for &(a, b, v, r) in &spans {
                let verdict = match v { 0 => MapVerdict::Allow, 1 => MapVerdict::Redirect("http".into()), 2 => MapVerdict::Redirect("dns".into()), _ => MapVerdict::Deny };
                space.add(a.min(b), a.max(b), verdict, RuleRef::new(PolicyId::new(0), r));
            }
            let blocks = space.blocks(false);
            let mut last_end = None;
            for b in &blocks {
                let size = 1u32 << (24 - b.prefix_len);
                prop_assert_eq!(b.point % size, 0);
                if let Some(end) = last_end { prop_assert!(b.point > end); }
                last_end = Some(b.point + size - 1);
            }
            for p in 0u32..320 {
                let expected = spans.iter().filter(|s| s.0.min(s.1) <= p && p <= s.0.max(s.1)).map(|s| match s.2 {
                    0 => MapVerdict::Allow, 1 => MapVerdict::Redirect("http".into()), 2 => MapVerdict::Redirect("dns".into()), _ => MapVerdict::Deny,
                }).max();
                let got = blocks.iter().find(|b| b.point <= p && p < b.point + (1 << (24 - b.prefix_len))).map(|b| b.verdict.clone());
                prop_assert_eq!(got, expected);
            }
        }
    }
}
