//! Command-line interface: `lint`, `compile`, `trace`, `connectivity`,
//! `diff`, `graph`, `explain`, `publish`.
//!
//! Exit codes: 0 clean, 1 the input has errors (or a trace is denied with
//! `--exit-code`), 2 usage errors.

pub mod compile;
pub mod diff;
pub mod explain;
pub mod graph;
#[cfg(feature = "oci")]
pub mod publish;
pub mod query;
mod services;

use crate::analysis::reason::Citations;
use crate::analysis::table::Table;
use crate::analysis::trace;
use crate::diag::render::{render, Format};
use crate::pipeline::{load, Loaded};
use clap::{Args, Parser, Subcommand, ValueEnum};
use policyc_ir::eval::{Party, Query};
use policyc_ir::protocol::Protocol;
use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: the input has errors.
pub const EXIT_ERRORS: u8 = 1;
/// Exit code: the command line is wrong.
pub const EXIT_USAGE: u8 = 2;

/// policyc compiles Kubernetes and Cilium network policies ahead of time
/// into eBPF bundles, and answers what they allow.
#[derive(Debug, Parser)]
#[command(name = "policyc", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// How much input every command reads (flags accepted after any
    /// subcommand).
    #[command(flatten)]
    pub limits: crate::front::source::Limits,
    /// Semantics the network plugin chooses (flags accepted after any
    /// subcommand).
    #[command(flatten)]
    pub semantics: crate::semantics::Semantics,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check manifests: syntax, types, unknown fields, invalid selectors,
    /// CIDRs and ports, and lint rules (selectors matching nothing, pods
    /// left out of isolation, unknown named ports, ...). Exit 1 if any error
    /// is found (or any warning, with --deny-warnings).
    Lint(LintArgs),
    /// Compile manifests into a bundle per node (or check them with --dry-run).
    Compile(CompileArgs),
    /// Explain the verdict on one connection: both directions and the rules
    /// that decided them.
    Trace(TraceArgs),
    /// List every allowed connection between the endpoints of the input
    /// (and outside addresses).
    Connectivity(ConnectivityArgs),
    /// Compare two policy trees (paths or `git:REV:PATH`; several per side
    /// with --old/--new): connections opened and closed and the policies
    /// responsible, identities and map entries added and removed.
    Diff(diff::DiffArgs),
    /// Draw the allowed-connectivity graph (Graphviz DOT, or SVG/PNG with
    /// `dot` installed): namespaces as clusters, edges labelled with ports,
    /// what deny rules block dashed.
    Graph(graph::GraphArgs),
    /// Explain one endpoint: the policies selecting it, its isolation, its
    /// identity and labels, what may reach it and what it may reach, and why.
    Explain(explain::ExplainArgs),
    /// Push the bundles of `compile --out` to an OCI registry as one
    /// artifact (`oci://HOST[:PORT]/REPOSITORY:TAG`); prints its digest.
    #[cfg(feature = "oci")]
    Publish(publish::PublishArgs),
}

/// Arguments of `lint`.
#[derive(Debug, Args)]
pub struct LintArgs {
    /// Files or directories of YAML/JSON manifests (`-` for stdin).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Output format of the diagnostics.
    #[arg(long, value_enum, default_value = "human")]
    pub format: Format,
    /// Lint rule settings.
    #[command(flatten)]
    pub lint: crate::lint::LintOptions,
}

/// Arguments of `compile`.
#[derive(Debug, Args)]
pub struct CompileArgs {
    /// Files or directories of YAML/JSON manifests (`-` for stdin).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Output directory: one bundle per node in `DIR/<node>/`.
    #[arg(long, required_unless_present = "dry_run")]
    pub out: Option<PathBuf>,
    /// Compile only this node's bundle.
    #[arg(long)]
    pub node: Option<String>,
    /// Check and summarize, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// A previous bundle directory (`OUT/<node>`): its identity numbers are
    /// kept for label sets still present, so nothing is renumbered.
    #[arg(long)]
    pub previous: Option<PathBuf>,
    /// Capacity of each endpoint's policy map.
    #[arg(long, default_value_t = 16384)]
    pub policy_map_capacity: usize,
    /// Output format of the diagnostics.
    #[arg(long, value_enum, default_value = "human")]
    pub format: Format,
    /// Lint rule settings.
    #[command(flatten)]
    pub lint: crate::lint::LintOptions,
    /// Print how long each phase took (read, lint, resolve, emit, write).
    #[arg(long)]
    pub timings: bool,
}

/// Output format of `trace`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TraceOutput {
    /// Text.
    Human,
    /// JSON.
    Json,
}

/// Arguments of `trace`.
#[derive(Debug, Args)]
pub struct TraceArgs {
    /// Files or directories of YAML/JSON manifests (`-` for stdin).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Source endpoint: `NS/POD`, `NS/NAME[Kind]`, or a selector query
    /// (`ns=shop,app in (api,web)`: every matching endpoint).
    #[arg(long, required_unless_present_any = ["from_cidr", "from_node"], conflicts_with_all = ["from_cidr", "from_node"])]
    pub from: Option<String>,
    /// Source address (a pod's or a node's is that pod or node).
    #[arg(long, conflicts_with = "from_node")]
    pub from_cidr: Option<IpAddr>,
    /// Source node (a `Node` object's name): `host` to the endpoints on
    /// it, `remote-node` to the others (kubelet's probes come from it).
    #[arg(long)]
    pub from_node: Option<String>,
    /// Destination endpoint: `NS/POD`, `NS/NAME[Kind]`, a selector query, or a
    /// Service: `svc:NS/NAME` (traced through to each backend).
    #[arg(long, required_unless_present_any = ["to_cidr", "to_node"], conflicts_with_all = ["to_cidr", "to_node"])]
    pub to: Option<String>,
    /// Destination address (a pod's or a node's is that pod or node).
    #[arg(long, conflicts_with = "to_node")]
    pub to_cidr: Option<IpAddr>,
    /// Destination node (a `Node` object's name).
    #[arg(long)]
    pub to_node: Option<String>,
    /// Destination port (ICMP type for ICMP).
    #[arg(long)]
    pub port: u16,
    /// Protocol: TCP, UDP, SCTP, ICMP, ICMPv6.
    #[arg(long, default_value = "TCP", value_parser = parse_protocol)]
    pub protocol: Protocol,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    pub output: TraceOutput,
    /// Exit 1 when the connection is denied.
    #[arg(long)]
    pub exit_code: bool,
}

/// Output format of `connectivity`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ConnectivityOutput {
    /// An aligned text table.
    Table,
    /// A sorted JSON array of `{src, dst, allowed}`.
    Json,
}

/// Arguments of `connectivity`.
#[derive(Debug, Args)]
pub struct ConnectivityArgs {
    /// Files or directories of YAML/JSON manifests (`-` for stdin).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub output: ConnectivityOutput,
    /// An outside address to include as its own peer (repeatable).
    #[arg(long = "external")]
    pub externals: Vec<IpAddr>,
    /// Only rows whose source or destination endpoint matches this selector
    /// query (`app=web,tier in (a,b),!legacy`; `ns` is the namespace).
    #[arg(long)]
    pub select: Option<String>,
}

fn parse_protocol(s: &str) -> Result<Protocol, String> {
    Protocol::parse(s).ok_or_else(|| format!("unknown protocol `{s}` (expected TCP, UDP, SCTP, ICMP or ICMPv6)"))
}

/// Runs a parsed command line; returns the exit code.
pub fn run(cli: Cli) -> u8 {
    crate::front::source::set_limits(cli.limits);
    crate::semantics::set_semantics(cli.semantics);
    match cli.command {
        Command::Lint(a) => lint(&a),
        Command::Compile(a) => compile::run(&a),
        Command::Trace(a) => trace_cmd(&a),
        Command::Connectivity(a) => connectivity_cmd(&a),
        Command::Diff(a) => diff::run(&a),
        Command::Graph(a) => graph::run(&a),
        Command::Explain(a) => explain::run(&a),
        #[cfg(feature = "oci")]
        Command::Publish(a) => publish::run(&a),
    }
}

/// Prints diagnostics to stderr (JSON/SARIF to stdout, for tools) and
/// returns whether there were errors.
pub fn report(loaded: &Loaded, format: Format) -> bool {
    let text = render(&loaded.diagnostics, format, &loaded.input.sources);
    match format {
        Format::Human => eprint!("{text}"),
        _ => print!("{text}"),
    }
    loaded.has_errors()
}

fn lint(args: &LintArgs) -> u8 {
    let loaded = match crate::compile::check(crate::compile::Inputs::Paths(args.paths.clone()), &args.lint) {
        Ok(checked) => checked.loaded,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    report(&loaded, args.format);
    let errors = crate::lint::fails(&loaded, &args.lint);
    if args.format == Format::Human {
        let c = &loaded.lowered.cluster;
        let skipped: usize = loaded.input.skipped.values().sum();
        let tiers = match c.tier_policies.len() {
            0 => String::new(),
            n => format!(", {n} admin/baseline policies"),
        };
        eprintln!(
            "checked {} object(s) in {} file(s): {} endpoint(s), {} policy spec(s){tiers}, {} namespace(s); {} object(s) of other kinds skipped",
            loaded.input.objects.len(),
            loaded.input.sources.len(),
            c.endpoints.len(),
            c.written_policies().count(),
            c.namespaces.len(),
            skipped
        );
    }
    if errors {
        EXIT_ERRORS
    } else {
        EXIT_OK
    }
}

/// Loads inputs for an analysis command: on errors, prints them and
/// returns the exit code to stop with.
pub(crate) fn load_clean(paths: &[PathBuf]) -> Result<Loaded, u8> {
    let loaded = load(paths);
    if loaded.has_errors() {
        report(&loaded, Format::Human);
        return Err(EXIT_ERRORS);
    }
    Ok(loaded)
}

/// One side of a trace: `--from`/`--to` (`name`), `--from-cidr`/`--to-cidr`
/// (`ip`: a pod's address is the pod, a node's the node, as the ipcache
/// maps them) or `--from-node`/`--to-node` (`node`).
fn resolve_parties(
    loaded: &Loaded,
    name: Option<&str>,
    ip: Option<IpAddr>,
    node: Option<&str>,
    flag: &str,
) -> Result<Vec<Party>, u8> {
    let cluster = &loaded.lowered.cluster;
    if let Some(ip) = ip {
        return Ok(vec![match (cluster.endpoint_by_ip(ip), cluster.node_by_ip(ip)) {
            (Some(i), _) => Party::Endpoint(i),
            (None, Some(n)) => Party::Node(n),
            (None, None) => Party::External(ip),
        }]);
    }
    if let Some(node) = node {
        return match cluster.nodes.iter().position(|n| n.name == node) {
            Some(n) => Ok(vec![Party::Node(n)]),
            None => {
                let known: Vec<String> = cluster.nodes.iter().map(|n| format!("`{}`", n.name)).collect();
                let known = if known.is_empty() { "none".to_string() } else { known.join(", ") };
                eprintln!("error: {flag}-node: no `Node` object named `{node}` in the input (nodes: {known})");
                Err(EXIT_USAGE)
            }
        };
    }
    let name = name.expect("clap requires one of the two");
    match query::endpoints(cluster, name, flag) {
        Ok(found) => Ok(found.into_iter().map(Party::Endpoint).collect()),
        Err(message) => {
            eprintln!("error: {message}");
            Err(EXIT_USAGE)
        }
    }
}

fn trace_cmd(args: &TraceArgs) -> u8 {
    let loaded = match load_clean(&args.paths) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let srcs = match resolve_parties(&loaded, args.from.as_deref(), args.from_cidr, args.from_node.as_deref(), "--from")
    {
        Ok(p) => p,
        Err(code) => return code,
    };
    if let Some(code) = services::trace(&loaded, args, &srcs) {
        return code;
    }
    let dsts = match resolve_parties(&loaded, args.to.as_deref(), args.to_cidr, args.to_node.as_deref(), "--to") {
        Ok(p) => p,
        Err(code) => return code,
    };
    let cluster = &loaded.lowered.cluster;
    let citations = Citations::new(&loaded);
    // A selector may name several endpoints: every pair is traced (an
    // endpoint with itself is skipped), and JSON output becomes an array.
    let many = srcs.len() > 1 || dsts.len() > 1;
    let mut texts = Vec::new();
    let mut values = Vec::new();
    let mut all_allowed = true;
    for &src in &srcs {
        for &dst in dsts.iter().filter(|&&d| !many || d != src) {
            let query = Query { src, dst, protocol: args.protocol, port: args.port };
            let verdict = policyc_ir::eval::eval(cluster, &query);
            all_allowed &= verdict.allowed();
            match args.output {
                TraceOutput::Human => texts.push(trace::render_human(&citations, &query, &verdict)),
                TraceOutput::Json => values.push(trace::render_json(&citations, &query, &verdict)),
            }
        }
    }
    let out = match args.output {
        TraceOutput::Human => texts.join("\n"),
        TraceOutput::Json => {
            let value = if many { serde_json::Value::Array(values) } else { values.remove(0) };
            serde_json::to_string_pretty(&value).expect("JSON values serialize") + "\n"
        }
    };
    print_stdout(&out);
    if args.exit_code && !all_allowed {
        EXIT_ERRORS
    } else {
        EXIT_OK
    }
}

fn connectivity_cmd(args: &ConnectivityArgs) -> u8 {
    // Options first: a bad selector costs no reading or judging.
    let selector = match args.select.as_deref().map(crate::select::parse_selector).transpose() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: --select: {e}");
            return EXIT_USAGE;
        }
    };
    let loaded = match load_clean(&args.paths) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let cluster = &loaded.lowered.cluster;
    let table = Table::new(cluster, &args.externals);
    // Rows to Services follow the endpoint rows.
    let service_rows = services::connectivity(cluster, selector.as_ref());
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let written = match args.output {
        ConnectivityOutput::Table => table
            .write_table(selector.as_ref(), &mut out)
            .and_then(|()| out.write_all(crate::analysis::services::rows_table(&service_rows).as_bytes())),
        ConnectivityOutput::Json => {
            let tail = crate::analysis::services::rows_json(&service_rows);
            table.write_json(selector.as_ref(), &tail, &mut out)
        }
    };
    // A closed pipe (`policyc ... | head`) is not an error.
    let _ = written.and_then(|()| out.flush());
    EXIT_OK
}

/// Writes to stdout, ignoring a closed pipe (`policyc ... | head`).
pub fn print_stdout(s: &str) {
    let _ = std::io::stdout().lock().write_all(s.as_bytes());
}
