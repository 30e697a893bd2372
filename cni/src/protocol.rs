//! What `policyc-cni` and the node agent say to each other over the
//! agent's unix socket: one JSON request line, one JSON reply line.

use serde::{Deserialize, Serialize};
use std::io::{ErrorKind, Read, Write};
use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// Where the agent listens by default: `agent.sock` in its state directory.
pub const DEFAULT_SOCKET: &str = "/run/policyc/agent.sock";

/// The longest line either side sends or reads (without its newline): a
/// sandbox is a few hundred bytes, a reply less.
pub const MAX_LINE: usize = 64 * 1024;

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
    /// The request is longer than [`MAX_LINE`] (its length).
    RequestTooLong(usize),
}

impl std::fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExchangeError::Unreachable(e) => write!(f, "no agent answers: {e}"),
            ExchangeError::NoAnswer(e) => write!(f, "the agent did not answer: {e}"),
            ExchangeError::BadReply(e) => write!(f, "the agent's answer does not parse: {e}"),
            ExchangeError::RequestTooLong(n) => {
                write!(f, "the request is {n} bytes long, more than the {MAX_LINE} bytes the agent reads")
            }
        }
    }
}

/// Sends `request` to the agent at `socket` and waits up to `timeout` in
/// all (not per read: an agent that trickles bytes is cut off as well) for
/// its reply line, reading at most [`MAX_LINE`] bytes of it.
pub fn exchange(socket: &Path, request: &Request, timeout: Duration) -> Result<Reply, ExchangeError> {
    let deadline = Instant::now() + timeout;
    let mut line = serde_json::to_string(request).map_err(|e| ExchangeError::BadReply(e.to_string()))?;
    if line.len() > MAX_LINE {
        return Err(ExchangeError::RequestTooLong(line.len()));
    }
    line.push('\n');
    let mut stream = UnixStream::connect(socket).map_err(ExchangeError::Unreachable)?;
    stream.set_write_timeout(Some(left(deadline)?)).map_err(ExchangeError::NoAnswer)?;
    stream.write_all(line.as_bytes()).map_err(ExchangeError::NoAnswer)?;
    let answer = read_line(&mut stream, deadline)?;
    let answer = std::str::from_utf8(&answer).map_err(|e| ExchangeError::BadReply(e.to_string()))?;
    serde_json::from_str(answer.trim_end()).map_err(|e| ExchangeError::BadReply(e.to_string()))
}

/// The time left until `deadline`, or a timeout error once it has passed.
fn left(deadline: Instant) -> Result<Duration, ExchangeError> {
    Some(deadline.saturating_duration_since(Instant::now()))
        .filter(|d| !d.is_zero())
        .ok_or_else(|| ExchangeError::NoAnswer(ErrorKind::TimedOut.into()))
}

/// One line (without its newline) from `stream` by `deadline`; at most
/// [`MAX_LINE`] bytes. The end of the stream ends the line too.
fn read_line(stream: &mut UnixStream, deadline: Instant) -> Result<Vec<u8>, ExchangeError> {
    let mut line = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        stream.set_read_timeout(Some(left(deadline)?)).map_err(ExchangeError::NoAnswer)?;
        let n = match stream.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(ExchangeError::NoAnswer(ErrorKind::TimedOut.into()))
            }
            Err(e) => return Err(ExchangeError::NoAnswer(e)),
        };
        if n == 0 {
            if line.is_empty() {
                return Err(ExchangeError::NoAnswer(ErrorKind::UnexpectedEof.into()));
            }
            return Ok(line);
        }
        let newline = chunk[..n].iter().position(|&b| b == b'\n');
        line.extend_from_slice(&chunk[..newline.unwrap_or(n)]);
        if line.len() > MAX_LINE {
            return Err(ExchangeError::BadReply(format!("the answer is longer than {MAX_LINE} bytes")));
        }
        if newline.is_some() {
            return Ok(line);
        }
    }
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

    /// A peer on a fresh socket that reads the request line and then does
    /// `answer` with the connection.
    fn peer(name: &str, answer: impl FnOnce(&mut UnixStream) + Send + 'static) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("policyc-cni-protocol-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("agent.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut byte = [0u8; 1];
            while stream.read(&mut byte).is_ok_and(|n| n == 1 && byte[0] != b'\n') {}
            answer(&mut stream);
        });
        path
    }

    fn check(id: &str) -> Request {
        Request::Check { container_id: id.into() }
    }

    #[test]
    fn an_answer_is_read_within_its_time_and_length_bounds() {
        let socket = peer("ok", |s| s.write_all(b"{\"status\":\"done\"}\n").unwrap());
        assert_eq!(exchange(&socket, &check("c1"), Duration::from_secs(5)).unwrap(), Reply::Done);
        // An agent that trickles a byte at a time is cut off at the
        // deadline in all, not each read's.
        let socket = peer("trickle", |s| {
            for _ in 0..40 {
                if s.write_all(b" ").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let started = Instant::now();
        let e = exchange(&socket, &check("c1"), Duration::from_millis(300)).unwrap_err();
        assert!(matches!(&e, ExchangeError::NoAnswer(io) if io.kind() == ErrorKind::TimedOut), "{e}");
        assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
        // An endless line is refused after its bound, not buffered.
        let socket = peer("endless", |s| while s.write_all(&[b'x'; 4096]).is_ok() {});
        let e = exchange(&socket, &check("c1"), Duration::from_secs(5)).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("the agent's answer does not parse: the answer is longer than {MAX_LINE} bytes")
        );
        let socket = peer("closed", |_| {});
        let e = exchange(&socket, &check("c1"), Duration::from_secs(5)).unwrap_err();
        assert!(matches!(&e, ExchangeError::NoAnswer(io) if io.kind() == ErrorKind::UnexpectedEof), "{e}");
        let e = exchange(&socket, &check(&"x".repeat(MAX_LINE)), Duration::from_secs(5)).unwrap_err();
        assert!(matches!(e, ExchangeError::RequestTooLong(n) if n > MAX_LINE), "{e}");
    }
}
