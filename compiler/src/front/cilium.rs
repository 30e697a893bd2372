//! `cilium.io/v2` `CiliumNetworkPolicy` and `CiliumClusterwideNetworkPolicy`.
use super::{decode::Ctx, yaml::Node, Body, Meta};

/// Decodes a `CiliumNetworkPolicy` (placeholder until the decoder lands).
pub fn network_policy(_ctx: &mut Ctx, _meta: &Meta, _root: &Node) -> Option<Body> {
    None
}

/// Decodes a `CiliumClusterwideNetworkPolicy` (placeholder until the decoder lands).
pub fn clusterwide_network_policy(_ctx: &mut Ctx, _meta: &Meta, _root: &Node) -> Option<Body> {
    None
}
