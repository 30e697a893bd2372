//! A real OCI registry on loopback for the tests: Debian's
//! `docker-registry` (the CNCF distribution registry), with its config and
//! storage in a temporary directory and its access log kept, killed and
//! removed on drop; optionally behind htpasswd authentication (a bcrypt
//! file made with apache2-utils' `htpasswd`) and TLS (a CA and a server
//! certificate for 127.0.0.1 made with `openssl`). A machine without these
//! tools fails the test with the command that installs them, never skips.

use super::TempDir;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// What guards the registry.
#[derive(Clone, Debug, Default)]
pub struct Guard {
    /// Basic authentication against an htpasswd file with this user and
    /// password.
    pub htpasswd: Option<(String, String)>,
    /// TLS with a certificate that a CA made for the test signed
    /// ([`Registry::ca_file`]).
    pub tls: bool,
}

pub struct Registry {
    child: Option<Child>,
    /// `127.0.0.1:PORT`.
    pub address: String,
    /// The CA that signed the registry's certificate, when it has TLS.
    pub ca_file: Option<PathBuf>,
    log: PathBuf,
    access_log: PathBuf,
    storage: PathBuf,
    _dir: TempDir,
}

impl Registry {
    pub fn start(tag: &str) -> Registry {
        Registry::start_with(tag, &Guard::default())
    }

    pub fn start_with(tag: &str, guard: &Guard) -> Registry {
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
        let mut text = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: {address}\n",
            storage.display()
        );
        let mut ca_file = None;
        if guard.tls {
            let (ca, certificate, key) = make_certificates(&dir.0);
            text.push_str(&format!("  tls:\n    certificate: {}\n    key: {}\n", certificate.display(), key.display()));
            ca_file = Some(ca);
        }
        if let Some((user, password)) = &guard.htpasswd {
            // bcrypt, the only scheme the registry takes.
            let file = dir.0.join("htpasswd");
            let line = tool("htpasswd", &["-Bbn", user, password], "apache2-utils");
            std::fs::write(&file, format!("{line}\n")).unwrap();
            text.push_str(&format!("auth:\n  htpasswd:\n    realm: policyc-test\n    path: {}\n", file.display()));
        }
        std::fs::write(&config, text).unwrap();
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
        let tls = guard.tls;
        let mut registry = Registry { child: Some(child), address, ca_file, log, access_log, storage, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !registry.answers(tls) {
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

    /// Whether the registry serves: `/v2/` answers (200, or 401 where it
    /// wants credentials); with TLS, the port takes connections (the
    /// registry listens only once it serves).
    fn answers(&self, tls: bool) -> bool {
        let Ok(mut stream) = TcpStream::connect(&self.address) else { return false };
        if tls {
            return true;
        }
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let _ = stream.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.1 401")
    }

    /// What the registry logged (errors).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Requests in the access log whose line holds `fragment` (e.g.
    /// `"GET /v2/policies/manifests/big`).
    pub fn requests(&self, fragment: &str) -> usize {
        let log = std::fs::read_to_string(&self.access_log).unwrap_or_default();
        log.lines().filter(|l| l.contains(fragment)).count()
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

/// Runs a tool the registry setup needs; its trimmed stdout.
fn tool(program: &str, args: &[&str], package: &str) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("the registry tests need `{program}` (apt-get install {package}): {e}"));
    assert!(out.status.success(), "`{program} {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A CA, and a server certificate for `127.0.0.1` it signed, in `dir`:
/// the CA file, the certificate and its key.
fn make_certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let (ca_key, ca, key, request, certificate, extensions) =
        (path("ca.key"), path("ca.pem"), path("server.key"), path("server.csr"), path("server.pem"), path("ext.cnf"));
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let openssl = |args: &[&str]| tool("openssl", args, "openssl");
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &["-keyout", &ca_key, "-out", &ca, "-days", "2", "-subj", "/CN=policyc test CA"],
            &["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"],
        ]
        .concat(),
    );
    openssl(&[&["req"][..], &ec, &["-keyout", &key, "-out", &request, "-subj", "/CN=127.0.0.1"]].concat());
    std::fs::write(
        &extensions,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &request,
        "-CA",
        &ca,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-out",
        &certificate,
        "-days",
        "2",
        "-extfile",
        &extensions,
    ]);
    (PathBuf::from(ca), PathBuf::from(certificate), PathBuf::from(key))
}
