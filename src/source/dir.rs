//! Directory sources: recursive, `*.json`, `*.toml`, `*.yaml` and `*.yml`, hidden entries skipped, symlinks
//! followed only while they stay inside the directory.

use super::{display, is_hidden, Body, Listing, PendingFile, Snapshot, SourceError};
use crate::manifest::{Format, SourceFile};
use crate::model::Origin;
use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

pub fn read(root: &Path, subdir: Option<&str>) -> Result<Snapshot, SourceError> {
    let listing = list(root, subdir)?;
    let files = crate::par::map(&listing.files, |f| {
        let mut bytes = Vec::new();
        f.read_into(&mut bytes, u64::MAX)?;
        Ok(SourceFile {
            origin: f.origin.clone(),
            bytes,
        })
    })
    .into_iter()
    .collect::<Result<Vec<_>, SourceError>>()?;
    Ok(Snapshot {
        files,
        commit: None,
        skipped: listing.skipped,
    })
}

/// Walks the directory and lists its manifest files, in byte order of their paths, unread.
pub fn list(root: &Path, subdir: Option<&str>) -> Result<Listing, SourceError> {
    let io = |path: &Path| {
        let path = display(path);
        move |source| SourceError::Io { path, source }
    };
    let top = match subdir {
        Some(s) => root.join(s),
        None => root.to_path_buf(),
    };
    let canonical_root = fs::canonicalize(root).map_err(io(root))?;
    let canonical_top = fs::canonicalize(&top).map_err(io(&top))?;
    if !canonical_top.starts_with(&canonical_root) {
        return Err(SourceError::SymlinkEscapes {
            path: display(&top),
            target: display(&canonical_top),
        });
    }
    if !canonical_top.is_dir() {
        return Err(SourceError::NotADirectory {
            path: display(&top),
        });
    }
    let mut walk = Walk {
        root: canonical_root,
        handles: 0,
        visited: HashSet::new(),
        found: Vec::new(),
        skipped: Vec::new(),
    };
    walk.dir(&top, &canonical_top)?;
    // Byte order of the path text: deterministic, and much cheaper than comparing components.
    walk.found
        .sort_unstable_by(|a, b| a.0.as_os_str().cmp(b.0.as_os_str()));
    let files = walk
        .found
        .into_iter()
        .map(|(shown, body)| PendingFile {
            origin: Origin {
                file: display(&shown),
                commit: None,
            },
            body,
        })
        .collect();
    let mut skipped: Vec<String> = walk.skipped.iter().map(|p| display(p)).collect();
    skipped.sort();
    Ok(Listing {
        files,
        commit: None,
        skipped,
    })
}

/// Directories kept open for reading their files (each a descriptor held until the source is
/// read): well under the usual limit of 1024 descriptors; files of further directories are
/// opened by their whole path.
const MAX_DIR_HANDLES: usize = 256;

struct Walk {
    root: PathBuf,
    /// Directory handles made so far.
    handles: usize,
    /// Canonical directories already walked: a symlink loop is walked once.
    visited: HashSet<PathBuf>,
    /// (path as the user sees it, how to read it)
    found: Vec<(PathBuf, Body)>,
    /// Files that are not manifests (by name), as the user sees them.
    skipped: Vec<PathBuf>,
}

impl Walk {
    fn dir(&mut self, shown: &Path, real: &Path) -> Result<(), SourceError> {
        if !self.visited.insert(real.to_path_buf()) {
            return Ok(());
        }
        let dir_io = |source| SourceError::Io {
            path: display(shown),
            source,
        };
        let entries = fs::read_dir(real).map_err(dir_io)?;
        // Its files are opened relative to it (made when the first one is found).
        let mut handle: Option<std::sync::Arc<crate::files::DirHandle>> = None;
        for entry in entries {
            let entry = entry.map_err(|source| SourceError::Io {
                path: display(shown),
                source,
            })?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                continue; // not UTF-8: cannot be a *.json / *.toml name we would report sanely
            };
            if is_hidden(name) {
                continue;
            }
            let shown_child = shown.join(name);
            let io = |source| SourceError::Io {
                path: display(&shown_child),
                source,
            };
            // The type comes from readdir itself: no stat per file unless it is a symlink.
            let file_type = entry.file_type().map_err(io)?;
            let mut real_child = None;
            let (mut is_dir, mut is_file) = (file_type.is_dir(), file_type.is_file());
            if file_type.is_symlink() {
                let target = match fs::canonicalize(entry.path()) {
                    Ok(t) => t,
                    // A dangling link drover would not read anyway (`notes.txt`) is skipped;
                    // a dangling `*.json` / `*.toml` is still an error.
                    Err(e)
                        if Format::of(name).is_none()
                            && e.kind() == std::io::ErrorKind::NotFound =>
                    {
                        continue
                    }
                    Err(e) => return Err(io(e)),
                };
                if !target.starts_with(&self.root) {
                    // Only refuse links that would be read: a manifest or a directory.
                    if target.is_dir() || Format::of(name).is_some() {
                        return Err(SourceError::SymlinkEscapes {
                            path: display(&shown_child),
                            target: display(&target),
                        });
                    }
                    continue;
                }
                (is_dir, is_file) = (target.is_dir(), target.is_file());
                real_child = Some(target);
            }
            if is_dir {
                let real_child = real_child.unwrap_or_else(|| entry.path());
                self.dir(&shown_child, &real_child)?;
            } else if is_file && Format::of(name).is_some() {
                let body = match real_child {
                    // A link is read where it leads.
                    Some(target) => Body::Path(target),
                    None => {
                        if handle.is_none() && self.handles < MAX_DIR_HANDLES {
                            self.handles += 1;
                            handle = Some(std::sync::Arc::new(
                                crate::files::DirHandle::open(real).map_err(dir_io)?,
                            ));
                        }
                        match &handle {
                            Some(h) => Body::At(h.clone(), name.to_string()),
                            None => Body::Path(entry.path()),
                        }
                    }
                };
                self.found.push((shown_child, body));
            } else if is_file {
                self.skipped.push(shown_child);
            }
        }
        Ok(())
    }
}
