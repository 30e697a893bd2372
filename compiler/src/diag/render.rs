//! Rendering of diagnostics: the one place that turns them into text.

use super::{codes, Diagnostic, Severity};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write;

/// Output formats of diagnostics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Text for a terminal, with the offending source line.
    Human,
    /// A JSON array of diagnostics.
    Json,
    /// SARIF 2.1.0, for code-scanning tools.
    Sarif,
    /// GitHub Actions workflow commands (`::error file=...::`).
    Github,
}

/// Source texts by file name, for snippets in human output.
pub type Sources = BTreeMap<String, String>;

/// Renders `diags` in `format`.
pub fn render(diags: &[Diagnostic], format: Format, sources: &Sources) -> String {
    match format {
        Format::Human => human(diags, sources),
        Format::Json => {
            serde_json::to_string_pretty(&Value::Array(diags.iter().map(to_json).collect()))
                .expect("JSON values always serialize")
                + "\n"
        }
        Format::Sarif => serde_json::to_string_pretty(&sarif(diags)).expect("JSON values always serialize") + "\n",
        Format::Github => github(diags),
    }
}

/// One diagnostic as human text, with a snippet when the source is known.
pub fn human(diags: &[Diagnostic], sources: &Sources) -> String {
    let mut out = String::new();
    let mut lines = LineIndex::new(sources);
    for d in diags {
        let _ = writeln!(out, "{}[{}]: {}", d.severity.name(), d.code.id, d.message);
        let loc = &d.location;
        let mut place = loc.file.clone().unwrap_or_else(|| "<input>".into());
        if let Some(pos) = loc.pos {
            let _ = write!(place, ":{}:{}", pos.line, pos.col);
        }
        let mut context = Vec::new();
        if let Some(doc) = loc.document {
            context.push(format!("document {}", doc + 1));
        }
        if let Some(object) = &loc.object {
            context.push(object.clone());
        }
        if let Some(path) = &loc.path {
            context.push(path.clone());
        }
        if context.is_empty() {
            let _ = writeln!(out, "  --> {place}");
        } else {
            let _ = writeln!(out, "  --> {place} ({})", context.join(", "));
        }
        let line_text = loc.file.as_ref().zip(loc.pos).and_then(|(f, pos)| Some((pos, lines.line(f, pos.line)?)));
        if let Some((pos, text)) = line_text {
            let number = pos.line.to_string();
            let gutter = " ".repeat(number.len());
            let _ = writeln!(out, "{gutter} |");
            let _ = writeln!(out, "{number} | {text}");
            let _ = writeln!(out, "{gutter} | {}^", " ".repeat(pos.col.saturating_sub(1) as usize));
        }
        if let Some(help) = &d.help {
            let _ = writeln!(out, "  = help: {help}");
        }
        out.push('\n');
    }
    let errors = diags.iter().filter(|d| d.is_error()).count();
    let warnings = diags.len() - errors;
    if !diags.is_empty() {
        let _ = writeln!(out, "{errors} error(s), {warnings} warning(s)");
    }
    out
}

/// The lines of each source, split on first use: looking a line up by
/// walking the text from its start made rendering quadratic in the number
/// of diagnostics of a file.
struct LineIndex<'s> {
    sources: &'s Sources,
    lines: BTreeMap<&'s str, Vec<&'s str>>,
}

impl<'s> LineIndex<'s> {
    fn new(sources: &'s Sources) -> Self {
        LineIndex { sources, lines: BTreeMap::new() }
    }

    /// Line `number` (from 1) of `file`, as `str::lines` gives it.
    fn line(&mut self, file: &str, number: u32) -> Option<&'s str> {
        let (name, text) = self.sources.get_key_value(file)?;
        let lines = self.lines.entry(name.as_str()).or_insert_with(|| text.lines().collect());
        lines.get(number.checked_sub(1)? as usize).copied()
    }
}

fn to_json(d: &Diagnostic) -> Value {
    let loc = &d.location;
    json!({
        "code": d.code.id,
        "severity": d.severity.name(),
        "message": d.message,
        "file": loc.file,
        "document": loc.document,
        "object": loc.object,
        "path": loc.path,
        "line": loc.pos.map(|p| p.line),
        "column": loc.pos.map(|p| p.col),
        "help": d.help,
    })
}

/// SARIF 2.1.0, shaped for GitHub code scanning as well: every rule has
/// the short and full description and help text it shows; every result
/// has a `ruleId`, a `ruleIndex` and one location with a relative (or
/// `file:`) URI and a 1-based `startLine`. GitHub rejects a whole upload
/// if one result has no location, so diagnostics without a file (a node
/// named on the command line that the input lacks) are tool execution
/// notifications of the run's invocation instead of results.
fn sarif(diags: &[Diagnostic]) -> Value {
    let rules: Vec<Value> = codes::ALL
        .iter()
        .map(|c| {
            let level = if c.id.starts_with('W') { "warning" } else { "error" };
            json!({
                "id": c.id,
                "shortDescription": {"text": c.summary},
                "fullDescription": {"text": full_description(c)},
                "help": {"text": rule_help(c)},
                "defaultConfiguration": {"level": level},
            })
        })
        .collect();
    // -1 is SARIF's "not among the rules" (never the case for a catalogued code).
    let rule_index = |d: &Diagnostic| codes::ALL.iter().position(|c| c.id == d.code.id).map_or(-1, |i| i as i64);
    let level = |d: &Diagnostic| match d.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let mut results = Vec::new();
    let mut notifications = Vec::new();
    for d in diags {
        let message = json!({"text": sarif_message(d)});
        let Some(file) = &d.location.file else {
            notifications.push(json!({
                "associatedRule": {"id": d.code.id, "index": rule_index(d)},
                "level": level(d),
                "message": message,
            }));
            continue;
        };
        // A diagnostic about a whole file (one that cannot be read) points
        // at its first line: code scanning needs a line.
        let pos = d.location.pos.unwrap_or(crate::front::yaml::Pos { line: 1, col: 1 });
        results.push(json!({
            "ruleId": d.code.id,
            "ruleIndex": rule_index(d),
            "level": level(d),
            "message": message,
            "locations": [{
                "physicalLocation": {
                    "artifactLocation": {"uri": artifact_uri(file)},
                    "region": {"startLine": pos.line, "startColumn": pos.col},
                }
            }],
        }));
    }
    let mut run = json!({
        "tool": {"driver": {
            "name": "policyc",
            "version": env!("CARGO_PKG_VERSION"),
            "rules": rules,
        }},
        // Columns count characters, as the YAML reader does.
        "columnKind": "unicodeCodePoints",
        "results": results,
    });
    if !notifications.is_empty() {
        let failed = diags.iter().any(|d| d.location.file.is_none() && d.is_error());
        run["invocations"] = json!([{
            "executionSuccessful": !failed,
            "toolExecutionNotifications": notifications,
        }]);
    }
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [run],
    })
}

/// A result's message: the diagnostic's, with its object, field path and
/// help, which SARIF has no other place for.
fn sarif_message(d: &Diagnostic) -> String {
    let mut message = d.message.clone();
    if let Some(object) = &d.location.object {
        let path = d.location.path.as_ref().map(|p| format!(" {p}")).unwrap_or_default();
        let _ = write!(message, " ({object}{path})");
    }
    if let Some(help) = &d.help {
        let _ = write!(message, "; help: {help}");
    }
    message
}

/// A rule's full description: its summary and what it does to a run.
fn full_description(code: &codes::Code) -> String {
    if code.id.starts_with('W') {
        format!("{}. A warning: policyc still compiles the input.", capitalized(code.summary))
    } else {
        format!("{}. An error: policyc compiles nothing while it remains.", capitalized(code.summary))
    }
}

/// A rule's help text: how to fix or silence what it reports.
fn rule_help(code: &codes::Code) -> String {
    if code.id.starts_with('W') {
        format!(
            "Each result says what to change. If the input is meant this way, silence the warning on its object \
             with the annotation `policyc.io/ignore: {id}`, or everywhere with `policyc lint --allow {id}`.",
            id = code.id
        )
    } else {
        "Each result says what to change; errors cannot be silenced.".to_string()
    }
}

fn capitalized(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// A file name as given on the command line as a SARIF artifact URI: a
/// relative reference (code scanning resolves it against the repository
/// root, so `./` is dropped), or a `file:` URI for an absolute path, with
/// every byte outside the URI path characters percent-encoded (`:` too, so
/// that a relative path never reads as a scheme).
pub fn artifact_uri(file: &str) -> String {
    let relative = file.trim_start_matches("./");
    let mut uri = if relative.starts_with('/') { "file://".to_string() } else { String::new() };
    for b in relative.bytes() {
        let keep = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=@/".contains(&b);
        if keep {
            uri.push(char::from(b));
        } else {
            let _ = write!(uri, "%{b:02X}");
        }
    }
    uri
}

fn github(diags: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in diags {
        let mut props = Vec::new();
        if let Some(file) = &d.location.file {
            props.push(format!("file={}", escape_property(file)));
        }
        if let Some(pos) = d.location.pos {
            props.push(format!("line={}", pos.line));
            props.push(format!("col={}", pos.col));
        }
        props.push(format!("title={}", escape_property(&format!("policyc {}", d.code.id))));
        let mut message = d.message.clone();
        if let Some(object) = &d.location.object {
            let _ =
                write!(message, " ({object}{})", d.location.path.as_ref().map(|p| format!(" {p}")).unwrap_or_default());
        }
        if let Some(help) = &d.help {
            let _ = write!(message, "\nhelp: {help}");
        }
        let _ = writeln!(out, "::{} {}::{}", d.severity.name(), props.join(","), escape_data(&message));
    }
    out
}

/// Escapes the message part of a workflow command.
fn escape_data(s: &str) -> String {
    s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

/// Escapes a property value of a workflow command.
fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}
