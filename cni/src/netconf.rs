//! The network configuration a runtime gives a plugin on stdin, as far as
//! `policyc-cni` reads it: the spec version, `prevResult` (the network
//! plugin's result: interfaces and addresses), and this plugin's own keys
//! `agentSocket` and `timeoutSeconds`.

use crate::error::{CniError, DECODING_FAILURE, INCOMPATIBLE_VERSION, INVALID_NETWORK_CONFIG, IO_FAILURE};
use crate::protocol::DEFAULT_SOCKET;
use serde::Deserialize;
use std::io::Read;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The spec versions this plugin speaks (its results are its
/// `prevResult`, passed on unchanged, so the versions whose result has
/// `interfaces` with `sandbox` and `ips` with `address`).
pub const SUPPORTED_VERSIONS: [&str; 4] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0"];

/// How long an `ADD` waits for the agent by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The most of stdin a plugin reads: a network configuration with the
/// network plugin's result is a few KiB; anything past this is refused,
/// not buffered.
pub const MAX_NETCONF: usize = 1024 * 1024;

/// Reads the network configuration from `input` (the plugin's stdin), at
/// most [`MAX_NETCONF`] bytes of it; more is an invalid configuration (CNI
/// error 7), bytes that are not UTF-8 a decoding failure (6), a failing
/// read an I/O failure (5).
pub fn read_netconf(input: impl Read) -> std::result::Result<String, CniError> {
    let limit = u64::try_from(MAX_NETCONF).unwrap_or(u64::MAX) + 1;
    let mut bytes = Vec::new();
    input.take(limit).read_to_end(&mut bytes).map_err(|e| {
        CniError::new(IO_FAILURE, "cannot read the network configuration on stdin").with_details(e.to_string())
    })?;
    if bytes.len() > MAX_NETCONF {
        return Err(CniError::new(
            INVALID_NETWORK_CONFIG,
            format!("the network configuration on stdin is longer than {MAX_NETCONF} bytes"),
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        CniError::new(DECODING_FAILURE, "the network configuration is not UTF-8").with_details(e.to_string())
    })
}

/// The longest Linux interface name (`IFNAMSIZ` less its terminating NUL).
pub const MAX_INTERFACE_NAME: usize = 15;

/// The configuration, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct NetConf {
    /// `cniVersion`.
    pub cni_version: String,
    /// The agent's socket (`agentSocket`, else [`DEFAULT_SOCKET`]).
    pub agent_socket: PathBuf,
    /// How long an `ADD` waits for the policy (`timeoutSeconds`).
    pub timeout: Duration,
    /// `prevResult`, as given (absent on `DEL` from some runtimes).
    pub prev_result: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    cni_version: Option<String>,
    agent_socket: Option<PathBuf>,
    timeout_seconds: Option<f64>,
    prev_result: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Interface {
    name: String,
    #[serde(default)]
    sandbox: Option<String>,
}

#[derive(Deserialize)]
struct Ip {
    address: String,
}

#[derive(Deserialize)]
struct Result {
    #[serde(default)]
    interfaces: Vec<Interface>,
    #[serde(default)]
    ips: Vec<Ip>,
}

impl NetConf {
    /// Parses and checks the configuration `text`.
    pub fn parse(text: &str) -> std::result::Result<NetConf, CniError> {
        let raw: Raw = serde_json::from_str(text).map_err(|e| {
            CniError::new(DECODING_FAILURE, "the network configuration is not valid JSON").with_details(e.to_string())
        })?;
        let cni_version = raw
            .cni_version
            .ok_or_else(|| CniError::new(INVALID_NETWORK_CONFIG, "the network configuration has no `cniVersion`"))?;
        if !SUPPORTED_VERSIONS.contains(&cni_version.as_str()) {
            return Err(CniError::new(
                INCOMPATIBLE_VERSION,
                format!("cniVersion `{cni_version}` is not supported (supported: {})", SUPPORTED_VERSIONS.join(", ")),
            ));
        }
        let timeout = match raw.timeout_seconds {
            None => DEFAULT_TIMEOUT,
            Some(s) => Duration::try_from_secs_f64(s).ok().filter(|d| !d.is_zero()).ok_or_else(|| {
                CniError::new(
                    INVALID_NETWORK_CONFIG,
                    format!("`timeoutSeconds` `{s}` is not a positive number of seconds"),
                )
                .in_version(&cni_version)
            })?,
        };
        Ok(NetConf {
            agent_socket: raw.agent_socket.unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET)),
            timeout,
            prev_result: raw.prev_result,
            cni_version,
        })
    }

    /// From `prevResult`: the host side of the pod's interface (the one
    /// without `sandbox`) and the pod's addresses (prefix lengths dropped).
    pub fn host_side(&self) -> std::result::Result<(String, Vec<IpAddr>), CniError> {
        let invalid = |msg: String| CniError::new(INVALID_NETWORK_CONFIG, msg).in_version(&self.cni_version);
        let prev = self.prev_result.clone().ok_or_else(|| {
            invalid(
                "no `prevResult`: policyc-cni is a chained plugin and must follow the network plugin in the conflist"
                    .into(),
            )
        })?;
        let result: Result =
            serde_json::from_value(prev).map_err(|e| invalid(format!("`prevResult` does not parse: {e}")))?;
        let host =
            result.interfaces.iter().find(|i| i.sandbox.as_deref().is_none_or(str::is_empty)).ok_or_else(|| {
                invalid("`prevResult.interfaces` has no host-side interface (one without `sandbox`)".into())
            })?;
        // Linux's rule for interface names (`dev_valid_name`): what the
        // agent attaches to must be a name the kernel could have given.
        let name = &host.name;
        if name.is_empty()
            || name.len() > MAX_INTERFACE_NAME
            || name == "."
            || name == ".."
            || name.chars().any(|c| c == '/' || c == ':' || c.is_whitespace())
        {
            return Err(invalid(format!(
                "`prevResult.interfaces` names host-side interface `{name}`, not a Linux interface name"
            )));
        }
        let mut addresses = Vec::new();
        for (i, ip) in result.ips.iter().enumerate() {
            let address = ip.address.split('/').next().unwrap_or_default();
            let parsed: IpAddr = address
                .parse()
                .map_err(|_| invalid(format!("`prevResult.ips[{i}].address` `{}` is not an address", ip.address)))?;
            addresses.push(parsed);
        }
        if addresses.is_empty() {
            return Err(invalid("`prevResult.ips` is empty: the pod has no address to bind".into()));
        }
        Ok((host.name.clone(), addresses))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PTP_RESULT: &str = r#"{"cniVersion":"1.0.0","interfaces":[{"name":"veth7d9c","mac":"3a:1b:00:00:00:01"},
        {"name":"eth0","mac":"3a:1b:00:00:00:02","sandbox":"/var/run/netns/p1"}],
        "ips":[{"address":"10.200.3.4/24","gateway":"10.200.3.1","interface":1}],"dns":{}}"#;

    #[test]
    fn finds_the_host_side_and_addresses_in_prev_result() {
        let text = format!(
            r#"{{"cniVersion":"1.0.0","name":"pods","type":"policyc-cni","agentSocket":"/tmp/a.sock","prevResult":{PTP_RESULT}}}"#
        );
        let conf = NetConf::parse(&text).unwrap();
        assert_eq!(conf.agent_socket, PathBuf::from("/tmp/a.sock"));
        assert_eq!(conf.timeout, DEFAULT_TIMEOUT);
        let (host, addresses) = conf.host_side().unwrap();
        assert_eq!(host, "veth7d9c");
        assert_eq!(addresses, ["10.200.3.4".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn refuses_what_it_cannot_use_with_the_spec_codes() {
        let e = NetConf::parse(r#"{"cniVersion":"9.9.9"}"#).unwrap_err();
        assert_eq!(
            (e.code, e.msg.as_str()),
            (1, "cniVersion `9.9.9` is not supported (supported: 0.3.0, 0.3.1, 0.4.0, 1.0.0)")
        );
        assert_eq!(NetConf::parse("{").unwrap_err().code, 6);
        assert_eq!(NetConf::parse(r#"{"cniVersion":"1.0.0","timeoutSeconds":0}"#).unwrap_err().code, 7);
        let no_prev = NetConf::parse(r#"{"cniVersion":"1.0.0"}"#).unwrap();
        let e = no_prev.host_side().unwrap_err();
        assert_eq!(e.code, 7);
        assert!(e.msg.contains("chained plugin"), "{}", e.msg);
        let sandboxed_only =
            r#"{"cniVersion":"1.0.0","prevResult":{"interfaces":[{"name":"eth0","sandbox":"/n"}],"ips":[]}}"#;
        let bad_name = r#"{"cniVersion":"1.0.0","prevResult":{"interfaces":[{"name":"../eth0"}],"ips":[]}}"#;
        let e = NetConf::parse(bad_name).unwrap().host_side().unwrap_err();
        assert_eq!(e.msg, "`prevResult.interfaces` names host-side interface `../eth0`, not a Linux interface name");
        assert!(NetConf::parse(sandboxed_only)
            .unwrap()
            .host_side()
            .unwrap_err()
            .msg
            .contains("no host-side interface"));
    }
}
