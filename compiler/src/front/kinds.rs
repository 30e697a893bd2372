//! Which kinds and `apiVersion`s policyc reads, and what it says about the
//! objects it does not read.
//!
//! An object policyc reads is decoded; a kind it reads under an
//! `apiVersion` it does not know (`cilium.io/v1`, a typo, the key spelled
//! `apiversion`) and a network-policy kind it does not compile are
//! skipped *with a warning naming them*, so that no policy a user wrote is
//! passed over in silence. Every other kind (`ConfigMap`, `Secret`, ...) is
//! counted and skipped.

use super::yaml::{Node, Value};

/// The `apiVersion`s policyc reads for each kind it decodes. Versions are
/// the ones the API server serves (or served) with the schema the decoder
/// reads; Cilium's policy CRDs are served as `cilium.io/v2` only.
const READ: &[(&str, &[&str])] = &[
    ("NetworkPolicy", &["networking.k8s.io/v1"]),
    ("CiliumNetworkPolicy", &["cilium.io/v2"]),
    ("CiliumClusterwideNetworkPolicy", &["cilium.io/v2"]),
    ("AdminNetworkPolicy", &["policy.networking.k8s.io/v1alpha1"]),
    ("BaselineAdminNetworkPolicy", &["policy.networking.k8s.io/v1alpha1"]),
    ("ClusterNetworkPolicy", &["policy.networking.k8s.io/v1alpha2"]),
    ("Pod", &["v1"]),
    ("Namespace", &["v1"]),
    ("Service", &["v1"]),
    ("Endpoints", &["v1"]),
    ("Node", &["v1"]),
    ("EndpointSlice", &["discovery.k8s.io/v1", "discovery.k8s.io/v1beta1"]),
    ("Deployment", &["apps/v1", "apps/v1beta1", "apps/v1beta2", "extensions/v1beta1"]),
    ("StatefulSet", &["apps/v1", "apps/v1beta1", "apps/v1beta2"]),
    ("DaemonSet", &["apps/v1", "apps/v1beta2", "extensions/v1beta1"]),
    ("ReplicaSet", &["apps/v1", "apps/v1beta2", "extensions/v1beta1"]),
    ("Job", &["batch/v1"]),
    ("CronJob", &["batch/v1", "batch/v1beta1"]),
    ("ReplicationController", &["v1"]),
    ("DeploymentConfig", &["apps.openshift.io/v1", "v1"]),
];

/// Network-policy kinds policyc does not compile: Cilium's other policy
/// CRDs, and other CNIs' policies. An object of one of these kinds changes what the cluster
/// allows, so skipping it is worth a warning.
const POLICY_KINDS_NOT_COMPILED: &[&str] = &[
    "CiliumCIDRGroup",
    "CiliumEgressGatewayPolicy",
    "CiliumLocalRedirectPolicy",
    "GlobalNetworkPolicy",
    "GlobalNetworkSet",
    "NetworkSet",
    "StagedNetworkPolicy",
    "StagedGlobalNetworkPolicy",
    "StagedKubernetesNetworkPolicy",
    "MultiNetworkPolicy",
];

/// What policyc does with an object of a given kind and `apiVersion`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// A kind and `apiVersion` policyc reads.
    Read,
    /// A kind policyc reads, under an `apiVersion` it does not: the
    /// versions it reads.
    UnknownApiVersion(&'static [&'static str]),
    /// A network-policy kind policyc does not compile.
    PolicyNotCompiled,
    /// Any other kind: counted and skipped.
    Other,
}

/// What to do with an object of `kind` whose `apiVersion` is `api_version`
/// (`None` when it has none).
pub fn disposition(kind: &str, api_version: Option<&str>) -> Disposition {
    if let Some((_, versions)) = READ.iter().find(|(k, _)| *k == kind) {
        return match api_version {
            Some(v) if versions.contains(&v) => Disposition::Read,
            _ => Disposition::UnknownApiVersion(versions),
        };
    }
    if POLICY_KINDS_NOT_COMPILED.contains(&kind) {
        return Disposition::PolicyNotCompiled;
    }
    Disposition::Other
}

/// The kind of the items of a typed List (`PodList` → `Pod`), whose items
/// the API server writes without `kind` and `apiVersion`; `None` for the
/// untyped `List`, whose items carry their own.
pub fn item_kind(list_kind: &str) -> Option<&str> {
    list_kind.strip_suffix("List").filter(|k| !k.is_empty())
}

/// A key of `root` that differs from `apiVersion` only in case
/// (`apiversion`, `ApiVersion`), for a "did you mean".
pub fn misspelt_api_version(root: &Node) -> Option<&Node> {
    let Value::Map(entries) = &root.value else { return None };
    entries
        .iter()
        .map(|(k, _)| k)
        .find(|k| k.as_str().is_some_and(|s| s != "apiVersion" && s.eq_ignore_ascii_case("apiVersion")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::codes;
    use crate::front::{Body, Input};

    fn read(text: &str) -> Input {
        let mut input = Input::default();
        input.add_source("t.yaml", text.to_string());
        input
    }

    #[test]
    fn items_of_a_typed_list_take_its_kind_and_api_version() {
        let input = read(
            "apiVersion: v1\nkind: NamespaceList\nitems:\n- metadata: {name: a}\n- metadata: {name: b}\n\
             metadata: {resourceVersion: '1'}\n",
        );
        assert!(input.diagnostics.is_empty(), "{:#?}", input.diagnostics);
        let names: Vec<_> = input.objects.iter().map(|o| o.meta.display()).collect();
        assert_eq!(names, ["Namespace a", "Namespace b"]);
        let input = read(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicyList\nitems:\n\
             - metadata: {name: deny, namespace: shop}\n  spec: {podSelector: {}}\n",
        );
        assert!(input.diagnostics.is_empty(), "{:#?}", input.diagnostics);
        assert!(matches!(input.objects[0].body, Body::Policy(_)));
        assert_eq!(input.objects[0].meta.display(), "NetworkPolicy shop/deny");
    }

    #[test]
    fn items_of_an_untyped_list_still_need_a_kind() {
        let input = read("apiVersion: v1\nkind: List\nitems:\n- metadata: {name: a}\n");
        assert_eq!(input.diagnostics.len(), 1);
        assert_eq!(input.diagnostics[0].code, codes::NOT_AN_OBJECT);
    }

    #[test]
    fn skipped_policies_are_named_in_a_warning() {
        let input = read("apiVersion: cilium.io/v1\nkind: CiliumNetworkPolicy\nmetadata: {name: p, namespace: shop}\n");
        assert_eq!(input.diagnostics.len(), 1);
        let d = &input.diagnostics[0];
        assert_eq!(d.code, codes::UNKNOWN_API_VERSION);
        assert_eq!(d.location.object.as_deref(), Some("CiliumNetworkPolicy shop/p"));
        assert_eq!(d.help.as_deref(), Some("did you mean `cilium.io/v2`?"));
        assert!(input.objects.is_empty());

        let input = read("apiversion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\n");
        let d = &input.diagnostics[0];
        assert_eq!((d.code, d.help.as_deref()), (codes::UNKNOWN_API_VERSION, Some("did you mean `apiVersion`?")));
        assert_eq!(d.location.path.as_deref(), Some("apiversion"));

        let input = read("kind: NetworkPolicy\nmetadata: {name: p}\n");
        assert_eq!(input.diagnostics[0].code, codes::UNKNOWN_API_VERSION);
        assert!(input.diagnostics[0].message.contains("no `apiVersion`"));

        let input = read("apiVersion: crd.projectcalico.org/v1\nkind: GlobalNetworkPolicy\nmetadata: {name: a}\n");
        assert_eq!(input.diagnostics[0].code, codes::POLICY_KIND_NOT_COMPILED);
        assert_eq!(input.diagnostics[0].location.object.as_deref(), Some("GlobalNetworkPolicy a"));
        assert_eq!(input.skipped.get("GlobalNetworkPolicy"), Some(&1));

        let input = read("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n");
        assert!(input.diagnostics.is_empty());
        assert_eq!(input.skipped.get("ConfigMap"), Some(&1));
    }

    #[test]
    fn read_kinds_need_a_known_api_version() {
        assert_eq!(disposition("CiliumNetworkPolicy", Some("cilium.io/v2")), Disposition::Read);
        assert_eq!(disposition("NetworkPolicy", Some("networking.k8s.io/v1")), Disposition::Read);
        assert_eq!(disposition("Pod", Some("v1")), Disposition::Read);
        assert!(matches!(disposition("CiliumNetworkPolicy", Some("cilium.io/v1")), Disposition::UnknownApiVersion(_)));
        assert!(matches!(disposition("NetworkPolicy", Some("networking.k8s/v1")), Disposition::UnknownApiVersion(_)));
        assert!(matches!(disposition("NetworkPolicy", None), Disposition::UnknownApiVersion(_)));
    }

    #[test]
    fn policy_kinds_not_compiled_are_told_apart_from_other_kinds() {
        assert_eq!(disposition("AdminNetworkPolicy", Some("policy.networking.k8s.io/v1alpha1")), Disposition::Read);
        assert_eq!(disposition("ClusterNetworkPolicy", Some("policy.networking.k8s.io/v1alpha2")), Disposition::Read);
        assert!(matches!(
            disposition("ClusterNetworkPolicy", Some("crd.antrea.io/v1beta1")),
            Disposition::UnknownApiVersion(_)
        ));
        assert_eq!(disposition("CiliumCIDRGroup", Some("cilium.io/v2alpha1")), Disposition::PolicyNotCompiled);
        assert_eq!(disposition("ConfigMap", Some("v1")), Disposition::Other);
    }

    #[test]
    fn every_workload_kind_is_read() {
        for kind in crate::front::WORKLOAD_KINDS {
            assert!(READ.iter().any(|(k, _)| k == kind), "{kind} has no apiVersion policyc reads");
        }
    }

    #[test]
    fn typed_lists_name_their_items_kind() {
        assert_eq!(item_kind("PodList"), Some("Pod"));
        assert_eq!(item_kind("CiliumNetworkPolicyList"), Some("CiliumNetworkPolicy"));
        assert_eq!(item_kind("List"), None);
    }
}
