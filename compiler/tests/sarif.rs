//! `--format sarif` against the official SARIF 2.1.0 JSON schema and
//! against what GitHub code scanning additionally needs to accept and show
//! a result.
//!
//! The schema is not copied into this repository: the `serde-sarif` crate
//! ships the official OASIS schema (it generates its types from it), and
//! this test reads it from that package, found through `cargo metadata`,
//! and validates with the `jsonschema` crate (formats such as
//! `uri-reference` checked too). `serde-sarif`'s types then give typed
//! access for the GitHub checks.

use jsonschema::{Draft, Validator};
use policyc::diag::render::{render, Format, Sources};
use policyc::diag::{codes, Diagnostic, Location};
use policyc::front::yaml::Pos;
use serde_json::{json, Value};
use serde_sarif::sarif::Sarif;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The official schema, from the `serde-sarif` package Cargo resolved.
fn schema() -> Value {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(root())
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    let metadata: Value = serde_json::from_slice(&out.stdout).unwrap();
    let manifest = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "serde-sarif")
        .and_then(|p| p["manifest_path"].as_str())
        .expect("serde-sarif is a dev-dependency");
    let path = Path::new(manifest).with_file_name("src/schema.json");
    let mut schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        schema["title"],
        "Static Analysis Results Format (SARIF) Version 2.1.0 JSON Schema",
        "{} is not the SARIF 2.1.0 schema",
        path.display()
    );
    escape_stray_brackets(&mut schema);
    schema
}

/// The schema's pattern for `language` (of a run and of a tool component)
/// has a `]` outside any class, which ECMA-262 regexes (the dialect JSON
/// schema patterns use) read as a literal `]` but the validator's check of
/// the meta-schema's `regex` format refuses. Escaping it keeps the meaning
/// and lets the schema compile.
fn escape_stray_brackets(schema: &mut Value) {
    const STRAY: &str = "^[a-zA-Z]{2}|^[a-zA-Z]{2}-[a-zA-Z]{2}]?$";
    match schema {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                if key == "pattern" && value == STRAY {
                    *value = Value::from(STRAY.replace("}]?", "}\\]?"));
                } else {
                    escape_stray_brackets(value);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(escape_stray_brackets),
        _ => {}
    }
}

fn validator() -> Validator {
    jsonschema::options()
        .with_draft(Draft::Draft7)
        .should_validate_formats(true)
        .build(&schema())
        .expect("the SARIF schema compiles")
}

/// Every schema violation of `log`, as `pointer: message` lines.
fn violations(validator: &Validator, log: &Value) -> Vec<String> {
    validator.iter_errors(log).map(|e| format!("{}: {e}", e.instance_path())).collect()
}

fn policyc(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_policyc")).args(args).current_dir(root()).output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("policyc {args:?}: {e}"))
}

/// A diagnostic without a file (as `compile --node` gives for a node the
/// input lacks), rendered together with one that has a file.
fn without_file() -> Value {
    let unknown_node = Diagnostic::new(codes::UNKNOWN_NODE, Location::default(), "no node `no-such-node` in the input");
    let location = Location { file: Some("a.yaml".into()), pos: Some(Pos { line: 3, col: 5 }), ..Location::default() };
    let unmatched = Diagnostic::new(codes::UNMATCHED_SELECTOR, location, "a selector matches nothing");
    serde_json::from_str(&render(&[unknown_node, unmatched], Format::Sarif, &Sources::new())).unwrap()
}

/// Outputs with every kind of diagnostic: errors of the broken examples,
/// each lint warning, none, a file that cannot be read, and a diagnostic
/// without a file.
fn outputs() -> Vec<(String, Value)> {
    let mut outputs: Vec<(String, Value)> = [
        vec!["lint", "examples/broken", "--format", "sarif"],
        vec!["lint", "tests/lint", "--format", "sarif"],
        vec!["lint", "examples/policies", "--format", "sarif"],
        vec!["lint", "tests/lint/no-such-file.yaml", "--format", "sarif"],
        vec!["compile", "examples/policies", "--dry-run", "--node", "no-such-node", "--format", "sarif"],
    ]
    .into_iter()
    .map(|args| (args.join(" "), policyc(&args)))
    .collect();
    outputs.push(("(a diagnostic without a file)".into(), without_file()));
    outputs
}

#[test]
fn sarif_output_is_valid_against_the_official_schema() {
    let validator = validator();
    let mut results = 0;
    for (command, log) in outputs() {
        let errors = violations(&validator, &log);
        assert!(errors.is_empty(), "policyc {command}:\n{}", errors.join("\n"));
        results += log["runs"][0]["results"].as_array().map_or(0, Vec::len);
    }
    assert!(results > 20, "too few results to say much: {results}");
}

#[test]
fn the_schema_check_rejects_what_the_schema_rules_out() {
    let validator = validator();
    let (_, good) = outputs().swap_remove(1);
    assert!(violations(&validator, &good).is_empty());
    let broken = |pointer: &str, value: Value| {
        let mut log = good.clone();
        *log.pointer_mut(pointer).unwrap_or_else(|| panic!("{pointer}")) = value;
        violations(&validator, &log)
    };
    let result = "/runs/0/results/0";
    // An unknown property, a level SARIF does not have, a 0-based line, a
    // URI with a space, a message without text, a wrong version.
    let mut with_unknown = good.clone();
    with_unknown["runs"][0]["results"][0]["severity"] = json!("high");
    assert!(!violations(&validator, &with_unknown).is_empty());
    assert!(!broken(&format!("{result}/level"), json!("fatal")).is_empty());
    assert!(!broken(&format!("{result}/locations/0/physicalLocation/region/startLine"), json!(0)).is_empty());
    assert!(
        !broken(&format!("{result}/locations/0/physicalLocation/artifactLocation/uri"), json!("a b.yaml")).is_empty()
    );
    assert!(!broken(&format!("{result}/message"), json!({"markdown": "x"})).is_empty());
    assert!(!broken("/version", json!("2.0.0")).is_empty());
}

/// What GitHub code scanning needs beyond the schema (its "SARIF support
/// for code scanning" page, and the upload errors it gives otherwise):
/// every result has a `ruleId` that names a rule of the driver, a message
/// text and at least one location (one result without one fails the whole
/// upload) whose `artifactLocation.uri` is relative to the repository root
/// (or a `file:` URI) and whose region has a `startLine` of at least 1;
/// every rule has an `id`, `shortDescription`, `fullDescription` and
/// `help` text. `partialFingerprints` is optional (the upload action
/// computes them from the files).
fn github_problems(log: &Value) -> Vec<String> {
    let sarif: Sarif = serde_json::from_value(log.clone()).expect("the SARIF types read the log");
    let mut problems = Vec::new();
    for run in &sarif.runs {
        let rules = run.tool.driver.rules.as_deref().unwrap_or_default();
        let mut ids = BTreeSet::new();
        for rule in rules {
            ids.insert(rule.id.as_str());
            let text = |t: Option<&str>, what: &str| {
                if t.is_none_or(|t| t.trim().is_empty()) {
                    Some(format!("rule {}: no {what}", rule.id))
                } else {
                    None
                }
            };
            problems.extend(text(rule.short_description.as_ref().map(|d| d.text.as_str()), "shortDescription"));
            problems.extend(text(rule.full_description.as_ref().map(|d| d.text.as_str()), "fullDescription"));
            problems.extend(text(rule.help.as_ref().map(|d| d.text.as_str()), "help text"));
        }
        for (i, result) in run.results.as_deref().unwrap_or_default().iter().enumerate() {
            match result.rule_id.as_deref() {
                Some(id) if ids.contains(id) => {}
                other => problems.push(format!("result {i}: ruleId {other:?} names no rule")),
            }
            if result.message.text.as_deref().is_none_or(str::is_empty) {
                problems.push(format!("result {i}: no message text"));
            }
            let locations = result.locations.as_deref().unwrap_or_default();
            if locations.is_empty() {
                problems.push(format!("result {i}: no location"));
            }
            for location in locations {
                let physical = location.physical_location.as_ref();
                let uri = physical.and_then(|p| p.artifact_location.as_ref()).and_then(|a| a.uri.as_deref());
                match uri {
                    Some(uri) if uri.starts_with("file:///") || !(uri.contains("://") || uri.starts_with('/')) => {}
                    other => problems.push(format!("result {i}: uri {other:?} is neither relative nor file:")),
                }
                let line = physical.and_then(|p| p.region.as_ref()).and_then(|r| r.start_line);
                if line.is_none_or(|l| l < 1) {
                    problems.push(format!("result {i}: startLine {line:?}"));
                }
            }
        }
    }
    problems
}

#[test]
fn sarif_output_has_what_github_code_scanning_needs() {
    for (command, log) in outputs() {
        let problems = github_problems(&log);
        assert!(problems.is_empty(), "policyc {command}:\n{}", problems.join("\n"));
    }
    // A node named on the command line is no result (it has no file to
    // point at) but a notification of the invocation, which failed.
    let log = without_file();
    assert_eq!(log["runs"][0]["results"].as_array().unwrap().len(), 1);
    assert_eq!(log["runs"][0]["invocations"][0]["executionSuccessful"], false);
    let notification = &log["runs"][0]["invocations"][0]["toolExecutionNotifications"][0];
    assert_eq!(notification["associatedRule"]["id"], "E0302");
    assert!(notification["message"]["text"].as_str().unwrap().contains("`no-such-node`"));
    // `compile` prints it so: one log on stdout, with the notification.
    let (_, compiled) = outputs().swap_remove(4);
    assert_eq!(compiled["runs"][0]["invocations"][0]["toolExecutionNotifications"][0]["associatedRule"]["id"], "E0302");
    // The checks themselves catch what GitHub refuses.
    let (_, good) = outputs().swap_remove(1);
    let mut bad = good.clone();
    bad["runs"][0]["results"][0].as_object_mut().unwrap().remove("locations");
    bad["runs"][0]["results"][1]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] =
        json!("https://example.com/x.yaml");
    bad["runs"][0]["results"][2]["ruleId"] = json!("W9999");
    bad["runs"][0]["tool"]["driver"]["rules"][0].as_object_mut().unwrap().remove("help");
    assert_eq!(github_problems(&bad).len(), 4, "{:?}", github_problems(&bad));
}

#[test]
fn uris_are_relative_references_or_file_uris() {
    use policyc::diag::render::artifact_uri;
    assert_eq!(artifact_uri("examples/policies/shop.yaml"), "examples/policies/shop.yaml");
    assert_eq!(artifact_uri("./k8s/a b.yaml"), "k8s/a%20b.yaml");
    assert_eq!(artifact_uri("/srv/repo/x.yaml"), "file:///srv/repo/x.yaml");
    // `:` would make the first segment read as a scheme.
    assert_eq!(artifact_uri("c:d/np.yaml"), "c%3Ad/np.yaml");
    assert_eq!(artifact_uri("politique/été.yaml"), "politique/%C3%A9t%C3%A9.yaml");
}
