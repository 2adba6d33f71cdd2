//! Pods and replication controllers: from the desired state and the pods observed on the
//! minions to a `Plan` of pod creations and deletions. Pure and deterministic.
//!
//! Level-triggered: the plan never asks why it runs. A pod on a minion that is not Ready is
//! reported by the caller as `Failed` (the node controller's decision), so its RC replaces it;
//! when the minion returns, the pod is active again and the surplus is removed.
//!
//! A changed RC template rolls out one pod at a time: one new pod is added, and only when every
//! new pod is Running does an old one go, so the service never drops below `replicas`.

use super::inventory::{owner_of, Inventory};
use super::scheduler::{MinionView, PodRequest, Scheduler};
use crate::model::{ContainerManifest, DesiredState, Labels, Object};
use std::collections::{BTreeMap, BTreeSet, HashMap};

// The pod vocabulary lives in `types`; its old paths (`plan::pods::ObservedPod`) keep working.
pub use super::types::*;

/// Whether pods of objects that left the source are deleted.
#[derive(Debug, Clone, Copy)]
pub enum Prune<'a> {
    /// Kept running (`--no-prune`); they still count against their minion.
    Off,
    /// Deleted when their object is in the project's inventory; reported otherwise.
    Owned(&'a Inventory),
}

/// Short content hash of a pod's definition.
pub fn template_hash(
    manifest: &ContainerManifest,
    labels: &Labels,
    node_selector: &Labels,
) -> String {
    let text = serde_json::to_string(&(manifest, labels, node_selector)).expect("serialises");
    crate::store::content_hash(text.as_bytes())[..10].to_string()
}

/// What each pod definition of the desired state runs, by template hash: the container
/// manifests of explicit pods and RC templates (probes and named ports are read from them).
pub fn manifests_by_hash(desired: &DesiredState) -> BTreeMap<String, &ContainerManifest> {
    desired
        .objects
        .values()
        .filter_map(|(o, _)| match o {
            Object::Pod(p) => Some((
                template_hash(&p.desired_state.manifest, &p.labels, &p.node_selector),
                &p.desired_state.manifest,
            )),
            Object::ReplicationController(rc) => {
                let t = &rc.desired_state.pod_template;
                Some((
                    template_hash(&t.desired_state.manifest, &t.labels, &t.node_selector),
                    &t.desired_state.manifest,
                ))
            }
            _ => None,
        })
        .collect()
}

/// Whether every container of a pod that has a liveness probe has passed it (`passed`:
/// (minion, pod, container)). `manifest` is what the pod runs (`manifests_by_hash`); a pod
/// whose definition is not in the desired state any more (an old replica during a rollout)
/// cannot be probed and counts as passing.
pub fn probes_passed(
    pod: &ObservedPod,
    manifest: Option<&ContainerManifest>,
    passed: &BTreeSet<(String, String, String)>,
) -> bool {
    manifest.is_none_or(|m| {
        m.containers
            .iter()
            .filter(|c| c.liveness_probe.is_some())
            .all(|c| passed.contains(&(pod.minion.clone(), pod.id.clone(), c.name.clone())))
    })
}

/// The id of an RC's replica: `<rc>-<hash>-<n>`, kept within the 63-character name limit.
pub fn replica_id(rc: &str, hash: &str, ordinal: usize) -> String {
    // Built by hand, one allocation: this runs for every replica made (`format!` twice cost
    // more than placing the pod).
    let hash = &hash[..6.min(hash.len())];
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    let mut n = ordinal;
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let ordinal = std::str::from_utf8(&digits[start..]).expect("ASCII digits");
    let suffix_len = 2 + hash.len() + ordinal.len();
    let keep = 63usize.saturating_sub(suffix_len).min(rc.len());
    let mut id = String::with_capacity(keep + suffix_len);
    id.push_str(&rc[..keep]);
    id.push('-');
    id.push_str(hash);
    id.push('-');
    id.push_str(ordinal);
    id
}

fn active(p: &ObservedPod) -> bool {
    matches!(p.phase, Phase::Pending | Phase::Running)
}

/// Which of `pods` to delete first: not running before running, then newest first.
fn deletion_order(pods: &mut [&ObservedPod]) {
    pods.sort_by(|a, b| {
        (
            a.phase == Phase::Running,
            std::cmp::Reverse(a.created),
            &a.id,
        )
            .cmp(&(
                b.phase == Phase::Running,
                std::cmp::Reverse(b.created),
                &b.id,
            ))
    });
}

/// `n` new replicas of RC `id` (template `t`, hash `hash`): the lowest ordinals no replica
/// observed (`mine`) has, sharing one copy of the template.
fn new_replicas(
    id: &str,
    t: &crate::model::PodTemplate,
    hash: &str,
    mine: &[&ObservedPod],
    n: usize,
) -> Vec<PodSpec> {
    let used: BTreeSet<&str> = mine.iter().map(|p| p.id.as_str()).collect();
    let labels = Shared::new(t.labels.clone());
    let node_selector = Shared::new(t.node_selector.clone());
    let manifest = Shared::new(t.desired_state.manifest.clone());
    let mut ids = (0..)
        .map(|ordinal| replica_id(id, hash, ordinal))
        .filter(|rid| !used.contains(rid.as_str()));
    let mut specs = Vec::with_capacity(n);
    specs.extend((0..n).map(|_| PodSpec {
        id: ids.next().expect("ordinals never run out"),
        labels: labels.clone(),
        node_selector: node_selector.clone(),
        manifest: manifest.clone(),
        owner: Some(id.to_string()),
        template_hash: hash.to_string(),
    }));
    specs
}

/// Plans with pruning, every observed pod's object counted as owned: pods whose Pod or RC
/// left the source are deleted.
pub fn plan(desired: &DesiredState, observed: &[ObservedPod], minions: &[MinionView]) -> Plan {
    let inventory = Inventory::of_pods(observed);
    plan_with(desired, observed, minions, Prune::Owned(&inventory))
}

/// Plans. Pods whose Pod or RC left the source are deleted only as `prune` allows; the rest
/// keep running (and still count against their minion's capacity).
pub fn plan_with(
    desired: &DesiredState,
    observed: &[ObservedPod],
    minions: &[MinionView],
    prune: Prune,
) -> Plan {
    let mut changes = Changes {
        ready: minions
            .iter()
            .filter(|m| m.ready)
            .map(|m| m.name.as_str())
            .collect(),
        draining: minions
            .iter()
            .filter_map(|m| Some((m.name.as_str(), m.drain?)))
            .collect(),
        prune,
        unowned: Vec::new(),
        deletes: Vec::new(),
        creates: Vec::new(),
        requests: Vec::new(),
    };
    changes.explicit_pods(desired, observed);
    changes.replication_controllers(desired, observed);
    changes.into_plan(minions, observed)
}

/// What a plan is made of while it is worked out: the pods to delete (with why) and to create.
struct Changes<'a> {
    /// The minions that answered: only there are failed pods cleaned up.
    ready: BTreeSet<&'a str>,
    /// Minions being drained, and how.
    draining: BTreeMap<&'a str, crate::plan::scheduler::Drain>,
    prune: Prune<'a>,
    /// Pods of objects not in the source that this project never made: left, with why.
    unowned: Vec<(String, String)>,
    deletes: Vec<(&'a ObservedPod, String)>,
    /// Pods to make, each with its request's place in `requests`.
    creates: Vec<(PodSpec, usize)>,
    /// What the pods to make ask of a minion: one for all the new replicas of an RC (they ask
    /// the same), rather than one worked out per pod.
    requests: Vec<PodRequest>,
}

impl<'a> Changes<'a> {
    /// Pods to make that ask the same of a minion (the new replicas of one RC template).
    fn create(&mut self, specs: impl IntoIterator<Item = PodSpec>) {
        let mut specs = specs.into_iter().peekable();
        let Some(first) = specs.peek() else {
            return;
        };
        let request = self.requests.len();
        self.requests.push(first.request());
        self.creates.extend(specs.map(|spec| (spec, request)));
    }

    /// Whether a pod whose object left the source goes: only if this project made it (else it
    /// is noted as left alone).
    fn prunable(&mut self, p: &ObservedPod) -> bool {
        match self.prune {
            Prune::Off => false,
            Prune::Owned(inventory) => {
                let owner = owner_of(p.owner.as_deref(), &p.id);
                let owned = inventory.contains(&owner);
                if !owned {
                    self.unowned.push((
                        p.id.clone(),
                        format!(
                            "{} {} is not in the source and was never applied by this project; left alone",
                            match owner.kind {
                                crate::model::Kind::ReplicationController => "replication controller",
                                _ => "pod",
                            },
                            owner.id
                        ),
                    ));
                }
                owned
            }
        }
    }

    /// Explicit pods: made when missing, made again when their definition changed or when
    /// one that must always run failed, deleted when they left the source (as pruning allows).
    fn explicit_pods(&mut self, desired: &DesiredState, observed: &'a [ObservedPod]) {
        let explicit: BTreeMap<&str, PodSpec> = desired
            .objects
            .values()
            .filter_map(|(o, _)| match o {
                Object::Pod(p) => Some((
                    p.id.as_str(),
                    PodSpec {
                        id: p.id.clone(),
                        labels: Shared::new(p.labels.clone()),
                        node_selector: Shared::new(p.node_selector.clone()),
                        manifest: Shared::new(p.desired_state.manifest.clone()),
                        owner: None,
                        template_hash: template_hash(
                            &p.desired_state.manifest,
                            &p.labels,
                            &p.node_selector,
                        ),
                    },
                )),
                _ => None,
            })
            .collect();
        let mut seen_explicit = BTreeSet::new();
        for p in observed.iter().filter(|p| p.owner.is_none()) {
            match explicit.get(p.id.as_str()) {
                Some(spec)
                    if p.phase == Phase::Failed
                        && spec.manifest.restart_policy
                            == crate::model::RestartPolicy::Always {} =>
                {
                    // Failed although it must always run: make it again, where it can be
                    // reached.
                    if self.ready.contains(p.minion.as_str()) {
                        self.deletes
                            .push((p, "pod failed; its restart policy is always".into()));
                    } else {
                        seen_explicit.insert(p.id.as_str());
                    }
                }
                Some(_)
                    if self.draining.get(p.minion.as_str())
                        == Some(&crate::plan::scheduler::Drain::Force) =>
                {
                    // Made again on another minion once gone (this one is cordoned).
                    self.deletes
                        .push((p, "drained (--force): no controller replaces it".into()));
                }
                Some(spec) if spec.template_hash == p.template_hash => {
                    seen_explicit.insert(p.id.as_str());
                }
                Some(_) => self.deletes.push((p, "pod definition changed".into())),
                None if self.prunable(p) => {
                    self.deletes.push((p, "pod no longer in the source".into()))
                }
                None => {}
            }
        }
        for (id, spec) in explicit {
            if !seen_explicit.contains(id) {
                self.create([spec]);
            }
        }
    }

    /// Replication controllers: the replicas of those that left the source go (as pruning
    /// allows); each other one is brought to its count and its template (`one_controller`).
    fn replication_controllers(&mut self, desired: &DesiredState, observed: &'a [ObservedPod]) {
        let rcs: BTreeMap<&str, _> = desired
            .objects
            .values()
            .filter_map(|(o, _)| match o {
                Object::ReplicationController(rc) => Some((rc.id.as_str(), rc)),
                _ => None,
            })
            .collect();
        // Each RC's replicas, in the order observed: one pass over the pods, not one per RC.
        let mut replicas: HashMap<&str, Vec<&'a ObservedPod>> =
            rcs.keys().map(|&id| (id, Vec::new())).collect();
        for p in observed.iter() {
            if let Some(owner) = &p.owner {
                if let Some(mine) = replicas.get_mut(owner.as_str()) {
                    mine.push(p);
                } else if self.prunable(p) {
                    self.deletes.push((
                        p,
                        format!("replication controller {owner} no longer in the source"),
                    ));
                }
            }
        }
        for (id, rc) in &rcs {
            let mine = replicas.remove(id).unwrap_or_default();
            self.one_controller(id, rc, &mine);
        }
    }

    /// One RC (`mine`: its replicas observed): finished replicas cleaned up, the count kept, and
    /// a changed template rolled out one replica at a time (a surge of one; an old replica goes
    /// only when every new one runs).
    fn one_controller(
        &mut self,
        id: &str,
        rc: &crate::model::ReplicationController,
        mine: &[&'a ObservedPod],
    ) {
        let t = &rc.desired_state.pod_template;
        let hash = template_hash(&t.desired_state.manifest, &t.labels, &t.node_selector);
        let replicas = rc.desired_state.replicas as usize;
        // Finished or failed replicas are cleaned up where the minion can be reached.
        for p in mine
            .iter()
            .filter(|p| !active(p) && self.ready.contains(p.minion.as_str()))
        {
            self.deletes
                .push((p, "replica is no longer running".into()));
        }
        // A replica on a minion being drained is replaced as an outdated one is: a new one
        // elsewhere runs (and is ready) before it goes.
        let current = |p: &ObservedPod| {
            p.template_hash == hash && !self.draining.contains_key(p.minion.as_str())
        };
        let mut new: Vec<&ObservedPod> = mine
            .iter()
            .copied()
            .filter(|p| active(p) && current(p))
            .collect();
        let mut old: Vec<&ObservedPod> = mine
            .iter()
            .copied()
            .filter(|p| active(p) && !current(p))
            .collect();
        let total = new.len() + old.len();
        let all_new_running = new.iter().all(|p| p.phase == Phase::Running && !p.unready);
        // Replicas to add; `old` and `new` are put in deletion order only when some go.
        let mut add = 0;
        if total < replicas {
            add = replicas - total;
        } else if old.is_empty() {
            if total > replicas {
                deletion_order(&mut new);
            }
            for p in new.iter().take(total - replicas) {
                self.deletes.push((p, format!("scaled down to {replicas}")));
            }
        } else if all_new_running && total == replicas {
            // Rolling update at the count: add one new replica (a surge of one).
            add = 1;
        } else {
            // Rolling update past the count: old replicas go once every new one runs; while a
            // new one is still starting, only what exceeds the surge of one goes.
            let allowed = if all_new_running {
                replicas
            } else {
                replicas + 1
            };
            let surplus = total.saturating_sub(allowed);
            let from_old = surplus.min(old.len());
            deletion_order(&mut old);
            deletion_order(&mut new);
            for p in old.iter().take(from_old) {
                self.deletes
                    .push((p, "rolling update: replaced by a new replica".into()));
            }
            for p in new.iter().take(surplus - from_old) {
                self.deletes.push((p, format!("scaled down to {replicas}")));
            }
            // Back at the count with every new replica running and old ones left: the next
            // surge of one goes in the same round (deletions run first), not a round later.
            if all_new_running && total - surplus == replicas && old.len() > from_old {
                add = 1;
            }
        }
        if add > 0 {
            self.create(new_replicas(id, t, &hash, mine, add));
        }
    }

    /// The plan: deletions first (in a fixed order, each pod once), freeing room before the
    /// creations are placed by the scheduler.
    fn into_plan(self, minions: &[MinionView], observed: &[ObservedPod]) -> Plan {
        let mut scheduler = Scheduler::new(minions);
        for p in observed.iter().filter(|p| active(p)) {
            scheduler.account(&p.minion, &p.request);
        }
        let mut deletes = self.deletes;
        deletes.sort_by(|a, b| (&a.0.minion, &a.0.id).cmp(&(&b.0.minion, &b.0.id)));
        deletes.dedup_by(|a, b| a.0.id == b.0.id && a.0.minion == b.0.minion);
        let mut plan = Plan {
            actions: Vec::with_capacity(deletes.len() + self.creates.len()),
            ..Plan::default()
        };
        for (p, reason) in deletes {
            if active(p) {
                scheduler.release(&p.minion, &p.request);
            }
            plan.actions.push(Action::DeletePod {
                minion: p.minion.clone(),
                id: p.id.clone(),
                reason,
                legacy: p.legacy,
            });
        }
        let mut unowned = self.unowned;
        unowned.sort();
        unowned.dedup();
        plan.unowned = unowned;
        for (pod, request) in self.creates {
            match scheduler.place(&self.requests[request]) {
                Ok(minion) => plan.actions.push(Action::CreatePod { minion, pod }),
                Err(reason) => plan.unschedulable.push((pod.id.clone(), reason)),
            }
        }
        plan
    }
}

/// Deletions of this project's emptyDir volumes whose pod is not on their minion any more.
/// `volumes` are (minion, pod, volume name) as listed by their labels.
pub fn leftover_volumes(
    observed: &[ObservedPod],
    volumes: &[(String, String, String)],
) -> Vec<Action> {
    let live: BTreeSet<(&str, &str)> = observed
        .iter()
        .map(|p| (p.minion.as_str(), p.id.as_str()))
        .collect();
    let mut by_pod: BTreeMap<(&str, &str), Vec<String>> = BTreeMap::new();
    for (minion, pod, volume) in volumes {
        if !live.contains(&(minion.as_str(), pod.as_str())) {
            by_pod
                .entry((minion.as_str(), pod.as_str()))
                .or_default()
                .push(volume.clone());
        }
    }
    by_pod
        .into_iter()
        .map(|((minion, pod), mut volumes)| {
            volumes.sort();
            Action::DeleteVolumes {
                minion: minion.to_string(),
                pod: pod.to_string(),
                volumes,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
