//! Cordoned and draining minions (`drover minions cordon | uncordon | drain`). Each is a record
//! beside the state (`Store::put_aside`, `cordons/<minion>`): written without the store's
//! lock, so a command sets it while a daemon holds the store, and shared by every daemon of
//! an etcd store; it survives restarts. Git can say it too (`unschedulable` on a Minion
//! manifest or in drover.toml); either cordons.

use crate::plan::scheduler::{Drain, MinionView};
use crate::store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const DIR: &str = "cordons";

/// One minion's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cordon {
    /// Unix seconds it was cordoned.
    pub since: u64,
    /// Being drained, and how.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<Drain>,
}

/// Every record, by minion. One that cannot be read is left out (a half-written one is the
/// command's to write again).
pub fn read(store: &Store) -> Result<BTreeMap<String, Cordon>, StoreError> {
    Ok(store
        .list_aside(DIR)?
        .into_iter()
        .filter_map(|(path, bytes)| {
            let name = path.rsplit('/').next()?.to_string();
            Some((name, serde_json::from_slice(&bytes).ok()?))
        })
        .collect())
}

pub fn set(store: &Store, minion: &str, cordon: &Cordon) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(cordon).expect("a cordon serialises");
    store.put_aside(&format!("{DIR}/{minion}"), &bytes)
}

pub fn clear(store: &Store, minion: &str) -> Result<(), StoreError> {
    store.remove_aside(&format!("{DIR}/{minion}"))
}

/// Marks the views of cordoned minions (recorded, or `unschedulable` in git) and of those
/// being drained. Pure.
pub fn mark(views: &mut [MinionView], records: &BTreeMap<String, Cordon>, in_git: &[String]) {
    for v in views {
        let record = records.get(&v.name);
        v.unschedulable = record.is_some() || in_git.contains(&v.name);
        v.drain = record.and_then(|r| r.drain);
    }
}
