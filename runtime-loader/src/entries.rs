//! The bundle's text maps read into the datapath's keys and values, for
//! one generation (the generation byte is set when they are written).
//!
//! Formats (written by `policyc compile`, see its `emit::maps`):
//! - `ipcache.txt`: `<prefix> <identity> <source>`
//! - `endpoints.txt`: `<ip> <endpoint id> <identity> <enforced> <ns>/<pod>`
//! - `policy/<stem>.txt`: `<direction> <peer> <proto>/<port>/<len> <verdict> <rules>`
//! - `rules.txt`: `<cookie> <rule>`

use policyc_ebpf::abi::{
    EndpointKey, EndpointValue, IpcacheKey, IpcacheValue, PolicyKey, PolicyValue, DIR_EGRESS, DIR_INGRESS,
    ENDPOINT_ENFORCE_EGRESS, ENDPOINT_ENFORCE_INGRESS, FAMILY_IPV4, FAMILY_IPV6, IPCACHE_KEY_HEADER_BITS,
    POLICY_KEY_EXACT_BITS, VERDICT_ALLOW, VERDICT_DENY, VERDICT_REDIRECT,
};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// A line that does not parse: file, 1-based line, what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryError {
    /// File relative to the bundle.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for EntryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

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

fn fields<'a>(file: &str, n: usize, text: &'a str, count: usize) -> Result<Vec<&'a str>, EntryError> {
    let f: Vec<&str> = text.split(' ').collect();
    if f.len() < count {
        return Err(EntryError { file: file.into(), line: n, message: format!("expected {count} fields") });
    }
    Ok(f)
}

fn parse<T: std::str::FromStr>(file: &str, n: usize, what: &str, s: &str) -> Result<T, EntryError> {
    s.parse().map_err(|_| EntryError { file: file.into(), line: n, message: format!("`{s}` is not a valid {what}") })
}

/// `ipcache.txt` (or a piece of it starting at line `first`) as (key,
/// value) pairs of generation 0.
pub fn ipcache(file: &str, first: usize, text: &str) -> Result<Vec<(IpcacheKey, IpcacheValue)>, EntryError> {
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            let n = first + i;
            let f = fields(file, n, line, 3)?;
            let (ip, len) = f[0].split_once('/').ok_or_else(|| EntryError {
                file: file.into(),
                line: n,
                message: format!("`{}` is not a prefix", f[0]),
            })?;
            let ip: IpAddr = parse(file, n, "address", ip)?;
            let len: u32 = parse(file, n, "prefix length", len)?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            if len > max {
                return Err(EntryError { file: file.into(), line: n, message: format!("prefix length {len} > {max}") });
            }
            let (family, addr) = address_bytes(ip);
            let key = IpcacheKey { prefixlen: IPCACHE_KEY_HEADER_BITS + len, generation: 0, family, pad: 0, addr };
            Ok((key, IpcacheValue { identity: parse(file, n, "identity", f[1])?, flags: 0 }))
        })
        .collect()
}

/// `endpoints.txt` (or a piece of it starting at line `first`) as (key,
/// value) pairs of generation 0, with the endpoint's name.
pub fn endpoints(
    file: &str,
    first: usize,
    text: &str,
) -> Result<Vec<(EndpointKey, EndpointValue, String)>, EntryError> {
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            let n = first + i;
            let f = fields(file, n, line, 5)?;
            let (family, addr) = address_bytes(parse(file, n, "address", f[0])?);
            let flags = match f[3] {
                "ingress+egress" => ENDPOINT_ENFORCE_INGRESS | ENDPOINT_ENFORCE_EGRESS,
                "ingress" => ENDPOINT_ENFORCE_INGRESS,
                "egress" => ENDPOINT_ENFORCE_EGRESS,
                "-" => 0,
                other => {
                    return Err(EntryError {
                        file: file.into(),
                        line: n,
                        message: format!("unknown enforcement `{other}`"),
                    })
                }
            };
            let value = EndpointValue {
                endpoint_id: parse(file, n, "endpoint id", f[1])?,
                identity: parse(file, n, "identity", f[2])?,
                flags,
            };
            Ok((EndpointKey { generation: 0, family, pad: 0, addr }, value, f[4].to_string()))
        })
        .collect()
}

/// `rules.txt`: rule name → cookie.
pub fn rules(file: &str, text: &str) -> Result<BTreeMap<String, u32>, EntryError> {
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            let f = fields(file, i + 1, line, 2)?;
            Ok((f[1].to_string(), parse(file, i + 1, "cookie", f[0])?))
        })
        .collect()
}

/// An endpoint's policy file (or a piece of it starting at line `first`)
/// as (key, value) pairs of generation 0.
pub fn policy(
    file: &str,
    first: usize,
    text: &str,
    endpoint_id: u16,
    cookies: &BTreeMap<String, u32>,
) -> Result<Vec<(PolicyKey, PolicyValue)>, EntryError> {
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            let n = first + i;
            let err = |message: String| EntryError { file: file.into(), line: n, message };
            let f = fields(file, n, line, 4)?;
            let direction = match f[0] {
                "ingress" => DIR_INGRESS,
                "egress" => DIR_EGRESS,
                other => return Err(err(format!("unknown direction `{other}`"))),
            };
            let peer = if f[1] == "any" { 0 } else { parse(file, n, "identity", f[1])? };
            let mut space = f[2].split('/');
            let (Some(proto), Some(port), Some(len), None) = (space.next(), space.next(), space.next(), space.next())
            else {
                return Err(err(format!("`{}` is not `<proto>/<port>/<len>`", f[2])));
            };
            let len: u32 = parse(file, n, "prefix length", len)?;
            if len > 24 {
                return Err(err(format!("prefix length {len} > 24")));
            }
            let verdict = match f[3] {
                "allow" => VERDICT_ALLOW,
                "deny" => VERDICT_DENY,
                v if v.starts_with("redirect:") => VERDICT_REDIRECT,
                other => return Err(err(format!("unknown verdict `{other}`"))),
            };
            // The first rule named decides the cookie flow events carry.
            let rule = f.get(4).and_then(|r| r.split(',').next()).unwrap_or("");
            let rule_cookie = if rule.is_empty() {
                0
            } else {
                *cookies.get(rule).ok_or_else(|| err(format!("rule `{rule}` is not in rules.txt")))?
            };
            let key = PolicyKey {
                prefixlen: POLICY_KEY_EXACT_BITS + len,
                generation: 0,
                direction,
                endpoint_id,
                peer_identity: peer,
                pad: 0,
                protocol: parse(file, n, "protocol", proto)?,
                port: parse(file, n, "port", port)?,
            };
            Ok((key, PolicyValue { verdict, pad: 0, proxy_port: 0, rule_cookie }))
        })
        .collect()
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
        let cookies = rules("rules.txt", "42 CiliumNetworkPolicy/shop/api:spec.ingress[0]\n").unwrap();
        let p = policy(
            "policy/shop.api.txt",
            1,
            "ingress 300 6/8080/23 allow CiliumNetworkPolicy/shop/api:spec.ingress[0]\negress any 0/0/0 deny\n",
            77,
            &cookies,
        )
        .unwrap();
        assert_eq!(p[0].0.prefixlen, 72 + 23);
        assert_eq!((p[0].0.protocol, p[0].0.port, p[0].0.peer_identity), (6, 8080, 300));
        assert_eq!((p[0].1.verdict, p[0].1.rule_cookie), (VERDICT_ALLOW, 42));
        assert_eq!((p[1].0.direction, p[1].0.peer_identity, p[1].1.verdict), (DIR_EGRESS, 0, VERDICT_DENY));
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = ipcache("ipcache.txt", 1, "0.0.0.0/0 9 world\n10.0.1.2/33 256 x\n").unwrap_err();
        assert_eq!(e.to_string(), "ipcache.txt:2: prefix length 33 > 32");
        let e = policy("p.txt", 7, "ingress 1 6/80/24 allow nosuchrule\n", 1, &BTreeMap::new()).unwrap_err();
        assert_eq!(e.to_string(), "p.txt:7: rule `nosuchrule` is not in rules.txt");
    }
}
