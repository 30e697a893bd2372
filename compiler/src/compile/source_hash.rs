//! The content hash of a compile's input, recorded in every manifest.

use crate::pipeline::Loaded;
use sha2::{Digest, Sha256};

/// SHA-256 of the input texts in source order (files sorted by path).
/// Paths are left out so that the same manifests compiled from another
/// directory give the same bundle.
pub fn source_hash(loaded: &Loaded) -> String {
    let mut h = Sha256::new();
    for text in loaded.input.sources.values() {
        h.update((text.len() as u64).to_le_bytes());
        h.update(text.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}
