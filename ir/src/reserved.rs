//! The reserved labels of a peer that is no endpoint, as one endpoint sees
//! it: what Cilium's entities (and `reserved:` selectors) are matched
//! against.
//!
//! Cilium gives such a peer one identity whose labels are every reserved
//! label its address has (`pkg/ipcache/metadata.go`, `resolveIdentity`):
//! - a node's address is `reserved:host` on that node and
//!   `reserved:remote-node` on the others;
//! - the addresses behind Service `default/kubernetes` also carry
//!   `reserved:kube-apiserver`. On the node itself they keep the `host`
//!   identity, whose labels gain `reserved:kube-apiserver` (the host
//!   identity stands for every address of the node); on the other nodes
//!   they take identity 7, whose labels are `reserved:kube-apiserver` and
//!   `reserved:remote-node` (`pkg/identity/numericidentity.go`); outside
//!   the cluster they take a CIDR identity that also carries
//!   `reserved:kube-apiserver`, so `world`, CIDR rules and `kube-apiserver`
//!   all select them;
//! - `cluster` selects every reserved label but `world`'s, `kube-apiserver`
//!   included (`pkg/policy/api/entity.go`, `InitEntities`).
//!
//! An address of the API server that is also a pod's (an API server on the
//! pod network) is where policyc parts from Cilium: Cilium's ipcache gives
//! `kube-apiserver` state the strongest ownership of an address
//! (`pkg/source/source.go`, `AllowOverwrite`), so there the address takes
//! an identity with `reserved:kube-apiserver`; policyc keeps the pod's
//! identity for it (a pod is one peer, whatever address it uses), in
//! `eval` and in the maps alike, and `lint` warns (W0210).
//!
//! policyc decides per node, not per address, whether a node runs the API
//! server (one of its addresses is behind `default/kubernetes`): on the
//! node itself that is exactly Cilium's `host` identity; on the others
//! every address of that node takes identity 7, where Cilium gives it to
//! the API server's address alone (a node is one peer in policyc's
//! analyses, which name nodes, not their addresses).

use crate::cluster::{Cluster, Endpoint};
use crate::eval::Party;
use crate::labels::{Labels, RESERVED_PREFIX};
use crate::policy::Entity;

/// The reserved labels `party` carries for endpoint `subject`, by entity
/// (`reserved:host` is [`Entity::Host`]); `None` for an endpoint, which
/// carries its own labels.
pub fn reserved_labels(cluster: &Cluster, subject: &Endpoint, party: Party) -> Option<Vec<Entity>> {
    Some(match party {
        Party::Endpoint(_) => return None,
        // A pod's address keeps the pod's identity in the ipcache even where
        // `default/kubernetes` names it (W0210): no `kube-apiserver` there.
        Party::External(ip) if cluster.is_apiserver_address(ip) && cluster.endpoint_by_ip(ip).is_none() => {
            vec![Entity::World, Entity::KubeApiserver]
        }
        Party::External(_) => vec![Entity::World],
        // Identity 7's labels.
        Party::Reserved(Entity::KubeApiserver) => vec![Entity::KubeApiserver, Entity::RemoteNode],
        Party::Reserved(entity) => vec![entity],
        Party::Node(n) => {
            let local = cluster.nodes.get(n).is_some_and(|node| subject.node.as_deref() == Some(&node.name));
            let node = if local { Entity::Host } else { Entity::RemoteNode };
            if cluster.node_runs_apiserver(n) {
                vec![node, Entity::KubeApiserver]
            } else {
                vec![node]
            }
        }
    })
}

/// Whether `entity` selects a peer with `reserved` labels (`None`: an
/// endpoint of the cluster).
pub fn entity_selects(entity: Entity, reserved: Option<&[Entity]>) -> bool {
    match (entity, reserved) {
        (Entity::All, _) => true,
        (Entity::None, _) => false,
        (Entity::Cluster, None) => true,
        (Entity::Cluster, Some(labels)) => labels.iter().any(|&e| e != Entity::World),
        (_, None) => false,
        (entity, Some(labels)) => labels.contains(&entity),
    }
}

/// `reserved` as a label set (`reserved:host`, ...), which
/// `fromRequires`/`toRequires` selectors are tested against.
pub fn as_labels(reserved: &[Entity]) -> Labels {
    Labels::from_pairs(reserved.iter().map(|e| (format!("{RESERVED_PREFIX}{}", e.name()), "")))
}
