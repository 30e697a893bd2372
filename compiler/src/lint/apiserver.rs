//! W0210: an address behind Service `default/kubernetes` that is also a
//! pod's (an API server run on the pod network, as self-hosted and
//! virtual control planes do).
//!
//! Cilium's ipcache holds one identity per address, and state from the
//! `kube-apiserver` source "has the strongest ownership and can only be
//! overwritten by itself" (`pkg/source/source.go`, `AllowOverwrite`): on a
//! Cilium node that address takes an identity with
//! `reserved:kube-apiserver`, and the pod's labels no longer describe it
//! to its peers. policyc names peers, not addresses: a pod is one peer
//! with one identity, in `ir::eval` as in the maps (the ipcache maps the
//! address to the pod's identity, as it does any pod address), so rules
//! that name the pod's labels match it and `kube-apiserver` rules do not
//! (a `toEntities: [kube-apiserver]` allow does not let traffic to it
//! through; such a deny does not drop it). The warning says so, on the
//! pod, so that the difference from a Cilium cluster is never silent.

use crate::diag::{codes, Diagnostic};
use crate::pipeline::Loaded;

/// Warns on each pod with an address behind `default/kubernetes`.
pub fn apiserver_pods(loaded: &Loaded, out: &mut Vec<Diagnostic>) {
    let cluster = &loaded.lowered.cluster;
    for (i, e) in cluster.endpoints.iter().enumerate() {
        let shared: Vec<String> =
            e.ips.iter().filter(|&&ip| cluster.is_apiserver_address(ip)).map(ToString::to_string).collect();
        if shared.is_empty() {
            continue;
        }
        let mut location = loaded.lowered.endpoint_locations.get(i).cloned().unwrap_or_default();
        location.path = Some("metadata.name".to_string());
        location.pos = loaded.lowered.endpoint_name_positions.get(i).copied().or(location.pos);
        out.push(
            Diagnostic::new(
                codes::APISERVER_POD_ADDRESS,
                location,
                format!(
                    "`{}` has `{}`, an address of Service `default/kubernetes`: policyc gives it the pod's identity, \
                     so rules naming `kube-apiserver` do not match it (Cilium's ipcache would give it the \
                     `kube-apiserver` label, which outranks the pod's)",
                    e.display_name(),
                    shared.join("`, `")
                ),
            )
            .with_help(
                "select the API server by its pod labels (`fromEndpoints`/`toEndpoints`, `podSelector`) rather than \
                 the `kube-apiserver` entity, or run it on the host network, where its address is its node's",
            ),
        );
    }
}
