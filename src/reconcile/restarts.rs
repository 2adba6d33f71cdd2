//! Restarts drover makes on purpose (a liveness probe past its threshold), told to the rounds.
//!
//! Docker restarts a container as a stop and then a start, so for a moment an `always`
//! container is listed as exited. A round that looks then must not take it for a container
//! stopped by hand (which it replaces, `minion::pods`): that deleted the pod right after its
//! liveness restart, running its preStop hook a second time. The prober writes each restart's
//! span here; a round asks whether one overlapped its observation.

use crate::model::ContainerManifest;
use crate::plan::types::{phase_of, ContainerState, ObservedPod, Phase};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a finished restart is remembered: far longer than any round's observation.
const KEPT: Duration = Duration::from_secs(120);

/// When a restart began, and when it ended (None while under way).
type Span = (Instant, Option<Instant>);

/// The latest restart of each (minion, pod).
#[derive(Debug, Default)]
pub struct Restarts {
    spans: Mutex<HashMap<(String, String), Span>>,
}

impl Restarts {
    pub fn begin(&self, minion: &str, pod: &str, now: Instant) {
        let mut spans = self.spans.lock().expect("restarts");
        spans.retain(|_, (_, ended)| ended.is_none_or(|e| now.duration_since(e) < KEPT));
        spans.insert((minion.to_string(), pod.to_string()), (now, None));
    }

    pub fn end(&self, minion: &str, pod: &str, now: Instant) {
        let mut spans = self.spans.lock().expect("restarts");
        if let Some((_, ended)) = spans.get_mut(&(minion.to_string(), pod.to_string())) {
            *ended = Some(now);
        }
    }

    /// Whether a restart of the pod was under way at some moment of `from..=to`.
    pub fn overlapped(&self, minion: &str, pod: &str, from: Instant, to: Instant) -> bool {
        let spans = self.spans.lock().expect("restarts");
        spans
            .get(&(minion.to_string(), pod.to_string()))
            .is_some_and(|(began, ended)| *began <= to && ended.is_none_or(|e| e >= from))
    }
}

/// The phase of a pod seen Failed while drover restarted its container: when every container
/// of its manifest is there and was started, its exited one is the restart under way, not a
/// container stopped by hand, and the phase table decides (an `always` pod stays Running, so
/// the round does not replace it); otherwise Failed, as seen.
pub fn restarted_phase(pod: &ObservedPod, manifest: Option<&ContainerManifest>) -> Phase {
    let states: Vec<ContainerState> = pod.containers.iter().map(|c| c.state).collect();
    match manifest {
        Some(m)
            if m.containers.len() == states.len() && !states.contains(&ContainerState::Waiting) =>
        {
            phase_of(&states, m.restart_policy)
        }
        _ => Phase::Failed,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A Failed pod `p` on m1 with these app containers (fixture shared with `backoff`).
    pub(crate) fn seen(states: &[ContainerState]) -> ObservedPod {
        ObservedPod {
            id: "p".into(),
            minion: "m1".into(),
            owner: None,
            template_hash: "h".into(),
            labels: Default::default(),
            phase: Phase::Failed,
            containers: states
                .iter()
                .enumerate()
                .map(|(i, s)| crate::plan::types::ContainerStatus {
                    name: format!("c{i}"),
                    image: "i".into(),
                    state: *s,
                })
                .collect(),
            created: 0,
            request: Default::default(),
            legacy: false,
            ports: vec![],
            ip: None,
            unready: false,
        }
    }

    pub(crate) fn manifest(
        containers: usize,
        policy: crate::model::RestartPolicy,
    ) -> ContainerManifest {
        ContainerManifest {
            containers: vec![Default::default(); containers],
            restart_policy: policy,
            ..Default::default()
        }
    }

    #[test]
    fn a_pod_seen_mid_restart_is_judged_by_its_restart_policy_not_as_stopped_by_hand() {
        use crate::model::RestartPolicy::*;
        let exited = ContainerState::Exited { code: 137 };
        let run = ContainerState::Running;
        let pod = seen(&[run, exited]);
        assert_eq!(
            restarted_phase(&pod, Some(&manifest(2, Always {}))),
            Phase::Running
        );
        assert_eq!(
            restarted_phase(&pod, Some(&manifest(2, OnFailure {}))),
            Phase::Running
        );
        assert_eq!(
            restarted_phase(&seen(&[exited]), Some(&manifest(1, Never {}))),
            Phase::Failed,
            "killed under never: the pod fails"
        );
        assert_eq!(
            restarted_phase(&seen(&[exited]), Some(&manifest(2, Always {}))),
            Phase::Failed,
            "a container removed is still broken"
        );
        assert_eq!(
            restarted_phase(
                &seen(&[ContainerState::Waiting]),
                Some(&manifest(1, Always {}))
            ),
            Phase::Failed,
            "never started: half made"
        );
        assert_eq!(
            restarted_phase(&pod, None),
            Phase::Failed,
            "no longer wanted"
        );
    }

    #[test]
    fn a_restart_counts_for_the_observations_it_overlapped() {
        let r = Restarts::default();
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        assert!(!r.overlapped("m1", "p", t0, s(10)), "none yet");
        r.begin("m1", "p", s(5));
        assert!(r.overlapped("m1", "p", s(4), s(6)), "under way");
        assert!(r.overlapped("m1", "p", s(6), s(7)), "still under way");
        assert!(!r.overlapped("m1", "p", s(1), s(4)), "began after the look");
        assert!(!r.overlapped("m2", "p", s(4), s(6)), "another minion's pod");
        r.end("m1", "p", s(8));
        assert!(r.overlapped("m1", "p", s(7), s(9)), "ended during the look");
        assert!(
            !r.overlapped("m1", "p", s(9), s(10)),
            "over before the look"
        );
        r.begin("m1", "q", s(8) + KEPT);
        assert!(
            !r.overlapped("m1", "p", t0, s(9) + KEPT),
            "long finished restarts are forgotten"
        );
    }
}
