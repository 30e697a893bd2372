//! `toServices` resolved against the input's Services, as Cilium resolves
//! it (<https://docs.cilium.io/en/stable/security/policy/language/#services-based>):
//! - a Service with a selector: "uses the discovered services' label
//!   selector as an endpoint selector within the policy", in the Service's
//!   namespace;
//! - a Service without a selector: "The IPs in the service's
//!   EndpointSlices are converted to CIDR selectors. CIDR selectors cannot
//!   select pods, and that limitation applies here as well" (one /32 or
//!   /128 per address; `pkg/k8s/rule_translate.go`,
//!   `generateToCidrFromEndpoint`).
//!
//! The peers join the rule's other peers (a `toServices` rule has only
//! these: Cilium accepts one kind of peer per rule). An entry that names no
//! Service of the input, or only Services without selector and endpoints,
//! selects nothing, with W0133.

use crate::diag::{codes, Diagnostic, Location};
use crate::front::cilium::services::{ServiceRef, ServiceTarget};
use crate::front::{Body, Input};
use policyc_ir::cidr::Cidr;
use policyc_ir::labels::{Labels, NAMESPACE_LABEL};
use policyc_ir::policy::{Action, Peer, Peers, Policy};
use policyc_ir::selector::{LabelSelector, Requirement};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// The Services of the input, by namespace and name.
#[derive(Debug, Default)]
pub struct Services {
    /// The Service's labels and its selector (`None` without one).
    by_name: BTreeMap<(String, String), (Labels, Option<Labels>)>,
    /// The addresses of every Service's EndpointSlices and Endpoints.
    addresses: BTreeMap<(String, String), BTreeSet<IpAddr>>,
}

impl Services {
    /// The Services, EndpointSlices and Endpoints of `input` (duplicates are
    /// skipped, as lowering skips them: `duplicate[i]` for object `i`).
    pub fn of(input: &Input, duplicate: &[bool]) -> Services {
        let mut services = Services::default();
        for (object, _) in input.objects.iter().zip(duplicate).filter(|(_, &d)| !d) {
            let namespace = object.meta.namespace.clone().unwrap_or_else(|| "default".into());
            match &object.body {
                Body::Service(s) => {
                    let key = (namespace, object.meta.name.clone());
                    services.by_name.insert(key, (object.meta.labels.clone(), s.selector.clone()));
                }
                Body::Backends(b) => {
                    services.addresses.entry((namespace, b.service.clone())).or_default().extend(b.ready_addresses());
                }
                _ => {}
            }
        }
        services
    }

    /// The Services `target` names, in order.
    fn matching<'a>(
        &'a self,
        target: &'a ServiceTarget,
    ) -> impl Iterator<Item = (&'a (String, String), &'a Option<Labels>)> {
        self.by_name.iter().filter_map(move |(key, (labels, selector))| {
            let (namespace, wanted) = match target {
                ServiceTarget::Name { namespace, name } => (namespace, &key.1 == name),
                ServiceTarget::Selector { namespace, selector } => (namespace, selector.matches(labels)),
            };
            (wanted && namespace.as_ref().is_none_or(|ns| ns == &key.0)).then_some((key, selector))
        })
    }

    /// The peers `target` stands for.
    fn peers(&self, target: &ServiceTarget) -> Vec<Peer> {
        let mut peers = Vec::new();
        for (key, selector) in self.matching(target) {
            match selector {
                Some(selector) => {
                    let mut s = LabelSelector::everything().with(Requirement::equals(NAMESPACE_LABEL, key.0.clone()));
                    for (k, v) in selector.iter() {
                        s = s.with(Requirement::equals(k, v));
                    }
                    peers.push(Peer::Endpoints(s));
                }
                None => peers.extend(
                    self.addresses
                        .get(key)
                        .into_iter()
                        .flatten()
                        .map(|&ip| Peer::Cidr { cidr: Cidr::host(ip), except: Vec::new() }),
                ),
            }
        }
        peers
    }
}

/// Adds the peers of each of `refs` (entries of `policy`, an object at
/// `location`) to the rules they belong to; W0133 for an entry that
/// selects nothing.
pub fn resolve(
    services: &Services,
    policy: &mut Policy,
    refs: &[ServiceRef],
    location: &Location,
    diags: &mut Vec<Diagnostic>,
) {
    for r in refs {
        let peers = services.peers(&r.target);
        if peers.is_empty() {
            let deny = policy.rules.get(r.rules.start).is_some_and(|rule| rule.action == Action::Deny);
            let effect = if deny { "not dropped: this deny rule drops" } else { "denied: this rule allows" };
            let what = match &r.target {
                ServiceTarget::Name { namespace: Some(ns), name } => format!("Service `{ns}/{name}`"),
                ServiceTarget::Name { namespace: None, name } => format!("Service named `{name}`"),
                ServiceTarget::Selector { .. } => "Service whose labels match the selector".to_string(),
            };
            let mut at = location.clone();
            at.path = Some(r.path.clone());
            at.pos = Some(r.pos);
            diags.push(
                Diagnostic::new(
                    codes::SERVICE_NOT_RESOLVED,
                    at,
                    format!("{effect} nothing for this entry: the input has no {what} with a selector or endpoints"),
                )
                .with_help("add the Service and its EndpointSlices to the input, or name the peers with `toEndpoints`"),
            );
        }
        for rule in &mut policy.rules[r.rules.clone()] {
            if let Peers::Only(list) = &mut rule.peers {
                list.extend(peers.iter().cloned());
            }
        }
    }
}
