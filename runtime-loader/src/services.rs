//! The service tables of a bundle (`services.txt`, `backends.txt`,
//! `revnat.txt`, [`policyc_bundle::services`]): checked with the rest of
//! the bundle before anything is applied, so a bad one refuses the apply
//! as a bad policy file does, and turned into the entries of the
//! datapath's service maps (`lb4_services`, `lb4_backends`,
//! `lb4_reverse_nat` of `ebpf-templates/include/lb.h`), which switch with
//! the policy in the generation flip.
//!
//! A bundle has the three files or none (an input without Services). They
//! are read whole on every apply whose bundle changed them, and the maps'
//! entries diffed; their size is the node's Services, not the change.
//! IPv4 only: lines of IPv6 frontends, backends and reverse-NAT entries are
//! checked and not loaded (the datapath translates IPv4; README).

use crate::bundle::BundleError;
use crate::manifest::Manifest;
use policyc_bundle::backends::BackendLine;
use policyc_bundle::revnat::RevNatLine;
use policyc_bundle::services::{check_references, Action, Scope, ServiceLine};
use policyc_bundle::{BACKENDS_FILE, REVNAT_FILE, SERVICES_FILE};
use policyc_ebpf::abi::generation_capacity;
use policyc_ebpf::lb::{
    Lb4Backend, Lb4BackendKey, Lb4Key, Lb4ReverseNat, Lb4ReverseNatKey, Lb4Service, BACKEND_TERMINATING, LB_SCOPE_EXT,
    LB_SCOPE_INT, SVC_FLAG_AFFINITY, SVC_FLAG_REJECT, SVC_FLAG_TWO_SCOPES,
};
use std::collections::BTreeSet;
use std::net::IpAddr;

/// Line counts of a bundle's service tables.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceCounts {
    /// `services.txt` lines.
    pub services: usize,
    /// `backends.txt` lines.
    pub backends: usize,
    /// `revnat.txt` lines.
    pub revnat: usize,
}

/// The service maps' entries of one generation (generation byte 0; it is
/// set when they are added to a [`crate::maps::Generation`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceEntries {
    /// `lb4_services`: every frontend's slot 0 and its backend slots.
    pub services: Vec<(Lb4Key, Lb4Service)>,
    /// `lb4_backends`.
    pub backends: Vec<(Lb4BackendKey, Lb4Backend)>,
    /// `lb4_reverse_nat`.
    pub revnat: Vec<(Lb4ReverseNatKey, Lb4ReverseNat)>,
}

/// Reads and checks the service tables `manifest` lists: every line, each
/// file's order, and the references between them. `None` when it lists
/// none.
pub fn check(manifest: &Manifest) -> Result<Option<ServiceCounts>, BundleError> {
    Ok(read(manifest)?.map(|(counts, _)| counts))
}

/// [`check`], and the map entries of the tables (empty when there are
/// none).
pub fn read(manifest: &Manifest) -> Result<Option<(ServiceCounts, ServiceEntries)>, BundleError> {
    let files = [SERVICES_FILE, BACKENDS_FILE, REVNAT_FILE];
    let listed: Vec<&str> = files.iter().copied().filter(|f| manifest.files.contains_key(*f)).collect();
    if listed.is_empty() {
        return Ok(None);
    }
    if listed.len() != files.len() {
        let missing: Vec<String> = files.iter().filter(|f| !listed.contains(f)).map(|f| format!("`{f}`")).collect();
        return Err(BundleError::Manifest(format!(
            "the bundle has service tables but not {}: it has all three or none",
            missing.join(", ")
        )));
    }
    let texts =
        [manifest.read_text(SERVICES_FILE)?, manifest.read_text(BACKENDS_FILE)?, manifest.read_text(REVNAT_FILE)?];
    parse(&texts).map(Some)
}

/// The service tables' texts (`services.txt`, `backends.txt`,
/// `revnat.txt`) checked and turned into map entries.
pub fn parse(texts: &[String; 3]) -> Result<(ServiceCounts, ServiceEntries), BundleError> {
    let entry = BundleError::Entry;
    let services = ServiceLine::parse_all(SERVICES_FILE, 1, &texts[0]).map_err(entry)?;
    let backends = BackendLine::parse_all(BACKENDS_FILE, 1, &texts[1]).map_err(entry)?;
    let revnat = RevNatLine::parse_all(REVNAT_FILE, 1, &texts[2]).map_err(entry)?;
    check_references(&services, &backends, &revnat)
        .map_err(|e| BundleError::Manifest(format!("`{SERVICES_FILE}`: {e}")))?;
    let counts = ServiceCounts { services: services.len(), backends: backends.len(), revnat: revnat.len() };
    let entries = entries(&services, &backends, &revnat)?;
    for (map, n) in [
        ("lb4_services", entries.services.len()),
        ("lb4_backends", entries.backends.len()),
        ("lb4_reverse_nat", entries.revnat.len()),
    ] {
        let capacity = generation_capacity(map).unwrap_or(0);
        if n > capacity as usize {
            return Err(BundleError::Capacity { map: map.into(), entries: n, capacity });
        }
    }
    Ok((counts, entries))
}

fn v4(addr: IpAddr) -> Option<[u8; 4]> {
    match addr {
        IpAddr::V4(a) => Some(a.octets()),
        IpAddr::V6(_) => None,
    }
}

/// The map entries of checked lines: a frontend's slot 0 holds its backend
/// count, reverse-NAT id and flags (reject, affinity with its timeout,
/// two scopes where an `int` line follows an `ext` one, as Cilium's
/// `SVC_FLAG_TWO_SCOPES`), slots 1..=n its backends in the line's order.
fn entries(
    services: &[ServiceLine],
    backends: &[BackendLine],
    revnat: &[RevNatLine],
) -> Result<ServiceEntries, BundleError> {
    let mut out = ServiceEntries::default();
    let internal: BTreeSet<_> = services.iter().filter(|s| s.scope == Scope::Int).map(|s| s.frontend).collect();
    for s in services {
        let Some(address) = v4(s.frontend.addr) else { continue };
        let key = Lb4Key {
            address,
            dport: s.frontend.port,
            backend_slot: 0,
            proto: s.frontend.protocol.number(),
            scope: if s.scope == Scope::Int { LB_SCOPE_INT } else { LB_SCOPE_EXT },
            generation: 0,
            pad: 0,
        };
        let ids: &[u32] = match &s.action {
            Action::Backends(ids) => ids,
            Action::Reject | Action::Drop => &[],
        };
        let count = u16::try_from(ids.len()).map_err(|_| {
            BundleError::Manifest(format!(
                "`{SERVICES_FILE}`: {} has {} backends, more than a frontend's 65535 slots",
                s.frontend,
                ids.len()
            ))
        })?;
        let mut flags = 0;
        if s.action == Action::Reject {
            flags |= SVC_FLAG_REJECT;
        }
        if s.affinity.is_some() {
            flags |= SVC_FLAG_AFFINITY;
        }
        if s.scope == Scope::Ext && internal.contains(&s.frontend) {
            flags |= SVC_FLAG_TWO_SCOPES;
        }
        let master = Lb4Service { backend_id: s.affinity.unwrap_or(0), count, rev_nat: s.rev_nat, flags, pad: [0; 3] };
        out.services.push((key, master));
        for (slot, &id) in (1..=count).zip(ids) {
            let value = Lb4Service { backend_id: id, count: 0, rev_nat: s.rev_nat, flags: 0, pad: [0; 3] };
            out.services.push((Lb4Key { backend_slot: slot, ..key }, value));
        }
    }
    for b in backends {
        let Some(address) = v4(b.address.addr) else { continue };
        let value = Lb4Backend {
            address,
            port: b.address.port,
            proto: b.address.protocol.number(),
            flags: if b.terminating { BACKEND_TERMINATING } else { 0 },
        };
        out.backends.push((Lb4BackendKey { backend_id: b.id, generation: 0, pad: [0; 3] }, value));
    }
    for r in revnat {
        let Some(address) = v4(r.frontend.addr) else { continue };
        let value = Lb4ReverseNat { address, port: r.frontend.port, pad: 0 };
        out.revnat.push((Lb4ReverseNatKey { rev_nat: r.id, generation: 0, pad: 0 }, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frontends_become_a_master_slot_and_backend_slots() {
        let texts = [
            "10.96.0.10:80/TCP ext ClusterIP shop/web 7 backends:3,1 affinity:60\n\
             10.96.0.11:80/TCP ext ClusterIP shop/none 8 reject\n\
             10.200.255.1:30080/TCP ext NodePort shop/web 9 drop\n\
             10.200.255.1:30080/TCP int NodePort shop/web 9 backends:1\n\
             [fd00:96::10]:53/UDP ext ClusterIP kube-system/dns 2 backends:5\n"
                .to_string(),
            "1 10.200.0.1:8080/TCP active\n3 10.200.0.3:8080/TCP terminating\n5 [fd00::5]:5353/UDP active\n"
                .to_string(),
            "2 [fd00:96::10]:53/UDP\n7 10.96.0.10:80/TCP\n8 10.96.0.11:80/TCP\n9 10.200.255.1:30080/TCP\n".to_string(),
        ];
        let (counts, e) = parse(&texts).unwrap();
        assert_eq!(counts, ServiceCounts { services: 5, backends: 3, revnat: 4 });
        // web: slot 0 and two backend slots; none: slot 0; NodePort: ext and int slot 0, int's backend slot.
        assert_eq!(e.services.len(), 7);
        let (k, v) = e.services[0];
        assert_eq!((k.address, k.dport, k.backend_slot, k.proto, k.scope), ([10, 96, 0, 10], 80, 0, 6, LB_SCOPE_EXT));
        assert_eq!((v.backend_id, v.count, v.rev_nat, v.flags), (60, 2, 7, SVC_FLAG_AFFINITY));
        assert_eq!((e.services[1].0.backend_slot, e.services[1].1.backend_id), (1, 3));
        assert_eq!((e.services[2].0.backend_slot, e.services[2].1.backend_id), (2, 1));
        assert_eq!((e.services[3].1.count, e.services[3].1.flags), (0, SVC_FLAG_REJECT));
        assert_eq!((e.services[4].1.count, e.services[4].1.flags), (0, SVC_FLAG_TWO_SCOPES));
        assert_eq!((e.services[5].0.scope, e.services[5].1.count), (LB_SCOPE_INT, 1));
        assert_eq!((e.services[6].0.backend_slot, e.services[6].1.backend_id), (1, 1));
        // IPv6 lines are not loaded.
        assert_eq!(e.backends.len(), 2);
        assert_eq!(
            e.backends[1].1,
            Lb4Backend { address: [10, 200, 0, 3], port: 8080, proto: 6, flags: BACKEND_TERMINATING }
        );
        assert_eq!(e.revnat.len(), 3);
        assert_eq!(e.revnat[0].1.address, [10, 96, 0, 10]);
        let mut bad = texts.clone();
        bad[1] = "1 10.200.0.1:8080/TCP active\n".into();
        assert!(parse(&bad).unwrap_err().to_string().contains("backend 3 is not in maps/backends.txt"));
    }
}
