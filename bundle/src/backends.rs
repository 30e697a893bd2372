//! `backends.txt`: `<backend id> <address:port/protocol> <state>`, by id:
//! the backends this node's services lines name. The ids are the
//! cluster's, stable across compiles ([`policyc_ir::service::ids`]);
//! state `active`, or `terminating` for a serving endpoint that is
//! terminating (used only when no endpoint is ready, KEP-1669).

use crate::error::LineError;
use crate::l3n4::L3n4;
use crate::text::{parse_lines, push_number, Fields};

/// One line of `backends.txt`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BackendLine {
    /// The backend id (never 0).
    pub id: u32,
    /// Where the backend listens.
    pub address: L3n4,
    /// Whether it is terminating.
    pub terminating: bool,
}

impl BackendLine {
    /// Appends the line, without its newline.
    pub fn write(&self, out: &mut String) {
        push_number(out, self.id);
        out.push(' ');
        out.push_str(&self.address.to_string());
        out.push_str(if self.terminating { " terminating" } else { " active" });
    }

    /// Parses `text`, line `line` of `file`.
    pub fn parse(file: &str, line: usize, text: &str) -> Result<Self, LineError> {
        let mut f = Fields::new(file, line, text);
        let id = match f.next_number("backend id")? {
            0 => return Err(f.error("backend id 0 is no backend".into())),
            id => id,
        };
        let address = f.next("backend address")?;
        let address = L3n4::parse(&f, address)?;
        let terminating = match f.next("state")? {
            "active" => false,
            "terminating" => true,
            other => return Err(f.error(format!("`{other}` is not `active` or `terminating`"))),
        };
        f.end()?;
        Ok(BackendLine { id, address, terminating })
    }

    /// Parses every line of `text`; an id listed twice is refused.
    pub fn parse_all(file: &str, first: usize, text: &str) -> Result<Vec<Self>, LineError> {
        parse_lines(file, first, text, Self::parse, |l: &BackendLine| l.id)
    }
}

impl std::fmt::Display for BackendLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = String::new();
        self.write(&mut out);
        f.write_str(&out)
    }
}
