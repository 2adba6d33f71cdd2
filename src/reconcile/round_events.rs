//! What a round means as events: the pods it made and removed, what failed and why, minions
//! that changed state, pods the node controller gave up on (`from_round`, against the round
//! before), and the back-off each failed create now waits (`from_backoff`). Pure: the caller
//! records the notes in its `EventLog`.

use super::backoff::{self, Backoff};
use super::Round;
use crate::events::{Note, ObjectRef};
use crate::minion::FailureKind;
use crate::plan::types::{Action, Phase};
use std::collections::{HashMap, HashSet};

/// What happened in `round`, judged against the round before it (`None` for the first).
pub fn from_round(before: Option<&Round>, round: &Round) -> Vec<Note> {
    let mut notes = Vec::new();
    done(before, round, &mut notes);
    failed(round, &mut notes);
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
    deliveries(round, &mut notes);
    minions_and_lost_pods(before, round, &mut notes);
    notes
}

/// Each image sent to a minion (`Pushed`, with what went and what was left out), or that
/// could not be (`FailedToPush`); a minion that had the build says nothing. Counted in the
/// metrics as they are told.
fn deliveries(round: &Round, notes: &mut Vec<Note>) {
    let metrics = crate::metrics::global();
    for (delivery, results) in &round.deliveries {
        let image = &delivery.reference;
        let build = crate::images::short_id(&delivery.id);
        for (minion, result) in results {
            let object = ObjectRef::new("Minion", minion);
            match result {
                Ok(sent) if sent.already => {}
                Ok(sent) => {
                    metrics.image_push(
                        minion,
                        image,
                        Some((
                            sent.bytes_sent,
                            sent.took.as_secs_f64(),
                            sent.layers_skipped as u64,
                        )),
                    );
                    notes.push(Note::normal(
                        object,
                        "Pushed",
                        format!("Pushed image {image} ({build}): {}", sent.summary()),
                    ));
                }
                Err(why) => {
                    metrics.image_push(minion, image, None);
                    notes.push(Note::warning(
                        object,
                        "FailedToPush",
                        format!("Failed to push image {image} ({build}): {why}"),
                    ));
                }
            }
        }
    }
}

fn pod(id: &str) -> ObjectRef {
    ObjectRef::new("Pod", id)
}

fn rc(id: &str) -> ObjectRef {
    ObjectRef::new("ReplicationController", id)
}

/// The pods the round made and removed, told of each pod and of its RC.
fn done(before: Option<&Round>, round: &Round, notes: &mut Vec<Note>) {
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
}

/// What failed: a pod that could not be made, by the kind of failure; any other action, on
/// its minion.
fn failed(round: &Round, notes: &mut Vec<Note>) {
    for (action, error) in &round.failed {
        if let Action::CreatePod { pod: spec, .. } = action {
            let reason = match error.kind {
                Some(FailureKind::PostStartHook) => "FailedPostStartHook",
                Some(FailureKind::ImagePull | FailureKind::ImageNeverPull) => "FailedToPull",
                None => "FailedCreate",
            };
            notes.push(Note::warning(pod(&spec.id), reason, error.message.clone()));
        } else {
            notes.push(Note::warning(
                ObjectRef::new("Minion", &error.minion),
                "FailedAction",
                format!("{}: {}", crate::executor::describe(action).1, error.message),
            ));
        }
    }
}

/// Minions that changed state, and the pods the node controller gave up on.
fn minions_and_lost_pods(before: Option<&Round>, round: &Round, notes: &mut Vec<Note>) {
    // Looked up by name, not searched: a round of a thousand minions and 30,000 pods
    // compared pod by pod with the last one was most of a no-op round's CPU.
    let was_ready: HashMap<&str, bool> = before
        .map(|b| {
            b.minions
                .iter()
                .map(|m| (m.name.as_str(), m.ready))
                .collect()
        })
        .unwrap_or_default();
    for m in &round.minions {
        match (was_ready.get(m.name.as_str()), m.ready) {
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
    let lost: HashSet<&str> = round
        .minions
        .iter()
        .filter(|m| !m.ready)
        .map(|m| m.name.as_str())
        .collect();
    if lost.is_empty() {
        return;
    }
    let before_phase: HashMap<(&str, &str), Phase> = before
        .map(|b| {
            b.pods
                .iter()
                .filter(|p| lost.contains(p.minion.as_str()))
                .map(|p| ((p.id.as_str(), p.minion.as_str()), p.phase))
                .collect()
        })
        .unwrap_or_default();
    for p in &round.pods {
        let earlier = before_phase.get(&(p.id.as_str(), p.minion.as_str()));
        if p.phase == Phase::Failed
            && lost.contains(p.minion.as_str())
            && earlier.is_some_and(|e| *e != Phase::Failed)
        {
            notes.push(Note::warning(
                pod(&p.id),
                "NodeLost",
                format!("Pod failed: its minion {} was lost", p.minion),
            ));
        }
    }
}

/// The back-off each failed create of `round` now waits (after `Reconciler::execute`
/// recorded it in `backoff`): one event per delay, so the delays read as a growing series.
pub fn from_backoff(round: &Round, backoff: &Backoff, now: std::time::Instant) -> Vec<Note> {
    round
        .failed
        .iter()
        .filter_map(|(a, _)| match a {
            Action::CreatePod { pod, .. } => Some(pod),
            _ => None,
        })
        .filter_map(|pod| {
            let w = backoff.holds(&backoff::key_of(pod), now)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Severity;

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
    }
}
