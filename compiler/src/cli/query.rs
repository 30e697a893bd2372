//! How `--from`/`--to` name endpoints: a display name (`ns/pod`,
//! `ns/name[Kind]`) or a selector query ([`crate::select`]).

use crate::select::{matching_endpoints, parse_selector};
use policyc_ir::cluster::Cluster;
use policyc_ir::ids::EndpointId;

/// Whether `arg` reads as an endpoint name rather than a selector: it has a
/// `/` and none of the selector operators or separators.
fn looks_like_name(arg: &str) -> bool {
    arg.contains('/') && !arg.contains(['=', '!', '(', ',', ' '])
}

/// The endpoints `arg` names, in cluster order; an error message (for
/// exit code 2) if it names none or is a malformed selector.
pub fn endpoints(cluster: &Cluster, arg: &str, flag: &str) -> Result<Vec<EndpointId>, String> {
    if let Some(i) = cluster.endpoint_by_name(arg) {
        return Ok(vec![i]);
    }
    if looks_like_name(arg) {
        let names: Vec<String> = cluster.endpoints.iter().map(|e| e.display_name()).collect();
        let hint = crate::diag::did_you_mean(arg, names.iter().map(String::as_str))
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_default();
        return Err(format!("{flag} `{arg}` is not an endpoint of the input{hint}"));
    }
    let selector = parse_selector(arg).map_err(|e| format!("{flag}: {e}"))?;
    let found = matching_endpoints(cluster, &selector);
    if found.is_empty() {
        return Err(format!("{flag} selector `{arg}` matches no endpoint of the input"));
    }
    Ok(found)
}
