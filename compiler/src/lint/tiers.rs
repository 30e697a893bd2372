//! W0209: two admin (or baseline) policies of one tier and one priority
//! whose rules match the same traffic with different actions. Their order
//! is not defined ("The behavior is undefined if two ANP objects have same
//! priority", `AdminNetworkPolicySpec.Priority` in network-policy-api
//! `apis/v1alpha1`; in v1alpha2 "the implementation can apply any of the
//! matching policies"), so the verdict depends on the implementation.
//! policyc orders them by kind and name ([`policyc_ir::tier::tier_order`]);
//! the warning says the answer is policyc's, not the API's. Rules that
//! agree on the action are left alone: their order changes nothing.

use super::Facts;
use crate::diag::{codes, Diagnostic};
use crate::pipeline::Loaded;
use policyc_ir::eval::Party;
use policyc_ir::ids::EndpointId;
use policyc_ir::policy::{PortMatch, PortSpec};
use policyc_ir::tier::{peer_matches, TierPeer, TierRule};

/// Warns on each pair of same-priority policies with conflicting rules, at
/// the rule of the policy policyc asks second.
pub fn priority_ties(loaded: &Loaded, facts: &Facts, out: &mut Vec<Diagnostic>) {
    let lowered = &loaded.lowered;
    let cluster = &lowered.cluster;
    for tier in [policyc_ir::tier::Tier::Admin, policyc_ir::tier::Tier::Baseline] {
        let order = policyc_ir::tier::tier_order(cluster, tier);
        for (k, &a) in order.iter().enumerate() {
            for &b in &order[k + 1..] {
                let (pa, pb) = (&cluster.tier_policies[a], &cluster.tier_policies[b]);
                if pa.priority != pb.priority {
                    continue;
                }
                // Only where both apply to one endpoint of the input.
                let (sa, sb) = (facts.endpoints(&pa.subject), facts.endpoints(&pb.subject));
                if !sa.iter().any(|e| sb.contains(e)) {
                    continue;
                }
                let conflict = pb.rules.iter().enumerate().find_map(|(rb, rule_b)| {
                    let rule_a = pa.rules.iter().find(|ra| {
                        ra.direction == rule_b.direction && ra.action != rule_b.action && overlap(loaded, ra, rule_b)
                    })?;
                    Some((rb, rule_a))
                });
                let Some((rb, rule_a)) = conflict else { continue };
                let rule_b = &pb.rules[rb];
                let mut location = lowered.tier_locations[b].clone();
                location.path = Some(rule_b.path.clone());
                location.pos = lowered.tier_rule_positions[b].get(rb).copied();
                out.push(
                    Diagnostic::new(
                        codes::ADMIN_PRIORITY_TIE,
                        location,
                        format!(
                            "`{pa}` and `{pb}` have priority {}: this `{}` rule and `{pa}` `{}` (`{}`) match the same traffic, in an order the API leaves undefined",
                            pb.priority,
                            rule_b.action.name(),
                            rule_a.path,
                            rule_a.action.name()
                        ),
                    )
                    .with_help(format!("policyc asks `{pa}` first (by name); give the two policies different priorities")),
                );
            }
        }
    }
}

/// Whether some peer of the input and some port match both rules: an
/// endpoint, a node, or an address both `networks` cover.
fn overlap(loaded: &Loaded, a: &TierRule, b: &TierRule) -> bool {
    let cluster = &loaded.lowered.cluster;
    let parties = (0..cluster.endpoints.len())
        .map(|i| Party::Endpoint(EndpointId::new(i)))
        .chain((0..cluster.nodes.len()).map(Party::Node));
    let mut peers = parties.into_iter().any(|p| {
        a.peers.iter().any(|x| peer_matches(cluster, x, p)) && b.peers.iter().any(|y| peer_matches(cluster, y, p))
    });
    peers |= a.peers.iter().any(|x| {
        b.peers.iter().any(|y| match (x, y) {
            (TierPeer::Networks(xs), TierPeer::Networks(ys)) => {
                xs.iter().any(|c| ys.iter().any(|d| c.covers(*d) || d.covers(*c)))
            }
            _ => false,
        })
    });
    peers && ports_overlap(a.ports.as_deref(), b.ports.as_deref())
}

fn ports_overlap(a: Option<&[PortMatch]>, b: Option<&[PortMatch]>) -> bool {
    let (Some(a), Some(b)) = (a, b) else { return true };
    a.iter().any(|x| {
        b.iter().any(|y| {
            let protocols = x.protocol.is_none() || y.protocol.is_none() || x.protocol == y.protocol;
            let ports = match (&x.ports, &y.ports) {
                (PortSpec::Range(r), PortSpec::Range(s)) => r.lo <= s.hi && s.lo <= r.hi,
                // A name may stand for any number.
                _ => true,
            };
            protocols && ports
        })
    })
}
