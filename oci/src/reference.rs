//! `oci://HOST[:PORT]/REPOSITORY[:TAG][@sha256:HEX]`: where an artifact is.

use crate::error::OciError;
use oci_client::Reference;

/// The scheme that marks a registry reference where a path is also taken.
pub const SCHEME: &str = "oci://";

/// Whether `text` names an artifact in a registry rather than a path.
pub fn is_oci(text: &str) -> bool {
    text.starts_with(SCHEME)
}

/// A parsed artifact reference.
#[derive(Clone, Debug)]
pub struct ArtifactRef {
    reference: Reference,
    text: String,
}

impl ArtifactRef {
    /// Parses `oci://HOST[:PORT]/REPOSITORY[:TAG][@sha256:HEX]`. The
    /// registry host is required (no implied Docker Hub, as Helm's and
    /// ORAS's `oci://` references have it); no tag and no digest means
    /// `latest`.
    pub fn parse(text: &str) -> Result<ArtifactRef, OciError> {
        let rest = text.strip_prefix(SCHEME).ok_or_else(|| {
            OciError::Reference(format!("`{text}` does not start with `{SCHEME}` (oci://HOST[:PORT]/REPOSITORY:TAG)"))
        })?;
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        if host.is_empty() || path.is_empty() {
            return Err(OciError::Reference(format!(
                "`{text}` names no registry host and repository (oci://HOST[:PORT]/REPOSITORY:TAG)"
            )));
        }
        let reference: Reference = rest.parse().map_err(|e| OciError::Reference(format!("`{text}`: {e}")))?;
        if reference.registry() != host {
            return Err(OciError::Reference(format!("`{text}`: `{host}` is not a registry host")));
        }
        if let Some(digest) = reference.digest() {
            let hex = digest.strip_prefix("sha256:").unwrap_or("");
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
                return Err(OciError::Reference(format!("`{text}`: the digest must be `sha256:` and 64 hex digits")));
            }
        }
        Ok(ArtifactRef { reference, text: text.to_string() })
    }

    /// The registry, `HOST[:PORT]`.
    pub fn registry(&self) -> &str {
        self.reference.registry()
    }

    /// The digest the reference is pinned to, if any.
    pub fn pinned(&self) -> Option<&str> {
        self.reference.digest()
    }

    /// The tag (`latest` when the reference names neither tag nor digest).
    pub fn tag(&self) -> Option<&str> {
        self.reference.tag()
    }

    /// The reference as oci-client takes it.
    pub(crate) fn reference(&self) -> &Reference {
        &self.reference
    }
}

impl std::fmt::Display for ArtifactRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_name_host_repository_and_tag_or_digest() {
        let r = ArtifactRef::parse("oci://127.0.0.1:5000/policies/prod:v42").unwrap();
        assert_eq!(
            (r.registry(), r.reference().repository(), r.tag()),
            ("127.0.0.1:5000", "policies/prod", Some("v42"))
        );
        assert_eq!(r.pinned(), None);
        let digest = format!("sha256:{}", "a".repeat(64));
        let r = ArtifactRef::parse(&format!("oci://registry.example/policies@{digest}")).unwrap();
        assert_eq!(r.pinned(), Some(digest.as_str()));
        assert_eq!(ArtifactRef::parse("oci://localhost:5000/p").unwrap().tag(), Some("latest"));
    }

    #[test]
    fn references_without_scheme_host_or_a_sha256_digest_are_refused() {
        for bad in [
            "registry.example/policies:v1",
            "oci://policies",
            "oci:///policies:v1",
            "oci://policies/prod:v1",
            "oci://registry.example/policies@sha256:abc",
            "oci://registry.example/Policies:v1",
        ] {
            assert!(matches!(ArtifactRef::parse(bad), Err(OciError::Reference(_))), "{bad}");
        }
    }
}
