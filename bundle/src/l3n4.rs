//! An L3/L4 address as service map files write it: `10.96.0.10:80/TCP`,
//! `[fd00::10]:80/UDP` (Cilium's `L3n4Addr`).

use crate::error::LineError;
use crate::text::Fields;
use policyc_ir::protocol::Protocol;
use std::fmt;
use std::net::IpAddr;

/// An address, port and protocol (TCP, UDP or SCTP).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct L3n4 {
    /// The address.
    pub addr: IpAddr,
    /// The port.
    pub port: u16,
    /// The protocol.
    pub protocol: Protocol,
}

impl fmt::Display for L3n4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr {
            IpAddr::V4(a) => write!(f, "{a}:{}/{}", self.port, self.protocol.name()),
            IpAddr::V6(a) => write!(f, "[{a}]:{}/{}", self.port, self.protocol.name()),
        }
    }
}

impl L3n4 {
    /// Parses `s` as the writer writes it.
    pub(crate) fn parse(f: &Fields, s: &str) -> Result<L3n4, LineError> {
        let bad = || f.error(format!("`{s}` is not an address:port/protocol"));
        let (rest, protocol) = s.rsplit_once('/').ok_or_else(bad)?;
        let protocol = match protocol {
            "TCP" => Protocol::Tcp,
            "UDP" => Protocol::Udp,
            "SCTP" => Protocol::Sctp,
            other => return Err(f.error(format!("`{other}` is not TCP, UDP or SCTP"))),
        };
        let (addr, port) = rest.rsplit_once(':').ok_or_else(bad)?;
        let addr = match addr.strip_prefix('[').and_then(|a| a.strip_suffix(']')) {
            Some(v6) => f.address(v6).and_then(|a| if a.is_ipv6() { Ok(a) } else { Err(bad()) })?,
            None => f.address(addr).and_then(|a| if a.is_ipv4() { Ok(a) } else { Err(bad()) })?,
        };
        let port = f.number("port", port)?;
        Ok(L3n4 { addr, port, protocol })
    }
}
