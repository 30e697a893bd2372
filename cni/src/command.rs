//! The binary's command line. A runtime runs a CNI plugin with no
//! arguments (the command is in `CNI_COMMAND`), so any argument means one
//! of the node-setup commands the DaemonSet's init containers run.

use crate::install::InstallOptions;
use crate::protocol::DEFAULT_SOCKET;
use std::path::PathBuf;

/// The usage text, for `--help` and a bad command line.
pub const USAGE: &str = "usage:
  policyc-cni                   the CNI plugin (CNI_COMMAND, CNI_* and the configuration on stdin)
  policyc-cni --version
  policyc-cni install [--bin-dir DIR] [--conf-dir DIR] [--agent-socket PATH]
                                copy this binary to DIR (/opt/cni/bin) and chain it last in the
                                first network configuration of DIR (/etc/cni/net.d)
  policyc-cni uninstall [--bin-dir DIR] [--conf-dir DIR]
                                take it out of that configuration and DIR again
  policyc-cni mount-bpffs [PATH]  mount bpffs at PATH (/sys/fs/bpf) unless it is mounted";

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Run as a CNI plugin.
    Plugin,
    /// Print the version.
    Version,
    /// Print the usage.
    Help,
    /// Install into the runtime's directories.
    Install(InstallOptions),
    /// Take out of them again.
    Uninstall(InstallOptions),
    /// Mount bpffs at a path unless mounted.
    MountBpffs(PathBuf),
}

/// Reads the arguments after the program name; `binary` is this program's
/// file, which `install` copies.
pub fn parse(args: &[String], binary: PathBuf) -> Result<Command, String> {
    let Some((first, rest)) = args.split_first() else {
        return Ok(Command::Plugin);
    };
    match first.as_str() {
        "--version" | "-V" if rest.is_empty() => Ok(Command::Version),
        "--help" | "-h" if rest.is_empty() => Ok(Command::Help),
        "install" | "uninstall" => {
            let mut options = InstallOptions {
                binary,
                bin_dir: "/opt/cni/bin".into(),
                conf_dir: "/etc/cni/net.d".into(),
                agent_socket: DEFAULT_SOCKET.into(),
            };
            let mut rest = rest.iter();
            while let Some(flag) = rest.next() {
                let field = match flag.as_str() {
                    "--bin-dir" => &mut options.bin_dir,
                    "--conf-dir" => &mut options.conf_dir,
                    "--agent-socket" if first == "install" => &mut options.agent_socket,
                    other => return Err(format!("`{first}` takes no argument `{other}`")),
                };
                *field = rest.next().filter(|v| !v.is_empty()).ok_or(format!("`{flag}` needs a value"))?.into();
            }
            Ok(if first == "install" { Command::Install(options) } else { Command::Uninstall(options) })
        }
        "mount-bpffs" => match rest {
            [] => Ok(Command::MountBpffs("/sys/fs/bpf".into())),
            [path] if path.starts_with('/') => Ok(Command::MountBpffs(path.into())),
            _ => Err("`mount-bpffs` takes one absolute path".into()),
        },
        other => Err(format!("unknown command `{other}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn commands_and_their_defaults() {
        let bin = PathBuf::from("/usr/local/bin/policyc-cni");
        assert_eq!(parse(&[], bin.clone()), Ok(Command::Plugin));
        assert_eq!(parse(&args("--version"), bin.clone()), Ok(Command::Version));
        assert_eq!(parse(&args("mount-bpffs"), bin.clone()), Ok(Command::MountBpffs("/sys/fs/bpf".into())));
        let Ok(Command::Install(o)) = parse(&args("install --conf-dir /host/etc/cni/net.d"), bin.clone()) else {
            panic!("install")
        };
        assert_eq!((o.bin_dir.to_str(), o.conf_dir.to_str()), (Some("/opt/cni/bin"), Some("/host/etc/cni/net.d")));
        assert_eq!(o.agent_socket.to_str(), Some(DEFAULT_SOCKET));
        assert_eq!(parse(&args("install --bin-dir"), bin.clone()), Err("`--bin-dir` needs a value".into()));
        assert_eq!(
            parse(&args("uninstall --agent-socket /x"), bin.clone()),
            Err("`uninstall` takes no argument `--agent-socket`".into())
        );
        assert_eq!(
            parse(&args("mount-bpffs sys/fs/bpf"), bin.clone()),
            Err("`mount-bpffs` takes one absolute path".into())
        );
        assert_eq!(parse(&args("ADD"), bin), Err("unknown command `ADD`".into()));
    }
}
