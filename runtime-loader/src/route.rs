//! Finding a pod's host-side interface: the interface of the host's route
//! to exactly the pod's address, as point-to-point CNIs set them up (a /32
//! or /128 route to the pod over its veth; Cilium with endpoint routes
//! "add[s] a Linux route to the lxc interface" of each endpoint, cilium
//! commit 573159d, <https://github.com/cilium/cilium/pull/18025>). The
//! kernel's route tables are read
//! from `/proc/net/route` and `/proc/net/ipv6_route` (the main table,
//! which is where such routes live).
//!
//! Only an exact host route names a pod's interface: a covering route
//! (a subnet, the default route) says where packets to the address would
//! go, not that a pod is behind that interface, and attaching a pod's
//! programs to the node's uplink would enforce its policy on every packet
//! of the node. Several host routes to one address are ranked by lowest
//! metric, as the kernel ranks them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A route: destination prefix, metric, interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Destination address.
    pub dest: IpAddr,
    /// Prefix length.
    pub prefix_len: u8,
    /// Metric.
    pub metric: u32,
    /// Interface name.
    pub interface: String,
}

const RTF_REJECT: u32 = 0x0200;

/// Parses `/proc/net/route` (IPv4; addresses are the kernel's in-memory
/// 32-bit words printed in hex).
pub fn parse_ipv4(text: &str) -> Vec<Route> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let word = |s: &str| u32::from_str_radix(s, 16).ok();
            let (dest, flags, metric, mask) =
                (word(f.get(1)?)?, word(f.get(3)?)?, f.get(6)?.parse().ok()?, word(f.get(7)?)?);
            if flags & RTF_REJECT != 0 {
                return None;
            }
            Some(Route {
                dest: IpAddr::V4(Ipv4Addr::from(dest.to_ne_bytes())),
                prefix_len: mask.count_ones() as u8,
                metric,
                interface: f[0].to_string(),
            })
        })
        .collect()
}

/// Parses `/proc/net/ipv6_route`.
pub fn parse_ipv6(text: &str) -> Vec<Route> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 {
                return None;
            }
            let dest = u128::from_str_radix(f[0], 16).ok()?;
            let flags = u32::from_str_radix(f[8], 16).ok()?;
            if flags & RTF_REJECT != 0 || f[9] == "lo" {
                return None;
            }
            Some(Route {
                dest: IpAddr::V6(Ipv6Addr::from(dest)),
                prefix_len: u8::from_str_radix(f[1], 16).ok()?,
                metric: u32::from_str_radix(f[5], 16).ok()?,
                interface: f[9].to_string(),
            })
        })
        .collect()
}

/// Whether `route` covers `ip`.
fn covers(route: &Route, ip: IpAddr) -> bool {
    match (route.dest, ip) {
        (IpAddr::V4(d), IpAddr::V4(a)) => {
            let mask = u32::MAX.checked_shl(32u32.saturating_sub(u32::from(route.prefix_len))).unwrap_or(0);
            u32::from(d) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(d), IpAddr::V6(a)) => {
            let mask = u128::MAX.checked_shl(128u32.saturating_sub(u32::from(route.prefix_len))).unwrap_or(0);
            u128::from(d) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

/// Whether `route` is a host route to exactly `ip` (/32, /128).
fn is_host_route_to(route: &Route, ip: IpAddr) -> bool {
    let host = if ip.is_ipv4() { 32 } else { 128 };
    route.prefix_len == host && route.dest == ip
}

/// The interface of the host route to exactly `ip` in `routes` (lowest
/// metric first); where there is none, the most specific covering route,
/// which names no interface but says why (see the module).
pub fn interface_for(routes: &[Route], ip: IpAddr) -> Result<&str, Option<&Route>> {
    let lowest_metric = |a: &&Route, b: &&Route| b.metric.cmp(&a.metric);
    if let Some(r) = routes.iter().filter(|r| is_host_route_to(r, ip)).max_by(lowest_metric) {
        return Ok(r.interface.as_str());
    }
    Err(routes
        .iter()
        .filter(|r| covers(r, ip))
        .max_by(|a, b| a.prefix_len.cmp(&b.prefix_len).then(b.metric.cmp(&a.metric))))
}

/// The host's routes, both families.
pub fn host_routes() -> std::io::Result<Vec<Route>> {
    let mut routes = parse_ipv4(&std::fs::read_to_string("/proc/net/route")?);
    // A kernel without IPv6 has no such file: then there are no v6 routes.
    if let Ok(text) = std::fs::read_to_string("/proc/net/ipv6_route") {
        routes.extend(parse_ipv6(&text));
    }
    Ok(routes)
}

/// Parses `/proc/net/dev`: the names of the interfaces.
pub fn parse_interfaces(text: &str) -> std::collections::BTreeSet<String> {
    text.lines().skip(2).filter_map(|line| Some(line.split_once(':')?.0.trim().to_string())).collect()
}

/// The interfaces of this process's network namespace (from `/proc`, which
/// follows the process's namespace, unlike `/sys/class/net`, which follows
/// the namespace sysfs was mounted in).
pub fn host_interfaces() -> std::io::Result<std::collections::BTreeSet<String>> {
    Ok(parse_interfaces(&std::fs::read_to_string("/proc/net/dev")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_host_route_of_a_pod() {
        let v4 = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                  eth0\t00000000\t0100000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                  eth0\t0000C80A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n\
                  pc-a\t0201C80A\t00000000\t0005\t0\t0\t0\tFFFFFFFF\t0\t0\t0\n";
        let v6 = "fd000200000000000000000000000102 80 00000000000000000000000000000000 00 \
                  00000000000000000000000000000000 00000400 00000001 00000000 00000001 pc-a\n";
        let mut routes = parse_ipv4(v4);
        routes.extend(parse_ipv6(v6));
        assert_eq!(interface_for(&routes, "10.200.1.2".parse().unwrap()), Ok("pc-a"));
        assert_eq!(interface_for(&routes, "fd00:200::102".parse().unwrap()), Ok("pc-a"));
        assert_eq!(interface_for(&routes, "fd00:201::1".parse().unwrap()), Err(None));
    }

    #[test]
    fn a_covering_route_names_no_interface() {
        let v4 = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                  eth0\t00000000\t0100000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                  eth1\t0000C80A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n\
                  pc-a\t0201C80A\t00000000\t0005\t0\t0\t20\tFFFFFFFF\t0\t0\t0\n\
                  pc-b\t0201C80A\t00000000\t0005\t0\t0\t10\tFFFFFFFF\t0\t0\t0\n";
        let routes = parse_ipv4(v4);
        // The lower metric of two host routes; a subnet route and the
        // default route cover an address but name no pod's interface.
        assert_eq!(interface_for(&routes, "10.200.1.2".parse().unwrap()), Ok("pc-b"));
        let subnet = interface_for(&routes, "10.200.1.3".parse().unwrap()).unwrap_err().unwrap();
        assert_eq!((subnet.interface.as_str(), subnet.prefix_len), ("eth1", 16));
        let default = interface_for(&routes, "192.0.2.1".parse().unwrap()).unwrap_err().unwrap();
        assert_eq!((default.interface.as_str(), default.prefix_len), ("eth0", 0));
    }

    #[test]
    fn reads_interface_names() {
        let dev = "Inter-|   Receive                            |  Transmit\n \
                   face |bytes    packets errs drop fifo frame compressed multicast|bytes\n\
                   \x20   lo:     100       1    0    0    0     0          0         0      100\n\
                   pc-a0:       0       0    0    0    0     0          0         0        0\n";
        assert_eq!(parse_interfaces(dev).into_iter().collect::<Vec<_>>(), ["lo", "pc-a0"]);
    }
}
