//! Label selectors evaluated against many label sets at once.
//!
//! Resolution asks, for every policy subject and every peer selector, which
//! of the cluster's endpoint identities match. Testing each selector against
//! each label set costs `selectors × identities` map lookups (4 million
//! for 2 000 policies over 2 000 identities). [`SelectorIndex`] instead keeps,
//! per label key and value, the bit set of label sets carrying it, so a
//! selector costs a few word-wise unions and intersections of bit sets:
//! `In` is the union of its values' sets, `NotIn` its complement, `Exists`
//! the union of every value of the key, `DoesNotExist` its complement, and a
//! selector the intersection of its requirements (every set for an empty
//! selector), exactly as [`LabelSelector::matches`] reads them.

use crate::labels::Labels;
use crate::selector::{LabelSelector, Operator, Requirement};
use std::collections::HashMap;

/// A set of label-set positions (`0..len`), one bit each.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BitSet {
    words: Vec<u64>,
    len: usize,
}

impl BitSet {
    /// The empty set over `0..len`.
    pub fn empty(len: usize) -> BitSet {
        BitSet { words: vec![0; len.div_ceil(64)], len }
    }

    /// Every position of `0..len`.
    pub fn full(len: usize) -> BitSet {
        let mut set = BitSet { words: vec![u64::MAX; len.div_ceil(64)], len };
        set.trim();
        set
    }

    /// Clears the bits past `len` in the last word, so that complements and
    /// iteration never see positions that do not exist.
    fn trim(&mut self) {
        let tail = self.len % 64;
        if let (Some(last), true) = (self.words.last_mut(), tail != 0) {
            *last &= (1u64 << tail) - 1;
        }
    }

    /// Adds `i` (which must be below the set's length).
    pub fn insert(&mut self, i: usize) {
        self.words[i / 64] |= 1 << (i % 64);
    }

    /// Whether `i` is in the set.
    pub fn contains(&self, i: usize) -> bool {
        self.words.get(i / 64).is_some_and(|w| w >> (i % 64) & 1 == 1)
    }

    /// `self ∪ other`.
    pub fn union_with(&mut self, other: &BitSet) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a |= b;
        }
    }

    /// `self ∩ other`.
    pub fn intersect_with(&mut self, other: &BitSet) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a &= b;
        }
    }

    /// `0..len ∖ self`.
    pub fn complement(&mut self) {
        for w in &mut self.words {
            *w = !*w;
        }
        self.trim();
    }

    /// Whether no position is in the set.
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|&w| w == 0)
    }

    /// The positions in the set, in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.words.iter().enumerate().flat_map(|(n, &word)| {
            let mut rest = word;
            std::iter::from_fn(move || {
                if rest == 0 {
                    return None;
                }
                let bit = rest.trailing_zeros() as usize;
                rest &= rest - 1;
                Some(n * 64 + bit)
            })
        })
    }
}

/// An index of label sets by label, answering "which of them does this
/// selector match" with bit-set operations.
#[derive(Clone, Debug)]
pub struct SelectorIndex {
    len: usize,
    /// Per key, per value: the label sets carrying `key=value`.
    by_key: HashMap<String, HashMap<String, BitSet>>,
}

impl SelectorIndex {
    /// Indexes `label_sets`; positions in answers are positions in this
    /// sequence.
    pub fn new<'a>(label_sets: impl IntoIterator<Item = &'a Labels>) -> SelectorIndex {
        let sets: Vec<&Labels> = label_sets.into_iter().collect();
        let len = sets.len();
        let mut by_key: HashMap<String, HashMap<String, BitSet>> = HashMap::new();
        for (i, labels) in sets.iter().enumerate() {
            for (key, value) in labels.iter() {
                let values = by_key.entry(key.to_string()).or_default();
                values.entry(value.to_string()).or_insert_with(|| BitSet::empty(len)).insert(i);
            }
        }
        SelectorIndex { len, by_key }
    }

    /// Number of indexed label sets.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no label set is indexed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The label sets carrying `key` with one of `values` (any value if
    /// `values` is `None`).
    fn carrying(&self, key: &str, values: Option<&[String]>) -> BitSet {
        let mut set = BitSet::empty(self.len);
        let Some(by_value) = self.by_key.get(key) else { return set };
        match values {
            Some(values) => {
                for v in values {
                    if let Some(bits) = by_value.get(v) {
                        set.union_with(bits);
                    }
                }
            }
            None => by_value.values().for_each(|bits| set.union_with(bits)),
        }
        set
    }

    /// The label sets `requirement` matches.
    pub fn requirement(&self, requirement: &Requirement) -> BitSet {
        let values = requirement.values.as_slice();
        let mut set = match requirement.operator {
            Operator::In | Operator::NotIn => self.carrying(&requirement.key, Some(values)),
            Operator::Exists | Operator::DoesNotExist => self.carrying(&requirement.key, None),
        };
        if matches!(requirement.operator, Operator::NotIn | Operator::DoesNotExist) {
            set.complement();
        }
        set
    }

    /// The label sets `selector` matches.
    pub fn matching(&self, selector: &LabelSelector) -> BitSet {
        let mut set = BitSet::full(self.len);
        for r in &selector.requirements {
            if set.is_empty() {
                break;
            }
            set.intersect_with(&self.requirement(r));
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn label_set() -> impl Strategy<Value = Labels> {
        proptest::collection::btree_map("[a-c]", "[x-z]{0,1}", 0..4).prop_map(Labels)
    }

    fn requirement() -> impl Strategy<Value = Requirement> {
        let op = prop_oneof![
            Just(Operator::In),
            Just(Operator::NotIn),
            Just(Operator::Exists),
            Just(Operator::DoesNotExist)
        ];
        ("[a-d]", op, proptest::collection::vec("[x-z]{0,1}", 0..3)).prop_map(|(key, operator, values)| Requirement {
            key,
            operator,
            values,
        })
    }

    #[test]
    fn bitset_edges() {
        let mut s = BitSet::full(65);
        assert_eq!(s.iter().count(), 65);
        s.complement();
        assert!(s.is_empty());
        let mut t = BitSet::empty(130);
        t.insert(0);
        t.insert(64);
        t.insert(129);
        assert_eq!(t.iter().collect::<Vec<_>>(), vec![0, 64, 129]);
        assert!(t.contains(129) && !t.contains(128) && !t.contains(500));
        assert!(BitSet::full(0).is_empty());
    }

    proptest! {
        #[test]
        fn index_agrees_with_matches(
            sets in proptest::collection::vec(label_set(), 0..140),
            requirements in proptest::collection::vec(requirement(), 0..4),
        ) {
            let selector = LabelSelector { requirements };
            let index = SelectorIndex::new(&sets);
            let got: Vec<usize> = index.matching(&selector).iter().collect();
            let want: Vec<usize> = sets.iter().enumerate().filter(|(_, l)| selector.matches(l)).map(|(i, _)| i).collect();
            prop_assert_eq!(got, want);
        }
    }
}
