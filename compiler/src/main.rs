//! The `policyc` command: argument parsing and exit codes only; the work is
//! done by the library.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = policyc::cli::Cli::parse();
    ExitCode::from(policyc::cli::run(cli))
}
