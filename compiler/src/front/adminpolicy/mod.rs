//! network-policy-api's cluster-admin policies, lowered to
//! [`TierPolicy`]: `AdminNetworkPolicy` and `BaselineAdminNetworkPolicy`
//! (`policy.networking.k8s.io/v1alpha1`) and `ClusterNetworkPolicy`
//! (`policy.networking.k8s.io/v1alpha2`).
//!
//! The checks are those of their CRD validation (network-policy-api
//! `apis/v1alpha1/*_types.go`, `apis/v1alpha2/clusternetworkpolicy_types.go`):
//! `priority` 0-1000; exactly one of `namespaces`/`pods` in a subject and
//! an ingress peer, one of `namespaces`/`pods`/`nodes`/`networks`
//! (/`domainNames`) in an egress peer; the action enums; at least one peer
//! per rule and the list limits; a `BaselineAdminNetworkPolicy` named
//! `default`; a named port beside `networks`/`nodes` peers is a warning
//! (only the experimental CRD rejects it). A rule with an
//! error is left out (a part left out would widen it); errors stop
//! compilation anyway.

mod ports;

use super::decode::{index, join, plain_key, Ctx};
use super::spans::start;
use super::yaml::{Node, Pos, Value};
use super::{Body, Meta};
use crate::diag::{codes, did_you_mean};
use policyc_ir::cidr::{Cidr, CidrError};
use policyc_ir::labels::{NAMESPACE_LABEL, NAMESPACE_LABELS_PREFIX};
use policyc_ir::policy::PortMatch;
use policyc_ir::protocol::Direction;
use policyc_ir::selector::{LabelSelector, Operator, Requirement};
use policyc_ir::tier::{Tier, TierAction, TierKind, TierPeer, TierPolicy, TierRule};

/// A decoded admin policy with where its parts are written.
#[derive(Clone, Debug, PartialEq)]
pub struct SpannedTierPolicy {
    /// The policy.
    pub policy: TierPolicy,
    /// Where its object starts.
    pub object: Pos,
    /// Where each rule (list item) starts, in the order of `policy.rules`.
    pub rules: Vec<Pos>,
}

/// How one API version writes its policies.
struct Syntax {
    kind: TierKind,
    /// The actions its rules may take, with what each means.
    actions: &'static [(&'static str, TierAction)],
    /// Most rules per direction.
    max_rules: usize,
    /// Most peers per rule.
    max_peers: usize,
    /// The port list's key (`ports`, `protocols`) and its most items.
    ports_key: &'static str,
    max_ports: usize,
    /// The egress peer kinds beside `namespaces` and `pods`.
    egress_peers: &'static [&'static str],
}

const ANP: Syntax = Syntax {
    kind: TierKind::AdminNetworkPolicy,
    actions: &[("Allow", TierAction::Allow), ("Deny", TierAction::Deny), ("Pass", TierAction::Pass)],
    max_rules: 100,
    max_peers: 100,
    ports_key: "ports",
    max_ports: 100,
    egress_peers: &["nodes", "networks"],
};

/// A BANP's rules may only allow or deny: there is no tier after it to pass
/// to (`BaselineAdminNetworkPolicyRuleAction`, `apis/v1alpha1`).
const BANP: Syntax = Syntax {
    kind: TierKind::BaselineAdminNetworkPolicy,
    actions: &[("Allow", TierAction::Allow), ("Deny", TierAction::Deny)],
    ..ANP
};

/// v1alpha2 renames `Allow` to `Accept` and `ports` to `protocols`, and
/// lowers the limits to 25 (`ClusterNetworkPolicySpec`, `apis/v1alpha2`).
const CNP: Syntax = Syntax {
    kind: TierKind::ClusterNetworkPolicy,
    actions: &[("Accept", TierAction::Allow), ("Deny", TierAction::Deny), ("Pass", TierAction::Pass)],
    max_rules: 25,
    max_peers: 25,
    ports_key: "protocols",
    max_ports: 25,
    egress_peers: &["nodes", "networks", "domainNames"],
};

/// Most CIDRs in one `networks` peer (`MaxItems=25` in both versions).
const MAX_NETWORKS: usize = 25;
/// Longest rule `name` (`MaxLength=100`).
const MAX_RULE_NAME: usize = 100;

/// Decodes an `AdminNetworkPolicy`.
pub fn admin_network_policy(ctx: &mut Ctx, meta: &Meta, root: &Node) -> Option<Body> {
    decode(ctx, meta, root, &ANP)
}

/// Decodes a `BaselineAdminNetworkPolicy`.
pub fn baseline_admin_network_policy(ctx: &mut Ctx, meta: &Meta, root: &Node) -> Option<Body> {
    // The BANP is a singleton: its CRD rejects any other name
    // (`self.metadata.name == 'default'`, `apis/v1alpha1`).
    if meta.name != "default" {
        let at = root.get("metadata").and_then(|m| m.get("name"));
        ctx.report(
            codes::BASELINE_NAME,
            at,
            "metadata.name",
            format!("a `BaselineAdminNetworkPolicy` must be named `default`, not `{}`", meta.name),
            Some("the baseline policy is a singleton named `default`".into()),
        );
    }
    decode(ctx, meta, root, &BANP)
}

/// Decodes a `ClusterNetworkPolicy`.
pub fn cluster_network_policy(ctx: &mut Ctx, meta: &Meta, root: &Node) -> Option<Body> {
    decode(ctx, meta, root, &CNP)
}

fn error_count(ctx: &Ctx) -> usize {
    ctx.diags.iter().filter(|d| d.is_error()).count()
}

fn decode(ctx: &mut Ctx, meta: &Meta, root: &Node, syntax: &Syntax) -> Option<Body> {
    ctx.fields(root, "", &["apiVersion", "kind", "metadata", "spec", "status"]);
    let spec = super::spec(ctx, root)?;
    let known: &[&str] = match syntax.kind {
        TierKind::AdminNetworkPolicy => &["priority", "subject", "ingress", "egress"],
        TierKind::BaselineAdminNetworkPolicy => &["subject", "ingress", "egress"],
        TierKind::ClusterNetworkPolicy => &["tier", "priority", "subject", "ingress", "egress"],
    };
    let fields = ctx.fields(spec, "spec", known)?;
    let tier = match syntax.kind {
        TierKind::AdminNetworkPolicy => Some(Tier::Admin),
        TierKind::BaselineAdminNetworkPolicy => Some(Tier::Baseline),
        TierKind::ClusterNetworkPolicy => ctx.required(&fields, "tier", spec, "spec").and_then(|n| tier_field(ctx, n)),
    };
    let priority = match syntax.kind {
        TierKind::BaselineAdminNetworkPolicy => Some(0),
        _ => ctx.required(&fields, "priority", spec, "spec").and_then(|n| priority(ctx, n)),
    };
    let subject = ctx.required(&fields, "subject", spec, "spec").and_then(|n| subject(ctx, n));

    let mut rules = Vec::new();
    let mut positions = Vec::new();
    for (dir, list) in [(Direction::Ingress, "ingress"), (Direction::Egress, "egress")] {
        let list_path = join("spec", list);
        let Some(node) = fields.get(list) else { continue };
        let items = ctx.list(node, &list_path);
        if items.len() > syntax.max_rules {
            let message = format!("{} `{list}` rules, more than the {} the CRD allows", items.len(), syntax.max_rules);
            ctx.report(codes::ADMIN_LIMIT, Some(node), &list_path, message, None);
        }
        for (i, item) in items.iter().enumerate() {
            let path = index(&list_path, i);
            if let Some(r) = rule(ctx, syntax, dir, item, &path) {
                rules.push(r);
                positions.push(start(item));
            }
        }
    }
    let policy = TierPolicy {
        kind: syntax.kind,
        name: meta.name.clone(),
        tier: tier?,
        priority: priority?,
        subject: subject?,
        rules,
    };
    Some(Body::Tier(SpannedTierPolicy { policy, object: meta.start, rules: positions }))
}

fn tier_field(ctx: &mut Ctx, node: &Node) -> Option<Tier> {
    let text = ctx.string(node, "spec.tier")?;
    match text {
        "Admin" => Some(Tier::Admin),
        "Baseline" => Some(Tier::Baseline),
        other => {
            let help = did_you_mean(other, ["Admin", "Baseline"])
                .map(|s| format!("did you mean `{s}`?"))
                .unwrap_or_else(|| "`tier` is `Admin` or `Baseline`".into());
            ctx.report(codes::ADMIN_TIER, Some(node), "spec.tier", format!("unknown tier `{other}`"), Some(help));
            None
        }
    }
}

fn priority(ctx: &mut Ctx, node: &Node) -> Option<u16> {
    let p = ctx.int(node, "spec.priority")?;
    if !(0..=1000).contains(&p) {
        ctx.report(
            codes::ADMIN_PRIORITY_OUT_OF_RANGE,
            Some(node),
            "spec.priority",
            format!("priority `{p}` is out of range"),
            Some("priorities are 0-1000, lower first".into()),
        );
        return None;
    }
    Some(p as u16)
}

/// The one key a one-of mapping (`MinProperties=1`, `MaxProperties=1`)
/// sets, among `choices`; reported when it sets none or several.
fn one_of<'n>(ctx: &mut Ctx, node: &'n Node, path: &str, choices: &[&str]) -> Option<(String, &'n Node)> {
    let fields = ctx.fields(node, path, choices)?;
    let set: Vec<&str> = choices.iter().copied().filter(|c| fields.has(c)).collect();
    let list = choices.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ");
    match set.as_slice() {
        [one] => {
            let value = match &node.value {
                Value::Map(entries) => entries.iter().find(|(k, _)| k.as_str() == Some(one)).map(|(_, v)| v)?,
                _ => return None,
            };
            Some((one.to_string(), value))
        }
        [] => {
            ctx.report(
                codes::ADMIN_ONE_OF,
                Some(node),
                path,
                format!("sets none of {list}"),
                Some("set exactly one".into()),
            );
            None
        }
        several => {
            let names = several.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(" and ");
            let message = format!("sets {names}; exactly one of {list} may be set");
            ctx.report(
                codes::ADMIN_ONE_OF,
                Some(node),
                path,
                message,
                Some("write each as a list item of its own".into()),
            );
            None
        }
    }
}

/// A label selector that is required (`null` is an error, `{}` selects all).
fn selector(ctx: &mut Ctx, node: &Node, path: &str) -> Option<LabelSelector> {
    if node.value == Value::Null {
        ctx.report(codes::MISSING_FIELD, Some(node), path, "the selector is `null`", Some("`{}` selects all".into()));
        return None;
    }
    ctx.selector(node, path, plain_key)
}

/// Pods in the namespaces `namespaces` selects, as endpoint labels carry
/// them: namespace labels under `io.cilium.k8s.namespace.labels.`; an
/// empty selector is every namespace, "has a namespace" (pods only).
fn in_namespaces(pods: LabelSelector, namespaces: LabelSelector) -> LabelSelector {
    let mut selector = pods;
    if namespaces.is_empty() {
        selector.requirements.push(Requirement {
            key: NAMESPACE_LABEL.to_string(),
            operator: Operator::Exists,
            values: Vec::new(),
        });
    } else {
        selector.requirements.extend(
            namespaces
                .requirements
                .into_iter()
                .map(|r| Requirement { key: format!("{NAMESPACE_LABELS_PREFIX}{}", r.key), ..r }),
        );
    }
    selector
}

/// `namespaces` or `pods` (`NamespacedPod`: both selectors required).
fn pods_or_namespaces(ctx: &mut Ctx, key: &str, node: &Node, path: &str) -> Option<LabelSelector> {
    match key {
        "namespaces" => Some(in_namespaces(LabelSelector::everything(), selector(ctx, node, path)?)),
        _ => {
            let fields = ctx.fields(node, path, &["namespaceSelector", "podSelector"])?;
            let part = |ctx: &mut Ctx, key: &str| match fields.get(key) {
                Some(n) => selector(ctx, n, &join(path, key)),
                None => {
                    // Both are required by the CRD (`NamespacedPod`, no
                    // `+optional`), but a Go client decodes a missing one
                    // as the empty selector, and so do the implementations
                    // and netpol-analyzer: read it so, and say so.
                    ctx.report(
                        codes::NAMESPACED_POD_SELECTOR_MISSING,
                        Some(node),
                        path,
                        format!("missing field `{key}`, read as `{{}}` (all)"),
                        Some(format!("the CRD requires `{key}`: write `{key}: {{}}` to select all")),
                    );
                    Some(LabelSelector::everything())
                }
            };
            let ns = part(ctx, "namespaceSelector");
            let pods = part(ctx, "podSelector");
            Some(in_namespaces(pods?, ns?))
        }
    }
}

fn subject(ctx: &mut Ctx, node: &Node) -> Option<LabelSelector> {
    let (key, value) = one_of(ctx, node, "spec.subject", &["namespaces", "pods"])?;
    pods_or_namespaces(ctx, &key, value, &join("spec.subject", &key))
}

fn rule(ctx: &mut Ctx, syntax: &Syntax, dir: Direction, node: &Node, path: &str) -> Option<TierRule> {
    let errors_before = error_count(ctx);
    let peers_key = if dir == Direction::Ingress { "from" } else { "to" };
    let fields = ctx.fields(node, path, &["name", "action", peers_key, syntax.ports_key])?;
    let name = fields.get("name").and_then(|n| ctx.text(n, &join(path, "name")));
    if let Some(n) = name.as_ref().filter(|n| n.len() > MAX_RULE_NAME) {
        let message = format!("rule name of {} characters is longer than the {MAX_RULE_NAME} the CRD allows", n.len());
        ctx.report(codes::ADMIN_LIMIT, fields.get("name"), &join(path, "name"), message, None);
    }
    let action =
        ctx.required(&fields, "action", node, path).and_then(|n| action(ctx, syntax, n, &join(path, "action")));

    let peers_path = join(path, peers_key);
    let peer_nodes = ctx.required(&fields, peers_key, node, path).map(|n| (n, ctx.list(n, &peers_path)));
    let mut peers = Vec::new();
    let mut addresses = false;
    if let Some((list_node, items)) = peer_nodes {
        if items.is_empty() || items.len() > syntax.max_peers {
            let message = format!("`{peers_key}` has {} peers; the CRD allows 1 to {}", items.len(), syntax.max_peers);
            ctx.report(codes::ADMIN_LIMIT, Some(list_node), &peers_path, message, None);
        }
        for (i, item) in items.iter().enumerate() {
            let item_path = index(&peers_path, i);
            let mut choices = vec!["namespaces", "pods"];
            if dir == Direction::Egress {
                choices.extend_from_slice(syntax.egress_peers);
            }
            let Some((key, value)) = one_of(ctx, item, &item_path, &choices) else { continue };
            let value_path = join(&item_path, &key);
            addresses |= key != "namespaces" && key != "pods";
            match key.as_str() {
                "namespaces" | "pods" => {
                    peers.extend(pods_or_namespaces(ctx, &key, value, &value_path).map(TierPeer::Endpoints))
                }
                "nodes" => peers.extend(selector(ctx, value, &value_path).map(TierPeer::Nodes)),
                "networks" => peers.extend(networks(ctx, value, &value_path)),
                _ => {
                    // Names are resolved at run time; a peer that matches
                    // nothing keeps an Accept from allowing anything. A
                    // Deny or Pass on them would need the addresses too:
                    // policyc cannot drop what it cannot name.
                    ctx.report(
                        codes::DOMAIN_NAMES_NOT_COMPILABLE,
                        Some(value),
                        &value_path,
                        "`domainNames` cannot be resolved ahead of time: this peer matches no traffic",
                        Some("name the addresses with a `networks` peer instead".into()),
                    );
                }
            }
        }
    }

    let ports_path = join(path, syntax.ports_key);
    let ports = match fields.get(syntax.ports_key) {
        None => None,
        Some(list_node) => {
            let items = ctx.list(list_node, &ports_path);
            if items.is_empty() && syntax.kind == TierKind::ClusterNetworkPolicy || items.len() > syntax.max_ports {
                let message = format!(
                    "`{}` has {} items; the CRD allows 1 to {}",
                    syntax.ports_key,
                    items.len(),
                    syntax.max_ports
                );
                ctx.report(codes::ADMIN_LIMIT, Some(list_node), &ports_path, message, None);
            }
            let mut out: Vec<PortMatch> = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let item_path = index(&ports_path, i);
                let parsed = match syntax.kind {
                    TierKind::ClusterNetworkPolicy => ports::protocol_v1alpha2(ctx, item, &item_path),
                    _ => ports::port_v1alpha1(ctx, item, &item_path),
                };
                let Some(m) = parsed else { continue };
                if addresses && matches!(m.ports, policyc_ir::policy::PortSpec::Named(_)) {
                    // Only the experimental channel's CRD rejects this ("networks/nodes
                    // peer cannot be set with namedPorts since there are no namedPorts
                    // for networks/nodes", an `<network-policy-api:experimental:validation>`
                    // rule on the egress rule); the standard CRD admits it. An address
                    // or a node has no container ports, so the name matches only the
                    // rule's pod peers (as netpol-analyzer reads it too).
                    ctx.report(
                        codes::ADMIN_NAMED_PORT_WITH_ADDRESSES,
                        Some(item),
                        &item_path,
                        "a named port in a rule with `networks`, `nodes` or `domainNames` peers matches only its pod peers",
                        Some("the experimental CRD rejects this: give the address peers a rule of their own with port numbers".into()),
                    );
                }
                out.push(m);
            }
            Some(out)
        }
    };
    if error_count(ctx) > errors_before {
        return None;
    }
    Some(TierRule { path: path.to_string(), name, direction: dir, action: action?, peers, ports })
}

fn action(ctx: &mut Ctx, syntax: &Syntax, node: &Node, path: &str) -> Option<TierAction> {
    let text = ctx.string(node, path)?;
    if let Some((_, a)) = syntax.actions.iter().find(|(name, _)| *name == text) {
        return Some(*a);
    }
    let names: Vec<&str> = syntax.actions.iter().map(|(n, _)| *n).collect();
    let list = names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ");
    let help = match (syntax.kind, text) {
        (TierKind::ClusterNetworkPolicy, "Allow") => "v1alpha2 names it `Accept`".to_string(),
        (TierKind::BaselineAdminNetworkPolicy, "Pass") => {
            "no tier follows the baseline: a baseline rule allows or denies".to_string()
        }
        _ => did_you_mean(text, names.iter().copied())
            .map(|s| format!("did you mean `{s}`?"))
            .unwrap_or_else(|| format!("the actions of `{}` rules are {list}", syntax.kind.name())),
    };
    ctx.report(codes::ADMIN_ACTION, Some(node), path, format!("invalid action `{text}`"), Some(help));
    None
}

fn networks(ctx: &mut Ctx, node: &Node, path: &str) -> Option<TierPeer> {
    let items = ctx.list(node, path);
    if items.is_empty() || items.len() > MAX_NETWORKS {
        let message = format!("`networks` has {} CIDRs; the CRD allows 1 to {MAX_NETWORKS}", items.len());
        ctx.report(codes::ADMIN_LIMIT, Some(node), path, message, None);
    }
    let mut cidrs: Vec<Cidr> = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let item_path = index(path, i);
        // The CRD leaves CIDRs to be "validated by implementations using
        // net.ParseCIDR" (`CIDR`, `apis/v1alpha1/shared_types.go`), which
        // accepts host bits and keeps the network: so does policyc, with a
        // warning (an `ipBlock` with host bits stays an error).
        if let Some(Err(CidrError::HostBitsSet(net))) = item.as_str().map(Cidr::parse_strict) {
            let text = item.as_str().unwrap_or_default();
            ctx.report(
                codes::NETWORK_HOST_BITS,
                Some(item),
                &item_path,
                format!("CIDR `{text}` has host bits set: read as `{net}`"),
                Some(format!("write `{net}`")),
            );
            cidrs.push(net);
            continue;
        }
        match ctx.cidr(item, &item_path) {
            Some(c) => cidrs.push(c),
            None => ok = false,
        }
    }
    ok.then_some(TierPeer::Networks(cidrs))
}

#[cfg(test)]
mod tests;
