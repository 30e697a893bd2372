//! The checks of a whole desired state that no single line or file can
//! make: run by `apply` and `apply --dry-run` alike, before the lock is
//! taken and before anything is written.
//!
//! Every source is checked for its endpoints: stems bpffs takes, and no
//! two endpoints with one name, id, stem or address. A state held whole
//! in memory is checked for its entries too (a bundle directory's files
//! are checked line by line as they are read): no identity 0, which the
//! datapath reads as "unknown", no key twice in a map, and keys as the
//! kernel keeps them (an LPM trie masks the bits past a key's prefix
//! length, so `10.9.9.9/8` would be `10.0.0.0/8`: refused, not masked).
//! Whole states from either source (memory, or a directory read whole)
//! are checked across maps: the `endpoints` map lists exactly the
//! addresses of the manifest's endpoints, each under its endpoint's id,
//! and every policy entry belongs to an endpoint of the manifest.

use crate::bundle::{Bundle, BundleError};
use crate::desired::DesiredState;
use crate::manifest::BundleEndpoint;
use policyc_bundle::stem::check_stem;
use policyc_ebpf::abi::{
    EndpointKey, EndpointValue, FAMILY_IPV4, FAMILY_IPV6, IPCACHE_KEY_HEADER_BITS, POLICY_KEY_EXACT_BITS,
    POLICY_KEY_FULL_BITS,
};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;
use std::net::IpAddr;

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

/// The address of a key's `(family, bytes)`, if the family is one.
fn address(family: u8, addr: &[u8; 16]) -> Option<IpAddr> {
    match family {
        FAMILY_IPV4 => Some(IpAddr::from([addr[0], addr[1], addr[2], addr[3]])),
        FAMILY_IPV6 => Some(IpAddr::from(*addr)),
        _ => None,
    }
}

/// `ipcache` keys as the kernel keeps them: a family, a prefix length the
/// family has, no bits set past it.
fn canonical_ipcache(bundle: &Bundle) -> Result<(), BundleError> {
    for (i, (key, _)) in bundle.ipcache.iter().enumerate() {
        let n = i + 1;
        let ip = address(key.family, &key.addr)
            .ok_or_else(|| refuse(format!("entry {n} of map `ipcache` has family {}", key.family)))?;
        let bits = if ip.is_ipv4() { 32 } else { 128 };
        let len = key
            .prefixlen
            .checked_sub(IPCACHE_KEY_HEADER_BITS)
            .filter(|len| *len <= bits)
            .ok_or_else(|| refuse(format!("entry {n} of map `ipcache` has key prefix length {}", key.prefixlen)))?;
        let host = match ip {
            IpAddr::V4(v4) => u32::from(v4).checked_shl(len).unwrap_or(0) != 0,
            IpAddr::V6(v6) => u128::from(v6).checked_shl(len).unwrap_or(0) != 0,
        };
        let padded = ip.is_ipv4() && key.addr[4..].iter().any(|b| *b != 0);
        if host || padded || key.pad != 0 {
            return Err(refuse(format!("entry {n} of map `ipcache`: `{ip}/{len}` has bits set past its prefix")));
        }
    }
    Ok(())
}

/// `policy` keys of the manifest's endpoints, with a prefix length the key
/// has.
fn canonical_policy(bundle: &Bundle) -> Result<(), BundleError> {
    let ids: BTreeSet<u16> = bundle.endpoints.iter().map(|e| e.id).collect();
    for (i, (key, _)) in bundle.policy.iter().enumerate() {
        let n = i + 1;
        if !(POLICY_KEY_EXACT_BITS..=POLICY_KEY_FULL_BITS).contains(&key.prefixlen) {
            return Err(refuse(format!("entry {n} of map `policy` has key prefix length {}", key.prefixlen)));
        }
        // Protocol and port are the 24 bits past the exact part.
        let past = 24 - (key.prefixlen - POLICY_KEY_EXACT_BITS);
        let tail = (u32::from(key.protocol) << 16) | u32::from(key.port);
        if tail & ((1 << past) - 1) != 0 || key.pad != 0 {
            return Err(refuse(format!(
                "entry {n} of map `policy`: protocol {} port {} has bits set past its prefix length {}",
                key.protocol, key.port, key.prefixlen
            )));
        }
        if !ids.contains(&key.endpoint_id) {
            return Err(refuse(format!(
                "entry {n} of map `policy` belongs to endpoint id {}, which no endpoint of the manifest has",
                key.endpoint_id
            )));
        }
    }
    Ok(())
}

/// The `endpoints` map's `entries` list exactly the addresses of
/// `endpoints` (a manifest's), each under its endpoint's id.
pub fn endpoint_map(endpoints: &[BundleEndpoint], entries: &[(EndpointKey, EndpointValue)]) -> Result<(), BundleError> {
    let mut unlisted: BTreeMap<IpAddr, &BundleEndpoint> =
        endpoints.iter().flat_map(|e| e.addresses.iter().map(move |a| (*a, e))).collect();
    for (i, (key, value)) in entries.iter().enumerate() {
        let n = i + 1;
        let ip = address(key.family, &key.addr)
            .ok_or_else(|| refuse(format!("entry {n} of map `endpoints` has family {}", key.family)))?;
        let padded = ip.is_ipv4() && key.addr[4..].iter().any(|b| *b != 0);
        if padded || key.pad != 0 {
            return Err(refuse(format!("entry {n} of map `endpoints`: key of `{ip}` has bits set past the address")));
        }
        let e = unlisted.remove(&ip).ok_or_else(|| {
            refuse(format!(
                "entry {n} of map `endpoints`: `{ip}` is no address of an endpoint of the manifest (or listed twice)"
            ))
        })?;
        if value.endpoint_id != u32::from(e.id) {
            return Err(refuse(format!(
                "entry {n} of map `endpoints` gives `{ip}` endpoint id {}, the manifest endpoint `{}` of that address has id {}",
                value.endpoint_id, e.name, e.id
            )));
        }
    }
    match unlisted.into_iter().next() {
        Some((ip, e)) => {
            Err(refuse(format!("endpoint `{}`: its address `{ip}` has no entry in map `endpoints`", e.name)))
        }
        None => Ok(()),
    }
}

/// The checks of a whole state across its maps and its manifest (see the
/// module): for a state in memory, and a bundle directory read whole.
pub fn whole(bundle: &Bundle) -> Result<(), BundleError> {
    entries("ipcache", &bundle.ipcache, |v| Some(v.identity))?;
    entries("endpoints", &bundle.endpoint_entries, |v| Some(v.identity))?;
    entries("policy", &bundle.policy, |_| None)?;
    canonical_ipcache(bundle)?;
    canonical_policy(bundle)?;
    endpoint_map(&bundle.endpoints, &bundle.endpoint_entries)
}

/// Checks `desired` as a whole (see the module).
pub fn desired(desired: &DesiredState) -> Result<(), BundleError> {
    endpoints(desired.endpoints())?;
    match desired {
        DesiredState::Directory(_) => Ok(()),
        DesiredState::Memory(bundle) => whole(bundle),
    }
}
