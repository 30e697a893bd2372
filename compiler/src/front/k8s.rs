//! `networking.k8s.io/v1` `NetworkPolicy`, lowered to one normalized
//! [`Policy`] exactly as Kubernetes defines it and Cilium translates it:
//! the namespace is folded into the selectors, a `namespaceSelector`
//! becomes requirements on the pod's namespace labels, `policyTypes` is
//! defaulted as the API server defaults it.
//!
//! A rule with an error is left out of the policy rather than kept with a
//! part missing: a missing part (`ports`, `from`) would mean "all" and
//! widen the rule. Errors stop compilation anyway; this keeps the policy
//! that `lint` prints honest.

use super::decode::{check_port_name, index, join, plain_key, Ctx, PortValue};
use super::spans::{cite_rule, key_pos, start, PolicySpans, RuleSpans, SpannedPolicy};
use super::yaml::{Node, Value};
use super::{Body, Meta};
use crate::diag::{codes, did_you_mean, Diagnostic};
use policyc_ir::cidr::Cidr;
use policyc_ir::labels::{NAMESPACE_LABEL, NAMESPACE_LABELS_PREFIX};
use policyc_ir::policy::{Action, Peer, Peers, Policy, PolicyKind, PolicyOrigin, PortMatch, PortSpec, Rule, Subject};
use policyc_ir::protocol::{Direction, PortRange, Protocol};
use policyc_ir::selector::{LabelSelector, Operator, Requirement};

/// The protocols a Kubernetes port may name, spelled as the API requires.
const PROTOCOLS: [&str; 3] = ["TCP", "UDP", "SCTP"];

/// How each direction is written in a `NetworkPolicy`.
struct DirectionSyntax {
    direction: Direction,
    /// `ingress` / `egress`.
    list: &'static str,
    /// The peer list: `from` / `to`.
    peers: &'static str,
    /// The peer list of the other direction, a common slip.
    other_peers: &'static str,
    /// `Ingress` / `Egress` in `policyTypes`.
    policy_type: &'static str,
}

const DIRECTIONS: [DirectionSyntax; 2] = [
    DirectionSyntax {
        direction: Direction::Ingress,
        list: "ingress",
        peers: "from",
        other_peers: "to",
        policy_type: "Ingress",
    },
    DirectionSyntax {
        direction: Direction::Egress,
        list: "egress",
        peers: "to",
        other_peers: "from",
        policy_type: "Egress",
    },
];

/// Decodes a `NetworkPolicy` into one normalized policy.
pub fn network_policy(ctx: &mut Ctx, meta: &Meta, root: &Node) -> Option<Body> {
    ctx.fields(root, "", &["apiVersion", "kind", "metadata", "spec", "status"]);
    let spec = super::spec(ctx, root)?;
    let namespace = meta.namespace.clone().unwrap_or_else(|| "default".to_string());
    let fields = ctx.fields(spec, "spec", &["podSelector", "policyTypes", "ingress", "egress"])?;

    // `podSelector` is a value, not a pointer, in `k8s.io/api`'s
    // `networking/v1/types.go`: the API server decodes a missing or null
    // one as the empty selector, which "matches all pods in this namespace"
    // (NetworkPolicySpec in the API reference).
    let subject = match fields.get("podSelector") {
        Some(n) => ctx.selector(n, "spec.podSelector", plain_key),
        None => Some(LabelSelector::everything()),
    }
    .map(|sel| Subject::Endpoints(sel.with(Requirement::equals(NAMESPACE_LABEL, &namespace))));

    let lists = DIRECTIONS.map(|d| fields.get(d.list).map(|n| ctx.list(n, &join("spec", d.list))).unwrap_or(&[]));
    // The API server's defaulting: `Ingress`, and `Egress` if there are egress rules.
    let default_deny =
        fields.get("policyTypes").and_then(|types| policy_types(ctx, types)).unwrap_or([true, !lists[1].is_empty()]);

    let mut rules = Vec::new();
    let mut spans = PolicySpans {
        object: meta.start,
        spec: key_pos(root, "spec"),
        subject: key_pos(spec, "podSelector"),
        rules: Vec::new(),
    };
    for (d, list) in DIRECTIONS.iter().zip(lists) {
        let enforced = default_deny[d.direction.index()];
        if !enforced && !list.is_empty() {
            ctx.report(
                codes::IGNORED_DIRECTION,
                fields.get(d.list),
                &join("spec", d.list),
                format!("`{}` rules are ignored: `policyTypes` does not list `{}`", d.list, d.policy_type),
                Some(format!("add `{}` to `policyTypes`, or remove the `{}` rules", d.policy_type, d.list)),
            );
        }
        for (i, node) in list.iter().enumerate() {
            let path = index(&join("spec", d.list), i);
            // Rules of an ignored direction are still checked: the API server rejects them too.
            if let Some(rule) = rule(ctx, d, node, &path, &namespace) {
                if enforced {
                    rules.push(rule);
                    spans.rules.push(RuleSpans { pos: start(node), cited: cite_rule(node, &path) });
                }
            }
        }
    }

    let policy = Policy {
        origin: PolicyOrigin {
            kind: PolicyKind::NetworkPolicy,
            namespace: Some(namespace),
            name: meta.name.clone(),
            spec_path: "spec".to_string(),
        },
        subject: subject?,
        default_deny,
        requires: [Vec::new(), Vec::new()],
        deny_requires: [Vec::new(), Vec::new()],
        rules,
    };
    Some(Body::Policy(vec![SpannedPolicy { policy, spans, services: Vec::new() }]))
}

/// `[ingress, egress]` from `policyTypes`; `None` if the list is empty
/// (the API server then defaults it as if it were absent).
fn policy_types(ctx: &mut Ctx, node: &Node) -> Option<[bool; 2]> {
    let items = ctx.list(node, "spec.policyTypes");
    if items.is_empty() {
        return None;
    }
    let mut types = [false; 2];
    for (i, item) in items.iter().enumerate() {
        let Some(value) = ctx.string(item, &index("spec.policyTypes", i)) else { continue };
        match DIRECTIONS.iter().find(|d| d.policy_type == value) {
            Some(d) => types[d.direction.index()] = true,
            None => {
                let help = did_you_mean(value, DIRECTIONS.map(|d| d.policy_type))
                    .map(|s| format!("did you mean `{s}`?"))
                    .unwrap_or_else(|| "`policyTypes` lists `Ingress`, `Egress` or both".to_string());
                ctx.report(
                    codes::INVALID_POLICY_TYPE,
                    Some(item),
                    &index("spec.policyTypes", i),
                    format!("invalid policy type `{value}`"),
                    Some(help),
                );
            }
        }
    }
    Some(types)
}

fn error_count(ctx: &Ctx) -> usize {
    ctx.diags.iter().filter(|d| d.is_error()).count()
}

/// One `ingress[i]` / `egress[i]` rule; `None` if it has an error.
fn rule(ctx: &mut Ctx, d: &DirectionSyntax, node: &Node, path: &str, namespace: &str) -> Option<Rule> {
    let errors_before = error_count(ctx);
    let diags_before = ctx.diags.len();
    let fields = ctx.fields(node, path, &[d.peers, "ports"])?;
    // `from` in an egress rule (or `to` in an ingress rule) is ignored by
    // the API server, and the rule then allows every peer: say so.
    let slip = join(path, d.other_peers);
    if let Some(diag) = ctx.diags[diags_before..].iter_mut().find(|x| x.location.path.as_deref() == Some(slip.as_str()))
    {
        diag.help =
            Some(format!("{} rules name their peers in `{}`; without it this rule allows every peer", d.list, d.peers));
    }

    let peers_path = join(path, d.peers);
    let peer_nodes = fields.get(d.peers).map(|n| ctx.list(n, &peers_path)).unwrap_or(&[]);
    let peers: Vec<Peer> =
        peer_nodes.iter().enumerate().filter_map(|(i, p)| peer(ctx, p, &index(&peers_path, i), namespace)).collect();

    let ports_path = join(path, "ports");
    let port_nodes = fields.get("ports").map(|n| ctx.list(n, &ports_path)).unwrap_or(&[]);
    let ports: Vec<PortMatch> =
        port_nodes.iter().enumerate().filter_map(|(i, p)| port(ctx, p, &index(&ports_path, i))).collect();

    if error_count(ctx) > errors_before {
        return None;
    }
    Some(Rule {
        path: path.to_string(),
        direction: d.direction,
        action: Action::Allow,
        peers: if peer_nodes.is_empty() { Peers::Any } else { Peers::Only(peers) },
        ports: (!port_nodes.is_empty()).then_some(ports),
        l7: None,
    })
}

/// One entry of `from` / `to`.
fn peer(ctx: &mut Ctx, node: &Node, path: &str, namespace: &str) -> Option<Peer> {
    let fields = ctx.fields(node, path, &["podSelector", "namespaceSelector", "ipBlock"])?;
    let pods = fields.get("podSelector");
    let namespaces = fields.get("namespaceSelector");
    let ip_block = fields.get("ipBlock");
    match (pods, namespaces, ip_block) {
        (None, None, None) => {
            ctx.report(
                codes::EMPTY_PEER,
                Some(node),
                path,
                "a peer needs `podSelector`, `namespaceSelector` or `ipBlock`",
                Some("to allow every peer, leave out the whole peer list".to_string()),
            );
            None
        }
        (None, None, Some(block)) => ip_block_peer(ctx, block, &join(path, "ipBlock")),
        (_, _, Some(block)) => {
            ctx.report(
                codes::IP_BLOCK_WITH_SELECTOR,
                Some(block),
                &join(path, "ipBlock"),
                "`ipBlock` cannot be combined with `podSelector` or `namespaceSelector` in one peer",
                Some("write the `ipBlock` as a peer of its own in the list".to_string()),
            );
            None
        }
        (pods, namespaces, None) => {
            let pods = match pods {
                Some(n) => Some(ctx.selector(n, &join(path, "podSelector"), plain_key)?),
                None => None,
            };
            let namespaces = match namespaces {
                Some(n) => Some(ctx.selector(n, &join(path, "namespaceSelector"), plain_key)?),
                None => None,
            };
            Some(Peer::Endpoints(endpoint_selector(pods, namespaces, namespace)))
        }
    }
}

/// The selector of a peer with `podSelector` and/or `namespaceSelector`,
/// as Cilium translates it: without a `namespaceSelector` the pods are in
/// the policy's namespace; namespace requirements test the pod's
/// `io.cilium.k8s.namespace.labels.*`; an empty `namespaceSelector` is
/// "any namespace", which Cilium writes as "has a namespace" so that it
/// selects pods only, never reserved identities.
fn endpoint_selector(pods: Option<LabelSelector>, namespaces: Option<LabelSelector>, namespace: &str) -> LabelSelector {
    let mut selector = pods.unwrap_or_default();
    match namespaces {
        None => selector.requirements.push(Requirement::equals(NAMESPACE_LABEL, namespace)),
        Some(ns) if ns.is_empty() => selector.requirements.push(Requirement {
            key: NAMESPACE_LABEL.to_string(),
            operator: Operator::Exists,
            values: Vec::new(),
        }),
        Some(ns) => selector.requirements.extend(
            ns.requirements
                .into_iter()
                .map(|r| Requirement { key: format!("{NAMESPACE_LABELS_PREFIX}{}", r.key), ..r }),
        ),
    }
    selector
}

fn ip_block_peer(ctx: &mut Ctx, node: &Node, path: &str) -> Option<Peer> {
    let fields = ctx.fields(node, path, &["cidr", "except"])?;
    let cidr = ctx.required(&fields, "cidr", node, path).and_then(|n| ctx.cidr(n, &join(path, "cidr")));
    let except_path = join(path, "except");
    let except_nodes = fields.get("except").map(|n| ctx.list(n, &except_path)).unwrap_or(&[]);
    let mut except = Vec::new();
    let mut ok = true;
    for (i, n) in except_nodes.iter().enumerate() {
        let item_path = index(&except_path, i);
        let Some(e) = ctx.cidr(n, &item_path) else {
            ok = false;
            continue;
        };
        let Some(cidr) = cidr else { continue };
        let problem = if e.is_ipv6() != cidr.is_ipv6() {
            let family = |c: Cidr| if c.is_ipv6() { "IPv6" } else { "IPv4" };
            Some(format!("`except` prefix `{e}` is {}, but `cidr` `{cidr}` is {}", family(e), family(cidr)))
        } else if !cidr.covers(e) {
            Some(format!("`except` prefix `{e}` is not inside `{cidr}`"))
        } else if e.prefix_len() == cidr.prefix_len() {
            Some(format!("`except` prefix `{e}` is the whole of `{cidr}`"))
        } else {
            None
        };
        match problem {
            Some(message) => {
                ok = false;
                ctx.report(
                    codes::EXCEPT_OUTSIDE_CIDR,
                    Some(n),
                    &item_path,
                    message,
                    Some(format!("each `except` prefix must lie strictly inside `{cidr}`")),
                );
            }
            None => except.push(e),
        }
    }
    let cidr = cidr?;
    ok.then_some(Peer::Cidr { cidr, except })
}

/// One entry of `ports`.
fn port(ctx: &mut Ctx, node: &Node, path: &str) -> Option<PortMatch> {
    let fields = ctx.fields(node, path, &["protocol", "port", "endPort"])?;
    let protocol = match fields.get("protocol") {
        Some(n) => protocol(ctx, n, &join(path, "protocol")),
        None => Some(Protocol::Tcp),
    };
    let port_path = join(path, "port");
    // `None`: no `port`; `Some(None)`: a `port` with an error.
    let port = fields.get("port").map(|n| int_or_string_port(ctx, n, &port_path));
    let end_path = join(path, "endPort");
    let ports = match (fields.get("endPort"), port) {
        (None, None) => Some(PortSpec::All),
        (None, Some(p)) => match p? {
            PortValue::Number(n) => Some(PortSpec::Range(PortRange::single(n))),
            PortValue::Name(name) => Some(PortSpec::Named(name)),
        },
        (Some(end_node), port) => {
            let end = ctx.int(end_node, &end_path);
            match port {
                None => {
                    ctx.report(
                        codes::END_PORT_WITH_NAMED_PORT,
                        Some(end_node),
                        &end_path,
                        "`endPort` needs a numeric `port`",
                        Some("add `port` with the first port of the range".to_string()),
                    );
                    None
                }
                Some(Some(PortValue::Name(name))) => {
                    ctx.report(
                        codes::END_PORT_WITH_NAMED_PORT,
                        Some(end_node),
                        &end_path,
                        format!("`endPort` cannot be used with the named port `{name}`"),
                        Some("a port range needs a numeric `port`".to_string()),
                    );
                    None
                }
                Some(None) => None,
                Some(Some(PortValue::Number(lo))) => {
                    let end = end?;
                    if !(1..=65535).contains(&end) {
                        ctx.report(
                            codes::PORT_OUT_OF_RANGE,
                            Some(end_node),
                            &end_path,
                            format!("port `{end}` is out of range"),
                            Some("ports are 1-65535".to_string()),
                        );
                        None
                    } else if end < i64::from(lo) {
                        ctx.report(
                            codes::END_PORT_BEFORE_PORT,
                            Some(end_node),
                            &end_path,
                            format!("`endPort` `{end}` is smaller than `port` `{lo}`"),
                            Some(format!("`endPort` must be at least `{lo}`")),
                        );
                        None
                    } else {
                        Some(PortSpec::Range(PortRange { lo, hi: end as u16 }))
                    }
                }
            }
        }
    };
    Some(PortMatch { protocol: Some(protocol?), ports: ports? })
}

/// A Kubernetes protocol (`TCP`, `UDP`, `SCTP`): the API compares them
/// case-sensitively, so `tcp` is an error with a suggestion.
pub(crate) fn protocol(ctx: &mut Ctx, node: &Node, path: &str) -> Option<Protocol> {
    let text = ctx.string(node, path)?;
    match text {
        "TCP" => Some(Protocol::Tcp),
        "UDP" => Some(Protocol::Udp),
        "SCTP" => Some(Protocol::Sctp),
        other => {
            // Only a slip of case or spacing earns a suggestion: `ICMP` is
            // two edits from `SCTP`, and suggesting it would mislead.
            let help = PROTOCOLS
                .into_iter()
                .find(|p| p.eq_ignore_ascii_case(other.trim()))
                .map(|s| {
                    if s == other.trim() {
                        format!("did you mean `{s}`?")
                    } else {
                        format!("did you mean `{s}`? protocol names are upper-case")
                    }
                })
                .unwrap_or_else(|| "the protocols are `TCP`, `UDP` and `SCTP`".to_string());
            ctx.report(codes::UNKNOWN_PROTOCOL, Some(node), path, format!("unknown protocol `{other}`"), Some(help));
            None
        }
    }
}

/// A Kubernetes `IntOrString` port: an integer 1-65535 or an IANA port
/// name. Unlike Cilium, Kubernetes takes a quoted `"80"` as a name, which
/// is then invalid (a name needs a letter), so it is reported.
pub(crate) fn int_or_string_port(ctx: &mut Ctx, node: &Node, path: &str) -> Option<PortValue> {
    if let Value::Str(s) = &node.value {
        if let Err(why) = check_port_name(s) {
            let mut d = Diagnostic::new(
                codes::INVALID_PORT_NAME,
                ctx.location(path, Some(node.pos)),
                format!("invalid port name `{s}`: {why}"),
            );
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                d = d.with_help(format!("a quoted number is a port name here; write the number without quotes: `{s}`"));
            }
            ctx.diags.push(d);
            return None;
        }
    }
    ctx.port(node, path, 1)
}

#[cfg(test)]
mod tests {
    use crate::diag::{codes, Code, Diagnostic};
    use crate::front::{Body, Input};
    use policyc_ir::cidr::Cidr;
    use policyc_ir::labels::{NAMESPACE_LABEL, NAMESPACE_LABELS_PREFIX};
    use policyc_ir::policy::{Peer, Peers, Policy, PolicyKind, PortMatch, PortSpec, Subject};
    use policyc_ir::protocol::{Direction, PortRange, Protocol};
    use policyc_ir::selector::{LabelSelector, Operator, Requirement};

    fn parse(spec: &str) -> (Option<Policy>, Vec<Diagnostic>) {
        let text = format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: np\n  namespace: prod\nspec:\n{}",
            spec.lines().map(|l| format!("  {l}\n")).collect::<String>()
        );
        let mut input = Input::default();
        input.add_source("t.yaml", text);
        let policy = input.objects.into_iter().find_map(|o| match o.body {
            Body::Policy(mut p) => p.pop().map(|p| p.policy),
            _ => None,
        });
        (policy, input.diagnostics)
    }

    fn ok(spec: &str) -> Policy {
        let (policy, diags) = parse(spec);
        assert!(diags.is_empty(), "unexpected diagnostics: {diags:#?}");
        policy.expect("a policy")
    }

    /// The one diagnostic with `code`, which must be the only one.
    fn only(spec: &str, code: Code) -> Diagnostic {
        let (_, diags) = parse(spec);
        assert_eq!(diags.len(), 1, "expected exactly one {}: {diags:#?}", code.id);
        assert_eq!(diags[0].code, code, "{diags:#?}");
        diags.into_iter().next().unwrap()
    }

    fn in_ns(ns: &str) -> Requirement {
        Requirement::equals(NAMESPACE_LABEL, ns)
    }

    fn exists(key: &str) -> Requirement {
        Requirement { key: key.to_string(), operator: Operator::Exists, values: Vec::new() }
    }

    #[test]
    fn deny_all_ingress() {
        let p = ok("podSelector: {}\npolicyTypes: [Ingress]");
        assert_eq!(p.origin.kind, PolicyKind::NetworkPolicy);
        assert_eq!(p.origin.namespace.as_deref(), Some("prod"));
        assert_eq!(p.origin.name, "np");
        assert_eq!(p.origin.spec_path, "spec");
        assert_eq!(p.subject, Subject::Endpoints(LabelSelector::everything().with(in_ns("prod"))));
        assert_eq!(p.default_deny, [true, false]);
        assert!(p.rules.is_empty());
    }

    #[test]
    fn subject_selects_pods_of_the_namespace() {
        let p = ok("podSelector:\n  matchLabels: {app: web}");
        let sel = LabelSelector::everything().with(Requirement::equals("app", "web")).with(in_ns("prod"));
        assert_eq!(p.subject, Subject::Endpoints(sel));
    }

    #[test]
    fn default_policy_types() {
        assert_eq!(ok("podSelector: {}").default_deny, [true, false]);
        assert_eq!(ok("podSelector: {}\negress: []").default_deny, [true, false]);
        let p = ok("podSelector: {}\negress: [{}]");
        assert_eq!(p.default_deny, [true, true]);
        assert_eq!(p.rules.len(), 1);
        assert_eq!(ok("podSelector: {}\npolicyTypes: []\negress: [{}]").default_deny, [true, true]);
        assert_eq!(ok("podSelector: {}\npolicyTypes: [Egress]").default_deny, [false, true]);
        assert_eq!(ok("podSelector: {}\npolicyTypes: [Ingress, Egress]").default_deny, [true, true]);
    }

    #[test]
    fn invalid_policy_type() {
        let d = only("podSelector: {}\npolicyTypes: [Ingres]", codes::INVALID_POLICY_TYPE);
        assert_eq!(d.message, "invalid policy type `Ingres`");
        assert_eq!(d.help.as_deref(), Some("did you mean `Ingress`?"));
        assert_eq!(d.location.path.as_deref(), Some("spec.policyTypes[0]"));
    }

    #[test]
    fn rules_of_unlisted_direction_are_ignored() {
        let (p, diags) = parse("podSelector: {}\npolicyTypes: [Ingress]\negress:\n- to: [{podSelector: {}}]");
        assert_eq!(diags.len(), 1, "{diags:#?}");
        assert_eq!(diags[0].code, codes::IGNORED_DIRECTION);
        assert_eq!(diags[0].location.path.as_deref(), Some("spec.egress"));
        assert!(!diags[0].is_error());
        let p = p.unwrap();
        assert!(p.rules.is_empty());
        assert_eq!(p.default_deny, [true, false]);
    }

    #[test]
    fn empty_rule_allows_everything() {
        let p = ok("podSelector: {}\ningress:\n- {}");
        let r = &p.rules[0];
        assert_eq!(r.path, "spec.ingress[0]");
        assert_eq!(r.direction, Direction::Ingress);
        assert_eq!(r.peers, Peers::Any);
        assert_eq!(r.ports, None);
        assert_eq!(r.l7, None);
        let p = ok("podSelector: {}\ningress:\n- from: []\n  ports: []");
        assert_eq!((&p.rules[0].peers, &p.rules[0].ports), (&Peers::Any, &None));
    }

    #[test]
    fn pod_selector_peer_is_in_the_policy_namespace() {
        let p = ok("podSelector: {}\ningress:\n- from:\n  - podSelector: {matchLabels: {app: db}}");
        let sel = LabelSelector::everything().with(Requirement::equals("app", "db")).with(in_ns("prod"));
        assert_eq!(p.rules[0].peers, Peers::Only(vec![Peer::Endpoints(sel)]));
    }

    #[test]
    fn namespace_selector_peer_tests_namespace_labels() {
        let p = ok("podSelector: {}\ningress:\n- from:\n  - namespaceSelector: {matchLabels: {team: a}}\n  - namespaceSelector: {}");
        let team = LabelSelector::everything().with(Requirement::equals(format!("{NAMESPACE_LABELS_PREFIX}team"), "a"));
        let any_ns = LabelSelector::everything().with(exists(NAMESPACE_LABEL));
        assert_eq!(p.rules[0].peers, Peers::Only(vec![Peer::Endpoints(team), Peer::Endpoints(any_ns)]));
    }

    #[test]
    fn both_selectors_in_one_peer_are_anded() {
        let p = ok(concat!(
            "podSelector: {}\negress:\n- to:\n  - podSelector: {matchLabels: {app: db}}\n",
            "    namespaceSelector:\n      matchExpressions: [{key: env, operator: In, values: [prod]}]"
        ));
        let sel = LabelSelector::everything().with(Requirement::equals("app", "db")).with(Requirement {
            key: format!("{NAMESPACE_LABELS_PREFIX}env"),
            operator: Operator::In,
            values: vec!["prod".into()],
        });
        assert_eq!(p.rules[0].direction, Direction::Egress);
        assert_eq!(p.rules[0].path, "spec.egress[0]");
        assert_eq!(p.rules[0].peers, Peers::Only(vec![Peer::Endpoints(sel)]));
    }

    #[test]
    fn ip_block_peer() {
        let p = ok("podSelector: {}\ningress:\n- from:\n  - ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}");
        let cidr = |s| Cidr::parse_strict(s).unwrap();
        let peer = Peer::Cidr { cidr: cidr("10.0.0.0/8"), except: vec![cidr("10.1.0.0/16")] };
        assert_eq!(p.rules[0].peers, Peers::Only(vec![peer]));
    }

    #[test]
    fn except_outside_cidr() {
        let d = only(
            "podSelector: {}\ningress:\n- from:\n  - ipBlock: {cidr: 10.0.0.0/8, except: [11.0.0.0/16]}",
            codes::EXCEPT_OUTSIDE_CIDR,
        );
        assert_eq!(d.message, "`except` prefix `11.0.0.0/16` is not inside `10.0.0.0/8`");
        assert_eq!(d.help.as_deref(), Some("each `except` prefix must lie strictly inside `10.0.0.0/8`"));
        assert_eq!(d.location.path.as_deref(), Some("spec.ingress[0].from[0].ipBlock.except[0]"));
        let d = only(
            "podSelector: {}\ningress:\n- from:\n  - ipBlock: {cidr: 10.0.0.0/8, except: [10.0.0.0/8]}",
            codes::EXCEPT_OUTSIDE_CIDR,
        );
        assert!(d.message.contains("whole of"), "{}", d.message);
        let d = only(
            "podSelector: {}\ningress:\n- from:\n  - ipBlock: {cidr: 10.0.0.0/8, except: ['fd00::/8']}",
            codes::EXCEPT_OUTSIDE_CIDR,
        );
        assert!(d.message.contains("IPv6"), "{}", d.message);
    }

    #[test]
    fn bad_cidr_drops_the_rule() {
        let (p, diags) = parse("podSelector: {}\ningress:\n- from:\n  - ipBlock: {cidr: 10.0.0.1/8}");
        assert_eq!(diags[0].code, codes::INVALID_CIDR);
        assert!(p.unwrap().rules.is_empty());
        let d = only("podSelector: {}\ningress:\n- from:\n  - ipBlock: {except: [10.0.0.0/8]}", codes::MISSING_FIELD);
        assert_eq!(d.message, "missing field `cidr`");
    }

    #[test]
    fn ip_block_with_selector() {
        let d = only(
            "podSelector: {}\ningress:\n- from:\n  - ipBlock: {cidr: 10.0.0.0/8}\n    podSelector: {}",
            codes::IP_BLOCK_WITH_SELECTOR,
        );
        assert_eq!(d.location.path.as_deref(), Some("spec.ingress[0].from[0].ipBlock"));
        assert!(d.is_error());
    }

    #[test]
    fn empty_peer() {
        let d = only("podSelector: {}\ningress:\n- from:\n  - {}", codes::EMPTY_PEER);
        assert_eq!(d.location.path.as_deref(), Some("spec.ingress[0].from[0]"));
    }

    #[test]
    fn ports() {
        let p = ok(concat!(
            "podSelector: {}\ningress:\n- ports:\n",
            "  - port: 80\n  - {protocol: UDP, port: dns}\n  - {protocol: SCTP}\n  - {port: 8000, endPort: 8080}\n  - {port: 9, endPort: 9}"
        ));
        let m = |protocol, ports| PortMatch { protocol: Some(protocol), ports };
        assert_eq!(
            p.rules[0].ports,
            Some(vec![
                m(Protocol::Tcp, PortSpec::Range(PortRange::single(80))),
                m(Protocol::Udp, PortSpec::Named("dns".into())),
                m(Protocol::Sctp, PortSpec::All),
                m(Protocol::Tcp, PortSpec::Range(PortRange { lo: 8000, hi: 8080 })),
                m(Protocol::Tcp, PortSpec::Range(PortRange::single(9))),
            ])
        );
        assert_eq!(p.rules[0].peers, Peers::Any);
    }

    #[test]
    fn protocol_is_case_sensitive() {
        let d = only("podSelector: {}\ningress:\n- ports: [{protocol: tcp, port: 80}]", codes::UNKNOWN_PROTOCOL);
        assert_eq!(d.message, "unknown protocol `tcp`");
        assert_eq!(d.help.as_deref(), Some("did you mean `TCP`? protocol names are upper-case"));
        assert_eq!(d.location.path.as_deref(), Some("spec.ingress[0].ports[0].protocol"));
        let d = only("podSelector: {}\ningress:\n- ports: [{protocol: ICMP}]", codes::UNKNOWN_PROTOCOL);
        assert_eq!(d.help.as_deref(), Some("the protocols are `TCP`, `UDP` and `SCTP`"));
    }

    #[test]
    fn bad_ports() {
        let d = only("podSelector: {}\ningress:\n- ports: [{port: 0}]", codes::PORT_OUT_OF_RANGE);
        assert_eq!(d.location.path.as_deref(), Some("spec.ingress[0].ports[0].port"));
        only("podSelector: {}\ningress:\n- ports: [{port: 70000}]", codes::PORT_OUT_OF_RANGE);
        only("podSelector: {}\ningress:\n- ports: [{port: 80, endPort: 70000}]", codes::PORT_OUT_OF_RANGE);
        only("podSelector: {}\ningress:\n- ports: [{port: Http}]", codes::INVALID_PORT_NAME);
        let d = only("podSelector: {}\ningress:\n- ports: [{port: '80'}]", codes::INVALID_PORT_NAME);
        assert!(d.help.unwrap().contains("without quotes"));
    }

    #[test]
    fn end_port_before_port() {
        let d = only(
            "podSelector: {}\ningress:\n- {}\n- ports:\n  - {port: 80}\n  - {port: 8080, endPort: 8000}",
            codes::END_PORT_BEFORE_PORT,
        );
        assert_eq!(d.location.path.as_deref(), Some("spec.ingress[1].ports[1].endPort"));
        assert_eq!(d.message, "`endPort` `8000` is smaller than `port` `8080`");
    }

    #[test]
    fn end_port_needs_numeric_port() {
        let d =
            only("podSelector: {}\ningress:\n- ports: [{port: http, endPort: 90}]", codes::END_PORT_WITH_NAMED_PORT);
        assert_eq!(d.message, "`endPort` cannot be used with the named port `http`");
        only("podSelector: {}\ningress:\n- ports: [{endPort: 90}]", codes::END_PORT_WITH_NAMED_PORT);
    }

    #[test]
    fn a_rule_with_an_error_is_left_out() {
        let (p, diags) = parse("podSelector: {}\ningress:\n- ports: [{port: 80}, {protocol: tcp}]\n- {}");
        assert_eq!(diags.len(), 1);
        let p = p.unwrap();
        assert_eq!(p.rules.len(), 1);
        assert_eq!(p.rules[0].path, "spec.ingress[1]");
    }

    #[test]
    fn unknown_fields_warn_with_suggestions() {
        let (p, diags) = parse("podSelecter: {}\ningress:\n- from:\n  - podSelector: {}\n  port: [{port: 80}]");
        let unknown: Vec<_> = diags.iter().filter(|d| d.code == codes::UNKNOWN_FIELD).collect();
        assert_eq!(unknown.len(), 2, "{diags:#?}");
        assert_eq!(unknown[0].location.path.as_deref(), Some("spec.podSelecter"));
        assert_eq!(unknown[0].help.as_deref(), Some("did you mean `podSelector`?"));
        assert_eq!(unknown[1].location.path.as_deref(), Some("spec.ingress[0].port"));
        assert_eq!(unknown[1].help.as_deref(), Some("did you mean `ports`?"));
        // A missing `podSelector` is the empty one, as the API server decodes it.
        assert!(!diags.iter().any(|d| d.code == codes::MISSING_FIELD), "{diags:#?}");
        assert_eq!(p.expect("a policy").subject, Subject::Endpoints(LabelSelector::everything().with(in_ns("prod"))));
    }

    #[test]
    fn null_or_missing_pod_selector_selects_the_whole_namespace() {
        let all = Subject::Endpoints(LabelSelector::everything().with(in_ns("prod")));
        assert_eq!(
            ok("podSelector: null
policyTypes: [Ingress]")
            .subject,
            all
        );
        assert_eq!(
            ok("podSelector:
policyTypes: [Ingress]")
            .subject,
            all
        );
        assert_eq!(ok("policyTypes: [Ingress]").subject, all);
        assert_eq!(
            ok("podSelector: {}
policyTypes: [Ingress]")
            .subject,
            all
        );
    }

    #[test]
    fn from_in_an_egress_rule_is_explained() {
        let (_, diags) = parse("podSelector: {}\negress:\n- from: [{podSelector: {}}]");
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].code, codes::UNKNOWN_FIELD);
        assert_eq!(diags[0].location.path.as_deref(), Some("spec.egress[0].from"));
        assert!(diags[0].help.as_deref().unwrap().contains("`to`"));
    }

    #[test]
    fn wrong_types_have_paths() {
        let d = only("podSelector: {}\negress: {to: []}", codes::WRONG_TYPE);
        assert_eq!(d.location.path.as_deref(), Some("spec.egress"));
        let d = only("podSelector: {}\ningress: [{from: {podSelector: {}}}]", codes::WRONG_TYPE);
        assert_eq!(d.location.path.as_deref(), Some("spec.ingress[0].from"));
        let d = only("podSelector: {}\ningress: [{ports: [{port: true}]}]", codes::WRONG_TYPE);
        assert_eq!(d.location.path.as_deref(), Some("spec.ingress[0].ports[0].port"));
        let d = only("podSelector: {}\npolicyTypes: Ingress", codes::WRONG_TYPE);
        assert_eq!(d.location.path.as_deref(), Some("spec.policyTypes"));
        let d = only("podSelector: {}\ningress: [{ports: [{protocol: 'TCP '}]}]", codes::UNKNOWN_PROTOCOL);
        assert_eq!(d.help.as_deref(), Some("did you mean `TCP`?"));
    }

    #[test]
    fn missing_spec() {
        let mut input = Input::default();
        input.add_source(
            "t.yaml",
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x}\n".into(),
        );
        assert!(input.objects.is_empty());
        assert_eq!(input.diagnostics[0].code, codes::MISSING_FIELD);
    }

    #[test]
    fn namespace_defaults_to_default() {
        let mut input = Input::default();
        input.add_source(
            "t.yaml",
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x}\nspec: {podSelector: {}}\n"
                .into(),
        );
        let Body::Policy(p) = &input.objects[0].body else { panic!() };
        assert_eq!(p[0].policy.subject, Subject::Endpoints(LabelSelector::everything().with(in_ns("default"))));
    }
}
