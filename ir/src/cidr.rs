//! IPv4/IPv6 prefixes (`10.0.0.0/8`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IP prefix. The address is always the network address (host bits zero).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "CidrFields")]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

/// A [`Cidr`] as it is serialized, checked when read back: a prefix
/// length the family allows and no host bits, as [`Cidr::parse_strict`]
/// checks them.
#[derive(serde::Deserialize)]
struct CidrFields {
    addr: IpAddr,
    len: u8,
}

impl TryFrom<CidrFields> for Cidr {
    type Error = String;

    fn try_from(f: CidrFields) -> Result<Cidr, String> {
        Cidr::parse_strict(&format!("{}/{}", f.addr, f.len))
            .map_err(|e| format!("prefix `{}/{}`: {e:?}", f.addr, f.len))
    }
}

/// Why a string is not a CIDR.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CidrError {
    /// No `/len` part, or the address does not parse.
    Syntax,
    /// The prefix length exceeds 32 (IPv4) or 128 (IPv6).
    PrefixTooLong(u8),
    /// Host bits are set (`10.0.0.1/8`); carries the network address.
    HostBitsSet(Cidr),
}

impl Cidr {
    /// The prefix `addr/len`, with host bits cleared. Panics if `len` is
    /// longer than the address family allows.
    pub fn new(addr: IpAddr, len: u8) -> Cidr {
        assert!(len <= max_len(addr), "prefix length {len} too long for {addr}");
        Cidr { addr: mask(addr, len), len }
    }

    /// The host prefix (`/32` or `/128`) of one address.
    pub fn host(addr: IpAddr) -> Cidr {
        Cidr { addr, len: max_len(addr) }
    }

    /// `0.0.0.0/0` or `::/0`.
    pub fn all(ipv6: bool) -> Cidr {
        if ipv6 {
            Cidr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0)
        } else {
            Cidr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)
        }
    }

    /// Parses `addr/len` strictly: host bits must be zero. A bare address is
    /// taken as a host prefix.
    pub fn parse_strict(s: &str) -> Result<Cidr, CidrError> {
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => {
                let addr = IpAddr::from_str(a).map_err(|_| CidrError::Syntax)?;
                let len: u8 = l.parse().map_err(|_| CidrError::Syntax)?;
                (addr, len)
            }
            None => {
                let addr = IpAddr::from_str(s).map_err(|_| CidrError::Syntax)?;
                (addr, max_len(addr))
            }
        };
        if len > max_len(addr) {
            return Err(CidrError::PrefixTooLong(len));
        }
        let cidr = Cidr::new(addr, len);
        if cidr.addr != addr {
            return Err(CidrError::HostBitsSet(cidr));
        }
        Ok(cidr)
    }

    /// Network address.
    pub fn addr(self) -> IpAddr {
        self.addr
    }

    /// Prefix length.
    pub fn prefix_len(self) -> u8 {
        self.len
    }

    /// Whether this is an IPv6 prefix.
    pub fn is_ipv6(self) -> bool {
        self.addr.is_ipv6()
    }

    /// Whether `ip` lies in the prefix.
    pub fn contains(self, ip: IpAddr) -> bool {
        ip.is_ipv6() == self.is_ipv6() && mask(ip, self.len) == self.addr
    }

    /// Whether `other` lies entirely in this prefix.
    pub fn covers(self, other: Cidr) -> bool {
        other.len >= self.len && self.contains(other.addr)
    }

    /// The first and last address of the prefix as 128-bit integers
    /// (IPv4 addresses in the low 32 bits).
    pub fn range(self) -> (u128, u128) {
        let lo = to_u128(self.addr);
        let bits = u32::from(max_len(self.addr) - self.len);
        let hi = if bits == 128 { u128::MAX } else { lo | ((1u128 << bits) - 1) };
        (lo, hi)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// Host prefix length of the address family of `addr`.
pub fn max_len(addr: IpAddr) -> u8 {
    if addr.is_ipv6() {
        128
    } else {
        32
    }
}

/// `addr` as an integer (IPv4 in the low 32 bits).
pub fn to_u128(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The address of family `ipv6` whose integer value is `n`.
pub fn from_u128(n: u128, ipv6: bool) -> IpAddr {
    if ipv6 {
        IpAddr::V6(Ipv6Addr::from(n))
    } else {
        IpAddr::V4(Ipv4Addr::from(n as u32))
    }
}

fn mask(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let m = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & m))
        }
        IpAddr::V6(a) => {
            let m = if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) };
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & m))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects_host_bits() {
        assert_eq!(Cidr::parse_strict("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
        assert!(matches!(Cidr::parse_strict("10.0.0.1/8"), Err(CidrError::HostBitsSet(_))));
        assert_eq!(Cidr::parse_strict("10.0.0.0/33"), Err(CidrError::PrefixTooLong(33)));
        assert_eq!(Cidr::parse_strict("nope/8"), Err(CidrError::Syntax));
        assert_eq!(Cidr::parse_strict("fd00::/8").unwrap().prefix_len(), 8);
    }

    #[test]
    fn containment() {
        let a = Cidr::parse_strict("10.0.0.0/8").unwrap();
        let b = Cidr::parse_strict("10.1.0.0/16").unwrap();
        assert!(a.covers(b) && !b.covers(a));
        assert!(a.contains("10.255.0.1".parse().unwrap()));
        assert!(!a.contains("::1".parse().unwrap()));
        assert_eq!(Cidr::all(false).range(), (0, u128::from(u32::MAX)));
    }
}
