//! The error of a map file line that does not parse.

use std::fmt;

/// A line that does not parse: file, 1-based line, what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    /// File relative to the bundle.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

impl std::error::Error for LineError {}
