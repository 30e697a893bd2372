//! `normalized-policy.json`: the cluster's policy in the normalized form
//! of [`policyc_ir::normalized`], from which the node agent computes the
//! identity and policy of a label set the bundle does not know. One JSON
//! object, every map in key order and every list item on its own line, so
//! the same policy gives the same bytes and a change shows in a diff as
//! the lines that changed; its digest is in the manifest like every
//! file's.

use policyc_ir::normalized::{NormalizedPolicy, FORMAT};

/// The normalized policy, relative to the bundle.
pub const NORMALIZED_POLICY_FILE: &str = "normalized-policy.json";

/// The text of `policy`: JSON with each endpoint, node and policy on its
/// own line, so that a review diff shows the ones that
/// changed.
pub fn to_text(policy: &NormalizedPolicy) -> String {
    let c = &policy.cluster;
    // The identities, one number per endpoint below, on one line: the
    // endpoint lines carry the labels.
    let mut out =
        format!("{{\"format\":{},\"identities\":{},\n\"cluster\":{{", policy.format, json(&policy.identities));
    for (name, value) in [("namespaces", json(&c.namespaces)), ("apiserver", json(&c.apiserver))] {
        out.push_str(&format!("\"{name}\":{value},"));
    }
    if !c.tier_policies.is_empty() {
        out.push_str("\"tier_policies\":[\n");
        lines(&mut out, &c.tier_policies);
        out.push_str("],");
    }
    out.push_str("\"nodes\":[\n");
    lines(&mut out, &c.nodes);
    out.push_str("],\"endpoints\":[\n");
    lines(&mut out, &c.endpoints);
    out.push_str("],\"policies\":[\n");
    lines(&mut out, &c.policies);
    out.push_str("]}}\n");
    out
}

/// `value` as compact JSON. Serializing these types cannot fail: no map
/// has keys that are not strings.
fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// `items`, one a line, separated by commas.
fn lines<T: serde::Serialize>(out: &mut String, items: &[T]) {
    for (i, item) in items.iter().enumerate() {
        out.push_str(&json(item));
        out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
    }
}

/// Reads `text` back; an error names what is wrong.
pub fn from_text(text: &str) -> Result<NormalizedPolicy, String> {
    #[derive(serde::Deserialize)]
    struct Version {
        format: u32,
    }
    let version: Version = serde_json::from_str(text).map_err(|e| format!("`{NORMALIZED_POLICY_FILE}`: {e}"))?;
    if version.format != FORMAT {
        return Err(format!(
            "`{NORMALIZED_POLICY_FILE}`: format {} is not supported (this loader reads format {FORMAT})",
            version.format
        ));
    }
    let policy: NormalizedPolicy =
        serde_json::from_str(text).map_err(|e| format!("`{NORMALIZED_POLICY_FILE}`: {e}"))?;
    if policy.identities.len() != policy.cluster.endpoints.len() {
        return Err(format!(
            "`{NORMALIZED_POLICY_FILE}`: {} identities for {} endpoints",
            policy.identities.len(),
            policy.cluster.endpoints.len()
        ));
    }
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use policyc_ir::cluster::Cluster;
    use policyc_ir::identity::IdentityTable;

    #[test]
    fn text_reads_back_and_a_wrong_format_is_refused() {
        let policy = NormalizedPolicy::new(&Cluster::default(), &IdentityTable::new());
        let text = to_text(&policy);
        assert_eq!(from_text(&text).unwrap(), policy);
        let other = text.replacen("\"format\":1", "\"format\":99", 1);
        assert!(from_text(&other).unwrap_err().contains("format 99 is not supported"));
        assert!(from_text("{").unwrap_err().starts_with("`normalized-policy.json`: "));
        let short = text.replacen("\"identities\":[]", "\"identities\":[256]", 1);
        assert_eq!(from_text(&short).unwrap_err(), "`normalized-policy.json`: 1 identities for 0 endpoints");
    }
}
