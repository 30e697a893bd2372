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
//! - `fromRequires`/`toRequires` restrict the peers of allow rules (those
//!   written in deny rules the peers of deny rules), so a
//!   wildcard allow becomes the explicit identities that meet them;
//! - egress named ports are the peer's: the rule becomes per-identity
//!   entries with the ports of that identity's endpoints;
//! - admin and baseline rules ([`crate::tier`]) become entries of their
//!   tier's precedence ([`Precedence`]); their `networks` also match pods
//!   and nodes, and their egress named ports are the peer's, which the
//!   datapath tells apart by identity only: an endpoint's identity is keyed
//!   by its labels plus what those rules tell apart
//!   ([`crate::identity_split`]), so every endpoint of an identity agrees;
//!   a node identity matches when every node behind it does, and one that
//!   a peer splits is reported ([`Resolved::tier_splits`]).

use crate::cidr::Cidr;
use crate::cluster::{Cluster, NamedPort};
use crate::identity::{fnv1a64, Identity, IdentityTable, CIDR_INDEX_MAX};
use crate::identity_split::{identity_keys, selector_labels};
use crate::ids::{EndpointId, PolicyId, RuleRef};
use crate::labels::{Labels, RESERVED_PREFIX};
use crate::policy::{Action, Entity, Peer, Peers, PortMatch, PortSpec, Rule, Subject};
use crate::policy_map::{
    port_space_point, Block, MapVerdict, PolicyEntry, PolicyKey, PolicyMap, Precedence, SpanAction, SpanVerdict,
    VerdictSpace, PORT_SPACE_MAX,
};
use crate::protocol::{Direction, Protocol};
use crate::reserved;
use crate::selector::LabelSelector;
use crate::selector_index::SelectorIndex;
use crate::tier::{tier_order, Tier, TierAction, TierPeer, TierRule, TierRuleRef};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

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
    /// An IP of this endpoint.
    Endpoint(EndpointId),
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

/// One endpoint with its identity and policy map (shared with the other
/// endpoints of the same identity and named ports, whose maps are equal).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ResolvedEndpoint {
    /// Its place in [`Cluster::endpoints`] (not the datapath's endpoint
    /// id, which the bundle allocates per node).
    pub index: EndpointId,
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
    pub policy: Arc<PolicyMap>,
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
    pub endpoint_ips: BTreeMap<IpAddr, EndpointId>,
    /// Admin-policy peers that select some but not all of the nodes behind
    /// one node identity: the datapath cannot enforce them.
    pub tier_splits: Vec<TierSplit>,
}

/// An admin or baseline rule whose `networks` or `nodes` peer selects
/// some but not all of the nodes sharing a node identity.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct TierSplit {
    /// The rule.
    pub rule: TierRuleRef,
    /// The identity it splits.
    pub identity: Identity,
    /// One endpoint or node it selects and one it does not (display names).
    pub selected: String,
    /// One it does not select.
    pub unselected: String,
}

/// Resolves `cluster`, numbering identities from scratch.
pub fn resolve(cluster: &Cluster) -> Resolved {
    resolve_with_previous(cluster, None)
}

/// Resolves `cluster`, keeping the cluster-local identities of `previous`
/// (a previous compile's [`Resolved::table`]) for label sets still present.
pub fn resolve_with_previous(cluster: &Cluster, previous: Option<&IdentityTable>) -> Resolved {
    let keys = identity_keys(cluster);
    let allocation = IdentityTable::allocate(keys.iter().map(AsRef::as_ref), previous);
    resolve_with_table(cluster, allocation.table, allocation.exhausted)
}

/// Resolves `cluster` with the identities of `table` taken as they are:
/// the node agent's resolution ([`crate::normalized`]), whose table holds
/// the bundle's numbers and the ones it gives label sets the bundle does
/// not know, outside the cluster-local range. `exhausted`: the label sets
/// left without an identity, reported in [`Resolved::exhausted`]. An
/// endpoint whose label set `table` lacks has no identity and no policy.
pub fn resolve_with_table(cluster: &Cluster, table: IdentityTable, exhausted: Vec<Labels>) -> Resolved {
    resolve_for(cluster, table, exhausted, &|_, _| true)
}

/// [`resolve_with_table`], computing the policy maps of only the endpoints
/// `wanted` accepts (the others get an empty map): every endpoint is still
/// a peer of the computed maps. The node agent needs the maps of its own
/// endpoints, not the cluster's.
pub fn resolve_for(
    cluster: &Cluster,
    table: IdentityTable,
    exhausted: Vec<Labels>,
    wanted: &dyn Fn(EndpointId, &crate::cluster::Endpoint) -> bool,
) -> Resolved {
    // Looked up by hash: comparing label sets, as the table's own lookup
    // does, was most of this step at 10000 endpoints.
    let by_labels: HashMap<&Labels, Identity> = table.iter().collect();
    let identity_of: Vec<Option<Identity>> =
        identity_keys(cluster).iter().map(|key| by_labels.get(key.as_ref()).copied()).collect();
    let mut identities = BTreeMap::new();
    for id in Identity::RESERVED {
        let labels = id.reserved_labels().unwrap_or_default();
        let selector_labels = match id {
            id if id.is_world() => world_labels(),
            // Identity 7 is a remote node running the API server: Cilium
            // gives it both labels (`pkg/identity/numericidentity.go`).
            Identity::KUBE_APISERVER => reserved::as_labels(&[Entity::KubeApiserver, Entity::RemoteNode]),
            _ => labels.clone(),
        };
        identities.insert(id, IdentityInfo { identity: id, kind: IdentityKind::Reserved, labels, selector_labels });
    }
    for (labels, id) in table.iter() {
        identities.insert(
            id,
            IdentityInfo {
                identity: id,
                kind: IdentityKind::Endpoint,
                labels: labels.clone(),
                selector_labels: selector_labels(labels).into_owned(),
            },
        );
    }

    // API server addresses that are neither a node's nor a pod's: outside
    // the cluster (a managed control plane). Cilium gives each a CIDR
    // identity that also carries `reserved:kube-apiserver`
    // (`crate::reserved`).
    let apiserver_outside: BTreeSet<IpAddr> = cluster
        .apiserver
        .iter()
        .copied()
        .filter(|&ip| cluster.node_by_ip(ip).is_none() && cluster.endpoint_by_ip(ip).is_none())
        .collect();
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
        .chain(cluster.tier_policies.iter().flat_map(|p| &p.rules).flat_map(|r| &r.peers).flat_map(|peer| match peer {
            TierPeer::Networks(cidrs) => cidrs.as_slice(),
            _ => &[],
        }))
        .copied()
        .filter(|c| c.prefix_len() > 0)
        .chain(apiserver_outside.iter().map(|&ip| Cidr::host(ip)))
        .collect();
    // A prefix's number is a hash of the prefix, probing upwards on a
    // collision in prefix order, so adding a prefix renumbers no other
    // (numbering by rank would shift every later prefix, and with it every
    // policy entry naming one: an apply as large as the policy).
    let mut cidr_identities = BTreeMap::new();
    let mut used = BTreeSet::new();
    for prefix in &prefixes {
        // More than 2^24 - 1 distinct prefixes cannot come from real input;
        // the ones past that get no identity and validation reports them.
        if used.len() >= CIDR_INDEX_MAX as usize {
            break;
        }
        let mut n = (fnv1a64(prefix.to_string().as_bytes()) % u64::from(CIDR_INDEX_MAX)) as u32 + 1;
        while !used.insert(n) {
            n = if n == CIDR_INDEX_MAX { 1 } else { n + 1 };
        }
        if let Some(id) = Identity::cidr(n) {
            cidr_identities.insert(*prefix, id);
            let mut labels = Labels::from_pairs([(format!("cidr:{prefix}"), "")]);
            let mut selector_labels = world_labels();
            if *prefix == Cidr::host(prefix.addr()) && apiserver_outside.contains(&prefix.addr()) {
                let apiserver = format!("{RESERVED_PREFIX}{}", Entity::KubeApiserver.name());
                labels.insert(apiserver.clone(), "");
                selector_labels.insert(apiserver, "");
            }
            identities
                .insert(id, IdentityInfo { identity: id, kind: IdentityKind::Cidr(*prefix), labels, selector_labels });
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
    for (n, node) in cluster.nodes.iter().enumerate() {
        // As the other nodes see it; the emitter gives the node's own
        // addresses `host` on the node itself (`crate::reserved`).
        let identity = if cluster.node_runs_apiserver(n) { Identity::KUBE_APISERVER } else { Identity::REMOTE_NODE };
        for &ip in &node.ips {
            let prefix = Cidr::host(ip);
            ipcache.insert(prefix, IpcacheEntry { prefix, identity, source: IpcacheSource::Node(node.name.clone()) });
        }
    }
    let mut endpoint_ips = BTreeMap::new();
    for (id, endpoint) in cluster.endpoints_with_ids() {
        let Some(identity) = identity_of[id.index()] else { continue };
        for &ip in &endpoint.ips {
            if endpoint_ips.contains_key(&ip) {
                continue;
            }
            endpoint_ips.insert(ip, id);
            let prefix = Cidr::host(ip);
            ipcache.insert(prefix, IpcacheEntry { prefix, identity, source: IpcacheSource::Endpoint(id) });
        }
    }

    let context = Context::new(cluster, &identity_of, &identities, &cidr_identities);
    // A policy map depends on the subject only through its labels (which
    // policies select it), its named ports (ingress named ports are its
    // own) and whether its node runs the API server (its `host` is then
    // also `kube-apiserver`), so pods of one workload share one
    // computation and one map. Admin `nodes` and `networks` peers also
    // depend on the subject's node (its own node is `host`).
    let node_sensitive = context.tier_node_sensitive;
    let mut distinct: HashMap<MapInputs<'_>, usize> = HashMap::new();
    let mut subjects: Vec<(EndpointId, Identity)> = Vec::new();
    let map_of: Vec<Option<usize>> = cluster
        .endpoints_with_ids()
        .map(|(endpoint, e)| {
            let id = identity_of[endpoint.index()].filter(|_| wanted(endpoint, e))?;
            let mut ports: Vec<&NamedPort> = e.named_ports.iter().collect();
            ports.sort();
            let apiserver_local = e.node.as_deref().is_some_and(|n| context.apiserver_nodes.contains(n));
            let node = if node_sensitive { e.node.as_deref() } else { None };
            Some(*distinct.entry((&e.labels, ports, apiserver_local, node)).or_insert_with(|| {
                subjects.push((endpoint, id));
                subjects.len() - 1
            }))
        })
        .collect();
    let maps = share_equal_maps(&subjects, context.policy_maps(&subjects));
    let tier_splits = context.tier_splits();
    let no_policy = Arc::new(PolicyMap::default());
    let endpoints = cluster
        .endpoints
        .iter()
        .enumerate()
        .map(|(i, e)| ResolvedEndpoint {
            index: EndpointId::new(i),
            name: e.display_name(),
            namespace: e.namespace.clone(),
            identity: identity_of[i],
            ips: e.ips.clone(),
            node: e.node.clone(),
            policy: Arc::clone(map_of[i].map_or(&no_policy, |m| &maps[m])),
        })
        .collect();

    Resolved {
        table,
        exhausted,
        identities,
        cidr_identities,
        ipcache: ipcache.into_values().collect(),
        endpoints,
        endpoint_ips,
        tier_splits,
    }
}

/// What an endpoint's policy map depends on: its labels, its named ports,
/// whether its node runs the API server, and (with admin `networks` or
/// `nodes` peers) its node.
type MapInputs<'a> = (&'a Labels, Vec<&'a NamedPort>, bool, Option<&'a str>);

/// `maps` (of `subjects`, in order) with the equal maps of one identity
/// made one: pods of one identity whose named ports differ have equal maps
/// unless a rule names one of those ports, and endpoints sharing a map
/// share its file in the bundle.
fn share_equal_maps(subjects: &[(EndpointId, Identity)], mut maps: Vec<Arc<PolicyMap>>) -> Vec<Arc<PolicyMap>> {
    let mut by_identity: HashMap<Identity, Vec<usize>> = HashMap::new();
    for (i, &(_, identity)) in subjects.iter().enumerate() {
        let kept = by_identity.entry(identity).or_default();
        match kept.iter().find(|&&k| maps[k] == maps[i]) {
            Some(&k) => maps[i] = Arc::clone(&maps[k]),
            None => kept.push(i),
        }
    }
    maps
}

/// Whether `rule` names the `kube-apiserver` entity among its peers.
fn names_apiserver(rule: &Rule) -> bool {
    matches!(&rule.peers, Peers::Only(peers) if peers.contains(&Peer::Entity(Entity::KubeApiserver)))
}

fn world_labels() -> Labels {
    Labels::from_pairs([(format!("{RESERVED_PREFIX}world"), "")])
}

/// A set of peer identities; `Any` is the wildcard key.
#[derive(Clone, Debug, PartialEq, Eq)]
enum PeerSet {
    Any,
    /// Sorted, without duplicates.
    Ids(Vec<Identity>),
}

impl PeerSet {
    /// The set of `ids`, in any order and with repeats.
    fn from_ids(mut ids: Vec<Identity>) -> PeerSet {
        ids.sort_unstable();
        ids.dedup();
        PeerSet::Ids(ids)
    }
}

/// The spans of the protocol/port space that one policy map's rules give
/// their peers, collected before they are turned into blocks.
///
/// Identities that many rules name (every pod of the cluster for
/// `toEntities: [cluster]`, every CIDR identity for `world`) would each
/// repeat the same block computation; here each (peer, direction) only
/// records which interned spans reach it, and peers reached by the same
/// spans share one [`VerdictSpace::blocks`] computation.
#[derive(Default)]
struct SpanCollector {
    spans: Vec<(u32, u32, SpanVerdict, RuleRef)>,
    interned: HashMap<(u32, u32, SpanVerdict, RuleRef), u32>,
    /// Per direction: whether an admin `Pass` covers some span, so that
    /// the wildcard's spans must be folded into every explicit peer's
    /// (see [`crate::policy_map`]).
    passes: [bool; 2],
    /// (peer, direction, span index), packed by [`reach`] so that sorting
    /// them (the largest step of building a large map) compares integers.
    reaches: Vec<u64>,
}

/// `(peer, direction, span)` as one integer ordered as the triple is: the
/// peer in the high 32 bits, the direction in the next one, the span index
/// (below 2^31: a map has far fewer spans) in the low 31.
fn reach(peer: Identity, direction: Direction, span: u32) -> u64 {
    (u64::from(peer.get()) << 32) | ((direction.index() as u64) << 31) | u64::from(span & 0x7fff_ffff)
}

/// The `(peer, direction, span)` of a [`reach`].
fn unpack(reach: u64) -> (Identity, Direction, u32) {
    let direction = if reach >> 31 & 1 == 0 { Direction::Ingress } else { Direction::Egress };
    (Identity((reach >> 32) as u32), direction, (reach & 0x7fff_ffff) as u32)
}

impl SpanCollector {
    /// Records `verdict` from `rule` over `lo..=hi` (clamped to the space;
    /// nothing if empty) for each of `peers` in `direction`.
    fn add(
        &mut self,
        peers: &[Identity],
        direction: Direction,
        lo: u32,
        hi: u32,
        verdict: &SpanVerdict,
        rule: RuleRef,
    ) {
        let hi = hi.min(PORT_SPACE_MAX);
        if lo > hi || peers.is_empty() {
            return;
        }
        let span = (lo, hi, verdict.clone(), rule);
        let next = u32::try_from(self.spans.len()).unwrap_or(u32::MAX);
        let index = *self.interned.entry(span.clone()).or_insert_with(|| {
            self.spans.push(span);
            next
        });
        self.reaches.extend(peers.iter().map(|&id| reach(id, direction, index)));
    }

    /// The map entries, sorted by key; `enforced` is the map's default
    /// deny per direction (what a `Pass` with nothing below it gives).
    fn entries(mut self, enforced: [bool; 2]) -> Vec<PolicyEntry> {
        self.reaches.sort_unstable();
        self.reaches.dedup();
        // Runs of one (peer, direction) (one value of `reach >> 31`); the
        // span indices of a run, in increasing order, are its signature.
        let signatures: Vec<u32> = self.reaches.iter().map(|&r| unpack(r).2).collect();
        let mut block_lists: Vec<Vec<Block>> = Vec::new();
        let mut by_signature: HashMap<(Cow<'_, [u32]>, bool), usize> = HashMap::new();
        let mut entries = Vec::new();
        // The wildcard's span indices per direction: its runs come first.
        let mut wildcard: [&[u32]; 2] = [&[], &[]];
        let mut start = 0;
        while start < self.reaches.len() {
            let (identity, direction, _) = unpack(self.reaches[start]);
            let run = self.reaches[start] >> 31;
            let len = self.reaches[start..].iter().take_while(|&&r| r >> 31 == run).count();
            let mut signature = Cow::Borrowed(&signatures[start..start + len]);
            start += len;
            if identity.is_any() {
                wildcard[direction.index()] = &signatures[start - len..start];
            } else if self.passes[direction.index()] && !wildcard[direction.index()].is_empty() {
                let mut folded: Vec<u32> = signature.iter().chain(wildcard[direction.index()]).copied().collect();
                folded.sort_unstable();
                folded.dedup();
                signature = Cow::Owned(folded);
            }
            let default_deny = enforced[direction.index()];
            let list = *by_signature.entry((signature, default_deny)).or_insert_with_key(|(signature, _)| {
                let mut space = VerdictSpace::new();
                for &i in signature.iter() {
                    let (lo, hi, verdict, rule) = &self.spans[i as usize];
                    space.add_span(*lo, *hi, verdict.clone(), *rule);
                }
                block_lists.push(space.blocks(default_deny));
                block_lists.len() - 1
            });
            for block in &block_lists[list] {
                // The block's first point is below 2^24: the top byte is
                // the protocol and the low 16 bits the port.
                let key = PolicyKey {
                    identity,
                    direction,
                    protocol: (block.point >> 16) as u8,
                    port: (block.point & 0xffff) as u16,
                    prefix_len: block.prefix_len,
                };
                // A block always has at least one rule: it exists because
                // a span covers it.
                let Some(&rule) = block.rules.first() else { continue };
                let rule_count = u32::try_from(block.rules.len()).unwrap_or(u32::MAX);
                entries.push(PolicyEntry {
                    key,
                    verdict: block.verdict.clone(),
                    rule,
                    rule_count,
                    precedence: block.precedence,
                });
            }
        }
        // Runs come in (peer, direction) order and a run's blocks in point
        // order, which is key order.
        debug_assert!(entries.windows(2).all(|w| w[0].key < w[1].key));
        entries
    }
}

/// Lookups shared by every endpoint's policy map, computed once per
/// resolution.
struct Context<'a> {
    cluster: &'a Cluster,
    identities: &'a BTreeMap<Identity, IdentityInfo>,
    cidr_identities: &'a BTreeMap<Cidr, Identity>,
    /// Endpoint identities and, for each, the endpoints that carry it.
    endpoints_of: BTreeMap<Identity, Vec<EndpointId>>,
    /// Per endpoint identity, the policies whose subject selects it, in
    /// policy order.
    selecting: BTreeMap<Identity, Vec<PolicyId>>,
    /// Per policy and rule: the rule's peers (before `fromRequires` /
    /// `toRequires`, which depend on the subject).
    rule_peers: Vec<Vec<PeerSet>>,
    /// CIDR identities of API server addresses outside the cluster.
    apiserver_cidrs: Vec<Identity>,
    /// The nodes that run the API server.
    apiserver_nodes: BTreeSet<&'a str>,
    /// Per endpoint identity, the admin and baseline policies whose subject
    /// selects it, with the first-match position of their first rule.
    tier_selecting: BTreeMap<Identity, Vec<(usize, u32)>>,
    /// Per admin policy and rule: the peers' identities that do not depend
    /// on the subject's node, sorted.
    tier_rule_peers: Vec<Vec<Vec<Identity>>>,
    /// Whether any admin rule names `networks` or `nodes` (which see the
    /// subject's own node as `host`).
    tier_node_sensitive: bool,
}

impl<'a> Context<'a> {
    fn new(
        cluster: &'a Cluster,
        identity_of: &[Option<Identity>],
        identities: &'a BTreeMap<Identity, IdentityInfo>,
        cidr_identities: &'a BTreeMap<Cidr, Identity>,
    ) -> Self {
        let mut endpoints_of: BTreeMap<Identity, Vec<EndpointId>> = BTreeMap::new();
        for (i, id) in identity_of.iter().enumerate() {
            if let Some(id) = *id {
                endpoints_of.entry(id).or_default().push(EndpointId::new(i));
            }
        }
        // Selectors are matched against endpoint identities (label sets),
        // not endpoints: a selector sees nothing but labels.
        let endpoint_identities: Vec<Identity> = endpoints_of.keys().copied().collect();
        let index = SelectorIndex::new(endpoint_identities.iter().map(|id| &identities[id].selector_labels));
        let mut selecting: BTreeMap<Identity, Vec<PolicyId>> = BTreeMap::new();
        for (p, policy) in cluster.policies_with_ids() {
            if let Subject::Endpoints(selector) = &policy.subject {
                for position in index.matching(selector).iter() {
                    selecting.entry(endpoint_identities[position]).or_default().push(p);
                }
            }
        }
        let apiserver = format!("{RESERVED_PREFIX}{}", Entity::KubeApiserver.name());
        let apiserver_cidrs = identities
            .values()
            .filter(|info| info.identity.is_cidr() && info.selector_labels.get(&apiserver).is_some())
            .map(|info| info.identity)
            .collect();
        let mut context = Context {
            cluster,
            identities,
            cidr_identities,
            endpoints_of,
            selecting,
            rule_peers: Vec::new(),
            apiserver_cidrs,
            apiserver_nodes: cluster.apiserver_nodes(),
            tier_selecting: BTreeMap::new(),
            tier_rule_peers: Vec::new(),
            tier_node_sensitive: false,
        };
        let by_selector = |selector: &LabelSelector| -> BTreeSet<Identity> {
            index.matching(selector).iter().map(|position| endpoint_identities[position]).collect()
        };
        context.rule_peers = crate::parallel::map(&cluster.policies, |policy| {
            policy.rules.iter().map(|rule| context.peers(&rule.peers, &by_selector)).collect()
        });
        // First-match positions count every rule of a tier in its order, so
        // a rule's position is its policy's first plus its index.
        for tier in [Tier::Admin, Tier::Baseline] {
            let mut position = 0u32;
            for p in tier_order(cluster, tier) {
                let policy = &cluster.tier_policies[p];
                for at in index.matching(&policy.subject).iter() {
                    context.tier_selecting.entry(endpoint_identities[at]).or_default().push((p, position));
                }
                position = position.saturating_add(u32::try_from(policy.rules.len()).unwrap_or(u32::MAX));
            }
        }
        context.tier_rule_peers = cluster
            .tier_policies
            .iter()
            .map(|policy| policy.rules.iter().map(|rule| context.tier_peers(rule, &by_selector)).collect())
            .collect();
        context.tier_node_sensitive = cluster
            .tier_policies
            .iter()
            .flat_map(|p| &p.rules)
            .flat_map(|r| &r.peers)
            .any(|peer| !matches!(peer, TierPeer::Endpoints(_)));
        context
    }

    /// The identities of `rule`'s peers that do not depend on the
    /// subject's node: endpoint identities whose every endpoint a peer
    /// selects, and the CIDR and world identities inside its `networks`.
    fn tier_peers(&self, rule: &TierRule, by_selector: &dyn Fn(&LabelSelector) -> BTreeSet<Identity>) -> Vec<Identity> {
        let mut ids = Vec::new();
        for peer in &rule.peers {
            match peer {
                TierPeer::Endpoints(selector) => ids.extend(by_selector(selector)),
                TierPeer::Networks(cidrs) => {
                    let world = [(Cidr::all(false), Identity::WORLD_IPV4), (Cidr::all(true), Identity::WORLD_IPV6)];
                    ids.extend(
                        self.cidr_identities
                            .iter()
                            .map(|(p, id)| (*p, *id))
                            .chain(world)
                            .filter(|(p, _)| cidrs.iter().any(|c| c.covers(*p)))
                            .map(|(_, id)| id),
                    );
                    // "Networks ... will also match pod addresses"
                    // (`AdminNetworkPolicyEgressPeer.Networks`).
                    ids.extend(self.endpoints_of.iter().filter_map(|(&id, endpoints)| {
                        endpoints.iter().all(|&e| self.endpoint_in(e, cidrs)).then_some(id)
                    }));
                }
                TierPeer::Nodes(_) => {}
            }
        }
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    fn endpoint_in(&self, endpoint: EndpointId, cidrs: &[Cidr]) -> bool {
        self.cluster.endpoint(endpoint).ips.iter().any(|ip| cidrs.iter().any(|c| c.contains(*ip)))
    }

    /// Whether admin peer `peer` selects node `n` (by its labels or one of
    /// its addresses).
    fn tier_selects_node(&self, peer: &TierPeer, n: usize) -> bool {
        let party = crate::eval::Party::Node(n);
        crate::tier::peer_matches(self.cluster, peer, party)
    }

    /// The node identities (`host`, `remote-node`, `kube-apiserver`) that
    /// `rule`'s peers select as seen from node `local`: `host` if the local
    /// node is selected, the others if every node behind them is.
    fn tier_node_peers(&self, rule: &TierRule, local: Option<&str>) -> Vec<Identity> {
        let mut ids = Vec::new();
        for (identity, nodes) in self.node_groups(local) {
            if !nodes.is_empty() && nodes.iter().all(|&n| rule.peers.iter().any(|p| self.tier_selects_node(p, n))) {
                ids.push(identity);
            }
        }
        ids
    }

    /// The nodes with addresses behind each node identity, as node `local`
    /// sees them.
    fn node_groups(&self, local: Option<&str>) -> [(Identity, Vec<usize>); 3] {
        let mut groups =
            [(Identity::HOST, Vec::new()), (Identity::REMOTE_NODE, Vec::new()), (Identity::KUBE_APISERVER, Vec::new())];
        for (n, node) in self.cluster.nodes.iter().enumerate() {
            if node.ips.is_empty() {
                continue;
            }
            let group = if Some(node.name.as_str()) == local {
                0
            } else if self.cluster.node_runs_apiserver(n) {
                2
            } else {
                1
            };
            groups[group].1.push(n);
        }
        groups
    }

    /// Every admin or baseline peer that selects some but not all of the
    /// remote nodes behind one node identity, as some node sees them
    /// (endpoints are never split: their identities are keyed by what
    /// admin rules tell apart, [`crate::identity_split`]).
    fn tier_splits(&self) -> Vec<TierSplit> {
        let mut splits = BTreeSet::new();
        // As the nodes of endpoints with addresses see them (an endpoint
        // without one sees no traffic).
        let locals: BTreeSet<Option<&str>> =
            self.cluster.endpoints.iter().filter(|e| !e.ips.is_empty()).map(|e| e.node.as_deref()).collect();
        for (p, policy) in self.cluster.tier_policies.iter().enumerate() {
            for (r, rule) in policy.rules.iter().enumerate() {
                let at = TierRuleRef { policy: p, rule: r };
                for peer in &rule.peers {
                    if matches!(peer, TierPeer::Endpoints(_)) {
                        continue;
                    }
                    for &local in &locals {
                        for (id, nodes) in self.node_groups(local) {
                            let (inside, outside): (Vec<usize>, Vec<usize>) =
                                nodes.iter().partition(|&&n| self.tier_selects_node(peer, n));
                            if let (Some(&i), Some(&o)) = (inside.first(), outside.first()) {
                                splits.insert(TierSplit {
                                    rule: at,
                                    identity: id,
                                    selected: format!("node {}", self.cluster.nodes[i].name),
                                    unselected: format!("node {}", self.cluster.nodes[o].name),
                                });
                            }
                        }
                    }
                }
            }
        }
        splits.into_iter().collect()
    }

    fn entity(&self, entity: Entity) -> BTreeSet<Identity> {
        match entity {
            // Handled by the caller: every peer is the wildcard key.
            Entity::All => BTreeSet::new(),
            Entity::World => [Identity::WORLD, Identity::WORLD_IPV4, Identity::WORLD_IPV6]
                .into_iter()
                .chain(self.cidr_identities.values().copied())
                .collect(),
            // Every reserved identity but the world ones, every pod, and
            // the API server outside the cluster (`crate::reserved`).
            Entity::Cluster => Identity::RESERVED
                .into_iter()
                .filter(|i| !i.is_world())
                .chain(self.endpoints_of.keys().copied())
                .chain(self.apiserver_cidrs.iter().copied())
                .collect(),
            Entity::Host => BTreeSet::from([Identity::HOST]),
            // Identity 7 is also a remote node.
            Entity::RemoteNode => BTreeSet::from([Identity::REMOTE_NODE, Identity::KUBE_APISERVER]),
            // And `host` where the subject's node runs the API server
            // (added per subject by `add_rule`).
            Entity::KubeApiserver => {
                std::iter::once(Identity::KUBE_APISERVER).chain(self.apiserver_cidrs.iter().copied()).collect()
            }
            Entity::Health => BTreeSet::from([Identity::HEALTH]),
            Entity::Init => BTreeSet::from([Identity::INIT]),
            Entity::Ingress => BTreeSet::from([Identity::INGRESS]),
            Entity::Unmanaged => BTreeSet::from([Identity::UNMANAGED]),
            Entity::None => BTreeSet::new(),
        }
    }

    fn peers(&self, peers: &Peers, by_selector: &dyn Fn(&LabelSelector) -> BTreeSet<Identity>) -> PeerSet {
        let list = match peers {
            Peers::Any => return PeerSet::Any,
            Peers::Only(list) => list,
        };
        // Gathered in a vector and sorted once: inserting thousands of
        // identities (`toEntities: [cluster]`) into a set one by one, for
        // each of thousands of rules, was the largest part of this step.
        let mut ids = Vec::new();
        for peer in list {
            match peer {
                Peer::Endpoints(selector) => ids.extend(by_selector(selector)),
                Peer::Cidr { cidr, except } => {
                    let world = [(Cidr::all(false), Identity::WORLD_IPV4), (Cidr::all(true), Identity::WORLD_IPV6)];
                    ids.extend(
                        self.cidr_identities
                            .iter()
                            .map(|(p, id)| (*p, *id))
                            .chain(world)
                            .filter(|(p, _)| cidr.covers(*p) && !except.iter().any(|e| e.covers(*p)))
                            .map(|(_, id)| id),
                    );
                }
                Peer::Entity(Entity::All) => return PeerSet::Any,
                Peer::Entity(entity) => ids.extend(self.entity(*entity)),
            }
        }
        PeerSet::from_ids(ids)
    }

    /// Restricts `set` to identities whose selector labels meet every
    /// requirement (expanding the wildcard into explicit identities).
    /// `apiserver_local`: the subject's node runs the API server, so its
    /// `host` also carries `reserved:kube-apiserver`.
    fn require(&self, set: &PeerSet, requirements: &[&LabelSelector], apiserver_local: bool) -> PeerSet {
        let host = reserved::as_labels(&[Entity::Host, Entity::KubeApiserver]);
        let meets = |id: &Identity| {
            let labels = match self.identities.get(id) {
                Some(_) if *id == Identity::HOST && apiserver_local => &host,
                Some(info) => &info.selector_labels,
                None => return false,
            };
            requirements.iter().all(|r| r.matches(labels))
        };
        match set {
            PeerSet::Any => PeerSet::Ids(self.identities.keys().copied().filter(meets).collect()),
            PeerSet::Ids(ids) => PeerSet::Ids(ids.iter().copied().filter(meets).collect()),
        }
    }

    /// The endpoint identities of `set`.
    fn endpoint_ids(&self, set: &PeerSet) -> Vec<Identity> {
        match set {
            PeerSet::Any => self.endpoints_of.keys().copied().collect(),
            PeerSet::Ids(ids) => ids.iter().copied().filter(|id| self.endpoints_of.contains_key(id)).collect(),
        }
    }

    /// The policy maps of `subjects` (endpoint, its identity), in order,
    /// computed on every available core: they are independent of each
    /// other, and each is a pure function of the subject, so the result
    /// does not depend on the number of threads.
    fn policy_maps(&self, subjects: &[(EndpointId, Identity)]) -> Vec<Arc<PolicyMap>> {
        crate::parallel::map(subjects, |&(subject, identity)| Arc::new(self.policy_map(subject, identity)))
    }

    /// The policy map of endpoint `subject`, whose identity is `identity`.
    fn policy_map(&self, subject: EndpointId, identity: Identity) -> PolicyMap {
        let selecting = self.selecting.get(&identity).map_or(&[][..], Vec::as_slice);
        let apiserver_local =
            self.cluster.endpoint(subject).node.as_deref().is_some_and(|n| self.apiserver_nodes.contains(n));
        let mut enforced = [false; 2];
        // Per action (allow, deny) and direction.
        let mut requirements: [[Vec<&LabelSelector>; 2]; 2] = Default::default();
        for &p in selecting {
            let policy = self.cluster.policy(p);
            for dir in Direction::BOTH {
                enforced[dir.index()] |= policy.enforces(dir);
                requirements[0][dir.index()].extend(&policy.requires[dir.index()]);
                requirements[1][dir.index()].extend(&policy.deny_requires[dir.index()]);
            }
        }

        let mut spans = SpanCollector::default();
        for &p in selecting {
            let policy = self.cluster.policy(p);
            for (r, rule) in policy.rules.iter().enumerate() {
                let at = RuleRef::new(p, r);
                // As in `eval`: requirements do not narrow the built-in allow.
                let action = usize::from(rule.action == Action::Deny);
                let required: &[&LabelSelector] =
                    if policy.is_builtin() { &[] } else { &requirements[action][rule.direction.index()] };
                self.add_rule(&mut spans, (subject, apiserver_local), rule, at, required);
            }
        }
        let tiers = self.tier_selecting.get(&identity).map_or(&[][..], Vec::as_slice);
        let local = self.cluster.endpoint(subject).node.as_deref();
        for &(p, first) in tiers {
            let policy = &self.cluster.tier_policies[p];
            for (r, rule) in policy.rules.iter().enumerate() {
                // The baseline is asked only where no NetworkPolicy
                // isolates the endpoint ("v1.NetworkPolicy always makes a
                // final decision for selected pods", `ClusterNetworkPolicySpec.Tier`).
                if policy.tier == Tier::Baseline && enforced[rule.direction.index()] {
                    continue;
                }
                let order = first.saturating_add(u32::try_from(r).unwrap_or(u32::MAX));
                let verdict = match (policy.tier, rule.action) {
                    (Tier::Admin, TierAction::Pass) => {
                        spans.passes[rule.direction.index()] = true;
                        SpanVerdict { precedence: Precedence::Admin(order), action: SpanAction::Pass }
                    }
                    (tier, action) => {
                        let precedence =
                            if tier == Tier::Admin { Precedence::Admin(order) } else { Precedence::Baseline(order) };
                        // A baseline `Pass` goes to the default, which is
                        // allow where the baseline is asked.
                        let verdict = if action == TierAction::Deny { MapVerdict::Deny } else { MapVerdict::Allow };
                        SpanVerdict { precedence, action: SpanAction::Verdict(verdict) }
                    }
                };
                let mut peers = self.tier_rule_peers[p][r].clone();
                if self.tier_node_sensitive {
                    peers.extend(self.tier_node_peers(rule, local));
                    peers.sort_unstable();
                    peers.dedup();
                }
                let at = self.cluster.tier_rule_ref(TierRuleRef { policy: p, rule: r });
                self.add_tier_rule(&mut spans, subject, rule, at, &peers, &verdict);
            }
        }
        PolicyMap { enforced, entries: spans.entries(enforced) }
    }

    /// Adds the spans of admin or baseline `rule` (named `at`) for the
    /// identities `peers`. Ports as [`crate::tier`] reads them: a named port
    /// is the destination's (the subject's on ingress, each peer
    /// identity's endpoints' on egress).
    fn add_tier_rule(
        &self,
        spans: &mut SpanCollector,
        subject: EndpointId,
        rule: &TierRule,
        at: RuleRef,
        peers: &[Identity],
        verdict: &SpanVerdict,
    ) {
        let named = |name: &str, protocol: Protocol| -> Vec<(Vec<Identity>, u16)> {
            peers
                .iter()
                .flat_map(|&id| {
                    let ports: BTreeSet<u16> = self
                        .endpoints_of
                        .get(&id)
                        .into_iter()
                        .flatten()
                        .filter_map(|&e| self.cluster.endpoint(e).named_port(name, protocol))
                        .collect();
                    ports.into_iter().map(move |port| (vec![id], port))
                })
                .collect()
        };
        self.add_port_spans(spans, (subject, rule.direction), rule.ports.as_deref(), peers, (verdict, at), named);
    }

    fn add_rule(
        &self,
        spans: &mut SpanCollector,
        (subject, apiserver_local): (EndpointId, bool),
        rule: &Rule,
        at: RuleRef,
        requirements: &[&LabelSelector],
    ) {
        let dir = rule.direction;
        let verdict = SpanVerdict::network_policy(match (rule.action, &rule.l7) {
            (Action::Deny, _) => MapVerdict::Deny,
            (Action::Allow, Some(l7)) => MapVerdict::Redirect(l7.parser.clone()),
            (Action::Allow, None) => MapVerdict::Allow,
        });
        let mut cached = Cow::Borrowed(&self.rule_peers[at.policy.index()][at.rule_index()]);
        if apiserver_local && names_apiserver(rule) {
            if let PeerSet::Ids(ids) = cached.as_ref() {
                cached = Cow::Owned(PeerSet::from_ids(ids.iter().copied().chain([Identity::HOST]).collect()));
            }
        }
        let required;
        let peers = if !requirements.is_empty() {
            required = self.require(&cached, requirements, apiserver_local);
            &required
        } else {
            cached.as_ref()
        };
        let keys: &[Identity] = match peers {
            PeerSet::Any => &[Identity::ANY],
            PeerSet::Ids(ids) => ids,
        };
        let cilium = self.cluster.policy(at.policy).origin.kind.is_cilium();
        let named = |name: &str, protocol: Protocol| -> Vec<(Vec<Identity>, u16)> {
            if cilium {
                // Cilium: one number for the whole cluster, whatever the
                // peer (`Cluster::cluster_named_port`).
                return self
                    .cluster
                    .cluster_named_port(name, protocol)
                    .map(|port| (keys.to_vec(), port))
                    .into_iter()
                    .collect();
            }
            // Kubernetes: the peer's named port: per identity, every number
            // its endpoints give the name (exact when endpoints sharing an
            // identity agree).
            self.endpoint_ids(peers)
                .into_iter()
                .flat_map(|id| {
                    let ports: BTreeSet<u16> = self.endpoints_of[&id]
                        .iter()
                        .filter_map(|&e| self.cluster.endpoint(e).named_port(name, protocol))
                        .collect();
                    ports.into_iter().map(move |port| (vec![id], port))
                })
                .collect()
        };
        self.add_port_spans(spans, (subject, dir), rule.ports.as_deref(), keys, (&verdict, at), named);
    }

    /// Adds the spans of a rule's `ports` (`None`: every port) for `keys`
    /// with `verdict`. A named port is the destination's: on ingress the
    /// subject's; on egress `egress_named` gives the identities and numbers
    /// it stands for (Cilium, Kubernetes and admin rules read it apart).
    fn add_port_spans(
        &self,
        spans: &mut SpanCollector,
        (subject, dir): (EndpointId, Direction),
        ports: Option<&[PortMatch]>,
        keys: &[Identity],
        (verdict, at): (&SpanVerdict, RuleRef),
        egress_named: impl Fn(&str, Protocol) -> Vec<(Vec<Identity>, u16)>,
    ) {
        let Some(matches) = ports else {
            spans.add(keys, dir, 0, PORT_SPACE_MAX, verdict, at);
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
                    PortSpec::All => {
                        spans.add(keys, dir, port_space_point(n, 0), port_space_point(n, u16::MAX), verdict, at);
                    }
                    PortSpec::Range(range) => {
                        let (lo, hi) = (port_space_point(n, range.lo), port_space_point(n, range.hi));
                        spans.add(keys, dir, lo, hi, verdict, at);
                    }
                    PortSpec::Named(name) => {
                        let points: Vec<(Vec<Identity>, u16)> = match dir {
                            Direction::Ingress => {
                                let port = self.cluster.endpoint(subject).named_port(name.as_str(), protocol);
                                port.map(|port| (keys.to_vec(), port)).into_iter().collect()
                            }
                            Direction::Egress => egress_named(name.as_str(), protocol),
                        };
                        for (ids, port) in points {
                            let point = port_space_point(n, port);
                            spans.add(&ids, dir, point, point, verdict, at);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_reaches_sort_as_their_triples_and_unpack() {
        let mut triples = Vec::new();
        for peer in [Identity::ANY, Identity(u32::MAX), Identity(1), Identity(256), Identity(1 << 24 | 5)] {
            for direction in Direction::BOTH {
                for span in [0, 1, 7, 0x7fff_ffff] {
                    triples.push((peer, direction, span));
                }
            }
        }
        let mut packed: Vec<u64> = triples.iter().rev().map(|&(p, d, s)| reach(p, d, s)).collect();
        packed.sort_unstable();
        triples.sort_unstable();
        assert_eq!(packed.into_iter().map(unpack).collect::<Vec<_>>(), triples);
    }
}
