//! A registry that wants credentials, and one that serves too much: the
//! real `docker-registry` on loopback (no root needed), with htpasswd
//! authentication (bcrypt) behind TLS with a certificate of a CA the test
//! makes, and `publish` and `Puller` of `policyc-oci` against it.
//!
//! - credentials from a Docker config file (`auths` with a base64 `auth`)
//!   and the CA through `ca_file` (`--ca-file`): publish and pull work;
//! - without credentials, or with wrong ones, both are refused with an
//!   error naming the registry and where the credentials came from; an
//!   untrusted certificate is refused;
//! - a Docker credential helper (`credHelpers`, `credsStore`): a real
//!   executable on `PATH` speaking the docker-credential-helpers protocol
//!   (a shell script), which wins over `auths` as in docker;
//! - a manifest over 4 MiB is refused before it is read. The distribution
//!   registry will neither take nor serve one (its own 4 MiB bound), so a
//!   registry that does (another implementation, or whoever answers in
//!   its place) is played by a small HTTP server of the test: by tag only
//!   a HEAD goes out; by digest the GET's `Content-Length` is refused; a
//!   chunked body without one is read up to the bound and no further.

mod support;

use policyc::compile::{compile, CompileOptions, Inputs, Output};
use policyc_oci::artifact::digest_of;
use policyc_oci::{publish, ArtifactRef, ClientOptions, OciError, Puller};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::registry::{Guard, Registry};
use support::TempDir;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/policies");
const USER: &str = "ci";
const PASSWORD: &str = "s3cret";

fn compile_example(out: &Path) {
    let options = CompileOptions { output: Output::Directory(out.to_path_buf()), ..Default::default() };
    compile(Inputs::Paths(vec![PathBuf::from(EXAMPLE)]), &options).expect("the example compiles");
}

fn guarded(tls: bool) -> Guard {
    Guard { htpasswd: Some((USER.into(), PASSWORD.into())), tls }
}

/// A Docker config file `dir/NAME` holding `json`.
fn config(dir: &Path, name: &str, json: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, json).unwrap();
    path
}

fn options(registry: &Registry, config: &Path) -> ClientOptions {
    ClientOptions {
        plain_http: registry.ca_file.is_none(),
        ca_file: registry.ca_file.clone(),
        registry_config: Some(config.to_path_buf()),
        ..ClientOptions::default()
    }
}

fn assert_unauthorized(error: OciError, registry: &Registry, source: &str) {
    let text = error.to_string();
    assert!(matches!(error, OciError::Unauthorized(_)), "{text}");
    assert!(text.contains(&format!("registry `{}` refused", registry.address)), "{text}");
    assert!(text.contains(source), "`{source}` in: {text}");
}

#[test]
fn a_registry_behind_tls_and_htpasswd_takes_the_docker_config_credentials() {
    let dir = TempDir::new("sh-auth-tls");
    let registry = Registry::start_with("sh-auth-tls-srv", &guarded(true));
    let reference = ArtifactRef::parse(&registry.reference("policies:v1")).unwrap();
    let out = dir.0.join("out");
    compile_example(&out);
    let address = &registry.address;

    // base64("ci:s3cret"), as `docker login` writes it.
    let good = config(&dir.0, "good.json", &format!(r#"{{"auths": {{"{address}": {{"auth": "Y2k6czNjcmV0"}}}}}}"#));
    let published = publish(&out, &reference, &options(&registry, &good)).expect("publish with credentials");
    let mut puller =
        Puller::new(reference.clone(), "node-a", &dir.0.join("cache"), &options(&registry, &good)).unwrap();
    let pulled = puller.pull().expect("pull with credentials");
    assert_eq!(pulled.digest, published.digest);
    policyc_loader::bundle::Bundle::read(&pulled.dir).expect("the loader reads the pulled bundle");

    // No entry for the registry: refused, naming it and the file searched.
    let none = config(&dir.0, "none.json", r#"{"auths": {"other.example": {"auth": "Y2k6czNjcmV0"}}}"#);
    let error = publish(&out, &reference, &options(&registry, &none)).expect_err("publish without credentials");
    assert_unauthorized(error, &registry, &format!("no credentials for it in `{}`", none.display()));
    let mut anonymous =
        Puller::new(reference.clone(), "node-a", &dir.0.join("cache-anon"), &options(&registry, &none)).unwrap();
    let error = anonymous.pull().expect_err("pull without credentials");
    assert_unauthorized(error, &registry, "no credentials for it");
    assert!(
        !dir.0.join("cache-anon/bundles").exists()
            || std::fs::read_dir(dir.0.join("cache-anon/bundles")).unwrap().next().is_none()
    );

    // base64("ci:wrong"): refused, naming the entry they came from.
    let wrong = config(&dir.0, "wrong.json", &format!(r#"{{"auths": {{"{address}": {{"auth": "Y2k6d3Jvbmc="}}}}}}"#));
    let mut refused =
        Puller::new(reference.clone(), "node-a", &dir.0.join("cache-wrong"), &options(&registry, &wrong)).unwrap();
    assert_unauthorized(refused.pull().expect_err("wrong password"), &registry, &format!("`auths.{address}`"));

    // The registry's certificate is not trusted without the CA file.
    let untrusted = ClientOptions { ca_file: None, ..options(&registry, &good) };
    let error = publish(&out, &reference, &untrusted).expect_err("an untrusted certificate");
    assert!(
        matches!(error, OciError::Registry(_)) && error.to_string().to_lowercase().contains("certificate"),
        "{error}"
    );
}

/// A credential helper named `docker-credential-NAME`, in `bin`, which
/// answers `body` (a shell script's lines after reading the server
/// address into `$server`) and logs the addresses it was asked for.
fn helper(bin: &Path, name: &str, body: &str) {
    let log = bin.join(format!("{name}.log"));
    let script = format!(
        "#!/bin/sh\n# A Docker credential helper (docker-credential-helpers protocol).\n\
         [ \"$1\" = get ] || exit 2\nread -r server || true\nprintf '%s\\n' \"$server\" >> '{}'\n{body}\n",
        log.display()
    );
    let path = bin.join(format!("docker-credential-{name}"));
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn credential_helpers_are_run_as_docker_runs_them() {
    let dir = TempDir::new("sh-auth-helper");
    let registry = Registry::start_with("sh-auth-helper-srv", &guarded(false));
    let reference = ArtifactRef::parse(&registry.reference("policies:v1")).unwrap();
    let out = dir.0.join("out");
    compile_example(&out);
    let address = &registry.address;
    let bin = dir.0.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    helper(
        &bin,
        "sh-store",
        &format!(
            "if [ \"$server\" = '{address}' ]; then\n  printf '{{\"ServerURL\":\"%s\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}\\n' \"$server\"\n\
             else\n  echo 'credentials not found in native keychain'; exit 1\nfi"
        ),
    );
    helper(&bin, "sh-empty", "echo 'credentials not found in native keychain'\nexit 1");
    helper(&bin, "sh-broken", "echo 'not json'");
    // The helpers are found on PATH, as docker finds them. Only this test
    // of the binary runs programs by name (std serializes the environment
    // against its own readers).
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::set_var(
        "PATH",
        std::env::join_paths(std::iter::once(bin.clone()).chain(std::env::split_paths(&path))).unwrap(),
    );

    // `credHelpers` for this registry wins over a wrong `auths` entry.
    let helped = config(
        &dir.0,
        "helped.json",
        &format!(
            r#"{{"auths": {{"{address}": {{"auth": "Y2k6d3Jvbmc="}}}}, "credHelpers": {{"{address}": "sh-store"}}}}"#
        ),
    );
    let published = publish(&out, &reference, &options(&registry, &helped)).expect("publish through the helper");
    let mut puller =
        Puller::new(reference.clone(), "node-a", &dir.0.join("cache"), &options(&registry, &helped)).unwrap();
    assert_eq!(puller.pull().expect("pull through the helper").digest, published.digest);
    let asked = std::fs::read_to_string(bin.join("sh-store.log")).unwrap();
    assert!(asked.lines().count() >= 2 && asked.lines().all(|l| l == address), "the helper was asked for: {asked}");

    // `credsStore` for every registry, here with no credentials for this one.
    let store = config(&dir.0, "store.json", r#"{"credsStore": "sh-empty"}"#);
    let error = publish(&out, &reference, &options(&registry, &store)).expect_err("the store has nothing");
    assert_unauthorized(error, &registry, "`docker-credential-sh-empty` (`credsStore` of");

    // A helper that answers nonsense, and one that is not there.
    let broken = config(&dir.0, "broken.json", &format!(r#"{{"credHelpers": {{"{address}": "sh-broken"}}}}"#));
    let error = publish(&out, &reference, &options(&registry, &broken)).expect_err("a broken helper");
    assert!(
        matches!(error, OciError::Auth(_)) && error.to_string().contains("docker-credential-sh-broken get"),
        "{error}"
    );
    let missing = config(&dir.0, "missing.json", &format!(r#"{{"credHelpers": {{"{address}": "sh-missing"}}}}"#));
    let error = publish(&out, &reference, &options(&registry, &missing)).expect_err("a missing helper");
    assert!(
        matches!(error, OciError::Auth(_)) && error.to_string().contains("cannot run `docker-credential-sh-missing`"),
        "{error}"
    );
}

/// A registry that serves a manifest larger than it should: `big`
/// (and its digest) with a `Content-Length`, `chunked` without one. It
/// logs the requests and counts the body bytes it managed to send.
struct OversizedRegistry {
    address: String,
    requests: Arc<Mutex<Vec<String>>>,
    sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What the oversized registry serves: 4 MiB and a bit.
const OVERSIZED: usize = (4 << 20) + 4096;
/// The most it sends of the chunked body (a bounded loop).
const CHUNKED_LIMIT: u64 = 64 << 20;

impl OversizedRegistry {
    fn start(manifest: Vec<u8>) -> OversizedRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let (requests, sent, stop) = (Arc::default(), Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
        let (log, count, stopping) = (Arc::clone(&requests), Arc::clone(&sent), Arc::clone(&stop));
        let digest = digest_of(&manifest);
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => serve(stream, &manifest, &digest, &log, &count),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        OversizedRegistry { address, requests, sent, stop, thread: Some(thread) }
    }

    fn requests(&self, method_and_path: &str) -> usize {
        self.requests.lock().unwrap().iter().filter(|r| r.starts_with(method_and_path)).count()
    }
}

impl Drop for OversizedRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Answers one request (one per connection: `Connection: close`).
fn serve(stream: TcpStream, manifest: &[u8], digest: &str, log: &Mutex<Vec<String>>, sent: &AtomicU64) {
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    let _ = reader.read_line(&mut line);
    let request: Vec<&str> = line.split_whitespace().take(2).collect();
    let request = request.join(" ");
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
            break;
        }
    }
    log.lock().unwrap().push(request.clone());
    let mut stream = stream;
    let head = |status: &str, extra: &str| format!("HTTP/1.1 {status}\r\nConnection: close\r\n{extra}\r\n");
    let manifest_headers = format!(
        "Content-Type: application/vnd.oci.image.manifest.v1+json\r\nDocker-Content-Digest: {digest}\r\n\
         Content-Length: {}\r\n",
        manifest.len()
    );
    let (method, path) = request.split_once(' ').unwrap_or_default();
    let big = path == "/v2/policies/manifests/big" || path == format!("/v2/policies/manifests/{digest}");
    let _ = match (method, path) {
        (_, "/v2/") => stream.write_all(head("200 OK", "Content-Length: 0\r\n").as_bytes()),
        ("HEAD", _) if big => stream.write_all(head("200 OK", &manifest_headers).as_bytes()),
        ("GET", _) if big => {
            let _ = stream.write_all(head("200 OK", &manifest_headers).as_bytes());
            for piece in manifest.chunks(64 << 10) {
                if stream.write_all(piece).is_err() {
                    break;
                }
                sent.fetch_add(piece.len() as u64, Ordering::Relaxed);
            }
            Ok(())
        }
        // No digest and no length: the client must read the body to know.
        ("HEAD", "/v2/policies/manifests/chunked") => {
            stream.write_all(head("200 OK", "Content-Length: 0\r\n").as_bytes())
        }
        ("GET", "/v2/policies/manifests/chunked") => {
            let _ = stream.write_all(head("200 OK", "Transfer-Encoding: chunked\r\n").as_bytes());
            let piece = vec![b' '; 64 << 10];
            while sent.load(Ordering::Relaxed) < CHUNKED_LIMIT {
                let chunk = [format!("{:x}\r\n", piece.len()).as_bytes(), &piece, b"\r\n"].concat();
                if stream.write_all(&chunk).is_err() {
                    break;
                }
                sent.fetch_add(piece.len() as u64, Ordering::Relaxed);
            }
            stream.write_all(b"0\r\n\r\n")
        }
        _ => stream.write_all(head("404 Not Found", "Content-Length: 0\r\n").as_bytes()),
    };
}

#[test]
fn a_manifest_over_4_mib_is_refused_before_it_is_read() {
    let dir = TempDir::new("sh-big-manifest");
    // A manifest of the right shape, padded with an annotation.
    let padding = "x".repeat(OVERSIZED);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": policyc_oci::artifact::ARTIFACT_TYPE,
        "annotations": { "org.example.padding": padding },
    }))
    .unwrap();
    let registry = OversizedRegistry::start(manifest.clone());
    let plain = ClientOptions { plain_http: true, ..ClientOptions::default() };
    let cache = dir.0.join("cache");
    let refused = |reference: &str| {
        let reference = ArtifactRef::parse(&format!("oci://{}/policies{reference}", registry.address)).unwrap();
        let error = Puller::new(reference, "node-a", &cache, &plain).unwrap().pull().expect_err("a big manifest");
        assert!(matches!(error, OciError::Refused(_)), "{error}");
        assert!(error.to_string().contains("is larger than 4194304 bytes"), "{error}");
        error.to_string()
    };

    // By tag: the HEAD's length is enough; no GET goes out.
    let error = refused(":big");
    assert!(error.contains(&format!("sends {} bytes", manifest.len())), "{error}");
    assert_eq!(
        (registry.requests("HEAD /v2/policies/manifests/big"), registry.requests("GET /v2/policies/manifests")),
        (1, 0)
    );
    // By digest: the GET's `Content-Length` is refused before the body is read.
    refused(&format!("@{}", digest_of(&manifest)));
    assert_eq!(registry.requests("GET /v2/policies/manifests/sha256:"), 1);
    // No length stated: read up to the bound, then the connection is dropped.
    let before = registry.sent.load(Ordering::Relaxed);
    let error = refused(":chunked");
    assert!(error.contains("more than that"), "{error}");
    let chunked = registry.sent.load(Ordering::Relaxed) - before;
    assert!(chunked < CHUNKED_LIMIT / 2, "the client stopped reading: the registry sent {chunked} bytes");
    let cached = std::fs::read_dir(cache.join("blobs/sha256")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(cached, 0, "nothing cached");
}
