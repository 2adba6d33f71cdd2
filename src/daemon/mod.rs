//! Reconciling: one level-triggered round (observe every minion, plan, execute) shared by
//! `apply` and the daemon, and the daemon's watch loop around it.
//!
//! The loop never asks why it runs: a change to the source, the periodic resync and a minion
//! coming or going all just trigger the next round, at most one at a time, bursts coalesced.

use crate::exec::{execute, Credentials, Progress, Quiet};
use crate::minion::{Minion, MinionError};
use crate::model::DesiredState;
use crate::plan::nodes::NodeController;
use crate::plan::observed::Observation;
use crate::plan::pods::{fail_half_made, plan_with, Action, Phase};
use crate::plan::scheduler::MinionView;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one round saw and did.
#[derive(Debug, Default)]
pub struct Round {
    pub done: Vec<Action>,
    pub failed: Vec<(Action, MinionError)>,
    pub unschedulable: Vec<(String, String)>,
    /// Minions that could not be observed this round.
    pub unobserved: Vec<MinionError>,
    /// Pods still starting.
    pub pending: bool,
    /// Actions the plan held (executed or not).
    pub planned: usize,
    /// What was observed (or assumed by the node controller), for status reports.
    pub pods: Vec<crate::plan::pods::ObservedPod>,
    pub minions: Vec<MinionView>,
}

impl Round {
    /// Nothing left to do and nothing starting.
    pub fn converged(&self) -> bool {
        self.planned == 0 && !self.pending && self.unobserved.is_empty()
    }

    /// What this round saw, for the store. Pods the node controller assumed on a silent
    /// minion are not in it: `observation_batch` keeps that minion's last-seen records.
    pub fn observation(&self) -> Observation {
        Observation {
            minions: self.minions.clone(),
            pods: self.pods.clone(),
        }
    }
}

/// Every minion's pods (one list call each, in parallel) and its capacity; a minion that
/// cannot be observed keeps its configured capacity.
pub async fn observe(
    minions: &[Arc<Minion>],
) -> Vec<(
    Arc<Minion>,
    Result<Vec<crate::plan::pods::ObservedPod>, MinionError>,
    crate::model::Capacity,
)> {
    futures_util::future::join_all(minions.iter().map(|m| async move {
        let pods = m.observe_pods().await;
        let capacity = match &pods {
            Ok(_) => m.capacity().await.unwrap_or(m.spec.capacity),
            Err(_) => m.spec.capacity,
        };
        (m.clone(), pods, capacity)
    }))
    .await
}

/// Every minion observed at once: what answered, as an `Observation` (a minion that did not
/// answer is in it as not Ready, with no pods), and why the others did not.
pub async fn observe_all(minions: &[Arc<Minion>]) -> (Observation, Vec<MinionError>) {
    let mut seen = Observation::default();
    let mut errors = Vec::new();
    for (m, result, capacity) in observe(minions).await {
        seen.minions.push(MinionView {
            name: m.spec.name.clone(),
            ready: result.is_ok(),
            labels: m.spec.labels.clone(),
            capacity,
        });
        match result {
            Ok(pods) => seen.pods.extend(pods),
            Err(e) => errors.push(e),
        }
    }
    seen.pods
        .sort_by(|a, b| (&a.id, &a.minion).cmp(&(&b.id, &b.minion)));
    (seen, errors)
}

pub struct Reconciler {
    minions: Vec<Arc<Minion>>,
    by_name: HashMap<String, Arc<Minion>>,
    credentials: Credentials,
    nodes: NodeController,
    /// Delete pods whose Pod or RC left the source.
    pub prune: bool,
    pub progress: Arc<dyn Progress>,
    /// Set while this process holds the store lock: then no other drover makes pods, so a
    /// container created and never started is a leftover of a killed one (`fail_half_made`).
    pub sole_writer: bool,
}

impl Reconciler {
    pub fn new(
        minions: Vec<Arc<Minion>>,
        credentials: Credentials,
        node_grace: Duration,
    ) -> Reconciler {
        let by_name = minions
            .iter()
            .map(|m| (m.spec.name.clone(), m.clone()))
            .collect();
        Reconciler {
            minions,
            by_name,
            credentials,
            nodes: NodeController::new(node_grace),
            prune: true,
            progress: Arc::new(Quiet),
            sole_writer: false,
        }
    }

    /// One round. With `strict`, a minion that cannot be observed stops the round before
    /// anything is planned (one-shot apply); otherwise the node controller decides what its
    /// pods count as (the daemon). `dry_run` plans without executing.
    pub async fn round(&mut self, desired: &DesiredState, strict: bool, dry_run: bool) -> Round {
        let now = Instant::now();
        let observed = observe(&self.minions).await;
        let mut round = Round::default();
        let (mut pods, mut views) = (Vec::new(), Vec::new());
        for (m, result, capacity) in observed {
            let name = m.spec.name.clone();
            let ready = match result {
                Ok(mut p) => {
                    // Rounds never overlap, so nothing of ours is half-made while we look.
                    if self.sole_writer {
                        fail_half_made(&mut p);
                    }
                    self.nodes.observed(&name, &p, now);
                    pods.extend(p);
                    true
                }
                Err(e) => {
                    pods.extend(self.nodes.unobserved(&name, now));
                    round.unobserved.push(e);
                    false
                }
            };
            views.push(MinionView {
                name,
                ready,
                labels: m.spec.labels.clone(),
                capacity,
            });
        }
        round.pods = pods;
        round.minions = views;
        if strict && !round.unobserved.is_empty() {
            return round;
        }
        round.pending = round.pods.iter().any(|p| p.phase == Phase::Pending);
        let p = plan_with(desired, &round.pods, &round.minions, self.prune);
        round.planned = p.actions.len();
        round.unschedulable = p.unschedulable.clone();
        if dry_run {
            round.done = p.actions;
            return round;
        }
        if !p.actions.is_empty() {
            let outcome =
                execute(&p, &self.by_name, self.credentials.clone(), &*self.progress).await;
            round.done = outcome.done;
            round.failed = outcome.failed;
        }
        round
    }
}

pub mod status;
pub mod watch;
