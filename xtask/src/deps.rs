//! What `cargo xtask ci` needs beyond a Rust toolchain, and installing it.
//!
//! A fresh machine (the CI image, a new contributor's box) has cargo but
//! not rustfmt, clippy, Graphviz or Debian's clang-19: the README's test
//! command installs them itself when run as root, and otherwise prints the
//! exact command to run and fails, so nobody has to read `.ci/run` to learn
//! what is missing.

use std::process::Command;

/// Debian packages the test suite needs: `dot` renders `policyc graph
/// --format svg`; the datapath objects are rebuilt with clang-19 and
/// llvm-strip-19 against the kernel and libbpf headers and compared with the
/// committed bytes; the node agent's kernel test makes pods with the
/// reference CNI plugins (`ptp`, `host-local` in `/usr/lib/cni`); the
/// registry tests publish to and pull from the CNCF distribution registry
/// (`/usr/bin/docker-registry`) on loopback, behind htpasswd (bcrypt, made
/// with apache2-utils' `htpasswd`) and TLS (certificates made with
/// `openssl`).
const PACKAGES: [&str; 9] = [
    "graphviz",
    "clang-19",
    "llvm-19",
    "libbpf-dev",
    "linux-libc-dev",
    "containernetworking-plugins",
    "docker-registry",
    "apache2-utils",
    "openssl",
];

/// Debian packages of the image test: it builds the node image with
/// buildah from scratch and runs its binaries in it
/// (`runtime-loader/tests/deploy_image.rs`, `cargo xtask image`).
const IMAGE_PACKAGES: [&str; 1] = ["buildah"];

/// Debian packages of `cargo xtask bench services`: kube-proxy's layouts
/// are timed with `iptables-restore` (legacy and nft backends) and `nft`.
const BENCH_PACKAGES: [&str; 2] = ["iptables", "nftables"];

/// Toolchain components the format and lint steps run.
const COMPONENTS: [&str; 2] = ["rustfmt", "clippy"];

/// Installs what is missing (as root), or names the command that would.
pub fn ensure() -> Result<(), String> {
    let components: Vec<&str> = COMPONENTS.into_iter().filter(|c| !has_component(c)).collect();
    install(components, PACKAGES.into_iter().chain(IMAGE_PACKAGES).collect())
}

/// Installs what `bench services` needs and is missing (as root), or
/// names the command that would.
pub fn ensure_bench() -> Result<(), String> {
    install(Vec::new(), BENCH_PACKAGES.to_vec())
}

/// Installs `components` and those of `packages` not installed yet.
fn install(components: Vec<&str>, packages: Vec<&str>) -> Result<(), String> {
    let packages: Vec<&str> = packages.into_iter().filter(|p| !has_package(p)).collect();
    if components.is_empty() && packages.is_empty() {
        return Ok(());
    }
    let mut commands: Vec<Vec<String>> = Vec::new();
    if !components.is_empty() {
        commands.push(words(&["rustup", "component", "add"], &components));
    }
    if !packages.is_empty() {
        commands.push(words(&["apt-get", "update", "-qq"], &[]));
        commands.push(words(&["apt-get", "install", "-y", "-qq"], &packages));
    }
    if !is_root() {
        let shown: Vec<String> = commands.iter().map(|c| c.join(" ")).collect();
        return Err(format!(
            "missing {}; run as root, or install them first with:\n  {}",
            components.iter().chain(&packages).map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "),
            shown.join(" && \\\n  ")
        ));
    }
    for command in &commands {
        run(command)?;
    }
    Ok(())
}

fn words(head: &[&str], tail: &[&str]) -> Vec<String> {
    head.iter().chain(tail).map(|w| (*w).to_string()).collect()
}

fn run(command: &[String]) -> Result<(), String> {
    eprintln!("xtask: {}", command.join(" "));
    let status = Command::new(&command[0])
        .args(&command[1..])
        // apt must never stop to ask (tzdata and the like) on a CI runner.
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .map_err(|e| format!("cannot run `{}`: {e}", command[0]))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{}` failed ({status})", command.join(" ")))
    }
}

/// Whether `cargo <component>` runs; clippy's subcommand is `cargo clippy`,
/// rustfmt's is `cargo fmt`.
fn has_component(component: &str) -> bool {
    let subcommand = if component == "rustfmt" { "fmt" } else { component };
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([subcommand, "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether dpkg records `package` as installed (a package that was removed
/// but kept its configuration files is reported as `deinstall ok
/// config-files`, so the status is compared whole).
fn has_package(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout == b"install ok installed")
}

/// The effective user is root: `/proc/self` belongs to the process's
/// effective uid, which spares an `unsafe` call to `geteuid`.
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}
