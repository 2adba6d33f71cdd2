//! Sources of desired state: a directory (files as they are) or a git repository (the committed
//! tree at a ref, read with git2 without a checkout). A source hands out bytes and where they
//! came from; it never parses them.

mod dir;
mod git;
pub use git::ssh_host;

use crate::manifest::SourceFile;
use crate::model::Origin;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Where the desired state is read from, as the user gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    Dir {
        root: PathBuf,
        subdir: Option<String>,
    },
    Git {
        /// A local repository path or a `file://`, `https://` or `ssh://` URL.
        repo: String,
        reference: String,
        subdir: Option<String>,
    },
}

impl SourceSpec {
    /// Builds a spec from the command-line/config words: a URL is always git; a path is git
    /// when a ref is given, a directory otherwise.
    pub fn new(location: &str, reference: Option<&str>, subdir: Option<&str>) -> SourceSpec {
        let subdir = subdir
            .map(|s| s.trim_matches('/').to_string())
            .filter(|s| !s.is_empty());
        if is_url(location) || reference.is_some() {
            SourceSpec::Git {
                repo: location.to_string(),
                reference: reference.unwrap_or("HEAD").to_string(),
                subdir,
            }
        } else {
            SourceSpec::Dir {
                root: PathBuf::from(location),
                subdir,
            }
        }
    }

    pub fn describe(&self) -> String {
        match self {
            SourceSpec::Dir { root, subdir } => match subdir {
                Some(s) => root.join(s).display().to_string(),
                None => root.display().to_string(),
            },
            SourceSpec::Git {
                repo,
                reference,
                subdir,
            } => match subdir {
                Some(s) => format!("{repo} @ {reference} : {s}"),
                None => format!("{repo} @ {reference}"),
            },
        }
    }
}

pub fn is_url(s: &str) -> bool {
    s.contains("://")
}

/// Everything a source read: the manifest files, and the commit for git sources.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub files: Vec<SourceFile>,
    pub commit: Option<String>,
    /// Files drover does not read (not hidden, not a manifest by name), so that a source
    /// that reads as empty says why.
    pub skipped: Vec<String>,
}

impl Snapshot {
    /// `skipped 3 files: not *.json, *.toml, *.yaml or *.yml (a.txt, b.md, notes.txt)`, or nothing.
    pub fn skipped_note(&self) -> Option<String> {
        const SHOWN: usize = 5;
        let n = self.skipped.len();
        if n == 0 {
            return None;
        }
        let mut names = self.skipped[..n.min(SHOWN)].join(", ");
        if n > SHOWN {
            names.push_str(&format!(", and {} more", n - SHOWN));
        }
        Some(format!(
            "skipped {n} file{}: not *.json, *.toml, *.yaml or *.yml ({names})",
            if n == 1 { "" } else { "s" }
        ))
    }
}

#[derive(Debug, Error)]
pub enum SourceError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: symlink points outside the source directory ({target}); refusing to read it")]
    SymlinkEscapes { path: String, target: String },
    #[error("{path}: not a directory")]
    NotADirectory { path: String },
    #[error("git {repo}: {message}")]
    Git { repo: String, message: String },
}

/// Options for reading remote git sources.
#[derive(Debug, Clone, Default)]
pub struct GitOptions {
    /// Where bare clones of remote repositories are cached (inside the state directory).
    pub cache_dir: PathBuf,
    /// SSH identity for `ssh://` remotes (an ssh-agent is tried first).
    pub ssh_identity: Option<PathBuf>,
    /// The known_hosts file an `ssh://` remote's host key is checked against (the minions').
    pub known_hosts: PathBuf,
    /// A manifest blob larger than this is refused by the size its object header gives,
    /// before it is inflated (`max_manifest_bytes`).
    pub max_file_bytes: Option<u64>,
}

/// Reads the whole source. Either every file is read or the read fails: a partial read must
/// never be mistaken for a source with fewer objects.
pub fn read(spec: &SourceSpec, git: &GitOptions) -> Result<Snapshot, SourceError> {
    match spec {
        SourceSpec::Dir { root, subdir } => dir::read(root, subdir.as_deref()),
        SourceSpec::Git {
            repo,
            reference,
            subdir,
        } => git::read(repo, reference, subdir.as_deref(), git),
    }
}

/// A source's files found but (for a directory) not yet read: each is read when its turn
/// comes, so a large source is parsed as it is read and its text is never held whole.
#[derive(Debug)]
pub struct Listing {
    pub files: Vec<PendingFile>,
    pub commit: Option<String>,
    /// As `Snapshot::skipped`.
    pub skipped: Vec<String>,
}

impl Listing {
    pub fn skipped_note(&self) -> Option<String> {
        Snapshot {
            files: Vec::new(),
            commit: None,
            skipped: self.skipped.clone(),
        }
        .skipped_note()
    }
}

/// One manifest file of a `Listing`.
#[derive(Debug)]
pub struct PendingFile {
    pub origin: Origin,
    body: Body,
}

#[derive(Debug)]
enum Body {
    /// A directory source's file, read on demand.
    Path(PathBuf),
    /// The same, named in a directory opened once for all its files.
    At(std::sync::Arc<crate::files::DirHandle>, String),
    /// Bytes already read (git blobs), handed out once.
    Read(std::sync::Mutex<Vec<u8>>),
}

impl PendingFile {
    /// Puts the file's bytes in `buf` (replacing what it held) and returns the file's size. A
    /// file of a directory is read now, no further than `limit` and one byte: one over it
    /// costs the limit, not its size, and its size is asked of the file. Bytes read before
    /// (git blobs, whose size was checked by their header) are handed over and not kept.
    pub fn read_into(&self, buf: &mut Vec<u8>, limit: u64) -> Result<u64, SourceError> {
        buf.clear();
        let io = |source| SourceError::Io {
            path: self.origin.file.clone(),
            source,
        };
        match &self.body {
            // Into a buffer reused across files: no size query and no allocation per file.
            Body::Path(path) => crate::files::read_file_upto(path, buf, limit).map_err(io),
            Body::At(dir, name) => dir.read_upto(name, buf, limit).map_err(io),
            Body::Read(bytes) => {
                std::mem::swap(buf, &mut bytes.lock().unwrap_or_else(|e| e.into_inner()));
                Ok(buf.len() as u64)
            }
        }
    }
}

/// Lists the source: a directory's manifest files (read later, by `PendingFile::read_into`),
/// or a git tree's (read now, from the object database).
pub fn list(spec: &SourceSpec, git: &GitOptions) -> Result<Listing, SourceError> {
    match spec {
        SourceSpec::Dir { root, subdir } => dir::list(root, subdir.as_deref()),
        SourceSpec::Git { .. } => {
            let snapshot = read(spec, git)?;
            Ok(Listing {
                files: snapshot
                    .files
                    .into_iter()
                    .map(|f| PendingFile {
                        origin: f.origin,
                        body: Body::Read(std::sync::Mutex::new(f.bytes)),
                    })
                    .collect(),
                commit: snapshot.commit,
                skipped: snapshot.skipped,
            })
        }
    }
}

/// The commit a git source's ref points at now (fetching a remote first); `None` for a
/// directory. The daemon polls this to notice new commits without reading the whole tree.
pub fn head_commit(spec: &SourceSpec, opts: &GitOptions) -> Result<Option<String>, SourceError> {
    match spec {
        SourceSpec::Dir { .. } => Ok(None),
        SourceSpec::Git {
            repo, reference, ..
        } => git::resolve(repo, reference, opts).map(Some),
    }
}

fn is_hidden(name: &str) -> bool {
    name.starts_with('.')
}

fn display(p: &Path) -> String {
    p.display().to_string()
}
