//! The agent's unix socket (`agent.sock` in its state directory): one JSON
//! request line from `policyc-cni`, one JSON reply line
//! ([`policyc_cni::protocol`]). Each request is handed to the controller
//! with a channel for its reply, so an `ADD` is answered only once the
//! pod's policy is in force.

use policyc_cni::protocol::{Reply, Request};
use std::path::Path;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

/// The longest request line read: a sandbox is a few hundred bytes.
const MAX_REQUEST: u64 = 64 * 1024;

/// A request and where its reply goes.
pub type Call = (Request, oneshot::Sender<Reply>);

/// Binds the socket at `path`, replacing a stale one (a previous agent
/// killed before it could remove it).
pub fn bind(path: &Path) -> Result<UnixListener, String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot remove the stale socket `{}`: {e}", path.display())),
    }
    UnixListener::bind(path).map_err(|e| format!("cannot listen on `{}`: {e}", path.display()))
}

/// Accepts connections for ever, each served on a task of its own.
pub async fn serve(listener: UnixListener, calls: mpsc::Sender<Call>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of descriptors, say: try again a little later rather
            // than spin.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        tokio::spawn(connection(stream, calls.clone()));
    }
}

async fn connection(stream: UnixStream, calls: mpsc::Sender<Call>) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let read = BufReader::new(read.take(MAX_REQUEST)).read_line(&mut line).await;
    let reply = match read.map_err(|e| e.to_string()).and_then(|_| {
        serde_json::from_str::<Request>(line.trim_end()).map_err(|e| format!("request does not parse: {e}"))
    }) {
        Err(message) => Reply::Failed { message },
        Ok(request) => {
            let (tx, rx) = oneshot::channel();
            if calls.send((request, tx)).await.is_err() {
                Reply::Failed { message: "the agent is stopping".into() }
            } else {
                rx.await.unwrap_or(Reply::Failed { message: "the agent is stopping".into() })
            }
        }
    };
    let mut text = serde_json::to_string(&reply).unwrap_or_default();
    text.push('\n');
    // The plugin may have given up waiting: nothing to do then.
    let _ = write.write_all(text.as_bytes()).await;
}
