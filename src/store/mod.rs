//! The local file store: drover's memory between runs, kept as plain files under `state_dir`.
//!
//! ```text
//! state_dir/                       0700
//!   state.json                     the index: format, resourceVersion, every object's version
//!   objects/<section>/<kind>/<id>@<rv>.json
//!   lock                           held by the one process allowed to write
//!   events.json                    the bounded event log (`crate::events`), outside the index
//! ```
//! Object files are never overwritten: a commit writes new `<id>@<rv>.json` files, then swaps
//! the index in with one atomic rename, then removes the files it superseded. A crash at any
//! point leaves the old index (pointing at old files, still present) or the new one (pointing at
//! new files, already durable): the previous state or the next, never a mix.
//!
//! Every file is written to a temp name, fsynced, renamed, and its directory fsynced. A file that
//! cannot be read or does not match its recorded hash is an error naming it, never an empty state.

mod fsutil;
mod lock;

pub use lock::StoreLock;

/// Creates a directory (and parents) with mode 0700, tightening an existing one (also used
/// for the git cache under `state_dir`).
pub fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    fsutil::create_private_dir(dir)
}

/// Reads a whole file into `buf` (replacing what it held), reusing its capacity. Unlike
/// `std::fs::read` it asks for no size first (std's `File::read_to_end` stats and seeks
/// before reading): open, read, read, close, where thousands of small files are read.
pub fn read_file_into(path: &Path, buf: &mut Vec<u8>) -> std::io::Result<()> {
    use std::io::Read;
    /// A `File` without its size-asking `read_to_end`.
    struct Plain(std::fs::File);
    impl Read for Plain {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            self.0.read(out)
        }
    }
    buf.clear();
    if buf.capacity() < 16 << 10 {
        buf.reserve(16 << 10);
    }
    Plain(std::fs::File::open(path)?).read_to_end(buf).map(drop)
}

/// Writes a file atomically and durably with mode 0600 (also used for known_hosts).
pub fn write_private_file(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    fsutil::write_file(path, bytes, true)
}

use crate::model::{Kind, ObjectKey, Origin};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// The on-disk format this build reads and writes.
/// Format 1 (before pods and minions were kept) is read in place (`IndexV1::upgrade`) and
/// moved to the format 2 layout by the next commit.
pub const FORMAT_VERSION: u32 = 2;
const INDEX_FILE: &str = "state.json";
const EVENTS_FILE: &str = "events.json";
/// The key of the secret masks' fingerprints (`plan::objects::MaskKey`): 64 hex digits, 0600.
const MASK_KEY_FILE: &str = "mask.key";

/// The two halves of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Section {
    /// The source's objects as last applied and seen converged: what `drover diff` compares
    /// the source with.
    Applied,
    /// Pods and minions as last seen on the minions (rebuilt from their containers' labels).
    Observed,
    /// The project's inventory: the objects whose pods it made, recorded before the first pod
    /// of each is made; pruning touches only pods of these (`plan::inventory`).
    Inventory,
    /// Every service's endpoints as last computed (`plan::endpoints`): what a standalone
    /// `drover proxy` serves and `get services` shows.
    Endpoints,
}

impl Section {
    pub const ALL: [Section; 4] = [
        Section::Applied,
        Section::Observed,
        Section::Inventory,
        Section::Endpoints,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Section::Applied => "applied",
            Section::Observed => "observed",
            Section::Inventory => "inventory",
            Section::Endpoints => "endpoints",
        }
    }
}

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: damaged state file: {reason}")]
    Damaged { path: PathBuf, reason: String },
    #[error("{path}: written by a newer drover (store format {found}, this build reads {FORMAT_VERSION}); upgrade drover")]
    NewerFormat { path: PathBuf, found: u32 },
    #[error("state directory {dir} is locked by another drover process ({holder}); wait for it to finish or stop it")]
    Locked { dir: PathBuf, holder: String },
    #[error("cannot store {key}: its id is not a valid file name")]
    BadKey { key: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One object's line in the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Entry {
    /// The store resource version at which this object last changed.
    pub resource_version: u64,
    /// Content hash of the object file (SHA-256 of its bytes).
    pub hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
    /// Read from a format 1 index: the file still sits where format 1 kept it.
    #[serde(skip)]
    v1_path: bool,
}

impl Entry {
    pub fn new(resource_version: u64, hash: String, origin: Option<Origin>) -> Entry {
        Entry {
            resource_version,
            hash,
            origin,
            v1_path: false,
        }
    }
}

/// The index: which version of which object is current.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Index {
    pub format: u32,
    /// Grows by one with every commit.
    pub resource_version: u64,
    #[serde(with = "keyed")]
    pub applied: BTreeMap<ObjectKey, Entry>,
    #[serde(with = "keyed")]
    pub observed: BTreeMap<ObjectKey, Entry>,
    /// Absent in stores written before projects existed: their applied objects stand in.
    #[serde(with = "keyed", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inventory: BTreeMap<ObjectKey, Entry>,
    #[serde(with = "keyed", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub endpoints: BTreeMap<ObjectKey, Entry>,
}

impl Index {
    pub fn section(&self, section: Section) -> &BTreeMap<ObjectKey, Entry> {
        match section {
            Section::Applied => &self.applied,
            Section::Observed => &self.observed,
            Section::Inventory => &self.inventory,
            Section::Endpoints => &self.endpoints,
        }
    }

    fn section_mut(&mut self, section: Section) -> &mut BTreeMap<ObjectKey, Entry> {
        match section {
            Section::Applied => &mut self.applied,
            Section::Observed => &mut self.observed,
            Section::Inventory => &mut self.inventory,
            Section::Endpoints => &mut self.endpoints,
        }
    }
}

/// Whether an object id can be a file name here: a manifest name (letters, digits, `-`, `.`,
/// `_`) or several joined by `+`; never starting with `.`, never a path separator or `@`
/// (which ends the id in a file name).
fn valid_file_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 200
        && id.starts_with(|c: char| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '+'))
}

/// Where format 1 kept the objects it called "observed": the applied objects of format 2.
const V1_APPLIED_DIR: &str = "observed";

/// A format 1 index: `observed` held the applied objects, `desired` was never written.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct IndexV1 {
    #[allow(dead_code)]
    format: u32,
    resource_version: u64,
    #[serde(with = "keyed")]
    #[allow(dead_code)]
    desired: BTreeMap<ObjectKey, Entry>,
    #[serde(with = "keyed")]
    observed: BTreeMap<ObjectKey, Entry>,
}

impl IndexV1 {
    fn upgrade(self) -> Index {
        Index {
            format: 1,
            resource_version: self.resource_version,
            applied: self
                .observed
                .into_iter()
                .map(|(k, e)| (k, Entry { v1_path: true, ..e }))
                .collect(),
            observed: BTreeMap::new(),
            inventory: BTreeMap::new(),
            endpoints: BTreeMap::new(),
        }
    }
}

/// Serialises `ObjectKey` map keys as `Kind/id` strings.
mod keyed {
    use super::{Entry, ObjectKey};
    use serde::{de::Error, Deserializer, Serializer};
    use std::collections::BTreeMap;

    pub fn serialize<S: Serializer>(
        m: &BTreeMap<ObjectKey, Entry>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_map(m.iter().map(|(k, v)| (k.to_string(), v)))
    }

    /// Straight into the keyed map, without a map of strings first: the index of a large
    /// store is a good part of what `diff` holds.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<ObjectKey, Entry>, D::Error> {
        struct Keyed;
        impl<'de> serde::de::Visitor<'de> for Keyed {
            type Value = BTreeMap<ObjectKey, Entry>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of `Kind/id` keys to entries")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(k) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    let key = ObjectKey::parse(&k)
                        .ok_or_else(|| A::Error::custom(format!("bad object key `{k}`")))?;
                    // A repeated key: the last one wins, as a map of strings did.
                    out.insert(key, map.next_value::<Entry>()?);
                }
                Ok(out)
            }
        }
        d.deserialize_map(Keyed)
    }
}

/// The content hash used in the index: SHA-256 of the bytes in hex, so `sha256sum` on an
/// object file gives the same value.
pub fn content_hash(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    let mut hex = String::with_capacity(64);
    for b in digest {
        hex.push(char::from_digit(u32::from(b >> 4), 16).expect("nibble"));
        hex.push(char::from_digit(u32::from(b & 0xf), 16).expect("nibble"));
    }
    hex
}

/// Whether `bytes` have the content hash `hex` (as `content_hash` writes it), without
/// making the hash's text.
pub fn hash_matches(bytes: &[u8], hex: &str) -> bool {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    let hex = hex.as_bytes();
    hex.len() == 64
        && digest.iter().enumerate().all(|(i, b)| {
            let digit = |n: u8| b"0123456789abcdef"[usize::from(n)];
            hex[2 * i] == digit(b >> 4) && hex[2 * i + 1] == digit(b & 0xf)
        })
}

/// 32 bytes from the system's random source (a mask key for a state directory that has none,
/// or for one run of `diff`, which never writes the store).
pub fn random_key() -> std::io::Result<[u8; 32]> {
    use std::io::Read;
    let mut key = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
    Ok(key)
}

/// Parses the bytes of an index read from `path` (named in errors). Pure: the fuzz target
/// `store_index` drives it with arbitrary bytes.
pub fn parse_index(path: &Path, bytes: &[u8]) -> Result<Index, StoreError> {
    // The usual case in one pass: a current index. Anything else (format 1, a newer format,
    // damage) goes the careful way below, which reads the format first.
    if let Ok(index) = serde_json::from_slice::<Index>(bytes) {
        if index.format != 1 && index.format <= FORMAT_VERSION {
            return checked_index(path, index);
        }
    }
    // Check the format before the shape, so a newer store says "upgrade", not "damaged".
    #[derive(Deserialize)]
    struct FormatOnly {
        format: u32,
    }
    let format = serde_json::from_slice::<FormatOnly>(bytes).map(|f| f.format);
    if let Ok(found) = format {
        if found > FORMAT_VERSION {
            return Err(StoreError::NewerFormat {
                path: path.to_path_buf(),
                found,
            });
        }
    }
    let damaged = |e: serde_json::Error| StoreError::Damaged {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let index: Index = match format {
        Ok(1) => serde_json::from_slice::<IndexV1>(bytes)
            .map(IndexV1::upgrade)
            .map_err(damaged)?,
        _ => serde_json::from_slice(bytes).map_err(damaged)?,
    };
    checked_index(path, index)
}

/// The index, once its ids and hashes are known to be sound.
fn checked_index(path: &Path, index: Index) -> Result<Index, StoreError> {
    // Ids become file names and hashes are compared as text: a damaged index must not name
    // a path outside the store, nor a hash no file can have.
    for section in Section::ALL {
        for (key, entry) in index.section(section) {
            let reason = if !valid_file_id(&key.id) {
                format!(
                    "{} entry {key}: the id is not a valid file name",
                    section.as_str()
                )
            } else if entry.hash.len() != 64
                || !entry
                    .hash
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            {
                format!(
                    "{} entry {key}: the hash is not a SHA-256 in hex",
                    section.as_str()
                )
            } else {
                continue;
            };
            return Err(StoreError::Damaged {
                path: path.to_path_buf(),
                reason,
            });
        }
    }
    Ok(index)
}

/// A set of changes committed together: all of them, or none.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    puts: Vec<(Section, ObjectKey, String, Option<Origin>)>,
    deletes: Vec<(Section, ObjectKey)>,
}

impl Batch {
    pub fn put(&mut self, section: Section, key: ObjectKey, text: String, origin: Option<Origin>) {
        self.puts.push((section, key, text, origin));
    }

    pub fn delete(&mut self, section: Section, key: ObjectKey) {
        self.deletes.push((section, key));
    }

    /// Adds another batch's changes to this one.
    pub fn extend(&mut self, other: Batch) {
        self.puts.extend(other.puts);
        self.deletes.extend(other.deletes);
    }

    pub fn is_empty(&self) -> bool {
        self.puts.is_empty() && self.deletes.is_empty()
    }

    /// The objects this batch writes into `section`, with their texts.
    pub fn puts_in(&self, section: Section) -> impl Iterator<Item = (&ObjectKey, &str)> {
        self.puts
            .iter()
            .filter(move |(s, ..)| *s == section)
            .map(|(_, k, t, _)| (k, t.as_str()))
    }

    /// The objects this batch removes from `section`.
    pub fn deletes_in(&self, section: Section) -> impl Iterator<Item = &ObjectKey> {
        self.deletes
            .iter()
            .filter(move |(s, _)| *s == section)
            .map(|(_, k)| k)
    }
}

#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn new(dir: impl Into<PathBuf>) -> Store {
        Store { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn index_path(&self) -> PathBuf {
        self.dir.join(INDEX_FILE)
    }

    /// The event log (`events.json`): kept beside the index, outside its resource versions,
    /// because events only tell what happened and never decide what drover does. Absent is
    /// empty; damaged is an error naming the file (the daemon then starts a new log).
    pub fn read_events(&self) -> Result<crate::events::EventLog, StoreError> {
        let path = self.dir.join(EVENTS_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::Damaged {
                path: path.clone(),
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Default::default()),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Replaces the event log, atomically, 0600. Needs the lock.
    pub fn write_events(
        &self,
        _lock: &StoreLock,
        log: &crate::events::EventLog,
    ) -> Result<(), StoreError> {
        let text = serde_json::to_vec_pretty(log).expect("events serialise");
        write_private_file(&self.dir.join(EVENTS_FILE), &text)
    }

    fn object_path(&self, section: Section, key: &ObjectKey, rv: u64) -> PathBuf {
        self.object_path_in(section.as_str(), key, rv)
    }

    fn entry_path(&self, section: Section, key: &ObjectKey, entry: &Entry) -> PathBuf {
        let dir = if entry.v1_path {
            V1_APPLIED_DIR
        } else {
            section.as_str()
        };
        self.object_path_in(dir, key, entry.resource_version)
    }

    fn object_path_in(&self, section_dir: &str, key: &ObjectKey, rv: u64) -> PathBuf {
        self.dir
            .join("objects")
            .join(section_dir)
            .join(key.kind.plural())
            .join(format!("{}@{rv}.json", key.id))
    }

    /// Reads the index. No state directory or no index yet is the empty state of a first run;
    /// anything unreadable is an error.
    pub fn read_index(&self) -> Result<Index, StoreError> {
        let path = self.index_path();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Index {
                    format: FORMAT_VERSION,
                    ..Index::default()
                })
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        parse_index(&path, &bytes)
    }

    /// Reads one object's text and checks it against the index's hash.
    pub fn read_object(
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
        let path = self.entry_path(section, key, entry);
        read_file_into(&path, buf).map_err(io_err(&path))?;
        if !hash_matches(buf, &entry.hash) {
            return Err(StoreError::Damaged {
                path,
                reason: "contents do not match the hash recorded in state.json".into(),
            });
        }
        if std::str::from_utf8(buf).is_err() {
            return Err(StoreError::Damaged {
                path,
                reason: "not UTF-8".into(),
            });
        }
        Ok(())
    }

    /// Reads the index and every object file it names, checking each against its hash. Damage
    /// anywhere (a truncated index, a changed, missing or unreadable object) is an error naming
    /// the file. Commands that act (apply, the daemon) and `diff` call it first, so nothing
    /// changes on the minions or in the store on top of a damaged store.
    pub fn verify(&self) -> Result<Index, StoreError> {
        let index = self.read_index()?;
        self.verify_objects(&index)?;
        Ok(index)
    }

    /// The second half of `verify`: every object file `index` names, read and checked
    /// against its hash (on several threads, each reading into one buffer it reuses). The
    /// first damage in index order is the error.
    pub fn verify_objects(&self, index: &Index) -> Result<(), StoreError> {
        let entries: Vec<(Section, &ObjectKey, &Entry)> = Section::ALL
            .into_iter()
            .flat_map(|s| index.section(s).iter().map(move |(k, e)| (s, k, e)))
            .collect();
        crate::par::map_init(&entries, Vec::new, |buf, (section, key, entry)| {
            self.read_object_into(*section, key, entry, buf)
        })
        .into_iter()
        .collect::<Result<(), StoreError>>()
    }

    /// Reads every object of a section.
    pub fn read_section(
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

    /// The key for masking secrets in displayed objects, if one was made (the first command
    /// that takes the lock makes it). A damaged key file is an error naming it.
    pub fn mask_key(&self) -> Result<Option<[u8; 32]>, StoreError> {
        let path = self.dir.join(MASK_KEY_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let text = text.trim();
        let mut key = [0u8; 32];
        let ok = text.len() == 64
            && key.iter_mut().enumerate().all(|(i, b)| {
                u8::from_str_radix(text.get(2 * i..2 * i + 2).unwrap_or("x"), 16)
                    .map(|v| *b = v)
                    .is_ok()
            });
        if !ok {
            return Err(StoreError::Damaged {
                path,
                reason: "not a key of 64 hex digits".into(),
            });
        }
        Ok(Some(key))
    }

    /// Makes the mask key from the system's random source if there is none yet.
    fn ensure_mask_key(&self) -> Result<(), StoreError> {
        if self.mask_key()?.is_some() {
            return Ok(());
        }
        let text: String = random_key()
            .map_err(io_err(Path::new("/dev/urandom")))?
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        write_private_file(
            &self.dir.join(MASK_KEY_FILE),
            format!("{text}\n").as_bytes(),
        )
    }

    /// Takes the writer lock, waiting up to `wait` for another drover to release it.
    pub fn lock(&self, command: &str, wait: std::time::Duration) -> Result<StoreLock, StoreError> {
        fsutil::create_private_dir(&self.dir)?;
        let lock = lock::acquire(&self.dir, command, wait)?;
        // The one writer now: clear what a crashed writer left behind, so garbage cannot pile
        // up over repeated crashes.
        if let Ok(index) = self.read_index() {
            self.sweep(&index);
        }
        self.ensure_mask_key()?;
        Ok(lock)
    }

    /// Applies a batch atomically and returns the new resource version. Needs the lock.
    pub fn commit(&self, lock: &StoreLock, batch: &Batch) -> Result<u64, StoreError> {
        let started = std::time::Instant::now();
        let result = self.commit_untimed(lock, batch);
        if !batch.is_empty() {
            crate::metrics::global()
                .store_commit_duration
                .observe(started.elapsed().as_secs_f64());
        }
        result
    }

    fn commit_untimed(&self, _lock: &StoreLock, batch: &Batch) -> Result<u64, StoreError> {
        let mut index = self.read_index()?;
        if batch.is_empty() {
            return Ok(index.resource_version);
        }
        let rv = index.resource_version + 1;
        let mut superseded = Vec::new();
        let mut touched_dirs = std::collections::BTreeSet::new();
        // A format 1 store's objects move to their format 2 place with this commit.
        let mut puts: Vec<(Section, ObjectKey, String, Option<Origin>)> = Vec::new();
        for (key, entry) in index.applied.iter().filter(|(_, e)| e.v1_path) {
            let text = self.read_object(Section::Applied, key, entry)?;
            puts.push((Section::Applied, key.clone(), text, entry.origin.clone()));
        }
        puts.retain(|(_, k, _, _)| {
            !batch
                .puts
                .iter()
                .any(|(s, bk, _, _)| *s == Section::Applied && bk == k)
        });
        for (section, key, text, origin) in batch.puts.iter().chain(&puts) {
            if !valid_file_id(&key.id) {
                return Err(StoreError::BadKey {
                    key: key.to_string(),
                });
            }
            let path = self.object_path(*section, key, rv);
            let dir = path
                .parent()
                .expect("object paths have a parent")
                .to_path_buf();
            if touched_dirs.insert(dir.clone()) {
                fsutil::create_private_dir(&dir)?;
            }
            fsutil::write_file(&path, text.as_bytes(), false)?;
            let entry = Entry::new(rv, content_hash(text.as_bytes()), origin.clone());
            if let Some(old) = index.section_mut(*section).insert(key.clone(), entry) {
                superseded.push(self.entry_path(*section, key, &old));
            }
        }
        for (section, key) in &batch.deletes {
            if let Some(old) = index.section_mut(*section).remove(key) {
                superseded.push(self.entry_path(*section, key, &old));
            }
        }
        // New object files must be durable before the index that names them.
        for dir in &touched_dirs {
            fsutil::sync_dir(dir)?;
        }
        index.format = FORMAT_VERSION;
        index.resource_version = rv;
        let text = serde_json::to_vec_pretty(&index).expect("index serialises");
        fsutil::write_file(&self.index_path(), &text, true)?;
        // The commit point has passed; from here on failures only leave garbage behind,
        // which the sweep of a later commit removes.
        for path in superseded {
            let _ = std::fs::remove_file(path);
        }
        self.sweep(&index);
        Ok(rv)
    }

    /// Removes object files the index does not name: leftovers of a crash between writing
    /// objects and swapping the index, or between the swap and the removals.
    fn sweep(&self, index: &Index) {
        if index.format < FORMAT_VERSION {
            // Its files sit where format 1 kept them; the first commit moves them.
            return;
        }
        for section in Section::ALL {
            for kind in Kind::ALL {
                let dir = self
                    .dir
                    .join("objects")
                    .join(section.as_str())
                    .join(kind.plural());
                let Ok(entries) = std::fs::read_dir(&dir) else {
                    continue;
                };
                for entry in entries.flatten() {
                    let name = entry.file_name();
                    let name = name.to_string_lossy();
                    let keep = name
                        .strip_suffix(".json")
                        .and_then(|s| s.rsplit_once('@'))
                        .and_then(|(id, rv)| Some((id, rv.parse::<u64>().ok()?)))
                        .is_some_and(|(id, rv)| {
                            index
                                .section(section)
                                .get(&ObjectKey::new(kind, id))
                                .is_some_and(|e| e.resource_version == rv)
                        });
                    if !keep {
                        let _ = std::fs::remove_file(entry.path());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
