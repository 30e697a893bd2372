//! Shared by the kernel and registry tests: the root check, scratch places
//! that clean up after themselves, compiling a manifest directory into
//! bundles, and a registry on loopback.
#![allow(dead_code)] // each test binary uses its own part of the support

pub mod cni;
pub mod netns;
pub mod registry;

use policyc::emit::{emit, BundleOptions};
use policyc::front::source::read_paths;
use policyc::pipeline::{load_input_with, Loaded};
use policyc::semantics::Semantics;
use policyc_loader::bundle::Bundle;
use policyc_loader::paths::Paths;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Fails the test, loudly, where kernel tests cannot run.
pub fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let uid = status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|l| l.split_whitespace().nth(1));
    assert_eq!(uid, Some("0"), "kernel tests need root (CAP_BPF, CAP_NET_ADMIN); run them as root, as .ci/run does");
    policyc_loader::bpffs::ensure_mounted(Path::new("/sys/fs/bpf")).expect("bpffs at /sys/fs/bpf");
}

/// The kernel tests of one test binary run one at a time. A test that
/// spawns loader processes (the crash test, the netns test's `observe` and
/// `uninstall`) would otherwise fork while another test's apply holds its
/// lock file: the child shares that lock until it execs, and the next
/// apply or uninstall of the other test finds the lock held (the loader
/// waits a bounded time, and the fault test's own holder must not be
/// confused with another test's). In a deployment one loader runs per node.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes this test's turn; a test that failed before does not block the
/// others (its poisoned turn is taken all the same).
pub fn turn() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh directory named after `tag` and this process.
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("policyc-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Loader paths under a bpffs root and state directory of their own.
pub fn scratch_paths(tag: &str, state: &TempDir) -> Paths {
    Paths::new(Path::new("/sys/fs/bpf"), &format!("policyc-test-{tag}-{}", std::process::id()), &state.0.join(tag))
}

/// The manifests of `dir` compiled into one bundle per node (read back as
/// the loader reads them), or `None` if the input has errors or an admin
/// peer that splits a node identity, which `policyc compile` refuses (E0350).
pub fn compile(dir: &Path, out: &TempDir) -> Option<(Loaded, BTreeMap<String, Bundle>)> {
    compile_with(dir, out, Semantics::default())
}

/// [`compile`] under `semantics` (`--allow-localhost`).
pub fn compile_with(dir: &Path, out: &TempDir, semantics: Semantics) -> Option<(Loaded, BTreeMap<String, Bundle>)> {
    let loaded = load_input_with(read_paths(&[dir.to_path_buf()]), semantics);
    if loaded.has_errors() {
        return None;
    }
    let cluster = &loaded.lowered.cluster;
    let resolved = policyc_ir::resolve::resolve(cluster);
    if !policyc::compile::tiers::unenforced(&loaded, &resolved).is_empty() {
        return None;
    }
    let bundles = emit(cluster, &resolved, None, &BundleOptions::default()).expect("emit");
    let mut read = BTreeMap::new();
    for b in bundles {
        let path = out.0.join(&b.node);
        b.write_to(&path).unwrap();
        read.insert(b.node.clone(), Bundle::read(&path).expect("the loader reads what policyc writes"));
    }
    Some((loaded, read))
}

/// The golden inputs and the example cluster.
pub fn golden_inputs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join("tests/golden"))
        .unwrap()
        .map(|e| e.unwrap().path().join("input"))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs.push(root.join("examples/policies"));
    dirs
}

/// Rewrites the digest of `relative` in the manifest of the bundle in
/// `dir` to match the file as it now is (a text file in one piece), as a
/// policyc that wrote the file so would have: for tests that change a
/// bundle's files.
pub fn redigest(dir: &Path, relative: &str) {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(dir.join(relative)).unwrap();
    let manifest = dir.join("manifest.json");
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    let mut digest = serde_json::json!({ "sha256": format!("{:x}", Sha256::digest(&bytes)) });
    if let Ok(text) = std::str::from_utf8(&bytes) {
        digest["lines"] = text.lines().count().into();
    }
    json["files"][relative] = digest;
    std::fs::write(&manifest, serde_json::to_string_pretty(&json).unwrap()).unwrap();
}
