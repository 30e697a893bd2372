//! One side of a diff: files and directories of the work tree, or
//! `git:REV:PATH` read from the repository ([`crate::front::git`]), one or
//! several of them read together into one tree.

use crate::front::git::{read_git, GitSpec};
use crate::front::source::read_paths;
use crate::front::Input;
use crate::pipeline::{load_input, Loaded};
use std::path::{Path, PathBuf};

/// One input of a side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A file or directory of the work tree (or `-` for stdin).
    Path(PathBuf),
    /// Files at a Git revision.
    Git(GitSpec),
}

impl Source {
    /// Parses a command-line argument: `git:REV:PATH` or a path.
    pub fn parse(s: &str) -> Result<Source, String> {
        match GitSpec::parse(s) {
            Some(spec) => spec.map(Source::Git),
            None => Ok(Source::Path(PathBuf::from(s))),
        }
    }

    /// How the input is written on the command line.
    pub fn display(&self) -> String {
        match self {
            Source::Path(p) => p.display().to_string(),
            Source::Git(spec) => spec.display(),
        }
    }

    /// Reads the input; Git revisions are read from the repository holding
    /// `cwd`, relative paths of a Git spec are relative to `cwd`.
    fn read(&self, cwd: &Path) -> Input {
        match self {
            Source::Path(p) => read_paths(std::slice::from_ref(p)),
            Source::Git(spec) => read_git(spec, cwd),
        }
    }
}

/// Where one side of a diff comes from: its inputs, read in order into
/// one tree (as `compile` and `lint` read several paths).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tree {
    sources: Vec<Source>,
}

impl Tree {
    /// Parses the command-line arguments of one side (at least one).
    pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<Tree, String> {
        if args.is_empty() {
            return Err("a side of the diff names no path".to_string());
        }
        let sources = args.iter().map(|a| Source::parse(a.as_ref())).collect::<Result<_, _>>()?;
        Ok(Tree { sources })
    }

    /// How the side is written on the command line (its inputs separated
    /// by spaces).
    pub fn display(&self) -> String {
        self.sources.iter().map(Source::display).collect::<Vec<_>>().join(" ")
    }

    /// Reads, checks and lowers the side (see [`Source`] for `cwd`).
    pub fn load(&self, cwd: &Path) -> Loaded {
        let mut input = Input::default();
        for source in &self.sources {
            input.merge(source.read(cwd));
        }
        load_input(input)
    }
}
