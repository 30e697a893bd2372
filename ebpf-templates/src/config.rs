//! An endpoint's settings, and how they split between its stub
//! (`endpoint.c`: its id and which lookups it needs) and the shared body it
//! tail-calls (`include/config.h`: the lookups); [`crate::specialize`]
//! writes them into copies of the objects.

use crate::abi::{LOOKUP_EGRESS_ANY_PEER, LOOKUP_EGRESS_BY_PEER, LOOKUP_INGRESS_ANY_PEER, LOOKUP_INGRESS_BY_PEER};

/// Settings of one endpoint's programs (also as bundle manifests and the
/// loader's record write them, under the same field names).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct EndpointConfig {
    /// The endpoint's id on its node (`config_endpoint_id`, `__u32`).
    pub endpoint_id: u32,
    /// Ingress policy has per-peer entries (`config_ingress_by_peer`).
    pub ingress_by_peer: bool,
    /// Ingress policy has wildcard-peer entries (`config_ingress_any_peer`).
    pub ingress_any_peer: bool,
    /// Egress policy has per-peer entries (`config_egress_by_peer`).
    pub egress_by_peer: bool,
    /// Egress policy has wildcard-peer entries (`config_egress_any_peer`).
    pub egress_any_peer: bool,
}

impl EndpointConfig {
    /// The `LOOKUP_*` bits of `include/abi.h`: which lookups the policy
    /// needs, and so which body the endpoint's stub calls.
    pub fn lookups(&self) -> u8 {
        let bit = |on: bool, bit: u8| if on { bit } else { 0 };
        bit(self.ingress_by_peer, LOOKUP_INGRESS_BY_PEER)
            | bit(self.ingress_any_peer, LOOKUP_INGRESS_ANY_PEER)
            | bit(self.egress_by_peer, LOOKUP_EGRESS_BY_PEER)
            | bit(self.egress_any_peer, LOOKUP_EGRESS_ANY_PEER)
    }

    /// The settings of a body with the `lookups` bits (see
    /// [`EndpointConfig::lookups`]), with no endpoint.
    pub fn of_lookups(lookups: u8) -> EndpointConfig {
        EndpointConfig {
            endpoint_id: 0,
            ingress_by_peer: lookups & LOOKUP_INGRESS_BY_PEER != 0,
            ingress_any_peer: lookups & LOOKUP_INGRESS_ANY_PEER != 0,
            egress_by_peer: lookups & LOOKUP_EGRESS_BY_PEER != 0,
            egress_any_peer: lookups & LOOKUP_EGRESS_ANY_PEER != 0,
        }
    }

    /// `(symbol, bytes)` of the settings of a body (`include/config.h`), in
    /// declaration order: what [`crate::specialize`] writes, and what the
    /// ABI test checks against the `.rodata` of both templates' BTF.
    pub fn body_values(&self) -> Vec<(&'static str, Vec<u8>)> {
        vec![
            ("config_ingress_by_peer", vec![u8::from(self.ingress_by_peer)]),
            ("config_ingress_any_peer", vec![u8::from(self.ingress_any_peer)]),
            ("config_egress_by_peer", vec![u8::from(self.egress_by_peer)]),
            ("config_egress_any_peer", vec![u8::from(self.egress_any_peer)]),
        ]
    }

    /// `(symbol, bytes)` of the settings of the endpoint's stub
    /// (`endpoint.c`), in declaration order (checked like
    /// [`EndpointConfig::body_values`], against `endpoint.o`).
    pub fn stub_values(&self) -> Vec<(&'static str, Vec<u8>)> {
        vec![("config_endpoint_id", self.endpoint_id.to_ne_bytes().to_vec()), ("config_lookups", vec![self.lookups()])]
    }

    /// Whether `self` makes every lookup `other` makes.
    pub fn covers(&self, other: &EndpointConfig) -> bool {
        (other.ingress_by_peer <= self.ingress_by_peer)
            && (other.ingress_any_peer <= self.ingress_any_peer)
            && (other.egress_by_peer <= self.egress_by_peer)
            && (other.egress_any_peer <= self.egress_any_peer)
    }

    /// The union of two configurations' lookups (same endpoint id as
    /// `self`): a program built from it judges either's maps correctly,
    /// since a setting only ever enables a lookup.
    pub fn union(&self, other: &EndpointConfig) -> EndpointConfig {
        EndpointConfig {
            endpoint_id: self.endpoint_id,
            ingress_by_peer: self.ingress_by_peer || other.ingress_by_peer,
            ingress_any_peer: self.ingress_any_peer || other.ingress_any_peer,
            egress_by_peer: self.egress_by_peer || other.egress_by_peer,
            egress_any_peer: self.egress_any_peer || other.egress_any_peer,
        }
    }
}
