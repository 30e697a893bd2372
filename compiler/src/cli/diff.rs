//! `policyc diff OLD NEW` (or `--old PATH... --new PATH...`): what
//! changes between two policy trees.
//!
//! Exit codes: 0 (also when something changed, unless `--exit-code`),
//! 1 with `--exit-code` when something changed, or when either tree has
//! errors; 2 for usage errors.

use super::{print_stdout, report, EXIT_ERRORS, EXIT_OK, EXIT_USAGE};
use crate::analysis::diff::render::{human, markdown, to_json, Sides};
use crate::analysis::diff::tree::Tree;
use crate::analysis::diff::{diff, Diff};
use crate::diag::render::Format;
use clap::{ArgGroup, Args, ValueEnum};
use std::io::IsTerminal;

/// Output format of `diff`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DiffFormat {
    /// Text (coloured when stdout is a terminal and `NO_COLOR` is unset).
    Human,
    /// Markdown, to paste as a review comment.
    Markdown,
    /// JSON.
    Json,
}

/// Arguments of `diff`: `OLD NEW`, or `--old PATH... --new PATH...` for
/// sides of several paths.
#[derive(Debug, Args)]
#[command(override_usage = "policyc diff [OPTIONS] OLD NEW\n       policyc diff [OPTIONS] --old PATH... --new PATH...")]
#[command(group(ArgGroup::new("old_tree").required(true).args(["old", "old_paths"])))]
#[command(group(ArgGroup::new("new_tree").required(true).args(["new", "new_paths"])))]
pub struct DiffArgs {
    /// The old tree: a file, a directory, or `git:REV:PATH` (read from the
    /// repository holding the current directory).
    #[arg(value_name = "OLD", conflicts_with_all = ["old_paths", "new_paths"])]
    pub old: Option<String>,
    /// The new tree, written the same way.
    #[arg(value_name = "NEW")]
    pub new: Option<String>,
    /// The old tree as several paths (each a file, a directory or
    /// `git:REV:PATH`), read together as one tree; instead of OLD NEW,
    /// with --new.
    #[arg(long = "old", value_name = "PATH", num_args = 1..)]
    pub old_paths: Vec<String>,
    /// The new tree as several paths, written the same way; with --old.
    #[arg(long = "new", value_name = "PATH", num_args = 1..)]
    pub new_paths: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    pub format: DiffFormat,
    /// Exit 1 when anything changed, 0 otherwise (like `git diff --exit-code`).
    #[arg(long)]
    pub exit_code: bool,
}

/// Runs `diff`.
pub fn run(args: &DiffArgs) -> u8 {
    // Clap lets through either OLD NEW or --old/--new, never both.
    let old_args: Vec<&String> = args.old.iter().chain(&args.old_paths).collect();
    let new_args: Vec<&String> = args.new.iter().chain(&args.new_paths).collect();
    let (old, new) = match (Tree::parse(&old_args), Tree::parse(&new_args)) {
        (Ok(o), Ok(n)) => (o, n),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let cwd = match std::env::current_dir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: cannot read the current directory: {e}");
            return EXIT_ERRORS;
        }
    };
    let (old_loaded, new_loaded) = (old.load(&cwd), new.load(&cwd));
    let mut broken = false;
    for (loaded, side) in [(&old_loaded, &old), (&new_loaded, &new)] {
        if loaded.has_errors() {
            eprintln!("error: the tree `{}` has errors:", side.display());
            report(loaded, Format::Human);
            broken = true;
        }
    }
    if broken {
        return EXIT_ERRORS;
    }
    let d: Diff = match diff(&old_loaded, &new_loaded) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_ERRORS;
        }
    };
    let (o, n) = (old.display(), new.display());
    let sides = Sides { old: &o, new: &n };
    let out = match args.format {
        DiffFormat::Human => {
            let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            human(&d, sides, color)
        }
        DiffFormat::Markdown => markdown(&d, sides),
        DiffFormat::Json => serde_json::to_string_pretty(&to_json(&d, sides)).expect("JSON values serialize") + "\n",
    };
    print_stdout(&out);
    if args.exit_code && !d.is_empty() {
        EXIT_ERRORS
    } else {
        EXIT_OK
    }
}
