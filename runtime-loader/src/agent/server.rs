//! The agent's unix socket (`agent.sock` in its state directory): one JSON
//! request line from `policyc-cni`, one JSON reply line
//! ([`policyc_cni::protocol`]). Each request is handed to the controller
//! with a channel for its reply, so an `ADD` is answered only once the
//! pod's policy is in force.

use policyc_cni::protocol::{Reply, Request, MAX_LINE};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, Semaphore};

/// How long a plugin has to send its request line, and the agent to write
/// its reply: a plugin that connects and says nothing is dropped.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections served at once; more wait in the listen backlog (each
/// plugin waits at most its own timeout). A node starts pods by the tens,
/// not the thousands.
const MAX_CONNECTIONS: usize = 256;

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

/// Accepts connections for ever, each served on a task of its own, at most
/// [`MAX_CONNECTIONS`] at a time.
pub async fn serve(listener: UnixListener, calls: mpsc::Sender<Call>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let Ok((stream, _)) = listener.accept().await else {
            // Out of descriptors, say: try again a little later rather
            // than spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let calls = calls.clone();
        tokio::spawn(async move {
            connection(stream, calls).await;
            drop(slot);
        });
    }
}

/// Reads the request line: at most [`MAX_LINE`] bytes and a newline,
/// within [`IO_TIMEOUT`].
async fn request<R: tokio::io::AsyncRead + Unpin>(read: R) -> Result<Request, String> {
    let limit = u64::try_from(MAX_LINE).unwrap_or(u64::MAX) + 1;
    let mut line = Vec::new();
    let mut reader = BufReader::new(read.take(limit));
    match tokio::time::timeout(IO_TIMEOUT, reader.read_until(b'\n', &mut line)).await {
        Err(_) => return Err(format!("no request line within {IO_TIMEOUT:?}")),
        Ok(Err(e)) => return Err(format!("cannot read the request: {e}")),
        Ok(Ok(_)) => {}
    }
    if line.last() == Some(&b'\n') {
        line.pop();
    } else if line.len() > MAX_LINE {
        return Err(format!("the request is longer than {MAX_LINE} bytes"));
    }
    let text = std::str::from_utf8(&line).map_err(|e| format!("request is not UTF-8: {e}"))?;
    serde_json::from_str::<Request>(text.trim_end()).map_err(|e| format!("request does not parse: {e}"))
}

async fn connection(stream: UnixStream, calls: mpsc::Sender<Call>) {
    let (mut read, mut write) = stream.into_split();
    let reply = match request(&mut read).await {
        Err(message) => Reply::Failed { message },
        Ok(request) => {
            let (tx, rx) = oneshot::channel();
            if calls.send((request, tx)).await.is_err() {
                Reply::Failed { message: "the agent is stopping".into() }
            } else {
                // A plugin that gave up (its timeout) closes the
                // connection: the reply channel is dropped with this task,
                // so the controller stops keeping the request.
                let mut byte = [0u8; 1];
                tokio::select! {
                    reply = rx => reply.unwrap_or(Reply::Failed { message: "the agent is stopping".into() }),
                    _ = read.read(&mut byte) => return,
                }
            }
        }
    };
    let mut text = serde_json::to_string(&reply).unwrap_or_default();
    text.push('\n');
    // The plugin may have given up waiting: nothing to do then.
    let _ = tokio::time::timeout(IO_TIMEOUT, write.write_all(text.as_bytes())).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serves one connection of a socket pair; the plugin's end, the
    /// controller's end of the calls, and the task.
    fn serve_one() -> (UnixStream, mpsc::Receiver<Call>, tokio::task::JoinHandle<()>) {
        let (plugin, agent) = UnixStream::pair().unwrap();
        let (calls, received) = mpsc::channel(4);
        (plugin, received, tokio::spawn(connection(agent, calls)))
    }

    async fn reply(plugin: &mut UnixStream) -> Reply {
        let mut text = String::new();
        plugin.read_to_string(&mut text).await.unwrap();
        serde_json::from_str(text.trim_end()).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_plugin_is_dropped_after_the_timeout() {
        let (mut plugin, _calls, task) = serve_one();
        let failed = Reply::Failed { message: "no request line within 10s".into() };
        assert_eq!(reply(&mut plugin).await, failed);
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_past_the_bound_is_refused_unread() {
        let (mut plugin, _calls, task) = serve_one();
        plugin.write_all(&vec![b' '; MAX_LINE + 1]).await.unwrap();
        let failed = Reply::Failed { message: format!("the request is longer than {MAX_LINE} bytes") };
        assert_eq!(reply(&mut plugin).await, failed);
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_plugin_that_gives_up_closes_its_request() {
        let (mut plugin, mut calls, task) = serve_one();
        plugin.write_all(b"{\"command\":\"check\",\"container_id\":\"c1\"}\n").await.unwrap();
        let (request, answer) = calls.recv().await.unwrap();
        assert_eq!(request, Request::Check { container_id: "c1".into() });
        assert!(!answer.is_closed());
        drop(plugin);
        task.await.unwrap();
        assert!(answer.is_closed(), "the controller sees the plugin gone");
    }
}
