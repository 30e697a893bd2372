//! Docker credential helpers (`docker-credential-NAME`, found on `PATH`),
//! run as docker, ORAS and Helm run them (the docker-credential-helpers
//! protocol): `docker-credential-NAME get` reads the registry's server
//! address on stdin and writes `{"ServerURL", "Username", "Secret"}` as
//! JSON on stdout; a helper without credentials for it exits non-zero
//! saying `credentials not found in native keychain`.
//!
//! A helper is a program of the user's: its run is bounded in time and in
//! what it may print, so a helper that hangs or floods cannot stall or
//! exhaust a publish or the node agent.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long a helper may take (a keychain may ask the desktop).
const TIMEOUT: Duration = Duration::from_secs(30);
/// The most a helper's answer is read.
const MAX_OUTPUT: u64 = 64 << 10;
/// What helpers print when they hold nothing for the server
/// (docker-credential-helpers' `credentials.errCredentialsNotFound`).
const NOT_FOUND: &str = "credentials not found in native keychain";
/// The user name by which a helper hands over an identity token rather
/// than a password (docker-credential-helpers, `credentials.go`).
const IDENTITY_TOKEN_USER: &str = "<token>";

#[derive(serde::Deserialize)]
struct Answer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// `docker-credential-NAME get` for `server`: the user name and secret, or
/// `None` where the helper holds none for it.
pub fn get(name: &str, server: &str) -> Result<Option<(String, String)>, String> {
    if name.is_empty() || name.contains(['/', '\0']) {
        return Err(format!("`{name}` is not a credential helper name (docker-credential-NAME on PATH)"));
    }
    let program = format!("docker-credential-{name}");
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run `{program}` (a credential helper, looked for on PATH): {e}"))?;
    // The address alone, no newline, as docker's client writes it; a
    // helper that exits without reading it is judged by its answer.
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(server.as_bytes());
    }
    let read = |pipe: Option<Box<dyn Read + Send>>| {
        let (send, receive) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(pipe) = pipe {
                let _ = pipe.take(MAX_OUTPUT).read_to_end(&mut text);
            }
            let _ = send.send(text);
        });
        receive
    };
    let stdout = read(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = read(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("`{program} get` for `{server}` did not answer within {} s", TIMEOUT.as_secs()));
            }
            Err(e) => return Err(format!("`{program} get`: {e}")),
        }
    };
    // The helper has exited; a child of its own still holding the pipes
    // could keep them open, so the readers are waited for a moment only.
    let text = |r: std::sync::mpsc::Receiver<Vec<u8>>| {
        String::from_utf8_lossy(&r.recv_timeout(Duration::from_secs(1)).unwrap_or_default()).trim().to_string()
    };
    let (stdout, stderr) = (text(stdout), text(stderr));
    if !status.success() {
        if stdout.contains(NOT_FOUND) || stderr.contains(NOT_FOUND) {
            return Ok(None);
        }
        let said = if stdout.is_empty() { stderr } else { stdout };
        return Err(format!("`{program} get` for `{server}` failed ({status}): {said}"));
    }
    let answer: Answer = serde_json::from_str(&stdout).map_err(|e| {
        format!("`{program} get` for `{server}` did not answer `{{\"Username\", \"Secret\"}}` JSON: {e}")
    })?;
    if answer.username == IDENTITY_TOKEN_USER {
        return Err(format!(
            "`{program} get` for `{server}` gave an identity token (an OAuth refresh token), which policyc does not \
             exchange: store a user name and password or a registry token for it"
        ));
    }
    if answer.username.is_empty() && answer.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some((answer.username, answer.secret)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_helper_name_is_a_plain_name_and_a_missing_helper_is_named() {
        assert!(get("../x", "r").unwrap_err().contains("not a credential helper name"));
        let error = get("policyc-test-no-such-helper", "r").unwrap_err();
        assert!(error.contains("docker-credential-policyc-test-no-such-helper"), "{error}");
    }
}
