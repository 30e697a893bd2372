//! `policyc graph PATH...`: the allowed-connectivity graph as Graphviz
//! DOT, or rendered to SVG/PNG by Graphviz's `dot` when it is installed.

use super::{load_clean, print_stdout, EXIT_ERRORS, EXIT_OK, EXIT_USAGE};
use crate::analysis::graph::{build, to_dot};
use clap::{Args, ValueEnum};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Output format of `graph`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    /// Graphviz DOT text.
    Dot,
    /// SVG, rendered by `dot -Tsvg` (needs `--out`).
    Svg,
    /// PNG, rendered by `dot -Tpng` (needs `--out`).
    Png,
}

/// Arguments of `graph`.
#[derive(Debug, Args)]
pub struct GraphArgs {
    /// Files or directories of YAML/JSON manifests (`-` for stdin).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "dot")]
    pub format: GraphFormat,
    /// Output file (default for DOT: stdout; required for SVG and PNG).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Runs `graph`.
pub fn run(args: &GraphArgs) -> u8 {
    if args.format != GraphFormat::Dot && args.out.is_none() {
        eprintln!("error: `--format {}` writes a binary image: give `--out FILE`", name(args.format));
        return EXIT_USAGE;
    }
    let loaded = match load_clean(&args.paths) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let dot = to_dot(&build(&loaded.lowered.cluster));
    let result = match (args.format, &args.out) {
        (GraphFormat::Dot, None) => {
            print_stdout(&dot);
            Ok(())
        }
        (GraphFormat::Dot, Some(path)) => {
            std::fs::write(path, &dot).map_err(|e| format!("cannot write `{}`: {e}", path.display()))
        }
        (format, Some(path)) => render(&dot, format, path),
        (_, None) => unreachable!("checked above"),
    };
    match result {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_ERRORS
        }
    }
}

fn name(format: GraphFormat) -> &'static str {
    match format {
        GraphFormat::Dot => "dot",
        GraphFormat::Svg => "svg",
        GraphFormat::Png => "png",
    }
}

/// Renders `dot` with Graphviz into `path`.
pub fn render(dot: &str, format: GraphFormat, path: &std::path::Path) -> Result<(), String> {
    let mut child = Command::new("dot")
        .arg(format!("-T{}", name(format)))
        .arg("-o")
        .arg(path)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => "Graphviz `dot` is not installed (Debian: `apt-get install graphviz`); \
                 `--format dot` writes the DOT text without it"
                .to_string(),
            _ => format!("cannot run Graphviz `dot`: {e}"),
        })?;
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(dot.as_bytes())
        .map_err(|e| format!("cannot write to `dot`: {e}"))?;
    let out = child.wait_with_output().map_err(|e| format!("cannot run `dot`: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let first: Vec<&str> = stderr.lines().take(5).collect();
        return Err(format!("`dot` failed: {}", first.join("\n  ")));
    }
    Ok(())
}
