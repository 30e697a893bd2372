//! The bundle's text maps read into the datapath's keys and values, for
//! one generation (the generation byte is set when they are written). The
//! lines are parsed by [`policyc_bundle`], which defines their formats;
//! this module only turns them into the ABI's structs.

use policyc_bundle::endpoints::EndpointLine;
use policyc_bundle::ipcache::IpcacheLine;
use policyc_bundle::policy::{Direction, PolicyLine, Verdict};
use policyc_bundle::LineError;
use policyc_ebpf::abi::{
    EndpointKey, EndpointValue, IpcacheKey, IpcacheValue, PolicyKey, PolicyValue, DIR_EGRESS, DIR_INGRESS,
    ENDPOINT_ENFORCE_EGRESS, ENDPOINT_ENFORCE_INGRESS, FAMILY_IPV4, FAMILY_IPV6, IPCACHE_KEY_HEADER_BITS,
    POLICY_KEY_EXACT_BITS, VERDICT_ALLOW, VERDICT_DENY, VERDICT_REDIRECT,
};
use std::net::IpAddr;

/// Family byte and 16 address bytes of `ip`.
pub fn address_bytes(ip: IpAddr) -> (u8, [u8; 16]) {
    let mut addr = [0u8; 16];
    match ip {
        IpAddr::V4(v4) => {
            addr[..4].copy_from_slice(&v4.octets());
            (FAMILY_IPV4, addr)
        }
        IpAddr::V6(v6) => (FAMILY_IPV6, v6.octets()),
    }
}

/// `ipcache.txt` (or a piece of it starting at line `first`) as (key,
/// value) pairs of generation 0.
pub fn ipcache(file: &str, first: usize, text: &str) -> Result<Vec<(IpcacheKey, IpcacheValue)>, LineError> {
    let lines = IpcacheLine::parse_all(file, first, text)?;
    Ok(lines
        .into_iter()
        .map(|l| {
            let (family, addr) = address_bytes(l.addr);
            let prefixlen = IPCACHE_KEY_HEADER_BITS + u32::from(l.prefix_len);
            (
                IpcacheKey { prefixlen, generation: 0, family, pad: 0, addr },
                IpcacheValue { identity: l.identity, flags: 0 },
            )
        })
        .collect())
}

/// `endpoints.txt` (or a piece of it starting at line `first`) as (key,
/// value) pairs of generation 0, with the endpoint's name.
pub fn endpoints(file: &str, first: usize, text: &str) -> Result<Vec<(EndpointKey, EndpointValue, String)>, LineError> {
    let lines = EndpointLine::parse_all(file, first, text)?;
    Ok(lines
        .into_iter()
        .map(|l| {
            let (family, addr) = address_bytes(l.ip);
            let flags = if l.enforced.ingress { ENDPOINT_ENFORCE_INGRESS } else { 0 }
                | if l.enforced.egress { ENDPOINT_ENFORCE_EGRESS } else { 0 };
            let value = EndpointValue { endpoint_id: u32::from(l.id), identity: l.identity, flags };
            (EndpointKey { generation: 0, family, pad: 0, addr }, value, l.name.to_string())
        })
        .collect())
}

/// A policy line's entry for endpoint `endpoint_id`, generation 0.
pub fn policy_entry(line: &PolicyLine<'_>, endpoint_id: u16) -> (PolicyKey, PolicyValue) {
    let k = &line.key;
    let key = PolicyKey {
        prefixlen: POLICY_KEY_EXACT_BITS + u32::from(k.prefix_len),
        generation: 0,
        direction: match k.direction {
            Direction::Ingress => DIR_INGRESS,
            Direction::Egress => DIR_EGRESS,
        },
        endpoint_id,
        peer_identity: k.peer,
        pad: 0,
        protocol: k.protocol,
        port: k.port,
    };
    let verdict = match line.verdict {
        Verdict::Allow => VERDICT_ALLOW,
        Verdict::Deny => VERDICT_DENY,
        Verdict::Redirect(_) => VERDICT_REDIRECT,
    };
    (key, PolicyValue { verdict, pad: 0, proxy_port: 0, rule_cookie: line.cookie })
}

/// An endpoint's policy file (or a piece of it starting at line `first`)
/// as (key, value) pairs of generation 0.
pub fn policy(
    file: &str,
    first: usize,
    text: &str,
    endpoint_id: u16,
) -> Result<Vec<(PolicyKey, PolicyValue)>, LineError> {
    let lines = PolicyLine::parse_all(file, first, text)?;
    Ok(lines.iter().map(|l| policy_entry(l, endpoint_id)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_format() {
        let ip =
            ipcache("ipcache.txt", 1, "0.0.0.0/0 9 world\n10.0.1.2/32 256 endpoint:shop/api\n::/0 10 world\n").unwrap();
        assert_eq!(ip[1].0.prefixlen, 64);
        assert_eq!(&ip[1].0.addr[..4], &[10, 0, 1, 2]);
        assert_eq!((ip[2].0.family, ip[2].0.prefixlen, ip[2].1.identity), (FAMILY_IPV6, 32, 10));
        let eps = endpoints("endpoints.txt", 1, "10.0.1.2 77 256 ingress shop/api\n").unwrap();
        assert_eq!(
            (eps[0].1.endpoint_id, eps[0].1.flags, eps[0].2.as_str()),
            (77, ENDPOINT_ENFORCE_INGRESS, "shop/api")
        );
        let p = policy(
            "policy/shop.api.txt",
            1,
            "egress any 0/0/0 deny 7 CiliumNetworkPolicy/shop/api:spec.egressDeny[0]\n\
             ingress 300 6/8080/23 allow 42 CiliumNetworkPolicy/shop/api:spec.ingress[0]\n",
            77,
        )
        .unwrap();
        assert_eq!(p[1].0.prefixlen, 72 + 23);
        assert_eq!((p[1].0.protocol, p[1].0.port, p[1].0.peer_identity, p[1].0.endpoint_id), (6, 8080, 300, 77));
        assert_eq!((p[1].1.verdict, p[1].1.rule_cookie), (VERDICT_ALLOW, 42));
        assert_eq!((p[0].0.direction, p[0].0.peer_identity, p[0].1.verdict), (DIR_EGRESS, 0, VERDICT_DENY));
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = ipcache("ipcache.txt", 1, "0.0.0.0/0 9 world\n10.0.1.2/33 256 x\n").unwrap_err();
        assert_eq!(e.to_string(), "ipcache.txt:2: prefix length 33 > 32");
        let e = policy("p.txt", 7, "ingress 1 6/80/24 allow nosuchrule\n", 1).unwrap_err();
        assert_eq!(e.to_string(), "p.txt:7: `nosuchrule` is not a valid cookie");
    }
}
