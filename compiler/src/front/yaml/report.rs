//! What the reader found, as diagnostics naming the file.

use super::{Finding, SyntaxError};
use crate::diag::{codes, Diagnostic, Location};

/// Diagnostics for a stream named `file`: its findings, then what stopped
/// its reading.
pub fn diagnostics(file: &str, error: Option<SyntaxError>, findings: Vec<Finding>) -> Vec<Diagnostic> {
    let location = |document, pos| Location {
        file: Some(file.to_string()),
        document: Some(document),
        object: None,
        path: None,
        pos: Some(pos),
    };
    let mut diagnostics: Vec<Diagnostic> =
        findings.into_iter().map(|f| Diagnostic::new(f.code, location(f.document, f.pos), f.message)).collect();
    if let Some(e) = error {
        let message = if e.code == codes::YAML_SYNTAX { format!("invalid YAML: {}", e.message) } else { e.message };
        diagnostics.push(
            Diagnostic::new(e.code, location(e.documents_before, e.pos), message)
                .with_help("the documents after this point in the file were not read"),
        );
    }
    diagnostics
}
