//! What one node's bundle holds, for a compile's summary.

use crate::emit::Bundle;
use policyc_ir::resolve::Resolved;

/// Counts of one node's bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStats {
    /// The node.
    pub node: String,
    /// Endpoints running on it.
    pub endpoints: usize,
    /// Policy entries of those endpoints.
    pub entries: usize,
    /// Entries of the largest endpoint policy map.
    pub largest: usize,
    /// Program objects of the bundle.
    pub programs: usize,
    /// Files of the bundle (maps, manifest and programs).
    pub files: usize,
    /// Bytes of those files.
    pub bytes: usize,
}

impl NodeStats {
    /// The counts of `bundle`.
    pub fn of(resolved: &Resolved, bundle: &Bundle) -> NodeStats {
        let local: Vec<_> =
            resolved.endpoints.iter().filter(|e| e.node.as_deref() == Some(bundle.node.as_str())).collect();
        NodeStats {
            node: bundle.node.clone(),
            endpoints: local.len(),
            entries: local.iter().map(|e| e.policy.entries.len()).sum(),
            largest: local.iter().map(|e| e.policy.entries.len()).max().unwrap_or(0),
            programs: bundle.programs.len(),
            files: bundle.files.len() + bundle.programs.len(),
            bytes: bundle.files.values().map(|text| text.len()).sum::<usize>()
                + bundle.programs.values().map(|bytes| bytes.len()).sum::<usize>(),
        }
    }
}
