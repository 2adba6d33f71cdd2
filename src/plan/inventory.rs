//! The project's inventory: the objects (replication controllers and explicit pods) whose pods
//! this project made. Pure: read from the store's index, and the batches that record it.
//!
//! Pruning is scoped by it, as Flux's inventory and kubectl's applysets scope theirs: a pod
//! whose object left the source is deleted only when that object is in the inventory. A pod
//! carrying this project's label but made for an object the inventory never held (a second
//! checkout sharing the project name, a store that was wiped) is reported and left alone.
//!
//! An object enters the inventory *before* the first pod is made for it (the reconciler
//! records it ahead of executing), so a crash between the two can only leave an inventory
//! entry without pods, never pods without an entry. It leaves once the source no longer holds
//! it and a converged round saw none of its pods.

use super::types::{Action, ObservedPod, Plan};
use crate::model::{DesiredState, Kind, Object, ObjectKey};
use crate::store::{Batch, Index, Section};
use std::collections::{BTreeSet, HashSet};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    owners: BTreeSet<ObjectKey>,
}

/// The object a pod was made for: its replication controller, or the pod itself.
pub fn owner_of(owner: Option<&str>, pod: &str) -> ObjectKey {
    match owner {
        Some(rc) => ObjectKey::new(Kind::ReplicationController, rc),
        None => ObjectKey::new(Kind::Pod, pod),
    }
}

fn owners_in(desired: &DesiredState) -> impl Iterator<Item = &ObjectKey> {
    desired
        .objects
        .iter()
        .filter(|(_, (o, _))| matches!(o, Object::Pod(_) | Object::ReplicationController(_)))
        .map(|(k, _)| k)
}

fn record(key: &ObjectKey) -> String {
    format!(
        "{}\n",
        serde_json::json!({"kind": key.kind.to_string(), "id": key.id})
    )
}

impl Inventory {
    /// What the store says this project owns: its inventory section, plus the pods and
    /// replication controllers of its applied section (a store written before inventories
    /// existed recorded only those).
    pub fn from_index(index: &Index) -> Inventory {
        let applied = index
            .applied
            .keys()
            .filter(|k| matches!(k.kind, Kind::Pod | Kind::ReplicationController));
        Inventory {
            owners: index.inventory.keys().chain(applied).cloned().collect(),
        }
    }

    /// Every object the given pods were made for (tests, and planning without a store).
    pub fn of_pods(pods: &[ObservedPod]) -> Inventory {
        // The replicas of an RC share their owner: each owner is found once before its key is
        // made (a key per pod was most of a steady-state plan's time).
        let distinct: HashSet<(Option<&str>, &str)> = pods
            .iter()
            .map(|p| match p.owner.as_deref() {
                Some(rc) => (Some(rc), ""),
                None => (None, p.id.as_str()),
            })
            .collect();
        Inventory {
            owners: distinct
                .into_iter()
                .map(|(owner, pod)| owner_of(owner, pod))
                .collect(),
        }
    }

    pub fn contains(&self, key: &ObjectKey) -> bool {
        self.owners.contains(key)
    }

    pub fn len(&self) -> usize {
        self.owners.len()
    }

    pub fn is_empty(&self) -> bool {
        self.owners.is_empty()
    }

    /// Objects the plan makes pods for that are not in the inventory yet.
    pub fn missing(&self, plan: &Plan) -> BTreeSet<ObjectKey> {
        plan.actions
            .iter()
            .filter_map(|a| match a {
                Action::CreatePod { pod, .. } => Some(owner_of(pod.owner.as_deref(), &pod.id)),
                _ => None,
            })
            .filter(|k| !self.owners.contains(k))
            .collect()
    }

    /// Adds objects (once their batch is committed).
    pub fn extend(&mut self, keys: impl IntoIterator<Item = ObjectKey>) {
        self.owners.extend(keys);
    }
}

/// The batch that adds `keys` to the inventory section.
pub fn add_batch(keys: &BTreeSet<ObjectKey>) -> Batch {
    let mut batch = Batch::default();
    for k in keys {
        batch.put(Section::Inventory, k.clone(), record(k), None);
    }
    batch
}

/// The batch that settles the inventory after a converged round: the source's pods and
/// replication controllers, plus (when pods of removed objects were kept, `--no-prune`) what
/// it held before. Only changes are written.
pub fn settle_batch(index: &Index, desired: &DesiredState, prune: bool) -> Batch {
    let mut want: BTreeSet<ObjectKey> = owners_in(desired).cloned().collect();
    if !prune {
        want.extend(Inventory::from_index(index).owners);
    }
    let mut batch = Batch::default();
    for k in want.iter().filter(|k| !index.inventory.contains_key(k)) {
        batch.put(Section::Inventory, k.clone(), record(k), None);
    }
    for k in index.inventory.keys().filter(|k| !want.contains(k)) {
        batch.delete(Section::Inventory, k.clone());
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Entry;

    fn key(kind: Kind, id: &str) -> ObjectKey {
        ObjectKey::new(kind, id)
    }

    #[test]
    fn an_old_store_s_applied_objects_stand_in_for_its_inventory() {
        let mut index = Index::default();
        for k in [
            key(Kind::ReplicationController, "web"),
            key(Kind::Service, "web"),
        ] {
            index.applied.insert(k, Entry::new(1, "h".into(), None));
        }
        index
            .inventory
            .insert(key(Kind::Pod, "solo"), Entry::new(2, "h".into(), None));
        let inv = Inventory::from_index(&index);
        assert!(inv.contains(&key(Kind::ReplicationController, "web")));
        assert!(inv.contains(&key(Kind::Pod, "solo")));
        assert!(!inv.contains(&key(Kind::Service, "web")));
        assert_eq!(inv.len(), 2);
    }

    #[test]
    fn settling_keeps_only_the_source_s_owners_unless_pods_were_kept() {
        let mut index = Index::default();
        index.inventory.insert(
            key(Kind::ReplicationController, "gone"),
            Entry::new(1, "h".into(), None),
        );
        let desired = DesiredState::default();
        let pruned = settle_batch(&index, &desired, true);
        assert_eq!(
            pruned.deletes_in(Section::Inventory).collect::<Vec<_>>(),
            vec![&key(Kind::ReplicationController, "gone")]
        );
        assert!(settle_batch(&index, &desired, false).is_empty());
    }
}
