//! `policyc-cni`: as a CNI plugin (no arguments) reads the environment and
//! stdin (bounded), runs the command, and prints its result or the CNI
//! error object; with arguments, one of the init containers' node-setup
//! commands.

use policyc_cni::command::{parse, Command, USAGE};
use policyc_cni::netconf::read_netconf;
use policyc_cni::plugin::{run, Environment};
use policyc_cni::{bpffs, install};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let binary = std::env::current_exe().unwrap_or_else(|_| "/proc/self/exe".into());
    let result = match parse(&args, binary) {
        Ok(Command::Plugin) => return plugin(),
        Ok(Command::Version) => Ok(format!("policyc-cni {}", env!("CARGO_PKG_VERSION"))),
        Ok(Command::Help) => Ok(USAGE.to_string()),
        Ok(Command::Install(options)) => install::install(&options)
            .map(|r| {
                format!(
                    "installed `{}`; `{}` chains it{}",
                    options.bin_dir.join(install::PLUGIN_TYPE).display(),
                    r.conf.display(),
                    unchanged(r.conf_changed)
                )
            })
            .map_err(|e| e.to_string()),
        Ok(Command::Uninstall(options)) => install::uninstall(&options)
            .map(|r| format!("removed policyc-cni from `{}`{}", r.conf.display(), unchanged(r.conf_changed)))
            .map_err(|e| e.to_string()),
        Ok(Command::MountBpffs(path)) => bpffs::ensure_mounted(&path).map(|mounted| {
            format!("bpffs {} `{}`", if mounted { "mounted at" } else { "already mounted at" }, path.display())
        }),
        Err(usage) => {
            eprintln!("policyc-cni: {usage}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("policyc-cni: {error}");
            ExitCode::FAILURE
        }
    }
}

fn unchanged(changed: bool) -> &'static str {
    if changed {
        ""
    } else {
        " (unchanged)"
    }
}

fn plugin() -> ExitCode {
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
