//! Writing bundles to disk. Nodes' bundles hold many equal files (a policy
//! map is in the bundle of every node running an endpoint with that map,
//! `identities.txt` is in all of them): each such text is written once and
//! the other bundles get hard links to it, which cut the bytes a large
//! cluster's compile writes several times over.

use super::EmitError;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// The file each shared text was first written to, by the text's address
/// (the text is kept here too, so that its address cannot be reused).
#[derive(Debug, Default)]
pub struct Written {
    first: Mutex<HashMap<usize, (Arc<str>, FirstWrite)>>,
}

/// Where a text was written first, once it is.
type FirstWrite = Arc<OnceLock<Result<PathBuf, String>>>;

impl Written {
    /// Writes `text` to `path`, or links `path` to the file `text` was
    /// written to before. Threads writing the same text wait for the first.
    pub fn write(&self, text: &Arc<str>, path: &Path) -> Result<(), EmitError> {
        let key = super::address(text);
        // Only texts shared with another bundle can be written twice.
        if Arc::strong_count(text) == 1 {
            return write_file(path, text.as_bytes());
        }
        let cell = {
            // A poisoned lock means a writer panicked (a bug): the map of
            // finished writes is still sound.
            let mut first = self.first.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(&first.entry(key).or_insert_with(|| (Arc::clone(text), FirstWrite::default())).1)
        };
        let first = cell.get_or_init(|| match write_file(path, text.as_bytes()) {
            Ok(()) => Ok(path.to_path_buf()),
            Err(e) => Err(e.to_string()),
        });
        match first {
            Ok(first) if first == path => Ok(()),
            Ok(first) => link_or_copy(first, path, text),
            Err(e) => Err(EmitError::Io(e.clone())),
        }
    }
}

fn link_or_copy(first: &Path, path: &Path, text: &str) -> Result<(), EmitError> {
    create_parent(path)?;
    match std::fs::hard_link(first, path) {
        Ok(()) => Ok(()),
        Err(_) => write_file(path, text.as_bytes()),
    }
}

/// Writes `bytes` to `path`, creating its directory.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), EmitError> {
    create_parent(path)?;
    std::fs::write(path, bytes).map_err(|e| io_error("write", path, e))
}

fn create_parent(path: &Path) -> Result<(), EmitError> {
    match path.parent() {
        Some(parent) => std::fs::create_dir_all(parent).map_err(|e| io_error("create", parent, e)),
        None => Ok(()),
    }
}

/// Makes `dir` ready for a bundle: a previous bundle there (a directory
/// with a `manifest.json`) is removed whole, so no stale policy file
/// survives; any other non-empty directory is refused.
pub fn replace_dir(dir: &Path) -> Result<(), EmitError> {
    if !dir.exists() {
        return Ok(());
    }
    let is_bundle = dir.join("manifest.json").is_file();
    let is_empty = std::fs::read_dir(dir).map_err(|e| io_error("read", dir, e))?.next().is_none();
    if !is_bundle && !is_empty {
        return Err(EmitError::Io(format!("`{}` exists and is not a bundle; refusing to overwrite it", dir.display())));
    }
    if is_bundle {
        std::fs::remove_dir_all(dir).map_err(|e| io_error("remove", dir, e))?;
    }
    Ok(())
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> EmitError {
    EmitError::Io(format!("cannot {what} `{}`: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn a_shared_text_is_written_once_and_linked() {
        let root = std::env::temp_dir().join(format!("policyc-write-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let shared: Arc<str> = Arc::from("ingress any 0/0/0 allow x\n");
        let copy = Arc::clone(&shared);
        let own: Arc<str> = Arc::from("ingress any 0/0/0 allow x\n");
        let written = Written::default();
        let (a, b, c) = (root.join("a/p.txt"), root.join("b/p.txt"), root.join("c/p.txt"));
        written.write(&shared, &a).unwrap();
        written.write(&copy, &b).unwrap();
        written.write(&own, &c).unwrap();
        let inode = |p: &Path| std::fs::metadata(p).unwrap().ino();
        assert_eq!(inode(&a), inode(&b));
        assert_ne!(inode(&a), inode(&c), "an equal text that is not shared is its own file");
        for p in [&a, &b, &c] {
            assert_eq!(std::fs::read_to_string(p).unwrap(), *shared);
        }
        std::fs::remove_dir_all(&root).unwrap();
    }
}
