//! `ipcache.txt`: `<prefix> <identity> <source>`, by prefix. Source
//! `world`, `cidr`, `host` (an address of this node), `node:<name>` (of
//! another node) or `endpoint:<ns>/<pod>`.

use crate::error::LineError;
use crate::text::{display_by_write, parse_lines, push_number, Fields};
use std::fmt;
use std::net::IpAddr;

/// Where an ipcache entry comes from (for people: the datapath only reads
/// the identity).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source<'a> {
    /// Outside the cluster.
    World,
    /// A prefix a rule names.
    Cidr,
    /// An address of this node.
    Host,
    /// An address of another node, by name.
    Node(&'a str),
    /// A pod's address, `<ns>/<pod>`.
    Endpoint(&'a str),
}

/// One line of `ipcache.txt`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpcacheLine<'a> {
    /// The prefix's address, host bits zero.
    pub addr: IpAddr,
    /// The prefix's length.
    pub prefix_len: u8,
    /// Identity of the addresses.
    pub identity: u32,
    /// Where the entry comes from.
    pub source: Source<'a>,
}

impl<'a> IpcacheLine<'a> {
    /// Appends the line, without its newline.
    pub fn write(&self, out: &mut String) {
        use fmt::Write;
        // Writing to a `String` cannot fail.
        let _ = write!(out, "{}/", self.addr);
        push_number(out, self.prefix_len);
        out.push(' ');
        push_number(out, self.identity);
        out.push(' ');
        match self.source {
            Source::World => out.push_str("world"),
            Source::Cidr => out.push_str("cidr"),
            Source::Host => out.push_str("host"),
            Source::Node(name) => {
                out.push_str("node:");
                out.push_str(name);
            }
            Source::Endpoint(name) => {
                out.push_str("endpoint:");
                out.push_str(name);
            }
        }
    }

    /// Parses `text`, line `line` of `file`.
    pub fn parse(file: &str, line: usize, text: &'a str) -> Result<Self, LineError> {
        let mut f = Fields::new(file, line, text);
        let prefix = f.next("prefix")?;
        let (ip, len) = prefix.split_once('/').ok_or_else(|| f.error(format!("`{prefix}` is not a prefix")))?;
        let addr = f.address(ip)?;
        let prefix_len: u8 = f.number("prefix length", len)?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix_len > max {
            return Err(f.error(format!("prefix length {prefix_len} > {max}")));
        }
        if masked(addr, prefix_len) != addr {
            return Err(f.error(format!("`{prefix}` has host bits set")));
        }
        let identity = f.next_identity()?;
        let source = f.last("source")?;
        let source = match source {
            "world" => Source::World,
            "cidr" => Source::Cidr,
            "host" => Source::Host,
            s => match s.split_once(':') {
                Some(("node", name)) if !name.is_empty() => Source::Node(f.name("node", name)?),
                Some(("endpoint", name)) if !name.is_empty() => Source::Endpoint(f.name("endpoint", name)?),
                _ => return Err(f.error(format!("unknown source `{s}`"))),
            },
        };
        Ok(IpcacheLine { addr, prefix_len, identity, source })
    }

    /// Parses every line of `text` (a file, or a piece of one starting at
    /// line `first`); a prefix listed twice is refused.
    pub fn parse_all(file: &str, first: usize, text: &'a str) -> Result<Vec<Self>, LineError> {
        parse_lines(file, first, text, Self::parse, Self::sort_key)
    }

    /// What the lines of `ipcache.txt` are sorted by: the prefix (address,
    /// then length), one line each.
    pub fn sort_key(&self) -> (IpAddr, u8) {
        (self.addr, self.prefix_len)
    }
}

display_by_write!(IpcacheLine);

/// `addr` with the bits after `len` cleared.
fn masked(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::from(std::net::Ipv4Addr::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::from(std::net::Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_it_writes_and_refuses_the_rest() {
        let text = "0.0.0.0/0 9 world\n10.0.1.2/32 256 endpoint:shop/api\n192.168.0.1/32 1 host\n::/0 10 world\n";
        let lines = IpcacheLine::parse_all("ipcache.txt", 1, text).unwrap();
        assert_eq!(lines[1].source, Source::Endpoint("shop/api"));
        assert_eq!(lines.iter().map(|l| format!("{l}\n")).collect::<String>(), text);
        for (bad, message) in [
            ("10.0.1.2/33 256 cidr", "prefix length 33 > 32"),
            ("10.0.1.2/24 256 cidr", "`10.0.1.2/24` has host bits set"),
            ("10.0.1.0/24 0 cidr", "identity 0 is no identity"),
            ("10.0.1.0/24 0256 cidr", "`0256` is not a valid identity"),
            ("10.0.1.0/24 256 nowhere", "unknown source `nowhere`"),
            ("10.0.1.0/24 256", "no source"),
        ] {
            let e = IpcacheLine::parse("ipcache.txt", 2, bad).unwrap_err();
            assert_eq!(e.to_string(), format!("ipcache.txt:2: {message}"), "{bad}");
        }
        let e = IpcacheLine::parse_all("ipcache.txt", 1, "0.0.0.0/0 9 world\n0.0.0.0/0 2 world\n").unwrap_err();
        assert_eq!(e.line, 2);
        let e = IpcacheLine::parse_all("ipcache.txt", 1, "10.0.0.0/8 9 cidr\n0.0.0.0/0 2 world\n").unwrap_err();
        assert_eq!(e.to_string(), "ipcache.txt:2: this line is out of order (lines are sorted by key)");
    }
}
