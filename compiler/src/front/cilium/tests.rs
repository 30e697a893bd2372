//! Unit tests: one per lowering rule and diagnostic of the Cilium decoder.

use super::ports::canonical_json;
use crate::front::{Body, Input};
use policyc_ir::cidr::Cidr;
use policyc_ir::labels::NAMESPACE_LABEL;
use policyc_ir::policy::{Action, Entity, Peer, Peers, Policy, PolicyKind, PortMatch, PortSpec, Rule, Subject};
use policyc_ir::protocol::{Direction, PortRange, Protocol};
use policyc_ir::selector::{LabelSelector, Operator, Requirement};

fn parse(text: &str) -> Input {
    let mut input = Input::default();
    input.add_source("t.yaml", text.to_string());
    input
}

/// A CNP in namespace `prod` with `spec` given as flow YAML.
fn cnp(spec: &str) -> String {
    format!(
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {{name: p, namespace: prod}}\nspec: {spec}\n"
    )
}

/// A CCNP with `spec` given as flow YAML.
fn ccnp(spec: &str) -> String {
    format!("apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata: {{name: c}}\nspec: {spec}\n")
}

fn policies(input: &Input) -> Vec<Policy> {
    input
        .objects
        .iter()
        .flat_map(|o| match &o.body {
            Body::Policy(p) => p.iter().map(|p| p.policy.clone()).collect(),
            _ => Vec::new(),
        })
        .collect()
}

fn codes(input: &Input) -> Vec<&'static str> {
    input.diagnostics.iter().map(|d| d.code.id).collect()
}

/// The only policy of a clean parse (no diagnostics at all).
fn clean(text: &str) -> Policy {
    let input = parse(text);
    assert!(input.diagnostics.is_empty(), "unexpected diagnostics: {:#?}", input.diagnostics);
    let mut ps = policies(&input);
    assert_eq!(ps.len(), 1);
    ps.remove(0)
}

/// The policy and diagnostic codes of a parse.
fn with_codes(text: &str) -> (Vec<Policy>, Vec<&'static str>) {
    let input = parse(text);
    (policies(&input), codes(&input))
}

fn rule(text: &str) -> Rule {
    let p = clean(text);
    assert_eq!(p.rules.len(), 1, "{:#?}", p.rules);
    p.rules.into_iter().next().unwrap()
}

fn ns(name: &str) -> Requirement {
    Requirement::equals(NAMESPACE_LABEL, name)
}

fn app(value: &str) -> Requirement {
    Requirement::equals("app", value)
}

fn sel(reqs: Vec<Requirement>) -> LabelSelector {
    LabelSelector { requirements: reqs }
}

fn tcp(port: u16) -> PortMatch {
    PortMatch { protocol: Some(Protocol::Tcp), ports: PortSpec::Range(PortRange::single(port)) }
}

fn ports_of(text: &str) -> Vec<PortMatch> {
    rule(&cnp(&format!("{{endpointSelector: {{}}, ingress: [{{toPorts: [{{ports: [{text}]}}]}}]}}"))).ports.unwrap()
}

fn codes_of(spec: &str) -> Vec<&'static str> {
    with_codes(&cnp(spec)).1
}

#[test]
fn cnp_subject_is_scoped_to_the_policy_namespace() {
    let p = clean(&cnp("{endpointSelector: {matchLabels: {'k8s:app': web}}}"));
    assert_eq!(p.subject, Subject::Endpoints(sel(vec![app("web"), ns("prod")])));
    assert_eq!(p.origin.kind, PolicyKind::CiliumNetworkPolicy);
    assert_eq!(p.origin.namespace.as_deref(), Some("prod"));
    assert_eq!(p.origin.spec_path, "spec");
    assert_eq!(p.default_deny, [false, false]);
}

#[test]
fn cnp_subject_namespace_of_another_namespace_is_replaced_with_a_warning() {
    let (ps, codes) = with_codes(&cnp("{endpointSelector: {matchLabels: {'k8s:io.kubernetes.pod.namespace': dev}}}"));
    assert_eq!(codes, ["W0128"]);
    assert_eq!(ps[0].subject, Subject::Endpoints(sel(vec![ns("prod")])));
    // Expressions stay, as in Cilium: this one selects nothing.
    let (ps, codes) = with_codes(&cnp(
        "{endpointSelector: {matchExpressions: [{key: 'k8s:io.kubernetes.pod.namespace', operator: NotIn, values: [prod]}]}}",
    ));
    assert_eq!(codes, ["W0128"]);
    let not_in = Requirement { key: NAMESPACE_LABEL.into(), operator: Operator::NotIn, values: vec!["prod".into()] };
    assert_eq!(ps[0].subject, Subject::Endpoints(sel(vec![not_in, ns("prod")])));
    // Naming its own namespace is harmless.
    let p = clean(&cnp("{endpointSelector: {matchLabels: {'io.kubernetes.pod.namespace': prod}}}"));
    assert_eq!(p.subject, Subject::Endpoints(sel(vec![ns("prod")])));
}

/// Cilium's `ParseToCiliumRule` replaces only the `k8s:`-prefixed
/// `matchLabels` entry: another namespace named without the source or in
/// `matchExpressions` stays beside the policy's own, so the subject is
/// empty, never the other namespace's pods.
#[test]
fn cnp_subject_namespace_named_another_way_selects_nothing() {
    for es in [
        "{matchLabels: {'io.kubernetes.pod.namespace': dev}}",
        "{matchLabels: {'any:io.kubernetes.pod.namespace': dev}}",
        "{matchExpressions: [{key: 'k8s:io.kubernetes.pod.namespace', operator: In, values: [dev]}]}",
    ] {
        let (ps, codes) = with_codes(&cnp(&format!("{{endpointSelector: {es}}}")));
        assert_eq!(codes, ["W0128"], "{es}");
        assert_eq!(ps[0].subject, Subject::Endpoints(sel(vec![ns("dev"), ns("prod")])), "{es}");
    }
}

#[test]
fn ccnp_subject_is_cluster_wide() {
    let p = clean(&ccnp("{endpointSelector: {matchLabels: {'any:app': web}}}"));
    assert_eq!(p.subject, Subject::Endpoints(sel(vec![app("web")])));
    assert_eq!(p.origin.kind, PolicyKind::CiliumClusterwideNetworkPolicy);
    assert_eq!(p.origin.namespace, None);
}

#[test]
fn node_selector_is_a_host_policy_in_a_ccnp_only() {
    let p = clean(&ccnp("{nodeSelector: {matchLabels: {role: worker}}, ingress: [{fromEntities: [cluster]}]}"));
    assert_eq!(p.subject, Subject::Nodes(sel(vec![Requirement::equals("role", "worker")])));
    let (ps, codes) = with_codes(&cnp("{nodeSelector: {}}"));
    assert_eq!(codes, ["E0127"]);
    assert!(ps.is_empty());
}

#[test]
fn exactly_one_of_endpoint_selector_and_node_selector() {
    assert_eq!(with_codes(&ccnp("{endpointSelector: {}, nodeSelector: {}}")).1, ["E0111"]);
    assert_eq!(with_codes(&ccnp("{ingress: [{}]}")).1, ["E0111"]);
}

#[test]
fn invalid_subject_selector_is_reported() {
    let codes = codes_of("{endpointSelector: {matchExpressions: [{key: app, operator: Within, values: [a]}]}}");
    assert_eq!(codes, ["E0109"]);
}

#[test]
fn neither_spec_nor_specs_is_an_error() {
    let input = parse("apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p}\n");
    assert_eq!(codes(&input), ["E0119"]);
    assert!(input.objects.is_empty());
    let input = parse("apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p}\nspecs: []\n");
    assert_eq!(codes(&input), ["E0119"]);
}

#[test]
fn specs_give_one_policy_each_after_spec() {
    let text = "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p, namespace: prod}\n\
                spec: {endpointSelector: {}}\n\
                specs:\n- {endpointSelector: {matchLabels: {app: a}}}\n- {endpointSelector: {matchLabels: {app: b}}, egressDeny: [{}]}\n";
    let input = parse(text);
    assert!(input.diagnostics.is_empty(), "{:#?}", input.diagnostics);
    let ps = policies(&input);
    let paths: Vec<&str> = ps.iter().map(|p| p.origin.spec_path.as_str()).collect();
    assert_eq!(paths, ["spec", "specs[0]", "specs[1]"]);
    assert_eq!(ps[2].rules[0].path, "specs[1].egressDeny[0]");
}

#[test]
fn rule_lists_give_direction_action_and_path() {
    let p = clean(&cnp("{endpointSelector: {}, ingress: [{}], ingressDeny: [{}], egress: [{}, {}], egressDeny: [{}]}"));
    let got: Vec<(&str, Direction, Action)> =
        p.rules.iter().map(|r| (r.path.as_str(), r.direction, r.action)).collect();
    assert_eq!(
        got,
        [
            ("spec.ingress[0]", Direction::Ingress, Action::Allow),
            ("spec.ingressDeny[0]", Direction::Ingress, Action::Deny),
            ("spec.egress[0]", Direction::Egress, Action::Allow),
            ("spec.egress[1]", Direction::Egress, Action::Allow),
            ("spec.egressDeny[0]", Direction::Egress, Action::Deny),
        ]
    );
}

#[test]
fn a_rule_without_peers_selects_nothing_but_turns_on_default_deny() {
    let p = clean(&cnp("{endpointSelector: {}, ingress: [{}]}"));
    assert_eq!(p.rules[0].peers, Peers::Only(vec![]));
    assert_eq!(p.rules[0].ports, None);
    assert_eq!(p.default_deny, [true, false]);
}

#[test]
fn a_rule_with_only_ports_applies_to_any_peer() {
    let r = rule(&cnp("{endpointSelector: {}, egress: [{toPorts: [{ports: [{port: '53', protocol: UDP}]}]}]}"));
    assert_eq!(r.peers, Peers::Any);
    let r = rule(&cnp("{endpointSelector: {}, egress: [{icmps: [{fields: [{type: 8}]}]}]}"));
    assert_eq!(r.peers, Peers::Any);
}

#[test]
fn an_empty_peer_list_selects_nothing_even_with_ports() {
    // Cilium: a nil `toEndpoints` is a wildcard when `toPorts` is given,
    // an empty non-nil one selects nothing.
    let r = rule(&cnp("{endpointSelector: {}, egress: [{toEndpoints: [], toPorts: [{ports: [{port: '80'}]}]}]}"));
    assert_eq!(r.peers, Peers::Only(vec![]));
    // `null` is nil.
    let r = rule(&cnp("{endpointSelector: {}, egress: [{toEndpoints: null, toPorts: [{ports: [{port: '80'}]}]}]}"));
    assert_eq!(r.peers, Peers::Any);
}

#[test]
fn default_deny_follows_rules_and_enable_default_deny() {
    assert_eq!(clean(&cnp("{endpointSelector: {}, ingress: []}")).default_deny, [false, false]);
    assert_eq!(clean(&cnp("{endpointSelector: {}, egressDeny: [{toEntities: [world]}]}")).default_deny, [false, true]);
    let p =
        clean(&cnp("{endpointSelector: {}, egressDeny: [{toEntities: [world]}], enableDefaultDeny: {egress: false}}"));
    assert_eq!(p.default_deny, [false, false]);
    let p = clean(&cnp("{endpointSelector: {}, enableDefaultDeny: {ingress: true}}"));
    assert_eq!(p.default_deny, [true, false]);
    assert_eq!(codes_of("{endpointSelector: {}, enableDefaultDeny: {ingress: yes please}}"), ["E0004"]);
}

#[test]
fn cnp_peer_selectors_default_to_the_policy_namespace() {
    let r = rule(&cnp("{endpointSelector: {}, ingress: [{fromEndpoints: [{}, {matchLabels: {app: db}}, \
         {matchLabels: {'k8s:io.kubernetes.pod.namespace': kube-system, 'k8s:k8s-app': kube-dns}}]}]}"));
    assert_eq!(
        r.peers,
        Peers::Only(vec![
            Peer::Endpoints(sel(vec![ns("prod")])),
            Peer::Endpoints(sel(vec![app("db"), ns("prod")])),
            Peer::Endpoints(sel(vec![ns("kube-system"), Requirement::equals("k8s-app", "kube-dns")])),
        ])
    );
}

#[test]
fn ccnp_peer_selectors_mean_pods_of_any_namespace() {
    let r = rule(&ccnp("{endpointSelector: {}, ingress: [{fromEndpoints: [{}]}]}"));
    let exists = Requirement { key: NAMESPACE_LABEL.into(), operator: Operator::Exists, values: vec![] };
    assert_eq!(r.peers, Peers::Only(vec![Peer::Endpoints(sel(vec![exists]))]));
}

#[test]
fn reserved_label_selectors_are_not_namespace_scoped() {
    let r = rule(&cnp("{endpointSelector: {}, ingress: [{fromEndpoints: [{matchLabels: {'reserved:host': ''}}]}]}"));
    assert_eq!(r.peers, Peers::Only(vec![Peer::Entity(Entity::Host)]));
    let r =
        rule(&cnp("{endpointSelector: {}, ingress: [{fromEndpoints: [{matchLabels: {'reserved:world-ipv6': ''}}]}]}"));
    assert_eq!(r.peers, Peers::Only(vec![Peer::Cidr { cidr: Cidr::all(true), except: vec![] }]));
    // With another label it names no reserved identity and stays a selector.
    let r = rule(&cnp(
        "{endpointSelector: {}, ingress: [{fromEndpoints: [{matchLabels: {'reserved:world': '', app: web}}]}]}",
    ));
    assert_eq!(
        r.peers,
        Peers::Only(vec![Peer::Endpoints(sel(vec![app("web"), Requirement::equals("reserved:world", "")]))])
    );
}

#[test]
fn requires_go_to_the_policy_scoped_like_endpoints() {
    let p = clean(&cnp(
        "{endpointSelector: {}, ingress: [{fromRequires: [{matchLabels: {env: prod}}], fromEndpoints: [{}]}], \
         egress: [{toRequires: [{matchLabels: {'k8s:io.kubernetes.pod.namespace': prod}}]}]}",
    ));
    assert_eq!(p.requires[0], vec![sel(vec![Requirement::equals("env", "prod"), ns("prod")])]);
    assert_eq!(p.requires[1], vec![sel(vec![ns("prod")])]);
    // A rule with only `toRequires` names no peer.
    assert_eq!(p.rules[1].peers, Peers::Only(vec![]));
}

#[test]
fn cidr_peers_and_cidr_sets_with_except() {
    let p = clean(&cnp("{endpointSelector: {}, egress: [{toCIDR: [10.0.0.0/8, 192.168.1.1]}, \
         {toCIDRSet: [{cidr: 0.0.0.0/0, except: [172.16.0.0/12, 10.0.0.0/8]}]}]}"));
    let c = |s: &str| Cidr::parse_strict(s).unwrap();
    assert_eq!(
        p.rules[0].peers,
        Peers::Only(vec![
            Peer::Cidr { cidr: c("10.0.0.0/8"), except: vec![] },
            Peer::Cidr { cidr: c("192.168.1.1/32"), except: vec![] },
        ])
    );
    let except = vec![c("10.0.0.0/8"), c("172.16.0.0/12")];
    assert_eq!(p.rules[1].peers, Peers::Only(vec![Peer::Cidr { cidr: c("0.0.0.0/0"), except }]));
}

#[test]
fn except_outside_its_cidr_is_an_error() {
    let codes =
        codes_of("{endpointSelector: {}, egress: [{toCIDRSet: [{cidr: 10.0.0.0/8, except: [192.168.0.0/16]}]}]}");
    assert_eq!(codes, ["E0102"]);
    assert_eq!(codes_of("{endpointSelector: {}, egress: [{toCIDR: [10.0.0.1/8]}]}"), ["E0101"]);
}

#[test]
fn cidr_groups_are_unsupported_and_select_nothing() {
    let (ps, codes) = with_codes(&cnp("{endpointSelector: {}, egress: [{toCIDRSet: [{cidrGroupRef: office}]}]}"));
    assert_eq!(codes, ["W0118"]);
    assert_eq!(ps[0].rules[0].peers, Peers::Only(vec![]));
    assert_eq!(codes_of("{endpointSelector: {}, egress: [{toCIDRSet: [{except: [10.0.0.0/8]}]}]}"), ["E0005"]);
}

#[test]
fn entities() {
    let r =
        rule(&cnp("{endpointSelector: {}, egress: [{toEntities: [world, kube-apiserver, remote-node, world-ipv6]}]}"));
    assert_eq!(
        r.peers,
        Peers::Only(vec![
            Peer::Entity(Entity::World),
            Peer::Entity(Entity::KubeApiserver),
            Peer::Entity(Entity::RemoteNode),
            Peer::Cidr { cidr: Cidr::all(true), except: vec![] },
        ])
    );
    let input = parse(&cnp("{endpointSelector: {}, ingress: [{fromEntities: [clustr]}]}"));
    assert_eq!(codes(&input), ["E0113"]);
    assert_eq!(input.diagnostics[0].help.as_deref(), Some("did you mean `cluster`?"));
    assert_eq!(input.diagnostics[0].location.path.as_deref(), Some("spec.ingress[0].fromEntities[0]"));
}

#[test]
fn unenforced_peers_warn_and_select_nothing() {
    let (ps, codes) = with_codes(&cnp("{endpointSelector: {}, egress: [{toFQDNs: [{matchName: api.example.com}], toPorts: [{ports: [{port: '443'}]}]}]}"));
    assert_eq!(codes, ["W0112"]);
    assert_eq!(ps[0].rules[0].peers, Peers::Only(vec![]));
    // `toServices` is resolved at lowering (`crate::lower`): no warning
    // here, and no peer yet.
    let (ps, codes) = with_codes(&cnp(
        "{endpointSelector: {}, egress: [{toServices: [{k8sService: {serviceName: db, namespace: prod}}]}]}",
    ));
    assert!(codes.is_empty(), "{codes:?}");
    assert_eq!(ps[0].rules[0].peers, Peers::Only(vec![]));
    let codes = codes_of("{endpointSelector: {}, egress: [{toServices: [{}, {k8sService: {namespace: prod}}]}]}");
    assert_eq!(codes, ["E0005", "E0005"]);
    let codes = codes_of("{endpointSelector: {}, ingress: [{fromNodes: [{}]}, {fromGroups: [{aws: {region: x}}]}, {authentication: {mode: required}}]}");
    assert_eq!(codes, ["W0118", "W0118", "W0118"]);
}

#[test]
fn fqdns_are_unknown_in_deny_rules() {
    assert_eq!(codes_of("{endpointSelector: {}, egressDeny: [{toFQDNs: [{matchName: a.b}]}]}"), ["W0006"]);
}

#[test]
fn unknown_rule_field_suggests_the_right_one() {
    let input = parse(&cnp("{endpointSelector: {}, ingress: [{fromEndpoint: [{}]}]}"));
    assert_eq!(codes(&input), ["W0006"]);
    assert_eq!(input.diagnostics[0].help.as_deref(), Some("did you mean `fromEndpoints`?"));
}

#[test]
fn port_numbers_names_and_wildcards() {
    assert_eq!(ports_of("{port: '80', protocol: TCP}"), [tcp(80)]);
    assert_eq!(ports_of("{port: 8080, protocol: tcp}"), [tcp(8080)]);
    assert_eq!(
        ports_of("{port: '0', protocol: UDP}"),
        [PortMatch { protocol: Some(Protocol::Udp), ports: PortSpec::All }]
    );
    assert_eq!(ports_of("{port: '53'}"), [PortMatch { protocol: None, ports: PortSpec::Range(PortRange::single(53)) }]);
    assert_eq!(
        ports_of("{port: '53', protocol: ANY}"),
        [PortMatch { protocol: None, ports: PortSpec::Range(PortRange::single(53)) }]
    );
    assert_eq!(
        ports_of("{port: http-alt, protocol: SCTP}"),
        [PortMatch { protocol: Some(Protocol::Sctp), ports: PortSpec::Named("http-alt".into()) }]
    );
    assert_eq!(
        ports_of("{port: '8000', endPort: 8999, protocol: TCP}"),
        [PortMatch { protocol: Some(Protocol::Tcp), ports: PortSpec::Range(PortRange { lo: 8000, hi: 8999 }) }]
    );
    assert_eq!(
        ports_of("{port: '80', endPort: 0}"),
        [PortMatch { protocol: None, ports: PortSpec::Range(PortRange::single(80)) }]
    );
}

/// Cilium's `PortProtocol`: "EndPort is ignored if Port is a named port".
#[test]
fn end_port_with_a_named_port_is_ignored_with_a_warning() {
    let cnp_text = cnp("{endpointSelector: {}, ingress: [{toPorts: [{ports: [{port: http, endPort: 80}]}]}]}");
    let (ps, codes) = with_codes(&cnp_text);
    assert_eq!(codes, ["W0131"]);
    assert_eq!(ps[0].rules[0].ports, Some(vec![PortMatch { protocol: None, ports: PortSpec::Named("http".into()) }]));
}

/// Cilium lowercases port names before comparing them
/// (`PortProtocol.Validate`, `pkg/policy/api/rule_validation.go`).
#[test]
fn port_names_compare_case_insensitively() {
    assert_eq!(
        ports_of("{port: HTTP, protocol: TCP}"),
        [PortMatch { protocol: Some(Protocol::Tcp), ports: PortSpec::Named("http".into()) }]
    );
}

/// `VRRP` and `IGMP` are valid without a port; policyc's datapath does not
/// match them, so the entry matches nothing, and the warning says so.
#[test]
fn extended_protocols_are_accepted_and_match_nothing() {
    let allow =
        cnp("{endpointSelector: {}, egress: [{toPorts: [{ports: [{port: '443', protocol: TCP}, {protocol: VRRP}]}]}]}");
    let (ps, found) = with_codes(&allow);
    assert_eq!(found, ["W0132"]);
    let only_tcp = PortMatch { protocol: Some(Protocol::Tcp), ports: PortSpec::Range(PortRange::single(443)) };
    assert_eq!(ps[0].rules[0].ports, Some(vec![only_tcp]));
    let input =
        parse(&cnp("{endpointSelector: {}, egressDeny: [{toPorts: [{ports: [{port: '0', protocol: igmp}]}]}]}"));
    assert_eq!(codes(&input), ["W0132"]);
    assert!(input.diagnostics[0].message.starts_with("not dropped"), "{}", input.diagnostics[0].message);
    assert_eq!(policies(&input)[0].rules[0].ports, Some(vec![]));
    let with_port = "{endpointSelector: {}, egress: [{toPorts: [{ports: [{port: '80', protocol: VRRP}]}]}]}";
    assert_eq!(codes_of(with_port), ["E0130"]);
}

#[test]
fn a_port_rule_without_ports_covers_every_port() {
    let r = rule(&cnp("{endpointSelector: {}, ingress: [{toPorts: [{}]}]}"));
    assert_eq!(r.ports, Some(vec![PortMatch { protocol: None, ports: PortSpec::All }]));
}

#[test]
fn port_errors() {
    let spec = |p: &str| format!("{{endpointSelector: {{}}, ingress: [{{toPorts: [{{ports: [{p}]}}]}}]}}");
    assert_eq!(codes_of(&spec("{port: '90', endPort: 80}")), ["E0104"]);
    assert_eq!(codes_of(&spec("{port: '0', endPort: 80}")), ["E0105"]);
    assert_eq!(codes_of(&spec("{protocol: TCP}")), ["E0005"]);
    assert_eq!(codes_of(&spec("{port: '70000'}")), ["E0103"]);
    assert_eq!(codes_of(&spec("{port: '80', endPort: 70000}")), ["E0103"]);
    assert_eq!(codes_of(&spec("{port: '80', protocol: TPC}")), ["E0106"]);
    assert_eq!(codes_of(&spec("{port: '80', protocol: ICMP}")), ["E0106"]);
    assert_eq!(codes_of(&spec("{port: Not_A_Name}")), ["E0115"]);
}

#[test]
fn icmp_types_by_number_and_name() {
    let r =
        rule(&cnp("{endpointSelector: {}, ingress: [{icmps: [{fields: [{type: 8}, {type: EchoReply, family: IPv4}, \
         {type: EchoRequest, family: IPv6}, {type: '135', family: IPv6}]}]}]}"));
    let icmp = |p, t| PortMatch { protocol: Some(p), ports: PortSpec::Range(PortRange::single(t)) };
    assert_eq!(
        r.ports,
        Some(vec![
            icmp(Protocol::Icmp, 8),
            icmp(Protocol::Icmp, 0),
            icmp(Protocol::Icmpv6, 128),
            icmp(Protocol::Icmpv6, 135)
        ])
    );
}

#[test]
fn icmp_errors() {
    let spec = |f: &str| format!("{{endpointSelector: {{}}, ingress: [{{icmps: [{{fields: [{f}]}}]}}]}}");
    assert_eq!(codes_of(&spec("{type: 8, family: IPv5}")), ["E0116"]);
    assert_eq!(codes_of(&spec("{type: 256}")), ["E0116"]);
    let input = parse(&cnp(&spec("{type: EchoRequets}")));
    assert_eq!(codes(&input), ["E0116"]);
    assert_eq!(input.diagnostics[0].help.as_deref(), Some("did you mean `EchoRequest`?"));
    // Names are per family: `PacketTooBig` is ICMPv6 only.
    assert_eq!(codes_of(&spec("{type: PacketTooBig}")), ["E0116"]);
    assert_eq!(codes_of(&spec("{family: IPv4}")), ["E0005"]);
}

#[test]
fn ports_and_icmps_are_a_union_but_cilium_rejects_them_together() {
    let (ps, codes) = with_codes(&cnp(
        "{endpointSelector: {}, ingress: [{toPorts: [{ports: [{port: '80', protocol: TCP}]}], icmps: [{fields: [{type: 8}]}]}]}",
    ));
    assert_eq!(codes, ["E0130"]);
    let r = &ps[0].rules[0];
    assert_eq!(
        r.ports,
        Some(vec![tcp(80), PortMatch { protocol: Some(Protocol::Icmp), ports: PortSpec::Range(PortRange::single(8)) }])
    );
}

#[test]
fn http_rules_are_carried_as_canonical_json_with_a_warning() {
    let (ps, codes) = with_codes(&cnp(
        "{endpointSelector: {}, ingress: [{fromEndpoints: [{}], toPorts: [{ports: [{port: '80', protocol: TCP}], \
         rules: {http: [{path: /api, method: GET}]}}]}]}",
    ));
    assert_eq!(codes, ["W0120"]);
    let r = &ps[0].rules[0];
    let l7 = r.l7.as_ref().unwrap();
    assert_eq!(l7.parser, "http");
    assert_eq!(l7.rules, r#"{"http":[{"method":"GET","path":"/api"}]}"#);
    assert_eq!(r.ports, Some(vec![tcp(80)]));
    assert_eq!(r.path, "spec.ingress[0].toPorts[0]");
}

#[test]
fn l7_rules_apply_to_their_own_port_entry_only() {
    let (ps, _) =
        with_codes(&cnp("{endpointSelector: {}, egress: [{toEndpoints: [{}], toPorts: [{ports: [{port: '443'}]}, \
         {ports: [{port: '53', protocol: UDP}], rules: {dns: [{matchPattern: '*'}]}}]}]}"));
    let rules = &ps[0].rules;
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[0].path, "spec.egress[0]");
    assert_eq!(rules[0].l7, None);
    assert_eq!(
        rules[0].ports,
        Some(vec![PortMatch { protocol: None, ports: PortSpec::Range(PortRange::single(443)) }])
    );
    assert_eq!(rules[1].path, "spec.egress[0].toPorts[1]");
    assert_eq!(rules[1].l7.as_ref().unwrap().parser, "dns");
    assert_eq!(rules[1].peers, rules[0].peers);
}

#[test]
fn kafka_and_custom_parsers() {
    let (ps, codes) = with_codes(&cnp(
        "{endpointSelector: {}, ingress: [{toPorts: [{ports: [{port: '9092', protocol: TCP}], rules: {kafka: [{role: produce, topic: orders}]}}]}]}",
    ));
    assert_eq!(codes, ["W0120"]);
    assert_eq!(ps[0].rules[0].l7.as_ref().unwrap().parser, "kafka");
    let (ps, codes) = with_codes(&cnp(
        "{endpointSelector: {}, ingress: [{toPorts: [{ports: [{port: '6379', protocol: TCP}], rules: {l7proto: r2d2, l7: [{cmd: READ}]}}]}]}",
    ));
    assert_eq!(codes, ["W0120"]);
    let l7 = ps[0].rules[0].l7.clone().unwrap();
    assert_eq!((l7.parser.as_str(), l7.rules.as_str()), ("r2d2", r#"{"l7":[{"cmd":"READ"}],"l7proto":"r2d2"}"#));
}

#[test]
fn empty_l7_rules_filter_nothing() {
    let r = rule(&cnp("{endpointSelector: {}, ingress: [{toPorts: [{ports: [{port: '80'}], rules: {http: []}}]}]}"));
    assert_eq!(r.l7, None);
    assert_eq!(r.path, "spec.ingress[0]");
}

#[test]
fn l7_errors() {
    let spec = |rules: &str| {
        format!("{{endpointSelector: {{}}, ingress: [{{toPorts: [{{ports: [{{port: '80', protocol: TCP}}], rules: {rules}}}]}}]}}")
    };
    assert_eq!(codes_of(&spec("{http: [{}], dns: [{matchName: a.b}]}")), ["E0126"]);
    assert_eq!(codes_of(&spec("{l7: [{cmd: READ}]}")), ["E0126"]);
    assert_eq!(codes_of(&spec("{http: [{methd: GET}]}")), ["W0006", "W0120"]);
    let deny = "{endpointSelector: {}, ingressDeny: [{toPorts: [{ports: [{port: '80'}], rules: {http: [{}]}}]}]}";
    let (ps, codes) = with_codes(&cnp(deny));
    assert_eq!(codes, ["E0125"]);
    assert_eq!(ps[0].rules[0].l7, None);
}

#[test]
fn proxy_only_port_fields_are_unsupported() {
    let codes = codes_of(
        "{endpointSelector: {}, egress: [{toPorts: [{ports: [{port: '443'}], serverNames: [a.example.com]}]}]}",
    );
    assert_eq!(codes, ["W0118"]);
    // Deny port rules take ports only.
    assert_eq!(
        codes_of("{endpointSelector: {}, egressDeny: [{toPorts: [{ports: [{port: '443'}], serverNames: [a.b]}]}]}"),
        ["W0006"]
    );
}

#[test]
fn spec_metadata_fields_are_checked() {
    let p =
        clean(&cnp("{endpointSelector: {}, description: allow web, labels: [{key: team, value: web, source: k8s}]}"));
    assert!(p.rules.is_empty());
    assert_eq!(codes_of("{endpointSelector: {}, descripton: x}"), ["W0006"]);
}

#[test]
fn canonical_json_sorts_keys_and_escapes() {
    let (docs, _) = crate::front::yaml::parse_stream("{b: [1, 'x\"y', true, null], a: {d: 2.5, c: ~}}");
    assert_eq!(canonical_json(&docs[0].root), r#"{"a":{"c":null,"d":2.5},"b":[1,"x\"y",true,null]}"#);
}

#[test]
fn authentication_is_unknown_in_deny_rules() {
    assert_eq!(codes_of("{endpointSelector: {}, ingressDeny: [{authentication: {mode: required}}]}"), ["W0006"]);
}

#[test]
fn cilium_rejects_two_kinds_of_peer_in_one_rule() {
    let input = parse(&cnp("{endpointSelector: {}, egress: [{toEndpoints: [{}], toCIDR: [10.0.0.0/8]}]}"));
    assert_eq!(codes(&input), ["E0130"]);
    assert_eq!(input.diagnostics[0].message, "`toEndpoints` and `toCIDR` cannot be combined in one rule");
    let codes = codes_of("{endpointSelector: {}, egress: [{toFQDNs: [{matchName: a.b}], toEntities: [world]}]}");
    assert_eq!(codes, ["W0112", "E0130"]);
    // Requirements are no peer; empty lists do not count.
    let codes = codes_of("{endpointSelector: {}, ingress: [{fromEndpoints: [{}], fromRequires: [{}], fromCIDR: []}]}");
    assert!(codes.is_empty());
}

#[test]
fn l7_rules_where_cilium_rejects_them() {
    let l7 = |dir: &str, ports: &str, rules: &str| {
        format!("{{endpointSelector: {{}}, {dir}: [{{toPorts: [{{ports: [{ports}], rules: {rules}}}]}}]}}")
    };
    let dns = "{dns: [{matchPattern: '*'}]}";
    let http = "{http: [{method: GET}]}";
    assert_eq!(codes_of(&l7("ingress", "{port: '53', protocol: UDP}", dns)), ["E0130"]);
    assert_eq!(codes_of(&l7("egress", "{port: '0', protocol: TCP}", http)), ["E0130"]);
    assert_eq!(codes_of(&l7("egress", "{port: '80'}", http)), ["E0130"]);
    assert_eq!(codes_of(&l7("egress", "{port: '80', protocol: UDP}", http)), ["E0130"]);
    assert_eq!(codes_of(&l7("egress", "{port: '53', endPort: 54}", dns)), ["E0130"]);
    assert_eq!(codes_of(&format!("{{endpointSelector: {{}}, egress: [{{toPorts: [{{rules: {dns}}}]}}]}}")), ["E0130"]);
    assert_eq!(codes_of(&l7("egress", "{port: '53', protocol: ANY}", dns)), ["W0120"]);
    // Host policies filter at L3/L4 only, but DNS on egress is fine.
    let host = |dir: &str, ports: &str, rules: &str| {
        with_codes(&ccnp(&l7(dir, ports, rules).replace("endpointSelector", "nodeSelector"))).1
    };
    assert_eq!(host("egress", "{port: '80', protocol: TCP}", http), ["E0130"]);
    assert_eq!(host("ingress", "{port: '80', protocol: TCP}", http), ["E0130"]);
    assert_eq!(host("egress", "{port: '53', protocol: UDP}", dns), ["W0120"]);
}

#[test]
fn listener_is_rejected_on_ingress() {
    let spec = |dir: &str| {
        format!(
            "{{endpointSelector: {{}}, {dir}: [{{toPorts: [{{ports: [{{port: '80', protocol: TCP}}], \
             listener: {{name: l, envoyConfig: {{name: c}}}}}}]}}]}}"
        )
    };
    assert_eq!(codes_of(&spec("ingress")), ["E0130"]);
    assert_eq!(codes_of(&spec("egress")), ["W0118"]);
}

#[test]
fn cnp_peer_selectors_on_namespace_labels_span_namespaces() {
    let r = rule(&cnp("{endpointSelector: {}, ingress: [{fromEndpoints: [{matchLabels: {'k8s:io.cilium.k8s.namespace.labels.team': a}}]}]}"));
    let team = Requirement::equals("io.cilium.k8s.namespace.labels.team", "a");
    assert_eq!(r.peers, Peers::Only(vec![Peer::Endpoints(sel(vec![team.clone()]))]));
    // In a CCNP the "has a namespace" requirement is still added.
    let r = rule(&ccnp("{endpointSelector: {}, ingress: [{fromEndpoints: [{matchLabels: {'io.cilium.k8s.namespace.labels.team': a}}]}]}"));
    let exists = Requirement { key: NAMESPACE_LABEL.into(), operator: Operator::Exists, values: vec![] };
    assert_eq!(r.peers, Peers::Only(vec![Peer::Endpoints(sel(vec![team, exists]))]));
}

#[test]
fn each_rule_records_where_it_is_written() {
    let input = parse(
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p, namespace: prod}\nspec:\n  endpointSelector: {}\n  ingress:\n    - fromEntities: [world]\n      toPorts:\n        - ports: [{port: \"80\", protocol: TCP}]\n        - ports: [{port: \"8080\", protocol: TCP}]\n          rules: {http: [{path: /api}]}\n  egress:\n  - toEntities: [cluster]\n",
    );
    let Body::Policy(p) = &input.objects[0].body else { panic!("a policy") };
    let at: Vec<(String, u32, u32)> = p[0]
        .policy
        .rules
        .iter()
        .zip(&p[0].spans.rules)
        .map(|(rule, spans)| (rule.path.clone(), spans.pos.line, spans.pos.col))
        .collect();
    // The part split off for the L7 rules is cited at its `toPorts` entry.
    let want = [("spec.ingress[0]", 7, 7), ("spec.ingress[0].toPorts[1]", 10, 11), ("spec.egress[0]", 13, 5)];
    assert_eq!(at, want.map(|(path, line, col)| (path.to_string(), line, col)));
}
