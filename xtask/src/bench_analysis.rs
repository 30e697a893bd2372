//! `cargo xtask bench analysis [--quick]`: time and peak memory of the
//! analysis commands (`connectivity`, `graph`, `diff`, `explain`) of the
//! release `policyc` on synthetic clusters of 1 000, 3 000 and 10 000 pods,
//! beside `compile --dry-run` of the same cluster as the baseline.
//!
//! Each cluster comes from [`crate::synth`] (20 nodes, a policy for every
//! five pods, a service for every twenty); `diff` compares it with the
//! same cluster after a rolling update replaced 1% of its pods. Every
//! command runs once as a child process, its output written to a file
//! beside the cluster (its size is reported, then the file is removed):
//! wall time, the child's peak resident memory (`ru_maxrss` from `wait4`),
//! output bytes, and the time as a ratio to `compile` of the same cluster.
//! A child is held to [`CPU_SECONDS`] of CPU and [`MEMORY_CAP_GIB`] of
//! address space (`prlimit`), so that a command that does not scale is
//! reported as failed rather than taking the machine.
//!
//! The target at 10 000 pods and 2 000 policies: every command
//! under 5 s and 1 GiB.

use crate::bench::{target_dir, wait_with_peak_rss};
use crate::synth::{write_cluster, ClusterSpec};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// "analysis" in ASCII, truncated to eight bytes.
const SEED: u64 = 0x616e_616c_7973_6973;
/// Pod counts, smallest first.
const PODS: [usize; 3] = [1_000, 3_000, 10_000];
/// Pods per thousand the rolling update of `diff`'s new tree replaced.
const CHURN_PERMILLE: usize = 10;
/// A child's CPU time limit.
const CPU_SECONDS: u64 = 60;
/// A child's address-space limit.
const MEMORY_CAP_GIB: u64 = 4;

const TARGET_SECONDS: f64 = 5.0;
const TARGET_MIB: f64 = 1024.0;

/// The cluster of `pods` pods.
fn spec(pods: usize) -> ClusterSpec {
    ClusterSpec { nodes: 20, pods, policies: pods / 5, services: pods / 20, seed: SEED, churn_permille: 0 }
}

/// One command's figures, or why it failed.
struct Run {
    what: String,
    result: Result<(Duration, u64, u64), String>,
}

/// Runs `bench analysis [--quick]`.
pub fn run(quick: bool) -> Result<(), String> {
    crate::cargo(&["build", "--release", "-p", "policyc"], &[])?;
    let policyc = target_dir().join("release").join("policyc");
    let root = target_dir().join("bench").join("analysis");
    let sizes = if quick { &PODS[..1] } else { &PODS[..] };
    let mut tables = Vec::new();
    for &pods in sizes {
        let spec = spec(pods);
        let dir = root.join(format!("pods{pods}"));
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(|e| format!("cannot clear `{}`: {e}", dir.display()))?;
        }
        let (base, churned) = (dir.join("cluster"), dir.join("churned"));
        for (d, s) in [(&base, spec), (&churned, ClusterSpec { churn_permille: CHURN_PERMILLE, ..spec })] {
            fs::create_dir_all(d).map_err(|e| format!("cannot create `{}`: {e}", d.display()))?;
            write_cluster(&s, d).map_err(|e| format!("cannot write `{}`: {e}", d.display()))?;
        }
        let endpoint = first_pod(&base)?;
        let (b, c) = (path_text(&base)?, path_text(&churned)?);
        let commands: Vec<Vec<&str>> = vec![
            vec!["compile", b, "--dry-run"],
            vec!["connectivity", b],
            vec!["connectivity", b, "--output", "json"],
            vec!["connectivity", b, "--select", "app=api"],
            vec!["graph", b],
            vec!["diff", b, c],
            vec!["diff", b, c, "--format", "json"],
            vec!["explain", &endpoint, b],
            vec!["explain", &endpoint, b, "--output", "json"],
        ];
        let mut runs = Vec::new();
        for args in &commands {
            let what = describe(args, b, c);
            eprintln!("xtask: bench analysis: {pods} pods: policyc {what}");
            runs.push(Run { what, result: measure(&policyc, args, &dir) });
        }
        tables.push((spec, runs));
    }

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "policyc analysis benchmark (release build, {cores} core(s)); one run each, peak RSS of the child (ru_maxrss)"
    );
    println!("clusters: 20 nodes, a policy per 5 pods, a service per 20; diff's NEW is the cluster after {}% pod churn; limits {CPU_SECONDS} s CPU, {MEMORY_CAP_GIB} GiB", CHURN_PERMILLE / 10);
    for (spec, runs) in &tables {
        println!();
        println!("{} pods, {} policies, {} services:", spec.pods, spec.policies, spec.services);
        println!("| command | wall s | peak MiB | output MiB | time / compile |");
        println!("| --- | ---: | ---: | ---: | ---: |");
        let baseline = runs.first().and_then(|r| r.result.as_ref().ok()).map(|(t, _, _)| t.as_secs_f64());
        for run in runs {
            match &run.result {
                Ok((elapsed, kib, bytes)) => {
                    let ratio = baseline.map_or("-".to_string(), |b| format!("{:.2}", elapsed.as_secs_f64() / b));
                    println!(
                        "| {} | {:.2} | {:.0} | {:.1} | {ratio} |",
                        run.what,
                        elapsed.as_secs_f64(),
                        *kib as f64 / 1024.0,
                        *bytes as f64 / MIB
                    );
                }
                Err(e) => println!("| {} | failed: {e} | | | |", run.what),
            }
        }
        if spec.pods == 10_000 {
            let slow: Vec<&str> = runs
                .iter()
                .filter(|r| {
                    r.result.as_ref().map_or(true, |(t, kib, _)| {
                        t.as_secs_f64() >= TARGET_SECONDS || *kib as f64 / 1024.0 >= TARGET_MIB
                    })
                })
                .map(|r| r.what.as_str())
                .collect();
            println!();
            if slow.is_empty() {
                println!("target (every command < {TARGET_SECONDS} s and < {TARGET_MIB} MiB at 10 000 pods): met");
            } else {
                println!(
                    "target (every command < {TARGET_SECONDS} s and < {TARGET_MIB} MiB at 10 000 pods): NOT met by {}",
                    slow.join("; ")
                );
            }
        }
    }
    Ok(())
}

const MIB: f64 = 1024.0 * 1024.0;

fn path_text(p: &Path) -> Result<&str, String> {
    p.to_str().ok_or_else(|| format!("`{}` is not UTF-8", p.display()))
}

/// The command line as the table shows it: `DIR` and `NEW` for the trees.
fn describe(args: &[&str], base: &str, churned: &str) -> String {
    let words: Vec<&str> = args
        .iter()
        .map(|a| {
            if *a == base {
                "DIR"
            } else if *a == churned {
                "NEW"
            } else {
                a
            }
        })
        .collect();
    words.join(" ")
}

/// `ns/name` of the first pod the generator wrote (the documents are
/// namespaces, nodes, then pods).
fn first_pod(dir: &Path) -> Result<String, String> {
    let path = dir.join("cluster-0000.yaml");
    let text = fs::read_to_string(&path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    let doc = text
        .split("\n---\n")
        .find(|d| d.contains("kind: Pod\n"))
        .ok_or_else(|| format!("`{}` has no pod", path.display()))?;
    let field = |key: &str| doc.lines().find_map(|l| l.trim().strip_prefix(key).map(str::trim)).map(str::to_string);
    match (field("namespace:"), field("name:")) {
        (Some(ns), Some(name)) => Ok(format!("{ns}/{name}")),
        _ => Err(format!("the first pod of `{}` has no name or namespace", path.display())),
    }
}

/// One run of `policyc ARGS` under the limits: wall time, peak RSS in KiB
/// and the bytes it wrote to stdout.
fn measure(policyc: &Path, args: &[&str], dir: &Path) -> Result<(Duration, u64, u64), String> {
    let out_path: PathBuf = dir.join("command.out");
    let err_path: PathBuf = dir.join("command.stderr");
    let stdout = File::create(&out_path).map_err(|e| format!("cannot create `{}`: {e}", out_path.display()))?;
    let stderr = File::create(&err_path).map_err(|e| format!("cannot create `{}`: {e}", err_path.display()))?;
    let start = Instant::now();
    // prlimit execs policyc in its own process, so the pid and the rusage
    // wait4 reports are policyc's.
    let child = Command::new("prlimit")
        .arg(format!("--cpu={CPU_SECONDS}"))
        .arg(format!("--as={}", MEMORY_CAP_GIB << 30))
        .arg("--")
        .arg(policyc)
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("cannot run `prlimit` (util-linux): {e}"))?;
    let (status, peak_kib) = wait_with_peak_rss(child.id()).map_err(|e| format!("cannot wait for policyc: {e}"))?;
    let elapsed = start.elapsed();
    let bytes = fs::metadata(&out_path).map(|m| m.len()).unwrap_or(0);
    let _ = fs::remove_file(&out_path);
    if !status.success() {
        let text = fs::read_to_string(&err_path).unwrap_or_default();
        let last = text.lines().last().unwrap_or("").to_string();
        return Err(format!(
            "{status} after {:.1} s, {:.0} MiB: {last}",
            elapsed.as_secs_f64(),
            peak_kib as f64 / 1024.0
        ));
    }
    Ok((elapsed, peak_kib, bytes))
}
