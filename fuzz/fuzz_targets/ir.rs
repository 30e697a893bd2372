//! naga's contract on policyc's IR: a `Resolved` that `validate` accepts
//! never makes emission panic (it may fail with an error). The cluster is
//! random (drawn from small vocabularies, so that labels, addresses and
//! nodes collide), resolved, then possibly damaged by random edits, so
//! that both the resolver's output and what lies just outside it reach
//! the validator. The resolver's own output must always validate.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use policyc::emit::{emit, BundleOptions};
use policyc_ir::cidr::{max_len, Cidr};
use policyc_ir::cluster::{Cluster, Endpoint, EndpointKind, NamedPort, Node};
use policyc_ir::identity::Identity;
use policyc_ir::ids::EndpointId;
use policyc_ir::labels::Labels;
use policyc_ir::policy::{
    Action, Entity, L7Rules, Peer, Peers, Policy, PolicyKind, PolicyOrigin, PortMatch, PortSpec, Rule, Subject,
};
use policyc_ir::policy_map::PolicyKey;
use policyc_ir::protocol::{Direction, PortRange, Protocol};
use policyc_ir::resolve::{resolve, IpcacheSource, Resolved};
use policyc_ir::selector::{LabelSelector, Operator, Requirement};
use policyc_ir::validate::validate;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

const NAMESPACES: [&str; 3] = ["default", "prod", "kube-system"];
const KEYS: [&str; 4] = ["app", "tier", "io.kubernetes.pod.namespace", "io.cilium.k8s.policy.serviceaccount"];
const VALUES: [&str; 4] = ["web", "db", "prod", "default"];
const NODES: [&str; 3] = ["node-a", "node-b", "node-c"];
const PORT_NAMES: [&str; 2] = ["http", "dns"];
/// L7 parsers; never empty: lowering names one for every L7 rule.
const PARSERS: [&str; 3] = ["http", "dns", "kafka"];

/// Small numbers, so that collections stay small and values collide.
fn small(u: &mut Unstructured, max: usize) -> arbitrary::Result<usize> {
    u.int_in_range(0..=max)
}

fn pick<T: Copy>(u: &mut Unstructured, from: &[T]) -> arbitrary::Result<T> {
    u.choose(from).copied()
}

fn ip(u: &mut Unstructured) -> arbitrary::Result<IpAddr> {
    Ok(if u.arbitrary()? {
        IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, u.int_in_range(0..=7)?))
    } else {
        IpAddr::V4(Ipv4Addr::new(10, 0, u.int_in_range(0..=1)?, u.int_in_range(0..=7)?))
    })
}

fn cidr(u: &mut Unstructured) -> arbitrary::Result<Cidr> {
    let addr = ip(u)?;
    let len = u.int_in_range(0..=max_len(addr))?;
    Ok(Cidr::new(addr, len))
}

fn labels(u: &mut Unstructured) -> arbitrary::Result<Labels> {
    let mut labels = Labels::new();
    for _ in 0..small(u, 3)? {
        labels.insert(pick(u, &KEYS)?, pick(u, &VALUES)?);
    }
    Ok(labels)
}

fn selector(u: &mut Unstructured) -> arbitrary::Result<LabelSelector> {
    let mut requirements = Vec::new();
    for _ in 0..small(u, 2)? {
        let operator = pick(u, &[Operator::In, Operator::NotIn, Operator::Exists, Operator::DoesNotExist])?;
        let values = match operator {
            Operator::In | Operator::NotIn => {
                (0..=small(u, 1)?).map(|_| pick(u, &VALUES).map(String::from)).collect::<Result<_, _>>()?
            }
            Operator::Exists | Operator::DoesNotExist => Vec::new(),
        };
        requirements.push(Requirement { key: pick(u, &KEYS)?.to_string(), operator, values });
    }
    Ok(LabelSelector { requirements })
}

fn endpoint(u: &mut Unstructured) -> arbitrary::Result<Endpoint> {
    let named_ports = (0..small(u, 2)?)
        .map(|_| {
            Ok(NamedPort {
                name: pick(u, &PORT_NAMES)?.into(),
                protocol: pick(u, &Protocol::ALL)?,
                port: u.arbitrary()?,
            })
        })
        .collect::<arbitrary::Result<_>>()?;
    Ok(Endpoint {
        namespace: pick(u, &NAMESPACES)?.into(),
        name: format!("pod-{}", small(u, 5)?),
        kind: if u.arbitrary()? { EndpointKind::Pod } else { EndpointKind::Workload("Deployment".into()) },
        labels: labels(u)?,
        ips: (0..small(u, 2)?).map(|_| ip(u)).collect::<Result<_, _>>()?,
        node: if u.arbitrary()? { Some(pick(u, &NODES)?.into()) } else { None },
        named_ports,
    })
}

fn peer(u: &mut Unstructured) -> arbitrary::Result<Peer> {
    Ok(match small(u, 2)? {
        0 => Peer::Endpoints(selector(u)?),
        1 => Peer::Cidr { cidr: cidr(u)?, except: (0..small(u, 2)?).map(|_| cidr(u)).collect::<Result<_, _>>()? },
        _ => Peer::Entity(pick(u, &Entity::ALL)?),
    })
}

fn port_match(u: &mut Unstructured) -> arbitrary::Result<PortMatch> {
    let protocol = if u.arbitrary()? { Some(pick(u, &Protocol::ALL)?) } else { None };
    let ports = match small(u, 2)? {
        0 => PortSpec::All,
        1 => {
            let (a, b): (u16, u16) = (u.arbitrary()?, u.arbitrary()?);
            PortSpec::Range(PortRange { lo: a.min(b), hi: a.max(b) })
        }
        _ => PortSpec::Named(pick(u, &PORT_NAMES)?.into()),
    };
    Ok(PortMatch { protocol, ports })
}

fn rule(u: &mut Unstructured, index: usize) -> arbitrary::Result<Rule> {
    let direction = pick(u, &Direction::BOTH)?;
    Ok(Rule {
        path: format!("spec.{}[{index}]", direction.name()),
        direction,
        action: if u.ratio(1, 4)? { Action::Deny } else { Action::Allow },
        peers: if u.arbitrary()? {
            Peers::Any
        } else {
            Peers::Only((0..small(u, 2)?).map(|_| peer(u)).collect::<Result<_, _>>()?)
        },
        ports: if u.arbitrary()? {
            None
        } else {
            Some((0..small(u, 2)?).map(|_| port_match(u)).collect::<Result<_, _>>()?)
        },
        l7: if u.ratio(1, 4)? { Some(L7Rules { parser: pick(u, &PARSERS)?.into(), rules: "{}".into() }) } else { None },
    })
}

fn policy(u: &mut Unstructured, index: usize) -> arbitrary::Result<Policy> {
    let kind = pick(
        u,
        &[PolicyKind::NetworkPolicy, PolicyKind::CiliumNetworkPolicy, PolicyKind::CiliumClusterwideNetworkPolicy],
    )?;
    Ok(Policy {
        origin: PolicyOrigin {
            kind,
            namespace: Some(pick(u, &NAMESPACES)?.into()),
            name: format!("p{index}"),
            spec_path: "spec".into(),
        },
        subject: if u.ratio(1, 8)? { Subject::Nodes(selector(u)?) } else { Subject::Endpoints(selector(u)?) },
        default_deny: [u.arbitrary()?, u.arbitrary()?],
        requires: [(0..small(u, 1)?).map(|_| selector(u)).collect::<Result<_, _>>()?, Vec::new()],
        deny_requires: [Vec::new(), (0..small(u, 1)?).map(|_| selector(u)).collect::<Result<_, _>>()?],
        rules: (0..small(u, 3)?).map(|i| rule(u, i)).collect::<Result<_, _>>()?,
    })
}

fn cluster(u: &mut Unstructured) -> arbitrary::Result<Cluster> {
    let mut cluster = Cluster::default();
    for ns in NAMESPACES {
        cluster.namespaces.insert(ns.into(), labels(u)?);
    }
    cluster.endpoints = (0..small(u, 6)?).map(|_| endpoint(u)).collect::<Result<_, _>>()?;
    cluster.nodes = (0..small(u, 2)?)
        .map(|i| {
            Ok(Node {
                name: NODES[i].into(),
                labels: labels(u)?,
                ips: (0..small(u, 1)?).map(|_| ip(u)).collect::<Result<_, _>>()?,
            })
        })
        .collect::<arbitrary::Result<_>>()?;
    cluster.policies = (0..small(u, 4)?).map(|i| policy(u, i)).collect::<Result<_, _>>()?;
    // The API server: any addresses (a node's, a pod's or outside ones),
    // sorted as lowering sorts them.
    cluster.apiserver = (0..small(u, 2)?).map(|_| ip(u)).collect::<Result<_, _>>()?;
    cluster.apiserver.sort();
    cluster.apiserver.dedup();
    Ok(cluster)
}

/// One edit of a resolved cluster, at positions taken modulo the sizes.
#[derive(Arbitrary, Debug)]
enum Edit {
    IpcacheIdentity(usize, u32),
    IpcachePrefix(usize, u8),
    IpcacheOwner(usize, usize),
    DropIpcache(usize),
    EndpointIdentity(usize, Option<u32>),
    EndpointIndex(usize, usize),
    EndpointNode(usize, Option<u8>),
    KeyIdentity(usize, usize, u32),
    KeyPort(usize, usize, u8, u16, u8),
    DuplicateEntry(usize, usize),
    DropEntry(usize, usize),
    EndpointIpOwner(usize, usize),
}

fn apply(resolved: &mut Resolved, edit: Edit) {
    let n_ipcache = resolved.ipcache.len();
    let n_endpoints = resolved.endpoints.len();
    match edit {
        Edit::IpcacheIdentity(i, id) if n_ipcache > 0 => resolved.ipcache[i % n_ipcache].identity = Identity(id),
        Edit::IpcachePrefix(i, len) if n_ipcache > 0 => {
            let entry = &mut resolved.ipcache[i % n_ipcache];
            let addr = entry.prefix.addr();
            entry.prefix = Cidr::new(addr, len % (max_len(addr) + 1));
        }
        Edit::IpcacheOwner(i, owner) if n_ipcache > 0 => {
            resolved.ipcache[i % n_ipcache].source = IpcacheSource::Endpoint(EndpointId::new(owner % 16))
        }
        Edit::DropIpcache(i) if n_ipcache > 0 => {
            resolved.ipcache.remove(i % n_ipcache);
        }
        Edit::EndpointIdentity(i, id) if n_endpoints > 0 => {
            resolved.endpoints[i % n_endpoints].identity = id.map(Identity)
        }
        Edit::EndpointIndex(i, index) if n_endpoints > 0 => {
            resolved.endpoints[i % n_endpoints].index = EndpointId::new(index % 16)
        }
        Edit::EndpointNode(i, node) if n_endpoints > 0 => {
            resolved.endpoints[i % n_endpoints].node = node.map(|n| NODES[usize::from(n) % NODES.len()].into());
        }
        Edit::EndpointIpOwner(ip, owner) => {
            if let Some(key) = resolved.endpoint_ips.keys().nth(ip % 8).copied() {
                resolved.endpoint_ips.insert(key, EndpointId::new(owner % 16));
            }
        }
        Edit::KeyIdentity(e, k, id) => edit_key(resolved, e, k, |key| key.identity = Identity(id)),
        Edit::KeyPort(e, k, protocol, port, prefix_len) => edit_key(resolved, e, k, |key| {
            key.protocol = protocol;
            key.port = port;
            key.prefix_len = prefix_len % 32;
        }),
        Edit::DuplicateEntry(e, k) => edit_entries(resolved, e, |entries| {
            let entry = entries[k % entries.len()].clone();
            entries.insert(k % entries.len(), entry);
        }),
        Edit::DropEntry(e, k) => edit_entries(resolved, e, |entries| {
            entries.remove(k % entries.len());
        }),
        _ => {}
    }
}

fn edit_entries(resolved: &mut Resolved, e: usize, f: impl FnOnce(&mut Vec<policyc_ir::policy_map::PolicyEntry>)) {
    let n = resolved.endpoints.len();
    if n == 0 {
        return;
    }
    let map = Arc::make_mut(&mut resolved.endpoints[e % n].policy);
    if !map.entries.is_empty() {
        f(&mut map.entries);
    }
}

fn edit_key(resolved: &mut Resolved, e: usize, k: usize, f: impl FnOnce(&mut PolicyKey)) {
    edit_entries(resolved, e, |entries| {
        let len = entries.len();
        f(&mut entries[k % len].key);
    });
}

fuzz_target!(|bytes: &[u8]| {
    let mut u = Unstructured::new(bytes);
    let Ok(cluster) = cluster(&mut u) else { return };
    let mut resolved = resolve(&cluster);
    if let Err(errors) = validate(&resolved) {
        panic!("the resolver's output does not validate: {errors:?}");
    }
    // `Unstructured` yields default values once the bytes run out, so
    // the edits stop with the bytes, not with an error.
    while !u.is_empty() {
        let Ok(edit) = u.arbitrary::<Edit>() else { break };
        apply(&mut resolved, edit);
    }
    if validate(&resolved).is_ok() {
        let options = BundleOptions { policy_map_capacity: 64, ..BundleOptions::default() };
        let _ = emit(&cluster, &resolved, None, &options);
    }
});
