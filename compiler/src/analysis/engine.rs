//! The reference evaluator asked per identity, not per pod pair.
//!
//! [`policyc_ir::eval::decide`] reads a subject endpoint only through its
//! labels (which policies select it, `fromRequires`), its named ports and
//! its node (whether a node peer is `host` or `remote-node` to it), and a
//! peer only through which rule peers match it (`peer_matches` of the peer
//! as the subject sees it), the labels `fromRequires` tests and, for a
//! Kubernetes egress rule naming a port, the peer's named ports. So:
//!
//! - endpoints with the same labels and named ports form one *class*
//!   (one identity, for the synthetic and real clusters alike), judged once
//!   through a representative;
//! - for one subject class and direction, peers (classes, outside address
//!   segments, and a node as `host` or as `remote-node`) that every rule
//!   peer, requirement and named port of the policies selecting the class
//!   treats alike form one *group*, judged once;
//! - a judgement is [`Runs`]: per protocol, the decision on consecutive
//!   port ranges, cut only where the class's own policies (and named
//!   ports) can change it, interned so that equal ones share an id.
//!
//! The representatives live in a small cluster of their own whose policy
//! list is, while one class is judged, only the policies that may select
//! it (decisions are mapped back to the real policy ids), which is what
//! makes one call of `decide` cheap. Callers expand classes to pods only
//! where they print.

use crate::analysis::connectivity::{address_segments, full_range, PROTOCOLS};
use policyc_ir::cluster::{Cluster, NamedPort};
use policyc_ir::eval::{decide, party_labels, peer_matches, Decision, Party};
use policyc_ir::ids::{EndpointId, PolicyId, RuleRef};
use policyc_ir::policy::{Entity, Peers, PortSpec, Subject};
use policyc_ir::protocol::{Direction, PortRange};
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
    /// A node: `host` to the subject if `local` (it runs there), else
    /// `remote-node`.
    Node {
        /// Whether the subject runs on that node.
        local: bool,
    },
}

/// Values numbered in the order first seen.
struct Interner<T> {
    ids: HashMap<T, u32>,
    values: Vec<T>,
}

impl<T: Clone + Eq + Hash> Interner<T> {
    fn new() -> Self {
        Interner { ids: HashMap::new(), values: Vec::new() }
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
    /// One representative endpoint per class (at the class's index), every
    /// node, and the policies of the class being judged.
    reps: Cluster,
    /// Per class: the policies that may select it, in policy order.
    selecting: Vec<Vec<PolicyId>>,
    loaded: Option<usize>,
    segments: Vec<(IpAddr, IpAddr)>,
    /// Every named port's number, per protocol (a named port may resolve
    /// to it).
    named_cuts: [BTreeSet<u32>; 4],
    decisions: Interner<Decision>,
    runs: Interner<Runs>,
    /// Per (class, direction): the runs towards every peer of the universe.
    tables: HashMap<(usize, Direction), Vec<RunsId>>,
    /// Runs judged one peer at a time.
    single: HashMap<(usize, Direction, PeerKey), RunsId>,
    /// Per rule peer or requirement (by address in the cluster): which
    /// peers of the universe it matches.
    matches: HashMap<usize, Vec<bool>>,
}

impl<'a> Engine<'a> {
    /// The engine of `cluster`, with outside segments as
    /// [`address_segments`] cuts them (`externals` each on its own).
    pub fn new(cluster: &'a Cluster, externals: &[IpAddr]) -> Self {
        let mut index: BTreeMap<(&policyc_ir::labels::Labels, Vec<&NamedPort>), usize> = BTreeMap::new();
        let mut class_of = Vec::with_capacity(cluster.endpoints.len());
        let mut members: Vec<Vec<EndpointId>> = Vec::new();
        let mut reps =
            Cluster { namespaces: cluster.namespaces.clone(), nodes: cluster.nodes.clone(), ..Cluster::default() };
        for (id, e) in cluster.endpoints_with_ids() {
            let mut ports: Vec<&NamedPort> = e.named_ports.iter().collect();
            ports.sort();
            let class = *index.entry((&e.labels, ports)).or_insert_with(|| {
                let mut rep = e.clone();
                rep.node = None;
                reps.endpoints.push(rep);
                members.push(Vec::new());
                members.len() - 1
            });
            members[class].push(id);
            class_of.push(class);
        }
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
        let mut named_cuts: [BTreeSet<u32>; 4] = Default::default();
        for e in &cluster.endpoints {
            for np in &e.named_ports {
                if let Some(pi) = PROTOCOLS.iter().position(|p| *p == np.protocol) {
                    named_cuts[pi].insert(u32::from(np.port));
                    named_cuts[pi].insert(u32::from(np.port) + 1);
                }
            }
        }
        Engine {
            cluster,
            class_of,
            members,
            reps,
            selecting,
            loaded: None,
            segments: address_segments(cluster, externals),
            named_cuts,
            decisions: Interner::new(),
            runs: Interner::new(),
            tables: HashMap::new(),
            single: HashMap::new(),
            matches: HashMap::new(),
        }
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
        if let Some(table) = self.tables.get(&(c, dir)) {
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
                if !self.tables.contains_key(&(c, dir)) {
                    let table = self.table(c, dir);
                    self.tables.insert((c, dir), table);
                }
            }
        }
    }

    /// Class `c`'s runs in `dir` towards every peer: classes, segments,
    /// then a node as `host` and as `remote-node` (when the cluster has
    /// nodes); `None` before [`Engine::fill`].
    pub fn table_of(&self, c: usize, dir: Direction) -> Option<&[RunsId]> {
        self.tables.get(&(c, dir)).map(Vec::as_slice)
    }

    /// The peers every table covers: classes, segments, then a node as
    /// `host` and as `remote-node` (when the cluster has nodes).
    fn universe(&self) -> Vec<PeerKey> {
        let mut u: Vec<PeerKey> = (0..self.classes()).map(PeerKey::Class).collect();
        u.extend((0..self.segments.len()).map(PeerKey::Segment));
        if !self.cluster.nodes.is_empty() {
            u.extend([PeerKey::Node { local: true }, PeerKey::Node { local: false }]);
        }
        u
    }

    fn universe_index(&self, peer: PeerKey) -> Option<usize> {
        let (classes, segments) = (self.classes(), self.segments.len());
        match peer {
            PeerKey::Class(c) => Some(c),
            PeerKey::Segment(s) => Some(classes + s),
            PeerKey::Node { .. } if self.cluster.nodes.is_empty() => None,
            PeerKey::Node { local } => Some(classes + segments + usize::from(!local)),
        }
    }

    /// The peer as the subject's policies see it (a node already `host`
    /// or `remote-node`), for matching rule peers.
    fn seen(&self, peer: PeerKey) -> Party {
        match peer {
            PeerKey::Class(c) => Party::Endpoint(EndpointId::new(c)),
            PeerKey::Segment(s) => Party::External(self.segments[s].0),
            PeerKey::Node { local: true } => Party::Reserved(Entity::Host),
            PeerKey::Node { local: false } => Party::Reserved(Entity::RemoteNode),
        }
    }

    /// Makes the representatives' policy list class `c`'s.
    fn load(&mut self, c: usize) {
        if self.loaded != Some(c) {
            self.reps.policies = self.selecting[c].iter().map(|&p| self.cluster.policy(p).clone()).collect();
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
        let mut keys: Vec<usize> = Vec::new();
        let mut named: BTreeSet<&str> = BTreeSet::new();
        let cluster = self.cluster;
        for p in self.selecting[c].clone() {
            let policy = cluster.policy(p);
            for req in &policy.requires[dir.index()] {
                keys.push(req as *const _ as usize);
                self.requirement_matches(req, &universe);
            }
            for rule in policy.rules.iter().filter(|r| r.direction == dir) {
                if let Peers::Only(peers) = &rule.peers {
                    for peer in peers {
                        keys.push(peer as *const _ as usize);
                        self.peer_entry_matches(peer, &universe);
                    }
                }
                // A Kubernetes egress rule's named port is the peer's.
                if dir == Direction::Egress && !policy.origin.kind.is_cilium() {
                    for m in rule.ports.iter().flatten() {
                        if let PortSpec::Named(name) = &m.ports {
                            named.insert(name);
                        }
                    }
                }
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
        let key = peer as *const _ as usize;
        if !self.matches.contains_key(&key) {
            let m = universe.iter().map(|&u| peer_matches(&self.reps, peer, self.seen(u))).collect();
            self.matches.insert(key, m);
        }
    }

    fn requirement_matches(&mut self, req: &policyc_ir::selector::LabelSelector, universe: &[PeerKey]) {
        let key = req as *const _ as usize;
        if !self.matches.contains_key(&key) {
            let m = universe.iter().map(|&u| req.matches(&party_labels(&self.reps, self.seen(u)))).collect();
            self.matches.insert(key, m);
        }
    }

    /// Per protocol, the ports where class `c`'s decisions may change:
    /// the protocol's first port, the bounds of its policies' port ranges,
    /// and every named port's number.
    fn cuts(&self, c: usize) -> [Vec<u32>; 4] {
        let mut cuts = self.named_cuts.clone();
        for (pi, p) in PROTOCOLS.iter().enumerate() {
            cuts[pi].insert(u32::from(full_range(*p).lo));
        }
        for &p in &self.selecting[c] {
            for rule in &self.cluster.policy(p).rules {
                for m in rule.ports.iter().flatten() {
                    if let PortSpec::Range(r) = m.ports {
                        for (pi, p) in PROTOCOLS.iter().enumerate() {
                            if m.protocol.is_none_or(|q| q == *p) {
                                cuts[pi].insert(u32::from(r.lo));
                                cuts[pi].insert(u32::from(r.hi) + 1);
                            }
                        }
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
        let (party, node) = match peer {
            PeerKey::Class(k) => (Party::Endpoint(EndpointId::new(k)), None),
            PeerKey::Segment(s) => (Party::External(self.segments[s].0), None),
            // The subject on the node (`host`), or on none of them.
            PeerKey::Node { local } => (Party::Node(0), local.then(|| self.cluster.nodes[0].name.clone())),
        };
        self.reps.endpoints[c].node = node;
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

    /// `d` with the representatives' policy ids replaced by the cluster's.
    fn real_ids(&self, c: usize, d: Decision) -> Decision {
        let ids = &self.selecting[c];
        let rules =
            |rs: Vec<RuleRef>| rs.into_iter().map(|r| RuleRef::new(ids[r.policy.index()], r.rule_index())).collect();
        match d {
            Decision::NotIsolated => Decision::NotIsolated,
            Decision::Allowed(rs) => Decision::Allowed(rules(rs)),
            Decision::Redirected(rs) => Decision::Redirected(rules(rs)),
            Decision::Denied(rs) => Decision::Denied(rules(rs)),
            Decision::DefaultDeny(ps) => Decision::DefaultDeny(ps.into_iter().map(|p| ids[p.index()]).collect()),
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
