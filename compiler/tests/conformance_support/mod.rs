//! What the two conformance tests (`conformance.rs` for NetworkPolicy,
//! `conformance_tiers.rs` for the admin tiers) read alike from
//! `../shared/conformance/<corpus>/`: the corpus folder, the `ip:` peers
//! and the pod-to-workload names of a case.

use policyc_ir::cidr::to_u128;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// The folder of corpus `name` beside the repository; fails loudly when
/// it is missing.
pub fn corpus(name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance").join(name);
    assert!(root.is_dir(), "conformance corpus missing at {} (CI clones the repo beside shared/)", root.display());
    root
}

/// The address range of an `ip:A` or `ip:A-B` peer.
pub fn ip_range(name: &str) -> Option<(u128, u128)> {
    let r = name.strip_prefix("ip:")?;
    let (a, b) = r.split_once('-').unwrap_or((r, r));
    Some((to_u128(a.parse::<IpAddr>().ok()?), to_u128(b.parse::<IpAddr>().ok()?)))
}

/// pod name → workload id, from peers.txt.
pub fn workload_names(case: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(case.join("peers.txt")).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut cols = l.split('\t');
            Some((cols.next()?.to_string(), cols.next()?.to_string()))
        })
        .collect()
}
