//! The difference between two policy trees as a reviewer wants it: not
//! the YAML that changed but what it does.
//!
//! - [`connectivity`]: connections opened and closed, grouped by source,
//!   destination and protocol/ports, each with the direction whose decision
//!   flipped and the policies that decide it now and decided it before.
//!   Both trees are evaluated with the reference evaluator on a common
//!   segmentation (the union of both trees' port cuts and address cuts), so
//!   a change on any port or address range shows.
//! - [`identities`]: identities added, removed or renumbered. Each tree is
//!   resolved from scratch, as `policyc compile` does without `--previous`,
//!   so the diff also shows whether an edit renumbers existing label sets.
//! - [`maps`]: per node, the lines of the emitted map files
//!   (`maps/*.txt`, one entry per line) that appear or disappear, i.e. the
//!   entries the loader would write or delete. The identity table is not
//!   repeated per node (it is the identity section).
//!
//! - [`services`]: Services added, removed or changed (frontends,
//!   backends per port and per node) and the connections to `svc:NS/NAME`
//!   that open or close, judged after translation.
//!
//! [`render`] turns a [`Diff`] into human text, Markdown or JSON.

pub mod connectivity;
pub mod identities;
pub mod maps;
pub mod per_class;
pub mod render;
pub mod services;
pub mod tree;

use crate::emit::{BundleOptions, EmitError, NodeEmitter};
use crate::pipeline::Loaded;
use connectivity::ConnectivityChange;
use identities::IdentityChange;
use maps::MapChange;
use policyc_bundle::digest::Digests;
use policyc_ir::resolve::resolve;
use services::ServiceDiff;
use std::collections::BTreeSet;
use std::fmt;

/// Everything that differs between two trees.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diff {
    /// Connections opened or closed.
    pub connectivity: Vec<ConnectivityChange>,
    /// Endpoints only in the new tree.
    pub endpoints_added: Vec<String>,
    /// Endpoints only in the old tree.
    pub endpoints_removed: Vec<String>,
    /// Identities added, removed or renumbered.
    pub identities: Vec<IdentityChange>,
    /// Map entries added or removed, per node and map file.
    pub maps: Vec<MapChange>,
    /// Services that differ and connections to Services opened or closed.
    pub services: ServiceDiff,
}

impl Diff {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.connectivity.is_empty()
            && self.endpoints_added.is_empty()
            && self.endpoints_removed.is_empty()
            && self.identities.is_empty()
            && self.maps.is_empty()
            && self.services.services.is_empty()
            && self.services.connections.is_empty()
    }
}

/// Why a diff cannot be computed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiffError {
    /// `old` or `new`.
    pub side: &'static str,
    /// Why that tree's bundles cannot be emitted.
    pub error: EmitError,
}

impl fmt::Display for DiffError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the {} tree cannot be compiled: {}", self.side, self.error)
    }
}

impl std::error::Error for DiffError {}

/// Compares two loaded trees. Both must be free of errors (the caller
/// reports those); emission failures (a map over capacity) are returned.
pub fn diff(old: &Loaded, new: &Loaded) -> Result<Diff, DiffError> {
    let (oc, nc) = (&old.lowered.cluster, &new.lowered.cluster);
    let (or, nr) = (resolve(oc), resolve(nc));
    // The manifests' digests are not compared (the map files are): not
    // hashed.
    let options = BundleOptions { digests: Digests::Placeholder, ..BundleOptions::default() };
    // One node's two bundles at a time, dropped before the connections
    // are judged.
    let maps = {
        let oe = NodeEmitter::new(oc, &or, &options).map_err(|error| DiffError { side: "old", error })?;
        let ne = NodeEmitter::new(nc, &nr, &options).map_err(|error| DiffError { side: "new", error })?;
        maps::changes(&oe, &ne)?
    };
    let names =
        |l: &Loaded| -> BTreeSet<String> { l.lowered.cluster.endpoints.iter().map(|e| e.display_name()).collect() };
    let (on, nn) = (names(old), names(new));
    let connectivity = connectivity::changes(old, new);
    let services = services::changes(oc, nc, &connectivity);
    Ok(Diff {
        connectivity,
        endpoints_added: nn.difference(&on).cloned().collect(),
        endpoints_removed: on.difference(&nn).cloned().collect(),
        identities: identities::changes(&or, &nr),
        maps,
        services,
    })
}
