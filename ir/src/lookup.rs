//! The datapath's decision, computed in Rust over the resolved maps: what
//! the BPF programs will do with the first packet of a connection. Tests
//! compare it with [`crate::eval`] (the reference) and with the BPF
//! programs themselves.

use crate::cidr_trie::CidrTrie;
use crate::identity::Identity;
use crate::ids::EndpointId;
use crate::policy_map::MapDecision;
use crate::protocol::{Direction, Protocol};
use crate::resolve::{IpcacheSource, Resolved};
use std::net::IpAddr;

/// A packet, as the programs parse it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Packet {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Protocol.
    pub protocol: Protocol,
    /// Destination port (ICMP type for ICMP).
    pub port: u16,
}

/// One direction's decision, with the lookups that led to it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SideVerdict {
    /// The endpoint whose policy map decided.
    pub endpoint: EndpointId,
    /// The peer's identity from the subject's node's ipcache.
    pub peer: Identity,
    /// The policy map's decision.
    pub decision: MapDecision,
}

/// The datapath's verdict on a packet.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PacketVerdict {
    /// Source identity from the ipcache (node addresses as `remote-node`).
    pub src_identity: Option<Identity>,
    /// Destination identity from the ipcache (node addresses as
    /// `remote-node`).
    pub dst_identity: Option<Identity>,
    /// Egress of the source endpoint, if the source is one.
    pub egress: Option<SideVerdict>,
    /// Ingress of the destination endpoint, if the destination is one.
    pub ingress: Option<SideVerdict>,
}

impl PacketVerdict {
    /// Whether both directions pass.
    pub fn allowed(&self) -> bool {
        self.egress.as_ref().is_none_or(|s| s.decision.passes())
            && self.ingress.as_ref().is_none_or(|s| s.decision.passes())
    }
}

/// The resolved maps, indexed for packet lookups as the datapath indexes
/// them: the ipcache as an LPM trie, endpoints by exact IP.
///
/// Each direction is judged on the node of the endpoint whose policy
/// decides it (the source's node for egress, the destination's for
/// ingress): there the node's own addresses resolve to `host` and the
/// other nodes' to `remote-node`, as the emitter writes each node's ipcache.
#[derive(Clone, Debug)]
pub struct Datapath<'a> {
    resolved: &'a Resolved,
    ipcache: CidrTrie<(Identity, Option<&'a str>)>,
}

impl<'a> Datapath<'a> {
    /// Indexes `resolved`.
    pub fn new(resolved: &'a Resolved) -> Self {
        let ipcache = resolved
            .ipcache
            .iter()
            .map(|e| {
                let node = match &e.source {
                    IpcacheSource::Node(name) => Some(name.as_str()),
                    _ => None,
                };
                (e.prefix, (e.identity, node))
            })
            .collect();
        Datapath { resolved, ipcache }
    }

    /// The identity the ipcache of node `local_node` gives `ip`.
    pub fn identity_of(&self, ip: IpAddr, local_node: Option<&str>) -> Option<Identity> {
        self.ipcache.longest_match(ip).map(|(_, &(id, node))| match node {
            Some(node) if Some(node) == local_node => Identity::HOST,
            _ => id,
        })
    }

    /// Judges `packet`: the source endpoint's egress (if the source is an
    /// endpoint) and the destination endpoint's ingress (if the destination
    /// is one), each from its own policy map on its own node.
    pub fn judge(&self, packet: &Packet) -> PacketVerdict {
        let side = |subject_ip: IpAddr, peer_ip: IpAddr, dir: Direction| {
            let &endpoint = self.resolved.endpoint_ips.get(&subject_ip)?;
            let subject = &self.resolved.endpoints[endpoint.index()];
            // An address the ipcache does not know is world, as the
            // programs treat a miss (the ipcache always holds both /0s).
            let peer = self.identity_of(peer_ip, subject.node.as_deref()).unwrap_or(Identity::WORLD);
            let decision = subject.policy.decide(dir, peer, packet.protocol.number(), packet.port);
            Some(SideVerdict { endpoint, peer, decision })
        };
        PacketVerdict {
            src_identity: self.identity_of(packet.src, None),
            dst_identity: self.identity_of(packet.dst, None),
            egress: side(packet.src, packet.dst, Direction::Egress),
            ingress: side(packet.dst, packet.src, Direction::Ingress),
        }
    }
}

/// Judges `packet` over `resolved` (see [`Datapath::judge`]).
pub fn lookup(resolved: &Resolved, packet: &Packet) -> PacketVerdict {
    Datapath::new(resolved).judge(packet)
}
