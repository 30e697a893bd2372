//! Which rule cookies a generation's bundle lists in `rules.txt`, and how
//! many of its policy entries name each: kept in the store beside the
//! generation's manifest, so that an incremental apply checks that every
//! policy entry names a listed rule (as a whole read does) at the cost of
//! the rules, never of the policy entries that did not change.
//!
//! An apply changes it by what it read: the rule lines one side alone has,
//! and the policy entries each endpoint gains or loses. A count that would
//! go below zero says the index does not describe the old bundle: the
//! apply then reads the whole bundle instead.

use std::collections::{BTreeMap, BTreeSet};

/// Cookies of `rules.txt` and the policy entries naming each.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleIndex {
    /// Cookies `rules.txt` lists.
    listed: BTreeSet<u32>,
    /// Policy entries (over every endpoint) naming each cookie.
    named: BTreeMap<u32, u64>,
}

impl RuleIndex {
    /// The index of a bundle whose `rules.txt` lists `listed` and whose
    /// policy entries (every endpoint's) name `cookies`.
    pub fn new(listed: BTreeSet<u32>, cookies: impl IntoIterator<Item = u32>) -> RuleIndex {
        let mut index = RuleIndex { listed, named: BTreeMap::new() };
        for cookie in cookies {
            index.name(cookie);
        }
        index
    }

    /// One more policy entry names `cookie`.
    pub fn name(&mut self, cookie: u32) {
        *self.named.entry(cookie).or_default() += 1;
    }

    /// One policy entry naming `cookie` goes; `None` if none did (the
    /// index is not the old bundle's).
    pub fn unname(&mut self, cookie: u32) -> Option<()> {
        let count = self.named.get_mut(&cookie)?;
        *count -= 1;
        if *count == 0 {
            self.named.remove(&cookie);
        }
        Some(())
    }

    /// `rules.txt` no longer lists `cookie`.
    pub fn unlist(&mut self, cookie: u32) {
        self.listed.remove(&cookie);
    }

    /// `rules.txt` lists `cookie`.
    pub fn list(&mut self, cookie: u32) {
        self.listed.insert(cookie);
    }

    /// Whether `rules.txt` lists `cookie`.
    pub fn lists(&self, cookie: u32) -> bool {
        self.listed.contains(&cookie)
    }

    /// A cookie that policy entries name and `rules.txt` does not list,
    /// with how many entries name it.
    pub fn unlisted(&self) -> Option<(u32, u64)> {
        self.named.iter().find(|(c, _)| !self.listed.contains(c)).map(|(c, n)| (*c, *n))
    }

    /// The index as text, for the bundle of manifest hash `hash`: the hash,
    /// then `<cookie> <entries>` per cookie, listed or named.
    pub fn text(&self, hash: &str) -> String {
        let mut out = format!("{hash}\n");
        for cookie in self.listed.iter().chain(self.named.keys()).collect::<BTreeSet<_>>() {
            let named = self.named.get(cookie).copied().unwrap_or(0);
            let mark = if self.listed.contains(cookie) { "" } else { " unlisted" };
            out.push_str(&format!("{cookie} {named}{mark}\n"));
        }
        out
    }

    /// The index in `text` if it is that of the bundle of manifest hash
    /// `hash` and well formed.
    pub fn parse(text: &str, hash: &str) -> Option<RuleIndex> {
        let mut lines = text.lines();
        if lines.next()? != hash {
            return None;
        }
        let mut index = RuleIndex::default();
        for line in lines {
            let mut fields = line.split(' ');
            let cookie: u32 = fields.next()?.parse().ok()?;
            let named: u64 = fields.next()?.parse().ok()?;
            match fields.next() {
                None => index.list(cookie),
                Some("unlisted") => {}
                Some(_) => return None,
            }
            if named > 0 {
                index.named.insert(cookie, named);
            }
        }
        Some(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_names_and_reads_what_it_writes() {
        let mut index = RuleIndex::new([1, 2].into(), [1, 1, 2]);
        assert_eq!(index.unlisted(), None);
        index.unlist(2);
        assert_eq!(index.unlisted(), Some((2, 1)));
        index.unname(2).unwrap();
        assert_eq!(index.unlisted(), None);
        assert_eq!(index.unname(2), None, "no entry names it any more");
        index.name(3);
        let text = index.text("sha256:x");
        assert_eq!(text, "sha256:x\n1 2\n3 1 unlisted\n");
        assert_eq!(RuleIndex::parse(&text, "sha256:x"), Some(index.clone()));
        assert_eq!(RuleIndex::parse(&text, "sha256:y"), None, "another bundle's");
        assert_eq!(RuleIndex::parse("sha256:x\n1 z\n", "sha256:x"), None);
    }
}
