//! The node controller, pure: decides what the planner is told about pods on minions that
//! cannot be observed right now. Within the grace period their last-seen pods count as still
//! running (a blip must not move pods); after it they are `Failed`, so their replication
//! controllers replace them elsewhere. When the minion answers again its real pods are observed,
//! and the planner removes the surplus. Time is an argument, never read from a clock here.

use super::pods::{ObservedPod, Phase};
use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct NodeController {
    grace: Duration,
    /// Per minion: when it was last observed, and the pods seen then.
    last_seen: HashMap<String, (Instant, Vec<ObservedPod>)>,
}

impl NodeController {
    pub fn new(grace: Duration) -> NodeController {
        NodeController {
            grace,
            last_seen: HashMap::new(),
        }
    }

    /// Records a successful observation of a minion.
    pub fn observed(&mut self, minion: &str, pods: &[ObservedPod], now: Instant) {
        self.last_seen
            .insert(minion.to_string(), (now, pods.to_vec()));
    }

    /// The pods to plan with for a minion that could not be observed at `now`.
    pub fn unobserved(&self, minion: &str, now: Instant) -> Vec<ObservedPod> {
        let Some((seen, pods)) = self.last_seen.get(minion) else {
            return Vec::new();
        };
        let lost = now.duration_since(*seen) >= self.grace;
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

    /// Has this minion been silent for longer than the grace period?
    pub fn is_lost(&self, minion: &str, now: Instant) -> bool {
        self.last_seen
            .get(minion)
            .is_some_and(|(seen, _)| now.duration_since(*seen) >= self.grace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let mut nc = NodeController::new(Duration::from_secs(30));
        nc.observed("m2", &[pod("a")], t0);
        let within = nc.unobserved("m2", t0 + Duration::from_secs(29));
        assert_eq!(within[0].phase, Phase::Running);
        assert!(!nc.is_lost("m2", t0 + Duration::from_secs(29)));
        let after = nc.unobserved("m2", t0 + Duration::from_secs(30));
        assert_eq!(after[0].phase, Phase::Failed);
        assert!(nc.is_lost("m2", t0 + Duration::from_secs(31)));
        assert!(nc.unobserved("never-seen", t0).is_empty());
    }
}
