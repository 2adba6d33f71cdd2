//! The writer lock: an OS file lock on `state_dir/lock`, released by the kernel when the
//! holder exits, so a crashed drover never leaves a stale lock behind. The file also records
//! who holds it, for the error message of the process that has to wait.

use super::{io_err, StoreError};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// Held while a process may write the store; dropping it releases the lock.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
}

pub fn acquire(dir: &Path, command: &str, wait: Duration) -> Result<FileLock, StoreError> {
    let path = dir.join("lock");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(io_err(&path))?;
    let deadline = Instant::now() + wait;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(StoreError::Locked {
                    dir: dir.to_path_buf(),
                    holder: if holder.is_empty() {
                        "unknown holder".into()
                    } else {
                        holder.to_string()
                    },
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_err(&path)(e)),
        }
    }
    // Best effort: the lock itself is what protects the store, this text only informs.
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = write!(file, "pid {}: drover {command}", std::process::id());
    Ok(FileLock { _file: file })
}

/// The note of the process holding the lock on `dir`, if one does.
pub fn holder(dir: &Path) -> Option<String> {
    let mut file = File::open(dir.join("lock")).ok()?;
    match file.try_lock_shared() {
        Ok(()) => None,
        Err(_) => {
            let mut note = String::new();
            let _ = file.read_to_string(&mut note);
            Some(note.trim().to_string())
        }
    }
}
