//! `--metrics-address`: `/metrics` in the Prometheus text exposition
//! format (<https://prometheus.io/docs/instrumenting/exposition_formats/>),
//! `/healthz` (the agent runs) and `/readyz` (the first bundle is in force
//! and the first cluster list bound). A handful of series and one plain
//! HTTP/1.1 answer per connection do not earn a metrics or HTTP crate.

use super::controller::Health;
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// A latency histogram with fixed buckets: its memory does not grow.
#[derive(Clone, Debug, Default)]
pub struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    /// Counts one observation of `seconds`.
    pub fn observe(&mut self, seconds: f64) {
        for (bound, count) in BUCKETS.iter().zip(&mut self.counts) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (bound, count) in BUCKETS.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"+Inf\"}} {}\n{name}_sum {}\n{name}_count {}",
            self.count, self.sum, self.count
        );
    }
}

/// The metrics as Prometheus text.
pub fn render(health: &Health) -> String {
    let mut out = String::new();
    let s = &health.status;
    let gauge = |out: &mut String, name: &str, help: &str, value: String| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
    };
    let _ = writeln!(
        out,
        "# HELP policyc_agent_applies_total Applies that changed the node.\n# TYPE policyc_agent_applies_total counter\npolicyc_agent_applies_total {}",
        health.applies
    );
    let _ = writeln!(
        out,
        "# HELP policyc_agent_apply_failures_total Applies that failed.\n# TYPE policyc_agent_apply_failures_total counter\npolicyc_agent_apply_failures_total {}",
        health.failed_applies
    );
    health.apply_seconds.render("policyc_agent_apply_duration_seconds", "Time of each bind and apply.", &mut out);
    health.add_seconds.render(
        "policyc_agent_cni_add_to_enforced_seconds",
        "Time from a CNI ADD to its pod's policy in force.",
        &mut out,
    );
    gauge(&mut out, "policyc_agent_generation", "Active generation of the maps.", s.generation.to_string());
    gauge(&mut out, "policyc_agent_endpoints", "Local endpoints bound.", s.endpoints.to_string());
    gauge(&mut out, "policyc_agent_endpoints_held", "Local pods held default-deny.", s.held.len().to_string());
    gauge(
        &mut out,
        "policyc_agent_identities_computed_on_node",
        "Identities computed on the node (label sets the bundle does not know).",
        s.computed.len().to_string(),
    );
    let _ = writeln!(out, "# HELP policyc_agent_computed_identity_info An identity computed on the node, not in the reviewed bundle.\n# TYPE policyc_agent_computed_identity_info gauge");
    for c in &s.computed {
        let labels = c.labels.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
        let _ =
            writeln!(out, "policyc_agent_computed_identity_info{{identity=\"{}\",labels=\"{labels}\"}} 1", c.identity);
    }
    let _ = writeln!(
        out,
        "# HELP policyc_agent_bundle_info The bundle in force.\n# TYPE policyc_agent_bundle_info gauge\npolicyc_agent_bundle_info{{digest=\"{}\",binding=\"{}\",node=\"{}\"}} 1",
        s.bundle_hash, s.binding_hash, s.node
    );
    if let Some(a) = &s.artifact {
        let _ = writeln!(
            out,
            "# HELP policyc_agent_artifact_info The OCI artifact whose bundle is in force.\n# TYPE policyc_agent_artifact_info gauge\npolicyc_agent_artifact_info{{digest=\"{}\",reference=\"{}\"}} 1",
            a.digest,
            a.reference.replace('\\', "\\\\").replace('"', "\\\"")
        );
    }
    let pulls = health.pulls.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    for (name, help, value) in [
        ("policyc_agent_artifact_pulls_total", "Pulls of the artifact that succeeded.", pulls.pulls),
        ("policyc_agent_artifact_pull_failures_total", "Pulls of the artifact that failed.", pulls.failures),
        ("policyc_agent_artifact_blobs_fetched_total", "Manifests and blobs fetched from the registry.", pulls.fetched),
        ("policyc_agent_artifact_bytes_fetched_total", "Bytes of the blobs fetched.", pulls.bytes),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
    }
    out
}

/// Serves `/metrics`, `/healthz` and `/readyz` for ever.
pub async fn serve(listener: TcpListener, health: Arc<Mutex<Health>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of descriptors, say: try again a little later rather
            // than spin.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        tokio::spawn(answer(stream, health.clone()));
    }
}

async fn answer(mut stream: TcpStream, health: Arc<Mutex<Health>>) {
    // The request head, whole: a client may send it in several writes,
    // and closing with a part unread would reset the connection.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    let head = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        true
    })
    .await;
    if head != Ok(true) {
        return;
    }
    let request = String::from_utf8_lossy(&buf);
    let path = request.split_whitespace().nth(1).unwrap_or("");
    let (status, body) = {
        let health = health.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match path {
            "/metrics" => ("200 OK", render(&health)),
            "/healthz" => ("200 OK", "ok\n".to_string()),
            "/readyz" if health.ready => ("200 OK", "ready\n".to_string()),
            "/readyz" => {
                ("503 Service Unavailable", "not ready: no bundle in force or no cluster list bound yet\n".to_string())
            }
            _ => ("404 Not Found", "not found\n".to_string()),
        }
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_a_request_sent_in_pieces() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = listener.local_addr().unwrap();
            let health = Arc::new(Mutex::new(Health::default()));
            tokio::spawn(serve(listener, health.clone()));
            let get = |pieces: &'static [&'static str]| async move {
                let mut stream = TcpStream::connect(address).await.unwrap();
                for piece in pieces {
                    stream.write_all(piece.as_bytes()).await.unwrap();
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                let mut answer = String::new();
                stream.read_to_string(&mut answer).await.unwrap();
                answer
            };
            let answer = get(&["GET /rea", "dyz HTTP/1.1\r\n", "Host: x\r\n\r\n"]).await;
            assert!(answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{answer}");
            health.lock().unwrap().ready = true;
            assert!(get(&["GET /readyz HTTP/1.1\r\n\r\n"]).await.starts_with("HTTP/1.1 200 OK\r\n"));
            assert!(get(&["GET /healthz HTTP/1.1\r\n\r\n"]).await.ends_with("\r\n\r\nok\n"));
            assert!(get(&["GET /metrics HTTP/1.1\r\n\r\n"]).await.contains("policyc_agent_generation 0\n"));
        });
    }

    #[test]
    fn renders_histograms_cumulatively_and_the_digest_as_a_label() {
        let mut health = Health::default();
        health.add_seconds.observe(0.004);
        health.add_seconds.observe(0.2);
        health.status.bundle_hash = "sha256:ab".into();
        let text = render(&health);
        assert!(text.contains("policyc_agent_cni_add_to_enforced_seconds_bucket{le=\"0.005\"} 1\n"), "{text}");
        assert!(text.contains("policyc_agent_cni_add_to_enforced_seconds_bucket{le=\"0.25\"} 2\n"), "{text}");
        assert!(text.contains("policyc_agent_cni_add_to_enforced_seconds_count 2\n"), "{text}");
        assert!(text.contains("policyc_agent_bundle_info{digest=\"sha256:ab\""), "{text}");
    }
}
