//! `explain`: everything policy says about one endpoint. Which policies
//! select it and in which direction each isolates it, its identity number
//! and identity labels, what may reach it and what it may reach (on which
//! protocols and ports), and for each of those the decisions of both ends
//! with the rules behind them.
//!
//! Peers are the other endpoints and the outside address segments of the
//! connectivity table; verdicts are computed per port segment with the
//! reference evaluator and adjacent ports with the same reasons merge.

use crate::analysis::connectivity::{full_range, l7_parser, Side, PROTOCOLS};
use crate::analysis::engine::{DecisionId, Engine, PeerKey, RunsId};
use crate::analysis::reason::{policy_json, policy_text, reason_json, reason_text, Citations, PolicyRef, Reason};
use crate::pipeline::Loaded;
use policyc_ir::cluster::{Cluster, EndpointKind};
use policyc_ir::ids::EndpointId;
use policyc_ir::policy::{Action, Subject};
use policyc_ir::protocol::{Direction, PortRange, Protocol};
use policyc_ir::resolve::Resolved;
use policyc_ir::tier::{tier_order, Tier, TierAction};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

/// A policy that selects the endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    /// The policy and where it is written.
    pub policy: PolicyRef,
    /// The directions it isolates (puts into default deny).
    pub isolates: Vec<Direction>,
    /// Its rules by direction and action: `ingress`, `egress`,
    /// `ingressDeny`, `egressDeny` with counts.
    pub rules: BTreeMap<&'static str, usize>,
}

/// Traffic between the endpoint and one peer, on some ports, allowed for
/// the same reasons.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flow {
    /// The other end (`ns/pod`, `ip:FIRST-LAST`).
    pub peer: String,
    /// The protocols and ports.
    pub ports: Vec<(Protocol, PortRange)>,
    /// The sender's egress decision (`None` for an outside sender).
    pub egress: Option<Reason>,
    /// The receiver's ingress decision (`None` for an outside receiver).
    pub ingress: Option<Reason>,
    /// The L7 parser (`http`, `kafka`, `dns`) of the rules that allow it
    /// only through the proxy, `None` for a plain allow.
    pub l7: Option<String>,
}

impl Flow {
    /// Ports as the connectivity table writes them, L7-restricted ones
    /// marked as there: `TCP/80 (L7 http)`.
    pub fn port_items(&self) -> Vec<String> {
        let mark = self.l7.as_ref().map(|parser| format!(" (L7 {parser})")).unwrap_or_default();
        self.ports
            .iter()
            .map(|(p, r)| if *r == full_range(*p) { p.name().to_string() } else { format!("{}/{r}", p.name()) })
            .map(|item| item + &mark)
            .collect()
    }
}

/// Everything about one endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    /// `ns/pod` or `ns/name[Kind]`.
    pub name: String,
    /// `pod` or the workload kind.
    pub kind: String,
    /// Node, if scheduled.
    pub node: Option<String>,
    /// Addresses.
    pub ips: Vec<String>,
    /// Its identity number (`None` only if the identity space is exhausted).
    pub identity: Option<u32>,
    /// Identity labels, `key=value`.
    pub labels: Vec<String>,
    /// Named ports, `name=PROTO/port`.
    pub named_ports: Vec<String>,
    /// The policies that select it, in input order; then the admin and
    /// baseline policies that do.
    pub selected_by: Vec<Selection>,
    /// Per direction (ingress, egress): the policies that isolate it.
    pub isolated_by: [Vec<PolicyRef>; 2],
    /// Per direction (ingress, egress): the admin and baseline policies
    /// selecting it with rules in that direction, in the order they are
    /// asked (admin by priority, then baseline).
    pub tiered_by: [Vec<(Tier, PolicyRef)>; 2],
    /// What may reach it.
    pub reached_by: Vec<Flow>,
    /// What it may reach.
    pub reaches: Vec<Flow>,
}

fn rule_kind(direction: Direction, action: Action) -> &'static str {
    match (direction, action) {
        (Direction::Ingress, Action::Allow) => "ingress",
        (Direction::Egress, Action::Allow) => "egress",
        (Direction::Ingress, Action::Deny) => "ingressDeny",
        (Direction::Egress, Action::Deny) => "egressDeny",
    }
}

fn tier_rule_kind(direction: Direction, action: TierAction) -> &'static str {
    match (direction, action) {
        (Direction::Ingress, TierAction::Allow) => "ingress Allow",
        (Direction::Ingress, TierAction::Deny) => "ingress Deny",
        (Direction::Ingress, TierAction::Pass) => "ingress Pass",
        (Direction::Egress, TierAction::Allow) => "egress Allow",
        (Direction::Egress, TierAction::Deny) => "egress Deny",
        (Direction::Egress, TierAction::Pass) => "egress Pass",
    }
}

/// Explains endpoint `index` of `loaded`'s cluster (`resolved` is its
/// resolution).
pub fn explain(loaded: &Loaded, resolved: &Resolved, index: EndpointId) -> Explanation {
    let citations = Citations::new(loaded);
    let cluster = citations.cluster();
    let e = cluster.endpoint(index);
    let mut selected_by = Vec::new();
    let mut isolated_by: [Vec<PolicyRef>; 2] = Default::default();
    for (p, policy) in cluster.policies_with_ids() {
        let Subject::Endpoints(sel) = &policy.subject else { continue };
        if !sel.matches(&e.labels) {
            continue;
        }
        let isolates: Vec<Direction> = Direction::BOTH.into_iter().filter(|d| policy.enforces(*d)).collect();
        for d in &isolates {
            isolated_by[d.index()].push(citations.policy_ref(p, None));
        }
        let mut rules = BTreeMap::new();
        for r in &policy.rules {
            *rules.entry(rule_kind(r.direction, r.action)).or_default() += 1;
        }
        selected_by.push(Selection { policy: citations.policy_ref(p, None), isolates, rules });
    }
    // Admin and baseline policies select without isolating; their rules
    // are counted by direction and action.
    let mut tiered_by: [Vec<(Tier, PolicyRef)>; 2] = Default::default();
    for tier in [Tier::Admin, Tier::Baseline] {
        for t in tier_order(cluster, tier) {
            let policy = &cluster.tier_policies[t];
            if !policy.subject.matches(&e.labels) {
                continue;
            }
            for d in Direction::BOTH.into_iter().filter(|d| policy.rules.iter().any(|r| r.direction == *d)) {
                tiered_by[d.index()].push((tier, citations.tier_policy_ref(t)));
            }
        }
    }
    for (t, policy) in cluster.tier_policies.iter().enumerate() {
        if !policy.subject.matches(&e.labels) {
            continue;
        }
        let mut rules = BTreeMap::new();
        for r in &policy.rules {
            *rules.entry(tier_rule_kind(r.direction, r.action)).or_default() += 1;
        }
        selected_by.push(Selection { policy: citations.tier_policy_ref(t), isolates: Vec::new(), rules });
    }

    // Judged per class: the other endpoints' classes and the outside
    // segments as the engine groups them, each pair of runs once.
    let mut engine = Engine::new(cluster, &[]);
    let me = engine.class_of(index);
    let my_node = e.node.as_deref().and_then(|name| cluster.nodes.iter().position(|n| n.name == name));
    let mut grouped: HashMap<(Option<RunsId>, Option<RunsId>), Vec<ReasonedPorts>> = HashMap::new();
    let mut reasons: HashMap<DecisionId, Reason> = HashMap::new();
    let (mut reached_by, mut reaches) = (Vec::new(), Vec::new());
    let mut peers: Vec<(Side, [PeerKey; 2])> = Vec::new();
    for (i, _) in cluster.endpoints_with_ids().filter(|&(i, _)| i != index) {
        peers.push((Side::Endpoint(i), [PeerKey::Class(engine.class_of(i)), PeerKey::Class(me)]));
    }
    for n in 0..cluster.nodes.len() {
        peers.push((Side::Node(n), [engine.node_peer(n, my_node); 2]));
    }
    let segments = engine.segments().to_vec();
    for (s, &(a, b)) in segments.iter().enumerate() {
        peers.push((Side::Addresses(a, b), [PeerKey::Segment(s); 2]));
    }
    for (peer, [peer_key, me_key]) in peers {
        // The peer's own decisions, where it is an endpoint.
        let theirs = |engine: &mut Engine, dir| match peer {
            Side::Endpoint(i) => Some(engine.runs_towards(i, dir, me_key)),
            _ => None,
        };
        let inbound =
            (theirs(&mut engine, Direction::Egress), Some(engine.class_runs(me, Direction::Ingress, peer_key)));
        let outbound =
            (Some(engine.class_runs(me, Direction::Egress, peer_key)), theirs(&mut engine, Direction::Ingress));
        let name = side_name(cluster, &peer);
        for (key, into) in [(inbound, &mut reached_by), (outbound, &mut reaches)] {
            let flows = grouped.entry(key).or_insert_with(|| flows(&citations, &engine, &mut reasons, key));
            into.extend(flows.iter().map(|((r, l7), ports)| Flow {
                peer: name.clone(),
                ports: ports.clone(),
                egress: r.0.clone(),
                ingress: r.1.clone(),
                l7: l7.clone(),
            }));
        }
    }

    Explanation {
        name: e.display_name(),
        kind: match &e.kind {
            EndpointKind::Pod => "pod".to_string(),
            EndpointKind::Workload(k) => k.clone(),
        },
        node: e.node.clone(),
        ips: e.ips.iter().map(ToString::to_string).collect(),
        identity: resolved.endpoints.get(index.index()).and_then(|r| r.identity).map(|i| i.get()),
        labels: e.labels.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        named_ports: e.named_ports.iter().map(|p| format!("{}={}/{}", p.name, p.protocol, p.port)).collect(),
        selected_by,
        isolated_by,
        tiered_by,
        reached_by,
        reaches,
    }
}

fn side_name(cluster: &Cluster, side: &Side) -> String {
    crate::analysis::connectivity::peer_name(cluster, side)
}

/// The sender's egress and the receiver's ingress decisions.
type Reasons = (Option<Reason>, Option<Reason>);

/// Reasons with the L7 parser of their rules, where they allow only
/// through the proxy (as `connectivity` marks it).
type FlowKey = (Reasons, Option<String>);

/// Reasons and the protocols and port ranges they decide.
type ReasonedPorts = (FlowKey, Vec<(Protocol, PortRange)>);

/// The allowed flows of a pair of runs (egress, ingress), grouped by
/// reasons: per reasons, the port ranges where they decide, adjacent
/// ones merged; sorted by ports.
fn flows(
    citations: &Citations,
    engine: &Engine,
    reasons: &mut HashMap<DecisionId, Reason>,
    (egress, ingress): (Option<RunsId>, Option<RunsId>),
) -> Vec<ReasonedPorts> {
    let mut reason = |d: Option<DecisionId>| {
        d.map(|d| reasons.entry(d).or_insert_with(|| citations.reason(engine.decision(d))).clone())
    };
    let mut grouped: BTreeMap<FlowKey, Vec<(Protocol, PortRange)>> = BTreeMap::new();
    let mut run: Option<(FlowKey, usize, PortRange)> = None;
    for (pi, range, e, i) in engine.pieces(egress, ingress) {
        let step = (engine.passes(e) && engine.passes(i)).then(|| {
            let l7 = l7_parser(engine.cluster(), [e.map(|d| engine.decision(d)), i.map(|d| engine.decision(d))]);
            ((reason(e), reason(i)), l7)
        });
        match (&mut run, step) {
            (Some((key, p, r)), Some(k2)) if *key == k2 && *p == pi && u32::from(r.hi) + 1 == u32::from(range.lo) => {
                r.hi = range.hi
            }
            (_, step) => {
                if let Some((key, p, r)) = run.take() {
                    grouped.entry(key).or_default().push((PROTOCOLS[p], r));
                }
                run = step.map(|k| (k, pi, range));
            }
        }
    }
    if let Some((key, p, r)) = run {
        grouped.entry(key).or_default().push((PROTOCOLS[p], r));
    }
    let mut out: Vec<ReasonedPorts> = grouped.into_iter().collect();
    out.sort_by(|a, b| a.1.cmp(&b.1));
    out
}

/// Human text.
pub fn render_human(x: &Explanation) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{} ({})", x.name, x.kind);
    let _ = writeln!(out, "  node: {}", x.node.as_deref().unwrap_or("-"));
    let _ = writeln!(out, "  ips: {}", if x.ips.is_empty() { "-".to_string() } else { x.ips.join(", ") });
    let _ = writeln!(out, "  identity: {}", x.identity.map_or("-".to_string(), |i| i.to_string()));
    let _ = writeln!(out, "  identity labels:");
    for l in &x.labels {
        let _ = writeln!(out, "    {l}");
    }
    if !x.named_ports.is_empty() {
        let _ = writeln!(out, "  named ports: {}", x.named_ports.join(", "));
    }
    let _ = writeln!(out, "\nselected by:");
    if x.selected_by.is_empty() {
        let _ = writeln!(out, "  no policy");
    }
    for s in &x.selected_by {
        let rules: Vec<String> = s.rules.iter().map(|(k, n)| format!("{n} {k}")).collect();
        let isolates: Vec<&str> = s.isolates.iter().map(|d| d.name()).collect();
        let _ = writeln!(out, "  {}", policy_text(&s.policy));
        let _ = writeln!(
            out,
            "    isolates: {}; rules: {}",
            if isolates.is_empty() { "-".to_string() } else { isolates.join(", ") },
            if rules.is_empty() { "none".to_string() } else { rules.join(", ") }
        );
    }
    let _ = writeln!(out, "\nisolation:");
    for d in Direction::BOTH {
        let _ = writeln!(out, "  {d}: {}", isolation_text(&x.isolated_by[d.index()], &x.tiered_by[d.index()]));
    }
    for (title, flows) in [("may be reached by", &x.reached_by), ("may reach", &x.reaches)] {
        let _ = writeln!(out, "\n{title}:");
        if flows.is_empty() {
            let _ = writeln!(out, "  nothing");
        }
        for f in flows {
            let _ = writeln!(out, "  {}  {}", f.peer, f.port_items().join(","));
            if let Some(r) = &f.egress {
                let _ = writeln!(out, "    egress: {}", reason_text(r));
            }
            if let Some(r) = &f.ingress {
                let _ = writeln!(out, "    ingress: {}", reason_text(r));
            }
        }
    }
    out
}

/// How one direction is decided, in words: the tiers in the order they
/// are asked. An admin policy decides what its rules match before the
/// NetworkPolicy tier; a baseline policy only where no NetworkPolicy (or
/// Cilium policy) isolates the endpoint (`decide` in `policyc_ir::eval`).
fn isolation_text(isolated_by: &[PolicyRef], tiered_by: &[(Tier, PolicyRef)]) -> String {
    let names = |tier: Tier| -> Vec<String> {
        tiered_by.iter().filter(|(t, _)| *t == tier).map(|(_, p)| p.policy.clone()).collect()
    };
    let (admin, baseline) = (names(Tier::Admin), names(Tier::Baseline));
    let mut steps = Vec::new();
    if !admin.is_empty() {
        steps.push(format!("the admin tier decides what its rules match first ({})", admin.join(", ")));
    }
    if !isolated_by.is_empty() {
        let by: Vec<String> = isolated_by.iter().map(|p| p.policy.clone()).collect();
        if steps.is_empty() {
            return format!("isolated by {}", by.join(", "));
        }
        steps.push(format!("then isolated by {}", by.join(", ")));
        return steps.join("; ");
    }
    if admin.is_empty() && baseline.is_empty() {
        return "not isolated (everything is allowed unless a deny rule drops it)".to_string();
    }
    if !baseline.is_empty() {
        let then = if admin.is_empty() { "" } else { "then " };
        steps.push(format!("{then}the baseline tier decides what its rules match ({})", baseline.join(", ")));
    }
    format!("no NetworkPolicy isolates it; {}; what no rule matches is allowed", steps.join("; "))
}

/// JSON.
pub fn render_json(x: &Explanation) -> Value {
    let flows = |fs: &[Flow]| -> Vec<Value> {
        fs.iter()
            .map(|f| {
                json!({
                    "peer": f.peer,
                    "ports": f.port_items(),
                    "egress": f.egress.as_ref().map(reason_json),
                    "ingress": f.ingress.as_ref().map(reason_json),
                })
            })
            .collect()
    };
    let mut value = json!({
        "endpoint": x.name,
        "kind": x.kind,
        "node": x.node,
        "ips": x.ips,
        "identity": x.identity,
        "labels": x.labels,
        "named_ports": x.named_ports,
        "selected_by": x.selected_by.iter().map(|s| json!({
            "policy": policy_json(&s.policy),
            "isolates": s.isolates.iter().map(|d| d.name()).collect::<Vec<_>>(),
            "rules": s.rules,
        })).collect::<Vec<_>>(),
        "isolated": {
            "ingress": x.isolated_by[0].iter().map(|p| p.policy.clone()).collect::<Vec<_>>(),
            "egress": x.isolated_by[1].iter().map(|p| p.policy.clone()).collect::<Vec<_>>(),
        },
        "reached_by": flows(&x.reached_by),
        "reaches": flows(&x.reaches),
    });
    // Only where admin or baseline policies decide, so that output without
    // them stays as it was.
    if x.tiered_by.iter().any(|t| !t.is_empty()) {
        let tiers = |d: usize| -> Vec<Value> {
            x.tiered_by[d].iter().map(|(t, p)| json!({"tier": t.name(), "policy": p.policy})).collect()
        };
        value["tiers"] = json!({"ingress": tiers(0), "egress": tiers(1)});
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(policy: &str) -> PolicyRef {
        PolicyRef { policy: policy.to_string(), rule: None, file: None, line: None, rule_line: None }
    }

    #[test]
    fn isolation_names_the_tiers_in_the_order_they_decide() {
        let (np, anp, banp) = (named("NetworkPolicy a/np"), named("AdminNetworkPolicy x"), named("BANP default"));
        assert_eq!(isolation_text(std::slice::from_ref(&np), &[]), "isolated by NetworkPolicy a/np");
        // Where a NetworkPolicy isolates, the baseline tier is never asked.
        assert_eq!(
            isolation_text(&[np], &[(Tier::Admin, anp.clone()), (Tier::Baseline, banp.clone())]),
            "the admin tier decides what its rules match first (AdminNetworkPolicy x); then isolated by NetworkPolicy a/np"
        );
        assert_eq!(
            isolation_text(&[], &[(Tier::Baseline, banp)]),
            "no NetworkPolicy isolates it; the baseline tier decides what its rules match (BANP default); \
             what no rule matches is allowed"
        );
        assert_eq!(isolation_text(&[], &[]), "not isolated (everything is allowed unless a deny rule drops it)");
    }
}
