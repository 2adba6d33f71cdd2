//! Pods on Docker. A pod is one infra container (drover's pause image) that holds the network
//! namespace and publishes the pod's ports on the minion's publish address, plus one container
//! per manifest container joined to it (`container:<infra>`), so all share one IP and port
//! space. emptyDir volumes are Docker volumes made per pod and removed with it.
//!
//! A pod of one container whose ports all name their hostPort (or that has none) is that one
//! container: its own network namespace is the pod's (see [`owns_netns`]). The infra container
//! is what keeps a pod's ephemeral host ports across restarts of its containers (Docker picks a
//! new one each time it starts a container that publishes without a hostPort); with fixed or no
//! host ports there is nothing for it to keep, and it would cost a second container (a create,
//! a start and a containerd shim) per pod.
//!
//! Names are deterministic (`drover_<project>_<pod>_<container>`) and every container carries
//! labels that describe its pod and its project, so the observed state is rebuilt from the
//! minion alone and a re-run after a crash finds what it already made instead of making it
//! twice.
//!
//! A drover sees only its own project's containers and volumes. Containers drover made before
//! projects existed (no project label, named `drover_<pod>_<container>`) are this project's
//! only when its store recorded their pod (`adopt`); anything else on the minion — other
//! projects' pods, containers drover did not make — is never changed, only counted as `Taken`.

use super::{pause, Minion, MinionError, LABEL_MANAGED_BY, LABEL_PROJECT, MANAGED_BY};
use crate::model::{Protocol, RestartPolicy, VolumeSource};
use crate::plan::pods::{phase_of, ContainerState, ContainerStatus, ObservedPod, Phase, PodSpec};
use crate::plan::scheduler::{PodRequest, Taken};
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
/// The pod's ports in manifest order with their names (`[[name, port, protocol], ...]`), on the
/// infra container: a service's containerPort by name, or its first port, is found from it.
pub const LABEL_PORTS: &str = "io.drover.ports";
/// How many app containers the pod has, so a container removed by hand is noticed.
pub const LABEL_CONTAINERS: &str = "io.drover.containers";
/// On the container of a pod that owns its network namespace (no infra container).
pub const LABEL_NETNS: &str = "io.drover.netns";
/// The pod's own labels (JSON), on a container that owns its namespace: Docker merges its
/// image's LABELs into the container's, so they cannot be told apart otherwise.
pub const LABEL_POD_LABELS: &str = "io.drover.pod-labels";
const INFRA: &str = "infra";

/// Whether a pod runs as its one container, without an infra container: one container, and
/// every port published at a fixed hostPort, so a restart publishes it where it was.
pub fn owns_netns(pod: &PodSpec) -> bool {
    match pod.manifest.containers.as_slice() {
        [only] => only.ports.iter().all(|p| p.host_port.is_some()),
        _ => false,
    }
}

pub fn container_name(project: &str, pod: &str, container: &str) -> String {
    format!("drover_{project}_{pod}_{container}")
}

/// The Docker name of an observed pod's container: a pod adopted from a drover from before
/// projects kept its old name.
pub fn name_in(project: &str, pod: &ObservedPod, container: &str) -> String {
    if pod.legacy {
        format!("drover_{}_{container}", pod.id)
    } else {
        container_name(project, &pod.id, container)
    }
}

fn volume_name(project: &str, pod: &str, volume: &str) -> String {
    format!("drover_{project}_{pod}_{volume}")
}

/// What one minion holds for this project, and what it holds for others.
#[derive(Debug, Default)]
pub struct MinionObservation {
    /// This project's pods (and adopted pods of a drover from before projects).
    pub pods: Vec<ObservedPod>,
    /// Capacity and host ports others use there.
    pub taken: Taken,
    /// Pods drover made before projects existed that this project's store never recorded:
    /// reported, never touched.
    pub unclaimed: Vec<String>,
    /// This project's emptyDir volumes: (pod, volume name).
    pub volumes: Vec<(String, String)>,
}

fn label<'a>(c: &'a bollard::models::ContainerSummary, key: &str) -> Option<&'a str> {
    c.labels.as_ref()?.get(key).map(String::as_str)
}

fn is_running(c: &bollard::models::ContainerSummary) -> bool {
    matches!(
        c.state,
        Some(ContainerSummaryStateEnum::RUNNING | ContainerSummaryStateEnum::RESTARTING)
    )
}

/// Docker's answer to a create whose image it does not hold.
fn is_no_such_image(e: &MinionError) -> bool {
    e.message.contains("No such image")
}

fn is_not_found(e: &MinionError) -> bool {
    e.message.contains("404") || e.message.contains("No such")
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
            let _one = self.pause_import.lock().await;
            // Another pod may have imported it while this one waited.
            if self.image_present(image).await? {
                return Ok(());
            }
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
        let request = serde_json::to_string(&RequestLabel::of(&pod.request())).expect("serialises");
        let labels = |container: &str| -> HashMap<String, String> {
            let mut l: HashMap<String, String> = pod
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            l.insert(LABEL_POD.into(), pod.id.clone());
            l.insert(LABEL_PROJECT.into(), self.spec.project.clone());
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

        // Every published port of the pod, on the container that holds its network namespace.
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
        let project = self.spec.project.as_str();
        let declared: Vec<(Option<&str>, u16, Protocol)> = pod
            .manifest
            .containers
            .iter()
            .flat_map(|c| &c.ports)
            .map(|p| (p.name.as_deref(), p.container_port, p.protocol))
            .collect();
        let declared = serde_json::to_string(&declared).expect("serialises");
        let own_netns = owns_netns(pod);
        let infra_id = if own_netns {
            None
        } else {
            let infra_name = container_name(project, &pod.id, INFRA);
            let mut infra_labels = labels(INFRA);
            infra_labels.insert(LABEL_PORTS.into(), declared.clone());
            let infra = ContainerCreateBody {
                image: Some(pause::IMAGE.into()),
                cmd: Some(vec!["/pause".into()]),
                labels: Some(infra_labels),
                exposed_ports: Some(bindings.keys().cloned().collect()),
                host_config: Some(HostConfig {
                    port_bindings: Some(bindings.clone()),
                    // The pause program writes nothing: no log file, no log copier.
                    log_config: Some(bollard::models::HostConfigLogConfig {
                        typ: Some("none".into()),
                        config: None,
                    }),
                    restart_policy: Some(bollard::models::RestartPolicy {
                        name: Some(RestartPolicyNameEnum::ALWAYS),
                        maximum_retry_count: None,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let id = self.create_or_find(&infra_name, infra, None).await?;
            self.start_container(&infra_name)
                .await
                .or_else(already_started)?;
            Some(id)
        };

        let mut volumes: BTreeMap<&str, String> = BTreeMap::new();
        for v in &pod.manifest.volumes {
            let source = match &v.source {
                VolumeSource::EmptyDir {} => {
                    // Made here with labels, not implicitly by a bind, so it can be found and
                    // removed with its pod, whatever happened to its containers.
                    let name = volume_name(project, &pod.id, &v.name);
                    self.create_volume(&name, &pod.id).await?;
                    name
                }
                VolumeSource::HostDir { path } => path.clone(),
            };
            volumes.insert(v.name.as_str(), source);
        }
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
            let mut container_labels = labels(&c.name);
            if own_netns {
                container_labels.insert(LABEL_NETNS.into(), "own".into());
                container_labels.insert(LABEL_PORTS.into(), declared.clone());
                container_labels.insert(
                    LABEL_POD_LABELS.into(),
                    serde_json::to_string(&pod.labels).expect("serialises"),
                );
            }
            let body = ContainerCreateBody {
                image: Some(c.image.clone()),
                cmd: (!c.command.is_empty()).then(|| c.command.clone()),
                working_dir: c.working_dir.clone(),
                env: Some(all_env),
                labels: Some(container_labels),
                exposed_ports: own_netns.then(|| bindings.keys().cloned().collect()),
                host_config: Some(HostConfig {
                    network_mode: infra_id.as_ref().map(|id| format!("container:{id}")),
                    port_bindings: own_netns.then(|| bindings.clone()),
                    binds: (!binds.is_empty()).then_some(binds),
                    cpu_shares: cpu_shares(c.cpu),
                    memory: (c.memory > 0).then_some(c.memory as i64),
                    // Only reachable when drover.toml allows it (manifest validation).
                    privileged: c.privileged.then_some(true),
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
            let name = container_name(project, &pod.id, &c.name);
            self.create_or_find(&name, body, credentials(&c.image))
                .await?;
            self.start_container(&name).await.or_else(already_started)?;
        }
        Ok(())
    }

    /// Creates a container, its image made present first only when Docker says it is missing
    /// (one call per container in the common case, as `docker run` does), or finds the one an
    /// earlier run made.
    async fn create_or_find(
        &self,
        name: &str,
        body: ContainerCreateBody,
        credentials: Option<super::Credentials>,
    ) -> Result<String, MinionError> {
        let created = match self.create_container(name, body.clone()).await {
            Err(e) if is_no_such_image(&e) => {
                let image = body.image.as_deref().unwrap_or_default();
                self.ensure_image(image, credentials).await?;
                self.create_container(name, body).await
            }
            other => other,
        };
        match created {
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

    /// Makes an emptyDir volume carrying drover's labels (project, pod). Idempotent.
    async fn create_volume(&self, name: &str, pod: &str) -> Result<(), MinionError> {
        let labels: HashMap<String, String> = [
            (LABEL_MANAGED_BY, MANAGED_BY),
            (LABEL_PROJECT, self.spec.project.as_str()),
            (LABEL_POD, pod),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let options = bollard::models::VolumeCreateRequest {
            name: Some(name.to_string()),
            labels: Some(labels),
            ..Default::default()
        };
        self.call(
            &format!("create volume {name}"),
            self.docker().create_volume(options),
        )
        .await?;
        Ok(())
    }

    /// This project's emptyDir volumes on the minion, optionally of one pod: (pod, name).
    async fn project_volumes(
        &self,
        pod: Option<&str>,
    ) -> Result<Vec<(String, String)>, MinionError> {
        let mut wanted = vec![
            format!("{LABEL_MANAGED_BY}={MANAGED_BY}"),
            format!("{LABEL_PROJECT}={}", self.spec.project),
        ];
        if let Some(pod) = pod {
            wanted.push(format!("{LABEL_POD}={pod}"));
        }
        let filters: HashMap<&str, Vec<String>> = [("label", wanted)].into();
        let options = bollard::query_parameters::ListVolumesOptionsBuilder::new()
            .filters(&filters)
            .build();
        let listed = self
            .call("list volumes", self.docker().list_volumes(Some(options)))
            .await?;
        Ok(listed
            .volumes
            .unwrap_or_default()
            .into_iter()
            .filter(|v| v.labels.get(LABEL_PROJECT) == Some(&self.spec.project))
            .filter_map(|v| Some((v.labels.get(LABEL_POD)?.clone(), v.name)))
            .collect())
    }

    /// Removes volumes; one already gone is fine.
    pub async fn delete_volumes(&self, names: &[String]) -> Result<(), MinionError> {
        for name in names {
            let removed = self
                .call(
                    &format!("remove volume {name}"),
                    self.docker().remove_volume(
                        name,
                        None::<bollard::query_parameters::RemoveVolumeOptions>,
                    ),
                )
                .await;
            match removed {
                Err(e) if !is_not_found(&e) => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// Removes every container of one of this project's pods, then its emptyDir volumes.
    /// `legacy`: the pod was made before projects (no project label; adopted by this one).
    pub async fn delete_pod(&self, pod_id: &str, legacy: bool) -> Result<(), MinionError> {
        let listed = self.list_containers(&[(LABEL_POD, pod_id)]).await?;
        let ours = |c: &&bollard::models::ContainerSummary| match label(c, LABEL_PROJECT) {
            Some(p) => !legacy && p == self.spec.project,
            None => legacy && label(c, LABEL_MANAGED_BY) == Some(MANAGED_BY),
        };
        // App containers first, the infra container (their network) last.
        let mut ordered: Vec<_> = listed.iter().filter(ours).collect();
        ordered.sort_by_key(|c| label(c, LABEL_CONTAINER) == Some(INFRA));
        for c in ordered {
            if let Some(id) = &c.id {
                match self.remove_container(id).await {
                    Err(e) if !is_not_found(&e) => return Err(e),
                    _ => {}
                }
            }
        }
        // Volumes go with the pod; a pod none of whose containers mounts one of its own needs
        // no look (one left by a crash between making a volume and its container is removed
        // by the next round's `leftover_volumes`).
        let prefix = volume_name(&self.spec.project, pod_id, "");
        let mounts_own = listed.iter().filter(ours).any(|c| {
            c.mounts
                .iter()
                .flatten()
                .any(|m| m.name.as_deref().is_some_and(|n| n.starts_with(&prefix)))
        });
        if !legacy && !mounts_own {
            return Ok(());
        }
        let volumes: Vec<String> = if legacy {
            // Made implicitly by Docker (no labels), named after the pod.
            let prefix = format!("drover_{pod_id}_");
            let listed = self
                .call(
                    "list volumes",
                    self.docker()
                        .list_volumes(None::<bollard::query_parameters::ListVolumesOptions>),
                )
                .await?;
            listed
                .volumes
                .unwrap_or_default()
                .into_iter()
                .filter(|v| v.name.starts_with(&prefix) && !v.labels.contains_key(LABEL_PROJECT))
                .map(|v| v.name)
                .collect()
        } else {
            self.project_volumes(Some(pod_id))
                .await?
                .into_iter()
                .map(|(_, name)| name)
                .collect()
        };
        self.delete_volumes(&volumes).await
    }

    /// The pods this project runs on the minion, rebuilt from container labels and states,
    /// and what others use there. `adopt` says which pods made before projects (no project
    /// label) this project's store recorded. One list call for containers, one for volumes.
    pub async fn observe_project(
        &self,
        adopt: &(dyn Fn(&str) -> bool + Send + Sync),
    ) -> Result<MinionObservation, MinionError> {
        let (containers, volumes) =
            futures_util::future::try_join(self.list_containers(&[]), self.project_volumes(None))
                .await?;
        let mut seen = MinionObservation {
            volumes,
            ..Default::default()
        };
        let mut pods: BTreeMap<(String, bool), Vec<&bollard::models::ContainerSummary>> =
            BTreeMap::new();
        // Other projects' pods, counted once each: (project, pod) -> request.
        let mut foreign: BTreeMap<(&str, &str), RequestLabel> = BTreeMap::new();
        let mut unclaimed = std::collections::BTreeSet::new();
        for c in &containers {
            let drover = label(c, LABEL_MANAGED_BY) == Some(MANAGED_BY);
            let pod = label(c, LABEL_POD);
            let project = label(c, LABEL_PROJECT);
            match (drover, pod, project) {
                (true, Some(pod), Some(p)) if p == self.spec.project => {
                    pods.entry((pod.to_string(), false)).or_default().push(c)
                }
                (true, Some(pod), None) if adopt(pod) => {
                    pods.entry((pod.to_string(), true)).or_default().push(c)
                }
                (true, Some(pod), project) => {
                    if project.is_none() {
                        unclaimed.insert(pod.to_string());
                    }
                    if is_running(c) {
                        let request = label(c, LABEL_REQUEST)
                            .and_then(|r| serde_json::from_str(r).ok())
                            .unwrap_or_default();
                        foreign
                            .entry((project.unwrap_or(""), pod))
                            .or_insert(request);
                    }
                }
                _ if is_running(c) => {
                    // Not a pod of drover's: only its published ports are known.
                    for p in c.ports.iter().flatten() {
                        if let Some(public) = p.public_port {
                            seen.taken.host_ports.push((public, protocol_of(p)));
                        }
                    }
                }
                _ => {}
            }
        }
        for request in foreign.into_values() {
            seen.taken.cpu += request.cpu;
            seen.taken.memory += request.memory;
            seen.taken.host_ports.extend(request.host_ports);
        }
        seen.taken.host_ports.sort();
        seen.taken.host_ports.dedup();
        seen.unclaimed = unclaimed.into_iter().collect();
        seen.pods = pods
            .into_iter()
            .map(|((id, legacy), cs)| {
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
                let infra = cs.iter().find(|c| label(c, LABEL_CONTAINER) == Some(INFRA));
                let own_netns = cs.iter().find(|c| label(c, LABEL_NETNS) == Some("own"));
                let has_netns = infra.or(own_netns).is_some();
                let (ports, ip) = infra
                    .or(own_netns)
                    .map(|c| published(c))
                    .unwrap_or_default();
                // As drover wrote them: the infra container's (drover's pause image adds none)
                // or the copy kept on a container that owns its namespace, not an app
                // container's, which also carry its image's LABELs.
                let pod_labels: BTreeMap<String, String> = match (infra, own_netns) {
                    (Some(c), _) => c.labels.clone().unwrap_or_default().into_iter().collect(),
                    (None, Some(c)) => label(c, LABEL_POD_LABELS)
                        .and_then(|l| serde_json::from_str(l).ok())
                        .unwrap_or_default(),
                    (None, None) => labels.clone().into_iter().collect(),
                };
                // Changed by hand: a container removed, or an "always" container stopped (Docker
                // does not restart what was stopped on purpose). Failed makes it replaced.
                let broken = apps.len() < expected
                    || !has_netns
                    || (policy == RestartPolicy::Always {}
                        && apps
                            .iter()
                            .any(|a| matches!(a, ContainerState::Exited { .. })));
                ObservedPod {
                    id,
                    minion: self.spec.name.clone(),
                    owner: labels.get(LABEL_RC).cloned(),
                    template_hash: labels.get(LABEL_HASH).cloned().unwrap_or_default(),
                    labels: pod_labels
                        .into_iter()
                        .filter(|(k, _)| !k.starts_with("io.drover."))
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
                    legacy,
                    ports,
                    ip,
                    unready: false,
                }
            })
            .collect();
        Ok(seen)
    }
}

fn protocol_of(p: &bollard::models::PortSummary) -> Protocol {
    match p.typ {
        Some(bollard::models::PortSummaryTypeEnum::UDP) => Protocol::UDP,
        _ => Protocol::TCP,
    }
}

/// The ports an infra container publishes, and its address on the minion's bridge.
fn published(
    c: &bollard::models::ContainerSummary,
) -> (Vec<crate::plan::pods::PublishedPort>, Option<String>) {
    let declared: Vec<(Option<String>, u16, Protocol)> = label(c, LABEL_PORTS)
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_default();
    let mut ports: Vec<crate::plan::pods::PublishedPort> = c
        .ports
        .iter()
        .flatten()
        .filter_map(|p| {
            let host_port = p.public_port?;
            let host_ip = p.ip.clone().unwrap_or_default();
            // Docker lists a port bound on every address twice (0.0.0.0 and ::): keep IPv4.
            if host_ip.contains(':') {
                return None;
            }
            let protocol = protocol_of(p);
            let name = declared
                .iter()
                .find(|d| d.1 == p.private_port && d.2 == protocol)
                .and_then(|d| d.0.clone());
            Some(crate::plan::pods::PublishedPort {
                name,
                container_port: p.private_port,
                protocol,
                host_ip,
                host_port,
            })
        })
        .collect();
    // Manifest order (the first port is a service's default), then by number.
    let rank = |p: &crate::plan::pods::PublishedPort| {
        declared
            .iter()
            .position(|d| d.1 == p.container_port && d.2 == p.protocol)
            .unwrap_or(usize::MAX)
    };
    ports.sort_by(|a, b| (rank(a), a).cmp(&(rank(b), b)));
    ports.dedup();
    let ip = c
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .and_then(|n| n.values().find_map(|e| e.ip_address.clone()))
        .filter(|ip| !ip.is_empty());
    (ports, ip)
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
