//! `--cluster kube`: the code a cluster runs (kube-rs's `Client`, its
//! watchers with the agent's field and label selectors, the agent's
//! reducer, the view binding reads), driven by API objects in the API
//! server's wire format (`tests/data/kube/`: for each watch, the list
//! response, then the watch events that follow it, one JSON object a
//! line) instead of a live API server, which cannot run here.
//!
//! The objects are served over kube-rs's own HTTP client stack by a
//! `tower` service that answers each request by its path and selectors,
//! as the API server would; a watch, once its recorded events are sent,
//! stays open and silent.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Frame;
use policyc::lower::identity_labels;
use policyc_ir::labels::Labels;
use policyc_loader::agent::cluster::ClusterView;
use policyc_loader::agent::kube::{start, watches, Shared};
use std::convert::Infallible;
use std::net::IpAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

const NODE: &str = "node-a";

/// A response body: the recorded bytes, then (a watch) open for ever.
struct Recorded {
    data: Option<Bytes>,
    stay_open: bool,
}

impl http_body::Body for Recorded {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.data.take() {
            Some(data) => Poll::Ready(Some(Ok(Frame::data(data)))),
            // Nothing more will come: this watch stays open and silent.
            None if self.stay_open => Poll::Pending,
            None => Poll::Ready(None),
        }
    }
}

fn data(name: &str) -> Bytes {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/kube").join(name);
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// The recorded source a request of the agent's watches reads.
fn source(path: &str, query: &str) -> &'static str {
    let query = query.replace("%21", "!").replace("%3D", "=").replace("%2F", "/");
    match path {
        "/api/v1/pods" if query.contains(&format!("fieldSelector=spec.nodeName!={NODE}")) => "pods-other",
        "/api/v1/pods" if query.contains(&format!("fieldSelector=spec.nodeName={NODE}")) => "pods-local",
        "/api/v1/namespaces" => "namespaces",
        "/api/v1/nodes" => "nodes",
        "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"
            if query.contains("labelSelector=kubernetes.io/service-name=kubernetes") =>
        {
            "apiserver"
        }
        other => panic!("the agent asked for `{other}?{query}`, which no watch of it should"),
    }
}

/// Serves the recorded objects; logs each request's source and kind.
/// Watches wait until `open` turns true, so the lists' state can be seen
/// alone first.
fn api_server(log: Arc<Mutex<Vec<String>>>, open: tokio::sync::watch::Receiver<bool>) -> kube::Client {
    let service = tower::service_fn(move |request: Request<kube::client::Body>| {
        let (log, mut open) = (log.clone(), open.clone());
        async move {
            let (path, query) = (request.uri().path().to_string(), request.uri().query().unwrap_or("").to_string());
            let name = source(&path, &query);
            let watch = query.contains("watch=true");
            if watch {
                open.wait_for(|open| *open).await.expect("the test holds the gate");
            }
            let mut log = log.lock().unwrap();
            let first_watch = watch && !log.contains(&format!("{name} watch"));
            log.push(format!("{name} {}", if watch { "watch" } else { "list" }));
            let body = match (watch, first_watch) {
                (false, _) => Recorded { data: Some(data(&format!("{name}.list.json"))), stay_open: false },
                (true, true) => Recorded { data: Some(data(&format!("{name}.watch.jsonl"))), stay_open: true },
                (true, false) => Recorded { data: None, stay_open: true },
            };
            let response = Response::builder().status(StatusCode::OK).header("content-type", "application/json");
            Ok::<_, Infallible>(response.body(body).unwrap())
        }
    });
    kube::Client::new(service, "default")
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|a| a.parse().unwrap()).collect()
}

type PodLine = (String, Option<String>, String, Vec<IpAddr>);

/// `(name, node, identity labels, addresses)` of each pod of `view`.
fn pods(view: &ClusterView) -> Vec<PodLine> {
    view.pods
        .iter()
        .map(|p| (p.name.clone(), p.node.as_deref().map(str::to_string), p.labels.to_string(), p.ips.clone()))
        .collect()
}

/// A pod of namespace `web` as the view should show it: its identity
/// labels are the compiler's of its pod labels, `web`'s labels and its
/// service account.
fn pod(
    name: &str,
    node: Option<&str>,
    labels: &[(&str, &str)],
    web: &[(&str, &str)],
    account: &str,
    addresses: &[&str],
) -> PodLine {
    let pairs = |l: &[(&str, &str)]| Labels::from_pairs(l.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let identity = identity_labels("web", &pairs(labels), Some(&pairs(web)), Some(account));
    (format!("web/{name}"), node.map(str::to_string), identity.to_string(), ips(addresses))
}

async fn view_where(shared: &mut Shared, done: impl Fn(&ClusterView) -> bool, what: &str) -> ClusterView {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = None;
    loop {
        if let Some(view) = shared.poll() {
            if done(&view) {
                return view;
            }
            last = Some(view);
        }
        assert!(Instant::now() < deadline, "never {what}; last view: {:?}", last.as_ref().map(pods));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_watches_of_recorded_api_objects_give_the_view_binding_reads() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let (gate, open) = tokio::sync::watch::channel(false);
    let mut shared = start(watches(api_server(log.clone(), open), NODE));
    let web = [("kubernetes.io/metadata.name", "web"), ("team", "web")];

    // The lists: one view, once every watch has listed, never a part.
    let listed = view_where(&mut shared, |_| true, "a view after the lists").await;
    assert_eq!(
        pods(&listed),
        [
            pod("client", Some("node-b"), &[("app", "client")], &web, "client-sa", &["10.200.61.20"]),
            pod("pending", None, &[("app", "client")], &web, "default", &[]),
            pod(
                "server",
                Some(NODE),
                &[("app", "server"), ("pod-template-hash", "5d8f7c9b4")],
                &web,
                "default",
                &["10.200.60.10"]
            ),
        ],
        "the Succeeded and the host-network pods are no endpoints"
    );
    assert!(!pods(&listed)[2].2.contains("pod-template-hash"), "not an identity label");
    let nodes: Vec<(&str, Vec<IpAddr>)> = listed.nodes.iter().map(|n| (n.name.as_str(), n.ips.clone())).collect();
    assert_eq!(
        nodes,
        [("node-a", ips(&["10.200.60.254"])), ("node-b", ips(&["10.200.61.254"]))],
        "host names are no addresses"
    );
    assert_eq!(listed.apiserver, Some(ips(&["10.200.62.1", "10.200.62.3"])), "ready (or unset) endpoints only");

    // The watch events: a pod created then given addresses, a pod
    // relabelled, a pending pod deleted, a pod moved then failed, the
    // namespace relabelled, a node replaced, the API server's endpoints.
    gate.send_replace(true);
    let web = [("env", "prod"), ("kubernetes.io/metadata.name", "web"), ("team", "web")];
    let end = vec![
        pod("server", Some(NODE), &[("app", "server"), ("tier", "front")], &web, "default", &["10.200.60.10"]),
        pod("web-2", Some(NODE), &[("app", "server")], &web, "default", &["10.200.60.12", "fd00:200:60::12"]),
    ];
    let last = view_where(
        &mut shared,
        |v| pods(v) == end && v.nodes.len() == 2 && v.apiserver.as_ref().is_some_and(|a| a.len() == 2),
        "the recorded end",
    )
    .await;
    let nodes: Vec<(&str, Vec<IpAddr>)> = last.nodes.iter().map(|n| (n.name.as_str(), n.ips.clone())).collect();
    assert_eq!(nodes, [("node-a", ips(&["10.200.60.254"])), ("node-c", ips(&["10.200.63.254"]))]);
    assert_eq!(last.apiserver, Some(ips(&["10.200.62.3", "10.200.62.4"])));
    let log = log.lock().unwrap().clone();
    for name in ["pods-local", "pods-other", "namespaces", "nodes", "apiserver"] {
        assert!(log.contains(&format!("{name} list")) && log.contains(&format!("{name} watch")), "{log:?}");
    }
}
