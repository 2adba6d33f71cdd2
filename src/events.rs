//! Events: what happened to which object and why, in the shape Kubernetes gave them (an
//! involved object, a reason, a message, a count and the first and last time).
//!
//! They come from drover's own decisions (a round's actions, pods it could not place, minions
//! lost and back, the source changing or turning invalid, probes) and from each minion's Docker
//! event stream (containers that exit, are killed for memory, restart). A repeat of the same
//! object, reason and message is folded into one event with a count, as Kubernetes does, so a
//! failure that recurs every round is one line with a growing count. The log is bounded by
//! count ([`MAX_EVENTS`]) and age ([`MAX_AGE`], Kubernetes' default event TTL): older events
//! are dropped, never the store grown without limit. Everything here is pure but
//! `EventLog::record_now`, which reads the clock.

use crate::clock::unix_secs as unix;
use crate::store::{Store, StoreError, StoreLock};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime};

/// The most events kept; the oldest (by last time) go first.
pub const MAX_EVENTS: usize = 1000;
/// Events not seen again for this long are dropped (Kubernetes' `--event-ttl` default).
pub const MAX_AGE: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    /// `Pod`, `ReplicationController`, `Service`, `Minion` or `Source`.
    pub kind: String,
    pub name: String,
}

impl ObjectRef {
    pub fn new(kind: &str, name: &str) -> ObjectRef {
        ObjectRef {
            kind: kind.to_string(),
            name: name.to_string(),
        }
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Severity {
    Normal,
    Warning,
}

/// Something that happened, before it is folded into the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub object: ObjectRef,
    pub reason: &'static str,
    pub message: String,
    pub severity: Severity,
}

impl Note {
    pub fn normal(object: ObjectRef, reason: &'static str, message: impl Into<String>) -> Note {
        Note {
            object,
            reason,
            message: message.into(),
            severity: Severity::Normal,
        }
    }

    pub fn warning(object: ObjectRef, reason: &'static str, message: impl Into<String>) -> Note {
        Note {
            severity: Severity::Warning,
            ..Note::normal(object, reason, message)
        }
    }
}

/// One event of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub involved_object: ObjectRef,
    pub reason: String,
    pub message: String,
    #[serde(rename = "type")]
    pub severity: Severity,
    pub count: u32,
    /// RFC 3339.
    pub first_timestamp: String,
    pub last_timestamp: String,
    /// Seconds since the epoch of `last_timestamp` (for ordering and age, without parsing).
    #[serde(default)]
    pub last_seen: u64,
}

/// The bounded, folded event log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventLog {
    pub items: Vec<Event>,
}

impl EventLog {
    /// The log as the store keeps it. Absent is empty; damaged is an error naming it (the
    /// daemon then starts a new log).
    pub fn read(store: &Store) -> Result<EventLog, StoreError> {
        let (place, bytes) = store.read_event_log()?;
        match bytes {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::Damaged {
                path: place,
                reason: e.to_string(),
            }),
            None => Ok(EventLog::default()),
        }
    }

    /// Replaces the stored log with this one (needs the lock).
    pub fn write(&self, store: &Store, lock: &StoreLock) -> Result<(), StoreError> {
        let text = serde_json::to_vec_pretty(self).expect("events serialise");
        store.write_event_log(lock, &text)
    }

    /// Adds `note` at `now`, folding it into an equal event; returns the event.
    pub fn record(&mut self, mut note: Note, now: SystemTime) -> &Event {
        note.message = without_ids(&note.message);
        let stamp = crate::clock::rfc3339(now);
        let at = unix(now);
        let same = self.items.iter().position(|e| {
            e.involved_object == note.object && e.reason == note.reason && e.message == note.message
        });
        let event = match same {
            Some(i) => {
                let mut e = self.items.remove(i);
                e.count = e.count.saturating_add(1);
                e.last_timestamp = stamp;
                e.last_seen = at;
                e
            }
            None => Event {
                involved_object: note.object,
                reason: note.reason.to_string(),
                message: note.message,
                severity: note.severity,
                count: 1,
                first_timestamp: stamp.clone(),
                last_timestamp: stamp,
                last_seen: at,
            },
        };
        // Kept in order of last time: the newest last.
        self.items.push(event);
        self.prune(now);
        self.items.last().expect("just pushed")
    }

    /// How many times drover restarted a container of pod `pod` for its liveness probe, as
    /// its `Killing` events count them, since `since` (Unix seconds: the pod's creation, so
    /// an earlier pod of the same name counts nothing). Docker's own restart count misses
    /// these: its restart API does not add to it.
    pub fn liveness_restarts(&self, pod: &str, since: u64) -> u64 {
        let object = ObjectRef::new("Pod", pod);
        self.of(&object)
            .filter(|e| {
                e.reason == "Killing"
                    && e.message.contains("liveness probe")
                    && e.message.ends_with("; restarted")
                    && e.last_seen >= since
            })
            .map(|e| u64::from(e.count))
            .sum()
    }

    /// `record` at the current time.
    pub fn record_now(&mut self, note: Note) {
        self.record(note, SystemTime::now());
    }

    /// Drops events older than [`MAX_AGE`] and the oldest beyond [`MAX_EVENTS`].
    pub fn prune(&mut self, now: SystemTime) {
        let oldest = unix(now).saturating_sub(MAX_AGE.as_secs());
        self.items.retain(|e| e.last_seen >= oldest);
        if self.items.len() > MAX_EVENTS {
            let surplus = self.items.len() - MAX_EVENTS;
            self.items.drain(..surplus);
        }
    }

    /// The events of one object (`Pod/web-1`), oldest first.
    pub fn of<'a>(&'a self, object: &'a ObjectRef) -> impl Iterator<Item = &'a Event> + 'a {
        self.items
            .iter()
            .filter(move |e| &e.involved_object == object)
    }
}

/// `message` without the ids Docker makes anew at each try (a network endpoint's, a
/// container's: runs of 12 or more hex digits standing alone), so the same failure is the same
/// message and folds into one event, and a log says it once.
pub fn without_ids(message: &str) -> String {
    let bytes = message.as_bytes();
    let mut out = String::with_capacity(message.len());
    let mut i = 0;
    while i < bytes.len() {
        let run = bytes[i..]
            .iter()
            .take_while(|b| b.is_ascii_hexdigit())
            .count();
        let alone = |at: Option<&u8>| at.is_none_or(|b| !b.is_ascii_alphanumeric());
        if run >= 12 && alone(i.checked_sub(1).map(|j| &bytes[j])) && alone(bytes.get(i + run)) {
            i += run;
            // "endpoint x (3f2a...)": the parentheses go with the id.
            if out.ends_with('(') && bytes.get(i) == Some(&b')') {
                out.pop();
                i += 1;
                if out.ends_with(' ') {
                    out.pop();
                }
            } else if out.ends_with(' ') && bytes.get(i) == Some(&b' ') {
                i += 1;
            }
            continue;
        }
        let step = run.max(1);
        // Hex digits are ASCII, so `step` ends on a character boundary unless it is one
        // non-hex character, taken whole.
        let end = if run > 0 {
            i + step
        } else {
            i + message[i..].chars().next().map_or(1, char::len_utf8)
        };
        out.push_str(&message[i..end]);
        i = end;
    }
    out
}

/// A container's Docker event (`die`, `oom`, `start`, `kill`) as a note about its pod, if it is
/// one drover reports. `exit_code` comes with `die`.
pub fn from_docker(
    minion: &str,
    pod: &str,
    container: &str,
    action: &str,
    exit_code: Option<i64>,
) -> Option<Note> {
    let object = ObjectRef::new("Pod", pod);
    match action {
        "die" => Some(match exit_code {
            Some(0) => Note::normal(
                object,
                "Completed",
                format!("Container {container} on {minion} exited with code 0"),
            ),
            Some(code) => Note::warning(
                object,
                "Failed",
                format!("Container {container} on {minion} exited with code {code}"),
            ),
            None => Note::warning(
                object,
                "Failed",
                format!("Container {container} on {minion} exited"),
            ),
        }),
        "oom" => Some(Note::warning(
            object,
            "OOMKilled",
            format!("Container {container} on {minion} ran out of memory and was killed"),
        )),
        // The count folds repeats; Docker's own restart count is in `describe pod`.
        "restart" => Some(Note::warning(
            object,
            "Restarted",
            format!("Container {container} on {minion} restarted by Docker (restart policy)"),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn liveness_restarts_are_counted_from_their_events_since_the_pod_was_made() {
        use super::*;
        let mut log = EventLog::default();
        let at = |s: u64| SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(s);
        let killing = |error: &str| {
            Note::warning(
                ObjectRef::new("Pod", "web-1"),
                "Killing",
                format!("Container c on m1 failed its liveness probe 3 times ({error}); restarted"),
            )
        };
        log.record(killing("HTTP 500"), at(100));
        log.record(killing("HTTP 500"), at(200));
        log.record(killing("timed out after 1s"), at(300));
        let unhealthy = Note::warning(ObjectRef::new("Pod", "web-1"), "Unhealthy", "probe failed");
        log.record(unhealthy, at(310));
        assert_eq!(log.liveness_restarts("web-1", 50), 3);
        assert_eq!(
            log.liveness_restarts("web-1", 250),
            1,
            "only since it was made"
        );
        assert_eq!(log.liveness_restarts("web-2", 0), 0);
    }

    #[test]
    fn per_attempt_docker_ids_are_cut_so_repeats_fold() {
        let said = |id: &str| {
            format!(
                "minion local (local): start container drover-p-web-0-POD: driver failed \
                 programming external connectivity on endpoint drover-p-web-0-POD ({id}): Error \
                 starting userland proxy: listen tcp4 127.0.0.1:28200: bind: address already in use"
            )
        };
        let a = super::without_ids(&said(
            "3f2a9c0e5d1b7a8c4e6f0a2b9d8c7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d",
        ));
        let b = super::without_ids(&said("9d8c7e6f5a4b"));
        assert_eq!(a, b);
        assert!(
            a.contains("on endpoint drover-p-web-0-POD: Error starting userland proxy"),
            "{a}"
        );
        // Short hex, hex inside a word, ports, and other scripts are kept.
        for kept in [
            "image deadbeef not found",
            "pod web-e32c39-3 on m1",
            "x3f2a9c0e5d1b7a8c4 and 3f2a9c0e5d1b7a8c4y",
            "127.0.0.1:28200 — ünïcödé",
        ] {
            assert_eq!(super::without_ids(kept), kept);
        }
        assert_eq!(
            super::without_ids("container 3f2a9c0e5d1b is not running"),
            "container is not running"
        );
    }

    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    #[test]
    fn repeats_fold_into_one_event_with_a_count_and_the_last_time() {
        let mut log = EventLog::default();
        let note = || Note::warning(ObjectRef::new("Pod", "p"), "FailedToPull", "no such image");
        log.record(note(), at(0));
        log.record(
            Note::normal(ObjectRef::new("Pod", "q"), "Started", "ok"),
            at(1),
        );
        let e = log.record(note(), at(5)).clone();
        assert_eq!(log.items.len(), 2);
        assert_eq!(e.count, 2);
        assert_ne!(e.first_timestamp, e.last_timestamp);
        assert_eq!(
            log.items.last().unwrap().reason,
            "FailedToPull",
            "newest last"
        );
        assert_eq!(log.of(&ObjectRef::new("Pod", "p")).count(), 1);
    }

    #[test]
    fn the_log_is_bounded_by_count_and_age() {
        let mut log = EventLog::default();
        for i in 0..(MAX_EVENTS as u64 + 10) {
            log.record(
                Note::normal(ObjectRef::new("Pod", &format!("p{i}")), "Started", "ok"),
                at(i),
            );
        }
        assert_eq!(log.items.len(), MAX_EVENTS);
        assert_eq!(
            log.items[0].involved_object.name, "p10",
            "the oldest went first"
        );
        log.prune(at(MAX_EVENTS as u64 + 10 + MAX_AGE.as_secs() + 1));
        assert!(log.items.is_empty(), "all older than the age limit");
    }

    #[test]
    fn docker_exits_are_completions_failures_or_oom() {
        let n = |a, c| from_docker("m1", "p", "app", a, c).map(|n| n.reason);
        assert_eq!(n("die", Some(0)), Some("Completed"));
        assert_eq!(n("die", Some(1)), Some("Failed"));
        assert_eq!(n("oom", None), Some("OOMKilled"));
        assert_eq!(n("start", None), None);
    }
}
