//! Reading inputs from a Git revision instead of the work tree:
//! `git:REV:PATH` names the files under `PATH` as they are in `REV`, so a
//! CI job can compare `git:origin/main:policies` with `policies` without
//! checking anything out.
//!
//! The repository is the one holding the given directory (the current
//! directory for the command line). `PATH` is relative to that directory,
//! as `git ls-tree` reads it; directories are walked like work-tree
//! directories (recursively, `.yaml`, `.yml` and `.json` files, hidden
//! entries skipped, sorted by path), a file named exactly is read whatever
//! its extension. Sources are named `git:REV:path/of/file` in diagnostics.

use super::yaml::utf8;
use super::{source, Input};
use crate::diag::{codes, Diagnostic, Location};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// The prefix that marks a Git input.
pub const GIT_PREFIX: &str = "git:";

/// A parsed `git:REV:PATH`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GitSpec {
    /// Revision (`HEAD`, `origin/main`, a commit hash).
    pub rev: String,
    /// Path relative to the working directory (`.` for all of it).
    pub path: String,
}

impl GitSpec {
    /// Parses `git:REV:PATH` (`git:REV` or `git:REV:` mean the working
    /// directory); `None` if `s` does not start with `git:`, an error if the
    /// revision is empty.
    pub fn parse(s: &str) -> Option<Result<GitSpec, String>> {
        let rest = s.strip_prefix(GIT_PREFIX)?;
        let (rev, path) = rest.split_once(':').unwrap_or((rest, ""));
        if rev.is_empty() {
            return Some(Err(format!("`{s}` names no revision (expected `git:REV:PATH`, e.g. `git:HEAD:policies`)")));
        }
        let path = if path.is_empty() { ".".to_string() } else { path.trim_end_matches('/').to_string() };
        Some(Ok(GitSpec { rev: rev.to_string(), path }))
    }

    /// How the spec is written (`git:REV:PATH`).
    pub fn display(&self) -> String {
        format!("{GIT_PREFIX}{}:{}", self.rev, self.path)
    }
}

/// Extensions read when walking a directory (as for the work tree).
const EXTENSIONS: &[&str] = &["yaml", "yml", "json"];

/// One file of the listing.
struct Entry {
    object: String,
    path: String,
}

/// Reads the files `spec` names from the repository holding `cwd`.
pub fn read_git(spec: &GitSpec, cwd: &Path) -> Input {
    let mut input = Input::default();
    let name = spec.display();
    match list(spec, cwd).and_then(|entries| blobs(&entries, cwd).map(|texts| (entries, texts))) {
        Ok((entries, texts)) => {
            for (entry, text) in entries.iter().zip(texts) {
                let file = format!("{GIT_PREFIX}{}:{}", spec.rev, entry.path);
                match utf8::decode(text) {
                    Ok(text) => input.add_source(&file, text),
                    Err(e) => {
                        let location = Location { file: Some(file.clone()), pos: Some(e.pos), ..Location::default() };
                        let message = format!("`{file}` is not UTF-8: byte {} (0x{:02x}) is invalid", e.offset, e.byte);
                        input.diagnostics.push(Diagnostic::new(codes::YAML_SYNTAX, location, message));
                    }
                }
            }
        }
        Err(message) => error(&mut input, &name, format!("cannot read `{name}`: {message}")),
    }
    input
}

fn error(input: &mut Input, file: &str, message: String) {
    let location = Location { file: Some(file.to_string()), ..Location::default() };
    input.diagnostics.push(Diagnostic::new(codes::IO, location, message));
}

fn git(cwd: &Path) -> Command {
    let mut c = Command::new("git");
    // No pager, no prompts, and no locale-dependent quoting of paths.
    c.current_dir(cwd).env("GIT_TERMINAL_PROMPT", "0").args(["-c", "core.quotePath=false"]);
    c
}

/// The blobs under `spec.path` at `spec.rev`, filtered and sorted.
fn list(spec: &GitSpec, cwd: &Path) -> Result<Vec<Entry>, String> {
    let out = git(cwd)
        .args(["ls-tree", "-r", "-z", "--long", &spec.rev, "--", &spec.path])
        .output()
        .map_err(|e| format!("cannot run `git`: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!("`git ls-tree` failed: {}", stderr.lines().next().unwrap_or("no message").trim()));
    }
    let exact = spec.path.trim_start_matches("./");
    let limits = source::limits();
    let mut total: u64 = 0;
    let mut entries = Vec::new();
    for record in out.stdout.split(|b| *b == 0).filter(|r| !r.is_empty()) {
        let record = String::from_utf8_lossy(record);
        let Some((head, path)) = record.split_once('\t') else { continue };
        // `--long` right-aligns the size with spaces.
        let mut fields = head.split_whitespace();
        let (Some(mode), Some(kind), Some(object)) = (fields.next(), fields.next(), fields.next()) else { continue };
        let size: u64 = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        // Submodules (`commit`) and symbolic links (`120000`) hold no manifest.
        if kind != "blob" || mode == "120000" {
            continue;
        }
        let named = path == exact;
        let below = match exact {
            "." | "" => path,
            _ => path.strip_prefix(exact).unwrap_or(path).trim_start_matches('/'),
        };
        let hidden = below.split('/').any(|c| c.starts_with('.'));
        let extension_ok = path.rsplit_once('.').is_some_and(|(_, e)| EXTENSIONS.contains(&e));
        if named || (!hidden && extension_ok) {
            total = total.saturating_add(size);
            if size > limits.max_file || total > limits.max_input {
                return Err(format!(
                    "`{path}` in revision `{}` would take the input past the limit of {} bytes on one file or {} on all \
                     (raise them with `--max-file-size`, `--max-input-size`)",
                    spec.rev, limits.max_file, limits.max_input
                ));
            }
            entries.push(Entry { object: object.to_string(), path: path.to_string() });
        }
    }
    if entries.is_empty() {
        return Err(format!("no `.yaml`, `.yml` or `.json` file at `{}` in revision `{}`", spec.path, spec.rev));
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(entries)
}

/// The contents of `entries`, read with one `git cat-file --batch`.
fn blobs(entries: &[Entry], cwd: &Path) -> Result<Vec<Vec<u8>>, String> {
    let mut child = git(cwd)
        .args(["cat-file", "--batch"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run `git`: {e}"))?;
    let request: String = entries.iter().map(|e| format!("{}\n", e.object)).collect();
    let mut stdin = child.stdin.take().expect("stdin is piped");
    // Written from a thread: git answers while it reads, and a large tree
    // would fill both pipes if the request were written before reading.
    let writer = std::thread::spawn(move || stdin.write_all(request.as_bytes()));
    let out = child.wait_with_output().map_err(|e| format!("cannot run `git`: {e}"))?;
    writer.join().map_err(|_| "writing to `git cat-file` failed".to_string())?.map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("`git cat-file` failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    let mut data = out.stdout.as_slice();
    let mut texts = Vec::new();
    for entry in entries {
        let newline = data.iter().position(|b| *b == b'\n').ok_or("`git cat-file` ended early")?;
        let header = String::from_utf8_lossy(&data[..newline]).to_string();
        let size: usize = match header.split(' ').collect::<Vec<_>>().as_slice() {
            [_, "blob", size] => size.parse().map_err(|_| format!("unexpected `git cat-file` header `{header}`"))?,
            _ => return Err(format!("cannot read `{}`: `git cat-file` answered `{header}`", entry.path)),
        };
        let body = data.get(newline + 1..newline + 1 + size).ok_or("`git cat-file` output is truncated")?;
        texts.push(body.to_vec());
        // Each blob is followed by a newline.
        data = data.get(newline + 2 + size..).unwrap_or_default();
    }
    Ok(texts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs() {
        assert_eq!(
            GitSpec::parse("git:origin/main:examples/policies/"),
            Some(Ok(GitSpec { rev: "origin/main".into(), path: "examples/policies".into() }))
        );
        assert_eq!(GitSpec::parse("git:HEAD"), Some(Ok(GitSpec { rev: "HEAD".into(), path: ".".into() })));
        assert!(matches!(GitSpec::parse("git::x"), Some(Err(_))));
        assert_eq!(GitSpec::parse("examples/policies"), None);
    }
}
