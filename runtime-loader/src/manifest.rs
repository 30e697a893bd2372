//! A bundle's `manifest.json`, read and checked on its own: format
//! version, node, map layouts against this loader's ABI, endpoints and
//! their settings, capacities, and the digest of every other file.
//!
//! The digests are what make an apply cost what changed: two manifests
//! compared say which files, and which pieces of a long text file, differ
//! ([`FileDigest::pieces`]); the loader reads only those, and checks each
//! against its digest before using it. The manifest's own SHA-256 is the
//! bundle's hash: it covers every file through their digests.

use crate::bundle::BundleError;
use crate::bundle_file;
use policyc_bundle::digest::sha256_hex;
pub use policyc_bundle::digest::{FileDigest, Piece};
use policyc_bundle::manifest::{self as format, ManifestError};
pub use policyc_bundle::{ENDPOINTS_FILE, FORMAT_VERSION, IDENTITIES_FILE, IPCACHE_FILE, RULES_FILE};
use policyc_ebpf::abi;
use policyc_ebpf::config::EndpointConfig;
use policyc_ebpf::specialize::specialize_body;
use policyc_ebpf::Template;
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// One local endpoint of a bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleEndpoint {
    /// `<ns>/<pod>`.
    pub name: String,
    /// A file-system-safe name (`<ns>.<pod>`), chosen by the compiler: the
    /// name of its pinned links (not its policy file's, which endpoints may
    /// share).
    pub stem: String,
    /// Endpoint id on the node.
    pub id: u16,
    /// Addresses (empty for a host-network pod or a workload).
    pub addresses: Vec<std::net::IpAddr>,
    /// Its policy map's text file (several endpoints may share one).
    pub policy_file: String,
    /// Settings of its programs.
    pub config: EndpointConfig,
}

/// A checked manifest.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// The bundle directory.
    pub dir: PathBuf,
    /// `manifest.json` as read.
    pub text: String,
    /// `sha256:` and the SHA-256 of `manifest.json`: the bundle's hash
    /// (what `status` shows and what makes a re-apply a no-op).
    pub hash: String,
    /// Node it was compiled for.
    pub node: String,
    /// Hash of the input manifests it was compiled from.
    pub source_hash: String,
    /// The `from_container` and `to_container` templates' paths.
    pub programs: [String; 2],
    /// Local endpoints, by name.
    pub endpoints: Vec<BundleEndpoint>,
    /// Every other file, by path relative to the bundle.
    pub files: BTreeMap<String, FileDigest>,
}

/// The bytes of `pieces` of file `path` together; counts whose sum does not
/// fit are refused.
fn total_bytes(path: &str, pieces: &[Piece]) -> Result<usize, BundleError> {
    pieces.iter().try_fold(0usize, |sum, p| sum.checked_add(p.bytes.unwrap_or(0))).ok_or_else(|| {
        BundleError::Digest(format!("`{path}`: the byte counts of its pieces in manifest.json overflow"))
    })
}

fn io(path: &Path, error: std::io::Error) -> BundleError {
    BundleError::Io { path: path.to_path_buf(), error }
}

impl Manifest {
    /// Reads and checks `dir/manifest.json`; reads no other file, but
    /// checks that each file it lists is a regular file (before an apply
    /// takes its lock, so that none can block it there).
    pub fn read(dir: &Path) -> Result<Manifest, BundleError> {
        let path = dir.join("manifest.json");
        let bytes = bundle_file::read(&path)?;
        let text = String::from_utf8(bytes).map_err(|_| BundleError::Manifest("not UTF-8 text".into()))?;
        let manifest = Manifest::parse(dir, text)?;
        for path in manifest.files.keys() {
            bundle_file::check(&dir.join(path))?;
        }
        Ok(manifest)
    }

    /// Checks `text`, the manifest of the bundle in `dir`.
    pub fn parse(dir: &Path, text: String) -> Result<Manifest, BundleError> {
        let file = format::Manifest::from_json(&text).map_err(|e| match e {
            ManifestError::FormatVersion(version) => BundleError::FormatVersion(version),
            ManifestError::Json(e) => BundleError::Manifest(e),
        })?;
        check_layouts(&file.maps)?;
        let files = file.files;
        for (path, digest) in &files {
            check_path(path)?;
            // A file cut in pieces is cut after lines: no piece is empty
            // (an incremental apply compares the lines where pieces meet).
            let pieces = digest.pieces();
            if pieces.len() > 1 && pieces.iter().any(|p| p.lines == 0) {
                return Err(BundleError::Manifest(format!("`{path}` lists a piece of no lines")));
            }
        }
        let mut endpoints = Vec::new();
        for e in &file.endpoints {
            endpoints.push(endpoint(e, &files)?);
        }
        endpoints.sort_by(|a, b| a.name.cmp(&b.name));
        let manifest = Manifest {
            dir: dir.to_path_buf(),
            hash: format!("sha256:{}", sha256_hex(text.as_bytes())),
            text,
            node: file.node,
            source_hash: file.source_hash,
            programs: [file.programs.from, file.programs.to],
            endpoints,
            files,
        };
        for path in [IPCACHE_FILE, ENDPOINTS_FILE, RULES_FILE, IDENTITIES_FILE]
            .into_iter()
            .chain(manifest.programs.iter().map(String::as_str))
        {
            manifest.digest(path)?;
        }
        manifest.check_capacity()?;
        Ok(manifest)
    }

    /// The digest of `path`, which the manifest must list.
    pub fn digest(&self, path: &str) -> Result<&FileDigest, BundleError> {
        self.files.get(path).ok_or_else(|| BundleError::Manifest(format!("`{path}` has no digest in `files`")))
    }

    /// Lines of text file `path`.
    pub fn lines(&self, path: &str) -> Result<usize, BundleError> {
        self.digest(path)?.lines.ok_or_else(|| BundleError::Manifest(format!("`{path}` has no line count")))
    }

    /// Entries of one generation of each map, from the line counts: the
    /// counts of the files read are checked as they are read, and the
    /// others are the same files as a generation already applied.
    pub fn entries(&self) -> Result<[(&'static str, usize); 3], BundleError> {
        let mut policy = 0;
        for e in &self.endpoints {
            policy += self.lines(&e.policy_file)?;
        }
        Ok([("ipcache", self.lines(IPCACHE_FILE)?), ("endpoints", self.lines(ENDPOINTS_FILE)?), ("policy", policy)])
    }

    fn check_capacity(&self) -> Result<(), BundleError> {
        for (map, entries) in self.entries()? {
            let capacity = abi::generation_capacity(map).unwrap_or(0);
            if entries > capacity as usize {
                return Err(BundleError::Capacity { map: map.into(), entries, capacity });
            }
        }
        Ok(())
    }

    /// Reads piece `index` of text file `path` and checks it against its
    /// digest and line count.
    pub fn read_piece(&self, path: &str, index: usize) -> Result<String, BundleError> {
        let pieces = self.digest(path)?.pieces();
        let piece = pieces.get(index).ok_or_else(|| BundleError::Manifest(format!("`{path}` has no piece {index}")))?;
        let full = self.dir.join(path);
        let bytes = match piece.bytes {
            None => bundle_file::read(&full)?,
            Some(len) => {
                // Sums of counts the manifest gives: checked, and the file
                // must be as long as their total, so that the buffer below
                // is bounded by the file's real size.
                let offset = total_bytes(path, &pieces[..index])?;
                let (mut file, size) = bundle_file::open(&full)?;
                let listed = total_bytes(path, &pieces)?;
                if u64::try_from(listed).ok() != Some(size) {
                    return Err(BundleError::Digest(format!("`{path}` has {size} bytes, its pieces {listed}")));
                }
                let mut bytes = vec![0; len];
                file.seek(SeekFrom::Start(offset as u64))
                    .and_then(|_| file.read_exact(&mut bytes))
                    .map_err(|e| io(&full, e))?;
                bytes
            }
        };
        let what = if pieces.len() == 1 { format!("`{path}`") } else { format!("`{path}` (piece {index})") };
        checked_text(path, &what, piece, bytes)
    }

    /// Reads text file `path` whole, piece by piece, each checked.
    pub fn read_text(&self, path: &str) -> Result<String, BundleError> {
        let bytes = bundle_file::read(&self.dir.join(path))?;
        let digest = self.digest(path)?;
        if sha256_hex(&bytes) != digest.sha256 {
            return Err(BundleError::Digest(format!("`{path}` does not match its digest in manifest.json")));
        }
        let mut at: usize = 0;
        let mut text = String::with_capacity(bytes.len());
        for (i, piece) in digest.pieces().into_iter().enumerate() {
            let len = piece.bytes.unwrap_or(bytes.len());
            let part = at
                .checked_add(len)
                .and_then(|end| bytes.get(at..end))
                .ok_or_else(|| BundleError::Digest(format!("`{path}` is shorter than its pieces in manifest.json")))?;
            text.push_str(&checked_text(path, &format!("`{path}` (piece {i})"), &piece, part.to_vec())?);
            at += len;
        }
        if at != bytes.len() {
            return Err(BundleError::Digest(format!("`{path}` is longer than its pieces in manifest.json")));
        }
        Ok(text)
    }

    /// Reads the program templates, each checked against its digest.
    pub fn templates(&self) -> Result<Templates, BundleError> {
        let read = |path: &str| {
            let full = self.dir.join(path);
            let bytes = bundle_file::read(&full)?;
            if sha256_hex(&bytes) != self.digest(path)?.sha256 {
                return Err(BundleError::Digest(format!("`{path}` does not match its digest in manifest.json")));
            }
            Ok(bytes)
        };
        Ok(Templates { from: read(&self.programs[0])?, to: read(&self.programs[1])?, digest: self.templates_digest() })
    }

    /// What an endpoint's programs are made of besides its settings: the
    /// digests of the two templates.
    pub fn templates_digest(&self) -> String {
        let digest = |path: &str| self.files.get(path).map_or("", |d| d.sha256.as_str());
        format!("{}+{}", digest(&self.programs[0]), digest(&self.programs[1]))
    }
}

/// A piece's bytes (of file `path`, named `what` in errors) as text,
/// checked against its digest and line count.
pub fn checked_text(path: &str, what: &str, piece: &Piece, bytes: Vec<u8>) -> Result<String, BundleError> {
    if sha256_hex(&bytes) != piece.sha256 {
        return Err(BundleError::Digest(format!("{what} does not match its digest in manifest.json")));
    }
    let text = String::from_utf8(bytes).map_err(|_| BundleError::Manifest(format!("`{path}` is not UTF-8 text")))?;
    if text.lines().count() != piece.lines {
        return Err(BundleError::Digest(format!("{what} does not have {} lines", piece.lines)));
    }
    Ok(text)
}

/// The two body templates of a bundle.
#[derive(Clone, Debug)]
pub struct Templates {
    from: Vec<u8>,
    to: Vec<u8>,
    digest: String,
}

impl Templates {
    /// The body `template` making the lookups `lookups`
    /// ([`EndpointConfig::lookups`]).
    pub fn body(&self, template: Template, lookups: u8) -> Result<Vec<u8>, BundleError> {
        let bytes = match template {
            Template::FromContainer => &self.from,
            Template::ToContainer => &self.to,
        };
        specialize_body(bytes, &EndpointConfig::of_lookups(lookups))
            .map_err(|e| BundleError::Program(format!("`{}`: {e}", template.program_name())))
    }

    /// What the bodies are made of: [`Manifest::templates_digest`].
    pub fn digest(&self) -> &str {
        &self.digest
    }
}

/// A manifest naming `../x` must not read outside the bundle.
fn check_path(relative: &str) -> Result<(), BundleError> {
    if relative.split('/').any(|part| part == ".." || part.is_empty()) || relative.starts_with('/') {
        return Err(BundleError::Manifest(format!("path `{relative}` leaves the bundle")));
    }
    Ok(())
}

fn check_layouts(maps: &[format::MapSpec]) -> Result<(), BundleError> {
    for layout in abi::MAPS {
        let m = maps
            .iter()
            .find(|m| m.name == layout.name)
            .ok_or_else(|| BundleError::MapLayout(format!("map `{}` is missing", layout.name)))?;
        let (want, got) =
            ((layout.key_size, layout.value_size, layout.max_entries), (m.key_size, m.value_size, m.max_entries));
        if want != got {
            return Err(BundleError::MapLayout(format!(
                "map `{}` has key/value size and capacity {got:?}, this loader's datapath uses {want:?}",
                layout.name
            )));
        }
    }
    Ok(())
}

fn endpoint(e: &format::EndpointSpec, files: &BTreeMap<String, FileDigest>) -> Result<BundleEndpoint, BundleError> {
    let bad = |what: String| BundleError::Manifest(format!("endpoint `{}`: {what}", e.name));
    if e.config.endpoint_id != u32::from(e.id) {
        return Err(bad(format!("settings name endpoint id {}, not {}", e.config.endpoint_id, e.id)));
    }
    // The stem names pinned links: a file name bpffs takes.
    policyc_bundle::stem::check_stem(&e.stem).map_err(|error| bad(error.to_string()))?;
    if !files.contains_key(&e.policy_file) {
        return Err(bad(format!("policy file `{}` has no digest in `files`", e.policy_file)));
    }
    let addresses = e
        .addresses
        .iter()
        .map(|a| a.parse().map_err(|_| bad(format!("bad address `{a}`"))))
        .collect::<Result<_, _>>()?;
    Ok(BundleEndpoint {
        name: e.name.clone(),
        stem: e.stem.clone(),
        id: e.id,
        addresses,
        policy_file: e.policy_file.clone(),
        config: e.config,
    })
}
