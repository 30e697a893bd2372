//! `explain`: everything policy says about one endpoint. Which policies
//! select it and in which direction each isolates it, its identity number
//! and identity labels, what may reach it and what it may reach (on which
//! protocols and ports), and for each of those the decisions of both ends
//! with the rules behind them.
//!
//! Peers are the other endpoints and the outside address segments of the
//! connectivity table; verdicts are computed per port segment with the
//! reference evaluator and adjacent ports with the same reasons merge.

use crate::analysis::connectivity::{address_segments, full_range, party, port_cuts, Side, PROTOCOLS};
use crate::analysis::reason::{policy_json, policy_text, reason_json, reason_text, Citations, PolicyRef, Reason};
use crate::pipeline::Loaded;
use policyc_ir::cluster::{Cluster, EndpointKind};
use policyc_ir::eval::{eval, Query};
use policyc_ir::ids::EndpointId;
use policyc_ir::policy::{Action, Subject};
use policyc_ir::protocol::{Direction, PortRange, Protocol};
use policyc_ir::resolve::Resolved;
use policyc_ir::tier::TierAction;
use serde_json::{json, Value};
use std::collections::BTreeMap;
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
}

impl Flow {
    /// Ports as the connectivity table writes them.
    pub fn port_items(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|(p, r)| if *r == full_range(*p) { p.name().to_string() } else { format!("{}/{r}", p.name()) })
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

    let mut peers: Vec<Side> =
        cluster.endpoints_with_ids().map(|(i, _)| i).filter(|&i| i != index).map(Side::Endpoint).collect();
    peers.extend((0..cluster.nodes.len()).map(Side::Node));
    peers.extend(address_segments(cluster, &[]).into_iter().map(|(a, b)| Side::Addresses(a, b)));
    let cuts = port_cuts(cluster);
    let me = Side::Endpoint(index);
    let reached_by = peers.iter().flat_map(|p| flows(&citations, p, &me, p, &cuts)).collect();
    let reaches = peers.iter().flat_map(|p| flows(&citations, &me, p, p, &cuts)).collect();

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
        reached_by,
        reaches,
    }
}

fn side_name(cluster: &Cluster, side: &Side) -> String {
    crate::analysis::connectivity::peer_name(cluster, side)
}

/// The sender's egress and the receiver's ingress decisions.
type Reasons = (Option<Reason>, Option<Reason>);

/// The allowed flows from `src` to `dst`, grouped by reasons; `peer` is
/// the end that is not the explained endpoint.
fn flows(
    citations: &Citations,
    src: &Side,
    dst: &Side,
    peer: &Side,
    cuts: &[std::collections::BTreeSet<u32>; 4],
) -> Vec<Flow> {
    let cluster = citations.cluster();
    let mut grouped: BTreeMap<Reasons, Vec<(Protocol, PortRange)>> = BTreeMap::new();
    for (pi, &protocol) in PROTOCOLS.iter().enumerate() {
        let full = full_range(protocol);
        let starts: Vec<u32> =
            cuts[pi].iter().copied().filter(|&c| c >= u32::from(full.lo) && c <= u32::from(full.hi)).collect();
        let mut run: Option<(Reasons, PortRange)> = None;
        for (k, &start) in starts.iter().enumerate() {
            let end = starts.get(k + 1).map(|x| x - 1).unwrap_or(u32::from(full.hi));
            let range = PortRange { lo: start as u16, hi: end as u16 };
            let verdict = eval(cluster, &Query { src: party(src), dst: party(dst), protocol, port: range.lo });
            let step = verdict.allowed().then(|| {
                let r = |d: &Option<policyc_ir::eval::Decision>| d.as_ref().map(|d| citations.reason(d));
                (r(&verdict.egress), r(&verdict.ingress))
            });
            match (&mut run, step) {
                (Some((key, r)), Some(k2)) if *key == k2 => r.hi = range.hi,
                (_, step) => {
                    if let Some((key, r)) = run.take() {
                        grouped.entry(key).or_default().push((protocol, r));
                    }
                    run = step.map(|k| (k, range));
                }
            }
        }
        if let Some((key, r)) = run {
            grouped.entry(key).or_default().push((protocol, r));
        }
    }
    let name = side_name(cluster, peer);
    let mut out: Vec<Flow> = grouped
        .into_iter()
        .map(|((egress, ingress), ports)| Flow { peer: name.clone(), ports, egress, ingress })
        .collect();
    out.sort_by(|a, b| a.ports.cmp(&b.ports));
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
        let by = &x.isolated_by[d.index()];
        if by.is_empty() {
            let _ = writeln!(out, "  {d}: not isolated (everything is allowed unless a deny rule drops it)");
        } else {
            let names: Vec<String> = by.iter().map(|p| p.policy.clone()).collect();
            let _ = writeln!(out, "  {d}: isolated by {}", names.join(", "));
        }
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
    json!({
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
    })
}
