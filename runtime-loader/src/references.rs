//! The cross-references of a generation's bundle, counted: which rule
//! cookies its `rules.txt` lists and how many policy entries name each,
//! and which identities its `identities.txt` lists and how many entries
//! (ipcache, endpoints, policy peers) name each. Kept in the store beside
//! the generation's manifest, so that an incremental apply checks that
//! every reference resolves (as a whole read does) at the cost of the
//! tables, never of the entries that did not change.
//!
//! An apply changes the counts by what it read: the table lines one side
//! alone has, and the entries that go and come. A count that would go
//! below zero says the index does not describe the old bundle: the apply
//! then reads the whole bundle instead.

use std::collections::{BTreeMap, BTreeSet};

/// One table (rules by cookie, identities by number) and the entries
/// naming its keys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    /// Keys the table lists.
    listed: BTreeSet<u32>,
    /// Entries naming each key.
    named: BTreeMap<u32, u64>,
}

impl Listing {
    /// The listing of a table of keys `listed` and entries naming `keys`.
    pub fn new(listed: BTreeSet<u32>, keys: impl IntoIterator<Item = u32>) -> Listing {
        let mut out = Listing { listed, named: BTreeMap::new() };
        for key in keys {
            out.name(key);
        }
        out
    }

    /// One more entry names `key`.
    pub fn name(&mut self, key: u32) {
        *self.named.entry(key).or_default() += 1;
    }

    /// One entry naming `key` goes; `None` if none did (the index is not
    /// the old bundle's).
    pub fn unname(&mut self, key: u32) -> Option<()> {
        let count = self.named.get_mut(&key)?;
        *count -= 1;
        if *count == 0 {
            self.named.remove(&key);
        }
        Some(())
    }

    /// The table no longer lists `key`.
    pub fn unlist(&mut self, key: u32) {
        self.listed.remove(&key);
    }

    /// The table lists `key`.
    pub fn list(&mut self, key: u32) {
        self.listed.insert(key);
    }

    /// Whether the table lists `key`.
    pub fn lists(&self, key: u32) -> bool {
        self.listed.contains(&key)
    }

    /// A key that entries name and the table does not list, with how many
    /// entries name it.
    pub fn unlisted(&self) -> Option<(u32, u64)> {
        self.named.iter().find(|(k, _)| !self.listed.contains(k)).map(|(k, n)| (*k, *n))
    }

    fn write(&self, kind: &str, out: &mut String) {
        for key in self.listed.iter().chain(self.named.keys()).collect::<BTreeSet<_>>() {
            let named = self.named.get(key).copied().unwrap_or(0);
            let mark = if self.listed.contains(key) { "" } else { " unlisted" };
            out.push_str(&format!("{kind} {key} {named}{mark}\n"));
        }
    }
}

/// The rules and identities of a bundle and the entries naming them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct References {
    /// Rule cookies of `rules.txt`, named by policy entries.
    pub rules: Listing,
    /// Identities of `identities.txt`, named by ipcache and endpoints
    /// entries and policy peers.
    pub identities: Listing,
}

impl References {
    /// The index as text, for the bundle of manifest hash `hash`: the hash,
    /// then `rule|identity <key> <entries naming it>[ unlisted]`.
    pub fn text(&self, hash: &str) -> String {
        let mut out = format!("{hash}\n");
        self.rules.write("rule", &mut out);
        self.identities.write("identity", &mut out);
        out
    }

    /// The index in `text` if it is that of the bundle of manifest hash
    /// `hash` and well formed.
    pub fn parse(text: &str, hash: &str) -> Option<References> {
        let mut lines = text.lines();
        if lines.next()? != hash {
            return None;
        }
        let mut out = References::default();
        for line in lines {
            let mut fields = line.split(' ');
            let listing = match fields.next()? {
                "rule" => &mut out.rules,
                "identity" => &mut out.identities,
                _ => return None,
            };
            let key: u32 = fields.next()?.parse().ok()?;
            let named: u64 = fields.next()?.parse().ok()?;
            match fields.next() {
                None => listing.list(key),
                Some("unlisted") => {}
                Some(_) => return None,
            }
            if named > 0 {
                listing.named.insert(key, named);
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_names_and_reads_what_it_writes() {
        let mut rules = Listing::new([1, 2].into(), [1, 1, 2]);
        assert_eq!(rules.unlisted(), None);
        rules.unlist(2);
        assert_eq!(rules.unlisted(), Some((2, 1)));
        rules.unname(2).unwrap();
        assert_eq!(rules.unlisted(), None);
        assert_eq!(rules.unname(2), None, "no entry names it any more");
        rules.name(3);
        let index = References { rules, identities: Listing::new([256].into(), [256]) };
        let text = index.text("sha256:x");
        assert_eq!(text, "sha256:x\nrule 1 2\nrule 3 1 unlisted\nidentity 256 1\n");
        assert_eq!(References::parse(&text, "sha256:x"), Some(index.clone()));
        assert_eq!(References::parse(&text, "sha256:y"), None, "another bundle's");
        assert_eq!(References::parse("sha256:x\nrule 1 z\n", "sha256:x"), None);
    }
}
