//! Workloads standing for their pods.
use super::{decode::Ctx, yaml::Node, Body, Meta};

/// Decodes a workload's pod template (placeholder until the decoder lands).
pub fn workload(_ctx: &mut Ctx, _meta: &Meta, _root: &Node) -> Option<Body> {
    None
}
