//! Differential test of the service tables on random clusters: every
//! node's `services.txt` and `backends.txt`, as `policyc_bundle` parses
//! them back, give the same answer as `ir::service::connect` for every
//! (node, frontend, source) sample: the same backends (address and target
//! port), refused and dropped (no local endpoint, outside the source
//! ranges) the same, and no line where `connect` says the address and port
//! are no frontend.
//!
//! The table is read as the datapath reads it: the `int` line for a
//! source inside the cluster where one exists, else the `ext` line; the
//! `sources:` ranges against the packet's source address. Generators:
//! `ir/tests/support/random_cluster.rs` (clusters, and Services with
//! selectors, named target ports, endpoint conditions, traffic policies,
//! affinity, source ranges). The run is seeded, so it is the same run in
//! CI every time; a failure is shrunk by proptest.

#[path = "../../ir/tests/support/random_cluster.rs"]
mod random_cluster;

use policyc::emit::{emit, BundleOptions};
use policyc_bundle::backends::BackendLine;
use policyc_bundle::l3n4::L3n4;
use policyc_bundle::services::{Action, Scope, ServiceLine};
use policyc_ir::cluster::Cluster;
use policyc_ir::eval::Party;
use policyc_ir::protocol::Protocol;
use policyc_ir::service::connect::{connect, DropReason, Outcome, ServiceQuery};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use random_cluster::*;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// What happens to a new connection, in terms both sides can give.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Answer {
    /// Load-balanced over these `(address, target port)` backends.
    Backends(BTreeSet<(IpAddr, u16)>),
    /// ICMP port unreachable.
    Reject,
    /// `Local` traffic policy, no endpoint on the node.
    DropNoLocal,
    /// Outside `loadBalancerSourceRanges`.
    DropSource,
    /// No service line: ordinary policy (or, at a cluster IP on a port the
    /// Service lacks, the drop `connect` names `UnknownPort`).
    NoLine,
}

impl Answer {
    fn kind(&self) -> &'static str {
        match self {
            Answer::Backends(_) => "backends",
            Answer::Reject => "reject",
            Answer::DropNoLocal => "drop-no-local",
            Answer::DropSource => "drop-source",
            Answer::NoLine => "no-line",
        }
    }
}

/// One node's tables, parsed back.
struct Tables<'a> {
    lines: BTreeMap<(L3n4, Scope), ServiceLine<'a>>,
    backends: BTreeMap<u32, (IpAddr, u16)>,
}

impl Tables<'_> {
    /// The table's answer for a connection from `src` (inside the cluster
    /// or not) to `frontend`.
    fn answer(&self, frontend: L3n4, inside: bool, src: IpAddr) -> Answer {
        let line = if inside { self.lines.get(&(frontend, Scope::Int)) } else { None };
        let Some(line) = line.or_else(|| self.lines.get(&(frontend, Scope::Ext))) else { return Answer::NoLine };
        if !line.sources.is_empty() && !line.sources.iter().any(|c| c.contains(src)) {
            return Answer::DropSource;
        }
        match &line.action {
            Action::Backends(ids) => Answer::Backends(ids.iter().map(|id| self.backends[id]).collect()),
            Action::Reject => Answer::Reject,
            Action::Drop => Answer::DropNoLocal,
        }
    }
}

/// `connect`'s answer.
fn reference(cluster: &Cluster, query: &ServiceQuery) -> Answer {
    match connect(cluster, query) {
        Outcome::Backends { backends, .. } => {
            Answer::Backends(backends.iter().filter_map(|b| Some((b.backend.address?, b.backend.port))).collect())
        }
        Outcome::Refused { .. } => Answer::Reject,
        Outcome::Dropped { reason: DropReason::NoLocalEndpoint, .. } => Answer::DropNoLocal,
        Outcome::Dropped { reason: DropReason::SourceRange, .. } => Answer::DropSource,
        Outcome::Dropped { reason: DropReason::UnknownPort, .. } | Outcome::NotService => Answer::NoLine,
    }
}

/// The sources sampled on node `n`: its pods and itself (inside the
/// cluster) and outside addresses (one inside the generators' source
/// range), each with its address in `family` (v6 when true).
fn sources(cluster: &Cluster, pods: usize, n: usize, v6: bool) -> Vec<(Party, IpAddr)> {
    let node = &cluster.nodes[n];
    let in_family = |ips: &[IpAddr]| ips.iter().copied().find(|a| a.is_ipv6() == v6);
    let mut out: Vec<(Party, IpAddr)> = cluster
        .endpoints_with_ids()
        .take(pods)
        .filter(|(_, e)| e.node.as_deref() == Some(node.name.as_str()))
        .filter_map(|(id, e)| Some((Party::Endpoint(id), in_family(&e.ips)?)))
        .collect();
    out.extend(in_family(&node.ips).map(|a| (Party::Node(n), a)));
    let outside: &[&str] = if v6 { &["2001:db8::1"] } else { &["198.51.100.7", "8.8.8.8"] };
    out.extend(outside.iter().map(|a| (Party::External(ip(a)), ip(a))));
    out
}

/// The frontends sampled on node `n`: every frontend of every Service
/// there, and a cluster IP on a port no Service defines.
fn frontends(cluster: &Cluster, n: usize) -> Vec<L3n4> {
    let mut out = BTreeSet::new();
    for s in &cluster.services {
        for f in s.frontends(&cluster.nodes[n].ips) {
            out.insert(L3n4 { addr: f.address, port: f.port, protocol: f.protocol });
        }
        for &addr in &s.cluster_ips {
            out.insert(L3n4 { addr, port: 9999, protocol: Protocol::Tcp });
        }
    }
    out.into_iter().collect()
}

/// Checks every sample of one cluster; counts the answers by kind.
fn check(cluster: &Cluster, pods: usize, seen: &RefCell<BTreeMap<&'static str, usize>>) -> Result<(), TestCaseError> {
    let resolved = policyc_ir::resolve::resolve(cluster);
    let bundles =
        emit(cluster, &resolved, None, &BundleOptions::default()).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(bundles.len(), cluster.nodes.len());
    for bundle in &bundles {
        let n = cluster.nodes.iter().position(|x| x.name == bundle.node).expect("a node of the cluster");
        let text = |f: &str| bundle.files.get(f).map(|t| &t[..]).unwrap_or("");
        let (services, backends) = (text("maps/services.txt"), text("maps/backends.txt"));
        let lines =
            ServiceLine::parse_all("services.txt", 1, services).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let backends =
            BackendLine::parse_all("backends.txt", 1, backends).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let tables = Tables {
            lines: lines.into_iter().map(|l| ((l.frontend, l.scope), l)).collect(),
            backends: backends.into_iter().map(|b| (b.id, (b.address.addr, b.address.port))).collect(),
        };
        for frontend in frontends(cluster, n) {
            for (src, address) in sources(cluster, pods, n, frontend.addr.is_ipv6()) {
                let query = ServiceQuery {
                    src,
                    via: Some(n),
                    address: frontend.addr,
                    protocol: frontend.protocol,
                    port: frontend.port,
                };
                let want = reference(cluster, &query);
                let inside = !matches!(src, Party::External(_));
                let got = tables.answer(frontend, inside, address);
                prop_assert_eq!(
                    &got,
                    &want,
                    "node {} frontend {:?} from {:?} ({}); services.txt:\n{}",
                    bundle.node,
                    frontend,
                    src,
                    address,
                    services
                );
                *seen.borrow_mut().entry(want.kind()).or_default() += 1;
            }
        }
    }
    Ok(())
}

/// A random cluster with Services, and the number of its pods.
fn cluster_with_services() -> impl Strategy<Value = (Cluster, usize)> {
    (
        2usize..=3,
        [any::<bool>(), any::<bool>(), any::<bool>()],
        proptest::collection::vec(pod_spec(), 2..=8),
        app_ports(),
        proptest::collection::vec(endpoint_condition(), 8),
        proptest::collection::vec(service_spec(), 1..=4),
    )
        .prop_map(|(ns_count, teams, pods, ports, conditions, services)| {
            let mut cluster = build_cluster(ns_count, &teams, &pods, &ports);
            add_services(&mut cluster, pods.len(), &conditions, &services);
            (cluster, pods.len())
        })
}

#[test]
fn service_tables_agree_with_connect_on_random_clusters() {
    let seen = RefCell::new(BTreeMap::new());
    let mut runner = TestRunner::new_with_rng(
        Config { cases: 128, failure_persistence: None, ..Config::default() },
        proptest::test_runner::TestRng::deterministic_rng(proptest::test_runner::RngAlgorithm::ChaCha),
    );
    runner
        .run(&cluster_with_services(), |(cluster, pods)| check(&cluster, pods, &seen))
        .unwrap_or_else(|e| panic!("{e}"));
    // The generators reach every kind of answer; a generator change that
    // loses one fails here rather than testing less in silence.
    let seen = seen.into_inner();
    for kind in ["backends", "reject", "drop-no-local", "drop-source", "no-line"] {
        assert!(seen.get(kind).copied().unwrap_or(0) > 0, "no sample answered {kind}: {seen:?}");
    }
}
