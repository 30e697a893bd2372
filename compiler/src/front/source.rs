//! Reading inputs: files, directories (recursively, sorted) and stdin.

use super::Input;
use crate::diag::{codes, Diagnostic, Location};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Extensions read when walking a directory.
const EXTENSIONS: &[&str] = &["yaml", "yml", "json"];

/// Reads every path (`-` is stdin) into an [`Input`]. Directories are
/// walked recursively in sorted order; files named explicitly are read
/// whatever their extension.
///
/// Files are read and decoded on every available core (a cluster's
/// manifests are many independent files, and YAML parsing is most of the
/// time of a large compile), then merged in input order, so the result does
/// not depend on the number of threads.
pub fn read_paths(paths: &[PathBuf]) -> Input {
    let mut input = Input::default();
    let mut files: Vec<PathBuf> = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            files.push(path.clone());
        } else if path.is_dir() {
            let mut found = Vec::new();
            walk(path, &mut found, &mut input);
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    let parts = policyc_ir::parallel::map(&files, |path| {
        let mut part = Input::default();
        read_one(path, &mut part);
        part
    });
    for part in parts {
        input.merge(part);
    }
    input
}

fn read_one(path: &Path, input: &mut Input) {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        match std::io::stdin().read_to_string(&mut text) {
            Ok(_) => input.add_source("-", text),
            Err(e) => io_error(input, "-", &e),
        }
    } else {
        read_file(path, input);
    }
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>, input: &mut Input) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => return io_error(input, &dir.display().to_string(), &e),
    };
    for entry in entries.flatten() {
        let p = entry.path();
        let hidden = p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        if p.is_dir() {
            walk(&p, files, input);
        } else if p.extension().and_then(|e| e.to_str()).is_some_and(|e| EXTENSIONS.contains(&e)) {
            files.push(p);
        }
    }
}

fn read_file(path: &Path, input: &mut Input) {
    let name = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => input.add_source(&name, text),
        Err(e) => io_error(input, &name, &e),
    }
}

fn io_error(input: &mut Input, name: &str, e: &std::io::Error) {
    let location = Location { file: Some(name.to_string()), ..Location::default() };
    input.diagnostics.push(Diagnostic::new(codes::IO, location, format!("cannot read `{name}`: {e}")));
}
