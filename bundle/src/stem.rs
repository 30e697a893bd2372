//! Endpoint stems: the file-system-safe name of an endpoint, which names
//! its pinned links on the node (`<stem>_from`, `<stem>_to`) and tells
//! apart the policy files of one identity's endpoints
//! (`maps/policy/<identity>.<stem>.txt`).
//!
//! A stem is `<ns>.<pod>` (or `<ns>.<name>.<kind>` for a workload) when
//! that is short enough and made of the characters Kubernetes names use.
//! Legal names are not always short enough: a pod name may have 253
//! characters and its namespace 63, and bpffs takes at most 255 bytes per
//! path component. Such a name keeps a readable prefix and ends with `+`
//! and a hash of the whole name; `+` never appears in a Kubernetes name,
//! so a hashed stem never meets a plain one. The compiler makes stems and
//! the loader checks them through this module alone.

use crate::digest::sha256_hex;
use std::fmt;

/// The longest stem: its link pin name (`<stem>_from`) and its policy
/// file name (`<identity>.<stem>.txt`, an identity having at most 10
/// digits) stay well under the 255 bytes of a path component.
pub const MAX_STEM_BYTES: usize = 200;

/// Hex digits of the hash ending a stem made from a long name.
const HASH_DIGITS: usize = 16;

/// Why a stem is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StemError {
    /// The stem.
    pub stem: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl fmt::Display for StemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stem `{}` {}", self.stem.escape_default(), self.reason)
    }
}

impl std::error::Error for StemError {}

/// Whether `c` may appear in a plain stem: what Kubernetes names and the
/// separating `.` are made of.
fn plain_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '.'
}

/// The stem of an endpoint named by `parts` (`[namespace, pod]`, or
/// `[namespace, name, kind]`): the parts joined by `.` when that is a
/// valid stem, else a readable prefix of it, `+` and a hash of it.
pub fn endpoint_stem(parts: &[&str]) -> String {
    let plain = parts.join(".");
    if check_stem(&plain).is_ok() {
        return plain;
    }
    let hash = sha256_hex(plain.as_bytes());
    let prefix: String = plain
        .chars()
        .map(|c| if plain_char(c) { c } else { '-' })
        .skip_while(|&c| c == '.')
        .take(MAX_STEM_BYTES - HASH_DIGITS - 1)
        .collect();
    format!("{prefix}+{}", &hash[..HASH_DIGITS])
}

/// Checks that `stem` is one [`endpoint_stem`] can make: not empty, at
/// most [`MAX_STEM_BYTES`] long, not starting with `.`, made of ASCII
/// letters, digits, `-` and `.`, with at most one `+` (before a hash).
pub fn check_stem(stem: &str) -> Result<(), StemError> {
    let refuse = |reason| Err(StemError { stem: stem.to_string(), reason });
    if stem.is_empty() {
        return refuse("is empty");
    }
    if stem.len() > MAX_STEM_BYTES {
        return refuse("is longer than 200 bytes");
    }
    if stem.starts_with('.') {
        return refuse("starts with `.`");
    }
    let (name, hash) = stem.split_once('+').unwrap_or((stem, ""));
    if !name.chars().all(plain_char) {
        return refuse("has a character other than ASCII letters, digits, `-`, `.` and `+`");
    }
    if stem.contains('+') && (hash.len() != HASH_DIGITS || !hash.chars().all(|c| c.is_ascii_hexdigit())) {
        return refuse("has a `+` that does not start its 16-digit hash");
    }
    Ok(())
}

/// The name of the pinned link of `stem`'s program with `suffix`
/// (`from`/`to`). bpffs refuses names with a `.`, which stems have; a stem
/// never contains `_`, so `_` stands in for it without two stems meeting.
pub fn link_pin_name(stem: &str, suffix: &str) -> String {
    format!("{}_{suffix}", stem.replace('.', "_"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_stay_plain() {
        assert_eq!(endpoint_stem(&["shop", "api"]), "shop.api");
        assert_eq!(endpoint_stem(&["shop", "web", "deployment"]), "shop.web.deployment");
        assert_eq!(link_pin_name("shop.api", "from"), "shop_api_from");
    }

    #[test]
    fn the_longest_legal_names_make_pinnable_distinct_stems() {
        let (ns, a, b) = ("n".repeat(63), "p".repeat(253), format!("{}q", "p".repeat(252)));
        let (sa, sb) = (endpoint_stem(&[&ns, &a]), endpoint_stem(&[&ns, &b]));
        assert_ne!(sa, sb);
        for stem in [&sa, &sb] {
            assert_eq!(check_stem(stem), Ok(()));
            assert_eq!(stem.len(), MAX_STEM_BYTES);
            assert!(stem.starts_with(&format!("{ns}.ppp")), "{stem}");
            assert!(link_pin_name(stem, "from").len() <= 255);
            assert!(format!("{}.{stem}.txt", u32::MAX).len() <= 255);
        }
        // Stable: the same name makes the same stem on every compile.
        assert_eq!(sa, endpoint_stem(&[&ns, &a]));
    }

    #[test]
    fn names_kubernetes_refuses_are_hashed_not_refused() {
        let stem = endpoint_stem(&["shop", "a b*\nc"]);
        assert_eq!(check_stem(&stem), Ok(()));
        assert!(stem.starts_with("shop.a-b--c+"), "{stem}");
    }

    #[test]
    fn refuses_what_it_never_makes() {
        let long = "a".repeat(201);
        for (stem, reason) in [
            ("", "is empty"),
            (long.as_str(), "is longer than 200 bytes"),
            (".shop.api", "starts with `.`"),
            ("shop/api", "has a character other than ASCII letters, digits, `-`, `.` and `+`"),
            ("shop.a_b", "has a character other than ASCII letters, digits, `-`, `.` and `+`"),
            ("shop.a b", "has a character other than ASCII letters, digits, `-`, `.` and `+`"),
            ("shop.a\nb", "has a character other than ASCII letters, digits, `-`, `.` and `+`"),
            ("shop.*", "has a character other than ASCII letters, digits, `-`, `.` and `+`"),
            ("shop.a+b", "has a `+` that does not start its 16-digit hash"),
            ("shop.a+0123456789abcdef+0", "has a `+` that does not start its 16-digit hash"),
        ] {
            assert_eq!(check_stem(stem).map_err(|e| e.reason), Err(reason), "{stem:?}");
        }
    }
}
