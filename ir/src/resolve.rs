//! Identity resolution: from the cluster model to what the datapath's maps
//! hold (identities, the ipcache, and one policy map per endpoint).
//!
//! The result must decide every packet exactly as [`crate::eval`] does; the
//! pieces that make it so:
//! - an IP resolves to one identity by longest prefix match over pod IPs,
//!   node IPs, every prefix a CIDR rule names (the `cidr` and each `except`)
//!   and `0.0.0.0/0`/`::/0`. A CIDR rule therefore selects every CIDR or
//!   world identity whose prefix lies inside `cidr` and inside no `except`:
//!   the longest stored prefix holding an address then lies in the rule's
//!   `cidr` and in no `except` exactly when the address does;
//! - pod and node IPs are stored as host prefixes, so they never resolve to
//!   a CIDR identity (a CIDR rule never selects a pod);
//! - `fromRequires`/`toRequires` restrict the peers of allow rules, so a
//!   wildcard allow becomes the explicit identities that meet them;
//! - egress named ports are the peer's: the rule becomes per-identity
//!   entries with the ports of that identity's endpoints.

use crate::cidr::Cidr;
use crate::cluster::{Cluster, NamedPort};
use crate::eval::RuleRef;
use crate::identity::{Identity, IdentityTable};
use crate::labels::{Labels, RESERVED_PREFIX};
use crate::policy::{Action, Entity, Peer, Peers, PortSpec, Rule, Subject};
use crate::policy_map::{
    port_space_point, MapVerdict, PolicyEntry, PolicyKey, PolicyMap, VerdictSpace, PORT_SPACE_MAX,
};
use crate::protocol::{Direction, Protocol};
use crate::selector::LabelSelector;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// What an identity stands for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum IdentityKind {
    /// A reserved identity (`1..=10`).
    Reserved,
    /// The label set of one or more endpoints.
    Endpoint,
    /// A prefix named by a CIDR rule.
    Cidr(Cidr),
}

/// An identity with its labels.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct IdentityInfo {
    /// The number.
    pub identity: Identity,
    /// What it stands for.
    pub kind: IdentityKind,
    /// Its labels: endpoint identity labels, `reserved:<name>`, or
    /// `cidr:<prefix>` (with empty values for the last two).
    pub labels: Labels,
    /// The labels `fromRequires`/`toRequires` are tested against: the
    /// endpoint's labels, `reserved:world` for world and CIDR identities,
    /// `reserved:<name>` for the other reserved ones.
    pub selector_labels: Labels,
}

/// Why an ipcache entry exists.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum IpcacheSource {
    /// `0.0.0.0/0` or `::/0`.
    World,
    /// A prefix named by a CIDR rule.
    Cidr,
    /// An address of this node (the emitter maps the local node's to `host`).
    Node(String),
    /// An IP of this endpoint (index into [`Cluster::endpoints`]).
    Endpoint(usize),
}

/// One ipcache entry: prefix → identity.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct IpcacheEntry {
    /// The prefix.
    pub prefix: Cidr,
    /// Its identity.
    pub identity: Identity,
    /// Why it is there.
    pub source: IpcacheSource,
}

/// One endpoint with its identity and policy map.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ResolvedEndpoint {
    /// Index into [`Cluster::endpoints`].
    pub index: usize,
    /// Display name (`ns/pod`).
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Identity; `None` only if the identity space is exhausted.
    pub identity: Option<Identity>,
    /// IP addresses.
    pub ips: Vec<IpAddr>,
    /// Node it runs on.
    pub node: Option<String>,
    /// Its policy map.
    pub policy: PolicyMap,
}

/// Everything the datapath's maps hold for a cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Resolved {
    /// Cluster-local identities of endpoint label sets (keep it to number
    /// the next compile the same way).
    pub table: IdentityTable,
    /// Endpoint label sets that found no cluster-local identity.
    pub exhausted: Vec<Labels>,
    /// Every identity: reserved, endpoint and CIDR, by number.
    pub identities: BTreeMap<Identity, IdentityInfo>,
    /// CIDR identity of each prefix named by a CIDR rule (`/0` excluded: it
    /// is `world-ipv4`/`world-ipv6`).
    pub cidr_identities: BTreeMap<Cidr, Identity>,
    /// The ipcache, sorted by prefix, one entry per prefix.
    pub ipcache: Vec<IpcacheEntry>,
    /// Every endpoint of the cluster, in cluster order.
    pub endpoints: Vec<ResolvedEndpoint>,
    /// The endpoint owning each pod IP (the first one, if several claim it).
    pub endpoint_ips: BTreeMap<IpAddr, usize>,
}

/// Resolves `cluster`, numbering identities from scratch.
pub fn resolve(cluster: &Cluster) -> Resolved {
    resolve_with_previous(cluster, None)
}

/// Resolves `cluster`, keeping the cluster-local identities of `previous`
/// (a previous compile's [`Resolved::table`]) for label sets still present.
pub fn resolve_with_previous(cluster: &Cluster, previous: Option<&IdentityTable>) -> Resolved {
    let allocation = IdentityTable::allocate(cluster.endpoints.iter().map(|e| &e.labels), previous);
    let table = allocation.table;
    let mut identities = BTreeMap::new();
    for id in Identity::RESERVED {
        let labels = id.reserved_labels().unwrap_or_default();
        let selector_labels = if id.is_world() { world_labels() } else { labels.clone() };
        identities.insert(id, IdentityInfo { identity: id, kind: IdentityKind::Reserved, labels, selector_labels });
    }
    for (labels, id) in table.iter() {
        identities.insert(
            id,
            IdentityInfo {
                identity: id,
                kind: IdentityKind::Endpoint,
                labels: labels.clone(),
                selector_labels: labels.clone(),
            },
        );
    }

    let prefixes: BTreeSet<Cidr> = cluster
        .policies
        .iter()
        .flat_map(|p| &p.rules)
        .filter_map(|r| match &r.peers {
            Peers::Only(peers) => Some(peers),
            Peers::Any => None,
        })
        .flatten()
        .filter_map(|peer| match peer {
            Peer::Cidr { cidr, except } => Some(std::iter::once(cidr).chain(except)),
            _ => None,
        })
        .flatten()
        .copied()
        .filter(|c| c.prefix_len() > 0)
        .collect();
    let mut cidr_identities = BTreeMap::new();
    for (n, prefix) in (1u32..).zip(&prefixes) {
        // More than 2^24 - 1 distinct prefixes cannot come from real input;
        // the ones past that get no identity and validation reports them.
        if let Some(id) = Identity::cidr(n) {
            cidr_identities.insert(*prefix, id);
            identities.insert(
                id,
                IdentityInfo {
                    identity: id,
                    kind: IdentityKind::Cidr(*prefix),
                    labels: Labels::from_pairs([(format!("cidr:{prefix}"), "")]),
                    selector_labels: world_labels(),
                },
            );
        }
    }

    // Later sources win for the same prefix: endpoints over nodes over CIDRs.
    let mut ipcache: BTreeMap<Cidr, IpcacheEntry> = BTreeMap::new();
    for ipv6 in [false, true] {
        let identity = if ipv6 { Identity::WORLD_IPV6 } else { Identity::WORLD_IPV4 };
        let prefix = Cidr::all(ipv6);
        ipcache.insert(prefix, IpcacheEntry { prefix, identity, source: IpcacheSource::World });
    }
    for (&prefix, &identity) in &cidr_identities {
        ipcache.insert(prefix, IpcacheEntry { prefix, identity, source: IpcacheSource::Cidr });
    }
    for node in &cluster.nodes {
        for &ip in &node.ips {
            let prefix = Cidr::host(ip);
            ipcache.insert(
                prefix,
                IpcacheEntry {
                    prefix,
                    identity: Identity::REMOTE_NODE,
                    source: IpcacheSource::Node(node.name.clone()),
                },
            );
        }
    }
    let mut endpoint_ips = BTreeMap::new();
    for (i, endpoint) in cluster.endpoints.iter().enumerate() {
        let Some(identity) = table.get(&endpoint.labels) else { continue };
        for &ip in &endpoint.ips {
            if endpoint_ips.contains_key(&ip) {
                continue;
            }
            endpoint_ips.insert(ip, i);
            let prefix = Cidr::host(ip);
            ipcache.insert(prefix, IpcacheEntry { prefix, identity, source: IpcacheSource::Endpoint(i) });
        }
    }

    let context = Context::new(cluster, &table, &identities, &cidr_identities);
    // A policy map depends on the subject only through its labels (which
    // policies select it) and its named ports (ingress named ports are its
    // own), so pods of one workload share one computation.
    let mut maps: BTreeMap<(&Labels, Vec<&NamedPort>), PolicyMap> = BTreeMap::new();
    let endpoints = cluster
        .endpoints
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let identity = table.get(&e.labels);
            let policy = match identity {
                Some(_) => {
                    let mut ports: Vec<&NamedPort> = e.named_ports.iter().collect();
                    ports.sort();
                    maps.entry((&e.labels, ports)).or_insert_with(|| context.policy_map(i)).clone()
                }
                None => PolicyMap::default(),
            };
            ResolvedEndpoint {
                index: i,
                name: e.display_name(),
                namespace: e.namespace.clone(),
                identity,
                ips: e.ips.clone(),
                node: e.node.clone(),
                policy,
            }
        })
        .collect();

    Resolved {
        table,
        exhausted: allocation.exhausted,
        identities,
        cidr_identities,
        ipcache: ipcache.into_values().collect(),
        endpoints,
        endpoint_ips,
    }
}

fn world_labels() -> Labels {
    Labels::from_pairs([(format!("{RESERVED_PREFIX}world"), "")])
}

/// A set of peer identities; `Any` is the wildcard key.
#[derive(Clone, Debug, PartialEq, Eq)]
enum PeerSet {
    Any,
    Ids(BTreeSet<Identity>),
}

impl PeerSet {
    fn union(self, other: PeerSet) -> PeerSet {
        match (self, other) {
            (PeerSet::Any, _) | (_, PeerSet::Any) => PeerSet::Any,
            (PeerSet::Ids(mut a), PeerSet::Ids(b)) => {
                a.extend(b);
                PeerSet::Ids(a)
            }
        }
    }
}

/// Lookups shared by every endpoint's policy map.
struct Context<'a> {
    cluster: &'a Cluster,
    identities: &'a BTreeMap<Identity, IdentityInfo>,
    cidr_identities: &'a BTreeMap<Cidr, Identity>,
    /// Endpoint identities and, for each, the endpoints that carry it.
    endpoints_of: BTreeMap<Identity, Vec<usize>>,
}

impl<'a> Context<'a> {
    fn new(
        cluster: &'a Cluster,
        table: &IdentityTable,
        identities: &'a BTreeMap<Identity, IdentityInfo>,
        cidr_identities: &'a BTreeMap<Cidr, Identity>,
    ) -> Self {
        let mut endpoints_of: BTreeMap<Identity, Vec<usize>> = BTreeMap::new();
        for (i, e) in cluster.endpoints.iter().enumerate() {
            if let Some(id) = table.get(&e.labels) {
                endpoints_of.entry(id).or_default().push(i);
            }
        }
        Context { cluster, identities, cidr_identities, endpoints_of }
    }

    fn entity(&self, entity: Entity) -> PeerSet {
        let ids = |ids: &[Identity]| PeerSet::Ids(ids.iter().copied().collect());
        match entity {
            Entity::All => PeerSet::Any,
            Entity::World => PeerSet::Ids(
                [Identity::WORLD, Identity::WORLD_IPV4, Identity::WORLD_IPV6]
                    .into_iter()
                    .chain(self.cidr_identities.values().copied())
                    .collect(),
            ),
            // Every reserved identity but the world ones, and every pod.
            Entity::Cluster => PeerSet::Ids(
                Identity::RESERVED
                    .into_iter()
                    .filter(|i| !i.is_world())
                    .chain(self.endpoints_of.keys().copied())
                    .collect(),
            ),
            Entity::Host => ids(&[Identity::HOST]),
            Entity::RemoteNode => ids(&[Identity::REMOTE_NODE]),
            Entity::KubeApiserver => ids(&[Identity::KUBE_APISERVER]),
            Entity::Health => ids(&[Identity::HEALTH]),
            Entity::Init => ids(&[Identity::INIT]),
            Entity::Ingress => ids(&[Identity::INGRESS]),
            Entity::Unmanaged => ids(&[Identity::UNMANAGED]),
            Entity::None => PeerSet::Ids(BTreeSet::new()),
        }
    }

    fn peer(&self, peer: &Peer) -> PeerSet {
        match peer {
            Peer::Endpoints(sel) => PeerSet::Ids(
                self.endpoints_of.keys().copied().filter(|id| sel.matches(&self.identities[id].labels)).collect(),
            ),
            Peer::Cidr { cidr, except } => {
                let world = [(Cidr::all(false), Identity::WORLD_IPV4), (Cidr::all(true), Identity::WORLD_IPV6)];
                PeerSet::Ids(
                    self.cidr_identities
                        .iter()
                        .map(|(p, id)| (*p, *id))
                        .chain(world)
                        .filter(|(p, _)| cidr.covers(*p) && !except.iter().any(|e| e.covers(*p)))
                        .map(|(_, id)| id)
                        .collect(),
                )
            }
            Peer::Entity(entity) => self.entity(*entity),
        }
    }

    fn peers(&self, peers: &Peers) -> PeerSet {
        match peers {
            Peers::Any => PeerSet::Any,
            Peers::Only(list) => list.iter().fold(PeerSet::Ids(BTreeSet::new()), |acc, p| acc.union(self.peer(p))),
        }
    }

    /// Restricts `set` to identities whose selector labels meet every
    /// requirement (expanding the wildcard into explicit identities).
    fn require(&self, set: PeerSet, requirements: &[&LabelSelector]) -> PeerSet {
        if requirements.is_empty() {
            return set;
        }
        let meets = |id: &Identity| {
            self.identities.get(id).is_some_and(|info| requirements.iter().all(|r| r.matches(&info.selector_labels)))
        };
        match set {
            PeerSet::Any => PeerSet::Ids(self.identities.keys().copied().filter(meets).collect()),
            PeerSet::Ids(ids) => PeerSet::Ids(ids.into_iter().filter(meets).collect()),
        }
    }

    /// The endpoint identities of `set`.
    fn endpoint_ids(&self, set: &PeerSet) -> Vec<Identity> {
        match set {
            PeerSet::Any => self.endpoints_of.keys().copied().collect(),
            PeerSet::Ids(ids) => ids.iter().copied().filter(|id| self.endpoints_of.contains_key(id)).collect(),
        }
    }

    fn policy_map(&self, subject: usize) -> PolicyMap {
        let endpoint = &self.cluster.endpoints[subject];
        let selecting: Vec<usize> = (0..self.cluster.policies.len())
            .filter(|&p| match &self.cluster.policies[p].subject {
                Subject::Endpoints(sel) => sel.matches(&endpoint.labels),
                Subject::Nodes(_) => false,
            })
            .collect();
        let mut enforced = [false; 2];
        let mut requirements: [Vec<&LabelSelector>; 2] = [Vec::new(), Vec::new()];
        for &p in &selecting {
            let policy = &self.cluster.policies[p];
            for dir in Direction::BOTH {
                enforced[dir.index()] |= policy.enforces(dir);
                requirements[dir.index()].extend(&policy.requires[dir.index()]);
            }
        }

        let mut spaces: BTreeMap<(Identity, Direction), VerdictSpace> = BTreeMap::new();
        for &p in &selecting {
            for (r, rule) in self.cluster.policies[p].rules.iter().enumerate() {
                let at = RuleRef { policy: p, rule: r };
                self.add_rule(&mut spaces, subject, rule, at, &requirements[rule.direction.index()]);
            }
        }

        let mut entries = Vec::new();
        for ((identity, direction), space) in spaces {
            for block in space.blocks() {
                // The block's first point is below 2^24: the top byte is
                // the protocol and the low 16 bits the port.
                let key = PolicyKey {
                    identity,
                    direction,
                    protocol: (block.point >> 16) as u8,
                    port: (block.point & 0xffff) as u16,
                    prefix_len: block.prefix_len,
                };
                entries.push(PolicyEntry { key, verdict: block.verdict, rules: block.rules });
            }
        }
        entries.sort();
        PolicyMap { enforced, entries }
    }

    fn add_rule(
        &self,
        spaces: &mut BTreeMap<(Identity, Direction), VerdictSpace>,
        subject: usize,
        rule: &Rule,
        at: RuleRef,
        requirements: &[&LabelSelector],
    ) {
        let dir = rule.direction;
        let verdict = match (rule.action, &rule.l7) {
            (Action::Deny, _) => MapVerdict::Deny,
            (Action::Allow, Some(l7)) => MapVerdict::Redirect(l7.parser.clone()),
            (Action::Allow, None) => MapVerdict::Allow,
        };
        let mut peers = self.peers(&rule.peers);
        if rule.action == Action::Allow {
            peers = self.require(peers, requirements);
        }
        let keys: Vec<Identity> = match &peers {
            PeerSet::Any => vec![Identity::ANY],
            PeerSet::Ids(ids) => ids.iter().copied().collect(),
        };
        let mut add = |ids: &[Identity], lo: u32, hi: u32| {
            for &id in ids {
                spaces.entry((id, dir)).or_default().add(lo, hi, verdict.clone(), at);
            }
        };
        let Some(matches) = &rule.ports else {
            add(&keys, 0, PORT_SPACE_MAX);
            return;
        };
        for m in matches {
            let protocols = match m.protocol {
                Some(p) => vec![p],
                None => Protocol::WITH_PORTS.to_vec(),
            };
            for protocol in protocols {
                let n = protocol.number();
                match &m.ports {
                    PortSpec::All => add(&keys, port_space_point(n, 0), port_space_point(n, u16::MAX)),
                    PortSpec::Range(range) => add(&keys, port_space_point(n, range.lo), port_space_point(n, range.hi)),
                    PortSpec::Named(name) => match dir {
                        Direction::Ingress => {
                            if let Some(port) = self.cluster.endpoints[subject].named_port(name, protocol) {
                                add(&keys, port_space_point(n, port), port_space_point(n, port));
                            }
                        }
                        // The peer's named port: per identity, every number
                        // its endpoints give the name (exact when endpoints
                        // sharing an identity agree on their ports).
                        Direction::Egress => {
                            for id in self.endpoint_ids(&peers) {
                                let ports: BTreeSet<u16> = self.endpoints_of[&id]
                                    .iter()
                                    .filter_map(|&e| self.cluster.endpoints[e].named_port(name, protocol))
                                    .collect();
                                for port in ports {
                                    add(&[id], port_space_point(n, port), port_space_point(n, port));
                                }
                            }
                        }
                    },
                }
            }
        }
    }
}
