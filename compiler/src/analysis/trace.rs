//! Packet traces: the verdict on one connection and the rules that decided
//! it, for each direction, from the reference evaluator.

use crate::analysis::reason::{policy_json, policy_text, Citations};
use policyc_ir::cluster::Cluster;
use policyc_ir::eval::{Decision, Party, Query, Verdict};
use policyc_ir::ids::RuleRef;
use policyc_ir::protocol::Direction;
use policyc_ir::tier::TierRuleRef;
use serde_json::{json, Value};
use std::fmt::Write;

/// Names a party as output shows it.
pub fn party_name(cluster: &Cluster, p: Party) -> String {
    match p {
        Party::Endpoint(i) => cluster.endpoint(i).display_name(),
        Party::External(ip) => format!("ip:{ip}"),
        Party::Reserved(e) => format!("reserved:{}", e.name()),
        Party::Node(n) => format!("node:{}", cluster.nodes[n].name),
    }
}

/// A deciding rule as JSON: the shared citation
/// ([`policy_json`]) with the policy's kind, namespace and name apart.
fn rule_json(citations: &Citations, r: &RuleRef) -> Value {
    let origin = &citations.cluster().policy(r.policy).origin;
    let mut value = policy_json(&citations.policy_ref(r.policy, Some(r.rule_index())));
    value["kind"] = json!(origin.kind.name());
    value["namespace"] = json!(origin.namespace);
    value["name"] = json!(origin.name);
    value
}

/// A deciding rule of an admin or baseline policy as JSON, with its tier,
/// priority and action apart.
fn tier_rule_json(citations: &Citations, r: TierRuleRef) -> Value {
    let policy = &citations.cluster().tier_policies[r.policy];
    let mut value = policy_json(&citations.tier_rule_ref(r));
    value["kind"] = json!(policy.kind.name());
    value["name"] = json!(policy.name);
    value["tier"] = json!(policy.tier.name());
    value["priority"] = json!(policy.priority);
    value["action"] = json!(policy.rules[r.rule].action.name());
    value
}

/// The head line of a decision and the rules it cites; the `Pass` rules
/// that led to it come first, each as its own line.
fn decision_text(citations: &Citations, d: &Decision) -> (String, Vec<String>) {
    let head = match d.decided() {
        Decision::NotIsolated if matches!(d, Decision::Passed { .. }) => "allowed: no later tier decides",
        Decision::NotIsolated => "allowed: no policy isolates this direction",
        Decision::Allowed(_) | Decision::TierAllowed(_) => "allowed by",
        Decision::Redirected(_) => "allowed through the L7 proxy by",
        Decision::Denied(_) | Decision::TierDenied(_) => "denied by",
        Decision::DefaultDeny(_) => "denied: isolated and no rule allows it; isolated by",
        Decision::Passed { .. } => unreachable!("`decided` looks past every Pass"),
    };
    let reason = citations.reason(d);
    let passed = reason.passed.iter().map(|p| format!("passed by {}", policy_text(p)));
    (head.to_string(), passed.chain(reason.by.iter().map(policy_text)).collect())
}

/// Human rendering of a trace.
pub fn render_human(citations: &Citations, query: &Query, verdict: &Verdict) -> String {
    let cluster = citations.cluster();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} -> {} {}/{}: {}",
        party_name(cluster, query.src),
        party_name(cluster, query.dst),
        query.protocol,
        query.port,
        if verdict.allowed() { "ALLOWED" } else { "DENIED" }
    );
    for (dir, d, who) in
        [(Direction::Egress, &verdict.egress, query.src), (Direction::Ingress, &verdict.ingress, query.dst)]
    {
        let _ = write!(out, "  {dir} of {}: ", party_name(cluster, who));
        match d {
            None => {
                let _ = writeln!(out, "not an endpoint of the cluster, no policy applies");
            }
            Some(d) => {
                let (head, rules) = decision_text(citations, d);
                let _ = writeln!(out, "{head}");
                for r in rules {
                    let _ = writeln!(out, "    - {r}");
                }
            }
        }
    }
    out
}

/// One direction's decision as JSON; a `Pass` adds `passed` (the `Pass`
/// rules, in order) to the decision of the tier it led to.
fn decision_json(citations: &Citations, d: &Decision) -> Value {
    let cluster = citations.cluster();
    let rules = |rs: &[RuleRef]| rs.iter().map(|r| rule_json(citations, r)).collect::<Vec<_>>();
    let tier_rule = |verdict: &str, r: &TierRuleRef| {
        let tier = cluster.tier_policies[r.policy].tier.name();
        json!({"verdict": verdict, "reason": format!("{tier}-rule"), "rules": [tier_rule_json(citations, *r)]})
    };
    match d {
        Decision::NotIsolated => json!({"verdict": "allow", "reason": "not-isolated"}),
        Decision::Allowed(rs) => json!({"verdict": "allow", "reason": "rule", "rules": rules(rs)}),
        Decision::Redirected(rs) => json!({"verdict": "redirect", "reason": "l7-rule", "rules": rules(rs)}),
        Decision::Denied(rs) => json!({"verdict": "deny", "reason": "deny-rule", "rules": rules(rs)}),
        Decision::DefaultDeny(ps) => json!({
            "verdict": "deny",
            "reason": "default-deny",
            "isolated_by": ps.iter().map(|&p| cluster.policy(p).origin.to_string()).collect::<Vec<_>>(),
        }),
        Decision::TierAllowed(r) => tier_rule("allow", r),
        Decision::TierDenied(r) => tier_rule("deny", r),
        Decision::Passed { by, then } => {
            let mut value = decision_json(citations, then);
            let mut passed = vec![tier_rule_json(citations, *by)];
            if let Some(Value::Array(later)) = value.get("passed") {
                passed.extend(later.iter().cloned());
            }
            value["passed"] = json!(passed);
            value
        }
    }
}

/// JSON rendering of a trace.
pub fn render_json(citations: &Citations, query: &Query, verdict: &Verdict) -> Value {
    let cluster = citations.cluster();
    let side = |d: &Option<Decision>| d.as_ref().map_or(Value::Null, |d| decision_json(citations, d));
    json!({
        "src": party_name(cluster, query.src),
        "dst": party_name(cluster, query.dst),
        "protocol": query.protocol.name(),
        "port": query.port,
        "allowed": verdict.allowed(),
        "egress": side(&verdict.egress),
        "ingress": side(&verdict.ingress),
    })
}
