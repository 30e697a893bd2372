//! `cargo xtask bench services` (root), part (b) of issue 15's benchmark:
//! one endpoint change on a node with [`SERVICES`] Services of
//! [`ENDPOINTS`] endpoints each, timed in one run three ways.
//!
//! - **iptables**: kube-proxy's iptables layout (`pkg/proxy/iptables/
//!   proxier.go`): `KUBE-SERVICES` jumps per cluster IP and port to a
//!   `KUBE-SVC-*` chain (a masquerade mark for sources outside the cluster
//!   CIDR, then one `-m statistic --mode random --probability 1/(n-i)` jump
//!   per endpoint), each endpoint a `KUBE-SEP-*` chain (hairpin mark,
//!   `DNAT --to-destination`), `KUBE-POSTROUTING` masquerading marked
//!   packets. A sync restores the whole `nat` table with
//!   `iptables-restore --noflush` (every chain declared, so flushed and
//!   rewritten): that is the row the target is measured against. Since
//!   Kubernetes 1.27 (`MinimizeIPTablesRestore`) kube-proxy writes
//!   `KUBE-SERVICES` whole but only the chains that changed: shown as a
//!   second row. Both with the legacy and the nft backend of
//!   `iptables-restore` where installed.
//! - **nftables**: kube-proxy's nftables mode (`pkg/proxy/nftables/
//!   proxier.go`): a `service-ips` verdict map from `address . protocol .
//!   port` to a per-service chain, whose `numgen random mod N vmap` picks a
//!   per-endpoint chain (hairpin mark, `dnat to`). Its partial syncs send
//!   only what changed: the new endpoint's chain, the changed service
//!   chain rewritten, the old endpoint chain flushed (deleted later). That
//!   transaction is timed (`nft -f`), over a table loaded with the whole
//!   layout first (its load time is shown, not compared).
//! - **policyc**: both clusters compiled once for the node (not timed);
//!   `policyc-loader apply` of the base on a fresh bpffs (mounted for the
//!   run), then the changed bundle applied over it, timed as a whole
//!   process and by the phases the loader reports; the map operations it
//!   did come from its JSON report, split into service maps (`lb*`,
//!   services, backends, reverse NAT) and the rest. If the loader loads no
//!   service map (issue 15's datapath not merged yet), it says so: the
//!   apply then checks the service tables and writes none.
//!
//! iptables and nft run in a network namespace made for the run, so the
//! host's tables are never touched; every address is in 10.200.0.0/16 and
//! nothing is routed. The cluster has 10 000 × 10 endpoints, but two
//! Services share each set of 10 addresses (a pod often backs more than
//! one Service): policyc's backend map holds a backend once per address
//! and port, and 100 000 distinct ones would not fit Cilium's default map
//! size (65 536, `bpf-lb-map-max`), which the compiler enforces; kube-proxy
//! writes a `KUBE-SEP-*` (nft: `endpoint-*`) chain per Service and
//! endpoint either way, so its tables are those of 100 000 endpoints. The
//! change replaces one endpoint of one Service by a new address.
//!
//! Chain names: kube-proxy hashes with SHA-256 and base32; here a 64-bit
//! FNV hash in the same alphabet and of the same length, so the kernel
//! sees names of the same size. Best of [`RUNS`] for policyc and nft; one
//! run of each iptables restore (each takes tens of seconds).

use crate::bench_apply::sh;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Services of the node.
const SERVICES: usize = 10_000;
/// Endpoints of each Service.
const ENDPOINTS: usize = 10;
const RUNS: usize = 3;
/// The network namespace iptables and nft run in (the task's short name
/// `sf`).
const NETNS: &str = "sfbench";
/// The loader's directory under the bpffs mounted for the run.
const ROOT: &str = "sfbench";
/// The cluster's pod CIDR (kube-proxy's `--cluster-cidr`, used to mark
/// traffic from outside it for masquerade).
const CLUSTER_CIDR: &str = "10.200.0.0/16";
/// The Service whose endpoint changes.
const CHANGED: usize = 0;
const NAMESPACE: &str = "bench";

/// `10.200.0.0` + `offset`.
fn address(offset: usize) -> String {
    format!("10.200.{}.{}", offset >> 8, offset & 255)
}

fn cluster_ip(service: usize) -> String {
    address(1 + service)
}

fn service_name(service: usize) -> String {
    format!("s{service:05}")
}

/// Every Service's endpoint addresses: Services `2k` and `2k+1` share
/// theirs; with `changed`, one endpoint of [`CHANGED`] is a new address.
fn endpoints(changed: bool) -> Vec<Vec<String>> {
    (0..SERVICES)
        .map(|s| {
            (0..ENDPOINTS)
                .map(|j| {
                    if changed && s == CHANGED && j == 0 {
                        address(63_000)
                    } else {
                        address(12_000 + (s / 2) * ENDPOINTS + j)
                    }
                })
                .collect()
        })
        .collect()
}

/// The manifests: a node, a namespace, each Service (no selector) with
/// its EndpointSlice, endpoints spread over three nodes.
fn manifests(eps: &[Vec<String>]) -> String {
    let mut out = String::new();
    out.push_str("apiVersion: v1\nkind: Namespace\nmetadata: {name: bench}\n");
    for (i, node) in ["node-a", "node-b", "node-c"].iter().enumerate() {
        let _ = write!(
            out,
            "---\napiVersion: v1\nkind: Node\nmetadata: {{name: {node}}}\nstatus: {{addresses: [{{type: InternalIP, address: {}}}]}}\n",
            address(65_000 + i)
        );
    }
    // The node's one pod: the loader loads its maps and programs for the
    // endpoints of a bundle.
    let _ = write!(
        out,
        "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: client, namespace: {NAMESPACE}}}\n\
         spec: {{nodeName: node-a}}\nstatus: {{podIP: {}}}\n",
        address(65_100)
    );
    for (s, addresses) in eps.iter().enumerate() {
        let name = service_name(s);
        let _ = write!(
            out,
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {NAMESPACE}}}\n\
             spec: {{clusterIP: {}, ports: [{{name: http, port: 80, targetPort: 8080}}]}}\n\
             ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
             metadata: {{name: {name}-x, namespace: {NAMESPACE}, labels: {{kubernetes.io/service-name: {name}}}}}\n\
             addressType: IPv4\nports: [{{name: http, port: 8080, protocol: TCP}}]\nendpoints:\n",
            cluster_ip(s)
        );
        for (j, a) in addresses.iter().enumerate() {
            let _ = writeln!(out, "- {{addresses: [{a}], nodeName: node-{}}}", ["a", "b", "c"][j % 3]);
        }
    }
    out
}

/// `len` (at most 24) base32 characters (kube-proxy's alphabet) of two
/// 64-bit FNV-1a hashes of `s`.
fn hash(s: &str, len: usize) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let fnv = |seed: u64| s.bytes().fold(seed, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    let halves = [fnv(0xcbf2_9ce4_8422_2325), fnv(0x8422_2325_cbf2_9ce4)];
    (0..len).map(|i| ALPHABET[((halves[i / 12] >> (5 * (i % 12))) & 31) as usize] as char).collect()
}

/// kube-proxy's service port name (`ns/name:port`).
fn port_name(service: usize) -> String {
    format!("{NAMESPACE}/{}:http", service_name(service))
}

fn svc_chain(service: usize) -> String {
    format!("KUBE-SVC-{}", hash(&format!("{}tcp", port_name(service)), 16))
}

fn sep_chain(service: usize, endpoint: &str) -> String {
    format!("KUBE-SEP-{}", hash(&format!("{}tcp{endpoint}:8080", port_name(service)), 16))
}

/// The `KUBE-SERVICES` rule of a Service.
fn services_rule(out: &mut String, s: usize) {
    let _ = writeln!(
        out,
        "-A KUBE-SERVICES -m comment --comment \"{} cluster IP\" -m tcp -p tcp -d {}/32 --dport 80 -j {}",
        port_name(s),
        cluster_ip(s),
        svc_chain(s)
    );
}

/// A Service's `KUBE-SVC-*` rules and its endpoints' `KUBE-SEP-*` rules.
fn service_rules(out: &mut String, s: usize, addresses: &[String]) {
    let (name, chain) = (port_name(s), svc_chain(s));
    let _ = writeln!(
        out,
        "-A {chain} -m comment --comment \"{name} cluster IP\" -m tcp -p tcp -d {}/32 --dport 80 ! -s {CLUSTER_CIDR} -j KUBE-MARK-MASQ",
        cluster_ip(s)
    );
    let n = addresses.len();
    for (i, a) in addresses.iter().enumerate() {
        let probability = if i + 1 < n {
            format!("-m statistic --mode random --probability {:.10} ", 1.0 / (n - i) as f64)
        } else {
            String::new()
        };
        let _ =
            writeln!(out, "-A {chain} -m comment --comment \"{name} -> {a}:8080\" {probability}-j {}", sep_chain(s, a));
    }
    for a in addresses {
        let sep = sep_chain(s, a);
        let _ = writeln!(out, "-A {sep} -m comment --comment {name} -s {a}/32 -j KUBE-MARK-MASQ");
        let _ = writeln!(out, "-A {sep} -m comment --comment {name} -m tcp -p tcp -j DNAT --to-destination {a}:8080");
    }
}

/// The `nat` table as kube-proxy restores it: every chain declared, then
/// every rule, the endpoint chains of [`CHANGED`] no longer used (`stale`)
/// deleted; with `minimal`, kube-proxy's minimal restore: `KUBE-SERVICES`
/// whole and the chains of [`CHANGED`] alone.
fn iptables_nat(eps: &[Vec<String>], stale: &[String], minimal: bool) -> String {
    let mut out = String::from("*nat\n");
    let chains = ["KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ"];
    for c in chains {
        let _ = writeln!(out, ":{c} - [0:0]");
    }
    let services: Vec<usize> = if minimal { vec![CHANGED] } else { (0..eps.len()).collect() };
    for &s in &services {
        let _ = writeln!(out, ":{} - [0:0]", svc_chain(s));
        for a in &eps[s] {
            let _ = writeln!(out, ":{} - [0:0]", sep_chain(s, a));
        }
    }
    for a in stale {
        let _ = writeln!(out, ":{} - [0:0]", sep_chain(CHANGED, a));
    }
    out.push_str("-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n");
    out.push_str("-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000\n");
    out.push_str(
        "-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully\n",
    );
    out.push_str("-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000\n");
    for s in 0..eps.len() {
        services_rule(&mut out, s);
    }
    for &s in &services {
        service_rules(&mut out, s, &eps[s]);
    }
    for a in stale {
        let _ = writeln!(out, "-X {}", sep_chain(CHANGED, a));
    }
    out.push_str(
        "-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\n",
    );
    out.push_str("COMMIT\n");
    out
}

fn nft_svc_chain(service: usize) -> String {
    let base = format!("{NAMESPACE}/{}/tcp/http", service_name(service));
    format!("service-{}-{base}", hash(&base, 8))
}

fn nft_ep_chain(service: usize, endpoint: &str) -> String {
    let base = format!("{NAMESPACE}/{}/tcp/http__{endpoint}/8080", service_name(service));
    format!("endpoint-{}-{base}", hash(&base, 8))
}

const NFT_TABLE: &str = "ip kube-proxy";

/// An endpoint chain: created (or emptied) and filled.
fn nft_endpoint(out: &mut String, s: usize, a: &str, flush: bool) {
    let chain = nft_ep_chain(s, a);
    let _ = writeln!(out, "add chain {NFT_TABLE} {chain}");
    if flush {
        let _ = writeln!(out, "flush chain {NFT_TABLE} {chain}");
    }
    let _ = writeln!(out, "add rule {NFT_TABLE} {chain} ip saddr {a} jump mark-for-masquerade");
    let _ = writeln!(out, "add rule {NFT_TABLE} {chain} meta l4proto tcp dnat to {a}:8080");
}

/// A service chain: created (or emptied) and filled.
fn nft_service(out: &mut String, s: usize, addresses: &[String], flush: bool) {
    let chain = nft_svc_chain(s);
    let _ = writeln!(out, "add chain {NFT_TABLE} {chain}");
    if flush {
        let _ = writeln!(out, "flush chain {NFT_TABLE} {chain}");
    }
    let _ = writeln!(
        out,
        "add rule {NFT_TABLE} {chain} ip daddr {} tcp dport 80 ip saddr != {CLUSTER_CIDR} jump mark-for-masquerade",
        cluster_ip(s)
    );
    let targets: Vec<String> =
        addresses.iter().enumerate().map(|(i, a)| format!("{i} : goto {}", nft_ep_chain(s, a))).collect();
    let _ = writeln!(
        out,
        "add rule {NFT_TABLE} {chain} numgen random mod {} vmap {{ {} }}",
        addresses.len(),
        targets.join(", ")
    );
}

/// kube-proxy's whole nftables table for `eps`.
fn nft_table(eps: &[Vec<String>]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "add table {NFT_TABLE} {{ comment \"rules for kube-proxy\" ; }}");
    for (chain, hook, priority) in [
        ("nat-prerouting", "prerouting", -100),
        ("nat-output", "output", -100),
        ("nat-postrouting", "postrouting", 100),
    ] {
        let _ = writeln!(out, "add chain {NFT_TABLE} {chain} {{ type nat hook {hook} priority {priority} ; }}");
    }
    for chain in ["services", "masquerading", "mark-for-masquerade"] {
        let _ = writeln!(out, "add chain {NFT_TABLE} {chain}");
    }
    for (from, to) in [("nat-prerouting", "services"), ("nat-output", "services"), ("nat-postrouting", "masquerading")]
    {
        let _ = writeln!(out, "add rule {NFT_TABLE} {from} jump {to}");
    }
    let _ = writeln!(out, "add rule {NFT_TABLE} mark-for-masquerade mark set mark or 0x4000");
    let _ = writeln!(out, "add rule {NFT_TABLE} masquerading mark and 0x4000 == 0 return");
    let _ = writeln!(out, "add rule {NFT_TABLE} masquerading mark set mark xor 0x4000");
    let _ = writeln!(out, "add rule {NFT_TABLE} masquerading masquerade fully-random");
    let _ = writeln!(
        out,
        "add map {NFT_TABLE} service-ips {{ type ipv4_addr . inet_proto . inet_service : verdict ; comment \"ClusterIP, ExternalIP and LoadBalancer IP traffic\" ; }}"
    );
    let _ = writeln!(out, "add rule {NFT_TABLE} services ip daddr . meta l4proto . th dport vmap @service-ips");
    for (s, addresses) in eps.iter().enumerate() {
        for a in addresses {
            nft_endpoint(&mut out, s, a, false);
        }
        nft_service(&mut out, s, addresses, false);
        let _ = writeln!(
            out,
            "add element {NFT_TABLE} service-ips {{ {} . tcp . 80 : goto {} }}",
            cluster_ip(s),
            nft_svc_chain(s)
        );
    }
    out
}

/// kube-proxy's partial nftables sync from `from` to `to` for Service `s`:
/// new endpoint chains, the service chain rewritten, endpoint chains no
/// longer used flushed (kube-proxy deletes them a second later).
fn nft_change(from: &[String], to: &[String], s: usize) -> String {
    let mut out = String::new();
    for a in to.iter().filter(|a| !from.contains(a)) {
        nft_endpoint(&mut out, s, a, true);
    }
    nft_service(&mut out, s, to, true);
    for a in from.iter().filter(|a| !to.contains(a)) {
        let _ = writeln!(out, "flush chain {NFT_TABLE} {}", nft_ep_chain(s, a));
    }
    out
}

/// Deletes what the run made, even when it fails.
struct Cleanup {
    loader: PathBuf,
    bpffs: PathBuf,
    state: PathBuf,
}

impl Cleanup {
    fn run(&self) {
        let _ = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{NETNS}"))
            .arg(&self.loader)
            .arg("--bpffs")
            .arg(&self.bpffs)
            .args(["--root", ROOT, "--state"])
            .arg(&self.state)
            .arg("uninstall")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        for dir in [&self.bpffs, &self.state] {
            let _ = Command::new("umount").arg(dir).stderr(Stdio::null()).status();
        }
        let _ = Command::new("ip").args(["netns", "del", NETNS]).stderr(Stdio::null()).status();
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.run();
    }
}

/// Wall and CPU time (user and system: the kernel's work on the
/// process's behalf included) of one process.
#[derive(Clone, Copy, Debug)]
struct Took {
    wall: Duration,
    cpu: Duration,
}

impl Took {
    const MAX: Took = Took { wall: Duration::MAX, cpu: Duration::MAX };

    fn min(self, other: Took) -> Took {
        if other.wall < self.wall {
            other
        } else {
            self
        }
    }
}

/// Runs `cmd` (stdin as set), timed; its stdout. Its stderr goes to
/// `stderr` (named in the error).
fn measured(cmd: &mut Command, stderr: &Path) -> Result<(Took, String), String> {
    use std::io::Read as _;
    let err = std::fs::File::create(stderr).map_err(|e| e.to_string())?;
    let start = std::time::Instant::now();
    let mut child = cmd.stdout(Stdio::piped()).stderr(err).spawn().map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        stdout.read_to_string(&mut out).map_err(|e| e.to_string())?;
    }
    let (status, usage) = crate::bench::wait_with_usage(child.id()).map_err(|e| e.to_string())?;
    let wall = start.elapsed();
    if !status.success() {
        let text = std::fs::read_to_string(stderr).unwrap_or_default();
        return Err(format!("{cmd:?} failed ({status}): {text}"));
    }
    Ok((Took { wall, cpu: usage.cpu }, out))
}

/// Runs `program args` in [`NETNS`] with `file` on stdin, timed
/// (`ip netns exec` execs the program in place: the usage is the
/// program's).
fn in_netns(program: &str, args: &[&str], file: &Path) -> Result<Took, String> {
    let f = std::fs::File::open(file).map_err(|e| e.to_string())?;
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", NETNS, program]).args(args).stdin(f);
    measured(&mut cmd, &file.with_extension("stderr")).map(|(t, _)| t)
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The iptables rows of one backend.
struct IptablesRows {
    /// The base table restored (untimed setup).
    setup: Took,
    /// The whole changed table over it.
    full: Took,
    /// kube-proxy's minimal restore.
    minimal: Took,
}

/// iptables rows, one run each (a whole-table restore takes tens of
/// seconds; the rows differ by orders of magnitude): the base table
/// (untimed setup), the whole changed table over it, then the minimal
/// restore (over the changed state it writes the same chains).
fn time_iptables(restore: &str, work: &Path) -> Result<IptablesRows, String> {
    let (base, changed) = (endpoints(false), endpoints(true));
    let stale: Vec<String> = base[CHANGED].iter().filter(|a| !changed[CHANGED].contains(a)).cloned().collect();
    let files = [
        ("base", iptables_nat(&base, &[], false)),
        ("full", iptables_nat(&changed, &stale, false)),
        ("minimal", iptables_nat(&changed, &stale, true)),
    ];
    for (name, text) in &files {
        write(&work.join(format!("iptables-{name}.rules")), text)?;
    }
    let restore_file = |name: &str| in_netns(restore, &["--noflush"], &work.join(format!("iptables-{name}.rules")));
    let rows =
        IptablesRows { setup: restore_file("base")?, full: restore_file("full")?, minimal: restore_file("minimal")? };
    // Leave the namespace's nat table empty for the next backend.
    let _ = sh(Command::new("ip").args(["netns", "exec", NETNS, restore]).stdin(Stdio::null()));
    Ok(rows)
}

/// nft rows: the load of the whole table (setup), the best partial sync,
/// and the lines of that sync.
fn time_nft(work: &Path) -> Result<(Took, Took, usize), String> {
    let (base, changed) = (endpoints(false), endpoints(true));
    let (table, forward, back) = (work.join("nft-table.nft"), work.join("nft-change.nft"), work.join("nft-back.nft"));
    write(&table, &nft_table(&base))?;
    let change = nft_change(&base[CHANGED], &changed[CHANGED], CHANGED);
    write(&forward, &change)?;
    write(&back, &nft_change(&changed[CHANGED], &base[CHANGED], CHANGED))?;
    let load = in_netns("nft", &["-f", "-"], &table)?;
    let mut best = Took::MAX;
    for _ in 0..RUNS {
        best = best.min(in_netns("nft", &["-f", "-"], &forward)?);
        in_netns("nft", &["-f", "-"], &back)?;
    }
    let _ = sh(Command::new("ip").args(["netns", "exec", NETNS, "nft", "delete", "table", "ip", "kube-proxy"]));
    Ok((load, best, change.lines().count()))
}

/// One timed apply, from the loader's JSON report.
struct Applied {
    took: Took,
    /// The sum of the phases the loader reports: the apply without
    /// process start and exit.
    in_process: Duration,
    /// Operations per map.
    maps: Vec<(String, u64)>,
}

/// Whether map `name` is a service map.
fn is_service_map(name: &str) -> bool {
    name.starts_with("lb")
        || ["service", "backend", "revnat", "rev_nat", "reverse_nat"].iter().any(|k| name.contains(k))
}

impl Applied {
    fn of(took: Took, json: &str) -> Result<Applied, String> {
        let report: serde_json::Value = serde_json::from_str(json).map_err(|e| format!("loader report: {e}"))?;
        let maps = report["maps"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(name, o)| {
                        let ops = ["added", "updated", "removed"].iter().map(|k| o[*k].as_u64().unwrap_or(0)).sum();
                        (name.clone(), ops)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let ms: f64 = report["phases"].as_array().map_or(0.0, |p| p.iter().filter_map(|x| x[1].as_f64()).sum());
        Ok(Applied { took, in_process: Duration::from_secs_f64(ms / 1e3), maps })
    }

    fn operations(&self, service: bool) -> u64 {
        self.maps.iter().filter(|(n, _)| is_service_map(n) == service).map(|(_, o)| o).sum()
    }
}

/// A compiled bundle of `yaml` for node-a, in `dir`.
fn compile(policyc: &Path, dir: &Path, yaml: &str) -> Result<PathBuf, String> {
    let input = dir.join("input");
    std::fs::create_dir_all(&input).map_err(|e| e.to_string())?;
    write(&input.join("cluster.yaml"), yaml)?;
    let out = dir.join("out");
    sh(Command::new(policyc).arg("compile").arg(&input).args(["--node", "node-a", "--out"]).arg(&out))?;
    Ok(out.join("node-a"))
}

/// Lines of a bundle's map file.
fn lines(bundle: &Path, file: &str) -> usize {
    std::fs::read_to_string(bundle.join(file)).map_or(0, |t| t.lines().count())
}

/// Pinned maps under `dir` whose names are service maps.
fn pinned_service_maps(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            out.extend(pinned_service_maps(&path));
        } else if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
            if is_service_map(name) {
                out.push(name.to_string());
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn ratio(slow: Duration, fast: Duration) -> String {
    format!("{:.0}x", slow.as_secs_f64() / fast.as_secs_f64())
}

/// The client pod's interface, in [`NETNS`].
const VETH: &str = "sfb0";

/// policyc's rows: the best of [`RUNS`] applies of `changed` over `base`,
/// the loader in [`NETNS`] (where the client pod's interface is), and the
/// service maps it pinned.
fn time_policyc(
    loader_bin: &Path,
    bpffs: &Path,
    state: &Path,
    base: &Path,
    changed: &Path,
) -> Result<(Applied, Vec<String>), String> {
    let loader = |bundle: &Path| {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{NETNS}")).arg(loader_bin);
        c.arg("--bpffs").arg(bpffs).args(["--root", ROOT, "--state"]).arg(state).arg("--json");
        c.arg("apply").arg(bundle).args(["--interface", &format!("{NAMESPACE}/client={VETH}")]);
        c
    };
    let stderr = state.join("loader.stderr");
    let mut best: Option<Applied> = None;
    for _ in 0..RUNS {
        // Both generations hold the base before each timed apply, so it
        // writes the change and nothing else.
        sh(loader(base).arg("--reconcile"))?;
        sh(loader(base).arg("--reconcile"))?;
        // Past the loader's switch grace (10 ms), which only back-to-back
        // applies pay.
        std::thread::sleep(Duration::from_millis(30));
        let (took, json) = measured(&mut loader(changed), &stderr)?;
        let applied = Applied::of(took, &json)?;
        if best.as_ref().is_none_or(|b| applied.took.wall < b.took.wall) {
            best = Some(applied);
        }
    }
    let pinned = pinned_service_maps(&bpffs.join(ROOT));
    Ok((best.ok_or("no run")?, pinned))
}

/// Runs the benchmark.
pub fn run() -> Result<(), String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|l| l.split_whitespace().next()) != Some("0") {
        return Err("bench services mounts bpffs, loads maps and makes a netns: run it as root".into());
    }
    crate::deps::ensure_bench()?;
    crate::cargo(&["build", "--release", "-p", "policyc", "-p", "policyc-loader"], &[])?;
    let bin = crate::bench::target_dir().join("release");
    let (policyc, loader_bin) = (bin.join("policyc"), bin.join("policyc-loader"));
    let work = crate::bench::target_dir().join("bench/services");
    let (bpffs, state) = (work.join("bpffs"), work.join("state"));
    let cleanup = Cleanup { loader: loader_bin.clone(), bpffs: bpffs.clone(), state: state.clone() };
    cleanup.run();
    let _ = std::fs::remove_dir_all(&work);
    for dir in [&bpffs, &state] {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    sh(Command::new("mount").args(["-t", "bpf", "sfbench"]).arg(&bpffs))?;
    sh(Command::new("mount").args(["-t", "tmpfs", "sfbench"]).arg(&state))?;
    sh(Command::new("ip").args(["netns", "add", NETNS]))?;
    sh(Command::new("ip").args(["-n", NETNS, "link", "add", VETH, "type", "veth", "peer", "name", "sfb0p"]))?;
    sh(Command::new("ip").args(["-n", NETNS, "link", "set", VETH, "up"]))?;

    eprintln!("xtask: bench services: compiling {SERVICES} services x {ENDPOINTS} endpoints twice (not timed)");
    let base = compile(&policyc, &work.join("base"), &manifests(&endpoints(false)))?;
    let changed = compile(&policyc, &work.join("changed"), &manifests(&endpoints(true)))?;
    eprintln!("xtask: bench services: policyc-loader apply");
    let (applied, pinned) = time_policyc(&loader_bin, &bpffs, &state, &base, &changed)?;
    // Each row is printed as soon as it is measured: a whole-table restore
    // with the nft backend of iptables takes many minutes at this size.
    head(&base, &applied);
    eprintln!("xtask: bench services: nft (loading kube-proxy's whole table first)");
    let (nft_load, nft_sync, nft_lines) = time_nft(&work)?;
    row(&format!("nft -f, kube-proxy's partial sync ({nft_lines} lines)"), nft_sync, applied.took);
    let rules = iptables_nat(&endpoints(true), &[], false).lines().filter(|l| l.starts_with("-A")).count();
    let mut setups = vec![("nft -f of kube-proxy's whole table".to_string(), nft_load)];
    for restore in ["iptables-legacy-restore", "iptables-nft-restore"] {
        if Command::new(restore).arg("--version").output().is_ok_and(|o| o.status.success()) {
            eprintln!("xtask: bench services: {restore}");
            let r = time_iptables(restore, &work)?;
            row(&format!("{restore} --noflush, the whole nat table ({rules} rules)"), r.full, applied.took);
            row(&format!("{restore} --noflush, minimal (KUBE-SERVICES + 1 service)"), r.minimal, applied.took);
            setups.push((format!("{restore} of the base table"), r.setup));
        } else {
            eprintln!("xtask: {restore} not found: no {restore} row");
        }
    }
    println!(
        "\ntargets: iptables-restore of the whole table >= 100x policyc, nft >= 10x (ratios above: slower / policyc)"
    );
    for (what, t) in setups {
        println!("untimed setup: {what} {:.0} ms wall, {:.0} ms CPU", ms(t.wall), ms(t.cpu));
    }
    tail(&applied, &pinned);
    drop(cleanup);
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// Prints the header and policyc's row.
fn head(base: &Path, applied: &Applied) {
    println!(
        "policyc services benchmark (b): one endpoint change on a node of {SERVICES} services x {ENDPOINTS} endpoints \
         (policyc and nft best of {RUNS} by wall time, iptables one run each)"
    );
    println!(
        "policyc bundle of node-a: {} services.txt, {} backends.txt, {} revnat.txt lines\n",
        lines(base, "maps/services.txt"),
        lines(base, "maps/backends.txt"),
        lines(base, "maps/revnat.txt")
    );
    let p = applied.took;
    println!("{:<62}  {:>10}  {:>10}  {:>12}  {:>12}", "", "wall ms", "CPU ms", "wall ratio", "CPU ratio");
    println!(
        "{:<62}  {:>10.2}  {:>10.2}  {:>12}  {:>12}",
        "policyc-loader apply (a whole process)",
        ms(p.wall),
        ms(p.cpu),
        "1",
        "1"
    );
    println!("{:<62}  {:>10.2}", "  of which the loader's phases (in-process)", ms(applied.in_process));
}

/// One row beside policyc's apply `p`.
fn row(name: &str, t: Took, p: Took) {
    println!(
        "{name:<62}  {:>10.2}  {:>10.2}  {:>12}  {:>12}",
        ms(t.wall),
        ms(t.cpu),
        ratio(t.wall, p.wall),
        ratio(t.cpu, p.cpu)
    );
}

/// The apply's map operations and whether service maps were loaded.
fn tail(applied: &Applied, pinned: &[String]) {
    let changed: Vec<String> = applied.maps.iter().filter(|(_, o)| *o > 0).map(|(n, o)| format!("{n} {o}")).collect();
    println!(
        "\npolicyc apply map operations: {} on service maps, {} on the others (the node has {SERVICES} services){}",
        applied.operations(true),
        applied.operations(false),
        if changed.is_empty() { String::new() } else { format!(": {}", changed.join(", ")) }
    );
    if pinned.is_empty() {
        println!(
            "NOTE: this loader pins no service map: its apply reads and checks the service tables and writes none \
             (issue 15's service datapath was not merged when this ran); re-measure once it is"
        );
    } else {
        println!("service maps pinned by the loader: {}", pinned.join(", "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_change_is_one_endpoint_of_one_service() {
        let (base, changed) = (endpoints(false), endpoints(true));
        let differing: Vec<usize> = (0..SERVICES).filter(|&s| base[s] != changed[s]).collect();
        assert_eq!(differing, [CHANGED]);
        let new: Vec<&String> = changed[CHANGED].iter().filter(|a| !base[CHANGED].contains(a)).collect();
        assert_eq!(new.len(), 1);
        // Two Services share each set of addresses: 50 000 backends.
        let distinct: std::collections::BTreeSet<&String> = base.iter().flatten().collect();
        assert_eq!(distinct.len(), SERVICES * ENDPOINTS / 2);
    }

    #[test]
    fn iptables_layout_is_kube_proxys() {
        let eps = endpoints(false);
        let table = iptables_nat(&eps[..2], &[], false);
        // Per Service: a KUBE-SERVICES jump, a masquerade mark, one jump per
        // endpoint (all but the last with a probability), two rules per
        // endpoint chain.
        let rules = |prefix: &str| table.lines().filter(|l| l.starts_with(prefix)).count();
        assert_eq!(rules("-A KUBE-SERVICES"), 2 + 1);
        assert_eq!(rules(&format!("-A {} ", svc_chain(0))), 1 + ENDPOINTS);
        assert_eq!(rules("-A KUBE-SEP-"), 2 * 2 * ENDPOINTS);
        assert!(table.contains("--probability 0.1000000000 "), "{table}");
        assert!(table.contains("--probability 0.5000000000 "), "{table}");
        assert_eq!(table.matches("--probability").count(), 2 * (ENDPOINTS - 1));
        // The minimal restore writes KUBE-SERVICES whole and one Service's chains.
        let minimal = iptables_nat(&eps, &["x".into()], true);
        assert_eq!(minimal.lines().filter(|l| l.starts_with("-A KUBE-SERVICES")).count(), SERVICES + 1);
        assert_eq!(minimal.lines().filter(|l| l.starts_with(":KUBE-SVC-")).count(), 1);
        assert_eq!(minimal.lines().filter(|l| l.starts_with("-X KUBE-SEP-")).count(), 1);
    }

    #[test]
    fn nft_change_touches_one_service() {
        let (base, changed) = (endpoints(false), endpoints(true));
        let change = nft_change(&base[CHANGED], &changed[CHANGED], CHANGED);
        // A new endpoint chain (add, flush, two rules), the service chain
        // (add, flush, two rules), the old endpoint chain flushed.
        assert_eq!(change.lines().count(), 4 + 4 + 1, "{change}");
        assert!(change.contains("numgen random mod 10 vmap"));
        let table = nft_table(&base[..3]);
        assert_eq!(table.matches("add element ip kube-proxy service-ips").count(), 3);
    }

    #[test]
    fn chain_names_are_stable_and_distinct() {
        assert_eq!(svc_chain(7), svc_chain(7));
        assert_eq!(svc_chain(7).len(), "KUBE-SVC-".len() + 16);
        let names: std::collections::BTreeSet<String> = (0..SERVICES).map(svc_chain).collect();
        assert_eq!(names.len(), SERVICES);
    }
}
