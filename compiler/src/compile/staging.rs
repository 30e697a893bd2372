//! A hidden directory next to the bundles, where a compile writes its
//! bundles before moving them into place: the previous bundles are
//! replaced only once every node has succeeded.

use super::error::OutputError;
use std::path::{Path, PathBuf};

/// The staging directory of one compile into `out`.
#[derive(Debug)]
pub struct Staging {
    out: PathBuf,
    dir: PathBuf,
}

impl Staging {
    /// Checks that every bundle directory `out/<node>` that will be written
    /// is absent, empty or a previous bundle (which
    /// [`crate::emit::Bundle::write_to`] would replace), and creates the
    /// staging directory.
    pub fn new(out: &Path, nodes: &[String], only: Option<&str>) -> Result<Staging, OutputError> {
        for node in nodes.iter().filter(|n| only.is_none_or(|o| o == n.as_str())) {
            let dir = out.join(node);
            let is_bundle = dir.join("manifest.json").is_file();
            let is_empty = !dir.exists() || std::fs::read_dir(&dir).map(|mut d| d.next().is_none()).unwrap_or(false);
            if !is_bundle && !is_empty {
                return Err(OutputError::new(format!(
                    "`{}` exists and is not a bundle; refusing to overwrite it",
                    dir.display()
                )));
            }
        }
        let dir = out.join(format!(".policyc-staging-{}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .map_err(|e| OutputError::new(format!("cannot remove `{}`: {e}", dir.display())))?;
        }
        std::fs::create_dir_all(&dir)
            .map_err(|e| OutputError::new(format!("cannot create `{}`: {e}", dir.display())))?;
        Ok(Staging { out: out.to_path_buf(), dir })
    }

    /// Where node `node`'s bundle is staged.
    pub fn node_dir(&self, node: &str) -> PathBuf {
        self.dir.join(node)
    }

    /// Moves the staged bundles of `nodes` into place, replacing previous
    /// bundles, and returns their directories.
    pub fn commit<'a>(self, nodes: impl Iterator<Item = &'a str>) -> Result<Vec<PathBuf>, OutputError> {
        let mut written = Vec::new();
        for node in nodes {
            let target = self.out.join(node);
            if target.exists() {
                std::fs::remove_dir_all(&target)
                    .map_err(|e| OutputError::new(format!("cannot remove `{}`: {e}", target.display())))?;
            }
            std::fs::rename(self.dir.join(node), &target)
                .map_err(|e| OutputError::new(format!("cannot move the bundle into `{}`: {e}", target.display())))?;
            written.push(target);
        }
        self.discard();
        Ok(written)
    }

    /// Removes the staging directory (after a failure, with what it holds).
    pub fn discard(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
