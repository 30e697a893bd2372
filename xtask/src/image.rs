//! `cargo xtask image`: the node image, built from the repository's
//! `Containerfile` (`FROM scratch`), so that no base image is pulled (this
//! machine and many CI runners have no registry to pull from).
//!
//! The release binaries are built here, outside the container; they are
//! staged with exactly the shared libraries `ldd` names for them and the
//! system's CA bundle (a registry behind TLS, for `--bundle oci://`) under
//! `rootfs/` of a build context, and the `Containerfile` is built in that
//! context with `buildah build --isolation chroot` (buildah's full runtime
//! does not work on every cgroup layout, this machine's among them; the
//! file has no `RUN`, so nothing runs during the build). `policyc-cni` is
//! linked statically (`-C target-feature=+crt-static` on the glibc
//! target): the container runtime runs the copy on the node itself, whose
//! glibc may be older than the build machine's. It makes no NSS lookup, so
//! static glibc has no caveat for it. The agent stays dynamic: it resolves
//! registry names through glibc, and its three libraries cost less than a
//! second static build of the whole tree.
//!
//! Each binary is then run (`--version`) in a container of the image; an
//! image whose binaries cannot start is removed again, and the command
//! fails.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The glibc target `policyc-cni` is built for statically.
const STATIC_TARGET: &str = "x86_64-unknown-linux-gnu";

/// Where the binaries go in the image.
const BIN_DIR: &str = "/usr/local/bin";

/// The image's defaults when the command line names none.
const DEFAULT_TAG: &str = "localhost/policyc:dev";

/// What to build the image from.
#[derive(Debug, PartialEq)]
struct Options {
    /// The image name to commit to.
    tag: String,
    /// Prebuilt binaries (`--loader`, `--cni`), else a release build.
    binaries: Option<(PathBuf, PathBuf)>,
}

const USAGE: &str = "usage: cargo xtask image [--tag NAME] [--loader PATH --cni PATH]";

fn parse(args: &[String]) -> Result<Options, String> {
    let mut tag = DEFAULT_TAG.to_string();
    let (mut loader, mut cni) = (None, None);
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("`{flag}` needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--tag" => tag = value.clone(),
            "--loader" => loader = Some(PathBuf::from(value)),
            "--cni" => cni = Some(PathBuf::from(value)),
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    let binaries = match (loader, cni) {
        (Some(loader), Some(cni)) => Some((loader, cni)),
        (None, None) => None,
        _ => return Err(format!("`--loader` and `--cni` go together\n{USAGE}")),
    };
    Ok(Options { tag, binaries })
}

/// Builds the image (release binaries unless `--loader` and `--cni` name
/// prebuilt ones) and prints its name and id.
pub fn run(args: &[String]) -> Result<(), String> {
    let options = parse(args)?;
    if !Command::new("buildah").arg("--version").output().is_ok_and(|o| o.status.success()) {
        return Err("`buildah` is missing: `apt-get install buildah` (`cargo xtask ci` installs it as root)".into());
    }
    let (loader, cni) = match options.binaries {
        Some(binaries) => binaries,
        None => build_release()?,
    };
    let id = assemble(&loader, &cni, &options.tag)?;
    println!("{} {id}", options.tag);
    Ok(())
}

fn build_release() -> Result<(PathBuf, PathBuf), String> {
    crate::cargo(&["build", "--release", "-p", "policyc-loader", "--bin", "policyc-loader"], &[])?;
    crate::cargo(
        &["build", "--release", "-p", "policyc-cni", "--bin", "policyc-cni", "--target", STATIC_TARGET],
        &[("RUSTFLAGS", "-C target-feature=+crt-static")],
    )?;
    let target = workspace().join("target");
    Ok((target.join("release/policyc-loader"), target.join(STATIC_TARGET).join("release/policyc-cni")))
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Makes the image from `loader` and `cni` with the `Containerfile`,
/// checks that both start in it, and tags it `tag`; its id.
fn assemble(loader: &Path, cni: &Path, tag: &str) -> Result<String, String> {
    if !shared_libraries(cni)?.is_empty() {
        eprintln!(
            "xtask: warning: `{}` is linked dynamically: the copy `install` puts on a node needs a glibc \
             as new as this machine's (the release build links it statically)",
            cni.display()
        );
    }
    let context = std::env::temp_dir().join(format!("policyc-image-context-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&context);
    let built = stage(&context.join("rootfs"), loader, cni).and_then(|()| build(&context, tag));
    let _ = std::fs::remove_dir_all(&context);
    let id = built?;
    let checked = check_binaries(tag, loader, cni);
    if checked.is_err() {
        let _ = buildah(&["rmi", "--force", tag]);
    }
    checked?;
    Ok(id)
}

/// Lays out the image's file system under `rootfs`: the binaries in
/// [`BIN_DIR`], their libraries where `ldd` found them, the CA bundle, and
/// the directories the agent writes where the DaemonSet mounts nothing
/// (`--state`, a scratch `TMPDIR`).
fn stage(rootfs: &Path, loader: &Path, cni: &Path) -> Result<(), String> {
    let mut files: Vec<(PathBuf, String)> = Vec::new();
    for binary in [loader, cni] {
        let name = binary.file_name().and_then(|n| n.to_str()).ok_or(format!("`{}` is no file", binary.display()))?;
        files.push((binary.to_path_buf(), format!("{BIN_DIR}/{name}")));
        for library in shared_libraries(binary)? {
            let source = std::fs::canonicalize(&library).map_err(|e| format!("`{}`: {e}", library.display()))?;
            let entry = (source, library.to_string_lossy().into_owned());
            if !files.contains(&entry) {
                files.push(entry);
            }
        }
    }
    let certificates = Path::new("/etc/ssl/certs/ca-certificates.crt");
    if certificates.is_file() {
        files.push((certificates.to_path_buf(), certificates.to_string_lossy().into_owned()));
    }
    for (source, destination) in &files {
        let target = rootfs.join(destination.trim_start_matches('/'));
        let parent = target.parent().ok_or(format!("`{destination}` has no directory"))?;
        std::fs::create_dir_all(parent).map_err(|e| format!("cannot make `{}`: {e}", parent.display()))?;
        // `copy` keeps the source's permissions: the dynamic loader, like
        // the binaries, must stay executable (the kernel opens a program's
        // interpreter for execution).
        std::fs::copy(source, &target)
            .map_err(|e| format!("cannot copy `{}` to `{}`: {e}", source.display(), target.display()))?;
    }
    for dir in ["run/policyc", "tmp"] {
        std::fs::create_dir_all(rootfs.join(dir)).map_err(|e| format!("cannot make `/{dir}` in the image: {e}"))?;
    }
    Ok(())
}

/// `buildah build` of the repository's `Containerfile` in `context`, with
/// the labels only the repository knows (revision, commit time, source)
/// and the commit's time as the image's, so that the same commit gives the
/// same image config; the image id.
fn build(context: &Path, tag: &str) -> Result<String, String> {
    let containerfile = workspace().join("Containerfile");
    let timestamp = commit_time()?;
    let mut args: Vec<String> = ["build", "--quiet", "--isolation", "chroot", "--format", "oci", "--timestamp"]
        .iter()
        .map(|s| (*s).to_string())
        .collect();
    args.push(timestamp);
    for (key, value) in labels()? {
        args.push("--label".into());
        args.push(format!("{key}={value}"));
    }
    args.extend(["--file".into(), containerfile.to_string_lossy().into_owned(), "--tag".into(), tag.to_string()]);
    args.push(context.to_string_lossy().into_owned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = buildah(&args)?;
    // `--quiet` prints the image id last.
    Ok(out.lines().last().unwrap_or_default().to_string())
}

/// Runs each binary's `--version` in a container of `tag`.
fn check_binaries(tag: &str, loader: &Path, cni: &Path) -> Result<(), String> {
    let container = buildah(&["from", "--quiet", tag])?;
    let ran = [loader, cni].iter().try_for_each(|binary| {
        let name = binary.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let version =
            buildah(&["run", "--isolation", "chroot", &container, "--", &format!("{BIN_DIR}/{name}"), "--version"])?;
        eprintln!("xtask: in the image: {version}");
        Ok::<(), String>(())
    });
    let removed = buildah(&["rm", &container]);
    ran?;
    removed.map(drop)
}

/// The OCI annotations of the image (`org.opencontainers.image.*`, image
/// spec "Pre-Defined Annotation Keys") that only the repository knows; the
/// `Containerfile` sets the others (and the version, which this keeps
/// equal to the crates').
fn labels() -> Result<Vec<(&'static str, String)>, String> {
    let revision = git(&["rev-parse", "HEAD"])?;
    let created = git(&["log", "-1", "--format=%cI"])?;
    let mut labels = vec![
        ("org.opencontainers.image.version", env!("CARGO_PKG_VERSION").to_string()),
        ("org.opencontainers.image.revision", revision),
        ("org.opencontainers.image.created", created),
    ];
    if let Ok(source) = git(&["remote", "get-url", "origin"]) {
        labels.push(("org.opencontainers.image.source", source));
    }
    Ok(labels)
}

/// The commit's time (seconds): the image's creation time, so that the
/// same commit gives the same image config (as `SOURCE_DATE_EPOCH`).
fn commit_time() -> Result<String, String> {
    git(&["log", "-1", "--format=%ct"])
}

fn git(args: &[&str]) -> Result<String, String> {
    let out =
        Command::new("git").args(args).current_dir(workspace()).output().map_err(|e| format!("cannot run git: {e}"))?;
    if !out.status.success() {
        return Err(format!("`git {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The shared libraries `ldd` names for `binary`, the dynamic loader
/// among them (none for a static binary; the vDSO is the kernel's).
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>, String> {
    let out = Command::new("ldd").arg(binary).output().map_err(|e| format!("cannot run ldd: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || text.contains("statically linked") {
        // ldd exits 1 for a static binary ("not a dynamic executable").
        return if text.contains("statically linked") || String::from_utf8_lossy(&out.stderr).contains("not a dynamic") {
            Ok(Vec::new())
        } else {
            Err(format!("`ldd {}` failed: {}", binary.display(), String::from_utf8_lossy(&out.stderr).trim()))
        };
    }
    parse_ldd(&text).map_err(|line| format!("`ldd {}`: cannot read `{line}`", binary.display()))
}

/// The library paths of `ldd`'s output; a library it did not find is an
/// error (the line).
fn parse_ldd(text: &str) -> Result<Vec<PathBuf>, String> {
    let mut libraries = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let path = match line.split_once(" => ") {
            Some((_, found)) => found.split(" (").next().unwrap_or_default(),
            None => line.split(" (").next().unwrap_or_default(),
        };
        if line.starts_with("linux-vdso") {
            continue;
        }
        if !path.starts_with('/') {
            return Err(line.to_string());
        }
        libraries.push(PathBuf::from(path));
    }
    Ok(libraries)
}

/// Runs buildah; its trimmed stdout.
fn buildah(args: &[&str]) -> Result<String, String> {
    let out = Command::new("buildah").args(args).output().map_err(|e| format!("cannot run buildah: {e}"))?;
    if !out.status.success() {
        return Err(format!("`buildah {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_lines_give_the_library_paths() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        let paths: Vec<String> = parse_ldd(text).unwrap().iter().map(|p| p.display().to_string()).collect();
        assert_eq!(
            paths,
            ["/lib/x86_64-linux-gnu/libgcc_s.so.1", "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"]
        );
        assert_eq!(parse_ldd("\tlibfoo.so.1 => not found\n"), Err("libfoo.so.1 => not found".into()));
    }

    #[test]
    fn command_line() {
        let args = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        assert_eq!(parse(&[]).unwrap(), Options { tag: DEFAULT_TAG.into(), binaries: None });
        let o = parse(&args("--tag localhost/p:t --loader /a --cni /b")).unwrap();
        assert_eq!(o.binaries, Some(("/a".into(), "/b".into())));
        assert!(parse(&args("--loader /a")).unwrap_err().starts_with("`--loader` and `--cni` go together"));
    }
}
