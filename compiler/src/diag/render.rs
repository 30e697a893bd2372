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
        let line_text = loc
            .file
            .as_ref()
            .zip(loc.pos)
            .and_then(|(f, pos)| sources.get(f)?.lines().nth(pos.line.checked_sub(1)? as usize).map(|l| (pos, l)));
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

fn sarif(diags: &[Diagnostic]) -> Value {
    let rules: Vec<Value> =
        codes::ALL.iter().map(|c| json!({"id": c.id, "shortDescription": {"text": c.summary}})).collect();
    let results: Vec<Value> = diags
        .iter()
        .map(|d| {
            let mut message = d.message.clone();
            if let Some(object) = &d.location.object {
                message = format!(
                    "{message} ({object}{})",
                    d.location.path.as_ref().map(|p| format!(" {p}")).unwrap_or_default()
                );
            }
            if let Some(help) = &d.help {
                message = format!("{message}; help: {help}");
            }
            let mut result = json!({
                "ruleId": d.code.id,
                "level": match d.severity { Severity::Error => "error", Severity::Warning => "warning" },
                "message": {"text": message},
            });
            if let Some(file) = &d.location.file {
                let mut region = json!({});
                if let Some(pos) = d.location.pos {
                    region = json!({"startLine": pos.line, "startColumn": pos.col});
                }
                result["locations"] = json!([{
                    "physicalLocation": {"artifactLocation": {"uri": file}, "region": region}
                }]);
            }
            result
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "policyc", "version": env!("CARGO_PKG_VERSION"), "rules": rules}},
            "results": results,
        }],
    })
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
