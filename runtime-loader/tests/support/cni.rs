//! Pods made as a container runtime makes them, for the node agent's
//! kernel tests: a network namespace, Debian's reference `ptp` plugin with
//! `host-local` IPAM, then `policyc-cni` with `ptp`'s result as
//! `prevResult` (in-process, through `policyc_cni::plugin::run`, the
//! function its binary calls with its environment and stdin); the agent
//! as a real `policyc-loader run` process; TCP probes between the pods.
//! Everything made is undone on drop, panics included.
use super::netns::{in_netns, ip, require_ip, start_servers, subnet, tcp_probe, Pod, Ports, Seen};
use super::{require_root, TempDir};
use policyc::compile::{compile, CompileOptions, Inputs, Output};
use policyc_cni::plugin::{run as cni_run, Environment};
use policyc_loader::paths::Paths;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const NODE: &str = "agent-node";
pub const CNI_BIN: &str = "/usr/lib/cni";
pub const PORT: u16 = 8080;
pub const PORTS: Ports = Ports { tcp: &[PORT], udp: &[] };
/// A probe's answer takes well under a millisecond on local veths.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(400);
/// The longest wait for the agent to pick up a change of the cluster
/// directory (it polls every 50 ms here).
pub const CONVERGE: Duration = Duration::from_secs(15);

/// The repository the bundle is compiled from: a snapshot of the cluster
/// (pods with the addresses they had then, which the agent replaces with
/// live ones) and the policy: `web/server` takes TCP 8080 from the pods
/// whose `app` is one of `from`.
pub fn repository(n: u32, from: &[&str]) -> String {
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: web, labels: {{team: web}}}}
---
apiVersion: v1
kind: Node
metadata: {{name: {NODE}}}
status: {{addresses: [{{type: InternalIP, address: 10.200.{n}.254}}]}}
---
{pods}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: server-from-client, namespace: web}}
spec:
  podSelector: {{matchLabels: {{app: server}}}}
  policyTypes: [Ingress]
  ingress:
    - from: [{{podSelector: {{matchExpressions: [{{key: app, operator: In, values: [{from}]}}]}}}}]
      ports: [{{protocol: TCP, port: {PORT}}}]
"#,
        from = from.join(", "),
        pods = [("client", 201), ("server", 202), ("intruder", 203)]
            .iter()
            .map(|(pod, host)| pod_yaml(pod, pod, Some(&format!("10.200.{n}.{host}"))))
            .collect::<Vec<_>>()
            .join("\n---\n")
    )
}

pub fn pod_yaml(name: &str, app: &str, ip: Option<&str>) -> String {
    let status = ip.map_or(String::new(), |ip| format!("\nstatus: {{podIP: {ip}, podIPs: [{{ip: {ip}}}]}}"));
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: web, labels: {{app: {app}}}}}\n\
         spec: {{nodeName: {NODE}, containers: [{{name: main}}]}}{status}"
    )
}

/// The live cluster directory: the namespace, the node and the pods with
/// their current labels (no addresses: the CNI ADD gives local ones).
pub fn write_cluster(dir: &Path, n: u32, pods: &[(&str, &str)]) {
    let mut text = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: web, labels: {{team: web}}}}\n---\n\
         apiVersion: v1\nkind: Node\nmetadata: {{name: {NODE}}}\n\
         status: {{addresses: [{{type: InternalIP, address: 10.200.{n}.254}}]}}\n"
    );
    for (name, app) in pods {
        text.push_str("---\n");
        text.push_str(&pod_yaml(name, app, None));
        text.push('\n');
    }
    // Written beside and renamed: the agent never reads half a file.
    let tmp = dir.join(".cluster.yaml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join("cluster.yaml")).unwrap();
}

/// A pod made through the conflist.
pub struct CniPod {
    pub pod: Pod,
    pub container_id: String,
    /// `ptp`'s result: the runtime's `prevResult` for the next plugin.
    pub result: String,
}

/// Everything the test made, undone on drop.
pub struct Bed {
    pub tag: String,
    pub n: u32,
    pub dir: TempDir,
    pub paths: Paths,
    pub agent: Option<Child>,
    pub pods: Vec<CniPod>,
    pub ip_forward: String,
    pub stop: Arc<std::sync::atomic::AtomicBool>,
    /// The compiled bundle.
    pub bundle: PathBuf,
    /// The cluster directory the agent reads.
    pub cluster: PathBuf,
    /// More arguments of the agent's `run`.
    pub agent_args: Vec<String>,
    /// The prefix length of this run's range `10.200.<n>.0/<prefix>`: 24,
    /// or 21 for a bed of a thousand pods and more ([`Bed::wide`]).
    pub prefix: u8,
}

impl Bed {
    /// Checks that the test can run (root, `ip`, the reference plugins),
    /// takes this run's /24 (`offset` apart from other tests', blackholed
    /// on the host), and compiles [`repository`] into this node's bundle.
    /// The cluster directory is made empty.
    pub fn new(tag: &str, offset: u32) -> Bed {
        Bed::in_range(tag, subnet(offset), 24)
    }

    /// A bed whose pods take addresses from `10.200.240.0/21` (past every
    /// /24 [`subnet`] gives): about 1 790 pods in `10.200.241.1` to
    /// `10.200.247.250`, beside the repository's addresses in
    /// `10.200.240.0/24`.
    pub fn wide(tag: &str) -> Bed {
        Bed::in_range(tag, 240, 21)
    }

    fn in_range(tag: &str, n: u32, prefix: u8) -> Bed {
        require_root();
        require_ip();
        for plugin in ["ptp", "host-local"] {
            assert!(
                Path::new(CNI_BIN).join(plugin).exists(),
                "the agent tests need the reference CNI plugins in {CNI_BIN} (apt-get install containernetworking-plugins)"
            );
        }
        let pid = std::process::id();
        let dir = TempDir::new(tag);
        let root = format!("policyc-test-{tag}-{pid}");
        let paths = Paths::new(Path::new("/sys/fs/bpf"), &root, &dir.0.join("state").join(&root));
        let (repo, cluster) = (dir.0.join("repo"), dir.0.join("cluster"));
        let bed = Bed {
            tag: format!("{}{pid}", tag.replace('-', "")),
            n,
            paths,
            agent: None,
            pods: Vec::new(),
            ip_forward: std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap().trim().to_string(),
            stop: Arc::default(),
            bundle: dir.0.join("bundles").join(NODE),
            cluster: cluster.clone(),
            agent_args: Vec::new(),
            prefix,
            dir,
        };
        // Stray packets of this run's range stop at the host.
        ip(&["route", "add", "blackhole", &format!("10.200.{n}.0/{prefix}")]);
        for d in [&repo, &cluster] {
            std::fs::create_dir_all(d).unwrap();
        }
        bed.recompile(&["client"]);
        bed
    }

    /// Compiles [`repository`] with `from` into the bundle the agent
    /// reads, replacing it.
    pub fn recompile(&self, from: &[&str]) {
        let repo = self.dir.0.join("repo");
        std::fs::write(repo.join("cluster.yaml"), repository(self.n, from)).unwrap();
        let out = self.dir.0.join("bundles");
        let options = CompileOptions { node: Some(NODE.into()), output: Output::Directory(out), ..Default::default() };
        compile(Inputs::Paths(vec![repo]), &options).expect("the test repository compiles");
    }

    pub fn state(&self) -> PathBuf {
        self.dir.0.join("state")
    }

    pub fn socket(&self) -> PathBuf {
        self.state().join("agent.sock")
    }

    pub fn ptp_conf(&self) -> String {
        let n = self.n;
        // A /24 gives 190 pods; a wider range leaves its first /24 to the
        // repository's addresses (the node's `.254`, the snapshot's pods).
        let (start, end) = match self.prefix {
            24 => (format!("10.200.{n}.10"), format!("10.200.{n}.199")),
            _ => (format!("10.200.{}.1", n + 1), format!("10.200.{}.250", n + (1 << (24 - self.prefix)) - 1)),
        };
        serde_json::json!({
            "cniVersion": "1.0.0",
            "name": format!("policyc-{}", self.tag),
            "type": "ptp",
            "ipMasq": false,
            "ipam": {
                "type": "host-local",
                "ranges": [[{ "subnet": format!("10.200.{n}.0/{}", self.prefix), "rangeStart": start, "rangeEnd": end }]],
                "dataDir": self.dir.0.join("ipam"),
            },
        })
        .to_string()
    }

    pub fn policyc_conf(&self, prev: &str) -> String {
        let prev: serde_json::Value = serde_json::from_str(prev).unwrap();
        serde_json::json!({
            "cniVersion": "1.0.0",
            "name": format!("policyc-{}", self.tag),
            "type": "policyc-cni",
            "agentSocket": self.socket(),
            "timeoutSeconds": 20,
            "prevResult": prev,
        })
        .to_string()
    }

    pub fn env(&self, command: &str, id: &str, netns: &str, pod: &str) -> Environment {
        Environment {
            command: Some(command.into()),
            container_id: Some(id.into()),
            netns: Some(format!("/run/netns/{netns}")),
            args: Some(format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=web;K8S_POD_NAME={pod}")),
        }
    }

    /// Runs `ptp` as a runtime does.
    pub fn ptp(&self, command: &str, id: &str, netns: &str, pod: &str) -> String {
        let mut child = Command::new(format!("{CNI_BIN}/ptp"))
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", id)
            .env("CNI_NETNS", format!("/run/netns/{netns}"))
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", CNI_BIN)
            .env("CNI_ARGS", format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=web;K8S_POD_NAME={pod}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run the ptp plugin");
        child.stdin.take().unwrap().write_all(self.ptp_conf().as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "ptp {command} of {pod}: {text}");
        text
    }

    /// Makes pod `name` (`app` is what its servers answer with): netns,
    /// `ptp`, a server, then `policyc-cni` ADD. Returns the time the ADD
    /// took.
    pub fn add_pod(&mut self, name: &str, generation: usize) -> Duration {
        self.add_pod_serving(name, generation, true)
    }

    /// [`Bed::add_pod`], with a server in the pod or not.
    pub fn add_pod_serving(&mut self, name: &str, generation: usize, serve: bool) -> Duration {
        let netns = format!("pc{}-{name}-{generation}", self.tag);
        let id = format!("{}-{name}-{generation}", self.tag);
        ip(&["netns", "add", &netns]);
        let result = self.ptp("ADD", &id, &netns, name);
        let parsed: serde_json::Value = serde_json::from_str(&result).unwrap();
        let host_if = parsed["interfaces"].as_array().unwrap().iter().find(|i| i.get("sandbox").is_none()).unwrap()
            ["name"]
            .as_str()
            .unwrap()
            .to_string();
        let address: IpAddr = parsed["ips"][0]["address"].as_str().unwrap().split('/').next().unwrap().parse().unwrap();
        let pod = Pod { name: format!("web/{name}"), endpoint: 0, netns: netns.clone(), host_if, ips: vec![address] };
        if serve {
            start_servers(std::slice::from_ref(&pod), &PORTS, &self.stop);
        }
        self.pods.push(CniPod { pod, container_id: id.clone(), result: result.clone() });
        let started = Instant::now();
        let out = cni_run(&self.env("ADD", &id, &netns, name), &self.policyc_conf(&result))
            .unwrap_or_else(|e| panic!("policyc-cni ADD of web/{name}: {e}"));
        let took = started.elapsed();
        let returned: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(returned, parsed, "ADD returns prevResult unchanged");
        took
    }

    /// `policyc-cni` DEL, then `ptp` DEL and the namespace, as a runtime
    /// tears a sandbox down.
    pub fn delete_pod(&mut self, name: &str) -> CniPod {
        let at = self.pods.iter().position(|p| p.pod.name == format!("web/{name}")).unwrap();
        let gone = self.pods.remove(at);
        let env = self.env("DEL", &gone.container_id, &gone.pod.netns, name);
        cni_run(&env, &self.policyc_conf(&gone.result)).unwrap_or_else(|e| panic!("policyc-cni DEL: {e}"));
        self.ptp("DEL", &gone.container_id, &gone.pod.netns, name);
        ip(&["netns", "del", &gone.pod.netns]);
        gone
    }

    pub fn pod(&self, name: &str) -> &Pod {
        &self.pods.iter().find(|p| p.pod.name == format!("web/{name}")).unwrap().pod
    }

    /// TCP from pod `from` to pod `to`'s server.
    pub fn probe(&self, from: &str, to: &str) -> Seen {
        let dst = SocketAddr::new(self.pod(to).ips[0], PORT);
        let want = self.pod(to).name.clone();
        in_netns(&self.pod(from).netns, || tcp_probe(dst, &want, PROBE_TIMEOUT))
    }

    /// TCP from the node itself (this test's network namespace, as
    /// kubelet probes) to pod `to`'s server; the source is the kernel's
    /// choice for the host route to the pod: with `ptp`, the pod's gateway
    /// address on the host side of its veth.
    pub fn probe_from_node(&self, to: &str) -> Seen {
        let dst = SocketAddr::new(self.pod(to).ips[0], PORT);
        tcp_probe(dst, &self.pod(to).name, PROBE_TIMEOUT)
    }

    pub fn expect(&self, from: &str, to: &str, answered: bool, when: &str) {
        let seen = self.probe(from, to);
        let want = if answered { Seen::Answered } else { Seen::Silent };
        assert_eq!(seen, want, "{when}: web/{from} → web/{to}:{PORT}");
    }

    /// Waits (bounded) until the probe gives `answered`, then checks it
    /// holds.
    pub fn converge(&self, from: &str, to: &str, answered: bool, when: &str) {
        let deadline = Instant::now() + CONVERGE;
        let want = if answered { Seen::Answered } else { Seen::Silent };
        while self.probe(from, to) != want {
            assert!(Instant::now() < deadline, "{when}: web/{from} → web/{to} never became {want:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
        self.expect(from, to, answered, when);
    }

    pub fn start_agent(&mut self, bundle: &Path, cluster: &Path, metrics: Option<SocketAddr>) {
        let _ = std::fs::remove_file(self.socket());
        let mut command = Command::new(env!("CARGO_BIN_EXE_policyc-loader"));
        command
            .args(["--root", self.paths.root.file_name().unwrap().to_str().unwrap()])
            .arg("--state")
            .arg(self.state())
            .args(["run", "--node", NODE, "--poll-ms", "50"])
            .arg("--bundle")
            .arg(bundle)
            .arg("--cluster")
            .arg(cluster)
            .args(&self.agent_args);
        if let Some(address) = metrics {
            command.arg("--metrics-address").arg(address.to_string());
        }
        self.agent = Some(command.spawn().expect("start policyc-loader run"));
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.socket().exists() {
            assert!(Instant::now() < deadline, "the agent did not open its socket");
            if let Some(status) = self.agent.as_mut().unwrap().try_wait().unwrap() {
                panic!("the agent exited: {status}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn agent_report(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.paths.state.join("agent.json")).expect("agent.json");
        serde_json::from_str(&text).unwrap()
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(mut agent) = self.agent.take() {
            let _ = agent.kill();
            let _ = agent.wait();
        }
        for p in std::mem::take(&mut self.pods) {
            let _ = Command::new("ip").args(["netns", "del", &p.pod.netns]).output();
        }
        if self.paths.root.exists() {
            let _ = policyc_loader::uninstall::uninstall(&self.paths);
        }
        let blackhole = format!("10.200.{}.0/{}", self.n, self.prefix);
        let _ = Command::new("ip").args(["route", "del", "blackhole", &blackhole]).output();
        let _ = std::fs::write("/proc/sys/net/ipv4/ip_forward", &self.ip_forward);
    }
}

pub fn http_get(address: SocketAddr, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    Some(answer)
}

pub fn send_signal(child: &Child, signal: &str) {
    let status = Command::new("kill").args(["-s", signal, &child.id().to_string()]).status().unwrap();
    assert!(status.success(), "kill -s {signal}");
}
