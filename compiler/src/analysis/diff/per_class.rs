//! Connections opened and closed, judged per class: a pair of peers is
//! judged in each tree through its classes' runs
//! ([`crate::analysis::engine`]), and a pair of such judgements is turned
//! into changes once, then expanded to every pair of pods it stands for.

use super::connectivity::{Cause, Change, ConnectivityChange, Peer};
use crate::analysis::connectivity::{l7_parser, PROTOCOLS};
use crate::analysis::engine::{DecisionId, Engine, PeerKey, RunsId};
use crate::analysis::fast_hash::FastMap;
use crate::analysis::reason::{Citations, Reason, Verdict};
use policyc_ir::cluster::Cluster;
use policyc_ir::ids::EndpointId;
use policyc_ir::protocol::{Direction, PortRange, Protocol};
use std::collections::{BTreeMap, HashMap};

/// How one tree judges a pair of peers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TreeKey {
    /// A peer is not in this tree: which of the two, and which of the two
    /// are endpoints (they get an `absent` reason).
    Absent {
        /// The source is missing.
        src: bool,
        /// The destination is missing.
        dst: bool,
        /// The source is an endpoint.
        src_endpoint: bool,
        /// The destination is an endpoint.
        dst_endpoint: bool,
    },
    /// The source's egress and the destination's ingress runs (`None`
    /// for a side that is no endpoint).
    Runs(Option<RunsId>, Option<RunsId>),
}

/// A cause without the names of the pair: direction, now, was (an
/// `absent` reason's missing names are filled in per pair).
type CauseTemplate = (Direction, Reason, Reason);

/// Protocols and port ranges, in order.
type Ports = Vec<(Protocol, PortRange)>;

/// The ranges of [`Ports`] that pass through the L7 proxy, with the parser.
type L7Ports = Vec<(Protocol, PortRange, String)>;

/// The changes of one pair of judgements, without names.
pub type Pattern = Vec<(Change, Vec<CauseTemplate>, Ports, L7Ports)>;

/// One piece of a judgement: protocol index, range, the reasons
/// `[egress, ingress]`, whether the connection passes, and the L7 parser
/// where it passes through the proxy.
type Piece = (usize, PortRange, [Option<Reason>; 2], bool, Option<String>);

/// One tree, judged per class.
pub struct TreeJudge<'a> {
    /// The engine, every class's table filled.
    pub engine: Engine<'a>,
    citations: Citations<'a>,
    reasons: FastMap<DecisionId, Reason>,
    /// Per judgement: the id of what passes (protocol index and range).
    passing: FastMap<TreeKey, u32>,
    passing_ids: HashMap<Vec<(usize, PortRange)>, u32>,
    passing_values: Vec<Vec<(usize, PortRange)>>,
}

impl<'a> TreeJudge<'a> {
    /// Judges `loaded`'s cluster.
    pub fn new(loaded: &'a crate::pipeline::Loaded) -> Self {
        let mut engine = Engine::new(&loaded.lowered.cluster, &[]);
        engine.fill();
        TreeJudge {
            engine,
            citations: Citations::new(loaded),
            reasons: FastMap::default(),
            passing: FastMap::default(),
            passing_ids: HashMap::new(),
            passing_values: Vec::new(),
        }
    }

    fn cluster(&self) -> &'a Cluster {
        self.engine.cluster()
    }

    fn reason(&mut self, d: Option<DecisionId>) -> Option<Reason> {
        let (engine, citations) = (&self.engine, &self.citations);
        d.map(|d| self.reasons.entry(d).or_insert_with(|| citations.reason(engine.decision(d))).clone())
    }

    /// Every piece of a judgement, in protocol and port order.
    fn judged(&mut self, key: TreeKey) -> Vec<Piece> {
        match key {
            TreeKey::Absent { src_endpoint, dst_endpoint, .. } => {
                let absent = |endpoint: bool| endpoint.then(|| Reason::new(Verdict::Absent, Vec::new()));
                PROTOCOLS
                    .iter()
                    .enumerate()
                    .map(|(pi, p)| {
                        (
                            pi,
                            crate::analysis::connectivity::full_range(*p),
                            [absent(src_endpoint), absent(dst_endpoint)],
                            false,
                            None,
                        )
                    })
                    .collect()
            }
            TreeKey::Runs(e, i) => {
                let pieces = self.engine.pieces(e, i);
                pieces
                    .into_iter()
                    .map(|(pi, range, de, di)| {
                        let ok = self.engine.passes(de) && self.engine.passes(di);
                        let decisions = [de.map(|d| self.engine.decision(d)), di.map(|d| self.engine.decision(d))];
                        let parser = if ok { l7_parser(self.cluster(), decisions) } else { None };
                        (pi, range, [self.reason(de), self.reason(di)], ok, parser)
                    })
                    .collect()
            }
        }
    }

    /// The id of what `key` lets pass: equal ids, equal connections.
    fn passing(&mut self, key: TreeKey) -> u32 {
        if let Some(&id) = self.passing.get(&key) {
            return id;
        }
        let mut ranges: Vec<(usize, PortRange)> = Vec::new();
        if let TreeKey::Runs(e, i) = key {
            for (pi, range, de, di) in self.engine.pieces(e, i) {
                if !(self.engine.passes(de) && self.engine.passes(di)) {
                    continue;
                }
                match ranges.last_mut() {
                    Some((p, last)) if *p == pi && u32::from(last.hi) + 1 == u32::from(range.lo) => last.hi = range.hi,
                    _ => ranges.push((pi, range)),
                }
            }
        }
        let next = self.passing_ids.len() as u32;
        let id = *self.passing_ids.entry(ranges.clone()).or_insert(next);
        if id == next {
            self.passing_values.push(ranges);
        }
        self.passing.insert(key, id);
        id
    }

    /// The key of an endpoint's runs towards a peer in `dir`.
    fn runs(&mut self, subject: EndpointId, dir: Direction, peer: PeerKey) -> RunsId {
        self.engine.runs_towards(subject, dir, peer)
    }
}

/// The changes from `was` to `now` judgements of one pair.
pub fn pattern(old: &mut TreeJudge, new: &mut TreeJudge, was: TreeKey, now: TreeKey) -> Pattern {
    // Both trees let the same through: nothing opened or closed, whatever
    // the reasons (the common case, and much cheaper to tell).
    let (a, b) = (old.passing(was), new.passing(now));
    if old.passing_values[a as usize] == new.passing_values[b as usize] {
        return Vec::new();
    }
    let (a, b) = (old.judged(was), new.judged(now));
    let mut grouped: BTreeMap<(Change, Vec<CauseTemplate>), (Ports, L7Ports)> = BTreeMap::new();
    let (mut i, mut j) = (0, 0);
    // The run being built: change, causes, protocol index, range, and the
    // L7 parser where it passes (runs split where that changes).
    type Run = (Change, Vec<CauseTemplate>, usize, PortRange, Option<String>);
    let mut run: Option<Run> = None;
    let mut flush = |run: &mut Option<Run>| {
        if let Some((c, cs, pi, r, parser)) = run.take() {
            let (ports, l7) = grouped.entry((c, cs)).or_default();
            ports.push((PROTOCOLS[pi], r));
            if let Some(parser) = parser {
                l7.push((PROTOCOLS[pi], r, parser));
            }
        }
    };
    while i < a.len() && j < b.len() {
        let (pa, ra, wa, oka, la) = &a[i];
        let (pb, rb, wb, okb, lb) = &b[j];
        debug_assert_eq!(pa, pb);
        let lo = ra.lo.max(rb.lo);
        let hi = ra.hi.min(rb.hi);
        let range = PortRange { lo, hi };
        let step = (oka != okb).then(|| {
            let (change, parser) = if *okb { (Change::Opened, lb) } else { (Change::Closed, la) };
            (change, causes(change, wa, wb), parser.clone())
        });
        match (&mut run, step) {
            (Some((c, cs, pi, r, l7)), Some((change, causes, parser)))
                if *c == change
                    && *cs == causes
                    && *pi == *pa
                    && *l7 == parser
                    && u32::from(r.hi) + 1 == u32::from(lo) =>
            {
                r.hi = hi
            }
            (_, step) => {
                flush(&mut run);
                run = step.map(|(change, causes, parser)| (change, causes, *pa, range, parser));
            }
        }
        let last_of_protocol = (ra.hi == hi && a.get(i + 1).is_none_or(|n| n.0 != *pa))
            && (rb.hi == hi && b.get(j + 1).is_none_or(|n| n.0 != *pb));
        if ra.hi == hi {
            i += 1;
        }
        if rb.hi == hi {
            j += 1;
        }
        if last_of_protocol {
            flush(&mut run);
        }
    }
    flush(&mut run);
    grouped.into_iter().map(|((c, cs), (ports, l7))| (c, cs, ports, l7)).collect()
}

/// The directions whose decision flipped the way the connection did.
fn causes(change: Change, was: &[Option<Reason>; 2], now: &[Option<Reason>; 2]) -> Vec<CauseTemplate> {
    let mut out = Vec::new();
    for (k, direction) in [Direction::Egress, Direction::Ingress].into_iter().enumerate() {
        let (Some(was), Some(now)) = (&was[k], &now[k]) else { continue };
        let flipped = match change {
            Change::Opened => !was.verdict.passes() && now.verdict.passes(),
            Change::Closed => was.verdict.passes() && !now.verdict.passes(),
        };
        if flipped {
            out.push((direction, now.clone(), was.clone()));
        }
    }
    out
}

/// Where a peer is in one tree.
#[derive(Clone, Copy, Debug)]
enum Place {
    /// An endpoint: id, class, node index.
    Endpoint(EndpointId, usize, Option<usize>),
    /// A node.
    Node(usize),
    /// An outside segment of this tree.
    Segment(usize),
    /// Not in this tree.
    Absent,
}

fn place(cluster: &Cluster, engine: &Engine, peer: &Peer, by_name: &HashMap<String, EndpointId>) -> Place {
    match peer {
        Peer::Endpoint(name) => match by_name.get(name) {
            Some(&i) => {
                let e = cluster.endpoint(i);
                let node = e.node.as_ref().and_then(|n| cluster.nodes.iter().position(|x| &x.name == n));
                Place::Endpoint(i, engine.class_of(i), node)
            }
            None => Place::Absent,
        },
        Peer::Node(name) => cluster.nodes.iter().position(|n| &n.name == name).map_or(Place::Absent, Place::Node),
        Peer::Addresses(first, _) => engine.segment_of(*first).map_or(Place::Absent, Place::Segment),
    }
}

/// The key of a pair in one tree.
fn tree_key(judge: &mut TreeJudge, src: Place, dst: Place, src_endpoint: bool, dst_endpoint: bool) -> TreeKey {
    let (sa, da) = (matches!(src, Place::Absent), matches!(dst, Place::Absent));
    if sa || da {
        return TreeKey::Absent { src: sa, dst: da, src_endpoint, dst_endpoint };
    }
    // `peer` as `subject` (on `node`) sees it.
    let seen = |judge: &TreeJudge, peer: Place, node: Option<usize>| match peer {
        Place::Endpoint(_, c, _) => PeerKey::Class(c),
        Place::Node(n) => judge.engine.node_peer(n, node),
        Place::Segment(s) => PeerKey::Segment(s),
        Place::Absent => unreachable!("absent peers are keyed above"),
    };
    let egress = match src {
        Place::Endpoint(i, _, node) => Some(judge.runs(i, Direction::Egress, seen(judge, dst, node))),
        _ => None,
    };
    let ingress = match dst {
        Place::Endpoint(i, _, node) => Some(judge.runs(i, Direction::Ingress, seen(judge, src, node))),
        _ => None,
    };
    TreeKey::Runs(egress, ingress)
}

/// Every connection opened or closed from `old` to `new`, in the order of
/// [`super::connectivity::changes`]: opened before closed, then by source,
/// destination and causes.
pub fn changes(old: &mut TreeJudge, new: &mut TreeJudge, peers: &[Peer]) -> Vec<ConnectivityChange> {
    let names = |c: &Cluster| -> HashMap<String, EndpointId> {
        c.endpoints_with_ids().map(|(i, e)| (e.display_name(), i)).collect()
    };
    let (on, nn) = (names(old.cluster()), names(new.cluster()));
    let places: Vec<(Place, Place)> = peers
        .iter()
        .map(|p| (place(old.cluster(), &old.engine, p, &on), place(new.cluster(), &new.engine, p, &nn)))
        .collect();
    // Pattern ids of every pair of judgements, and per pair of joint
    // classes (what an endpoint or segment is in both trees) the pattern
    // id: pods of alike classes, and segments every table judges alike,
    // cost one judgement.
    let mut ids: FastMap<(TreeKey, TreeKey), u32> = FastMap::default();
    let mut patterns: Vec<Pattern> = Vec::new();
    let mut joint_ids: HashMap<ClassPair, usize> = HashMap::new();
    let (old_segments, new_segments) = (old.engine.segment_representatives(), new.engine.segment_representatives());
    let mut members: Vec<Vec<usize>> = Vec::new();
    let mut loose: Vec<usize> = Vec::new();
    for (k, (&(o, n), peer)) in places.iter().zip(peers).enumerate() {
        match class_pair(o, n, &old_segments, &new_segments) {
            Some(key) => {
                let next = joint_ids.len();
                let j = *joint_ids.entry((key, matches!(peer, Peer::Endpoint(_)))).or_insert(next);
                if j == next {
                    members.push(Vec::new());
                }
                members[j].push(k);
            }
            None => loose.push(k),
        }
    }
    let id_of = |ids: &mut FastMap<(TreeKey, TreeKey), u32>,
                 patterns: &mut Vec<Pattern>,
                 old: &mut TreeJudge,
                 new: &mut TreeJudge,
                 si: usize,
                 di: usize| {
        let ((os, ns), (od, nd)) = (places[si], places[di]);
        let (src_endpoint, dst_endpoint) =
            (matches!(peers[si], Peer::Endpoint(_)), matches!(peers[di], Peer::Endpoint(_)));
        let keys =
            (tree_key(old, os, od, src_endpoint, dst_endpoint), tree_key(new, ns, nd, src_endpoint, dst_endpoint));
        *ids.entry(keys).or_insert_with(|| {
            patterns.push(pattern(old, new, keys.0, keys.1));
            (patterns.len() - 1) as u32
        })
    };
    // The pairs whose pattern is not empty, with it: judged per pair of
    // joint classes, expanded to their members only then, and per pair
    // for the peers that have no joint class (nodes).
    let mut changed: Vec<(usize, usize, u32)> = Vec::new();
    // No policy applies between two peers that are not endpoints.
    let is_endpoint = |k: usize| matches!(peers[k], Peer::Endpoint(_));
    let judged = |si: usize, di: usize| si != di && (is_endpoint(si) || is_endpoint(di));
    for js in &members {
        for jd in &members {
            let Some((si, di)) = js.iter().find_map(|&si| jd.iter().find(|&&di| judged(si, di)).map(|&di| (si, di)))
            else {
                continue;
            };
            let id = id_of(&mut ids, &mut patterns, old, new, si, di);
            if patterns[id as usize].is_empty() {
                continue;
            }
            for &si in js {
                changed.extend(jd.iter().filter(|&&di| judged(si, di)).map(|&di| (si, di, id)));
            }
        }
    }
    let mut is_loose = vec![false; peers.len()];
    for &k in &loose {
        is_loose[k] = true;
    }
    for &k in &loose {
        for other in 0..peers.len() {
            for (si, di) in [(k, other), (other, k)] {
                // A pair of two loose peers is met from both ends: once.
                if judged(si, di) && !(is_loose[si] && is_loose[di] && si != k) {
                    let id = id_of(&mut ids, &mut patterns, old, new, si, di);
                    if !patterns[id as usize].is_empty() {
                        changed.push((si, di, id));
                    }
                }
            }
        }
    }
    changed.sort_unstable();
    let (mut opened, mut closed) = (Vec::new(), Vec::new());
    for (si, di, id) in changed {
        let ((os, ns), (od, nd)) = (places[si], places[di]);
        let (src, dst) = (&peers[si], &peers[di]);
        {
            for (change, causes, ports, l7) in &patterns[id as usize] {
                let fill = |r: &Reason, tree_src: Place, tree_dst: Place| {
                    let mut r = r.clone();
                    if r.verdict == Verdict::Absent {
                        r.missing = [(src, tree_src), (dst, tree_dst)]
                            .into_iter()
                            .filter(|(_, p)| matches!(p, Place::Absent))
                            .map(|(peer, _)| peer.name())
                            .collect();
                    }
                    r
                };
                let causes = causes
                    .iter()
                    .map(|(direction, now, was)| Cause {
                        direction: *direction,
                        endpoint: if *direction == Direction::Egress { src.name() } else { dst.name() },
                        now: fill(now, ns, nd),
                        was: fill(was, os, od),
                    })
                    .collect();
                let c = ConnectivityChange {
                    change: *change,
                    src: src.clone(),
                    dst: dst.clone(),
                    causes,
                    ports: ports.clone(),
                    l7: l7.clone(),
                };
                match change {
                    Change::Opened => opened.push(c),
                    Change::Closed => closed.push(c),
                }
            }
        }
    }
    opened.extend(closed);
    opened
}

/// What a pair's judgement depends on for an endpoint or segment peer in
/// both trees (its class or segment in each, `None` where absent); `None`
/// for a node (whose judgement depends on the other end's node).
type ClassPair = (ClassInTrees, bool);

/// A peer's class (`true`) or segment (`false`) in the old and the new
/// tree, `None` where absent.
type ClassInTrees = (Option<(bool, usize)>, Option<(bool, usize)>);

fn class_pair(old: Place, new: Place, old_segments: &[usize], new_segments: &[usize]) -> Option<ClassInTrees> {
    let one = |p: Place, segments: &[usize]| match p {
        Place::Endpoint(_, c, _) => Some(Some((true, c))),
        // Segments every table judges alike are one.
        Place::Segment(s) => Some(Some((false, segments[s]))),
        Place::Absent => Some(None),
        Place::Node(_) => None,
    };
    Some((one(old, old_segments)?, one(new, new_segments)?))
}
