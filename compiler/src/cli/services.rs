//! The command-line side of Services: `trace --to svc:NS/NAME` (or to a
//! Service address with `--to-cidr`), Service rows in `connectivity`, and
//! `explain svc:NS/NAME` ([`crate::analysis::services`]).

use super::{print_stdout, TraceArgs, TraceOutput, EXIT_ERRORS, EXIT_OK, EXIT_USAGE};
use crate::analysis::reason::Citations;
use crate::analysis::services::{self, parse_service, service_address};
use crate::pipeline::Loaded;
use policyc_ir::cluster::Cluster;
use policyc_ir::eval::Party;
use policyc_ir::selector::LabelSelector;

/// Runs `trace` when its destination is a Service (`--to svc:NS/NAME`) or
/// a Service address (`--to-cidr` a frontend's address, with `--port` a
/// frontend's port); `None` when it is neither.
pub fn trace(loaded: &Loaded, args: &TraceArgs, srcs: &[Party]) -> Option<u8> {
    let cluster = &loaded.lowered.cluster;
    let address = match args.to.as_deref().map(|to| parse_service(cluster, to)) {
        Some(Err(message)) => return Some(usage(&message)),
        Some(Ok(Some(service))) => match service_address(cluster, service) {
            Ok(address) => address,
            Err(message) => return Some(usage(&message)),
        },
        _ => args.to_cidr?,
    };
    let citations = Citations::new(loaded);
    let mut traces = Vec::new();
    for &src in srcs {
        traces.extend(services::trace(&citations, src, address, args.protocol, args.port)?);
    }
    let allowed = traces.iter().all(|t| t.allowed);
    let out = match args.output {
        TraceOutput::Human => traces.iter().map(|t| t.text.as_str()).collect::<Vec<_>>().join("\n"),
        TraceOutput::Json => {
            let mut values: Vec<serde_json::Value> = traces.into_iter().map(|t| t.json).collect();
            let value = if values.len() == 1 { values.remove(0) } else { serde_json::Value::Array(values) };
            serde_json::to_string_pretty(&value).expect("JSON values serialize") + "\n"
        }
    };
    print_stdout(&out);
    Some(if args.exit_code && !allowed { EXIT_ERRORS } else { EXIT_OK })
}

/// The Service rows of `connectivity`: from every endpoint (or those
/// `select` matches) to each Service it reaches.
pub fn connectivity(cluster: &Cluster, select: Option<&LabelSelector>) -> Vec<services::ServiceRow> {
    services::connectivity(cluster, |p| match (p, select) {
        (_, None) => true,
        (Party::Endpoint(i), Some(q)) => q.matches(&cluster.endpoint(i).labels),
        _ => false,
    })
}

/// Runs `explain` when its argument names a Service; `None` otherwise.
pub fn explain(loaded: &Loaded, arg: &str, output: TraceOutput) -> Option<u8> {
    let cluster = &loaded.lowered.cluster;
    let service = match parse_service(cluster, arg) {
        Ok(s) => s?,
        Err(message) => return Some(usage(&message)),
    };
    let (text, json) = services::explain(cluster, service);
    match output {
        TraceOutput::Human => print_stdout(&text),
        TraceOutput::Json => {
            print_stdout(&(serde_json::to_string_pretty(&json).expect("JSON values serialize") + "\n"))
        }
    }
    Some(EXIT_OK)
}

fn usage(message: &str) -> u8 {
    eprintln!("error: {message}");
    EXIT_USAGE
}
