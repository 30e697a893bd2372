//! The per-endpoint settings of `include/config.h`, which
//! [`crate::specialize`] writes into a copy of a template.

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
    /// `(symbol, bytes)` of every setting, in declaration order.
    pub fn values(&self) -> [(&'static str, Vec<u8>); 5] {
        [
            ("config_endpoint_id", self.endpoint_id.to_ne_bytes().to_vec()),
            ("config_ingress_by_peer", vec![u8::from(self.ingress_by_peer)]),
            ("config_ingress_any_peer", vec![u8::from(self.ingress_any_peer)]),
            ("config_egress_by_peer", vec![u8::from(self.egress_by_peer)]),
            ("config_egress_any_peer", vec![u8::from(self.egress_any_peer)]),
        ]
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
