//! The checks of a whole desired state that no single line or file can
//! make: run by `apply` and `apply --dry-run` alike, before the lock is
//! taken and before anything is written.
//!
//! Every source is checked for its endpoints: stems bpffs takes, and no
//! two endpoints with one name, id, stem or address. A state held whole
//! in memory is checked for its entries too (a bundle directory's files
//! are checked line by line as they are read): no identity 0, which the
//! datapath reads as "unknown", and no key twice in a map.

use crate::bundle::{Bundle, BundleError};
use crate::desired::DesiredState;
use crate::manifest::BundleEndpoint;
use policyc_bundle::stem::check_stem;
use std::collections::BTreeMap;
use std::fmt::Display;

fn refuse(what: String) -> BundleError {
    BundleError::Manifest(what)
}

/// Refuses the second endpoint with the same `key`.
fn unique<K: Ord + Display>(
    endpoints: &[BundleEndpoint],
    what: &str,
    keys: impl Fn(&BundleEndpoint) -> Vec<K>,
) -> Result<(), BundleError> {
    let mut seen: BTreeMap<K, &str> = BTreeMap::new();
    for e in endpoints {
        for key in keys(e) {
            let text = key.to_string();
            if let Some(first) = seen.insert(key, &e.name) {
                return Err(refuse(format!("endpoints `{first}` and `{}` have one {what} `{text}`", e.name)));
            }
        }
    }
    Ok(())
}

fn endpoints(endpoints: &[BundleEndpoint]) -> Result<(), BundleError> {
    for e in endpoints {
        check_stem(&e.stem).map_err(|error| refuse(format!("endpoint `{}`: {error}", e.name)))?;
    }
    unique(endpoints, "name", |e| vec![e.name.clone()])?;
    unique(endpoints, "id", |e| vec![e.id])?;
    unique(endpoints, "stem", |e| vec![e.stem.clone()])?;
    unique(endpoints, "address", |e| e.addresses.clone())
}

/// Refuses identity 0 and a key listed twice in one map's entries.
fn entries<K: Ord, V>(map: &str, entries: &[(K, V)], identity: impl Fn(&V) -> Option<u32>) -> Result<(), BundleError> {
    let mut keys = std::collections::BTreeSet::new();
    for (i, (key, value)) in entries.iter().enumerate() {
        if identity(value) == Some(0) {
            return Err(refuse(format!("entry {} of map `{map}` has identity 0", i + 1)));
        }
        if !keys.insert(key) {
            return Err(refuse(format!("entry {} of map `{map}` repeats the key of an earlier one", i + 1)));
        }
    }
    Ok(())
}

fn whole(bundle: &Bundle) -> Result<(), BundleError> {
    entries("ipcache", &bundle.ipcache, |v| Some(v.identity))?;
    entries("endpoints", &bundle.endpoint_entries, |v| Some(v.identity))?;
    entries("policy", &bundle.policy, |_| None)
}

/// Checks `desired` as a whole (see the module).
pub fn desired(desired: &DesiredState) -> Result<(), BundleError> {
    endpoints(desired.endpoints())?;
    match desired {
        DesiredState::Directory(_) => Ok(()),
        DesiredState::Memory(bundle) => whole(bundle),
    }
}
