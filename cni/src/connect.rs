//! Connecting to the agent's socket within a deadline.
//!
//! A blocking `connect(2)` on a unix stream socket waits, with no bound,
//! while the listener's backlog is full (an agent that stopped accepting
//! but still holds the socket). Non-blocking, the kernel refuses at once
//! with `EAGAIN` instead (unix sockets never complete a connect later, so
//! there is nothing to poll for): the plugin tries again every few
//! milliseconds until the deadline, then fails ADD so that the runtime
//! retries.

use rustix::io::Errno;
use rustix::net::{connect, socket_with, AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
use std::io;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long to wait between two tries while the backlog is full.
const RETRY: Duration = Duration::from_millis(5);

/// A stream connected to `socket` by `deadline`, in blocking mode; a
/// timeout is `ErrorKind::TimedOut`, any other failure (no such socket,
/// nobody listening) comes at once.
pub fn connect_by(socket: &Path, deadline: Instant) -> io::Result<UnixStream> {
    let address = SocketAddrUnix::new(socket)?;
    loop {
        let fd =
            socket_with(AddressFamily::UNIX, SocketType::STREAM, SocketFlags::NONBLOCK | SocketFlags::CLOEXEC, None)?;
        match connect(&fd, &address) {
            Ok(()) => {
                let stream = UnixStream::from(fd);
                stream.set_nonblocking(false)?;
                return Ok(stream);
            }
            Err(Errno::AGAIN | Errno::INTR) if Instant::now() + RETRY < deadline => std::thread::sleep(RETRY),
            Err(Errno::AGAIN) => {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "the agent's socket accepts no connection"))
            }
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    fn socket_path(tag: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("policyc-cni-connect-{tag}-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        path
    }

    #[test]
    fn connects_to_a_listener_and_fails_at_once_without_one() {
        let path = socket_path("ok");
        let listener = UnixListener::bind(&path).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let stream = connect_by(&path, deadline).unwrap();
        assert!(listener.accept().is_ok());
        drop(stream);
        drop(listener);
        let started = Instant::now();
        let err = connect_by(&path, deadline).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
        assert!(started.elapsed() < Duration::from_secs(1));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_full_backlog_times_out_at_the_deadline() {
        let path = socket_path("full");
        // A listener that never accepts: its backlog fills.
        let listener = UnixListener::bind(&path).unwrap();
        let mut held = Vec::new();
        let started = Instant::now();
        let err = loop {
            match connect_by(&path, Instant::now() + Duration::from_millis(200)) {
                Ok(stream) => held.push(stream),
                Err(e) => break e,
            }
            assert!(held.len() < 100_000, "the backlog never filled");
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        assert!(started.elapsed() < Duration::from_secs(30));
        drop(listener);
        let _ = std::fs::remove_file(&path);
    }
}
