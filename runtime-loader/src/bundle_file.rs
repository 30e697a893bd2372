//! Reading a bundle's files: only regular files, and never more bytes
//! than a file has when it is opened, so that a FIFO or a device in place
//! of a map file cannot hold an apply (and the appliers' lock) forever.

use crate::bundle::BundleError;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

fn io(path: &Path, error: std::io::Error) -> BundleError {
    BundleError::Io { path: path.to_path_buf(), error }
}

fn not_regular(path: &Path) -> BundleError {
    BundleError::Manifest(format!("`{}` is not a regular file", path.display()))
}

/// Checks, without opening it, that `path` is a regular file (or a
/// symbolic link to one).
pub fn check(path: &Path) -> Result<(), BundleError> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(not_regular(path)),
        Err(e) => Err(io(path, e)),
    }
}

/// Opens `path`, a regular file, and returns it with its size. The open
/// does not block (`O_NONBLOCK`, which regular files ignore), and what it
/// opened is checked again: the file may have been replaced since
/// [`check`].
pub fn open(path: &Path) -> Result<(File, u64), BundleError> {
    let file =
        std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path).map_err(|e| io(path, e))?;
    let metadata = file.metadata().map_err(|e| io(path, e))?;
    if !metadata.is_file() {
        return Err(not_regular(path));
    }
    Ok((file, metadata.len()))
}

/// Reads `path`, a regular file, whole: at most the bytes it had when
/// opened.
pub fn read(path: &Path) -> Result<Vec<u8>, BundleError> {
    let (file, size) = open(path)?;
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(size).read_to_end(&mut bytes).map_err(|e| io(path, e))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_a_regular_file_without_blocking() {
        let dir = std::env::temp_dir().join(format!("policyc-bundle-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (file, fifo) = (dir.join("file"), dir.join("fifo"));
        std::fs::write(&file, "a\n").unwrap();
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
        assert_eq!(read(&file).unwrap(), b"a\n");
        check(&file).unwrap();
        for path in [fifo.as_path(), Path::new("/dev/null"), dir.as_path()] {
            let message = format!("`{}` is not a regular file", path.display());
            assert_eq!(check(path).unwrap_err().to_string(), format!("manifest.json: {message}"));
            assert!(read(path).unwrap_err().to_string().contains("is not a regular file"), "{}", path.display());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
