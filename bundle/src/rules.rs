//! `rules.txt`: `<cookie> <rule>`, by cookie: the rules a bundle's policy
//! entries name, for turning the cookie a flow event carries back into
//! `<Kind>/<ns>/<name>:<rule path>`. The cookies are the cluster's
//! ([`crate::ids::rule_cookies`]), so the same rule has the same cookie in
//! every node's bundle.

use crate::error::LineError;
use crate::text::{display_by_write, parse_lines, push_number, Fields};

/// One line of `rules.txt`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RuleLine<'a> {
    /// The rule's cookie.
    pub cookie: u32,
    /// The rule's name.
    pub rule: &'a str,
}

impl<'a> RuleLine<'a> {
    /// Appends the line, without its newline.
    pub fn write(&self, out: &mut String) {
        push_number(out, self.cookie);
        out.push(' ');
        out.push_str(self.rule);
    }

    /// Parses `text`, line `line` of `file`.
    pub fn parse(file: &str, line: usize, text: &'a str) -> Result<Self, LineError> {
        let mut f = Fields::new(file, line, text);
        let cookie = f.next_number("cookie")?;
        let rule = f.next_name("rule")?;
        f.end()?;
        Ok(RuleLine { cookie, rule })
    }

    /// Parses every line of `text`; a cookie listed twice is refused.
    pub fn parse_all(file: &str, first: usize, text: &'a str) -> Result<Vec<Self>, LineError> {
        parse_lines(file, first, text, Self::parse, Self::sort_key)
    }

    /// What the lines of `rules.txt` are sorted by: the cookie, one line
    /// each.
    pub fn sort_key(&self) -> u32 {
        self.cookie
    }
}

display_by_write!(RuleLine);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_it_writes_and_refuses_a_cookie_twice() {
        let text = "42 NetworkPolicy/shop/db:spec.ingress[0]\n43 NetworkPolicy/shop/db:spec.ingress[1]\n";
        let lines = RuleLine::parse_all("rules.txt", 1, text).unwrap();
        assert_eq!(lines.iter().map(|l| format!("{l}\n")).collect::<String>(), text);
        let e = RuleLine::parse_all("rules.txt", 1, "42 a\n42 b\n").unwrap_err();
        assert_eq!(e.to_string(), "rules.txt:2: this key is already listed on an earlier line");
        assert!(RuleLine::parse("rules.txt", 1, "42").is_err());
    }
}
