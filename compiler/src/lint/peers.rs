//! Rules about peers: an `except` that removes the whole block (W0205) and
//! ingress from the whole world on every port (W0206).

use super::{at_policy, locate, policy_node, Trees};
use crate::diag::{codes, Diagnostic};
use crate::front::yaml::{Node, Value};
use crate::pipeline::Loaded;
use policyc_ir::cidr::Cidr;
use policyc_ir::policy::{Action, Entity, Peer, Peers};
use policyc_ir::protocol::Direction;

/// W0205: `except` holds a prefix that contains the rule's `cidr`, so the
/// peer selects no address.
pub(super) fn excepts_excluding_all(loaded: &Loaded, trees: &Trees, out: &mut Vec<Diagnostic>) {
    for (p, policy) in loaded.lowered.cluster.policies.iter().enumerate() {
        for rule in &policy.rules {
            let Peers::Only(peers) = &rule.peers else { continue };
            for peer in peers {
                let Peer::Cidr { cidr, except } = peer else { continue };
                if let Some(e) = except.iter().find(|e| e.covers(*cidr)) {
                    // The `except` entry, in the block (`ipBlock`, a
                    // `CIDRSet` entry) with this `cidr`.
                    let path = policy_node(loaded, trees, p, &rule.path).and_then(|node| {
                        let (block, n) = locate::find(node, &rule.path, &|_, n| {
                            n.get("cidr").is_some_and(|c| is_cidr(c, *cidr)) && except_index(n, *e).is_some()
                        })?;
                        Some(format!("{block}.except[{}]", except_index(n, *e)?))
                    });
                    out.push(
                        Diagnostic::new(
                            codes::EXCEPT_EXCLUDES_ALL,
                            at_policy(loaded, p, path.as_deref().unwrap_or(&rule.path)),
                            format!("`except` `{e}` excludes all of `{cidr}`: the peer selects no address"),
                        )
                        .with_help("an `except` must be a smaller prefix inside the `cidr`"),
                    );
                }
            }
        }
    }
}

/// W0206: an ingress allow rule whose peers include the whole world
/// (`world`, `all`, `0.0.0.0/0` or `::/0` without `except`) and that has
/// no port restriction.
pub(super) fn world_ingress_all_ports(loaded: &Loaded, trees: &Trees, out: &mut Vec<Diagnostic>) {
    for (p, policy) in loaded.lowered.cluster.policies.iter().enumerate() {
        for rule in &policy.rules {
            if rule.direction != Direction::Ingress || rule.action != Action::Allow || rule.ports.is_some() {
                continue;
            }
            let Peers::Only(peers) = &rule.peers else { continue };
            let world = peers.iter().find(|peer| match peer {
                Peer::Entity(e) => matches!(e, Entity::World | Entity::All),
                Peer::Cidr { cidr, except } => cidr.prefix_len() == 0 && except.is_empty(),
                _ => false,
            });
            if let Some(peer) = world {
                let world = match peer {
                    Peer::Cidr { cidr, .. } => format!("`{cidr}`"),
                    Peer::Entity(e) => format!("`{}`", e.name()),
                    Peer::Endpoints(_) => unreachable!("only entities and CIDRs are the world"),
                };
                // The entity or prefix that names the world.
                let path = policy_node(loaded, trees, p, &rule.path)
                    .and_then(|node| locate::find(node, &rule.path, &|field, n| names_peer(field, n, peer)))
                    .map(|(path, _)| path);
                out.push(
                    Diagnostic::new(
                        codes::WORLD_INGRESS_ALL_PORTS,
                        at_policy(loaded, p, path.as_deref().unwrap_or(&rule.path)),
                        format!("ingress from {world} is allowed on every port and protocol"),
                    )
                    .with_help("restrict the rule to the ports the service listens on"),
                );
            }
        }
    }
}

/// Whether `node` is a CIDR text equal to `cidr`.
fn is_cidr(node: &Node, cidr: Cidr) -> bool {
    node.as_str().and_then(|s| Cidr::parse_strict(s).ok()) == Some(cidr)
}

/// The index of `except` in a block's `except` list.
fn except_index(block: &Node, except: Cidr) -> Option<usize> {
    match &block.get("except")?.value {
        Value::Seq(items) => items.iter().position(|item| is_cidr(item, except)),
        _ => None,
    }
}

/// Whether the source `node`, held by `field`, writes `peer` (an entity,
/// or a prefix without `except`).
fn names_peer(field: &str, node: &Node, peer: &Peer) -> bool {
    let Some(text) = node.as_str() else { return false };
    let entity = field.ends_with("Entities");
    match peer {
        Peer::Entity(e) => entity && text == e.name(),
        Peer::Cidr { cidr, .. } => {
            let family = if cidr.is_ipv6() { "world-ipv6" } else { "world-ipv4" };
            (entity && text == family) || (matches!(field, "fromCIDR" | "cidr") && is_cidr(node, *cidr))
        }
        Peer::Endpoints(_) => false,
    }
}
