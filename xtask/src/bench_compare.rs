//! `cargo xtask bench datapath --baseline REV [--rounds N]`: the datapath
//! benchmark of this tree and of commit `REV`, run alternately in one run,
//! so that both builds meet the same machine (the load of a shared host
//! moves absolute figures by more than the differences looked for).
//!
//! - `REV` is checked out into a detached `git worktree` under
//!   `target/bench-baseline/<commit>/src` (kept for the next run), and its
//!   `bench_datapath` test binary built there with its own target
//!   directory, `target/bench-baseline/target`, shared by every baseline
//!   so that dependencies are built once. It cannot be this tree's target
//!   directory: building the loader's tests uplifts its binaries to
//!   `target/debug/`, where they would replace this tree's.
//! - Each round runs the baseline's binary and this tree's (the order
//!   swapped every other round, so neither always runs first), each its
//!   whole benchmark (`runtime-loader/tests/bench_datapath.rs`: every
//!   policy and ipcache size).
//! - Per size and path (established, both hooks; new denied; new allowed)
//!   the median over the rounds of the kernel's time per packet
//!   (`BPF_PROG_TEST_RUN` measures the program on the CPU, not the wall
//!   clock of a loaded host) is printed for each build, with new/old, and
//!   new/old of the ratio to the empty program timed beside it in the same
//!   run (which takes out what the machine's load did to that run).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Rounds when `--rounds` is not given.
const DEFAULT_ROUNDS: usize = 5;

/// The rows compared, as the benchmark names them.
const PATHS: [&str; 4] = ["from established", "to established", "to new denied", "to new allowed"];

/// Parsed `bench datapath --baseline REV [--rounds N]` arguments.
#[derive(Debug, PartialEq, Eq)]
pub struct Options {
    /// The commit to compare with.
    pub baseline: String,
    /// Rounds (each runs both builds once).
    pub rounds: usize,
}

/// Parses the arguments after `bench datapath`; `None` when there are
/// none (the plain benchmark).
pub fn parse(args: &[String]) -> Result<Option<Options>, String> {
    let usage = || "usage: cargo xtask bench datapath [--baseline REV [--rounds N]]".to_string();
    let mut baseline = None;
    let mut rounds = DEFAULT_ROUNDS;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--baseline" => baseline = Some(rest.next().ok_or_else(usage)?.clone()),
            "--rounds" => {
                rounds = rest.next().and_then(|n| n.parse().ok()).filter(|&n| n > 0).ok_or_else(usage)?;
            }
            _ => return Err(usage()),
        }
    }
    match baseline {
        Some(baseline) => Ok(Some(Options { baseline, rounds })),
        None if args.is_empty() => Ok(None),
        None => Err(usage()),
    }
}

/// One run's figures: per (policy entries, ipcache entries, path), the
/// time per packet in ns and its ratio to the empty program.
type Figures = BTreeMap<(usize, usize, String), (f64, f64)>;

/// Reads the benchmark's table rows (`| 10 | 100 | to new denied | 80.1 | 2.71 |`).
fn figures(stdout: &str) -> Figures {
    let mut out = Figures::new();
    for line in stdout.lines() {
        let cells: Vec<&str> = line.trim().trim_matches('|').split('|').map(str::trim).collect();
        let [policy, ipcache, path, ns, ratio] = cells[..] else { continue };
        // The references' table has numbers where the path is.
        if path.parse::<f64>().is_ok() {
            continue;
        }
        let (Ok(policy), Ok(ipcache), Ok(ns), Ok(ratio)) =
            (policy.parse::<usize>(), ipcache.parse::<usize>(), ns.parse::<f64>(), ratio.parse::<f64>())
        else {
            continue;
        };
        out.insert((policy, ipcache, path.to_string()), (ns, ratio));
    }
    out
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Runs `git args` in `dir`, returning its trimmed stdout.
fn git(dir: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("git").current_dir(dir).args(args).output().map_err(|e| format!("cannot run git: {e}"))?;
    if !out.status.success() {
        return Err(format!("`git {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Builds the `bench_datapath` test binary of the workspace in `root`
/// (into `target_dir`, or the workspace's own when `None`) and returns its
/// path, read from cargo's JSON messages.
fn build(root: &Path, target_dir: Option<&Path>) -> Result<PathBuf, String> {
    let args = [
        "test",
        "--no-run",
        "-p",
        "policyc-loader",
        "--test",
        "bench_datapath",
        "--message-format=json-render-diagnostics",
    ];
    eprintln!("xtask: cargo {} (in {})", args.join(" "), root.display());
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(root).args(args).stderr(Stdio::inherit());
    // `cargo run` gave xtask its package's variables; build scripts that
    // rerun when one changes (ring's) would make this build differ from
    // a plain `cargo test`'s, and rebuild both every time.
    for (key, _) in std::env::vars_os() {
        let key_text = key.to_string_lossy();
        if key_text.starts_with("CARGO_PKG_")
            || key_text.starts_with("CARGO_MANIFEST_")
            || ["CARGO_CRATE_NAME", "CARGO_BIN_NAME", "CARGO_PRIMARY_PACKAGE"].contains(&key_text.as_ref())
        {
            command.env_remove(&key);
        }
    }
    if let Some(dir) = target_dir {
        // Older commits built tests with full debug info (~300 MB a
        // binary); the figures are the kernel's, which debug info of the
        // Rust side does not change.
        command.env("CARGO_TARGET_DIR", dir).env("CARGO_PROFILE_DEV_DEBUG", "line-tables-only");
    }
    let out = command.output().map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!("building the benchmark in {} failed ({})", root.display(), out.status));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "bench_datapath")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| format!("cargo named no `bench_datapath` executable in {}", root.display()))
}

/// Runs the benchmark binary `binary` once and reads its figures.
fn run_once(binary: &Path) -> Result<Figures, String> {
    let out = Command::new(binary)
        .args(["bench_datapath", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
    if !out.status.success() {
        return Err(format!("{} failed ({}):\n{}", binary.display(), out.status, String::from_utf8_lossy(&out.stdout)));
    }
    let figures = figures(&String::from_utf8_lossy(&out.stdout));
    if figures.is_empty() {
        return Err(format!("{} printed no figures", binary.display()));
    }
    Ok(figures)
}

/// Runs the comparison.
pub fn run(options: &Options) -> Result<(), String> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask sits in the workspace");
    let commit = git(workspace, &["rev-parse", "--verify", &format!("{}^{{commit}}", options.baseline)])?;
    let short = &commit[..12.min(commit.len())];
    let root = crate::bench::target_dir().join("bench-baseline");
    let tree = root.join(short).join("src");
    if !tree.join("Cargo.toml").is_file() {
        let tree_text = tree.to_str().ok_or("the target directory's path is not UTF-8")?;
        git(workspace, &["worktree", "add", "--detach", tree_text, &commit])?;
    }
    let old = build(&tree, Some(&root.join("target")))?;
    let new = build(workspace, None)?;

    let mut runs: [Vec<Figures>; 2] = [Vec::new(), Vec::new()];
    for round in 0..options.rounds {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for which in order {
            let binary = if which == 0 { &old } else { &new };
            eprintln!("xtask: round {}/{}: {}", round + 1, options.rounds, ["baseline", "this tree"][which]);
            runs[which].push(run_once(binary)?);
        }
    }

    println!(
        "bench datapath: baseline {short} ({}) against this tree, {} rounds each, alternating;",
        options.baseline, options.rounds
    );
    println!(
        "medians of the kernel's ns per packet (BPF_PROG_TEST_RUN), and new/old of the ratio to the empty program"
    );
    println!();
    println!("| policy entries | ipcache entries | path | old ns | new ns | new/old | new/old (× empty) |");
    println!("| ---: | ---: | --- | ---: | ---: | ---: | ---: |");
    let mut worst: BTreeMap<&str, f64> = BTreeMap::new();
    for key in runs[1][0].keys().filter(|(_, _, path)| PATHS.contains(&path.as_str())) {
        let series = |which: usize, pick: fn(&(f64, f64)) -> f64| {
            median(runs[which].iter().filter_map(|f| f.get(key)).map(pick).collect())
        };
        let (old_ns, new_ns) = (series(0, |f| f.0), series(1, |f| f.0));
        let (old_ratio, new_ratio) = (series(0, |f| f.1), series(1, |f| f.1));
        if old_ns.is_nan() {
            continue;
        }
        let (policy, ipcache, path) = key;
        let change = new_ns / old_ns;
        let slot = PATHS.iter().find(|p| **p == path).copied().unwrap_or("");
        let entry = worst.entry(slot).or_insert(0.0);
        *entry = entry.max(change);
        println!(
            "| {policy} | {ipcache} | {path} | {old_ns:.1} | {new_ns:.1} | {change:.3} | {:.3} |",
            new_ratio / old_ratio
        );
    }
    println!();
    for path in PATHS {
        if let Some(w) = worst.get(path) {
            println!("{path:<17}: worst new/old over the sizes {w:.3} (limit 1.05)");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_table_rows_only() {
        let text = "| policy entries | ipcache entries | path | ns/packet | × empty |\n\
                    | ---: | ---: | --- | ---: | ---: |\n\
                    | 10 | 100 | to new denied | 80.5 | 2.71 |\n\
                    | 1000 | 100000 | to new allowed | 420.0 | 1.90 |\n\
                    growth from 10 to 100 000 policy entries\n\
                    | 10 | 100 | 1.01 | 0.90 | 1.50 |\n";
        let f = figures(text);
        assert_eq!(f.len(), 2);
        assert_eq!(f[&(10, 100, "to new denied".to_string())], (80.5, 2.71));
        assert_eq!(f[&(1000, 100000, "to new allowed".to_string())], (420.0, 1.90));
    }

    #[test]
    fn arguments() {
        let args = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        assert_eq!(parse(&[]), Ok(None));
        assert_eq!(parse(&args("--baseline abc")), Ok(Some(Options { baseline: "abc".into(), rounds: 5 })));
        assert_eq!(parse(&args("--baseline abc --rounds 3")), Ok(Some(Options { baseline: "abc".into(), rounds: 3 })));
        assert!(parse(&args("--rounds 3")).is_err());
        assert!(parse(&args("--baseline")).is_err());
        assert!(parse(&args("--baseline x --rounds 0")).is_err());
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(vec![]).is_nan());
    }
}
