//! `normalized-policy.json`: the cluster's policy in the normalized form
//! of [`policyc_ir::normalized`], from which the node agent computes the
//! identity and policy of a label set the bundle does not know. One JSON
//! object on one line, every map in key order, so the same policy gives
//! the same bytes; its digest is in the manifest like every file's.

use policyc_ir::normalized::{NormalizedPolicy, FORMAT};

/// The normalized policy, relative to the bundle.
pub const NORMALIZED_POLICY_FILE: &str = "normalized-policy.json";

/// The text of `policy`.
pub fn to_text(policy: &NormalizedPolicy) -> String {
    // Serializing these types cannot fail: no map has non-string keys.
    let mut text = serde_json::to_string(policy).unwrap_or_default();
    text.push('\n');
    text
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
    serde_json::from_str(text).map_err(|e| format!("`{NORMALIZED_POLICY_FILE}`: {e}"))
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
        let other = text.replace("\"format\":1", "\"format\":99");
        assert!(from_text(&other).unwrap_err().contains("format 99 is not supported"));
        assert!(from_text("{").unwrap_err().starts_with("`normalized-policy.json`: "));
    }
}
