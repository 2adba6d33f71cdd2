//! A project's reconciling connected to its source and its store: reading the desired state
//! (with the empty-source guard), the store's inventory and adoptable pods handed to the
//! reconciler, and what a round records afterwards (observed pods and minions, endpoints, the
//! applied objects once converged). Shared by `apply` and the daemon; prints nothing.

use super::{Adoptable, InventoryWriter, Reconciler};
use crate::image_pins::ImagePins;
use crate::manifest::Diagnostic;
use crate::model::{DesiredState, Kind};
use crate::plan::endpoints::ServiceEndpoints;
use crate::plan::inventory::Inventory;
use crate::plan::observed::Observation;
use crate::source::{self, GitOptions, SourceSpec};
use crate::store::{Index, Store, StoreError, StoreLock};
use std::sync::Arc;

/// Why the desired state could not be had.
#[derive(Debug)]
pub enum LoadError {
    Source(source::SourceError),
    Invalid(crate::manifest::Invalid),
    /// Read and valid, but refused (the empty-source guard).
    Refused(String),
}

/// A source read whole and validated.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub desired: DesiredState,
    pub commit: Option<String>,
    /// `skipped 3 files: ...`, when the source held files drover does not read.
    pub skipped: Option<String>,
    /// Located warnings (unknown fields under `--validate=warn`, fields drover ignores).
    pub warnings: Vec<Diagnostic>,
}

/// Reads and validates the whole source; a file over the size limit is an error naming it.
/// Containers of images drover delivers are pinned to the local builds `pins` holds.
pub fn load(
    spec: &SourceSpec,
    git: &GitOptions,
    opts: &crate::manifest::Options,
    pins: &ImagePins,
) -> Result<Loaded, LoadError> {
    let loaded = load_each(spec, git, opts, pins, |_, object| object)?;
    Ok(Loaded {
        desired: DesiredState {
            objects: loaded.objects.objects,
        },
        commit: loaded.commit,
        skipped: loaded.skipped,
        warnings: loaded.objects.warnings,
    })
}

/// A source read whole and validated, each object kept as its reader chose (`load_each`).
#[derive(Debug)]
pub struct LoadedEach<V> {
    pub objects: crate::manifest::Objects<V>,
    pub commit: Option<String>,
    pub skipped: Option<String>,
}

/// `load` that hands each object to `keep` as soon as it is read and keeps only what that
/// returns: files are read, parsed and passed on one at a time (on several threads), so
/// memory follows what is kept, not the source's size.
pub fn load_each<V: Send>(
    spec: &SourceSpec,
    git: &GitOptions,
    opts: &crate::manifest::Options,
    pins: &ImagePins,
    keep: impl Fn(&crate::model::ObjectKey, crate::model::Object) -> V + Sync,
) -> Result<LoadedEach<V>, LoadError> {
    let listing = source::list(spec, git).map_err(LoadError::Source)?;
    load_listed(listing, opts, pins, keep)
}

/// `load_each` of a source already listed (`source::list`), so a caller can list it while
/// it does something else.
pub fn load_listed<V: Send>(
    listing: source::Listing,
    opts: &crate::manifest::Options,
    pins: &ImagePins,
    keep: impl Fn(&crate::model::ObjectKey, crate::model::Object) -> V + Sync,
) -> Result<LoadedEach<V>, LoadError> {
    let skipped = listing.skipped_note();
    let objects = crate::manifest::read_each(
        &listing.files,
        |f| &f.origin,
        |f, buf, limit| f.read_into(buf, limit),
        opts,
        |key, mut object| {
            pins.pin(&mut object);
            keep(key, object)
        },
    )
    .map_err(|e| match e {
        crate::manifest::ReadError::Source(e) => LoadError::Source(e),
        crate::manifest::ReadError::Invalid(d) => LoadError::Invalid(d),
    })?;
    Ok(LoadedEach {
        objects,
        commit: listing.commit,
        skipped,
    })
}

/// A source whose containers name images drover delivers (`[images] push`) that the local
/// engine does not hold is refused: a pod of no known build is neither planned nor made.
pub fn refuse_undelivered(pins: &ImagePins) -> Result<(), LoadError> {
    let missing = pins.missing();
    if missing.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = missing.iter().map(String::as_str).collect();
    Err(LoadError::Refused(format!(
        "image{} {} {} in [images] push but not in the local Docker Engine, which could not \
         pull {}: build or pull {} there; nothing was changed",
        if names.len() == 1 { "" } else { "s" },
        names.join(", "),
        if names.len() == 1 { "is" } else { "are" },
        if names.len() == 1 { "it" } else { "them" },
        if names.len() == 1 { "it" } else { "them" },
    )))
}

/// The empty-source guard (as Argo CD's `allowEmpty`): a source with no objects while the
/// store holds applied objects is far more often a wrong path, ref or glob than a wish to
/// delete everything. Refused unless `allow_empty`.
pub fn refuse_empty_source(
    spec: &SourceSpec,
    desired: &DesiredState,
    index: &Index,
    allow_empty: bool,
) -> Result<(), String> {
    if !desired.objects.is_empty() || allow_empty {
        return Ok(());
    }
    let inventory = Inventory::from_index(index);
    let applied = index.applied.len();
    if applied == 0 && inventory.is_empty() {
        return Ok(());
    }
    let mut kinds: std::collections::BTreeMap<String, usize> = Default::default();
    for key in index.applied.keys() {
        *kinds.entry(key.kind.to_string()).or_default() += 1;
    }
    let detail: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
    Err(format!(
        "the source {} has no objects, but this project applied {applied} object{} before ({}); \
         applying it would prune them all. Refusing: check the source, ref and path, or pass \
         --allow-empty (allow_empty = true in drover.toml) to prune everything",
        spec.describe(),
        if applied == 1 { "" } else { "s" },
        if detail.is_empty() {
            "pods in the inventory".to_string()
        } else {
            detail.join(", ")
        }
    ))
}

/// Pods of this project's store: the pods made before projects that it may adopt.
pub fn adoptable(index: &Index) -> Adoptable {
    index
        .observed
        .keys()
        .filter(|k| k.kind == Kind::Pod)
        .filter_map(|k| k.id.rsplit_once('+'))
        .map(|(pod, minion)| (pod.to_string(), minion.to_string()))
        .collect()
}

/// Connects a reconciler to the store: the project's inventory and adoptable pods from the
/// index, and (with the lock) the writer that records new inventory entries before their pods
/// are made.
pub fn attach_store(
    reconciler: &mut Reconciler,
    store: &Store,
    index: &Index,
    lock: Option<Arc<StoreLock>>,
) {
    reconciler.inventory = Inventory::from_index(index);
    reconciler.adoptable = adoptable(index);
    reconciler.cordons = Some(store.clone());
    reconciler.record_inventory = lock.map(|lock| {
        let store = store.clone();
        let write: InventoryWriter = Box::new(move |keys| {
            store
                .commit(&lock, &crate::plan::inventory::add_batch(keys))
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
        write
    });
}

/// What a writer (`apply`, the daemon) does with the store before its first round: verifies
/// it (a damaged store stops it before any container changes), refuses a source that reads as
/// empty unless allowed, and attaches the reconciler to the inventory. `lock` is `None` for a
/// dry run.
pub fn open_for_writing(
    reconciler: &mut Reconciler,
    store: &Store,
    lock: Option<Arc<StoreLock>>,
    spec: &SourceSpec,
    desired: &DesiredState,
    allow_empty: bool,
) -> Result<(), String> {
    let index = store.verify().map_err(|e| e.to_string())?;
    refuse_empty_source(spec, desired, &index, allow_empty)?;
    reconciler.sole_writer = lock.is_some();
    attach_store(reconciler, store, &index, lock);
    Ok(())
}

/// Records the applied objects (and settles the inventory), so `drover diff` shows them in
/// sync.
pub fn record_applied(
    store: &Store,
    lock: &StoreLock,
    desired: &DesiredState,
    prune: bool,
) -> Result<u64, StoreError> {
    let index = store.read_index()?;
    let mut batch = crate::plan::objects::record_batch_with(desired, &index, prune);
    batch.extend(crate::plan::inventory::settle_batch(&index, desired, prune));
    store.commit(lock, &batch)
}

/// Records what a round (or `diff --live`) saw in the store's observed section; writes
/// nothing when nothing changed.
pub fn record_observation(
    store: &Store,
    lock: &StoreLock,
    seen: &Observation,
) -> Result<u64, StoreError> {
    let index = store.read_index()?;
    store.commit(
        lock,
        &crate::plan::observed::observation_batch(&index, seen),
    )
}

/// Records what a round saw and the endpoints it makes, in one commit; writes nothing when
/// nothing changed.
pub fn record_seen(
    store: &Store,
    lock: &StoreLock,
    seen: &Observation,
    endpoints: &[ServiceEndpoints],
) -> Result<u64, StoreError> {
    let index = store.read_index()?;
    let mut batch = crate::plan::observed::observation_batch(&index, seen);
    batch.extend(crate::plan::endpoints::endpoints_batch(&index, endpoints));
    store.commit(lock, &batch)
}

/// The objects as last applied, from the store, each with the file it came from: what the
/// read-only commands show when the source cannot be read.
pub fn applied_state(store: &Store) -> Result<DesiredState, String> {
    use crate::store::Section;
    let (index, mut texts) = store
        .read_snapshot(&[Section::Applied])
        .map_err(|e| e.to_string())?;
    let mut objects = std::collections::BTreeMap::new();
    for (key, text) in texts.remove(&Section::Applied).unwrap_or_default() {
        let object: crate::model::Object = serde_json::from_str(&text)
            .map_err(|e| format!("the store's applied {key} cannot be read: {e}"))?;
        let origin = index
            .applied
            .get(&key)
            .and_then(|e| e.origin.clone())
            .unwrap_or_else(|| crate::model::Origin {
                file: "(the store)".into(),
                commit: None,
            });
        objects.insert(key, (object, origin));
    }
    Ok(DesiredState { objects })
}

/// The endpoints the store holds (what a standalone proxy serves).
pub fn stored_endpoints(store: &Store) -> Result<Vec<ServiceEndpoints>, String> {
    let (_, mut texts) = store
        .read_snapshot(&[crate::store::Section::Endpoints])
        .map_err(|e| e.to_string())?;
    let texts = texts
        .remove(&crate::store::Section::Endpoints)
        .unwrap_or_default();
    crate::plan::endpoints::from_records(&texts)
}
