//! `policyc-loader`: the command line over the loader library.

use clap::{Parser, Subcommand};
use policyc_loader::apply::{apply, ApplyOptions};
use policyc_loader::bpffs;
use policyc_loader::observe::{self, FlowFilter, Observer};
use policyc_loader::paths::Paths;
use policyc_loader::status::status;
use policyc_loader::uninstall::uninstall;
use std::path::PathBuf;
use std::process::ExitCode;

/// Applies policyc bundles to this node: pinned maps, verified tc programs,
/// tcx links on each local pod's host-side interface.
#[derive(Parser)]
#[command(name = "policyc-loader", version)]
struct Cli {
    /// Where bpffs is (mounted there if it is not).
    #[arg(long, global = true, default_value = "/sys/fs/bpf")]
    bpffs: PathBuf,
    /// Directory under bpffs holding everything the loader pins.
    #[arg(long, global = true, default_value = "policyc")]
    root: String,
    /// Directory of the loader's record and lock.
    #[arg(long, global = true, default_value = "/run/policyc")]
    state: PathBuf,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Put a bundle in force (a no-op if it already is).
    Apply {
        /// The bundle directory (`policyc compile --out DIR` writes DIR/<node>).
        bundle: PathBuf,
        /// Host-side interface of an endpoint, overriding the route lookup.
        #[arg(long = "interface", value_name = "NS/POD=IFNAME")]
        interfaces: Vec<String>,
    },
    /// Show the bundle in force, generations, map fill levels and links.
    Status,
    /// Detach and unpin everything under the root.
    Uninstall,
    /// Print flow events (drops and new connections) with pod names, or the
    /// counters.
    Observe {
        /// Keep reading until interrupted (or `--count` events were shown).
        #[arg(long)]
        follow: bool,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<usize>,
        /// Only `dropped` or `allowed` flows.
        #[arg(long, value_parser = ["dropped", "allowed"])]
        verdict: Option<String>,
        /// Only flows with a pod of this namespace at either end.
        #[arg(long)]
        namespace: Option<String>,
        /// Only flows with this pod (`ns/pod` or `pod`) at either end.
        #[arg(long)]
        pod: Option<String>,
        /// Print the per-endpoint counters instead of events.
        #[arg(long)]
        counters: bool,
    },
}

/// Prints flow events as they are read; returns what is left to print
/// (nothing: events are printed as they come, so a long `--follow` does
/// not hold them).
fn observe_flows(
    paths: &Paths,
    filter: &FlowFilter,
    follow: bool,
    count: Option<usize>,
    json: bool,
) -> Result<String, policyc_loader::error::LoaderError> {
    let mut observer = Observer::open(paths)?;
    let mut shown = 0usize;
    loop {
        for flow in observer.drain().into_iter().filter(|f| f.matches(filter)) {
            if count.is_some_and(|n| shown >= n) {
                return Ok(String::new());
            }
            if json {
                println!("{}", serde_json::to_string(&flow).unwrap_or_default());
            } else {
                println!("{}", flow.render());
            }
            shown += 1;
        }
        if !follow || count.is_some_and(|n| shown >= n) {
            return Ok(String::new());
        }
        // The ring buffer is polled: events are rare (drops and new
        // connections), and a 100 ms delay is fine for people reading.
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let paths = Paths::new(&cli.bpffs, &cli.root, &cli.state.join(&cli.root));
    let result = match &cli.command {
        Command::Apply { bundle, interfaces } => {
            let mut options = ApplyOptions::default();
            for spec in interfaces {
                let Some((endpoint, interface)) = spec.split_once('=') else {
                    eprintln!("error: --interface `{spec}` is not NS/POD=IFNAME");
                    return ExitCode::from(2);
                };
                options.interfaces.insert(endpoint.to_string(), interface.to_string());
            }
            bpffs::ensure_mounted(&cli.bpffs).and_then(|()| apply(&paths, bundle, &options)).map(|report| {
                if cli.json {
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                } else if report.unchanged {
                    format!("bundle {} is already in force (generation {})", report.bundle_hash, report.generation)
                } else {
                    let mut out = format!("applied {} (generation {} active)\n", report.bundle_hash, report.generation);
                    for (map, ops) in &report.maps {
                        out.push_str(&format!(
                            "  {map}: {} added, {} updated, {} removed, {} unchanged\n",
                            ops.added, ops.updated, ops.removed, ops.unchanged
                        ));
                    }
                    for (endpoint, program, how) in &report.programs {
                        out.push_str(&format!("  {endpoint}: {program} {how:?}\n"));
                    }
                    for endpoint in &report.detached {
                        out.push_str(&format!("  {endpoint}: detached\n"));
                    }
                    for endpoint in &report.skipped {
                        out.push_str(&format!("  {endpoint}: no address, nothing to attach\n"));
                    }
                    let phases: Vec<String> = report.phases.iter().map(|(p, ms)| format!("{p} {ms:.1} ms")).collect();
                    out.push_str(&format!("  phases: {}", phases.join(", ")));
                    out
                }
            })
        }
        Command::Status => {
            status(&paths)
                .map(|s| if cli.json { serde_json::to_string_pretty(&s).unwrap_or_default() } else { s.render() })
        }
        Command::Observe { follow, count, verdict, namespace, pod, counters } => {
            if *counters {
                observe::counters(&paths).map(|list| {
                    if cli.json {
                        serde_json::to_string_pretty(&list).unwrap_or_default()
                    } else {
                        list.iter()
                            .map(|c| {
                                format!(
                                    "{} {} {}: {} packets, {} bytes",
                                    c.endpoint, c.direction, c.reason_name, c.packets, c.bytes
                                )
                            })
                            .collect::<Vec<_>>()
                            .join("\n")
                    }
                })
            } else {
                let filter = FlowFilter { verdict: verdict.clone(), namespace: namespace.clone(), pod: pod.clone() };
                observe_flows(&paths, &filter, *follow, *count, cli.json)
            }
        }
        Command::Uninstall => uninstall(&paths).map(|r| {
            if cli.json {
                serde_json::to_string_pretty(&r).unwrap_or_default()
            } else {
                format!("detached {} link(s), unpinned {} map(s)", r.links.len(), r.maps.len())
            }
        }),
    };
    match result {
        Ok(text) => {
            if !text.is_empty() {
                println!("{}", text.trim_end());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
