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
//!
//! A plan refuses what a whole read refuses, reading no more than what
//! changed and its borders:
//! - each changed piece is parsed whole, so its lines are sorted and each
//!   key once; where a changed piece meets its neighbours, the last line
//!   before it and the first after it are compared with its own (the
//!   unchanged neighbour is read from the store): so a key listed in a
//!   changed piece and in an unchanged one is refused, as the kernel would
//!   keep one entry for both;
//! - every policy entry names a rule `rules.txt` lists, and every entry an
//!   identity `identities.txt` lists, from the generation's
//!   [`References`] updated by what changed;
//! - where the endpoints or `endpoints.txt` changed, `endpoints.txt` (a
//!   line per local address, read from the store where unchanged) is
//!   checked against the manifest's endpoints ([`validate::endpoint_map`]).

use crate::bundle::BundleError;
use crate::entries;
use crate::manifest::{FileDigest, Manifest, Piece, ENDPOINTS_FILE, IDENTITIES_FILE, IPCACHE_FILE, RULES_FILE};
use crate::maps::{Generation, SyncPlan};
use crate::paths::Paths;
use crate::references::References;
use crate::store;
use crate::validate;
use policyc_bundle::endpoints::EndpointLine;
use policyc_bundle::identities::IdentityLine;
use policyc_bundle::ipcache::IpcacheLine;
use policyc_bundle::policy::PolicyLine;
use policyc_bundle::rules::RuleLine;
use policyc_bundle::{out_of_order, LineError, BACKENDS_FILE, REVNAT_FILE, SERVICES_FILE};
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
    /// The new bundle's references, to keep with its manifest.
    pub references: References,
}

/// The changed pieces of one file: `(first line number, text)` of those
/// only the old side has, and of those only the new side has.
struct Changed {
    gone: Vec<(usize, String)>,
    came: Vec<(usize, String)>,
}

/// The key a line of a file is sorted by, from `(file, line number, line)`.
type SortKey<'k, K> = &'k dyn Fn(&str, usize, &str) -> Result<K, LineError>;

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

    /// The changed pieces of old file `of` and new file `nf` (either
    /// absent), the new ones checked where they meet their neighbours:
    /// sorted by `key` across the seam, no key twice. `Ok(None)` when a
    /// piece needed from the store is not there.
    fn changed<K: Ord>(
        &mut self,
        of: Option<&str>,
        nf: Option<&str>,
        key: SortKey<'_, K>,
    ) -> Result<Option<Changed>, BundleError> {
        let (old, new) = (self.old, self.new);
        let (gone, came) = changed_pieces(of.and_then(|f| old.files.get(f)), nf.and_then(|f| new.files.get(f)));
        let mut out = Changed { gone: Vec::new(), came: Vec::new() };
        if let Some(file) = of {
            for (_, first, piece) in &gone {
                let Some(text) = self.old_piece(file, piece) else { return Ok(None) };
                out.gone.push((*first, text));
            }
        }
        let Some(file) = nf else { return Ok(Some(out)) };
        let mut texts: BTreeMap<usize, usize> = BTreeMap::new();
        for (i, first, piece) in &came {
            out.came.push((*first, self.new_piece(file, *i, piece)?));
            texts.insert(*i, out.came.len() - 1);
        }
        match self.check_seams(file, &texts, &out.came, key)? {
            Some(()) => Ok(Some(out)),
            None => Ok(None),
        }
    }

    /// Checks new file `file` where each of its read pieces (`read`: piece
    /// index → position in `came`) meets the piece before and after it.
    fn check_seams<K: Ord>(
        &self,
        file: &str,
        read: &BTreeMap<usize, usize>,
        came: &[(usize, String)],
        key: SortKey<'_, K>,
    ) -> Result<Option<()>, BundleError> {
        let Some(digest) = self.new.files.get(file) else { return Ok(Some(())) };
        let pieces = digest.pieces();
        let seams: BTreeSet<usize> = read
            .keys()
            .flat_map(|&i| [i.checked_sub(1), Some(i)])
            .flatten()
            .filter(|&i| i + 1 < pieces.len())
            .collect();
        let mut firsts = Vec::with_capacity(pieces.len());
        let mut first: usize = 1;
        for p in &pieces {
            firsts.push(first);
            first = first.saturating_add(p.lines);
        }
        // A piece of the new file that was not read is one of the old
        // file's (same digest): in the store.
        let text = |i: usize| -> Option<std::borrow::Cow<'_, str>> {
            match read.get(&i) {
                Some(&at) => Some(std::borrow::Cow::Borrowed(came[at].1.as_str())),
                None => self.old_piece(file, &pieces[i]).map(std::borrow::Cow::Owned),
            }
        };
        for seam in seams {
            let (Some(before), Some(after)) = (text(seam), text(seam + 1)) else { return Ok(None) };
            // Pieces of a file cut in several are never empty (the
            // manifest is refused otherwise).
            let (Some(last), Some(next)) = (before.lines().last(), after.lines().next()) else { continue };
            let line = firsts[seam + 1];
            let (a, b) = (key(file, line - 1, last), key(file, line, next));
            let (a, b) = (a.map_err(BundleError::Entry)?, b.map_err(BundleError::Entry)?);
            if let Some(message) = out_of_order(&a, &b) {
                return Err(BundleError::Entry(LineError { file: file.to_string(), line, message: message.into() }));
            }
        }
        Ok(Some(()))
    }
}

/// Sort keys of each text file's lines.
fn ipcache_key(f: &str, n: usize, l: &str) -> Result<(std::net::IpAddr, u8), LineError> {
    IpcacheLine::parse(f, n, l).map(|l| l.sort_key())
}
fn endpoints_key(f: &str, n: usize, l: &str) -> Result<std::net::IpAddr, LineError> {
    EndpointLine::parse(f, n, l).map(|l| l.sort_key())
}
fn rules_key(f: &str, n: usize, l: &str) -> Result<u32, LineError> {
    RuleLine::parse(f, n, l).map(|l| l.sort_key())
}
fn identities_key(f: &str, n: usize, l: &str) -> Result<u32, LineError> {
    IdentityLine::parse(f, n, l).map(|l| l.identity)
}
type PolicySort = (u32, policyc_bundle::policy::Direction, u8, u16, u8);
fn policy_key(f: &str, n: usize, l: &str) -> Result<PolicySort, LineError> {
    PolicyLine::parse(f, n, l).map(|l| l.sort_key())
}

/// Returns `Ok(None)` from the enclosing function when `$e` is `None`.
macro_rules! or_whole {
    ($e:expr) => {
        match $e {
            Some(v) => v,
            None => return Ok(None),
        }
    };
}

/// The plan turning generation `target`, which holds the bundle of `old`,
/// into the bundle of `new`; `Ok(None)` when a piece of `old`, or its rule
/// index, is not in the store (the bundle must be read whole and the live
/// maps instead). A piece of the new bundle that does not match its
/// digest, or does not parse, or any check of a whole read that what
/// changed fails (see the module), refuses it.
pub fn plan(paths: &Paths, old: &Manifest, new: &Manifest, target: u8) -> Result<Option<Incremental>, BundleError> {
    let mut refs = or_whole!(store::read_references(paths, target, &old.hash));
    let mut sides = Sides { paths, old, new, read: Vec::new() };
    let mut before = Generation::default();
    let mut after = Generation::default();
    let entry = BundleError::Entry;

    // The service tables, whole where any of them changed (see
    // `crate::services`): the maps' entries of both sides, diffed.
    if SERVICE_FILES.iter().any(|f| old.files.get(*f) != new.files.get(*f)) {
        let old_texts = or_whole!(service_texts(&mut sides, false)?);
        let new_texts = service_texts(&mut sides, true)?;
        if let Some(texts) = old_texts {
            before.add_services(target, &crate::services::parse(&texts)?.1);
        }
        match new_texts {
            Some(Some(texts)) => after.add_services(target, &crate::services::parse(&texts)?.1),
            // Refused as a whole read refuses it (some of the files only).
            _ => {
                crate::services::read(new)?;
            }
        }
    }

    let changed = or_whole!(sides.changed(Some(IPCACHE_FILE), Some(IPCACHE_FILE), &ipcache_key)?);
    for (first, text) in &changed.gone {
        let parsed = entries::ipcache(IPCACHE_FILE, *first, text).map_err(entry)?;
        for (_, v) in &parsed {
            or_whole!(refs.identities.unname(v.identity));
        }
        before.add_ipcache(target, &parsed);
    }
    for (first, text) in &changed.came {
        let parsed = entries::ipcache(IPCACHE_FILE, *first, text).map_err(entry)?;
        parsed.iter().for_each(|(_, v)| refs.identities.name(v.identity));
        after.add_ipcache(target, &parsed);
    }

    let changed = or_whole!(sides.changed(Some(ENDPOINTS_FILE), Some(ENDPOINTS_FILE), &endpoints_key)?);
    for (first, text) in &changed.gone {
        let parsed = endpoint_entries(text, *first)?;
        for (_, v) in &parsed {
            or_whole!(refs.identities.unname(v.identity));
        }
        before.add_endpoints(target, parsed);
    }
    for (first, text) in &changed.came {
        let parsed = endpoint_entries(text, *first)?;
        parsed.iter().for_each(|(_, v)| refs.identities.name(v.identity));
        after.add_endpoints(target, parsed);
    }
    if old.endpoints != new.endpoints || old.files.get(ENDPOINTS_FILE) != new.files.get(ENDPOINTS_FILE) {
        let all = or_whole!(whole_endpoints(&sides, &changed.came)?);
        validate::endpoint_map(&new.endpoints, &all)?;
    }

    // The rules first: the policy entries that came are checked against
    // the rules the new bundle lists. A rule line one side alone has is a
    // rule gone or come (a renamed rule is both).
    let changed = or_whole!(sides.changed(Some(RULES_FILE), Some(RULES_FILE), &rules_key)?);
    for (first, text) in &changed.came {
        RuleLine::parse_all(RULES_FILE, *first, text).map_err(entry)?;
    }
    let (gone, came) = one_sided(&changed.gone, &changed.came);
    for (n, line) in gone {
        refs.rules.unlist(RuleLine::parse(RULES_FILE, n, line).map_err(entry)?.cookie);
    }
    for (n, line) in came {
        refs.rules.list(RuleLine::parse(RULES_FILE, n, line).map_err(entry)?.cookie);
    }

    let changed = or_whole!(sides.changed(Some(IDENTITIES_FILE), Some(IDENTITIES_FILE), &identities_key)?);
    for (first, text) in &changed.came {
        // Identity lines number from the piece's start.
        IdentityLine::parse_all(IDENTITIES_FILE, text).map_err(|mut e| {
            e.line = e.line.saturating_add(first - 1);
            entry(e)
        })?;
    }
    let (gone, came) = one_sided(&changed.gone, &changed.came);
    for (n, line) in gone {
        refs.identities.unlist(IdentityLine::parse(IDENTITIES_FILE, n, line).map_err(entry)?.identity);
    }
    for (n, line) in came {
        refs.identities.list(IdentityLine::parse(IDENTITIES_FILE, n, line).map_err(entry)?.identity);
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
                let differing = or_whole!(differing(&mut sides, pair, &refs)?);
                e.insert(differing)
            }
        };
        for (k, v) in old_entries.iter() {
            or_whole!(refs.rules.unname(v.rule_cookie));
            if k.peer_identity != 0 {
                or_whole!(refs.identities.unname(k.peer_identity));
            }
        }
        for (k, v) in new_entries.iter() {
            refs.rules.name(v.rule_cookie);
            if k.peer_identity != 0 {
                refs.identities.name(k.peer_identity);
            }
        }
        before.add_policy(target, Some(id), old_entries);
        after.add_policy(target, Some(id), new_entries);
    }
    // A rule or identity gone that entries which stay still name, or
    // entries that came naming one never listed.
    if let Some((cookie, entries)) = refs.rules.unlisted() {
        return Err(BundleError::Manifest(format!(
            "`{RULES_FILE}` does not list rule cookie {cookie}, which {entries} policy entries name"
        )));
    }
    if let Some((identity, entries)) = refs.identities.unlisted() {
        return Err(crate::bundle::unlisted_identity(identity, entries));
    }

    let mut plan = SyncPlan::new(&before, &after);
    plan.count_unchanged(&new.entries()?);
    Ok(Some(Incremental { plan, read: sides.read, references: refs }))
}

/// The service tables of a bundle, in [`crate::services::parse`]'s order.
const SERVICE_FILES: [&str; 3] = [SERVICES_FILE, BACKENDS_FILE, REVNAT_FILE];

/// The whole texts of the old (from the store) or new (from the bundle,
/// kept) side's service tables: `Ok(None)` when an old piece is not in
/// the store; `Some(None)` when that side does not have all three.
#[allow(clippy::type_complexity)]
fn service_texts(sides: &mut Sides<'_>, new: bool) -> Result<Option<Option<[String; 3]>>, BundleError> {
    let manifest = if new { sides.new } else { sides.old };
    let mut texts: [String; 3] = Default::default();
    for (file, text) in SERVICE_FILES.iter().zip(&mut texts) {
        let Some(digest) = manifest.files.get(*file) else { return Ok(Some(None)) };
        for (i, piece) in digest.pieces().iter().enumerate() {
            let piece_text =
                if new { sides.new_piece(file, i, piece)? } else { or_whole!(sides.old_piece(file, piece)) };
            text.push_str(&piece_text);
        }
    }
    Ok(Some(Some(texts)))
}

/// Every entry of the new `endpoints.txt`: its changed pieces `came` as
/// read, the others from the store (`None`: one is not there).
fn whole_endpoints(
    sides: &Sides<'_>,
    came: &[(usize, String)],
) -> Result<Option<Vec<(EndpointKey, EndpointValue)>>, BundleError> {
    let Some(digest) = sides.new.files.get(ENDPOINTS_FILE) else { return Ok(Some(Vec::new())) };
    let read: BTreeMap<usize, &str> = came.iter().map(|(first, text)| (*first, text.as_str())).collect();
    let mut all = Vec::new();
    let mut first: usize = 1;
    for piece in digest.pieces() {
        let text = match read.get(&first) {
            Some(text) => std::borrow::Cow::Borrowed(*text),
            None => std::borrow::Cow::Owned(or_whole!(sides.old_piece(ENDPOINTS_FILE, &piece))),
        };
        all.extend(endpoint_entries(&text, first)?);
        first = first.saturating_add(piece.lines);
    }
    Ok(Some(all))
}

/// The policy entries only the old side has, and those only the new side
/// has.
type Differing = (Vec<(PolicyKey, PolicyValue)>, Vec<(PolicyKey, PolicyValue)>);

/// Numbered lines: `(line number, line)`.
type Numbered<'a> = Vec<(usize, &'a str)>;

/// The entries that differ between old policy file `of` and new policy
/// file `nf` (either absent), from their changed pieces; `None` when an old
/// piece is not in the store. A line on both sides is an entry that stays
/// as it is, so only the lines of one side alone become entries; the new
/// side's changed pieces are parsed whole (sorted, each key once), and each
/// entry that came must name a rule `refs` lists.
fn differing(
    sides: &mut Sides<'_>,
    (of, nf): (Option<&String>, Option<&String>),
    refs: &References,
) -> Result<Option<Differing>, BundleError> {
    let changed = or_whole!(sides.changed(of.map(String::as_str), nf.map(String::as_str), &policy_key)?);
    if let Some(file) = nf {
        for (first, text) in &changed.came {
            PolicyLine::parse_all(file, *first, text).map_err(BundleError::Entry)?;
        }
    }
    let (old_only, new_only) = one_sided(&changed.gone, &changed.came);
    let old_entries = of.map(|f| parse_policy_lines(f, &old_only)).transpose()?.unwrap_or_default();
    let new_entries = nf.map(|f| parse_policy_lines(f, &new_only)).transpose()?.unwrap_or_default();
    if let (Some(file), Some(((_, v), (n, _)))) =
        (nf, new_entries.iter().zip(&new_only).find(|((_, v), _)| !refs.rules.lists(v.rule_cookie)))
    {
        // As a whole read words it (entries are numbered as lines).
        return Err(BundleError::Manifest(format!(
            "`{file}`: entry {n} names rule cookie {}, which `{RULES_FILE}` does not list",
            v.rule_cookie
        )));
    }
    Ok(Some((old_entries, new_entries)))
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
