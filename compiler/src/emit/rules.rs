//! `rules.txt`: the rule cookies of a bundle. A policy entry's value names
//! its deciding rule by a 32-bit cookie that flow events carry; this table
//! turns cookies back into `<Kind>/<ns>/<name>:<rule path>`.
//!
//! A cookie is a hash of the rule's name (probing upwards on a collision, in
//! name order), so it stays the same across compiles and an unrelated change
//! rewrites no entry. Cookie 0 means "no rule" (the default decided).

use policyc_ir::identity::fnv1a64;
use std::collections::{BTreeMap, BTreeSet};

/// Cookies for `names`.
pub fn cookies<'a>(names: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, u32> {
    let names: BTreeSet<&str> = names.into_iter().collect();
    let mut used = BTreeSet::new();
    let mut out = BTreeMap::new();
    for name in names {
        // `% u32::MAX + 1` lies in 1..=u32::MAX.
        let mut cookie = (fnv1a64(name.as_bytes()) % u64::from(u32::MAX)) as u32 + 1;
        while !used.insert(cookie) {
            cookie = cookie.checked_add(1).unwrap_or(1);
        }
        out.insert(name.to_string(), cookie);
    }
    out
}

/// The lines of `rules.txt`: `<cookie> <rule>`, by cookie.
pub fn table(cookies: &BTreeMap<String, u32>) -> Vec<String> {
    let by_cookie: BTreeMap<u32, &str> = cookies.iter().map(|(name, &c)| (c, name.as_str())).collect();
    by_cookie.into_iter().map(|(cookie, name)| format!("{cookie} {name}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_stable_distinct_and_never_zero() {
        let a = cookies(["NetworkPolicy/shop/db:spec.ingress[0]", "CiliumNetworkPolicy/shop/api:spec.egress[1]"]);
        let b = cookies(["NetworkPolicy/shop/db:spec.ingress[0]"]);
        assert_eq!(a["NetworkPolicy/shop/db:spec.ingress[0]"], b["NetworkPolicy/shop/db:spec.ingress[0]"]);
        let values: BTreeSet<u32> = a.values().copied().collect();
        assert_eq!(values.len(), 2);
        assert!(!values.contains(&0));
        let lines = table(&a);
        assert_eq!(lines.len(), 2);
        assert!(lines.iter().all(|l| l.split_once(' ').unwrap().0.parse::<u32>().is_ok()));
    }
}
