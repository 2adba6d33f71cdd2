//! The agentless minion driver: each minion's Docker Engine, reached over one persistent SSH
//! session (`ssh.rs`) or the local socket, spoken to with bollard. Everything goes through the
//! Docker API; no shell ever runs on a minion.
//!
//! This module owns connections and health. It makes no decisions about what should run.

pub mod hooks;
mod images;
mod ops;
pub mod pause;
mod pipe;
pub mod pods;
pub mod ssh;
mod ssh_pool;
mod transport;

pub use ops::*;

use crate::config::{Settings, Transport};
use crate::model::{Capacity, DesiredState, Kind, Labels, Object};
use serde::Serialize;
use ssh::{SshLink, SshTarget};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// The label every container drover makes carries; drover never touches a container without it.
pub const LABEL_MANAGED_BY: &str = "io.drover.managed-by";
pub const MANAGED_BY: &str = "drover";
/// The project that made a container or volume: only that project observes, changes or
/// removes it (ARCHITECTURE.md: a project touches only its own).
pub const LABEL_PROJECT: &str = "io.drover.project";

pub const DEFAULT_DOCKER_SOCKET: &str = "/var/run/docker.sock";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one Docker call may take before the minion counts as hung for it (`Minion::call`):
/// a deadlocked engine costs each caller one of these, never more.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Bollard's own limit on waiting for response headers: only a backstop for the few calls that
/// do not go through `Minion::call` (log streams), so `call`'s clearer error comes first.
const BOLLARD_TIMEOUT_SECS: u64 = 60;

/// Docker's 404 as `None`: what was named is not there, an answer rather than a failure.
pub fn found<T>(
    answer: Result<T, bollard::errors::Error>,
) -> Result<Option<T>, bollard::errors::Error> {
    match answer {
        Ok(t) => Ok(Some(t)),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// An error on one minion; always names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MinionError {
    pub minion: String,
    pub address: String,
    pub message: String,
    /// The minion did not answer in time (a call timed out, or a deadline passed while waiting
    /// on it): the executor tries nothing more there this round.
    pub timed_out: bool,
    /// Not tried: the run was interrupted before it began (`MinionError::not_started`).
    pub not_started: bool,
    /// The HTTP status Docker answered with, when it answered with an error: callers decide
    /// by it (`not_found`, `conflict`, `not_modified`), not by Docker's words.
    pub docker_status: Option<u16>,
    /// What failed, where the reconciler decides by it (back-off reasons, events).
    pub kind: Option<FailureKind>,
}

/// A failure to make a pod that is told apart from the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The image could not be pulled.
    ImagePull,
    /// The image is not on the minion and its `imagePullPolicy` is `PullNever`.
    ImageNeverPull,
    /// A container's postStart hook failed (the container was killed).
    PostStartHook,
}

impl MinionError {
    pub fn new(minion: &str, address: &str, message: impl Into<String>) -> MinionError {
        MinionError {
            minion: minion.to_string(),
            address: address.to_string(),
            message: message.into(),
            timed_out: false,
            not_started: false,
            docker_status: None,
            kind: None,
        }
    }

    /// This error, said to be of `kind`.
    pub fn of_kind(self, kind: FailureKind) -> MinionError {
        MinionError {
            kind: Some(kind),
            ..self
        }
    }

    /// Docker said 404: what was named (a container, an image) is not there.
    pub fn not_found(&self) -> bool {
        self.docker_status == Some(404)
    }

    /// Docker said 409: the object is in a state that refuses the call (a name in use, a
    /// removal already under way, a container not running).
    pub fn conflict(&self) -> bool {
        self.docker_status == Some(409)
    }

    /// Docker said 304: nothing to do (a container already started or stopped). bollard takes
    /// most 304 answers for success, so this is a backstop.
    pub fn not_modified(&self) -> bool {
        self.docker_status == Some(304)
    }

    /// An action not begun because the run was interrupted (SIGINT, SIGTERM).
    pub fn not_started(minion: &str, address: &str) -> MinionError {
        MinionError {
            not_started: true,
            ..MinionError::new(minion, address, "not started: interrupted")
        }
    }

    /// The minion did not answer in time.
    pub fn hung(minion: &str, address: &str, message: impl Into<String>) -> MinionError {
        MinionError {
            timed_out: true,
            ..MinionError::new(minion, address, message)
        }
    }
}

tokio::task_local! {
    static WAITING_ON: Trace;
}

/// What a task is waiting on: `Minion::call` notes each call it makes here, so whoever cuts
/// the task off at a deadline (the executor, the observer) can say which call hung.
#[derive(Clone, Default)]
pub struct Trace(Arc<Mutex<Option<(String, std::time::Instant)>>>);

impl Trace {
    /// Runs `f` with its calls noted in this trace.
    pub async fn run<F: std::future::Future>(&self, f: F) -> F::Output {
        WAITING_ON.scope(self.clone(), f).await
    }

    /// The call in flight and how long it has waited.
    pub fn waiting_on(&self) -> Option<(String, Duration)> {
        let slot = self.0.lock().expect("trace");
        slot.as_ref()
            .map(|(what, since)| (what.clone(), since.elapsed()))
    }

    fn note(what: Option<&str>) {
        let _ = WAITING_ON.try_with(|t| {
            *t.0.lock().expect("trace") = what.map(|w| (w.to_string(), std::time::Instant::now()));
        });
    }
}

impl std::fmt::Display for MinionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "minion {} ({}): {}",
            self.minion, self.address, self.message
        )
    }
}

impl std::error::Error for MinionError {}

/// How to reach a minion's Docker Engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportSpec {
    Local,
    Ssh(SshTarget),
}

/// One minion as configured: config file and Minion manifests merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MinionSpec {
    pub name: String,
    /// What people call its address: the SSH host, or `local`.
    pub address: String,
    pub transport: TransportSpec,
    pub docker_socket: String,
    /// Where pod host ports are published and reached.
    pub publish_address: String,
    pub labels: Labels,
    /// Configured capacity; missing parts are read from Docker.
    pub capacity: Capacity,
    /// The project this drover acts for: it sees and touches only that project's containers.
    pub project: String,
    /// Cordoned in git: `unschedulable` in drover.toml or on its Minion manifest.
    pub unschedulable: bool,
}

/// The minions drover drives: `[[minions]]` of the config, plus Minion manifests of the source
/// merged in by id (a manifest whose id is a configured minion's name or address adds labels
/// and capacity to it; any other is a new SSH minion at that address with the `[ssh]`
/// defaults). No minions at all: one local minion on the local Docker socket.
pub fn minion_specs(
    settings: &Settings,
    project: &str,
    desired: Option<&DesiredState>,
) -> Result<Vec<MinionSpec>, String> {
    let ssh = SshDefaults {
        settings,
        known_hosts: settings.known_hosts(),
    };
    let mut specs = Vec::new();
    for m in &settings.config.minions {
        // The name goes into container labels and store file names.
        crate::manifest::check_name(&m.name).map_err(|e| format!("minions: minion name: {e}"))?;
        if specs.iter().any(|s: &MinionSpec| s.name == m.name) {
            return Err(format!("minions: duplicate minion name `{}`", m.name));
        }
        specs.push(configured_minion(m, &ssh, project)?);
    }
    if let Some(desired) = desired {
        merge_minion_objects(&mut specs, desired, &ssh, project);
    }
    if specs.is_empty() {
        specs.push(MinionSpec {
            name: "local".into(),
            address: "local".into(),
            transport: TransportSpec::Local,
            docker_socket: DEFAULT_DOCKER_SOCKET.into(),
            publish_address: "127.0.0.1".into(),
            labels: Labels::new(),
            capacity: Capacity::default(),
            project: project.to_string(),
            unschedulable: false,
        });
    }
    Ok(specs)
}

/// The `[ssh]` defaults a minion's own settings fall back to.
struct SshDefaults<'s> {
    settings: &'s Settings,
    known_hosts: std::path::PathBuf,
}

impl SshDefaults<'_> {
    /// Where and as whom to reach minion `name` at `host`, its own settings before the
    /// defaults.
    fn target(
        &self,
        name: &str,
        host: &str,
        port: Option<u16>,
        user: Option<&str>,
        identity: Option<&str>,
    ) -> SshTarget {
        let ssh = &self.settings.config.ssh;
        SshTarget {
            minion: name.to_string(),
            host: host.to_string(),
            port: port.or(ssh.port).unwrap_or(22),
            user: user.or(ssh.user.as_deref()).unwrap_or("root").to_string(),
            identity: identity
                .or(ssh.identity.as_deref())
                .map(|p| self.settings.resolve(p)),
            known_hosts: self.known_hosts.clone(),
            connect_timeout: CONNECT_TIMEOUT,
        }
    }
}

/// A `[[minions]]` entry of the config as a spec (its name already checked).
fn configured_minion(
    m: &crate::config::MinionConfig,
    ssh: &SshDefaults,
    project: &str,
) -> Result<MinionSpec, String> {
    let (transport, address) = match m.transport {
        Transport::Local => (TransportSpec::Local, "local".to_string()),
        Transport::Ssh => {
            let address = m.address.clone().ok_or_else(|| {
                format!(
                    "minions: minion `{}` needs an `address` (or transport = \"local\")",
                    m.name
                )
            })?;
            let target = ssh.target(
                &m.name,
                &address,
                m.port,
                m.user.as_deref(),
                m.identity.as_deref(),
            );
            (TransportSpec::Ssh(target), address)
        }
    };
    let publish_address = m
        .publish_address
        .clone()
        .unwrap_or_else(|| match m.transport {
            Transport::Local => "127.0.0.1".to_string(),
            Transport::Ssh => address.clone(),
        });
    let docker_socket = m
        .docker_socket
        .clone()
        .unwrap_or_else(|| DEFAULT_DOCKER_SOCKET.to_string());
    if !docker_socket.starts_with('/') || docker_socket.contains(['\'', '\n']) {
        return Err(format!(
            "minions: minion `{}`: docker_socket `{docker_socket}` must be an absolute path without quotes",
            m.name
        ));
    }
    Ok(MinionSpec {
        name: m.name.clone(),
        address,
        transport,
        docker_socket,
        publish_address,
        labels: m.labels.clone(),
        capacity: m
            .capacity
            .map(|c| Capacity {
                cpu: c.cpu,
                memory: c.memory,
            })
            .unwrap_or_default(),
        project: project.to_string(),
        unschedulable: m.unschedulable,
    })
}

/// Merges the source's Minion objects into `specs` by id: one whose id is a configured
/// minion's name or address adds labels and capacity to it; any other is a new SSH minion at
/// that address with the `[ssh]` defaults.
fn merge_minion_objects(
    specs: &mut Vec<MinionSpec>,
    desired: &DesiredState,
    ssh: &SshDefaults,
    project: &str,
) {
    for (key, (object, _)) in &desired.objects {
        let Object::Minion(minion) = object else {
            continue;
        };
        debug_assert_eq!(key.kind, Kind::Minion);
        match specs
            .iter_mut()
            .find(|s| s.name == minion.id || s.address == minion.id)
        {
            Some(spec) => {
                spec.labels.extend(minion.labels.clone());
                let cap = minion.resources.capacity;
                spec.capacity.cpu = spec.capacity.cpu.or(cap.cpu);
                spec.capacity.memory = spec.capacity.memory.or(cap.memory);
                spec.unschedulable |= minion.unschedulable;
            }
            None => specs.push(MinionSpec {
                name: minion.id.clone(),
                address: minion.id.clone(),
                transport: TransportSpec::Ssh(ssh.target(&minion.id, &minion.id, None, None, None)),
                docker_socket: DEFAULT_DOCKER_SOCKET.to_string(),
                publish_address: minion.id.clone(),
                labels: minion.labels.clone(),
                capacity: minion.resources.capacity,
                project: project.to_string(),
                unschedulable: minion.unschedulable,
            }),
        }
    }
}

/// Health of a minion as last observed (NodeReachable / NodeReady of v1beta1).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// The SSH session is up (always true for a local minion).
    pub reachable: bool,
    /// Docker answers.
    pub ready: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<SystemTime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// An error's text without the HTTP client's wrapper phrases, which say nothing to a user.
fn plain(text: &str) -> &str {
    let mut text = text.trim();
    for wrapper in [
        "Error in the hyper legacy client:",
        "error trying to connect:",
    ] {
        text = text.strip_prefix(wrapper).unwrap_or(text).trim_start();
    }
    // hyper-util's "client error (Connect)" / "(SendRequest)": the kind, not the cause.
    if text.starts_with("client error (") {
        return match text.find("): ") {
            Some(i) => &text[i + 3..],
            None => "",
        };
    }
    text
}

/// Something an operation on a minion did that its caller should tell as an event, though the
/// operation succeeded (an image that could not be pulled, run as the minion has it; a hook that
/// failed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The event's reason, as Kubernetes named it (`FailedToPull`, `FailedPreStopHook`, ...).
    pub reason: &'static str,
    pub message: String,
}

/// The last pull of one image on a minion (`PullAlways`): pods made within
/// `pods::PULL_WINDOW` of it take its outcome instead of pulling again.
#[derive(Debug, Clone)]
pub(crate) struct PullAttempt {
    pub at: std::time::Instant,
    pub result: Result<(), MinionError>,
}

/// A byte stream to something on a minion.
pub trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

/// A connected minion: a Docker client over its transport, and its health.
pub struct Minion {
    pub spec: MinionSpec,
    docker: bollard::Docker,
    link: Option<Arc<SshLink>>,
    health: Mutex<Health>,
    docker_capacity: Mutex<Option<Capacity>>,
    /// One import of the pause image at a time: concurrent pods on a fresh engine would each
    /// import it (and leave untagged copies behind).
    pub(crate) pause_import: tokio::sync::Mutex<()>,
    /// Per image, its last pull here: one pull of an image at a time (the others wait for it
    /// and take its outcome), and none again within `pods::PULL_WINDOW`.
    pub(crate) pulls:
        Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<Option<PullAttempt>>>>>,
}

impl Minion {
    /// Builds the client; nothing goes over the network until the first call.
    pub fn new(spec: MinionSpec) -> Result<Minion, MinionError> {
        let err = |m: String| MinionError::new(&spec.name, &spec.address, m);
        let (docker, link) = match &spec.transport {
            // A socket that is not there (yet) makes a minion that does not answer until it
            // is, as one whose Docker stopped: not a minion that cannot be had at all.
            TransportSpec::Local if !std::path::Path::new(&spec.docker_socket).exists() => (
                transport::docker_over_later_socket(&spec.docker_socket, BOLLARD_TIMEOUT_SECS)
                    .map_err(|e| err(e.to_string()))?,
                None,
            ),
            TransportSpec::Local => (
                bollard::Docker::connect_with_unix(
                    &spec.docker_socket,
                    BOLLARD_TIMEOUT_SECS,
                    bollard::API_DEFAULT_VERSION,
                )
                .map_err(|e| err(e.to_string()))?,
                None,
            ),
            TransportSpec::Ssh(target) => {
                let link = Arc::new(SshLink::new(target.clone()));
                let docker = transport::docker_over_ssh(
                    link.clone(),
                    &spec.docker_socket,
                    BOLLARD_TIMEOUT_SECS,
                )
                .map_err(|e| err(e.to_string()))?;
                (docker, Some(link))
            }
        };
        Ok(Minion {
            spec,
            docker,
            link,
            health: Mutex::new(Health::default()),
            docker_capacity: Mutex::new(None),
            pause_import: tokio::sync::Mutex::new(()),
            pulls: Mutex::new(Default::default()),
        })
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn docker(&self) -> &bollard::Docker {
        &self.docker
    }

    /// Connects the SSH session if it is not up (a local minion has nothing to connect).
    /// Handshakes are paced process-wide, so with many minions this may wait its turn.
    pub async fn connect(&self) -> Result<(), MinionError> {
        match &self.link {
            Some(link) => link.connect().await,
            None => Ok(()),
        }
    }

    /// The error for a task cut off at a deadline: the call it was waiting on, if any.
    pub fn deadline_error(&self, trace: &Trace) -> MinionError {
        let message = match trace.waiting_on() {
            Some((what, waited)) => format!(
                "no answer in {:.1} s to {what}; the deadline passed",
                waited.as_secs_f64()
            ),
            None => "not tried: the deadline passed".to_string(),
        };
        MinionError::hung(&self.spec.name, &self.spec.address, message)
    }

    pub fn health(&self) -> Health {
        self.health.lock().expect("health").clone()
    }

    /// Turns a bollard error into one that names this minion and, for SSH failures, says
    /// what the link saw rather than a vague "SendRequest".
    pub fn error(&self, e: impl std::error::Error) -> MinionError {
        // One plain line: the chain's own words without the HTTP client's wrappers ("Error in
        // the hyper legacy client: client error (Connect)").
        let mut parts: Vec<String> = Vec::new();
        let mut connect = false;
        let mut next: Option<&dyn std::error::Error> = Some(&e);
        while let Some(s) = next {
            let text = s.to_string();
            connect |= text.contains("client error (Connect)");
            let text = plain(&text);
            if !text.is_empty() && !parts.iter().any(|p| p.contains(text)) {
                parts.push(text.to_string());
            }
            next = s.source();
        }
        let mut message = parts.join(": ");
        if connect && self.link.is_none() {
            message = format!("Docker socket {}: {message}", self.spec.docker_socket);
        }
        // A MinionError from the connector already names the minion: keep its message only.
        let prefix = format!("minion {} ({}): ", self.spec.name, self.spec.address);
        let mut message = message.replace(&prefix, "");
        if let Some(diag) = self.link.as_ref().and_then(|l| l.take_remote_diagnostic()) {
            message = format!("{message}; {diag}");
        }
        MinionError::new(&self.spec.name, &self.spec.address, message)
    }

    /// Records the outcome of a call in the health state.
    pub(crate) fn observe<T>(&self, result: &Result<T, MinionError>) {
        let mut h = self.health.lock().expect("health");
        let reachable = self.link.as_ref().is_none_or(|l| l.is_connected());
        match result {
            Ok(_) => {
                h.reachable = true;
                h.ready = true;
                h.last_seen = Some(SystemTime::now());
                h.last_error = None;
            }
            Err(e) => {
                h.reachable = reachable;
                h.ready = false;
                h.last_error = Some(e.message.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn http_client_wrappers_are_not_shown() {
        use super::plain;
        assert_eq!(
            plain("Error in the hyper legacy client: client error (Connect)"),
            ""
        );
        assert_eq!(
            plain("client error (Connect): Connection refused (os error 111)"),
            "Connection refused (os error 111)"
        );
        assert_eq!(
            plain("error trying to connect: no such file"),
            "no such file"
        );
        assert_eq!(
            plain("Docker responded with status code 404"),
            "Docker responded with status code 404"
        );
    }
}
