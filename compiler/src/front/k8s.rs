//! `networking.k8s.io/v1` `NetworkPolicy`.
use super::{decode::Ctx, yaml::Node, Body, Meta};

/// Decodes a `NetworkPolicy` (placeholder until the decoder lands).
pub fn network_policy(_ctx: &mut Ctx, _meta: &Meta, _root: &Node) -> Option<Body> {
    None
}
