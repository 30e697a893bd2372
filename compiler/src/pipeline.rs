//! The shared front half of every command: read, check, lower.

use crate::diag::{has_errors, Diagnostic};
use crate::front::{source::read_paths, Input};
use crate::lower::{lower, Lowered};
use crate::semantics::Semantics;
use std::path::PathBuf;

/// Inputs read, checked and lowered.
#[derive(Debug)]
pub struct Loaded {
    /// What was read (sources, objects, skipped kinds).
    pub input: Input,
    /// The cluster model.
    pub lowered: Lowered,
    /// Every diagnostic, sorted by file, document and position.
    pub diagnostics: Vec<Diagnostic>,
}

impl Loaded {
    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        has_errors(&self.diagnostics)
    }
}

/// Reads `paths` (files, directories, `-`), checks and lowers them.
pub fn load(paths: &[PathBuf]) -> Loaded {
    load_input(read_paths(paths))
}

/// Checks and lowers what was read (from files, or from Git), with the
/// semantics in force ([`crate::semantics::semantics`]).
pub fn load_input(input: Input) -> Loaded {
    load_input_with(input, crate::semantics::semantics())
}

/// Checks and lowers what was read, with `semantics`.
pub fn load_input_with(mut input: Input, semantics: Semantics) -> Loaded {
    let mut diagnostics = std::mem::take(&mut input.diagnostics);
    let lowered = lower(&input, semantics, &mut diagnostics);
    diagnostics.sort();
    diagnostics.dedup();
    Loaded { input, lowered, diagnostics }
}
