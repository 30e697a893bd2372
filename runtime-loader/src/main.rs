//! `policyc-loader`: the command line over the loader library.

use clap::{Parser, Subcommand};
use policyc_loader::apply::{apply, ApplyOptions};
use policyc_loader::bpffs;
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
            println!("{}", text.trim_end());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
