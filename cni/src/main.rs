//! `policyc-cni`: reads the environment and stdin (bounded), runs the
//! command, and prints its result or the CNI error object.

use policyc_cni::netconf::read_netconf;
use policyc_cni::plugin::{run, Environment};
use std::process::ExitCode;

fn main() -> ExitCode {
    match read_netconf(std::io::stdin().lock()).and_then(|stdin| run(&Environment::from_process(), &stdin)) {
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
