//! The port parts of admin rules: v1alpha1 `ports` items (`portNumber`,
//! `portRange`, `namedPort`) and v1alpha2 `protocols` items (`tcp`, `udp`,
//! `sctp` with an optional `destinationPort`, or `destinationNamedPort`).

use super::one_of;
use crate::diag::codes;
use crate::front::decode::{check_port_name, join, Ctx};
use crate::front::k8s::protocol;
use crate::front::yaml::Node;
use policyc_ir::policy::{PortMatch, PortSpec};
use policyc_ir::protocol::{PortRange, Protocol};

/// One v1alpha1 `ports` item (`AdminNetworkPolicyPort`, exactly one field).
pub fn port_v1alpha1(ctx: &mut Ctx, node: &Node, path: &str) -> Option<PortMatch> {
    let (key, value) = one_of(ctx, node, path, &["portNumber", "portRange", "namedPort"])?;
    let path = join(path, &key);
    match key.as_str() {
        "portNumber" => {
            let fields = ctx.fields(value, &path, &["protocol", "port"])?;
            let proto = transport(ctx, fields.get("protocol"), &path);
            let port = ctx.required(&fields, "port", value, &path).and_then(|n| number(ctx, n, &join(&path, "port")));
            Some(PortMatch { protocol: Some(proto?), ports: PortSpec::Range(PortRange::single(port?)) })
        }
        "portRange" => {
            let fields = ctx.fields(value, &path, &["protocol", "start", "end"])?;
            let proto = transport(ctx, fields.get("protocol"), &path);
            let range = range(ctx, value, &fields, &path);
            Some(PortMatch { protocol: Some(proto?), ports: PortSpec::Range(range?) })
        }
        _ => named(ctx, value, &path),
    }
}

/// One v1alpha2 `protocols` item (`ClusterNetworkPolicyProtocol`).
pub fn protocol_v1alpha2(ctx: &mut Ctx, node: &Node, path: &str) -> Option<PortMatch> {
    let (key, value) = one_of(ctx, node, path, &["tcp", "udp", "sctp", "destinationNamedPort"])?;
    let path = join(path, &key);
    let proto = match key.as_str() {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        "sctp" => Protocol::Sctp,
        _ => return named(ctx, value, &path),
    };
    let fields = ctx.fields(value, &path, &["destinationPort"])?;
    // Without `destinationPort`, every port of the protocol.
    let Some(port) = fields.get("destinationPort") else {
        return Some(PortMatch { protocol: Some(proto), ports: PortSpec::All });
    };
    let port_path = join(&path, "destinationPort");
    let (which, value) = one_of(ctx, port, &port_path, &["number", "range"])?;
    let at = join(&port_path, &which);
    let ports = if which == "number" {
        PortRange::single(number(ctx, value, &at)?)
    } else {
        let fields = ctx.fields(value, &at, &["start", "end"])?;
        range(ctx, value, &fields, &at)?
    };
    Some(PortMatch { protocol: Some(proto), ports: PortSpec::Range(ports) })
}

/// `protocol` of a v1alpha1 port: `TCP` when absent ("If not specified,
/// this field defaults to TCP", `Port.Protocol` in `apis/v1alpha1`).
fn transport(ctx: &mut Ctx, node: Option<&Node>, path: &str) -> Option<Protocol> {
    match node {
        Some(n) => protocol(ctx, n, &join(path, "protocol")),
        None => Some(Protocol::Tcp),
    }
}

fn number(ctx: &mut Ctx, node: &Node, path: &str) -> Option<u16> {
    let n = ctx.int(node, path)?;
    if !(1..=65535).contains(&n) {
        ctx.report(
            codes::PORT_OUT_OF_RANGE,
            Some(node),
            path,
            format!("port `{n}` is out of range"),
            Some("ports are 1-65535".into()),
        );
        return None;
    }
    Some(n as u16)
}

/// `start` and `end`, with `start < end` ("the Start value must be less
/// than End", `PortRange` in `apis/v1alpha1`).
fn range(ctx: &mut Ctx, node: &Node, fields: &crate::front::decode::Fields, path: &str) -> Option<PortRange> {
    let start = ctx.required(fields, "start", node, path).and_then(|n| number(ctx, n, &join(path, "start")));
    let end = ctx.required(fields, "end", node, path).and_then(|n| number(ctx, n, &join(path, "end")));
    let (lo, hi) = (start?, end?);
    if lo >= hi {
        ctx.report(
            codes::ADMIN_PORT_RANGE,
            fields.get("end"),
            &join(path, "end"),
            format!("`end` `{hi}` is not above `start` `{lo}`"),
            Some("a range needs `start` < `end`; for one port use a port number".into()),
        );
        return None;
    }
    Some(PortRange { lo, hi })
}

/// A named port: the destination pod's container port of that name, for
/// whichever protocol the container port has.
fn named(ctx: &mut Ctx, node: &Node, path: &str) -> Option<PortMatch> {
    let name = ctx.string(node, path)?;
    if let Err(why) = check_port_name(name) {
        ctx.report(codes::INVALID_PORT_NAME, Some(node), path, format!("invalid port name `{name}`: {why}"), None);
        return None;
    }
    Some(PortMatch { protocol: None, ports: PortSpec::Named(name.to_string()) })
}
