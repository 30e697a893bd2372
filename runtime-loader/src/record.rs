//! The record of what is applied, kept in the state directory, so that an
//! apply can diff in memory instead of reading every live map entry:
//! which bundle each generation holds (its manifest and text files are kept
//! by [`crate::store`]), which
//! generation is active at which apply serial, and which programs sit on
//! which interface with which settings.
//!
//! The record is trusted only when its serial equals the live `state`
//! map's serial (an apply that died after its flip, or any other writer,
//! leaves them different), and a generation's kept manifest only when it
//! hashes to the hash recorded for it. A generation is marked unknown before the
//! loader starts writing it, so a crash mid-write is never mistaken for a
//! known state. What is not trusted is read back from the live maps.

use crate::error::LoaderError;
use crate::paths::Paths;
use policyc_ebpf::config::EndpointConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
    /// When the last switch happened: nanoseconds since the Unix epoch.
    #[serde(default)]
    pub switched_at_ns: u64,
    /// What the last apply could not finish after its switch (its bundle is
    /// in force; these say what runs instead): empty when it finished.
    #[serde(default)]
    pub unfinished: Vec<String>,
}

/// How long after a switch the generation it left stays untouched.
///
/// A packet reads the `state` slot once, at its start, and then looks up
/// the generation it read; a program runs for microseconds, without being
/// preempted (tc programs run with bottom halves off, under RCU). So once
/// this has passed since a switch, no packet still reads the generation
/// the switch left, and the next apply may rewrite it. Loaders run apart
/// by more than this anyway; back-to-back applies (a script, the tests)
/// wait out the rest.
pub const SWITCH_GRACE: std::time::Duration = std::time::Duration::from_millis(10);

/// Nanoseconds since the Unix epoch, now.
pub fn now_ns() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
}

/// What is left of [`SWITCH_GRACE`] at `now_ns` after a switch at
/// `switched_at_ns`. A clock that went back counts as no time passed: the
/// wait stays bounded by the grace.
pub fn grace_left(switched_at_ns: u64, now_ns: u64) -> std::time::Duration {
    if switched_at_ns == 0 {
        return std::time::Duration::ZERO;
    }
    SWITCH_GRACE.saturating_sub(std::time::Duration::from_nanos(now_ns.saturating_sub(switched_at_ns)))
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
    /// The digests of the two templates its programs were made from
    /// ([`crate::manifest::Manifest::templates_digest`]): with `config`,
    /// what the programs are.
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn grace_is_what_is_left_of_it_and_bounded() {
        let switch = 1_000_000_000_000;
        assert_eq!(grace_left(switch, switch), SWITCH_GRACE);
        assert_eq!(grace_left(switch, switch + 4_000_000), SWITCH_GRACE - Duration::from_millis(4));
        assert_eq!(grace_left(switch, switch + 60_000_000_000), Duration::ZERO);
        assert_eq!(grace_left(switch, switch - 5), SWITCH_GRACE, "a clock gone back waits the grace, no more");
        assert_eq!(grace_left(0, switch), Duration::ZERO, "no switch recorded");
    }
}
