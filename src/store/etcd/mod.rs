//! The etcd backend: the file store's layout as keys under a prefix, for teams running
//! several daemons (one leads and writes, every one serves the proxy).
//!
//! ```text
//! <prefix>/state.json                              the index, as in a state directory
//! <prefix>/objects/<section>/<kinds>/<id>@<rv>.json  immutable object versions
//! <prefix>/events.json, <prefix>/mask.key          as in a state directory
//! <prefix>/leader                                  the writer: a key under a lease
//! ```
//! A commit is one transaction when it fits etcd's default limits (128 operations, 1.5 MiB):
//! the new object versions, the new index and the removal of superseded versions together,
//! compared on the index's mod revision (nobody wrote since it was read) and on the leader
//! key's create revision (this writer still leads: fencing). A larger commit writes its new
//! object versions first in fenced transactions of their own (unreferenced until the index
//! names them, as new files are in a state directory), then swaps the index in one fenced
//! transaction: either way readers see the previous or the next state, never a mix.
//!
//! Reads of the index remember its revision; objects are read at that revision, so an index
//! and its objects are one snapshot even while a writer removes what it superseded.
//!
//! The client (`grpc.rs`: etcd's gRPC API over hyper's HTTP/2) runs on a small runtime of its
//! own, shared by every etcd store of the process: the store's interface is synchronous (as
//! the file store's), callers may be async, and a blocking wait on a channel works from both.

mod grpc;

use super::{
    file::checked_text, named_by, plan_commit, Batch, Entry, Holder, Index, Section, StoreError,
    FORMAT_VERSION, INDEX_FILE,
};
use crate::model::ObjectKey;
use grpc::{Client, Compare, RangeOptions, Txn, TxnOp};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The writer lease's time to live. A leader that dies (or is paused, or cut off from etcd)
/// is replaced at most this long after its last renewal; a shorter TTL would have a busy or
/// briefly partitioned leader (a stop-the-world pause, a slow fsync on the etcd side, one
/// lost member's re-election, about 1-2 s in etcd) lose its place for nothing, a longer one
/// would leave the project unattended longer. Renewed every TTL/3, so two renewals may be lost
/// before it lapses. Kubernetes' own leader election uses 15 s leases renewed every 2 s.
pub const LEASE_TTL: Duration = Duration::from_secs(10);
/// A renewal of the lease is sent this often.
const RENEW_EVERY: Duration = Duration::from_millis(LEASE_TTL.as_millis() as u64 / 3);
pub(super) const LEADER_KEY: &str = "leader";
/// Under etcd's default `--max-txn-ops` (128).
const MAX_TXN_OPS: usize = 100;
/// Under etcd's default `--max-request-bytes` (1.5 MiB).
const MAX_TXN_BYTES: usize = 1 << 20;
/// One unary call's limit (streams, such as watches and lease renewals, have none).
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// TLS for etcd: the CA that signed the members' certificates, and a client certificate
/// and key when the members ask for one (`--client-cert-auth`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcdTls {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// Where a project's state lives in etcd: `etcd://host:2379,host2:2379/prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdSpec {
    /// As given, for messages.
    pub url: String,
    /// `http://host:port` (`https://` with TLS).
    pub endpoints: Vec<String>,
    /// `/prefix`, without a trailing `/`.
    pub prefix: String,
    pub tls: Option<EtcdTls>,
}

impl EtcdSpec {
    /// Parses `etcd://host[:port][,host[:port]...]/prefix`. Pure.
    pub fn parse(url: &str, tls: Option<EtcdTls>) -> Result<EtcdSpec, StoreError> {
        let bad = |reason: &str| StoreError::BadLocation {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let rest = url
            .strip_prefix("etcd://")
            .ok_or_else(|| bad("an etcd location starts with etcd://"))?;
        let (hosts, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let prefix = prefix.trim_end_matches('/');
        if prefix.is_empty() {
            return Err(bad(
                "give a key prefix after the hosts, as in etcd://10.0.0.2:2379/drover",
            ));
        }
        if !prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
            || prefix
                .split('/')
                .any(|s| s.is_empty() || s == "." || s == "..")
        {
            return Err(bad(
                "the prefix is made of `/`-separated names of letters, digits, `-`, `_` and `.`",
            ));
        }
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut endpoints = Vec::new();
        for host in hosts.split(',') {
            let host = host.trim();
            if host.is_empty() || host.contains(['/', '@', ' ']) {
                return Err(bad("hosts are `host[:port]`, separated by commas"));
            }
            let with_port = match host.rsplit_once(':') {
                Some((_, port)) if !host.ends_with(']') => {
                    port.parse::<u16>()
                        .map_err(|_| bad(&format!("`{host}`: the port is not a number")))?;
                    host.to_string()
                }
                _ => format!("{host}:2379"),
            };
            endpoints.push(format!("{scheme}://{with_port}"));
        }
        Ok(EtcdSpec {
            url: url.to_string(),
            endpoints,
            prefix: format!("/{prefix}"),
            tls,
        })
    }

    /// A project name from the prefix's last name (every host derives the same one),
    /// lowercased, other characters as `-`.
    pub fn derived_project(&self) -> String {
        let last = self.prefix.rsplit('/').next().unwrap_or_default();
        let mut name = crate::model::project_chars(last);
        name.truncate(crate::model::PROJECT_MAX);
        let name = name.trim_matches('-');
        if name.is_empty() {
            "drover".into()
        } else {
            name.to_string()
        }
    }
}

/// The runtime every etcd call runs on (never dropped: a store may be dropped inside async
/// code, where dropping a runtime panics).
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("drover-etcd")
            .enable_all()
            .build()
            .expect("etcd runtime starts")
    })
}

/// Runs `fut` on the etcd runtime and waits for it, from sync or async code alike.
fn block<T: Send + 'static>(fut: impl std::future::Future<Output = T> + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime().spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv()
        .expect("the etcd runtime runs every task to its end")
}

#[derive(Clone)]
pub struct EtcdStore {
    inner: Arc<Inner>,
}

/// One client per member, used one at a time: a member that cannot be reached (or does not
/// answer in time) hands the calls to the next.
struct Inner {
    spec: EtcdSpec,
    clients: Vec<Client>,
    current: std::sync::atomic::AtomicUsize,
    cache: Mutex<Cache>,
}

/// What was read (or written) before, by key and mod revision, so that a read whose key has
/// not changed since asks etcd only for the revision (a round reads every object to check
/// it; most have not changed). A key's value at one mod revision never changes, so a hit is
/// exact; a changed or damaged key has a new mod revision and is read again.
#[derive(Default)]
struct Cache {
    /// The index: its mod revision and bytes.
    index: Option<(i64, Vec<u8>)>,
    /// Object versions (relative keys): mod revision and bytes.
    objects: std::collections::HashMap<String, (i64, Vec<u8>)>,
}

impl Inner {
    /// The member in use and its client.
    fn client(&self) -> (usize, Client) {
        let i = self.current.load(Ordering::SeqCst) % self.clients.len();
        (i, self.clients[i].clone())
    }

    /// Moves on from member `from` (unless another call already did).
    fn failover(&self, from: usize) {
        let next = (from + 1) % self.clients.len();
        let _ = self
            .current
            .compare_exchange(from, next, Ordering::SeqCst, Ordering::SeqCst);
    }
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("url", &self.inner.spec.url)
            .finish()
    }
}

use grpc::Error as CallError;

type Call<T> = Result<T, CallError>;

/// A unary call bounded by `CALL_TIMEOUT`.
async fn timed<T>(fut: impl std::future::Future<Output = Call<T>>) -> Call<T> {
    match tokio::time::timeout(CALL_TIMEOUT, fut).await {
        Ok(result) => result,
        Err(_) => Err(CallError::Down(format!(
            "no answer within {} s (is a quorum of members up?)",
            CALL_TIMEOUT.as_secs()
        ))),
    }
}

impl EtcdStore {
    /// A client for `spec`; it connects on first use (members may come up later).
    pub fn connect(spec: &EtcdSpec) -> Result<EtcdStore, StoreError> {
        let tls = spec.tls.as_ref().map(|t| grpc::TlsFiles {
            ca: t.ca.as_deref(),
            cert: t.cert.as_deref(),
            key: t.key.as_deref(),
        });
        let clients = spec
            .endpoints
            .iter()
            .map(|endpoint| Client::new(endpoint, tls.as_ref()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|message| StoreError::Etcd {
                store: spec.url.clone(),
                message: format!("cannot set up TLS: {message}"),
            })?;
        Ok(EtcdStore {
            inner: Arc::new(Inner {
                spec: spec.clone(),
                clients,
                current: Default::default(),
                cache: Default::default(),
            }),
        })
    }

    pub fn url(&self) -> &str {
        &self.inner.spec.url
    }

    fn key(&self, rel: &str) -> String {
        format!("{}/{rel}", self.inner.spec.prefix)
    }

    /// A key as a path in messages: the URL, then the place.
    pub(super) fn place(&self, rel: &str) -> PathBuf {
        PathBuf::from(format!("{}/{rel}", self.url().trim_end_matches('/')))
    }

    fn err(&self, message: impl std::fmt::Display) -> StoreError {
        StoreError::Etcd {
            store: self.url().to_string(),
            message: message.to_string(),
        }
    }

    /// Runs an async call on the etcd runtime against the member in use, and against the
    /// next ones while members are down (each tried once).
    fn call<T: Send + 'static, F>(&self, f: impl Fn(Client) -> F) -> Result<T, StoreError>
    where
        F: std::future::Future<Output = Call<T>> + Send + 'static,
    {
        // Each member's reason: one that is up but without quorum says more than the last
        // one tried, which may be down.
        let mut reasons = Vec::new();
        for _ in 0..self.inner.clients.len() {
            let (i, client) = self.inner.client();
            match block(f(client)) {
                Ok(v) => return Ok(v),
                Err(CallError::Failed(e)) => return Err(self.err(e)),
                Err(CallError::Down(e)) => {
                    self.inner.failover(i);
                    reasons.push(format!("{}: {e}", self.inner.spec.endpoints[i]));
                }
            }
        }
        Err(self.err(format!(
            "no member answered ({} tried): {}",
            self.inner.clients.len(),
            reasons.join("; ")
        )))
    }

    /// One key's value and the revision it was read at; absent is `None`.
    fn get(&self, rel: &str, revision: i64) -> Result<(Option<Vec<u8>>, i64), StoreError> {
        self.get_kv(rel, revision).map(|(v, rev, _)| (v, rev))
    }

    /// `get`, with the key's mod revision (0 when absent).
    fn get_kv(&self, rel: &str, revision: i64) -> Result<(Option<Vec<u8>>, i64, i64), StoreError> {
        let key = self.key(rel);
        self.call(move |c| {
            let key = key.clone();
            async move {
                let opts = RangeOptions {
                    revision,
                    ..Default::default()
                };
                let mut r = timed(c.range(key.as_bytes(), opts)).await?;
                Ok(match r.kvs.pop() {
                    Some(kv) => (Some(kv.value), r.revision, kv.mod_revision),
                    None => (None, r.revision, 0),
                })
            }
        })
    }

    /// The keys (relative to the prefix) under `rel` and their values, as `opts` asks.
    fn range_with(
        &self,
        rel: &str,
        opts: RangeOptions,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        Ok(self
            .range_kvs(rel, opts)?
            .1
            .into_iter()
            .map(|(k, v, _)| (k, v))
            .collect())
    }

    /// `range_with` with each key's mod revision, and the revision it was read at.
    #[allow(clippy::type_complexity)]
    fn range_kvs(
        &self,
        rel: &str,
        opts: RangeOptions,
    ) -> Result<(i64, Vec<(String, Vec<u8>, i64)>), StoreError> {
        let key = self.key(rel);
        let strip = self.key("");
        self.call(move |c| {
            let (key, strip) = (key.clone(), strip.clone());
            async move {
                let r = timed(c.range(key.as_bytes(), opts)).await?;
                let kvs = r
                    .kvs
                    .into_iter()
                    .map(|kv| {
                        let k = String::from_utf8_lossy(&kv.key);
                        let rel = k.strip_prefix(&strip).unwrap_or(&k).to_string();
                        (rel, kv.value, kv.mod_revision)
                    })
                    .collect();
                Ok((r.revision, kvs))
            }
        })
    }

    /// The index's bytes, the revision they were read at and their mod revision (0: absent),
    /// from the cache when the index has not changed since it was last read or written.
    fn index_kv(&self) -> Result<(Option<Vec<u8>>, i64, i64), StoreError> {
        let (revision, listed) = self.range_kvs(
            INDEX_FILE,
            RangeOptions {
                keys_only: true,
                ..Default::default()
            },
        )?;
        let Some(&(_, _, mod_revision)) = listed.first() else {
            return Ok((None, revision, 0));
        };
        if let Some((cached, bytes)) = &self.inner.cache.lock().expect("cache").index {
            if *cached == mod_revision {
                return Ok((Some(bytes.clone()), revision, mod_revision));
            }
        }
        let (bytes, revision, mod_revision) = self.get_kv(INDEX_FILE, revision)?;
        if let Some(b) = &bytes {
            self.inner.cache.lock().expect("cache").index = Some((mod_revision, b.clone()));
        }
        Ok((bytes, revision, mod_revision))
    }

    /// Every key under `rel` with its value at `revision`: the values from the cache where the
    /// key's mod revision is the one cached, the rest read.
    fn objects_at(
        &self,
        rel: &str,
        revision: i64,
    ) -> Result<BTreeMap<String, Vec<u8>>, StoreError> {
        let keys_only = RangeOptions {
            prefix: true,
            revision,
            keys_only: true,
            ..Default::default()
        };
        let (_, listed) = self.range_kvs(rel, keys_only)?;
        let mut found = BTreeMap::new();
        let mut stale = Vec::new();
        {
            let cache = self.inner.cache.lock().expect("cache");
            for (key, _, mod_revision) in &listed {
                match cache.objects.get(key) {
                    Some((cached, bytes)) if cached == mod_revision => {
                        found.insert(key.clone(), bytes.clone());
                    }
                    _ => stale.push(key.clone()),
                }
            }
        }
        // A few new versions (a round's changes) one by one; many (a first read) at once.
        let fresh: Vec<(String, Vec<u8>, i64)> = if stale.len() <= 8 {
            let mut fresh = Vec::new();
            for key in stale {
                if let (Some(bytes), _, mod_revision) = self.get_kv(&key, revision)? {
                    fresh.push((key, bytes, mod_revision));
                }
            }
            fresh
        } else {
            let all = RangeOptions {
                prefix: true,
                revision,
                ..Default::default()
            };
            self.range_kvs(rel, all)?.1
        };
        let mut cache = self.inner.cache.lock().expect("cache");
        // Only what is listed now stays cached: the cache never outgrows the store.
        let listed: std::collections::HashSet<&str> =
            listed.iter().map(|(k, _, _)| k.as_str()).collect();
        cache
            .objects
            .retain(|k, _| !k.starts_with(rel) || listed.contains(k.as_str()));
        for (key, bytes, mod_revision) in fresh {
            cache
                .objects
                .insert(key.clone(), (mod_revision, bytes.clone()));
            found.insert(key, bytes);
        }
        Ok(found)
    }

    pub(super) fn read_raw(&self, rel: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(rel, 0).map(|(v, _)| v)
    }

    pub(super) fn read_index(&self) -> Result<Index, StoreError> {
        let (bytes, revision, _) = self.index_kv()?;
        if bytes.is_none() {
            // As in a state directory: objects without their index are a lost index.
            if let Some(found) = self.any_key("objects/", revision)? {
                return Err(super::lost_index(
                    &self.place(INDEX_FILE),
                    &self.place(&found),
                ));
            }
        }
        self.index_from(bytes, revision)
    }

    /// One key under a place (`objects/`) at `revision`, if there is any.
    fn any_key(&self, rel: &str, revision: i64) -> Result<Option<String>, StoreError> {
        let opts = RangeOptions {
            prefix: true,
            revision,
            keys_only: true,
            limit: 1,
        };
        Ok(self.range_with(rel, opts)?.pop().map(|(key, _)| key))
    }

    fn index_from(&self, bytes: Option<Vec<u8>>, revision: i64) -> Result<Index, StoreError> {
        let mut index = match bytes {
            Some(bytes) => super::parse_index(&self.place(INDEX_FILE), &bytes)?,
            None => Index {
                format: FORMAT_VERSION,
                ..Index::default()
            },
        };
        index.snapshot = revision;
        Ok(index)
    }

    pub(super) fn read_object(
        &self,
        section: Section,
        key: &ObjectKey,
        entry: &Entry,
    ) -> Result<String, StoreError> {
        // Entries carry no revision of their own: read at the latest, and the object
        // versions are immutable, so only a removed one can be missing.
        let rel = super::entry_rel(section, key, entry);
        match self.get(&rel, 0)?.0 {
            Some(bytes) => checked_text(self.place(&rel), bytes, &entry.hash),
            None => Err(missing(self.place(&rel))),
        }
    }

    pub(super) fn read_section(
        &self,
        index: &Index,
        section: Section,
    ) -> Result<BTreeMap<ObjectKey, String>, StoreError> {
        let entries = index.section(section);
        if entries.is_empty() {
            return Ok(BTreeMap::new());
        }
        let found = self.objects_at(&format!("objects/{}/", section.as_str()), index.snapshot)?;
        self.check(section, entries, &found)
    }

    /// The texts of `entries` out of what a range found, each checked against its hash.
    fn check(
        &self,
        section: Section,
        entries: &BTreeMap<ObjectKey, Entry>,
        found: &BTreeMap<String, Vec<u8>>,
    ) -> Result<BTreeMap<ObjectKey, String>, StoreError> {
        entries
            .iter()
            .map(|(key, entry)| {
                let rel = super::entry_rel(section, key, entry);
                let text = match found.get(&rel) {
                    Some(bytes) => checked_text(self.place(&rel), bytes.clone(), &entry.hash)?,
                    None => return Err(missing(self.place(&rel))),
                };
                Ok((key.clone(), text))
            })
            .collect()
    }

    /// The index and every object it names, read at one revision and checked.
    pub(super) fn verify(&self) -> Result<Index, StoreError> {
        let index = self.read_index()?;
        self.verify_objects(&index)?;
        Ok(index)
    }

    /// Every object `index` names, read at the index's revision and checked.
    pub(super) fn verify_objects(&self, index: &Index) -> Result<(), StoreError> {
        let found = self.objects_at("objects/", index.snapshot)?;
        for section in super::Section::ALL {
            self.check(section, index.section(section), &found)?;
        }
        Ok(())
    }

    /// Takes the leader key: creates it under a new lease if nobody holds it, waiting up to
    /// `wait` for a holder to let go (or its lease to lapse).
    pub(super) fn lock(
        &self,
        command: &str,
        status: Option<String>,
        wait: Duration,
    ) -> Result<Leadership, StoreError> {
        let deadline = Instant::now() + wait;
        let holder = Holder {
            who: format!("{}: drover {command}", super::process_identity()),
            status,
        };
        let value = serde_json::to_vec(&holder).expect("holder serialises");
        loop {
            if let Some(held) = self.try_lead(&value)? {
                return Ok(held);
            }
            if Instant::now() >= deadline {
                let holder = self
                    .holder()?
                    .map(|h| h.who)
                    .unwrap_or_else(|| "unknown holder".into());
                return Err(StoreError::Locked {
                    dir: PathBuf::from(self.url()),
                    holder,
                });
            }
            std::thread::sleep(Duration::from_millis(200).min(wait));
        }
    }

    /// One attempt at the leader key: `None` when another holds it.
    fn try_lead(&self, value: &[u8]) -> Result<Option<Leadership>, StoreError> {
        let key = self.key(LEADER_KEY);
        if self.get(LEADER_KEY, 0)?.0.is_some() {
            return Ok(None);
        }
        let value = value.to_vec();
        let ttl = LEASE_TTL.as_secs() as i64;
        let won = self.call(move |c| {
            let (key, value) = (key.clone(), value.clone());
            async move {
                let lease = timed(c.lease_grant(ttl)).await?;
                let txn = Txn {
                    when: vec![Compare::CreateRevision(key.clone(), 0)],
                    then: vec![TxnOp::Put { key, value, lease }],
                };
                let r = timed(c.txn(&txn)).await?;
                if r.succeeded {
                    Ok(Some((lease, r.revision)))
                } else {
                    let _ = timed(c.lease_revoke(lease)).await;
                    Ok(None)
                }
            }
        })?;
        let Some((lease, create_revision)) = won else {
            return Ok(None);
        };
        let state = Arc::new(LeaseState {
            lost: AtomicBool::new(false),
            why: Mutex::new(None),
        });
        let keeper = runtime().spawn(keep_alive(
            self.inner.clone(),
            lease,
            state.clone(),
            Instant::now(),
        ));
        Ok(Some(Leadership {
            store: self.clone(),
            lease,
            create_revision,
            state,
            keeper,
        }))
    }

    /// Who holds the leader key, if anyone.
    pub(super) fn holder(&self) -> Result<Option<Holder>, StoreError> {
        Ok(self.get(LEADER_KEY, 0)?.0.map(|bytes| {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Holder {
                who: String::from_utf8_lossy(&bytes).into_owned(),
                status: None,
            })
        }))
    }

    /// The comparison every write of `lead` carries: the leader key is still the one it made.
    fn fence(&self, lead: &Leadership) -> Compare {
        Compare::CreateRevision(self.key(LEADER_KEY), lead.create_revision)
    }

    /// Runs a transaction fenced on `lead` (and on `also`): the store's revision after it,
    /// which is the mod revision of every key it wrote. A failed comparison is told apart:
    /// deposed (`NotLeader`) or the index changed (`Conflict`).
    fn fenced(
        &self,
        lead: &Leadership,
        also: Vec<Compare>,
        ops: Vec<TxnOp>,
    ) -> Result<i64, StoreError> {
        let mut when = vec![self.fence(lead)];
        when.extend(also);
        let txn = Arc::new(Txn { when, then: ops });
        let (ok, revision) = self.call(move |c| {
            let txn = txn.clone();
            async move {
                let r = timed(c.txn(&txn)).await?;
                Ok((r.succeeded, r.revision))
            }
        })?;
        if ok {
            return Ok(revision);
        }
        let holder = self.holder()?;
        match self.leader_revision()? {
            Some(rev) if rev == lead.create_revision => Err(StoreError::Conflict {
                store: self.url().to_string(),
            }),
            _ => {
                lead.lose("another drover took the leader key (this one's lease lapsed)");
                Err(StoreError::NotLeader {
                    store: self.url().to_string(),
                    holder: holder.map(|h| h.who).unwrap_or_else(|| "nobody".into()),
                })
            }
        }
    }

    /// The create revision of the leader key now, if it exists.
    fn leader_revision(&self) -> Result<Option<i64>, StoreError> {
        let key = self.key(LEADER_KEY);
        self.call(move |c| {
            let key = key.clone();
            async move {
                let mut r = timed(c.range(key.as_bytes(), RangeOptions::default())).await?;
                Ok(r.kvs.pop().map(|kv| kv.create_revision))
            }
        })
    }

    /// A linearizable check that `lead` still holds the leader key.
    pub(super) fn confirm(&self, lead: &Leadership) -> Result<(), StoreError> {
        if let Some(why) = lead.lost_because() {
            return Err(self.err(why));
        }
        match self.leader_revision()? {
            Some(rev) if rev == lead.create_revision => Ok(()),
            _ => {
                lead.lose("the leader key is gone or another's (this one's lease lapsed)");
                Err(StoreError::NotLeader {
                    store: self.url().to_string(),
                    holder: self
                        .holder()?
                        .map(|h| h.who)
                        .unwrap_or_else(|| "nobody".into()),
                })
            }
        }
    }

    /// Writes one key outside the index (events, the mask key), fenced.
    pub(super) fn write_raw(
        &self,
        lead: &Leadership,
        rel: &str,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        self.fenced(lead, Vec::new(), vec![TxnOp::put(self.key(rel), bytes)])
            .map(drop)
    }

    /// `Store::put_aside`: a put no lease fences (any process may keep its own record).
    pub(super) fn put_aside(&self, rel: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.unfenced(vec![TxnOp::put(self.key(rel), bytes)])
    }

    /// `Store::remove_aside`.
    pub(super) fn remove_aside(&self, rel: &str) -> Result<(), StoreError> {
        self.unfenced(vec![TxnOp::Delete(self.key(rel))])
    }

    /// `Store::list_aside`: the keys under `dir/`.
    pub(super) fn list_aside(&self, dir: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let opts = RangeOptions {
            prefix: true,
            ..Default::default()
        };
        self.range_with(&format!("{dir}/"), opts)
    }

    fn unfenced(&self, ops: Vec<TxnOp>) -> Result<(), StoreError> {
        let txn = Arc::new(Txn {
            when: Vec::new(),
            then: ops,
        });
        self.call(move |c| {
            let txn = txn.clone();
            async move { timed(c.txn(&txn)).await.map(drop) }
        })
    }

    /// Writes many keys outside a commit (an import), in fenced transactions within etcd's
    /// limits, in order.
    pub(super) fn write_many(
        &self,
        lead: &Leadership,
        places: &[(&str, &[u8])],
    ) -> Result<(), StoreError> {
        let mut chunk = Vec::new();
        let mut bytes = 0;
        for (rel, value) in places {
            if !chunk.is_empty()
                && (chunk.len() >= MAX_TXN_OPS || bytes + value.len() > MAX_TXN_BYTES)
            {
                self.fenced(lead, Vec::new(), std::mem::take(&mut chunk))?;
                bytes = 0;
            }
            bytes += value.len();
            chunk.push(TxnOp::put(self.key(rel), *value));
        }
        if !chunk.is_empty() {
            self.fenced(lead, Vec::new(), chunk)?;
        }
        Ok(())
    }

    pub(super) fn commit(&self, lead: &Leadership, batch: &Batch) -> Result<u64, StoreError> {
        // The index's mod revision as read is compared: no other write slips in between.
        let (bytes, revision, index_mod) = self.index_kv()?;
        let mut index = self.index_from(bytes, revision)?;
        if batch.is_empty() {
            return Ok(index.resource_version);
        }
        let planned = plan_commit(&mut index, batch.puts.iter(), &batch.deletes)?;
        // A batch may put one object twice: the last wins (a transaction takes a key once).
        let mut writes: BTreeMap<String, &str> = BTreeMap::new();
        for (rel, text) in &planned.writes {
            writes.insert(rel.clone(), text);
        }
        let index_text = serde_json::to_vec_pretty(&index).expect("index serialises");
        let same_index = Compare::ModRevision(self.key(INDEX_FILE), index_mod);
        let puts: Vec<(TxnOp, usize)> = writes
            .iter()
            .map(|(rel, text)| {
                (
                    TxnOp::put(self.key(rel), text.as_bytes()),
                    text.len() + rel.len(),
                )
            })
            .collect();
        let deletes: Vec<TxnOp> = planned
            .superseded
            .iter()
            .map(|rel| TxnOp::Delete(self.key(rel)))
            .collect();
        let size: usize = puts.iter().map(|(_, n)| n).sum::<usize>() + index_text.len();
        let index_put = TxnOp::put(self.key(INDEX_FILE), index_text.clone());
        if puts.len() + deletes.len() < MAX_TXN_OPS && size < MAX_TXN_BYTES {
            let mut ops: Vec<TxnOp> = puts.into_iter().map(|(op, _)| op).collect();
            ops.push(index_put);
            ops.extend(deletes);
            let written = self.fenced(lead, vec![same_index], ops)?;
            // The next read of the index finds what this commit wrote without reading it.
            self.inner.cache.lock().expect("cache").index = Some((written, index_text));
            return Ok(planned.rv);
        }
        // Too large for one transaction: the new versions first (named by no index yet),
        // then the index, then the removals; each step fenced. A first commit puts an empty
        // index first, so objects without an index are only ever a lost index.
        if index_mod == 0 {
            let empty = Index {
                format: FORMAT_VERSION,
                ..Index::default()
            };
            let text = serde_json::to_vec_pretty(&empty).expect("index serialises");
            self.fenced(
                lead,
                vec![same_index],
                vec![TxnOp::put(self.key(INDEX_FILE), text)],
            )?;
            // The index swap below compares against the index just written.
            let (_, _, written) = self.get_kv(INDEX_FILE, 0)?;
            let same_index = Compare::ModRevision(self.key(INDEX_FILE), written);
            return self.commit_in_steps(lead, puts, deletes, same_index, index_put, planned.rv);
        }
        self.commit_in_steps(lead, puts, deletes, same_index, index_put, planned.rv)
    }

    /// A commit too large for one transaction, after the index exists: the new object
    /// versions in fenced chunks, then the index swap (compared on `same_index`), then the
    /// removals.
    fn commit_in_steps(
        &self,
        lead: &Leadership,
        mut puts: Vec<(TxnOp, usize)>,
        deletes: Vec<TxnOp>,
        same_index: Compare,
        index_put: TxnOp,
        rv: u64,
    ) -> Result<u64, StoreError> {
        while !puts.is_empty() {
            let mut chunk = Vec::new();
            let mut bytes = 0;
            while let Some((_, n)) = puts.last() {
                if !chunk.is_empty() && (chunk.len() >= MAX_TXN_OPS || bytes + n > MAX_TXN_BYTES) {
                    break;
                }
                let (op, n) = puts.pop().expect("not empty");
                bytes += n;
                chunk.push(op);
            }
            self.fenced(lead, Vec::new(), chunk)?;
        }
        self.fenced(lead, vec![same_index], vec![index_put])?;
        // Past the commit point: a failure here leaves garbage the next writer sweeps.
        for chunk in deletes.chunks(MAX_TXN_OPS) {
            let _ = self.fenced(lead, Vec::new(), chunk.to_vec());
        }
        Ok(rv)
    }

    /// Removes object versions the index does not name (a commit cut short), fenced.
    pub(super) fn sweep(&self, lead: &Leadership) -> Result<(), StoreError> {
        let index = self.read_index()?;
        let opts = RangeOptions {
            prefix: true,
            revision: index.snapshot,
            keys_only: true,
            ..Default::default()
        };
        let stale: Vec<TxnOp> = self
            .range_with("objects/", opts)?
            .into_iter()
            .filter(|(rel, _)| !named_by(&index, rel))
            .map(|(rel, _)| TxnOp::Delete(self.key(&rel)))
            .collect();
        for chunk in stale.chunks(MAX_TXN_OPS) {
            self.fenced(lead, Vec::new(), chunk.to_vec())?;
        }
        Ok(())
    }

    /// A channel told of every change of one key (a watch; after a broken watch, once more
    /// when it is back, as changes may have been missed). Ends with the receiver.
    pub(super) fn watch(&self, rel: &str) -> tokio::sync::mpsc::Receiver<()> {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let key = self.key(rel);
        let inner = self.inner.clone();
        runtime().spawn(async move {
            let mut first = true;
            while !tx.is_closed() {
                let (member, c) = inner.client();
                match timed(c.watch(key.as_bytes())).await {
                    Ok(mut stream) => {
                        if !first {
                            let _ = tx.try_send(());
                        }
                        first = false;
                        loop {
                            tokio::select! {
                                m = stream.message() => match m {
                                    Ok(Some(r)) if r.changes > 0 => {
                                        let _ = tx.try_send(());
                                    }
                                    Ok(Some(r)) if r.canceled => break,
                                    Ok(Some(_)) => {}
                                    Ok(None) | Err(_) => {
                                        inner.failover(member);
                                        break;
                                    }
                                },
                                _ = tx.closed() => return,
                            }
                        }
                    }
                    Err(_) => {
                        inner.failover(member);
                        first = false;
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        rx
    }
}

fn missing(place: PathBuf) -> StoreError {
    StoreError::Damaged {
        path: place,
        reason: "missing: state.json names it but etcd holds no such key".into(),
    }
}

/// Whether the lease still stands, as far as this process knows.
#[derive(Debug)]
struct LeaseState {
    lost: AtomicBool,
    why: Mutex<Option<String>>,
}

/// The leader key held under a lease that a task on the etcd runtime renews every TTL/3.
/// Dropping it revokes the lease, so the next leader need not wait for it to lapse.
pub struct Leadership {
    store: EtcdStore,
    lease: i64,
    /// The leader key's create revision: what every write compares (fencing).
    create_revision: i64,
    state: Arc<LeaseState>,
    keeper: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership")
            .field("lease", &self.lease)
            .field("create_revision", &self.create_revision)
            .finish()
    }
}

impl Leadership {
    pub(super) fn held(&self) -> bool {
        !self.state.lost.load(Ordering::SeqCst)
    }

    pub(super) fn lost_because(&self) -> Option<String> {
        if self.held() {
            return None;
        }
        Some(
            self.state
                .why
                .lock()
                .expect("lease state")
                .clone()
                .unwrap_or_else(|| "the writer lease was lost".into()),
        )
    }

    fn lose(&self, why: &str) {
        lose(&self.state, why);
    }
}

fn lose(state: &LeaseState, why: &str) {
    let mut w = state.why.lock().expect("lease state");
    if w.is_none() {
        *w = Some(why.to_string());
    }
    state.lost.store(true, Ordering::SeqCst);
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.keeper.abort();
        let lease = self.lease;
        let client = self.store.inner.client().1;
        // Bounded: a cut-off etcd must not hold up the exit.
        let _ = block(async move {
            tokio::time::timeout(Duration::from_secs(2), client.lease_revoke(lease)).await
        });
    }
}

/// Renews `lease` every `RENEW_EVERY`. The lease counts as lost once etcd says it expired,
/// or when no renewal was answered for the TTL since the last one that was (counted from when
/// that one was *sent*, so this process never believes in a lease etcd has let go).
async fn keep_alive(inner: Arc<Inner>, lease: i64, state: Arc<LeaseState>, granted: Instant) {
    let mut last_ok = granted;
    loop {
        if last_ok.elapsed() >= LEASE_TTL {
            lose(
                &state,
                &format!(
                    "no renewal of the writer lease answered for {} s (etcd unreachable or without quorum)",
                    LEASE_TTL.as_secs()
                ),
            );
            return;
        }
        let sent = Instant::now();
        let (member, c) = inner.client();
        match tokio::time::timeout(RENEW_EVERY, c.lease_keep_alive(lease)).await {
            Ok(Ok(ttl)) if ttl > 0 => {
                last_ok = sent;
                tokio::time::sleep(RENEW_EVERY.saturating_sub(sent.elapsed())).await;
            }
            Ok(Ok(_)) => {
                lose(&state, "the writer lease expired (this drover was paused or cut off for longer than its TTL)");
                return;
            }
            _ => {
                // That member did not answer: the next one, soon.
                inner.failover(member);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_etcd_location_parses_hosts_ports_and_prefix() {
        let s = EtcdSpec::parse("etcd://10.0.0.2:2379,db2/drover/shop/", None).unwrap();
        assert_eq!(s.endpoints, ["http://10.0.0.2:2379", "http://db2:2379"]);
        assert_eq!(s.prefix, "/drover/shop");
        assert_eq!(s.derived_project(), "shop");
        let tls = EtcdSpec::parse("etcd://h:1/p", Some(EtcdTls::default())).unwrap();
        assert_eq!(tls.endpoints, ["https://h:1"]);
    }

    #[test]
    fn a_bad_etcd_location_says_what_is_wrong() {
        for (url, says) in [
            ("etcd://h:2379", "give a key prefix"),
            ("etcd://h:x/p", "port is not a number"),
            ("etcd://h/a/../b", "prefix is made of"),
            ("etcd://,/p", "hosts are"),
        ] {
            let err = EtcdSpec::parse(url, None).unwrap_err().to_string();
            assert!(err.contains(says) && err.contains(url), "{url}: {err}");
        }
    }
}
