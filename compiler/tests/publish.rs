//! `policyc publish` as a user runs it: compile the example, publish it to
//! a real registry on loopback (Debian's `docker-registry`, started here;
//! the test fails if it is missing), and read the digest from stdout. The
//! same bundles publish to the same digest, the second time uploading
//! nothing; a bad reference is a usage error (exit 2); an unreachable
//! registry and a directory without bundles are errors (exit 1); behind
//! TLS and htpasswd, `--ca-file` and `--registry-config` publish, and
//! wrong credentials are refused naming the registry and the file.

#[path = "../../runtime-loader/tests/support/registry.rs"]
#[allow(dead_code)] // the loader's tests use the rest
mod registry;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A directory removed when dropped (what the registry helper expects).
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
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

fn policyc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_policyc")).args(args).output().expect("run policyc")
}

fn compile(out: &Path) {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/policies");
    let run = policyc(&["compile", example, "--out", out.to_str().unwrap()]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
}

#[test]
fn publish_prints_the_same_digest_for_the_same_bundles() {
    let dir = TempDir::new("oc-publish");
    let mut registry = registry::Registry::start("oc-publish-registry");
    let reference = registry.reference("policies:v1");
    let (out, again) = (dir.0.join("out"), dir.0.join("again"));
    compile(&out);
    compile(&again);

    let first = policyc(&["publish", out.to_str().unwrap(), &reference, "--plain-http"]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let digest = String::from_utf8(first.stdout).unwrap();
    assert!(digest.starts_with("sha256:") && digest.trim_end().len() == 71, "{digest}");
    let second = policyc(&["publish", again.to_str().unwrap(), &reference, "--plain-http"]);
    assert!(second.status.success());
    assert_eq!(String::from_utf8(second.stdout).unwrap(), digest, "same bundles, same digest");
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(said.contains("0 blob(s) uploaded"), "{said}");

    let bad = policyc(&["publish", out.to_str().unwrap(), "registry.example/policies:v1"]);
    assert_eq!(bad.status.code(), Some(2), "{}", String::from_utf8_lossy(&bad.stderr));
    let empty = policyc(&["publish", dir.0.to_str().unwrap(), &reference, "--plain-http"]);
    assert_eq!(empty.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&empty.stderr).contains("holds no bundle"));
    registry.stop();
    let gone = policyc(&["publish", out.to_str().unwrap(), &reference, "--plain-http"]);
    assert_eq!(gone.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("error: registry:"),
        "{}",
        String::from_utf8_lossy(&gone.stderr)
    );
}

/// `--ca-file` and `--registry-config` as a CI job passes them: a registry
/// behind TLS (a test CA) that wants htpasswd credentials.
#[test]
fn publish_takes_a_private_ca_and_a_registry_config() {
    let dir = TempDir::new("sh-publish-auth");
    let guard = registry::Guard { htpasswd: Some(("ci".into(), "s3cret".into())), tls: true };
    let registry = registry::Registry::start_with("sh-publish-auth-registry", &guard);
    let reference = registry.reference("policies:v1");
    let out = dir.0.join("out");
    compile(&out);
    let ca = registry.ca_file.clone().unwrap();
    let config = |name: &str, auth: &str| {
        let path = dir.0.join(name);
        let json = format!(r#"{{"auths": {{"{}": {{"auth": "{auth}"}}}}}}"#, registry.address);
        std::fs::write(&path, json).unwrap();
        path.to_str().unwrap().to_string()
    };
    let (good, wrong) = (config("good.json", "Y2k6czNjcmV0"), config("wrong.json", "Y2k6d3Jvbmc="));
    let publish = |config: &str| {
        policyc(&[
            "publish",
            out.to_str().unwrap(),
            &reference,
            "--ca-file",
            ca.to_str().unwrap(),
            "--registry-config",
            config,
        ])
    };
    let ok = publish(&good);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stdout).starts_with("sha256:"));
    let refused = publish(&wrong);
    let said = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!("registry `{}` refused", registry.address)) && said.contains("wrong.json"),
        "{said}"
    );
}
