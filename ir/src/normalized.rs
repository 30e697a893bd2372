//! The cluster's policy in a normalized form that any label set can be
//! evaluated against: what a bundle carries so that the node agent gives a
//! pod whose label set the bundle does not know (a Job run's `job-name`, a
//! pod labelled by hand) an identity and a policy with the same code the
//! compiler uses ([`crate::resolve`]).
//!
//! It is the lowered [`Cluster`] with its policies (every tier), nodes,
//! namespaces and the API server's addresses as they are, and its
//! endpoints cut to one representative per distinct (label set, named
//! ports, runs on a node of the API server): that is all a policy map
//! depends on ([`crate::resolve::resolve_with_previous`] shares maps on
//! the same key), and peers are identities, not pods. Representatives have
//! no addresses: the agent binds addresses live. The compiled identity
//! table comes along, so the bundle's numbers stay as compiled.
//!
//! Identities the agent gives label sets the bundle does not know are in
//! [`NODE_COMPUTED_MIN`]`..=`[`NODE_COMPUTED_MAX`], a range the compiler
//! never allocates (see there).

use crate::cluster::{Cluster, Endpoint};
use crate::identity::{fnv1a64, Identity, IdentityTable};
use crate::identity_split::identity_keys;
use crate::labels::Labels;
use crate::resolve::{resolve_for, Resolved};
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// Version of the normalized form; bumped on any incompatible change.
pub const FORMAT: u32 = 1;

/// First identity the node agent computes. Cilium keeps a cluster-mesh
/// cluster id in bits 16–23 of a cluster-scoped identity
/// (<https://docs.cilium.io/en/stable/network/clustermesh/clustermesh/>,
/// "Cluster ID"); policyc compiles only cluster id 0 (`256..=65535`) and
/// CIDR identities (`1<<24 | n`), so cluster id 255's range,
/// `0xFF0000..=0xFFFFFF`, never meets a compiled number.
pub const NODE_COMPUTED_MIN: u32 = 0x00FF_0000;
/// Last identity the node agent computes.
pub const NODE_COMPUTED_MAX: u32 = 0x00FF_FFFF;

/// Whether `identity` is one the node agent computes.
pub fn is_node_computed(identity: Identity) -> bool {
    (NODE_COMPUTED_MIN..=NODE_COMPUTED_MAX).contains(&identity.get())
}

/// The normalized policy of a cluster.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NormalizedPolicy {
    /// [`FORMAT`].
    pub format: u32,
    /// The compiled identity of each endpoint of [`NormalizedPolicy::cluster`]
    /// (`None` for a label set that found no number), in the same order:
    /// the labels are the endpoint's, written once.
    pub identities: Vec<Option<Identity>>,
    /// The cluster, its endpoints cut to representatives.
    pub cluster: Cluster,
}

/// What [`NormalizedPolicy::resolve`] gives.
#[derive(Clone, Debug)]
pub struct NodeResolution {
    /// The resolution: identities, and the maps of the wanted endpoints.
    pub resolved: Resolved,
    /// Identities given to label sets the bundle does not know, by label
    /// set; `None` for those past the end of the range.
    pub computed: BTreeMap<Labels, Option<Identity>>,
    /// Index in [`Resolved::endpoints`] of the first extra endpoint.
    pub first_extra: usize,
}

impl NormalizedPolicy {
    /// The normalized form of `cluster`, whose identities are `table`.
    pub fn new(cluster: &Cluster, table: &IdentityTable) -> NormalizedPolicy {
        let apiserver_nodes = cluster.apiserver_nodes();
        let mut seen = HashSet::new();
        let mut endpoints = Vec::new();
        // A representative carries its identity's key as its labels: the
        // facts an admin rule splits a label set by
        // ([`crate::identity_split`]) cannot be derived again without the
        // addresses, and selectors never see them.
        for (e, key) in cluster.endpoints.iter().zip(identity_keys(cluster)) {
            let mut named_ports = e.named_ports.clone();
            named_ports.sort();
            named_ports.dedup();
            let node = e.node.clone().filter(|n| apiserver_nodes.contains(n.as_str()));
            if seen.insert((key.clone(), named_ports.clone(), node.clone())) {
                endpoints.push(Endpoint { ips: Vec::new(), node, named_ports, labels: key.into_owned(), ..e.clone() });
            }
        }
        // An API server address of a pod resolves to the pod; without the
        // pods' addresses it would look outside the cluster.
        let apiserver = cluster.apiserver.iter().copied().filter(|&ip| cluster.endpoint_by_ip(ip).is_none()).collect();
        NormalizedPolicy {
            format: FORMAT,
            identities: endpoints.iter().map(|e| table.get(&e.labels)).collect(),
            cluster: Cluster { endpoints, apiserver, services: Vec::new(), ..cluster.clone() },
        }
    }

    /// The compiled identity table.
    pub fn table(&self) -> IdentityTable {
        IdentityTable::from_assignments(self.assignments())
    }

    /// `(labels, identity)` of every endpoint with an identity.
    fn assignments(&self) -> impl Iterator<Item = (Labels, Identity)> + '_ {
        self.cluster.endpoints.iter().zip(&self.identities).filter_map(|(e, id)| Some((e.labels.clone(), (*id)?)))
    }

    /// Identities for the label sets of `label_sets` the bundle does not
    /// know: in label order, each from the slot its canonical text hashes
    /// to (FNV-1a 64, as [`crate::identity::home_slot`]) up, wrapping in
    /// the range; `None` once the range is full. The number of a label set
    /// depends only on the unknown label sets colliding with it, so it is
    /// the same across restarts of the agent that sees the same pods.
    pub fn allocate<'a>(&self, label_sets: impl IntoIterator<Item = &'a Labels>) -> BTreeMap<Labels, Option<Identity>> {
        let known: HashSet<&Labels> = self
            .cluster
            .endpoints
            .iter()
            .zip(&self.identities)
            .filter(|(_, id)| id.is_some())
            .map(|(e, _)| &e.labels)
            .collect();
        let unknown: BTreeSet<&Labels> = label_sets.into_iter().filter(|l| !known.contains(l)).collect();
        let span = NODE_COMPUTED_MAX - NODE_COMPUTED_MIN + 1;
        let mut used = BTreeSet::new();
        unknown
            .into_iter()
            .map(|labels| {
                let home = (fnv1a64(labels.to_string().as_bytes()) % u64::from(span)) as u32;
                let id = (0..span)
                    .map(|probe| NODE_COMPUTED_MIN + (home + probe) % span)
                    .find(|id| !used.contains(id))
                    .inspect(|&id| {
                        used.insert(id);
                    });
                (labels.clone(), id.map(Identity))
            })
            .collect()
    }

    /// Resolves the cluster with `extra` endpoints added (the live pods
    /// whose label sets the bundle may not know): the bundle's identities
    /// as compiled, the others from [`NormalizedPolicy::allocate`]. Policy
    /// maps are computed for the extra endpoints and for the
    /// representatives `wanted` accepts.
    pub fn resolve(&self, extra: &[Endpoint], wanted: &dyn Fn(&Endpoint) -> bool) -> NodeResolution {
        let computed = self.allocate(extra.iter().map(|e| &e.labels));
        let table = IdentityTable::from_assignments(
            self.assignments().chain(computed.iter().filter_map(|(l, id)| Some((l.clone(), (*id)?)))),
        );
        let exhausted = computed.iter().filter(|(_, id)| id.is_none()).map(|(l, _)| l.clone()).collect();
        let first_extra = self.cluster.endpoints.len();
        let mut cluster = self.cluster.clone();
        cluster.endpoints.extend(extra.iter().cloned());
        let resolved = resolve_for(&cluster, table, exhausted, &|id, e| id.index() >= first_extra || wanted(e));
        NodeResolution { resolved, computed, first_extra }
    }
}
