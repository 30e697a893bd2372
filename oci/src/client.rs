//! The oci-client session both directions share: protocol, timeouts,
//! credentials, and the runtime that drives it.

use crate::error::OciError;
use crate::reference::ArtifactRef;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, RegistryOperation};
use std::time::Duration;

/// How to reach the registry.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Plain HTTP rather than HTTPS (`--plain-http`, as ORAS and Helm name
    /// it), for a registry on loopback without TLS.
    pub plain_http: bool,
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// How long one read may wait.
    pub read_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            plain_http: false,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(30),
        }
    }
}

/// A client authenticated for one repository, and its runtime.
pub(crate) struct Session {
    pub runtime: tokio::runtime::Runtime,
    pub client: Client,
    pub auth: RegistryAuth,
}

impl Session {
    /// A session for `reference`'s registry, credentials from the Docker
    /// config file. Nothing is sent yet.
    pub fn new(reference: &ArtifactRef, options: &ClientOptions) -> Result<Session, OciError> {
        // reqwest is built without a TLS provider of its own: ring, which
        // kube-rs already brings (no C build, no OpenSSL). rustls 0.23.48
        // deprecates it for lacking post-quantum key exchange, which only
        // its aws-lc-rs provider (a C and cmake build) has. Installing it
        // twice is harmless.
        #[allow(deprecated)]
        let _ = rustls::crypto::ring::default_provider().install_default();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| OciError::Registry(format!("cannot start the runtime: {e}")))?;
        let config = ClientConfig {
            protocol: if options.plain_http { ClientProtocol::Http } else { ClientProtocol::Https },
            connect_timeout: Some(options.connect_timeout),
            read_timeout: Some(options.read_timeout),
            ..ClientConfig::default()
        };
        let auth = crate::auth::registry_auth(reference.registry())?;
        Ok(Session { runtime, client: Client::new(config), auth })
    }

    /// Asks the registry for access to `reference` (a token, where it
    /// wants one).
    pub fn authenticate(&self, reference: &ArtifactRef, operation: RegistryOperation) -> Result<(), OciError> {
        self.runtime
            .block_on(self.client.auth(reference.reference(), &self.auth, operation))
            .map(|_| ())
            .map_err(|e| OciError::Registry(format!("`{}`: {}", reference.registry(), describe(&e))))
    }
}

/// An oci-client error with its causes (reqwest's top line alone says
/// only "error sending request").
pub(crate) fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}
