//! Where the loader keeps things: pinned maps and links under one bpffs
//! root, and its record and lock in a state directory (`/run/policyc` by
//! default, which like bpffs does not survive a reboot).

use std::path::{Path, PathBuf};

/// The loader's places on a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Paths {
    /// `<bpffs>/<root>`: everything the loader pins.
    pub root: PathBuf,
    /// State directory: the record of the last apply and the lock.
    pub state: PathBuf,
}

impl Paths {
    /// Paths under bpffs mount `bpffs`, root directory `root`, state
    /// directory `state`.
    pub fn new(bpffs: &Path, root: &str, state: &Path) -> Self {
        Paths { root: bpffs.join(root), state: state.to_path_buf() }
    }

    /// A root beside this one, of this process alone, for what `apply
    /// --dry-run` loads (bpffs refuses a `.` in names, hence the `-`).
    pub fn scratch(&self) -> Paths {
        let name = self.root.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let root = self.root.with_file_name(format!("{name}-dry-run-{}", std::process::id()));
        Paths { root, state: self.state.clone() }
    }

    /// Directory of the pinned maps.
    pub fn maps(&self) -> PathBuf {
        self.root.join("maps")
    }

    /// Pin of map `name`.
    pub fn map(&self, name: &str) -> PathBuf {
        self.maps().join(name)
    }

    /// Directory of the bodies' program arrays, one subdirectory per pair
    /// of body templates.
    pub fn bodies(&self) -> PathBuf {
        self.root.join("bodies")
    }

    /// Directory of the bodies made from the templates of `digest` (a
    /// manifest's `templates_digest`): the pinned `array` the stubs call
    /// through, and each filled slot's body pinned under its number.
    pub fn bodies_of(&self, digest: &str) -> PathBuf {
        let short: Vec<&str> = digest.split('+').map(|d| d.get(..16).unwrap_or(d)).collect();
        self.bodies().join(short.join("-"))
    }

    /// Directory of the pinned tcx links and tc filters' programs.
    pub fn links(&self) -> PathBuf {
        self.root.join("links")
    }

    /// Pin of the link of endpoint `stem`'s program with `suffix`
    /// (`from`/`to`), named by [`policyc_bundle::stem::link_pin_name`].
    pub fn link(&self, stem: &str, suffix: &str) -> PathBuf {
        self.links().join(policyc_bundle::stem::link_pin_name(stem, suffix))
    }

    /// The record of the last apply.
    pub fn record(&self) -> PathBuf {
        self.state.join("applied.json")
    }

    /// The copy of the manifest of the bundle that generation
    /// `generation` holds.
    pub fn generation_copy(&self, generation: u8) -> PathBuf {
        self.state.join(format!("generation-{generation}.json"))
    }

    /// The pieces of the text files the generations hold, by digest.
    pub fn pieces(&self) -> PathBuf {
        self.state.join("pieces")
    }

    /// The lock file serializing appliers.
    pub fn lock(&self) -> PathBuf {
        self.state.join("lock")
    }
}
