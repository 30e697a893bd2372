//! Programs: the datapath templates a bundle carries, and each endpoint's
//! settings, which the loader writes into its copy of them
//! ([`policyc_ebpf::specialize`]).

use policyc_ebpf::config::EndpointConfig;
use policyc_ebpf::Template;
use policyc_ir::policy_map::PolicyMap;
use policyc_ir::protocol::Direction;

/// Which lookups policy `map` needs in each direction: the settings of the
/// programs of an endpoint with that policy, but for its endpoint id (0).
pub fn lookups(map: &PolicyMap) -> EndpointConfig {
    let has = |direction: Direction, any: bool| {
        map.entries.iter().any(|e| e.key.direction == direction && e.key.identity.is_any() == any)
    };
    EndpointConfig {
        endpoint_id: 0,
        ingress_by_peer: has(Direction::Ingress, false),
        ingress_any_peer: has(Direction::Ingress, true),
        egress_by_peer: has(Direction::Egress, false),
        egress_any_peer: has(Direction::Egress, true),
    }
}

/// Bundle path of `template`.
pub fn template_path(template: Template) -> String {
    format!("programs/{}.o", template.program_name())
}

/// The templates with their bundle paths.
pub fn templates() -> Vec<(String, &'static [u8])> {
    Template::ALL.into_iter().map(|t| (template_path(t), t.bytes())).collect()
}
