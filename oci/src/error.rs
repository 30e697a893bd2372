//! The one error type of the crate.

use std::fmt;

/// What went wrong publishing or pulling; each message names the
/// reference, file, node or digest it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OciError {
    /// The reference is not `oci://HOST[:PORT]/REPOSITORY[:TAG][@DIGEST]`.
    Reference(String),
    /// The Docker config file could not be read.
    Auth(String),
    /// The bundles to publish are not as `policyc compile` wrote them.
    Bundles(String),
    /// The registry could not be reached or refused a request.
    Registry(String),
    /// The registry refused the credentials sent, or their absence (401,
    /// 403); the message names the registry and where the credentials
    /// came from.
    Unauthorized(String),
    /// What the registry sent was refused: a digest that does not match,
    /// an artifact that is not policyc's, a blob larger than stated.
    Refused(String),
    /// The artifact holds no bundle for this node.
    MissingNode(String),
    /// The local cache could not be read or written.
    Cache(String),
}

impl fmt::Display for OciError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, message) = match self {
            OciError::Reference(m) => ("invalid reference", m),
            OciError::Auth(m) => ("registry credentials", m),
            OciError::Bundles(m) => ("bundles", m),
            OciError::Registry(m) => ("registry", m),
            OciError::Unauthorized(m) => ("unauthorized", m),
            OciError::Refused(m) => ("artifact refused", m),
            OciError::MissingNode(m) => ("no bundle for this node", m),
            OciError::Cache(m) => ("cache", m),
        };
        write!(f, "{kind}: {message}")
    }
}

impl std::error::Error for OciError {}
