//! Rules about what selectors select: a selector matching nothing (W0201),
//! or only host-network pods, which are not endpoints (W0208),
//! a pod left out in a namespace whose other pods are isolated (W0202), a
//! policy that changes nothing (W0203).

use super::{at_policy, rule_spans, subject_path, Facts};
use crate::diag::{codes, Diagnostic, Location};
use crate::front::spans::{Cited, CitedKind};
use crate::pipeline::Loaded;
use policyc_ir::ids::RuleRef;
use policyc_ir::policy::{Peer, Peers, Subject};
use policyc_ir::protocol::Direction;
use policyc_ir::selector::LabelSelector;
use std::collections::BTreeSet;

/// W0201: an endpoint selector (subject or peer) that matches no endpoint.
/// A policy whose subject matches nothing is reported once, for the
/// subject; its peers are not looked at.
pub(super) fn unmatched_selectors(loaded: &Loaded, facts: &Facts, out: &mut Vec<Diagnostic>) {
    let cluster = &loaded.lowered.cluster;
    if cluster.endpoints.is_empty() && loaded.lowered.host_network.is_empty() {
        return;
    }
    let matches_any = |selector: &LabelSelector| facts.matches_any(selector);
    for (p, policy) in cluster.written_policies() {
        if let Subject::Endpoints(selector) = &policy.subject {
            if !matches_any(selector) {
                let host_network: Vec<String> = loaded
                    .lowered
                    .host_network
                    .iter()
                    .filter(|e| selector.matches(&e.labels))
                    .map(|e| format!("`{e}`"))
                    .collect();
                if !host_network.is_empty() {
                    out.push(
                        Diagnostic::new(
                            codes::HOST_NETWORK_ONLY,
                            at_policy(
                                loaded,
                                p,
                                &subject_path(policy),
                                loaded.lowered.policy_spans.get(p.index()).and_then(|s| s.subject),
                            ),
                            format!(
                                "the policy selects only host-network pods ({}): their traffic is their node's, so it applies to nothing",
                                host_network.join(", ")
                            ),
                        )
                        .with_help(
                            "a host-network pod is the node's `host` (or `remote-node`) to policies; to filter the node's own traffic, use a CiliumClusterwideNetworkPolicy with a `nodeSelector`",
                        ),
                    );
                    continue;
                }
                out.push(
                    Diagnostic::new(
                        codes::UNMATCHED_SELECTOR,
                        at_policy(
                            loaded,
                            p,
                            &subject_path(policy),
                            loaded.lowered.policy_spans.get(p.index()).and_then(|s| s.subject),
                        ),
                        format!("the policy selects no endpoint of the input (`{selector}`)"),
                    )
                    .with_help("check the labels and the namespace against the pods or workloads it is meant for"),
                );
                continue;
            }
        }
        for (r, rule) in policy.rules.iter().enumerate() {
            let Peers::Only(peers) = &rule.peers else { continue };
            let selectors: Vec<&LabelSelector> = peers
                .iter()
                .filter_map(|peer| match peer {
                    Peer::Endpoints(selector) => Some(selector),
                    _ => None,
                })
                .collect();
            for (j, selector) in selectors.iter().enumerate() {
                if !matches_any(selector) {
                    out.push(
                        Diagnostic::new(
                            codes::UNMATCHED_SELECTOR,
                            peer_location(loaded, RuleRef::new(p, r), j, selectors.len()),
                            format!("a peer selector matches no endpoint of the input (`{selector}`)"),
                        )
                        .with_help("a typo in a label or namespace makes a rule allow or deny nothing"),
                    );
                }
            }
        }
    }
}

/// Where the `j`-th of rule `r`'s `n` selector peers is written: the
/// `j`-th entry of Cilium's `fromEndpoints`/`toEndpoints`, or the `j`-th
/// entry without `ipBlock` of a NetworkPolicy's `from`/`to` (lowering keeps
/// their order). The rule itself when the source does not line up with the
/// peers (an entry that did not decode). The part of a Cilium rule split
/// off for a `toPorts` entry's L7 rules has the peers of the whole rule,
/// and cites them.
fn peer_location(loaded: &Loaded, r: RuleRef, j: usize, n: usize) -> Location {
    let selectors: Vec<&Cited> = rule_spans(loaded, r)
        .map(|s| s.cited.iter().filter(|c| c.what == CitedKind::Selector).collect())
        .unwrap_or_default();
    match selectors.get(j).filter(|_| selectors.len() == n) {
        Some(c) => at_policy(loaded, r.policy, &c.path, Some(c.pos)),
        None => {
            let rule = loaded.lowered.cluster.rule(r);
            at_policy(loaded, r.policy, &rule.path, rule_spans(loaded, r).map(|s| s.pos))
        }
    }
}

/// W0202: a pod that no policy selects, in a namespace where some other
/// pod is isolated in a direction (likely forgotten by a default-deny
/// rollout). A pod that an admin or baseline policy with rules selects is
/// not forgotten: the cluster's guardrails decide its traffic (a baseline
/// default deny is the usual way to cover such pods, network-policy-api
/// `BaselineAdminNetworkPolicy`).
pub(super) fn unprotected_pods(loaded: &Loaded, facts: &Facts, out: &mut Vec<Diagnostic>) {
    let cluster = &loaded.lowered.cluster;
    let mut selected = vec![false; cluster.endpoints.len()];
    let mut isolated_namespaces: BTreeSet<&str> = BTreeSet::new();
    for (p, policy) in cluster.written_policies() {
        let enforces = Direction::BOTH.into_iter().any(|d| policy.enforces(d));
        for &i in &facts.subjects[p.index()] {
            selected[i] = true;
            if enforces {
                isolated_namespaces.insert(cluster.endpoints[i].namespace.as_str());
            }
        }
    }
    for (i, e) in cluster.endpoints.iter().enumerate() {
        if !selected[i] {
            selected[i] = cluster.tier_policies.iter().any(|t| !t.rules.is_empty() && t.subject.matches(&e.labels));
        }
    }
    for (i, e) in cluster.endpoints.iter().enumerate() {
        if !selected[i] && isolated_namespaces.contains(e.namespace.as_str()) {
            let mut location = loaded.lowered.endpoint_locations.get(i).cloned().unwrap_or_default();
            location.path = Some("metadata.name".to_string());
            location.pos = loaded.lowered.endpoint_name_positions.get(i).copied().or(location.pos);
            out.push(
                Diagnostic::new(
                    codes::UNPROTECTED_POD,
                    location,
                    format!(
                        "`{}` is selected by no policy while other pods of namespace `{}` are isolated",
                        e.display_name(),
                        e.namespace
                    ),
                )
                .with_help("add it to a policy (or a namespace-wide default deny) if it should be isolated too"),
            );
        }
    }
}

/// W0203: a policy that selects endpoints but has no rule and isolates no
/// direction, so it changes nothing.
pub(super) fn policies_without_effect(loaded: &Loaded, facts: &Facts, out: &mut Vec<Diagnostic>) {
    let cluster = &loaded.lowered.cluster;
    for (p, policy) in cluster.written_policies() {
        let isolates = Direction::BOTH.into_iter().any(|d| policy.enforces(d));
        if policy.rules.is_empty() && !isolates && !facts.subjects[p.index()].is_empty() {
            out.push(
                Diagnostic::new(
                    codes::POLICY_WITHOUT_EFFECT,
                    at_policy(
                        loaded,
                        p,
                        &policy.origin.spec_path,
                        loaded.lowered.policy_spans.get(p.index()).and_then(|s| s.spec),
                    ),
                    "the policy has no rules and isolates no direction: it changes nothing".to_string(),
                )
                .with_help(
                    "an empty list (`ingress: []`) has no effect in Cilium; `ingress: [{}]` turns on default deny",
                ),
            );
        }
    }
}
