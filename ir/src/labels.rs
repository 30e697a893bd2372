//! Label sets and the label keys Cilium derives from Kubernetes objects.

use std::collections::BTreeMap;
use std::fmt;

/// Label carrying the namespace of a pod.
pub const NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";
/// Prefix under which a pod's namespace labels become part of its identity.
pub const NAMESPACE_LABELS_PREFIX: &str = "io.cilium.k8s.namespace.labels.";
/// Label carrying the service account of a pod.
pub const SERVICE_ACCOUNT_LABEL: &str = "io.cilium.k8s.policy.serviceaccount";
/// Label every namespace carries with its own name (set by the API server).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";
/// Prefix of the labels of reserved identities (`reserved:world`).
pub const RESERVED_PREFIX: &str = "reserved:";

/// A sorted set of `key=value` labels.
///
/// Keys carry no Cilium source prefix (`k8s:`, `any:`) except for the
/// `reserved:` labels of reserved identities, which cannot be written by a
/// Kubernetes object and so never collide with a pod's labels.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct Labels(pub BTreeMap<String, String>);

impl Labels {
    /// An empty label set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a label set from `(key, value)` pairs.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Labels(pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Adds or replaces a label.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.0.insert(key.into(), value.into());
    }

    /// Iterates over `(key, value)` in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Whether the set has no labels.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (k, v) in self.iter() {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if v.is_empty() && k.starts_with(RESERVED_PREFIX) {
                write!(f, "{k}")?;
            } else {
                write!(f, "{k}={v}")?;
            }
        }
        Ok(())
    }
}

/// Key prefixes that Cilium's default label filter leaves out of
/// identities (`!io.kubernetes`, `!kubernetes.io`, `!k8s.io`, ...): they
/// change with every rollout or are owned by Kubernetes, and would otherwise
/// mint a new identity per revision.
const IGNORED_PREFIXES: &[&str] = &[
    "io.kubernetes",
    "kubernetes.io",
    "k8s.io",
    "statefulset.kubernetes.io/pod-name",
    "apps.kubernetes.io/pod-index",
    "batch.kubernetes.io/job-completion-index",
    "batch.kubernetes.io/controller-uid",
    "pod-template-generation",
    "pod-template-hash",
    "controller-revision-hash",
    "annotation.",
    "etcd_node",
];

/// Whether a pod label key takes part in the pod's security identity,
/// following Cilium's default identity-relevant label filter.
pub fn is_identity_relevant(key: &str) -> bool {
    !(IGNORED_PREFIXES.iter().any(|p| key.starts_with(p)) || key.contains("beta.kubernetes.io"))
}
