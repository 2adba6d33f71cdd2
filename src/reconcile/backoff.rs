//! Back-off for pods drover cannot make: a pod whose image cannot be pulled or whose
//! containers cannot be created is tried again after 5 s, then 10 s, 20 s, ... up to 5
//! minutes (Kubernetes' image pull back-off doubles from 10 s to 300 s the same way; drover
//! starts lower because a failed create costs one call, not a pull), and the delay resets once
//! the pod is made. While a pod waits, rounds do not try it and say nothing new about it, so a
//! bad image neither spins apply or the daemon nor floods their output. Containers that crash
//! after starting are restarted by Docker's own restart policy, which backs off the same way
//! (100 ms doubling to a minute); drover reports those restarts as events. Pure.

use crate::minion::{FailureKind, MinionError};
use crate::model::ContainerManifest;
use crate::plan::scheduler::MinionView;
use crate::plan::types::{phase_of, Action, ContainerState, ObservedPod, Phase};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

pub const INITIAL: Duration = Duration::from_secs(5);
pub const MAX: Duration = Duration::from_secs(300);
/// A pod that ran this long since it was made starts its next series from the beginning
/// (the kubelet's ten minutes).
pub const RESET: Duration = Duration::from_secs(600);

/// Why a pod waits, as Kubernetes named it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The image cannot be pulled.
    ImagePullBackOff,
    /// The image is not on the minion and its pull policy forbids a pull (Kubernetes' reason).
    ErrImageNeverPull,
    /// The containers cannot be created or started.
    CreateContainerBackOff,
    /// A container's postStart hook failed: it was killed, and its pod is made again after
    /// the delay (Kubernetes' waiting reason for it).
    PostStartHookError,
    /// The pod was made, then failed within [`RESET`] of it (a container that exits at once,
    /// a port Docker could not bind after all): made again only after the delay.
    CrashLoopBackOff,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::ImagePullBackOff => "ImagePullBackOff",
            Reason::ErrImageNeverPull => "ErrImageNeverPull",
            Reason::CreateContainerBackOff => "CreateContainerBackOff",
            Reason::PostStartHookError => "PostStartHookError",
            Reason::CrashLoopBackOff => "CrashLoopBackOff",
        }
    }

    /// The reason a create failure gives, by its kind.
    pub fn of_failure(error: &MinionError) -> Reason {
        match error.kind {
            Some(FailureKind::PostStartHook) => Reason::PostStartHookError,
            Some(FailureKind::ImageNeverPull) => Reason::ErrImageNeverPull,
            Some(FailureKind::ImagePull) => Reason::ImagePullBackOff,
            None => Reason::CreateContainerBackOff,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub failures: u32,
    pub reason: Reason,
    /// The last failure's message.
    pub message: String,
    /// The delay this wait lasts, and when it ends.
    pub delay: Duration,
    pub until: Instant,
}

/// What a series of failures is kept by: an RC's replicas by their controller and template
/// (they are made from the same manifest, and a replacement is made under another name
/// while a failed one is still being deleted), a pod of its own by its id.
pub fn key(owner: Option<&str>, template_hash: &str, id: &str) -> String {
    match owner {
        Some(rc) => format!("rc {rc}/{template_hash}"),
        None => format!("pod {id}"),
    }
}

/// `key` of a pod to make.
pub fn key_of(pod: &crate::plan::types::PodSpec) -> String {
    key(pod.owner.as_deref(), &pod.template_hash, &pod.id)
}

/// The series waiting, by `key`: a pod that could not be made leaves nothing behind
/// (`Minion::create_pod`), and is tried again after the delay, wherever it is placed.
#[derive(Debug, Default)]
pub struct Backoff {
    waiting: HashMap<String, Waiting>,
    /// Pods made in the last [`RESET`], when: one that fails in that time goes on with its
    /// series (`crashed`) rather than being made again at once.
    made: HashMap<String, Instant>,
}

impl Backoff {
    /// The wait `pod` is in at `now`, if its delay has not run out.
    pub fn holds(&self, pod: &str, now: Instant) -> Option<&Waiting> {
        self.waiting.get(pod).filter(|w| now < w.until)
    }

    /// A create of `pod` failed at `now`: it waits twice as long as last time.
    pub fn failed(&mut self, pod: &str, error: &MinionError, now: Instant) -> &Waiting {
        self.fail(pod, Reason::of_failure(error), &error.message, now)
    }

    /// `pod` was found failed and is deleted at `now`: when it was made less than [`RESET`]
    /// ago, that is a failure of its series (`CrashLoopBackOff`), and its next make waits.
    /// Returns whether it counted.
    pub fn crashed(&mut self, pod: &str, message: &str, now: Instant) -> bool {
        let recent = self
            .made
            .remove(pod)
            .is_some_and(|at| now.saturating_duration_since(at) < RESET);
        if recent {
            self.fail(pod, Reason::CrashLoopBackOff, message, now);
        }
        recent
    }

    fn fail(&mut self, pod: &str, reason: Reason, message: &str, now: Instant) -> &Waiting {
        let failures = self.waiting.get(pod).map_or(0, |w| w.failures) + 1;
        let delay = INITIAL
            .saturating_mul(1u32 << (failures - 1).min(16))
            .min(MAX);
        self.waiting.insert(
            pod.to_string(),
            Waiting {
                failures,
                reason,
                message: message.to_string(),
                delay,
                until: now + delay,
            },
        );
        &self.waiting[pod]
    }

    /// `pod` was made at `now`: it no longer waits, but its series goes on should it fail
    /// within [`RESET`] (`crashed`).
    pub fn succeeded(&mut self, pod: &str, now: Instant) {
        self.made.insert(pod.to_string(), now);
    }

    /// Forgets pods no longer wanted, and series whose pod ran [`RESET`] since it was made
    /// (its next failure starts from the initial delay again).
    pub fn retain(&mut self, wanted: impl Fn(&str) -> bool, now: Instant) {
        self.made
            .retain(|_, at| now.saturating_duration_since(*at) < RESET);
        let made = &self.made;
        self.waiting
            .retain(|pod, _| wanted(pod) || made.contains_key(pod));
    }

    /// When the first wait ends.
    pub fn next_retry(&self, now: Instant) -> Option<Instant> {
        self.waiting
            .values()
            .map(|w| w.until)
            .filter(|u| *u > now)
            .min()
    }
}

/// The pods a plan deletes that failed on their own: seen Failed on a minion that answered
/// (a lost minion's pods are Failed by the node controller), their containers all there, one
/// exited as its restart policy does not restart, or one never started. A pod changed by hand
/// is no crash, and is replaced at once: a container or its infra container removed, an
/// "always" container stopped (or seen exited in the moment `docker rm -f` kills it before
/// removing it).
pub fn crashes<'a>(
    actions: &[Action],
    pods: &'a [ObservedPod],
    minions: &[MinionView],
    manifests: &BTreeMap<String, &ContainerManifest>,
) -> Vec<&'a ObservedPod> {
    let deleted = |o: &ObservedPod| {
        actions.iter().any(|a| {
            matches!(a, Action::DeletePod { minion, id, .. } if *minion == o.minion && *id == o.id)
        })
    };
    let answered = |o: &ObservedPod| minions.iter().any(|v| v.name == o.minion && v.ready);
    let on_its_own = |o: &ObservedPod| {
        let states: Vec<ContainerState> = o.containers.iter().map(|c| c.state).collect();
        manifests.get(&o.template_hash).is_some_and(|m| {
            m.containers.len() == states.len()
                && (states.contains(&ContainerState::Waiting)
                    || phase_of(&states, m.restart_policy) == Phase::Failed)
        })
    };
    pods.iter()
        .filter(|o| o.phase == Phase::Failed && deleted(o) && answered(o) && on_its_own(o))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(message: &str, kind: Option<FailureKind>) -> MinionError {
        MinionError {
            kind,
            ..MinionError::new("m1", "10.0.0.2", message)
        }
    }

    #[test]
    fn delays_double_up_to_the_cap_and_reset_after_ten_minutes_of_running() {
        let mut b = Backoff::default();
        let now = Instant::now();
        let pull = failure("cannot pull image x: denied", Some(FailureKind::ImagePull));
        let delays: Vec<u64> = (0..10)
            .map(|_| b.failed("p", &pull, now).delay.as_secs())
            .collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300, 300, 300]);
        assert!(b.holds("p", now + Duration::from_secs(299)).is_some());
        assert!(b.holds("p", now + Duration::from_secs(300)).is_none());
        assert_eq!(b.holds("p", now).unwrap().reason, Reason::ImagePullBackOff);
        // Made, then failed at once (a crash loop): the series goes on, from where it was.
        let later = now + Duration::from_secs(300);
        b.succeeded("p", later);
        b.retain(|_| false, later);
        assert!(b.crashed("p", "pod p failed soon after it was made", later));
        let w = b.holds("p", later).unwrap();
        assert_eq!((w.reason, w.failures), (Reason::CrashLoopBackOff, 11));
        assert_eq!(w.delay, MAX);
        // Made again and running for ten minutes: forgotten, its next failure starts over.
        let made = later + MAX;
        b.succeeded("p", made);
        b.retain(|_| false, made + RESET);
        assert!(!b.crashed("p", "failed much later", made + RESET));
        assert_eq!(
            b.failed("p", &failure("port is already allocated", None), now)
                .delay,
            INITIAL
        );
        assert_eq!(
            b.holds("p", now).unwrap().reason,
            Reason::CreateContainerBackOff
        );
        assert_eq!(b.next_retry(now), Some(now + INITIAL));
        // By its kind, whatever its words say ("pull" in a hook's output is no pull).
        assert_eq!(
            Reason::of_failure(&failure(
                "postStart hook of container app failed: touch /x exited with 1: pull",
                Some(FailureKind::PostStartHook)
            )),
            Reason::PostStartHookError
        );
        assert_eq!(
            Reason::of_failure(&failure(
                "ErrImageNeverPull: image app:1 is not present on the minion",
                Some(FailureKind::ImageNeverPull)
            )),
            Reason::ErrImageNeverPull
        );
        assert_eq!(
            Reason::of_failure(&failure("no such image: repository does not exist", None)),
            Reason::CreateContainerBackOff
        );
    }

    #[test]
    fn only_a_pod_that_failed_on_its_own_is_a_crash() {
        use crate::model::RestartPolicy::{Always, Never};
        use crate::reconcile::restarts::tests::{manifest, seen};
        let exited = ContainerState::Exited { code: 137 };
        let run = ContainerState::Running;
        let delete = vec![Action::DeletePod {
            minion: "m1".into(),
            id: "p".into(),
            reason: "failed".into(),
            legacy: false,
        }];
        let m1 = |ready| MinionView {
            unschedulable: false,
            drain: None,
            name: "m1".into(),
            ready,
            labels: Default::default(),
            capacity: Default::default(),
            taken: Default::default(),
        };
        let crashed =
            |pod: ObservedPod, policy, containers: usize, ready: bool, plan: &[Action]| {
                let m = manifest(containers, policy);
                let manifests = BTreeMap::from([("h".to_string(), &m)]);
                !crashes(plan, &[pod], &[m1(ready)], &manifests).is_empty()
            };
        // Exited where its policy does not restart it, or never started: a crash.
        assert!(crashed(seen(&[exited, exited]), Never {}, 2, true, &delete));
        assert!(crashed(
            seen(&[ContainerState::Waiting]),
            Always {},
            1,
            true,
            &delete
        ));
        // An "always" container seen exited was stopped by hand, or killed by `docker rm -f`
        // a moment before its removal: replaced at once.
        assert!(!crashed(seen(&[run, exited]), Always {}, 2, true, &delete));
        // A container removed by hand.
        assert!(!crashed(seen(&[exited]), Never {}, 2, true, &delete));
        // Its infra container removed (Failed, its app containers running).
        assert!(!crashed(seen(&[run]), Never {}, 1, true, &delete));
        // Failed by the node controller on a minion that did not answer.
        assert!(!crashed(seen(&[exited]), Never {}, 1, false, &delete));
        // Not deleted by this plan.
        assert!(!crashed(seen(&[exited]), Never {}, 1, true, &[]));
    }
}
