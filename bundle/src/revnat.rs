//! `revnat.txt`: `<reverse-NAT id> <address:port/protocol>`, by id: the
//! service address a reply from a backend is rewritten to. The ids are the
//! cluster's, stable across compiles ([`policyc_ir::service::ids`]).

use crate::error::LineError;
use crate::l3n4::L3n4;
use crate::text::{parse_lines, push_number, Fields};

/// One line of `revnat.txt`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RevNatLine {
    /// The reverse-NAT id (never 0).
    pub id: u16,
    /// The frontend replies appear to come from.
    pub frontend: L3n4,
}

impl RevNatLine {
    /// Appends the line, without its newline.
    pub fn write(&self, out: &mut String) {
        push_number(out, self.id);
        out.push(' ');
        out.push_str(&self.frontend.to_string());
    }

    /// Parses `text`, line `line` of `file`.
    pub fn parse(file: &str, line: usize, text: &str) -> Result<Self, LineError> {
        let mut f = Fields::new(file, line, text);
        let id = match f.next_number("reverse-NAT id")? {
            0 => return Err(f.error("reverse-NAT id 0 is no entry".into())),
            id => id,
        };
        let frontend = f.next("frontend")?;
        let frontend = L3n4::parse(&f, frontend)?;
        f.end()?;
        Ok(RevNatLine { id, frontend })
    }

    /// Parses every line of `text`; an id listed twice is refused.
    pub fn parse_all(file: &str, first: usize, text: &str) -> Result<Vec<Self>, LineError> {
        parse_lines(file, first, text, Self::parse, |l: &RevNatLine| l.id)
    }
}

impl std::fmt::Display for RevNatLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = String::new();
        self.write(&mut out);
        f.write_str(&out)
    }
}
