//! Change detection for `--bundle` and `--cluster` by polling: a bundle's
//! `manifest.json` carries the digest of every other file, so its own
//! digest says whether anything changed; a cluster directory's fingerprint
//! is the name, size and modification time of every file under it. Polling
//! every few hundred milliseconds costs a few `stat`s, needs no inotify
//! dependency, and works the same on the ConfigMap and hostPath volumes
//! (symlink swaps) a DaemonSet reads these from.

use crate::bundle::locate;
use policyc_bundle::digest::sha256_hex;
use std::path::Path;

/// The digest of the bundle's manifest in `dir`.
pub fn bundle_fingerprint(dir: &Path) -> Result<String, String> {
    let manifest = locate(dir).map_err(|e| e.to_string())?.join("manifest.json");
    let bytes = std::fs::read(&manifest).map_err(|e| format!("cannot read `{}`: {e}", manifest.display()))?;
    Ok(sha256_hex(&bytes))
}

/// Name, size and modification time of every file under `dir`, hashed
/// (directories are followed to a depth of 8, as the compiler reads them).
pub fn tree_fingerprint(dir: &Path) -> Result<String, String> {
    let mut lines = Vec::new();
    walk(dir, 0, &mut lines)?;
    lines.sort();
    Ok(sha256_hex(lines.join("\n").as_bytes()))
}

/// What the agent last read of one watched source: the fingerprint of its
/// last good read, and the problem it last logged.
#[derive(Debug, Default)]
pub struct Watched {
    fingerprint: Option<String>,
    problem: Option<String>,
}

impl Watched {
    /// Reads the source again if its `fingerprint` changed since the last
    /// good read: `Some` with what `read` gave. A failure (of either) is
    /// retried at every poll (a bundle replaced while it was read reads
    /// whole at the next) and logged once, ending with `keeping`.
    pub fn refresh<T>(
        &mut self,
        fingerprint: Result<String, String>,
        read: impl FnOnce() -> Result<T, String>,
        keeping: &str,
    ) -> Option<T> {
        let read = fingerprint.and_then(|seen| {
            if self.fingerprint.as_ref() == Some(&seen) {
                return Ok(None);
            }
            Ok(Some((seen, read()?)))
        });
        match read {
            Ok(None) => None,
            Ok(Some((seen, value))) => {
                self.fingerprint = Some(seen);
                self.problem = None;
                Some(value)
            }
            Err(e) => {
                self.fingerprint = None;
                if self.problem.as_ref() != Some(&e) {
                    super::log(&format!("{e}; {keeping}"));
                    self.problem = Some(e);
                }
                None
            }
        }
    }
}

fn walk(dir: &Path, depth: usize, out: &mut Vec<String>) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot read `{}`: {e}", dir.display()))?;
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let Ok(meta) = std::fs::metadata(&path) else { continue };
        if meta.is_dir() {
            if depth < 8 {
                walk(&path, depth + 1, out)?;
            }
            continue;
        }
        let modified = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
        out.push(format!("{} {} {:?}", path.display(), meta.len(), modified));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_is_read_again_only_when_its_fingerprint_changes_or_after_a_failure() {
        let mut w = Watched::default();
        assert_eq!(w.refresh(Ok("a".into()), || Ok(1), "keeping"), Some(1));
        assert_eq!(w.refresh(Ok("a".into()), || -> Result<i32, String> { panic!("read twice") }, "keeping"), None);
        assert_eq!(w.refresh(Ok("b".into()), || -> Result<i32, String> { Err("bad".into()) }, "keeping"), None);
        // The failed read is retried even though the fingerprint is the same.
        assert_eq!(w.refresh(Ok("b".into()), || Ok(2), "keeping"), Some(2));
        assert_eq!(w.refresh(Err("gone".into()), || Ok(3), "keeping"), None);
        assert_eq!(w.refresh(Ok("b".into()), || Ok(4), "keeping"), Some(4));
    }

    #[test]
    fn a_written_file_changes_the_fingerprint() {
        let dir = std::env::temp_dir().join(format!("policyc-agent-watch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/a.yaml"), "a").unwrap();
        let first = tree_fingerprint(&dir).unwrap();
        assert_eq!(tree_fingerprint(&dir).unwrap(), first);
        std::fs::write(dir.join("sub/a.yaml"), "ab").unwrap();
        assert_ne!(tree_fingerprint(&dir).unwrap(), first);
        assert!(bundle_fingerprint(&dir).unwrap_err().contains("holds no bundle"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
