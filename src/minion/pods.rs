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

use super::hooks::{self, HookTarget, LABEL_POST_START, LABEL_PRE_STOP, POST_START_FAILED};
use super::{
    pause, Minion, MinionError, PullAttempt, Warning, LABEL_MANAGED_BY, LABEL_PROJECT, MANAGED_BY,
};
use crate::model::{Protocol, PullPolicy, RestartPolicy, VolumeSource};
use crate::plan::pods::{phase_of, ContainerState, ContainerStatus, ObservedPod, Phase, PodSpec};
use crate::plan::scheduler::{PodRequest, Taken};
use bollard::models::{
    ContainerCreateBody, ContainerSummaryStateEnum, HostConfig, PortBinding, RestartPolicyNameEnum,
};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

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

/// Docker's answer to a create whose image it does not hold (a 404 that names the image, not
/// the container whose network namespace it was to join).
fn is_no_such_image(e: &MinionError) -> bool {
    e.not_found() && e.message.contains("No such image")
}

fn is_not_found(e: &MinionError) -> bool {
    e.not_found()
}

/// Docker's 409 to a removal of a container it is already removing (a restart policy's
/// exit, an earlier removal cut short by a timeout): the container goes either way.
fn is_being_removed(e: &MinionError) -> bool {
    e.conflict() && e.message.contains("already in progress")
}

/// Docker CPU shares from thousandths of a core (1024 shares per core, at least 2).
fn cpu_shares(milli: u64) -> Option<i64> {
    (milli > 0).then(|| ((milli * 1024 / 1000) as i64).max(2))
}

fn is_conflict(e: &MinionError) -> bool {
    e.conflict()
}

/// How long the outcome of a pull of an image on a minion stands for the pods made there after
/// it (`PullAlways`): a rollout of many replicas pulls once, not once per pod.
pub const PULL_WINDOW: Duration = Duration::from_secs(10);

/// Whether a `PullAlways` image is pulled again, its last pull on the minion made at `last`.
/// Pure.
pub fn pull_due(last: Option<Instant>, now: Instant) -> bool {
    last.is_none_or(|at| now.saturating_duration_since(at) >= PULL_WINDOW)
}

/// What a `PullAlways` container does after its image's pull failed with `error`: with the
/// image on the minion, it runs that (drover's users often have no registry: images made with
/// `docker import`, tagged `:latest`); said as a warning by the pod whose pull it was (`fresh`),
/// not by every pod that took the outcome. Without the image, the pull failure stands. Pure.
pub fn after_failed_pull(
    error: MinionError,
    present: bool,
    fresh: bool,
) -> Result<Option<Warning>, MinionError> {
    if !present || error.timed_out {
        return Err(error);
    }
    Ok(fresh.then(|| Warning {
        reason: "FailedToPull",
        message: format!(
            "{} on {}; using the image present on the minion",
            error.message, error.minion
        ),
    }))
}

/// The error for a `PullNever` container whose image the minion does not have (Kubernetes'
/// ErrImageNeverPull); it backs off as a pull failure.
pub fn never_pull_error(minion: &Minion, image: &str) -> MinionError {
    MinionError::new(
        &minion.spec.name,
        &minion.spec.address,
        format!(
            "{ERR_IMAGE_NEVER_PULL}: image {image} is not present on the minion and its \
             imagePullPolicy is PullNever (load it there, or allow a pull)"
        ),
    )
    .of_kind(super::FailureKind::ImageNeverPull)
}

/// Kubernetes' reason for an absent image that may not be pulled.
pub const ERR_IMAGE_NEVER_PULL: &str = "ErrImageNeverPull";

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
        self.pull_coalesced(image, credentials).await.0
    }

    /// Pulls an image, one pull per image on this minion at a time, and none again within
    /// `PULL_WINDOW` of the last: a pod arriving then takes that pull's outcome. Also says
    /// whether the outcome is this call's own pull.
    async fn pull_coalesced(
        &self,
        image: &str,
        credentials: Option<super::Credentials>,
    ) -> (Result<(), MinionError>, bool) {
        let slot = self
            .pulls
            .lock()
            .expect("pulls")
            .entry(image.to_string())
            .or_default()
            .clone();
        let mut last = slot.lock().await;
        if let Some(a) = last
            .as_ref()
            .filter(|a| !pull_due(Some(a.at), Instant::now()))
        {
            return (a.result.clone(), false);
        }
        let result = self.pull_image(image, credentials).await;
        *last = Some(PullAttempt {
            at: Instant::now(),
            result: result.clone(),
        });
        (result, true)
    }

    /// Creates and starts a pod. Idempotent: containers that already exist are kept. Each
    /// container's image is made present as its `imagePullPolicy` says; a container's
    /// postStart hook runs right after it starts. Returns what the pod's events should say
    /// beside its creation (a pull that failed with the image run as the minion had it, a
    /// postStart hook that failed under restart policy `never`).
    ///
    /// A pod that could not be made is removed again (what of it was made), so its next try
    /// starts clean under the same name: left half-made, the next round deleted it as broken
    /// and made a replica under another name, whose back-off started afresh. Not after a call
    /// that timed out: the engine is not answering, and `fail_half_made` finds it later.
    pub async fn create_pod(
        &self,
        pod: &PodSpec,
        env: &[String],
        credentials: &(dyn Fn(&str) -> Option<super::Credentials> + Send + Sync),
    ) -> Result<Vec<Warning>, MinionError> {
        let made = self.make_pod(pod, env, credentials).await;
        if made.as_ref().is_err_and(|e| !e.timed_out) {
            let _ = self.delete_pod(&pod.id, false).await;
        }
        made
    }

    /// Makes a pod, step by step: its `PullAlways` images first, then its infra container (if
    /// it has one), its volumes, and each container in manifest order, created, started and
    /// its postStart hook run.
    async fn make_pod(
        &self,
        pod: &PodSpec,
        env: &[String],
        credentials: &(dyn Fn(&str) -> Option<super::Credentials> + Send + Sync),
    ) -> Result<Vec<Warning>, MinionError> {
        let mut warnings = Vec::new();
        let shape = PodShape::of(pod, &self.spec.project, &self.spec.publish_address);
        // PullAlways images first, before anything of the pod exists: a slow pull leaves no
        // half-made pod behind it.
        let mut failed_pulls = self.pull_always_images(&pod.manifest, credentials).await?;
        // An image neither pulled nor on the minion fails the pod before any of it is made
        // (no infra container made and removed again at each try of its back-off).
        for (image, (pull_error, _)) in &failed_pulls {
            if !self.image_present(image).await? {
                return Err(pull_error.clone());
            }
        }
        let infra_id = if shape.own_netns {
            None
        } else {
            Some(self.make_infra(&shape).await?)
        };
        let volumes = self.make_volumes(pod).await?;
        let mut pod_ip: Option<String> = None;
        for c in &pod.manifest.containers {
            let body = self.container_body(&shape, c, env, &volumes, infra_id.as_deref())?;
            let name = container_name(shape.project, &pod.id, &c.name);
            let (_, pulled) = self
                .create_or_find(
                    &name,
                    body,
                    credentials(&c.image),
                    c.pull_policy(),
                    failed_pulls.remove(&c.image),
                )
                .await?;
            warnings.extend(pulled);
            // Started now (not found running from an earlier run): its postStart hook is due.
            let started = match self.start_container(&name).await {
                Ok(()) => true,
                Err(e) => {
                    already_started(e)?;
                    false
                }
            };
            let Some(hook) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) else {
                continue;
            };
            if !started {
                continue;
            }
            warnings.extend(self.post_start(&shape, c, hook, &name, &mut pod_ip).await?);
        }
        Ok(warnings)
    }

    /// Makes (or finds) and starts the pod's infra container, which holds its network
    /// namespace and publishes its ports. Returns its id.
    async fn make_infra(&self, shape: &PodShape<'_>) -> Result<String, MinionError> {
        let infra_name = container_name(shape.project, &shape.pod.id, INFRA);
        let mut infra_labels = shape.labels(INFRA);
        infra_labels.insert(LABEL_PORTS.into(), shape.declared.clone());
        let infra = ContainerCreateBody {
            image: Some(pause::IMAGE.into()),
            cmd: Some(vec!["/pause".into()]),
            labels: Some(infra_labels),
            exposed_ports: Some(shape.bindings.keys().cloned().collect()),
            host_config: Some(HostConfig {
                port_bindings: Some(shape.bindings.clone()),
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
        // drover's own image, imported from the binary when missing: never pulled.
        let id = self
            .create_or_find(&infra_name, infra, None, PullPolicy::PullIfNotPresent, None)
            .await?
            .0;
        self.start_container(&infra_name)
            .await
            .or_else(already_started)?;
        Ok(id)
    }

    /// Makes the pod's emptyDir volumes. Returns each volume's source to bind, by name.
    async fn make_volumes<'p>(
        &self,
        pod: &'p PodSpec,
    ) -> Result<BTreeMap<&'p str, String>, MinionError> {
        let project = self.spec.project.as_str();
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
        Ok(volumes)
    }

    /// What Docker is asked to create for container `c` of the pod: joined to the infra
    /// container's namespace (`infra_id`), or publishing the pod's ports itself.
    fn container_body(
        &self,
        shape: &PodShape<'_>,
        c: &crate::model::Container,
        env: &[String],
        volumes: &BTreeMap<&str, String>,
        infra_id: Option<&str>,
    ) -> Result<ContainerCreateBody, MinionError> {
        let (pod, own_netns) = (shape.pod, shape.own_netns);
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
        let mut container_labels = shape.labels(&c.name);
        if own_netns {
            container_labels.insert(LABEL_NETNS.into(), "own".into());
            container_labels.insert(LABEL_PORTS.into(), shape.declared.clone());
            container_labels.insert(
                LABEL_POD_LABELS.into(),
                serde_json::to_string(&pod.labels).expect("serialises"),
            );
        }
        Ok(ContainerCreateBody {
            image: Some(c.image.clone()),
            cmd: (!c.command.is_empty()).then(|| c.command.clone()),
            working_dir: c.working_dir.clone(),
            env: Some(all_env),
            labels: Some(self.with_hooks(container_labels, c, &pod.manifest)?),
            exposed_ports: own_netns.then(|| shape.bindings.keys().cloned().collect()),
            host_config: Some(HostConfig {
                network_mode: infra_id.map(|id| format!("container:{id}")),
                port_bindings: own_netns.then(|| shape.bindings.clone()),
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
        })
    }

    /// `labels` with container `c`'s lifecycle hooks, their named ports resolved, so that
    /// whoever stops or restarts it later runs them as the manifest said.
    fn with_hooks(
        &self,
        mut l: HashMap<String, String>,
        c: &crate::model::Container,
        m: &crate::model::ContainerManifest,
    ) -> Result<HashMap<String, String>, MinionError> {
        let ports: Vec<crate::model::Port> =
            m.containers.iter().flat_map(|c| c.ports.clone()).collect();
        let lifecycle = c.lifecycle.as_deref();
        for (key, hook) in [
            (LABEL_PRE_STOP, lifecycle.and_then(|l| l.pre_stop.as_ref())),
            (
                LABEL_POST_START,
                lifecycle.and_then(|l| l.post_start.as_ref()),
            ),
        ] {
            let Some(hook) = hook else { continue };
            let hook = hooks::resolved(hook, &ports).map_err(|e| {
                MinionError::new(
                    &self.spec.name,
                    &self.spec.address,
                    format!("container {}: lifecycle hook: {e}", c.name),
                )
            })?;
            l.insert(
                key.into(),
                serde_json::to_string(&hook).expect("serialises"),
            );
        }
        Ok(l)
    }

    /// Runs the postStart hook of container `c`, just started as `name`. A failure kills the
    /// container, as the kubelet did, and its restart policy decides: under `never` the pod
    /// is left Failed (the warning returned); otherwise the pod fails, to be removed and made
    /// again after a back-off (its hooks run again then). `pod_ip` is looked up once, when a
    /// hook first needs it.
    async fn post_start(
        &self,
        shape: &PodShape<'_>,
        c: &crate::model::Container,
        hook: &crate::model::Handler,
        name: &str,
        pod_ip: &mut Option<String>,
    ) -> Result<Option<Warning>, MinionError> {
        if pod_ip.is_none() && hook.http_get.as_ref().is_some_and(|h| h.host.is_none()) {
            *pod_ip = self.pod_ip(&shape.netns_holder()).await?;
        }
        let target = HookTarget {
            container: name,
            pod_ip: pod_ip.as_deref(),
        };
        let Err(why) = self
            .run_hook(hook, &target, hooks::POST_START_TIMEOUT)
            .await
        else {
            return Ok(None);
        };
        let killed = match self.kill_container(name).await {
            Ok(()) => "killed".to_string(),
            Err(e) if e.conflict() && e.message.contains("is not running") => {
                "already stopped".into()
            }
            Err(e) => format!("not killed: {}", e.message),
        };
        let message = format!(
            "{POST_START_FAILED} of container {} failed: {why}; container {killed}",
            c.name
        );
        if shape.pod.manifest.restart_policy == (RestartPolicy::Never {}) {
            // Not started again: the pod is left as it is, Failed.
            return Ok(Some(Warning {
                reason: "FailedPostStartHook",
                message,
            }));
        }
        Err(
            MinionError::new(&self.spec.name, &self.spec.address, message)
                .of_kind(super::FailureKind::PostStartHook),
        )
    }

    /// Runs a container's postStart hook after Docker started it again (its restart policy,
    /// a liveness-probe restart), as each new start did in Kubernetes. A failure kills it (the
    /// plan then replaces a pod that must always run; its creation backs off if the hook keeps
    /// failing) and is returned.
    pub async fn post_start_again(
        &self,
        project: &str,
        container_id: &str,
        pod: &str,
        container: &str,
        hook: &crate::model::Handler,
    ) -> Option<Warning> {
        let mut pod_ip = None;
        if hook.http_get.as_ref().is_some_and(|h| h.host.is_none()) {
            // The infra container's address, or the container's own when it has none.
            pod_ip = match self.pod_ip(&container_name(project, pod, INFRA)).await {
                Ok(Some(ip)) => Some(ip),
                _ => self.pod_ip(container_id).await.ok().flatten(),
            };
        }
        let target = HookTarget {
            container: container_id,
            pod_ip: pod_ip.as_deref(),
        };
        let why = self
            .run_hook(hook, &target, hooks::POST_START_TIMEOUT)
            .await
            .err()?;
        let killed = match self.kill_container(container_id).await {
            Ok(()) => "killed".to_string(),
            Err(e) if e.conflict() && e.message.contains("is not running") => {
                "already stopped".into()
            }
            Err(e) => format!("not killed: {}", e.message),
        };
        Some(Warning {
            reason: "FailedPostStartHook",
            message: format!(
                "{POST_START_FAILED} of container {container} on {} failed after a restart: {why}; container {killed}",
                self.spec.name
            ),
        })
    }

    /// A pod's address on the minion's bridge, from its infra container.
    async fn pod_ip(&self, netns_holder: &str) -> Result<Option<String>, MinionError> {
        let inspected = self.inspect_container(netns_holder).await?;
        Ok(inspected
            .network_settings
            .and_then(|n| n.networks)
            .and_then(|n| n.into_values().find_map(|e| e.ip_address))
            .filter(|ip| !ip.is_empty()))
    }

    /// Pulls the images of the pod's `PullAlways` containers (each once, coalesced with other
    /// pods' pulls: `pull_coalesced`). Returns the pulls that failed, by image, with whether
    /// each was this pod's own; a minion that did not answer fails the pod.
    async fn pull_always_images(
        &self,
        manifest: &crate::model::ContainerManifest,
        credentials: &(dyn Fn(&str) -> Option<super::Credentials> + Send + Sync),
    ) -> Result<HashMap<String, (MinionError, bool)>, MinionError> {
        let mut failed = HashMap::new();
        for c in &manifest.containers {
            if c.pull_policy() != PullPolicy::PullAlways || failed.contains_key(&c.image) {
                continue;
            }
            match self.pull_coalesced(&c.image, credentials(&c.image)).await {
                (Ok(()), _) => {}
                (Err(e), _) if e.timed_out => return Err(e),
                (Err(e), fresh) => {
                    failed.insert(c.image.clone(), (e, fresh));
                }
            }
        }
        Ok(failed)
    }

    /// Creates a container, or finds the one an earlier run made. Its image is made present as
    /// `policy` says: `PullIfNotPresent` pulls only when Docker says it is missing (one call
    /// per container in the common case, as `docker run` does); `PullNever` never pulls (a
    /// missing image is `never_pull_error`); `PullAlways` was pulled by the caller
    /// (`pull_always_images`), and when that failed (`failed_pull`), the image the minion has
    /// runs (`after_failed_pull`). Returns the container's id and that warning.
    async fn create_or_find(
        &self,
        name: &str,
        body: ContainerCreateBody,
        credentials: Option<super::Credentials>,
        policy: PullPolicy,
        mut failed_pull: Option<(MinionError, bool)>,
    ) -> Result<(String, Option<Warning>), MinionError> {
        let image = body.image.clone().unwrap_or_default();
        let created = match self.create_container(name, body.clone()).await {
            Err(e) if is_no_such_image(&e) => match (policy, failed_pull.take()) {
                (PullPolicy::PullNever, _) => return Err(never_pull_error(self, &image)),
                // Neither pulled nor on the minion.
                (_, Some((pull_error, _))) => return Err(pull_error),
                _ => {
                    self.ensure_image(&image, credentials).await?;
                    self.create_container(name, body).await
                }
            },
            other => other,
        };
        let id = match created {
            Ok(id) => id,
            // Made by an earlier, interrupted run: use it rather than make a second one.
            Err(e) if is_conflict(&e) => self
                .inspect_container(name)
                .await?
                .id
                .unwrap_or_else(|| name.to_string()),
            Err(e) => return Err(e),
        };
        let warning = match failed_pull {
            Some((e, fresh)) => after_failed_pull(e, true, fresh)?,
            None => None,
        };
        Ok((id, warning))
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
    /// Running containers with a preStop hook run it first (all at once, each within
    /// `hooks::PRE_STOP_GRACE`); the removal follows whatever the hooks did. Returns the hooks
    /// that failed, as warnings.
    pub async fn delete_pod(
        &self,
        pod_id: &str,
        legacy: bool,
    ) -> Result<Vec<Warning>, MinionError> {
        let listed = self.list_containers(&[(LABEL_POD, pod_id)]).await?;
        let ours = |c: &&bollard::models::ContainerSummary| match label(c, LABEL_PROJECT) {
            Some(p) => !legacy && p == self.spec.project,
            None => legacy && label(c, LABEL_MANAGED_BY) == Some(MANAGED_BY),
        };
        let pod_ip = listed
            .iter()
            .filter(ours)
            .find(|c| {
                label(c, LABEL_CONTAINER) == Some(INFRA) || label(c, LABEL_NETNS) == Some("own")
            })
            .and_then(|c| published(c).1);
        let stopping: Vec<(String, crate::model::Handler, String)> = listed
            .iter()
            .filter(ours)
            .filter(|c| is_running(c))
            .filter_map(|c| {
                let hook = hooks::from_label(label(c, LABEL_PRE_STOP))?;
                let name = label(c, LABEL_CONTAINER).unwrap_or_default().to_string();
                Some((c.id.clone()?, hook, name))
            })
            .collect();
        let pod_ip = pod_ip.as_deref();
        let warnings: Vec<Warning> =
            futures_util::future::join_all(stopping.iter().map(|(id, hook, name)| async move {
                let target = HookTarget {
                    container: id,
                    pod_ip,
                };
                let result = self.run_hook(hook, &target, hooks::PRE_STOP_GRACE).await;
                result.err().map(|why| Warning {
                    reason: "FailedPreStopHook",
                    message: format!(
                        "preStop hook of container {name} on {} failed: {why}; stopped anyway",
                        self.spec.name
                    ),
                })
            }))
            .await
            .into_iter()
            .flatten()
            .collect();
        // App containers first, the infra container (their network) last.
        let mut ordered: Vec<_> = listed.iter().filter(ours).collect();
        ordered.sort_by_key(|c| label(c, LABEL_CONTAINER) == Some(INFRA));
        for c in ordered {
            if let Some(id) = &c.id {
                match self.remove_container(id).await {
                    Err(e) if !is_not_found(&e) && !is_being_removed(&e) => return Err(e),
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
            return Ok(warnings);
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
        self.delete_volumes(&volumes).await?;
        Ok(warnings)
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
        let pods = self.sort_out(&containers, adopt, &mut seen);
        seen.pods = pods
            .into_iter()
            .map(|((id, legacy), cs)| observed_pod(&self.spec.name, id, legacy, &cs))
            .collect();
        Ok(seen)
    }

    /// Sorts the minion's containers: this project's, grouped by (pod, made before projects);
    /// the others only counted, in `seen`, as what they take (and drover's pods without a
    /// project this one did not adopt, as unclaimed).
    fn sort_out<'c>(
        &self,
        containers: &'c [bollard::models::ContainerSummary],
        adopt: &(dyn Fn(&str) -> bool + Send + Sync),
        seen: &mut MinionObservation,
    ) -> BTreeMap<(String, bool), Vec<&'c bollard::models::ContainerSummary>> {
        let mut pods: BTreeMap<(String, bool), Vec<&bollard::models::ContainerSummary>> =
            BTreeMap::new();
        // Other projects' pods, counted once each: (project, pod) -> request.
        let mut foreign: BTreeMap<(&str, &str), RequestLabel> = BTreeMap::new();
        let mut unclaimed = std::collections::BTreeSet::new();
        for c in containers {
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
        pods
    }
}

/// A pod of this project on `minion`, rebuilt from its containers `cs` (its infra container,
/// if any, and its app containers).
fn observed_pod(
    minion: &str,
    id: String,
    legacy: bool,
    cs: &[&bollard::models::ContainerSummary],
) -> ObservedPod {
    let labels = cs[0].labels.clone().unwrap_or_default();
    let request: RequestLabel = labels
        .get(LABEL_REQUEST)
        .and_then(|r| serde_json::from_str(r).ok())
        .unwrap_or_default();
    let containers = app_container_statuses(cs);
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
    // As drover wrote them: the infra container's (drover's pause image adds none) or the
    // copy kept on a container that owns its namespace, not an app container's, which also
    // carry its image's LABELs.
    let pod_labels: BTreeMap<String, String> = match (infra, own_netns) {
        (Some(c), _) => c.labels.clone().unwrap_or_default().into_iter().collect(),
        (None, Some(c)) => label(c, LABEL_POD_LABELS)
            .and_then(|l| serde_json::from_str(l).ok())
            .unwrap_or_default(),
        (None, None) => labels.clone().into_iter().collect(),
    };
    // Changed by hand: a container removed, or an "always" container stopped (Docker does not
    // restart what was stopped on purpose). Failed makes it replaced.
    let broken = apps.len() < expected
        || !has_netns
        || (policy == RestartPolicy::Always {}
            && apps
                .iter()
                .any(|a| matches!(a, ContainerState::Exited { .. })));
    ObservedPod {
        id,
        minion: minion.to_string(),
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
}

/// The statuses of a pod's app containers (not its infra container), by name.
fn app_container_statuses(cs: &[&bollard::models::ContainerSummary]) -> Vec<ContainerStatus> {
    let mut containers: Vec<ContainerStatus> = cs
        .iter()
        .filter(|c| {
            c.labels
                .as_ref()
                .and_then(|l| l.get(LABEL_CONTAINER))
                .is_some_and(|n| n != INFRA)
        })
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
    containers
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

/// Published ports as Docker takes them: `"<port>/<proto>"` to its host binding.
type PortBindings = HashMap<String, Option<Vec<PortBinding>>>;

/// What every container of a pod is made with besides its own manifest: the labels that
/// describe the pod, its published ports, and whether it has an infra container.
struct PodShape<'p> {
    pod: &'p PodSpec,
    project: &'p str,
    /// The pod's request, as its label says it (`RequestLabel`).
    request: String,
    /// The pod's ports in manifest order with their names (`LABEL_PORTS`).
    declared: String,
    /// Every published port of the pod, on the container that holds its network namespace.
    bindings: PortBindings,
    own_netns: bool,
}

impl<'p> PodShape<'p> {
    fn of(pod: &'p PodSpec, project: &'p str, publish_address: &str) -> PodShape<'p> {
        let request = serde_json::to_string(&RequestLabel::of(&pod.request())).expect("serialises");
        let mut bindings: PortBindings = HashMap::new();
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
                                .unwrap_or_else(|| publish_address.to_string()),
                        ),
                        // No hostPort: Docker picks an ephemeral one.
                        host_port: Some(p.host_port.map(|h| h.to_string()).unwrap_or_default()),
                    }]),
                );
            }
        }
        let declared: Vec<(Option<&str>, u16, Protocol)> = pod
            .manifest
            .containers
            .iter()
            .flat_map(|c| &c.ports)
            .map(|p| (p.name.as_deref(), p.container_port, p.protocol))
            .collect();
        PodShape {
            pod,
            project,
            request,
            declared: serde_json::to_string(&declared).expect("serialises"),
            bindings,
            own_netns: owns_netns(pod),
        }
    }

    /// The labels of the pod's `container`: the pod's own, and what drover reads back to
    /// rebuild the pod from the minion alone.
    fn labels(&self, container: &str) -> HashMap<String, String> {
        let pod = self.pod;
        let mut l: HashMap<String, String> = pod
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        l.insert(LABEL_POD.into(), pod.id.clone());
        l.insert(LABEL_PROJECT.into(), self.project.to_string());
        l.insert(LABEL_HASH.into(), pod.template_hash.clone());
        l.insert(LABEL_CONTAINER.into(), container.into());
        l.insert(LABEL_REQUEST.into(), self.request.clone());
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
    }

    /// The container whose address is the pod's.
    fn netns_holder(&self) -> String {
        let pod = self.pod;
        if self.own_netns {
            container_name(self.project, &pod.id, &pod.manifest.containers[0].name)
        } else {
            container_name(self.project, &pod.id, INFRA)
        }
    }
}

fn already_started(e: MinionError) -> Result<(), MinionError> {
    if e.not_modified() {
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
    fn a_removal_already_under_way_is_not_a_failed_deletion() {
        let said = |m: &str| MinionError {
            docker_status: Some(409),
            ..MinionError::new("m1", "10.0.0.2", m)
        };
        assert!(is_being_removed(&said(
            "Docker responded with status code 409: removal of container 3f2a is already in progress"
        )));
        assert!(!is_being_removed(&said(
            "Docker responded with status code 409: You cannot remove a running container 3f2a"
        )));
    }

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
    fn an_image_is_pulled_again_only_after_the_window() {
        let now = Instant::now();
        assert!(pull_due(None, now), "never pulled here");
        assert!(
            !pull_due(Some(now), now + PULL_WINDOW / 2),
            "one pull serves a rollout"
        );
        assert!(pull_due(Some(now), now + PULL_WINDOW));
    }

    #[test]
    fn a_failed_pull_runs_the_minions_image_with_one_warning() {
        let error = MinionError::new(
            "m1",
            "10.0.0.5",
            "cannot pull image app:latest: no such host",
        );
        let first = after_failed_pull(error.clone(), true, true)
            .unwrap()
            .unwrap();
        assert_eq!(first.reason, "FailedToPull");
        assert_eq!(
            first.message,
            "cannot pull image app:latest: no such host on m1; using the image present on the minion"
        );
        assert_eq!(
            after_failed_pull(error.clone(), true, false),
            Ok(None),
            "pods that took the same pull's outcome say nothing more"
        );
        assert_eq!(
            after_failed_pull(error.clone(), false, true),
            Err(error.clone())
        );
        let hung = MinionError::hung("m1", "10.0.0.5", "no answer in 600 s to pull image");
        assert_eq!(after_failed_pull(hung.clone(), true, true), Err(hung));
    }

    #[test]
    fn cpu_shares_follow_kubelet() {
        assert_eq!(cpu_shares(0), None);
        assert_eq!(cpu_shares(1000), Some(1024));
        assert_eq!(cpu_shares(1), Some(2));
    }
}
