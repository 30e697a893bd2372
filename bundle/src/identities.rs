//! `identities.txt`: `<identity> <kind> <labels>`, by identity; kind
//! `reserved`, `endpoint` or `cidr`; labels comma-separated (`-` if none),
//! an endpoint's as `key=value`, the others' keys alone when their value is
//! empty. Not a BPF map: it tells people and tools what each number stands
//! for, and a next compile reads it back to keep the numbers
//! ([`IdentityLine::endpoint_labels`]).

use crate::error::LineError;
use crate::text::{parse_lines, Fields};
use std::fmt;

/// One line of `identities.txt`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IdentityLine {
    /// The number.
    pub identity: u32,
    /// `reserved`, `endpoint` or `cidr`.
    pub kind: &'static str,
    /// Labels, comma-separated (`-` if none).
    pub labels: String,
}

/// The kinds of identity.
const KINDS: [&str; 3] = ["reserved", "endpoint", "cidr"];

impl IdentityLine {
    /// The line of identity `identity` of `kind` with `labels` (key and
    /// value pairs, in order).
    pub fn new<'a>(identity: u32, kind: &'static str, labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut text = String::new();
        for (k, v) in labels {
            if !text.is_empty() {
                text.push(',');
            }
            text.push_str(k);
            if !v.is_empty() || kind == "endpoint" {
                text.push('=');
                text.push_str(v);
            }
        }
        if text.is_empty() {
            text.push('-');
        }
        IdentityLine { identity, kind, labels: text }
    }

    /// Parses `text`, line `line` of `file`.
    pub fn parse(file: &str, line: usize, text: &str) -> Result<Self, LineError> {
        let mut f = Fields::new(file, line, text);
        let identity = f.next_identity()?;
        let kind = f.next("kind")?;
        let kind = KINDS.into_iter().find(|k| *k == kind).ok_or_else(|| f.error(format!("unknown kind `{kind}`")))?;
        let labels = f.last("labels")?.to_string();
        Ok(IdentityLine { identity, kind, labels })
    }

    /// Parses every line of `text`; an identity listed twice is refused.
    pub fn parse_all(file: &str, text: &str) -> Result<Vec<Self>, LineError> {
        parse_lines(file, 1, text, Self::parse, |l| l.identity)
    }

    /// The labels of an endpoint identity as key and value pairs; a label
    /// without `=` is an error.
    pub fn endpoint_labels(&self) -> Result<Vec<(&str, &str)>, String> {
        if self.labels == "-" {
            return Ok(Vec::new());
        }
        self.labels
            .split(',')
            .map(|pair| pair.split_once('=').ok_or_else(|| format!("label `{pair}` has no `=`")))
            .collect()
    }
}

impl fmt::Display for IdentityLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.identity, self.kind, self.labels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_it_writes() {
        let lines = [
            IdentityLine::new(2, "reserved", [("reserved:world", "")]),
            IdentityLine::new(256, "endpoint", [("app", "api"), ("tier", "")]),
            IdentityLine::new(300, "endpoint", []),
        ];
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        assert_eq!(text, "2 reserved reserved:world\n256 endpoint app=api,tier=\n300 endpoint -\n");
        let parsed = IdentityLine::parse_all("identities.txt", &text).unwrap();
        assert_eq!(parsed, lines);
        assert_eq!(parsed[1].endpoint_labels().unwrap(), [("app", "api"), ("tier", "")]);
        let e = IdentityLine::parse("identities.txt", 3, "7 person x").unwrap_err();
        assert_eq!(e.to_string(), "identities.txt:3: unknown kind `person`");
    }
}
