//! The corpus of real-world-shaped policies under `tests/corpus/` must
//! decode: no errors, only the warnings a file announces in its leading
//! comments (`# expect: W0112, W0120`, exactly those codes), and at least
//! one policy from every document.

use policyc::front::source::read_paths;
use policyc::front::Body;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn corpus_files(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus").join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// The codes listed in `# expect:` lines of the comment block that opens a file.
fn expected_codes(text: &str) -> BTreeSet<String> {
    text.lines()
        .take_while(|l| l.starts_with('#'))
        .filter_map(|l| l.trim_start_matches('#').trim().strip_prefix("expect:"))
        .flat_map(|codes| codes.split(',').map(|c| c.trim().to_string()))
        .filter(|c| !c.is_empty())
        .collect()
}

/// Checks one file; returns a description of each problem.
fn check(file: &Path) -> Vec<String> {
    let name = file.display();
    let text = std::fs::read_to_string(file).unwrap();
    let expected = expected_codes(&text);
    let input = read_paths(&[file.to_path_buf()]);
    let mut problems = Vec::new();

    for d in input.diagnostics.iter().filter(|d| d.is_error() || !expected.contains(d.code.id)) {
        problems.push(format!(
            "{name}: unexpected {} {}: {} (at {:?})",
            d.code.id,
            d.severity.name(),
            d.message,
            d.location.path
        ));
    }
    let seen: BTreeSet<String> = input.diagnostics.iter().map(|d| d.code.id.to_string()).collect();
    for code in expected.difference(&seen) {
        problems.push(format!("{name}: expected warning {code} was not reported"));
    }

    let (documents, _) = policyc::front::yaml::parse_stream(&text);
    let documents = documents.iter().filter(|d| d.root.value != policyc::front::yaml::Value::Null).count();
    let mut decoded = BTreeSet::new();
    for object in &input.objects {
        match &object.body {
            Body::Policy(policies) if !policies.is_empty() => {
                decoded.insert(object.meta.location.document);
            }
            _ => problems.push(format!("{name}: `{}` decoded to no policy", object.meta.display())),
        }
    }
    for doc in 0..documents {
        if !decoded.contains(&Some(doc)) {
            problems.push(format!("{name}: document {doc} gave no policy"));
        }
    }
    problems
}

fn check_corpus(kind: &str, at_least: usize) {
    let files = corpus_files(kind);
    assert!(files.len() >= at_least, "tests/corpus/{kind} has {} files, expected at least {at_least}", files.len());
    let problems: Vec<String> = files.iter().flat_map(|f| check(f)).collect();
    assert!(problems.is_empty(), "{} problem(s) in tests/corpus/{kind}:\n{}", problems.len(), problems.join("\n"));
}

#[test]
fn cilium_corpus_decodes() {
    check_corpus("cilium", 30);
}

/// Runs the Kubernetes `NetworkPolicy` decoder (`front/k8s.rs`) over its corpus.
#[test]
fn k8s_corpus_decodes() {
    check_corpus("k8s", 15);
}

#[test]
fn expect_comments_are_read_from_the_leading_block_only() {
    let text = "# a policy\n# expect: W0112, W0120\napiVersion: v1\n# expect: W0006\n";
    let codes: Vec<String> = expected_codes(text).into_iter().collect();
    assert_eq!(codes, ["W0112", "W0120"]);
}
