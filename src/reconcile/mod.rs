//! Reconciling: one level-triggered round (observe every minion, plan, execute) shared by
//! `apply` and the daemon. A round never asks why it runs: it observes, plans against what it
//! saw, and executes. `project.rs` connects it to the project's store.

use crate::executor::{execute, Credentials, Progress, Quiet};
use crate::minion::pods::MinionObservation;
use crate::minion::{Minion, MinionError};
use crate::model::DesiredState;
use crate::model::ObjectKey;
use crate::plan::inventory::Inventory;
use crate::plan::nodes::NodeController;
use crate::plan::observed::Observation;
use crate::plan::pods::{leftover_volumes, plan_with, Prune};
use crate::plan::scheduler::MinionView;
use crate::plan::types::{fail_half_made, Action, Phase, Plan};
use std::collections::{BTreeMap, BTreeSet, HashMap};
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
    pub pods: Vec<crate::plan::types::ObservedPod>,
    pub minions: Vec<MinionView>,
    /// Pods left alone because their object is not this project's (`Plan::unowned`).
    pub unowned: Vec<(String, String)>,
    /// Per minion, pods made by a drover from before projects that this project never
    /// recorded: reported, never touched.
    pub unclaimed: Vec<(String, Vec<String>)>,
    /// What stopped the round before it acted.
    pub error: Option<String>,
    /// Pods not tried this round because they back off after failing (`backoff`).
    pub held: Vec<Held>,
    /// What actions had to tell besides their outcome (`exec::Outcome::warnings`).
    pub warnings: Vec<(Action, crate::minion::Warning)>,
    /// Actions not begun because the run was stopped (`Reconciler::stop`): no failure, no
    /// back-off, no event.
    pub not_started: Vec<Action>,
    /// Images drover delivered before making the pods that run them (`executor::Outcome`).
    pub deliveries: Vec<crate::images::Delivered>,
}

/// A pod waiting out its back-off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub pod: String,
    /// Its replication controller, for a replica.
    pub owner: Option<String>,
    pub reason: backoff::Reason,
    /// The last failure.
    pub message: String,
    pub failures: u32,
    pub retry_in: Duration,
}

impl Round {
    /// Nothing left to do and nothing starting.
    pub fn converged(&self) -> bool {
        self.planned == 0 && !self.pending && self.unobserved.is_empty() && self.error.is_none()
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

/// The pods of this project the store recorded, as (pod, minion): the pods made before
/// projects existed that this project may adopt.
pub type Adoptable = BTreeSet<(String, String)>;

/// Every minion's pods (one list call each, in parallel) and its capacity; a minion that
/// cannot be observed keeps its configured capacity.
pub async fn observe(
    minions: &[Arc<Minion>],
    adoptable: &Adoptable,
) -> Vec<(
    Arc<Minion>,
    Result<MinionObservation, MinionError>,
    crate::model::Capacity,
)> {
    observe_by(minions, adoptable, None).await
}

/// How long one minion's observation (its list calls) may take before the round goes on
/// without it, as a minion that did not answer: a hung engine costs this, once per round, not
/// a call's whole timeout (`minion::CALL_TIMEOUT`), and delays no other minion's work. A
/// healthy engine lists hundreds of containers over SSH well within a second.
pub const OBSERVE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a minion may wait to be connected before the round goes on without it: its turn
/// among paced handshakes (a thousand minions connect in a few seconds) and its own connect.
pub const CONNECT_WAIT: Duration = Duration::from_secs(30);

/// `observe`, a minion that has not answered by `deadline` (or within `OBSERVE_TIMEOUT`)
/// counted as unobserved (its error names the call it waited on).
pub async fn observe_by(
    minions: &[Arc<Minion>],
    adoptable: &Adoptable,
    deadline: Option<Instant>,
) -> Vec<(
    Arc<Minion>,
    Result<MinionObservation, MinionError>,
    crate::model::Capacity,
)> {
    futures_util::future::join_all(minions.iter().map(|m| async move {
        let name = m.spec.name.clone();
        let adopt = move |pod: &str| adoptable.contains(&(pod.to_string(), name.clone()));
        let trace = crate::minion::Trace::default();
        let look = trace.run(async {
            let seen = m.observe_project(&adopt).await?;
            let capacity = m.capacity().await.unwrap_or(m.spec.capacity);
            Ok((seen, capacity))
        });
        // Connecting first, outside the observation's own bound: handshakes are paced
        // (`minion::ssh`), so with hundreds of minions to connect one may wait its turn.
        let connect_until = deadline.unwrap_or_else(|| Instant::now() + CONNECT_WAIT);
        let connected = tokio::time::timeout_at(connect_until.into(), m.connect())
            .await
            .unwrap_or_else(|_| Err(m.deadline_error(&trace)));
        let seen = match connected {
            Err(e) => Err(e),
            Ok(()) => {
                let limit = Instant::now() + OBSERVE_TIMEOUT;
                let until = deadline.map_or(limit, |d| d.min(limit));
                tokio::time::timeout_at(until.into(), look)
                    .await
                    .unwrap_or_else(|_| Err(m.deadline_error(&trace)))
            }
        };
        match seen {
            Ok((seen, capacity)) => (m.clone(), Ok(seen), capacity),
            Err(e) => (m.clone(), Err(e), m.spec.capacity),
        }
    }))
    .await
}

/// Every minion observed at once: what answered, as an `Observation` (a minion that did not
/// answer is in it as not Ready, with no pods), and why the others did not.
pub async fn observe_all(
    minions: &[Arc<Minion>],
    adoptable: &Adoptable,
) -> (Observation, Vec<MinionError>) {
    let mut seen = Observation::default();
    let mut errors = Vec::new();
    for (m, result, capacity) in observe(minions, adoptable).await {
        let mut view = MinionView {
            unschedulable: false,
            drain: None,
            name: m.spec.name.clone(),
            ready: result.is_ok(),
            labels: m.spec.labels.clone(),
            capacity,
            taken: Default::default(),
        };
        match result {
            Ok(o) => {
                view.taken = o.taken;
                seen.pods.extend(o.pods);
            }
            Err(e) => errors.push(e),
        }
        seen.minions.push(view);
    }
    seen.pods
        .sort_by(|a, b| (&a.id, &a.minion).cmp(&(&b.id, &b.minion)));
    (seen, errors)
}

/// Records objects into the project's inventory before pods are made for them.
pub type InventoryWriter = Box<dyn Fn(&BTreeSet<ObjectKey>) -> Result<(), String> + Send + Sync>;

pub struct Reconciler {
    minions: Vec<Arc<Minion>>,
    by_name: HashMap<String, Arc<Minion>>,
    credentials: Credentials,
    nodes: NodeController,
    /// Delete pods whose Pod or RC left the source (those in the inventory).
    pub prune: bool,
    /// The objects whose pods this project made (`plan::inventory`).
    pub inventory: Inventory,
    /// Commits new inventory entries; without one (a dry run) nothing new is made.
    pub record_inventory: Option<InventoryWriter>,
    /// Pods made before projects that this project's store recorded.
    pub adoptable: Adoptable,
    /// The proxy's address as containers reach it: pods made get every service's variables.
    pub advertise: Option<String>,
    /// Containers (minion, pod, container) whose liveness probes passed, when probes run
    /// (the daemon): a pod with a probe not passed is not ready, so a rollout waits for it.
    pub probes_passed: Option<BTreeSet<(String, String, String)>>,
    /// The prober's restarts (the daemon): a pod seen exited while drover restarted it is
    /// not a pod stopped by hand.
    pub restarts: Option<Arc<restarts::Restarts>>,
    pub progress: Arc<dyn Progress>,
    /// When the round must be over (`apply --timeout`): a minion that has not answered by then
    /// is unobserved, and actions not finished by then fail naming the call they waited on.
    pub deadline: Option<Instant>,
    /// Set while this process holds the store lock: then no other drover makes pods, so a
    /// container created and never started is a leftover of a killed one (`fail_half_made`).
    pub sole_writer: bool,
    /// Pods that failed to be made wait before the next try.
    pub backoff: backoff::Backoff,
    /// Set when the run is to stop (apply interrupted): actions not begun are not begun.
    pub stop: crate::executor::Stop,
    /// Where the cordon records are (`cordons`); none: only git cordons.
    pub cordons: Option<crate::store::Store>,
    cordon_records: BTreeMap<String, cordons::Cordon>,
}

impl Reconciler {
    /// How long until a silent minion's grace ends (`plan::nodes`): a daemon with a long
    /// resync looks again then, so a lost minion's pods are replaced in time.
    pub fn next_grace_expiry(&self) -> Option<Duration> {
        self.nodes.next_expiry(Instant::now())
    }

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
            inventory: Inventory::default(),
            record_inventory: None,
            adoptable: Adoptable::new(),
            advertise: None,
            probes_passed: None,
            restarts: None,
            progress: Arc::new(Quiet),
            sole_writer: false,
            backoff: Default::default(),
            deadline: None,
            stop: Default::default(),
            cordons: None,
            cordon_records: BTreeMap::new(),
        }
    }

    /// The minions this reconciler drives.
    pub fn minions(&self) -> &[Arc<Minion>] {
        &self.minions
    }

    /// One round. With `strict`, a minion that cannot be observed stops the round before
    /// anything is planned (one-shot apply); otherwise the node controller decides what its
    /// pods count as (the daemon). `dry_run` plans without executing.
    pub async fn round(&mut self, desired: &DesiredState, strict: bool, dry_run: bool) -> Round {
        let (mut round, plan) = self.prepare(desired, strict).await;
        match plan {
            Some(p) if dry_run => {
                round.done = p.actions;
                round
            }
            Some(p) => self.execute(desired, round, p).await,
            None => round,
        }
    }

    /// The first half of a round: observe every minion and plan. No plan when `strict` and a
    /// minion could not be observed.
    pub async fn prepare(&mut self, desired: &DesiredState, strict: bool) -> (Round, Option<Plan>) {
        let looked_from = Instant::now();
        let observed = observe_by(&self.minions, &self.adoptable, self.deadline).await;
        let looked_to = Instant::now();
        let manifests = crate::plan::pods::manifests_by_hash(desired);
        let mut round = Round::default();
        let (mut pods, mut views, mut volumes) = (Vec::new(), Vec::new(), Vec::new());
        for (m, result, capacity) in observed {
            let name = m.spec.name.clone();
            let mut taken = Default::default();
            let ready = match result {
                Ok(mut seen) => {
                    // Rounds never overlap, so nothing of ours is half-made while we look.
                    if self.sole_writer {
                        fail_half_made(&mut seen.pods);
                    }
                    if let Some(restarts) = &self.restarts {
                        for p in &mut seen.pods {
                            if p.phase == Phase::Failed
                                && restarts.overlapped(&p.minion, &p.id, looked_from, looked_to)
                            {
                                let manifest = manifests.get(&p.template_hash).copied();
                                p.phase = restarts::restarted_phase(p, manifest);
                            }
                        }
                    }
                    self.nodes.observed(&name, &seen.pods);
                    pods.extend(seen.pods);
                    taken = seen.taken;
                    if !seen.unclaimed.is_empty() {
                        round.unclaimed.push((name.clone(), seen.unclaimed));
                    }
                    volumes.extend(
                        seen.volumes
                            .into_iter()
                            .map(|(pod, volume)| (name.clone(), pod, volume)),
                    );
                    true
                }
                Err(e) => {
                    // The failure is known now, after the observation's wait.
                    pods.extend(self.nodes.unobserved(&name, Instant::now()));
                    round.unobserved.push(e);
                    false
                }
            };
            views.push(MinionView {
                unschedulable: false,
                drain: None,
                name,
                ready,
                labels: m.spec.labels.clone(),
                capacity,
                taken,
            });
        }
        if let Some(passed) = &self.probes_passed {
            for p in &mut pods {
                let manifest = manifests.get(&p.template_hash).copied();
                p.unready = !crate::plan::pods::probes_passed(p, manifest, passed);
            }
        }
        round.pods = pods;
        if let Some(store) = &self.cordons {
            // Read every round: a command cordons a minion while a daemon runs. Unreadable
            // (etcd away): the last records stand.
            if let Ok(records) = cordons::read(store) {
                self.cordon_records = records;
            }
        }
        let in_git: Vec<String> = self
            .minions
            .iter()
            .filter(|m| m.spec.unschedulable)
            .map(|m| m.spec.name.clone())
            .collect();
        cordons::mark(&mut views, &self.cordon_records, &in_git);
        round.minions = views;
        if strict && !round.unobserved.is_empty() {
            return (round, None);
        }
        round.pending = round.pods.iter().any(|p| p.phase == Phase::Pending);
        let prune = if self.prune {
            Prune::Owned(&self.inventory)
        } else {
            Prune::Off
        };
        let mut p = plan_with(desired, &round.pods, &round.minions, prune);
        p.actions.extend(leftover_volumes(&round.pods, &volumes));
        round.planned = p.actions.len();
        round.unschedulable = p.unschedulable.clone();
        round.unowned = p.unowned.clone();
        (round, Some(p))
    }

    /// The second half of a round: run the plan (new inventory entries recorded first).
    pub async fn execute(
        &mut self,
        desired: &DesiredState,
        mut round: Round,
        mut p: Plan,
    ) -> Round {
        // Pods backing off wait; pods no longer planned are forgotten.
        let now = Instant::now();
        // A pod that failed on its own soon after it was made goes on with its series:
        // deleted now, it is made again only after the delay (a crash loop does not spin).
        let manifests = crate::plan::pods::manifests_by_hash(desired);
        for o in backoff::crashes(&p.actions, &round.pods, &round.minions, &manifests) {
            let key = backoff::key(o.owner.as_deref(), &o.template_hash, &o.id);
            let why = format!("pod {} on {} failed soon after it was made", o.id, o.minion);
            self.backoff.crashed(&key, &why, now);
        }
        let creates: BTreeSet<String> = p
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::CreatePod { pod, .. } => Some(backoff::key_of(pod)),
                _ => None,
            })
            .collect();
        self.backoff.retain(|key| creates.contains(key), now);
        let backoff = &self.backoff;
        p.actions.retain(|a| {
            let Action::CreatePod { pod, .. } = a else {
                return true;
            };
            let Some(w) = backoff.holds(&backoff::key_of(pod), now) else {
                return true;
            };
            round.held.push(Held {
                pod: pod.id.clone(),
                owner: pod.owner.clone(),
                reason: w.reason,
                message: w.message.clone(),
                failures: w.failures,
                retry_in: w.until - now,
            });
            false
        });
        // The inventory learns of an object before its first pod exists (write-ahead).
        let missing = self.inventory.missing(&p);
        if !missing.is_empty() {
            let recorded = match &self.record_inventory {
                Some(record) => record(&missing),
                None => Err("no store to record the inventory in".to_string()),
            };
            if let Err(e) = recorded {
                round.error = Some(format!("recording the inventory: {e}"));
                return round;
            }
            self.inventory.extend(missing);
        }
        if !p.actions.is_empty() {
            let env = match &self.advertise {
                Some(host) => crate::plan::endpoints::service_env(desired, host),
                None => Vec::new(),
            };
            let outcome = execute(
                &p,
                &self.by_name,
                self.credentials.clone(),
                &env,
                &*self.progress,
                (self.deadline, &self.stop),
            )
            .await;
            round.done = outcome.done;
            let (not_started, failed): (Vec<_>, Vec<_>) =
                outcome.failed.into_iter().partition(|(_, e)| e.not_started);
            round.failed = failed;
            round.not_started = not_started.into_iter().map(|(a, _)| a).collect();
            round.warnings = outcome.warnings;
            round.deliveries = outcome.deliveries;
            let now = Instant::now();
            for a in &round.done {
                if let Action::CreatePod { pod, .. } = a {
                    self.backoff.succeeded(&backoff::key_of(pod), now);
                }
            }
            // One failure a round for each series, however many of its replicas failed.
            let failed: BTreeMap<String, &MinionError> = round
                .failed
                .iter()
                .filter_map(|(a, e)| match a {
                    Action::CreatePod { pod, .. } => Some((backoff::key_of(pod), e)),
                    _ => None,
                })
                .collect();
            for (key, error) in failed {
                self.backoff.failed(&key, error, now);
            }
        }
        round
    }
}

pub mod backoff;
pub mod cordons;
pub mod project;
pub mod restarts;
pub mod round_events;
