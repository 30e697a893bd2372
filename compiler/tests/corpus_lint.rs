//! Public policy collections, taken as published (`tests/corpus/<source>/`,
//! each with a README naming the repository, commit, paths and licence):
//! `policyc lint` reports no error on any of them, so a false error on a
//! valid manifest cannot come back. Their warnings are pinned in
//! `tests/corpus/<source>/lint.snap` (re-recorded by `cargo xtask bless`).
//!
//! Each subdirectory of a source is one cluster (the files of one upstream
//! test case, read together); each file directly in a source is linted on
//! its own.

use policyc::diag::Diagnostic;
use policyc::lint::{run, LintOptions};
use policyc::pipeline::load;
use std::path::{Path, PathBuf};

/// The sources taken from public repositories.
const SOURCES: &[&str] = &["cilium-examples", "netpol-analyzer", "network-policy-recipes"];

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus")
}

/// The units of a source: its subdirectories and its manifest files.
fn units(source: &Path) -> Vec<PathBuf> {
    let mut units: Vec<PathBuf> = std::fs::read_dir(source)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", source.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() || p.extension().is_some_and(|e| e == "yaml" || e == "yml" || e == "json"))
        .collect();
    units.sort();
    units
}

/// One line per diagnostic: where, code, object, field and message.
fn line(d: &Diagnostic, prefix: &str) -> String {
    let file = d.location.file.as_deref().unwrap_or("-").replace(prefix, "");
    let pos = d.location.pos.map_or("-".into(), |p| format!("{}:{}", p.line, p.col));
    let object = d.location.object.as_deref().unwrap_or("-");
    let path = d.location.path.as_deref().unwrap_or("-");
    format!("{file}:{pos} {} {object} {path}: {}", d.code.id, d.message)
}

/// Lints every unit of `source`; returns the rendered warnings and every
/// error found.
fn lint_source(source: &str) -> (String, Vec<String>) {
    let dir = corpus().join(source);
    assert!(dir.join("README.md").is_file(), "tests/corpus/{source} needs a README naming its source and licence");
    let prefix = format!("{}/", dir.display());
    let mut out = String::new();
    let mut errors = Vec::new();
    let units = units(&dir);
    assert!(units.len() >= 2, "tests/corpus/{source} has {} units", units.len());
    for unit in units {
        let mut loaded = load(std::slice::from_ref(&unit));
        assert!(!loaded.input.sources.is_empty(), "{} read nothing", unit.display());
        run(&mut loaded, &LintOptions::default());
        out.push_str(&format!("## {}\n", unit.display().to_string().replace(&prefix, "")));
        for d in &loaded.diagnostics {
            let text = line(d, &prefix);
            if d.is_error() {
                errors.push(text.clone());
            }
            out.push_str(&text);
            out.push('\n');
        }
    }
    (out, errors)
}

#[test]
fn public_collections_lint_without_errors_and_their_warnings_are_pinned() {
    for source in SOURCES {
        let (text, errors) = lint_source(source);
        assert!(errors.is_empty(), "false errors in tests/corpus/{source}:\n{}", errors.join("\n"));
        insta::with_settings!({
            snapshot_path => corpus().join(source),
            prepend_module_to_snapshot => false,
            omit_expression => true,
            description => format!("lint warnings of tests/corpus/{source}"),
        }, {
            insta::assert_snapshot!("lint", text);
        });
    }
}
