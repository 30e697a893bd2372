//! Per-endpoint programs: the datapath templates specialized with the
//! endpoint's settings ([`policyc_ebpf::specialize`]).

use policyc_ebpf::config::EndpointConfig;
use policyc_ebpf::specialize::{specialize, SpecializeError};
use policyc_ebpf::Template;
use policyc_ir::policy_map::PolicyMap;
use policyc_ir::protocol::Direction;

/// The settings of endpoint `endpoint_id` with policy `map`: which lookups
/// its policy needs in each direction.
pub fn endpoint_config(endpoint_id: u16, map: &PolicyMap) -> EndpointConfig {
    let has = |direction: Direction, any: bool| {
        map.entries.iter().any(|e| e.key.direction == direction && e.key.identity.is_any() == any)
    };
    EndpointConfig {
        endpoint_id: u32::from(endpoint_id),
        ingress_by_peer: has(Direction::Ingress, false),
        ingress_any_peer: has(Direction::Ingress, true),
        egress_by_peer: has(Direction::Egress, false),
        egress_any_peer: has(Direction::Egress, true),
    }
}

/// Bundle path of `stem`'s program from `template`.
pub fn program_path(stem: &str, template: Template) -> String {
    format!("programs/{stem}.{}.o", template.suffix())
}

/// Both specialized objects of an endpoint, with their bundle paths.
pub fn endpoint_programs(stem: &str, config: &EndpointConfig) -> Result<Vec<(String, Vec<u8>)>, SpecializeError> {
    Template::ALL.into_iter().map(|t| Ok((program_path(stem, t), specialize(t.bytes(), config)?))).collect()
}
