//! The CNI error object: what a plugin prints on stdout, with a non-zero
//! exit, when an operation fails (CNI specification 1.0, "Error"; the
//! well-known codes are the spec's, 100 and up are this plugin's).

use serde::Serialize;

/// Incompatible CNI version.
pub const INCOMPATIBLE_VERSION: u32 = 1;
/// Container unknown or does not exist.
pub const UNKNOWN_CONTAINER: u32 = 3;
/// Invalid necessary environment variables.
pub const INVALID_ENVIRONMENT: u32 = 4;
/// I/O failure.
pub const IO_FAILURE: u32 = 5;
/// Failed to decode content.
pub const DECODING_FAILURE: u32 = 6;
/// Invalid network config.
pub const INVALID_NETWORK_CONFIG: u32 = 7;
/// Try again later: a transient condition (here, no agent answers).
pub const TRY_AGAIN_LATER: u32 = 11;
/// The agent answered but could not put the pod's policy in force in time.
pub const NOT_ENFORCED: u32 = 100;

/// A CNI error object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CniError {
    /// The spec version of the configuration (or this plugin's newest).
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    /// The error code.
    pub code: u32,
    /// A short message.
    pub msg: String,
    /// More detail, if any.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl CniError {
    /// An error with `code` and `msg` and no details.
    pub fn new(code: u32, msg: impl Into<String>) -> CniError {
        CniError { cni_version: crate::plugin::CNI_VERSION.into(), code, msg: msg.into(), details: String::new() }
    }

    /// The same error, with `details`.
    pub fn with_details(mut self, details: impl Into<String>) -> CniError {
        self.details = details.into();
        self
    }

    /// The same error, under spec version `version`.
    pub fn in_version(mut self, version: &str) -> CniError {
        self.cni_version = version.to_string();
        self
    }

    /// The JSON object the spec asks for.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl std::fmt::Display for CniError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (code {})", self.msg, self.code)?;
        if !self.details.is_empty() {
            write!(f, ": {}", self.details)?;
        }
        Ok(())
    }
}

impl std::error::Error for CniError {}
