//! Lint rules beyond validity (`compiler/src/lint/`): each fires on the
//! case made for it in `tests/lint/` (announced by `# expect: CODE PATH`
//! lines, `-` for no path) and on nothing else there; the example cluster
//! stays clean; annotations, `--allow` and `--deny-warnings` behave; SARIF
//! output has the structure SARIF 2.1.0 requires; GitHub annotations carry
//! the file and line of the object.

use policyc::lint::{run, LintOptions};
use policyc::pipeline::load;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn cases() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(root().join("tests/lint")).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files
}

fn lint_codes(path: &Path, options: &LintOptions) -> BTreeSet<(String, String)> {
    let mut loaded = load(&[path.to_path_buf()]);
    run(&mut loaded, options);
    loaded
        .diagnostics
        .iter()
        .map(|d| (d.code.id.to_string(), d.location.path.clone().unwrap_or_else(|| "-".into())))
        .collect()
}

#[test]
fn each_rule_fires_on_its_case_and_nothing_else_does() {
    let mut seen_codes = BTreeSet::new();
    for case in cases() {
        let text = std::fs::read_to_string(&case).unwrap();
        let expected: BTreeSet<(String, String)> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect:"))
            .map(|l| {
                let mut parts = l.split_whitespace();
                (parts.next().unwrap().to_string(), parts.next().unwrap_or("-").to_string())
            })
            .collect();
        let got = lint_codes(&case, &LintOptions::default());
        assert_eq!(got, expected, "{}", case.display());
        seen_codes.extend(got.into_iter().map(|(code, _)| code));
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

/// The structure SARIF 2.1.0 (OASIS standard, 2020) requires of what
/// policyc emits. The official JSON schema could not be vendored (no
/// network access from this environment), so this checks the spec's
/// requirements directly: sarifLog (§3.13: `version` "2.1.0", `runs`),
/// run (§3.14: `tool`), tool (§3.18: `driver`), toolComponent (§3.19:
/// `name`; `rules` of reportingDescriptors with `id`, §3.49), result
/// (§3.27: `message` with `text`, `ruleId` string, `level` one of none,
/// note, warning, error), location (§3.28) with physicalLocation (§3.29:
/// `artifactLocation.uri`, §3.4) and region (§3.30: 1-based `startLine`,
/// `startColumn`).
fn check_sarif(log: &Value) -> Result<usize, String> {
    let obj = |v: &Value, what: &str| v.as_object().cloned().ok_or(format!("{what} is not an object"));
    let log = obj(log, "sarifLog")?;
    if log.get("version") != Some(&Value::from("2.1.0")) {
        return Err("version must be \"2.1.0\"".into());
    }
    if let Some(schema) = log.get("$schema") {
        schema.as_str().filter(|s| s.starts_with("https://")).ok_or("$schema must be a URI")?;
    }
    let runs = log.get("runs").and_then(Value::as_array).ok_or("runs must be an array")?;
    let mut results_seen = 0;
    for run in runs {
        let run = obj(run, "run")?;
        let driver = obj(run.get("tool").ok_or("run.tool is required")?, "tool")?
            .get("driver")
            .cloned()
            .ok_or("tool.driver is required")?;
        let driver = obj(&driver, "driver")?;
        driver.get("name").and_then(Value::as_str).ok_or("driver.name must be a string")?;
        let mut rule_ids = BTreeSet::new();
        for rule in driver.get("rules").and_then(Value::as_array).cloned().unwrap_or_default() {
            let id = rule.get("id").and_then(Value::as_str).ok_or("reportingDescriptor.id is required")?;
            if !rule_ids.insert(id.to_string()) {
                return Err(format!("rule id `{id}` is not unique"));
            }
        }
        for result in run.get("results").and_then(Value::as_array).cloned().unwrap_or_default() {
            results_seen += 1;
            let result = obj(&result, "result")?;
            let message = obj(result.get("message").ok_or("result.message is required")?, "message")?;
            message.get("text").and_then(Value::as_str).ok_or("message.text must be a string")?;
            let rule_id = result.get("ruleId").and_then(Value::as_str).ok_or("result.ruleId must be a string")?;
            if !rule_ids.contains(rule_id) {
                return Err(format!("ruleId `{rule_id}` is not among driver.rules"));
            }
            let level = result.get("level").and_then(Value::as_str).unwrap_or("warning");
            if !["none", "note", "warning", "error"].contains(&level) {
                return Err(format!("level `{level}` is not a SARIF level"));
            }
            for location in result.get("locations").and_then(Value::as_array).cloned().unwrap_or_default() {
                let physical = location.get("physicalLocation").ok_or("location without physicalLocation")?;
                physical
                    .pointer("/artifactLocation/uri")
                    .and_then(Value::as_str)
                    .ok_or("artifactLocation.uri must be a string")?;
                if let Some(region) = physical.get("region") {
                    for key in ["startLine", "startColumn"] {
                        if let Some(v) = region.get(key) {
                            v.as_u64().filter(|&n| n >= 1).ok_or(format!("region.{key} must be an integer >= 1"))?;
                        }
                    }
                }
            }
        }
    }
    Ok(results_seen)
}

#[test]
fn sarif_output_has_the_structure_sarif_2_1_0_requires() {
    for path in ["examples/broken", "tests/lint"] {
        let (_, out) = policyc(&["lint", path, "--format", "sarif"]);
        let log: Value = serde_json::from_str(&out).unwrap();
        let results = check_sarif(&log).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(results > 0, "{path}: no results");
    }
    // The checker itself rejects what the spec rules out.
    let bad = serde_json::json!({"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "x"}},
        "results": [{"ruleId": "W1", "message": {"text": "m"}}]}]});
    assert!(check_sarif(&bad).is_err());
    assert!(check_sarif(&serde_json::json!({"version": "2.0.0", "runs": []})).is_err());
}

#[test]
fn github_annotations_carry_the_file_and_line_of_the_object() {
    let case = "tests/lint/w0201-unmatched-selector.yaml";
    let (_, out) = policyc(&["lint", case, "--format", "github"]);
    let text = std::fs::read_to_string(root().join(case)).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let annotations: Vec<&str> = out.lines().collect();
    assert_eq!(annotations.len(), 2, "{out}");
    for (annotation, object) in annotations.iter().zip(["typo-subject", "typo-peer"]) {
        let rest = annotation.strip_prefix("::warning ").unwrap_or_else(|| panic!("{annotation}"));
        let (props, message) = rest.split_once("::").unwrap();
        let prop = |key: &str| {
            props.split(',').find_map(|p| p.strip_prefix(&format!("{key}="))).unwrap_or_else(|| panic!("{props}"))
        };
        assert_eq!(prop("file"), case);
        let line: usize = prop("line").parse().unwrap();
        // The annotated line starts the object's document, which names it.
        let document: Vec<&str> = lines[line - 1..].iter().take_while(|l| **l != "---").copied().collect();
        assert!(document[0].starts_with("apiVersion:"), "line {line}: {}", document[0]);
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
    use policyc::lint::shadow::{shadowed_rules, Shadowing};
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
        let mut out: Vec<Party> = (0..cluster.endpoints.len()).map(Party::Endpoint).collect();
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
        for (subject, _) in cluster.endpoints.iter().enumerate().filter(|(_, e)| selector.matches(&e.labels)) {
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
                let found = shadowed_rules(policy);
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
            let found: Vec<_> = cluster.policies.iter().flat_map(shadowed_rules).collect();
            cases_with_findings += usize::from(!found.is_empty());
            by_deny += found.iter().filter(|f| matches!(f.by, Shadowing::ByDeny(_))).count();
            redundant += found.iter().filter(|f| matches!(f.by, Shadowing::Redundant { .. })).count();
        }
        assert!(cases_with_findings >= 60, "{cases_with_findings} of 200 cases have findings");
        assert!(by_deny >= 20 && redundant >= 20, "{by_deny} shadowed by a deny, {redundant} redundant");
    }
}
