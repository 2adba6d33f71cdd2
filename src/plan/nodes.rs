//! The node controller, pure: decides what the planner is told about pods on minions that
//! cannot be observed right now. Within the grace period, counted from the first observation
//! that failed (not from the last that worked, which may be a whole resync earlier), their
//! last-seen pods count as still running (a blip must not move pods); after it they are
//! `Failed`, so their replication controllers replace them elsewhere. When the minion answers again its real pods are observed,
//! and the planner removes the surplus. Time is an argument, never read from a clock here.

use super::types::{ObservedPod, Phase};
use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct NodeController {
    grace: Duration,
    /// Per minion: the pods seen when it was last observed.
    last_seen: HashMap<String, Vec<ObservedPod>>,
    /// Per minion that cannot be observed now: when the first observation of this silence
    /// failed.
    failing_since: HashMap<String, Instant>,
}

impl NodeController {
    pub fn new(grace: Duration) -> NodeController {
        NodeController {
            grace,
            last_seen: HashMap::new(),
            failing_since: HashMap::new(),
        }
    }

    /// Records a successful observation of a minion: any silence is over.
    pub fn observed(&mut self, minion: &str, pods: &[ObservedPod]) {
        self.last_seen.insert(minion.to_string(), pods.to_vec());
        self.failing_since.remove(minion);
    }

    /// The pods to plan with for a minion whose observation failed at `now` (the first such
    /// failure starts its grace period).
    pub fn unobserved(&mut self, minion: &str, now: Instant) -> Vec<ObservedPod> {
        let since = *self.failing_since.entry(minion.to_string()).or_insert(now);
        let Some(pods) = self.last_seen.get(minion) else {
            return Vec::new();
        };
        let lost = now.saturating_duration_since(since) >= self.grace;
        pods.iter()
            .cloned()
            .map(|mut p| {
                if lost {
                    p.phase = Phase::Failed;
                }
                p
            })
            .collect()
    }

    /// How long until the next silent minion's grace ends, counted from `now`: the round
    /// then is the one that has its pods replaced, whatever the resync period. `None` when no
    /// minion is silent within its grace.
    pub fn next_expiry(&self, now: Instant) -> Option<Duration> {
        self.failing_since
            .values()
            .map(|since| (*since + self.grace).saturating_duration_since(now))
            .filter(|left| !left.is_zero())
            .min()
    }

    /// Has this minion been silent for longer than the grace period?
    pub fn is_lost(&self, minion: &str, now: Instant) -> bool {
        self.failing_since
            .get(minion)
            .is_some_and(|since| now.saturating_duration_since(*since) >= self.grace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_expiry_is_the_earliest_grace_still_running() {
        let mut nodes = NodeController::new(Duration::from_secs(30));
        let t0 = Instant::now();
        assert_eq!(nodes.next_expiry(t0), None, "nobody silent");
        nodes.unobserved("m1", t0);
        nodes.unobserved("m2", t0 + Duration::from_secs(10));
        assert_eq!(
            nodes.next_expiry(t0 + Duration::from_secs(12)),
            Some(Duration::from_secs(18))
        );
        // m1's grace is over (it is lost, not waiting): m2's is next.
        assert_eq!(
            nodes.next_expiry(t0 + Duration::from_secs(31)),
            Some(Duration::from_secs(9))
        );
        nodes.observed("m2", &[]);
        assert_eq!(nodes.next_expiry(t0 + Duration::from_secs(31)), None);
    }
    use crate::plan::scheduler::PodRequest;

    fn pod(id: &str) -> ObservedPod {
        ObservedPod {
            id: id.into(),
            minion: "m2".into(),
            owner: Some("web".into()),
            template_hash: "h".into(),
            labels: Default::default(),
            containers: vec![],
            phase: Phase::Running,
            created: 1,
            request: PodRequest::default(),
            legacy: false,
            ports: vec![],
            ip: None,
            unready: false,
        }
    }

    #[test]
    fn pods_of_a_silent_minion_stay_running_within_grace_and_fail_after() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut nc = NodeController::new(s(30));
        nc.observed("m2", &[pod("a")]);
        // The grace counts from the first failed observation, however long ago the last
        // good one was (a resync longer than the grace must not shorten it).
        let first = nc.unobserved("m2", t0 + s(100));
        assert_eq!(first[0].phase, Phase::Running);
        let within = nc.unobserved("m2", t0 + s(129));
        assert_eq!(within[0].phase, Phase::Running);
        assert!(!nc.is_lost("m2", t0 + s(129)));
        let after = nc.unobserved("m2", t0 + s(130));
        assert_eq!(after[0].phase, Phase::Failed);
        assert!(nc.is_lost("m2", t0 + s(131)));
        assert!(nc.unobserved("never-seen", t0).is_empty());
    }

    #[test]
    fn an_outage_shorter_than_the_grace_changes_nothing_and_a_new_one_starts_afresh() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut nc = NodeController::new(s(5));
        nc.observed("m2", &[pod("a")]);
        assert_eq!(nc.unobserved("m2", t0)[0].phase, Phase::Running);
        nc.observed("m2", &[pod("a")]);
        assert!(!nc.is_lost("m2", t0 + s(60)));
        // A second outage much later: its grace starts at its own first failure.
        assert_eq!(nc.unobserved("m2", t0 + s(60))[0].phase, Phase::Running);
        assert_eq!(nc.unobserved("m2", t0 + s(64))[0].phase, Phase::Running);
        assert_eq!(nc.unobserved("m2", t0 + s(65))[0].phase, Phase::Failed);
    }
}
