//! `manifest.json`: what a loader checks before touching anything.
//!
//! The maps are the datapath's shared maps (`ebpf-templates/include/maps.h`,
//! mirrored in [`policyc_ebpf::abi::MAPS`]) with their types, key and value
//! sizes and capacities, which the loader compares with pinned maps it would
//! reuse (aya reuses a pinned map by path without checking), and the number
//! of entries this bundle puts into one generation of each. Each local
//! endpoint lists its id, policy file and the settings of its programs.
//!
//! The program templates travel once per bundle (`programs/*.o`); the
//! loader writes each endpoint's settings into its own copy before loading
//! it (`policyc_ebpf::specialize`). A copy per endpoint in the bundle would
//! be byte-for-byte the template but for a few `.rodata` bytes, and at 10 000
//! pods it made bundles a gigabyte larger and compiles several times slower
//! (measured with `cargo xtask bench compile`).
//!
//! `files` holds the SHA-256 of every other file of the bundle, so that a
//! loader compares two manifests to see which files changed, reads only
//! those, and checks what it reads. A text file of more than one
//! [`Piece`] also lists its pieces: it is cut after every line whose hash
//! is in the lowest [`PIECE_LINES`]th of its range, a cut chosen by content, so a line
//! added or removed changes one piece and leaves the others, and their
//! digests, as they were. A one-line change to a map file of 100 000 lines
//! then costs a loader one piece of about [`PIECE_LINES`] lines to read.

use policyc_ebpf::abi::{self, MapLayout};
use policyc_ebpf::config::EndpointConfig;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Version of the bundle layout; bumped on any incompatible change (5: the
/// program templates are bodies that the loader's endpoint stub tail-calls
/// with the endpoint's id in `cb[0]`).
pub const FORMAT_VERSION: u32 = 5;

/// One shared BPF map of the node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MapSpec {
    /// Name, also its pin name under the loader's bpffs root.
    pub name: String,
    /// BPF map type (`lpm_trie`, `hash`, ...).
    #[serde(rename = "type")]
    pub map_type: String,
    /// Key size in bytes.
    pub key_size: u32,
    /// Value size in bytes.
    pub value_size: u32,
    /// Capacity of the map (both generations of a policy-bearing map).
    pub max_entries: u32,
    /// Entries this bundle writes into one generation (`None` for maps the
    /// datapath fills: conntrack, metrics, events, state).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entries: Option<usize>,
}

impl MapSpec {
    /// The spec of `layout` holding `entries` of this bundle.
    pub fn new(layout: &MapLayout, entries: Option<usize>) -> Self {
        MapSpec {
            name: layout.name.into(),
            map_type: type_name(layout.map_type).into(),
            key_size: layout.key_size,
            value_size: layout.value_size,
            max_entries: layout.max_entries,
            entries,
        }
    }
}

/// The name a bundle gives a BPF map type number.
pub fn type_name(map_type: u32) -> &'static str {
    match map_type {
        abi::BPF_MAP_TYPE_HASH => "hash",
        abi::BPF_MAP_TYPE_ARRAY => "array",
        abi::BPF_MAP_TYPE_PERCPU_HASH => "percpu_hash",
        abi::BPF_MAP_TYPE_PERCPU_ARRAY => "percpu_array",
        abi::BPF_MAP_TYPE_LRU_HASH => "lru_hash",
        abi::BPF_MAP_TYPE_LPM_TRIE => "lpm_trie",
        abi::BPF_MAP_TYPE_RINGBUF => "ringbuf",
        _ => "unknown",
    }
}

/// The program templates of the bundle, relative to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProgramFiles {
    /// `from_container` (tcx ingress of the host-side interface).
    pub from: String,
    /// `to_container` (tcx egress of the host-side interface).
    pub to: String,
}

/// One endpoint of the node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EndpointSpec {
    /// `<ns>/<pod>`.
    pub name: String,
    /// A file-system-safe name (`<ns>.<pod>`,
    /// [`super::maps::endpoint_stem`]): the loader names the endpoint's
    /// pinned links after it.
    pub stem: String,
    /// Endpoint id on the node.
    pub id: u16,
    /// Its identity.
    pub identity: u32,
    /// Its addresses (none for a host-network pod or a workload).
    pub addresses: Vec<String>,
    /// Its policy map's text file (shared by the endpoints of one identity
    /// whose maps are equal).
    pub policy_file: String,
    /// Entries of its policy map.
    pub policy_entries: usize,
    /// The settings of its programs.
    pub config: EndpointConfig,
}

/// A table of the bundle that is not a BPF map (for people and tools).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TableSpec {
    /// Name.
    pub name: String,
    /// Text file, relative to the bundle.
    pub file: String,
    /// Lines.
    pub entries: usize,
}

/// The manifest of one bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Manifest {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// Node name.
    pub node: String,
    /// Content hash of the input manifests.
    pub source_hash: String,
    /// The node's shared maps, in the order of the datapath's declaration.
    pub maps: Vec<MapSpec>,
    /// The program templates.
    pub programs: ProgramFiles,
    /// Local endpoints, by name.
    pub endpoints: Vec<EndpointSpec>,
    /// Other tables.
    pub tables: Vec<TableSpec>,
    /// Every other file of the bundle, by path relative to it.
    pub files: BTreeMap<String, FileDigest>,
}

/// Lines per piece of a text file, on average ([`FileDigest::pieces`]).
pub const PIECE_LINES: u64 = 1024;

/// The content of one file of the bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileDigest {
    /// SHA-256 of the file, in hex.
    pub sha256: String,
    /// Lines of a text file (`None` for a program object).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lines: Option<usize>,
    /// The pieces of a text file, in order, when there is more than one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pieces: Vec<Piece>,
}

/// A run of whole lines of a text file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Piece {
    /// Lines.
    pub lines: usize,
    /// Bytes.
    pub bytes: usize,
    /// SHA-256 of those bytes, in hex.
    pub sha256: String,
}

/// What the digests of `files` hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Digests {
    /// The SHA-256 of each file and piece.
    #[default]
    Sha256,
    /// Zeros as long as a SHA-256 in hex, so that `manifest.json` has the
    /// length it would have: for a dry run, which only measures the
    /// bundles, and saves hashing every byte of them.
    Placeholder,
}

impl Digests {
    /// The digest of `bytes`, in hex.
    fn of(self, bytes: &[u8]) -> String {
        match self {
            Digests::Sha256 => format!("{:x}", Sha256::digest(bytes)),
            Digests::Placeholder => "0".repeat(64),
        }
    }
}

/// A hash of a line deciding where pieces end: eight bytes at a time (a
/// byte-at-a-time hash took a third of the time of digesting a bundle),
/// with a final mix that spreads every input bit over the high bits the
/// cut compares.
fn cut_hash(line: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = line.len() as u64;
    let mut words = line.chunks_exact(8);
    for word in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    let mut tail = [0u8; 8];
    tail[..words.remainder().len()].copy_from_slice(words.remainder());
    h = (h.rotate_left(5) ^ u64::from_le_bytes(tail)).wrapping_mul(K);
    // SplitMix64's finalizer.
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The digests of a text file and of its pieces.
pub fn text_digest(text: &str, digests: Digests) -> FileDigest {
    // Cut first, hash after: a file of one piece (most policy files) has
    // the file's digest as its piece's, and is hashed once, not twice.
    let mut cuts = Vec::new();
    let (mut start, mut end, mut lines) = (0, 0, 0);
    for line in text.split_inclusive('\n') {
        end += line.len();
        lines += 1;
        if cut_hash(line.as_bytes()) < u64::MAX / PIECE_LINES || end == text.len() {
            cuts.push((start..end, lines));
            (start, lines) = (end, 0);
        }
    }
    let lines = cuts.iter().map(|(_, lines)| lines).sum();
    let sha256 = digests.of(text.as_bytes());
    let pieces = if cuts.len() > 1 {
        let piece = |(bytes, lines): (std::ops::Range<usize>, usize)| Piece {
            lines,
            bytes: bytes.len(),
            sha256: digests.of(&text.as_bytes()[bytes]),
        };
        cuts.into_iter().map(piece).collect()
    } else {
        Vec::new()
    };
    FileDigest { sha256, lines: Some(lines), pieces }
}

/// The digest of a program object.
pub fn object_digest(bytes: &[u8], digests: Digests) -> FileDigest {
    FileDigest { sha256: digests.of(bytes), lines: None, pieces: Vec::new() }
}

impl Manifest {
    /// Pretty JSON with a final newline; field order is fixed by the types.
    pub fn to_json(&self) -> String {
        // Plain structs of strings and integers always serialize.
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(range: std::ops::Range<u32>) -> String {
        range.map(|i| format!("ingress {i} 6/80/24 allow\n")).collect()
    }

    #[test]
    fn pieces_are_about_piece_lines_long() {
        let d = text_digest(&lines(0..200_000), Digests::Sha256);
        let average = 200_000 / d.pieces.len() as u64;
        assert!((PIECE_LINES / 2..PIECE_LINES * 2).contains(&average), "{} pieces", d.pieces.len());
    }

    #[test]
    fn a_short_file_is_one_piece() {
        let d = text_digest("a\nb\n", Digests::Sha256);
        assert_eq!((d.lines, d.pieces.len()), (Some(2), 0));
        assert_eq!(d.sha256, Digests::Sha256.of(b"a\nb\n"));
    }

    #[test]
    fn pieces_cover_the_file_and_a_new_line_changes_one() {
        let old = lines(0..20_000);
        let d = text_digest(&old, Digests::Sha256);
        assert!(d.pieces.len() > 5, "{} pieces", d.pieces.len());
        assert_eq!(d.pieces.iter().map(|p| p.bytes).sum::<usize>(), old.len());
        assert_eq!(d.pieces.iter().map(|p| p.lines).sum::<usize>(), 20_000);
        // One more line in the middle: every piece but the one holding it
        // keeps its digest.
        let mut new: Vec<&str> = old.split_inclusive('\n').collect();
        new.insert(10_000, "ingress 99999 6/80/24 allow\n");
        let n = text_digest(&new.concat(), Digests::Sha256);
        let digests =
            |d: &FileDigest| d.pieces.iter().map(|p| p.sha256.clone()).collect::<std::collections::BTreeSet<_>>();
        let (a, b) = (digests(&d), digests(&n));
        assert_eq!(a.difference(&b).count(), 1);
        assert_eq!(b.difference(&a).count(), 1);
    }
}
