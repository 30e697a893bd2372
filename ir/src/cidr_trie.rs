//! A binary longest-prefix-match trie over IPv4 and IPv6 prefixes, the
//! userspace twin of the datapath's `BPF_MAP_TYPE_LPM_TRIE` ipcache.

use crate::cidr::{max_len, to_u128, Cidr};
use std::net::IpAddr;

/// Maps prefixes to values and answers longest-prefix matches.
///
/// One bit per level, nodes in an arena; IPv4 and IPv6 have separate roots,
/// so an IPv4 address never matches an IPv6 prefix.
#[derive(Clone, Debug)]
pub struct CidrTrie<V> {
    nodes: Vec<TrieNode<V>>,
    len: usize,
}

#[derive(Clone, Debug)]
struct TrieNode<V> {
    children: [Option<usize>; 2],
    value: Option<V>,
}

impl<V> TrieNode<V> {
    fn empty() -> Self {
        TrieNode { children: [None, None], value: None }
    }
}

const V4_ROOT: usize = 0;
const V6_ROOT: usize = 1;

impl<V> Default for CidrTrie<V> {
    fn default() -> Self {
        CidrTrie { nodes: vec![TrieNode::empty(), TrieNode::empty()], len: 0 }
    }
}

/// Bit `i` (0 = most significant) of the address `bits` of width `width`.
fn bit(bits: u128, width: u8, i: u8) -> usize {
    usize::from((bits >> (width - 1 - i)) & 1 == 1)
}

impl<V> CidrTrie<V> {
    /// An empty trie.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of prefixes stored.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no prefix is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn root(ipv6: bool) -> usize {
        if ipv6 {
            V6_ROOT
        } else {
            V4_ROOT
        }
    }

    /// Stores `value` under `prefix`; returns the value it replaces.
    pub fn insert(&mut self, prefix: Cidr, value: V) -> Option<V> {
        let width = max_len(prefix.addr());
        let bits = to_u128(prefix.addr());
        let mut node = Self::root(prefix.is_ipv6());
        for i in 0..prefix.prefix_len() {
            let b = bit(bits, width, i);
            node = match self.nodes[node].children[b] {
                Some(child) => child,
                None => {
                    self.nodes.push(TrieNode::empty());
                    let child = self.nodes.len() - 1;
                    self.nodes[node].children[b] = Some(child);
                    child
                }
            };
        }
        let old = self.nodes[node].value.replace(value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// The value stored under exactly `prefix`.
    pub fn get(&self, prefix: Cidr) -> Option<&V> {
        let width = max_len(prefix.addr());
        let bits = to_u128(prefix.addr());
        let mut node = Self::root(prefix.is_ipv6());
        for i in 0..prefix.prefix_len() {
            node = self.nodes[node].children[bit(bits, width, i)]?;
        }
        self.nodes[node].value.as_ref()
    }

    /// The longest stored prefix containing `ip`, with its value.
    pub fn longest_match(&self, ip: IpAddr) -> Option<(Cidr, &V)> {
        let width = max_len(ip);
        let bits = to_u128(ip);
        let mut node = Self::root(ip.is_ipv6());
        let mut best = self.nodes[node].value.as_ref().map(|v| (0, v));
        for i in 0..width {
            match self.nodes[node].children[bit(bits, width, i)] {
                Some(child) => node = child,
                None => break,
            }
            if let Some(v) = &self.nodes[node].value {
                best = Some((i + 1, v));
            }
        }
        best.map(|(len, v)| (Cidr::new(ip, len), v))
    }

    /// Every `(prefix, value)`, sorted by prefix (IPv4 first, then by
    /// address, then shorter prefixes first).
    pub fn entries(&self) -> Vec<(Cidr, &V)> {
        let mut out = Vec::with_capacity(self.len);
        for (root, ipv6) in [(V4_ROOT, false), (V6_ROOT, true)] {
            let width = if ipv6 { 128 } else { 32 };
            // Pre-order with the 0-child first visits prefixes in (address,
            // length) order: a node's address is the smallest in its subtree
            // and it is shorter than every descendant sharing that address.
            let mut stack = vec![(root, 0u128, 0u8)];
            while let Some((node, bits, depth)) = stack.pop() {
                if let Some(v) = &self.nodes[node].value {
                    let addr = if depth == 0 { 0 } else { bits << (width - u32::from(depth)) };
                    out.push((Cidr::new(crate::cidr::from_u128(addr, ipv6), depth), v));
                }
                for b in [1u128, 0] {
                    if let Some(child) = self.nodes[node].children[b as usize] {
                        stack.push((child, (bits << 1) | b, depth + 1));
                    }
                }
            }
        }
        out
    }
}

impl<V> FromIterator<(Cidr, V)> for CidrTrie<V> {
    fn from_iter<I: IntoIterator<Item = (Cidr, V)>>(iter: I) -> Self {
        let mut trie = CidrTrie::new();
        for (prefix, value) in iter {
            trie.insert(prefix, value);
        }
        trie
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn c(s: &str) -> Cidr {
        Cidr::parse_strict(s).unwrap()
    }

    #[test]
    fn longest_match_prefers_the_most_specific() {
        let trie: CidrTrie<u32> =
            [(c("0.0.0.0/0"), 9), (c("10.0.0.0/8"), 1), (c("10.1.0.0/16"), 2), (c("10.1.2.3/32"), 3), (c("::/0"), 10)]
                .into_iter()
                .collect();
        let m = |ip: &str| trie.longest_match(ip.parse().unwrap()).map(|(p, v)| (p.to_string(), *v));
        assert_eq!(m("10.1.2.3"), Some(("10.1.2.3/32".into(), 3)));
        assert_eq!(m("10.1.2.4"), Some(("10.1.0.0/16".into(), 2)));
        assert_eq!(m("10.2.0.0"), Some(("10.0.0.0/8".into(), 1)));
        assert_eq!(m("192.0.2.1"), Some(("0.0.0.0/0".into(), 9)));
        assert_eq!(m("fd00::1"), Some(("::/0".into(), 10)));
        assert_eq!(trie.len(), 5);
        assert_eq!(trie.get(c("10.1.0.0/16")), Some(&2));
        assert_eq!(trie.get(c("10.1.0.0/17")), None);
    }

    #[test]
    fn families_are_separate_and_replacement_counts_once() {
        let mut trie = CidrTrie::new();
        assert_eq!(trie.insert(c("::/0"), 1), None);
        assert_eq!(trie.longest_match("1.2.3.4".parse().unwrap()), None);
        assert_eq!(trie.insert(c("::/0"), 2), Some(1));
        assert_eq!(trie.len(), 1);
    }

    fn prefix() -> impl Strategy<Value = Cidr> {
        prop_oneof![
            (any::<u32>(), 0u8..=32).prop_map(|(a, l)| Cidr::new(IpAddr::V4(a.into()), l)),
            // Few distinct high bits, so that prefixes nest often.
            (0u32..4, 0u8..=32).prop_map(|(a, l)| Cidr::new(IpAddr::V4((a << 30 | 0x00ab_cdef).into()), l)),
            (any::<u128>(), 0u8..=128).prop_map(|(a, l)| Cidr::new(IpAddr::V6(a.into()), l)),
        ]
    }

    fn address() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<u32>().prop_map(|a| IpAddr::V4(a.into())),
            (0u32..4, any::<u32>()).prop_map(|(h, a)| IpAddr::V4((h << 30 | (a & 0x00ff_ffff)).into())),
            any::<u128>().prop_map(|a| IpAddr::V6(a.into())),
        ]
    }

    proptest! {
        #[test]
        fn matches_a_linear_scan(entries in proptest::collection::vec((prefix(), any::<u16>()), 0..40),
                                 probes in proptest::collection::vec(address(), 1..40)) {
            let mut reference = BTreeMap::new();
            let mut trie = CidrTrie::new();
            for &(p, v) in &entries {
                reference.insert(p, v);
                trie.insert(p, v);
            }
            // Probe the stored prefixes' own addresses too.
            for ip in probes.iter().copied().chain(entries.iter().map(|(p, _)| p.addr())) {
                let expected = reference.iter().filter(|(p, _)| p.contains(ip)).max_by_key(|(p, _)| p.prefix_len()).map(|(p, v)| (*p, *v));
                prop_assert_eq!(trie.longest_match(ip).map(|(p, v)| (p, *v)), expected);
            }
            let listed: Vec<(Cidr, u16)> = trie.entries().into_iter().map(|(p, v)| (p, *v)).collect();
            let expected: Vec<(Cidr, u16)> = reference.into_iter().collect();
            prop_assert_eq!(trie.len(), expected.len());
            prop_assert_eq!(listed, expected);
        }
    }
}
