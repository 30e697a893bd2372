//! Resolution time on a large synthetic cluster. Ignored by default; run
//! with `cargo test --release -p policyc-ir --test scale -- --ignored --nocapture`.

use policyc_ir::cidr::Cidr;
use policyc_ir::cluster::{Cluster, Endpoint, EndpointKind, NamedPort};
use policyc_ir::labels::Labels;
use policyc_ir::lookup::{Datapath, Packet};
use policyc_ir::policy::{
    Action, Entity, Peer, Peers, Policy, PolicyKind, PolicyOrigin, PortMatch, PortSpec, Rule, Subject,
};
use policyc_ir::protocol::{Direction, PortRange, Protocol};
use policyc_ir::resolve::resolve;
use policyc_ir::selector::{LabelSelector, Requirement};
use policyc_ir::validate::validate;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

fn selector(app: usize) -> LabelSelector {
    LabelSelector::everything().with(Requirement::equals("app", format!("app{app}")))
}

/// `pods` pods over `apps` apps, each app with a policy allowing three
/// other apps on a port range, a deny, CIDR and entity peers.
fn cluster(pods: usize, apps: usize) -> Cluster {
    let mut cluster = Cluster::default();
    for i in 0..pods {
        let app = i % apps;
        cluster.endpoints.push(Endpoint {
            namespace: format!("ns{}", app % 10),
            name: format!("pod{i}"),
            kind: EndpointKind::Pod,
            labels: Labels::from_pairs([("app", format!("app{app}")), ("ns", format!("ns{}", app % 10))]),
            ips: vec![IpAddr::V4(Ipv4Addr::from(0x0ac8_0000 + i as u32))],
            node: Some(format!("node{}", i % 20)),
            named_ports: vec![NamedPort {
                name: "http".into(),
                protocol: Protocol::Tcp,
                port: 8000 + (app % 7) as u16,
            }],
        });
    }
    for app in 0..apps {
        let rule =
            |direction, action, peers, ports| Rule { path: String::new(), direction, action, peers, ports, l7: None };
        let tcp = |lo, hi| {
            Some(vec![PortMatch { protocol: Some(Protocol::Tcp), ports: PortSpec::Range(PortRange { lo, hi }) }])
        };
        cluster.policies.push(Policy {
            origin: PolicyOrigin {
                kind: PolicyKind::CiliumNetworkPolicy,
                namespace: None,
                name: format!("p{app}"),
                spec_path: "spec".into(),
            },
            subject: Subject::Endpoints(selector(app)),
            default_deny: [true, true],
            requires: [vec![], vec![]],
            deny_requires: [Vec::new(), Vec::new()],
            rules: vec![
                rule(
                    Direction::Ingress,
                    Action::Allow,
                    Peers::Only((1..4).map(|d| Peer::Endpoints(selector((app + apps - d) % apps))).collect()),
                    tcp(1000, 9000),
                ),
                rule(Direction::Ingress, Action::Deny, Peers::Any, tcp(2222, 2222)),
                rule(
                    Direction::Egress,
                    Action::Allow,
                    Peers::Only(vec![Peer::Endpoints(selector((app + 1) % apps))]),
                    Some(vec![PortMatch { protocol: None, ports: PortSpec::Named("http".into()) }]),
                ),
                rule(
                    Direction::Egress,
                    Action::Allow,
                    Peers::Only(vec![
                        Peer::Cidr {
                            cidr: Cidr::new(IpAddr::V4(Ipv4Addr::new(198, 18, (app % 256) as u8, 0)), 24),
                            except: vec![],
                        },
                        Peer::Entity(Entity::KubeApiserver),
                    ]),
                    tcp(443, 443),
                ),
            ],
        });
    }
    cluster
}

#[test]
#[ignore]
fn resolve_a_large_cluster() {
    let cluster = cluster(5000, 500);
    let start = Instant::now();
    let resolved = resolve(&cluster);
    let resolve_time = start.elapsed();
    assert_eq!(validate(&resolved), Ok(()));
    let entries: usize = resolved.endpoints.iter().map(|e| e.policy.entries.len()).sum();
    let datapath = Datapath::new(&resolved);
    let start = Instant::now();
    let mut allowed = 0;
    for i in 0..10_000u32 {
        // Pod i (app a) to pod i+1 (app a+1) on app a+1's `http` port:
        // allowed both ways, except every tenth packet on another port.
        let (src, dst) = (i % 4999, i % 4999 + 1);
        let http = 8000 + (dst % 500 % 7) as u16;
        let port = if i % 10 == 0 { http + 1 } else { http };
        let packet = Packet {
            src: IpAddr::V4(Ipv4Addr::from(0x0ac8_0000 + src)),
            dst: IpAddr::V4(Ipv4Addr::from(0x0ac8_0000 + dst)),
            protocol: Protocol::Tcp,
            port,
        };
        allowed += usize::from(datapath.judge(&packet).allowed());
    }
    assert_eq!(allowed, 9000);
    println!(
        "5000 pods, 500 policies: resolve {resolve_time:?}, {} identities, {} ipcache entries, {entries} policy entries; 10000 lookups {:?} ({allowed} allowed)",
        resolved.identities.len(),
        resolved.ipcache.len(),
        start.elapsed()
    );
}
