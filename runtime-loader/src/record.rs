//! The record of what is applied, kept in the state directory, so that an
//! apply can diff in memory instead of reading every live map entry:
//! which bundle each generation holds (with a copy of that bundle), which
//! generation is active at which apply serial, and which programs sit on
//! which interface with which settings.
//!
//! The record is trusted only when its serial equals the live `state`
//! map's serial (an apply that died after its flip, or any other writer,
//! leaves them different), and a generation's copy only when it hashes to
//! the hash recorded for it. A generation is marked unknown before the
//! loader starts writing it, so a crash mid-write is never mistaken for a
//! known state. What is not trusted is read back from the live maps.

use crate::error::LoaderError;
use crate::paths::Paths;
use policyc_ebpf::config::EndpointConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// What the loader has applied.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The live `state` serial this record describes.
    pub serial: u32,
    /// Hash of the bundle in force.
    pub bundle_hash: String,
    /// Its node.
    pub node: String,
    /// Its source hash.
    pub source_hash: String,
    /// Generation active.
    pub generation: u8,
    /// Bundle hash each generation holds; `None`: unknown.
    pub generations: [Option<String>; 2],
    /// Endpoint name → its attached programs.
    pub endpoints: BTreeMap<String, RecordedEndpoint>,
}

/// One endpoint's attached programs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedEndpoint {
    /// Stem of its link pins.
    pub stem: String,
    /// Host-side interface.
    pub interface: String,
    /// Endpoint id.
    pub id: u16,
    /// SHA-256 of its two attached program objects.
    pub programs: String,
    /// Their settings. Their lookups are at least what the attached
    /// programs make (the loader records before it switches), never less.
    pub config: EndpointConfig,
}

impl Record {
    /// The record, if an apply has happened; a corrupt one is an error.
    pub fn read(paths: &Paths) -> Result<Option<Record>, LoaderError> {
        let path = paths.record();
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
                LoaderError::Record(format!(
                    "`{}` is corrupt ({e}); `apply --reconcile` reads the live maps instead and rewrites it",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(LoaderError::Record(format!("cannot read `{}`: {e}", path.display()))),
        }
    }

    /// Writes the record atomically (a temporary file renamed over it).
    pub fn write(&self, paths: &Paths) -> Result<(), LoaderError> {
        let path = paths.record();
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self).unwrap_or_default() + "\n";
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| LoaderError::Record(format!("cannot write `{}`: {e}", path.display())))
    }
}

/// Copies the bundle in `from` to the copy of generation `generation`
/// (replacing it whole: written beside, then renamed over).
pub fn save_generation(paths: &Paths, generation: u8, from: &Path) -> Result<(), LoaderError> {
    let target = paths.generation_copy(generation);
    let tmp = target.with_extension("tmp");
    let err = |e: std::io::Error| LoaderError::Record(format!("cannot copy the bundle to `{}`: {e}", target.display()));
    let _ = std::fs::remove_dir_all(&tmp);
    copy_dir(from, &tmp).map_err(err)?;
    let _ = std::fs::remove_dir_all(&target);
    std::fs::rename(&tmp, &target).map_err(err)
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), dest)?;
        }
    }
    Ok(())
}
