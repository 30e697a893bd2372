//! The node's own addresses, which the agent maps to the `host` identity
//! in the ipcache so that the pod's own node may always reach it (issue 16
//! item 5, issue 11 item 1).
//!
//! Kubernetes: "traffic to and from the node where a Pod is running is
//! always allowed, regardless of the IP address of the Pod or the node"
//! (Network Policies, "What you can't do"); Cilium maps every address of
//! the local node to the reserved `host` identity and allows it by default
//! (`--allow-localhost`). The compiled bundle knows only the addresses the
//! `Node` object lists; a node has more: the address its kubelet probes
//! come from is chosen by the route to the pod, and a point-to-point CNI
//! (`ptp`) puts the pod's gateway address on the host side of each pod's
//! veth and routes the pod with that source. So the agent reads every
//! address of its network namespace, as the kernel lists its own:
//!
//! - IPv4: `/proc/net/fib_trie`, the `/32 host LOCAL` entries (the local
//!   table: one per address the node owns, on any interface);
//! - IPv6: `/proc/net/if_inet6`.
//!
//! Loopback addresses (`127.0.0.0/8`, `::1`) are left out: a pod never
//! sees them as a source (the kernel does not route them off `lo`), and
//! a pod's own loopback traffic never crosses its veth. Everything else is
//! kept, the host-side veths' addresses included: they are the node's own
//! (the pod's addresses are in the pod's namespace, not here), and they
//! are the very sources of the node's connections to its pods. Link-local
//! addresses are kept too: they are not routed, so a packet from one of
//! them that reaches a pod's veth comes from this node.
//!
//! Both files follow the reading process's network namespace, which is
//! the node's for the agent (`hostNetwork`); no syscall beyond reading
//! them, and no `unsafe`.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `IFA_F_DADFAILED`: the address failed duplicate address detection and
/// is not the node's to use.
const IFA_F_DADFAILED: u32 = 0x08;

/// The IPv4 addresses the node owns, from the text of `/proc/net/fib_trie`.
pub fn parse_fib_trie(text: &str) -> BTreeSet<IpAddr> {
    let mut addresses = BTreeSet::new();
    let mut current: Option<Ipv4Addr> = None;
    for line in text.lines() {
        let line = line.trim_start();
        if let Some(rest) = line.strip_prefix("|-- ") {
            current = rest.trim().parse().ok();
        } else if let Some(rest) = line.strip_prefix('/') {
            let mut fields = rest.split_whitespace();
            let (len, _scope, kind) = (fields.next(), fields.next(), fields.next());
            if let (Some("32"), Some("LOCAL"), Some(address)) = (len, kind, current) {
                if !address.is_loopback() {
                    addresses.insert(IpAddr::V4(address));
                }
            }
        }
    }
    addresses
}

/// The IPv6 addresses the node owns, from the text of `/proc/net/if_inet6`
/// (address in hex, interface index, prefix length, scope, flags, name).
pub fn parse_if_inet6(text: &str) -> BTreeSet<IpAddr> {
    let mut addresses = BTreeSet::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [hex, _index, _prefix, _scope, flags, _name] = fields[..] else { continue };
        let (Ok(bits), Ok(flags)) = (u128::from_str_radix(hex, 16), u32::from_str_radix(flags, 16)) else {
            continue;
        };
        if hex.len() != 32 || flags & IFA_F_DADFAILED != 0 {
            continue;
        }
        let address = Ipv6Addr::from(bits);
        if !address.is_loopback() {
            addresses.insert(IpAddr::V6(address));
        }
    }
    addresses
}

/// Every address of this process's network namespace, loopback left out.
/// A kernel without IPv6 has no `if_inet6`: then there are no IPv6
/// addresses.
pub fn read() -> std::io::Result<BTreeSet<IpAddr>> {
    let mut addresses = parse_fib_trie(&std::fs::read_to_string("/proc/net/fib_trie")?);
    if let Ok(text) = std::fs::read_to_string("/proc/net/if_inet6") {
        addresses.extend(parse_if_inet6(&text));
    }
    Ok(addresses)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/proc/net/fib_trie` of a node with an uplink, a ptp pod veth
    /// holding the pod's gateway address, and loopback (both tables).
    const FIB_TRIE: &str = "Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
     +-- 192.0.2.0/24 2 0 2
        |-- 192.0.2.0
           /24 link UNICAST
        |-- 192.0.2.2
           /32 host LOCAL
        |-- 192.0.2.255
           /32 link BROADCAST
     |-- 10.200.3.1
        /32 host LOCAL
     |-- 10.200.3.2
        /32 link UNICAST
Local:
  +-- 0.0.0.0/0 3 0 5
     |-- 192.0.2.2
        /32 host LOCAL
     |-- 10.200.3.1
        /32 host LOCAL
";

    const IF_INET6: &str = "\
fe8000000000000000fc00fffe000001 04 40 20 80     eth0
00000000000000000000000000000001 01 80 10 80       lo
fd000000000000000000000000000002 04 40 00 82     eth0
fd000000000000000000000000000009 04 40 00 08     eth0
";

    fn set(list: &[&str]) -> BTreeSet<IpAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn local_v4_addresses_are_the_host_local_slash_32s_without_loopback() {
        assert_eq!(parse_fib_trie(FIB_TRIE), set(&["10.200.3.1", "192.0.2.2"]));
        assert_eq!(parse_fib_trie("|-- nonsense\n /32 host LOCAL\n/32"), BTreeSet::new());
    }

    #[test]
    fn v6_addresses_leave_out_loopback_and_failed_dad() {
        assert_eq!(parse_if_inet6(IF_INET6), set(&["fe80::fc:ff:fe00:1", "fd00::2"]));
        assert_eq!(parse_if_inet6("zz 01 80 10 80 lo\nshort\n"), BTreeSet::new());
    }
}
