//! `status`: what this node runs.

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
    Ok(Status { record, generation, fill, links })
}

impl Status {
    /// Human rendering.
    pub fn render(&self) -> String {
        let mut out = String::new();
        match &self.record {
            None => out.push_str("no bundle applied\n"),
            Some(r) => {
                out.push_str(&format!("bundle {} (node {}, source {})\n", r.bundle_hash, r.node, r.source_hash));
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
        out
    }
}
