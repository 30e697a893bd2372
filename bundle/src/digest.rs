//! The digests `manifest.json` holds for every other file of a bundle, and
//! the pieces long text files are cut into.
//!
//! A text file of more than one [`Piece`] lists its pieces: it is cut after
//! every line whose hash is in the lowest [`PIECE_LINES`]th of its range,
//! a cut chosen by content, so a line added or removed changes one piece
//! and leaves the others, and their digests, as they were. A one-line
//! change to a map file of 100 000 lines then costs a loader one piece of
//! about [`PIECE_LINES`] lines to read.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Lines per piece of a text file, on average ([`FileDigest::pieces`]).
pub const PIECE_LINES: u64 = 1024;

/// The content of one file of the bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    /// SHA-256 of the file, in hex.
    pub sha256: String,
    /// Lines of a text file (`None` for a program object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lines: Option<usize>,
    /// The pieces of a text file, in order, when there is more than one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pieces: Vec<Piece>,
}

/// A run of whole lines of a text file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Piece {
    /// Lines.
    pub lines: usize,
    /// Bytes; `None` for the one piece of a file that is not cut (the
    /// whole file, whose size the manifest does not state).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<usize>,
    /// SHA-256 of those bytes, in hex.
    pub sha256: String,
}

impl FileDigest {
    /// The file's pieces in order: one, the whole file, unless the
    /// manifest lists several.
    pub fn pieces(&self) -> Vec<Piece> {
        if self.pieces.is_empty() {
            vec![Piece { lines: self.lines.unwrap_or(0), bytes: None, sha256: self.sha256.clone() }]
        } else {
            self.pieces.clone()
        }
    }
}

/// What the digests of a manifest's `files` hold.
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
    pub fn of(self, bytes: &[u8]) -> String {
        match self {
            Digests::Sha256 => sha256_hex(bytes),
            Digests::Placeholder => "0".repeat(64),
        }
    }
}

/// The SHA-256 of `bytes`, in lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
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
            bytes: Some(bytes.len()),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(range: std::ops::Range<u32>) -> String {
        range.map(|i| format!("ingress {i} 6/80/24 allow 1 r\n")).collect()
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
        assert_eq!(d.pieces(), [Piece { lines: 2, bytes: None, sha256: d.sha256.clone() }]);
    }

    #[test]
    fn pieces_cover_the_file_and_a_new_line_changes_one() {
        let old = lines(0..20_000);
        let d = text_digest(&old, Digests::Sha256);
        assert!(d.pieces.len() > 5, "{} pieces", d.pieces.len());
        assert_eq!(d.pieces.iter().map(|p| p.bytes.unwrap_or(0)).sum::<usize>(), old.len());
        assert_eq!(d.pieces.iter().map(|p| p.lines).sum::<usize>(), 20_000);
        // One more line in the middle: every piece but the one holding it
        // keeps its digest.
        let mut new: Vec<&str> = old.split_inclusive('\n').collect();
        new.insert(10_000, "ingress 99999 6/80/24 allow 1 r\n");
        let n = text_digest(&new.concat(), Digests::Sha256);
        let digests =
            |d: &FileDigest| d.pieces.iter().map(|p| p.sha256.clone()).collect::<std::collections::BTreeSet<_>>();
        let (a, b) = (digests(&d), digests(&n));
        assert_eq!(a.difference(&b).count(), 1);
        assert_eq!(b.difference(&a).count(), 1);
    }
}
