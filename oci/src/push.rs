//! `policyc publish`: pushes the artifact, sending only the blobs the
//! registry does not hold yet.

use crate::artifact::{layout, read_layer, MANIFEST_MEDIA_TYPE};
use crate::client::{ClientOptions, Session};
use crate::error::OciError;
use crate::reference::ArtifactRef;
use oci_client::RegistryOperation;
use std::path::Path;

/// What a publish did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    /// The manifest digest (`sha256:HEX`): the same bundles give the same.
    pub digest: String,
    /// Blobs (pieces and the index) sent.
    pub uploaded: usize,
    /// Bytes of them.
    pub bytes_uploaded: u64,
    /// Blobs the registry held already.
    pub present: usize,
}

/// Pushes the bundles under `out_dir` to `reference` (which must name a
/// tag, not a digest) and tags the manifest.
pub fn publish(out_dir: &Path, reference: &ArtifactRef, options: &ClientOptions) -> Result<Published, OciError> {
    if reference.pinned().is_some() {
        return Err(OciError::Reference(format!(
            "`{reference}`: publish to a tag, not a digest (the digest is printed)"
        )));
    }
    let artifact = layout(out_dir)?;
    let session = Session::new(reference, options)?;
    session.authenticate(reference, RegistryOperation::Push)?;
    let target = reference.reference();
    let registry_error = |what: &str, e: &oci_client::errors::OciDistributionError| session.error(reference, what, e);
    let mut published = Published { digest: artifact.digest.clone(), uploaded: 0, bytes_uploaded: 0, present: 0 };
    let blobs = artifact
        .layers
        .iter()
        .map(|(digest, source)| (digest.clone(), Some(source)))
        .chain(std::iter::once((crate::artifact::digest_of(&artifact.config), None)));
    for (digest, source) in blobs {
        let exists = session
            .runtime
            .block_on(session.client.blob_exists(target, &digest))
            .map_err(|e| registry_error(&format!("cannot ask for blob `{digest}`"), &e))?;
        if exists {
            published.present += 1;
            continue;
        }
        let bytes = match source {
            Some(source) => read_layer(&digest, source)?,
            None => artifact.config.clone(),
        };
        published.bytes_uploaded += bytes.len() as u64;
        session
            .runtime
            .block_on(session.client.push_blob(target, bytes, &digest))
            .map_err(|e| registry_error(&format!("cannot push blob `{digest}`"), &e))?;
        published.uploaded += 1;
    }
    let content_type = MANIFEST_MEDIA_TYPE.parse().map_err(|_| OciError::Registry("bad media type".into()))?;
    session
        .runtime
        .block_on(session.client.push_manifest_raw(target, artifact.manifest.clone(), content_type))
        .map_err(|e| registry_error("cannot push the manifest", &e))?;
    Ok(published)
}
