//! The bundled example cluster (`examples/policies/`): it lints clean, and
//! the connections its README table lists come out as the table says. The
//! broken example (`examples/broken/`) reports every fault its files
//! announce in `# expect: CODE PATH` lines.

use policyc::pipeline::load;
use policyc_ir::eval::{eval, Party, Query};
use policyc_ir::protocol::Protocol;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn example_is_clean() {
    let loaded = load(&[root().join("examples/policies")]);
    assert!(loaded.diagnostics.is_empty(), "{:#?}", loaded.diagnostics);
    assert_eq!(loaded.lowered.cluster.endpoints.len(), 9);
}

#[test]
fn example_table_holds() {
    let loaded = load(&[root().join("examples/policies")]);
    let c = &loaded.lowered.cluster;
    let pod = |prefix: &str| {
        let (i, _) = c.endpoints_with_ids().find(|(_, e)| e.display_name().starts_with(prefix)).expect(prefix);
        Party::Endpoint(i)
    };
    let ip = |s: &str| Party::External(s.parse().unwrap());
    // (row of examples/policies/README.md, src, dst, protocol, port, allowed)
    let rows = [
        (1, ip("203.0.113.7"), pod("shop/frontend"), Protocol::Tcp, 8080, true),
        (3, ip("203.0.113.7"), pod("shop/frontend"), Protocol::Tcp, 443, true),
        (4, ip("203.0.113.7"), pod("shop/frontend"), Protocol::Tcp, 9100, false),
        (8, pod("shop/frontend"), pod("shop/api"), Protocol::Tcp, 8080, true),
        (10, pod("shop/frontend"), pod("shop/db"), Protocol::Tcp, 5432, false),
        (11, pod("shop/api"), pod("shop/db"), Protocol::Tcp, 5432, true),
        (13, pod("shop/worker"), pod("shop/cache"), Protocol::Tcp, 6379, true),
        (15, pod("shop/api"), pod("shop/frontend"), Protocol::Tcp, 8080, false),
        (16, pod("shop/api"), pod("payments/payments-api"), Protocol::Tcp, 9090, true),
        (21, pod("shop/frontend"), pod("kube-system/coredns"), Protocol::Udp, 53, true),
        (26, pod("monitoring/prometheus"), pod("shop/db"), Protocol::Tcp, 9110, true),
        (27, pod("monitoring/prometheus"), pod("shop/db"), Protocol::Tcp, 9111, false),
        (28, pod("monitoring/prometheus"), pod("shop/api"), Protocol::Tcp, 9109, false),
        (36, ip("192.0.2.10"), pod("shop/api"), Protocol::Tcp, 8080, true),
        (37, ip("192.0.2.200"), pod("shop/api"), Protocol::Tcp, 8080, false),
        (41, pod("shop/db"), ip("198.51.100.10"), Protocol::Tcp, 443, false),
        (42, pod("shop/frontend"), ip("169.254.169.254"), Protocol::Tcp, 443, false),
        (43, pod("payments/payments-api"), ip("198.51.100.10"), Protocol::Tcp, 443, true),
        (44, pod("payments/payments-api"), ip("10.1.2.3"), Protocol::Tcp, 443, false),
        (20, pod("monitoring/prometheus"), pod("payments/payments-api"), Protocol::Tcp, 9100, true),
        (49, pod("monitoring/prometheus"), ip("198.51.100.10"), Protocol::Tcp, 443, false),
        (52, pod("ops/toolbox"), pod("payments/payments-api"), Protocol::Tcp, 9090, false),
        (53, pod("monitoring/prometheus"), pod("kube-system/coredns"), Protocol::Udp, 53, true),
    ];
    for (row, src, dst, protocol, port, allowed) in rows {
        let v = eval(c, &Query { src, dst, protocol, port });
        assert_eq!(v.allowed(), allowed, "row {row} of the example table: {v:?}");
    }
}

#[test]
fn broken_example_reports_every_announced_fault() {
    let dir = root().join("examples/broken");
    let loaded = load(std::slice::from_ref(&dir));
    let got: BTreeSet<(String, String)> = loaded
        .diagnostics
        .iter()
        .map(|d| (d.code.id.to_string(), d.location.path.clone().unwrap_or_default()))
        .collect();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut missing = Vec::new();
    for f in files.into_iter().filter(|f| f.extension().is_some_and(|e| e == "yaml" || e == "json")) {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        for line in text.lines().filter_map(|l| l.trim_start().strip_prefix("# expect:")) {
            let mut parts = line.split_whitespace();
            let code = parts.next().unwrap_or_default().to_string();
            let path = parts.next().unwrap_or_default().to_string();
            if !got.contains(&(code.clone(), path.clone())) {
                missing.push(format!("{}: {code} {path}", f.display()));
            }
        }
    }
    assert!(missing.is_empty(), "announced but not reported:\n{}", missing.join("\n"));
    assert!(loaded.has_errors());
}
