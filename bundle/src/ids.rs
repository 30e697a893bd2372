//! Ids that stay put across compiles: each name starts at a hash of itself
//! and probes upwards past ids already taken, in name order, so adding a
//! name moves no other name's id unless their hashes collide.

use policyc_ir::identity::fnv1a64;
use std::collections::{BTreeMap, BTreeSet};

/// Endpoint ids (`1..=65535`) for the endpoints of one node, by name. More
/// names than ids: the rest get 0 (the endpoints map's capacity check
/// refuses such a bundle).
pub fn endpoint_ids<'a>(names: impl IntoIterator<Item = &'a str>) -> BTreeMap<&'a str, u16> {
    let names: BTreeSet<&str> = names.into_iter().collect();
    let mut used = BTreeSet::new();
    let mut ids = BTreeMap::new();
    for name in names {
        if used.len() >= usize::from(u16::MAX) {
            ids.insert(name, 0);
            continue;
        }
        // `% 65535 + 1` lies in 1..=65535.
        let mut id = (fnv1a64(name.as_bytes()) % 65535) as u16 + 1;
        while !used.insert(id) {
            id = if id == u16::MAX { 1 } else { id + 1 };
        }
        ids.insert(name, id);
    }
    ids
}

/// Rule cookies (`1..=u32::MAX`; 0 means "no rule", the default decided)
/// for every rule of the cluster, by name: one number per rule however
/// many nodes' bundles name it.
pub fn rule_cookies<'a>(names: impl IntoIterator<Item = &'a str>) -> BTreeMap<&'a str, u32> {
    let names: BTreeSet<&str> = names.into_iter().collect();
    let mut used = BTreeSet::new();
    let mut out = BTreeMap::new();
    for name in names {
        // `% u32::MAX + 1` lies in 1..=u32::MAX.
        let mut cookie = (fnv1a64(name.as_bytes()) % u64::from(u32::MAX)) as u32 + 1;
        while !used.insert(cookie) {
            cookie = cookie.checked_add(1).unwrap_or(1);
        }
        out.insert(name, cookie);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_stable_distinct_and_never_zero() {
        let a = rule_cookies(["NetworkPolicy/shop/db:spec.ingress[0]", "CiliumNetworkPolicy/shop/api:spec.egress[1]"]);
        let b = rule_cookies(["NetworkPolicy/shop/db:spec.ingress[0]"]);
        assert_eq!(a["NetworkPolicy/shop/db:spec.ingress[0]"], b["NetworkPolicy/shop/db:spec.ingress[0]"]);
        let values: BTreeSet<u32> = a.values().copied().collect();
        assert_eq!(values.len(), 2);
        assert!(!values.contains(&0));
    }

    #[test]
    fn endpoint_ids_are_stable_and_distinct() {
        let a = endpoint_ids(["shop/api", "shop/web", "shop/db"]);
        let b = endpoint_ids(["shop/api"]);
        assert_eq!(a["shop/api"], b["shop/api"]);
        let values: BTreeSet<u16> = a.values().copied().collect();
        assert_eq!(values.len(), 3);
        assert!(!values.contains(&0));
    }
}
