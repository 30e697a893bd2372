//! Why a compile produced no bundle: one error type, a variant per cause,
//! each wrapping what a caller needs to report or act on it.

use crate::diag::Diagnostic;
use crate::emit::EmitError;
use crate::lint::LintOptionsError;
use std::fmt;
use std::path::PathBuf;

/// Why [`super::compile`] (or one of its steps) failed.
#[derive(Clone, Debug)]
pub enum CompileError {
    /// The lint options are unusable (nothing was read).
    Options(LintOptionsError),
    /// The input has errors, or warnings under `deny_warnings`.
    Rejected(RejectedError),
    /// The previous bundle's identity table cannot be read.
    Previous(PreviousError),
    /// The output directory cannot be prepared or the bundles moved into it.
    Output(OutputError),
    /// A bundle cannot be emitted.
    Emit(Box<EmitFailure>),
}

/// The diagnostics that make a compile fail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RejectedError {
    /// The errors (and, under `deny_warnings`, the warnings), sorted.
    pub diagnostics: Vec<Diagnostic>,
}

/// The previous identity table that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreviousError {
    /// The table's path (`<previous>/maps/identities.txt`).
    pub path: PathBuf,
    /// Why it cannot be used.
    pub message: String,
}

/// A failure to prepare the output directory or to move bundles into it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputError {
    /// What went wrong, naming the directory.
    pub message: String,
}

impl OutputError {
    /// An output error saying `message`.
    pub fn new(message: String) -> OutputError {
        OutputError { message }
    }
}

/// An emission failure, with its diagnostic when it is about the input (a
/// policy map over capacity, an unknown node).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmitFailure {
    /// What emission reported.
    pub error: EmitError,
    /// The diagnostic that explains it in terms of the input.
    pub diagnostic: Option<Diagnostic>,
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompileError::Options(e) => e.fmt(f),
            CompileError::Rejected(e) => write!(f, "the input has {} fatal diagnostic(s)", e.diagnostics.len()),
            CompileError::Previous(e) => {
                write!(f, "cannot read the previous identities `{}`: {}", e.path.display(), e.message)
            }
            CompileError::Output(e) => f.write_str(&e.message),
            CompileError::Emit(e) => match &e.diagnostic {
                Some(d) => f.write_str(&d.message),
                None => e.error.fmt(f),
            },
        }
    }
}

impl std::error::Error for CompileError {}
