use crate::diag::{codes, Diagnostic};
use crate::front::{Body, Input};
use policyc_ir::labels::{NAMESPACE_LABEL, NAMESPACE_LABELS_PREFIX};
use policyc_ir::policy::{PortMatch, PortSpec};
use policyc_ir::protocol::{Direction, PortRange, Protocol};
use policyc_ir::selector::{LabelSelector, Operator, Requirement};
use policyc_ir::tier::{Tier, TierAction, TierKind, TierPeer, TierPolicy};

fn parse(kind: &str, version: &str, name: &str, spec: &str) -> (Option<TierPolicy>, Vec<Diagnostic>) {
    let text = format!(
        "apiVersion: policy.networking.k8s.io/{version}\nkind: {kind}\nmetadata:\n  name: {name}\nspec:\n{}",
        spec.lines().map(|l| format!("  {l}\n")).collect::<String>()
    );
    let mut input = Input::default();
    input.add_source("t.yaml", text);
    let policy = input.objects.into_iter().find_map(|o| match o.body {
        Body::Tier(t) => Some(t.policy),
        _ => None,
    });
    (policy, input.diagnostics)
}

fn anp(spec: &str) -> (Option<TierPolicy>, Vec<Diagnostic>) {
    parse("AdminNetworkPolicy", "v1alpha1", "a", spec)
}

fn codes_of(diags: &[Diagnostic]) -> Vec<&str> {
    diags.iter().map(|d| d.code.id).collect()
}

fn ns_label(key: &str, value: &str) -> Requirement {
    Requirement::equals(format!("{NAMESPACE_LABELS_PREFIX}{key}"), value)
}

#[test]
fn an_anp_reads_priority_subject_and_rules_in_order() {
    let (p, diags) = anp(concat!(
        "priority: 7\nsubject:\n  namespaces: {matchLabels: {team: a}}\n",
        "egress:\n- {name: e, action: Pass, to: [{networks: [10.0.0.0/8]}]}\n",
        "ingress:\n- name: i\n  action: Deny\n  from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: x}}}}]\n",
        "  ports: [{portNumber: {port: 80}}, {portRange: {protocol: UDP, start: 5, end: 9}}, {namedPort: http}]\n",
    ));
    assert!(diags.is_empty(), "{diags:#?}");
    let p = p.unwrap();
    assert_eq!((p.kind, p.tier, p.priority), (TierKind::AdminNetworkPolicy, Tier::Admin, 7));
    assert_eq!(p.subject, LabelSelector::everything().with(ns_label("team", "a")));
    // Ingress first, as the rules are numbered by direction.
    assert_eq!(p.rules[0].path, "spec.ingress[0]");
    assert_eq!((p.rules[0].direction, p.rules[0].action), (Direction::Ingress, TierAction::Deny));
    let any_ns = Requirement { key: NAMESPACE_LABEL.into(), operator: Operator::Exists, values: vec![] };
    let pods = LabelSelector::everything().with(Requirement::equals("app", "x")).with(any_ns);
    assert_eq!(p.rules[0].peers, vec![TierPeer::Endpoints(pods)]);
    assert_eq!(
        p.rules[0].ports,
        Some(vec![
            PortMatch { protocol: Some(Protocol::Tcp), ports: PortSpec::Range(PortRange::single(80)) },
            PortMatch { protocol: Some(Protocol::Udp), ports: PortSpec::Range(PortRange { lo: 5, hi: 9 }) },
            PortMatch { protocol: None, ports: PortSpec::Named("http".into()) },
        ])
    );
    assert_eq!((p.rules[1].path.as_str(), p.rules[1].action), ("spec.egress[0]", TierAction::Pass));
    assert_eq!(p.rules[1].name.as_deref(), Some("e"));
    assert!(matches!(&p.rules[1].peers[0], TierPeer::Networks(c) if c.len() == 1));
    assert_eq!(p.rules[1].ports, None);
}

#[test]
fn crd_validation_is_reported_with_its_field() {
    let (_, d) = anp("priority: -1\nsubject: {namespaces: {}}");
    assert_eq!(codes_of(&d), ["E0150"]);
    assert_eq!(d[0].location.path.as_deref(), Some("spec.priority"));
    let (_, d) = anp("priority: 1\nsubject: {}");
    assert_eq!(codes_of(&d), ["E0151"]);
    let (_, d) = anp("priority: 1\nsubject: {namespaces: {}}\ningress: [{action: Allow, from: [{nodes: {}}]}]");
    assert_eq!(codes_of(&d), ["W0006", "E0151"], "{d:#?}");
    let (_, d) = anp("priority: 1\nsubject: {namespaces: {}}\negress: [{action: allow, to: [{nodes: {}}]}]");
    assert_eq!(codes_of(&d), ["E0152"]);
    assert_eq!(d[0].help.as_deref(), Some("did you mean `Allow`?"));
    let (_, d) = anp("priority: 1\nsubject: {namespaces: {}}\negress: [{action: Deny}]");
    assert_eq!(codes_of(&d), ["E0005"]);
    let (_, d) = anp("priority: 1\nsubject: {namespaces: {}}\negress: [{action: Deny, to: []}]");
    assert_eq!(codes_of(&d), ["E0153"]);
    let (_, d) =
        anp("priority: 1\nsubject: {namespaces: {}}\negress: [{action: Deny, to: [{networks: ['10.0.0.0/8']}], ports: [{namedPort: x}]}]");
    assert_eq!(codes_of(&d), ["W0154"]);
    let many = (0..101).map(|_| "{action: Deny, from: [{namespaces: {}}]}").collect::<Vec<_>>().join(", ");
    let (_, d) = anp(&format!("priority: 1\nsubject: {{namespaces: {{}}}}\ningress: [{many}]"));
    assert_eq!(codes_of(&d), ["E0153"]);
    let (_, d) = anp("priority: 1\nsubject: {namespaces: {}}\ningress: [{action: Deny, from: [{namespaces: {}}], ports: [{portRange: {start: 9, end: 9}}]}]");
    assert_eq!(codes_of(&d), ["E0156"]);
}

#[test]
fn a_banp_is_the_singleton_default_and_cannot_pass() {
    let spec = "subject: {namespaces: {}}\ningress: [{action: Pass, from: [{namespaces: {}}]}]";
    let (p, d) = parse("BaselineAdminNetworkPolicy", "v1alpha1", "other", spec);
    assert_eq!(codes_of(&d), ["E0155", "E0152"]);
    assert!(p.unwrap().rules.is_empty(), "the rule with an error is left out");
    let (p, d) = parse("BaselineAdminNetworkPolicy", "v1alpha1", "default", "subject: {namespaces: {}}");
    assert!(d.is_empty());
    assert_eq!(p.unwrap().tier, Tier::Baseline);
}

#[test]
fn a_cluster_network_policy_has_a_tier_and_protocols() {
    let spec = concat!(
        "tier: Baseline\npriority: 3\nsubject: {namespaces: {}}\n",
        "egress:\n- action: Accept\n  to: [{namespaces: {}}]\n",
        "  protocols: [{tcp: {destinationPort: {number: 443}}}, {udp: {destinationPort: {range: {start: 1, end: 2}}}}, {sctp: {}}, {destinationNamedPort: dns}]\n",
    );
    let (p, d) = parse("ClusterNetworkPolicy", "v1alpha2", "c", spec);
    assert!(d.is_empty(), "{d:#?}");
    let p = p.unwrap();
    assert_eq!((p.tier, p.priority, p.rules[0].action), (Tier::Baseline, 3, TierAction::Allow));
    let ports = p.rules[0].ports.clone().unwrap();
    assert_eq!(ports[0], PortMatch { protocol: Some(Protocol::Tcp), ports: PortSpec::Range(PortRange::single(443)) });
    assert_eq!(ports[1].ports, PortSpec::Range(PortRange { lo: 1, hi: 2 }));
    assert_eq!(ports[2], PortMatch { protocol: Some(Protocol::Sctp), ports: PortSpec::All });
    assert_eq!(ports[3], PortMatch { protocol: None, ports: PortSpec::Named("dns".into()) });
    let (_, d) = parse(
        "ClusterNetworkPolicy",
        "v1alpha2",
        "c",
        "tier: Admin\npriority: 3\nsubject: {namespaces: {}}\negress: [{action: Allow, to: [{namespaces: {}}]}]",
    );
    assert_eq!(codes_of(&d), ["E0152"]);
    assert_eq!(d[0].help.as_deref(), Some("v1alpha2 names it `Accept`"));
    let (_, d) = parse("ClusterNetworkPolicy", "v1alpha2", "c", "priority: 3\nsubject: {namespaces: {}}");
    assert_eq!((codes_of(&d), d[0].message.as_str()), (vec!["E0005"], "missing field `tier`"));
}

#[test]
fn host_bits_in_networks_are_read_as_the_network_and_domain_names_match_nothing() {
    let (p, d) =
        anp("priority: 1\nsubject: {namespaces: {}}\negress: [{action: Deny, to: [{networks: ['10.1.2.3/8']}]}]");
    assert_eq!(codes_of(&d), ["W0160"]);
    let TierPeer::Networks(c) = &p.unwrap().rules[0].peers[0] else { panic!("networks") };
    assert_eq!(c[0].to_string(), "10.0.0.0/8");
    let (p, d) = parse(
        "ClusterNetworkPolicy",
        "v1alpha2",
        "c",
        "tier: Admin\npriority: 1\nsubject: {namespaces: {}}\negress: [{action: Accept, to: [{domainNames: [a.example]}]}]",
    );
    assert_eq!(codes_of(&d), ["W0158"]);
    assert!(p.unwrap().rules[0].peers.is_empty());
    assert_eq!(codes::DOMAIN_NAMES_NOT_COMPILABLE.id, "W0158");
}
