//! Back-off for pods drover cannot make: a pod whose image cannot be pulled or whose
//! containers cannot be created is tried again after 5 s, then 10 s, 20 s, ... up to 5
//! minutes (Kubernetes' image pull back-off doubles from 10 s to 300 s the same way; drover
//! starts lower because a failed create costs one call, not a pull), and the delay resets once
//! the pod is made. While a pod waits, rounds do not try it and say nothing new about it, so a
//! bad image neither spins apply or the daemon nor floods their output. Containers that crash
//! after starting are restarted by Docker's own restart policy, which backs off the same way
//! (100 ms doubling to a minute); drover reports those restarts as events. Pure.

use std::collections::HashMap;
use std::time::{Duration, Instant};

pub const INITIAL: Duration = Duration::from_secs(5);
pub const MAX: Duration = Duration::from_secs(300);

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
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::ImagePullBackOff => "ImagePullBackOff",
            Reason::ErrImageNeverPull => "ErrImageNeverPull",
            Reason::CreateContainerBackOff => "CreateContainerBackOff",
            Reason::PostStartHookError => "PostStartHookError",
        }
    }

    /// The reason a create failure gives.
    pub fn of_failure(message: &str) -> Reason {
        if crate::events::is_post_start_failure(message) {
            Reason::PostStartHookError
        } else if message.contains(crate::minion::pods::ERR_IMAGE_NEVER_PULL) {
            Reason::ErrImageNeverPull
        } else if crate::events::is_pull_failure(message) {
            Reason::ImagePullBackOff
        } else {
            Reason::CreateContainerBackOff
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

/// The pods waiting, by pod id: a pod that could not be made leaves nothing behind
/// (`Minion::create_pod`), so it is tried again under the same id, wherever it is placed.
#[derive(Debug, Default)]
pub struct Backoff {
    waiting: HashMap<String, Waiting>,
}

impl Backoff {
    /// The wait `pod` is in at `now`, if its delay has not run out.
    pub fn holds(&self, pod: &str, now: Instant) -> Option<&Waiting> {
        self.waiting.get(pod).filter(|w| now < w.until)
    }

    /// A create of `pod` failed at `now`: it waits twice as long as last time.
    pub fn failed(&mut self, pod: &str, message: &str, now: Instant) -> &Waiting {
        let failures = self.waiting.get(pod).map_or(0, |w| w.failures) + 1;
        let delay = INITIAL
            .saturating_mul(1u32 << (failures - 1).min(16))
            .min(MAX);
        self.waiting.insert(
            pod.to_string(),
            Waiting {
                failures,
                reason: Reason::of_failure(message),
                message: message.to_string(),
                delay,
                until: now + delay,
            },
        );
        &self.waiting[pod]
    }

    /// `pod` was made: its next failure starts from the initial delay again.
    pub fn succeeded(&mut self, pod: &str) {
        self.waiting.remove(pod);
    }

    /// Forgets pods no longer wanted.
    pub fn retain(&mut self, wanted: impl Fn(&str) -> bool) {
        self.waiting.retain(|pod, _| wanted(pod));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_reset_on_success() {
        let mut b = Backoff::default();
        let now = Instant::now();
        let delays: Vec<u64> = (0..10)
            .map(|_| b.failed("p", "pull access denied", now).delay.as_secs())
            .collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300, 300, 300]);
        assert!(b.holds("p", now + Duration::from_secs(299)).is_some());
        assert!(b.holds("p", now + Duration::from_secs(300)).is_none());
        assert_eq!(b.holds("p", now).unwrap().reason, Reason::ImagePullBackOff);
        b.succeeded("p");
        assert_eq!(
            b.failed("p", "port is already allocated", now).delay,
            INITIAL
        );
        assert_eq!(
            b.holds("p", now).unwrap().reason,
            Reason::CreateContainerBackOff
        );
        assert_eq!(b.next_retry(now), Some(now + INITIAL));
        assert_eq!(
            Reason::of_failure(
                "postStart hook of container app failed: touch /x exited with 1: pull"
            ),
            Reason::PostStartHookError
        );
        assert_eq!(
            Reason::of_failure("ErrImageNeverPull: image app:1 is not present on the minion"),
            Reason::ErrImageNeverPull
        );
    }
}
