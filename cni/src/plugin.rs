//! One invocation of the plugin: the CNI environment and stdin in, what to
//! print on stdout (or the error object) out.

use crate::error::{
    CniError, INVALID_ENVIRONMENT, INVALID_NETWORK_CONFIG, NOT_ENFORCED, TRY_AGAIN_LATER, UNKNOWN_CONTAINER,
};
use crate::netconf::{NetConf, SUPPORTED_VERSIONS};
use crate::protocol::{exchange, ExchangeError, Reply, Request, Sandbox};
use std::time::Duration;

/// The newest spec version this plugin speaks.
pub const CNI_VERSION: &str = "1.0.0";

/// How long `DEL` and `CHECK` wait for the agent: they change or read the
/// registry only, and need no apply before the answer of `CHECK`.
const SHORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The `CNI_*` variables a runtime sets.
#[derive(Clone, Debug, Default)]
pub struct Environment {
    /// `CNI_COMMAND`.
    pub command: Option<String>,
    /// `CNI_CONTAINERID`.
    pub container_id: Option<String>,
    /// `CNI_NETNS`.
    pub netns: Option<String>,
    /// `CNI_ARGS`: `K=V;K=V`.
    pub args: Option<String>,
}

impl Environment {
    /// This process's environment.
    pub fn from_process() -> Environment {
        let var = |name: &str| std::env::var(name).ok();
        Environment {
            command: var("CNI_COMMAND"),
            container_id: var("CNI_CONTAINERID"),
            netns: var("CNI_NETNS"),
            args: var("CNI_ARGS"),
        }
    }

    fn required<'a>(&self, value: &'a Option<String>, name: &str) -> Result<&'a str, CniError> {
        value
            .as_deref()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| CniError::new(INVALID_ENVIRONMENT, format!("`{name}` is not set")))
    }

    /// The value of `key` in `CNI_ARGS`.
    fn arg(&self, key: &str) -> Result<&str, CniError> {
        self.args
            .as_deref()
            .unwrap_or_default()
            .split(';')
            .find_map(|pair| pair.split_once('=').filter(|(k, _)| *k == key).map(|(_, v)| v))
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                CniError::new(INVALID_ENVIRONMENT, format!("`CNI_ARGS` has no `{key}`")).with_details(
                    "policyc-cni binds Kubernetes pods: the runtime must pass K8S_POD_NAMESPACE and K8S_POD_NAME",
                )
            })
    }
}

/// Runs the command of `env` with configuration `stdin`; what to print on
/// success.
pub fn run(env: &Environment, stdin: &str) -> Result<String, CniError> {
    let command = env.required(&env.command, "CNI_COMMAND")?;
    if command == "VERSION" {
        let versions = serde_json::json!({ "cniVersion": CNI_VERSION, "supportedVersions": SUPPORTED_VERSIONS });
        return Ok(versions.to_string());
    }
    let conf = NetConf::parse(stdin)?;
    let version = conf.cni_version.clone();
    let in_version = |e: CniError| e.in_version(&version);
    let container_id = env.required(&env.container_id, "CNI_CONTAINERID").map_err(in_version)?.to_string();
    match command {
        "ADD" => {
            let (interface, addresses) = conf.host_side()?;
            let sandbox = Sandbox {
                container_id,
                namespace: env.arg("K8S_POD_NAMESPACE").map_err(in_version)?.to_string(),
                pod: env.arg("K8S_POD_NAME").map_err(in_version)?.to_string(),
                netns: env.required(&env.netns, "CNI_NETNS").map_err(in_version)?.to_string(),
                interface,
                addresses,
            };
            let pod = sandbox.pod_name();
            match ask(&conf, &Request::Add(sandbox), conf.timeout, &pod)? {
                Reply::Done => Ok(conf.prev_result.map(|r| r.to_string()).unwrap_or_default()),
                Reply::Unknown => Err(not_enforced(&version, &pod, "the agent does not know the sandbox")),
                Reply::Failed { message } => Err(not_enforced(&version, &pod, &message)),
            }
        }
        "DEL" => match ask(&conf, &Request::Del { container_id }, SHORT_TIMEOUT, "")? {
            Reply::Done | Reply::Unknown => Ok(String::new()),
            Reply::Failed { message } => Err(CniError::new(NOT_ENFORCED, "the agent could not remove the sandbox")
                .with_details(message)
                .in_version(&version)),
        },
        "CHECK" => match ask(&conf, &Request::Check { container_id: container_id.clone() }, SHORT_TIMEOUT, "")? {
            Reply::Done => Ok(String::new()),
            Reply::Unknown => Err(CniError::new(
                UNKNOWN_CONTAINER,
                format!("sandbox `{container_id}` is not bound by the policyc agent"),
            )
            .in_version(&version)),
            Reply::Failed { message } => Err(CniError::new(NOT_ENFORCED, "the pod's policy is not in force")
                .with_details(message)
                .in_version(&version)),
        },
        other => Err(CniError::new(
            INVALID_ENVIRONMENT,
            format!("`CNI_COMMAND` `{other}` is not ADD, DEL, CHECK or VERSION"),
        )
        .in_version(&version)),
    }
}

fn not_enforced(version: &str, pod: &str, why: &str) -> CniError {
    CniError::new(NOT_ENFORCED, format!("policy of pod `{pod}` is not in force")).with_details(why).in_version(version)
}

/// Asks the agent; no agent is a transient error (the runtime retries).
fn ask(conf: &NetConf, request: &Request, timeout: Duration, pod: &str) -> Result<Reply, CniError> {
    let socket = conf.agent_socket.display();
    exchange(&conf.agent_socket, request, timeout).map_err(|e| {
        let error = match &e {
            ExchangeError::Unreachable(_) => {
                CniError::new(TRY_AGAIN_LATER, format!("no policyc agent answers on `{socket}`"))
            }
            ExchangeError::NoAnswer(_) if !pod.is_empty() => CniError::new(
                NOT_ENFORCED,
                format!("policy of pod `{pod}` not in force after {:.1} s", timeout.as_secs_f64()),
            ),
            ExchangeError::NoAnswer(_) => {
                CniError::new(TRY_AGAIN_LATER, format!("the policyc agent on `{socket}` did not answer"))
            }
            ExchangeError::BadReply(_) => {
                CniError::new(TRY_AGAIN_LATER, format!("the policyc agent on `{socket}` did not answer with a reply"))
            }
            ExchangeError::RequestTooLong(_) => {
                CniError::new(INVALID_NETWORK_CONFIG, "the sandbox is too large to send to the policyc agent")
            }
        };
        error.with_details(e.to_string()).in_version(&conf.cni_version)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(command: &str) -> Environment {
        Environment {
            command: Some(command.into()),
            container_id: Some("c1".into()),
            netns: Some("/var/run/netns/p".into()),
            args: Some("IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=api".into()),
        }
    }

    #[test]
    fn version_lists_the_supported_versions() {
        let out = run(&env("VERSION"), "").unwrap();
        assert_eq!(out, r#"{"cniVersion":"1.0.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0"]}"#);
    }

    #[test]
    fn no_agent_is_try_again_later_and_bad_environments_are_named() {
        let conf = r#"{"cniVersion":"1.0.0","agentSocket":"/nonexistent/policyc-test/agent.sock",
            "prevResult":{"interfaces":[{"name":"v1"}],"ips":[{"address":"10.200.0.9/32"}]}}"#;
        let e = run(&env("ADD"), conf).unwrap_err();
        assert_eq!(e.code, TRY_AGAIN_LATER);
        assert_eq!(e.msg, "no policyc agent answers on `/nonexistent/policyc-test/agent.sock`");
        let e = run(&Environment { args: Some("K8S_POD_NAME=api".into()), ..env("ADD") }, conf).unwrap_err();
        assert_eq!((e.code, e.msg.as_str()), (INVALID_ENVIRONMENT, "`CNI_ARGS` has no `K8S_POD_NAMESPACE`"));
        let e = run(&Environment { command: Some("GC".into()), ..env("ADD") }, conf).unwrap_err();
        assert_eq!(e.msg, "`CNI_COMMAND` `GC` is not ADD, DEL, CHECK or VERSION");
        assert_eq!(run(&env("DEL"), conf).unwrap_err().code, TRY_AGAIN_LATER);
    }
}
