//! Core objects: `Pod`, `Service`, `Endpoints`, `EndpointSlice`, `Node`.
use super::{decode::Ctx, yaml::Node, Body, Meta};

/// Decodes a `Pod` (placeholder until the decoder lands).
pub fn pod(_ctx: &mut Ctx, _meta: &Meta, _root: &Node) -> Option<Body> {
    None
}
/// Decodes a `Service` (placeholder until the decoder lands).
pub fn service(_ctx: &mut Ctx, _meta: &Meta, _root: &Node) -> Option<Body> {
    None
}
/// Decodes an `Endpoints` (placeholder until the decoder lands).
pub fn endpoints(_ctx: &mut Ctx, _meta: &Meta, _root: &Node) -> Option<Body> {
    None
}
/// Decodes an `EndpointSlice` (placeholder until the decoder lands).
pub fn endpoint_slice(_ctx: &mut Ctx, _meta: &Meta, _root: &Node) -> Option<Body> {
    None
}
/// Decodes a `Node` (placeholder until the decoder lands).
pub fn node(_ctx: &mut Ctx, _meta: &Meta, _root: &Node) -> Option<Body> {
    None
}
