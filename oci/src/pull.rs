//! The node's side: resolve the reference to a manifest digest, fetch the
//! blobs the cache does not hold (each checked against its digest and
//! bounded by its descriptor's size), and materialize this node's bundle
//! as a directory the loader reads like any other.

use crate::artifact::{
    digest_of, is_plain_relative, Descriptor, ImageManifest, Index, ARTIFACT_TYPE, INDEX_MEDIA_TYPE, INDEX_VERSION,
};
use crate::cache::{hex_of, write_atomically, Cache};
use crate::client::{ClientOptions, Session};
use crate::error::OciError;
use crate::reference::ArtifactRef;
use oci_client::RegistryOperation;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

/// The largest index taken.
const MAX_INDEX: u64 = 64 << 20;
/// The most one node's bundle may hold, all pieces together (the compiler
/// reads at most 1 GiB a file).
const MAX_BUNDLE: u64 = 4 << 30;

/// What one pull did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pulled {
    /// The manifest digest the reference resolved to.
    pub digest: String,
    /// The node's bundle, materialized.
    pub dir: PathBuf,
    /// Manifests fetched (0 when the cache held it).
    pub manifests_fetched: usize,
    /// Blobs fetched (the index and pieces the cache did not hold).
    pub blobs_fetched: usize,
    /// Bytes of those blobs.
    pub bytes_fetched: u64,
}

/// Pulls one node's bundle of one reference, again and again (a tag may
/// move), through a cache under `cache_dir`.
pub struct Puller {
    reference: ArtifactRef,
    node: String,
    cache: Cache,
    session: Session,
    last: Option<String>,
}

impl Puller {
    /// A puller; nothing is sent until [`Puller::pull`].
    pub fn new(
        reference: ArtifactRef,
        node: &str,
        cache_dir: &Path,
        options: &ClientOptions,
    ) -> Result<Puller, OciError> {
        let session = Session::new(&reference, options)?;
        Ok(Puller { reference, node: node.to_string(), cache: Cache::new(cache_dir), session, last: None })
    }

    /// The reference pulled.
    pub fn reference(&self) -> &ArtifactRef {
        &self.reference
    }

    /// Resolves the reference and brings this node's bundle into the
    /// cache. A failure leaves the cache as it was, but for blobs fetched
    /// whole and verified, which the next pull does not fetch again.
    pub fn pull(&mut self) -> Result<Pulled, OciError> {
        if let Some(digest) = self.reference.pinned() {
            // A digest names content that never changes: once its bundle
            // is here, the registry is not asked again (a restart with the
            // registry away still finds it).
            let dir = self.cache.bundle_dir(digest)?;
            if dir.is_dir() {
                self.last = Some(digest.to_string());
                return Ok(Pulled {
                    digest: digest.to_string(),
                    dir,
                    manifests_fetched: 0,
                    blobs_fetched: 0,
                    bytes_fetched: 0,
                });
            }
        }
        let token = self.session.authenticate(&self.reference, RegistryOperation::Pull)?;
        let (digest, manifest) = match self.reference.pinned() {
            Some(digest) => (digest.to_string(), None),
            None => self.session.resolve_tag(&self.reference, token.as_deref())?,
        };
        if hex_of(&digest).is_none() {
            return Err(OciError::Refused(format!("`{}` resolved to `{digest}`, not a sha256 digest", self.reference)));
        }
        let dir = self.cache.bundle_dir(&digest)?;
        let mut pulled = Pulled { digest, dir, manifests_fetched: 0, blobs_fetched: 0, bytes_fetched: 0 };
        if !pulled.dir.is_dir() {
            self.materialize(&mut pulled, manifest, token.as_deref())?;
        }
        let keep_bundles: BTreeSet<String> =
            [Some(pulled.digest.clone()), self.last.clone()].into_iter().flatten().collect();
        self.last = Some(pulled.digest.clone());
        // The blobs of what is materialized stay for the next pull of a
        // tag that moved; others go.
        let mut keep_blobs = BTreeSet::new();
        if let Some(bytes) = self.cache.get(&pulled.digest)? {
            keep_blobs.insert(pulled.digest.clone());
            if let Ok(manifest) = serde_json::from_slice::<ImageManifest>(&bytes) {
                keep_blobs.insert(manifest.config.digest.clone());
                keep_blobs.extend(manifest.layers.into_iter().map(|l| l.digest).filter(|d| self.cache.has(d)));
            }
        }
        self.cache.prune(&keep_blobs, &keep_bundles)?;
        Ok(pulled)
    }

    /// Brings the manifest (`fetched` where resolving the tag read it
    /// already), the index and the node's pieces into the cache, and
    /// writes the node's bundle directory.
    fn materialize(
        &mut self,
        pulled: &mut Pulled,
        fetched: Option<Vec<u8>>,
        token: Option<&str>,
    ) -> Result<(), OciError> {
        let manifest_bytes = match self.cache.get(&pulled.digest)? {
            Some(bytes) => bytes,
            None => {
                let bytes = match fetched {
                    Some(bytes) => bytes,
                    None => self.session.manifest(&self.reference, &pulled.digest, token)?,
                };
                if digest_of(&bytes) != pulled.digest {
                    return Err(OciError::Refused(format!(
                        "`{}`: the manifest does not match its digest `{}`",
                        self.reference, pulled.digest
                    )));
                }
                pulled.manifests_fetched += 1;
                self.cache.put(&pulled.digest, &bytes)?;
                bytes
            }
        };
        let manifest: ImageManifest = serde_json::from_slice(&manifest_bytes)
            .map_err(|e| OciError::Refused(format!("`{}`: not an OCI image manifest: {e}", self.reference)))?;
        if manifest.artifact_type != ARTIFACT_TYPE || manifest.config.media_type != INDEX_MEDIA_TYPE {
            return Err(OciError::Refused(format!(
                "`{}` is not a policyc bundle artifact (artifact type `{}`, config `{}`; `policyc publish` writes `{ARTIFACT_TYPE}`)",
                self.reference, manifest.artifact_type, manifest.config.media_type
            )));
        }
        if manifest.config.size > MAX_INDEX {
            return Err(OciError::Refused(format!("`{}`: the index is larger than {MAX_INDEX} bytes", self.reference)));
        }
        let index_bytes = self.blob(&manifest.config, pulled)?;
        let index: Index = serde_json::from_slice(&index_bytes)
            .map_err(|e| OciError::Refused(format!("`{}`: the index is not policyc's: {e}", self.reference)))?;
        if index.format_version != INDEX_VERSION {
            return Err(OciError::Refused(format!(
                "`{}`: index format {} (this loader reads {INDEX_VERSION})",
                self.reference, index.format_version
            )));
        }
        let Some(files) = index.nodes.get(&self.node) else {
            let nodes: Vec<&str> = index.nodes.keys().take(10).map(String::as_str).collect();
            return Err(OciError::MissingNode(format!(
                "`{}` ({}) holds no bundle for node `{}` (it holds {}{})",
                self.reference,
                pulled.digest,
                self.node,
                nodes.join(", "),
                if index.nodes.len() > nodes.len() { ", ..." } else { "" }
            )));
        };
        let layers: BTreeMap<&str, &Descriptor> = manifest.layers.iter().map(|l| (l.digest.as_str(), l)).collect();
        let mut needed = BTreeMap::new();
        for (path, pieces) in files {
            if !is_plain_relative(path) {
                return Err(OciError::Refused(format!("`{}`: the index names the file `{path}`", self.reference)));
            }
            for piece in pieces {
                let layer = layers.get(piece.as_str()).ok_or_else(|| {
                    OciError::Refused(format!(
                        "`{}`: `{path}` names a piece `{piece}` the manifest does not list",
                        self.reference
                    ))
                })?;
                needed.insert(piece.as_str(), *layer);
            }
        }
        let total: u64 = needed.values().map(|l| l.size).fold(0, u64::saturating_add);
        if total > MAX_BUNDLE {
            return Err(OciError::Refused(format!(
                "`{}`: node `{}`'s bundle is larger than {MAX_BUNDLE} bytes",
                self.reference, self.node
            )));
        }
        for layer in needed.values() {
            if !self.cache.has(&layer.digest) {
                self.blob(layer, pulled)?;
            }
        }
        let tmp =
            pulled.dir.with_file_name(format!(".{}.{}.tmp", hex_of(&pulled.digest).unwrap_or(""), std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        for (path, pieces) in files {
            let mut bytes = Vec::new();
            for piece in pieces {
                match self.cache.get(piece)? {
                    Some(b) => bytes.extend_from_slice(&b),
                    None => return Err(OciError::Cache(format!("blob `{piece}` left the cache while it was read"))),
                }
            }
            write_atomically(&tmp.join(path), &bytes)?;
        }
        std::fs::rename(&tmp, &pulled.dir).map_err(|e| OciError::Cache(format!("`{}`: {e}", pulled.dir.display())))
    }

    /// The blob `layer`, from the cache or fetched, verified and kept.
    fn blob(&self, layer: &Descriptor, pulled: &mut Pulled) -> Result<Vec<u8>, OciError> {
        if let Some(bytes) = self.cache.get(&layer.digest)? {
            return Ok(bytes);
        }
        hex_of(&layer.digest).ok_or_else(|| OciError::Refused(format!("`{}` is not a sha256 digest", layer.digest)))?;
        let mut sink = Bounded { bytes: Vec::new(), limit: layer.size, overflowed: false };
        let fetched = self.session.runtime.block_on(self.session.client.pull_blob(
            self.reference.reference(),
            layer.digest.as_str(),
            &mut sink,
        ));
        if sink.overflowed {
            return Err(OciError::Refused(format!(
                "blob `{}` is larger than the {} bytes its descriptor states",
                layer.digest, layer.size
            )));
        }
        fetched.map_err(|e| self.session.error(&self.reference, &format!("blob `{}`", layer.digest), &e))?;
        // pull_blob checked the digest; the cache checks it again.
        if sink.bytes.len() as u64 != layer.size {
            return Err(OciError::Refused(format!("blob `{}` is not of the size its descriptor states", layer.digest)));
        }
        self.cache.put(&layer.digest, &sink.bytes)?;
        pulled.blobs_fetched += 1;
        pulled.bytes_fetched += layer.size;
        Ok(sink.bytes)
    }
}

/// A sink that refuses more bytes than the descriptor said: a registry
/// cannot make the node hold more than the manifest promised.
struct Bounded {
    bytes: Vec<u8>,
    limit: u64,
    overflowed: bool,
}

impl tokio::io::AsyncWrite for Bounded {
    fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        if (self.bytes.len() + data.len()) as u64 > self.limit {
            self.overflowed = true;
            return Poll::Ready(Err(std::io::Error::other("the blob is larger than its descriptor states")));
        }
        self.bytes.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
