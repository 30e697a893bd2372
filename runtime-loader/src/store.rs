//! The loader's copy of what each generation holds, in the state
//! directory: the manifest of each generation's bundle, and the pieces of
//! its text map files stored by digest ([`crate::manifest::Piece`]), each
//! piece once however many generations and files hold it. An apply reads
//! from here the old side of the pieces that changed, and adds the pieces
//! it read from the new bundle: the copy costs what changed too.
//!
//! Beside each generation's manifest, its [`References`]: which rule
//! cookies and identities its tables list and how many entries name each.
//!
//! Every piece of a generation the record knows is here; a piece or an
//! index that is missing or does not match its digest makes the apply read
//! the bundle whole and the live maps instead.

use crate::error::LoaderError;
use crate::manifest::{self, Manifest, Piece, ENDPOINTS_FILE, IDENTITIES_FILE, IPCACHE_FILE, RULES_FILE};
use crate::paths::Paths;
use crate::references::References;
use policyc_bundle::{BACKENDS_FILE, REVNAT_FILE, SERVICES_FILE};
use std::collections::BTreeSet;

fn record_error(what: &str, path: &std::path::Path, e: std::io::Error) -> LoaderError {
    LoaderError::Record(format!("cannot {what} `{}`: {e}", path.display()))
}

/// Writes `bytes` to `path` whole: beside it, then renamed over it.
fn write_whole(path: &std::path::Path, bytes: &[u8]) -> Result<(), LoaderError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path)).map_err(|e| record_error("write", path, e))
}

/// Stores pieces `(digest, text)` that are not stored yet.
pub fn save_pieces<'a>(paths: &Paths, pieces: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<(), LoaderError> {
    let dir = paths.pieces();
    std::fs::create_dir_all(&dir).map_err(|e| record_error("create", &dir, e))?;
    for (digest, text) in pieces {
        let path = dir.join(digest);
        if !path.exists() {
            write_whole(&path, text.as_bytes())?;
        }
    }
    Ok(())
}

/// A stored piece, if it is there and matches its digest.
pub fn read_piece(paths: &Paths, file: &str, piece: &Piece) -> Option<String> {
    let bytes = std::fs::read(paths.pieces().join(&piece.sha256)).ok()?;
    manifest::checked_text(file, file, piece, bytes).ok()
}

/// The text files an apply diffs: the ipcache, endpoints, rules and
/// identities files, every policy file, and the service tables where the
/// bundle has them.
pub fn diffed_files(m: &Manifest) -> BTreeSet<&str> {
    let fixed = [IPCACHE_FILE, ENDPOINTS_FILE, RULES_FILE, IDENTITIES_FILE].into_iter();
    let services = [SERVICES_FILE, BACKENDS_FILE, REVNAT_FILE].into_iter().filter(|f| m.files.contains_key(*f));
    fixed.chain(services).chain(m.endpoints.iter().map(|e| e.policy_file.as_str())).collect()
}

/// Stores every piece of the files `m` diffs, each read from its bundle
/// and checked (after an apply that read the whole bundle).
pub fn save_bundle(paths: &Paths, m: &Manifest) -> Result<(), LoaderError> {
    for file in diffed_files(m) {
        for (i, piece) in m.digest(file)?.pieces().iter().enumerate() {
            if !paths.pieces().join(&piece.sha256).exists() {
                let text = m.read_piece(file, i)?;
                save_pieces(paths, [(piece.sha256.as_str(), text.as_str())])?;
            }
        }
    }
    Ok(())
}

/// Keeps `m` as the manifest of generation `generation`.
pub fn save_manifest(paths: &Paths, generation: u8, m: &Manifest) -> Result<(), LoaderError> {
    write_whole(&paths.generation_copy(generation), m.text.as_bytes())
}

/// The kept manifest of generation `generation`, if it is there and its
/// hash is `hash`.
pub fn read_manifest(paths: &Paths, generation: u8, hash: &str) -> Option<Manifest> {
    let text = std::fs::read_to_string(paths.generation_copy(generation)).ok()?;
    let m = Manifest::parse(&paths.state, text).ok()?;
    (m.hash == hash).then_some(m)
}

/// Where the [`References`] of generation `generation` are kept.
fn references_path(paths: &Paths, generation: u8) -> std::path::PathBuf {
    paths.state.join(format!("generation-{generation}.references"))
}

/// Keeps `index` as the references of generation `generation`, which
/// holds the bundle of manifest hash `hash`.
pub fn save_references(paths: &Paths, generation: u8, hash: &str, index: &References) -> Result<(), LoaderError> {
    write_whole(&references_path(paths, generation), index.text(hash).as_bytes())
}

/// The kept references of generation `generation`, if they are there and
/// are those of the bundle of manifest hash `hash`.
pub fn read_references(paths: &Paths, generation: u8, hash: &str) -> Option<References> {
    References::parse(&std::fs::read_to_string(references_path(paths, generation)).ok()?, hash)
}

/// Removes every stored piece that none of `kept` holds.
pub fn collect_garbage(paths: &Paths, kept: &[&Manifest]) -> Result<(), LoaderError> {
    let mut wanted = BTreeSet::new();
    for m in kept {
        for file in diffed_files(m) {
            wanted.extend(m.digest(file)?.pieces().into_iter().map(|p| p.sha256));
        }
    }
    let dir = paths.pieces();
    let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(()) };
    for entry in entries.filter_map(Result::ok) {
        if !entry.file_name().to_str().is_some_and(|name| wanted.contains(name)) {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(|e| record_error("remove", &path, e))?;
        }
    }
    Ok(())
}
