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
use crate::plan::pods::{Action, ObservedPod, Phase};
use crate::reconcile::Round;
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

/// What happened in `round`, judged against the round before it (`None` for the first).
pub fn from_round(before: Option<&Round>, round: &Round) -> Vec<Note> {
    let mut notes = Vec::new();
    let pod = |id: &str| ObjectRef::new("Pod", id);
    let rc = |id: &str| ObjectRef::new("ReplicationController", id);
    for action in &round.done {
        match action {
            Action::CreatePod { minion, pod: spec } => {
                notes.push(Note::normal(
                    pod(&spec.id),
                    "Scheduled",
                    format!("Successfully assigned {} to {minion}", spec.id),
                ));
                notes.push(Note::normal(
                    pod(&spec.id),
                    "Started",
                    format!("Created and started its containers on {minion}"),
                ));
                if let Some(owner) = &spec.owner {
                    notes.push(Note::normal(
                        rc(owner),
                        "SuccessfulCreate",
                        format!("Created pod: {}", spec.id),
                    ));
                }
            }
            Action::DeletePod {
                minion, id, reason, ..
            } => {
                notes.push(Note::normal(
                    pod(id),
                    "Killing",
                    format!("Stopped and removed on {minion}: {reason}"),
                ));
                if let Some(owner) = round
                    .pods
                    .iter()
                    .chain(before.map(|b| b.pods.iter()).into_iter().flatten())
                    .find(|p| &p.id == id && &p.minion == minion)
                    .and_then(|p| p.owner.as_deref())
                {
                    notes.push(Note::normal(
                        rc(owner),
                        "SuccessfulDelete",
                        format!("Deleted pod: {id}"),
                    ));
                }
            }
            Action::DeleteVolumes { .. } => {}
        }
    }
    for (action, error) in &round.failed {
        if let Action::CreatePod { pod: spec, .. } = action {
            let message = error.message.clone();
            let reason = if is_post_start_failure(&message) {
                "FailedPostStartHook"
            } else if is_pull_failure(&message) {
                "FailedToPull"
            } else {
                "FailedCreate"
            };
            notes.push(Note::warning(pod(&spec.id), reason, message));
        } else {
            notes.push(Note::warning(
                ObjectRef::new("Minion", &error.minion),
                "FailedAction",
                format!("{}: {}", crate::exec::describe(action).1, error.message),
            ));
        }
    }
    for (action, warning) in &round.warnings {
        let object = match action {
            Action::CreatePod { pod: spec, .. } => pod(&spec.id),
            Action::DeletePod { id, .. } => pod(id),
            Action::DeleteVolumes { minion, .. } => ObjectRef::new("Minion", minion),
        };
        notes.push(Note::warning(
            object,
            warning.reason,
            warning.message.clone(),
        ));
    }
    for (id, why) in &round.unschedulable {
        notes.push(Note::warning(pod(id), "FailedScheduling", why.clone()));
    }
    // Minions that changed state, and the pods the node controller gave up on.
    let was_ready = |name: &str| {
        before.and_then(|b| b.minions.iter().find(|m| m.name == name).map(|m| m.ready))
    };
    for m in &round.minions {
        match (was_ready(&m.name), m.ready) {
            (Some(true) | None, false) => notes.push(Note::warning(
                ObjectRef::new("Minion", &m.name),
                "NodeNotReady",
                format!("Minion {} is not ready", m.name),
            )),
            (Some(false), true) => notes.push(Note::normal(
                ObjectRef::new("Minion", &m.name),
                "NodeReady",
                format!("Minion {} is ready again", m.name),
            )),
            _ => {}
        }
    }
    let before_pods: &[ObservedPod] = before.map(|b| b.pods.as_slice()).unwrap_or(&[]);
    for p in &round.pods {
        let earlier = before_pods
            .iter()
            .find(|b| b.id == p.id && b.minion == p.minion);
        let minion_lost = round.minions.iter().any(|m| m.name == p.minion && !m.ready);
        if p.phase == Phase::Failed
            && minion_lost
            && earlier.is_some_and(|e| e.phase != Phase::Failed)
        {
            notes.push(Note::warning(
                pod(&p.id),
                "NodeLost",
                format!("Pod failed: its minion {} was lost", p.minion),
            ));
        }
    }
    notes
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

/// The back-off each failed create of `round` now waits (after `Reconciler::execute`
/// recorded it in `backoff`): one event per delay, so the delays read as a growing series.
pub fn from_backoff(
    round: &Round,
    backoff: &crate::reconcile::backoff::Backoff,
    now: std::time::Instant,
) -> Vec<Note> {
    round
        .failed
        .iter()
        .filter_map(|(a, _)| match a {
            Action::CreatePod { pod, .. } => Some(pod),
            _ => None,
        })
        .filter_map(|pod| {
            let w = backoff.holds(&crate::reconcile::backoff::key_of(pod), now)?;
            Some(Note::warning(
                ObjectRef::new("Pod", &pod.id),
                "BackOff",
                format!(
                    "{}: trying again in {}s (failure {})",
                    w.reason.as_str(),
                    w.delay.as_secs(),
                    w.failures
                ),
            ))
        })
        .collect()
}

/// Whether a create failure was the image (Docker says "pull access denied", "not found",
/// "manifest unknown", or drover's own "cannot pull").
pub fn is_pull_failure(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "pull",
        "manifest unknown",
        "no such image",
        "repository does not exist",
    ]
    .iter()
    .any(|s| m.contains(s))
}

/// Whether a create failure was a container's postStart hook (`minion::hooks`).
pub fn is_post_start_failure(message: &str) -> bool {
    message.starts_with(crate::minion::hooks::POST_START_FAILED)
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

    #[test]
    fn what_an_action_had_to_tell_is_a_warning_on_its_pod() {
        let mut round = Round::default();
        round.warnings.push((
            Action::DeletePod {
                minion: "m1".into(),
                id: "web-1".into(),
                reason: "scaled down to 0".into(),
                legacy: false,
            },
            crate::minion::Warning {
                reason: "FailedPreStopHook",
                message: "preStop hook of container c on m1 failed: timed out after 30 s".into(),
            },
        ));
        let notes = from_round(None, &round);
        let n = notes
            .iter()
            .find(|n| n.reason == "FailedPreStopHook")
            .unwrap();
        assert_eq!(n.object, ObjectRef::new("Pod", "web-1"));
        assert_eq!(n.severity, Severity::Warning);
        assert!(is_post_start_failure(
            "postStart hook of container c failed: exited with 1"
        ));
        assert!(!is_post_start_failure(
            "cannot pull image x: postStart hook"
        ));
    }

    #[test]
    fn pull_failures_are_told_apart() {
        assert!(is_pull_failure(
            "pull access denied for nope/nope, repository does not exist"
        ));
        assert!(!is_pull_failure("port is already allocated"));
    }
}
