//! Synthetic clusters for the compile benchmark.
//!
//! A cluster is a pure function of its [`ClusterSpec`] (the seed included), so
//! two runs benchmark the same bytes. Its shape follows what real clusters
//! look like to a policy compiler:
//!
//! - one namespace per hundred pods, labelled with a `team` and an `env`;
//! - in each namespace, ten applications (one Deployment each, a tenth of
//!   them with a canary of a second version), so the number of identities
//!   grows with the number of namespaces and not with the number of pods;
//! - pods labelled `app`, `tier`, `version` and `pod-template-hash` (which
//!   identities ignore), with named container ports, spread round-robin
//!   over the spec's nodes, one unique address each: up to 254 nodes have
//!   the pod CIDRs `10.<node + 1>.0.0/16`, more nodes a `/24` each
//!   (`10.<1 + node / 256>.<node % 256>.0/24`, as a cluster of thousands of
//!   nodes hands them out); nodes carry the zone, pool and instance type
//!   labels of a cloud provider's node groups;
//! - services selecting one application of one namespace, named target ports;
//! - policies cycling through ten templates, half Kubernetes NetworkPolicies
//!   (default deny, pod/namespace selector peers, `ipBlock` with `except`,
//!   named ports, `endPort` ranges) and half CiliumNetworkPolicies
//!   (`fromEndpoints` across namespaces, `toEntities: [world]`, `toCIDRSet`
//!   with `except`, `egressDeny`, `ingressDeny`, `toPorts` ranges), with
//!   the first policy of each namespace a default deny.
//!
//! A churned variant ([`ClusterSpec::churn_permille`]) is the same cluster
//! after a rolling update touched that share of pods: each such pod is
//! replaced (a new name, the pod-template hash of a new ReplicaSet) and
//! every other one of them also moves to a new version, a label set the
//! base cluster does not have, so that identities are both kept and added.
//!
//! Documents are written as multi-document YAML, [`DOCUMENTS_PER_FILE`] to a
//! file, in the order namespaces, nodes, pods, services, policies.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::Path;

/// How many YAML documents go into one file.
pub const DOCUMENTS_PER_FILE: usize = 1000;

/// Nodes up to which each node's pod CIDR is a `/16`.
const WIDE_CIDR_NODES: usize = 254;

/// Pods per namespace.
const PODS_PER_NAMESPACE: usize = 100;

/// The size and seed of a synthetic cluster.
#[derive(Clone, Copy, Debug)]
pub struct ClusterSpec {
    /// Number of nodes the pods are spread over.
    pub nodes: usize,
    /// Number of pods.
    pub pods: usize,
    /// Number of policies (Kubernetes and Cilium together).
    pub policies: usize,
    /// Number of services.
    pub services: usize,
    /// Seed of the generator.
    pub seed: u64,
    /// Pods, per thousand, replaced by a rolling update (0: none). The
    /// churned cluster draws the same random numbers as the base one, so
    /// everything else is byte for byte the same.
    pub churn_permille: usize,
}

impl ClusterSpec {
    /// Addresses each node's pod CIDR holds.
    fn pods_per_node_cidr(&self) -> usize {
        if self.nodes <= WIDE_CIDR_NODES {
            65_000
        } else {
            254
        }
    }

    /// Whether pod `i` is one the rolling update replaced: a fixed
    /// multiplicative hash of the index, independent of the generator's
    /// random sequence.
    fn churned(&self, i: usize) -> bool {
        let slot = ((i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) % 1000;
        slot < self.churn_permille as u64
    }
}

/// What [`write_cluster`] wrote.
#[derive(Clone, Copy, Debug, Default)]
pub struct Written {
    /// YAML documents.
    pub documents: usize,
    /// Files.
    pub files: usize,
    /// Bytes.
    pub bytes: u64,
}

/// An application: the pods of one Deployment in one namespace.
struct App {
    name: &'static str,
    tier: &'static str,
    /// Container ports: name, number, protocol.
    ports: &'static [(&'static str, u16, &'static str)],
}

const APPS: [App; 10] = [
    App { name: "frontend", tier: "web", ports: &[("http", 8080, "TCP"), ("metrics", 9090, "TCP")] },
    App { name: "api", tier: "app", ports: &[("http", 8080, "TCP"), ("grpc", 9000, "TCP"), ("metrics", 9090, "TCP")] },
    App { name: "worker", tier: "app", ports: &[("metrics", 9090, "TCP")] },
    App { name: "auth", tier: "app", ports: &[("grpc", 9000, "TCP"), ("metrics", 9090, "TCP")] },
    App { name: "search", tier: "app", ports: &[("http", 9200, "TCP"), ("transport", 9300, "TCP")] },
    App { name: "db", tier: "data", ports: &[("postgres", 5432, "TCP"), ("metrics", 9187, "TCP")] },
    App { name: "cache", tier: "data", ports: &[("redis", 6379, "TCP"), ("metrics", 9121, "TCP")] },
    App { name: "queue", tier: "data", ports: &[("amqp", 5672, "TCP"), ("management", 15672, "TCP")] },
    App {
        name: "gateway",
        tier: "web",
        ports: &[("https", 8443, "TCP"), ("quic", 8443, "UDP"), ("admin", 9901, "TCP")],
    },
    App { name: "resolver", tier: "infra", ports: &[("dns", 53, "UDP"), ("dns-tcp", 53, "TCP")] },
];

const TEAMS: [&str; 12] = [
    "storefront",
    "payments",
    "identity",
    "search",
    "logistics",
    "platform",
    "data",
    "mobile",
    "ads",
    "support",
    "billing",
    "growth",
];

const ENVS: [&str; 3] = ["prod", "staging", "dev"];

/// Characters Kubernetes uses in generated names (no vowels, no look-alikes).
const NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Xorshift64*: small, fast and good enough to vary a benchmark input.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        // Xorshift must not start at zero; the odd constant also spreads
        // small seeds over all bits.
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15 | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn name_suffix(&mut self, len: usize) -> String {
        (0..len).map(|_| char::from(*self.pick(NAME_ALPHABET))).collect()
    }
}

/// A namespace of the synthetic cluster.
struct Namespace {
    name: String,
    team: &'static str,
    env: &'static str,
}

/// Multi-document YAML output, [`DOCUMENTS_PER_FILE`] documents a file.
struct DocWriter<'a> {
    dir: &'a Path,
    buf: String,
    in_file: usize,
    written: Written,
}

impl<'a> DocWriter<'a> {
    fn new(dir: &'a Path) -> DocWriter<'a> {
        DocWriter { dir, buf: String::new(), in_file: 0, written: Written::default() }
    }

    /// Starts a document; the caller appends its text to `self.buf`.
    fn begin(&mut self) -> io::Result<&mut String> {
        if self.in_file == DOCUMENTS_PER_FILE {
            self.flush()?;
        }
        if self.in_file > 0 {
            self.buf.push_str("---\n");
        }
        self.in_file += 1;
        self.written.documents += 1;
        Ok(&mut self.buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.in_file == 0 {
            return Ok(());
        }
        let path = self.dir.join(format!("cluster-{:04}.yaml", self.written.files));
        fs::write(path, &self.buf)?;
        self.written.files += 1;
        self.written.bytes += self.buf.len() as u64;
        self.buf.clear();
        self.in_file = 0;
        Ok(())
    }

    fn finish(mut self) -> io::Result<Written> {
        self.flush()?;
        Ok(self.written)
    }
}

/// `cargo xtask synth --out DIR [--nodes N] [--pods N] [--policies N]
/// [--services N] [--churn PERMILLE]`: one cluster written for profiling
/// by hand, with the benchmarks' seed unless `--seed` says otherwise.
pub fn command(args: &[String]) -> Result<(), String> {
    let mut out = None;
    let value = |name: &str| -> Option<usize> {
        let at = args.iter().position(|a| a == name)?;
        args.get(at + 1)?.parse().ok()
    };
    let pods = value("--pods").unwrap_or(1_000);
    let spec = ClusterSpec {
        nodes: value("--nodes").unwrap_or(20),
        pods,
        policies: value("--policies").unwrap_or(pods / 5),
        services: value("--services").unwrap_or(pods / 20),
        seed: value("--seed").map_or(0x616e_616c_7973_6973, |s| s as u64),
        churn_permille: value("--churn").unwrap_or(0),
    };
    if let Some(at) = args.iter().position(|a| a == "--out") {
        out = args.get(at + 1).map(Path::new);
    }
    let dir = out.ok_or("synth needs `--out DIR`")?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
    let written = write_cluster(&spec, dir).map_err(|e| format!("cannot write `{}`: {e}", dir.display()))?;
    eprintln!("xtask: synth: {} documents in {} files → {}", written.documents, written.files, dir.display());
    Ok(())
}

/// Writes the cluster of `spec` into `dir` (which must exist and should be
/// empty).
pub fn write_cluster(spec: &ClusterSpec, dir: &Path) -> io::Result<Written> {
    assert!(spec.nodes > 0 && spec.nodes <= 250 * 250, "node addresses are `10.255.<a>.<b>`");
    assert!(
        spec.pods.div_ceil(spec.nodes) <= spec.pods_per_node_cidr() && spec.nodes <= 64 * 256,
        "pod addresses would run out of the nodes' pod CIDRs"
    );
    let mut rng = Rng::new(spec.seed);
    let mut out = DocWriter::new(dir);

    let namespaces: Vec<Namespace> = (0..spec.pods.div_ceil(PODS_PER_NAMESPACE).max(1))
        .map(|i| {
            let team = *rng.pick(&TEAMS);
            let env = *rng.pick(&ENVS);
            Namespace { name: format!("{team}-{env}-{i}"), team, env }
        })
        .collect();
    for ns in &namespaces {
        namespace(out.begin()?, ns);
    }
    for n in 0..spec.nodes {
        node(out.begin()?, spec, n);
    }
    pods(&mut out, &mut rng, spec, &namespaces)?;
    for s in 0..spec.services {
        service(out.begin()?, s, &namespaces);
    }
    for p in 0..spec.policies {
        policy(out.begin()?, &mut rng, p, &namespaces);
    }
    out.finish()
}

fn namespace(w: &mut String, ns: &Namespace) {
    let Namespace { name, team, env } = ns;
    let _ = write!(
        w,
        "apiVersion: v1
kind: Namespace
metadata:
  name: {name}
  labels:
    kubernetes.io/metadata.name: {name}
    team: {team}
    env: {env}
"
    );
}

/// Node pools of a cloud cluster: name and instance type.
const POOLS: [(&str, &str); 4] =
    [("general", "m6i.2xlarge"), ("compute", "c6i.4xlarge"), ("memory", "r6i.2xlarge"), ("system", "m6i.large")];

/// The pod CIDR of node `n`.
fn node_cidr(spec: &ClusterSpec, n: usize) -> String {
    if spec.nodes <= WIDE_CIDR_NODES {
        format!("10.{}.0.0/16", n + 1)
    } else {
        format!("10.{}.{}.0/24", 1 + n / 256, n % 256)
    }
}

fn node(w: &mut String, spec: &ClusterSpec, n: usize) {
    let name = format!("worker-{n:02}");
    let zone = n % 3 + 1;
    let (pool, instance_type) = POOLS[n / 3 % POOLS.len()];
    let cidr = node_cidr(spec, n);
    let ip = format!("10.255.{}.{}", n / 250, n % 250 + 1);
    let _ = write!(
        w,
        "apiVersion: v1
kind: Node
metadata:
  name: {name}
  labels:
    kubernetes.io/hostname: {name}
    kubernetes.io/os: linux
    topology.kubernetes.io/zone: zone-{zone}
    node.kubernetes.io/instance-type: {instance_type}
    pool: {pool}
spec:
  podCIDR: {cidr}
  podCIDRs:
    - {cidr}
status:
  addresses:
    - type: InternalIP
      address: {ip}
    - type: Hostname
      address: {name}
"
    );
}

/// Pod `i` lives on node `i % nodes`, at the `i / nodes + 1`-th address of
/// that node's pod CIDR.
fn pod_ip(spec: &ClusterSpec, i: usize) -> String {
    let node = i % spec.nodes;
    let host = i / spec.nodes + 1;
    if spec.nodes <= WIDE_CIDR_NODES {
        format!("10.{}.{}.{}", node + 1, host >> 8, host & 0xff)
    } else {
        format!("10.{}.{}.{host}", 1 + node / 256, node % 256)
    }
}

fn pods(out: &mut DocWriter, rng: &mut Rng, spec: &ClusterSpec, namespaces: &[Namespace]) -> io::Result<()> {
    let count = spec.pods;
    // The replaced pods' new names come from a sequence of their own, so
    // that the rest of the cluster draws what the base cluster drew.
    let mut churn_rng = Rng::new(spec.seed ^ 0x0063_6875_726e);
    // The Deployments of the current namespace: per application, the
    // versions and their pod-template hashes.
    let mut deployments: Vec<[(u32, String); 2]> = Vec::new();
    for i in 0..count {
        let ns_index = (i / PODS_PER_NAMESPACE).min(namespaces.len() - 1);
        let local = i - ns_index * PODS_PER_NAMESPACE;
        if local == 0 {
            deployments = APPS
                .iter()
                .map(|_| {
                    let stable = rng.below(5) as u32 + 1;
                    [(stable, rng.name_suffix(10)), (stable + 1, rng.name_suffix(10))]
                })
                .collect();
        }
        let app_index = local % APPS.len();
        let app = &APPS[app_index];
        // Every eighth replica of an application is its canary.
        let (version, hash) = &deployments[app_index][usize::from(local / APPS.len() % 8 == 7)];
        let ns = &namespaces[ns_index].name;
        let mut name = format!("{}-{hash}-{}", app.name, rng.name_suffix(5));
        let (mut version, mut hash) = (*version, hash.clone());
        if spec.churned(i) {
            hash = churn_rng.name_suffix(10);
            name = format!("{}-{hash}-{}", app.name, churn_rng.name_suffix(5));
            if churn_rng.below(2) == 0 {
                version += 10;
            }
        }
        let node = i % spec.nodes;
        let ip = pod_ip(spec, i);
        let w = out.begin()?;
        let _ = write!(
            w,
            "apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: {ns}
  labels:
    app: {app_name}
    tier: {tier}
    version: v{version}
    pod-template-hash: {hash}
  ownerReferences:
    - apiVersion: apps/v1
      kind: ReplicaSet
      name: {app_name}-{hash}
      controller: true
spec:
  nodeName: worker-{node:02}
  serviceAccountName: {app_name}
  containers:
    - name: {app_name}
      image: registry.example.com/{ns}/{app_name}:{version}.0.0
      ports:
",
            app_name = app.name,
            tier = app.tier,
        );
        for (port_name, number, protocol) in app.ports {
            let _ = write!(
                w,
                "        - name: {port_name}
          containerPort: {number}
          protocol: {protocol}
"
            );
        }
        let _ = write!(
            w,
            "status:
  phase: Running
  hostIP: 10.255.{host_a}.{host_b}
  podIP: {ip}
  podIPs:
    - ip: {ip}
",
            host_a = node / 250,
            host_b = node % 250 + 1,
        );
    }
    Ok(())
}

fn service(w: &mut String, s: usize, namespaces: &[Namespace]) {
    let ns = &namespaces[s % namespaces.len()].name;
    let round = s / namespaces.len();
    let app = &APPS[round % APPS.len()];
    // Past ten services a namespace, the same application gets another
    // service (as `-headless`, `-internal`, ... would).
    let name = match round / APPS.len() {
        0 => app.name.to_string(),
        k => format!("{}-{k}", app.name),
    };
    let ip = format!("10.96.{}.{}", (s + 10) >> 8, (s + 10) & 0xff);
    let _ = write!(
        w,
        "apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: {ns}
spec:
  type: ClusterIP
  clusterIP: {ip}
  clusterIPs:
    - {ip}
  selector:
    app: {app_name}
  ports:
",
        app_name = app.name
    );
    for (i, (port_name, number, protocol)) in app.ports.iter().enumerate() {
        let port = if i == 0 && *protocol == "TCP" { 80 } else { *number };
        let _ = write!(
            w,
            "    - name: {port_name}
      port: {port}
      targetPort: {port_name}
      protocol: {protocol}
"
        );
    }
}

/// A prefix outside the cluster's 10.0.0.0/8, `/16` to `/24`, with two
/// more specific prefixes inside it to carve out.
fn external_cidr(rng: &mut Rng) -> (String, [String; 2]) {
    let mut a = 11 + rng.below(212) as u32;
    if a == 127 {
        a = 128;
    }
    let len = 16 + rng.below(9) as u32;
    let base = (a << 24 | (rng.next() as u32 & 0x00ff_ffff)) & (u32::MAX << (32 - len));
    let sub = |rng: &mut Rng| {
        let sub_len = len + 2 + rng.below(6) as u32;
        let host_bits = rng.next() as u32 & !(u32::MAX << (32 - len));
        let addr = (base | host_bits) & (u32::MAX << (32 - sub_len));
        format!("{}/{sub_len}", std::net::Ipv4Addr::from(addr))
    };
    let except = [sub(rng), sub(rng)];
    (format!("{}/{len}", std::net::Ipv4Addr::from(base)), except)
}

fn policy(w: &mut String, rng: &mut Rng, p: usize, namespaces: &[Namespace]) {
    let ns = &namespaces[p % namespaces.len()];
    let other = &namespaces[rng.below(namespaces.len())];
    let subject = rng.pick(&APPS);
    let peer = rng.pick(&APPS);
    let (port_name, port_number, port_protocol) = subject.ports[0];
    let name = &ns.name;
    let netpol_head = |w: &mut String, kind: &str| {
        let _ = write!(
            w,
            "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {kind}-{p}
  namespace: {name}
spec:
"
        );
    };
    let cnp_head = |w: &mut String, kind: &str| {
        let _ = write!(
            w,
            "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: {kind}-{p}
  namespace: {name}
spec:
  endpointSelector:
    matchLabels:
      app: {}
",
            subject.name
        );
    };
    // The first round of policies puts every namespace into default deny.
    let template = if p < namespaces.len() { 0 } else { 1 + p % 10 };
    match template {
        0 => {
            netpol_head(w, "default-deny");
            w.push_str("  podSelector: {}\n  policyTypes:\n    - Ingress\n    - Egress\n");
        }
        1 => {
            netpol_head(w, "allow-from-peer");
            let _ = write!(
                w,
                "  podSelector:
    matchLabels:
      app: {subject}
  policyTypes:
    - Ingress
  ingress:
    - from:
        - podSelector:
            matchLabels:
              app: {peer}
      ports:
        - protocol: {port_protocol}
          port: {port_name}
",
                subject = subject.name,
                peer = peer.name
            );
        }
        2 => {
            netpol_head(w, "allow-from-team");
            let _ = write!(
                w,
                "  podSelector:
    matchLabels:
      app: {subject}
  ingress:
    - from:
        - namespaceSelector:
            matchLabels:
              team: {team}
          podSelector:
            matchLabels:
              tier: web
        - namespaceSelector:
            matchExpressions:
              - key: env
                operator: In
                values:
                  - prod
                  - staging
      ports:
        - protocol: {port_protocol}
          port: {port_number}
",
                subject = subject.name,
                team = other.team,
            );
        }
        3 => {
            netpol_head(w, "egress-external");
            let (cidr, [e1, e2]) = external_cidr(rng);
            let _ = write!(
                w,
                "  podSelector:
    matchLabels:
      tier: {tier}
  policyTypes:
    - Egress
  egress:
    - to:
        - ipBlock:
            cidr: {cidr}
            except:
              - {e1}
              - {e2}
      ports:
        - protocol: TCP
          port: 443
    - to:
        - namespaceSelector:
            matchLabels:
              team: platform
          podSelector:
            matchLabels:
              app: resolver
      ports:
        - protocol: UDP
          port: dns
        - protocol: TCP
          port: dns-tcp
",
                tier = subject.tier
            );
        }
        4 => {
            netpol_head(w, "allow-port-range");
            let low = 8000 + 100 * rng.below(10);
            let _ = write!(
                w,
                "  podSelector:
    matchLabels:
      app: {subject}
  policyTypes:
    - Ingress
  ingress:
    - from:
        - podSelector:
            matchExpressions:
              - key: app
                operator: In
                values:
                  - {peer}
                  - worker
        - namespaceSelector:
            matchLabels:
              kubernetes.io/metadata.name: {other}
      ports:
        - protocol: TCP
          port: {low}
          endPort: {high}
        - protocol: UDP
          port: 5353
",
                subject = subject.name,
                peer = peer.name,
                other = other.name,
                high = low + 99
            );
        }
        5 => {
            netpol_head(w, "egress-data");
            let _ = write!(
                w,
                "  podSelector:
    matchLabels:
      app: {subject}
  policyTypes:
    - Egress
  egress:
    - to:
        - podSelector:
            matchLabels:
              tier: data
      ports:
        - port: postgres
        - port: redis
        - port: amqp
",
                subject = subject.name
            );
        }
        6 => {
            cnp_head(w, "from-endpoints");
            let _ = write!(
                w,
                "  ingress:
    - fromEndpoints:
        - matchLabels:
            app: {peer}
            k8s:io.kubernetes.pod.namespace: {other}
        - matchLabels:
            tier: web
      toPorts:
        - ports:
            - port: \"{port_number}\"
              protocol: {port_protocol}
",
                peer = peer.name,
                other = other.name,
            );
        }
        7 => {
            cnp_head(w, "world-egress");
            w.push_str(
                "  egress:
    - toEntities:
        - world
      toPorts:
        - ports:
            - port: \"443\"
              protocol: TCP
    - toEntities:
        - cluster
",
            );
        }
        8 => {
            cnp_head(w, "cidr-egress");
            let (cidr, [e1, e2]) = external_cidr(rng);
            let _ = write!(
                w,
                "  egress:
    - toCIDRSet:
        - cidr: {cidr}
          except:
            - {e1}
            - {e2}
      toPorts:
        - ports:
            - port: \"30000\"
              endPort: 32767
              protocol: TCP
"
            );
        }
        9 => {
            cnp_head(w, "egress-deny");
            let (cidr, _) = external_cidr(rng);
            let _ = write!(
                w,
                "  egressDeny:
    - toCIDR:
        - {cidr}
    - toEntities:
        - world
      toPorts:
        - ports:
            - port: \"25\"
              protocol: TCP
"
            );
        }
        _ => {
            cnp_head(w, "ingress-ranges");
            let _ = write!(
                w,
                "  ingress:
    - fromEndpoints:
        - matchExpressions:
            - key: k8s:io.kubernetes.pod.namespace
              operator: In
              values:
                - {name}
                - {other}
            - key: tier
              operator: NotIn
              values:
                - data
      toPorts:
        - ports:
            - port: \"9000\"
              endPort: 9400
              protocol: TCP
            - port: \"53\"
              protocol: ANY
  ingressDeny:
    - toPorts:
        - ports:
            - port: \"9090\"
              protocol: TCP
",
                other = other.name
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generate(spec: &ClusterSpec) -> (Written, Vec<String>) {
        let dir = std::env::temp_dir().join(format!(
            "policyc-synth-test-{}-{}-{}",
            std::process::id(),
            spec.seed,
            spec.churn_permille
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let written = write_cluster(spec, &dir).unwrap();
        let mut names: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        names.sort();
        let texts = names.iter().map(|p| fs::read_to_string(p).unwrap()).collect();
        fs::remove_dir_all(&dir).unwrap();
        (written, texts)
    }

    #[test]
    fn same_seed_same_bytes_and_documents_split_by_thousand() {
        let spec = ClusterSpec { nodes: 20, pods: 1500, policies: 300, services: 40, seed: 7, churn_permille: 0 };
        let (written, a) = generate(&spec);
        let (_, b) = generate(&spec);
        assert_eq!(a, b);
        // 15 namespaces, 20 nodes, 1500 pods, 40 services, 300 policies.
        assert_eq!(written.documents, 15 + 20 + 1500 + 40 + 300);
        assert_eq!(written.files, 2);
        assert_eq!(a[0].matches("\n---\n").count(), DOCUMENTS_PER_FILE - 1);
    }

    #[test]
    fn churn_replaces_about_its_share_of_pods_and_nothing_else() {
        let base = ClusterSpec { nodes: 20, pods: 3000, policies: 100, services: 20, seed: 3, churn_permille: 0 };
        let (_, a) = generate(&base);
        let (_, b) = generate(&ClusterSpec { churn_permille: 10, ..base });
        let (a, b) = (a.concat(), b.concat());
        let (a_docs, b_docs): (Vec<_>, Vec<_>) = (a.split("\n---\n").collect(), b.split("\n---\n").collect());
        assert_eq!(a_docs.len(), b_docs.len());
        let changed: Vec<_> = a_docs.iter().zip(&b_docs).filter(|(x, y)| x != y).collect();
        assert!((15..=45).contains(&changed.len()), "{} pods replaced of 3000", changed.len());
        assert!(changed.iter().all(|(x, _)| x.contains("kind: Pod")));
        assert!(changed.iter().any(|(x, y)| x.contains("version: v") && {
            let v = |d: &str| d.lines().find(|l| l.contains("version: v")).map(str::to_owned);
            v(x) != v(y)
        }));
    }

    #[test]
    fn pod_addresses_are_unique_and_inside_their_node_cidr() {
        let spec = ClusterSpec { nodes: 20, pods: 20_000, policies: 0, services: 0, seed: 1, churn_permille: 0 };
        let ips: std::collections::BTreeSet<_> = (0..20_000).map(|i| pod_ip(&spec, i)).collect();
        assert_eq!(ips.len(), 20_000);
        assert_eq!(pod_ip(&spec, 0), "10.1.0.1");
        assert_eq!(pod_ip(&spec, 20 * 255 + 3), "10.4.1.0");
        // Thousands of nodes: a /24 each.
        let spec = ClusterSpec { nodes: 5_000, pods: 150_000, ..spec };
        let ips: std::collections::BTreeSet<_> = (0..150_000).map(|i| pod_ip(&spec, i)).collect();
        assert_eq!(ips.len(), 150_000);
        assert_eq!(node_cidr(&spec, 4_999), "10.20.135.0/24");
        assert_eq!(pod_ip(&spec, 4_999), "10.20.135.1");
        assert_eq!(pod_ip(&spec, 149_999), "10.20.135.30");
    }

    #[test]
    fn external_cidrs_stay_outside_the_cluster_and_excepts_inside_them() {
        let mut rng = Rng::new(1);
        for _ in 0..1000 {
            let (cidr, excepts) = external_cidr(&mut rng);
            let parse = |s: &str| {
                let (a, l) = s.split_once('/').unwrap();
                (u32::from(a.parse::<std::net::Ipv4Addr>().unwrap()), l.parse::<u32>().unwrap())
            };
            let (base, len) = parse(&cidr);
            assert_ne!(base >> 24, 10);
            assert_ne!(base >> 24, 127);
            for e in excepts {
                let (sub, sub_len) = parse(&e);
                assert!(sub_len > len && sub_len <= 32);
                assert_eq!(sub & (u32::MAX << (32 - len)), base, "{e} not in {cidr}");
            }
        }
    }
}
