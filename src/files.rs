//! Files as drover reads and writes them, for the store, the sources and known_hosts alike:
//! private and durable writes (temp file, fsync, rename, fsync the directory; mode 0600,
//! directories 0700), and reads that reuse a buffer, keep at most a limit, and open many
//! files of one directory relative to it (`DirHandle`).

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// An IO error and the path it happened at.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct PathError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PathError + '_ {
    move |source| PathError {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates a directory (and parents) readable by the owner only. An existing directory that
/// others can read or enter (made by hand, or by an older drover) is tightened to 0700.
pub fn create_private_dir(dir: &Path) -> Result<(), PathError> {
    use std::os::unix::fs::PermissionsExt;
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err(dir))?;
    let mode = fs::metadata(dir).map_err(io_err(dir))?.permissions().mode();
    if mode & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(mode & 0o7700)).map_err(io_err(dir))?;
    }
    Ok(())
}

pub fn sync_dir(dir: &Path) -> Result<(), PathError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Writes `bytes` to `path` atomically with mode 0600. `sync_parent` fsyncs the directory
/// afterwards; callers writing many files in one directory sync it once themselves.
pub fn write_file(path: &Path, bytes: &[u8], sync_parent: bool) -> Result<(), PathError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().expect("store paths have a parent");
    let tmp = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(path)(e));
    }
    if sync_parent {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Reads a whole file into `buf` (replacing what it held), reusing its capacity. Unlike
/// `std::fs::read` it asks for no size first (std's `File::read_to_end` stats and seeks
/// before reading): open, read, read, close, where thousands of small files are read.
pub fn read_file_into(path: &Path, buf: &mut Vec<u8>) -> std::io::Result<()> {
    read_to_end(std::fs::File::open(path)?, buf, End::Eof, usize::MAX).map(|_| ())
}

/// `read_file_into` that keeps no more than `limit` bytes: returns the file's size, which
/// when it is over `limit` is asked of the file (`buf` then holds only its start). A huge
/// file costs its limit, not its size, before it is refused.
pub fn read_file_upto(path: &Path, buf: &mut Vec<u8>, limit: u64) -> std::io::Result<u64> {
    read_to_end(std::fs::File::open(path)?, buf, End::Eof, cap(limit))
}

fn cap(limit: u64) -> usize {
    usize::try_from(limit).unwrap_or(usize::MAX)
}

/// The rest of `file` into `buf` (replacing what it held), without asking for its size, and
/// straight into the buffer's spare room: std's `read_to_end` zeroes that room first (16 KiB
/// per file here, which showed in profiles of diff).
///
/// `End::ShortRead` stops at the first read shorter than asked, which for a regular file is
/// its end, saving the read that would return 0; only for callers that check the bytes
/// against a hash afterwards (and read again to the confirmed end when they do not match).
///
/// At most `cap` bytes are kept. Returns the file's size: the bytes read, or when there is
/// more than `cap` (one more byte read aside, so the buffer does not grow for it), the size
/// the file reports.
fn read_to_end(
    file: std::fs::File,
    buf: &mut Vec<u8>,
    end: End,
    cap: usize,
) -> std::io::Result<u64> {
    use std::os::fd::AsRawFd;
    buf.clear();
    loop {
        if buf.len() >= cap {
            use std::io::Read;
            let mut more = [0u8; 1];
            let extra = loop {
                match (&file).read(&mut more) {
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    read => break read?,
                }
            };
            return match extra {
                0 => Ok(buf.len() as u64),
                _ => Ok(file.metadata()?.len().max(buf.len() as u64 + 1)),
            };
        }
        if buf.capacity() - buf.len() < 4 << 10 {
            buf.reserve((16 << 10).max(buf.len()).min(cap - buf.len()));
        }
        let room = cap - buf.len();
        let spare = buf.spare_capacity_mut();
        let asked = spare.len().min(room);
        // SAFETY: read(2) writes at most `spare.len()` bytes into the spare room it is given,
        // on a descriptor `file` owns.
        let n = unsafe { libc::read(file.as_raw_fd(), spare.as_mut_ptr().cast(), asked) };
        match n {
            0 => return Ok(buf.len() as u64),
            n if n > 0 => {
                // SAFETY: the kernel initialised the `n` bytes after the current length.
                unsafe { buf.set_len(buf.len() + n as usize) };
                if end == End::ShortRead && (n as usize) < asked {
                    return Ok(buf.len() as u64);
                }
            }
            _ => {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}

/// Where `read_to_end` takes a file to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// At a read that returns nothing: the end, confirmed.
    Eof,
    /// At the first short read (or one that returns nothing).
    ShortRead,
}

/// A directory opened once, so that the many files read from it are opened relative to it:
/// the kernel then resolves one name per file, not every component of its path again (a diff
/// of 10,000 objects opens 20,000 files, where path walks showed in profiles).
#[derive(Debug)]
pub struct DirHandle(std::os::fd::OwnedFd);

impl DirHandle {
    /// Opens `dir` as a handle for lookups only (`O_PATH`): it needs no read permission.
    pub fn open(dir: &Path) -> std::io::Result<DirHandle> {
        use std::os::unix::fs::OpenOptionsExt;
        #[cfg(target_os = "linux")]
        let flags = libc::O_DIRECTORY | libc::O_PATH;
        #[cfg(not(target_os = "linux"))]
        let flags = libc::O_DIRECTORY;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(flags)
            .open(dir)?;
        Ok(DirHandle(file.into()))
    }

    /// `read_file_into` for the file `name` in this directory (a plain name, no `/`). A
    /// symlink is not followed (an error): callers name regular files they listed, and a
    /// file swapped for a link since must not lead outside the directory.
    pub fn read_into(&self, name: &str, buf: &mut Vec<u8>) -> std::io::Result<()> {
        read_to_end(self.open_file(name)?, buf, End::Eof, usize::MAX).map(|_| ())
    }

    /// `read_into` with `read_file_upto`'s limit: returns the file's size.
    pub fn read_upto(&self, name: &str, buf: &mut Vec<u8>, limit: u64) -> std::io::Result<u64> {
        read_to_end(self.open_file(name)?, buf, End::Eof, cap(limit))
    }

    /// `read_into`, ending at the first short read: for files whose bytes are then checked
    /// against a hash, which proves them whole (a mismatch must be read again with
    /// `read_into` before it is called damage).
    pub fn read_hashed_into(&self, name: &str, buf: &mut Vec<u8>) -> std::io::Result<()> {
        read_to_end(self.open_file(name)?, buf, End::ShortRead, usize::MAX).map(|_| ())
    }

    /// Opens the regular file `name` in this directory for reading, not following a symlink.
    fn open_file(&self, name: &str) -> std::io::Result<std::fs::File> {
        use std::os::fd::{AsRawFd, FromRawFd};
        // The name as a C string, on the stack when it fits (it nearly always does).
        let mut stack = [0u8; 256];
        let heap;
        let c_name: &std::ffi::CStr = if name.len() < stack.len() && !name.contains('\0') {
            stack[..name.len()].copy_from_slice(name.as_bytes());
            std::ffi::CStr::from_bytes_until_nul(&stack).expect("ends in a NUL")
        } else {
            heap = std::ffi::CString::new(name)
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
            &heap
        };
        // SAFETY: a NUL-terminated name and a directory descriptor this handle owns.
        let fd = unsafe {
            libc::openat(
                self.0.as_raw_fd(),
                c_name.as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: openat returned a new descriptor that nothing else owns.
        Ok(unsafe { std::fs::File::from_raw_fd(fd) })
    }
}

/// Writes a file atomically and durably with mode 0600 (also used for known_hosts).
pub fn write_private_file(path: &Path, bytes: &[u8]) -> Result<(), PathError> {
    write_file(path, bytes, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_handle_reads_its_files_and_follows_no_symlink() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.json"), b"{}").unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"x").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("b.json"))
            .unwrap();
        let handle = DirHandle::open(dir.path()).unwrap();
        let mut buf = b"old".to_vec();
        handle.read_into("a.json", &mut buf).unwrap();
        assert_eq!(buf, b"{}");
        let err = handle.read_into("b.json", &mut buf).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ELOOP), "{err}");
        assert!(handle.read_into("missing.json", &mut buf).is_err());
        // Larger than one read's room: read to its end, whole.
        let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.path().join("big.json"), &big).unwrap();
        handle.read_into("big.json", &mut buf).unwrap();
        assert_eq!(buf, big);
        // Up to a limit: the file whole when it fits, else only the limit kept and its size told.
        assert_eq!(
            handle.read_upto("big.json", &mut buf, 100_000).unwrap(),
            100_000
        );
        assert_eq!(buf, big);
        assert_eq!(
            handle.read_upto("big.json", &mut buf, 99_999).unwrap(),
            100_000
        );
        assert_eq!(buf, big[..99_999]);
        assert_eq!(handle.read_upto("big.json", &mut buf, 0).unwrap(), 100_000);
        assert!(buf.is_empty());
        let path = dir.path().join("big.json");
        assert_eq!(read_file_upto(&path, &mut buf, 10).unwrap(), 100_000);
        assert_eq!(buf, big[..10]);
        // Ending at the first short read gives the same bytes from a regular file, and the same
        // refusal of a symlink.
        buf = b"old".to_vec();
        handle.read_hashed_into("big.json", &mut buf).unwrap();
        assert_eq!(buf, big);
        handle.read_hashed_into("a.json", &mut buf).unwrap();
        assert_eq!(buf, b"{}");
        let err = handle.read_hashed_into("b.json", &mut buf).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ELOOP), "{err}");
    }
}
