//! One side of a diff: files and directories of the work tree, or
//! `git:REV:PATH` read from the repository ([`crate::front::git`]).

use crate::front::git::{read_git, GitSpec};
use crate::front::source::read_paths;
use crate::pipeline::{load_input, Loaded};
use std::path::{Path, PathBuf};

/// Where one side of a diff comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tree {
    /// A file or directory of the work tree (or `-` for stdin).
    Path(PathBuf),
    /// Files at a Git revision.
    Git(GitSpec),
}

impl Tree {
    /// Parses a command-line argument: `git:REV:PATH` or a path.
    pub fn parse(s: &str) -> Result<Tree, String> {
        match GitSpec::parse(s) {
            Some(spec) => spec.map(Tree::Git),
            None => Ok(Tree::Path(PathBuf::from(s))),
        }
    }

    /// How the side is written on the command line.
    pub fn display(&self) -> String {
        match self {
            Tree::Path(p) => p.display().to_string(),
            Tree::Git(spec) => spec.display(),
        }
    }

    /// Reads, checks and lowers the side; Git revisions are read from the
    /// repository holding `cwd`, relative paths of a Git spec are relative
    /// to `cwd`.
    pub fn load(&self, cwd: &Path) -> Loaded {
        match self {
            Tree::Path(p) => load_input(read_paths(std::slice::from_ref(p))),
            Tree::Git(spec) => load_input(read_git(spec, cwd)),
        }
    }
}
