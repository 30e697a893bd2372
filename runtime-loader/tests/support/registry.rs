//! A real OCI registry on loopback for the tests: Debian's
//! `docker-registry` (the CNCF distribution registry), with its config and
//! storage in a temporary directory and its access log kept, killed and
//! removed on drop. A machine without it fails the test with the command
//! that installs it, never skips.

use super::TempDir;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

pub struct Registry {
    child: Option<Child>,
    /// `127.0.0.1:PORT`.
    pub address: String,
    log: PathBuf,
    access_log: PathBuf,
    storage: PathBuf,
    _dir: TempDir,
}

impl Registry {
    pub fn start(tag: &str) -> Registry {
        assert!(
            Path::new(REGISTRY_BIN).exists(),
            "the registry tests need {REGISTRY_BIN} (apt-get install docker-registry; `cargo xtask ci` installs it)"
        );
        let dir = TempDir::new(tag);
        // A free port: the kernel's pick, released for the registry.
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let address = format!("127.0.0.1:{port}");
        let storage = dir.0.join("storage");
        let config = dir.0.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: {address}\n",
                storage.display()
            ),
        )
        .unwrap();
        let log = dir.0.join("registry.log");
        // The access log (one line per request) goes to stdout.
        let access_log = dir.0.join("access.log");
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&access_log).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start docker-registry");
        let mut registry = Registry { child: Some(child), address, log, access_log, storage, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !registry.answers() {
            if let Some(status) = registry.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "docker-registry exited: {status}: {}",
                    std::fs::read_to_string(&registry.log).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "docker-registry did not answer on {} within 10 s", registry.address);
            std::thread::sleep(Duration::from_millis(20));
        }
        registry
    }

    fn answers(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(&self.address) else { return false };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let _ = stream.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.starts_with("HTTP/1.1 200")
    }

    /// `oci://127.0.0.1:PORT/REPOSITORY:TAG`.
    pub fn reference(&self, repository_and_tag: &str) -> String {
        format!("oci://{}/{repository_and_tag}", self.address)
    }

    /// Blob GETs the registry served (from its access log: one line per
    /// request), counted independently of the client's own count.
    /// The registry writes a request's log line after its response, so
    /// this waits (at most 2 s) for `at_least` lines before counting.
    pub fn blob_gets_at_least(&self, at_least: usize) -> usize {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        loop {
            let n = self.blob_gets();
            if n >= at_least || std::time::Instant::now() >= deadline {
                return n;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Blob GETs in the access log as it is now.
    pub fn blob_gets(&self) -> usize {
        let log = std::fs::read_to_string(&self.access_log).unwrap_or_default();
        log.lines().filter(|l| l.contains("\"GET /v2/") && l.contains("/blobs/sha256:")).count()
    }

    /// The file the registry serves the blob `sha256:HEX` from.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.storage.join("docker/registry/v2/blobs/sha256").join(&hex[..2]).join(hex).join("data")
    }

    /// Stops the registry (its address then refuses connections).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}
