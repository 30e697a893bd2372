//! The checks of a whole desired state that no single line or file can
//! make: run by `apply` and `apply --dry-run` alike, before the lock is
//! taken and before anything is written.

use crate::bundle::BundleError;
use crate::desired::DesiredState;
use policyc_bundle::stem::check_stem;

/// Checks `desired`: every endpoint's stem names pins bpffs takes.
pub fn desired(desired: &DesiredState) -> Result<(), BundleError> {
    for e in desired.endpoints() {
        check_stem(&e.stem).map_err(|error| BundleError::Manifest(format!("endpoint `{}`: {error}", e.name)))?;
    }
    Ok(())
}
