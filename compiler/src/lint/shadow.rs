//! Rules that never take effect (W0207): an allow rule whose traffic a
//! deny rule of the same policy drops entirely, or that another allow rule
//! of the same policy already allows.
//!
//! Only rules of one policy are compared: they select the same endpoints,
//! and `fromRequires`/`toRequires` gate all of their allow rules alike, so
//! "rule A matches every (peer, protocol, port) rule B matches" is all it
//! takes for B to change nothing. Coverage is decided syntactically and
//! soundly: when in doubt the answer is "not covered", so the rule misses
//! some cases (a range split over two rules' peers, a selector covered by
//! two selectors together) but never reports a rule that does have an
//! effect. `compiler/tests/lint.rs` checks this against `policyc_ir::eval`
//! on random policies.
//!
//! A deny rule shadows an allow rule only where no policy of the cluster
//! writes `fromRequires`/`toRequires` in a deny rule of that direction:
//! those narrow the deny rules of every policy selecting the endpoint, and
//! not its allow rules ([`shadowed_rules_in`]).

use super::{at_policy, rule_spans};
use crate::diag::{codes, Diagnostic};
use crate::pipeline::Loaded;
use policyc_ir::cidr::Cidr;
use policyc_ir::cluster::Cluster;
use policyc_ir::ids::RuleRef;
use policyc_ir::labels::NAMESPACE_LABEL;
use policyc_ir::policy::{Action, Entity, Peer, Peers, Policy, PortMatch, PortSpec, Rule};
use policyc_ir::protocol::{Direction, PortRange, Protocol};
use policyc_ir::selector::{LabelSelector, Operator, Requirement};

/// Why an allow rule has no effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shadowing {
    /// Every packet it allows is dropped by this deny rule (an index into
    /// the policy's rules).
    ByDeny(usize),
    /// Every packet it allows is allowed by this other allow rule, which is
    /// not reported itself; `duplicate` when the two cover each other.
    Redundant {
        /// The covering rule.
        by: usize,
        /// Whether the rule covers the covering rule too.
        duplicate: bool,
    },
}

/// An allow rule of a policy that has no effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShadowedRule {
    /// Index of the rule in the policy.
    pub rule: usize,
    /// Why.
    pub by: Shadowing,
}

/// The allow rules of `policy` that change nothing, in rule order.
///
/// Removing all of them at once changes nothing either: a redundant rule is
/// reported only with a covering rule that is kept, so of two duplicates
/// only the later one is reported.
pub fn shadowed_rules(policy: &Policy) -> Vec<ShadowedRule> {
    let rules = &policy.rules;
    let n = rules.len();
    let candidate = |i: usize| {
        let r = &rules[i];
        r.action == Action::Allow && selects_something(r) && !split_from_l7(rules, r)
    };
    let by_deny: Vec<Option<usize>> = (0..n)
        .map(|i| {
            let r = &rules[i];
            if !candidate(i) {
                return None;
            }
            rules.iter().position(|d| d.action == Action::Deny && d.direction == r.direction && rule_covers(d, r))
        })
        .collect();
    // An allow rule with L7 rules sends its traffic to the proxy, one
    // without lets it pass: neither stands in for the other, and two L7
    // rules may hold different L7 rules.
    let plain = |i: usize| rules[i].action == Action::Allow && rules[i].l7.is_none();
    let covers: Vec<Vec<bool>> = (0..n)
        .map(|j| {
            (0..n)
                .map(|i| {
                    i != j
                        && candidate(i)
                        && plain(i)
                        && plain(j)
                        && by_deny[i].is_none()
                        && rules[i].direction == rules[j].direction
                        && rule_covers(&rules[j], &rules[i])
                })
                .collect()
        })
        .collect();
    let mut redundant: Vec<bool> = (0..n).map(|i| (0..n).any(|j| covers[j][i] && (!covers[i][j] || j < i))).collect();
    // Keep a rule reported only while a rule that stays covers it, so that
    // removing every reported rule is safe too. Coverage is decided
    // syntactically and need not be transitive, so check rather than
    // assume; each pass only unreports rules, so this ends.
    loop {
        let lone: Vec<usize> =
            (0..n).filter(|&i| redundant[i] && !(0..n).any(|j| covers[j][i] && !redundant[j])).collect();
        if lone.is_empty() {
            break;
        }
        for i in lone {
            redundant[i] = false;
        }
    }
    (0..n)
        .filter_map(|i| {
            if let Some(d) = by_deny[i] {
                return Some(ShadowedRule { rule: i, by: Shadowing::ByDeny(d) });
            }
            if !redundant[i] {
                return None;
            }
            let by = (0..n).find(|&j| covers[j][i] && !redundant[j])?;
            Some(ShadowedRule { rule: i, by: Shadowing::Redundant { by, duplicate: covers[i][by] } })
        })
        .collect()
}

/// [`shadowed_rules`] of `policy`, a policy of `cluster`, without the
/// findings of deny rules that requirements written in deny rules may
/// narrow (`Policy::deny_requires`).
pub fn shadowed_rules_in(cluster: &Cluster, policy: &Policy) -> Vec<ShadowedRule> {
    let narrowed = |dir: Direction| cluster.policies.iter().any(|p| !p.deny_requires[dir.index()].is_empty());
    shadowed_rules(policy)
        .into_iter()
        .filter(|s| !matches!(s.by, Shadowing::ByDeny(_)) || !narrowed(policy.rules[s.rule].direction))
        .collect()
}

/// W0207.
pub(super) fn shadowed_rules_of_policies(loaded: &Loaded, out: &mut Vec<Diagnostic>) {
    let cluster = &loaded.lowered.cluster;
    for (p, policy) in cluster.written_policies() {
        for shadowed in shadowed_rules_in(cluster, policy) {
            let rule = &policy.rules[shadowed.rule];
            let (message, help) = match shadowed.by {
                Shadowing::ByDeny(d) => (
                    format!(
                        "deny rule `{}` of the same policy drops everything this rule allows: it has no effect",
                        policy.rules[d].path
                    ),
                    "remove the rule, or narrow the deny rule if this traffic should pass",
                ),
                Shadowing::Redundant { by, duplicate: true } => (
                    format!("the rule duplicates `{}` of the same policy: it has no effect", policy.rules[by].path),
                    "remove one of the two rules",
                ),
                Shadowing::Redundant { by, duplicate: false } => (
                    format!(
                        "`{}` of the same policy allows everything this rule allows: it has no effect",
                        policy.rules[by].path
                    ),
                    "remove the rule, or check whether the broader rule is wider than intended",
                ),
            };
            out.push(
                Diagnostic::new(
                    codes::SHADOWED_RULE,
                    at_policy(loaded, p, &rule.path, rule_spans(loaded, RuleRef::new(p, shadowed.rule)).map(|s| s.pos)),
                    message,
                )
                .with_help(help),
            );
        }
    }
}

/// Whether a rule can match anything at all. A rule with an empty peer
/// list (Cilium `ingress: [{}]`, `toEndpoints: []`) or an empty port list
/// matches nothing; W0203 and W0201 are the places to say so.
fn selects_something(rule: &Rule) -> bool {
    !matches!(&rule.peers, Peers::Only(peers) if peers.is_empty()) && rule.ports.as_ref().is_none_or(|m| !m.is_empty())
}

/// Whether `rule` is the part without L7 rules of a Cilium rule whose
/// other `toPorts` entries carry L7 rules (`spec.ingress[0]` next to
/// `spec.ingress[0].toPorts[1]`): its path names the whole rule, which
/// does have an effect through its other parts.
fn split_from_l7(rules: &[Rule], rule: &Rule) -> bool {
    let prefix = format!("{}.", rule.path);
    rules.iter().any(|r| r.path.starts_with(&prefix))
}

/// Whether `outer` matches every (peer, protocol, port) `inner` matches.
fn rule_covers(outer: &Rule, inner: &Rule) -> bool {
    peers_cover(&outer.peers, &inner.peers) && ports_cover(outer.ports.as_deref(), inner.ports.as_deref())
}

fn peers_cover(outer: &Peers, inner: &Peers) -> bool {
    match (outer, inner) {
        (Peers::Any, _) => true,
        (Peers::Only(outer), Peers::Any) => outer.contains(&Peer::Entity(Entity::All)),
        (Peers::Only(outer), Peers::Only(inner)) => inner.iter().all(|p| outer.iter().any(|q| peer_covers(q, p))),
    }
}

/// Whether peer `q` selects everything peer `p` selects.
fn peer_covers(q: &Peer, p: &Peer) -> bool {
    match (q, p) {
        (Peer::Entity(Entity::All), _) => true,
        // `cluster` holds every pod. A selector could also name a reserved
        // identity's labels, so only one tied to a pod namespace counts.
        (Peer::Entity(Entity::Cluster), Peer::Endpoints(selector)) => selector_covers(&in_some_namespace(), selector),
        // What Cilium documents `cluster` to include.
        (Peer::Entity(Entity::Cluster), Peer::Entity(e)) => {
            matches!(e, Entity::Cluster | Entity::Host | Entity::RemoteNode | Entity::Init | Entity::Unmanaged)
        }
        // A CIDR peer only ever selects addresses outside the cluster.
        (Peer::Entity(Entity::World), Peer::Cidr { .. }) => true,
        (Peer::Entity(a), Peer::Entity(b)) => a == b,
        (Peer::Endpoints(q), Peer::Endpoints(p)) => selector_covers(q, p),
        (Peer::Cidr { cidr: qc, except: qe }, Peer::Cidr { cidr: pc, except: pe }) => {
            qc.covers(*pc) && qe.iter().all(|e| !overlaps(*e, *pc) || pe.iter().any(|x| x.covers(*e)))
        }
        _ => false,
    }
}

fn in_some_namespace() -> LabelSelector {
    LabelSelector::everything().with(Requirement {
        key: NAMESPACE_LABEL.to_string(),
        operator: Operator::Exists,
        values: Vec::new(),
    })
}

/// Two prefixes overlap exactly when one contains the other.
fn overlaps(a: Cidr, b: Cidr) -> bool {
    a.covers(b) || b.covers(a)
}

/// Whether `q` matches every label set `p` matches: each requirement of
/// `q` follows from one requirement of `p` on the same key (so `q` has the
/// same or fewer constraints). Sound, not complete: it does not combine
/// requirements (`a in (x)` and `a notin (x)` together match nothing).
fn selector_covers(q: &LabelSelector, p: &LabelSelector) -> bool {
    q.requirements.iter().all(|rq| p.requirements.iter().any(|rp| implies(rp, rq)))
}

/// Whether every label set satisfying `a` satisfies `b`.
fn implies(a: &Requirement, b: &Requirement) -> bool {
    if a.key != b.key {
        return false;
    }
    let subset = |xs: &[String], ys: &[String]| xs.iter().all(|x| ys.contains(x));
    match (a.operator, b.operator) {
        (Operator::In, Operator::In) => subset(&a.values, &b.values),
        (Operator::In, Operator::Exists) | (Operator::Exists, Operator::Exists) => true,
        (Operator::In, Operator::NotIn) => !a.values.iter().any(|v| b.values.contains(v)),
        (Operator::NotIn, Operator::NotIn) => subset(&b.values, &a.values),
        (Operator::DoesNotExist, Operator::NotIn | Operator::DoesNotExist) => true,
        _ => false,
    }
}

/// Whether the port list `outer` (`None`: every protocol and port) covers
/// `inner`.
fn ports_cover(outer: Option<&[PortMatch]>, inner: Option<&[PortMatch]>) -> bool {
    let Some(outer) = outer else { return true };
    // "Every protocol" includes protocols without ports (GRE, ESP, ...),
    // which no port list names.
    let Some(inner) = inner else { return false };
    inner.iter().all(|m| protocols(m).iter().all(|&protocol| port_covered(outer, protocol, &m.ports)))
}

/// The protocols a port match applies to: Cilium's `ANY` is TCP, UDP and
/// SCTP.
fn protocols(m: &PortMatch) -> &[Protocol] {
    match &m.protocol {
        Some(protocol) => std::slice::from_ref(protocol),
        None => &Protocol::WITH_PORTS,
    }
}

/// Whether `outer` matches `spec` of `protocol` on every destination.
fn port_covered(outer: &[PortMatch], protocol: Protocol, spec: &PortSpec) -> bool {
    let applies = |m: &&PortMatch| protocols(m).contains(&protocol);
    // A named port resolves per destination pod to a number no other rule
    // can know: only the same name, or every port, covers it.
    if let PortSpec::Named(name) = spec {
        if outer.iter().filter(applies).any(|m| matches!(&m.ports, PortSpec::Named(n) if n == name)) {
            return true;
        }
    }
    let mut ranges: Vec<PortRange> = outer
        .iter()
        .filter(applies)
        .filter_map(|m| match &m.ports {
            PortSpec::All => Some(PortRange::ALL),
            PortSpec::Range(range) => Some(*range),
            PortSpec::Named(_) => None,
        })
        .collect();
    let needed = match spec {
        PortSpec::Range(range) => *range,
        PortSpec::All | PortSpec::Named(_) => PortRange::ALL,
    };
    ranges.sort_unstable();
    // Walk the ranges in order, extending the covered prefix of `needed`.
    let mut next = u32::from(needed.lo);
    for range in ranges {
        if u32::from(range.lo) > next {
            break;
        }
        next = next.max(u32::from(range.hi) + 1);
        if next > u32::from(needed.hi) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use policyc_ir::policy::{PolicyKind, PolicyOrigin, Subject};
    use policyc_ir::protocol::Direction;

    fn cidr(s: &str) -> Cidr {
        Cidr::parse_strict(s).unwrap()
    }

    fn req(key: &str, operator: Operator, values: &[&str]) -> Requirement {
        Requirement { key: key.into(), operator, values: values.iter().map(|v| v.to_string()).collect() }
    }

    fn sel(requirements: Vec<Requirement>) -> LabelSelector {
        LabelSelector { requirements }
    }

    fn tcp(lo: u16, hi: u16) -> PortMatch {
        PortMatch { protocol: Some(Protocol::Tcp), ports: PortSpec::Range(PortRange { lo, hi }) }
    }

    fn rule(action: Action, peers: Peers, ports: Option<Vec<PortMatch>>) -> Rule {
        Rule { path: String::new(), direction: Direction::Ingress, action, peers, ports, l7: None }
    }

    fn policy(mut rules: Vec<Rule>) -> Policy {
        for (i, r) in rules.iter_mut().enumerate() {
            r.path = format!("spec.ingress[{i}]");
        }
        Policy {
            origin: PolicyOrigin {
                kind: PolicyKind::CiliumNetworkPolicy,
                namespace: Some("ns".into()),
                name: "p".into(),
                spec_path: "spec".into(),
            },
            subject: Subject::Endpoints(LabelSelector::everything()),
            default_deny: [true, false],
            requires: [vec![], vec![]],
            deny_requires: [Vec::new(), Vec::new()],
            rules,
        }
    }

    #[test]
    fn requirements_imply_by_operator() {
        let r = |op, vs: &[&str]| req("app", op, vs);
        assert!(implies(&r(Operator::In, &["a"]), &r(Operator::In, &["a", "b"])));
        assert!(!implies(&r(Operator::In, &["a", "b"]), &r(Operator::In, &["a"])));
        assert!(implies(&r(Operator::In, &["a"]), &r(Operator::Exists, &[])));
        assert!(implies(&r(Operator::In, &["a"]), &r(Operator::NotIn, &["b"])));
        assert!(!implies(&r(Operator::In, &["a"]), &r(Operator::NotIn, &["a"])));
        assert!(implies(&r(Operator::NotIn, &["a", "b"]), &r(Operator::NotIn, &["a"])));
        assert!(!implies(&r(Operator::NotIn, &["a"]), &r(Operator::NotIn, &["a", "b"])));
        assert!(implies(&r(Operator::DoesNotExist, &[]), &r(Operator::NotIn, &["a"])));
        assert!(!implies(&r(Operator::Exists, &[]), &r(Operator::In, &["a"])));
        assert!(!implies(&r(Operator::NotIn, &["a"]), &r(Operator::Exists, &[])));
        assert!(!implies(&r(Operator::In, &["a"]), &req("tier", Operator::Exists, &[])));
    }

    #[test]
    fn selectors_cover_when_requirements_are_fewer() {
        let web = req("app", Operator::In, &["web"]);
        let ns = req(NAMESPACE_LABEL, Operator::In, &["shop"]);
        let tier = req("tier", Operator::In, &["fe"]);
        let broad = sel(vec![web.clone(), ns.clone()]);
        let narrow = sel(vec![ns.clone(), tier, web.clone()]);
        assert!(selector_covers(&broad, &narrow));
        assert!(!selector_covers(&narrow, &broad));
        // The same pod labels in another namespace are not covered.
        assert!(!selector_covers(&broad, &sel(vec![web.clone(), req(NAMESPACE_LABEL, Operator::In, &["x"])])));
        assert!(selector_covers(&LabelSelector::everything(), &broad));
        let cluster = Peer::Entity(Entity::Cluster);
        assert!(peer_covers(&cluster, &Peer::Endpoints(broad)));
        assert!(!peer_covers(&cluster, &Peer::Endpoints(sel(vec![web]))));
    }

    #[test]
    fn cidrs_cover_unless_an_except_carves_into_the_inner_block() {
        let peer =
            |c: &str, except: &[&str]| Peer::Cidr { cidr: cidr(c), except: except.iter().map(|e| cidr(e)).collect() };
        assert!(peer_covers(&peer("10.0.0.0/8", &[]), &peer("10.1.0.0/16", &[])));
        assert!(!peer_covers(&peer("10.1.0.0/16", &[]), &peer("10.0.0.0/8", &[])));
        assert!(peer_covers(&peer("10.0.0.0/8", &["10.2.0.0/16"]), &peer("10.1.0.0/16", &[])));
        assert!(!peer_covers(&peer("10.0.0.0/8", &["10.1.2.0/24"]), &peer("10.1.0.0/16", &[])));
        assert!(peer_covers(&peer("10.0.0.0/8", &["10.1.2.0/24"]), &peer("10.1.0.0/16", &["10.1.0.0/22"])));
        assert!(!peer_covers(&peer("0.0.0.0/0", &[]), &peer("::/0", &[])));
        assert!(peer_covers(&Peer::Entity(Entity::World), &peer("::/0", &[])));
    }

    #[test]
    fn ports_cover_by_protocol_range_union_and_name() {
        let named = |protocol, name: &str| PortMatch { protocol, ports: PortSpec::Named(name.into()) };
        let any_all = PortMatch { protocol: None, ports: PortSpec::All };
        assert!(ports_cover(None, Some(&[tcp(80, 80)])));
        assert!(!ports_cover(Some(std::slice::from_ref(&any_all)), None));
        assert!(ports_cover(Some(&[tcp(0, 100), tcp(101, 200)]), Some(&[tcp(50, 150)])));
        assert!(!ports_cover(Some(&[tcp(0, 100), tcp(102, 200)]), Some(&[tcp(50, 150)])));
        assert!(ports_cover(Some(std::slice::from_ref(&any_all)), Some(&[tcp(80, 80), named(None, "http")])));
        let icmp = PortMatch { protocol: Some(Protocol::Icmp), ports: PortSpec::All };
        assert!(!ports_cover(Some(&[any_all]), Some(&[icmp])));
        assert!(ports_cover(Some(&[named(None, "http")]), Some(&[named(Some(Protocol::Udp), "http")])));
        assert!(!ports_cover(Some(&[named(Some(Protocol::Tcp), "http")]), Some(&[named(None, "http")])));
        assert!(!ports_cover(Some(&[tcp(0, 65534)]), Some(&[named(Some(Protocol::Tcp), "http")])));
        assert!(ports_cover(Some(&[tcp(0, 65535)]), Some(&[named(Some(Protocol::Tcp), "http")])));
    }

    #[test]
    fn of_duplicates_only_the_later_one_is_reported() {
        let web = Peers::Only(vec![Peer::Endpoints(sel(vec![req("app", Operator::In, &["web"])]))]);
        let rules = vec![
            rule(Action::Allow, web.clone(), Some(vec![tcp(80, 80)])),
            rule(Action::Allow, web.clone(), Some(vec![tcp(80, 80)])),
            rule(Action::Allow, web.clone(), Some(vec![tcp(80, 80)])),
        ];
        let got = shadowed_rules(&policy(rules));
        assert_eq!(got, [1, 2].map(|rule| ShadowedRule { rule, by: Shadowing::Redundant { by: 0, duplicate: true } }));
    }

    #[test]
    fn deny_and_empty_rules() {
        let rules = vec![
            rule(Action::Allow, Peers::Any, Some(vec![tcp(80, 80)])),
            rule(Action::Deny, Peers::Any, Some(vec![tcp(0, 1000)])),
            // Selects nothing: left to other rules.
            rule(Action::Allow, Peers::Only(vec![]), None),
            rule(Action::Allow, Peers::Any, Some(vec![])),
        ];
        let got = shadowed_rules(&policy(rules));
        assert_eq!(got, [ShadowedRule { rule: 0, by: Shadowing::ByDeny(1) }]);
    }

    #[test]
    fn l7_rules_neither_cover_nor_are_covered() {
        let l7 = Some(policyc_ir::policy::L7Rules { parser: "http".into(), rules: "[]".into() });
        let mut with_l7 = rule(Action::Allow, Peers::Any, Some(vec![tcp(80, 80)]));
        with_l7.l7 = l7;
        let plain = rule(Action::Allow, Peers::Any, Some(vec![tcp(80, 80)]));
        assert!(shadowed_rules(&policy(vec![with_l7.clone(), plain.clone()])).is_empty());
        assert!(shadowed_rules(&policy(vec![plain, with_l7])).is_empty());
    }
}
