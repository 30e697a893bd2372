//! Mounting bpffs on the node: the first init container's work
//! (`policyc-cni mount-bpffs`), since the image has no `mount` binary and
//! the agent pins its maps and programs there.
//!
//! Each `mount -t bpf` makes a new, empty bpffs instance, and pins live as
//! long as their instance. So the mount must be the node's own (the
//! container's `/sys/fs/bpf` a host path with `Bidirectional` propagation,
//! which Kubernetes allows only to privileged containers), or a restarted
//! agent would find none of what it pinned. Most distributions mount it at
//! boot (systemd does); this only fills the gap, as Cilium's
//! `mount-bpf-fs` init container does.

use std::path::Path;

/// Whether `mounts` (the text of `/proc/mounts`) lists a bpf filesystem at
/// `path`.
pub fn listed(mounts: &str, path: &Path) -> bool {
    // /proc/mounts writes a space, tab, newline or backslash in a path as
    // an octal escape.
    let wanted = path
        .to_string_lossy()
        .replace('\\', "\\134")
        .replace(' ', "\\040")
        .replace('\t', "\\011")
        .replace('\n', "\\012");
    mounts.lines().any(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        fields.len() > 2 && fields[1] == wanted && fields[2] == "bpf"
    })
}

/// Mounts bpffs at `path` unless one is mounted there; whether it mounted.
pub fn ensure_mounted(path: &Path) -> Result<bool, String> {
    let mounted = || {
        std::fs::read_to_string("/proc/mounts")
            .map(|mounts| listed(&mounts, path))
            .map_err(|e| format!("cannot read `/proc/mounts`: {e}"))
    };
    if mounted()? {
        return Ok(false);
    }
    std::fs::create_dir_all(path).map_err(|e| format!("cannot create `{}`: {e}", path.display()))?;
    rustix::mount::mount("bpf", path, "bpf", rustix::mount::MountFlags::empty(), None)
        .map_err(|e| format!("cannot mount bpffs at `{}`: {e}", path.display()))?;
    if !mounted()? {
        return Err(format!("bpffs mounted at `{}` is not listed in `/proc/mounts`", path.display()));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bpf_mount_is_found_by_path_and_type() {
        let mounts = "sysfs /sys sysfs rw 0 0\nbpf /sys/fs/bpf bpf rw,nosuid 0 0\ntmpfs /x\\040y tmpfs rw 0 0\nbpf /x\\040y/b bpf rw 0 0\n";
        assert!(listed(mounts, Path::new("/sys/fs/bpf")));
        assert!(!listed(mounts, Path::new("/sys")), "a sysfs is no bpffs");
        assert!(!listed(mounts, Path::new("/sys/fs")));
        assert!(listed(mounts, Path::new("/x y/b")), "escaped spaces");
    }
}
