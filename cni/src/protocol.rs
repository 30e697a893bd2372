//! What `policyc-cni` and the node agent say to each other over the
//! agent's unix socket: one JSON request line, one JSON reply line.

use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Where the agent listens by default: `agent.sock` in its state directory.
pub const DEFAULT_SOCKET: &str = "/run/policyc/agent.sock";

/// A pod sandbox as its CNI `ADD` describes it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Sandbox {
    /// `CNI_CONTAINERID`: the sandbox; a pod re-created under the same
    /// name gets a new one.
    pub container_id: String,
    /// `K8S_POD_NAMESPACE`.
    pub namespace: String,
    /// `K8S_POD_NAME`.
    pub pod: String,
    /// `CNI_NETNS`.
    pub netns: String,
    /// The host side of the pod's interface.
    pub interface: String,
    /// The pod's addresses.
    pub addresses: Vec<IpAddr>,
}

impl Sandbox {
    /// `<namespace>/<pod>`.
    pub fn pod_name(&self) -> String {
        format!("{}/{}", self.namespace, self.pod)
    }
}

/// A request to the agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "lowercase")]
pub enum Request {
    /// Bind the sandbox and answer once its policy is in force.
    Add(Sandbox),
    /// Unbind the sandbox (nothing if it is not bound).
    Del {
        /// `CNI_CONTAINERID`.
        container_id: String,
    },
    /// Whether the sandbox is bound and in force.
    Check {
        /// `CNI_CONTAINERID`.
        container_id: String,
    },
}

/// The agent's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Reply {
    /// Done: in force (ADD, CHECK) or removed (DEL).
    Done,
    /// The sandbox is not bound (CHECK).
    Unknown,
    /// It could not be done.
    Failed {
        /// Why.
        message: String,
    },
}

/// Why a request got no answer.
#[derive(Debug)]
pub enum ExchangeError {
    /// Nothing listens on the socket (or it cannot be reached).
    Unreachable(std::io::Error),
    /// The agent did not answer in time, or the connection broke.
    NoAnswer(std::io::Error),
    /// The answer is not a reply.
    BadReply(String),
}

impl std::fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExchangeError::Unreachable(e) => write!(f, "no agent answers: {e}"),
            ExchangeError::NoAnswer(e) => write!(f, "the agent did not answer: {e}"),
            ExchangeError::BadReply(e) => write!(f, "the agent's answer does not parse: {e}"),
        }
    }
}

/// Sends `request` to the agent at `socket` and waits up to `timeout` for
/// its reply.
pub fn exchange(socket: &Path, request: &Request, timeout: Duration) -> Result<Reply, ExchangeError> {
    let mut stream = UnixStream::connect(socket).map_err(ExchangeError::Unreachable)?;
    stream.set_read_timeout(Some(timeout)).map_err(ExchangeError::NoAnswer)?;
    stream.set_write_timeout(Some(timeout)).map_err(ExchangeError::NoAnswer)?;
    let mut line = serde_json::to_string(request).map_err(|e| ExchangeError::BadReply(e.to_string()))?;
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(ExchangeError::NoAnswer)?;
    let mut answer = String::new();
    BufReader::new(&stream).read_line(&mut answer).map_err(ExchangeError::NoAnswer)?;
    if answer.is_empty() {
        return Err(ExchangeError::NoAnswer(std::io::ErrorKind::UnexpectedEof.into()));
    }
    serde_json::from_str(answer.trim_end()).map_err(|e| ExchangeError::BadReply(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_replies_are_tagged_json_lines() {
        let add = Request::Add(Sandbox {
            container_id: "c1".into(),
            namespace: "shop".into(),
            pod: "api".into(),
            netns: "/var/run/netns/x".into(),
            interface: "veth1".into(),
            addresses: vec!["10.200.1.2".parse().unwrap()],
        });
        let text = serde_json::to_string(&add).unwrap();
        assert!(text.starts_with(r#"{"command":"add","container_id":"c1""#), "{text}");
        assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), add);
        let failed = Reply::Failed { message: "x".into() };
        assert_eq!(serde_json::to_string(&failed).unwrap(), r#"{"status":"failed","message":"x"}"#);
        assert_eq!(serde_json::to_string(&Reply::Done).unwrap(), r#"{"status":"done"}"#);
    }
}
