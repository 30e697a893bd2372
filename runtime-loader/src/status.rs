//! `status`: what this node runs.

use crate::agent::binding::ComputedIdentity;
use crate::error::LoaderError;
use crate::kernel::aya::AyaKernel;
use crate::kernel::Kernel;
use crate::maps;
use crate::paths::Paths;
use crate::record::Record;
use std::collections::BTreeMap;

/// The node's state as the loader sees it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Status {
    /// The last apply's record (none: nothing applied).
    pub record: Option<Record>,
    /// Active generation and apply serial, if the maps exist.
    pub generation: Option<(u32, u32)>,
    /// Entries per generation of the policy-bearing maps.
    pub fill: BTreeMap<String, [usize; 2]>,
    /// Pinned links (tcx links, or the programs of tc filters) present, by
    /// file name.
    pub links: Vec<String>,
    /// Identities the node agent computed (label sets the bundle does not
    /// know: not reviewed), from its `agent.json`.
    pub computed: Vec<ComputedIdentity>,
    /// The OCI artifact the bundle in force was pulled from (`run --bundle
    /// oci://REF`), if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact: Option<AppliedArtifact>,
}

/// The identities the agent computed, as its `agent.json` lists them
/// (none when no agent runs or it wrote none).
fn computed_identities(paths: &Paths) -> Vec<ComputedIdentity> {
    #[derive(serde::Deserialize)]
    struct AgentFile {
        #[serde(default)]
        computed: Vec<ComputedIdentity>,
    }
    let Ok(text) = std::fs::read_to_string(paths.state.join("agent.json")) else { return Vec::new() };
    serde_json::from_str::<AgentFile>(&text).map(|f| f.computed).unwrap_or_default()
}

/// The artifact a bundle in force was pulled from.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AppliedArtifact {
    /// The reference pulled (`oci://HOST/REPOSITORY:TAG`).
    pub reference: String,
    /// The manifest digest it resolved to.
    pub digest: String,
}

/// `STATE/artifact.json`: the artifact, and the record's bundle hash it
/// was applied with; a later apply of anything else makes it stale.
#[derive(serde::Serialize, serde::Deserialize)]
struct ArtifactFile {
    artifact: AppliedArtifact,
    bundle_hash: String,
}

fn artifact_file(paths: &Paths) -> std::path::PathBuf {
    paths.state.join("artifact.json")
}

/// Records that the apply whose record has `bundle_hash` put `artifact`'s
/// bundle in force (`None`: a bundle from no artifact).
pub fn write_applied_artifact(
    paths: &Paths,
    artifact: Option<&AppliedArtifact>,
    bundle_hash: &str,
) -> std::io::Result<()> {
    let path = artifact_file(paths);
    let Some(artifact) = artifact else {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    };
    let file = ArtifactFile { artifact: artifact.clone(), bundle_hash: bundle_hash.to_string() };
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&file).unwrap_or_default())?;
    std::fs::rename(&tmp, &path)
}

/// The artifact of the bundle in force, if the record is the one it was
/// applied with.
fn applied_artifact(paths: &Paths, record: Option<&Record>) -> Option<AppliedArtifact> {
    let file: ArtifactFile = serde_json::from_slice(&std::fs::read(artifact_file(paths)).ok()?).ok()?;
    (record?.bundle_hash == file.bundle_hash).then_some(file.artifact)
}

/// Reads the status.
pub fn status(paths: &Paths) -> Result<Status, LoaderError> {
    let record = Record::read(paths)?;
    let kernel = AyaKernel::new(paths);
    let has_maps = kernel.is_pinned(&paths.map("state"));
    let generation = if has_maps {
        let s = kernel.read_state()?;
        Some((s.generation, s.serial))
    } else {
        None
    };
    let fill = if has_maps {
        maps::fill_levels(&kernel)?.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    } else {
        BTreeMap::new()
    };
    let mut links: Vec<String> = std::fs::read_dir(paths.links())
        .map(|dir| dir.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    links.sort();
    let artifact = applied_artifact(paths, record.as_ref());
    Ok(Status { record, generation, fill, links, computed: computed_identities(paths), artifact })
}

impl Status {
    /// Human rendering.
    pub fn render(&self) -> String {
        let mut out = String::new();
        match &self.record {
            None => out.push_str("no bundle applied\n"),
            Some(r) => {
                out.push_str(&format!("bundle {} (node {}, source {})\n", r.bundle_hash, r.node, r.source_hash));
                if let Some(a) = &self.artifact {
                    out.push_str(&format!("artifact {} ({})\n", a.digest, a.reference));
                }
                for (name, e) in &r.endpoints {
                    out.push_str(&format!(
                        "  endpoint {name} id {} on {} (lookups {:#x})\n",
                        e.id,
                        e.interface,
                        e.config.lookups()
                    ));
                }
                for what in &r.unfinished {
                    out.push_str(&format!("  unfinished after the switch: {what}\n"));
                }
            }
        }
        if let Some((generation, serial)) = self.generation {
            out.push_str(&format!("active generation {generation} (apply #{serial})\n"));
        }
        for (map, [g0, g1]) in &self.fill {
            out.push_str(&format!("map {map}: {g0} entries in generation 0, {g1} in generation 1\n"));
        }
        out.push_str(&format!("{} pinned link(s)\n", self.links.len()));
        for c in &self.computed {
            out.push_str(&format!(
                "identity {} computed on the node, not in the reviewed bundle: labels `{}`, pods {}\n",
                c.identity,
                c.labels,
                c.pods.join(", ")
            ));
        }
        out
    }
}
