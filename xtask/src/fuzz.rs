//! `cargo xtask fuzz`: builds the libFuzzer targets of `fuzz/` once with
//! `cargo fuzz`, seeds their corpora from the repository's manifests, runs
//! each target for a time or a number of runs, and fails on a crash.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The targets, in the order they run (`fuzz/Cargo.toml` declares them).
const TARGETS: [&str; 7] = ["yaml", "manifests", "selector", "ir", "bundle", "loader", "cni_netconf"];

/// The recorded network configurations (the `ptp` plugin's results as
/// `prevResult`) that seed the `cni_netconf` corpus.
const NETCONF_DIR: &str = "cni/tests/data/netconf";

/// Folders whose `.yaml`, `.yml` and `.json` files seed the `yaml` and
/// `manifests` corpora.
const MANIFEST_DIRS: [&str; 3] = ["examples", "tests", "runtime-loader/tests"];

/// Seeds of the `selector` corpus: every form of the grammar.
const SELECTOR_SEEDS: [&str; 6] =
    ["app=web", "app==web,ns=prod", "env!=dev", "tier in (a,b)", "zone notin (x),!legacy", "k8s:io.cilium/app"];

/// Seeds of the `bundle` corpus: a line kind (the first byte, as the
/// target reads it) and lines of that kind as the compiler writes them.
const BUNDLE_SEEDS: [(u8, &str); 5] = [
    (0, "0.0.0.0/0 9 world\n10.200.1.10/32 256 endpoint:shop/api\nfd00::/8 16777217 cidr\n"),
    (1, "10.200.1.10 77 256 ingress shop/api\nfd00::2 78 257 - shop/web\n"),
    (2, "ingress 256 6/5432/24 allow 42 NetworkPolicy/shop/db:spec.ingress[0]\negress any 0/0/0 deny 43 CiliumNetworkPolicy/shop/x:spec.egressDeny[0],+2\n"),
    (3, "42 NetworkPolicy/shop/db:spec.ingress[0]\n"),
    (4, "1 reserved reserved:host\n256 endpoint app=api,io.kubernetes.pod.namespace=shop\n"),
];

/// Seconds a target runs in `cargo xtask ci`.
pub const CI_SECONDS: u64 = 15;

/// How long each target runs.
#[derive(Clone, Copy, Debug)]
pub enum Budget {
    /// Wall-clock seconds per target.
    Seconds(u64),
    /// Executions per target.
    Runs(u64),
}

/// Parses `[--seconds N | --runs N]` (60 seconds when neither is given).
pub fn parse(args: &[String]) -> Result<Budget, String> {
    match args {
        [] => Ok(Budget::Seconds(60)),
        [flag, n] if flag == "--seconds" || flag == "--runs" => {
            let n: u64 = n.parse().map_err(|_| format!("`{n}` is not a number for `{flag}`"))?;
            Ok(if flag == "--seconds" { Budget::Seconds(n) } else { Budget::Runs(n) })
        }
        _ => Err(format!("unexpected arguments `{}` (expected `--seconds N` or `--runs N`)", args.join(" "))),
    }
}

/// What one target did.
struct Outcome {
    target: &'static str,
    executions: u64,
    seconds: f64,
    crash: Option<String>,
}

/// Builds every target, runs each within `budget`, prints executions and
/// crashes per target, and fails if any target crashed.
pub fn run(budget: Budget) -> Result<(), String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let fuzz = root.join("fuzz");
    ensure_cargo_fuzz()?;
    let start = Instant::now();
    build(&fuzz)?;
    eprintln!("xtask: fuzz targets built in {:.0} s", start.elapsed().as_secs_f64());
    seed(&root, &fuzz)?;
    let binaries = fuzz.join("target").join(host()?).join("release");
    let mut outcomes = Vec::new();
    for target in TARGETS {
        outcomes.push(run_target(&fuzz, &binaries.join(target), target, budget)?);
    }
    let mut crashed = Vec::new();
    for o in &outcomes {
        let crashes = usize::from(o.crash.is_some());
        println!("{:<10} {:>12} executions in {:>6.1} s, {crashes} crash(es)", o.target, o.executions, o.seconds);
        if let Some(artifact) = &o.crash {
            println!("           reproduce: fuzz/target/.../{} {artifact}", o.target);
            crashed.push(o.target);
        }
    }
    eprintln!("xtask: fuzzing took {:.0} s in all", start.elapsed().as_secs_f64());
    if crashed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "fuzz target(s) {} crashed",
            crashed.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ")
        ))
    }
}

/// Installs cargo-fuzz when `cargo fuzz` does not run (it builds from
/// crates.io, like any crate).
fn ensure_cargo_fuzz() -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let present = Command::new(&cargo).args(["fuzz", "--version"]).output().is_ok_and(|o| o.status.success());
    if present {
        return Ok(());
    }
    super::cargo(&["install", "--locked", "cargo-fuzz"], &[])
}

/// Builds every target once. libFuzzer's instrumentation needs nightly
/// flags, which `RUSTC_BOOTSTRAP` admits on the stable toolchain. No
/// sanitizer: the code under test forbids `unsafe`, so AddressSanitizer
/// would find nothing a panic does not, at twice the build and run time.
fn build(fuzz: &Path) -> Result<(), String> {
    eprintln!("xtask: cargo fuzz build --sanitizer none");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["fuzz", "build", "--sanitizer", "none"])
        .env("RUSTC_BOOTSTRAP", "1")
        .current_dir(fuzz)
        .status()
        .map_err(|e| format!("cannot run `cargo fuzz`: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`cargo fuzz build` failed ({status})"))
    }
}

/// The host's target triple, under which `cargo fuzz` puts the binaries.
fn host() -> Result<String, String> {
    let out = Command::new("rustc").arg("-vV").output().map_err(|e| format!("cannot run `rustc -vV`: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .ok_or_else(|| "`rustc -vV` names no host".into())
}

/// Copies the repository's manifests into the `yaml` and `manifests`
/// corpora and writes the selector seeds (the corpora are not committed:
/// they grow with every run).
fn seed(root: &Path, fuzz: &Path) -> Result<(), String> {
    let mut manifests = Vec::new();
    for dir in MANIFEST_DIRS {
        collect(&root.join(dir), &mut manifests);
    }
    for target in ["yaml", "manifests"] {
        let corpus = fuzz.join("corpus").join(target);
        std::fs::create_dir_all(&corpus).map_err(|e| format!("cannot create `{}`: {e}", corpus.display()))?;
        for path in &manifests {
            let relative = path.strip_prefix(root).unwrap_or(path);
            let name = format!("seed-{}", relative.display().to_string().replace('/', "_"));
            std::fs::copy(path, corpus.join(name)).map_err(|e| format!("cannot copy `{}`: {e}", path.display()))?;
        }
    }
    let corpus = fuzz.join("corpus").join("selector");
    std::fs::create_dir_all(&corpus).map_err(|e| format!("cannot create `{}`: {e}", corpus.display()))?;
    for (i, query) in SELECTOR_SEEDS.iter().enumerate() {
        std::fs::write(corpus.join(format!("seed-{i}")), query).map_err(|e| format!("cannot write a seed: {e}"))?;
    }
    let corpus = fuzz.join("corpus").join("cni_netconf");
    std::fs::create_dir_all(&corpus).map_err(|e| format!("cannot create `{}`: {e}", corpus.display()))?;
    let mut netconfs = Vec::new();
    collect(&root.join(NETCONF_DIR), &mut netconfs);
    if netconfs.is_empty() {
        return Err(format!("no seeds for `cni_netconf` in `{NETCONF_DIR}`"));
    }
    for path in &netconfs {
        let name = format!("seed-{}", path.file_name().unwrap_or_default().to_string_lossy());
        std::fs::copy(path, corpus.join(name)).map_err(|e| format!("cannot copy `{}`: {e}", path.display()))?;
    }
    let corpus = fuzz.join("corpus").join("bundle");
    std::fs::create_dir_all(&corpus).map_err(|e| format!("cannot create `{}`: {e}", corpus.display()))?;
    for (i, (kind, lines)) in BUNDLE_SEEDS.iter().enumerate() {
        let seed = [&[*kind][..], lines.as_bytes()].concat();
        std::fs::write(corpus.join(format!("seed-{i}")), seed).map_err(|e| format!("cannot write a seed: {e}"))?;
    }
    Ok(())
}

/// Every manifest under `dir`, recursively.
fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml" || e == "json") {
            out.push(path);
        }
    }
}

/// Runs one target on its corpus and reads libFuzzer's final statistics.
fn run_target(fuzz: &Path, binary: &Path, target: &'static str, budget: Budget) -> Result<Outcome, String> {
    let corpus = fuzz.join("corpus").join(target);
    let artifacts = fuzz.join("artifacts").join(target);
    for dir in [&corpus, &artifacts] {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
    }
    let limit = match budget {
        Budget::Seconds(s) => format!("-max_total_time={s}"),
        Budget::Runs(n) => format!("-runs={n}"),
    };
    eprintln!("xtask: fuzzing `{target}` ({limit})");
    let start = Instant::now();
    let out = Command::new(binary)
        .arg(limit)
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        // A run slower than this is a hang; more memory than this is a leak
        // or an expansion the limits should have stopped.
        .args(["-timeout=10", "-rss_limit_mb=2048", "-print_final_stats=1"])
        .arg(&corpus)
        .output()
        .map_err(|e| format!("cannot run `{}`: {e}", binary.display()))?;
    let seconds = start.elapsed().as_secs_f64();
    let log = String::from_utf8_lossy(&out.stderr);
    let executions = log
        .lines()
        .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    let crash = if out.status.success() {
        None
    } else {
        eprint!("{}", tail(&log, 40));
        let artifact = log.lines().find_map(|l| l.split("Test unit written to ").nth(1)).map(str::to_string);
        Some(artifact.unwrap_or_else(|| format!("(no artifact; exit {})", out.status)))
    };
    Ok(Outcome { target, executions, seconds, crash })
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].iter().map(|l| format!("{l}\n")).collect()
}
