//! `policyc-loader`: the command line over the loader library.

use clap::{Parser, Subcommand};
use policyc_loader::agent::{self, AgentOptions};
use policyc_loader::apply::{apply, ApplyOptions, ProgramStep};
use policyc_loader::bpffs;
use policyc_loader::bundle::{locate, Bundle};
use policyc_loader::error::LoaderError;
use policyc_loader::kernel::Mechanism;
use policyc_loader::lock::{LockWait, DEFAULT_LOCK_TIMEOUT};
use policyc_loader::observe::{self, FlowFilter, Observer};
use policyc_loader::packet::{self, ProbePacket};
use policyc_loader::paths::Paths;
use policyc_loader::probe::{HookVerdict, Probe};
use policyc_loader::status::{status, write_applied_artifact};
use policyc_loader::uninstall::uninstall_waiting;
use std::io::Write;
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
    /// Seconds `apply` and `uninstall` wait for another apply or uninstall
    /// to finish before they refuse.
    #[arg(long, global = true, default_value_t = DEFAULT_LOCK_TIMEOUT.as_secs_f64(), value_name = "SECONDS")]
    lock_timeout: f64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Put a bundle in force (a no-op if it already is).
    Apply {
        /// The bundle directory (`policyc compile --out DIR` writes
        /// DIR/<node>), or `oci://HOST[:PORT]/REPOSITORY:TAG` (or
        /// `@sha256:...`) as `policyc publish` pushed it, pulled into the
        /// state directory's cache.
        #[arg(value_name = "DIR|oci://REF")]
        bundle: String,
        /// This node's name: which bundle of an `oci://` artifact to apply.
        #[arg(long, env = "NODE_NAME")]
        node: Option<String>,
        /// How to reach the registry of an `oci://` bundle.
        #[command(flatten)]
        registry: agent::source::RegistryFlags,
        /// Host-side interface of an endpoint, overriding the route lookup.
        #[arg(long = "interface", value_name = "NS/POD=IFNAME")]
        interfaces: Vec<String>,
        /// Read the live maps instead of trusting the record of the last
        /// apply, and repair any drift.
        #[arg(long)]
        reconcile: bool,
        /// Run every check `apply` runs (programs through the verifier,
        /// into a scratch root), print the plan (map operations, program
        /// switches) and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// How endpoints attached afresh are attached: `tc` (a cls_bpf
        /// filter, about 1 ms each) or `tcx` (a link, about 18 ms each with
        /// the kernel's default RCU settings); endpoints attached before
        /// keep theirs.
        #[arg(long, value_enum, default_value_t = Mechanism::Tc)]
        attach: Mechanism,
    },
    /// Show the bundle in force, generations, map fill levels and links.
    Status,
    /// Run a packet through a bundle's programs in the kernel
    /// (BPF_PROG_TEST_RUN) without touching what is in force: the bundle
    /// is loaded into a scratch root and removed afterwards.
    Probe {
        /// The bundle directory.
        bundle: PathBuf,
        /// Source address.
        #[arg(long)]
        from: std::net::IpAddr,
        /// Destination address.
        #[arg(long)]
        to: std::net::IpAddr,
        /// Protocol: tcp, udp, sctp, icmp, icmpv6.
        #[arg(long, default_value = "tcp")]
        protocol: String,
        /// Destination port (ICMP: the type).
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
    /// Detach and unpin everything under the root.
    Uninstall,
    /// Run the node agent: bind the live pods (the cluster directory, and
    /// the sandboxes `policyc-cni` announces on `STATE/agent.sock`) to the
    /// compiled bundle, and keep it in force as either changes.
    Run {
        /// This node's name.
        #[arg(long, env = "NODE_NAME")]
        node: String,
        /// The compiled bundle (watched: re-applied when it changes): a
        /// directory, or `oci://HOST[:PORT]/REPOSITORY:TAG` (or
        /// `@sha256:...`) as `policyc publish` pushed it, pulled at every
        /// `--poll-interval` into the state directory's cache.
        #[arg(long, value_name = "DIR|oci://REF")]
        bundle: String,
        /// Seconds between pulls of `--bundle oci://REF` (a reference
        /// pinned to a digest is pulled once).
        #[arg(long, default_value_t = 30, value_name = "SECONDS")]
        poll_interval: u64,
        /// How to reach the registry of `--bundle oci://REF`.
        #[command(flatten)]
        registry: agent::source::RegistryFlags,
        /// `kube`: the Kubernetes API (in-cluster configuration, else the
        /// kubeconfig), watched; or a directory of Pod, Namespace and Node
        /// manifests as `policyc compile` reads them (polled: re-read when
        /// it changes; `./kube` for a directory named `kube`).
        #[arg(long, value_name = "kube|DIR")]
        cluster: agent::ClusterOption,
        /// Serve `/metrics`, `/healthz` and `/readyz` on this address.
        #[arg(long, value_name = "HOST:PORT")]
        metrics_address: Option<std::net::SocketAddr>,
        /// Milliseconds between polls of the bundle and cluster directories.
        #[arg(long, default_value_t = 200)]
        poll_ms: u64,
        /// Milliseconds after an apply over which changes are gathered
        /// into the next one (the first change after a quiet spell is
        /// applied at once).
        #[arg(long, default_value_t = 5)]
        batch_ms: u64,
        /// Log one JSON object per line on stderr.
        #[arg(long)]
        log_json: bool,
        /// How new pods' programs are attached, as `apply --attach`.
        #[arg(long, value_enum, default_value_t = Mechanism::Tc)]
        attach: Mechanism,
    },
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
    /// The agent's cluster reader (`run --cluster DIR` starts it): the
    /// directory's pods, nodes and API server addresses, compact, on
    /// stdout.
    #[command(hide = true)]
    ReadCluster {
        /// The cluster directory.
        dir: std::path::PathBuf,
    },
}

/// Writes `text` and a newline to stdout; `false` once the reader is gone
/// (a closed pipe, as `| head` leaves): what was done is done, and the
/// output ends quietly rather than with a panic.
fn print_line(text: &str) -> Result<bool, LoaderError> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(LoaderError::Output(e)),
    }
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
) -> Result<String, LoaderError> {
    let mut observer = Observer::open(paths)?;
    let mut shown = 0usize;
    loop {
        // Losses first: they happened before the events still waiting.
        for lost in observer.newly_lost()? {
            let line = if json { serde_json::json!({ "events_lost": lost }).to_string() } else { lost.render() };
            if !print_line(&line)? {
                return Ok(String::new());
            }
        }
        for flow in observer.drain().into_iter().filter(|f| f.matches(filter)) {
            if count.is_some_and(|n| shown >= n) {
                return Ok(String::new());
            }
            let line = if json { serde_json::to_string(&flow).unwrap_or_default() } else { flow.render() };
            if !print_line(&line)? {
                return Ok(String::new());
            }
            shown += 1;
        }
        if !follow || count.is_some_and(|n| shown >= n) {
            return Ok(String::new());
        }
        // Woken by a burst of events, else every 100 ms: the programs do
        // not wake the reader for each event (see `Observer::wait`), and
        // a 100 ms delay is fine for people reading.
        observer.wait(std::time::Duration::from_millis(100))?;
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let paths = Paths::new(&cli.bpffs, &cli.root, &cli.state.join(&cli.root));
    let Ok(timeout) = std::time::Duration::try_from_secs_f64(cli.lock_timeout) else {
        eprintln!("error: --lock-timeout `{}` is not a number of seconds", cli.lock_timeout);
        return ExitCode::from(2);
    };
    let lock = LockWait { timeout, on_wait: Some(|message| eprintln!("policyc-loader: {message}")) };
    let result = match &cli.command {
        Command::Apply { bundle, node, registry, interfaces, reconcile, dry_run, attach } => {
            let source = agent::source::BundleSource::parse(bundle, std::time::Duration::ZERO, registry);
            let pulled = match source.and_then(|s| agent::source::pull_once(&s, node.as_deref(), &paths)) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(1);
                }
            };
            let mut options = ApplyOptions {
                reconcile: *reconcile,
                dry_run: *dry_run,
                lock,
                attach: *attach,
                ..ApplyOptions::default()
            };
            for spec in interfaces {
                let Some((endpoint, interface)) = spec.split_once('=') else {
                    eprintln!("error: --interface `{spec}` is not NS/POD=IFNAME");
                    return ExitCode::from(2);
                };
                options.interfaces.insert(endpoint.to_string(), interface.to_string());
            }
            let applied = bpffs::ensure_mounted(&cli.bpffs).and_then(|()| apply(&paths, &pulled.dir, &options));
            if let (Ok(report), false) = (&applied, *dry_run) {
                if let Err(e) = write_applied_artifact(&paths, pulled.artifact.as_ref(), &report.bundle_hash) {
                    eprintln!("warning: cannot record the artifact in force: {e}");
                }
            }
            applied.map(|report| {
                if cli.json {
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                } else if report.unchanged {
                    format!("bundle {} is already in force (generation {})", report.bundle_hash, report.generation)
                } else {
                    let mut out = if report.dry_run {
                        format!(
                            "plan for {} (generation {} would become active; diffed against the {})\n",
                            report.bundle_hash, report.generation, report.diffed_against
                        )
                    } else {
                        format!(
                            "applied {} (generation {} active; diffed against the {})\n",
                            report.bundle_hash, report.generation, report.diffed_against
                        )
                    };
                    for (map, ops) in &report.maps {
                        out.push_str(&format!(
                            "  {map}: {} added, {} updated, {} removed, {} unchanged\n",
                            ops.added, ops.updated, ops.removed, ops.unchanged
                        ));
                    }
                    for (endpoint, program, step, how) in &report.programs {
                        let how = how.map_or("planned".to_string(), |h| format!("{h:?}").to_lowercase());
                        let step = match step {
                            ProgramStep::Prepare => "before the switch, old and new lookups",
                            ProgramStep::Finish => "after the switch",
                        };
                        out.push_str(&format!("  {endpoint}: {program} {how} ({step})\n"));
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
        Command::Probe { bundle, from, to, protocol, port } => {
            let number = match protocol.to_ascii_lowercase().as_str() {
                "tcp" => packet::TCP,
                "udp" => packet::UDP,
                "sctp" => packet::SCTP,
                "icmp" => packet::ICMP,
                "icmpv6" => packet::ICMPV6,
                other => {
                    eprintln!("error: unknown protocol `{other}` (tcp, udp, sctp, icmp, icmpv6)");
                    return ExitCode::from(2);
                }
            };
            if from.is_ipv4() != to.is_ipv4() {
                eprintln!("error: --from and --to must be of one address family");
                return ExitCode::from(2);
            }
            let packet = ProbePacket { src: *from, dst: *to, protocol: number, sport: 40000, dport: *port };
            let scratch = Paths::new(&cli.bpffs, &format!("{}-probe-{}", cli.root, std::process::id()), &cli.state);
            bpffs::ensure_mounted(&cli.bpffs)
                .and_then(|()| Ok(Bundle::read(&locate(bundle)?)?))
                .and_then(|b| Probe::load(scratch, &b))
                .and_then(|mut probe| probe.judge(&packet))
                .map(|v| {
                    if cli.json {
                        return serde_json::to_string_pretty(&v).unwrap_or_default();
                    }
                    let line = |side: &str, h: &Option<HookVerdict>| match h {
                        Some(h) => format!(
                            "{side}: {} of {} {}",
                            h.program,
                            h.endpoint,
                            if h.passed() { "passes" } else { "drops" }
                        ),
                        None => format!("{side}: not a local endpoint of this bundle"),
                    };
                    format!("{}\n{}", line("egress ", &v.egress), line("ingress", &v.ingress))
                })
        }
        Command::Status => {
            status(&paths)
                .map(|s| if cli.json { serde_json::to_string_pretty(&s).unwrap_or_default() } else { s.render() })
        }
        Command::Observe { follow, count, verdict, namespace, pod, counters } => {
            if *counters {
                observe::counters(&paths).and_then(|list| Ok((list, observe::events_lost(&paths)?))).map(
                    |(list, lost)| {
                        if cli.json {
                            let report = serde_json::json!({ "counters": list, "events_lost": lost });
                            serde_json::to_string_pretty(&report).unwrap_or_default()
                        } else {
                            list.iter()
                                .map(|c| {
                                    format!(
                                        "{} {} {}: {} packets, {} bytes",
                                        c.endpoint, c.direction, c.reason_name, c.packets, c.bytes
                                    )
                                })
                                .chain(
                                    lost.iter().map(|l| {
                                        format!("events lost (ring buffer full) on CPU {}: {}", l.cpu, l.lost)
                                    }),
                                )
                                .collect::<Vec<_>>()
                                .join("\n")
                        }
                    },
                )
            } else {
                let filter = FlowFilter { verdict: verdict.clone(), namespace: namespace.clone(), pod: pod.clone() };
                observe_flows(&paths, &filter, *follow, *count, cli.json)
            }
        }
        Command::Run {
            node,
            bundle,
            poll_interval,
            registry,
            cluster,
            metrics_address,
            poll_ms,
            batch_ms,
            log_json,
            attach,
        } => {
            let interval = std::time::Duration::from_secs((*poll_interval).max(1));
            let bundle = match agent::source::BundleSource::parse(bundle, interval, registry) {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let options = AgentOptions {
                node: node.clone(),
                bundle,
                cluster: cluster.clone(),
                socket: cli.state.join("agent.sock"),
                paths: paths.clone(),
                poll: std::time::Duration::from_millis(*poll_ms),
                batch: std::time::Duration::from_millis(*batch_ms),
                metrics: *metrics_address,
                json_logs: *log_json,
                attach: *attach,
            };
            bpffs::ensure_mounted(&cli.bpffs)
                .and_then(|()| agent::run(options).map_err(LoaderError::Agent))
                .map(|()| String::new())
        }
        Command::ReadCluster { dir } => match agent::cluster::ClusterView::read(dir) {
            Ok(view) => {
                println!("{}", view.to_wire());
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
        },
        Command::Uninstall => uninstall_waiting(&paths, &lock).map(|r| {
            if cli.json {
                serde_json::to_string_pretty(&r).unwrap_or_default()
            } else {
                format!("detached {} link(s), unpinned {} map(s)", r.links.len(), r.maps.len())
            }
        }),
    };
    match result.and_then(|text| if text.is_empty() { Ok(true) } else { print_line(text.trim_end()) }) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
