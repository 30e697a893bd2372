//! The node's cache of blobs by digest, and the bundles materialized from
//! them, under the agent's state directory:
//! `blobs/sha256/HEX` and `bundles/HEX` (HEX of the manifest digest).
//! Every write goes to a temporary name first and is renamed into place,
//! so a crash leaves either nothing or a whole file.

use crate::artifact::digest_of;
use crate::error::OciError;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// A cache directory.
#[derive(Clone, Debug)]
pub struct Cache {
    root: PathBuf,
}

fn cache_error(path: &Path, e: std::io::Error) -> OciError {
    OciError::Cache(format!("`{}`: {e}", path.display()))
}

/// The hex part of `sha256:HEX`, if it is one.
pub fn hex_of(digest: &str) -> Option<&str> {
    digest
        .strip_prefix("sha256:")
        .filter(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

impl Cache {
    /// The cache under `root` (created when first written).
    pub fn new(root: &Path) -> Cache {
        Cache { root: root.to_path_buf() }
    }

    fn blob_path(&self, digest: &str) -> Result<PathBuf, OciError> {
        let hex = hex_of(digest).ok_or_else(|| OciError::Refused(format!("`{digest}` is not a sha256 digest")))?;
        Ok(self.root.join("blobs/sha256").join(hex))
    }

    /// The blob `digest`, if the cache holds it whole and intact (a
    /// damaged one is removed, and fetched again).
    pub fn get(&self, digest: &str) -> Result<Option<Vec<u8>>, OciError> {
        let path = self.blob_path(digest)?;
        match std::fs::read(&path) {
            Ok(bytes) if digest_of(&bytes) == digest => Ok(Some(bytes)),
            Ok(_) => {
                std::fs::remove_file(&path).map_err(|e| cache_error(&path, e))?;
                Ok(None)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(cache_error(&path, e)),
        }
    }

    /// Whether the cache holds a blob of that name (not read).
    pub fn has(&self, digest: &str) -> bool {
        self.blob_path(digest).is_ok_and(|p| p.is_file())
    }

    /// Keeps `bytes`, which must be `digest`'s.
    pub fn put(&self, digest: &str, bytes: &[u8]) -> Result<(), OciError> {
        if digest_of(bytes) != digest {
            return Err(OciError::Refused(format!("a blob does not match its digest `{digest}`")));
        }
        let path = self.blob_path(digest)?;
        write_atomically(&path, bytes)
    }

    /// Where the bundle of manifest `digest` is materialized.
    pub fn bundle_dir(&self, digest: &str) -> Result<PathBuf, OciError> {
        let hex = hex_of(digest).ok_or_else(|| OciError::Refused(format!("`{digest}` is not a sha256 digest")))?;
        Ok(self.root.join("bundles").join(hex))
    }

    /// Removes every blob not in `keep_blobs` and every bundle not in
    /// `keep_bundles` (manifest digests).
    pub fn prune(&self, keep_blobs: &BTreeSet<String>, keep_bundles: &BTreeSet<String>) -> Result<(), OciError> {
        let keep: BTreeSet<&str> = keep_blobs.iter().filter_map(|d| hex_of(d)).collect();
        let blobs = self.root.join("blobs/sha256");
        for name in list(&blobs)? {
            if !keep.contains(name.as_str()) {
                let path = blobs.join(&name);
                std::fs::remove_file(&path).map_err(|e| cache_error(&path, e))?;
            }
        }
        let keep: BTreeSet<&str> = keep_bundles.iter().filter_map(|d| hex_of(d)).collect();
        let bundles = self.root.join("bundles");
        for name in list(&bundles)? {
            if !keep.contains(name.as_str()) {
                let path = bundles.join(&name);
                std::fs::remove_dir_all(&path).map_err(|e| cache_error(&path, e))?;
            }
        }
        Ok(())
    }
}

fn list(dir: &Path) -> Result<Vec<String>, OciError> {
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            Ok(entries.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(cache_error(dir, e)),
    }
}

/// Writes `bytes` to `path` through a temporary file in the same
/// directory, renamed into place.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), OciError> {
    let dir = path.parent().ok_or_else(|| OciError::Cache(format!("`{}` has no parent", path.display())))?;
    std::fs::create_dir_all(dir).map_err(|e| cache_error(dir, e))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| cache_error(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| cache_error(path, e))
}
