//! Lint rules beyond validity (`compiler/src/lint/`): each fires on the
//! case made for it in `tests/lint/` (announced by `# expect: CODE PATH
//! LINE:COLUMN` lines: the field the warning is about and where it is
//! written) and on nothing else there; the example cluster stays clean;
//! annotations, `--allow` and `--deny-warnings` behave; every output
//! format of the cases is pinned in `tests/lint/formats/`; GitHub
//! annotations carry the file and line of the field. SARIF is checked
//! against its schema in `sarif.rs`.

use policyc::lint::{run, LintOptions};
use policyc::pipeline::load;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn cases() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("tests/lint"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// Code, field path and `line:column` of every diagnostic.
fn lint_codes(path: &Path, options: &LintOptions) -> BTreeSet<(String, String, String)> {
    let mut loaded = load(&[path.to_path_buf()]);
    run(&mut loaded, options);
    loaded
        .diagnostics
        .iter()
        .map(|d| {
            let pos = d.location.pos.map_or("-".into(), |p| format!("{}:{}", p.line, p.col));
            (d.code.id.to_string(), d.location.path.clone().unwrap_or_else(|| "-".into()), pos)
        })
        .collect()
}

#[test]
fn each_rule_fires_on_its_case_and_nothing_else_does() {
    let mut seen_codes = BTreeSet::new();
    for case in cases() {
        let text = std::fs::read_to_string(&case).unwrap();
        let expected: BTreeSet<(String, String, String)> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect:"))
            .map(|l| {
                let mut parts = l.split_whitespace().map(str::to_string);
                let mut next = || parts.next().unwrap_or_else(|| panic!("`# expect: CODE PATH LINE:COLUMN`: {l}"));
                (next(), next(), next())
            })
            .collect();
        let got = lint_codes(&case, &LintOptions::default());
        assert_eq!(got, expected, "{}", case.display());
        seen_codes.extend(got.into_iter().map(|(code, _, _)| code));
    }
    let lint_codes: BTreeSet<String> =
        policyc::diag::codes::ALL.iter().filter(|c| c.id.starts_with("W02")).map(|c| c.id.to_string()).collect();
    assert_eq!(seen_codes, lint_codes, "every lint code needs a case in tests/lint/");
}

#[test]
fn example_stays_clean() {
    let got = lint_codes(&root().join("examples/policies"), &LintOptions::default());
    assert!(got.is_empty(), "{got:?}");
}

#[test]
fn allow_silences_a_code_everywhere() {
    let case = root().join("tests/lint/w0201-unmatched-selector.yaml");
    let options = LintOptions { allow: vec!["W0201".into()], deny_warnings: false };
    assert!(lint_codes(&case, &options).is_empty());
    assert!(LintOptions { allow: vec!["E0101".into()], deny_warnings: false }.check().is_err());
    assert!(LintOptions { allow: vec!["W9999".into()], deny_warnings: false }.check().is_err());
}

fn policyc(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_policyc")).args(args).current_dir(root()).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8(out.stdout).unwrap())
}

#[test]
fn deny_warnings_fails_and_allow_or_usage_errors_exit_as_documented() {
    let case = "tests/lint/w0205-except-excludes-all.yaml";
    assert_eq!(policyc(&["lint", case]).0, 0);
    assert_eq!(policyc(&["lint", case, "--deny-warnings"]).0, 1);
    assert_eq!(policyc(&["lint", case, "--deny-warnings", "--allow", "W0205"]).0, 0);
    assert_eq!(policyc(&["lint", case, "--allow", "W0250"]).0, 2);
    assert_eq!(policyc(&["compile", case, "--dry-run", "--deny-warnings"]).0, 1);
    assert_eq!(policyc(&["compile", case, "--dry-run"]).0, 0);
    assert_eq!(policyc(&["lint", "tests/lint/silenced.yaml", "--deny-warnings"]).0, 0);
}

/// Every output format, pinned: the human text with its snippets and
/// carets, JSON, SARIF and GitHub workflow commands, of `policyc lint` on
/// each case of `tests/lint/` (one at a time: they share object names) and
/// on the broken examples.
#[test]
fn every_output_format_is_pinned() {
    let mut inputs: Vec<String> =
        cases().iter().map(|c| c.strip_prefix(root()).unwrap().display().to_string()).collect();
    inputs.push("examples/broken".to_string());
    for format in ["human", "json", "sarif", "github"] {
        let mut text = String::new();
        for input in &inputs {
            let out = Command::new(env!("CARGO_BIN_EXE_policyc"))
                .args(["lint", input, "--format", format])
                .current_dir(root())
                .output()
                .unwrap();
            // Human text goes to stderr, the others to stdout, for tools.
            let out = String::from_utf8(if format == "human" { out.stderr } else { out.stdout }).unwrap();
            if format == "sarif" && input != "examples/broken" {
                // The rest of the log is the same each time: pinned once,
                // with the broken examples.
                let log: serde_json::Value = serde_json::from_str(&out).unwrap();
                let results = serde_json::to_string_pretty(&log["runs"][0]["results"]).unwrap();
                text.push_str(&format!("## policyc lint {input} --format {format}: runs[0].results\n{results}\n"));
            } else {
                text.push_str(&format!("## policyc lint {input} --format {format}\n{out}"));
            }
        }
        insta::with_settings!({
            snapshot_path => root().join("tests/lint/formats"),
            prepend_module_to_snapshot => false,
            omit_expression => true,
            description => format!("policyc lint --format {format}, each case of tests/lint/ and examples/broken"),
        }, {
            insta::assert_snapshot!(format, text);
        });
    }
}

#[test]
fn github_annotations_carry_the_file_and_line_of_the_field() {
    let case = "tests/lint/w0201-unmatched-selector.yaml";
    let (_, out) = policyc(&["lint", case, "--format", "github"]);
    let text = std::fs::read_to_string(root().join(case)).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let annotations: Vec<&str> = out.lines().collect();
    // Each typo'd selector: the subject's field, a peer entry, a peer after
    // an `ipBlock` peer, a Cilium peer of a rule with L7 rules, and a
    // subject inside a `List`.
    let expected = [
        ("typo-subject", "podSelector: {matchLabels: {app: wbe}}"),
        ("typo-peer", "{podSelector: {matchLabels: {app: fronted}}}"),
        ("typo-second-peer", "podSelector: {matchLabels: {app: fronted}}"),
        ("typo-l7-peer", "matchLabels: {app: fronted}"),
        ("typo-in-list", "podSelector:"),
    ];
    assert_eq!(annotations.len(), expected.len(), "{out}");
    for (annotation, (object, field)) in annotations.iter().zip(expected) {
        let rest = annotation.strip_prefix("::warning ").unwrap_or_else(|| panic!("{annotation}"));
        let (props, message) = rest.split_once("::").unwrap();
        let prop = |key: &str| {
            props.split(',').find_map(|p| p.strip_prefix(&format!("{key}="))).unwrap_or_else(|| panic!("{props}"))
        };
        assert_eq!(prop("file"), case);
        let line: usize = prop("line").parse().unwrap();
        let col: usize = prop("col").parse().unwrap();
        // Line and column are where the field starts: its key, or the
        // list entry.
        let at = &lines[line - 1][col - 1..];
        assert!(at.starts_with(field), "{object}: line {line}, column {col}: {at}");
        // The document above it names the object.
        let document: Vec<&str> = lines[..line].iter().rev().take_while(|l| **l != "---").copied().collect();
        assert!(document.iter().any(|l| l.contains(&format!("name: {object}"))), "line {line}: {document:?}");
        assert!(message.contains(object), "{message}");
    }
}

#[path = "../../ir/tests/support/random_cluster.rs"]
mod random_cluster;

/// W0207 is never wrong: on random clusters and policies whose rules are
/// built as variations of each other (so that some cover others), removing
/// a rule the lint reports, or all of them at once, changes no decision of
/// the reference evaluator.
mod shadowed_rules {
    use super::random_cluster::*;
    use policyc::lint::shadow::{shadowed_rules_in, Shadowing};
    use policyc_ir::cluster::Cluster;
    use policyc_ir::eval::{decide, Decision, Party};
    use policyc_ir::labels::NAMESPACE_LABEL;
    use policyc_ir::policy::{Action, Entity, Peer, Peers, Policy, PolicyKind, PortMatch, PortSpec, Rule, Subject};
    use policyc_ir::protocol::{PortRange, Protocol};
    use policyc_ir::selector::{LabelSelector, Operator, Requirement};
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    /// A change to a copy of a rule, mostly narrowing or widening it.
    #[derive(Clone, Debug)]
    enum Change {
        AddRequirement(usize, Requirement),
        DropRequirement(usize),
        AddPeer(Peer),
        DropPeer(usize),
        AnyPeer,
        AddExcept(usize, &'static str),
        ReplaceCidr(usize, Peer),
        AddPort(PortMatch),
        DropPort(usize),
        ShrinkRange(usize, u16, u16),
        ProtocolTcp(usize),
        AllPorts,
        NoL7,
    }

    fn change() -> impl Strategy<Value = Change> {
        prop_oneof![
            5 => (0usize..4, more_requirement()).prop_map(|(i, r)| Change::AddRequirement(i, r)),
            2 => (0usize..4).prop_map(Change::DropRequirement),
            1 => peer().prop_map(Change::AddPeer),
            2 => (0usize..4).prop_map(Change::DropPeer),
            1 => Just(Change::AnyPeer),
            1 => (0usize..4, proptest::sample::select(vec!["192.0.2.0/26", "10.1.0.0/16", "2001:db8::/48"]))
                .prop_map(|(i, e)| Change::AddExcept(i, e)),
            2 => (0usize..4, cidr_peer()).prop_map(|(i, p)| Change::ReplaceCidr(i, p)),
            1 => port_match().prop_map(Change::AddPort),
            2 => (0usize..4).prop_map(Change::DropPort),
            2 => (0usize..4, 0u16..40, 0u16..40).prop_map(|(i, a, b)| Change::ShrinkRange(i, a, b)),
            1 => (0usize..4).prop_map(Change::ProtocolTcp),
            1 => Just(Change::AllPorts),
            2 => Just(Change::NoL7),
        ]
    }

    /// The selector of the `i`-th peer (modulo their number), if that is a
    /// selector.
    fn endpoint_selector(rule: &mut Rule, i: usize) -> Option<&mut LabelSelector> {
        let Peers::Only(peers) = &mut rule.peers else { return None };
        let n = peers.len();
        match peers.get_mut(i.checked_rem(n)?)? {
            Peer::Endpoints(selector) => Some(selector),
            _ => None,
        }
    }

    /// The shared generator's requirements, and more operators on the same
    /// keys, so that one requirement can imply another.
    fn more_requirement() -> impl Strategy<Value = Requirement> {
        let req = |key: &str, operator, values: &[&str]| Requirement {
            key: key.into(),
            operator,
            values: values.iter().map(|v| v.to_string()).collect(),
        };
        prop_oneof![
            1 => requirement(),
            1 => proptest::sample::select(vec![
                req("app", Operator::Exists, &[]),
                req("app", Operator::DoesNotExist, &[]),
                req("app", Operator::NotIn, &["db", "web"]),
                req("app", Operator::In, &["api", "web", "db"]),
                req("tier", Operator::In, &["fe"]),
                req("tier", Operator::NotIn, &["fe"]),
                req(NAMESPACE_LABEL, Operator::Exists, &[]),
            ]),
        ]
    }

    fn apply(rule: &mut Rule, change: &Change) {
        let pick = |n: usize, i: usize| (n > 0).then(|| i % n);
        match change {
            Change::AddRequirement(i, r) => {
                if let Some(selector) = endpoint_selector(rule, *i) {
                    selector.requirements.push(r.clone());
                }
            }
            Change::DropRequirement(i) => {
                if let Some(selector) = endpoint_selector(rule, *i) {
                    if let Some(j) = pick(selector.requirements.len(), *i) {
                        selector.requirements.remove(j);
                    }
                }
            }
            Change::AddPeer(p) => match &mut rule.peers {
                Peers::Only(peers) => peers.push(p.clone()),
                Peers::Any => {}
            },
            Change::DropPeer(i) => {
                if let Peers::Only(peers) = &mut rule.peers {
                    if let Some(k) = pick(peers.len(), *i) {
                        peers.remove(k);
                    }
                }
            }
            Change::AnyPeer => rule.peers = Peers::Any,
            Change::AddExcept(i, e) => {
                if let Peers::Only(peers) = &mut rule.peers {
                    if let Some(k) = pick(peers.len(), *i) {
                        if let Peer::Cidr { cidr: c, except } = &mut peers[k] {
                            let e = cidr(e);
                            // Keep the model valid: an except lies inside its block.
                            if c.covers(e) && *c != e {
                                except.push(e);
                            }
                        }
                    }
                }
            }
            Change::ReplaceCidr(i, p) => {
                if let Peers::Only(peers) = &mut rule.peers {
                    if let Some(k) = pick(peers.len(), *i) {
                        if matches!(peers[k], Peer::Cidr { .. }) {
                            peers[k] = p.clone();
                        }
                    }
                }
            }
            Change::AddPort(m) => {
                if let Some(ports) = &mut rule.ports {
                    ports.push(m.clone());
                }
            }
            Change::DropPort(i) => {
                if let Some(ports) = &mut rule.ports {
                    if let Some(k) = pick(ports.len(), *i) {
                        ports.remove(k);
                    }
                }
            }
            Change::ShrinkRange(i, a, b) => {
                if let Some(ports) = &mut rule.ports {
                    if let Some(k) = pick(ports.len(), *i) {
                        let range = match ports[k].ports {
                            PortSpec::All => PortRange::ALL,
                            PortSpec::Range(r) => r,
                            PortSpec::Named(_) => return,
                        };
                        let lo = range.lo.saturating_add(*a);
                        let hi = range.hi.saturating_sub(*b);
                        if lo <= hi {
                            ports[k].ports = PortSpec::Range(PortRange { lo, hi });
                        }
                    }
                }
            }
            Change::ProtocolTcp(i) => {
                if let Some(ports) = &mut rule.ports {
                    if let Some(k) = pick(ports.len(), *i) {
                        ports[k].protocol = Some(Protocol::Tcp);
                    }
                }
            }
            Change::AllPorts => rule.ports = None,
            Change::NoL7 => rule.l7 = None,
        }
    }

    /// Rules of which many are variations of others.
    fn related_rules() -> impl Strategy<Value = Vec<Rule>> {
        (
            proptest::collection::vec(rule(), 1..4),
            proptest::collection::vec(
                (any::<proptest::sample::Index>(), proptest::collection::vec(change(), 0..3), 0u8..4),
                1..6,
            ),
        )
            .prop_map(|(mut rules, variations)| {
                for (base, changes, action) in variations {
                    let mut rule = base.get(&rules).clone();
                    for change in &changes {
                        apply(&mut rule, change);
                    }
                    rule.action = if action == 0 { Action::Deny } else { Action::Allow };
                    if rule.action == Action::Deny {
                        rule.l7 = None;
                    }
                    rules.push(rule);
                }
                rules
            })
    }

    fn shadowing_policy() -> impl Strategy<Value = Policy> {
        (policy(), related_rules(), any::<proptest::sample::Index>()).prop_map(|(mut policy, mut rules, at)| {
            if policy.origin.kind == PolicyKind::NetworkPolicy {
                rules.retain(|r| r.action == Action::Allow);
                for r in &mut rules {
                    r.l7 = None;
                }
            }
            // Shuffle by rotation, so that covering rules come before and after.
            if !rules.is_empty() {
                let n = at.index(rules.len());
                rules.rotate_left(n);
            }
            for (i, r) in rules.iter_mut().enumerate() {
                r.path = format!("spec.{}[{i}]", r.direction);
            }
            policy.rules = rules;
            policy
        })
    }

    fn scenario() -> impl Strategy<Value = Cluster> {
        (
            2usize..=3,
            [any::<bool>(), any::<bool>(), any::<bool>()],
            proptest::collection::vec(pod_spec(), 2..=6),
            app_ports(),
            proptest::collection::vec(shadowing_policy(), 1..3),
            proptest::collection::vec(policy(), 0..2),
        )
            .prop_map(|(ns_count, teams, pods, ports, mut policies, others)| {
                let mut cluster = build_cluster(ns_count, &teams, &pods, &ports);
                policies.extend(others);
                cluster.policies = policies;
                cluster
            })
    }

    /// The peers to probe: every endpoint, addresses around the CIDR
    /// options of the generators, and every reserved peer.
    fn parties(cluster: &Cluster) -> Vec<Party> {
        let mut out: Vec<Party> = cluster.endpoints_with_ids().map(|(i, _)| Party::Endpoint(i)).collect();
        let external = ["192.0.2.1", "192.0.2.70", "192.0.2.130", "192.0.3.1", "198.51.100.7", "203.0.113.70"];
        let more = ["203.0.113.1", "10.1.2.3", "10.1.200.1", "10.200.99.99", "8.8.8.8"];
        let v6 = ["2001:db8::1", "2001:db8:1::1", "2001:db8:2::9", "2606:4700::1"];
        out.extend(external.iter().chain(&more).chain(&v6).map(|a| Party::External(ip(a))));
        out.extend(
            Entity::ALL
                .into_iter()
                .filter(|e| !matches!(e, Entity::All | Entity::World | Entity::Cluster | Entity::None))
                .map(Party::Reserved),
        );
        out
    }

    /// Ports on both sides of every range bound in `policy`, the named
    /// port numbers of the generators, and the extremes.
    fn port_cuts(policy: &Policy) -> Vec<u16> {
        let mut out = vec![0, 1, 53, 80, 1000, 8080, 8443, 65534, 65535];
        for m in policy.rules.iter().flat_map(|r| r.ports.iter().flatten()) {
            if let PortSpec::Range(r) = m.ports {
                out.extend([r.lo.saturating_sub(1), r.lo, r.hi, r.hi.saturating_add(1)]);
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Every decision of the endpoints `policy` selects, by kind (which
    /// rules decided shifts with the removal, the outcome must not).
    fn decisions(cluster: &Cluster, p: usize, ports: &[u16]) -> Vec<std::mem::Discriminant<Decision>> {
        let Subject::Endpoints(selector) = &cluster.policies[p].subject else { return Vec::new() };
        let parties = parties(cluster);
        let mut out = Vec::new();
        for (subject, _) in cluster.endpoints_with_ids().filter(|(_, e)| selector.matches(&e.labels)) {
            for &peer in &parties {
                for dir in policyc_ir::protocol::Direction::BOTH {
                    for protocol in Protocol::ALL {
                        for &port in ports {
                            let decision = decide(cluster, subject, peer, dir, protocol, port);
                            out.push(std::mem::discriminant(&decision));
                        }
                    }
                }
            }
        }
        out
    }

    fn without(cluster: &Cluster, p: usize, rules: &[usize]) -> Cluster {
        let mut out = cluster.clone();
        let mut rules = rules.to_vec();
        rules.sort_unstable();
        for &r in rules.iter().rev() {
            out.policies[p].rules.remove(r);
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        #[test]
        fn removing_a_reported_rule_changes_no_decision(cluster in scenario()) {
            for (p, policy) in cluster.policies.iter().enumerate() {
                let found = shadowed_rules_in(&cluster, policy);
                if found.is_empty() {
                    continue;
                }
                let ports = port_cuts(policy);
                let before = decisions(&cluster, p, &ports);
                for f in &found {
                    let after = decisions(&without(&cluster, p, &[f.rule]), p, &ports);
                    prop_assert!(before == after, "removing rule {} ({:?}) of {:#?}", f.rule, f.by, policy);
                }
                let all: Vec<usize> = found.iter().map(|f| f.rule).collect();
                let after = decisions(&without(&cluster, p, &all), p, &ports);
                prop_assert!(before == after, "removing rules {:?} of {:#?}", all, policy);
            }
        }
    }

    /// The property above means something only if the lint fires often on
    /// the generated policies, both ways.
    #[test]
    fn the_generator_makes_shadowed_rules_of_both_kinds() {
        let mut runner = TestRunner::deterministic();
        let strategy = scenario();
        let (mut cases_with_findings, mut by_deny, mut redundant) = (0, 0, 0);
        for _ in 0..200 {
            let cluster = strategy.new_tree(&mut runner).unwrap().current();
            let found: Vec<_> = cluster.policies.iter().flat_map(|p| shadowed_rules_in(&cluster, p)).collect();
            cases_with_findings += usize::from(!found.is_empty());
            by_deny += found.iter().filter(|f| matches!(f.by, Shadowing::ByDeny(_))).count();
            redundant += found.iter().filter(|f| matches!(f.by, Shadowing::Redundant { .. })).count();
        }
        assert!(cases_with_findings >= 60, "{cases_with_findings} of 200 cases have findings");
        assert!(by_deny >= 20 && redundant >= 20, "{by_deny} shadowed by a deny, {redundant} redundant");
    }
}
