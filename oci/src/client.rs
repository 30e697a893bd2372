//! The oci-client session both directions share: protocol, trusted
//! certificates, timeouts, credentials, and the runtime that drives it.

use crate::auth::Credentials;
use crate::error::OciError;
use crate::reference::ArtifactRef;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, RegistryOperation};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How to reach the registry.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Plain HTTP rather than HTTPS (`--plain-http`, as ORAS and Helm name
    /// it), for a registry on loopback without TLS.
    pub plain_http: bool,
    /// PEM certificates to trust besides the system's (`--ca-file`, as
    /// ORAS and Helm name it): a registry whose certificate a private CA
    /// signed.
    pub ca_file: Option<PathBuf>,
    /// The Docker config file to take credentials from, instead of the
    /// first of the usual places that exists (`--registry-config`, as ORAS
    /// and Helm name it).
    pub registry_config: Option<PathBuf>,
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// How long one read may wait.
    pub read_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            plain_http: false,
            ca_file: None,
            registry_config: None,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(30),
        }
    }
}

/// A client authenticated for one repository, and its runtime.
pub(crate) struct Session {
    pub runtime: tokio::runtime::Runtime,
    pub client: Client,
    /// The same TLS and timeouts, for the requests this crate makes itself
    /// (the manifest, read with a bound: [`crate::manifest_fetch`]).
    pub http: reqwest::Client,
    /// `http` or `https`.
    pub scheme: &'static str,
    pub auth: RegistryAuth,
    /// Where `auth` came from, for the error a refusal gives.
    pub credentials: Credentials,
}

impl Session {
    /// A session for `reference`'s registry, credentials from the Docker
    /// config file (or the credential helper it names). Nothing is sent
    /// to the registry yet.
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
        // reqwest's clients need a runtime to be built in (their timers).
        let _inside = runtime.enter();
        let certificates = match &options.ca_file {
            Some(path) => read_certificates(path)?,
            None => Vec::new(),
        };
        let config = ClientConfig {
            protocol: if options.plain_http { ClientProtocol::Http } else { ClientProtocol::Https },
            connect_timeout: Some(options.connect_timeout),
            read_timeout: Some(options.read_timeout),
            extra_root_certificates: certificates
                .iter()
                .map(|pem| Certificate { encoding: CertificateEncoding::Pem, data: pem.clone() })
                .collect(),
            ..ClientConfig::default()
        };
        // `Client::new` would fall back to a default client (no extra
        // certificates) on an error; a certificate that cannot be used is
        // the user's to know.
        let client = Client::try_from(config).map_err(|e| ca_error(options, &e))?;
        let mut http = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .read_timeout(options.read_timeout)
            // The registry's own answer is what is judged: a redirect to
            // storage is for blobs, never a manifest.
            .redirect(reqwest::redirect::Policy::none());
        for pem in &certificates {
            let certificate = reqwest::Certificate::from_pem(pem).map_err(|e| ca_error(options, &e))?;
            http = http.tls_certs_merge([certificate]);
        }
        let http = http.build().map_err(|e| ca_error(options, &e))?;
        let credentials = crate::auth::registry_credentials(reference.registry(), options.registry_config.as_deref())?;
        drop(_inside);
        Ok(Session {
            runtime,
            client,
            http,
            scheme: if options.plain_http { "http" } else { "https" },
            auth: credentials.auth.clone(),
            credentials,
        })
    }

    /// Asks the registry for access to `reference` (a token, where it
    /// wants one); the bearer token, where it gave one.
    pub fn authenticate(
        &self,
        reference: &ArtifactRef,
        operation: RegistryOperation,
    ) -> Result<Option<String>, OciError> {
        self.runtime
            .block_on(self.client.auth(reference.reference(), &self.auth, operation))
            .map_err(|e| self.error(reference, "cannot authenticate", &e))
    }

    /// The error for `e`, met doing `what` on `reference`: a refusal of
    /// the credentials names the registry and where they came from.
    pub fn error(&self, reference: &ArtifactRef, what: &str, e: &OciDistributionError) -> OciError {
        if is_unauthorized(e) {
            return self.unauthorized(reference, what);
        }
        match e {
            OciDistributionError::DigestError(_) => {
                OciError::Refused(format!("`{reference}`: {what}: {}", describe(e)))
            }
            _ => OciError::Registry(format!("`{reference}`: {what}: {}", describe(e))),
        }
    }

    /// The registry answered 401 or 403.
    pub fn unauthorized(&self, reference: &ArtifactRef, what: &str) -> OciError {
        OciError::Unauthorized(format!(
            "`{reference}`: {what}: registry `{}` refused the request ({})",
            reference.registry(),
            self.credentials.described
        ))
    }
}

/// Whether the registry refused the credentials (or their absence).
fn is_unauthorized(e: &OciDistributionError) -> bool {
    use oci_client::errors::OciErrorCode;
    match e {
        OciDistributionError::UnauthorizedError { .. } | OciDistributionError::AuthenticationFailure(_) => true,
        OciDistributionError::ServerError { code, .. } => *code == 401 || *code == 403,
        OciDistributionError::RequestError(e) => {
            e.status().is_some_and(|s| s == reqwest::StatusCode::UNAUTHORIZED || s == reqwest::StatusCode::FORBIDDEN)
        }
        OciDistributionError::RegistryError { envelope, .. } => {
            envelope.errors.iter().any(|e| matches!(e.code, OciErrorCode::Unauthorized | OciErrorCode::Denied))
        }
        _ => false,
    }
}

/// The PEM certificates of `path`, one block each (a CA file may hold a
/// chain or several roots).
fn read_certificates(path: &Path) -> Result<Vec<Vec<u8>>, OciError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| OciError::Registry(format!("cannot read the CA file `{}`: {e}", path.display())))?;
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut blocks = Vec::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find(BEGIN) {
        let Some(length) = rest[start..].find(END) else { break };
        let end = start + length + END.len();
        blocks.push(format!("{}\n", &rest[start..end]).into_bytes());
        rest = &rest[end..];
    }
    if blocks.is_empty() {
        return Err(OciError::Registry(format!("the CA file `{}` holds no PEM certificate", path.display())));
    }
    Ok(blocks)
}

fn ca_error(options: &ClientOptions, e: &dyn std::error::Error) -> OciError {
    let file = options.ca_file.as_deref().map(|p| format!(" (CA file `{}`)", p.display())).unwrap_or_default();
    OciError::Registry(format!("cannot set up TLS{file}: {}", describe(e)))
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
