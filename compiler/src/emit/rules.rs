//! `rules.txt`: the rules a bundle's policy entries name, by their
//! cluster-wide cookies ([`super::maps::RuleNames`]), so that the cookie a
//! flow event carries turns back into `<Kind>/<ns>/<name>:<rule path>`.

use policyc_bundle::rules::RuleLine;
use std::collections::BTreeMap;

/// The text of `rules.txt` for `rules` (cookie → name) and its number of
/// lines.
pub fn table(rules: &BTreeMap<u32, &str>) -> (String, usize) {
    let mut out = String::new();
    for (&cookie, rule) in rules {
        RuleLine { cookie, rule }.write(&mut out);
        out.push('\n');
    }
    (out, rules.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_rule_by_cookie() {
        let rules = BTreeMap::from([
            (43, "NetworkPolicy/shop/db:spec.ingress[1]"),
            (7, "CiliumNetworkPolicy/shop/api:spec.egress[0]"),
        ]);
        assert_eq!(
            table(&rules),
            ("7 CiliumNetworkPolicy/shop/api:spec.egress[0]\n43 NetworkPolicy/shop/db:spec.ingress[1]\n".into(), 2)
        );
    }
}
