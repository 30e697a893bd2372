//! The deployment manifests of `deploy/`, offline: every document
//! deserializes into its k8s-openapi type **strictly** (k8s-openapi's serde
//! ignores unknown fields, so the typed value is serialized again and
//! must give back every field the file has: a misspelled or misplaced
//! field fails, naming its path), the Kustomize base lists every file, the
//! RBAC grants exactly what the agent's Kubernetes source watches
//! (`src/agent/kube.rs`), the DaemonSet's pieces refer to each other
//! consistently, and `policyc lint deploy/` reads them clean.

use clap::Parser;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use policyc::front::yaml::{self, Node, Value as Yaml};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn to_json(node: &Node) -> Value {
    match &node.value {
        Yaml::Null => Value::Null,
        Yaml::Bool(b) => Value::Bool(*b),
        Yaml::Int(i) => Value::from(*i),
        Yaml::Float(f) => Value::from(*f),
        Yaml::Str(s) => Value::String(s.clone()),
        Yaml::Seq(items) => Value::Array(items.iter().map(to_json).collect()),
        Yaml::Map(entries) => {
            let mut map = Map::new();
            for (key, value) in entries {
                let key = key.scalar_text().unwrap_or_else(|| panic!("a non-scalar key at {:?}", key.pos));
                assert!(map.insert(key.clone(), to_json(value)).is_none(), "key `{key}` twice");
            }
            Value::Object(map)
        }
    }
}

/// Every document of every `*.yaml` of `deploy/`: (file name, document).
fn documents() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut documents = Vec::new();
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let parsed = yaml::parse(&std::fs::read_to_string(&file).unwrap());
        assert!(parsed.error.is_none(), "{name}: {:?}", parsed.error);
        assert!(parsed.findings.is_empty(), "{name}: {:?}", parsed.findings);
        for document in &parsed.documents {
            documents.push((name.clone(), to_json(&document.root)));
        }
    }
    documents
}

/// The first place where `typed` (the value serialized again) lacks or
/// changes what `original` (the file) says.
fn first_difference(original: &Value, typed: &Value, path: &str) -> Option<String> {
    match (original, typed) {
        (Value::Object(o), Value::Object(t)) => o.iter().find_map(|(key, value)| {
            let here = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
            match t.get(key) {
                None => Some(format!("`{here}` is no field of the type (unknown or misspelled)")),
                Some(typed) => first_difference(value, typed, &here),
            }
        }),
        (Value::Array(o), Value::Array(t)) if o.len() == t.len() => {
            o.iter().zip(t).enumerate().find_map(|(i, (o, t))| first_difference(o, t, &format!("{path}[{i}]")))
        }
        _ if original == typed => None,
        _ => Some(format!("`{path}` reads back as `{typed}`, not `{original}`")),
    }
}

/// Deserializes `document` as `T` and checks that nothing of it was lost.
fn strictly<T: DeserializeOwned + Serialize>(file: &str, document: &Value) -> T {
    let typed: T = serde_json::from_value(document.clone())
        .unwrap_or_else(|e| panic!("{file}: {} does not deserialize: {e}", document["kind"]));
    let again = serde_json::to_value(&typed).unwrap();
    if let Some(difference) = first_difference(document, &again, "") {
        panic!("{file}: {} {}: {difference}", document["kind"], document["metadata"]["name"]);
    }
    typed
}

/// The typed objects of `deploy/`.
#[derive(Default)]
struct Deployment {
    namespaces: Vec<Namespace>,
    daemonsets: Vec<DaemonSet>,
    config_maps: Vec<ConfigMap>,
    rules: Vec<(String, Option<String>, PolicyRule)>,
    bindings: Vec<(String, String)>,
}

fn deployment() -> Deployment {
    let mut d = Deployment::default();
    for (file, doc) in documents() {
        let kind = doc["kind"].as_str().unwrap_or_else(|| panic!("{file}: a document without `kind`")).to_string();
        match kind.as_str() {
            "Namespace" => d.namespaces.push(strictly(&file, &doc)),
            "ServiceAccount" => drop(strictly::<ServiceAccount>(&file, &doc)),
            "ConfigMap" => d.config_maps.push(strictly(&file, &doc)),
            "DaemonSet" => d.daemonsets.push(strictly(&file, &doc)),
            "ClusterRole" => {
                let role: ClusterRole = strictly(&file, &doc);
                let name = role.metadata.name.unwrap();
                d.rules.extend(role.rules.unwrap_or_default().into_iter().map(|r| (name.clone(), None, r)));
            }
            "Role" => {
                let role: Role = strictly(&file, &doc);
                let (name, namespace) = (role.metadata.name.unwrap(), role.metadata.namespace);
                d.rules
                    .extend(role.rules.unwrap_or_default().into_iter().map(|r| (name.clone(), namespace.clone(), r)));
            }
            "ClusterRoleBinding" => {
                let b: ClusterRoleBinding = strictly(&file, &doc);
                d.bindings
                    .extend(b.subjects.unwrap_or_default().into_iter().map(|s| (b.role_ref.name.clone(), s.name)));
            }
            "RoleBinding" => {
                let b: RoleBinding = strictly(&file, &doc);
                d.bindings
                    .extend(b.subjects.unwrap_or_default().into_iter().map(|s| (b.role_ref.name.clone(), s.name)));
            }
            "Kustomization" => {
                assert_eq!(file, "kustomization.yaml");
                let listed: BTreeSet<&str> =
                    doc["resources"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
                let files: BTreeSet<String> = std::fs::read_dir(deploy_dir())
                    .unwrap()
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
                    .collect();
                assert_eq!(listed, files.iter().map(String::as_str).collect(), "the base lists every manifest");
            }
            other => panic!("{file}: kind `{other}` has no check here: add one"),
        }
    }
    d
}

#[test]
fn every_document_is_a_valid_object_of_its_kind() {
    let d = deployment();
    assert_eq!((d.namespaces.len(), d.daemonsets.len(), d.config_maps.len()), (1, 1, 1));
}

#[test]
fn a_misspelled_field_is_caught() {
    let mut doc = documents().into_iter().find(|(_, d)| d["kind"] == "DaemonSet").unwrap().1;
    doc["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always".into();
    let typed: DaemonSet = serde_json::from_value(doc.clone()).expect("k8s-openapi ignores unknown fields");
    assert_eq!(
        first_difference(&doc, &serde_json::to_value(typed).unwrap(), ""),
        Some(
            "`spec.template.spec.containers[0].imagePullPolicyy` is no field of the type (unknown or misspelled)"
                .into()
        )
    );
}

/// The Kubernetes kinds `src/agent/kube.rs` builds an `Api` for, as
/// resource names.
fn watched_resources() -> BTreeSet<String> {
    let source = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/agent/kube.rs")).unwrap();
    let mut kinds = BTreeSet::new();
    for marker in ["Api::<", "Api<"] {
        for (at, _) in source.match_indices(marker) {
            let rest = &source[at + marker.len()..];
            let kind: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
            if kind.chars().next().is_some_and(|c| c.is_ascii_uppercase()) && kind != "K" {
                kinds.insert(format!("{}s", kind.to_lowercase()));
            }
        }
    }
    kinds
}

#[test]
fn the_rbac_grants_exactly_the_watches_read_only() {
    let d = deployment();
    let watched = watched_resources();
    assert!(watched.contains("pods") && watched.contains("endpointslices"), "{watched:?}");
    let mut granted = BTreeSet::new();
    for (role, namespace, rule) in &d.rules {
        assert_eq!(rule.verbs, ["get", "list", "watch"], "role `{role}`: read-only verbs only");
        assert!(rule.resource_names.is_none() && rule.non_resource_urls.is_none());
        for resource in rule.resources.as_deref().unwrap_or_default() {
            if resource == "endpointslices" {
                // Only `default/kubernetes`'s slices are read.
                assert_eq!(namespace.as_deref(), Some("default"), "endpointslices only in `default`");
                assert_eq!(rule.api_groups.as_deref(), Some(&["discovery.k8s.io".to_string()][..]));
            } else {
                assert_eq!(rule.api_groups.as_deref(), Some(&[String::new()][..]), "`{resource}` is in the core group");
            }
            granted.insert(resource.clone());
        }
        assert!(d.bindings.contains(&(role.clone(), "policyc-agent".into())), "role `{role}` is bound to the agent");
    }
    assert_eq!(granted, watched, "RBAC resources = the kinds src/agent/kube.rs watches");
}

#[test]
fn the_daemonset_hangs_together() {
    let d = deployment();
    let ds = &d.daemonsets[0];
    let pod = ds.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(pod.host_network, Some(true));
    assert_eq!(pod.priority_class_name.as_deref(), Some("system-node-critical"));
    let tolerations = pod.tolerations.as_ref().unwrap();
    assert!(tolerations
        .iter()
        .any(|t| t.operator.as_deref() == Some("Exists") && t.key.is_none() && t.effect.is_none()));
    let strategy = ds.spec.as_ref().unwrap().update_strategy.as_ref().unwrap();
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
    assert!(strategy.rolling_update.as_ref().unwrap().max_unavailable.is_some());

    let volumes: BTreeSet<&str> = pod.volumes.as_ref().unwrap().iter().map(|v| v.name.as_str()).collect();
    let host_paths: BTreeSet<&str> =
        pod.volumes.as_ref().unwrap().iter().filter_map(|v| v.host_path.as_ref()).map(|h| h.path.as_str()).collect();
    assert_eq!(host_paths, BTreeSet::from(["/sys/fs/bpf", "/run/policyc", "/opt/cni/bin", "/etc/cni/net.d"]));
    let config = d.config_maps[0].data.as_ref().unwrap();
    let all = pod.init_containers.iter().flatten().chain(&pod.containers);
    for container in all.clone() {
        for mount in container.volume_mounts.iter().flatten() {
            assert!(volumes.contains(mount.name.as_str()), "{}: no volume `{}`", container.name, mount.name);
        }
        for env in container.env.iter().flatten() {
            if let Some(key) = env.value_from.as_ref().and_then(|v| v.config_map_key_ref.as_ref()) {
                assert_eq!(key.name, d.config_maps[0].metadata.name.clone().unwrap());
                assert!(config.contains_key(&key.key), "{}: the ConfigMap has no `{}`", container.name, key.key);
            }
        }
        let security = container.security_context.as_ref().unwrap();
        let privileged = security.privileged == Some(true);
        // Only the container that mounts bpffs for the node is privileged.
        assert_eq!(privileged, container.name == "mount-bpffs", "{}", container.name);
    }

    let agent = &pod.containers[0];
    let capabilities = agent.security_context.as_ref().unwrap().capabilities.as_ref().unwrap();
    assert_eq!(capabilities.drop.as_deref(), Some(&["ALL".to_string()][..]));
    assert_eq!(capabilities.add.as_deref(), Some(&["BPF".to_string(), "NET_ADMIN".into(), "PERFMON".into()][..]));
    // The metrics port: the flag's, the container port's, the probes' and
    // Prometheus's annotation are one port.
    let port = config["metrics-address"].rsplit_once(':').unwrap().1.to_string();
    let ports = agent.ports.as_ref().unwrap();
    assert_eq!(ports[0].container_port.to_string(), port);
    let annotations = ds.spec.as_ref().unwrap().template.metadata.as_ref().unwrap().annotations.as_ref().unwrap();
    assert_eq!(annotations["prometheus.io/port"], port);
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    for (probe, path) in [(&agent.readiness_probe, "/readyz"), (&agent.liveness_probe, "/healthz")] {
        let get = probe.as_ref().unwrap().http_get.as_ref().unwrap();
        assert_eq!(get.path.as_deref(), Some(path));
        assert_eq!(serde_json::to_value(&get.port).unwrap(), ports[0].name.as_deref().unwrap());
    }
    // Every `$(VAR)` of the arguments is set.
    let set: BTreeSet<&str> = agent.env.iter().flatten().map(|e| e.name.as_str()).collect();
    for arg in agent.args.iter().flatten() {
        if let Some((_, rest)) = arg.split_once("$(") {
            let var = rest.trim_end_matches(')');
            assert!(set.contains(var), "argument `{arg}`: `{var}` is not set");
        }
    }
    assert!(set.contains("NODE_NAME"));
}

#[test]
fn policyc_lint_reads_the_manifests_clean() {
    let dir = deploy_dir();
    let cli = policyc::cli::Cli::try_parse_from(["policyc", "lint", dir.to_str().unwrap(), "--deny-warnings"]).unwrap();
    assert_eq!(policyc::cli::run(cli), 0, "`policyc lint --deny-warnings deploy/` reports something");
}
