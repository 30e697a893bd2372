//! `policyc diff`: one case per kind of change in `tests/diff/<case>/`,
//! each an `old/` and a `new/` tree (or an `overlay/` of files added to
//! or replacing files of the example cluster), compared with the
//! rendering recorded in `expected.snap` (and `markdown.snap`,
//! `json.snap` for the cases that pin those formats). The command line is
//! tested for its exit codes, its error paths and `git:REV:PATH` inputs
//! read from a repository made on the spot.

use policyc::analysis::diff::connectivity::{Change, Peer, Verdict};
use policyc::analysis::diff::identities::IdentityChange;
use policyc::analysis::diff::render::{human, markdown, to_json, Sides};
use policyc::analysis::diff::{diff, Diff};
use policyc::pipeline::{load, Loaded};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().expect("repository root")
}

fn case_dir(name: &str) -> PathBuf {
    root().join("tests/diff").join(name)
}

/// Cases whose Markdown and JSON renderings are pinned too.
const ALL_FORMATS: &[&str] = &["rule-added", "example-frontend-to-db", "l7-rule-added", "service-changes"];

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        // Tests run in parallel and may load the same case: one directory each.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("policyc-diff-{}-{n}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn copy_files(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
        }
    }
}

/// A case loaded: both trees, the diff, and how to make its paths relative.
struct Case {
    old: Loaded,
    new: Loaded,
    diff: Diff,
    replacements: Vec<(String, String)>,
    sides: (String, String),
    _scratch: Option<Scratch>,
}

fn load_case(name: &str) -> Case {
    let dir = case_dir(name);
    let (old_dir, new_dir, scratch, sides) = if dir.join("overlay").is_dir() {
        let scratch = Scratch::new(name);
        let new_dir = scratch.0.join("new");
        copy_files(&root().join("examples/policies"), &new_dir);
        copy_files(&dir.join("overlay"), &new_dir);
        let sides = ("examples/policies".to_string(), "examples/policies + overlay".to_string());
        (root().join("examples/policies"), new_dir, Some(scratch), sides)
    } else {
        (dir.join("old"), dir.join("new"), None, ("old".to_string(), "new".to_string()))
    };
    let (old, new) = (load(std::slice::from_ref(&old_dir)), load(std::slice::from_ref(&new_dir)));
    for (side, l) in [("old", &old), ("new", &new)] {
        assert!(!l.has_errors(), "{name}: the {side} tree has errors: {:#?}", l.diagnostics);
    }
    let diff = diff(&old, &new).unwrap_or_else(|e| panic!("{name}: {e}"));
    let replacements = vec![
        (format!("{}/", old_dir.display()), format!("{}/", sides.0.split(' ').next().unwrap())),
        (format!("{}/", new_dir.display()), "new/".to_string()),
    ];
    Case { old, new, diff, replacements, sides, _scratch: scratch }
}

impl Case {
    fn relative(&self, text: String) -> String {
        self.replacements.iter().fold(text, |t, (from, to)| t.replace(from, to))
    }

    fn sides(&self) -> Sides<'_> {
        Sides { old: &self.sides.0, new: &self.sides.1 }
    }
}

fn cases() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root().join("tests/diff"))
        .expect("tests/diff exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    names.sort();
    names
}

fn snapshot(name: &str, snap: &str, text: &str) {
    insta::with_settings!({
        snapshot_path => case_dir(name),
        prepend_module_to_snapshot => false,
        omit_expression => true,
        description => format!("policyc diff case {name}"),
    }, {
        insta::assert_snapshot!(snap.to_string(), text);
    });
}

#[test]
fn every_case_matches_its_snapshots() {
    let names = cases();
    assert!(names.len() >= 7, "expected at least 7 diff cases, found {names:?}");
    for name in names {
        let case = load_case(&name);
        assert!(!case.diff.is_empty(), "{name}: the trees differ, the diff must not be empty");
        let text = case.relative(human(&case.diff, case.sides(), false));
        assert!(!text.contains('\x1b'), "{name}: colour without a terminal");
        snapshot(&name, "expected", &text);
        if ALL_FORMATS.contains(&name.as_str()) {
            snapshot(&name, "markdown", &case.relative(markdown(&case.diff, case.sides())));
            let json = serde_json::to_string_pretty(&to_json(&case.diff, case.sides())).unwrap() + "\n";
            snapshot(&name, "json", &case.relative(json));
        }
    }
}

#[test]
fn a_tree_against_itself_has_no_changes() {
    for name in ["rule-added", "namespace-label-change", "service-changes"] {
        let case = load_case(name);
        let same = diff(&case.old, &case.old).unwrap();
        assert!(same.is_empty(), "{name}: {same:#?}");
        let same = diff(&case.new, &case.new).unwrap();
        assert!(same.is_empty(), "{name}: {same:#?}");
    }
}

#[test]
fn diffing_is_deterministic() {
    for name in ["port-widened", "unrelated-namespace"] {
        assert_eq!(load_case(name).diff, load_case(name).diff, "{name}");
    }
}

/// The one connection a case changes: (change, src, dst, ports).
fn only_change(case: &Case) -> (Change, String, String, Vec<String>) {
    assert_eq!(case.diff.connectivity.len(), 1, "{:#?}", case.diff.connectivity);
    let c = &case.diff.connectivity[0];
    (c.change, c.src.name(), c.dst.name(), c.port_items())
}

#[test]
fn each_kind_of_change_is_named_and_attributed() {
    let s = |x: &str| x.to_string();
    let case = load_case("rule-added");
    assert_eq!(only_change(&case), (Change::Opened, s("ops/toolbox"), s("shop/db"), vec![s("TCP/5432")]));
    let cause = &case.diff.connectivity[0].causes[0];
    assert_eq!((cause.now.verdict, cause.was.verdict), (Verdict::Allow, Verdict::DefaultDeny));
    assert_eq!(cause.now.by[0].rule.as_deref(), Some("spec.ingress[0]"));

    let case = load_case("port-widened");
    assert_eq!(only_change(&case), (Change::Opened, s("shop/web"), s("shop/db"), vec![s("TCP/5433-5440")]));

    let case = load_case("deny-added");
    assert_eq!(only_change(&case), (Change::Closed, s("shop/web"), s("shop/db"), vec![s("TCP/5432")]));
    let cause = &case.diff.connectivity[0].causes[0];
    assert_eq!(cause.now.verdict, Verdict::Deny);
    assert_eq!(cause.now.by[0].policy, "CiliumNetworkPolicy shop/db-deny-web");
    assert!(cause.now.by[0].file.as_deref().unwrap().ends_with("new/20-deny-web.yaml"));
    // Cited at the deny rule's own line, not the object's.
    assert_eq!((cause.now.by[0].line, cause.now.by[0].rule_line), (Some(2), Some(12)));

    let case = load_case("selector-typo");
    assert_eq!(only_change(&case), (Change::Closed, s("shop/web"), s("shop/db"), vec![s("TCP/5432")]));
    assert_eq!(case.diff.connectivity[0].causes[0].now.verdict, Verdict::DefaultDeny);
    assert!(case.diff.identities.is_empty());

    let case = load_case("namespace-label-change");
    assert_eq!(only_change(&case), (Change::Closed, s("ops/toolbox"), s("shop/db"), vec![s("TCP/5432")]));
    // The toolbox's label set changed: its old identity goes, a new one comes.
    let kinds: Vec<&str> = case
        .diff
        .identities
        .iter()
        .map(|c| match c {
            IdentityChange::Added(_) => "added",
            IdentityChange::Removed(_) => "removed",
            IdentityChange::Renumbered { .. } => "renumbered",
        })
        .collect();
    assert_eq!(kinds, ["removed", "added"]);

    // Done criterion of the issue: on the example plus a modified copy, the
    // diff names exactly the connection that changed and the policies responsible.
    let case = load_case("example-frontend-to-db");
    assert_eq!(
        only_change(&case),
        (Change::Opened, s("shop/frontend-6d8f9c7b5-x2kqp"), s("shop/db-0"), vec![s("TCP/5432")])
    );
    let by: Vec<String> =
        case.diff.connectivity[0].causes.iter().map(|c| format!("{} {}", c.direction, c.now.by[0].policy)).collect();
    assert_eq!(by, ["egress NetworkPolicy shop/frontend-to-db", "ingress NetworkPolicy shop/db-from-frontend"]);
}

#[test]
fn an_unrelated_namespace_renumbers_nothing_and_leaves_existing_maps_alone() {
    let case = load_case("unrelated-namespace");
    let d = &case.diff;
    assert_eq!(d.endpoints_added, ["billing/invoicer"]);
    assert!(d.endpoints_removed.is_empty());
    assert_eq!(d.identities.len(), 1, "{:#?}", d.identities);
    let IdentityChange::Added(invoicer) = &d.identities[0] else { panic!("{:#?}", d.identities) };
    assert!(invoicer.labels.contains("app=invoicer"));
    for m in &d.maps {
        assert!(m.removed.is_empty(), "an existing entry changed: {m:#?}");
        if m.file.starts_with("maps/policy/") {
            // Its own policy map (the built-in allow-localhost entry): its
            // lines name peers, not the pod.
            let own = format!("maps/policy/{}.txt", invoicer.identity);
            assert_eq!(m.file, own, "an existing endpoint's policy changed");
            continue;
        }
        for line in &m.added {
            assert!(line.contains("billing/invoicer"), "an entry not about the new pod: {line}");
        }
    }
    // Every opened connection involves the new pod.
    for c in &d.connectivity {
        let new_pod = Peer::Endpoint("billing/invoicer".into());
        assert!(c.src == new_pod || c.dst == new_pod, "{c:#?}");
    }
}

#[test]
fn a_shared_policy_map_names_the_endpoints_using_it() {
    let case = load_case("shared-policy-map");
    let policy_maps: Vec<(&str, Vec<&str>)> = case
        .diff
        .maps
        .iter()
        .filter(|m| m.file.starts_with("maps/policy/"))
        .map(|m| (m.node.as_str(), m.endpoints.iter().map(String::as_str).collect()))
        .collect();
    let on_a = ["shop/db-0", "shop/db-1", "shop/db-2", "shop/db-3", "shop/db-4", "shop/db-5"];
    assert_eq!(policy_maps, [("node-a", on_a.to_vec()), ("node-b", vec!["shop/db-6"])]);
    // Maps that are not an endpoint's policy name no endpoints.
    assert!(case.diff.maps.iter().filter(|m| !m.file.starts_with("maps/policy/")).all(|m| m.endpoints.is_empty()));
    let text = human(&case.diff, case.sides(), false);
    assert!(text.contains("(used by shop/db-0, shop/db-1, shop/db-2, shop/db-3, shop/db-4 and 1 more)"), "{text}");
}

fn policyc(cwd: &Path, args: &[&str]) -> (u8, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_policyc")).current_dir(cwd).args(args).output().expect("run policyc");
    let code = out.status.code().expect("exit code") as u8;
    (code, String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

#[test]
fn exit_codes() {
    let dir = case_dir("rule-added");
    let (code, out, _) = policyc(&dir, &["diff", "old", "new"]);
    assert_eq!(code, 0, "changes without --exit-code exit 0");
    assert!(out.contains("+ ops/toolbox -> shop/db  TCP/5432") && !out.contains('\x1b'), "{out}");
    assert_eq!(policyc(&dir, &["diff", "--exit-code", "old", "new"]).0, 1);
    assert_eq!(policyc(&dir, &["diff", "--exit-code", "old", "old"]).0, 0);

    // A broken tree: diagnostics as lint shows them, exit 1.
    let broken = root().join("examples/broken");
    let (code, out, err) = policyc(&dir, &["diff", "old", broken.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("has errors") && err.contains("error[E0002]"), "{err}");

    // Usage errors exit 2.
    let (code, _, err) = policyc(&dir, &["diff", "git::policies", "new"]);
    assert_eq!(code, 2);
    assert!(err.contains("names no revision"), "{err}");
    assert_eq!(policyc(&dir, &["diff", "old"]).0, 2);
    // Sides are OLD NEW or --old/--new, not a mix.
    for args in [&["diff", "--old", "old"][..], &["diff", "old", "--new", "new"], &["diff", "--new", "new"]] {
        assert_eq!(policyc(&dir, args).0, 2, "{args:?}");
    }
}

#[test]
fn several_paths_per_side() {
    let dir = case_dir("rule-added");
    let (code, whole, err) = policyc(&dir, &["diff", "--format", "json", "old", "new"]);
    assert_eq!(code, 0, "{err}");
    // The same trees, each given as two files (the cluster file is shared).
    let args = ["diff", "--format", "json", "--old", "old/00-cluster.yaml", "old/10-db-ingress.yaml"];
    let (code, split, err) =
        policyc(&dir, &[&args[..], &["--new", "old/00-cluster.yaml", "new/10-db-ingress.yaml"]].concat());
    assert_eq!(code, 0, "{err}");
    let (mut whole, mut split): (serde_json::Value, serde_json::Value) =
        (serde_json::from_str(&whole).unwrap(), serde_json::from_str(&split).unwrap());
    assert_eq!(split["old"], "old/00-cluster.yaml old/10-db-ingress.yaml");
    assert_eq!(split["new"], "old/00-cluster.yaml new/10-db-ingress.yaml");
    for v in [&mut whole, &mut split] {
        v["old"] = serde_json::Value::Null;
        v["new"] = serde_json::Value::Null;
    }
    assert_eq!(whole, split);
    // A path given on one side only is a change of its own: `--new` adds a
    // second cluster file to the new tree, and its duplicate objects are
    // errors of that tree.
    let (code, _, err) = policyc(&dir, &["diff", "--old", "old", "--new", "new", "old/00-cluster.yaml"]);
    assert_eq!(code, 1);
    assert!(err.contains("the tree `new old/00-cluster.yaml` has errors"), "{err}");
}

fn git(cwd: &Path, args: &[&str]) {
    let status = Command::new("git")
        .current_dir(cwd)
        .args(["-c", "user.name=policyc test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false"])
        .args(args)
        .status()
        .expect("git must be installed for the git: input tests");
    assert!(status.success(), "git {args:?} failed");
}

#[test]
fn git_revision_against_the_work_tree() {
    let scratch = Scratch::new("git");
    let repo = &scratch.0;
    git(repo, &["init", "-q"]);
    copy_files(&case_dir("rule-added/old"), &repo.join("policies"));
    std::fs::write(repo.join("policies/.hidden.yaml"), "not: [valid").unwrap();
    std::fs::write(repo.join("policies/notes.txt"), "not a manifest").unwrap();
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", "policies"]);
    copy_files(&case_dir("rule-added/new"), &repo.join("policies"));

    let (code, out, err) = policyc(repo, &["diff", "--format", "json", "--exit-code", "git:HEAD:policies", "policies"]);
    assert_eq!(code, 1, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON output");
    assert_eq!(v["changed"], true);
    assert_eq!(v["old"], "git:HEAD:policies");
    let connections = v["connections"].as_array().unwrap();
    assert_eq!(connections.len(), 1, "{out}");
    assert_eq!(connections[0]["src"], "ops/toolbox");
    assert_eq!(connections[0]["dst"], "shop/db");
    assert_eq!(connections[0]["ports"], serde_json::json!(["TCP/5432"]));
    let cause = &connections[0]["causes"][0];
    assert_eq!(cause["was"]["by"][0]["file"], "git:HEAD:policies/10-db-ingress.yaml");
    assert_eq!(cause["now"]["by"][0]["file"], "policies/10-db-ingress.yaml");

    // The committed tree against itself, and from a subdirectory (paths are
    // relative to the current directory, as git reads them).
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", "widen"]);
    let (code, out, _) = policyc(repo, &["diff", "--exit-code", "git:HEAD:policies", "policies"]);
    assert_eq!((code, out.lines().nth(1)), (0, Some("no changes")));
    let (code, out, err) = policyc(&repo.join("policies"), &["diff", "--exit-code", "git:HEAD~1:.", "git:HEAD:."]);
    assert_eq!(code, 1, "{err}");
    assert!(out.contains("+ ops/toolbox -> shop/db  TCP/5432"), "{out}");

    // A side of several inputs, Git and work tree mixed: the old policy
    // file from the revision, the cluster file from the work tree.
    let args = ["diff", "--exit-code", "--old", "policies/00-cluster.yaml", "git:HEAD~1:policies/10-db-ingress.yaml"];
    let (code, out, err) = policyc(repo, &[&args[..], &["--new", "git:HEAD:policies"]].concat());
    assert_eq!(code, 1, "{err}");
    assert!(out.starts_with(
        "policyc diff policies/00-cluster.yaml git:HEAD~1:policies/10-db-ingress.yaml git:HEAD:policies\n"
    ));
    assert!(out.contains("+ ops/toolbox -> shop/db  TCP/5432"), "{out}");

    // A path or revision that is not there: a read error naming it, exit 1.
    let (code, _, err) = policyc(repo, &["diff", "git:HEAD:nowhere", "policies"]);
    assert_eq!(code, 1);
    assert!(err.contains("error[E0001]") && err.contains("`git:HEAD:nowhere`"), "{err}");
    let (code, _, err) = policyc(repo, &["diff", "git:no-such-rev:policies", "policies"]);
    assert_eq!(code, 1);
    assert!(err.contains("git ls-tree") && err.contains("no-such-rev"), "{err}");
}

/// The Services of a diff: each kind of Service change, and every service
/// connection change equals `connectivity`'s Service rows of both trees
/// compared (the rows judge every source and Service, the diff only the
/// Services it finds touched).
#[test]
fn service_changes_are_named_and_agree_with_the_connectivity_rows() {
    use policyc::analysis::diff::services::{Reach, ServiceChangeKind};
    use policyc::analysis::services::connectivity;
    use std::collections::BTreeMap;
    let case = load_case("service-changes");
    let kinds: Vec<(&str, ServiceChangeKind)> =
        case.diff.services.services.iter().map(|c| (c.service.as_str(), c.kind)).collect();
    assert_eq!(
        kinds,
        [
            ("svc:shop/api", ServiceChangeKind::Changed),
            ("svc:shop/cache", ServiceChangeKind::Added),
            ("svc:shop/legacy", ServiceChangeKind::Removed)
        ]
    );
    let api = &case.diff.services.services[0];
    let fields: Vec<&str> = api.fields.iter().map(|f| f.field).collect();
    assert_eq!(fields, ["externalTrafficPolicy", "ports", "sessionAffinity", "type"]);
    assert_eq!(api.backends[0].added, ["10.200.2.11:9090 shop/api-c on node-b"]);
    for example in ["example-frontend-to-db", "service-changes"] {
        let case = load_case(example);
        let rows = |l: &Loaded| -> BTreeMap<(String, String, String), Reach> {
            let mut out = BTreeMap::new();
            for r in connectivity(&l.lowered.cluster, |_| true) {
                for item in r.allowed {
                    let (port, reach) = match item.strip_suffix(" (some backends)") {
                        Some(port) => (port.to_string(), Reach::Some),
                        None => (item, Reach::All),
                    };
                    out.insert((r.src.clone(), r.dst.clone(), port), reach);
                }
            }
            out
        };
        let (was, now) = (rows(&case.old), rows(&case.new));
        let mut expected = Vec::new();
        for key in was.keys().chain(now.keys()).collect::<std::collections::BTreeSet<_>>() {
            let (w, n) = (was.get(key).copied().unwrap_or(Reach::None), now.get(key).copied().unwrap_or(Reach::None));
            if w != n {
                expected.push((key.clone(), w, n));
            }
        }
        let got: Vec<_> = case
            .diff
            .services
            .connections
            .iter()
            .map(|c| ((c.src.clone(), c.dst.clone(), c.port.clone()), c.was, c.now))
            .collect();
        assert_eq!(got, expected, "{example}");
        assert!(!got.is_empty(), "{example}: the case changes a service connection");
    }
}
