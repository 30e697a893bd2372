//! The artifact's shape: an OCI image manifest of policyc's artifact type,
//! whose config is the [`Index`] of every node's files and whose layers are
//! the distinct pieces; and how it is laid out from a directory of bundles.

use crate::error::OciError;
use policyc_bundle::digest::sha256_hex;
use policyc_bundle::manifest::Manifest;
use policyc_bundle::MANIFEST_FILE;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// The manifest's `artifactType`: policyc's bundles, this layout.
pub const ARTIFACT_TYPE: &str = "application/vnd.policyc.bundle.v1";
/// Media type of the config blob, the [`Index`].
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.policyc.bundle.index.v1+json";
/// Media type of every layer: a file of a bundle, or a piece of one.
pub const PIECE_MEDIA_TYPE: &str = "application/vnd.policyc.bundle.piece.v1";
/// The OCI image manifest's media type.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// Version of the [`Index`] layout.
pub const INDEX_VERSION: u32 = 1;

/// The config blob: for each node, each file of its bundle (a path
/// relative to the bundle) and the digests of its pieces in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Index {
    /// [`INDEX_VERSION`].
    pub format_version: u32,
    /// Node → file → piece digests (`sha256:HEX`).
    pub nodes: BTreeMap<String, BTreeMap<String, Vec<String>>>,
}

/// An OCI content descriptor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the content.
    pub media_type: String,
    /// `sha256:HEX` of the content.
    pub digest: String,
    /// Bytes.
    pub size: u64,
}

/// The OCI image manifest of the artifact (the fields policyc writes; a
/// pulled manifest may carry more, which are ignored).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    /// Always 2.
    pub schema_version: u32,
    /// [`MANIFEST_MEDIA_TYPE`].
    pub media_type: String,
    /// [`ARTIFACT_TYPE`].
    pub artifact_type: String,
    /// The [`Index`].
    pub config: Descriptor,
    /// The pieces, sorted by digest.
    pub layers: Vec<Descriptor>,
}

/// Where a layer's bytes are, for pushing: a range of a file.
#[derive(Clone, Debug)]
pub struct Source {
    /// The file.
    pub path: PathBuf,
    /// First byte.
    pub offset: u64,
    /// Bytes.
    pub size: u64,
}

/// An artifact laid out from bundles, ready to push.
#[derive(Clone, Debug)]
pub struct Artifact {
    /// The serialized manifest.
    pub manifest: Vec<u8>,
    /// Its digest: what the registry will report and `publish` prints.
    pub digest: String,
    /// The serialized [`Index`].
    pub config: Vec<u8>,
    /// Each distinct piece by digest, and where its bytes are.
    pub layers: BTreeMap<String, Source>,
}

/// `sha256:HEX` of `bytes`.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(bytes))
}

/// Whether `path` is a plain relative path (no `..`, no root): the only
/// kind a bundle's files have, and the only kind a pull writes.
pub fn is_plain_relative(path: &str) -> bool {
    !path.is_empty() && Path::new(path).components().all(|c| matches!(c, Component::Normal(_)))
}

/// Lays out the bundles under `out_dir` (a bundle, or a directory of one
/// bundle per node, as `policyc compile --out` writes them). Every file is
/// checked against the digest its `manifest.json` lists, so a bundle edited
/// by hand is refused here rather than on the node.
pub fn layout(out_dir: &Path) -> Result<Artifact, OciError> {
    let mut bundle_dirs = Vec::new();
    if out_dir.join(MANIFEST_FILE).is_file() {
        bundle_dirs.push(out_dir.to_path_buf());
    } else {
        let entries = std::fs::read_dir(out_dir)
            .map_err(|e| OciError::Bundles(format!("cannot read `{}`: {e}", out_dir.display())))?;
        for entry in entries {
            let path =
                entry.map_err(|e| OciError::Bundles(format!("cannot read `{}`: {e}", out_dir.display())))?.path();
            if path.join(MANIFEST_FILE).is_file() {
                bundle_dirs.push(path);
            }
        }
        bundle_dirs.sort();
    }
    if bundle_dirs.is_empty() {
        return Err(OciError::Bundles(format!(
            "`{}` holds no bundle (no `{MANIFEST_FILE}` in it or in a directory under it); run `policyc compile --out` first",
            out_dir.display()
        )));
    }
    let mut index = Index { format_version: INDEX_VERSION, nodes: BTreeMap::new() };
    let mut layers = BTreeMap::new();
    for dir in bundle_dirs {
        let (node, files) = lay_out_bundle(&dir, &mut layers)?;
        if index.nodes.insert(node.clone(), files).is_some() {
            return Err(OciError::Bundles(format!(
                "two bundles under `{}` are for node `{node}` (the second: `{}`)",
                out_dir.display(),
                dir.display()
            )));
        }
    }
    let config = serde_json::to_vec(&index).map_err(|e| OciError::Bundles(e.to_string()))?;
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: MANIFEST_MEDIA_TYPE.into(),
        artifact_type: ARTIFACT_TYPE.into(),
        config: Descriptor {
            media_type: INDEX_MEDIA_TYPE.into(),
            digest: digest_of(&config),
            size: config.len() as u64,
        },
        layers: layers
            .iter()
            .map(|(digest, source): (&String, &Source)| Descriptor {
                media_type: PIECE_MEDIA_TYPE.into(),
                digest: digest.clone(),
                size: source.size,
            })
            .collect(),
    };
    let manifest = serde_json::to_vec(&manifest).map_err(|e| OciError::Bundles(e.to_string()))?;
    Ok(Artifact { digest: digest_of(&manifest), manifest, config, layers })
}

/// One bundle: its node, and its files' pieces (added to `layers`).
fn lay_out_bundle(
    dir: &Path,
    layers: &mut BTreeMap<String, Source>,
) -> Result<(String, BTreeMap<String, Vec<String>>), OciError> {
    let manifest_path = dir.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&manifest_path)
        .map_err(|e| OciError::Bundles(format!("cannot read `{}`: {e}", manifest_path.display())))?;
    let manifest =
        Manifest::from_json(&text).map_err(|e| OciError::Bundles(format!("`{}`: {e}", manifest_path.display())))?;
    let mut files = BTreeMap::new();
    let digest = digest_of(text.as_bytes());
    layers.entry(digest.clone()).or_insert(Source { path: manifest_path, offset: 0, size: text.len() as u64 });
    files.insert(MANIFEST_FILE.to_string(), vec![digest]);
    for (name, expected) in &manifest.files {
        if !is_plain_relative(name) || name == MANIFEST_FILE {
            return Err(OciError::Bundles(format!(
                "`{}` lists the file `{name}`, which a bundle cannot hold",
                dir.display()
            )));
        }
        let path = dir.join(name);
        let bytes =
            std::fs::read(&path).map_err(|e| OciError::Bundles(format!("cannot read `{}`: {e}", path.display())))?;
        if sha256_hex(&bytes) != expected.sha256 {
            return Err(OciError::Bundles(format!(
                "`{}` does not match its digest in `{}`: edit bundles only by compiling",
                path.display(),
                dir.join(MANIFEST_FILE).display()
            )));
        }
        let pieces = expected.pieces();
        let mut digests = Vec::new();
        let mut offset = 0usize;
        for piece in &pieces {
            // A file of one piece states no byte count: the piece is the file.
            let size = if pieces.len() == 1 { bytes.len() } else { piece.bytes.unwrap_or(usize::MAX) };
            let end = offset.checked_add(size).filter(|end| *end <= bytes.len()).ok_or_else(|| {
                OciError::Bundles(format!("the pieces `manifest.json` lists for `{}` overrun the file", path.display()))
            })?;
            let digest = digest_of(&bytes[offset..end]);
            if digest.strip_prefix("sha256:") != Some(piece.sha256.as_str()) {
                return Err(OciError::Bundles(format!(
                    "a piece of `{}` does not match its digest in `manifest.json`",
                    path.display()
                )));
            }
            layers.entry(digest.clone()).or_insert(Source {
                path: path.clone(),
                offset: offset as u64,
                size: size as u64,
            });
            digests.push(digest);
            offset = end;
        }
        if offset != bytes.len() {
            return Err(OciError::Bundles(format!("the pieces of `{}` do not cover the file", path.display())));
        }
        files.insert(name.clone(), digests);
    }
    Ok((manifest.node, files))
}

/// Reads a layer's bytes from where [`layout`] found them, checking them
/// again (a file rewritten since is refused, not pushed).
pub fn read_layer(digest: &str, source: &Source) -> Result<Vec<u8>, OciError> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(&source.path)
        .map_err(|e| OciError::Bundles(format!("cannot read `{}`: {e}", source.path.display())))?;
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(source.offset))
        .and_then(|_| file.take(source.size).read_to_end(&mut bytes))
        .map_err(|e| OciError::Bundles(format!("cannot read `{}`: {e}", source.path.display())))?;
    if digest_of(&bytes) != digest {
        return Err(OciError::Bundles(format!("`{}` changed while it was published", source.path.display())));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use policyc_bundle::digest::{text_digest, Digests};
    use policyc_bundle::manifest::ProgramFiles;

    /// A bundle of node `node` in `dir` whose only file is a long map
    /// file (cut into pieces by its manifest) of `lines`.
    fn write_bundle(dir: &Path, node: &str, lines: &[String]) {
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::create_dir_all(dir.join("maps")).unwrap();
        std::fs::write(dir.join("maps/ipcache.txt"), &text).unwrap();
        let manifest = Manifest {
            format_version: policyc_bundle::FORMAT_VERSION,
            node: node.into(),
            source_hash: "0".repeat(64),
            maps: Vec::new(),
            programs: ProgramFiles { from: String::new(), to: String::new() },
            endpoints: Vec::new(),
            tables: Vec::new(),
            files: [("maps/ipcache.txt".to_string(), text_digest(&text, Digests::Sha256))].into(),
        };
        std::fs::write(dir.join(MANIFEST_FILE), manifest.to_json()).unwrap();
    }

    #[test]
    fn a_long_file_is_a_layer_per_piece_and_one_changed_line_changes_one_piece() {
        let root = std::env::temp_dir().join(format!("policyc-oc-layout-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let mut lines: Vec<String> =
            (0..20_000).map(|i| format!("10.{}.{}.0/24 {} cluster", i / 256, i % 256, 256 + i)).collect();
        write_bundle(&root.join("out/node-a"), "node-a", &lines);
        let before = layout(&root.join("out")).unwrap();
        let index: Index = serde_json::from_slice(&before.config).unwrap();
        let pieces = &index.nodes["node-a"]["maps/ipcache.txt"];
        assert!(pieces.len() > 5, "20 000 lines are cut into pieces: {}", pieces.len());
        // The pieces put together are the file.
        let whole: Vec<u8> = pieces.iter().flat_map(|d| read_layer(d, &before.layers[d]).unwrap()).collect();
        assert_eq!(whole, std::fs::read(root.join("out/node-a/maps/ipcache.txt")).unwrap());

        // Determinism: the same bundle elsewhere, the same digest.
        write_bundle(&root.join("again/node-a"), "node-a", &lines);
        assert_eq!(layout(&root.join("again")).unwrap().digest, before.digest);

        lines[10_000] = "10.39.16.0/24 99999 cluster".into();
        write_bundle(&root.join("out/node-a"), "node-a", &lines);
        let after = layout(&root.join("out")).unwrap();
        assert_ne!(after.digest, before.digest);
        let new: Vec<&String> = after.layers.keys().filter(|d| !before.layers.contains_key(*d)).collect();
        // The changed piece and manifest.json, which lists its digest.
        assert_eq!(new.len(), 2, "{new:?}");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn only_plain_relative_paths_are_bundle_files() {
        assert!(is_plain_relative("maps/policy/256.txt"));
        for bad in ["", "/etc/passwd", "../x", "maps/../../x", "./x"] {
            assert!(!is_plain_relative(bad), "{bad}");
        }
    }
}
