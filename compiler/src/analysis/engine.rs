//! The reference evaluator asked per identity, not per pod pair.
//!
//! [`policyc_ir::eval::decide`] reads a subject endpoint only through its
//! labels (which policies, admin and baseline ones included, select it,
//! `fromRequires`), its named ports and its node (whether a node peer is
//! `host` or `remote-node` to it), and a peer only through which rule
//! peers match it (`peer_matches` with the reserved labels the subject
//! sees on it; an admin `networks` peer also tests a pod's or a node's
//! addresses, an admin `nodes` peer a node's labels), the labels
//! `fromRequires` tests and, for a Kubernetes or admin egress rule naming
//! a port, the peer's named ports. So:
//!
//! - endpoints with the same labels and named ports, whose addresses fall
//!   in the same admin `networks` prefixes, form one *class* (one identity
//!   for the synthetic and real clusters alike), judged once through a
//!   representative;
//! - nodes that run the API server or not (`kube-apiserver`, see
//!   [`policyc_ir::reserved`]), with the same admin `nodes` selectors
//!   matching their labels and addresses in the same admin `networks`
//!   prefixes, form one *node class*; a node class is a peer twice, as
//!   `host` (the subject runs there) and as `remote-node`;
//! - for one subject class and direction, peers (classes, outside address
//!   segments, node classes) that every rule peer, requirement and named
//!   port of the policies selecting the class treats alike form one
//!   *group*, judged once;
//! - a judgement is [`Runs`]: per protocol, the decision on consecutive
//!   port ranges, cut only where the class's own policies (and named
//!   ports) can change it, interned so that equal ones share an id.
//!
//! The representatives live in a small cluster of their own whose policy
//! lists are, while one class is judged, only the policies (and admin and
//! baseline policies) that may select it (decisions are mapped back to the
//! real ids; a subset keeps the tiers' order, which is by priority, kind
//! and name), which is what makes one call of `decide` cheap. Callers
//! expand classes to pods only where they print.

use crate::analysis::connectivity::{address_segments, full_range, PROTOCOLS};
use crate::analysis::fast_hash::FastMap;
use policyc_ir::cidr::Cidr;
use policyc_ir::cluster::{Cluster, Endpoint, EndpointKind, NamedPort};
use policyc_ir::eval::{decide, party_labels, peer_matches, Decision, Party};
use policyc_ir::ids::{EndpointId, PolicyId, RuleRef};
use policyc_ir::labels::Labels;
use policyc_ir::policy::{Entity, Peers, PortMatch, PortSpec, Subject};
use policyc_ir::protocol::{Direction, PortRange};
use policyc_ir::reserved::{as_labels, reserved_labels};
use policyc_ir::selector::LabelSelector;
use policyc_ir::tier::{self, TierPeer, TierRuleRef};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::Hash;
use std::net::IpAddr;

/// An interned [`Decision`].
pub type DecisionId = u32;
/// An interned [`Runs`].
pub type RunsId = u32;
/// Per protocol of [`PROTOCOLS`]: consecutive port ranges covering the
/// protocol's whole range, each with its decision.
pub type Runs = [Vec<(PortRange, DecisionId)>; 4];

/// A peer as the engine tells peers apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeerKey {
    /// An endpoint of this class.
    Class(usize),
    /// An address of this outside segment (index into [`Engine::segments`]).
    Segment(usize),
    /// A node of this node class: `host` to the subject if `local` (it
    /// runs there), else `remote-node`.
    Node {
        /// The node class (see [`Engine::node_class_of`]).
        class: usize,
        /// Whether the subject runs on that node.
        local: bool,
    },
}

/// What a table's groups are split by: a rule peer, a requirement or an
/// admin rule peer of the cluster, by address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum MatchKey {
    Peer(usize),
    Requirement(usize),
    TierPeer(usize),
}

/// Values numbered in the order first seen.
struct Interner<T> {
    ids: FastMap<T, u32>,
    values: Vec<T>,
}

impl<T: Clone + Eq + Hash> Interner<T> {
    fn new() -> Self {
        Interner { ids: FastMap::default(), values: Vec::new() }
    }

    fn intern(&mut self, value: T) -> u32 {
        if let Some(&id) = self.ids.get(&value) {
            return id;
        }
        let id = u32::try_from(self.values.len()).expect("fewer than 2^32 distinct values");
        self.ids.insert(value.clone(), id);
        self.values.push(value);
        id
    }
}

/// One cluster, judged per class and peer group.
pub struct Engine<'a> {
    cluster: &'a Cluster,
    class_of: Vec<usize>,
    members: Vec<Vec<EndpointId>>,
    /// Per node: its node class.
    node_class_of: Vec<usize>,
    /// Per node class: its first node.
    node_reps: Vec<usize>,
    /// One representative endpoint per class (at the class's index), every
    /// node, the API server's addresses, and the policies and admin and
    /// baseline policies of the class being judged.
    reps: Cluster,
    /// Per class: the policies that may select it, in policy order.
    selecting: Vec<Vec<PolicyId>>,
    /// Per class: the admin and baseline policies that select it, in
    /// input order.
    selecting_tiers: Vec<Vec<usize>>,
    loaded: Option<usize>,
    segments: Vec<(IpAddr, IpAddr)>,
    /// Every named port's number, per protocol (a named port may resolve
    /// to it).
    named_cuts: [BTreeSet<u32>; 4],
    decisions: Interner<Decision>,
    runs: Interner<Runs>,
    /// Per (class, direction), at `2 * class + direction`: the runs
    /// towards every peer of the universe (a vector: looked up per pair).
    tables: Vec<Option<Vec<RunsId>>>,
    /// Runs judged one peer at a time.
    single: FastMap<(usize, Direction, PeerKey), RunsId>,
    /// Per rule peer, requirement or admin rule peer: which peers of the
    /// universe it matches.
    matches: HashMap<MatchKey, Vec<bool>>,
    /// Per peer of the universe: the reserved labels a subject sees on it
    /// (`None`: an endpoint); the same for every subject, as the universe
    /// tells a local node from a remote one.
    universe_reserved: Vec<Option<Vec<Entity>>>,
}

impl<'a> Engine<'a> {
    /// The engine of `cluster`, with outside segments as
    /// [`address_segments`] cuts them (`externals` each on its own).
    pub fn new(cluster: &'a Cluster, externals: &[IpAddr]) -> Self {
        Self::with_segments(cluster, address_segments(cluster, externals))
    }

    /// The engine of `cluster` with these outside segments, which must
    /// be at least as fine as [`address_segments`] cuts them (a segment
    /// is judged by its first address).
    pub fn with_segments(cluster: &'a Cluster, segments: Vec<(IpAddr, IpAddr)>) -> Self {
        // An admin `networks` peer matches pods and nodes by address
        // (`policyc_ir::tier::TierPeer::Networks`): what tells two pods or
        // nodes apart is the set of those prefixes holding an address.
        let networks: Vec<Cidr> = {
            let mut all: Vec<Cidr> = tier_peers(cluster)
                .filter_map(|p| match p {
                    TierPeer::Networks(cidrs) => Some(cidrs.iter().copied()),
                    _ => None,
                })
                .flatten()
                .collect();
            all.sort();
            all.dedup();
            all
        };
        let within = |ips: &[IpAddr]| -> Vec<usize> {
            networks.iter().enumerate().filter(|(_, c)| ips.iter().any(|ip| c.contains(*ip))).map(|(k, _)| k).collect()
        };
        let mut index: BTreeMap<(&Labels, Vec<&NamedPort>, Vec<usize>), usize> = BTreeMap::new();
        let mut class_of = Vec::with_capacity(cluster.endpoints.len());
        let mut members: Vec<Vec<EndpointId>> = Vec::new();
        let mut reps = Cluster {
            namespaces: cluster.namespaces.clone(),
            nodes: cluster.nodes.clone(),
            apiserver: cluster.apiserver.clone(),
            ..Cluster::default()
        };
        for (id, e) in cluster.endpoints_with_ids() {
            let mut ports: Vec<&NamedPort> = e.named_ports.iter().collect();
            ports.sort();
            let class = *index.entry((&e.labels, ports, within(&e.ips))).or_insert_with(|| {
                let mut rep = e.clone();
                rep.node = None;
                reps.endpoints.push(rep);
                members.push(Vec::new());
                members.len() - 1
            });
            members[class].push(id);
            class_of.push(class);
        }
        let node_selectors: Vec<&LabelSelector> = tier_peers(cluster)
            .filter_map(|p| match p {
                TierPeer::Nodes(sel) => Some(sel),
                _ => None,
            })
            .collect();
        let mut node_index: BTreeMap<(bool, Vec<bool>, Vec<usize>), usize> = BTreeMap::new();
        let mut node_reps = Vec::new();
        let node_class_of = (0..cluster.nodes.len())
            .map(|n| {
                let node = &cluster.nodes[n];
                let key = (
                    cluster.node_runs_apiserver(n),
                    node_selectors.iter().map(|sel| sel.matches(&node.labels)).collect(),
                    within(&node.ips),
                );
                *node_index.entry(key).or_insert_with(|| {
                    node_reps.push(n);
                    node_reps.len() - 1
                })
            })
            .collect();
        let selecting = reps
            .endpoints
            .iter()
            .map(|rep| {
                cluster
                    .policies_with_ids()
                    .filter(|(_, p)| match &p.subject {
                        Subject::Endpoints(sel) => sel.matches(&rep.labels),
                        // Kept whatever they are: `decide` tells.
                        _ => true,
                    })
                    .map(|(id, _)| id)
                    .collect()
            })
            .collect();
        let selecting_tiers = reps
            .endpoints
            .iter()
            .map(|rep| {
                let selects = |(_, p): &(usize, &tier::TierPolicy)| p.subject.matches(&rep.labels);
                cluster.tier_policies.iter().enumerate().filter(selects).map(|(t, _)| t).collect()
            })
            .collect();
        let mut named_cuts: [BTreeSet<u32>; 4] = Default::default();
        for e in &cluster.endpoints {
            for np in &e.named_ports {
                if let Some(pi) = PROTOCOLS.iter().position(|p| *p == np.protocol) {
                    named_cuts[pi].insert(u32::from(np.port));
                    named_cuts[pi].insert(u32::from(np.port) + 1);
                }
            }
        }
        let mut engine = Engine {
            cluster,
            class_of,
            members,
            node_class_of,
            node_reps,
            reps,
            selecting,
            selecting_tiers,
            loaded: None,
            segments,
            named_cuts,
            decisions: Interner::new(),
            runs: Interner::new(),
            tables: Vec::new(),
            single: FastMap::default(),
            matches: HashMap::new(),
            universe_reserved: Vec::new(),
        };
        engine.universe_reserved = engine.universe().into_iter().map(|u| engine.reserved_of(u)).collect();
        engine
    }

    /// The cluster.
    pub fn cluster(&self) -> &'a Cluster {
        self.cluster
    }

    /// The class of endpoint `e`.
    pub fn class_of(&self, e: EndpointId) -> usize {
        self.class_of[e.index()]
    }

    /// The number of classes.
    pub fn classes(&self) -> usize {
        self.members.len()
    }

    /// The endpoints of class `c`, in cluster order.
    pub fn members(&self, c: usize) -> &[EndpointId] {
        &self.members[c]
    }

    /// The outside address segments, in address order.
    pub fn segments(&self) -> &[(IpAddr, IpAddr)] {
        &self.segments
    }

    /// The node class of node `n` (an index into `Cluster::nodes`).
    pub fn node_class_of(&self, n: usize) -> usize {
        self.node_class_of[n]
    }

    /// The number of node classes.
    pub fn node_classes(&self) -> usize {
        self.node_reps.len()
    }

    /// Node `n` as a peer of a subject on node `subject_node` (an index
    /// into `Cluster::nodes`).
    pub fn node_peer(&self, n: usize, subject_node: Option<usize>) -> PeerKey {
        PeerKey::Node { class: self.node_class_of[n], local: subject_node == Some(n) }
    }

    /// The segment holding `ip`; `None` for a node's address.
    pub fn segment_of(&self, ip: IpAddr) -> Option<usize> {
        let at = self.segments.partition_point(|s| s.0 <= ip).checked_sub(1)?;
        (ip <= self.segments[at].1).then_some(at)
    }

    /// The decision `id` stands for.
    pub fn decision(&self, id: DecisionId) -> &Decision {
        &self.decisions.values[id as usize]
    }

    /// The runs `id` stands for.
    pub fn runs(&self, id: RunsId) -> &Runs {
        &self.runs.values[id as usize]
    }

    /// How endpoint `subject` decides traffic with `peer` in `dir`: from
    /// its class's table when [`Engine::fill`] made it, else judged alone.
    pub fn runs_towards(&mut self, subject: EndpointId, dir: Direction, peer: PeerKey) -> RunsId {
        let c = self.class_of(subject);
        self.class_runs(c, dir, peer)
    }

    /// How class `c` decides traffic with `peer` in `dir`.
    pub fn class_runs(&mut self, c: usize, dir: Direction, peer: PeerKey) -> RunsId {
        if let Some(Some(table)) = self.tables.get(2 * c + dir.index()) {
            if let Some(u) = self.universe_index(peer) {
                return table[u];
            }
        }
        if let Some(&id) = self.single.get(&(c, dir, peer)) {
            return id;
        }
        let id = self.judge(c, dir, peer);
        self.single.insert((c, dir, peer), id);
        id
    }

    /// Judges every class in both directions towards every peer, a group
    /// of alike peers at a time.
    pub fn fill(&mut self) {
        for c in 0..self.classes() {
            for dir in Direction::BOTH {
                if self.tables.len() < 2 * self.classes() {
                    self.tables.resize(2 * self.classes(), None);
                }
                if self.tables[2 * c + dir.index()].is_none() {
                    let table = self.table(c, dir);
                    self.tables[2 * c + dir.index()] = Some(table);
                }
            }
        }
    }

    /// Class `c`'s runs in `dir` towards every peer: classes, segments,
    /// then per node class a node as `host` and as `remote-node`; `None`
    /// before [`Engine::fill`].
    pub fn table_of(&self, c: usize, dir: Direction) -> Option<&[RunsId]> {
        self.tables.get(2 * c + dir.index()).and_then(Option::as_deref)
    }

    /// Per outside segment, the first segment that every class's tables
    /// (after [`Engine::fill`]) judge alike in both directions: segments
    /// with the same representative are interchangeable as peers.
    pub fn segment_representatives(&self) -> Vec<usize> {
        let (classes, segments) = (self.classes(), self.segments.len());
        if self.tables.len() < 2 * classes || self.tables.iter().any(Option::is_none) {
            return (0..segments).collect();
        }
        let mut first: HashMap<Vec<RunsId>, usize> = HashMap::new();
        (0..segments)
            .map(|s| {
                let column: Vec<RunsId> = self.tables.iter().flatten().map(|t| t[classes + s]).collect();
                *first.entry(column).or_insert(s)
            })
            .collect()
    }

    /// The peers every table covers: classes, segments, then per node
    /// class a node as `host` and as `remote-node`.
    fn universe(&self) -> Vec<PeerKey> {
        let mut u: Vec<PeerKey> = (0..self.classes()).map(PeerKey::Class).collect();
        u.extend((0..self.segments.len()).map(PeerKey::Segment));
        for class in 0..self.node_classes() {
            u.extend([PeerKey::Node { class, local: true }, PeerKey::Node { class, local: false }]);
        }
        u
    }

    fn universe_index(&self, peer: PeerKey) -> Option<usize> {
        let (classes, segments) = (self.classes(), self.segments.len());
        match peer {
            PeerKey::Class(c) => Some(c),
            PeerKey::Segment(s) => Some(classes + s),
            PeerKey::Node { class, local } => Some(classes + segments + 2 * class + usize::from(!local)),
        }
    }

    /// The peer itself, in the representatives' cluster (a node by the
    /// first node of its class).
    fn party(&self, peer: PeerKey) -> Party {
        match peer {
            PeerKey::Class(c) => Party::Endpoint(EndpointId::new(c)),
            PeerKey::Segment(s) => Party::External(self.segments[s].0),
            PeerKey::Node { class, .. } => Party::Node(self.node_reps[class]),
        }
    }

    /// The reserved labels a subject sees on `peer`, as `decide` computes
    /// them ([`reserved_labels`]): a node is local to a subject placed on
    /// it.
    fn reserved_of(&self, peer: PeerKey) -> Option<Vec<Entity>> {
        let node = match peer {
            PeerKey::Node { class, local: true } => Some(self.cluster.nodes[self.node_reps[class]].name.clone()),
            _ => None,
        };
        let subject = Endpoint {
            namespace: String::new(),
            name: String::new(),
            kind: EndpointKind::Pod,
            labels: Labels::new(),
            ips: Vec::new(),
            node,
            named_ports: Vec::new(),
        };
        reserved_labels(&self.reps, &subject, self.party(peer))
    }

    /// Makes the representatives' policy lists class `c`'s.
    fn load(&mut self, c: usize) {
        if self.loaded != Some(c) {
            self.reps.policies = self.selecting[c].iter().map(|&p| self.cluster.policy(p).clone()).collect();
            self.reps.tier_policies =
                self.selecting_tiers[c].iter().map(|&t| self.cluster.tier_policies[t].clone()).collect();
            self.loaded = Some(c);
        }
    }

    /// Class `c`'s table in `dir`: peers split into groups that every rule
    /// peer, requirement and named port of its policies treats alike, each
    /// group judged once.
    fn table(&mut self, c: usize, dir: Direction) -> Vec<RunsId> {
        let universe = self.universe();
        let mut group = vec![0u32; universe.len()];
        // Which rule peers and requirements can tell peers apart.
        let mut keys: Vec<MatchKey> = Vec::new();
        let mut named: BTreeSet<&str> = BTreeSet::new();
        let cluster = self.cluster;
        // A Kubernetes or admin egress rule's named port is the peer's.
        let mut peer_named = |ports: &'a Option<Vec<PortMatch>>| {
            if dir == Direction::Egress {
                for m in ports.iter().flatten() {
                    if let PortSpec::Named(name) = &m.ports {
                        named.insert(name);
                    }
                }
            }
        };
        for p in self.selecting[c].clone() {
            let policy = cluster.policy(p);
            for req in policy.requires[dir.index()].iter().chain(&policy.deny_requires[dir.index()]) {
                keys.push(MatchKey::Requirement(req as *const _ as usize));
                self.requirement_matches(req, &universe);
            }
            for rule in policy.rules.iter().filter(|r| r.direction == dir) {
                if let Peers::Only(peers) = &rule.peers {
                    for peer in peers {
                        keys.push(MatchKey::Peer(peer as *const _ as usize));
                        self.peer_entry_matches(peer, &universe);
                    }
                }
                if !policy.origin.kind.is_cilium() {
                    peer_named(&rule.ports);
                }
            }
        }
        for t in self.selecting_tiers[c].clone() {
            for rule in cluster.tier_policies[t].rules.iter().filter(|r| r.direction == dir) {
                for peer in &rule.peers {
                    keys.push(MatchKey::TierPeer(peer as *const _ as usize));
                    self.tier_peer_matches(peer, &universe);
                }
                peer_named(&rule.ports);
            }
        }
        keys.sort_unstable();
        keys.dedup();
        for key in keys {
            refine_by(&mut group, &self.matches[&key]);
        }
        for name in named {
            refine(&mut group, |u| match universe[u] {
                PeerKey::Class(k) => {
                    let rep = &self.reps.endpoints[k];
                    PROTOCOLS.iter().fold(0u128, |acc, p| {
                        acc << 17 | rep.named_port(name, *p).map_or(0, |n| 1 << 16 | u128::from(n))
                    })
                }
                _ => 0,
            });
        }
        let groups = group.iter().max().map_or(0, |g| *g as usize + 1);
        let mut judged: Vec<Option<RunsId>> = vec![None; groups];
        let mut table = Vec::with_capacity(universe.len());
        for (u, &g) in group.iter().enumerate() {
            let id = match judged[g as usize] {
                Some(id) => id,
                None => {
                    let id = self.judge(c, dir, universe[u]);
                    judged[g as usize] = Some(id);
                    id
                }
            };
            table.push(id);
        }
        table
    }

    fn peer_entry_matches(&mut self, peer: &policyc_ir::policy::Peer, universe: &[PeerKey]) {
        let key = MatchKey::Peer(peer as *const _ as usize);
        if !self.matches.contains_key(&key) {
            let m = (universe.iter().enumerate())
                .map(|(k, &u)| peer_matches(&self.reps, peer, self.party(u), self.universe_reserved[k].as_deref()))
                .collect();
            self.matches.insert(key, m);
        }
    }

    fn tier_peer_matches(&mut self, peer: &TierPeer, universe: &[PeerKey]) {
        let key = MatchKey::TierPeer(peer as *const _ as usize);
        if !self.matches.contains_key(&key) {
            let m = universe.iter().map(|&u| tier::peer_matches(&self.reps, peer, self.party(u))).collect();
            self.matches.insert(key, m);
        }
    }

    fn requirement_matches(&mut self, req: &LabelSelector, universe: &[PeerKey]) {
        let key = MatchKey::Requirement(req as *const _ as usize);
        if !self.matches.contains_key(&key) {
            let m = (universe.iter().enumerate())
                .map(|(k, &u)| match &self.universe_reserved[k] {
                    Some(reserved) => req.matches(&as_labels(reserved)),
                    None => req.matches(&party_labels(&self.reps, self.party(u))),
                })
                .collect();
            self.matches.insert(key, m);
        }
    }

    /// Per protocol, the ports where class `c`'s decisions may change:
    /// the protocol's first port, the bounds of its policies' (and admin
    /// and baseline policies') port ranges, and every named port's number.
    fn cuts(&self, c: usize) -> [Vec<u32>; 4] {
        let mut cuts = self.named_cuts.clone();
        for (pi, p) in PROTOCOLS.iter().enumerate() {
            cuts[pi].insert(u32::from(full_range(*p).lo));
        }
        let rules = self.selecting[c].iter().flat_map(|&p| self.cluster.policy(p).rules.iter().map(|r| &r.ports));
        let tier_rules = self.selecting_tiers[c].iter().flat_map(|&t| self.cluster.tier_policies[t].rules.iter());
        for m in rules.chain(tier_rules.map(|r| &r.ports)).flatten().flatten() {
            if let PortSpec::Range(r) = m.ports {
                for (pi, p) in PROTOCOLS.iter().enumerate() {
                    if m.protocol.is_none_or(|q| q == *p) {
                        cuts[pi].insert(u32::from(r.lo));
                        cuts[pi].insert(u32::from(r.hi) + 1);
                    }
                }
            }
        }
        std::array::from_fn(|pi| {
            let full = full_range(PROTOCOLS[pi]);
            cuts[pi].iter().copied().filter(|&x| x >= u32::from(full.lo) && x <= u32::from(full.hi)).collect()
        })
    }

    /// Asks the reference evaluator how class `c` decides traffic with
    /// `peer` in `dir`, on every port range its cuts delimit.
    fn judge(&mut self, c: usize, dir: Direction, peer: PeerKey) -> RunsId {
        self.load(c);
        let party = self.party(peer);
        // The subject on the node (`host`), or on none of them.
        self.reps.endpoints[c].node = match peer {
            PeerKey::Node { class, local: true } => Some(self.cluster.nodes[self.node_reps[class]].name.clone()),
            _ => None,
        };
        let cuts = self.cuts(c);
        let mut runs: Runs = Default::default();
        for (pi, &protocol) in PROTOCOLS.iter().enumerate() {
            let full = full_range(protocol);
            for (k, &start) in cuts[pi].iter().enumerate() {
                let end = cuts[pi].get(k + 1).map_or(u32::from(full.hi), |n| n - 1);
                let decision = decide(&self.reps, EndpointId::new(c), party, dir, protocol, start as u16);
                let id = self.decisions.intern(self.real_ids(c, decision));
                match runs[pi].last_mut() {
                    Some((range, last)) if *last == id => range.hi = end as u16,
                    _ => runs[pi].push((PortRange { lo: start as u16, hi: end as u16 }, id)),
                }
            }
        }
        self.reps.endpoints[c].node = None;
        self.runs.intern(runs)
    }

    /// `d` with the representatives' policy ids (and admin and baseline
    /// policy positions) replaced by the cluster's.
    fn real_ids(&self, c: usize, d: Decision) -> Decision {
        let ids = &self.selecting[c];
        let rules =
            |rs: Vec<RuleRef>| rs.into_iter().map(|r| RuleRef::new(ids[r.policy.index()], r.rule_index())).collect();
        let tier_rule = |r: TierRuleRef| TierRuleRef { policy: self.selecting_tiers[c][r.policy], rule: r.rule };
        match d {
            Decision::NotIsolated => Decision::NotIsolated,
            Decision::Allowed(rs) => Decision::Allowed(rules(rs)),
            Decision::Redirected(rs) => Decision::Redirected(rules(rs)),
            Decision::Denied(rs) => Decision::Denied(rules(rs)),
            Decision::DefaultDeny(ps) => Decision::DefaultDeny(ps.into_iter().map(|p| ids[p.index()]).collect()),
            Decision::TierAllowed(r) => Decision::TierAllowed(tier_rule(r)),
            Decision::TierDenied(r) => Decision::TierDenied(tier_rule(r)),
            Decision::Passed { by, then } => {
                Decision::Passed { by: tier_rule(by), then: Box::new(self.real_ids(c, *then)) }
            }
        }
    }

    /// The port pieces on which both decisions are constant: per protocol
    /// index, the range and the egress and ingress decisions (`None` for a
    /// side that is no endpoint).
    pub fn pieces(
        &self,
        egress: Option<RunsId>,
        ingress: Option<RunsId>,
    ) -> Vec<(usize, PortRange, Option<DecisionId>, Option<DecisionId>)> {
        let mut out = Vec::new();
        for (pi, &protocol) in PROTOCOLS.iter().enumerate() {
            let whole = [(full_range(protocol), u32::MAX)];
            let side = |r: Option<RunsId>| -> &[(PortRange, u32)] {
                match r {
                    Some(id) => &self.runs.values[id as usize][pi],
                    None => &whole,
                }
            };
            let (a, b) = (side(egress), side(ingress));
            let (mut i, mut j) = (0, 0);
            while i < a.len() && j < b.len() {
                let lo = a[i].0.lo.max(b[j].0.lo);
                let hi = a[i].0.hi.min(b[j].0.hi);
                let id = |r: Option<RunsId>, x: u32| r.map(|_| x);
                out.push((pi, PortRange { lo, hi }, id(egress, a[i].1), id(ingress, b[j].1)));
                if a[i].0.hi == hi {
                    i += 1;
                }
                if b[j].0.hi == hi {
                    j += 1;
                }
            }
        }
        out
    }

    /// Whether decision `d` (none: no endpoint decides) lets traffic pass.
    pub fn passes(&self, d: Option<DecisionId>) -> bool {
        d.is_none_or(|d| self.decision(d).passes())
    }
}

/// Every peer of every admin and baseline rule of `cluster`.
fn tier_peers(cluster: &Cluster) -> impl Iterator<Item = &TierPeer> {
    cluster.tier_policies.iter().flat_map(|p| &p.rules).flat_map(|r| &r.peers)
}

/// Splits the groups of `group` by `key` of each peer: peers stay in one
/// group only if they were and their keys are equal. Groups are numbered
/// in the order of their first peer.
fn refine(group: &mut [u32], key: impl Fn(usize) -> u128) {
    let mut next: HashMap<(u32, u128), u32> = HashMap::new();
    for (u, g) in group.iter_mut().enumerate() {
        let n = next.len() as u32;
        *g = *next.entry((*g, key(u))).or_insert(n);
    }
}

/// [`refine`] by a yes/no key, without hashing: the cost of a table is
/// mostly this, once per rule peer of the class's policies.
fn refine_by(group: &mut [u32], matched: &[bool]) {
    let groups = group.iter().max().map_or(0, |g| *g as usize + 1);
    let mut next = vec![u32::MAX; groups * 2];
    let mut count = 0;
    for (g, &m) in group.iter_mut().zip(matched) {
        let slot = &mut next[*g as usize * 2 + usize::from(m)];
        if *slot == u32::MAX {
            *slot = count;
            count += 1;
        }
        *g = *slot;
    }
}
