//! Minion operations that the reconciler builds on, all through the Docker API. Each records
//! its outcome in the minion's health and fails with an error naming the minion.

use super::{Minion, MinionError, LABEL_MANAGED_BY, MANAGED_BY};
use crate::model::Capacity;
use bollard::models::{ContainerCreateBody, ContainerInspectResponse, ContainerSummary};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, ListContainersOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use futures_util::{Stream, StreamExt, TryStreamExt};
use serde::Serialize;
use std::collections::HashMap;

/// What `get minions` shows about one minion.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MinionStatus {
    pub name: String,
    pub address: String,
    pub health: super::Health,
    pub docker_version: Option<String>,
    /// Configured capacity, with what is missing read from Docker.
    pub capacity: Capacity,
    pub labels: crate::model::Labels,
    /// The project drover acts for; `managed_containers` counts only its containers.
    pub project: String,
    /// Containers of this project there.
    pub managed_containers: Option<usize>,
}

/// What `logs_with` asks Docker for.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    pub follow: bool,
    pub timestamps: bool,
    /// The last N lines only.
    pub tail: Option<u64>,
    /// Unix seconds: output written at or after.
    pub since: Option<i32>,
    /// Unix seconds: output written before.
    pub until: Option<i32>,
}

/// How long an image pull or import may take.
pub(super) const TRANSFER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// A container id as people read it (names pass unchanged).
fn short(id: &str) -> &str {
    if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        &id[..12]
    } else {
        id
    }
}

/// Registry credentials for pulls.
pub type Credentials = bollard::auth::DockerCredentials;

impl Minion {
    /// One Docker call, `what` naming it in errors: bounded by `CALL_TIMEOUT`, noted in the
    /// task's `Trace` while in flight, its outcome recorded in the minion's health.
    pub(crate) async fn call<T>(
        &self,
        what: &str,
        f: impl std::future::Future<Output = Result<T, bollard::errors::Error>>,
    ) -> Result<T, MinionError> {
        self.call_within(what, super::CALL_TIMEOUT, f).await
    }

    /// `call` with its own limit (transfers of images take longer than a call).
    pub(crate) async fn call_within<T>(
        &self,
        what: &str,
        limit: std::time::Duration,
        f: impl std::future::Future<Output = Result<T, bollard::errors::Error>>,
    ) -> Result<T, MinionError> {
        super::Trace::note(Some(what));
        let started = std::time::Instant::now();
        let result = match tokio::time::timeout(limit, f).await {
            Ok(r) => r.map_err(|e| {
                let status = match &e {
                    bollard::errors::Error::DockerResponseServerError { status_code, .. } => {
                        Some(*status_code)
                    }
                    _ => None,
                };
                MinionError {
                    docker_status: status,
                    ..self.error(e)
                }
            }),
            Err(_) => Err(MinionError::hung(
                &self.spec.name,
                &self.spec.address,
                format!("no answer in {} s to {what}", limit.as_secs()),
            )),
        };
        super::Trace::note(None);
        crate::metrics::global().minion_call(
            self.name(),
            "docker",
            started.elapsed(),
            result.is_ok(),
        );
        self.observe(&result);
        result
    }

    pub async fn ping(&self) -> Result<(), MinionError> {
        self.call("ping", self.docker().ping()).await.map(|_| ())
    }

    pub async fn version(&self) -> Result<String, MinionError> {
        let v = self.call("version", self.docker().version()).await?;
        Ok(v.version.unwrap_or_default())
    }

    /// Capacity: configured values first, the rest from Docker's NCPU and MemTotal, asked once
    /// and remembered (a no-op resync then costs one list call per minion).
    pub async fn capacity(&self) -> Result<Capacity, MinionError> {
        let configured = self.spec.capacity;
        if configured.cpu.is_some() && configured.memory.is_some() {
            return Ok(configured);
        }
        if let Some(known) = *self.docker_capacity.lock().expect("capacity") {
            return Ok(known);
        }
        let info = self.call("info", self.docker().info()).await?;
        let capacity = Capacity {
            cpu: configured.cpu.or(info.ncpu.map(|n| n as u64 * 1000)),
            memory: configured.memory.or(info.mem_total.map(|m| m as u64)),
        };
        *self.docker_capacity.lock().expect("capacity") = Some(capacity);
        Ok(capacity)
    }

    /// Containers (running or not) carrying all the given labels.
    pub async fn list_containers(
        &self,
        labels: &[(&str, &str)],
    ) -> Result<Vec<ContainerSummary>, MinionError> {
        let filters: HashMap<&str, Vec<String>> = [(
            "label",
            labels.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        )]
        .into();
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        self.call(
            "list containers",
            self.docker().list_containers(Some(options)),
        )
        .await
    }

    /// Every container drover manages on this minion.
    pub async fn list_managed(&self) -> Result<Vec<ContainerSummary>, MinionError> {
        self.list_containers(&[(LABEL_MANAGED_BY, MANAGED_BY)])
            .await
    }

    /// Creates a container; drover's managed-by label is always added.
    pub async fn create_container(
        &self,
        name: &str,
        mut body: ContainerCreateBody,
    ) -> Result<String, MinionError> {
        body.labels
            .get_or_insert_with(HashMap::new)
            .insert(LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string());
        let options = CreateContainerOptionsBuilder::new().name(name).build();
        let created = self
            .call(
                &format!("create container {name}"),
                self.docker().create_container(Some(options), body),
            )
            .await?;
        Ok(created.id)
    }

    pub async fn start_container(&self, id: &str) -> Result<(), MinionError> {
        self.call(
            &format!("start container {}", short(id)),
            self.docker().start_container(id, None),
        )
        .await
    }

    pub async fn stop_container(&self, id: &str, grace_seconds: i32) -> Result<(), MinionError> {
        let options = StopContainerOptionsBuilder::new().t(grace_seconds).build();
        self.call(
            &format!("stop container {}", short(id)),
            self.docker().stop_container(id, Some(options)),
        )
        .await
    }

    /// Removes a container and its anonymous volumes.
    pub async fn remove_container(&self, id: &str) -> Result<(), MinionError> {
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        self.call(
            &format!("remove container {}", short(id)),
            self.docker().remove_container(id, Some(options)),
        )
        .await
    }

    /// Restarts a container (a failed liveness probe), giving it `grace_seconds` to stop.
    pub async fn restart_container(&self, id: &str, grace_seconds: i32) -> Result<(), MinionError> {
        let options = bollard::query_parameters::RestartContainerOptionsBuilder::new()
            .t(grace_seconds)
            .build();
        self.call(
            &format!("restart container {}", short(id)),
            self.docker().restart_container(id, Some(options)),
        )
        .await
    }

    /// Kills a container (a failed liveness probe under restart policy never).
    pub async fn kill_container(&self, id: &str) -> Result<(), MinionError> {
        self.call(
            &format!("kill container {}", short(id)),
            self.docker()
                .kill_container(id, None::<bollard::query_parameters::KillContainerOptions>),
        )
        .await
    }

    /// A TCP connection to `host:port` as the minion reaches it: over the SSH session
    /// (`direct-tcpip`) for a remote minion, directly for the local one. Probes use it to reach
    /// a pod's address on the minion's bridge.
    pub async fn connect_tcp(
        &self,
        host: &str,
        port: u16,
    ) -> Result<Box<dyn super::Stream>, MinionError> {
        match &self.link {
            Some(link) => Ok(Box::new(link.open_tcp(host, port).await?)),
            None => tokio::net::TcpStream::connect((host, port))
                .await
                .map(|s| Box::new(s) as Box<dyn super::Stream>)
                .map_err(|e| {
                    MinionError::new(
                        &self.spec.name,
                        &self.spec.address,
                        format!("{host}:{port}: {e}"),
                    )
                }),
        }
    }

    pub async fn inspect_container(
        &self,
        id: &str,
    ) -> Result<ContainerInspectResponse, MinionError> {
        self.call(
            &format!("inspect container {}", short(id)),
            self.docker().inspect_container(id, None),
        )
        .await
    }

    pub async fn image_present(&self, image: &str) -> Result<bool, MinionError> {
        Ok(self.inspect_image(image).await?.is_some())
    }

    /// An image by name or id, `None` when this minion has none (an answer, not a failure).
    pub async fn inspect_image(
        &self,
        image: &str,
    ) -> Result<Option<bollard::models::ImageInspect>, MinionError> {
        // An id as people read it; a name as it is.
        let shown = match image.strip_prefix("sha256:") {
            Some(hex) => &hex[..hex.len().min(12)],
            None => image,
        };
        self.call(&format!("inspect image {shown}"), async {
            super::found(self.docker().inspect_image(image).await)
        })
        .await
    }

    /// Pulls an image from its registry, with credentials when given.
    pub async fn pull_image(
        &self,
        image: &str,
        credentials: Option<Credentials>,
    ) -> Result<(), MinionError> {
        let options = CreateImageOptionsBuilder::new().from_image(image).build();
        let stream = self.docker().create_image(Some(options), None, credentials);
        // Said as a pull failure whatever Docker's words, so it backs off as one.
        self.call_within(
            &format!("pull image {image}"),
            TRANSFER_TIMEOUT,
            stream.try_for_each(|_| async { Ok(()) }),
        )
        .await
        .map_err(|mut e| {
            e.message = format!("cannot pull image {image}: {}", e.message);
            e.of_kind(super::FailureKind::ImagePull)
        })
    }

    /// Imports a root filesystem tar (as `docker import`) under `repo:tag`.
    pub async fn import_image(
        &self,
        tar: Vec<u8>,
        repo: &str,
        tag: &str,
    ) -> Result<(), MinionError> {
        let options = CreateImageOptionsBuilder::new()
            .from_src("-")
            .repo(repo)
            .tag(tag)
            .build();
        let body = bollard::body_full(tar.into());
        let stream = self.docker().create_image(Some(options), Some(body), None);
        self.call_within(
            &format!("import image {repo}:{tag}"),
            TRANSFER_TIMEOUT,
            stream.try_for_each(|_| async { Ok(()) }),
        )
        .await
    }

    /// A container's output, stdout and stderr, optionally following it.
    pub fn logs(
        &self,
        id: &str,
        follow: bool,
    ) -> impl Stream<Item = Result<String, MinionError>> + '_ {
        let options = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .follow(follow)
            .build();
        self.docker()
            .logs(id, Some(options))
            .map(move |item| item.map(|o| o.to_string()).map_err(|e| self.error(e)))
    }

    /// A container's output as `drover logs` asks for it: stdout and stderr kept apart
    /// (`LogOutput`), with Docker's own filters (`since`/`until` in Unix seconds, `tail`,
    /// timestamps).
    pub fn logs_with(
        &self,
        id: &str,
        query: &LogQuery,
    ) -> impl Stream<Item = Result<bollard::container::LogOutput, MinionError>> + '_ {
        let mut options = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .follow(query.follow)
            .timestamps(query.timestamps)
            .tail(&query.tail.map_or("all".to_string(), |n| n.to_string()));
        if let Some(since) = query.since {
            options = options.since(since);
        }
        if let Some(until) = query.until {
            options = options.until(until);
        }
        self.docker()
            .logs(id, Some(options.build()))
            .map(move |item| item.map_err(|e| self.error(e)))
    }

    /// Starts a command (no shell: the words go to Docker as a list) in a running container,
    /// attached to its output and, with `stdin`, its input; `tty` asks Docker for a terminal.
    /// Returns the exec's id (for `exec_exit_code`) and the attached streams.
    pub async fn exec_attached(
        &self,
        id: &str,
        command: Vec<String>,
        stdin: bool,
        tty: bool,
    ) -> Result<(String, bollard::exec::StartExecResults), MinionError> {
        let config = bollard::exec::CreateExecOptions {
            cmd: Some(command),
            attach_stdin: Some(stdin),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(tty),
            ..Default::default()
        };
        let exec = self
            .call(
                &format!("create exec in {}", short(id)),
                self.docker().create_exec(id, config),
            )
            .await?;
        let options = bollard::exec::StartExecOptions {
            detach: false,
            tty,
            output_capacity: None,
        };
        let started = self
            .call(
                "start exec",
                self.docker().start_exec(&exec.id, Some(options)),
            )
            .await?;
        Ok((exec.id, started))
    }

    /// The exit code of a finished exec.
    pub async fn exec_exit_code(&self, exec_id: &str) -> Result<Option<i64>, MinionError> {
        let inspected = self
            .call("inspect exec", self.docker().inspect_exec(exec_id))
            .await?;
        Ok(inspected.exit_code)
    }

    /// Runs a command (no shell) in a running container; returns its exit code and output.
    pub async fn exec(&self, id: &str, command: &[&str]) -> Result<(i64, String), MinionError> {
        let config = bollard::exec::CreateExecOptions {
            cmd: Some(command.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        };
        let exec = self
            .call("create exec", self.docker().create_exec(id, config))
            .await?;
        let started = self
            .call("start exec", self.docker().start_exec(&exec.id, None))
            .await?;
        let mut output = String::new();
        if let bollard::exec::StartExecResults::Attached {
            output: mut stream, ..
        } = started
        {
            while let Some(chunk) = stream.next().await {
                output.push_str(&chunk.map_err(|e| self.error(e))?.to_string());
            }
        }
        let inspected = self
            .call("inspect exec", self.docker().inspect_exec(&exec.id))
            .await?;
        Ok((inspected.exit_code.unwrap_or(-1), output))
    }

    /// Probes the minion and reports everything `get minions` shows. Never fails: an
    /// unreachable minion is a status, not an error.
    pub async fn status(&self) -> MinionStatus {
        let version = self.version().await.ok();
        let capacity = match version {
            Some(_) => self.capacity().await.unwrap_or(self.spec.capacity),
            None => self.spec.capacity,
        };
        let managed = match version {
            Some(_) => self
                .list_containers(&[
                    (LABEL_MANAGED_BY, MANAGED_BY),
                    (super::LABEL_PROJECT, self.spec.project.as_str()),
                ])
                .await
                .ok()
                .map(|c| c.len()),
            None => None,
        };
        MinionStatus {
            name: self.spec.name.clone(),
            address: self.spec.address.clone(),
            health: self.health(),
            docker_version: version,
            capacity,
            labels: self.spec.labels.clone(),
            project: self.spec.project.clone(),
            managed_containers: managed,
        }
    }
}
