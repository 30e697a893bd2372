//! `policyc-cni`: reads the environment and stdin, runs the command, and
//! prints its result or the CNI error object.

use std::io::Read;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut stdin = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut stdin) {
        let error = policyc_cni::error::CniError::new(policyc_cni::error::IO_FAILURE, "cannot read stdin")
            .with_details(e.to_string());
        println!("{}", error.to_json());
        return ExitCode::FAILURE;
    }
    match policyc_cni::plugin::run(&policyc_cni::plugin::Environment::from_process(), &stdin) {
        Ok(out) => {
            if !out.is_empty() {
                println!("{out}");
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            println!("{}", error.to_json());
            ExitCode::FAILURE
        }
    }
}
