//! Lint rules beyond validity: manifests that are well-formed but very
//! likely not what their author meant (a selector with a typo, a pod left
//! open in a locked-down namespace, a port name no pod has, ...).
//!
//! Each rule is a function over the loaded, lowered input that returns
//! warnings with a stable code (`W02xx` in [`crate::diag::codes`]). They
//! run from `policyc lint` and `policyc compile` ([`run`]), not from every
//! command, so `trace` and `connectivity` stay quiet.
//!
//! A warning is silenced on one object by the annotation
//! `policyc.io/ignore: W0201,W0204` ([`crate::front::IGNORE_ANNOTATION`]),
//! or everywhere by `--allow W0201`; `--deny-warnings` makes any remaining
//! warning fail the command (exit 1), for strict CI.
//!
//! Rules that look at which endpoints a selector matches only run when the
//! input has endpoints at all: a repository of policies without pods or
//! workloads would otherwise warn on every selector.

mod apiserver;
mod peers;
mod ports;
mod selectors;
mod services;
pub mod shadow;
mod tiers;

use crate::diag::{codes, Diagnostic, Location, Severity};
use crate::front::spans::{Cited, RuleSpans};
use crate::front::yaml::Pos;
use crate::pipeline::Loaded;
use clap::Args;
use policyc_ir::ids::{PolicyId, RuleRef};
use policyc_ir::labels::Labels;
use policyc_ir::policy::{Policy, PolicyKind, Subject};
use policyc_ir::selector::LabelSelector;
use policyc_ir::selector_index::SelectorIndex;
use std::collections::{BTreeMap, BTreeSet};

/// Command-line settings of the lint rules.
#[derive(Clone, Debug, Default, Args)]
pub struct LintOptions {
    /// Silence a warning code everywhere (repeatable, or comma-separated:
    /// `--allow W0201,W0202`).
    #[arg(long = "allow", value_name = "CODE", value_delimiter = ',')]
    pub allow: Vec<String>,
    /// Fail (exit 1) on any warning that is not silenced.
    #[arg(long)]
    pub deny_warnings: bool,
}

/// Why lint options cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LintOptionsError {
    /// The code given to `--allow`.
    pub code: String,
    /// Why it is refused.
    pub reason: String,
}

impl std::fmt::Display for LintOptionsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "--allow `{}`: {}", self.code, self.reason)
    }
}

impl LintOptions {
    /// Checks that every `--allow` names a warning code.
    pub fn check(&self) -> Result<(), LintOptionsError> {
        for code in &self.allow {
            match codes::ALL.iter().find(|c| c.id == code.as_str()) {
                Some(c) if c.id.starts_with('W') => {}
                Some(_) => {
                    return Err(LintOptionsError {
                        code: code.clone(),
                        reason: "errors cannot be silenced, only warnings".into(),
                    })
                }
                None => {
                    let hint = crate::diag::did_you_mean(code, codes::ALL.iter().map(|c| c.id))
                        .map(|s| format!("; did you mean `{s}`?"))
                        .unwrap_or_default();
                    return Err(LintOptionsError { code: code.clone(), reason: format!("no such code{hint}") });
                }
            }
        }
        Ok(())
    }
}

/// What several rules need: which endpoints a selector matches, through a
/// [`SelectorIndex`] over the distinct label sets (a large cluster has
/// thousands of pods but far fewer label sets), and each policy's subject
/// endpoints.
struct Facts {
    index: SelectorIndex,
    /// Per indexed label set, the endpoints carrying it.
    endpoints_of: Vec<Vec<usize>>,
    /// Per policy, the endpoints its subject selects, in order.
    subjects: Vec<Vec<usize>>,
}

impl Facts {
    fn new(loaded: &Loaded) -> Facts {
        let cluster = &loaded.lowered.cluster;
        let mut sets: BTreeMap<&Labels, Vec<usize>> = BTreeMap::new();
        for (i, e) in cluster.endpoints.iter().enumerate() {
            sets.entry(&e.labels).or_default().push(i);
        }
        let index = SelectorIndex::new(sets.keys().copied());
        let endpoints_of: Vec<Vec<usize>> = sets.into_values().collect();
        let mut facts = Facts { index, endpoints_of, subjects: Vec::new() };
        facts.subjects = cluster
            .policies
            .iter()
            .map(|policy| match &policy.subject {
                Subject::Endpoints(selector) => facts.endpoints(selector),
                Subject::Nodes(_) => Vec::new(),
            })
            .collect();
        facts
    }

    /// The endpoints `selector` matches, in order.
    fn endpoints(&self, selector: &LabelSelector) -> Vec<usize> {
        let mut out: Vec<usize> =
            self.index.matching(selector).iter().flat_map(|set| self.endpoints_of[set].iter().copied()).collect();
        out.sort_unstable();
        out
    }

    /// Whether `selector` matches any endpoint.
    fn matches_any(&self, selector: &LabelSelector) -> bool {
        !self.index.matching(selector).is_empty()
    }
}

/// Every lint rule's warnings on `loaded`, before silencing. Each points
/// at the line and column of the field it is about, as the front end
/// recorded them.
pub fn lint(loaded: &Loaded) -> Vec<Diagnostic> {
    let facts = Facts::new(loaded);
    let mut out = Vec::new();
    selectors::unmatched_selectors(loaded, &facts, &mut out);
    selectors::unprotected_pods(loaded, &facts, &mut out);
    selectors::policies_without_effect(loaded, &facts, &mut out);
    ports::undefined_named_ports(loaded, &facts, &mut out);
    peers::excepts_excluding_all(loaded, &mut out);
    peers::world_ingress_all_ports(loaded, &mut out);
    shadow::shadowed_rules_of_policies(loaded, &mut out);
    tiers::priority_ties(loaded, &facts, &mut out);
    services::services(loaded, &mut out);
    apiserver::apiserver_pods(loaded, &mut out);
    out
}

/// An object by file, document and `Kind namespace/name`.
type ObjectKey<'a> = (Option<&'a str>, Option<usize>, String);

/// Adds the lint rules' warnings to `loaded.diagnostics` and removes every
/// warning silenced by an annotation on its object or by `--allow`.
pub fn run(loaded: &mut Loaded, options: &LintOptions) {
    let found = lint(loaded);
    loaded.diagnostics.extend(found);
    // Annotations by file, document and object: the items of a `List`
    // share a document, and one item's annotation is not another's.
    let ignored: BTreeMap<ObjectKey, &[String]> = loaded
        .input
        .objects
        .iter()
        .filter(|o| !o.meta.ignored_codes.is_empty())
        .map(|o| {
            let location = &o.meta.location;
            ((location.file.as_deref(), location.document, o.meta.display()), o.meta.ignored_codes.as_slice())
        })
        .collect();
    let allowed: BTreeSet<&str> = options.allow.iter().map(String::as_str).collect();
    loaded.diagnostics.retain(|d| {
        if d.severity != Severity::Warning {
            return true;
        }
        let (file, document) = (d.location.file.as_deref(), d.location.document);
        let silences = |codes: &&[String]| codes.iter().any(|c| c == d.code.id);
        let on_object = match &d.location.object {
            Some(object) => ignored.get(&(file, document, object.clone())).is_some_and(silences),
            // Found before the object was named (in its `metadata`): any
            // annotation of its document.
            None => ignored.iter().any(|((f, doc, _), codes)| (*f, *doc) == (file, document) && silences(codes)),
        };
        !on_object && !allowed.contains(d.code.id)
    });
    loaded.diagnostics.sort();
    loaded.diagnostics.dedup();
}

/// Whether the command fails: errors, or warnings under `--deny-warnings`.
pub fn fails(loaded: &Loaded, options: &LintOptions) -> bool {
    loaded.has_errors() || (options.deny_warnings && !loaded.diagnostics.is_empty())
}

/// The location of policy `p`'s object, pointing at `path` inside it,
/// which is written at `pos` (when the source does not have it, the
/// location points at the object's start).
fn at_policy(loaded: &Loaded, p: PolicyId, path: &str, pos: Option<Pos>) -> Location {
    let mut location = loaded.lowered.policy_locations.get(p.index()).cloned().unwrap_or_default();
    location.path = Some(path.to_string());
    if let Some(at) = pos.or_else(|| Some(loaded.lowered.policy_spans.get(p.index())?.object)) {
        location.pos = Some(at);
    }
    location
}

/// Where rule `r` and its parts are written.
fn rule_spans(loaded: &Loaded, r: RuleRef) -> Option<&RuleSpans> {
    loaded.lowered.policy_spans.get(r.policy.index())?.rules.get(r.rule_index())
}

/// The location of rule `r`, pointing at the first part of
/// it, in source order, that `found` picks (and gives a path and position
/// for); at the rule itself when none is picked.
fn at_rule<'a>(loaded: &'a Loaded, r: RuleRef, found: impl Fn(&'a Cited) -> Option<(&'a str, Pos)>) -> Location {
    let rule = loaded.lowered.cluster.rule(r);
    let spans = rule_spans(loaded, r);
    let inside = |c: &&Cited| c.path.strip_prefix(&rule.path).is_some_and(|rest| rest.starts_with(['.', '[']));
    let picked = spans.and_then(|s| s.cited.iter().filter(inside).find_map(found));
    match picked {
        Some((path, pos)) => at_policy(loaded, r.policy, path, Some(pos)),
        None => at_policy(loaded, r.policy, &rule.path, spans.map(|s| s.pos)),
    }
}

/// The field path of a policy's subject selector.
fn subject_path(policy: &Policy) -> String {
    match policy.origin.kind {
        PolicyKind::NetworkPolicy => "spec.podSelector".to_string(),
        _ => format!("{}.endpointSelector", policy.origin.spec_path),
    }
}
