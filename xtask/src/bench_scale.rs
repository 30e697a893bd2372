//! `cargo xtask bench scale [--quick]`: every node's bundle of a
//! cluster-sized input, compiled by the release `policyc`, and identity
//! numbers across a rolling update.
//!
//! The cluster ([`FULL`]: 5 000 nodes, 150 000 pods, 10 000 policies and
//! 10 000 services) comes from [`crate::synth`] and is compiled once with
//! `policyc compile DIR --out OUT --policy-map-capacity 65536` as a child
//! process: wall time, the
//! child's peak resident memory (`ru_maxrss` from `wait4`), the largest and
//! the median node bundle (apparent bytes of its files, what a node
//! fetches) and the whole output on disk (allocated blocks, each file once:
//! policyc hard-links a file several bundles share). Then the same cluster after 1% of its
//! pods were replaced (half of those with a new version label, so new label
//! sets appear) is compiled with `--previous OUT/<first node>`, and every
//! label set present in both outputs must keep its number in every node's
//! `identities.txt`.
//!
//! The targets for the full cluster on two cores: under 60 s,
//! under 4 GiB, every node bundle under 20 MB.

use crate::bench::{target_dir, wait_with_peak_rss};
use crate::synth::{write_cluster, ClusterSpec};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The cluster.
const FULL: ClusterSpec =
    ClusterSpec { nodes: 5_000, pods: 150_000, policies: 10_000, services: 10_000, seed: SEED, churn_permille: 0 };
/// Small enough for CI: the same shape at a fiftieth.
const QUICK: ClusterSpec =
    ClusterSpec { nodes: 100, pods: 3_000, policies: 200, services: 200, seed: SEED, churn_permille: 0 };
/// Pods per thousand replaced by the rolling update.
const CHURN_PERMILLE: usize = 10;
/// Each endpoint's policy map capacity: at this size a namespace-selector
/// rule (`env In [prod, staging]`) reaches 20 000 peer identities, past
/// the default 16 384 (the 16k per endpoint of Cilium's policy map,
/// https://docs.cilium.io/en/latest/network/ebpf/maps/), so the bench
/// raises it, as such a cluster's operator would.
const POLICY_MAP_CAPACITY: &str = "65536";
/// "scale" in ASCII.
const SEED: u64 = 0x0073_6361_6c65;

const TARGET_SECONDS: f64 = 60.0;
const TARGET_GIB: f64 = 4.0;
const TARGET_BUNDLE_MB: f64 = 20.0;

/// One compile's figures.
struct Compiled {
    elapsed: Duration,
    peak_kib: u64,
}

/// Runs `bench scale [--quick]`.
pub fn run(quick: bool) -> Result<(), String> {
    crate::cargo(&["build", "--release", "-p", "policyc"], &[])?;
    let policyc = target_dir().join("release").join("policyc");
    let spec = if quick { QUICK } else { FULL };
    let root = target_dir().join("bench").join("scale");
    let base_dir = root.join("cluster");
    let churn_dir = root.join("churned");
    let (base_out, churn_out) = (root.join("cluster.out"), root.join("churned.out"));
    for dir in [&base_dir, &churn_dir, &base_out, &churn_out] {
        if dir.exists() {
            fs::remove_dir_all(dir).map_err(|e| format!("cannot clear `{}`: {e}", dir.display()))?;
        }
    }
    for (dir, spec) in [(&base_dir, spec), (&churn_dir, ClusterSpec { churn_permille: CHURN_PERMILLE, ..spec })] {
        fs::create_dir_all(dir).map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
        let written = write_cluster(&spec, dir).map_err(|e| format!("cannot write `{}`: {e}", dir.display()))?;
        eprintln!(
            "xtask: bench scale: {} documents ({:.1} MiB) in {} files → {}",
            written.documents,
            written.bytes as f64 / MIB,
            written.files,
            dir.display()
        );
    }

    check_disk(&root, &spec)?;
    let base = compile(&policyc, &base_dir, &base_out, None)?;
    let nodes = node_dirs(&base_out)?;
    let first = nodes.first().ok_or_else(|| format!("`{}` holds no bundle", base_out.display()))?;
    let churned = compile(&policyc, &churn_dir, &churn_out, Some(first))?;

    let mut sizes = Vec::with_capacity(nodes.len());
    for node in &nodes {
        sizes.push(apparent_bytes(node)?);
    }
    sizes.sort_unstable();
    let largest = sizes.last().copied().unwrap_or(0);
    let median = sizes.get(sizes.len() / 2).copied().unwrap_or(0);
    let on_disk = allocated_bytes(&base_out)?;
    let identities = compare_identities(&base_out, &churn_out)?;

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "policyc cluster-scale benchmark: {} nodes, {} pods, {} policies, {} services (release build, {cores} core(s))",
        spec.nodes, spec.pods, spec.policies, spec.services
    );
    println!("`policyc compile DIR --out OUT --policy-map-capacity {POLICY_MAP_CAPACITY}`, one run, peak RSS of the child (ru_maxrss)");
    println!();
    println!("| compile | wall s | peak MiB |");
    println!("| --- | ---: | ---: |");
    for (what, c) in [("cluster", &base), ("after 1% churn, --previous", &churned)] {
        println!("| {what} | {:.2} | {:.0} |", c.elapsed.as_secs_f64(), c.peak_kib as f64 / 1024.0);
    }
    println!();
    println!(
        "node bundles: {}, largest {:.2} MB, median {:.2} MB; whole output {:.1} MiB on disk",
        nodes.len(),
        largest as f64 / 1e6,
        median as f64 / 1e6,
        on_disk as f64 / MIB
    );
    println!(
        "identities after churn: {} label sets kept their number in all {} bundles, {} new, {} gone, {} renumbered",
        identities.kept, identities.bundles, identities.added, identities.removed, identities.renumbered
    );
    if !quick {
        let seconds = base.elapsed.as_secs_f64();
        let gib = base.peak_kib as f64 / (1024.0 * 1024.0);
        let mb = largest as f64 / 1e6;
        let verdict = |met: bool| if met { "met" } else { "NOT met" };
        println!("target < {TARGET_SECONDS} s: {} ({seconds:.1} s)", verdict(seconds < TARGET_SECONDS));
        println!("target < {TARGET_GIB} GiB: {} ({gib:.2} GiB)", verdict(gib < TARGET_GIB));
        println!("target node bundle < {TARGET_BUNDLE_MB} MB: {} ({mb:.2} MB)", verdict(mb < TARGET_BUNDLE_MB));
    }
    // The outputs are gigabytes at full size.
    for dir in [&base_out, &churn_out] {
        fs::remove_dir_all(dir).map_err(|e| format!("cannot remove `{}`: {e}", dir.display()))?;
    }
    if identities.renumbered > 0 {
        return Err(format!("{} label sets were renumbered by the churned compile", identities.renumbered));
    }
    Ok(())
}

const MIB: f64 = 1024.0 * 1024.0;

/// `policyc compile dir --out out [--previous previous]`, its stderr kept
/// beside the output to read when it fails.
fn compile(policyc: &Path, dir: &Path, out: &Path, previous: Option<&Path>) -> Result<Compiled, String> {
    let mut args = vec![
        dir.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
        "--policy-map-capacity".as_ref(),
        POLICY_MAP_CAPACITY.as_ref(),
    ];
    if let Some(previous) = previous {
        args.extend(["--previous".as_ref(), previous.as_os_str()]);
    }
    let describe =
        || format!("policyc compile {}", args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" "));
    eprintln!("xtask: {}", describe());
    let stderr_path = out.with_extension("stderr");
    let stderr = File::create(&stderr_path).map_err(|e| format!("cannot create `{}`: {e}", stderr_path.display()))?;
    let start = Instant::now();
    let child = Command::new(policyc)
        .arg("compile")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("cannot run `{}`: {e}", policyc.display()))?;
    let (status, peak_kib) = wait_with_peak_rss(child.id()).map_err(|e| format!("cannot wait for policyc: {e}"))?;
    let elapsed = start.elapsed();
    if !status.success() {
        let text = fs::read_to_string(&stderr_path).unwrap_or_default();
        let head: Vec<&str> = text.lines().take(20).collect();
        return Err(format!("`{}` failed ({status}); its first lines of stderr:\n{}", describe(), head.join("\n")));
    }
    Ok(Compiled { elapsed, peak_kib })
}

/// Bytes of an `ipcache.txt` line of a pod (`10.1.0.1/32 21250
/// endpoint:ns/pod`), fewer than the synthetic clusters' 64 on average.
const IPCACHE_LINE_BYTES: u64 = 60;

/// Refuses to start when the disk cannot hold both outputs: every node's
/// bundle has its own `ipcache.txt` with a line per pod of the cluster
/// (policyc hard-links only what bundles share), so the outputs take at
/// least nodes × pods × [`IPCACHE_LINE_BYTES`] twice. On a shared machine
/// a full disk would fail everyone's work, not only this benchmark.
fn check_disk(dir: &Path, spec: &ClusterSpec) -> Result<(), String> {
    let needed = 2 * (spec.nodes as u64) * (spec.pods as u64) * IPCACHE_LINE_BYTES;
    let output = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(dir)
        .output()
        .map_err(|e| format!("cannot run `df`: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let available: u64 = text
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| format!("cannot read the free space of `{}` from `df`: {text}", dir.display()))?;
    if available < needed {
        return Err(format!(
            "the bundles need at least {:.1} GiB (two compiles, {} nodes each with an ipcache of {} pods) and `{}` has {:.1} GiB free",
            needed as f64 / GIB,
            spec.nodes,
            spec.pods,
            dir.display(),
            available as f64 / GIB
        ));
    }
    Ok(())
}

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// The node bundle directories of a compile's output, sorted.
fn node_dirs(out: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = fs::read_dir(out).map_err(|e| format!("cannot list `{}`: {e}", out.display()))?;
    let mut dirs = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| format!("cannot list `{}`: {e}", out.display()))?.path();
        if path.is_dir() {
            dirs.push(path);
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// Calls `f` with the metadata of every regular file under `dir`.
fn walk(dir: &Path, f: &mut dyn FnMut(&fs::Metadata)) -> Result<(), String> {
    for entry in fs::read_dir(dir).map_err(|e| format!("cannot list `{}`: {e}", dir.display()))? {
        let entry = entry.map_err(|e| format!("cannot list `{}`: {e}", dir.display()))?;
        let meta = entry.metadata().map_err(|e| format!("cannot stat `{}`: {e}", entry.path().display()))?;
        if meta.is_dir() {
            walk(&entry.path(), f)?;
        } else {
            f(&meta);
        }
    }
    Ok(())
}

/// What a node's bundle weighs when it is shipped: its files' lengths,
/// shared ones included.
fn apparent_bytes(dir: &Path) -> Result<u64, String> {
    let mut total = 0;
    walk(dir, &mut |m| total += m.len())?;
    Ok(total)
}

/// What the output takes on disk: allocated 512-byte blocks, a file that
/// several bundles share (policyc hard-links it) counted once.
fn allocated_bytes(dir: &Path) -> Result<u64, String> {
    let mut seen = std::collections::BTreeSet::new();
    let mut total = 0;
    walk(dir, &mut |m| {
        if seen.insert((m.dev(), m.ino())) {
            total += m.blocks() * 512;
        }
    })?;
    Ok(total)
}

/// Identity numbers of two compiles, compared label set by label set.
#[derive(Default)]
struct IdentityComparison {
    bundles: usize,
    kept: usize,
    added: usize,
    removed: usize,
    renumbered: usize,
}

/// `identities.txt` of a bundle: `<kind> <labels>` → number.
fn identities(bundle: &Path) -> Result<BTreeMap<String, u32>, String> {
    let path = bundle.join("maps").join("identities.txt");
    let text = fs::read_to_string(&path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let parsed = line.split_once(' ').and_then(|(id, rest)| Some((id.parse::<u32>().ok()?, rest)));
        let (id, key) =
            parsed.ok_or_else(|| format!("{}:{}: not `<identity> <kind> <labels>`", path.display(), n + 1))?;
        out.insert(key.to_string(), id);
    }
    Ok(out)
}

/// Compares every node's identities in `before` and `after`; label sets
/// counted once (the first node's table), renumberings in any node.
fn compare_identities(before: &Path, after: &Path) -> Result<IdentityComparison, String> {
    let mut result = IdentityComparison::default();
    for (i, node) in node_dirs(before)?.iter().enumerate() {
        let name = node.file_name().ok_or_else(|| format!("`{}` has no name", node.display()))?;
        let (old, new) = (identities(node)?, identities(&after.join(name))?);
        for (labels, id) in &old {
            match new.get(labels) {
                Some(n) if n == id => result.kept += usize::from(i == 0),
                Some(_) => result.renumbered += 1,
                None => result.removed += usize::from(i == 0),
            }
        }
        if i == 0 {
            result.added = new.keys().filter(|k| !old.contains_key(*k)).count();
        }
        result.bundles += 1;
    }
    Ok(result)
}
