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
