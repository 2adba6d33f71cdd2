//! Pods on Docker. A pod is one infra container (drover's pause image) that holds the network
//! namespace and publishes the pod's ports on the minion's publish address, plus one container
//! per manifest container joined to it (`container:<infra>`), so all share one IP and port
//! space. emptyDir volumes are Docker volumes made per pod and removed with it.
//!
//! Names are deterministic (`drover_<pod>_<container>`) and every container carries labels that
//! describe its pod, so the observed state is rebuilt from the minion alone and a re-run after a
//! crash finds what it already made instead of making it twice.

use super::{pause, Minion, MinionError};
use crate::model::{Protocol, RestartPolicy, VolumeSource};
use crate::plan::pods::{phase_of, ContainerState, ContainerStatus, ObservedPod, Phase, PodSpec};
use crate::plan::scheduler::PodRequest;
use bollard::models::{
    ContainerCreateBody, ContainerSummaryStateEnum, HostConfig, PortBinding, RestartPolicyNameEnum,
};
use std::collections::{BTreeMap, HashMap};

pub const LABEL_POD: &str = "io.drover.pod";
pub const LABEL_RC: &str = "io.drover.rc";
pub const LABEL_HASH: &str = "io.drover.template-hash";
pub const LABEL_CONTAINER: &str = "io.drover.container";
pub const LABEL_RESTART: &str = "io.drover.restart-policy";
pub const LABEL_REQUEST: &str = "io.drover.request";
/// How many app containers the pod has, so a container removed by hand is noticed.
pub const LABEL_CONTAINERS: &str = "io.drover.containers";
const INFRA: &str = "infra";

pub fn container_name(pod: &str, container: &str) -> String {
    format!("drover_{pod}_{container}")
}

fn volume_name(pod: &str, volume: &str) -> String {
    format!("drover_{pod}_{volume}")
}

/// Docker CPU shares from thousandths of a core (1024 shares per core, at least 2).
fn cpu_shares(milli: u64) -> Option<i64> {
    (milli > 0).then(|| ((milli * 1024 / 1000) as i64).max(2))
}

fn is_conflict(e: &MinionError) -> bool {
    e.message.contains("409")
        || e.message.contains("Conflict")
        || e.message.contains("already in use")
}

impl Minion {
    /// Makes sure an image is present: drover's pause image is imported from the binary,
    /// others are pulled.
    pub async fn ensure_image(
        &self,
        image: &str,
        credentials: Option<super::Credentials>,
    ) -> Result<(), MinionError> {
        if self.image_present(image).await? {
            return Ok(());
        }
        if image == pause::IMAGE {
            let (repo, tag) = image.split_once(':').expect("pause image has a tag");
            return self.import_image(pause::rootfs_tar(), repo, tag).await;
        }
        self.pull_image(image, credentials).await
    }

    /// Creates and starts a pod. Idempotent: containers that already exist are kept.
    pub async fn create_pod(
        &self,
        pod: &PodSpec,
        env: &[String],
        credentials: &(dyn Fn(&str) -> Option<super::Credentials> + Send + Sync),
    ) -> Result<(), MinionError> {
        self.ensure_image(pause::IMAGE, None).await?;
        for c in &pod.manifest.containers {
            self.ensure_image(&c.image, credentials(&c.image)).await?;
        }
        let request = serde_json::to_string(&RequestLabel::of(&pod.request())).expect("serialises");
        let labels = |container: &str| -> HashMap<String, String> {
            let mut l: HashMap<String, String> = pod
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            l.insert(LABEL_POD.into(), pod.id.clone());
            l.insert(LABEL_HASH.into(), pod.template_hash.clone());
            l.insert(LABEL_CONTAINER.into(), container.into());
            l.insert(LABEL_REQUEST.into(), request.clone());
            l.insert(
                LABEL_CONTAINERS.into(),
                pod.manifest.containers.len().to_string(),
            );
            l.insert(
                LABEL_RESTART.into(),
                restart_name(pod.manifest.restart_policy).into(),
            );
            if let Some(rc) = &pod.owner {
                l.insert(LABEL_RC.into(), rc.clone());
            }
            l
        };

        // The infra container: network namespace and every published port of the pod.
        let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
        for c in &pod.manifest.containers {
            for p in &c.ports {
                let proto = match p.protocol {
                    Protocol::TCP => "tcp",
                    Protocol::UDP => "udp",
                };
                bindings.insert(
                    format!("{}/{proto}", p.container_port),
                    Some(vec![PortBinding {
                        host_ip: Some(
                            p.host_ip
                                .clone()
                                .unwrap_or_else(|| self.spec.publish_address.clone()),
                        ),
                        // No hostPort: Docker picks an ephemeral one.
                        host_port: Some(p.host_port.map(|h| h.to_string()).unwrap_or_default()),
                    }]),
                );
            }
        }
        let infra_name = container_name(&pod.id, INFRA);
        let infra = ContainerCreateBody {
            image: Some(pause::IMAGE.into()),
            cmd: Some(vec!["/pause".into()]),
            labels: Some(labels(INFRA)),
            exposed_ports: Some(bindings.keys().cloned().collect()),
            host_config: Some(HostConfig {
                port_bindings: Some(bindings),
                restart_policy: Some(bollard::models::RestartPolicy {
                    name: Some(RestartPolicyNameEnum::ALWAYS),
                    maximum_retry_count: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let infra_id = self.create_or_find(&infra_name, infra).await?;
        self.start_container(&infra_id)
            .await
            .or_else(already_started)?;

        let volumes: BTreeMap<&str, String> = pod
            .manifest
            .volumes
            .iter()
            .map(|v| {
                let source = match &v.source {
                    VolumeSource::EmptyDir {} => volume_name(&pod.id, &v.name),
                    VolumeSource::HostDir { path } => path.clone(),
                };
                (v.name.as_str(), source)
            })
            .collect();
        for c in &pod.manifest.containers {
            let binds: Vec<String> = c
                .volume_mounts
                .iter()
                .filter_map(|m| {
                    let source = volumes.get(m.name.as_str())?;
                    Some(format!(
                        "{source}:{}{}",
                        m.mount_path,
                        if m.read_only { ":ro" } else { "" }
                    ))
                })
                .collect();
            let mut all_env: Vec<String> = env.to_vec();
            all_env.extend(c.env.iter().map(|e| format!("{}={}", e.name, e.value)));
            let body = ContainerCreateBody {
                image: Some(c.image.clone()),
                cmd: (!c.command.is_empty()).then(|| c.command.clone()),
                working_dir: c.working_dir.clone(),
                env: Some(all_env),
                labels: Some(labels(&c.name)),
                host_config: Some(HostConfig {
                    network_mode: Some(format!("container:{infra_id}")),
                    binds: (!binds.is_empty()).then_some(binds),
                    cpu_shares: cpu_shares(c.cpu),
                    memory: (c.memory > 0).then_some(c.memory as i64),
                    restart_policy: Some(bollard::models::RestartPolicy {
                        name: Some(match pod.manifest.restart_policy {
                            RestartPolicy::Always {} => RestartPolicyNameEnum::ALWAYS,
                            RestartPolicy::OnFailure {} => RestartPolicyNameEnum::ON_FAILURE,
                            RestartPolicy::Never {} => RestartPolicyNameEnum::NO,
                        }),
                        maximum_retry_count: None,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let id = self
                .create_or_find(&container_name(&pod.id, &c.name), body)
                .await?;
            self.start_container(&id).await.or_else(already_started)?;
        }
        Ok(())
    }

    async fn create_or_find(
        &self,
        name: &str,
        body: ContainerCreateBody,
    ) -> Result<String, MinionError> {
        match self.create_container(name, body).await {
            Ok(id) => Ok(id),
            // Made by an earlier, interrupted run: use it rather than make a second one.
            Err(e) if is_conflict(&e) => Ok(self
                .inspect_container(name)
                .await?
                .id
                .unwrap_or_else(|| name.to_string())),
            Err(e) => Err(e),
        }
    }

    /// Removes every container of a pod, then its emptyDir volumes.
    pub async fn delete_pod(&self, pod_id: &str) -> Result<(), MinionError> {
        let containers = self.list_containers(&[(LABEL_POD, pod_id)]).await?;
        // App containers first, the infra container (their network) last.
        let mut ordered: Vec<_> = containers.iter().collect();
        ordered.sort_by_key(|c| {
            c.labels
                .as_ref()
                .and_then(|l| l.get(LABEL_CONTAINER))
                .is_some_and(|n| n == INFRA)
        });
        for c in ordered {
            if let Some(id) = &c.id {
                match self.remove_container(id).await {
                    Ok(()) => {}
                    Err(e)
                        if e.message.contains("404") || e.message.contains("No such container") => {
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        let filters: HashMap<&str, Vec<String>> =
            [("name", vec![format!("drover_{pod_id}_")])].into();
        let options = bollard::query_parameters::ListVolumesOptionsBuilder::new()
            .filters(&filters)
            .build();
        let volumes = self.call(self.docker().list_volumes(Some(options))).await?;
        for v in volumes.volumes.unwrap_or_default() {
            if v.name.starts_with(&format!("drover_{pod_id}_")) {
                let _ = self
                    .docker()
                    .remove_volume(
                        &v.name,
                        None::<bollard::query_parameters::RemoveVolumeOptions>,
                    )
                    .await;
            }
        }
        Ok(())
    }

    /// The pods drover runs on this minion, rebuilt from container labels and states.
    pub async fn observe_pods(&self) -> Result<Vec<ObservedPod>, MinionError> {
        let containers = self.list_managed().await?;
        let mut pods: BTreeMap<String, Vec<&bollard::models::ContainerSummary>> = BTreeMap::new();
        for c in &containers {
            if let Some(pod) = c.labels.as_ref().and_then(|l| l.get(LABEL_POD)) {
                pods.entry(pod.clone()).or_default().push(c);
            }
        }
        Ok(pods
            .into_iter()
            .map(|(id, cs)| {
                let labels = cs[0].labels.clone().unwrap_or_default();
                let request: RequestLabel = labels
                    .get(LABEL_REQUEST)
                    .and_then(|r| serde_json::from_str(r).ok())
                    .unwrap_or_default();
                let app_containers: Vec<&&bollard::models::ContainerSummary> = cs
                    .iter()
                    .filter(|c| {
                        c.labels
                            .as_ref()
                            .and_then(|l| l.get(LABEL_CONTAINER))
                            .is_some_and(|n| n != INFRA)
                    })
                    .collect();
                let mut containers: Vec<ContainerStatus> = app_containers
                    .iter()
                    .map(|c| ContainerStatus {
                        name: c
                            .labels
                            .as_ref()
                            .and_then(|l| l.get(LABEL_CONTAINER))
                            .cloned()
                            .unwrap_or_default(),
                        image: c.image.clone().unwrap_or_default(),
                        state: container_state(c),
                    })
                    .collect();
                // Docker lists newest first; a fixed order keeps the stored record stable.
                containers.sort_by(|a, b| a.name.cmp(&b.name));
                let apps: Vec<ContainerState> = containers.iter().map(|c| c.state).collect();
                let policy = restart_from_label(labels.get(LABEL_RESTART).map(String::as_str));
                let expected: usize = labels
                    .get(LABEL_CONTAINERS)
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(apps.len());
                let has_infra = cs.len() > apps.len();
                // Changed by hand: a container removed, or an "always" container stopped (Docker
                // does not restart what was stopped on purpose). Failed makes it replaced.
                let broken = apps.len() < expected
                    || !has_infra
                    || (policy == RestartPolicy::Always {}
                        && apps
                            .iter()
                            .any(|a| matches!(a, ContainerState::Exited { .. })));
                ObservedPod {
                    id,
                    minion: self.spec.name.clone(),
                    owner: labels.get(LABEL_RC).cloned(),
                    template_hash: labels.get(LABEL_HASH).cloned().unwrap_or_default(),
                    labels: labels
                        .iter()
                        .filter(|(k, _)| !k.starts_with("io.drover."))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                    containers,
                    phase: if broken {
                        Phase::Failed
                    } else {
                        phase_of(&apps, policy)
                    },
                    created: cs.iter().filter_map(|c| c.created).min().unwrap_or(0) as u64,
                    request: request.into_request(crate::plan::pods::spread_group(
                        labels.get(LABEL_RC).map(String::as_str),
                        labels
                            .get(LABEL_HASH)
                            .map(String::as_str)
                            .unwrap_or_default(),
                        labels
                            .get(LABEL_POD)
                            .map(String::as_str)
                            .unwrap_or_default(),
                    )),
                }
            })
            .collect())
    }
}

fn already_started(e: MinionError) -> Result<(), MinionError> {
    if e.message.contains("304") || e.message.contains("already started") {
        Ok(())
    } else {
        Err(e)
    }
}

fn restart_name(p: RestartPolicy) -> &'static str {
    match p {
        RestartPolicy::Always {} => "always",
        RestartPolicy::OnFailure {} => "onFailure",
        RestartPolicy::Never {} => "never",
    }
}

/// The part of a pod's request kept in a label, so the scheduler can account for pods it did
/// not place in this run.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct RequestLabel {
    cpu: u64,
    memory: u64,
    #[serde(default)]
    host_ports: Vec<(u16, Protocol)>,
}

impl RequestLabel {
    fn of(r: &PodRequest) -> RequestLabel {
        RequestLabel {
            cpu: r.cpu,
            memory: r.memory,
            host_ports: r.host_ports.clone(),
        }
    }

    fn into_request(self, group: String) -> PodRequest {
        PodRequest {
            cpu: self.cpu,
            memory: self.memory,
            host_ports: self.host_ports,
            node_selector: Default::default(),
            group,
        }
    }
}

/// A container's state from the list call: "Exited (3) 5 seconds ago" carries the exit code.
fn container_state(c: &bollard::models::ContainerSummary) -> ContainerState {
    match c.state {
        Some(
            ContainerSummaryStateEnum::RUNNING
            | ContainerSummaryStateEnum::RESTARTING
            | ContainerSummaryStateEnum::PAUSED,
        ) => ContainerState::Running,
        Some(ContainerSummaryStateEnum::EXITED | ContainerSummaryStateEnum::DEAD) => {
            let code = c
                .status
                .as_deref()
                .and_then(|s| s.split_once('(')?.1.split_once(')')?.0.parse().ok())
                .unwrap_or(-1);
            ContainerState::Exited { code }
        }
        _ => ContainerState::Waiting,
    }
}

/// The restart policy as kept in a label.
fn restart_from_label(name: Option<&str>) -> RestartPolicy {
    match name {
        Some("never") => RestartPolicy::Never {},
        Some("onFailure") => RestartPolicy::OnFailure {},
        _ => RestartPolicy::Always {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_follow_the_restart_policy_table() {
        use ContainerState::*;
        let (never, on_failure, always) = (
            RestartPolicy::Never {},
            RestartPolicy::OnFailure {},
            RestartPolicy::Always {},
        );
        let ok = Exited { code: 0 };
        let bad = Exited { code: 1 };
        assert_eq!(phase_of(&[Running, ok], never), Phase::Running);
        assert_eq!(phase_of(&[ok, ok], never), Phase::Succeeded);
        assert_eq!(phase_of(&[ok, bad], never), Phase::Failed);
        assert_eq!(phase_of(&[bad], on_failure), Phase::Running);
        assert_eq!(phase_of(&[ok], on_failure), Phase::Succeeded);
        assert_eq!(phase_of(&[bad], always), Phase::Running);
        assert_eq!(phase_of(&[Waiting, Running], always), Phase::Pending);
        for policy in ["never", "onFailure", "always"] {
            assert_eq!(restart_name(restart_from_label(Some(policy))), policy);
        }
    }

    #[test]
    fn cpu_shares_follow_kubelet() {
        assert_eq!(cpu_shares(0), None);
        assert_eq!(cpu_shares(1000), Some(1024));
        assert_eq!(cpu_shares(1), Some(2));
    }
}
