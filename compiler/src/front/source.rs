//! Reading inputs: files, directories (recursively, sorted) and stdin.
//!
//! Inputs are untrusted (policyc runs on pull requests), so reading them is
//! bounded: a file larger than [`Limits::max_file`] or inputs larger than
//! [`Limits::max_input`] together are refused (a regular file by its size,
//! before it is read; a pipe or device once it has given that much), a
//! directory walk reads each directory once (a link back to an ancestor
//! would make it endless) and never opens what is not a regular file (a
//! FIFO would block it), and a file named twice is read once.

use super::yaml::utf8;
use super::Input;
use crate::diag::{codes, Code, Diagnostic, Location};
use std::collections::HashSet;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Extensions read when walking a directory.
const EXTENSIONS: &[&str] = &["yaml", "yml", "json"];

/// How much input policyc reads. The defaults are above a real cluster's
/// manifests (`kubectl get -o yaml` of 150 000 pods, in one file, is about
/// 600 MB) and keep a hostile input from exhausting a CI runner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::Args)]
pub struct Limits {
    /// Largest file read, in bytes (suffixes K, M, G: powers of 1024).
    #[arg(long = "max-file-size", value_name = "BYTES", default_value = "1G", value_parser = parse_size, global = true)]
    pub max_file: u64,
    /// Largest total of all files read, in bytes (suffixes K, M, G).
    #[arg(long = "max-input-size", value_name = "BYTES", default_value = "4G", value_parser = parse_size, global = true)]
    pub max_input: u64,
}

/// The same as the flags' defaults.
impl Default for Limits {
    fn default() -> Self {
        Limits { max_file: 1 << 30, max_input: 4 << 30 }
    }
}

/// The limits set for this process by its command line ([`set_limits`]).
static LIMITS: OnceLock<Limits> = OnceLock::new();

/// Sets the limits [`read_paths`] applies for the rest of the process: the
/// command line sets them once, and every command and every reader under
/// it (a diff's two trees, Git revisions) then applies the same ones.
/// Returns `false` if they were set already.
pub fn set_limits(limits: Limits) -> bool {
    LIMITS.set(limits).is_ok()
}

/// The limits in force: those set by [`set_limits`], or the defaults.
pub fn limits() -> Limits {
    LIMITS.get().copied().unwrap_or_default()
}

/// Parses a size: bytes, or a number with `K`, `M` or `G`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let (digits, shift) = match text.as_bytes().last() {
        Some(b'K' | b'k') => (&text[..text.len() - 1], 10),
        Some(b'M' | b'm') => (&text[..text.len() - 1], 20),
        Some(b'G' | b'g') => (&text[..text.len() - 1], 30),
        _ => (text, 0),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("invalid size `{text}` (expected bytes, or a number with K, M or G)"))
}

/// Reads every path (`-` is stdin) into an [`Input`] within the
/// [`limits`] in force. Directories are walked recursively in sorted order;
/// files named explicitly are read whatever their extension.
pub fn read_paths(paths: &[PathBuf]) -> Input {
    read_paths_within(paths, limits())
}

/// [`read_paths`] within `limits`.
///
/// Files are read and decoded on every available core (a cluster's
/// manifests are many independent files, and YAML parsing is most of the
/// time of a large compile), then merged in input order, so the result does
/// not depend on the number of threads.
pub fn read_paths_within(paths: &[PathBuf], limits: Limits) -> Input {
    let mut input = Input::default();
    let mut walk = Walk { files: Vec::new(), directories: HashSet::new(), input: &mut input };
    for path in paths {
        if path.as_os_str() == "-" {
            walk.files.push(path.clone());
            continue;
        }
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => {
                // A directory named twice is read once, without a word.
                if walk.directories.insert((m.dev(), m.ino())) {
                    let start = walk.files.len();
                    walk.walk(path);
                    walk.files[start..].sort();
                }
            }
            _ => walk.files.push(path.clone()),
        }
    }
    let files = admit(walk.files, limits, &mut input);
    let parts = policyc_ir::parallel::map(&files, |path| {
        let mut part = Input::default();
        read_one(path, limits.max_file, &mut part);
        part
    });
    for part in parts {
        input.merge(part);
    }
    input
}

/// Directories walked so far, and the files found.
struct Walk<'i> {
    files: Vec<PathBuf>,
    /// Device and inode of every directory entered.
    directories: HashSet<(u64, u64)>,
    input: &'i mut Input,
}

impl Walk<'_> {
    fn walk(&mut self, dir: &Path) {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) => return io_error(self.input, &dir.display().to_string(), &e),
        };
        // Sorted, so that which of two links to one directory is reported
        // does not depend on the file system's order.
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            let hidden = p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'));
            if hidden {
                continue;
            }
            let manifest = p.extension().and_then(|e| e.to_str()).is_some_and(|e| EXTENSIONS.contains(&e));
            // `metadata` follows links and never opens the file.
            match std::fs::metadata(&p) {
                Ok(m) if m.is_dir() => {
                    if self.directories.insert((m.dev(), m.ino())) {
                        self.walk(&p);
                    } else {
                        let message = format!("`{}` leads to a directory already read; it is skipped", p.display());
                        warn(self.input, codes::DIRECTORY_LOOP, &p, message);
                    }
                }
                Ok(m) if m.is_file() => {
                    if manifest {
                        self.files.push(p);
                    }
                }
                Ok(_) if manifest => {
                    let message =
                        format!("`{}` is not a regular file (a FIFO, socket or device); it is skipped", p.display());
                    warn(self.input, codes::NOT_A_FILE, &p, message);
                }
                Ok(_) => {}
                // A dangling link named like a manifest: reading it reports why.
                Err(_) if manifest => self.files.push(p),
                Err(_) => {}
            }
        }
    }
}

/// The files to read: each file once (by device and inode, so a file
/// reached through a link too is read once, under its first name), and
/// regular files only within the limits, judged by their sizes.
fn admit(files: Vec<PathBuf>, limits: Limits, input: &mut Input) -> Vec<PathBuf> {
    let mut seen = HashSet::new();
    let mut stdin = false;
    let mut total: u64 = 0;
    let mut admitted = Vec::new();
    for path in files {
        if path.as_os_str() == "-" {
            if !std::mem::replace(&mut stdin, true) {
                admitted.push(path);
            }
            continue;
        }
        let Ok(m) = std::fs::metadata(&path) else {
            admitted.push(path); // reading it reports why it cannot be read
            continue;
        };
        if !seen.insert((m.dev(), m.ino())) {
            continue;
        }
        if m.is_file() {
            if m.len() > limits.max_file {
                too_large(input, &path, Some(m.len()), limits.max_file);
                continue;
            }
            total = total.saturating_add(m.len());
            if total > limits.max_input {
                let message = format!(
                    "the inputs up to `{}` are {total} bytes, more than the limit of {} bytes; it and the files after it are not read",
                    path.display(),
                    limits.max_input
                );
                let diagnostic = Diagnostic::new(codes::INPUT_TOO_LARGE, file_location(&path), message)
                    .with_help("raise the limit with `--max-input-size`");
                input.diagnostics.push(diagnostic);
                break;
            }
        }
        admitted.push(path);
    }
    admitted
}

fn read_one(path: &Path, max_file: u64, input: &mut Input) {
    let name = path.display().to_string();
    let bytes = if path.as_os_str() == "-" {
        read_bounded(std::io::stdin().lock(), max_file)
    } else {
        std::fs::File::open(path).and_then(|f| read_bounded(f, max_file))
    };
    match bytes {
        Ok(Some(bytes)) => match utf8::decode(bytes) {
            Ok(text) => input.add_source(&name, text),
            Err(e) => {
                let location = Location { pos: Some(e.pos), ..file_location(path) };
                let message = format!("`{name}` is not UTF-8: byte {} (0x{:02x}) is invalid", e.offset, e.byte);
                input.diagnostics.push(
                    Diagnostic::new(codes::YAML_SYNTAX, location, message)
                        .with_help("YAML and JSON files are UTF-8 text"),
                );
            }
        },
        Ok(None) => too_large(input, path, None, max_file),
        Err(e) => io_error(input, &name, &e),
    }
}

/// Everything `reader` gives, or `None` once it has given more than `max`
/// bytes (a device such as `/dev/zero` never ends).
fn read_bounded(reader: impl Read, max: u64) -> std::io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    reader.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= max).then_some(bytes))
}

/// Reports a file refused by its size (`None`: a pipe or device that gave
/// more than the limit).
fn too_large(input: &mut Input, path: &Path, size: Option<u64>, max: u64) {
    let name = path.display();
    let message = match size {
        Some(size) => {
            format!("`{name}` is {size} bytes, more than the limit of {max} bytes on one file; it is not read")
        }
        None => format!("`{name}` gives more than the limit of {max} bytes on one file; it is not read"),
    };
    input.diagnostics.push(
        Diagnostic::new(codes::FILE_TOO_LARGE, file_location(path), message)
            .with_help("raise the limit with `--max-file-size`"),
    );
}

fn file_location(path: &Path) -> Location {
    Location { file: Some(path.display().to_string()), ..Location::default() }
}

fn warn(input: &mut Input, code: Code, path: &Path, message: String) {
    input.diagnostics.push(Diagnostic::new(code, file_location(path), message));
}

fn io_error(input: &mut Input, name: &str, e: &std::io::Error) {
    let location = Location { file: Some(name.to_string()), ..Location::default() };
    input.diagnostics.push(Diagnostic::new(codes::IO, location, format!("cannot read `{name}`: {e}")));
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        limits: Limits,
    }

    #[test]
    fn the_flags_default_to_the_library_defaults() {
        assert_eq!(Flags::parse_from(["policyc"]).limits, Limits::default());
        let flags = Flags::parse_from(["policyc", "--max-file-size", "3K", "--max-input-size", "77"]);
        assert_eq!(flags.limits, Limits { max_file: 3072, max_input: 77 });
    }

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("12m"), Ok(12 << 20));
        assert!(parse_size("").is_err());
        assert!(parse_size("-1K").is_err());
        assert!(parse_size("99999999999999G").is_err());
    }
}
