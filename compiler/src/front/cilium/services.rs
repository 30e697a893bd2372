//! `toServices` entries: which Services a rule names. They are resolved
//! at lowering (`crate::lower::services`), once every Service and
//! EndpointSlice of the input is known.
//!
//! Cilium matches an entry against Services as `serviceMatches`
//! (`pkg/k8s/rule_translate.go`) does: `k8sService` by name,
//! `k8sServiceSelector` by the Service's own labels, each in `namespace`,
//! or in any namespace when `namespace` is empty.

use super::normalize_key;
use crate::front::decode::{join, Ctx};
use crate::front::spans::start;
use crate::front::yaml::{Node, Pos};
use policyc_ir::selector::LabelSelector;
use std::ops::Range;

/// Which Services a `toServices` entry names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceTarget {
    /// `k8sService`: the Service `name`, in `namespace` or in any.
    Name {
        /// `namespace`; `None` (or empty) is any namespace.
        namespace: Option<String>,
        /// `serviceName`.
        name: String,
    },
    /// `k8sServiceSelector`: the Services whose labels `selector` matches.
    Selector {
        /// `namespace`; `None` (or empty) is any namespace.
        namespace: Option<String>,
        /// `selector`.
        selector: LabelSelector,
    },
}

/// A `toServices` entry of one rule, to resolve at lowering.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceRef {
    /// The IR rules (indices into the policy's rules) its rule became.
    pub rules: Range<usize>,
    /// The Services it names.
    pub target: ServiceTarget,
    /// Its field path (`spec.egress[0].toServices[1]`).
    pub path: String,
    /// Where it is written.
    pub pos: Pos,
}

/// Decodes one `toServices` entry at `path`; `None` (reported) if it names
/// no Service.
pub(super) fn decode(ctx: &mut Ctx, node: &Node, path: &str) -> Option<(ServiceTarget, Pos)> {
    let fields = ctx.fields(node, path, &["k8sService", "k8sServiceSelector"])?;
    let namespace = |ctx: &mut Ctx, fields: &crate::front::decode::Fields, path: &str| {
        fields.get("namespace").and_then(|n| ctx.text(n, &join(path, "namespace"))).filter(|n| !n.is_empty())
    };
    if let Some(service) = fields.get("k8sService") {
        let service_path = join(path, "k8sService");
        let inner = ctx.fields(service, &service_path, &["serviceName", "namespace"])?;
        let namespace = namespace(ctx, &inner, &service_path);
        let Some(name) = inner.get("serviceName").and_then(|n| ctx.text(n, &join(&service_path, "serviceName"))) else {
            ctx.report(
                crate::diag::codes::MISSING_FIELD,
                Some(service),
                &service_path,
                "missing field `serviceName`",
                None,
            );
            return None;
        };
        return Some((ServiceTarget::Name { namespace, name }, start(node)));
    }
    if let Some(by_selector) = fields.get("k8sServiceSelector") {
        let selector_path = join(path, "k8sServiceSelector");
        let inner = ctx.fields(by_selector, &selector_path, &["selector", "namespace"])?;
        let namespace = namespace(ctx, &inner, &selector_path);
        let Some(selector_node) = inner.get("selector") else {
            ctx.report(
                crate::diag::codes::MISSING_FIELD,
                Some(by_selector),
                &selector_path,
                "missing field `selector`",
                None,
            );
            return None;
        };
        let selector = ctx.selector(selector_node, &join(&selector_path, "selector"), normalize_key)?;
        return Some((ServiceTarget::Selector { namespace, selector }, start(node)));
    }
    ctx.report(
        crate::diag::codes::MISSING_FIELD,
        Some(node),
        path,
        "missing field `k8sService` or `k8sServiceSelector`",
        Some("name the Service with `k8sService: {serviceName, namespace}`".into()),
    );
    None
}
