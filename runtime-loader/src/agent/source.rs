//! `--bundle`: a directory, polled in place, or `oci://REF`, an artifact
//! pulled from a registry into the state directory ([`super::pull`]).
//! Either way the controller reads a bundle directory; what differs is
//! where that directory is and which artifact digest it came from.

use crate::paths::Paths;
use crate::status::AppliedArtifact;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What `--bundle` names.
#[derive(Clone, Debug)]
pub enum BundleSource {
    /// A bundle directory (`policyc compile --out DIR` writes `DIR/<node>`).
    Directory(PathBuf),
    /// An artifact `policyc publish` pushed.
    #[cfg(feature = "oci")]
    Artifact(Box<super::pull::ArtifactSource>),
}

/// How to reach the registry of an `oci://` bundle (the flags ORAS and
/// Helm give these names). Credentials come from the Docker config file
/// or the credential helper it names.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct RegistryFlags {
    /// Reach the registry of an `oci://` bundle over plain HTTP (a
    /// registry on loopback without TLS).
    #[arg(long)]
    pub plain_http: bool,
    /// PEM certificates to trust for the registry besides the system's.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// The Docker config file to take registry credentials from (default:
    /// `$REGISTRY_AUTH_FILE`, `$DOCKER_CONFIG/config.json`,
    /// `~/.docker/config.json`).
    #[arg(long, value_name = "FILE")]
    pub registry_config: Option<PathBuf>,
}

impl BundleSource {
    /// `--bundle TEXT` with `--poll-interval` and the registry flags.
    pub fn parse(text: &str, interval: Duration, registry: &RegistryFlags) -> Result<BundleSource, String> {
        if !text.starts_with("oci://") {
            return Ok(BundleSource::Directory(PathBuf::from(text)));
        }
        #[cfg(feature = "oci")]
        {
            let reference = policyc_oci::ArtifactRef::parse(text).map_err(|e| e.to_string())?;
            let client = policyc_oci::ClientOptions {
                plain_http: registry.plain_http,
                ca_file: registry.ca_file.clone(),
                registry_config: registry.registry_config.clone(),
                ..policyc_oci::ClientOptions::default()
            };
            Ok(BundleSource::Artifact(Box::new(super::pull::ArtifactSource { reference, client, interval })))
        }
        #[cfg(not(feature = "oci"))]
        {
            let _ = (interval, registry);
            Err(format!("`--bundle {text}`: built without the `oci` feature"))
        }
    }
}

/// Pulls of the artifact, for `/metrics`.
#[derive(Clone, Debug, Default)]
pub struct PullCounters {
    /// Pulls that ended with the node's bundle in the cache.
    pub pulls: u64,
    /// Pulls that failed.
    pub failures: u64,
    /// Manifests and blobs fetched.
    pub fetched: u64,
    /// Bytes of the blobs fetched.
    pub bytes: u64,
}

/// The bundle directory to read now, and the artifact it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Current {
    /// The bundle directory.
    pub dir: PathBuf,
    /// The artifact, for `--bundle oci://REF`.
    pub artifact: Option<AppliedArtifact>,
}

/// A started bundle source.
pub enum Active {
    /// A directory.
    Directory(PathBuf),
    /// An artifact, pulled by its own thread.
    #[cfg(feature = "oci")]
    Artifact(super::pull::Pulling),
}

impl Active {
    /// Starts `source` (an artifact's puller thread) for `node`, its cache
    /// under the state directory; `counters` is where pulls are counted.
    pub fn start(
        source: &BundleSource,
        node: &str,
        paths: &Paths,
        counters: Arc<Mutex<PullCounters>>,
    ) -> Result<Active, String> {
        match source {
            BundleSource::Directory(dir) => {
                let _ = (node, paths, counters);
                Ok(Active::Directory(dir.clone()))
            }
            #[cfg(feature = "oci")]
            BundleSource::Artifact(artifact) => Ok(Active::Artifact(super::pull::Pulling::start(
                (**artifact).clone(),
                node,
                &paths.state.join("oci"),
                counters,
            )?)),
        }
    }

    /// The bundle to read now: `None` until the first pull succeeded.
    pub fn current(&self) -> Option<Current> {
        match self {
            Active::Directory(dir) => Some(Current { dir: dir.clone(), artifact: None }),
            #[cfg(feature = "oci")]
            Active::Artifact(pulling) => pulling.current(),
        }
    }
}

/// `apply oci://REF`: brings the node's bundle of `source` into the cache
/// under the state directory once (a directory is taken as it is).
pub fn pull_once(source: &BundleSource, node: Option<&str>, paths: &Paths) -> Result<Current, String> {
    match source {
        BundleSource::Directory(dir) => {
            let _ = (node, paths);
            Ok(Current { dir: dir.clone(), artifact: None })
        }
        #[cfg(feature = "oci")]
        BundleSource::Artifact(artifact) => {
            let node = node
                .ok_or("a bundle from a registry needs `--node` (or `NODE_NAME`): the artifact holds every node's")?;
            let mut puller =
                policyc_oci::Puller::new(artifact.reference.clone(), node, &paths.state.join("oci"), &artifact.client)
                    .map_err(|e| e.to_string())?;
            let pulled = puller.pull().map_err(|e| e.to_string())?;
            let applied = AppliedArtifact { reference: artifact.reference.to_string(), digest: pulled.digest };
            Ok(Current { dir: pulled.dir, artifact: Some(applied) })
        }
    }
}
