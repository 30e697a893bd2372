//! What each generation's maps hold, as this process last wrote them, so
//! that a long-running applier (the agent) plans an in-memory desired state
//! without reading the live maps whole (one syscall per entry: 10–30 ms a
//! flip at a hundred pods, and growing with the ipcache).
//!
//! An entry is only used while the record says the generation still holds
//! what the entry was written for: its `generations[target]` names the same
//! desired state (a sync marks it unknown first, and only the switch names
//! the new one), and the record is trusted (its serial is the `state`
//! slot's, so no other applier has flipped since). Anything else, and
//! `--reconcile`, reads the live maps as before.

use crate::maps::Generation;
use policyc_ebpf::abi::EndpointValue;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

/// The endpoint id of an `endpoints` value as the kernel stores it.
pub(super) fn endpoint_id(value: &[u8; 12]) -> u32 {
    EndpointValue::from_bytes(value).endpoint_id
}

/// The hash of the desired state synced into a generation, and the
/// entries that sync left there.
type Written = (String, Generation);

/// Per generation, what this process wrote there (the hash and entries of
/// its last sync). Cloned handles share one cache.
#[derive(Clone, Debug, Default)]
pub struct KnownGenerations(Arc<Mutex<[Option<Written>; 2]>>);

impl KnownGenerations {
    /// Takes what `generation` holds if it was written for `hash`.
    pub(super) fn take(&self, generation: u8, hash: &str) -> Option<Generation> {
        let mut known = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let slot = known.get_mut(usize::from(generation))?;
        match slot.take() {
            Some((h, entries)) if h == hash => Some(entries),
            _ => None,
        }
    }

    /// The endpoint ids `generation` lists, if it was written for `hash`.
    pub(super) fn endpoint_ids(&self, generation: u8, hash: &str) -> Option<BTreeSet<u32>> {
        let known = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match known.get(usize::from(generation))? {
            Some((h, entries)) if h == hash => Some(entries.endpoints.values().map(endpoint_id).collect()),
            _ => None,
        }
    }

    /// Keeps that `generation` now holds `entries`, written for `hash`.
    pub(super) fn keep(&self, generation: u8, hash: &str, entries: Generation) {
        let mut known = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(slot) = known.get_mut(usize::from(generation)) {
            *slot = Some((hash.to_string(), entries));
        }
    }

    /// Forgets `generation` (its maps are being written).
    pub(super) fn forget(&self, generation: u8) {
        let mut known = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(slot) = known.get_mut(usize::from(generation)) {
            *slot = None;
        }
    }
}
