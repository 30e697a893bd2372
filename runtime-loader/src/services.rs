//! The service tables of a bundle (`services.txt`, `backends.txt`,
//! `revnat.txt`, [`policyc_bundle::services`]): checked with the rest of
//! the bundle before anything is applied, so a bad one refuses the apply
//! as a bad policy file does.
//!
//! A bundle has the three files or none (an input without Services). No
//! datapath program reads them yet (issue 15: the translation in BPF is a
//! later step), so they are checked and not loaded into maps. They are
//! read whole on every apply that has them; their size is the node's
//! Services, not the change.

use crate::bundle::BundleError;
use crate::manifest::Manifest;
use policyc_bundle::backends::BackendLine;
use policyc_bundle::revnat::RevNatLine;
use policyc_bundle::services::{check_references, ServiceLine};
use policyc_bundle::{BACKENDS_FILE, REVNAT_FILE, SERVICES_FILE};

/// Line counts of a bundle's service tables.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceCounts {
    /// `services.txt` lines.
    pub services: usize,
    /// `backends.txt` lines.
    pub backends: usize,
    /// `revnat.txt` lines.
    pub revnat: usize,
}

/// Reads and checks the service tables `manifest` lists: every line, each
/// file's order, and the references between them. `None` when it lists
/// none.
pub fn check(manifest: &Manifest) -> Result<Option<ServiceCounts>, BundleError> {
    let files = [SERVICES_FILE, BACKENDS_FILE, REVNAT_FILE];
    let listed: Vec<&str> = files.iter().copied().filter(|f| manifest.files.contains_key(*f)).collect();
    if listed.is_empty() {
        return Ok(None);
    }
    if listed.len() != files.len() {
        let missing: Vec<String> = files.iter().filter(|f| !listed.contains(f)).map(|f| format!("`{f}`")).collect();
        return Err(BundleError::Manifest(format!(
            "the bundle has service tables but not {}: it has all three or none",
            missing.join(", ")
        )));
    }
    let entry = BundleError::Entry;
    let services_text = manifest.read_text(SERVICES_FILE)?;
    let services = ServiceLine::parse_all(SERVICES_FILE, 1, &services_text).map_err(entry)?;
    let backends = BackendLine::parse_all(BACKENDS_FILE, 1, &manifest.read_text(BACKENDS_FILE)?).map_err(entry)?;
    let revnat = RevNatLine::parse_all(REVNAT_FILE, 1, &manifest.read_text(REVNAT_FILE)?).map_err(entry)?;
    check_references(&services, &backends, &revnat)
        .map_err(|e| BundleError::Manifest(format!("`{SERVICES_FILE}`: {e}")))?;
    Ok(Some(ServiceCounts { services: services.len(), backends: backends.len(), revnat: revnat.len() }))
}
