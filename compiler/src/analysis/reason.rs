//! Why a direction was decided as it was, in terms a reviewer can look
//! up: the verdict and the rules (object, field path, file and the rule's
//! own line) or the isolating policies behind it. Shared by `diff`,
//! `explain` and `trace`.

use crate::diag::Location;
use crate::front::spans::PolicySpans;
use crate::pipeline::Loaded;
use policyc_ir::cluster::Cluster;
use policyc_ir::eval::Decision;
use policyc_ir::ids::{PolicyId, RuleRef};
use policyc_ir::tier::TierRuleRef;
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
    /// Line of the rule (its list item), where the source gives it.
    pub rule_line: Option<u32>,
}

impl PolicyRef {
    /// The line to cite: the rule's, else the object's.
    pub fn cited_line(&self) -> Option<u32> {
        self.rule_line.or(self.line)
    }
}

/// Where the policies of one loaded tree and their rules are written.
///
/// Lowering records each policy object's location and, beside the IR
/// (positions stay out of it), where each rule is written, as the front
/// end found it when it parsed the rule.
pub struct Citations<'a> {
    cluster: &'a Cluster,
    locations: &'a [Location],
    spans: &'a [PolicySpans],
    tier_locations: &'a [Location],
    tier_rule_positions: &'a [Vec<crate::front::yaml::Pos>],
}

impl<'a> Citations<'a> {
    /// The citations of `loaded`'s policies.
    pub fn new(loaded: &'a Loaded) -> Self {
        let cluster = &loaded.lowered.cluster;
        Citations {
            cluster,
            locations: &loaded.lowered.policy_locations,
            spans: &loaded.lowered.policy_spans,
            tier_locations: &loaded.lowered.tier_locations,
            tier_rule_positions: &loaded.lowered.tier_rule_positions,
        }
    }

    /// Admin or baseline policy `policy` (its position in
    /// `tier_policies`) with where it is written; the policy names its
    /// tier and priority (`AdminNetworkPolicy a (admin tier, priority 10)`).
    pub fn tier_policy_ref(&self, policy: usize) -> PolicyRef {
        let p = &self.cluster.tier_policies[policy];
        let location = self.tier_locations.get(policy);
        PolicyRef {
            policy: format!("{p} ({} tier, priority {})", p.tier.name(), p.priority),
            rule: None,
            file: location.and_then(|l| l.file.clone()),
            line: location.and_then(|l| l.pos).map(|pos| pos.line),
            rule_line: None,
        }
    }

    /// Rule `r` of an admin or baseline policy with where it is written;
    /// the rule names its name and action (`spec.ingress[0] "deny-web"
    /// (Deny)`).
    pub fn tier_rule_ref(&self, r: TierRuleRef) -> PolicyRef {
        let rule = &self.cluster.tier_policies[r.policy].rules[r.rule];
        let named = rule.name.as_ref().map(|n| format!(" \"{n}\"")).unwrap_or_default();
        PolicyRef {
            rule: Some(format!("{}{named} ({})", rule.path, rule.action.name())),
            rule_line: self.tier_rule_positions.get(r.policy).and_then(|ps| ps.get(r.rule)).map(|pos| pos.line),
            ..self.tier_policy_ref(r.policy)
        }
    }

    /// The cluster whose policies these are.
    pub fn cluster(&self) -> &'a Cluster {
        self.cluster
    }

    /// Policy `policy` (and its rule `rule`) with where it is written.
    pub fn policy_ref(&self, policy: PolicyId, rule: Option<usize>) -> PolicyRef {
        let p = self.cluster.policy(policy);
        let location = self.locations.get(policy.index());
        let rule_line = rule.and_then(|r| self.spans.get(policy.index())?.rules.get(r)).map(|rule| rule.pos.line);
        PolicyRef {
            policy: p.origin.to_string(),
            rule: rule.map(|r| p.rules[r].path.clone()),
            file: location.and_then(|l| l.file.clone()),
            line: location.and_then(|l| l.pos).map(|pos| pos.line),
            rule_line,
        }
    }

    /// The reason of decision `d`.
    pub fn reason(&self, d: &Decision) -> Reason {
        let rules = |rs: &[RuleRef]| rs.iter().map(|r| self.policy_ref(r.policy, Some(r.rule_index()))).collect();
        match d {
            Decision::NotIsolated => Reason::new(Verdict::NotIsolated, Vec::new()),
            Decision::Allowed(rs) => Reason::new(Verdict::Allow, rules(rs)),
            Decision::Redirected(rs) => Reason::new(Verdict::Redirect, rules(rs)),
            Decision::Denied(rs) => Reason::new(Verdict::Deny, rules(rs)),
            Decision::DefaultDeny(ps) => {
                Reason::new(Verdict::DefaultDeny, ps.iter().map(|&p| self.policy_ref(p, None)).collect())
            }
            Decision::TierAllowed(r) => Reason::new(Verdict::Allow, vec![self.tier_rule_ref(*r)]),
            Decision::TierDenied(r) => Reason::new(Verdict::Deny, vec![self.tier_rule_ref(*r)]),
            Decision::Passed { by, then } => {
                let mut reason = self.reason(then);
                reason.passed.insert(0, self.tier_rule_ref(*by));
                reason
            }
        }
    }
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
    /// The `Pass` rules of admin (or baseline) tiers the traffic went
    /// through before the tier that decided, in order.
    pub passed: Vec<PolicyRef>,
}

impl Reason {
    /// A reason with no missing endpoints.
    pub fn new(verdict: Verdict, by: Vec<PolicyRef>) -> Self {
        Reason { verdict, by, missing: Vec::new(), passed: Vec::new() }
    }
}

/// `Kind ns/name rule (file:line)`, the line being the rule's where known.
pub fn policy_text(p: &PolicyRef) -> String {
    let mut s = p.policy.clone();
    if let Some(rule) = &p.rule {
        s.push(' ');
        s.push_str(rule);
    }
    match (&p.file, p.cited_line()) {
        (Some(f), Some(l)) => s.push_str(&format!(" ({f}:{l})")),
        (Some(f), None) => s.push_str(&format!(" ({f})")),
        _ => {}
    }
    s
}

/// A decision in words: `allowed by ...`, `denied: isolated by ... and no rule allows it`.
pub fn reason_text(r: &Reason) -> String {
    let by = r.by.iter().map(policy_text).collect::<Vec<_>>().join("; ");
    let passed = r.passed.iter().map(|p| format!("passed by {}, then ", policy_text(p))).collect::<String>();
    passed
        + &match r.verdict {
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

/// A policy reference as JSON: `{policy, rule, file, line, rule_line}`
/// (`line` is the object's, `rule_line` the rule's).
pub fn policy_json(p: &PolicyRef) -> Value {
    json!({"policy": p.policy, "rule": p.rule, "file": p.file, "line": p.line, "rule_line": p.rule_line})
}

/// A reason as JSON: `{verdict, missing, by}`, and `passed` when a `Pass`
/// rule led to the deciding tier.
pub fn reason_json(r: &Reason) -> Value {
    let mut value = json!({
        "verdict": r.verdict.name(),
        "missing": r.missing,
        "by": r.by.iter().map(policy_json).collect::<Vec<_>>(),
    });
    if !r.passed.is_empty() {
        value["passed"] = json!(r.passed.iter().map(policy_json).collect::<Vec<_>>());
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::front::Input;
    use crate::pipeline::load_input;
    use policyc_ir::eval::{eval, Party, Query};
    use policyc_ir::ids::EndpointId;
    use policyc_ir::protocol::Protocol;

    /// A `List` whose second item is a Cilium policy with a `specs` list.
    const TEXT: &str = "\
apiVersion: v1
kind: List
items:
  - apiVersion: v1
    kind: Pod
    metadata: {name: a, namespace: x, labels: {app: a}}
    spec: {containers: [{name: c}]}
    status: {podIP: 10.0.0.1}
  - apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata: {name: p, namespace: x}
    specs:
      - endpointSelector: {matchLabels: {app: a}}
        egress:
          - toCIDR: [192.0.2.0/24]
      - endpointSelector: {matchLabels: {app: a}}
        egressDeny:
          - toPorts: [{ports: [{port: \"22\"}]}]
          - toCIDR: [198.51.100.0/24]
";

    fn loaded() -> Loaded {
        let mut input = Input::default();
        input.add_source("f.yaml", TEXT.to_string());
        let loaded = load_input(input);
        assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
        loaded
    }

    #[test]
    fn rules_are_cited_at_their_own_line() {
        let loaded = loaded();
        let citations = Citations::new(&loaded);
        let mut cited = Vec::new();
        for (p, policy) in citations.cluster().written_policies() {
            for r in 0..policy.rules.len() {
                let at = citations.policy_ref(p, Some(r));
                assert_eq!(at.line, Some(9), "the object's line stays the object's");
                cited.push((at.rule.unwrap(), at.rule_line));
            }
        }
        cited.sort();
        let want = [("specs[0].egress[0]", 15), ("specs[1].egressDeny[0]", 18), ("specs[1].egressDeny[1]", 19)];
        assert_eq!(cited, want.map(|(path, line)| (path.to_string(), Some(line))));

        // A deny decides: the text cites the rule's line, and so does trace.
        let query = Query {
            src: Party::Endpoint(EndpointId::new(0)),
            dst: Party::External("198.51.100.7".parse().unwrap()),
            protocol: Protocol::Tcp,
            port: 443,
        };
        let verdict = eval(citations.cluster(), &query);
        let reason = citations.reason(verdict.egress.as_ref().unwrap());
        assert_eq!(
            reason_text(&reason),
            "denied by CiliumNetworkPolicy x/p specs[1] specs[1].egressDeny[1] (f.yaml:19)"
        );
        let json = crate::analysis::trace::render_json(&citations, &query, &verdict);
        assert_eq!(json["egress"]["rules"][0]["rule_line"], 19);
        assert_eq!(json["egress"]["rules"][0]["line"], 9);
        let text = crate::analysis::trace::render_human(&citations, &query, &verdict);
        assert!(text.contains("- CiliumNetworkPolicy x/p specs[1] specs[1].egressDeny[1] (f.yaml:19)"), "{text}");
    }

    #[test]
    fn a_policy_as_a_whole_is_cited_at_its_object() {
        let loaded = loaded();
        let at = Citations::new(&loaded).policy_ref(PolicyId::new(0), None);
        assert_eq!((at.rule.as_deref(), at.line, at.rule_line, at.cited_line()), (None, Some(9), None, Some(9)));
        assert_eq!(policy_text(&at), "CiliumNetworkPolicy x/p specs[0] (f.yaml:9)");
    }
}
