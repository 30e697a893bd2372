//! A bundle read from disk and checked before anything touches the kernel:
//! its manifest ([`crate::manifest`]), every file against its digest, and
//! every text map. (Each endpoint's settings meet the templates when its
//! programs are made, which is also before anything is written.)

use crate::entries;
pub use crate::manifest::{BundleEndpoint, FORMAT_VERSION};
use crate::manifest::{Manifest, Templates, ENDPOINTS_FILE, IDENTITIES_FILE, IPCACHE_FILE, RULES_FILE};
use crate::references::{Listing, References};
use policyc_bundle::identities::IdentityLine;
use policyc_bundle::rules::RuleLine;
use policyc_bundle::LineError;
use policyc_ebpf::abi::{EndpointKey, EndpointValue, IpcacheKey, IpcacheValue, PolicyKey, PolicyValue};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// Why a bundle is refused.
#[derive(Debug)]
pub enum BundleError {
    /// A file cannot be read.
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        error: std::io::Error,
    },
    /// `manifest.json` does not parse.
    Manifest(String),
    /// The bundle's format version is not [`FORMAT_VERSION`].
    FormatVersion(u32),
    /// A map of the manifest differs from this loader's ABI.
    MapLayout(String),
    /// A file does not match its digest in the manifest.
    Digest(String),
    /// A text map line is malformed.
    Entry(LineError),
    /// A program template cannot take an endpoint's settings.
    Program(String),
    /// One generation of a map would overflow.
    Capacity {
        /// The map.
        map: String,
        /// Entries the bundle has.
        entries: usize,
        /// Entries one generation holds.
        capacity: u32,
    },
}

impl fmt::Display for BundleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BundleError::Io { path, error } => write!(f, "cannot read `{}`: {error}", path.display()),
            BundleError::Manifest(e) => write!(f, "manifest.json: {e}"),
            BundleError::FormatVersion(v) => write!(
                f,
                "bundle format version {v} is not supported (this loader reads version {FORMAT_VERSION}); \
                 compile the bundle with a policyc that matches this loader"
            ),
            BundleError::MapLayout(e) => write!(f, "manifest.json: {e}"),
            BundleError::Digest(e) => write!(f, "{e} (the bundle is corrupt or was changed after it was compiled)"),
            BundleError::Entry(e) => write!(f, "{e}"),
            BundleError::Program(e) => f.write_str(e),
            BundleError::Capacity { map, entries, capacity } => {
                write!(f, "map `{map}` would hold {entries} entries but one generation holds at most {capacity}")
            }
        }
    }
}

impl std::error::Error for BundleError {}

/// A bundle read whole and checked: every entry of one generation, and the
/// program templates. An apply reads only what changed
/// ([`crate::incremental`]); this is for what needs all of it (a first or
/// `--reconcile` apply, `probe`).
#[derive(Clone, Debug)]
pub struct Bundle {
    /// Its manifest.
    pub manifest: Manifest,
    /// ipcache entries.
    pub ipcache: Vec<(IpcacheKey, IpcacheValue)>,
    /// endpoints entries.
    pub endpoint_entries: Vec<(EndpointKey, EndpointValue)>,
    /// policy entries of every endpoint.
    pub policy: Vec<(PolicyKey, PolicyValue)>,
    /// The service maps' entries (boxed, as `listed`).
    pub services: Box<crate::services::ServiceEntries>,
    /// Local endpoints, by name.
    pub endpoints: Vec<BundleEndpoint>,
    /// The `from_container` and `to_container` templates.
    pub templates: Templates,
    /// What its tables list (boxed: a bundle is held in a
    /// [`crate::desired::DesiredState`] beside a manifest alone).
    pub listed: Box<Listed>,
}

/// What a bundle's tables list: every entry names one of each kind it
/// names.
#[derive(Clone, Debug, Default)]
pub struct Listed {
    /// The rule cookies `rules.txt` lists (every policy entry names one).
    pub rules: BTreeSet<u32>,
    /// The identities `identities.txt` lists (every ipcache and endpoints
    /// entry and policy peer names one).
    pub identities: BTreeSet<u32>,
}

impl Bundle {
    /// The bundle's hash ([`Manifest::hash`]).
    pub fn hash(&self) -> &str {
        &self.manifest.hash
    }
}

/// The bundle directory `path` names: `path` itself if it holds a
/// `manifest.json`, else the one bundle among its subdirectories (what
/// `policyc compile --node N --out DIR` writes), else an error listing them.
pub fn locate(path: &Path) -> Result<PathBuf, BundleError> {
    if path.join("manifest.json").is_file() {
        return Ok(path.to_path_buf());
    }
    let entries = std::fs::read_dir(path).map_err(|error| BundleError::Io { path: path.to_path_buf(), error })?;
    let mut bundles: Vec<PathBuf> =
        entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.join("manifest.json").is_file()).collect();
    bundles.sort();
    match bundles.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(BundleError::Manifest(format!("`{}` holds no bundle (no manifest.json)", path.display()))),
        many => Err(BundleError::Manifest(format!(
            "`{}` holds bundles of several nodes; name this node's: {}",
            path.display(),
            many.iter().map(|p| format!("`{}`", p.display())).collect::<Vec<_>>().join(", ")
        ))),
    }
}

impl Bundle {
    /// Reads and checks the bundle in `dir`: its manifest, and every file
    /// against its digest.
    pub fn read(dir: &Path) -> Result<Bundle, BundleError> {
        Bundle::read_with(Manifest::read(dir)?)
    }

    /// Reads every file `manifest` lists, each checked against its digest.
    pub fn read_with(manifest: Manifest) -> Result<Bundle, BundleError> {
        let entry = BundleError::Entry;
        let text = |path: &str| manifest.read_text(path);
        let ipcache = entries::ipcache(IPCACHE_FILE, 1, &text(IPCACHE_FILE)?).map_err(entry)?;
        let endpoint_entries = entries::endpoints(ENDPOINTS_FILE, 1, &text(ENDPOINTS_FILE)?)
            .map_err(entry)?
            .into_iter()
            .map(|(k, v, _)| (k, v))
            .collect();
        // Policy lines carry their cookies and identities; the rule and
        // identity tables are for flow events and people, checked here
        // like every file of the bundle.
        let rules = text(RULES_FILE)?;
        let cookies: BTreeSet<u32> =
            RuleLine::parse_all(RULES_FILE, 1, &rules).map_err(entry)?.iter().map(|r| r.cookie).collect();
        let identities: BTreeSet<u32> = IdentityLine::parse_all(IDENTITIES_FILE, &text(IDENTITIES_FILE)?)
            .map_err(entry)?
            .iter()
            .map(|l| l.identity)
            .collect();
        let templates = manifest.templates()?;
        let services = Box::new(crate::services::read(&manifest)?.map(|(_, e)| e).unwrap_or_default());
        // Endpoints may share a policy file: each is read once.
        let mut files: BTreeMap<&str, Vec<(PolicyKey, PolicyValue)>> = BTreeMap::new();
        for e in &manifest.endpoints {
            if !files.contains_key(e.policy_file.as_str()) {
                let parsed = entries::policy(&e.policy_file, 1, &text(&e.policy_file)?, 0).map_err(entry)?;
                // Flow events name a rule by its cookie: every entry's
                // must be in the rule table.
                if let Some((n, (_, v))) =
                    parsed.iter().enumerate().find(|(_, (_, v))| !cookies.contains(&v.rule_cookie))
                {
                    return Err(BundleError::Manifest(format!(
                        "`{}`: entry {} names rule cookie {}, which `{RULES_FILE}` does not list",
                        e.policy_file,
                        n + 1,
                        v.rule_cookie
                    )));
                }
                files.insert(&e.policy_file, parsed);
            }
        }
        let mut policy = Vec::new();
        for e in &manifest.endpoints {
            let entries = files.get(e.policy_file.as_str()).map(Vec::as_slice).unwrap_or_default();
            policy.extend(entries.iter().map(|(k, v)| (PolicyKey { endpoint_id: e.id, ..*k }, *v)));
        }
        let endpoints = manifest.endpoints.clone();
        let listed = Box::new(Listed { rules: cookies, identities });
        let bundle = Bundle { manifest, ipcache, endpoint_entries, policy, services, endpoints, templates, listed };
        crate::validate::whole(&bundle)?;
        if let Some((identity, entries)) = bundle.references().identities.unlisted() {
            return Err(unlisted_identity(identity, entries));
        }
        Ok(bundle)
    }

    /// Its rules and identities and the entries naming each.
    pub fn references(&self) -> References {
        let peers = self.policy.iter().map(|(k, _)| k.peer_identity).filter(|p| *p != 0);
        let identities =
            self.ipcache.iter().map(|(_, v)| v.identity).chain(self.endpoint_entries.iter().map(|(_, v)| v.identity));
        References {
            rules: Listing::new(self.listed.rules.clone(), self.policy.iter().map(|(_, v)| v.rule_cookie)),
            identities: Listing::new(self.listed.identities.clone(), identities.chain(peers)),
        }
    }
}

/// Entries naming an identity `identities.txt` does not list.
pub fn unlisted_identity(identity: u32, entries: u64) -> BundleError {
    BundleError::Manifest(format!(
        "identity {identity}, which {entries} map entries name (ipcache, endpoints or policy peers), \
         is not listed in `{IDENTITIES_FILE}`"
    ))
}
