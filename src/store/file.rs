//! The file store: plain files under `state_dir` (see the layout in `store`'s docs). Object
//! files are never overwritten: a commit writes new `<id>@<rv>.json` files, then swaps the
//! index in with one atomic rename, then removes the files it superseded. The OS lock in
//! `lock.rs` keeps a second writer out.

use super::{
    entry_rel, io_err, kind_rel, lock, named_by, parse_index, plan_commit, Batch, Entry, Holder,
    Index, Section, StoreError, FORMAT_VERSION, INDEX_FILE,
};
use crate::model::{ObjectKey, Origin};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The first regular file under `dir`, if any (a missing directory holds none).
fn any_file(dir: &Path) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_file() {
            return Some(entry.path());
        }
        if kind.is_dir() {
            if let Some(found) = any_file(&entry.path()) {
                return Some(found);
            }
        }
    }
    None
}

#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    pub fn new(dir: impl Into<PathBuf>) -> FileStore {
        FileStore { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A place of the store as a path, for messages.
    pub(super) fn place(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// A file of the store outside the index; absent is `None`.
    pub(super) fn read_raw(&self, rel: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.dir.join(rel);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    fn index_path(&self) -> PathBuf {
        self.dir.join(INDEX_FILE)
    }

    pub(super) fn read_index(&self) -> Result<Index, StoreError> {
        let path = self.index_path();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // New only when nothing was ever committed: object files without the index
                // that names them are a lost index, and reading it as empty would prune nothing
                // and make every pod again.
                if let Some(found) = any_file(&self.dir.join("objects")) {
                    return Err(super::lost_index(&path, &found));
                }
                return Ok(Index {
                    format: FORMAT_VERSION,
                    ..Index::default()
                });
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        parse_index(&path, &bytes)
    }

    pub(super) fn read_object(
        &self,
        section: Section,
        key: &ObjectKey,
        entry: &Entry,
    ) -> Result<String, StoreError> {
        let mut bytes = Vec::new();
        self.read_object_into(section, key, entry, &mut bytes)?;
        Ok(String::from_utf8(bytes).expect("checked by read_object_into"))
    }

    /// `read_object` into a buffer the caller reuses (replacing what it held); the bytes are
    /// checked against the hash and as UTF-8.
    fn read_object_into(
        &self,
        section: Section,
        key: &ObjectKey,
        entry: &Entry,
        buf: &mut Vec<u8>,
    ) -> Result<(), StoreError> {
        let path = self.dir.join(entry_rel(section, key, entry));
        crate::files::read_file_into(&path, buf).map_err(io_err(&path))?;
        self.check_object(section, key, entry, buf)
    }

    /// An object's bytes against the hash the index recorded, and as UTF-8.
    fn check_object(
        &self,
        section: Section,
        key: &ObjectKey,
        entry: &Entry,
        buf: &[u8],
    ) -> Result<(), StoreError> {
        damage(buf, &entry.hash).map_or(Ok(()), |reason| {
            Err(StoreError::Damaged {
                path: self.dir.join(entry_rel(section, key, entry)),
                reason: reason.into(),
            })
        })
    }

    /// Every object file `index` names, read and checked on several threads, each reading
    /// into one buffer it reuses, and opening each file relative to its directory.
    pub(super) fn verify_objects(&self, index: &Index) -> Result<(), StoreError> {
        let entries: Vec<(Section, &ObjectKey, &Entry)> = Section::ALL
            .into_iter()
            .flat_map(|s| index.section(s).iter().map(move |(k, e)| (s, k, e)))
            .collect();
        // A directory that cannot be opened (none of its kind was kept) has no handle: its
        // files, if any, are then read by path, and fail with that path in the message.
        let dirs: Vec<((Section, crate::model::Kind), crate::files::DirHandle)> = Section::ALL
            .into_iter()
            .flat_map(|s| crate::model::Kind::ALL.map(|k| (s, k)))
            .filter_map(|(s, k)| {
                let dir = self.dir.join(kind_rel(s.as_str(), k));
                Some(((s, k), crate::files::DirHandle::open(&dir).ok()?))
            })
            .collect();
        let init = || (Vec::new(), String::new());
        crate::par::map_init(&entries, init, |(buf, name), (section, key, entry)| {
            let handle = dirs
                .iter()
                .find(|(at, _)| *at == (*section, key.kind))
                .filter(|_| !entry.v1_path);
            match handle {
                Some((_, dir)) => {
                    use std::fmt::Write;
                    name.clear();
                    let _ = write!(name, "{}", super::FileName(key, entry.resource_version));
                    // One read(2) for most objects (a short read ends them, and the hash
                    // proves the bytes whole); anything else is read again by path to its
                    // confirmed end, for a sure verdict and the error's message.
                    match dir.read_hashed_into(name, buf) {
                        Ok(()) if self.check_object(*section, key, entry, buf).is_ok() => Ok(()),
                        _ => self.read_object_into(*section, key, entry, buf),
                    }
                }
                None => self.read_object_into(*section, key, entry, buf),
            }
        })
        .into_iter()
        .collect()
    }

    /// Reads again when a commit removed a file under it (the index then moved on).
    pub(super) fn verify(&self) -> Result<Index, StoreError> {
        let mut tries = 0;
        loop {
            let index = self.read_index()?;
            match self.verify_at(index) {
                Ok(index) => return Ok(index),
                Err((rv, e)) => {
                    tries += 1;
                    if tries >= 10 || self.read_index()?.resource_version == rv {
                        return Err(e);
                    }
                }
            }
        }
    }

    fn verify_at(&self, index: Index) -> Result<Index, (u64, StoreError)> {
        self.verify_objects(&index)
            .map_err(|e| (index.resource_version, e))?;
        Ok(index)
    }

    pub(super) fn read_section(
        &self,
        index: &Index,
        section: Section,
    ) -> Result<BTreeMap<ObjectKey, String>, StoreError> {
        index
            .section(section)
            .iter()
            .map(|(k, e)| Ok((k.clone(), self.read_object(section, k, e)?)))
            .collect()
    }

    pub(super) fn lock(
        &self,
        command: &str,
        wait: std::time::Duration,
    ) -> Result<lock::FileLock, StoreError> {
        crate::files::create_private_dir(&self.dir)?;
        lock::acquire(&self.dir, command, wait)
    }

    /// The lock file's note when another process holds the lock.
    pub(super) fn holder(&self) -> Option<Holder> {
        lock::holder(&self.dir).map(|who| Holder { who, status: None })
    }

    pub(super) fn sweep_now(&self) {
        if let Ok(index) = self.read_index() {
            self.sweep(&index);
        }
    }

    pub(super) fn commit(&self, batch: &Batch) -> Result<u64, StoreError> {
        let mut index = self.read_index()?;
        if batch.is_empty() {
            return Ok(index.resource_version);
        }
        // A format 1 store's objects move to their format 2 place with this commit.
        let mut moved: Vec<(Section, ObjectKey, String, Option<Origin>)> = Vec::new();
        for (key, entry) in index.applied.iter().filter(|(_, e)| e.v1_path) {
            let text = self.read_object(Section::Applied, key, entry)?;
            moved.push((Section::Applied, key.clone(), text, entry.origin.clone()));
        }
        moved.retain(|(_, k, _, _)| {
            !batch
                .puts
                .iter()
                .any(|(s, bk, _, _)| *s == Section::Applied && bk == k)
        });
        // A first commit writes an empty index before any object: objects without an index
        // are then only ever a lost index, never a first commit cut short.
        if index.resource_version == 0 && !self.index_path().exists() {
            let empty = serde_json::to_vec_pretty(&index).expect("index serialises");
            crate::files::write_file(&self.index_path(), &empty, true)?;
        }
        let planned = plan_commit(&mut index, batch.puts.iter().chain(&moved), &batch.deletes)?;
        let mut touched_dirs = std::collections::BTreeSet::new();
        for (rel, text) in &planned.writes {
            let path = self.dir.join(rel);
            let dir = path
                .parent()
                .expect("object paths have a parent")
                .to_path_buf();
            if touched_dirs.insert(dir.clone()) {
                crate::files::create_private_dir(&dir)?;
            }
            crate::files::write_file(&path, text.as_bytes(), false)?;
        }
        // New object files must be durable before the index that names them.
        for dir in &touched_dirs {
            crate::files::sync_dir(dir)?;
        }
        let text = serde_json::to_vec_pretty(&index).expect("index serialises");
        crate::files::write_file(&self.index_path(), &text, true)?;
        // The commit point has passed; from here on failures only leave garbage behind,
        // which the sweep of a later commit removes.
        for rel in planned.superseded {
            let _ = std::fs::remove_file(self.dir.join(rel));
        }
        self.sweep(&index);
        Ok(planned.rv)
    }

    /// Removes object files the index does not name: leftovers of a crash between writing
    /// objects and swapping the index, or between the swap and the removals.
    fn sweep(&self, index: &Index) {
        if index.format < FORMAT_VERSION {
            // Its files sit where format 1 kept them; the first commit moves them.
            return;
        }
        for section in Section::ALL {
            for kind in crate::model::Kind::ALL {
                let rel_dir = format!("objects/{}/{}", section.as_str(), kind.plural());
                let Ok(entries) = std::fs::read_dir(self.dir.join(&rel_dir)) else {
                    continue;
                };
                for entry in entries.flatten() {
                    let name = entry.file_name();
                    let rel = format!("{rel_dir}/{}", name.to_string_lossy());
                    if !named_by(index, &rel) {
                        let _ = std::fs::remove_file(entry.path());
                    }
                }
            }
        }
    }
}

/// An object's bytes checked against the hash the index recorded.
pub(super) fn checked_text(
    path: PathBuf,
    bytes: Vec<u8>,
    hash: &str,
) -> Result<String, StoreError> {
    match damage(&bytes, hash) {
        Some(reason) => Err(StoreError::Damaged {
            path,
            reason: reason.into(),
        }),
        None => Ok(String::from_utf8(bytes).expect("checked as UTF-8")),
    }
}

/// What is wrong with an object's bytes, if anything: a hash other than the one the index
/// recorded, or text that is not UTF-8.
fn damage(bytes: &[u8], hash: &str) -> Option<&'static str> {
    if !super::hash_matches(bytes, hash) {
        Some("contents do not match the hash recorded in state.json")
    } else if std::str::from_utf8(bytes).is_err() {
        Some("not UTF-8")
    } else {
        None
    }
}
