//! Named ports (W0204): a port name in a rule that none of the pods it
//! resolves against defines, so the rule covers no port at all.
//!
//! Ingress named ports resolve against the selected (destination) pods;
//! egress named ports against the peer pods.

use super::{at_rule, Facts};
use crate::diag::{codes, Diagnostic};
use crate::front::spans::CitedKind;
use crate::pipeline::Loaded;
use policyc_ir::ids::RuleRef;
use policyc_ir::policy::{Entity, Peer, Peers, PortSpec};
use policyc_ir::protocol::{Direction, Protocol};

/// W0204.
pub(super) fn undefined_named_ports(loaded: &Loaded, facts: &Facts, out: &mut Vec<Diagnostic>) {
    let cluster = &loaded.lowered.cluster;
    for (p, policy) in cluster.written_policies() {
        let subjects = &facts.subjects[p.index()];
        if subjects.is_empty() {
            continue; // W0201 already says the policy selects nothing
        }
        for (r, rule) in policy.rules.iter().enumerate() {
            let Some(matches) = &rule.ports else { continue };
            if !matches.iter().any(|m| matches!(m.ports, PortSpec::Named(_))) {
                continue;
            }
            let candidates: Vec<usize> = match rule.direction {
                Direction::Ingress => subjects.to_vec(),
                Direction::Egress => match &rule.peers {
                    Peers::Any => (0..cluster.endpoints.len()).collect(),
                    Peers::Only(peers)
                        if peers.iter().any(|p| matches!(p, Peer::Entity(Entity::All | Entity::Cluster))) =>
                    {
                        (0..cluster.endpoints.len()).collect()
                    }
                    Peers::Only(peers) => {
                        let mut all: Vec<usize> = peers
                            .iter()
                            .filter_map(|peer| match peer {
                                Peer::Endpoints(selector) => Some(facts.endpoints(selector)),
                                _ => None,
                            })
                            .flatten()
                            .collect();
                        all.sort_unstable();
                        all.dedup();
                        all
                    }
                },
            };
            for m in matches {
                let PortSpec::Named(name) = &m.ports else { continue };
                let protocols = match m.protocol {
                    Some(protocol) => vec![protocol],
                    None => Protocol::WITH_PORTS.to_vec(),
                };
                let defined = candidates
                    .iter()
                    .any(|&i| protocols.iter().any(|&proto| cluster.endpoints[i].named_port(name, proto).is_some()));
                if !defined {
                    let whose = match rule.direction {
                        Direction::Ingress => "the pods the policy selects",
                        Direction::Egress => "the peer pods",
                    };
                    // The first `port: NAME` of the rule: the name is what is wrong.
                    let location = at_rule(loaded, RuleRef::new(p, r), |c| match &c.what {
                        CitedKind::Port(written) if written == name => Some((c.path.as_str(), c.pos)),
                        _ => None,
                    });
                    out.push(
                        Diagnostic::new(
                            codes::UNDEFINED_NAMED_PORT,
                            location,
                            format!("named port `{name}` is defined by none of {whose}"),
                        )
                        .with_help("the rule covers no port; check the name against the pods' container ports"),
                    );
                }
            }
        }
    }
}
