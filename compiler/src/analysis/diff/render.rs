//! Renderings of a [`Diff`]: human text (optionally coloured), Markdown to
//! paste into a review, and JSON for tools.

use super::connectivity::{Cause, Change, ConnectivityChange};
use super::identities::{IdentityChange, IdentityLine};
use super::maps::MapChange;
use super::services::{ServiceChange, ServiceChangeKind, ServiceConnectionChange};
use super::Diff;
use crate::analysis::reason::reason_json;
pub use crate::analysis::reason::reason_text;
use serde_json::{json, Value};
use std::fmt::Write;

/// The names of the two sides, as given on the command line.
#[derive(Clone, Copy, Debug)]
pub struct Sides<'a> {
    /// The old tree.
    pub old: &'a str,
    /// The new tree.
    pub new: &'a str,
}

/// One line of counts: what changed, in numbers.
pub fn summary(diff: &Diff) -> String {
    if diff.is_empty() {
        return "no changes".to_string();
    }
    let count = |c: Change| diff.connectivity.iter().filter(|x| x.change == c).count();
    let (mut added, mut removed, mut renumbered) = (0, 0, 0);
    for c in &diff.identities {
        match c {
            IdentityChange::Added(_) => added += 1,
            IdentityChange::Removed(_) => removed += 1,
            IdentityChange::Renumbered { .. } => renumbered += 1,
        }
    }
    let entries_added: usize = diff.maps.iter().map(|m| m.added.len()).sum();
    let entries_removed: usize = diff.maps.iter().map(|m| m.removed.len()).sum();
    let nodes: std::collections::BTreeSet<&str> = diff.maps.iter().map(|m| m.node.as_str()).collect();
    let mut out = format!(
        "connections: {} opened, {} closed; endpoints: {} added, {} removed; identities: {added} added, {removed} removed, {renumbered} renumbered; map entries: {entries_added} added, {entries_removed} removed on {} node(s)",
        count(Change::Opened),
        count(Change::Closed),
        diff.endpoints_added.len(),
        diff.endpoints_removed.len(),
        nodes.len()
    );
    // Only a diff that touches Services says so: the line of every other
    // diff stays as it was.
    let s = &diff.services;
    if !s.services.is_empty() || !s.connections.is_empty() {
        let kind = |k: ServiceChangeKind| s.services.iter().filter(|c| c.kind == k).count();
        let conn = |c: Change| s.connections.iter().filter(|x| x.change == c).count();
        let _ = write!(
            out,
            "; services: {} added, {} removed, {} changed; service connections: {} opened, {} closed",
            kind(ServiceChangeKind::Added),
            kind(ServiceChangeKind::Removed),
            kind(ServiceChangeKind::Changed),
            conn(Change::Opened),
            conn(Change::Closed)
        );
    }
    out
}

/// `was -> now`, `now` (added) or `was` (removed) of a field or choice.
fn was_now(was: &Option<String>, now: &Option<String>) -> String {
    match (was, now) {
        (Some(w), Some(n)) => format!("{w} -> {n}"),
        (None, Some(n)) => n.clone(),
        (Some(w), None) => w.clone(),
        (None, None) => String::new(),
    }
}

/// The mark of a Service change: `+`, `-` or `~`.
fn service_mark(c: &ServiceChange) -> &'static str {
    match c.kind {
        ServiceChangeKind::Added => "+",
        ServiceChangeKind::Removed => "-",
        ServiceChangeKind::Changed => "~",
    }
}

/// `src -> svc:ns/name  TCP/80: every backend (was: no backend)`.
fn service_connection_line(c: &ServiceConnectionChange) -> String {
    format!("{} -> {}  {}: {} (was: {})", c.src, c.dst, c.port, c.now.name(), c.was.name())
}

/// The Services section of the human text.
fn services_human(diff: &Diff, p: &Paint, out: &mut String) {
    let s = &diff.services;
    if !s.services.is_empty() {
        let _ = writeln!(out, "\n{}", p.bold("services"));
        for c in &s.services {
            let head = format!("{} {} ({})", service_mark(c), c.service, c.kind.name());
            let head = match c.kind {
                ServiceChangeKind::Added => p.added(&head),
                ServiceChangeKind::Removed => p.removed(&head),
                ServiceChangeKind::Changed => head,
            };
            let _ = writeln!(out, "  {head}");
            for f in &c.fields {
                let _ = writeln!(out, "      {}: {}", f.field, was_now(&f.was, &f.now));
            }
            for b in &c.backends {
                let _ = writeln!(out, "      backends {}:", b.port);
                for l in &b.removed {
                    let _ = writeln!(out, "        {}", p.removed(&format!("- {l}")));
                }
                for l in &b.added {
                    let _ = writeln!(out, "        {}", p.added(&format!("+ {l}")));
                }
            }
            for n in &c.nodes {
                let _ = writeln!(out, "      node {} {} ({}):", n.node, n.port, n.traffic);
                let _ = writeln!(out, "        now: {}", n.now.as_deref().unwrap_or("no such frontend"));
                let _ = writeln!(out, "        was: {}", n.was.as_deref().unwrap_or("no such frontend"));
            }
        }
    }
    for change in [Change::Opened, Change::Closed] {
        let items: Vec<&ServiceConnectionChange> = s.connections.iter().filter(|c| c.change == change).collect();
        if items.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{}", p.bold(&format!("service connections {}", change.name())));
        for c in items {
            let line = match change {
                Change::Opened => p.added(&format!("+ {}", service_connection_line(c))),
                Change::Closed => p.removed(&format!("- {}", service_connection_line(c))),
            };
            let _ = writeln!(out, "  {line}");
        }
    }
}

struct Paint {
    on: bool,
}

impl Paint {
    fn wrap(&self, code: &str, s: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    fn bold(&self, s: &str) -> String {
        self.wrap("1", s)
    }
    fn added(&self, s: &str) -> String {
        self.wrap("32", s)
    }
    fn removed(&self, s: &str) -> String {
        self.wrap("31", s)
    }
}

/// Human text; ANSI colours when `color` (a terminal).
pub fn human(diff: &Diff, sides: Sides, color: bool) -> String {
    let p = Paint { on: color };
    let mut out = String::new();
    let _ = writeln!(out, "{}", p.bold(&format!("policyc diff {} {}", sides.old, sides.new)));
    let _ = writeln!(out, "{}", summary(diff));
    for change in [Change::Opened, Change::Closed] {
        let items: Vec<&ConnectivityChange> = diff.connectivity.iter().filter(|c| c.change == change).collect();
        if items.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{}", p.bold(&format!("connections {}", change.name())));
        for c in items {
            let (mark, paint): (&str, fn(&Paint, &str) -> String) = match change {
                Change::Opened => ("+", Paint::added),
                Change::Closed => ("-", Paint::removed),
            };
            let head = format!("{mark} {} -> {}  {}", c.src.name(), c.dst.name(), c.port_items().join(","));
            let _ = writeln!(out, "  {}", paint(&p, &head));
            for cause in &c.causes {
                let _ = writeln!(out, "      {} of {}", cause.direction, cause.endpoint);
                let _ = writeln!(out, "        now: {}", reason_text(&cause.now));
                let _ = writeln!(out, "        was: {}", reason_text(&cause.was));
            }
        }
    }
    services_human(diff, &p, &mut out);
    if !diff.endpoints_added.is_empty() || !diff.endpoints_removed.is_empty() {
        let _ = writeln!(out, "\n{}", p.bold("endpoints"));
        for e in &diff.endpoints_removed {
            let _ = writeln!(out, "  {}", p.removed(&format!("- {e}")));
        }
        for e in &diff.endpoints_added {
            let _ = writeln!(out, "  {}", p.added(&format!("+ {e}")));
        }
    }
    if !diff.identities.is_empty() {
        let _ = writeln!(out, "\n{}", p.bold("identities"));
        for c in &diff.identities {
            let text = match c {
                IdentityChange::Added(l) => p.added(&format!("+ {l}")),
                IdentityChange::Removed(l) => p.removed(&format!("- {l}")),
                IdentityChange::Renumbered { old, new } => {
                    format!("~ {old} -> {} {} {} (renumbered)", new.identity, new.kind, new.labels)
                }
            };
            let _ = writeln!(out, "  {text}");
        }
    }
    if !diff.maps.is_empty() {
        let _ = writeln!(out, "\n{}", p.bold("map entries"));
        for m in &diff.maps {
            let _ = writeln!(out, "  {} {}{}", m.node, m.file, users(m, str::to_string));
            for l in &m.removed {
                let _ = writeln!(out, "    {}", p.removed(&format!("- {l}")));
            }
            for l in &m.added {
                let _ = writeln!(out, "    {}", p.added(&format!("+ {l}")));
            }
        }
    }
    out
}

/// How many endpoints of a policy file text and Markdown name; JSON
/// names them all.
const USERS_SHOWN: usize = 5;

/// ` (used by a/x, b/y and 3 more)` for a policy file, each name written
/// by `name`; empty for a file no endpoint uses as its policy map.
fn users(m: &MapChange, name: impl Fn(&str) -> String) -> String {
    if m.endpoints.is_empty() {
        return String::new();
    }
    let shown: Vec<String> = m.endpoints.iter().take(USERS_SHOWN).map(|e| name(e)).collect();
    let more = m.endpoints.len().saturating_sub(USERS_SHOWN);
    let more = if more > 0 { format!(" and {more} more") } else { String::new() };
    format!(" (used by {}{more})", shown.join(", "))
}

/// Text safe inside a Markdown table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

fn code(s: &str) -> String {
    format!("`{}`", cell(s))
}

fn cause_markdown(c: &Cause) -> String {
    format!(
        "{} of {}: {}; was: {}",
        c.direction,
        code(&c.endpoint),
        cell(&reason_text(&c.now)),
        cell(&reason_text(&c.was))
    )
}

/// Markdown, to paste as a review comment.
pub fn markdown(diff: &Diff, sides: Sides) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "### policyc diff\n");
    let _ = writeln!(out, "{} → {}: {}", code(sides.old), code(sides.new), summary(diff));
    if !diff.connectivity.is_empty() {
        let _ = writeln!(out, "\n#### Connections\n");
        let _ = writeln!(out, "| change | source | destination | ports | why |");
        let _ = writeln!(out, "| --- | --- | --- | --- | --- |");
        for c in &diff.connectivity {
            let why: Vec<String> = c.causes.iter().map(cause_markdown).collect();
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                c.change.name(),
                code(&c.src.name()),
                code(&c.dst.name()),
                code(&c.port_items().join(",")),
                why.join("<br>")
            );
        }
    }
    services_markdown(diff, &mut out);
    if !diff.endpoints_added.is_empty() || !diff.endpoints_removed.is_empty() {
        let _ = writeln!(out, "\n#### Endpoints\n");
        for e in &diff.endpoints_removed {
            let _ = writeln!(out, "- removed {}", code(e));
        }
        for e in &diff.endpoints_added {
            let _ = writeln!(out, "- added {}", code(e));
        }
    }
    if !diff.identities.is_empty() {
        let _ = writeln!(out, "\n#### Identities\n");
        let _ = writeln!(out, "| change | identity | kind | labels |");
        let _ = writeln!(out, "| --- | --- | --- | --- |");
        for c in &diff.identities {
            let (what, id, l) = match c {
                IdentityChange::Added(l) => ("added", l.identity.to_string(), l),
                IdentityChange::Removed(l) => ("removed", l.identity.to_string(), l),
                IdentityChange::Renumbered { old, new } => ("renumbered", format!("{old} → {}", new.identity), new),
            };
            let _ = writeln!(out, "| {what} | {id} | {} | {} |", l.kind, code(&l.labels));
        }
    }
    if !diff.maps.is_empty() {
        let _ = writeln!(out, "\n#### Map entries\n");
        for m in &diff.maps {
            let _ = writeln!(
                out,
                "<details><summary>{} <code>{}</code>{}: {} added, {} removed</summary>\n",
                m.node,
                m.file,
                users(m, |e| format!("<code>{e}</code>")),
                m.added.len(),
                m.removed.len()
            );
            let _ = writeln!(out, "```diff");
            for l in &m.removed {
                let _ = writeln!(out, "- {l}");
            }
            for l in &m.added {
                let _ = writeln!(out, "+ {l}");
            }
            let _ = writeln!(out, "```\n</details>");
        }
    }
    out
}

/// The Services sections of the Markdown.
fn services_markdown(diff: &Diff, out: &mut String) {
    let s = &diff.services;
    if !s.services.is_empty() {
        let _ = writeln!(out, "\n#### Services\n");
        let _ = writeln!(out, "| change | service | what | was | now |");
        let _ = writeln!(out, "| --- | --- | --- | --- | --- |");
        for c in &s.services {
            let mut rows: Vec<(String, String, String)> = Vec::new();
            for f in &c.fields {
                let v = |x: &Option<String>| x.as_deref().map(code).unwrap_or_default();
                rows.push((f.field.to_string(), v(&f.was), v(&f.now)));
            }
            for b in &c.backends {
                let items = |v: &[String]| v.iter().map(|x| code(x)).collect::<Vec<_>>().join("<br>");
                rows.push((format!("backends {}", b.port), items(&b.removed), items(&b.added)));
            }
            for n in &c.nodes {
                let v = |x: &Option<String>| cell(x.as_deref().unwrap_or("no such frontend"));
                rows.push((format!("node {} {} ({})", n.node, n.port, n.traffic), v(&n.was), v(&n.now)));
            }
            for (what, was, now) in rows {
                let _ = writeln!(out, "| {} | {} | {what} | {was} | {now} |", c.kind.name(), code(&c.service));
            }
        }
    }
    if !s.connections.is_empty() {
        let _ = writeln!(out, "\n#### Service connections\n");
        let _ = writeln!(out, "| change | source | service | port | now | was |");
        let _ = writeln!(out, "| --- | --- | --- | --- | --- | --- |");
        for c in &s.connections {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                c.change.name(),
                code(&c.src),
                code(&c.dst),
                code(&c.port),
                c.now.name(),
                c.was.name()
            );
        }
    }
}

/// The Services of a diff as JSON: `services` (`{service, change,
/// fields: [{field, was, now}], backends: [{port, removed, added}],
/// nodes: [{node, port, traffic, was, now}]}`) and `service_connections`
/// (`{change, src, dst, port, now, was}`).
fn services_json(diff: &Diff) -> (Value, Value) {
    let s = &diff.services;
    let services: Vec<Value> = s
        .services
        .iter()
        .map(|c| {
            json!({
                "service": c.service,
                "change": c.kind.name(),
                "fields": c.fields.iter().map(|f| json!({"field": f.field, "was": f.was, "now": f.now})).collect::<Vec<_>>(),
                "backends": c.backends.iter().map(|b| json!({"port": b.port, "removed": b.removed, "added": b.added})).collect::<Vec<_>>(),
                "nodes": c.nodes.iter().map(|n| json!({"node": n.node, "port": n.port, "traffic": n.traffic, "was": n.was, "now": n.now})).collect::<Vec<_>>(),
            })
        })
        .collect();
    let connections: Vec<Value> = s
        .connections
        .iter()
        .map(|c| {
            json!({"change": c.change.name(), "src": c.src, "dst": c.dst, "port": c.port, "now": c.now.name(), "was": c.was.name()})
        })
        .collect();
    (Value::Array(services), Value::Array(connections))
}

fn identity_json(l: &IdentityLine) -> Value {
    json!({"identity": l.identity, "kind": l.kind, "labels": l.labels})
}

/// JSON: `{old, new, changed, summary, connections, endpoints, identities,
/// maps, services, service_connections}`; each of `maps` is `{node, file,
/// endpoints, removed, added}`; `services` and `service_connections` as
/// the diff's Services section lists them.
pub fn to_json(diff: &Diff, sides: Sides) -> Value {
    let connections: Vec<Value> = diff
        .connectivity
        .iter()
        .map(|c| {
            json!({
                "change": c.change.name(),
                "src": c.src.name(),
                "dst": c.dst.name(),
                "ports": c.port_items(),
                "causes": c.causes.iter().map(|cause| json!({
                    "direction": cause.direction.name(),
                    "endpoint": cause.endpoint,
                    "now": reason_json(&cause.now),
                    "was": reason_json(&cause.was),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let identities: Vec<Value> = diff
        .identities
        .iter()
        .map(|c| match c {
            IdentityChange::Added(l) => json!({"change": "added", "new": identity_json(l)}),
            IdentityChange::Removed(l) => json!({"change": "removed", "old": identity_json(l)}),
            IdentityChange::Renumbered { old, new } => {
                json!({"change": "renumbered", "old_identity": old, "new": identity_json(new)})
            }
        })
        .collect();
    let maps: Vec<Value> = diff
        .maps
        .iter()
        .map(|m| {
            json!({"node": m.node, "file": m.file, "endpoints": m.endpoints, "removed": m.removed, "added": m.added})
        })
        .collect();
    let (services, service_connections) = services_json(diff);
    json!({
        "old": sides.old,
        "new": sides.new,
        "changed": !diff.is_empty(),
        "summary": summary(diff),
        "connections": connections,
        "endpoints": {"added": diff.endpoints_added, "removed": diff.endpoints_removed},
        "identities": identities,
        "maps": maps,
        "services": services,
        "service_connections": service_connections,
    })
}
