//! What every line kind shares: one-space fields, canonical decimal
//! numbers and addresses, and the walk over a file's lines that refuses a
//! key listed twice.

use crate::error::LineError;
use std::net::IpAddr;

/// Lines joined with `\n`, with a final newline unless empty.
pub fn join(lines: &[String]) -> String {
    let mut out = lines.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

/// Appends the decimal digits of `n` (what `write!` does, without the
/// formatting machinery, which dominated emission time).
pub(crate) fn push_number(out: &mut String, n: impl Into<u64>) {
    let mut n: u64 = n.into();
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[i..] {
        out.push(char::from(d));
    }
}

/// The fields of one line, read left to right.
pub(crate) struct Fields<'f, 'a> {
    file: &'f str,
    line: usize,
    rest: Option<&'a str>,
}

impl<'f, 'a> Fields<'f, 'a> {
    /// The fields of `text`, line `line` of `file`.
    pub(crate) fn new(file: &'f str, line: usize, text: &'a str) -> Self {
        Fields { file, line, rest: Some(text) }
    }

    /// An error about this line.
    pub(crate) fn error(&self, message: String) -> LineError {
        LineError { file: self.file.to_string(), line: self.line, message }
    }

    /// The next field, `what` naming it if it is missing or empty.
    pub(crate) fn next(&mut self, what: &str) -> Result<&'a str, LineError> {
        let field = match self.rest.map(|rest| rest.split_once(' ')) {
            None => None,
            Some(Some((field, rest))) => {
                self.rest = Some(rest);
                Some(field)
            }
            Some(None) => self.rest.take(),
        };
        match field {
            Some(field) if !field.is_empty() => Ok(field),
            Some(_) => Err(self.error(format!("empty {what} (fields are separated by one space)"))),
            None => Err(self.error(format!("no {what}"))),
        }
    }

    /// The next field if the line has one more, `what` naming it if empty.
    pub(crate) fn next_optional(&mut self, what: &str) -> Result<Option<&'a str>, LineError> {
        match self.rest {
            None => Ok(None),
            Some(_) => self.next(what).map(Some),
        }
    }

    /// The rest of the line as the last field.
    pub(crate) fn last(&mut self, what: &str) -> Result<&'a str, LineError> {
        match self.rest.take() {
            Some(rest) if !rest.is_empty() => Ok(rest),
            Some(_) => Err(self.error(format!("empty {what}"))),
            None => Err(self.error(format!("no {what}"))),
        }
    }

    /// The next field as a number ([`Fields::number`]).
    pub(crate) fn next_number<T: TryFrom<u64>>(&mut self, what: &str) -> Result<T, LineError> {
        let s = self.next(what)?;
        self.number(what, s)
    }

    /// The next field as an identity: a number other than 0, which the
    /// datapath reads as no identity (policy lines write a peer of any
    /// identity as `any`).
    pub(crate) fn next_identity(&mut self) -> Result<u32, LineError> {
        match self.next_number("identity")? {
            0 => Err(self.error("identity 0 is no identity".into())),
            identity => Ok(identity),
        }
    }

    /// The next field as an address ([`Fields::address`]).
    pub(crate) fn next_address(&mut self) -> Result<IpAddr, LineError> {
        let s = self.next("address")?;
        self.address(s)
    }

    /// The next field as a name ([`Fields::name`]).
    pub(crate) fn next_name(&mut self, what: &str) -> Result<&'a str, LineError> {
        let s = self.next(what)?;
        self.name(what, s)
    }

    /// Whether every field has been read.
    pub(crate) fn at_end(&self) -> bool {
        self.rest.is_none()
    }

    /// Checks that no field is left.
    pub(crate) fn end(&mut self) -> Result<(), LineError> {
        match self.rest.take() {
            None => Ok(()),
            Some(rest) => Err(self.error(format!("unexpected `{rest}` at the end of the line"))),
        }
    }

    /// `s` as a canonical decimal number (no sign, no leading zero).
    pub(crate) fn number<T: TryFrom<u64>>(&self, what: &str, s: &str) -> Result<T, LineError> {
        let canonical = !s.is_empty()
            && s.len() <= 20
            && s.bytes().all(|b| b.is_ascii_digit())
            && (s.len() == 1 || !s.starts_with('0'));
        canonical
            .then(|| s.parse::<u64>().ok())
            .flatten()
            .and_then(|n| T::try_from(n).ok())
            .ok_or_else(|| self.error(format!("`{s}` is not a valid {what}")))
    }

    /// `s` as an address written the way [`IpAddr`]'s `Display` writes it.
    pub(crate) fn address(&self, s: &str) -> Result<IpAddr, LineError> {
        match s.parse::<IpAddr>() {
            Ok(ip) if ip.is_ipv4() || ip.to_string() == s => Ok(ip),
            Ok(ip) => Err(self.error(format!("`{s}` is not written canonically (`{ip}`)"))),
            Err(_) => Err(self.error(format!("`{s}` is not a valid address"))),
        }
    }

    /// `s` as a name: printable, without spaces.
    pub(crate) fn name(&self, what: &str, s: &'a str) -> Result<&'a str, LineError> {
        if s.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(self.error(format!("{what} `{}` holds a space or a control character", s.escape_debug())));
        }
        Ok(s)
    }
}

/// Parses every line of `text`, a file or a piece of one whose first line
/// is line `first` of `file`, refusing a key listed twice and a line out of
/// order: the lines of every file are sorted by `key`, each key once (the
/// compiler writes them so), which lets a reader of some pieces of a file
/// find a key twice across pieces by comparing only the lines where
/// neighbouring pieces meet.
pub(crate) fn parse_lines<'a, L, K: Ord>(
    file: &str,
    first: usize,
    text: &'a str,
    parse: impl Fn(&str, usize, &'a str) -> Result<L, LineError>,
    key: impl Fn(&L) -> K,
) -> Result<Vec<L>, LineError> {
    let mut out: Vec<L> = Vec::new();
    for (i, line) in text.split_terminator('\n').enumerate() {
        let number = first.saturating_add(i);
        let parsed = parse(file, number, line)?;
        if let Some(before) = out.last() {
            if let Some(message) = out_of_order(&key(before), &key(&parsed)) {
                return Err(LineError { file: file.to_string(), line: number, message: message.into() });
            }
        }
        out.push(parsed);
    }
    Ok(out)
}

/// Why a line of key `after` cannot follow one of key `before`, if it
/// cannot.
pub fn out_of_order<K: Ord>(before: &K, after: &K) -> Option<&'static str> {
    match before.cmp(after) {
        std::cmp::Ordering::Less => None,
        std::cmp::Ordering::Equal => Some("this key is already listed on an earlier line"),
        std::cmp::Ordering::Greater => Some("this line is out of order (lines are sorted by key)"),
    }
}

/// `Display` for a line type through its `write` method, so that
/// `to_string()` and the writer can never disagree.
macro_rules! display_by_write {
    ($line:ident) => {
        impl std::fmt::Display for $line<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let mut out = String::new();
                self.write(&mut out);
                f.write_str(&out)
            }
        }
    };
}
pub(crate) use display_by_write;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_canonical_decimals() {
        let f = Fields::new("f", 3, "");
        assert_eq!(f.number::<u32>("n", "0"), Ok(0));
        assert_eq!(f.number::<u32>("n", "4294967295"), Ok(u32::MAX));
        for bad in ["", "00", "07", "+7", "-1", "4294967296", "1e3", " 1"] {
            let e = f.number::<u32>("n", bad).unwrap_err();
            assert_eq!(e.to_string(), format!("f:3: `{bad}` is not a valid n"));
        }
        let mut out = String::new();
        push_number(&mut out, u64::MAX);
        assert_eq!(out, u64::MAX.to_string());
    }

    #[test]
    fn fields_are_separated_by_one_space() {
        let mut f = Fields::new("f", 1, "a  b");
        assert_eq!(f.next("x"), Ok("a"));
        assert_eq!(f.next("y").unwrap_err().message, "empty y (fields are separated by one space)");
        let mut f = Fields::new("f", 1, "a");
        f.next("x").unwrap();
        assert_eq!(f.next("y").unwrap_err().message, "no y");
        let mut f = Fields::new("f", 1, "a b");
        f.next("x").unwrap();
        assert_eq!(f.end().unwrap_err().message, "unexpected `b` at the end of the line");
    }

    #[test]
    fn addresses_are_canonical() {
        let f = Fields::new("f", 1, "");
        assert!(f.address("2001:db8::1").is_ok());
        assert!(f.address("2001:0db8::1").is_err());
        assert!(f.address("10.0.0.1").is_ok());
        assert!(f.address("010.0.0.1").is_err());
    }
}
