//! The store: drover's memory between runs, behind one interface ([`Store`]) with two
//! backends: the local file store (`file.rs`, the default: plain files under `state_dir`) and
//! etcd v3 (`etcd.rs`: the same places as keys under a prefix, a commit as one transaction
//! fenced on the writer's lease). Both pass one test suite (tests/store_suite.rs).
//!
//! The file store's layout (etcd's keys follow it):
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

mod etcd;
mod file;
mod lock;

pub use etcd::{EtcdSpec, EtcdTls, LEASE_TTL};
pub use file::FileStore;

pub use crate::files::{create_private_dir, write_private_file};

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
/// The project a store belongs to, once recorded (outside the index, as the mask key):
/// `drover state migrate` writes it into its target, so a project keeps its name where its
/// state goes.
const PROJECT_FILE: &str = "project";

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
    /// etcd could not be reached or refused a request.
    #[error("{store}: {message}")]
    Etcd { store: String, message: String },
    /// A write by a drover that no longer holds the writer lease (its lease lapsed while it
    /// was paused or cut off, and another may lead now): refused by etcd, nothing written.
    #[error("{store}: this drover no longer holds the writer lease (held now by {holder}); nothing was written")]
    NotLeader { store: String, holder: String },
    /// state.json changed between reading it and committing: someone else wrote.
    #[error("{store}: state.json changed while this commit was prepared (another writer?); nothing was written")]
    Conflict { store: String },
    #[error("{store} already holds state; migrate only into an empty store")]
    NotEmpty { store: String },
    /// An etcd URL or its TLS settings that cannot be used.
    #[error("state `{url}`: {reason}")]
    BadLocation { url: String, reason: String },
}

/// The index is missing but `found`, an object version, is there: the index was lost (a new
/// store has no objects), so the store is damaged, not new.
fn lost_index(index: &Path, found: &Path) -> StoreError {
    StoreError::Damaged {
        path: index.to_path_buf(),
        reason: format!(
            "missing, while object versions it would name are there ({}): the index was lost, this is not a new store. Restore it from a backup; only if the project's state is to start anew (drover then knows of no pod it made, and prunes none), move the objects away",
            found.display()
        ),
    }
}

impl From<crate::files::PathError> for StoreError {
    fn from(e: crate::files::PathError) -> StoreError {
        StoreError::Io {
            path: e.path,
            source: e.source,
        }
    }
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
    /// The etcd revision this index was read at (0 from a file): its objects are read at the
    /// same revision, so an index and its objects are always one snapshot.
    #[serde(skip)]
    snapshot: i64,
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
            snapshot: 0,
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
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some(KeyText(k)) = map.next_key::<KeyText<'de>>()? {
                    let key = ObjectKey::parse(&k)
                        .ok_or_else(|| A::Error::custom(format!("bad object key `{k}`")))?;
                    entries.push((key, map.next_value::<Entry>()?));
                }
                // The index is written in key order, and a map is built from sorted keys in
                // one pass (a repeated key: the last one wins, as a map of strings did).
                Ok(entries.into_iter().collect())
            }
        }
        d.deserialize_map(Keyed)
    }

    /// A key's text, borrowed from the index's bytes when it has no escapes (serde's own
    /// `Cow<str>` always copies).
    struct KeyText<'de>(std::borrow::Cow<'de, str>);

    impl<'de> serde::Deserialize<'de> for KeyText<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Text;
            impl<'de> serde::de::Visitor<'de> for Text {
                type Value = KeyText<'de>;

                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a `Kind/id` key")
                }

                fn visit_borrowed_str<E: Error>(self, v: &'de str) -> Result<Self::Value, E> {
                    Ok(KeyText(v.into()))
                }

                fn visit_str<E: Error>(self, v: &str) -> Result<Self::Value, E> {
                    Ok(KeyText(v.to_owned().into()))
                }
            }
            d.deserialize_str(Text)
        }
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

/// An object's place relative to the store's root, the same in both backends (a file under
/// `state_dir`, a key under the etcd prefix): `objects/<section>/<kinds>/<id>@<rv>.json`.
fn object_rel(section_dir: &str, key: &ObjectKey, rv: u64) -> String {
    format!("{}/{}", kind_rel(section_dir, key.kind), FileName(key, rv))
}

/// The directory of one kind's objects in a section: `objects/<section>/<kinds>`.
fn kind_rel(section_dir: &str, kind: crate::model::Kind) -> String {
    format!("objects/{section_dir}/{}", kind.plural())
}

/// An object version's file name in its kind's directory: `<id>@<rv>.json`.
pub(super) struct FileName<'a>(&'a ObjectKey, u64);

impl std::fmt::Display for FileName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}.json", self.0.id, self.1)
    }
}

/// Where the index says an object's current version is.
fn entry_rel(section: Section, key: &ObjectKey, entry: &Entry) -> String {
    let dir = if entry.v1_path {
        V1_APPLIED_DIR
    } else {
        section.as_str()
    };
    object_rel(dir, key, entry.resource_version)
}

/// Whether `rel` (an object's place) is one the index names: what a sweep keeps.
fn named_by(index: &Index, rel: &str) -> bool {
    let Some(rest) = rel.strip_prefix("objects/") else {
        return false;
    };
    let mut parts = rest.splitn(3, '/');
    let (Some(section), Some(kind), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let Some(section) = Section::ALL.into_iter().find(|s| s.as_str() == section) else {
        return false;
    };
    let Some(kind) = Kind::ALL.into_iter().find(|k| k.plural() == kind) else {
        return false;
    };
    name.strip_suffix(".json")
        .and_then(|s| s.rsplit_once('@'))
        .and_then(|(id, rv)| Some((id, rv.parse::<u64>().ok()?)))
        .is_some_and(|(id, rv)| {
            index
                .section(section)
                .get(&ObjectKey::new(kind, id))
                .is_some_and(|e| e.resource_version == rv)
        })
}

/// What a commit writes, worked out from the index before it and the batch; each backend
/// makes it durable its own way, the new index last (the commit point).
struct Planned<'a> {
    rv: u64,
    /// New object versions, by place.
    writes: Vec<(String, &'a str)>,
    /// The places of the versions the new index no longer names.
    superseded: Vec<String>,
}

/// Turns `index` into the index after `puts` and `deletes` (resource version one up, format
/// current) and says what to write and what then goes. Pure.
fn plan_commit<'a>(
    index: &mut Index,
    puts: impl Iterator<Item = &'a (Section, ObjectKey, String, Option<Origin>)>,
    deletes: &[(Section, ObjectKey)],
) -> Result<Planned<'a>, StoreError> {
    let rv = index.resource_version + 1;
    let mut planned = Planned {
        rv,
        writes: Vec::new(),
        superseded: Vec::new(),
    };
    for (section, key, text, origin) in puts {
        if !valid_file_id(&key.id) {
            return Err(StoreError::BadKey {
                key: key.to_string(),
            });
        }
        let entry = Entry::new(rv, content_hash(text.as_bytes()), origin.clone());
        planned
            .writes
            .push((object_rel(section.as_str(), key, rv), text.as_str()));
        if let Some(old) = index.section_mut(*section).insert(key.clone(), entry) {
            planned.superseded.push(entry_rel(*section, key, &old));
        }
    }
    for (section, key) in deletes {
        if let Some(old) = index.section_mut(*section).remove(key) {
            planned.superseded.push(entry_rel(*section, key, &old));
        }
    }
    // A place written again at this version (a put after a delete of the same object) stays.
    let written: std::collections::BTreeSet<&str> =
        planned.writes.iter().map(|(p, _)| p.as_str()).collect();
    planned.superseded.retain(|p| !written.contains(p.as_str()));
    index.format = FORMAT_VERSION;
    index.resource_version = rv;
    Ok(planned)
}

/// Where a project's state lives: a directory (the file store) or an etcd prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateLocation {
    Dir(PathBuf),
    Etcd(EtcdSpec),
}

impl StateLocation {
    /// `etcd://...` is an etcd prefix, anything else a directory.
    pub fn parse(text: &str, tls: Option<EtcdTls>) -> Result<StateLocation, StoreError> {
        if text.starts_with("etcd://") {
            EtcdSpec::parse(text, tls).map(StateLocation::Etcd)
        } else {
            Ok(StateLocation::Dir(PathBuf::from(text)))
        }
    }
}

impl std::fmt::Display for StateLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateLocation::Dir(d) => write!(f, "{}", d.display()),
            StateLocation::Etcd(e) => write!(f, "{}", e.url),
        }
    }
}

/// The objects of some sections, by section and key.
pub type SectionTexts = BTreeMap<Section, BTreeMap<ObjectKey, String>>;

/// The store: one interface over the file store and etcd. Synchronous, as its callers are
/// (the etcd backend runs its gRPC calls on a runtime of its own and waits for them, so it
/// may be called from async code as the file store's blocking IO is).
#[derive(Debug, Clone)]
pub enum Store {
    File(FileStore),
    Etcd(etcd::EtcdStore),
}

/// Held while a process may write the store; dropping it releases it. For the file store an
/// OS lock on `state_dir/lock`; for etcd the leader key under a lease kept alive in the
/// background, every write compared against it (fencing).
#[derive(Debug)]
pub struct StoreLock(LockKind);

#[derive(Debug)]
enum LockKind {
    File(#[allow(dead_code)] lock::FileLock),
    Etcd(etcd::Leadership),
}

impl StoreLock {
    /// Whether this writer still believes it holds the store: always for the OS lock; for
    /// etcd, until its lease could not be renewed within its TTL. Writes are fenced by etcd
    /// anyway; this lets a deposed leader stop before it acts on the minions.
    pub fn held(&self) -> bool {
        match &self.0 {
            LockKind::File(_) => true,
            LockKind::Etcd(l) => l.held(),
        }
    }

    /// Why the lock was lost, if it was.
    pub fn lost_because(&self) -> Option<String> {
        match &self.0 {
            LockKind::File(_) => None,
            LockKind::Etcd(l) => l.lost_because(),
        }
    }
}

/// Who holds (or last held) the writer's place, as the leader key or lock file says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// `pid 123 on host: drover daemon`.
    pub who: String,
    /// The holder's status API, when it serves one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

impl Holder {
    /// Whether this process wrote it (a lease of its own that has not lapsed in etcd yet).
    pub fn is_this_process(&self) -> bool {
        self.who.starts_with(&format!("{}:", process_identity()))
    }
}

/// This process as a holder names it: `pid 123 on host`.
fn process_identity() -> String {
    format!("pid {} on {}", std::process::id(), host_name())
}

/// This host's name, as holders and serving records give it (`?` when it cannot be read).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

impl Store {
    /// The file store in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Store {
        Store::File(FileStore::new(dir))
    }

    /// The store at `location`; connecting to etcd does not wait for it to answer.
    pub fn open(location: &StateLocation) -> Result<Store, StoreError> {
        match location {
            StateLocation::Dir(d) => Ok(Store::new(d)),
            StateLocation::Etcd(spec) => etcd::EtcdStore::connect(spec).map(Store::Etcd),
        }
    }

    /// The store's location, for messages.
    pub fn describe(&self) -> String {
        match self {
            Store::File(f) => f.dir().display().to_string(),
            Store::Etcd(e) => e.url().to_string(),
        }
    }

    pub fn is_etcd(&self) -> bool {
        matches!(self, Store::Etcd(_))
    }

    /// The event log's bytes (`events.json`), absent if none was written, and where they are
    /// (for an error that names the place). Kept beside the index, outside its resource
    /// versions, because events only tell what happened and never decide what drover does;
    /// `crate::events` gives the bytes their meaning.
    pub fn read_event_log(&self) -> Result<(PathBuf, Option<Vec<u8>>), StoreError> {
        Ok(match self {
            Store::File(f) => (f.place(EVENTS_FILE), f.read_raw(EVENTS_FILE)?),
            Store::Etcd(e) => (e.place(EVENTS_FILE), e.read_raw(EVENTS_FILE)?),
        })
    }

    /// Replaces the event log's bytes, atomically (a file: 0600). Needs the lock.
    pub fn write_event_log(&self, lock: &StoreLock, bytes: &[u8]) -> Result<(), StoreError> {
        self.write_raw(lock, EVENTS_FILE, bytes)
    }

    /// The project this store says it belongs to, if it was recorded.
    pub fn recorded_project(&self) -> Result<Option<String>, StoreError> {
        let raw = match self {
            Store::File(f) => f.read_raw(PROJECT_FILE)?,
            Store::Etcd(e) => e.read_raw(PROJECT_FILE)?,
        };
        Ok(raw.map(|b| String::from_utf8_lossy(&b).trim().to_string()))
    }

    /// Records the project this store belongs to. Needs the lock.
    pub fn record_project(&self, lock: &StoreLock, project: &str) -> Result<(), StoreError> {
        self.write_raw(lock, PROJECT_FILE, format!("{project}\n").as_bytes())
    }

    /// Writes a record kept beside the state, outside the index and without the lock: each
    /// process that serves the services keeps its own (`crate::serving`), so readers can
    /// tell what serves them now. A file: 0600, in a 0700 directory.
    pub fn put_aside(&self, rel: &str, bytes: &[u8]) -> Result<(), StoreError> {
        match self {
            Store::File(f) => {
                let path = f.dir().join(rel);
                if let Some(parent) = path.parent() {
                    create_private_dir(parent)?;
                }
                Ok(write_private_file(&path, bytes)?)
            }
            Store::Etcd(e) => e.put_aside(rel, bytes),
        }
    }

    /// Removes a record `put_aside` wrote (nothing when it is not there).
    pub fn remove_aside(&self, rel: &str) -> Result<(), StoreError> {
        match self {
            Store::File(f) => match std::fs::remove_file(f.dir().join(rel)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StoreError::Io {
                    path: f.dir().join(rel),
                    source: e,
                }),
                _ => Ok(()),
            },
            Store::Etcd(e) => e.remove_aside(rel),
        }
    }

    /// Every record `put_aside` wrote under `dir` (a relative directory such as
    /// `serving`), by name; one that cannot be read is left out.
    pub fn list_aside(&self, dir: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        match self {
            Store::File(f) => {
                let path = f.dir().join(dir);
                let entries = match std::fs::read_dir(&path) {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                    Err(e) => return Err(StoreError::Io { path, source: e }),
                };
                let mut out = Vec::new();
                for entry in entries.flatten() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if let Ok(bytes) = std::fs::read(entry.path()) {
                        out.push((format!("{dir}/{name}"), bytes));
                    }
                }
                out.sort();
                Ok(out)
            }
            Store::Etcd(e) => e.list_aside(dir),
        }
    }

    /// Writes one file of the store outside the index (events, the mask key). Needs the lock.
    fn write_raw(&self, lock: &StoreLock, rel: &str, bytes: &[u8]) -> Result<(), StoreError> {
        match self {
            Store::File(f) => Ok(write_private_file(&f.dir().join(rel), bytes)?),
            Store::Etcd(e) => e.write_raw(etcd_lock(e, lock)?, rel, bytes),
        }
    }

    /// Reads the index. No state yet is the empty state of a first run; anything unreadable
    /// is an error.
    pub fn read_index(&self) -> Result<Index, StoreError> {
        match self {
            Store::File(f) => f.read_index(),
            Store::Etcd(e) => e.read_index(),
        }
    }

    /// Reads one object's text (of the snapshot `entry` comes from) and checks its hash.
    pub fn read_object(
        &self,
        section: Section,
        key: &ObjectKey,
        entry: &Entry,
    ) -> Result<String, StoreError> {
        match self {
            Store::File(f) => f.read_object(section, key, entry),
            Store::Etcd(e) => e.read_object(section, key, entry),
        }
    }

    /// Reads the index and every object it names, checking each against its hash: one
    /// consistent snapshot. Damage anywhere (a truncated index, a changed, missing or
    /// unreadable object) is an error naming it. Commands that act (apply, the daemon) and
    /// `diff` call it first, so nothing changes on the minions or in the store on top of a
    /// damaged store.
    pub fn verify(&self) -> Result<Index, StoreError> {
        match self {
            Store::File(f) => f.verify(),
            Store::Etcd(e) => e.verify(),
        }
    }

    /// The second half of `verify`: every object `index` names, read and checked against its
    /// hash. The first damage in index order is the error. For a reader that read the index
    /// itself (`diff` reads the source meanwhile); a writer's commit may supersede what it
    /// names, so such a reader reads again when the index has moved on.
    pub fn verify_objects(&self, index: &Index) -> Result<(), StoreError> {
        match self {
            Store::File(f) => f.verify_objects(index),
            Store::Etcd(e) => e.verify_objects(index),
        }
    }

    /// Reads every object of a section (of the snapshot `index` was read at).
    pub fn read_section(
        &self,
        index: &Index,
        section: Section,
    ) -> Result<BTreeMap<ObjectKey, String>, StoreError> {
        match self {
            Store::File(f) => f.read_section(index, section),
            Store::Etcd(e) => e.read_section(index, section),
        }
    }

    /// The index and every object of `sections`, as one snapshot, each checked against its
    /// hash: etcd reads them at one revision; the file store reads again when a commit
    /// removed a file under it (the index then moved on), so a reader without the lock never
    /// mistakes a commit for damage.
    pub fn read_snapshot(&self, sections: &[Section]) -> Result<(Index, SectionTexts), StoreError> {
        let read = |index: &Index| -> Result<_, StoreError> {
            sections
                .iter()
                .map(|s| Ok((*s, self.read_section(index, *s)?)))
                .collect()
        };
        let mut tries = 0;
        loop {
            let index = self.read_index()?;
            match read(&index) {
                Ok(texts) => return Ok((index, texts)),
                Err(e) => {
                    tries += 1;
                    if tries >= 10 || self.read_index()?.resource_version == index.resource_version
                    {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// The key for masking secrets in displayed objects, if one was made (the first command
    /// that takes the lock makes it). A damaged key is an error naming it.
    pub fn mask_key(&self) -> Result<Option<[u8; 32]>, StoreError> {
        let (place, bytes) = match self {
            Store::File(f) => (f.place(MASK_KEY_FILE), f.read_raw(MASK_KEY_FILE)?),
            Store::Etcd(e) => (e.place(MASK_KEY_FILE), e.read_raw(MASK_KEY_FILE)?),
        };
        let Some(bytes) = bytes else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&bytes);
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
                path: place,
                reason: "not a key of 64 hex digits".into(),
            });
        }
        Ok(Some(key))
    }

    /// Makes the mask key from the system's random source if there is none yet.
    fn ensure_mask_key(&self, lock: &StoreLock) -> Result<(), StoreError> {
        if self.mask_key()?.is_some() {
            return Ok(());
        }
        let text: String = random_key()
            .map_err(io_err(Path::new("/dev/urandom")))?
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.write_raw(lock, MASK_KEY_FILE, format!("{text}\n").as_bytes())
    }

    /// Takes the writer lock, waiting up to `wait` for another drover to release it: the OS
    /// lock of a state directory, or etcd's leader key (the one a daemon leading holds).
    /// `status` is this process's status API, told to others who wait.
    pub fn lock(&self, command: &str, wait: std::time::Duration) -> Result<StoreLock, StoreError> {
        self.lock_as(command, None, wait)
    }

    /// `lock`, naming this process's status API to the others (the daemon's followers).
    pub fn lock_as(
        &self,
        command: &str,
        status: Option<String>,
        wait: std::time::Duration,
    ) -> Result<StoreLock, StoreError> {
        let lock = match self {
            Store::File(f) => StoreLock(LockKind::File(f.lock(command, wait)?)),
            Store::Etcd(e) => StoreLock(LockKind::Etcd(e.lock(command, status, wait)?)),
        };
        // The one writer now: clear what a crashed writer left behind, so garbage cannot pile
        // up over repeated crashes.
        match (self, &lock.0) {
            (Store::File(f), _) => f.sweep_now(),
            (Store::Etcd(e), LockKind::Etcd(l)) => e.sweep(l)?,
            _ => {}
        }
        self.ensure_mask_key(&lock)?;
        Ok(lock)
    }

    /// Who holds the writer's place now, if anyone (etcd: the leader key; a directory: the
    /// lock file's note, when it is locked).
    pub fn holder(&self) -> Result<Option<Holder>, StoreError> {
        match self {
            Store::File(f) => Ok(f.holder()),
            Store::Etcd(e) => e.holder(),
        }
    }

    /// Applies a batch atomically and returns the new resource version. Needs the lock; on
    /// etcd the commit is refused when the lock's lease has lapsed.
    pub fn commit(&self, lock: &StoreLock, batch: &Batch) -> Result<u64, StoreError> {
        let started = std::time::Instant::now();
        let result = match self {
            Store::File(f) => f.commit(batch),
            Store::Etcd(e) => e.commit(etcd_lock(e, lock)?, batch),
        };
        if !batch.is_empty() {
            crate::metrics::global()
                .store_commit_duration
                .observe(started.elapsed().as_secs_f64());
        }
        result
    }

    /// Checks with etcd that `lock` still holds the leader key (a linearizable read): what a
    /// leader does before acting on the minions. Always true for the file store.
    pub fn confirm(&self, lock: &StoreLock) -> Result<(), StoreError> {
        match self {
            Store::File(_) => Ok(()),
            Store::Etcd(e) => e.confirm(etcd_lock(e, lock)?),
        }
    }

    /// A channel told of every commit (etcd: a watch on `state.json`), or `None` for the file
    /// store, whose readers poll `state.json`. Ends with the receiver.
    pub fn subscribe(&self) -> Option<tokio::sync::mpsc::Receiver<()>> {
        match self {
            Store::File(_) => None,
            Store::Etcd(e) => Some(e.watch(INDEX_FILE)),
        }
    }

    /// A channel told whenever the leader key changes (etcd), for followers waiting to take
    /// over; `None` for the file store.
    pub fn subscribe_leader(&self) -> Option<tokio::sync::mpsc::Receiver<()>> {
        match self {
            Store::File(_) => None,
            Store::Etcd(e) => Some(e.watch(etcd::LEADER_KEY)),
        }
    }

    /// Every place of the store and its bytes, read as one snapshot after checking every
    /// hash: the index, the objects it names, the event log and the mask key (`drover state
    /// migrate`).
    pub fn export(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let index = self.verify()?;
        let mut out = Vec::new();
        for section in Section::ALL {
            for (key, text) in self.read_section(&index, section)? {
                let entry = &index.section(section)[&key];
                out.push((
                    object_rel(section.as_str(), &key, entry.resource_version),
                    text.into_bytes(),
                ));
            }
        }
        for rel in [EVENTS_FILE, MASK_KEY_FILE, PROJECT_FILE] {
            let raw = match self {
                Store::File(f) => f.read_raw(rel)?,
                Store::Etcd(e) => e.read_raw(rel)?,
            };
            if let Some(bytes) = raw {
                out.push((rel.to_string(), bytes));
            }
        }
        let mut index = index;
        // Moved to format 2 places by the export (a format 1 store's objects included).
        for section in Section::ALL {
            for e in index.section_mut(section).values_mut() {
                e.v1_path = false;
            }
        }
        index.format = FORMAT_VERSION;
        out.push((
            INDEX_FILE.to_string(),
            serde_json::to_vec_pretty(&index).expect("index serialises"),
        ));
        Ok(out)
    }

    /// Writes an `export` into this store, which must hold no state yet; the index goes last,
    /// so a copy cut short is no state at all. Needs the lock.
    pub fn import(&self, lock: &StoreLock, places: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        if self.read_index()?.resource_version != 0 {
            return Err(StoreError::NotEmpty {
                store: self.describe(),
            });
        }
        let (index, rest): (Vec<_>, Vec<_>) = places.iter().partition(|(rel, _)| rel == INDEX_FILE);
        match self {
            Store::File(f) => {
                for (rel, bytes) in rest.into_iter().chain(index) {
                    let path = f.dir().join(rel);
                    if let Some(dir) = path.parent() {
                        create_private_dir(dir)?;
                    }
                    write_private_file(&path, bytes)?;
                }
            }
            Store::Etcd(e) => {
                let lead = etcd_lock(e, lock)?;
                for part in [rest, index] {
                    let refs: Vec<(&str, &[u8])> = part
                        .into_iter()
                        .map(|(r, b)| (r.as_str(), b.as_slice()))
                        .collect();
                    e.write_many(lead, &refs)?;
                }
            }
        }
        self.verify().map(drop)
    }
}

/// The etcd leadership behind `lock`, or an error when a lock of another store is given.
fn etcd_lock<'a>(
    store: &etcd::EtcdStore,
    lock: &'a StoreLock,
) -> Result<&'a etcd::Leadership, StoreError> {
    match &lock.0 {
        LockKind::Etcd(l) => Ok(l),
        LockKind::File(_) => Err(StoreError::Etcd {
            store: store.url().to_string(),
            message: "a state directory's lock cannot write to etcd".into(),
        }),
    }
}

#[cfg(test)]
mod tests;
