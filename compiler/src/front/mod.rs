//! The front end: reads files, directories and stdin; splits YAML/JSON
//! streams into documents; flattens `List` kinds; checks every object and
//! decodes the kinds policyc uses into [`Object`]s. Kinds it does not use
//! are counted and skipped, with a warning for policy kinds it does not
//! compile and for known kinds under an unknown `apiVersion` (see
//! [`kinds`]). All diagnostics are collected.

pub mod adminpolicy;
pub mod backends;
pub mod cilium;
pub mod core;
pub mod decode;
pub mod git;
pub mod k8s;
pub mod kinds;
pub mod service;
pub mod source;
pub mod spans;
pub mod workload;
pub mod yaml;

use crate::diag::render::Sources;
use crate::diag::{codes, did_you_mean, Diagnostic, Location};
use decode::{plain_key, Ctx};
use policyc_ir::cluster::NamedPort;
use policyc_ir::labels::Labels;
use spans::SpannedPolicy;
use std::collections::BTreeMap;
use std::net::IpAddr;
use yaml::{Node, Pos, Value};

/// The annotation that silences warnings on an object: a comma-separated
/// list of codes.
pub const IGNORE_ANNOTATION: &str = "policyc.io/ignore";

/// Identification of an object: kind, namespace, name, where it is.
#[derive(Clone, Debug, PartialEq)]
pub struct Meta {
    /// `kind`.
    pub kind: String,
    /// `metadata.namespace`, if set.
    pub namespace: Option<String>,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.labels`.
    pub labels: Labels,
    /// The controlling owner (`metadata.ownerReferences` with
    /// `controller: true`, or the only owner): `(kind, name)`.
    pub owner: Option<(String, String)>,
    /// Diagnostic codes silenced on this object by the annotation
    /// [`IGNORE_ANNOTATION`] (`W0201,W0204`).
    pub ignored_codes: Vec<String>,
    /// File, document and position of the object.
    pub location: Location,
    /// Where the object starts (its first key).
    pub start: Pos,
    /// Where `metadata.name` is written (its key).
    pub name_pos: Pos,
}

impl Meta {
    /// `Kind namespace/name`, or `Kind name` for cluster-scoped objects.
    pub fn display(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }
}

/// What a pod (or a workload's pod template) contributes to its endpoint.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodTemplate {
    /// Pod labels (all of them; the identity filter comes later).
    pub labels: Labels,
    /// `spec.serviceAccountName` (or the deprecated `serviceAccount`).
    pub service_account: Option<String>,
    /// Named container ports.
    pub ports: Vec<NamedPort>,
    /// `spec.hostNetwork`: such pods share the node's identity.
    pub host_network: bool,
}

/// A `Pod`.
#[derive(Clone, Debug, PartialEq)]
pub struct PodObject {
    /// Labels, service account, ports.
    pub template: PodTemplate,
    /// `status.podIPs` / `status.podIP`.
    pub ips: Vec<IpAddr>,
    /// `spec.nodeName`.
    pub node: Option<String>,
    /// `status.conditions` `Ready` (true when the pod has no status, as a
    /// manifest in a repository has none).
    pub ready: bool,
    /// `metadata.deletionTimestamp` is set.
    pub terminating: bool,
}

/// A workload (`Deployment`, `StatefulSet`, ...): its pod template.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkloadObject {
    /// The pod template.
    pub template: PodTemplate,
}

/// One port of a `Service`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    /// `name`.
    pub name: Option<String>,
    /// `protocol` (default TCP).
    pub protocol: policyc_ir::protocol::Protocol,
    /// `port`.
    pub port: u16,
    /// `targetPort`: a number or a container port name.
    pub target_port: Option<decode::PortValue>,
    /// `nodePort`.
    pub node_port: Option<u16>,
    /// Position in `spec.ports`.
    pub index: usize,
    /// Where the port is written.
    pub pos: yaml::Pos,
    /// Where `targetPort` is written.
    pub target_pos: Option<yaml::Pos>,
}

/// A `Service`.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceObject {
    /// `spec.selector`; `None` for services without selector.
    pub selector: Option<Labels>,
    /// `spec.ports`.
    pub ports: Vec<ServicePort>,
    /// `spec.clusterIPs` / `spec.clusterIP` (`None` is left out).
    pub cluster_ips: Vec<IpAddr>,
    /// `spec.type`.
    pub service_type: policyc_ir::service::ServiceType,
    /// `spec.externalIPs`.
    pub external_ips: Vec<IpAddr>,
    /// `status.loadBalancer.ingress[].ip`.
    pub load_balancer_ips: Vec<IpAddr>,
    /// `spec.internalTrafficPolicy`.
    pub internal_traffic_policy: policyc_ir::service::TrafficPolicy,
    /// `spec.externalTrafficPolicy`.
    pub external_traffic_policy: policyc_ir::service::TrafficPolicy,
    /// `spec.sessionAffinity: ClientIP`: the timeout in seconds.
    pub affinity_timeout: Option<u32>,
    /// `spec.loadBalancerSourceRanges`.
    pub source_ranges: Vec<policyc_ir::cidr::Cidr>,
    /// `spec.publishNotReadyAddresses`.
    pub publish_not_ready: bool,
    /// Where `spec.selector` is written.
    pub selector_pos: Option<yaml::Pos>,
}

/// One endpoint of an `EndpointSlice` (or an address of an `Endpoints`
/// subset).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendEndpoint {
    /// `addresses` (one for an `Endpoints` address).
    pub addresses: Vec<IpAddr>,
    /// `conditions`.
    pub conditions: policyc_ir::service::Conditions,
    /// `nodeName`.
    pub node: Option<String>,
    /// `zone`.
    pub zone: Option<String>,
}

/// The endpoints of an `EndpointSlice` or `Endpoints` object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendObject {
    /// The service it belongs to (`kubernetes.io/service-name` label, or
    /// the `Endpoints` object's name).
    pub service: String,
    /// Endpoints (none for an `FQDN` slice, whose addresses are names).
    pub endpoints: Vec<BackendEndpoint>,
    /// Ports: name, protocol, number.
    pub ports: Vec<(Option<String>, policyc_ir::protocol::Protocol, u16)>,
}

impl BackendObject {
    /// The addresses of the ready endpoints, in order, without repeats.
    pub fn ready_addresses(&self) -> Vec<IpAddr> {
        let mut out = Vec::new();
        for e in self.endpoints.iter().filter(|e| e.conditions.ready) {
            for &ip in &e.addresses {
                if !out.contains(&ip) {
                    out.push(ip);
                }
            }
        }
        out
    }
}

/// A `Node`.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeObject {
    /// `status.addresses` of type `InternalIP` (and `ExternalIP`).
    pub ips: Vec<IpAddr>,
}

/// A decoded object.
#[derive(Clone, Debug, PartialEq)]
pub enum Body {
    /// `Namespace`.
    Namespace,
    /// `Pod`.
    Pod(PodObject),
    /// A workload standing for its pods.
    Workload(WorkloadObject),
    /// `NetworkPolicy`, `CiliumNetworkPolicy`, `CiliumClusterwideNetworkPolicy`:
    /// one normalized policy per spec, with where its parts are written.
    Policy(Vec<SpannedPolicy>),
    /// `Service`.
    Service(ServiceObject),
    /// `EndpointSlice` or `Endpoints`.
    Backends(BackendObject),
    /// `Node`.
    Node(NodeObject),
    /// `AdminNetworkPolicy`, `BaselineAdminNetworkPolicy`,
    /// `ClusterNetworkPolicy`: one admin or baseline tier policy.
    Tier(adminpolicy::SpannedTierPolicy),
}

/// A decoded object with its metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct Object {
    /// Kind, namespace, name, location.
    pub meta: Meta,
    /// Kind-specific content.
    pub body: Body,
}

/// Everything read from the inputs.
#[derive(Debug, Default)]
pub struct Input {
    /// Decoded objects, in input order (files sorted by path).
    pub objects: Vec<Object>,
    /// Kinds that were skipped, with counts.
    pub skipped: BTreeMap<String, usize>,
    /// Source texts, for snippets in diagnostics.
    pub sources: Sources,
    /// Every diagnostic found.
    pub diagnostics: Vec<Diagnostic>,
}

/// Kinds that stand for pods (their pod template gives the endpoint).
pub const WORKLOAD_KINDS: &[&str] = &[
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "Job",
    "CronJob",
    "ReplicationController",
    "DeploymentConfig",
];

impl Input {
    /// Appends what `other` read after what this input read.
    pub fn merge(&mut self, other: Input) {
        self.objects.extend(other.objects);
        for (kind, count) in other.skipped {
            *self.skipped.entry(kind).or_default() += count;
        }
        self.sources.extend(other.sources);
        self.diagnostics.extend(other.diagnostics);
    }

    /// Parses one source text (`name` is how diagnostics name it).
    pub fn add_source(&mut self, name: &str, text: String) {
        let parsed = yaml::parse(&text);
        for (index, doc) in parsed.documents.iter().enumerate() {
            let mut ctx = Ctx { diags: &mut self.diagnostics, file: name.to_string(), document: index, object: None };
            decode_document(&mut ctx, &doc.root, None, &mut self.objects, &mut self.skipped);
        }
        self.diagnostics.extend(yaml::report::diagnostics(name, parsed.error, parsed.findings));
        self.sources.insert(name.to_string(), text);
    }
}

/// A kind's decoder: checks the object and returns its body.
type Decoder = fn(&mut Ctx, &Meta, &Node) -> Option<Body>;

/// The `kind` and `apiVersion` a typed List gives its items, which the API
/// server writes without them (`PodList` items are pods).
#[derive(Clone, Copy)]
struct ItemType<'a> {
    kind: &'a str,
    api_version: Option<&'a str>,
}

fn decode_document(
    ctx: &mut Ctx,
    root: &Node,
    list: Option<ItemType>,
    objects: &mut Vec<Object>,
    skipped: &mut BTreeMap<String, usize>,
) {
    if root.value == Value::Null {
        return; // an empty document (`---` at the end of a file)
    }
    let Value::Map(_) = &root.value else {
        ctx.report(
            codes::NOT_AN_OBJECT,
            Some(root),
            "",
            format!("a document must be a mapping with `kind`, found {}", root.type_name()),
            None,
        );
        return;
    };
    let Some(kind) = root.get("kind").and_then(Node::as_str).or(list.map(|l| l.kind)).map(str::to_string) else {
        ctx.report(
            codes::NOT_AN_OBJECT,
            Some(root),
            "",
            "missing field `kind`",
            Some("every Kubernetes object has `apiVersion` and `kind`".into()),
        );
        return;
    };
    let api_version = root.get("apiVersion").and_then(Node::as_str).or(list.and_then(|l| l.api_version));
    if kind == "List" || kind.ends_with("List") && root.get("items").is_some() {
        let items = root.get("items").map(|n| ctx.list(n, "items")).unwrap_or(&[]);
        let item_type = kinds::item_kind(&kind).map(|kind| ItemType { kind, api_version });
        for item in items {
            decode_document(ctx, item, item_type, objects, skipped);
        }
        return;
    }
    let decoder: Decoder = match kinds::disposition(&kind, api_version) {
        kinds::Disposition::Read => match kind.as_str() {
            "NetworkPolicy" => k8s::network_policy,
            "CiliumNetworkPolicy" => cilium::network_policy,
            "CiliumClusterwideNetworkPolicy" => cilium::clusterwide_network_policy,
            "AdminNetworkPolicy" => adminpolicy::admin_network_policy,
            "BaselineAdminNetworkPolicy" => adminpolicy::baseline_admin_network_policy,
            "ClusterNetworkPolicy" => adminpolicy::cluster_network_policy,
            "Pod" => core::pod,
            "Namespace" => |_, _, _| Some(Body::Namespace),
            "Service" => service::service,
            "Endpoints" => backends::endpoints,
            "EndpointSlice" => backends::endpoint_slice,
            "Node" => core::node,
            _ => workload::workload,
        },
        kinds::Disposition::UnknownApiVersion(versions) => {
            report_unknown_api_version(ctx, root, &kind, api_version, versions);
            *skipped.entry(kind).or_default() += 1;
            return;
        }
        kinds::Disposition::PolicyNotCompiled => {
            ctx.object = Some(peek_display(root, &kind));
            ctx.report(
                codes::POLICY_KIND_NOT_COMPILED,
                Some(root),
                "",
                format!("`{kind}` is not compiled by policyc: its rules are neither checked nor enforced"),
                Some("the bundle enforces the other policies as if this object did not exist".into()),
            );
            ctx.object = None;
            *skipped.entry(kind).or_default() += 1;
            return;
        }
        kinds::Disposition::Other => {
            *skipped.entry(kind).or_default() += 1;
            return;
        }
    };
    let cluster_scoped = matches!(
        kind.as_str(),
        "Namespace"
            | "Node"
            | "CiliumClusterwideNetworkPolicy"
            | "AdminNetworkPolicy"
            | "BaselineAdminNetworkPolicy"
            | "ClusterNetworkPolicy"
    );
    let Some(meta) = decode_meta(ctx, root, &kind, cluster_scoped) else { return };
    ctx.object = Some(meta.display());
    if let Some(body) = decoder(ctx, &meta, root) {
        objects.push(Object { meta, body });
    }
    ctx.object = None;
}

/// Warns that an object of a kind policyc reads is skipped because of its
/// `apiVersion` (missing, misspelt, or a version policyc does not read).
fn report_unknown_api_version(ctx: &mut Ctx, root: &Node, kind: &str, api_version: Option<&str>, versions: &[&str]) {
    ctx.object = Some(peek_display(root, kind));
    let known = versions.iter().map(|v| format!("`{v}`")).collect::<Vec<_>>().join(", ");
    match (api_version, kinds::misspelt_api_version(root)) {
        (None, Some(key)) => {
            let written = key.as_str().unwrap_or_default();
            ctx.report(
                codes::UNKNOWN_API_VERSION,
                Some(key),
                written,
                format!("`{kind}` has `{written}` instead of `apiVersion`; the object is skipped"),
                Some("did you mean `apiVersion`?".into()),
            );
        }
        (None, None) => ctx.report(
            codes::UNKNOWN_API_VERSION,
            Some(root),
            "",
            format!("`{kind}` has no `apiVersion`; the object is skipped"),
            Some(format!("policyc reads `{kind}` as {known}")),
        ),
        (Some(v), _) => {
            let at = root.get("apiVersion");
            let help = did_you_mean(v, versions.iter().copied())
                .map(|s| format!("did you mean `{s}`?"))
                .unwrap_or_else(|| format!("policyc reads `{kind}` as {known}"));
            ctx.report(
                codes::UNKNOWN_API_VERSION,
                at,
                "apiVersion",
                format!("`{kind}` of `apiVersion: {v}` is not one policyc reads; the object is skipped"),
                Some(help),
            );
        }
    }
    ctx.object = None;
}

/// `Kind namespace/name` of an object that is not decoded, from what its
/// metadata holds, for diagnostics about it.
fn peek_display(root: &Node, kind: &str) -> String {
    let md = root.get("metadata");
    let name = md.and_then(|m| m.get("name")).and_then(Node::scalar_text).unwrap_or_else(|| "<unnamed>".into());
    match md.and_then(|m| m.get("namespace")).and_then(Node::scalar_text) {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
}

fn decode_meta(ctx: &mut Ctx, root: &Node, kind: &str, cluster_scoped: bool) -> Option<Meta> {
    let location = ctx.location("", Some(root.pos));
    let Some(md) = root.get("metadata") else {
        ctx.report(codes::MISSING_FIELD, Some(root), "", format!("`{kind}` has no `metadata`"), None);
        return None;
    };
    let fields = ctx.fields(
        md,
        "metadata",
        &[
            "name",
            "namespace",
            "labels",
            "annotations",
            "ownerReferences",
            "uid",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "deletionTimestamp",
            "selfLink",
            "generateName",
            "managedFields",
            "finalizers",
            "deletionGracePeriodSeconds",
        ],
    )?;
    let name = match fields.get("name") {
        Some(n) => ctx.text(n, "metadata.name")?,
        None => {
            ctx.report(codes::MISSING_FIELD, Some(md), "metadata", "missing field `name`", None);
            return None;
        }
    };
    if name.len() > MAX_NAME {
        let message = format!("name of {} characters is longer than the {MAX_NAME} Kubernetes accepts", name.len());
        ctx.report(codes::NAME_TOO_LONG, fields.get("name"), "metadata.name", message, None);
    } else if let Err(why) = check_object_name(&name) {
        ctx.report(
            codes::INVALID_NAME,
            fields.get("name"),
            "metadata.name",
            format!("invalid name `{name}`: {why}"),
            None,
        );
    }
    let namespace = match fields.get("namespace") {
        Some(n) => ctx.text(n, "metadata.namespace"),
        None => None,
    };
    if let Some(ns) = &namespace {
        if ns.len() > MAX_NAMESPACE {
            let message =
                format!("namespace of {} characters is longer than the {MAX_NAMESPACE} Kubernetes accepts", ns.len());
            ctx.report(codes::NAME_TOO_LONG, fields.get("namespace"), "metadata.namespace", message, None);
        } else if let Err(why) = check_dns_label(ns) {
            let at = fields.get("namespace");
            ctx.report(codes::INVALID_NAME, at, "metadata.namespace", format!("invalid namespace `{ns}`: {why}"), None);
        }
    }
    let namespace = if cluster_scoped { None } else { Some(namespace.unwrap_or_else(|| "default".to_string())) };
    let labels = fields.get("labels").map(|l| ctx.labels(l, "metadata.labels", plain_key)).unwrap_or_default();
    let owner = fields.get("ownerReferences").and_then(|refs| {
        let refs = ctx.list(refs, "metadata.ownerReferences");
        let owners: Vec<(String, String, bool)> = refs
            .iter()
            .filter_map(|r| {
                let kind = r.get("kind")?.as_str()?.to_string();
                let name = r.get("name")?.scalar_text()?;
                let controller = r.get("controller").map(|c| c.value == Value::Bool(true)).unwrap_or(false);
                Some((kind, name, controller))
            })
            .collect();
        owners
            .iter()
            .find(|o| o.2)
            .or(if owners.len() == 1 { owners.first() } else { None })
            .map(|(k, n, _)| (k.clone(), n.clone()))
    });
    let ignored_codes = fields
        .get("annotations")
        .and_then(|a| a.get(IGNORE_ANNOTATION))
        .and_then(Node::as_str)
        .map(|codes| codes.split(',').map(|c| c.trim().to_string()).filter(|c| !c.is_empty()).collect())
        .unwrap_or_default();
    let start = spans::start(root);
    let name_pos = spans::key_pos(md, "name").unwrap_or(start);
    Some(Meta { kind: kind.to_string(), namespace, name, labels, owner, ignored_codes, location, start, name_pos })
}

/// The longest object name the API server accepts (a DNS-1123 subdomain).
pub const MAX_NAME: usize = 253;
/// The longest namespace name it accepts (a DNS-1123 label).
pub const MAX_NAMESPACE: usize = 63;

/// Checks an object name as a DNS-1123 subdomain: at most 253 lower-case
/// alphanumerics, `-` and `.`, starting and ending alphanumeric.
pub fn check_object_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err("names are lower-case alphanumerics, `-` and `.`, starting and ending alphanumeric".into())
    }
}

/// Checks a namespace name as a DNS-1123 label: a name of at most 63
/// characters without `.`.
pub fn check_dns_label(name: &str) -> Result<(), String> {
    if name.len() > 63 || name.contains('.') {
        return Err("namespaces are at most 63 characters, without `.`".into());
    }
    check_object_name(name)
}

/// `spec` of an object, reported when missing.
pub fn spec<'n>(ctx: &mut Ctx, root: &'n Node) -> Option<&'n Node> {
    let s = root.get("spec");
    if s.is_none() {
        ctx.report(codes::MISSING_FIELD, Some(root), "", "missing field `spec`", None);
    }
    s
}

/// What the front end's unit tests share.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::{Body, Input};
    use crate::diag::Diagnostic;

    /// The bodies and diagnostics of one file `t.yaml` holding `text`.
    pub(crate) fn parse(text: &str) -> (Vec<Body>, Vec<Diagnostic>) {
        let mut input = Input::default();
        input.add_source("t.yaml", text.to_string());
        (input.objects.into_iter().map(|o| o.body).collect(), input.diagnostics)
    }
}
