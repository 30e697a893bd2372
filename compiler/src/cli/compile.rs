//! `policyc compile`: check, resolve and emit a bundle per node.

use super::{report, CompileArgs, EXIT_ERRORS, EXIT_OK, EXIT_USAGE};
use crate::diag::render::render;
use crate::diag::{codes, Diagnostic, Location};
use crate::emit::maps::{policy_file_stem, read_identity_table};
use crate::emit::{emit, Bundle, BundleOptions, CapacityError, EmitError};
use crate::pipeline::{load, Loaded};
use policyc_ir::resolve::{resolve_with_previous, Resolved};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Runs `compile`.
pub fn run(args: &CompileArgs) -> u8 {
    let loaded = load(&args.paths);
    if report(&loaded, args.format) {
        return EXIT_ERRORS;
    }
    let previous = match &args.previous {
        Some(dir) => {
            let path = dir.join("maps/identities.txt");
            match std::fs::read_to_string(&path).map_err(|e| e.to_string()).and_then(|t| read_identity_table(&t)) {
                Ok(table) => Some(table),
                Err(e) => {
                    eprintln!("error: cannot read the previous identities `{}`: {e}", path.display());
                    return EXIT_USAGE;
                }
            }
        }
        None => None,
    };
    let cluster = &loaded.lowered.cluster;
    let resolved = resolve_with_previous(cluster, previous.as_ref());
    let options = BundleOptions { policy_map_capacity: args.policy_map_capacity, source_hash: source_hash(&loaded) };
    let bundles = match emit(cluster, &resolved, args.node.as_deref(), &options) {
        Ok(b) => b,
        Err(EmitError::Capacity(c)) => {
            let d = capacity_diagnostic(&loaded, &resolved, &c);
            eprint!("{}", render(&[d], args.format, &loaded.input.sources));
            return EXIT_ERRORS;
        }
        Err(EmitError::UnknownNode(node)) => {
            let known = crate::emit::node_names(cluster);
            let hint = crate::diag::did_you_mean(&node, known.iter().map(String::as_str))
                .map(|s| format!("did you mean `{s}`?"))
                .unwrap_or_else(|| format!("nodes in the input: {}", known.join(", ")));
            let d = Diagnostic::new(codes::UNKNOWN_NODE, Location::default(), format!("no node `{node}` in the input"))
                .with_help(hint);
            eprint!("{}", render(&[d], args.format, &loaded.input.sources));
            return EXIT_ERRORS;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_ERRORS;
        }
    };
    eprint!("{}", summary(&loaded, &resolved, &bundles));
    if args.dry_run {
        eprintln!("dry run: nothing written");
        return EXIT_OK;
    }
    let out = args.out.as_ref().expect("clap requires --out without --dry-run");
    for bundle in &bundles {
        let dir = out.join(&bundle.node);
        if let Err(e) = bundle.write_to(&dir) {
            eprintln!("error: {e}");
            return EXIT_ERRORS;
        }
        eprintln!("wrote {}", dir.display());
    }
    EXIT_OK
}

/// SHA-256 of the input texts in source order (files sorted by path).
/// Paths are left out so that the same manifests compiled from another
/// directory give the same bundle.
pub fn source_hash(loaded: &Loaded) -> String {
    let mut h = Sha256::new();
    for text in loaded.input.sources.values() {
        h.update((text.len() as u64).to_le_bytes());
        h.update(text.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// What a compile produced, per node.
fn summary(loaded: &Loaded, resolved: &Resolved, bundles: &[Bundle]) -> String {
    let c = &loaded.lowered.cluster;
    let mut out = format!(
        "{} endpoint(s), {} policy spec(s), {} identities ({} cluster-local, {} CIDR), {} ipcache entries\n",
        c.endpoints.len(),
        c.policies.len(),
        resolved.identities.len(),
        resolved.table.len(),
        resolved.cidr_identities.len(),
        resolved.ipcache.len()
    );
    for b in bundles {
        let local: Vec<_> = resolved.endpoints.iter().filter(|e| e.node.as_deref() == Some(b.node.as_str())).collect();
        let entries: usize = local.iter().map(|e| e.policy.entries.len()).sum();
        let largest = local.iter().map(|e| e.policy.entries.len()).max().unwrap_or(0);
        let bytes: usize =
            b.files.values().map(String::len).sum::<usize>() + b.programs.values().map(Vec::len).sum::<usize>();
        out.push_str(&format!(
            "node {}: {} local endpoint(s), {entries} policy entries (largest map {largest}), {} program(s), {} file(s), {bytes} bytes\n",
            b.node,
            local.len(),
            b.programs.len(),
            b.files.len() + b.programs.len()
        ));
    }
    out
}

/// A capacity overflow as a diagnostic that names the endpoint and the
/// policies whose rules fill its map.
fn capacity_diagnostic(loaded: &Loaded, resolved: &Resolved, c: &CapacityError) -> Diagnostic {
    let c_map = c.map.strip_prefix("policy/").unwrap_or(&c.map);
    let endpoint = resolved.endpoints.iter().find(|e| {
        e.node.as_deref() == Some(c.node.as_str()) && policy_file_stem(&loaded.lowered.cluster, e.index) == c_map
    });
    let mut per_policy: BTreeMap<usize, usize> = BTreeMap::new();
    let mut location = Location::default();
    if let Some(e) = endpoint {
        for entry in &e.policy.entries {
            for r in &entry.rules {
                *per_policy.entry(r.policy).or_default() += 1;
            }
        }
        location = loaded.lowered.endpoint_locations.get(e.index).cloned().unwrap_or_default();
    }
    let mut ranked: Vec<(usize, usize)> = per_policy.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let cluster = &loaded.lowered.cluster;
    let names: Vec<String> =
        ranked.iter().take(5).map(|(p, n)| format!("{} ({n} entries)", cluster.policies[*p].origin)).collect();
    let who = endpoint.map(|e| e.name.clone()).unwrap_or_else(|| c.map.clone());
    Diagnostic::new(
        codes::POLICY_MAP_CAPACITY,
        location,
        format!("the policy map of `{who}` on node `{}` needs {} entries but holds {}", c.node, c.entries, c.capacity),
    )
    .with_help(format!(
        "the largest contributors: {}; narrow their peers or port ranges, or raise --policy-map-capacity",
        if names.is_empty() { "unknown".to_string() } else { names.join(", ") }
    ))
}
