//! The compiled policy of a bundle as the agent binds it: the bundle read
//! whole, every endpoint identity by its label set, the ipcache entries
//! that do not name a pod (world, CIDR, nodes, this node), and per
//! identity the endpoint of the bundle whose policy and program settings a
//! pod of that identity takes.
//!
//! A bundle endpoint's enforcement (which directions are default-deny) is
//! written only in `endpoints.txt`, one line per address: so only
//! endpoints compiled with addresses (pods of a `kubectl get` snapshot)
//! serve as models. Address-less ones (workloads, unscheduled pods) would
//! need their enforcement in the manifest, a format change not made yet;
//! pods of such an identity are computed on the node from the bundle's
//! normalized policy ([`super::computed`]), or held default-deny and
//! reported when the bundle has none.

use super::cluster::LivePod;
use super::computed::{Computed, PodInput};
use crate::bundle::{locate, Bundle, BundleError};
use crate::entries;
use crate::manifest::{BundleEndpoint, IDENTITIES_FILE, IPCACHE_FILE};
use policyc::emit::maps::RuleNames;
use policyc_bundle::identities::IdentityLine;
use policyc_bundle::ipcache::{IpcacheLine, Source};
use policyc_bundle::normalized::{self, NORMALIZED_POLICY_FILE};
use policyc_ebpf::abi::{IpcacheKey, IpcacheValue, PolicyKey, PolicyValue};
use policyc_ir::identity_split;
use policyc_ir::labels::Labels;
use policyc_ir::normalized::NormalizedPolicy;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

/// A bundle, ready to bind live pods to.
#[derive(Clone, Debug)]
pub struct Compiled {
    /// The bundle, read whole and checked.
    pub bundle: Bundle,
    /// Endpoint identities by their label set (`identities.txt`).
    pub identities: BTreeMap<Labels, u32>,
    /// ipcache entries that do not name a pod: pods are bound live.
    pub base_ipcache: Vec<(IpcacheKey, IpcacheValue)>,
    /// The CIDR identities compiled for API server addresses outside the
    /// cluster (their labels carry `reserved:kube-apiserver`): when the
    /// live source names the API server elsewhere, their entries leave.
    pub apiserver_cidrs: std::collections::BTreeSet<u32>,
    /// Per identity, the bundle endpoints that have it, by name: their
    /// policy and settings serve every local pod of that identity.
    pub templates: BTreeMap<u32, Vec<Template>>,
    /// The normalized policy and its rules' cookies, if the bundle has
    /// them (`normalized-policy.json`).
    pub normalized: Option<Arc<(NormalizedPolicy, RuleNames)>>,
    /// [`Compiled::identities`] by hash: binding looks up every pod of the
    /// cluster, and comparing label sets in a tree was most of a bind at
    /// 150 000 pods.
    by_labels: std::collections::HashMap<Labels, u32>,
    /// Label sets an admin rule splits ([`policyc_ir::identity_split`]):
    /// their identities' keys, by the label set.
    split: BTreeMap<Labels, Vec<Labels>>,
    /// The last computation on the node and its inputs: pods computed on
    /// the node change far less often than bindings are made.
    last_computed: Arc<Mutex<Option<LastComputed>>>,
}

/// A computation on the node and its inputs.
type LastComputed = (Vec<PodInput>, Arc<Computed>);

/// A bundle endpoint as the model for pods of its identity.
#[derive(Clone, Debug)]
pub struct Template {
    /// The bundle endpoint.
    pub endpoint: BundleEndpoint,
    /// Its `ENDPOINT_ENFORCE_*` flags.
    pub flags: u32,
    /// Its policy entries (with its endpoint id).
    pub policy: Vec<(PolicyKey, PolicyValue)>,
}

impl Compiled {
    /// Reads and checks the bundle in `dir` (a bundle, or a directory
    /// holding one).
    pub fn read(dir: &Path) -> Result<Compiled, BundleError> {
        Compiled::of_bundle(Bundle::read(&locate(dir)?)?)
    }

    /// Indexes `bundle`.
    pub fn of_bundle(bundle: Bundle) -> Result<Compiled, BundleError> {
        let manifest = &bundle.manifest;
        let mut identities = BTreeMap::new();
        let mut apiserver_cidrs = std::collections::BTreeSet::new();
        for line in IdentityLine::parse_all(IDENTITIES_FILE, &manifest.read_text(IDENTITIES_FILE)?)
            .map_err(BundleError::Entry)?
        {
            if line.kind == "cidr" && line.labels.split(',').any(|l| l == "reserved:kube-apiserver") {
                apiserver_cidrs.insert(line.identity);
            }
            if line.kind != "endpoint" {
                continue;
            }
            let labels = line
                .endpoint_labels()
                .map_err(|e| BundleError::Manifest(format!("`{IDENTITIES_FILE}`: identity {}: {e}", line.identity)))?;
            identities.insert(Labels::from_pairs(labels), line.identity);
        }
        let ipcache_text = manifest.read_text(IPCACHE_FILE)?;
        let mut kept = String::new();
        for (n, text) in ipcache_text.lines().enumerate() {
            let line = IpcacheLine::parse(IPCACHE_FILE, n + 1, text).map_err(BundleError::Entry)?;
            if !matches!(line.source, Source::Endpoint(_)) {
                kept.push_str(text);
                kept.push('\n');
            }
        }
        let base_ipcache = entries::ipcache(IPCACHE_FILE, 1, &kept).map_err(BundleError::Entry)?;
        let mut templates: BTreeMap<u32, Vec<Template>> = BTreeMap::new();
        for e in &bundle.endpoints {
            let id = u32::from(e.id);
            let Some((_, value)) = bundle.endpoint_entries.iter().find(|(_, v)| v.endpoint_id == id) else {
                continue;
            };
            let policy = bundle.policy.iter().filter(|(k, _)| k.endpoint_id == e.id).copied().collect();
            templates.entry(value.identity).or_default().push(Template {
                endpoint: e.clone(),
                flags: value.flags,
                policy,
            });
        }
        let normalized = if manifest.files.contains_key(NORMALIZED_POLICY_FILE) {
            let policy =
                normalized::from_text(&manifest.read_text(NORMALIZED_POLICY_FILE)?).map_err(BundleError::Manifest)?;
            let names = RuleNames::new(&policy.cluster);
            Some(Arc::new((policy, names)))
        } else {
            None
        };
        let by_labels = identities.iter().map(|(l, &id)| (l.clone(), id)).collect();
        let mut split: BTreeMap<Labels, Vec<Labels>> = BTreeMap::new();
        for key in identities.keys().filter(|k| k.0.keys().any(|k| identity_split::is_split_key(k))) {
            split.entry(identity_split::selector_labels(key).into_owned()).or_default().push(key.clone());
        }
        for (labels, keys) in &mut split {
            // The label set's unsplit part (outside every prefix) keeps it.
            if identities.contains_key(labels) {
                keys.push(labels.clone());
            }
        }
        Ok(Compiled {
            bundle,
            by_labels,
            split,
            identities,
            base_ipcache,
            apiserver_cidrs,
            templates,
            normalized,
            last_computed: Arc::new(Mutex::new(None)),
        })
    }

    /// What the node computes for `pods` ([`super::computed::compute`]),
    /// or `None` if the bundle has no normalized policy; the last result
    /// is kept and given again for the same pods.
    pub fn compute(&self, node: &str, pods: Vec<PodInput>) -> Option<Arc<Computed>> {
        let normalized = self.normalized.as_ref()?;
        let mut last = self.last_computed.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((inputs, computed)) = last.as_ref() {
            if *inputs == pods {
                return Some(Arc::clone(computed));
            }
        }
        let computed = Arc::new(super::computed::compute(&normalized.0, &normalized.1, node, &pods));
        *last = Some((pods, Arc::clone(&computed)));
        Some(computed)
    }

    /// The compiled identity of `pod`: that of its label set, or where an
    /// admin rule splits it, of the part whose facts (addresses, named
    /// ports) the pod has now.
    pub fn identity(&self, pod: &LivePod) -> Option<u32> {
        match self.split.get(&*pod.labels) {
            Some(keys) => {
                let keys: Vec<&Labels> = keys.iter().collect();
                let key = identity_split::key_among(&keys, &pod.labels, &pod.ips, &pod.named_ports)?;
                self.by_labels.get(key).copied()
            }
            None => self.by_labels.get(&*pod.labels).copied(),
        }
    }

    /// Whether an admin rule splits label set `labels`, so that its pods'
    /// identities depend on their addresses and named ports.
    pub fn is_split(&self, labels: &Labels) -> bool {
        self.split.contains_key(labels)
    }

    /// The bundle's hash.
    pub fn hash(&self) -> &str {
        self.bundle.hash()
    }

    /// The model for pod `name` of `identity`: the bundle endpoint of that
    /// name if it has the identity (its named ports are the pod's), else
    /// the first of the identity's.
    pub fn template(&self, identity: u32, name: &str) -> Option<&Template> {
        let of = self.templates.get(&identity)?;
        of.iter().find(|t| t.endpoint.name == name).or_else(|| of.first())
    }
}
