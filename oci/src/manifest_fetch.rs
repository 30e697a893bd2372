//! The manifest, fetched by this crate itself so that its size is bounded
//! before it is read: oci-client reads a manifest whole, whatever the
//! registry sends. The OCI distribution spec lets registries refuse
//! manifests over 4 MiB ("Pushing Manifests"), so a client has no reason
//! to take more: a manifest whose `Content-Length` exceeds the bound is
//! refused before its body is read, and a body without one (chunked) is
//! read only up to the bound.

use crate::artifact::{digest_of, MANIFEST_MEDIA_TYPE};
use crate::client::{describe, Session};
use crate::error::OciError;
use crate::reference::ArtifactRef;
use oci_client::secrets::RegistryAuth;

/// The largest manifest taken.
pub const MAX_MANIFEST: u64 = 4 << 20;

impl Session {
    /// The digest the tag of `reference` names now (a HEAD request: the
    /// `Docker-Content-Digest` header), and the manifest's bytes where the
    /// registry sent no such header and the manifest had to be read.
    pub fn resolve_tag(
        &self,
        reference: &ArtifactRef,
        token: Option<&str>,
    ) -> Result<(String, Option<Vec<u8>>), OciError> {
        let tag = reference.tag().unwrap_or("latest");
        let response = self.manifest_request(reference, tag, token, reqwest::Method::HEAD)?;
        let digest = response.headers().get("docker-content-digest").and_then(|v| v.to_str().ok());
        match digest {
            Some(digest) => Ok((digest.to_string(), None)),
            None => {
                let bytes = self.manifest(reference, tag, token)?;
                Ok((digest_of(&bytes), Some(bytes)))
            }
        }
    }

    /// The manifest `tag_or_digest` of `reference`'s repository, at most
    /// [`MAX_MANIFEST`] bytes of it.
    pub fn manifest(
        &self,
        reference: &ArtifactRef,
        tag_or_digest: &str,
        token: Option<&str>,
    ) -> Result<Vec<u8>, OciError> {
        let mut response = self.manifest_request(reference, tag_or_digest, token, reqwest::Method::GET)?;
        let read_error = |e: reqwest::Error| {
            OciError::Registry(format!("`{reference}`: cannot read the manifest `{tag_or_digest}`: {}", describe(&e)))
        };
        self.runtime.block_on(async {
            let mut bytes = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(read_error)? {
                if (bytes.len() + chunk.len()) as u64 > MAX_MANIFEST {
                    return Err(too_large(reference, tag_or_digest, "more than that"));
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(bytes)
        })
    }

    /// Sends the request for the manifest and checks the answer's status
    /// and stated size; the body is not read yet.
    fn manifest_request(
        &self,
        reference: &ArtifactRef,
        tag_or_digest: &str,
        token: Option<&str>,
        method: reqwest::Method,
    ) -> Result<reqwest::Response, OciError> {
        let inner = reference.reference();
        let url = format!(
            "{}://{}/v2/{}/manifests/{tag_or_digest}",
            self.scheme,
            inner.resolve_registry(),
            inner.repository()
        );
        let mut request = self.http.request(method, &url).header(reqwest::header::ACCEPT, MANIFEST_MEDIA_TYPE);
        request = match (token, &self.auth) {
            (Some(token), _) => request.bearer_auth(token),
            (None, RegistryAuth::Basic(user, password)) => request.basic_auth(user, Some(password)),
            (None, _) => request,
        };
        // `send` starts its timers at once: inside the runtime.
        let response = self.runtime.block_on(async { request.send().await }).map_err(|e| {
            OciError::Registry(format!("`{reference}`: cannot fetch the manifest `{tag_or_digest}`: {}", describe(&e)))
        })?;
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(self.unauthorized(reference, &format!("cannot fetch the manifest `{tag_or_digest}`")));
        }
        if !status.is_success() {
            return Err(OciError::Registry(format!(
                "`{reference}`: cannot fetch the manifest `{tag_or_digest}`: the registry answered {status}"
            )));
        }
        if let Some(length) = response.headers().get(reqwest::header::CONTENT_LENGTH) {
            let length = length.to_str().ok().and_then(|l| l.parse::<u64>().ok()).ok_or_else(|| {
                OciError::Refused(format!("`{reference}`: the manifest `{tag_or_digest}` has no valid Content-Length"))
            })?;
            if length > MAX_MANIFEST {
                return Err(too_large(reference, tag_or_digest, &format!("{length} bytes")));
            }
        }
        Ok(response)
    }
}

fn too_large(reference: &ArtifactRef, tag_or_digest: &str, stated: &str) -> OciError {
    OciError::Refused(format!(
        "`{reference}`: the manifest `{tag_or_digest}` is larger than {MAX_MANIFEST} bytes (the registry sends \
         {stated}); refused before reading it (the OCI distribution spec lets registries refuse manifests over 4 MiB)"
    ))
}
