//! Why a direction was decided as it was, in terms a reviewer can look
//! up: the verdict and the rules (object, field path, file and line) or
//! the isolating policies behind it. Shared by `diff` and `explain`.

use crate::diag::Location;
use policyc_ir::cluster::Cluster;
use policyc_ir::eval::{Decision, RuleRef};
use serde_json::{json, Value};

/// A policy, or one rule of it, with where it is written.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyRef {
    /// `Kind ns/name` (with the spec path for Cilium `specs` lists).
    pub policy: String,
    /// Field path of the rule (`spec.ingress[0]`); `None` when the policy
    /// as a whole decides (it isolates the endpoint).
    pub rule: Option<String>,
    /// File the object is in.
    pub file: Option<String>,
    /// Line of the object.
    pub line: Option<u32>,
}

/// How one direction was decided in one tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    /// The endpoint is not in this tree.
    Absent,
    /// No policy isolates the endpoint in this direction.
    NotIsolated,
    /// Allowed by rules.
    Allow,
    /// Allowed by rules with L7 parts, through the proxy.
    Redirect,
    /// Dropped by deny rules.
    Deny,
    /// Isolated, and no rule allows it.
    DefaultDeny,
}

impl Verdict {
    /// The name JSON output uses.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Absent => "absent",
            Verdict::NotIsolated => "not-isolated",
            Verdict::Allow => "allow",
            Verdict::Redirect => "redirect",
            Verdict::Deny => "deny",
            Verdict::DefaultDeny => "default-deny",
        }
    }

    /// Whether traffic passes this direction.
    pub fn passes(self) -> bool {
        matches!(self, Verdict::NotIsolated | Verdict::Allow | Verdict::Redirect)
    }
}

/// A decision: the verdict and the rules (or isolating policies) behind it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Reason {
    /// The verdict.
    pub verdict: Verdict,
    /// The deciding rules; for [`Verdict::DefaultDeny`], the isolating policies.
    pub by: Vec<PolicyRef>,
    /// For [`Verdict::Absent`]: the endpoints of the connection that are
    /// not in this tree.
    pub missing: Vec<String>,
}

impl Reason {
    /// A reason with no missing endpoints.
    pub fn new(verdict: Verdict, by: Vec<PolicyRef>) -> Self {
        Reason { verdict, by, missing: Vec::new() }
    }
}

/// The reason of decision `d` of `cluster` (`locations`: per policy, where
/// its object is).
pub fn reason(cluster: &Cluster, locations: &[Location], d: &Decision) -> Reason {
    let rules = |rs: &[RuleRef]| rs.iter().map(|r| policy_ref(cluster, locations, r.policy, Some(r.rule))).collect();
    match d {
        Decision::NotIsolated => Reason::new(Verdict::NotIsolated, Vec::new()),
        Decision::Allowed(rs) => Reason::new(Verdict::Allow, rules(rs)),
        Decision::Redirected(rs) => Reason::new(Verdict::Redirect, rules(rs)),
        Decision::Denied(rs) => Reason::new(Verdict::Deny, rules(rs)),
        Decision::DefaultDeny(ps) => {
            Reason::new(Verdict::DefaultDeny, ps.iter().map(|&p| policy_ref(cluster, locations, p, None)).collect())
        }
    }
}

/// Policy `policy` (and its rule `rule`) with where it is written.
pub fn policy_ref(cluster: &Cluster, locations: &[Location], policy: usize, rule: Option<usize>) -> PolicyRef {
    let p = &cluster.policies[policy];
    let location = locations.get(policy);
    PolicyRef {
        policy: p.origin.to_string(),
        rule: rule.map(|r| p.rules[r].path.clone()),
        file: location.and_then(|l| l.file.clone()),
        line: location.and_then(|l| l.pos).map(|pos| pos.line),
    }
}

/// `Kind ns/name rule (file:line)`.
pub fn policy_text(p: &PolicyRef) -> String {
    let mut s = p.policy.clone();
    if let Some(rule) = &p.rule {
        s.push(' ');
        s.push_str(rule);
    }
    match (&p.file, p.line) {
        (Some(f), Some(l)) => s.push_str(&format!(" ({f}:{l})")),
        (Some(f), None) => s.push_str(&format!(" ({f})")),
        _ => {}
    }
    s
}

/// A decision in words: `allowed by ...`, `denied: isolated by ... and no rule allows it`.
pub fn reason_text(r: &Reason) -> String {
    let by = r.by.iter().map(policy_text).collect::<Vec<_>>().join("; ");
    match r.verdict {
        Verdict::Absent => {
            let names: Vec<String> = r.missing.iter().map(|m| format!("`{m}`")).collect();
            format!("no such connection: {} not in this tree", names.join(" and "))
        }
        Verdict::NotIsolated => "allowed: no policy isolates this direction".to_string(),
        Verdict::Allow => format!("allowed by {by}"),
        Verdict::Redirect => format!("allowed through the L7 proxy by {by}"),
        Verdict::Deny => format!("denied by {by}"),
        Verdict::DefaultDeny => format!("denied: isolated by {by}, and no rule allows it"),
    }
}

/// A policy reference as JSON: `{policy, rule, file, line}`.
pub fn policy_json(p: &PolicyRef) -> Value {
    json!({"policy": p.policy, "rule": p.rule, "file": p.file, "line": p.line})
}

/// A reason as JSON: `{verdict, missing, by}`.
pub fn reason_json(r: &Reason) -> Value {
    json!({
        "verdict": r.verdict.name(),
        "missing": r.missing,
        "by": r.by.iter().map(policy_json).collect::<Vec<_>>(),
    })
}
