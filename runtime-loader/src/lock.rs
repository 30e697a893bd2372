//! The appliers' lock: one `flock` on a file of the state directory,
//! taken by `apply` and `uninstall` for their whole run. A second applier
//! waits for it, a bounded time, and then refuses, naming the holder.

use crate::error::LoaderError;
use crate::paths::Paths;
use std::fs::{File, TryLockError};
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

/// How long an applier waits for the lock by default: an apply takes
/// milliseconds, and a few seconds cover a slow one without leaving a
/// stuck loader's successor waiting unseen.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(5);

/// How long to wait for the lock, and whom to tell that it is waited for.
#[derive(Clone, Copy, Debug)]
pub struct LockWait {
    /// The longest wait.
    pub timeout: Duration,
    /// Called once, with the holder, if the lock is held at first.
    pub on_wait: Option<fn(&str)>,
}

impl Default for LockWait {
    fn default() -> Self {
        LockWait { timeout: DEFAULT_LOCK_TIMEOUT, on_wait: None }
    }
}

/// Takes the appliers' lock, waiting up to `wait.timeout` for its holder;
/// held until the returned file is dropped.
pub fn lock(paths: &Paths, wait: &LockWait) -> Result<File, LoaderError> {
    std::fs::create_dir_all(&paths.state)
        .map_err(|e| LoaderError::Record(format!("cannot create `{}`: {e}", paths.state.display())))?;
    // Not truncated: the file carries nothing, and opening it must not
    // write to a file another process holds.
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(paths.lock())
        .map_err(|e| LoaderError::Locked(e.to_string()))?;
    let started = Instant::now();
    let mut told = false;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(TryLockError::Error(e)) => return Err(LoaderError::Locked(e.to_string())),
            Err(TryLockError::WouldBlock) => {}
        }
        let holder = holder(&file);
        if started.elapsed() >= wait.timeout {
            return Err(LoaderError::Locked(format!(
                "`{}` is held by {holder}, still after {:.1} s (--lock-timeout)",
                paths.lock().display(),
                wait.timeout.as_secs_f64()
            )));
        }
        if !told {
            if let Some(tell) = wait.on_wait {
                tell(&format!(
                    "waiting up to {:.1} s for `{}`, held by {holder}",
                    wait.timeout.as_secs_f64(),
                    paths.lock().display()
                ));
            }
            told = true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Who holds the `flock` on `file`, from `/proc/locks` (the lock's pid and
/// that process's name), or `another process` where that cannot be told.
fn holder(file: &File) -> String {
    let Ok(inode) = file.metadata().map(|m| m.ino()) else { return "another process".into() };
    let locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    // `1: FLOCK  ADVISORY  WRITE 1234 fe:00:6381585 0 EOF`
    let pid = locks.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let ours =
            f.get(1) == Some(&"FLOCK") && f.get(5).and_then(|d| d.rsplit(':').next()) == Some(&*inode.to_string());
        ours.then(|| f.get(4).map(|p| p.to_string())).flatten()
    });
    match pid {
        Some(pid) => match std::fs::read_to_string(format!("/proc/{pid}/comm")) {
            Ok(name) => format!("pid {pid} (`{}`)", name.trim()),
            Err(_) => format!("pid {pid}"),
        },
        None => "another process".into(),
    }
}
