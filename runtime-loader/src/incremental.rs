//! The plan of an apply from what changed: the new bundle's manifest is
//! compared with the kept manifest of the bundle the target generation
//! holds ([`crate::store`]), and only the pieces of text files whose
//! digests differ are read (the new ones from the bundle, each checked
//! against its digest; the old ones from the store) and parsed (of a policy
//! file's changed pieces, only the lines one side alone has: the others
//! are entries that stay). Their entries, diffed, are the map operations: a
//! one-rule change reads one piece of each file it touches, whatever the
//! size of the policy. The changed pieces of the tables no map holds
//! (rules, identities) are read and checked too, and planned for nothing.
//!
//! This rests on each map file listing a key once (the compiler writes
//! sorted, distinct entries): an entry of a piece present on both sides
//! is then in neither side's changed pieces, so the changed pieces alone
//! say what to write and what to remove. A policy entry's value (its
//! verdict and its rule's cookie) is all on its line, so a line's text is
//! its entry: a value that changes changes the line.

use crate::bundle::BundleError;
use crate::entries;
use crate::manifest::{FileDigest, Manifest, Piece, ENDPOINTS_FILE, IDENTITIES_FILE, IPCACHE_FILE, RULES_FILE};
use crate::maps::{Generation, SyncPlan};
use crate::paths::Paths;
use crate::store;
use policyc_bundle::identities::IdentityLine;
use policyc_bundle::policy::PolicyLine;
use policyc_bundle::rules::RuleLine;
use policyc_ebpf::abi::{EndpointKey, EndpointValue, PolicyKey, PolicyValue};
use std::collections::{BTreeMap, BTreeSet};

/// A piece to read: its index in the file, its first line, and it.
type PieceAt = (usize, usize, Piece);

/// The pieces of each side that the other side does not have.
fn changed_pieces(old: Option<&FileDigest>, new: Option<&FileDigest>) -> (Vec<PieceAt>, Vec<PieceAt>) {
    let located = |d: Option<&FileDigest>| -> Vec<PieceAt> {
        let mut first: usize = 1;
        d.map(FileDigest::pieces)
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                let at = (i, first, p);
                // Line numbers, for messages: the manifest's counts are
                // checked against the text when a piece is read.
                first = first.saturating_add(at.2.lines);
                at
            })
            .collect()
    };
    let (old, new) = (located(old), located(new));
    let digests = |v: &[PieceAt]| v.iter().map(|(_, _, p)| p.sha256.clone()).collect::<BTreeSet<_>>();
    let (in_old, in_new) = (digests(&old), digests(&new));
    (
        old.into_iter().filter(|(_, _, p)| !in_new.contains(&p.sha256)).collect(),
        new.into_iter().filter(|(_, _, p)| !in_old.contains(&p.sha256)).collect(),
    )
}

/// What an incremental plan needs read, and what it read from the new
/// bundle (to be stored once the apply writes).
pub struct Incremental {
    /// The map operations.
    pub plan: SyncPlan,
    /// The pieces read from the new bundle: `(digest, text)`.
    pub read: Vec<(String, String)>,
}

/// Both sides' readers: the old from the store (`None`: not there, the
/// plan cannot be made from the record), the new from the bundle.
struct Sides<'a> {
    paths: &'a Paths,
    old: &'a Manifest,
    new: &'a Manifest,
    read: Vec<(String, String)>,
}

impl Sides<'_> {
    fn old_piece(&self, file: &str, piece: &Piece) -> Option<String> {
        store::read_piece(self.paths, file, piece)
    }

    fn new_piece(&mut self, file: &str, index: usize, piece: &Piece) -> Result<String, BundleError> {
        let text = self.new.read_piece(file, index)?;
        self.read.push((piece.sha256.clone(), text.clone()));
        Ok(text)
    }
}

/// The plan turning generation `target`, which holds the bundle of `old`,
/// into the bundle of `new`; `Ok(None)` when a piece of `old` is not in
/// the store (the live maps must be read instead). A piece of the new
/// bundle that does not match its digest, or does not parse, refuses it.
pub fn plan(paths: &Paths, old: &Manifest, new: &Manifest, target: u8) -> Result<Option<Incremental>, BundleError> {
    let mut sides = Sides { paths, old, new, read: Vec::new() };
    let mut before = Generation::default();
    let mut after = Generation::default();
    let entry = BundleError::Entry;

    let (gone, came) = changed_pieces(old.files.get(IPCACHE_FILE), new.files.get(IPCACHE_FILE));
    for (_, first, piece) in &gone {
        let Some(text) = sides.old_piece(IPCACHE_FILE, piece) else { return Ok(None) };
        let parsed = entries::ipcache(IPCACHE_FILE, *first, &text).map_err(entry)?;
        before.add_ipcache(target, &parsed);
    }
    for (i, first, piece) in &came {
        let text = sides.new_piece(IPCACHE_FILE, *i, piece)?;
        after.add_ipcache(target, &entries::ipcache(IPCACHE_FILE, *first, &text).map_err(entry)?);
    }

    let (gone, came) = changed_pieces(old.files.get(ENDPOINTS_FILE), new.files.get(ENDPOINTS_FILE));
    for (_, first, piece) in &gone {
        let Some(text) = sides.old_piece(ENDPOINTS_FILE, piece) else { return Ok(None) };
        before.add_endpoints(target, endpoint_entries(&text, *first)?);
    }
    for (i, first, piece) in &came {
        let text = sides.new_piece(ENDPOINTS_FILE, *i, piece)?;
        after.add_endpoints(target, endpoint_entries(&text, *first)?);
    }

    // Policy files by endpoint id (policy keys hold the id); several ids
    // may name one file, whose changed pieces are then read and parsed once.
    let by_id =
        |m: &Manifest| -> BTreeMap<u16, String> { m.endpoints.iter().map(|e| (e.id, e.policy_file.clone())).collect() };
    let (old_files, new_files) = (by_id(old), by_id(new));
    let piece_list = |m: &Manifest, file: Option<&String>| {
        file.and_then(|f| m.files.get(f)).map(|d| d.pieces().into_iter().map(|p| p.sha256).collect::<Vec<_>>())
    };
    let ids: BTreeSet<u16> = old_files.keys().chain(new_files.keys()).copied().collect();
    let changed_ids: Vec<u16> =
        ids.into_iter().filter(|id| piece_list(old, old_files.get(id)) != piece_list(new, new_files.get(id))).collect();
    // The entries that differ between an endpoint's old and new policy
    // files, parsed once per pair of files however many endpoints share it.
    let mut parsed: BTreeMap<(Option<&String>, Option<&String>), Differing> = BTreeMap::new();
    for id in changed_ids {
        let pair = (old_files.get(&id), new_files.get(&id));
        let (old_entries, new_entries) = match parsed.entry(pair) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let Some(differing) = differing(&mut sides, pair)? else { return Ok(None) };
                e.insert(differing)
            }
        };
        before.add_policy(target, Some(id), old_entries);
        after.add_policy(target, Some(id), new_entries);
    }

    // The tables no map holds (rules, identities) are read where they
    // changed: each new piece checked against its digest and parsed, as a
    // whole read checks them.
    for file in [RULES_FILE, IDENTITIES_FILE] {
        let (_, came) = changed_pieces(old.files.get(file), new.files.get(file));
        for (i, first, _) in came {
            let text = new.read_piece(file, i)?;
            let parsed = if file == RULES_FILE {
                RuleLine::parse_all(file, first, &text).map(drop)
            } else {
                // Identity lines number from the piece's start.
                IdentityLine::parse_all(file, &text).map(drop).map_err(|mut e| {
                    e.line = e.line.saturating_add(first - 1);
                    e
                })
            };
            parsed.map_err(entry)?;
        }
    }

    let mut plan = SyncPlan::new(&before, &after);
    plan.count_unchanged(&new.entries()?);
    Ok(Some(Incremental { plan, read: sides.read }))
}

/// The policy entries only the old side has, and those only the new side
/// has.
type Differing = (Vec<(PolicyKey, PolicyValue)>, Vec<(PolicyKey, PolicyValue)>);

/// Numbered lines: `(line number, line)`.
type Numbered<'a> = Vec<(usize, &'a str)>;

/// The entries that differ between old policy file `of` and new policy
/// file `nf` (either absent), from their changed pieces; `None` when an old
/// piece is not in the store. A line on both sides is an entry that stays
/// as it is, so only the lines of one side alone are parsed.
fn differing(
    sides: &mut Sides<'_>,
    (of, nf): (Option<&String>, Option<&String>),
) -> Result<Option<Differing>, BundleError> {
    let (old, new) = (sides.old, sides.new);
    let (gone, came) = changed_pieces(of.and_then(|f| old.files.get(f)), nf.and_then(|f| new.files.get(f)));
    let mut old_lines = Vec::new();
    if let Some(file) = of {
        for (_, first, piece) in &gone {
            let Some(text) = sides.old_piece(file, piece) else { return Ok(None) };
            old_lines.push((*first, text));
        }
    }
    let mut new_lines = Vec::new();
    if let Some(file) = nf {
        for (i, first, piece) in &came {
            new_lines.push((*first, sides.new_piece(file, *i, piece)?));
        }
    }
    let (old_only, new_only) = one_sided(&old_lines, &new_lines);
    let old_entries = of.map(|f| parse_policy_lines(f, &old_only)).transpose()?;
    let new_entries = nf.map(|f| parse_policy_lines(f, &new_only)).transpose()?;
    Ok(Some((old_entries.unwrap_or_default(), new_entries.unwrap_or_default())))
}

/// The lines of pieces `(first line number, text)`, numbered.
fn numbered(pieces: &[(usize, String)]) -> impl Iterator<Item = (usize, &str)> {
    pieces
        .iter()
        .flat_map(|(first, text)| text.lines().enumerate().map(move |(i, line)| (first.saturating_add(i), line)))
}

/// The numbered lines of `old` that `new` does not have, and those of `new`
/// that `old` does not have.
fn one_sided<'a>(old: &'a [(usize, String)], new: &'a [(usize, String)]) -> (Numbered<'a>, Numbered<'a>) {
    let in_old: std::collections::HashSet<&str> = numbered(old).map(|(_, l)| l).collect();
    let in_new: std::collections::HashSet<&str> = numbered(new).map(|(_, l)| l).collect();
    (
        numbered(old).filter(|(_, l)| !in_new.contains(l)).collect(),
        numbered(new).filter(|(_, l)| !in_old.contains(l)).collect(),
    )
}

/// Policy entries of numbered lines of `file`.
fn parse_policy_lines(file: &str, lines: &[(usize, &str)]) -> Result<Vec<(PolicyKey, PolicyValue)>, BundleError> {
    lines
        .iter()
        .map(|&(n, line)| {
            let parsed = PolicyLine::parse(file, n, line).map_err(BundleError::Entry)?;
            Ok(entries::policy_entry(&parsed, 0))
        })
        .collect()
}

fn endpoint_entries(text: &str, first: usize) -> Result<Vec<(EndpointKey, EndpointValue)>, BundleError> {
    let parsed = entries::endpoints(ENDPOINTS_FILE, first, text).map_err(BundleError::Entry)?;
    Ok(parsed.into_iter().map(|(k, v, _)| (k, v)).collect())
}
