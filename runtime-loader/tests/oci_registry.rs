//! Bundles through a real OCI registry on loopback (Debian's
//! `docker-registry`, started by each test; no root needed): `publish` and
//! `Puller` of `policyc-oci`, the calls `policyc publish` and `policyc-loader
//! run --bundle oci://REF` make.
//!
//! - the same bundles publish to the same digest, and a second publish
//!   uploads nothing;
//! - a node pulls its bundle, byte for byte what the compiler wrote;
//! - after one policy changes, a publish uploads and a pull fetches only
//!   the pieces that changed and the index (counted by the client and, on
//!   the other side, in the registry's access log);
//! - a restart (a new puller on the same cache) fetches nothing, and a
//!   reference pinned to a digest is served from the cache with the
//!   registry gone;
//! - a blob tampered with in the registry's storage is refused, and what
//!   was pulled before stays;
//! - an unreachable registry, and an artifact without this node's bundle,
//!   are errors that leave the cache as it was.

mod support;

use policyc::compile::{compile, CompileOptions, Inputs, Output};
use policyc_oci::artifact::Index;
use policyc_oci::{publish, ArtifactRef, ClientOptions, OciError, Puller};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use support::registry::Registry;
use support::TempDir;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/policies");
const CHANGED_FILE: &str = "45-netpol-shop-monitoring.yaml";

fn plain() -> ClientOptions {
    ClientOptions { plain_http: true, ..ClientOptions::default() }
}

/// Compiles the example cluster (with the monitoring policy's port range
/// one port wider when `changed`) into `out`, every node.
fn compile_example(dir: &Path, out: &Path, changed: bool) {
    let repo = dir.join(if changed { "repo-changed" } else { "repo" });
    std::fs::create_dir_all(&repo).unwrap();
    for entry in std::fs::read_dir(EXAMPLE).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let mut text = std::fs::read_to_string(&path).unwrap();
            if changed && path.file_name().unwrap() == CHANGED_FILE {
                assert!(text.contains("endPort: 9110"));
                text = text.replace("endPort: 9110", "endPort: 9111");
            }
            std::fs::write(repo.join(path.file_name().unwrap()), text).unwrap();
        }
    }
    let _ = std::fs::remove_dir_all(out);
    let options = CompileOptions { output: Output::Directory(out.to_path_buf()), ..Default::default() };
    compile(Inputs::Paths(vec![repo]), &options).expect("the example compiles");
}

/// Every file of the bundle in `dir`, by path relative to it.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push((path.strip_prefix(root).unwrap().to_path_buf(), std::fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Node `node`'s piece digests in the index `cache` holds for `manifest`.
fn pieces_of(cache: &Path, manifest_digest: &str, node: &str) -> BTreeSet<String> {
    let blob = |d: &str| std::fs::read(cache.join("blobs/sha256").join(d.strip_prefix("sha256:").unwrap())).unwrap();
    let manifest: policyc_oci::artifact::ImageManifest = serde_json::from_slice(&blob(manifest_digest)).unwrap();
    let index: Index = serde_json::from_slice(&blob(&manifest.config.digest)).unwrap();
    index.nodes[node].values().flatten().cloned().collect()
}

#[test]
fn publish_pull_update_and_restart_move_only_what_changed() {
    let dir = TempDir::new("oc-registry-update");
    let registry = Registry::start("oc-registry-update-srv");
    let reference = ArtifactRef::parse(&registry.reference("policies/prod:v1")).unwrap();
    let (out, out_again) = (dir.0.join("out"), dir.0.join("out-again"));
    compile_example(&dir.0, &out, false);

    let first = publish(&out, &reference, &plain()).expect("publish");
    assert!(first.uploaded > 2 && first.present == 0, "{first:?}");
    // Determinism: the same bundles, compiled again elsewhere, give the
    // same digest, and the registry holds every blob already.
    compile_example(&dir.0, &out_again, false);
    let again = publish(&out_again, &reference, &plain()).expect("publish again");
    assert_eq!(again.digest, first.digest);
    assert_eq!((again.uploaded, again.bytes_uploaded), (0, 0), "{again:?}");

    let cache = dir.0.join("cache");
    let mut puller = Puller::new(reference.clone(), "node-a", &cache, &plain()).unwrap();
    let gets_before = registry.blob_gets();
    let pulled = puller.pull().expect("pull");
    let first_bytes = pulled.bytes_fetched;
    assert_eq!(pulled.digest, first.digest);
    assert_eq!(files(&pulled.dir), files(&out.join("node-a")), "the pulled bundle is what the compiler wrote");
    policyc_loader::bundle::Bundle::read(&pulled.dir).expect("the loader reads the pulled bundle");
    let node_a = pieces_of(&cache, &first.digest, "node-a");
    assert_eq!(pulled.manifests_fetched, 1);
    assert_eq!(pulled.blobs_fetched, node_a.len() + 1, "every piece of node-a and the index");
    assert_eq!(
        registry.blob_gets_at_least(gets_before + pulled.blobs_fetched) - gets_before,
        pulled.blobs_fetched,
        "the registry's count"
    );

    // One policy changes: only its pieces move, both ways.
    compile_example(&dir.0, &out, true);
    let second = publish(&out, &reference, &plain()).expect("publish the change");
    assert_ne!(second.digest, first.digest);
    assert!(second.present > 0 && second.uploaded < first.uploaded, "{second:?}");
    let gets_before = registry.blob_gets();
    let pulled = puller.pull().expect("pull the change");
    assert_eq!(pulled.digest, second.digest);
    assert_eq!(files(&pulled.dir), files(&out.join("node-a")));
    let changed: BTreeSet<String> = pieces_of(&cache, &second.digest, "node-a").difference(&node_a).cloned().collect();
    assert!(!changed.is_empty(), "the change reaches node-a");
    assert_eq!(pulled.blobs_fetched, changed.len() + 1, "the changed pieces and the index, nothing else");
    assert_eq!(
        registry.blob_gets_at_least(gets_before + pulled.blobs_fetched) - gets_before,
        pulled.blobs_fetched,
        "the registry's count"
    );
    eprintln!(
        "node-a's first pull: {} blobs, {first_bytes} bytes; after the change: {} blobs, {} bytes ({:.3} of the first)",
        node_a.len() + 1,
        pulled.blobs_fetched,
        pulled.bytes_fetched,
        pulled.bytes_fetched as f64 / first_bytes as f64
    );

    // A restart: a new puller on the same cache fetches nothing.
    let gets_before = registry.blob_gets();
    let mut restarted = Puller::new(reference.clone(), "node-a", &cache, &plain()).unwrap();
    let pulled = restarted.pull().expect("pull after a restart");
    assert_eq!(
        (pulled.digest.as_str(), pulled.manifests_fetched, pulled.blobs_fetched),
        (second.digest.as_str(), 0, 0)
    );
    assert_eq!(registry.blob_gets(), gets_before);

    // Pinned to the digest, the cache serves it with the registry gone;
    // a tag cannot be resolved then, and the cache stays as it was.
    let pinned = ArtifactRef::parse(&registry.reference(&format!("policies/prod@{}", second.digest))).unwrap();
    let mut registry = registry;
    registry.stop();
    let mut offline = Puller::new(pinned, "node-a", &cache, &plain()).unwrap();
    let pulled_offline = offline.pull().expect("a pinned digest from the cache");
    assert_eq!(pulled_offline.dir, pulled.dir);
    let error = restarted.pull().expect_err("the registry is gone");
    assert!(matches!(error, OciError::Registry(_)), "{error}");
    assert!(pulled.dir.is_dir(), "what was pulled stays");
}

#[test]
fn a_tampered_blob_is_refused_and_what_was_pulled_stays() {
    let dir = TempDir::new("oc-registry-tamper");
    let registry = Registry::start("oc-registry-tamper-srv");
    let reference = ArtifactRef::parse(&registry.reference("policies:live")).unwrap();
    let out = dir.0.join("out");
    compile_example(&dir.0, &out, false);
    let first = publish(&out, &reference, &plain()).unwrap();
    let cache = dir.0.join("cache");
    let mut puller = Puller::new(reference.clone(), "node-a", &cache, &plain()).unwrap();
    let good = puller.pull().unwrap();

    compile_example(&dir.0, &out, true);
    let second = publish(&out, &reference, &plain()).unwrap();
    let before = pieces_of(&cache, &first.digest, "node-a");
    // A piece the node does not have yet, rewritten in the registry's
    // storage with as many bytes (the registry serves what it stores).
    let mut probe = Puller::new(reference.clone(), "node-b", &dir.0.join("cache-probe"), &plain()).unwrap();
    probe.pull().unwrap();
    let after = pieces_of(&dir.0.join("cache-probe"), &second.digest, "node-a");
    let target = after.difference(&before).next().expect("a changed piece").clone();
    let file = registry.blob_file(&target);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[0] ^= 0x20;
    std::fs::write(&file, &bytes).unwrap();

    let error = puller.pull().expect_err("a tampered blob");
    assert!(matches!(error, OciError::Refused(_)), "{error}");
    assert!(error.to_string().contains(&target) || error.to_string().contains("digest"), "{error}");
    assert!(good.dir.is_dir(), "the bundle pulled before stays");
    assert!(!cache.join("blobs/sha256").join(target.strip_prefix("sha256:").unwrap()).exists(), "not cached");
    assert!(!cache.join("bundles").join(second.digest.strip_prefix("sha256:").unwrap()).exists(), "not materialized");
}

#[test]
fn an_unreachable_registry_or_a_missing_node_is_an_error() {
    let dir = TempDir::new("oc-registry-errors");
    let registry = Registry::start("oc-registry-errors-srv");
    let reference = ArtifactRef::parse(&registry.reference("policies:v1")).unwrap();
    let out = dir.0.join("out");
    compile_example(&dir.0, &out, false);
    publish(&out, &reference, &plain()).unwrap();
    let mut puller = Puller::new(reference.clone(), "node-z", &dir.0.join("cache"), &plain()).unwrap();
    let error = puller.pull().expect_err("no bundle for node-z");
    assert!(matches!(error, OciError::MissingNode(_)), "{error}");
    assert!(error.to_string().contains("node-a, node-b"), "{error}");

    // Nothing listens there any more.
    let mut registry = registry;
    registry.stop();
    let started = std::time::Instant::now();
    let error = publish(&out, &reference, &plain()).expect_err("publish to an unreachable registry");
    assert!(matches!(error, OciError::Registry(_)), "{error}");
    let error = puller.pull().expect_err("pull from an unreachable registry");
    assert!(matches!(error, OciError::Registry(_)), "{error}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "a refused connection fails at once");

    // A bundle edited by hand is refused before anything is sent.
    let file = out.join("node-a/maps/rules.txt");
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push('\n');
    std::fs::remove_file(&file).unwrap(); // a hard link the other node shares
    std::fs::write(&file, text).unwrap();
    let error = publish(&out, &reference, &plain()).expect_err("an edited bundle");
    assert!(matches!(error, OciError::Bundles(_)) && error.to_string().contains("rules.txt"), "{error}");
}
