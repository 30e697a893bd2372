//! The `policyc-cni` binary as a runtime runs it: environment and stdin in,
//! a result or the spec's error object on stdout, the exit status.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn plugin(env: &[(&str, &str)], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_policyc-cni"))
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run policyc-cni");
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_string();
    // The plugin stops reading a stdin past its bound and exits: the rest
    // of the write then fails, as it does for a runtime.
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(stdin.as_bytes());
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

#[test]
fn version_answers_with_the_supported_versions() {
    let out = plugin(&[("CNI_COMMAND", "VERSION")], r#"{"cniVersion":"1.0.0"}"#);
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["cniVersion"], "1.0.0");
    assert_eq!(json["supportedVersions"], serde_json::json!(["0.3.0", "0.3.1", "0.4.0", "1.0.0"]));
}

#[test]
fn an_add_without_an_agent_fails_at_once_with_try_again_later() {
    let dir = std::env::temp_dir().join(format!("policyc-cni-binary-{}", std::process::id()));
    let socket = dir.join("agent.sock");
    let conf = serde_json::json!({
        "cniVersion": "1.0.0", "name": "pods", "type": "policyc-cni", "agentSocket": socket,
        "prevResult": {"cniVersion": "1.0.0", "interfaces": [{"name": "veth1"}, {"name": "eth0", "sandbox": "/run/netns/p"}],
                       "ips": [{"address": "10.200.0.7/32", "interface": 1}]}
    });
    let env = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_NETNS", "/run/netns/p"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_ARGS", "K8S_POD_NAMESPACE=shop;K8S_POD_NAME=api"),
    ];
    let started = std::time::Instant::now();
    let out = plugin(&env, &conf.to_string());
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "no agent: fails at once");
    assert!(!out.status.success());
    let error: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(error["code"], 11);
    assert_eq!(error["cniVersion"], "1.0.0");
    assert_eq!(error["msg"], format!("no policyc agent answers on `{}`", socket.display()));
    let out = plugin(&[("CNI_COMMAND", "ADD")], &conf.to_string());
    let error: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((error["code"].as_u64(), error["msg"].as_str()), (Some(4), Some("`CNI_CONTAINERID` is not set")));
}

#[test]
fn a_stdin_past_the_bound_is_refused_as_an_invalid_configuration() {
    let conf = format!(r#"{{"cniVersion":"1.0.0","pad":"{}"}}"#, "x".repeat(policyc_cni::netconf::MAX_NETCONF));
    let out = plugin(&[("CNI_COMMAND", "ADD"), ("CNI_CONTAINERID", "c1")], &conf);
    assert!(!out.status.success());
    let error: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(error["code"], 7);
    assert_eq!(error["msg"], "the network configuration on stdin is longer than 1048576 bytes");
}
