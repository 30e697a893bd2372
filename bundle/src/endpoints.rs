//! `endpoints.txt`: `<ip> <endpoint id> <identity> <enforced> <ns>/<pod>`,
//! by IP; enforced `ingress`, `egress`, `ingress+egress` or `-`.

use crate::error::LineError;
use crate::text::{display_by_write, parse_lines, push_number, Fields};
use std::fmt;
use std::net::IpAddr;

/// The directions in which an endpoint's policy is enforced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Enforced {
    /// Traffic entering the endpoint.
    pub ingress: bool,
    /// Traffic leaving the endpoint.
    pub egress: bool,
}

impl Enforced {
    /// The field's text.
    pub fn name(self) -> &'static str {
        match (self.ingress, self.egress) {
            (true, true) => "ingress+egress",
            (true, false) => "ingress",
            (false, true) => "egress",
            (false, false) => "-",
        }
    }
}

/// One line of `endpoints.txt`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EndpointLine<'a> {
    /// One of the endpoint's addresses.
    pub ip: IpAddr,
    /// Endpoint id on the node ([`crate::ids::endpoint_ids`]).
    pub id: u16,
    /// Its identity.
    pub identity: u32,
    /// Where its policy is enforced.
    pub enforced: Enforced,
    /// `<ns>/<pod>`.
    pub name: &'a str,
}

impl<'a> EndpointLine<'a> {
    /// Appends the line, without its newline.
    pub fn write(&self, out: &mut String) {
        use fmt::Write;
        // Writing to a `String` cannot fail.
        let _ = write!(out, "{}", self.ip);
        out.push(' ');
        push_number(out, self.id);
        out.push(' ');
        push_number(out, self.identity);
        out.push(' ');
        out.push_str(self.enforced.name());
        out.push(' ');
        out.push_str(self.name);
    }

    /// Parses `text`, line `line` of `file`.
    pub fn parse(file: &str, line: usize, text: &'a str) -> Result<Self, LineError> {
        let mut f = Fields::new(file, line, text);
        let ip = f.next_address()?;
        let id = f.next_number("endpoint id")?;
        let identity = f.next_identity()?;
        let enforced = match f.next("enforcement")? {
            "ingress+egress" => Enforced { ingress: true, egress: true },
            "ingress" => Enforced { ingress: true, egress: false },
            "egress" => Enforced { ingress: false, egress: true },
            "-" => Enforced::default(),
            other => return Err(f.error(format!("unknown enforcement `{other}`"))),
        };
        let name = f.next_name("endpoint")?;
        f.end()?;
        Ok(EndpointLine { ip, id, identity, enforced, name })
    }

    /// Parses every line of `text` (a file, or a piece of one starting at
    /// line `first`); an address listed twice is refused.
    pub fn parse_all(file: &str, first: usize, text: &'a str) -> Result<Vec<Self>, LineError> {
        parse_lines(file, first, text, Self::parse, Self::sort_key)
    }

    /// What the lines of `endpoints.txt` are sorted by: the address, one
    /// line each.
    pub fn sort_key(&self) -> IpAddr {
        self.ip
    }
}

display_by_write!(EndpointLine);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_it_writes_and_refuses_the_rest() {
        let text = "10.0.1.2 77 256 ingress shop/api\nfd00::2 78 257 - shop/web\n";
        let lines = EndpointLine::parse_all("endpoints.txt", 1, text).unwrap();
        assert_eq!((lines[0].id, lines[0].enforced.ingress, lines[0].name), (77, true, "shop/api"));
        assert_eq!(lines.iter().map(|l| format!("{l}\n")).collect::<String>(), text);
        for (bad, message) in [
            ("10.0.1.2 65536 256 - shop/api", "`65536` is not a valid endpoint id"),
            ("10.0.1.2 7 256 both shop/api", "unknown enforcement `both`"),
            ("10.0.1.2 7 0 - shop/api", "identity 0 is no identity"),
            ("10.0.1.2 7 256 - shop/api x", "unexpected `x` at the end of the line"),
        ] {
            let e = EndpointLine::parse("endpoints.txt", 4, bad).unwrap_err();
            assert_eq!(e.to_string(), format!("endpoints.txt:4: {message}"), "{bad}");
        }
    }
}
