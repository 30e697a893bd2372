//! The pod's own node may always reach it (issue 11 item 1): a probe from
//! the host network namespace, as kubelet sends its liveness and readiness
//! probes, reaches an ingress-isolated pod under `--allow-localhost=always`
//! (the default, Kubernetes' rule) and is dropped under
//! `--allow-localhost=policy`, each as `ir::eval` says.
//!
//! One netns "pod" on a veth with a /32 host route (the shared testbed of
//! `tests/support/netns.rs`); the host side of the veth gets an address of
//! this run's subnet, used as the source of the host's connections to the
//! pod (the route's `src`), and the cluster's `Node` object lists it, so
//! the node's bundle maps it to `host`. Names carry `nodes` and the process
//! id; everything is undone on drop.

mod support;

use policyc::semantics::{AllowLocalhost, Semantics};
use policyc_ir::eval::{eval, Party, Query};
use policyc_ir::identity::Identity;
use policyc_ir::ids::EndpointId;
use policyc_ir::protocol::Protocol;
use policyc_loader::apply::{apply, ApplyOptions};
use policyc_loader::paths::Paths;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;
use support::netns::{ip, require_ip, start_servers, subnet, tcp_probe, Pod, Ports, Seen, Testbed, RETRY_TIMEOUT};
use support::{compile_with, require_root, TempDir};

const PORT: u16 = 8080;
const PROBE_TIMEOUT: Duration = Duration::from_millis(300);

/// The cluster: one pod on `node-a` behind a default-deny ingress policy,
/// and `node-a` with the host's address.
fn manifests(pod_ip: &str, host_ip: &str) -> String {
    format!(
        "apiVersion: v1
kind: Node
metadata:
  name: node-a
status:
  addresses:
    - type: InternalIP
      address: {host_ip}
---
apiVersion: v1
kind: Namespace
metadata:
  name: probe
---
apiVersion: v1
kind: Pod
metadata:
  name: app
  namespace: probe
  labels:
    app: app
spec:
  nodeName: node-a
  containers:
    - name: main
      ports:
        - name: http
          containerPort: {PORT}
status:
  podIP: {pod_ip}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: default-deny-ingress
  namespace: probe
spec:
  podSelector: {{}}
  policyTypes: [Ingress]
"
    )
}

/// A TCP probe from the host, repeated once with a long timeout when
/// silent (a slow machine is not a drop).
fn probe_from_host(dst: SocketAddr) -> Seen {
    match tcp_probe(dst, "probe/app", PROBE_TIMEOUT) {
        Seen::Silent => tcp_probe(dst, "probe/app", RETRY_TIMEOUT),
        seen => seen,
    }
}

#[test]
fn the_node_reaches_its_isolated_pod_unless_allow_localhost_is_policy() {
    require_root();
    let _turn = support::turn();
    require_ip();
    let pid = std::process::id();
    let n = subnet(57);
    let (pod_ip, host_ip) = (format!("10.200.{n}.10"), format!("10.200.{n}.254"));
    let work = TempDir::new("node-probe");
    let dir = work.0.join("cluster");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cluster.yaml"), manifests(&pod_ip, &host_ip)).unwrap();

    let mut bundles = Vec::new();
    for (mode, allow_localhost) in [("always", AllowLocalhost::Always), ("policy", AllowLocalhost::Policy)] {
        let out = TempDir::new(&format!("node-probe-{mode}"));
        let (loaded, read) =
            compile_with(&dir, &out, Semantics { allow_localhost }).expect("the cluster compiles without errors");
        assert!(read.contains_key("node-a"), "{mode}: a bundle for node-a");
        // The node's address is `host` in its own bundle.
        let ipcache = std::fs::read_to_string(out.0.join("node-a/maps/ipcache.txt")).unwrap();
        let line = ipcache.lines().find(|l| l.starts_with(&format!("{host_ip}/32 "))).expect("the node's address");
        assert_eq!(line.split(' ').nth(1), Some(Identity::HOST.to_string().as_str()), "{mode}: {line}");
        let host: IpAddr = host_ip.parse().unwrap();
        let cluster = &loaded.lowered.cluster;
        let node = cluster.node_by_ip(host).expect("node-a has the host's address");
        let query = Query {
            src: Party::Node(node),
            dst: Party::Endpoint(EndpointId::new(0)),
            protocol: Protocol::Tcp,
            port: PORT,
        };
        bundles.push((mode, eval(cluster, &query).allowed(), out));
    }
    assert_eq!(
        bundles.iter().map(|(m, a, _)| (*m, *a)).collect::<Vec<_>>(),
        [("always", true), ("policy", false)],
        "ir::eval: the local node reaches the pod only under --allow-localhost=always"
    );

    let pod = Pod {
        name: "probe/app".into(),
        endpoint: 0,
        netns: format!("policyc-{pid}-nodes-app"),
        host_if: format!("pcn{}h0", pid % 1_000_000),
        ips: vec![pod_ip.parse().unwrap()],
    };
    let mut bed = Testbed::default();
    bed.make_pods(std::slice::from_ref(&pod));
    // The host's connections to the pod leave from the node's address.
    // Both go with the veth when the testbed deletes the namespace.
    ip(&["-4", "addr", "add", &format!("{host_ip}/32"), "dev", &pod.host_if]);
    ip(&["-4", "route", "replace", &format!("{pod_ip}/32"), "dev", &pod.host_if, "src", &host_ip]);
    start_servers(std::slice::from_ref(&pod), &Ports { tcp: &[PORT], udp: &[] }, &bed.stop);
    let dst = SocketAddr::new(pod.ips[0], PORT);
    assert_eq!(probe_from_host(dst), Seen::Answered, "without policy the host reaches the pod");

    let state = TempDir::new("node-probe-state");
    let root = format!("policyc-test-nodes-probe-{pid}");
    let paths = Paths::new(Path::new("/sys/fs/bpf"), &root, &state.0.join(&root));
    bed.loader = Some(paths.clone());
    for (mode, allowed, out) in &bundles {
        apply(&paths, &out.0.join("node-a"), &ApplyOptions::default()).unwrap_or_else(|e| panic!("{mode}: apply: {e}"));
        let want = if *allowed { Seen::Answered } else { Seen::Silent };
        assert_eq!(probe_from_host(dst), want, "--allow-localhost={mode}: a probe from the node to its isolated pod");
    }
}
