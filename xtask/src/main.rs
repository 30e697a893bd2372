//! Project automation: `cargo xtask ci` runs every check CI runs.

use std::process::{Command, ExitCode};

mod bench;
mod bench_analysis;
mod bench_apply;
mod bench_compare;
mod bench_kernel;
mod bench_scale;
mod bench_services;
mod deps;
mod ebpf;
mod fuzz;
mod image;
mod synth;

const USAGE: &str = "usage: cargo xtask <command>

commands:
  ci      install what the checks need (root; otherwise print the command),
          format check, clippy (warnings are errors), the whole test suite,
          15 s of each fuzz target
  image [--tag NAME] [--loader PATH --cni PATH]
          the node image with buildah from scratch (no base image pulled):
          policyc-loader, policyc-cni (static), their shared libraries;
          release binaries unless --loader and --cni name built ones
  bless   re-record the golden files after a deliberate change (INSTA_UPDATE=always),
          and the README's graph of the example (docs/example-graph.dot, .svg;
          needs Graphviz `dot`)
  build-ebpf [--check]
          compile the C templates into the objects committed beside them
          (--check: rebuild into a scratch directory, fail if bytes differ)
  bench apply [--quick]
          (root) applies of a one-rule and a one-pod change to a node of
          50k policy entries, beside iptables-restore (legacy and nft) of a
          50k-rule table, and an apply from scratch of 1000 endpoints
          (--quick: 100)
  bench attach
          (root) attach from scratch to both hooks of 1000 veths: tcx one
          after the other, tcx in threads, legacy tc (cls_bpf), default RCU;
          then policyc-loader apply from scratch of 1000 endpoints by --attach
  bench analysis [--quick]
          time and peak memory of connectivity, graph, diff and explain
          (release policyc) at 1k, 3k and 10k pods, beside compile of the
          same cluster (--quick: 1k only)
  bench compile [--quick]
          compile time and peak memory of the release policyc on synthetic
          clusters, and one node's bundle beside its normalized-policy.json
          (--quick: the smallest only)
  bench scale [--quick]
          every node's bundle of 5000 nodes, 150k pods, 10k policies and
          10k services (release policyc): time, peak memory, bundle sizes;
          identity numbers kept after 1% pod churn (--quick: 100 nodes)
  bench services
          (root) one endpoint change on a node of 10 000 services x 10
          endpoints: policyc-loader apply beside iptables-restore of
          kube-proxy's nat table and nft of its partial sync, as ratios
  fuzz [--seconds N | --runs N]
          build the libFuzzer targets of `fuzz/` (installs cargo-fuzz when
          missing), seed their corpora from the repository's manifests, run
          each target for N seconds (default 60) or N runs; fails on a crash
  bench agent
          (root) CNI ADD to enforced, p50 and p99, at 100 local pods made
          with ptp and policyc-cni, and the agent's resident memory; then
          150 local pods, and 20 beside 150 000 cluster pods in the ipcache
  bench datapath [--baseline REV [--rounds N]]
          per-packet cost of the tc programs (BPF_PROG_TEST_RUN, root)
          beside the empty program, by policy and ipcache size;
          --baseline: REV's benchmark (built in a worktree under
          target/bench-baseline/) and this tree's run alternately N rounds
          (default 5), medians and new/old per size and path
  synth --out DIR [--nodes N] [--pods N] [--policies N] [--services N] [--churn PERMILLE]
          write a synthetic cluster (the benchmarks' generator) to profile
          a command by hand (defaults: 20 nodes, 1000 pods, a policy per
          five pods, a service per twenty)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("bless") => bless(),
        Some("bench") => match args.get(1).map(String::as_str).and_then(bench_kernel::test_of) {
            Some("bench_datapath") => match bench_compare::parse(&args[2..]) {
                Ok(Some(options)) => bench_compare::run(&options),
                Ok(None) => bench_kernel::run("bench_datapath"),
                Err(e) => Err(e),
            },
            Some(test) => bench_kernel::run(test),
            None => bench::run(&args[1..]),
        },
        Some("build-ebpf") => ebpf::run(&args[1..]),
        Some("image") => image::run(&args[1..]),
        Some("fuzz") => fuzz::parse(&args[1..]).and_then(fuzz::run),
        Some("synth") => synth::command(&args[1..]),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a cargo subcommand, failing on a non-zero exit.
fn cargo(args: &[&str], env: &[(&str, &str)]) -> Result<(), String> {
    eprintln!("xtask: cargo {}", args.join(" "));
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(args)
        .envs(env.iter().copied())
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`cargo {}` failed ({status})", args.join(" ")))
    }
}

fn ci() -> Result<(), String> {
    // The conformance test reads a corpus kept outside the repository.
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance");
    if !corpus.is_dir() {
        return Err("`../shared/conformance` is missing (clone the repository beside `shared/`)".into());
    }
    deps::ensure()?;
    cargo(&["fmt", "--all", "--", "--check"], &[])?;
    // The committed datapath objects must be what their sources build.
    ebpf::run(&["--check".to_string()])?;
    cargo(&["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"], &[])?;
    // Golden files are compared, never rewritten, in CI.
    cargo(&["test", "--workspace", "--no-fail-fast"], &[("INSTA_UPDATE", "no"), ("CI", "true")])?;
    // A short pass of every fuzz target: the long campaigns run by hand.
    fuzz::run(fuzz::Budget::Seconds(fuzz::CI_SECONDS))
}

fn bless() -> Result<(), String> {
    // The README's picture: its DOT is pinned by compiler/tests/graph.rs,
    // the SVG drawn from it (its bytes depend on Graphviz's version, so
    // only the DOT and the drawn text are compared).
    for (format, out) in [("dot", "docs/example-graph.dot"), ("svg", "docs/example-graph.svg")] {
        let args = ["run", "-q", "-p", "policyc", "--", "graph", "examples/policies", "--format", format, "--out", out];
        cargo(&args, &[])?;
    }
    cargo(&["test", "--workspace"], &[("INSTA_UPDATE", "always")])
}
