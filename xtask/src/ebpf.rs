//! `cargo xtask build-ebpf [--check]`: compiles the C templates of
//! `ebpf-templates/` into the objects committed beside them.
//!
//! The build is reproducible (no absolute paths in the output: clang runs
//! in the templates directory with its debug paths mapped to `.`), so CI can
//! rebuild and compare: `--check` builds into a scratch directory and fails
//! if any byte differs from the committed object.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The clang that the committed objects were built with.
const CLANG: &str = "clang-19";
/// Its strip: DWARF goes (a bundle carries the templates to every node, and
/// the loader needs only the BTF, which keeps line information).
const STRIP: &str = "llvm-strip-19";

/// Sources and the objects they build, relative to `ebpf-templates/`.
const OBJECTS: [(&str, &str); 5] = [
    ("from_container.c", "from_container.o"),
    ("to_container.c", "to_container.o"),
    ("endpoint.c", "endpoint.o"),
    ("bench/empty.c", "bench/empty.o"),
    ("bench/reference.c", "bench/reference.o"),
];

/// Runs the subcommand.
pub fn run(args: &[String]) -> Result<(), String> {
    let check = match args {
        [] => false,
        [flag] if flag == "--check" => true,
        _ => return Err("usage: cargo xtask build-ebpf [--check]".into()),
    };
    let dir = templates_dir();
    require_clang()?;
    let include = multiarch_include()?;
    let scratch = std::env::temp_dir().join(format!("policyc-build-ebpf-{}", std::process::id()));
    let out_dir = if check { scratch.clone() } else { dir.clone() };
    let result = OBJECTS.iter().try_for_each(|(source, object)| {
        let out = out_dir.join(object);
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("cannot create `{}`: {e}", parent.display()))?;
        }
        compile(&dir, source, &out, &include)?;
        if check {
            compare(&dir.join(object), &out)?;
        }
        eprintln!("xtask: {} {object}", if check { "checked" } else { "built" });
        Ok(())
    });
    if check {
        // Best effort: a leftover scratch directory in /tmp harms nothing.
        let _ = std::fs::remove_dir_all(&scratch);
    }
    result
}

fn templates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("ebpf-templates")
}

fn require_clang() -> Result<(), String> {
    match Command::new(CLANG).arg("--version").output() {
        Ok(out) if out.status.success() => Ok(()),
        _ => Err(format!(
            "`{CLANG}` is not installed; install it with `apt-get install clang-19 llvm-19 libbpf-dev` \
             (the committed objects were built with it, so another clang would not reproduce them)"
        )),
    }
}

/// The directory of the architecture's `asm/` headers, which the kernel's
/// uapi headers include and which `-target bpf` does not search.
fn multiarch_include() -> Result<String, String> {
    let triple = match std::env::consts::ARCH {
        "x86_64" => "x86_64-linux-gnu",
        "aarch64" => "aarch64-linux-gnu",
        other => return Err(format!("no multiarch include directory known for `{other}`")),
    };
    let path = format!("/usr/include/{triple}");
    if !Path::new(&path).join("asm").is_dir() || !Path::new("/usr/include/bpf/bpf_helpers.h").is_file() {
        return Err(format!(
            "kernel or libbpf headers are missing (`{path}/asm`, `/usr/include/bpf`); \
             install them with `apt-get install linux-libc-dev libbpf-dev`"
        ));
    }
    Ok(path)
}

fn compile(dir: &Path, source: &str, out: &Path, include: &str) -> Result<(), String> {
    let dir = dir.canonicalize().map_err(|e| format!("cannot find `{}`: {e}", dir.display()))?;
    let status = Command::new(CLANG)
        .current_dir(&dir)
        .args(["-O2", "-g", "-target", "bpf", "-fno-addrsig", "-Wall", "-Werror"])
        .arg(format!("-fdebug-prefix-map={}=.", dir.display()))
        .arg("-fdebug-compilation-dir=.")
        .arg(format!("-I{include}"))
        .args(["-c", source, "-o"])
        .arg(out)
        .status()
        .map_err(|e| format!("cannot run {CLANG}: {e}"))?;
    if !status.success() {
        return Err(format!("{CLANG} failed on `{source}` ({status})"));
    }
    let status = Command::new(STRIP)
        .arg("--strip-debug")
        .arg(out)
        .status()
        .map_err(|e| format!("cannot run {STRIP}: {e} (install it with `apt-get install llvm-19`)"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{STRIP} failed on `{}` ({status})", out.display()))
    }
}

fn compare(committed: &Path, built: &Path) -> Result<(), String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("cannot read `{}`: {e}", p.display()));
    let (a, b) = (read(committed)?, read(built)?);
    if a == b {
        Ok(())
    } else {
        Err(format!(
            "`{}` differs from a fresh build ({} vs {} bytes): run `cargo xtask build-ebpf` and commit the objects",
            committed.display(),
            a.len(),
            b.len()
        ))
    }
}
