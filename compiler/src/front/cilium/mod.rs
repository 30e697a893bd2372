//! `cilium.io/v2` `CiliumNetworkPolicy` (CNP) and
//! `CiliumClusterwideNetworkPolicy` (CCNP), lowered to normalized
//! [`Policy`] values: one per `spec` and per `specs[i]`.
//!
//! Namespace scoping is folded in here, as Cilium does when it imports a
//! policy: a CNP's subject always lives in the policy's namespace, and its
//! peer selectors that name no namespace mean the policy's namespace; a
//! CCNP's peer selectors that name no namespace mean pods of any namespace.
//! Selectors naming `reserved:` labels are never namespace-scoped.

mod ports;
mod rule;
pub mod services;
#[cfg(test)]
mod tests;

use super::decode::{index, join, Ctx};
use super::spans::{cite_rule, key_pos, start, PolicySpans, RuleSpans, SpannedPolicy};
use super::yaml::{Node, Pos};
use super::{Body, Meta};
use crate::diag::codes;
use policyc_ir::labels::{Labels, NAMESPACE_LABEL, NAMESPACE_LABELS_PREFIX, RESERVED_PREFIX};
use policyc_ir::policy::{Action, Policy, PolicyKind, PolicyOrigin, Subject};
use policyc_ir::protocol::Direction;
use policyc_ir::selector::{LabelSelector, Operator, Requirement};
use services::ServiceRef;
use std::sync::Arc;

/// Fields of a CNP/CCNP object, besides what `metadata` decoding checks.
const OBJECT_FIELDS: &[&str] = &["apiVersion", "kind", "metadata", "spec", "specs", "status"];

/// Fields of one spec (Cilium's `api.Rule`).
const SPEC_FIELDS: &[&str] = &[
    "endpointSelector",
    "nodeSelector",
    "ingress",
    "ingressDeny",
    "egress",
    "egressDeny",
    "labels",
    "description",
    "enableDefaultDeny",
];

/// Decodes a `CiliumNetworkPolicy`.
pub fn network_policy(ctx: &mut Ctx, meta: &Meta, root: &Node) -> Option<Body> {
    let scope = Scope { kind: PolicyKind::CiliumNetworkPolicy, namespace: meta.namespace.clone() };
    decode_object(ctx, meta, root, &scope)
}

/// Decodes a `CiliumClusterwideNetworkPolicy`.
pub fn clusterwide_network_policy(ctx: &mut Ctx, meta: &Meta, root: &Node) -> Option<Body> {
    let scope = Scope { kind: PolicyKind::CiliumClusterwideNetworkPolicy, namespace: None };
    decode_object(ctx, meta, root, &scope)
}

/// Whether the policy is namespaced, and where.
pub(crate) struct Scope {
    kind: PolicyKind,
    /// The policy's namespace (CNP); `None` for a CCNP.
    namespace: Option<String>,
}

impl Scope {
    /// Scopes a peer selector (`fromEndpoints`, `toRequires`, ...) the way
    /// Cilium does: a selector that names no namespace and no reserved
    /// label means the policy's namespace (CNP; unless it selects on
    /// namespace labels) or any namespace (CCNP; Cilium adds "has a
    /// namespace", so only pods match, not the host or the world).
    fn peer_selector(&self, mut selector: LabelSelector) -> LabelSelector {
        let reserved = selector.requirements.iter().any(|r| r.key.starts_with(RESERVED_PREFIX));
        if reserved || selector.mentions(NAMESPACE_LABEL) {
            return selector;
        }
        let on_namespace_labels = selector.requirements.iter().any(|r| r.key.starts_with(NAMESPACE_LABELS_PREFIX));
        let requirement = match &self.namespace {
            // A selector on namespace labels picks its namespaces itself.
            Some(_) if on_namespace_labels => return selector,
            Some(ns) => Requirement::equals(NAMESPACE_LABEL, ns.clone()),
            None => Requirement { key: NAMESPACE_LABEL.to_string(), operator: Operator::Exists, values: Vec::new() },
        };
        selector.requirements.push(requirement);
        selector
    }
}

/// Scopes the `endpointSelector` of a CiliumNetworkPolicy to the policy's
/// namespace `ns` as Cilium's `ParseToCiliumRule`
/// (`pkg/k8s/apis/cilium.io/utils/utils.go`) does: it sets the `matchLabels`
/// entry `k8s:io.kubernetes.pod.namespace` to `ns` (`AddMatch`, replacing
/// what the user wrote under that exact key) and keeps everything else. A
/// namespace named another way (without the `k8s:` source, which Cilium
/// reads as `any:`, or in `matchExpressions`) stays beside it, so a
/// selector naming another namespace that way matches nothing, never the
/// other namespace's pods.
fn subject_namespace(ctx: &mut Ctx, es: &Node, es_path: &str, ns: &str, selector: &mut LabelSelector) {
    let own = Requirement::equals(NAMESPACE_LABEL, ns);
    let k8s_key = format!("k8s:{NAMESPACE_LABEL}");
    let replaced = es.get("matchLabels").and_then(|ml| ml.get(&k8s_key)).and_then(Node::scalar_text);
    if let Some(value) = &replaced {
        let written = Requirement::equals(NAMESPACE_LABEL, value.as_str());
        if let Some(i) = selector.requirements.iter().position(|r| *r == written) {
            selector.requirements.remove(i);
        }
        if *value != ns {
            ctx.report(
                codes::SUBJECT_NAMESPACE_OVERRIDDEN,
                Some(es),
                es_path,
                format!("the `endpointSelector` of a CiliumNetworkPolicy always selects pods of its own namespace `{ns}`"),
                Some(format!("Cilium replaces `{k8s_key}: {value}` with `{ns}`; use a CiliumClusterwideNetworkPolicy to select pods of other namespaces")),
            );
        }
    }
    let in_own = Labels::from_pairs([(NAMESPACE_LABEL, ns)]);
    let kept_other = selector.requirements.iter().any(|r| r.key == NAMESPACE_LABEL && !r.matches(&in_own));
    if kept_other {
        ctx.report(
            codes::SUBJECT_NAMESPACE_OVERRIDDEN,
            Some(es),
            es_path,
            format!("this `endpointSelector` selects no pod: it names a namespace other than the policy's own `{ns}`"),
            Some(format!("Cilium adds `{k8s_key}: {ns}` and keeps this requirement, as it replaces only a `{k8s_key}` entry of `matchLabels`")),
        );
    }
    if !selector.requirements.contains(&own) {
        selector.requirements.push(own);
    }
}

/// Strips Cilium's `k8s:` and `any:` label sources from a selector key;
/// `reserved:NAME` stays as it is (reserved identities carry that key).
pub fn normalize_key(key: &str) -> String {
    key.strip_prefix("k8s:").or_else(|| key.strip_prefix("any:")).unwrap_or(key).to_string()
}

fn decode_object(ctx: &mut Ctx, meta: &Meta, root: &Node, scope: &Scope) -> Option<Body> {
    let fields = ctx.fields(root, "", OBJECT_FIELDS)?;
    let mut policies = Vec::new();
    let spec = fields.get("spec");
    let specs = fields.get("specs");
    if let Some(spec) = spec {
        let at = key_pos(root, "spec");
        policies.extend(decode_spec(ctx, meta, scope, spec, "spec", at));
    }
    let mut listed = 0;
    if let Some(specs) = specs {
        let items = ctx.list(specs, "specs");
        listed = items.len();
        for (i, spec) in items.iter().enumerate() {
            policies.extend(decode_spec(ctx, meta, scope, spec, &index("specs", i), Some(start(spec))));
        }
    }
    if spec.is_none() && listed == 0 {
        let kind = scope.kind.name();
        ctx.report(
            codes::EMPTY_SPEC,
            Some(root),
            "",
            format!("`{kind}` has neither `spec` nor `specs`"),
            Some("write the rule under `spec`, or a list of rules under `specs`".into()),
        );
        return None;
    }
    Some(Body::Policy(policies))
}

/// One spec at `path`, written at `at`.
fn decode_spec(
    ctx: &mut Ctx,
    meta: &Meta,
    scope: &Scope,
    node: &Node,
    path: &str,
    at: Option<Pos>,
) -> Option<SpannedPolicy> {
    let fields = ctx.fields(node, path, SPEC_FIELDS)?;
    let subject = subject(ctx, scope, node, path, fields.get("endpointSelector"), fields.get("nodeSelector"));

    if let Some(d) = fields.get("description") {
        ctx.string(d, &join(path, "description"));
    }
    if let Some(labels) = fields.get("labels") {
        let labels_path = join(path, "labels");
        for (i, l) in ctx.list(labels, &labels_path).iter().enumerate() {
            ctx.fields(l, &index(&labels_path, i), &["key", "value", "source"]);
        }
    }

    let host = matches!(subject, Some(Subject::Nodes(_)));
    // `fromRequires` in allow rules narrows the allow rules, in deny rules
    // the deny rules (Cilium's `resolveL4IngressPolicy`, `pkg/policy/rules.go`:
    // `requirements` and `requirementsDeny`).
    let mut requires: [Vec<LabelSelector>; 2] = Default::default();
    let mut deny_requires: [Vec<LabelSelector>; 2] = Default::default();
    let mut rules = Vec::new();
    let mut services = Vec::new();
    let mut spans =
        PolicySpans { object: meta.start, spec: at, subject: key_pos(node, "endpointSelector"), rules: Vec::new() };
    let mut has_rules = [false, false];
    for kind in rule::RULE_KINDS {
        let Some(list) = fields.get(kind.field) else { continue };
        let list_path = join(path, kind.field);
        let items = ctx.list(list, &list_path);
        has_rules[kind.direction.index()] |= !items.is_empty();
        for (i, item) in items.iter().enumerate() {
            let rule_path = index(&list_path, i);
            let reqs = match kind.action {
                Action::Allow => &mut requires[kind.direction.index()],
                Action::Deny => &mut deny_requires[kind.direction.index()],
            };
            let cited = cite_rule(item, &rule_path);
            let mut named = Vec::new();
            let first = rules.len();
            for (rule, pos) in rule::decode_rule(ctx, scope, item, &rule_path, kind, host, reqs, &mut named) {
                rules.push(rule);
                spans.rules.push(RuleSpans { pos, cited: Arc::clone(&cited) });
            }
            services.extend(named.into_iter().map(|(target, path, pos)| ServiceRef {
                rules: first..rules.len(),
                target,
                path,
                pos,
            }));
        }
    }

    let mut default_deny = has_rules;
    if let Some(dd) = fields.get("enableDefaultDeny") {
        let dd_path = join(path, "enableDefaultDeny");
        if let Some(dd_fields) = ctx.fields(dd, &dd_path, &["ingress", "egress"]) {
            for dir in Direction::BOTH {
                if let Some(b) = dd_fields.get(dir.name()) {
                    if let Some(b) = ctx.boolean(b, &join(&dd_path, dir.name())) {
                        default_deny[dir.index()] = b;
                    }
                }
            }
        }
    }

    let origin = PolicyOrigin {
        kind: scope.kind,
        namespace: scope.namespace.clone(),
        name: meta.name.clone(),
        spec_path: path.to_string(),
    };
    let policy = Policy { origin, subject: subject?, default_deny, requires, deny_requires, rules };
    Some(SpannedPolicy { policy, spans, services })
}

/// The subject: exactly one of `endpointSelector` and `nodeSelector`.
fn subject(
    ctx: &mut Ctx,
    scope: &Scope,
    node: &Node,
    path: &str,
    endpoint_selector: Option<&Node>,
    node_selector: Option<&Node>,
) -> Option<Subject> {
    match (endpoint_selector, node_selector) {
        (Some(_), Some(n)) => {
            ctx.report(
                codes::SELECTOR_CHOICE,
                Some(n),
                &join(path, "nodeSelector"),
                "a rule cannot have both `endpointSelector` and `nodeSelector`",
                Some("use `endpointSelector` for pods, `nodeSelector` for nodes (host policy)".into()),
            );
            None
        }
        (None, None) => {
            ctx.report(
                codes::SELECTOR_CHOICE,
                Some(node),
                path,
                "a rule needs `endpointSelector` or `nodeSelector`",
                Some("`endpointSelector: {}` selects every pod the policy can apply to".into()),
            );
            None
        }
        (Some(es), None) => {
            let es_path = join(path, "endpointSelector");
            let mut selector = ctx.selector(es, &es_path, normalize_key)?;
            if let Some(ns) = &scope.namespace {
                subject_namespace(ctx, es, &es_path, ns, &mut selector);
            }
            Some(Subject::Endpoints(selector))
        }
        (None, Some(ns)) => {
            let ns_path = join(path, "nodeSelector");
            let selector = ctx.selector(ns, &ns_path, normalize_key);
            if scope.namespace.is_some() {
                ctx.report(
                    codes::NODE_SELECTOR_IN_CNP,
                    Some(ns),
                    &ns_path,
                    "a CiliumNetworkPolicy cannot have `nodeSelector`",
                    Some("host policies are cluster-wide: make this a CiliumClusterwideNetworkPolicy".into()),
                );
                return None;
            }
            Some(Subject::Nodes(selector?))
        }
    }
}
