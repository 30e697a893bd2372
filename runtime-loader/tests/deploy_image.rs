//! The node image (root, buildah): `cargo xtask image` builds the
//! repository's `Containerfile` (`FROM scratch`, `buildah build`) out of
//! the test profile's binaries (no release build, no base image pulled),
//! and inside it the binaries start and the init container's `policyc-cni
//! install` sets up a CNI directory mounted as the DaemonSet mounts the
//! node's.
//!
//! Fails, never skips, without root or buildah: `cargo xtask ci` installs
//! buildah.

use std::path::{Path, PathBuf};
use std::process::Command;

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("cannot run `{program}`: {e}"));
    assert!(
        out.status.success(),
        "`{program} {}` failed:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The image and the scratch directory of this test, removed when dropped
/// (also when an assertion failed).
struct Cleanup {
    image: String,
    containers: Vec<String>,
    dir: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for container in &self.containers {
            let _ = Command::new("buildah").args(["rm", container]).output();
        }
        let _ = Command::new("buildah").args(["rmi", "--force", &self.image]).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn the_image_builds_from_scratch_and_its_binaries_run_in_it() {
    assert!(
        std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m)).ok() == Some(0),
        "the image test needs root (buildah's storage): run it as root"
    );
    assert!(
        Command::new("buildah").arg("--version").output().is_ok_and(|o| o.status.success()),
        "buildah is missing: `apt-get install buildah` (`cargo xtask ci` installs it)"
    );
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let workspace = workspace.to_str().unwrap();
    let loader = env!("CARGO_BIN_EXE_policyc-loader");
    // The plugin binary of the same profile: this package's tests only
    // build this package's binaries; an up-to-date build is a link step.
    run(
        env!("CARGO"),
        &[
            "build",
            "-q",
            "--manifest-path",
            &format!("{workspace}/Cargo.toml"),
            "-p",
            "policyc-cni",
            "--bin",
            "policyc-cni",
        ],
    );
    let cni = Path::new(loader).with_file_name("policyc-cni");
    let cni = cni.to_str().unwrap();

    let image = format!("localhost/policyc-dp-test:{}", std::process::id());
    let dir = std::env::temp_dir().join(format!("policyc-dp-image-{}", std::process::id()));
    let mut cleanup = Cleanup { image: image.clone(), containers: Vec::new(), dir: dir.clone() };
    let started = std::time::Instant::now();
    // xtask itself builds the Containerfile, runs each binary's
    // `--version` in a container of the image, and removes an image whose
    // binaries cannot start.
    let printed = run(
        env!("CARGO"),
        &[
            "run",
            "-q",
            "--manifest-path",
            &format!("{workspace}/Cargo.toml"),
            "-p",
            "xtask",
            "--",
            "image",
            "--tag",
            &image,
            "--loader",
            loader,
            "--cni",
            cni,
        ],
    );
    assert!(printed.starts_with(&format!("{image} ")), "{printed}");
    eprintln!("image built in {:.1} s", started.elapsed().as_secs_f64());

    let inspect: serde_json::Value =
        serde_json::from_str(&run("buildah", &["inspect", "--type", "image", &image])).unwrap();
    let config = &inspect["OCIv1"]["config"];
    assert_eq!(config["Entrypoint"], serde_json::json!(["/usr/local/bin/policyc-loader"]));
    assert_eq!(config["Cmd"], serde_json::json!(["run"]));
    assert_eq!(config["User"], "0:0");
    for label in ["title", "description", "version", "revision", "created", "licenses"] {
        let value = config["Labels"][format!("org.opencontainers.image.{label}")].as_str().unwrap_or_default();
        assert!(!value.is_empty(), "label org.opencontainers.image.{label} is missing");
    }
    // The Containerfile's image, from no base image: its entrypoint and
    // environment, and its labels.
    let containerfile = std::fs::read_to_string(format!("{workspace}/Containerfile")).unwrap();
    assert!(containerfile.contains("\nFROM scratch\n") && !containerfile.contains("\nRUN "));
    let env: Vec<&str> = config["Env"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
    assert_eq!(env, ["PATH=/usr/local/bin", "TMPDIR=/tmp"]);
    assert_eq!(config["Labels"]["org.opencontainers.image.title"], "policyc");
    // Nothing but the two binaries, their libraries and the CA bundle:
    // one layer, from no base image.
    assert_eq!(inspect["OCIv1"]["rootfs"]["diff_ids"].as_array().unwrap().len(), 1);

    // The init container's command, against node directories mounted where
    // the DaemonSet mounts them.
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::create_dir_all(dir.join("net.d")).unwrap();
    let ptp = r#"{"cniVersion":"1.0.0","name":"pods","plugins":[{"type":"ptp","ipam":{"type":"host-local"}}]}"#;
    std::fs::write(dir.join("net.d/10-ptp.conflist"), ptp).unwrap();
    let container = run("buildah", &["from", &image]);
    cleanup.containers.push(container.clone());
    let bin_mount = format!("{}:/host/opt/cni/bin", dir.join("bin").display());
    let conf_mount = format!("{}:/host/etc/cni/net.d", dir.join("net.d").display());
    let out = run(
        "buildah",
        &[
            "run",
            "--isolation",
            "chroot",
            "-v",
            &bin_mount,
            "-v",
            &conf_mount,
            &container,
            "--",
            "/usr/local/bin/policyc-cni",
            "install",
            "--bin-dir",
            "/host/opt/cni/bin",
            "--conf-dir",
            "/host/etc/cni/net.d",
        ],
    );
    assert!(out.contains("chains it"), "{out}");
    let conflist: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("net.d/10-ptp.conflist")).unwrap()).unwrap();
    assert_eq!(conflist["plugins"][1]["type"], "policyc-cni");
    assert_eq!(std::fs::read(dir.join("bin/policyc-cni")).unwrap(), std::fs::read(cni).unwrap());
    let version = run(
        "buildah",
        &["run", "--isolation", "chroot", &container, "--", "/usr/local/bin/policyc-loader", "run", "--help"],
    );
    assert!(version.contains("--cluster"), "{version}");
}
