//! Rules about peers: an `except` that removes the whole block (W0205) and
//! ingress from the whole world on every port (W0206).

use super::at_policy;
use crate::diag::{codes, Diagnostic};
use crate::pipeline::Loaded;
use policyc_ir::policy::{Action, Entity, Peer, Peers};
use policyc_ir::protocol::Direction;

/// W0205: `except` holds a prefix that contains the rule's `cidr`, so the
/// peer selects no address.
pub(super) fn excepts_excluding_all(loaded: &Loaded, out: &mut Vec<Diagnostic>) {
    for (p, policy) in loaded.lowered.cluster.policies.iter().enumerate() {
        for rule in &policy.rules {
            let Peers::Only(peers) = &rule.peers else { continue };
            for peer in peers {
                let Peer::Cidr { cidr, except } = peer else { continue };
                if let Some(e) = except.iter().find(|e| e.covers(*cidr)) {
                    out.push(
                        Diagnostic::new(
                            codes::EXCEPT_EXCLUDES_ALL,
                            at_policy(loaded, p, &rule.path),
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
    for (p, policy) in loaded.lowered.cluster.policies.iter().enumerate() {
        for rule in &policy.rules {
            if rule.direction != Direction::Ingress || rule.action != Action::Allow || rule.ports.is_some() {
                continue;
            }
            let Peers::Only(peers) = &rule.peers else { continue };
            let world = peers.iter().find_map(|peer| match peer {
                Peer::Entity(Entity::World) => Some("`world`".to_string()),
                Peer::Entity(Entity::All) => Some("`all`".to_string()),
                Peer::Cidr { cidr, except } if cidr.prefix_len() == 0 && except.is_empty() => Some(format!("`{cidr}`")),
                _ => None,
            });
            if let Some(world) = world {
                out.push(
                    Diagnostic::new(
                        codes::WORLD_INGRESS_ALL_PORTS,
                        at_policy(loaded, p, &rule.path),
                        format!("ingress from {world} is allowed on every port and protocol"),
                    )
                    .with_help("restrict the rule to the ports the service listens on"),
                );
            }
        }
    }
}
