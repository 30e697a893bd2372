//! The loader's whole-bundle read and its validation (`Bundle::read`,
//! `validate::desired`) on bundles a few edits away from a valid one, as a
//! careless or hostile writer of a bundle directory makes them: a line
//! deleted, repeated, replaced, inserted, a digit changed, a file cut
//! short, the manifest edited. Every text file is then given its true
//! digest, so that what is checked is the content, not the digest.
//!
//! Contract: the read either refuses the bundle with an error or accepts
//! it, never panics; an accepted bundle passes the validation of a state
//! held in memory too (the node agent's path), and yields one generation's
//! entries without panicking.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use policyc::emit::{emit, BundleOptions};
use policyc_bundle::digest::{text_digest, Digests};
use policyc_bundle::manifest::Manifest;
use policyc_loader::bundle::Bundle;
use policyc_loader::desired::DesiredState;
use policyc_loader::maps::Generation;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The cluster of the loader's fault tests: two pods, policies of both
/// kinds.
const CLUSTER: &str = include_str!("../../runtime-loader/tests/faults/cluster/00-cluster.yaml");

/// A scratch directory of this process.
fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("policyc-fuzz-loader-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

fn read_tree(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
    for entry in std::fs::read_dir(dir).expect("bundle directory") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            read_tree(root, &path, out);
        } else {
            let relative = path.strip_prefix(root).expect("under root").to_string_lossy().into_owned();
            out.insert(relative, std::fs::read(&path).expect("bundle file"));
        }
    }
}

/// The valid bundle every input edits: its files by relative path.
fn base() -> &'static BTreeMap<String, Vec<u8>> {
    static BASE: OnceLock<BTreeMap<String, Vec<u8>>> = OnceLock::new();
    BASE.get_or_init(|| {
        let input = scratch("input");
        std::fs::write(input.join("00-cluster.yaml"), CLUSTER).expect("input");
        let loaded = policyc::pipeline::load(&[input]);
        assert!(!loaded.has_errors(), "the fault-test cluster compiles");
        let cluster = &loaded.lowered.cluster;
        let resolved = policyc_ir::resolve::resolve(cluster);
        let bundles = emit(cluster, &resolved, None, &BundleOptions::default()).expect("emit");
        let dir = scratch("base");
        bundles[0].write_to(&dir).expect("write the bundle");
        let mut files = BTreeMap::new();
        read_tree(&dir, &dir, &mut files);
        files
    })
}

/// One edit of one text file.
#[derive(Arbitrary, Debug)]
enum Edit {
    Delete {
        line: u16,
    },
    Repeat {
        line: u16,
    },
    Replace {
        line: u16,
        text: String,
    },
    Insert {
        line: u16,
        text: String,
    },
    /// The `nth` digit of the line, plus `by`.
    Digit {
        line: u16,
        nth: u8,
        by: u8,
    },
    Truncate {
        at: u16,
    },
}

fn apply(text: &str, edit: &Edit) -> String {
    let mut lines: Vec<String> = text.split_terminator('\n').map(str::to_string).collect();
    let at = |line: u16, len: usize| usize::from(line) % len.max(1);
    match edit {
        Edit::Truncate { at: n } => {
            let cut = usize::from(*n) % (text.len() + 1);
            return String::from_utf8_lossy(&text.as_bytes()[..cut]).into_owned();
        }
        _ if lines.is_empty() => {}
        Edit::Delete { line } => drop(lines.remove(at(*line, lines.len()))),
        Edit::Repeat { line } => {
            let i = at(*line, lines.len());
            lines.insert(i, lines[i].clone());
        }
        Edit::Replace { line, text } => {
            let i = at(*line, lines.len());
            lines[i] = text.replace('\n', " ");
        }
        Edit::Insert { line, text } => {
            let i = at(*line, lines.len() + 1);
            lines.insert(i, text.replace('\n', " "));
        }
        Edit::Digit { line, nth, by } => {
            let i = at(*line, lines.len());
            let digits: Vec<usize> =
                lines[i].char_indices().filter(|(_, c)| c.is_ascii_digit()).map(|(j, _)| j).collect();
            if let Some(&j) = digits.get(usize::from(*nth) % digits.len().max(1)) {
                let d = lines[i].as_bytes()[j] - b'0';
                let new = char::from(b'0' + (d + by % 10) % 10);
                lines[i].replace_range(j..=j, &new.to_string());
            }
        }
    }
    lines.iter().map(|l| format!("{l}\n")).collect()
}

fuzz_target!(|edits: Vec<(u8, Edit)>| {
    let mut files = base().clone();
    let texts: Vec<String> =
        files.iter().filter(|(_, b)| std::str::from_utf8(b).is_ok()).map(|(p, _)| p.clone()).collect();
    for (which, edit) in edits.iter().take(8) {
        let path = &texts[usize::from(*which) % texts.len()];
        let text = String::from_utf8_lossy(&files[path]).into_owned();
        files.insert(path.clone(), apply(&text, edit).into_bytes());
    }
    // Every text file the manifest lists gets its true digest.
    let Ok(mut manifest) = Manifest::from_json(&String::from_utf8_lossy(&files["manifest.json"])) else { return };
    for (path, digest) in manifest.files.iter_mut() {
        if let Some(text) = files.get(path).and_then(|b| std::str::from_utf8(b).ok()) {
            if digest.lines.is_some() {
                *digest = text_digest(text, Digests::Sha256);
            }
        }
    }
    files.insert("manifest.json".into(), manifest.to_json().into_bytes());
    let dir = scratch("bundle");
    for (path, bytes) in &files {
        let target = dir.join(path);
        std::fs::create_dir_all(target.parent().expect("a parent")).expect("bundle subdirectory");
        std::fs::write(target, bytes).expect("bundle file");
    }
    if let Ok(bundle) = Bundle::read(&dir) {
        let _ = Generation::of_bundle(&bundle, 1);
        let memory = DesiredState::Memory(bundle);
        if let Err(e) = policyc_loader::validate::desired(&memory) {
            panic!("a bundle read whole is refused in memory: {e}");
        }
    }
});
