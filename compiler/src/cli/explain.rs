//! `policyc explain NS/POD PATH...`: what policy says about one endpoint.

use super::{load_clean, print_stdout, TraceOutput, EXIT_OK, EXIT_USAGE};
use crate::analysis::explain::{explain, render_human, render_json};
use clap::Args;
use std::path::PathBuf;

/// Arguments of `explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The endpoint: `NS/POD` or `NS/NAME[Kind]`; or a Service: `svc:NS/NAME`.
    pub endpoint: String,
    /// Files or directories of YAML/JSON manifests (`-` for stdin).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    pub output: TraceOutput,
}

/// Runs `explain`.
pub fn run(args: &ExplainArgs) -> u8 {
    let loaded = match load_clean(&args.paths) {
        Ok(l) => l,
        Err(code) => return code,
    };
    if let Some(code) = super::services::explain(&loaded, &args.endpoint, args.output) {
        return code;
    }
    let cluster = &loaded.lowered.cluster;
    let Some(index) = cluster.endpoint_by_name(&args.endpoint) else {
        let names: Vec<String> = cluster.endpoints.iter().map(|e| e.display_name()).collect();
        let hint = crate::diag::did_you_mean(&args.endpoint, names.iter().map(String::as_str))
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_default();
        eprintln!("error: `{}` is not an endpoint of the input{hint}", args.endpoint);
        return EXIT_USAGE;
    };
    let resolved = policyc_ir::resolve::resolve(cluster);
    let x = explain(&loaded, &resolved, index);
    let out = match args.output {
        TraceOutput::Human => render_human(&x),
        TraceOutput::Json => serde_json::to_string_pretty(&render_json(&x)).expect("JSON values serialize") + "\n",
    };
    print_stdout(&out);
    EXIT_OK
}
