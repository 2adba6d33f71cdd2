//! The pod vocabulary shared by the planner, the minion driver, the executor, the reconciler
//! and events: a pod drover wants (`PodSpec`), a pod as found on a minion (`ObservedPod`, its
//! containers' states and phase), and a plan's actions. Plain data and the phase table; no
//! planning here (`pods.rs`), so every layer above can name a pod without reaching into the
//! planner.

use super::scheduler::PodRequest;
use crate::model::{ContainerManifest, Labels, RestartPolicy};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Phase {
    Pending,
    Running,
    Succeeded,
    Failed,
}

/// A pod drover wants: an explicit Pod object, or one replica of an RC. The replicas of one
/// template share its labels, node selector and manifest (`Shared`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    pub id: String,
    pub labels: Shared<Labels>,
    pub node_selector: Shared<Labels>,
    pub manifest: Shared<ContainerManifest>,
    /// The RC that owns it.
    pub owner: Option<String>,
    /// Hash of what the pod runs; a different hash means a different pod.
    pub template_hash: String,
}

impl PodSpec {
    pub fn request(&self) -> PodRequest {
        let containers = &self.manifest.containers;
        PodRequest {
            cpu: containers.iter().map(|c| c.cpu).sum(),
            memory: containers.iter().map(|c| c.memory).sum(),
            host_ports: containers
                .iter()
                .flat_map(|c| {
                    c.ports
                        .iter()
                        .filter_map(|p| p.host_port.map(|hp| (hp, p.protocol)))
                })
                .collect(),
            node_selector: Labels::clone(&self.node_selector),
            group: spread_group(self.owner.as_deref(), &self.template_hash, &self.id),
        }
    }
}

/// A part of a pod's definition that the pods of one template share: made once, not copied
/// for every replica (a plan of 100,000 replicas spent most of its time and memory copying
/// manifests and labels). Read through `Deref`; compares, prints and serialises as the value.
#[derive(Clone, PartialEq)]
pub struct Shared<T>(Arc<T>);

impl<T> Shared<T> {
    pub fn new(value: T) -> Shared<T> {
        Shared(Arc::new(value))
    }
}

impl<T> From<T> for Shared<T> {
    fn from(value: T) -> Shared<T> {
        Shared::new(value)
    }
}

impl<T> std::ops::Deref for Shared<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<T: Serialize> Serialize for Shared<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

/// Pods of one RC template are spread across minions (so a rollout spreads the new replicas
/// evenly too); an explicit pod is its own group.
pub fn spread_group(owner: Option<&str>, template_hash: &str, id: &str) -> String {
    match owner {
        Some(rc) => format!("{rc}/{template_hash}"),
        None => id.to_string(),
    }
}

/// A pod as found on a minion (rebuilt from its containers' labels). Its serde form is the
/// pod's record in the store's observed section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObservedPod {
    pub id: String,
    pub minion: String,
    pub owner: Option<String>,
    pub template_hash: String,
    pub labels: Labels,
    pub phase: Phase,
    /// The app containers, by name.
    pub containers: Vec<ContainerStatus>,
    /// Creation order (e.g. a timestamp); larger is newer.
    pub created: u64,
    pub request: PodRequest,
    /// Made by a drover from before projects (no project label) and adopted because this
    /// project's store recorded it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub legacy: bool,
    /// The ports its infra container publishes on the minion.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PublishedPort>,
    /// Running, but a container's liveness probe has not passed (yet): not ready. Set by the
    /// daemon from its prober for planning (a rollout waits for new pods to be ready), and
    /// stored with what it saw, so `get pods` counts READY as the prober judged.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unready: bool,
    /// The pod's own address on its minion (its infra container's, on the bridge): where
    /// probes reach it from the minion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
}

/// A pod port published on its minion.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishedPort {
    /// The container port's name in the manifest, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub container_port: u16,
    pub protocol: crate::model::Protocol,
    pub host_ip: String,
    pub host_port: u16,
}

impl ObservedPod {
    pub fn images(&self) -> Vec<&str> {
        self.containers.iter().map(|c| c.image.as_str()).collect()
    }
}

/// One app container of an observed pod: `{"name", "image", "state", "exitCode"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatus {
    pub name: String,
    pub image: String,
    #[serde(flatten)]
    pub state: ContainerState,
}

/// What Docker says of a container, reduced to what the phase table needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "state")]
pub enum ContainerState {
    /// Created, not started yet.
    Waiting,
    Running,
    Exited {
        #[serde(rename = "exitCode")]
        code: i64,
    },
}

impl std::fmt::Display for ContainerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ContainerState::Waiting => f.write_str("Waiting"),
            ContainerState::Running => f.write_str("Running"),
            ContainerState::Exited { code } => write!(f, "Exited ({code})"),
        }
    }
}

/// Marks Failed the pods with a container created but never started. Only for the one drover
/// that writes (it holds the store lock) and only while it creates nothing: then such a pod can
/// only be what a drover killed half-way through making it left behind, and it must be
/// replaced rather than waited for.
pub fn fail_half_made(pods: &mut [ObservedPod]) {
    for p in pods {
        if p.containers
            .iter()
            .any(|c| c.state == ContainerState::Waiting)
        {
            p.phase = Phase::Failed;
        }
    }
}

/// A pod's phase from its app containers, per the seeds' table of restart policy x exit
/// status: a container that will be restarted keeps the pod Running.
pub fn phase_of(apps: &[ContainerState], policy: RestartPolicy) -> Phase {
    use ContainerState::*;
    if apps.is_empty() || apps.contains(&Waiting) {
        return Phase::Pending;
    }
    if apps.contains(&Running) {
        return Phase::Running;
    }
    let all_ok = apps.iter().all(|s| *s == Exited { code: 0 });
    match (policy, all_ok) {
        (RestartPolicy::Always {}, _) => Phase::Running,
        (_, true) => Phase::Succeeded,
        (RestartPolicy::OnFailure {}, false) => Phase::Running,
        _ => Phase::Failed,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "camelCase")]
pub enum Action {
    CreatePod {
        minion: String,
        pod: PodSpec,
    },
    DeletePod {
        minion: String,
        id: String,
        reason: String,
        /// The pod's containers carry no project label (`ObservedPod::legacy`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        legacy: bool,
    },
    /// emptyDir volumes of this project left without their pod (its containers removed by
    /// hand, or a pod deleted by a drover killed half-way).
    DeleteVolumes {
        minion: String,
        pod: String,
        volumes: Vec<String>,
    },
}

impl Action {
    /// Deletions run before creations (they free ports and capacity).
    pub fn is_deletion(&self) -> bool {
        !matches!(self, Action::CreatePod { .. })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Plan {
    /// Deletions first, then creations; each in a fixed order.
    pub actions: Vec<Action>,
    /// Pods that could not be placed, with the reason (they stay Pending).
    pub unschedulable: Vec<(String, String)>,
    /// Pods of objects that are not in the source and not in this project's inventory: left
    /// alone, with the reason.
    pub unowned: Vec<(String, String)>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }
}
