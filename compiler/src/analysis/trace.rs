//! Packet traces: the verdict on one connection and the rules that decided
//! it, for each direction, from the reference evaluator.

use crate::diag::Location;
use policyc_ir::cluster::Cluster;
use policyc_ir::eval::{Decision, Party, Query, RuleRef, Verdict};
use policyc_ir::protocol::Direction;
use serde_json::{json, Value};
use std::fmt::Write;

/// Names a party as output shows it.
pub fn party_name(cluster: &Cluster, p: Party) -> String {
    match p {
        Party::Endpoint(i) => cluster.endpoints[i].display_name(),
        Party::External(ip) => format!("ip:{ip}"),
        Party::Reserved(e) => format!("reserved:{}", e.name()),
    }
}

fn rule_text(cluster: &Cluster, locations: &[Location], r: &RuleRef) -> String {
    let policy = &cluster.policies[r.policy];
    let rule = &policy.rules[r.rule];
    let at = locations.get(r.policy).and_then(|l| l.file.clone()).map(|f| format!(" ({f})")).unwrap_or_default();
    format!("{} {}{at}", policy.origin, rule.path)
}

fn rule_json(cluster: &Cluster, locations: &[Location], r: &RuleRef) -> Value {
    let policy = &cluster.policies[r.policy];
    let loc = locations.get(r.policy);
    json!({
        "policy": policy.origin.to_string(),
        "kind": policy.origin.kind.name(),
        "namespace": policy.origin.namespace,
        "name": policy.origin.name,
        "rule": policy.rules[r.rule].path,
        "file": loc.and_then(|l| l.file.clone()),
        "line": loc.and_then(|l| l.pos).map(|p| p.line),
    })
}

fn decision_text(cluster: &Cluster, locations: &[Location], d: &Decision) -> (String, Vec<String>) {
    let rules = |rs: &[RuleRef]| rs.iter().map(|r| rule_text(cluster, locations, r)).collect::<Vec<_>>();
    match d {
        Decision::NotIsolated => ("allowed: no policy isolates this direction".into(), vec![]),
        Decision::Allowed(rs) => ("allowed by".into(), rules(rs)),
        Decision::Redirected(rs) => ("allowed through the L7 proxy by".into(), rules(rs)),
        Decision::Denied(rs) => ("denied by".into(), rules(rs)),
        Decision::DefaultDeny(ps) => (
            "denied: isolated and no rule allows it; isolated by".into(),
            ps.iter()
                .map(|&p| {
                    let at =
                        locations.get(p).and_then(|l| l.file.clone()).map(|f| format!(" ({f})")).unwrap_or_default();
                    format!("{}{at}", cluster.policies[p].origin)
                })
                .collect(),
        ),
    }
}

/// Human rendering of a trace.
pub fn render_human(cluster: &Cluster, locations: &[Location], query: &Query, verdict: &Verdict) -> String {
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
                let (head, rules) = decision_text(cluster, locations, d);
                let _ = writeln!(out, "{head}");
                for r in rules {
                    let _ = writeln!(out, "    - {r}");
                }
            }
        }
    }
    out
}

/// JSON rendering of a trace.
pub fn render_json(cluster: &Cluster, locations: &[Location], query: &Query, verdict: &Verdict) -> Value {
    let side = |d: &Option<Decision>| -> Value {
        let Some(d) = d else { return Value::Null };
        let rules = |rs: &[RuleRef]| rs.iter().map(|r| rule_json(cluster, locations, r)).collect::<Vec<_>>();
        match d {
            Decision::NotIsolated => json!({"verdict": "allow", "reason": "not-isolated"}),
            Decision::Allowed(rs) => json!({"verdict": "allow", "reason": "rule", "rules": rules(rs)}),
            Decision::Redirected(rs) => json!({"verdict": "redirect", "reason": "l7-rule", "rules": rules(rs)}),
            Decision::Denied(rs) => json!({"verdict": "deny", "reason": "deny-rule", "rules": rules(rs)}),
            Decision::DefaultDeny(ps) => json!({
                "verdict": "deny",
                "reason": "default-deny",
                "isolated_by": ps.iter().map(|&p| cluster.policies[p].origin.to_string()).collect::<Vec<_>>(),
            }),
        }
    };
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
