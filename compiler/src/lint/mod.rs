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

pub(crate) mod locate;
mod peers;
mod ports;
mod selectors;
pub mod shadow;

use crate::diag::{codes, Diagnostic, Location, Severity};
use crate::front::yaml::Node;
use crate::pipeline::Loaded;
use clap::Args;
use locate::Trees;
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
/// at the line and column of the field it is about.
pub fn lint(loaded: &Loaded) -> Vec<Diagnostic> {
    let facts = Facts::new(loaded);
    let trees = Trees::new(&loaded.input.sources);
    let mut out = Vec::new();
    selectors::unmatched_selectors(loaded, &facts, &trees, &mut out);
    selectors::unprotected_pods(loaded, &facts, &mut out);
    selectors::policies_without_effect(loaded, &facts, &mut out);
    ports::undefined_named_ports(loaded, &facts, &trees, &mut out);
    peers::excepts_excluding_all(loaded, &trees, &mut out);
    peers::world_ingress_all_ports(loaded, &trees, &mut out);
    shadow::shadowed_rules_of_policies(loaded, &mut out);
    // Rules name the object (whose location holds the object's position)
    // and the field path; the position becomes the field's.
    for d in &mut out {
        if let Some(pos) = trees.position(&d.location, d.location.path.as_deref()) {
            d.location.pos = Some(pos);
        }
    }
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

/// The location of policy `p`'s object, pointing at `path` inside it.
fn at_policy(loaded: &Loaded, p: usize, path: &str) -> Location {
    let mut location = loaded.lowered.policy_locations.get(p).cloned().unwrap_or_default();
    location.path = Some(path.to_string());
    location
}

/// The source node at `path` in policy `p`'s object, when the source is
/// at hand.
fn policy_node<'t>(loaded: &Loaded, trees: &'t Trees, p: usize, path: &str) -> Option<&'t Node> {
    trees.node(loaded.lowered.policy_locations.get(p)?, path)
}

/// The field path of a policy's subject selector.
fn subject_path(policy: &Policy) -> String {
    match policy.origin.kind {
        PolicyKind::NetworkPolicy => "spec.podSelector".to_string(),
        _ => format!("{}.endpointSelector", policy.origin.spec_path),
    }
}
