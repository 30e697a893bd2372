//! Golden tests: every `tests/golden/<case>/input/` is compiled and its
//! rendered diagnostics, model dump and connectivity table are compared with
//! `tests/golden/<case>/expected.snap`. A deliberate change is re-recorded
//! with `cargo xtask bless` and reviewed in the diff. A case's `flags`
//! file sets semantics flags (`--allow-localhost=policy`).

use policyc::analysis::connectivity::{connectivity, to_table};
use policyc::compile::source_hash;
use policyc::diag::render::{render, Format};
use policyc::emit::{emit, BundleOptions};
use policyc::front::source::read_paths;
use policyc::pipeline::load_input_with;
use policyc::semantics::{AllowLocalhost, Semantics};
use std::path::{Path, PathBuf};

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/golden");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("tests/golden exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.join("input").is_dir())
        .collect();
    cases.sort();
    cases
}

/// The semantics flags of a case: its `flags` file, if any (one flag a
/// line; only `--allow-localhost=policy` so far).
fn semantics(case: &Path) -> Semantics {
    let mut semantics = Semantics::default();
    for flag in std::fs::read_to_string(case.join("flags")).unwrap_or_default().lines() {
        match flag.trim() {
            "--allow-localhost=policy" => semantics.allow_localhost = AllowLocalhost::Policy,
            other => panic!("{}: unknown flag `{other}`", case.display()),
        }
    }
    semantics
}

/// Everything a reviewer checks about one case, as text.
fn render_case(case: &Path) -> String {
    let loaded = load_input_with(read_paths(&[case.join("input")]), semantics(case));
    let prefix = format!("{}/", case.display());
    let mut out = String::from("# diagnostics\n");
    out.push_str(&render(&loaded.diagnostics, Format::Human, &loaded.input.sources));
    if !loaded.input.skipped.is_empty() {
        out.push_str(&format!("skipped kinds: {:?}\n", loaded.input.skipped));
    }
    out.push_str("\n# model\n");
    out.push_str(&policyc_ir::dump::dump(&loaded.lowered.cluster));
    out.push_str("\n# connectivity\n");
    if loaded.has_errors() {
        out.push_str("(not computed: the input has errors)\n");
    } else {
        let rows = connectivity(&loaded.lowered.cluster, &[]);
        out.push_str(&to_table(&loaded.lowered.cluster, &rows));
        if !loaded.lowered.cluster.services.is_empty() {
            // Each endpoint to each Service, through translation and
            // policy on every backend.
            out.push_str("\n# services\n");
            let rows = policyc::analysis::services::connectivity(&loaded.lowered.cluster, |_| true);
            out.push_str(&policyc::analysis::services::rows_table(&rows));
        }
        out.push_str("\n# bundles\n");
        let cluster = &loaded.lowered.cluster;
        let resolved = policyc_ir::resolve::resolve(cluster);
        let unenforced = policyc::compile::tiers::unenforced(&loaded, &resolved);
        if !unenforced.is_empty() {
            out.push_str("(not compiled: an admin peer splits a node identity)\n");
            out.push_str(&render(&unenforced, Format::Human, &loaded.input.sources));
            return out.replace(&prefix, "");
        }
        let options = BundleOptions { source_hash: source_hash(&loaded), ..BundleOptions::default() };
        match emit(cluster, &resolved, None, &options) {
            Ok(bundles) => {
                for bundle in bundles {
                    for (path, text) in &bundle.files {
                        out.push_str(&format!("## {}/{path}\n{text}", bundle.node));
                    }
                    // Object bytes follow the templates; their settings are
                    // pinned by manifest.json above.
                    for path in bundle.programs.keys() {
                        out.push_str(&format!("## {}/{path} (program)\n", bundle.node));
                    }
                }
            }
            Err(e) => out.push_str(&format!("emission failed: {e}\n")),
        }
    }
    out.replace(&prefix, "")
}

#[test]
fn golden_cases() {
    let cases = cases();
    assert!(cases.len() >= 25, "expected at least 25 golden cases, found {}", cases.len());
    for case in cases {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let text = render_case(&case);
        insta::with_settings!({
            snapshot_path => case.clone(),
            prepend_module_to_snapshot => false,
            omit_expression => true,
            description => format!("golden case {name}"),
        }, {
            insta::assert_snapshot!("expected", text);
        });
    }
}

#[test]
fn rendering_is_deterministic() {
    for case in cases().into_iter().take(10) {
        assert_eq!(render_case(&case), render_case(&case), "{}", case.display());
    }
}
