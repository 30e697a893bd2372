//! One `ingress`/`ingressDeny`/`egress`/`egressDeny` entry: its peers, and
//! (through [`super::ports`]) its ports, ICMP types and L7 rules.

use super::ports::{self, PortEntry};
use super::services::ServiceTarget;
use super::{normalize_key, Scope};
use crate::diag::{codes, did_you_mean};
use crate::front::decode::{index, join, Ctx, Fields};
use crate::front::spans::start;
use crate::front::yaml::{Node, Pos};
use policyc_ir::cidr::Cidr;
use policyc_ir::labels::RESERVED_PREFIX;
use policyc_ir::policy::{Action, Entity, Peer, Peers, PortMatch, Rule};
use policyc_ir::protocol::Direction;
use policyc_ir::selector::{LabelSelector, Operator};

/// A list of rules in a spec: its field, direction and action.
#[derive(Clone, Copy, Debug)]
pub(super) struct RuleKind {
    /// `ingress`, `ingressDeny`, `egress` or `egressDeny`.
    pub field: &'static str,
    pub direction: Direction,
    pub action: Action,
}

pub(super) const RULE_KINDS: [RuleKind; 4] = [
    RuleKind { field: "ingress", direction: Direction::Ingress, action: Action::Allow },
    RuleKind { field: "ingressDeny", direction: Direction::Ingress, action: Action::Deny },
    RuleKind { field: "egress", direction: Direction::Egress, action: Action::Allow },
    RuleKind { field: "egressDeny", direction: Direction::Egress, action: Action::Deny },
];

const INGRESS_FIELDS: &[&str] = &[
    "fromEndpoints",
    "fromRequires",
    "fromCIDR",
    "fromCIDRSet",
    "fromEntities",
    "fromNodes",
    "fromGroups",
    "toPorts",
    "icmps",
    "authentication",
];
const INGRESS_DENY_FIELDS: &[&str] = &[
    "fromEndpoints",
    "fromRequires",
    "fromCIDR",
    "fromCIDRSet",
    "fromEntities",
    "fromNodes",
    "fromGroups",
    "toPorts",
    "icmps",
];
const EGRESS_FIELDS: &[&str] = &[
    "toEndpoints",
    "toRequires",
    "toCIDR",
    "toCIDRSet",
    "toEntities",
    "toNodes",
    "toGroups",
    "toServices",
    "toFQDNs",
    "toPorts",
    "icmps",
    "authentication",
];
const EGRESS_DENY_FIELDS: &[&str] = &[
    "toEndpoints",
    "toRequires",
    "toCIDR",
    "toCIDRSet",
    "toEntities",
    "toNodes",
    "toGroups",
    "toServices",
    "toPorts",
    "icmps",
];

/// Entities Cilium knows that policyc expresses as CIDRs: outside the
/// cluster, one address family.
const WORLD_FAMILIES: [(&str, bool); 2] = [("world-ipv4", false), ("world-ipv6", true)];

/// Decodes one rule into one or more IR rules (one more per `toPorts`
/// entry with L7 rules, since L7 rules apply to that entry's ports only),
/// each with where it is written.
/// `fromRequires`/`toRequires` selectors go into `requires`, `toServices`
/// entries (with their paths) into `services`, for lowering to resolve.
#[allow(clippy::too_many_arguments)]
pub(super) fn decode_rule(
    ctx: &mut Ctx,
    scope: &Scope,
    node: &Node,
    path: &str,
    kind: RuleKind,
    host: bool,
    requires: &mut Vec<LabelSelector>,
    services: &mut Vec<(ServiceTarget, String, Pos)>,
) -> Vec<(Rule, Pos)> {
    let known = match (kind.direction, kind.action) {
        (Direction::Ingress, Action::Allow) => INGRESS_FIELDS,
        (Direction::Ingress, Action::Deny) => INGRESS_DENY_FIELDS,
        (Direction::Egress, Action::Allow) => EGRESS_FIELDS,
        (Direction::Egress, Action::Deny) => EGRESS_DENY_FIELDS,
    };
    let Some(fields) = ctx.fields(node, path, known) else { return Vec::new() };
    let deny = kind.action == Action::Deny;
    let (peers, has_peer_field) = peers(ctx, scope, &fields, known, path, kind, (requires, services));

    if let Some(auth) = fields.get("authentication").filter(|_| known.contains(&"authentication")) {
        ctx.report(
            codes::UNSUPPORTED_FIELD,
            Some(auth),
            &join(path, "authentication"),
            "mutual authentication is not enforced by policyc",
            Some("traffic this rule allows is allowed without authentication".into()),
        );
    }

    check_combinations(ctx, node, &fields, known, path, kind);

    let entries: Vec<PortEntry> = match fields.get("toPorts") {
        Some(tp) => ports::to_ports(ctx, tp, &join(path, "toPorts"), kind, host),
        None => Vec::new(),
    };
    let icmp: Vec<PortMatch> = match fields.get("icmps") {
        Some(i) => ports::icmps(ctx, i, &join(path, "icmps")),
        None => Vec::new(),
    };
    let has_ports = fields.get("toPorts").is_some_and(non_empty) || fields.get("icmps").is_some_and(non_empty);

    // Cilium: a rule without any peer field is L4-only (any peer) when it
    // names ports, and selects nothing otherwise; a peer field that is
    // present but empty (`toEndpoints: []`) selects nothing.
    let peers = if has_peer_field {
        Peers::Only(peers)
    } else if has_ports {
        Peers::Any
    } else {
        Peers::Only(Vec::new())
    };
    let make = |path: String, ports, l7| Rule {
        path,
        direction: kind.direction,
        action: kind.action,
        peers: peers.clone(),
        ports,
        l7,
    };
    if !has_ports {
        return vec![(make(path.to_string(), None, None), start(node))];
    }

    let mut plain = Vec::new();
    let mut with_l7 = Vec::new();
    for entry in entries {
        match entry.l7 {
            Some(l7) => with_l7.push((entry.index, entry.pos, entry.matches, l7)),
            None => plain.extend(entry.matches),
        }
    }
    plain.extend(icmp);
    let mut rules = Vec::new();
    if !plain.is_empty() || with_l7.is_empty() {
        rules.push((make(path.to_string(), Some(plain), None), start(node)));
    }
    debug_assert!(!deny || with_l7.is_empty(), "deny rules never carry L7 rules");
    for (i, pos, matches, l7) in with_l7 {
        rules.push((make(index(&join(path, "toPorts"), i), Some(matches), Some(l7)), pos));
    }
    rules
}

/// Peer fields of which Cilium's validator accepts only one kind per rule.
const EXCLUSIVE_PEERS: &[&str] = &[
    "fromEndpoints",
    "fromCIDR",
    "fromCIDRSet",
    "fromEntities",
    "fromNodes",
    "fromGroups",
    "toEndpoints",
    "toCIDR",
    "toCIDRSet",
    "toEntities",
    "toNodes",
    "toGroups",
    "toServices",
    "toFQDNs",
];

/// Reports combinations Cilium rejects when it imports a rule: two kinds of
/// peer (`toEndpoints` with `toCIDR`), and `icmps` with `toPorts`.
fn check_combinations(ctx: &mut Ctx, node: &Node, fields: &Fields, known: &[&str], path: &str, kind: RuleKind) {
    let present: Vec<&str> =
        EXCLUSIVE_PEERS.iter().copied().filter(|f| known.contains(f) && fields.get(f).is_some_and(non_empty)).collect();
    if let [first, second, ..] = present.as_slice() {
        ctx.report(
            codes::CILIUM_REJECTED_RULE,
            fields.get(second).or(Some(node)),
            &join(path, second),
            format!("`{first}` and `{second}` cannot be combined in one rule"),
            Some(format!("Cilium rejects rules with two kinds of peer; write one `{}` rule for each", kind.field)),
        );
    }
    let has = |f: &str| fields.get(f).is_some_and(non_empty);
    if has("icmps") && has("toPorts") {
        ctx.report(
            codes::CILIUM_REJECTED_RULE,
            fields.get("icmps"),
            &join(path, "icmps"),
            "`icmps` and `toPorts` cannot be combined in one rule",
            Some("Cilium rejects such rules; put `icmps` in a rule of its own with the same peers".into()),
        );
    }
}

fn non_empty(node: &Node) -> bool {
    !matches!(&node.value, crate::front::yaml::Value::Seq(items) if items.is_empty())
}

/// The union of a rule's peer fields, and whether it has any peer field at
/// all (an empty list counts: Cilium treats it as "select nothing").
fn peers(
    ctx: &mut Ctx,
    scope: &Scope,
    fields: &Fields,
    known: &[&str],
    path: &str,
    kind: RuleKind,
    (requires, services): (&mut Vec<LabelSelector>, &mut Vec<(ServiceTarget, String, Pos)>),
) -> (Vec<Peer>, bool) {
    let side = if kind.direction == Direction::Ingress { "from" } else { "to" };
    let deny = kind.action == Action::Deny;
    let mut peers = Vec::new();
    let mut has_peer_field = false;

    let key = format!("{side}Endpoints");
    if let Some(list) = fields.get(&key) {
        has_peer_field = true;
        for sel in selectors(ctx, list, &join(path, &key)) {
            peers.push(reserved_peer(&sel).unwrap_or_else(|| Peer::Endpoints(scope.peer_selector(sel))));
        }
    }

    let key = format!("{side}Requires");
    if let Some(list) = fields.get(&key) {
        for sel in selectors(ctx, list, &join(path, &key)) {
            requires.push(scope.peer_selector(sel));
        }
    }

    let key = format!("{side}CIDR");
    if let Some(list) = fields.get(&key) {
        has_peer_field = true;
        let list_path = join(path, &key);
        for (i, item) in ctx.list(list, &list_path).iter().enumerate() {
            if let Some(cidr) = ctx.cidr(item, &index(&list_path, i)) {
                peers.push(Peer::Cidr { cidr, except: Vec::new() });
            }
        }
    }

    let key = format!("{side}CIDRSet");
    if let Some(list) = fields.get(&key) {
        has_peer_field = true;
        let list_path = join(path, &key);
        for (i, item) in ctx.list(list, &list_path).iter().enumerate() {
            if let Some(peer) = cidr_set(ctx, item, &index(&list_path, i), deny) {
                peers.push(peer);
            }
        }
    }

    let key = format!("{side}Entities");
    if let Some(list) = fields.get(&key) {
        has_peer_field = true;
        let list_path = join(path, &key);
        for (i, item) in ctx.list(list, &list_path).iter().enumerate() {
            let item_path = index(&list_path, i);
            let Some(name) = ctx.string(item, &item_path) else { continue };
            if let Some(peer) = entity(ctx, name, item, &item_path) {
                peers.push(peer);
            }
        }
    }

    // Resolved at lowering against the input's Services (`services`).
    let key = format!("{side}Services");
    if let Some(list) = fields.get(&key).filter(|_| known.contains(&key.as_str())) {
        has_peer_field = true;
        let list_path = join(path, &key);
        for (i, item) in ctx.list(list, &list_path).iter().enumerate() {
            let item_path = index(&list_path, i);
            if let Some((target, pos)) = super::services::decode(ctx, item, &item_path) {
                services.push((target, item_path, pos));
            }
        }
    }

    // Each says why the peers cannot be compiled; the message says what
    // that does: an allow rule allows nothing for them (fail closed), a
    // deny rule drops nothing for them.
    let unenforced: [(&str, &str); 3] = [
        ("Nodes", "node selectors are not compiled by policyc"),
        ("Groups", "cloud provider groups cannot be resolved ahead of time"),
        ("FQDNs", "DNS names cannot be resolved ahead of time"),
    ];
    for (suffix, reason) in unenforced {
        let key = format!("{side}{suffix}");
        // Fields outside the schema (`toFQDNs` in a deny rule) were
        // already reported as unknown.
        let Some(node) = fields.get(&key).filter(|_| known.contains(&key.as_str())) else { continue };
        has_peer_field = true;
        let field_path = join(path, &key);
        let message = if deny {
            format!("not dropped: {reason}, so this deny rule drops no traffic {side} its `{key}` peers")
        } else {
            format!("denied: {reason}, so this rule allows no traffic {side} its `{key}` peers")
        };
        let (code, help) = match suffix {
            "FQDNs" => (codes::FQDN_NOT_COMPILABLE, "name the addresses with `toCIDR` or `toCIDRSet` instead"),
            _ => (codes::UNSUPPORTED_FIELD, "name the peers with endpoint selectors, entities or CIDRs instead"),
        };
        ctx.report(code, Some(node), &field_path, message, Some(help.to_string()));
    }
    (peers, has_peer_field)
}

/// The peer a selector on one `reserved:` label stands for. Reserved
/// identities carry the label `reserved:<name>` (Cilium's `pkg/labels`),
/// and `getEndpointSelector` (`pkg/k8s/apis/cilium.io/utils/utils.go`)
/// leaves a selector with a `reserved:` key unscoped, so
/// `fromEndpoints: [{matchLabels: {"reserved:world": ""}}]` selects what
/// the entity `world` selects; `reserved:world-ipv4` (`-ipv6`) is the
/// IPv4 (IPv6) half of it. Any other selector stays an endpoint selector
/// (one that also names other labels matches no reserved identity).
fn reserved_peer(selector: &LabelSelector) -> Option<Peer> {
    let [only] = selector.requirements.as_slice() else { return None };
    let name = only.key.strip_prefix(RESERVED_PREFIX)?;
    if only.operator != Operator::In || only.values != [""] {
        return None;
    }
    match name {
        "world-ipv4" => Some(Peer::Cidr { cidr: Cidr::all(false), except: Vec::new() }),
        "world-ipv6" => Some(Peer::Cidr { cidr: Cidr::all(true), except: Vec::new() }),
        // `all`, `cluster` and `none` are entities, not reserved identities.
        "all" | "cluster" | "none" => None,
        _ => Entity::parse(name).map(Peer::Entity),
    }
}

fn selectors(ctx: &mut Ctx, list: &Node, path: &str) -> Vec<LabelSelector> {
    let items = ctx.list(list, path);
    items.iter().enumerate().filter_map(|(i, item)| ctx.selector(item, &index(path, i), normalize_key)).collect()
}

fn entity(ctx: &mut Ctx, name: &str, node: &Node, path: &str) -> Option<Peer> {
    if let Some(e) = Entity::parse(name) {
        return Some(Peer::Entity(e));
    }
    if let Some((_, ipv6)) = WORLD_FAMILIES.iter().find(|(n, _)| *n == name) {
        // The world of one address family: every address of that family
        // outside the cluster, which is what a CIDR peer means.
        return Some(Peer::Cidr { cidr: Cidr::all(*ipv6), except: Vec::new() });
    }
    let known = Entity::ALL.iter().map(|e| e.name()).chain(WORLD_FAMILIES.iter().map(|(n, _)| *n));
    let help = did_you_mean(name, known).map(|s| format!("did you mean `{s}`?")).unwrap_or_else(|| {
        let names: Vec<&str> = Entity::ALL.iter().map(|e| e.name()).collect();
        format!("entities are {}", names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "))
    });
    ctx.report(codes::UNKNOWN_ENTITY, Some(node), path, format!("unknown entity `{name}`"), Some(help));
    None
}

/// One `fromCIDRSet`/`toCIDRSet` entry.
fn cidr_set(ctx: &mut Ctx, node: &Node, path: &str, deny: bool) -> Option<Peer> {
    let fields = ctx.fields(node, path, &["cidr", "except", "cidrGroupRef", "cidrGroupSelector"])?;
    for group in ["cidrGroupRef", "cidrGroupSelector"] {
        if let Some(g) = fields.get(group) {
            let effect = if deny { "this deny rule drops nothing for it" } else { "this rule allows nothing for it" };
            ctx.report(
                codes::UNSUPPORTED_FIELD,
                Some(g),
                &join(path, group),
                format!("`{group}` (CiliumCIDRGroup) is not supported by policyc"),
                Some(format!("{effect}; write the prefixes under `cidr` instead")),
            );
        }
    }
    let Some(cidr_node) = fields.get("cidr") else {
        if fields.get("cidrGroupRef").is_none() && fields.get("cidrGroupSelector").is_none() {
            ctx.report(codes::MISSING_FIELD, Some(node), path, "missing field `cidr`", None);
        }
        return None;
    };
    let cidr = ctx.cidr(cidr_node, &join(path, "cidr"));
    let mut except = Vec::new();
    if let Some(list) = fields.get("except") {
        let except_path = join(path, "except");
        for (i, item) in ctx.list(list, &except_path).iter().enumerate() {
            let item_path = index(&except_path, i);
            let Some(e) = ctx.cidr(item, &item_path) else { continue };
            if let Some(c) = cidr {
                if !c.covers(e) {
                    ctx.report(
                        codes::EXCEPT_OUTSIDE_CIDR,
                        Some(item),
                        &item_path,
                        format!("`except` prefix `{e}` is not inside `{c}`"),
                        Some("each `except` prefix must lie within the entry's `cidr`".into()),
                    );
                    continue;
                }
            }
            except.push(e);
        }
    }
    except.sort();
    except.dedup();
    Some(Peer::Cidr { cidr: cidr?, except })
}
