//! `policyc-cni install`, `uninstall` and `mount-bpffs` as the DaemonSet's
//! init containers run them, on scratch directories.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BINARY: &str = env!("CARGO_BIN_EXE_policyc-cni");

fn cni(args: &[&str]) -> Output {
    Command::new(BINARY).args(args).env_clear().output().expect("run policyc-cni")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A scratch directory of its own, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("policyc-dp-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::fs::create_dir_all(dir.join("net.d")).unwrap();
        Scratch(dir)
    }
    fn path(&self, rest: &str) -> String {
        self.0.join(rest).to_string_lossy().into_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn plugin_types(conflist: &Path) -> Vec<String> {
    let value: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(conflist).unwrap()).unwrap();
    value["plugins"].as_array().unwrap().iter().map(|p| p["type"].as_str().unwrap().to_string()).collect()
}

#[test]
fn install_copies_the_binary_and_chains_it_after_the_network_plugin() {
    let dir = Scratch::new("install");
    let (bin, conf) = (dir.path("bin"), dir.path("net.d"));
    let install = ["install", "--bin-dir", &bin, "--conf-dir", &conf, "--agent-socket", "/run/policyc/agent.sock"];

    let out = cni(&install);
    assert_eq!(out.status.code(), Some(1), "no configuration yet: {}", text(&out.stderr));
    assert!(text(&out.stderr).contains("holds no network configuration"), "{}", text(&out.stderr));

    // The runtime reads the first file in name order: 10-ptp, not 99-other.
    let ptp = r#"{"cniVersion":"1.0.0","name":"pods","plugins":[{"type":"ptp","ipam":{"type":"host-local","ranges":[[{"subnet":"10.200.7.0/24"}]]}},{"type":"portmap","capabilities":{"portMappings":true}}]}"#;
    std::fs::write(dir.0.join("net.d/10-ptp.conflist"), ptp).unwrap();
    std::fs::write(dir.0.join("net.d/99-other.conflist"), ptp).unwrap();
    std::fs::write(dir.0.join("net.d/05-notes.txt"), "not a configuration").unwrap();
    let out = cni(&install);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let copied = dir.0.join("bin/policyc-cni");
    assert_eq!(std::fs::read(&copied).unwrap(), std::fs::read(BINARY).unwrap());
    assert_eq!(std::fs::metadata(&copied).unwrap().permissions().mode() & 0o777, 0o755);
    let conflist = dir.0.join("net.d/10-ptp.conflist");
    assert_eq!(plugin_types(&conflist), ["ptp", "portmap", "policyc-cni"]);
    assert_eq!(std::fs::read_to_string(dir.0.join("net.d/99-other.conflist")).unwrap(), ptp, "other files untouched");
    let chained = std::fs::read_to_string(&conflist).unwrap();
    let value: serde_json::Value = serde_json::from_str(&chained).unwrap();
    assert_eq!(
        value["plugins"][0]["ipam"]["ranges"][0][0]["subnet"], "10.200.7.0/24",
        "the network plugin's settings stay"
    );
    assert_eq!(value["plugins"][2]["agentSocket"], "/run/policyc/agent.sock");

    // The copied plugin is a working plugin.
    assert_eq!(text(&Command::new(&copied).arg("--version").output().unwrap().stdout).trim(), "policyc-cni 0.1.0");

    let out = cni(&install);
    assert!(text(&out.stdout).contains("(unchanged)"), "{}", text(&out.stdout));
    assert_eq!(std::fs::read_to_string(&conflist).unwrap(), chained, "a restarted init container changes nothing");
    let leftovers: Vec<_> = std::fs::read_dir(dir.0.join("net.d")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers.len(), 3, "no temporary file left: {leftovers:?}");

    let out = cni(&["uninstall", "--bin-dir", &bin, "--conf-dir", &conf]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(plugin_types(&conflist), ["ptp", "portmap"]);
    assert!(!copied.exists());
}

#[test]
fn a_single_plugin_configuration_becomes_a_list() {
    let dir = Scratch::new("single");
    let bridge = r#"{"cniVersion":"0.4.0","name":"k8s","type":"bridge","bridge":"cni0"}"#;
    std::fs::write(dir.0.join("net.d/10-bridge.conf"), bridge).unwrap();
    let out = cni(&["install", "--bin-dir", &dir.path("bin"), "--conf-dir", &dir.path("net.d")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!dir.0.join("net.d/10-bridge.conf").exists());
    assert_eq!(plugin_types(&dir.0.join("net.d/10-bridge.conflist")), ["bridge", "policyc-cni"]);

    // A list of the same stem beside it is never overwritten.
    std::fs::write(dir.0.join("net.d/05-macvlan.conf"), bridge).unwrap();
    std::fs::write(dir.0.join("net.d/05-macvlan.conflist"), "{}").unwrap();
    let out = cni(&["install", "--bin-dir", &dir.path("bin"), "--conf-dir", &dir.path("net.d")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("05-macvlan.conflist` exists beside it"), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(dir.0.join("net.d/05-macvlan.conflist")).unwrap(), "{}");
}

#[test]
fn bad_command_lines_and_configurations_are_named() {
    let out = cni(&["install", "--bogus"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).starts_with("policyc-cni: `install` takes no argument `--bogus`\nusage:"));
    let dir = Scratch::new("bad");
    std::fs::write(dir.0.join("net.d/10-x.conflist"), "{\"plugins\": 3}").unwrap();
    let out = cni(&["install", "--bin-dir", &dir.path("bin"), "--conf-dir", &dir.path("net.d")]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).trim(),
        format!(
            "policyc-cni: cannot chain to `{}`: `plugins` is not a list of plugins",
            dir.path("net.d/10-x.conflist")
        )
    );
}

/// Root: mounts bpffs in a mount namespace of its own (`unshare`), where
/// nothing of the host's mounts changes.
#[test]
fn mount_bpffs_mounts_where_none_is() {
    assert!(rustix::process::geteuid().is_root(), "mount-bpffs needs root (CAP_SYS_ADMIN): run the tests as root");
    let dir = Scratch::new("bpffs");
    let target = dir.path("bpf");
    let script = format!(
        "{BINARY} mount-bpffs {target} && {BINARY} mount-bpffs {target} && grep -c ' {target} bpf ' /proc/mounts"
    );
    let out =
        Command::new("unshare").args(["--mount", "--propagation", "private", "sh", "-c", &script]).output().unwrap();
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("bpffs mounted at `{target}`\nbpffs already mounted at `{target}`\n1\n"));
}
