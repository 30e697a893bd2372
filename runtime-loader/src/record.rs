//! The record of the last apply, kept in the state directory: which bundle
//! is in force, and on which interface each endpoint's programs sit.

use crate::error::LoaderError;
use crate::paths::Paths;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What the last successful apply installed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Hash of the bundle in force.
    pub bundle_hash: String,
    /// Its node.
    pub node: String,
    /// Its source hash.
    pub source_hash: String,
    /// Generation it was written into.
    pub generation: u8,
    /// Endpoint name → attachment.
    pub endpoints: BTreeMap<String, RecordedEndpoint>,
}

/// One endpoint's attachment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedEndpoint {
    /// Stem of its link pins.
    pub stem: String,
    /// Host-side interface.
    pub interface: String,
    /// Endpoint id.
    pub id: u16,
    /// SHA-256 of its two program objects.
    pub programs: String,
}

impl Record {
    /// The record, if an apply has happened.
    pub fn read(paths: &Paths) -> Result<Option<Record>, LoaderError> {
        let path = paths.record();
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| LoaderError::Record(format!("`{}` is corrupt: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(LoaderError::Record(format!("cannot read `{}`: {e}", path.display()))),
        }
    }

    /// Writes the record (atomically: a temporary file renamed over it).
    pub fn write(&self, paths: &Paths) -> Result<(), LoaderError> {
        let path = paths.record();
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self).unwrap_or_default() + "\n";
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| LoaderError::Record(format!("cannot write `{}`: {e}", path.display())))
    }
}
