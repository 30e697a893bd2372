//! Rules about peers: an `except` that removes the whole block (W0205) and
//! ingress from the whole world on every port (W0206).

use super::at_rule;
use crate::diag::{codes, Diagnostic};
use crate::front::spans::CitedKind;
use crate::pipeline::Loaded;
use policyc_ir::ids::RuleRef;
use policyc_ir::policy::{Action, Entity, Peer, Peers};
use policyc_ir::protocol::Direction;

/// W0205: `except` holds a prefix that contains the rule's `cidr`, so the
/// peer selects no address.
pub(super) fn excepts_excluding_all(loaded: &Loaded, out: &mut Vec<Diagnostic>) {
    for (p, policy) in loaded.lowered.cluster.written_policies() {
        for (r, rule) in policy.rules.iter().enumerate() {
            let Peers::Only(peers) = &rule.peers else { continue };
            for peer in peers {
                let Peer::Cidr { cidr, except } = peer else { continue };
                if let Some(e) = except.iter().find(|e| e.covers(*cidr)) {
                    // The `except` entry, in the block (`ipBlock`, a
                    // `CIDRSet` entry) with this `cidr`.
                    let location = at_rule(loaded, RuleRef::new(p, r), |c| match &c.what {
                        CitedKind::Block(block, excepts) if block == cidr => {
                            excepts.iter().find(|(x, _, _)| x == e).map(|(_, path, pos)| (path.as_str(), *pos))
                        }
                        _ => None,
                    });
                    out.push(
                        Diagnostic::new(
                            codes::EXCEPT_EXCLUDES_ALL,
                            location,
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
pub(super) fn world_ingress_all_ports(loaded: &Loaded, out: &mut Vec<Diagnostic>) {
    for (p, policy) in loaded.lowered.cluster.written_policies() {
        for (r, rule) in policy.rules.iter().enumerate() {
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
                let location = at_rule(loaded, RuleRef::new(p, r), |c| {
                    names_peer(&c.what, peer).then_some((c.path.as_str(), c.pos))
                });
                out.push(
                    Diagnostic::new(
                        codes::WORLD_INGRESS_ALL_PORTS,
                        location,
                        format!("ingress from {world} is allowed on every port and protocol"),
                    )
                    .with_help("restrict the rule to the ports the service listens on"),
                );
            }
        }
    }
}

/// Whether the cited part of a rule writes `peer` (an entity, or a prefix
/// without `except`).
fn names_peer(what: &CitedKind, peer: &Peer) -> bool {
    match (what, peer) {
        (CitedKind::Entity(text), Peer::Entity(e)) => text == e.name(),
        (CitedKind::Entity(text), Peer::Cidr { cidr, .. }) => {
            text == if cidr.is_ipv6() { "world-ipv6" } else { "world-ipv4" }
        }
        (CitedKind::Prefix(written), Peer::Cidr { cidr, .. }) => written == cidr,
        _ => false,
    }
}
