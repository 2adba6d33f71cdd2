//! The observed state as the store keeps it: every minion and its pods as last seen. Pure: it
//! builds the store batch that records an observation, and reads one back from stored texts.
//!
//! Records: `Minion/<name>` (a `MinionView`) and `Pod/<pod>+<minion>` (an `ObservedPod`; the
//! minion is part of the key because after a node loss the same pod id can briefly run on two
//! minions, and so the batch knows a stored pod's minion from the index alone).
//!
//! A minion that could not be observed keeps its last-seen pods (the minion is recorded as not
//! Ready), so a failed read never erases what drover knows. A minion no longer configured is
//! forgotten together with its pods: that is a decision, not a failure.

use super::scheduler::MinionView;
use super::types::ObservedPod;
use crate::model::{Kind, ObjectKey};
use crate::store::{content_hash, Batch, Index, Section};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Every minion and the pods found on it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observation {
    pub minions: Vec<MinionView>,
    pub pods: Vec<ObservedPod>,
}

impl Observation {
    pub fn is_empty(&self) -> bool {
        self.minions.is_empty() && self.pods.is_empty()
    }

    /// The minions that did not answer.
    fn silent(&self) -> BTreeSet<&str> {
        self.minions
            .iter()
            .filter(|m| !m.ready)
            .map(|m| m.name.as_str())
            .collect()
    }

    /// This observation for the minions that answered, and `previous` for the ones that did
    /// not: the pods drover last saw there.
    pub fn or_last_seen(mut self, previous: &Observation) -> Observation {
        let silent: BTreeSet<String> = self.silent().into_iter().map(str::to_string).collect();
        self.pods.retain(|p| !silent.contains(&p.minion));
        self.pods.extend(
            previous
                .pods
                .iter()
                .filter(|p| silent.contains(&p.minion))
                .cloned(),
        );
        self.pods
            .sort_by(|a, b| (&a.id, &a.minion).cmp(&(&b.id, &b.minion)));
        self
    }
}

pub fn pod_key(pod: &str, minion: &str) -> ObjectKey {
    ObjectKey::new(Kind::Pod, format!("{pod}+{minion}"))
}

fn minion_of(key: &ObjectKey) -> Option<&str> {
    key.id.rsplit_once('+').map(|(_, m)| m)
}

fn record(value: &impl serde::Serialize) -> String {
    let mut t = serde_json::to_string_pretty(value).expect("observed records serialise");
    t.push('\n');
    t
}

/// The batch that makes the store's observed section say what `seen` says, keeping the last
/// seen pods of minions that did not answer. Only records that changed are written, so a
/// quiet resync commits nothing.
pub fn observation_batch(index: &Index, seen: &Observation) -> Batch {
    let stored = &index.observed;
    let mut batch = Batch::default();
    let silent = seen.silent();
    let mut current = BTreeSet::new();
    let records = seen
        .minions
        .iter()
        .map(|m| (ObjectKey::new(Kind::Minion, &m.name), record(m)))
        .chain(
            seen.pods
                .iter()
                .filter(|p| !silent.contains(p.minion.as_str()))
                .map(|p| (pod_key(&p.id, &p.minion), record(p))),
        );
    for (key, text) in records {
        current.insert(key.clone());
        let unchanged = stored
            .get(&key)
            .is_some_and(|e| e.hash == content_hash(text.as_bytes()));
        if !unchanged {
            batch.put(Section::Observed, key, text, None);
        }
    }
    for key in stored.keys().filter(|k| !current.contains(*k)) {
        let last_seen_on_silent =
            key.kind == Kind::Pod && minion_of(key).is_some_and(|m| silent.contains(m));
        if !last_seen_on_silent {
            batch.delete(Section::Observed, key.clone());
        }
    }
    batch
}

/// A stored record that does not parse.
#[derive(Debug)]
pub struct BadRecord {
    pub key: ObjectKey,
    pub error: serde_json::Error,
}

impl fmt::Display for BadRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "observed record {}: {}", self.key, self.error)
    }
}

/// Reads an observation back from the observed section's texts.
pub fn from_records(texts: &BTreeMap<ObjectKey, String>) -> Result<Observation, BadRecord> {
    let mut seen = Observation::default();
    for (key, text) in texts {
        let bad = |error| BadRecord {
            key: key.clone(),
            error,
        };
        match key.kind {
            Kind::Minion => seen.minions.push(serde_json::from_str(text).map_err(bad)?),
            Kind::Pod => seen.pods.push(serde_json::from_str(text).map_err(bad)?),
            _ => {}
        }
    }
    Ok(seen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::types::{ContainerState, ContainerStatus, Phase};
    use crate::store::Entry;

    fn minion(name: &str, ready: bool) -> MinionView {
        MinionView {
            unschedulable: false,
            drain: None,
            name: name.into(),
            ready,
            labels: Default::default(),
            capacity: Default::default(),
            taken: Default::default(),
        }
    }

    fn pod(id: &str, minion: &str, phase: Phase) -> ObservedPod {
        ObservedPod {
            id: id.into(),
            minion: minion.into(),
            owner: Some("web".into()),
            template_hash: "h".into(),
            labels: [("app".to_string(), "web".to_string())].into(),
            phase,
            containers: vec![ContainerStatus {
                name: "app".into(),
                image: "busybox".into(),
                state: ContainerState::Running,
            }],
            created: 7,
            request: Default::default(),
            legacy: false,
            ports: vec![],
            ip: None,
            unready: false,
        }
    }

    /// The index after committing `batch` onto `index` (hashes only, as the store would).
    fn committed(mut index: Index, batch: &Batch) -> Index {
        for (key, text) in batch.puts_in(Section::Observed) {
            index.observed.insert(
                key.clone(),
                Entry::new(1, content_hash(text.as_bytes()), None),
            );
        }
        for key in batch.deletes_in(Section::Observed) {
            index.observed.remove(key);
        }
        index
    }

    #[test]
    fn recording_twice_writes_nothing_the_second_time() {
        let seen = Observation {
            minions: vec![minion("m1", true), minion("m2", true)],
            pods: vec![
                pod("a", "m1", Phase::Running),
                pod("b", "m2", Phase::Pending),
            ],
        };
        let first = observation_batch(&Index::default(), &seen);
        assert_eq!(first.puts_in(Section::Observed).count(), 4);
        let index = committed(Index::default(), &first);
        assert!(observation_batch(&index, &seen).is_empty());
        // A phase change rewrites that pod's record alone.
        let mut later = seen.clone();
        later.pods[1].phase = Phase::Running;
        let keys: Vec<_> = observation_batch(&index, &later)
            .puts_in(Section::Observed)
            .map(|(k, _)| k.to_string())
            .collect();
        assert_eq!(keys, ["Pod/b+m2"]);
    }

    #[test]
    fn a_silent_minion_keeps_its_pods_and_a_removed_one_loses_them() {
        let seen = Observation {
            minions: vec![minion("m1", true), minion("m2", true), minion("m3", true)],
            pods: vec![
                pod("a", "m1", Phase::Running),
                pod("b", "m2", Phase::Running),
                pod("c", "m3", Phase::Running),
            ],
        };
        let index = committed(
            Index::default(),
            &observation_batch(&Index::default(), &seen),
        );
        // m2 does not answer (the node controller may report its pod as Failed: not recorded),
        // m3 left the configuration, a's container went away on m1.
        let now = Observation {
            minions: vec![minion("m1", true), minion("m2", false)],
            pods: vec![pod("b", "m2", Phase::Failed)],
        };
        let index = committed(index.clone(), &observation_batch(&index, &now));
        let keys: Vec<String> = index.observed.keys().map(|k| k.to_string()).collect();
        assert_eq!(keys, ["Minion/m1", "Minion/m2", "Pod/b+m2"]);
        let previous = Observation {
            minions: vec![],
            pods: vec![pod("b", "m2", Phase::Running)],
        };
        let merged = now.or_last_seen(&previous);
        assert_eq!(merged.pods, [pod("b", "m2", Phase::Running)]);
    }

    #[test]
    fn records_read_back_as_they_were_written() {
        let mut seen = Observation {
            minions: vec![minion("m1", true)],
            pods: vec![
                pod("a", "m1", Phase::Running),
                pod("a", "m2", Phase::Failed),
            ],
        };
        seen.pods[1].containers[0].state = ContainerState::Exited { code: 3 };
        let texts: BTreeMap<ObjectKey, String> = observation_batch(&Index::default(), &seen)
            .puts_in(Section::Observed)
            .map(|(k, t)| (k.clone(), t.to_string()))
            .collect();
        let failed = &texts[&pod_key("a", "m2")];
        assert!(
            failed.contains("\"state\": \"exited\",\n      \"exitCode\": 3"),
            "{failed}"
        );
        assert_eq!(from_records(&texts).unwrap(), seen);
        let mut broken = texts.clone();
        broken.insert(pod_key("x", "m1"), "{\"id\": 3}".into());
        let err = from_records(&broken).unwrap_err().to_string();
        assert!(err.starts_with("observed record Pod/x+m1:"), "{err}");
    }
}
