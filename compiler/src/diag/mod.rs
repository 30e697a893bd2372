//! Diagnostics: one value type, collected (never stop at the first), and
//! rendered in one place ([`render`]) as human text, JSON, SARIF or GitHub
//! workflow commands.

pub mod codes;
pub mod render;

use crate::front::yaml::Pos;
pub use codes::Code;

/// Error or warning. Errors make `lint` exit 1 and `compile` write nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// A fault: nothing is emitted.
    Error,
    /// Worth a look; compilation goes on.
    Warning,
}

impl Severity {
    /// `error` or `warning`.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// Where in the input a diagnostic points.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    /// File path as given on the command line (`-` for stdin).
    pub file: Option<String>,
    /// Index of the YAML document in the file, from 0.
    pub document: Option<usize>,
    /// The object: `Kind namespace/name` or `Kind name`.
    pub object: Option<String>,
    /// Field path inside the object (`spec.ingress[0].ports[1].endPort`).
    pub path: Option<String>,
    /// Line and column, where the parser gives them.
    pub pos: Option<Pos>,
}

/// One finding about the input.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Diagnostic {
    /// Where it points (first, so that sorting groups by file).
    pub location: Location,
    /// Stable code.
    pub code: Code,
    /// Error or warning (from the code's letter).
    pub severity: Severity,
    /// Lower-case message, no final period, user input in backticks.
    pub message: String,
    /// A hint: how to fix it, or "did you mean".
    pub help: Option<String>,
}

impl Diagnostic {
    /// A diagnostic with `code` (its severity follows the code's letter).
    pub fn new(code: Code, location: Location, message: impl Into<String>) -> Self {
        let severity = if code.id.starts_with('W') { Severity::Warning } else { Severity::Error };
        Diagnostic { location, code, severity, message: message.into(), help: None }
    }

    /// Adds a help line.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Whether this is an error.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Whether any diagnostic is an error.
pub fn has_errors(diags: &[Diagnostic]) -> bool {
    diags.iter().any(Diagnostic::is_error)
}

/// The closest of `candidates` to `word` (edit distance at most 2 or a
/// third of the word), for "did you mean" help lines.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.len() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (edit_distance(&word.to_ascii_lowercase(), &c.to_ascii_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names() {
        assert_eq!(did_you_mean("podSelecter", ["podSelector", "namespaceSelector"]), Some("podSelector"));
        assert_eq!(did_you_mean("endport", ["port", "endPort", "protocol"]), Some("endPort"));
        assert_eq!(did_you_mean("zzzzzz", ["port", "endPort"]), None);
    }
}
