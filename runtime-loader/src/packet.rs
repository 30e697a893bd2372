//! Crafted packets for probing programs with `BPF_PROG_TEST_RUN`: an
//! Ethernet frame with an IPv4 or IPv6 header and a TCP, UDP, SCTP, ICMP or
//! ICMPv6 header, as a pod would send it.

use std::net::IpAddr;

/// IANA numbers of the protocols a probe can carry.
pub const TCP: u8 = 6;
/// UDP.
pub const UDP: u8 = 17;
/// SCTP.
pub const SCTP: u8 = 132;
/// ICMP.
pub const ICMP: u8 = 1;
/// ICMPv6.
pub const ICMPV6: u8 = 58;

/// The first packet of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProbePacket {
    /// Source address.
    pub src: IpAddr,
    /// Destination address (same family as `src`).
    pub dst: IpAddr,
    /// IANA protocol number.
    pub protocol: u8,
    /// Source port; for ICMP echo the identifier.
    pub sport: u16,
    /// Destination port; for ICMP the type.
    pub dport: u16,
}

/// TCP SYN flag.
const SYN: u8 = 0x02;

impl ProbePacket {
    /// The frame's bytes. ICMP types 8 and 128 (echo requests) carry
    /// `sport` as identifier.
    pub fn to_bytes(&self) -> Vec<u8> {
        let l4 = self.l4();
        let mut out = Vec::with_capacity(14 + 40 + l4.len());
        out.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02]); // destination MAC
        out.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]); // source MAC
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                out.extend_from_slice(&0x0800u16.to_be_bytes());
                let total = (20 + l4.len()) as u16;
                out.extend_from_slice(&[0x45, 0]);
                out.extend_from_slice(&total.to_be_bytes());
                out.extend_from_slice(&[0, 0, 0x40, 0, 64, self.protocol, 0, 0]);
                out.extend_from_slice(&s.octets());
                out.extend_from_slice(&d.octets());
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                out.extend_from_slice(&0x86ddu16.to_be_bytes());
                out.extend_from_slice(&[0x60, 0, 0, 0]);
                out.extend_from_slice(&(l4.len() as u16).to_be_bytes());
                out.extend_from_slice(&[self.protocol, 64]);
                out.extend_from_slice(&s.octets());
                out.extend_from_slice(&d.octets());
            }
            // Mixed families cannot be one packet; callers pair addresses
            // of one family.
            _ => return Vec::new(),
        }
        out.extend_from_slice(&l4);
        out
    }

    fn l4(&self) -> Vec<u8> {
        let ports = [self.sport.to_be_bytes(), self.dport.to_be_bytes()].concat();
        match self.protocol {
            TCP => {
                let mut h = ports;
                h.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, SYN, 0xff, 0xff, 0, 0, 0, 0]);
                h
            }
            UDP => {
                let mut h = ports;
                h.extend_from_slice(&[0, 8, 0, 0]);
                h
            }
            SCTP => {
                let mut h = ports;
                h.extend_from_slice(&[0; 8]);
                h
            }
            ICMP | ICMPV6 => {
                let mut h = vec![self.dport as u8, 0, 0, 0];
                h.extend_from_slice(&self.sport.to_be_bytes());
                h.extend_from_slice(&[0, 1]);
                h
            }
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lays_out_headers() {
        let p = ProbePacket {
            src: "10.200.1.10".parse().unwrap(),
            dst: "10.200.1.20".parse().unwrap(),
            protocol: TCP,
            sport: 40000,
            dport: 5432,
        };
        let b = p.to_bytes();
        assert_eq!(b.len(), 14 + 20 + 20);
        assert_eq!(&b[12..14], &[0x08, 0x00]);
        assert_eq!(b[14 + 9], TCP);
        assert_eq!(&b[14 + 12..14 + 16], &[10, 200, 1, 10]);
        assert_eq!(&b[34..38], &[0x9c, 0x40, 0x15, 0x38]);
        assert_eq!(b[34 + 13], SYN);
        let v6 = ProbePacket {
            src: "fd00:200::10".parse().unwrap(),
            dst: "fd00:200::20".parse().unwrap(),
            protocol: ICMPV6,
            sport: 7,
            dport: 128,
        };
        let b = v6.to_bytes();
        assert_eq!(b.len(), 14 + 40 + 8);
        assert_eq!((b[14 + 6], b[54], &b[58..60]), (ICMPV6, 128, &[0u8, 7][..]));
    }
}
