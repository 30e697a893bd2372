//! Making sure bpffs is mounted where the loader pins.

use crate::error::LoaderError;
use std::path::Path;
use std::process::Command;

/// Whether `/proc/mounts` lists a bpf filesystem mounted at `path`.
pub fn is_mounted(path: &Path) -> Result<bool, LoaderError> {
    let mounts = std::fs::read_to_string("/proc/mounts")
        .map_err(|e| LoaderError::Bpffs(format!("cannot read /proc/mounts: {e}")))?;
    let wanted = path.to_string_lossy();
    Ok(mounts.lines().any(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        f.len() > 2 && f[1] == wanted && f[2] == "bpf"
    }))
}

/// Mounts bpffs at `path` unless it is mounted there already.
pub fn ensure_mounted(path: &Path) -> Result<(), LoaderError> {
    if is_mounted(path)? {
        return Ok(());
    }
    std::fs::create_dir_all(path)
        .map_err(|e| LoaderError::Bpffs(format!("cannot create `{}`: {e}", path.display())))?;
    let status = Command::new("mount")
        .args(["-t", "bpf", "bpf"])
        .arg(path)
        .status()
        .map_err(|e| LoaderError::Bpffs(format!("cannot run mount: {e}")))?;
    if !status.success() || !is_mounted(path)? {
        return Err(LoaderError::Bpffs(format!("`mount -t bpf bpf {}` failed ({status})", path.display())));
    }
    Ok(())
}
