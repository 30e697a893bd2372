//! `policy/<identity>.txt` (or `policy/<identity>.<ns>.<pod>.txt` when one
//! identity's endpoints have different maps):
//! `<direction> <peer> <proto>/<port>/<len> <verdict> <cookie> <rule>[,+<more>]`,
//! by key.
//!
//! `peer` is an identity or `any`; `len` the prefix length over the 24 bits
//! `protocol|port` (0 every protocol, 8 one protocol, 24 one port), with
//! the bits after it zero; verdict `allow`, `deny` or `redirect:<parser>`;
//! `cookie` the rule's cluster-wide number ([`crate::ids::rule_cookies`]),
//! which the entry's value holds and flow events carry; `rule`
//! `<Kind>/<ns>/<name>:<path>`, the first of the rules giving the verdict,
//! and `,+<more>` how many others do (left out if none).

use crate::error::LineError;
use crate::text::{display_by_write, parse_lines, push_number, Fields};

/// Bits of the `protocol|port` space a policy key's prefix covers.
pub const KEY_SPACE_BITS: u8 = 24;

/// Direction of a policy entry, seen from the endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    /// Traffic entering the endpoint.
    Ingress,
    /// Traffic leaving the endpoint.
    Egress,
}

impl Direction {
    /// The field's text.
    pub fn name(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

/// What a policy entry decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict<'a> {
    /// Allowed.
    Allow,
    /// Dropped.
    Deny,
    /// Allowed through the L7 proxy, with the parser it needs (`http`).
    Redirect(&'a str),
}

/// The key of a policy entry: what the datapath looks up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyKey {
    /// Direction.
    pub direction: Direction,
    /// Peer identity; 0 is any peer (written `any`).
    pub peer: u32,
    /// IP protocol number (0 with `prefix_len` 0: any).
    pub protocol: u8,
    /// Port (the first of a range).
    pub port: u16,
    /// Prefix length over `protocol|port` ([`KEY_SPACE_BITS`]).
    pub prefix_len: u8,
}

/// One line of a policy file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyLine<'a> {
    /// The key.
    pub key: PolicyKey,
    /// The verdict.
    pub verdict: Verdict<'a>,
    /// The deciding rule's cookie.
    pub cookie: u32,
    /// The deciding rule's name.
    pub rule: &'a str,
    /// How many other rules give the same verdict.
    pub others: u32,
}

impl<'a> PolicyLine<'a> {
    /// The longest a line is without its verdict and rule name:
    /// `ingress 4294967295 255/65535/24 `, ` 4294967295 `, `,+4294967295`
    /// and a newline (to size a file's text before writing it).
    pub const FIXED_LEN: usize = 32 + 12 + 12 + 1;

    /// Appends the line, without its newline.
    pub fn write(&self, out: &mut String) {
        let key = &self.key;
        out.push_str(key.direction.name());
        out.push(' ');
        if key.peer == 0 {
            out.push_str("any");
        } else {
            push_number(out, key.peer);
        }
        out.push(' ');
        push_number(out, key.protocol);
        out.push('/');
        push_number(out, key.port);
        out.push('/');
        push_number(out, key.prefix_len);
        out.push(' ');
        match self.verdict {
            Verdict::Allow => out.push_str("allow"),
            Verdict::Deny => out.push_str("deny"),
            Verdict::Redirect(parser) => {
                out.push_str("redirect:");
                out.push_str(parser);
            }
        }
        out.push(' ');
        push_number(out, self.cookie);
        out.push(' ');
        out.push_str(self.rule);
        if self.others > 0 {
            out.push_str(",+");
            push_number(out, self.others);
        }
    }

    /// Parses `text`, line `line` of `file`.
    pub fn parse(file: &str, line: usize, text: &'a str) -> Result<Self, LineError> {
        let mut f = Fields::new(file, line, text);
        let direction = match f.next("direction")? {
            "ingress" => Direction::Ingress,
            "egress" => Direction::Egress,
            other => return Err(f.error(format!("unknown direction `{other}`"))),
        };
        let peer = match f.next("peer")? {
            "any" => 0,
            "0" => return Err(f.error("peer `0` is written `any`".into())),
            peer => f.number("identity", peer)?,
        };
        let space = f.next("`<proto>/<port>/<len>`")?;
        let mut parts = space.split('/');
        let (Some(protocol), Some(port), Some(len), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(f.error(format!("`{space}` is not `<proto>/<port>/<len>`")));
        };
        let protocol: u8 = f.number("protocol", protocol)?;
        let port: u16 = f.number("port", port)?;
        let prefix_len: u8 = f.number("prefix length", len)?;
        if prefix_len > KEY_SPACE_BITS {
            return Err(f.error(format!("prefix length {prefix_len} > {KEY_SPACE_BITS}")));
        }
        let bits = u32::from(protocol) << 16 | u32::from(port);
        if bits & (u32::MAX >> prefix_len >> 8) != 0 {
            return Err(f.error(format!("`{space}` has bits set after its prefix length")));
        }
        let verdict = match f.next("verdict")? {
            "allow" => Verdict::Allow,
            "deny" => Verdict::Deny,
            v => match v.strip_prefix("redirect:") {
                Some(parser) if !parser.is_empty() => Verdict::Redirect(parser),
                _ => return Err(f.error(format!("unknown verdict `{v}`"))),
            },
        };
        let cookie = f.next_number("cookie")?;
        let rules = f.next_name("rule")?;
        f.end()?;
        let (rule, others) = match rules.rsplit_once(",+") {
            Some((rule, more)) => {
                let others: u32 = f.number("rule count", more)?;
                if others == 0 {
                    return Err(f.error("`,+0` is left out".into()));
                }
                (rule, others)
            }
            None => (rules, 0),
        };
        if rule.is_empty() {
            return Err(f.error("empty rule".into()));
        }
        let key = PolicyKey { direction, peer, protocol, port, prefix_len };
        Ok(PolicyLine { key, verdict, cookie, rule, others })
    }

    /// Parses every line of `text` (a file, or a piece of one starting at
    /// line `first`); a key listed twice is refused.
    pub fn parse_all(file: &str, first: usize, text: &'a str) -> Result<Vec<Self>, LineError> {
        parse_lines(file, first, text, Self::parse, Self::sort_key)
    }

    /// What the lines of a policy file are sorted by: peer, direction,
    /// protocol, port, prefix length (the compiler's map order), one line
    /// per key.
    pub fn sort_key(&self) -> (u32, Direction, u8, u16, u8) {
        let k = self.key;
        (k.peer, k.direction, k.protocol, k.port, k.prefix_len)
    }
}

display_by_write!(PolicyLine);

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: &str = "CiliumNetworkPolicy/shop/api:spec.ingress[0]";

    #[test]
    fn reads_what_it_writes() {
        let text = format!(
            "ingress any 0/0/0 allow 4294967295 {RULE}\negress any 6/0/8 deny 42 {RULE}\n\
             ingress 300 6/8080/23 allow 42 {RULE}\negress 4294967295 6/65535/24 redirect:http 7 {RULE},+2\n"
        );
        let lines = PolicyLine::parse_all("p.txt", 1, &text).unwrap();
        assert_eq!(lines[3].verdict, Verdict::Redirect("http"));
        assert_eq!((lines[3].cookie, lines[3].rule, lines[3].others), (7, RULE, 2));
        assert_eq!(
            lines[2].key,
            PolicyKey { direction: Direction::Ingress, peer: 300, protocol: 6, port: 8080, prefix_len: 23 }
        );
        assert_eq!(lines.iter().map(|l| format!("{l}\n")).collect::<String>(), text);
    }

    #[test]
    fn refuses_what_it_would_not_write() {
        for (bad, message) in [
            (format!("ingress 0 6/80/24 allow 1 {RULE}"), "peer `0` is written `any`"),
            (format!("ingress 1 6/80/25 allow 1 {RULE}"), "prefix length 25 > 24"),
            (format!("ingress 1 6/81/23 allow 1 {RULE}"), "`6/81/23` has bits set after its prefix length"),
            (format!("ingress 1 6/80/0 allow 1 {RULE}"), "`6/80/0` has bits set after its prefix length"),
            (format!("ingress 1 6/80 allow 1 {RULE}"), "`6/80` is not `<proto>/<port>/<len>`"),
            (format!("ingress 1 6/80/24 permit 1 {RULE}"), "unknown verdict `permit`"),
            (format!("ingress 1 6/80/24 redirect: 1 {RULE}"), "unknown verdict `redirect:`"),
            (
                format!("ingress 1 6/80/24 allow {RULE}"),
                "`CiliumNetworkPolicy/shop/api:spec.ingress[0]` is not a valid cookie",
            ),
            (format!("ingress 1 6/80/24 allow 1 {RULE},+0"), "`,+0` is left out"),
            (format!("ingress 1 6/80/24 allow 1 {RULE} x"), "unexpected `x` at the end of the line"),
            ("ingress 1 6/80/24 allow 1".to_string(), "no rule"),
        ] {
            let e = PolicyLine::parse("p.txt", 7, &bad).unwrap_err();
            assert_eq!(e.to_string(), format!("p.txt:7: {message}"), "{bad}");
        }
        let twice = format!("ingress 1 6/80/24 allow 1 {RULE}\ningress 1 6/80/24 deny 1 {RULE}\n");
        assert_eq!(PolicyLine::parse_all("p.txt", 10, &twice).unwrap_err().line, 11);
    }
}
