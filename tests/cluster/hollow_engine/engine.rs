//! One hollow Docker Engine: its containers, images, volumes and execs in memory, every change
//! told as Docker tells it (events), and the faults it can be given. Nothing runs: a started
//! container is running at once (a fake pid, an address on a fake bridge, its published ports
//! given host ports) and stays running until it is stopped, killed or removed.
//!
//! What it answers is rendered as Docker Engine 20.10 (API 1.41) renders it, field for field,
//! checked against a real 20.10 engine (`curl --unix-socket /var/run/docker.sock`).

use crate::util::{self, hex, intern, now_nanos, rfc3339_nano, rfc3339_secs, Filters, Id};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{broadcast, watch};

pub const ENGINE_VERSION: &str = "20.10.24";
/// The API version this engine speaks, the highest it accepts unless told otherwise.
pub const API_VERSION: &str = "1.41";
pub const MIN_API_VERSION: &str = "1.12";
/// How many past events an engine keeps for `since` (Docker keeps 256).
const EVENTS_KEPT: usize = 256;
/// Finished execs are forgotten after this long, as Docker's exec store does.
const EXEC_KEPT_NANOS: i64 = 5 * 60 * 1_000_000_000;
/// A hollow host's size, as `info` says it (drover reads capacity from NCPU and MemTotal).
pub const NCPU: u64 = 8;
pub const MEM_TOTAL: u64 = 32 << 30;
const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// An answer other than success: the status and Docker's message.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

type R<T> = Result<T, ApiError>;

fn no_such_container(r: &str) -> ApiError {
    ApiError::new(404, format!("No such container: {r}"))
}

/// A fault given to one engine from the control socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// Connections are accepted, requests never answered (until healed).
    Hang,
    /// Each request answered after this many milliseconds.
    Slow(u64),
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::None => write!(f, "none"),
            Fault::Hang => write!(f, "hang"),
            Fault::Slow(ms) => write!(f, "slow {ms}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }
}

type PortKey = (u16, Proto);

fn parse_port(spec: &str) -> R<PortKey> {
    let (port, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    let proto = match proto.to_ascii_lowercase().as_str() {
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        "sctp" => Proto::Sctp,
        _ => return Err(ApiError::new(400, format!("invalid proto: {proto}"))),
    };
    let port: u16 = port
        .parse()
        .map_err(|_| ApiError::new(400, format!("invalid port specification: \"{spec}\"")))?;
    Ok((port, proto))
}

fn port_name(p: PortKey) -> String {
    format!("{}/{}", p.0, p.1.name())
}

/// What a container's events share with it: its name, image and labels.
pub struct Meta {
    pub name: Arc<str>,
    pub image: Arc<str>,
    /// Sorted by key.
    pub labels: Box<[(Arc<str>, Arc<str>)]>,
}

impl Meta {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .binary_search_by(|(k, _)| (**k).cmp(key))
            .ok()
            .map(|i| &*self.labels[i].1)
    }
}

struct Binding {
    host_ip: Arc<str>,
    host_port: Arc<str>,
}

/// One port's bindings as the create asked for them.
type PortBindings = (PortKey, Box<[Binding]>);

/// The parts of a create's HostConfig that inspect gives back; the rest are Docker's defaults.
struct HostCfg {
    network_mode: Arc<str>,
    port_bindings: Option<Box<[PortBindings]>>,
    binds: Option<Box<[Arc<str>]>>,
    restart_name: Arc<str>,
    restart_max: i64,
    cpu_shares: i64,
    memory: i64,
    memory_swap: i64,
    privileged: bool,
    log_type: Arc<str>,
}

struct Published {
    port: PortKey,
    host_ip: Arc<str>,
    host_port: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Created,
    Running,
    Exited,
}

impl Status {
    fn name(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Exited => "exited",
        }
    }
}

struct Container {
    id: Id,
    meta: Arc<Meta>,
    image_id: Id,
    created: i64,
    entrypoint: Option<Box<[Arc<str>]>>,
    cmd: Option<Box<[Arc<str>]>>,
    env: Option<Box<[Arc<str>]>>,
    working_dir: Arc<str>,
    exposed: Box<[PortKey]>,
    host: Box<HostCfg>,
    status: Status,
    pid: u32,
    exit_code: i32,
    started_at: i64,
    finished_at: i64,
    /// Set once started: Docker keeps its sandbox after a stop.
    sandbox: bool,
    /// Its address on the bridge (an offset in 172.17.0.0/16) while it runs.
    ip: Option<u16>,
    published: Box<[Published]>,
}

impl Container {
    fn id_hex(&self) -> String {
        hex(&self.id)
    }

    /// The container whose network namespace it joins (`container:<id or name>`).
    fn joins(&self) -> Option<&str> {
        self.host.network_mode.strip_prefix("container:")
    }

    fn on_bridge(&self) -> bool {
        matches!(&*self.host.network_mode, "default" | "bridge" | "")
    }

    fn path_args(&self) -> Vec<&str> {
        self.entrypoint
            .iter()
            .flatten()
            .chain(self.cmd.iter().flatten())
            .map(|s| &**s)
            .collect()
    }

    fn mounts(&self) -> Vec<Value> {
        self.host
            .binds
            .iter()
            .flatten()
            .filter_map(|b| {
                let mut parts = b.split(':');
                let source = parts.next()?;
                let destination = parts.next()?;
                let mode = parts.next().unwrap_or("");
                let rw = !mode.split(',').any(|m| m == "ro");
                Some(if source.starts_with('/') {
                    json!({"Type": "bind", "Source": source, "Destination": destination,
                        "Mode": mode, "RW": rw, "Propagation": "rprivate"})
                } else {
                    json!({"Type": "volume", "Name": source,
                        "Source": format!("/var/lib/docker/volumes/{source}/_data"),
                        "Destination": destination, "Driver": "local",
                        "Mode": if mode.is_empty() { "z" } else { mode },
                        "RW": rw, "Propagation": ""})
                })
            })
            .collect()
    }

    /// Named volumes it mounts.
    fn volume_names(&self) -> impl Iterator<Item = &str> {
        self.host.binds.iter().flatten().filter_map(|b| {
            let source = b.split(':').next()?;
            (!source.starts_with('/') && b.contains(':')).then_some(source)
        })
    }

    /// `docker ps` STATUS.
    fn status_text(&self, now: i64) -> String {
        match self.status {
            Status::Created => "Created".into(),
            Status::Running => format!("Up {}", util::human_duration(now - self.started_at)),
            Status::Exited => format!(
                "Exited ({}) {} ago",
                self.exit_code,
                util::human_duration(now - self.finished_at)
            ),
        }
    }
}

fn ip_text(offset: u16) -> String {
    format!("172.17.{}.{}", offset >> 8, offset & 0xff)
}

fn mac_text(offset: u16) -> String {
    format!("02:42:ac:11:{:02x}:{:02x}", offset >> 8, offset & 0xff)
}

pub struct Image {
    id: Id,
    tags: Vec<String>,
    digests: Vec<String>,
    created: i64,
    size: i64,
    layers: Vec<String>,
    comment: String,
    cmd: Option<Vec<String>>,
    entrypoint: Option<Vec<String>>,
    env: Option<Vec<String>>,
    labels: Option<BTreeMap<String, String>>,
    working_dir: String,
    tagged_at: i64,
}

struct Volume {
    labels: Option<BTreeMap<String, String>>,
    options: Option<BTreeMap<String, String>>,
    created: i64,
}

struct Exec {
    container: Id,
    cmd: Box<[String]>,
    tty: bool,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    privileged: bool,
    started: bool,
    exit_code: Option<i32>,
    pid: u32,
    finished: i64,
}

/// One event, as `GET /events` tells it.
pub struct Event {
    pub time: i64,
    pub kind: EventKind,
}

pub enum EventKind {
    Container {
        id: Id,
        action: Box<str>,
        meta: Arc<Meta>,
        extra: Vec<(&'static str, String)>,
    },
    Image {
        action: &'static str,
        id: String,
        name: String,
    },
    Volume {
        action: &'static str,
        name: String,
    },
}

impl Event {
    fn kind_name(&self) -> &'static str {
        match self.kind {
            EventKind::Container { .. } => "container",
            EventKind::Image { .. } => "image",
            EventKind::Volume { .. } => "volume",
        }
    }

    fn action(&self) -> &str {
        match &self.kind {
            EventKind::Container { action, .. } => action,
            EventKind::Image { action, .. } | EventKind::Volume { action, .. } => action,
        }
    }

    fn actor_id(&self) -> String {
        match &self.kind {
            EventKind::Container { id, .. } => hex(id),
            EventKind::Image { id, .. } => id.clone(),
            EventKind::Volume { name, .. } => name.clone(),
        }
    }

    /// The actor's attributes, sorted by key (Go writes a map so).
    fn attributes(&self) -> BTreeMap<&str, String> {
        let mut a = BTreeMap::new();
        match &self.kind {
            EventKind::Container { meta, extra, .. } => {
                for (k, v) in meta.labels.iter() {
                    a.insert(&**k, v.to_string());
                }
                a.insert("image", meta.image.to_string());
                a.insert("name", meta.name.to_string());
                for (k, v) in extra {
                    a.insert(*k, v.clone());
                }
            }
            EventKind::Image { name, .. } => {
                a.insert("name", name.clone());
            }
            EventKind::Volume { .. } => {
                a.insert("driver", "local".into());
            }
        }
        a
    }

    /// Docker's `events.Filter.Include` for the filters drover and the CLI use.
    pub fn matches(&self, filters: &Filters) -> bool {
        let attributes = self.attributes();
        let id = self.actor_id();
        let name = attributes.get("name").map(String::as_str).unwrap_or("");
        let fuzzy = |values: &[String], source: &str| {
            values
                .iter()
                .any(|v| source == v || source.starts_with(v.as_str()))
        };
        filters.iter().all(|(key, values)| match key.as_str() {
            "type" => values.iter().any(|v| v == self.kind_name()),
            "event" => {
                let action = self.action();
                let base = action.split(':').next().unwrap_or(action);
                values.iter().any(|v| v == action || v == base)
            }
            "label" => util::labels_match(values, |k| attributes.get(k).map(String::as_str)),
            "container" | "image" | "volume" | "network" | "plugin" | "service" | "node"
            | "secret" | "config" => {
                key == self.kind_name() && (fuzzy(values, &id) || fuzzy(values, name))
                    || (key == "image" && attributes.get("image").is_some_and(|i| fuzzy(values, i)))
            }
            "scope" => values.iter().any(|v| v == "local"),
            _ => true,
        })
    }

    pub fn to_json(&self) -> Value {
        let attributes: Map<String, Value> = self
            .attributes()
            .into_iter()
            .map(|(k, v)| (k.to_string(), Value::String(v)))
            .collect();
        let id = self.actor_id();
        let mut m = Map::new();
        match &self.kind {
            EventKind::Container { meta, .. } => {
                m.insert("status".into(), self.action().into());
                m.insert("id".into(), id.clone().into());
                m.insert("from".into(), meta.image.to_string().into());
            }
            EventKind::Image { .. } => {
                m.insert("status".into(), self.action().into());
                m.insert("id".into(), id.clone().into());
            }
            EventKind::Volume { .. } => {}
        }
        m.insert("Type".into(), self.kind_name().into());
        m.insert("Action".into(), self.action().into());
        m.insert(
            "Actor".into(),
            json!({"ID": id, "Attributes": Value::Object(attributes)}),
        );
        m.insert("scope".into(), "local".into());
        m.insert("time".into(), (self.time / 1_000_000_000).into());
        m.insert("timeNano".into(), self.time.into());
        Value::Object(m)
    }
}

/// Everything one engine holds.
pub struct State {
    containers: HashMap<Id, Container>,
    names: HashMap<Arc<str>, Id>,
    images: Vec<Image>,
    volumes: BTreeMap<String, Volume>,
    execs: HashMap<Id, Exec>,
    ring: VecDeque<Arc<Event>>,
    /// Made when someone follows the events, dropped when nobody does any more: a channel's
    /// slots cost 40 kB, and most of a thousand engines have no follower most of the time.
    events: Option<broadcast::Sender<Arc<Event>>>,
    next_pid: u32,
    ip_cursor: u16,
    ips: HashSet<u16>,
    port_cursor: u16,
    ports: HashSet<(u16, Proto)>,
    /// Bumped by each `lose`: the logs of containers that vanished end.
    pub generation: u64,
}

pub struct Engine {
    pub index: usize,
    pub name: String,
    state: Mutex<State>,
    pub fault: watch::Sender<Fault>,
    /// Bumped by `lose`: every open connection to the engine is dropped, as by a reboot.
    pub epoch: watch::Sender<u64>,
    pub connections: AtomicUsize,
    pub requests: AtomicU64,
}

/// What `lose` and `status` report.
pub struct Counts {
    pub containers: usize,
    pub running: usize,
    pub images: usize,
    pub volumes: usize,
}

impl Engine {
    pub fn new(index: usize) -> Engine {
        Engine {
            index,
            name: format!("m{index}"),
            state: Mutex::new(State {
                containers: HashMap::new(),
                names: HashMap::new(),
                images: Vec::new(),
                volumes: BTreeMap::new(),
                execs: HashMap::new(),
                ring: VecDeque::new(),
                events: None,
                next_pid: 1000,
                ip_cursor: 1,
                ips: HashSet::new(),
                port_cursor: 32767,
                ports: HashSet::new(),
                generation: 0,
            }),
            fault: watch::channel(Fault::None).0,
            epoch: watch::channel(0).0,
            connections: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("engine state")
    }

    fn bridge_id(&self) -> String {
        hex(&util::sha256(
            format!("hollow bridge {}", self.index).as_bytes(),
        ))
    }

    /// The host lost its state (a reboot with its disks wiped): every container, exec and
    /// volume goes, with no event (nobody was there to tell it), and so does the event history.
    pub fn lose(&self) -> Counts {
        let mut s = self.lock();
        let counts = s.counts();
        s.containers.clear();
        s.names.clear();
        s.execs.clear();
        s.volumes.clear();
        s.ring.clear();
        s.ips.clear();
        s.ports.clear();
        // A fresh daemon hands out addresses and ports from the start of its ranges again.
        s.ip_cursor = 1;
        s.port_cursor = 32767;
        s.generation += 1;
        drop(s);
        self.epoch.send_modify(|e| *e += 1);
        counts
    }

    pub fn counts(&self) -> Counts {
        self.lock().counts()
    }

    pub fn subscribe(
        &self,
        since: Option<i64>,
        filters: &Filters,
    ) -> (Vec<Arc<Event>>, broadcast::Receiver<Arc<Event>>) {
        let mut s = self.lock();
        let past = match since {
            Some(since) => s
                .ring
                .iter()
                .filter(|e| e.time >= since && e.matches(filters))
                .cloned()
                .collect(),
            None => Vec::new(),
        };
        let rx = s
            .events
            .get_or_insert_with(|| broadcast::channel(1024).0)
            .subscribe();
        (past, rx)
    }

    // ---- system

    pub fn version_json(&self) -> Value {
        json!({
            "Platform": {"Name": "drover hollow engine"},
            "Components": [{"Name": "Engine", "Version": ENGINE_VERSION, "Details": {
                "ApiVersion": API_VERSION, "Arch": "amd64", "BuildTime": "2023-04-04T00:00:00.000000000+00:00",
                "Experimental": "false", "GitCommit": "hollow", "GoVersion": "go1.19.8",
                "KernelVersion": kernel(), "MinAPIVersion": MIN_API_VERSION, "Os": "linux"}}],
            "Version": ENGINE_VERSION,
            "ApiVersion": API_VERSION,
            "MinAPIVersion": MIN_API_VERSION,
            "GitCommit": "hollow",
            "GoVersion": "go1.19.8",
            "Os": "linux",
            "Arch": "amd64",
            "KernelVersion": kernel(),
            "BuildTime": "2023-04-04T00:00:00.000000000+00:00"
        })
    }

    pub fn info_json(&self) -> Value {
        let s = self.lock();
        let c = s.counts();
        let paused = 0;
        json!({
            "ID": format!("HOLLOW:{:04}:{}", self.index, &self.bridge_id()[..8].to_uppercase()),
            "Containers": c.containers,
            "ContainersRunning": c.running,
            "ContainersPaused": paused,
            "ContainersStopped": c.containers - c.running,
            "Images": c.images,
            "Driver": "overlay2",
            "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"],
                ["Native Overlay Diff", "true"], ["userxattr", "false"]],
            "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "ipvlan", "macvlan", "null", "overlay"],
                "Authorization": null, "Log": ["awslogs", "fluentd", "gcplogs", "gelf", "journald",
                "json-file", "local", "logentries", "splunk", "syslog"]},
            "MemoryLimit": true, "SwapLimit": true, "KernelMemory": true, "KernelMemoryTCP": true,
            "CpuCfsPeriod": true, "CpuCfsQuota": true, "CPUShares": true, "CPUSet": true,
            "PidsLimit": true, "IPv4Forwarding": true, "BridgeNfIptables": true,
            "BridgeNfIp6tables": true, "Debug": false, "NFd": 25, "OomKillDisable": true,
            "NGoroutines": 40, "SystemTime": rfc3339_nano(now_nanos()), "LoggingDriver": "json-file",
            "CgroupDriver": "cgroupfs", "CgroupVersion": "1", "NEventsListener": s.events.as_ref().map_or(0, |e| e.receiver_count()),
            "KernelVersion": kernel(), "OperatingSystem": "Debian GNU/Linux 12 (bookworm)",
            "OSVersion": "12", "OSType": "linux", "Architecture": "x86_64",
            "IndexServerAddress": "https://index.docker.io/v1/",
            "RegistryConfig": {"AllowNondistributableArtifactsCIDRs": [],
                "AllowNondistributableArtifactsHostnames": [], "InsecureRegistryCIDRs": ["127.0.0.0/8"],
                "IndexConfigs": {"docker.io": {"Name": "docker.io", "Mirrors": [], "Secure": true, "Official": true}},
                "Mirrors": []},
            "NCPU": NCPU, "MemTotal": MEM_TOTAL, "GenericResources": null,
            "DockerRootDir": "/var/lib/docker", "HttpProxy": "", "HttpsProxy": "", "NoProxy": "",
            "Name": format!("hollow-{}", self.name), "Labels": [], "ExperimentalBuild": false,
            "ServerVersion": ENGINE_VERSION,
            "Runtimes": {"io.containerd.runc.v2": {"path": "runc"}, "io.containerd.runtime.v1.linux": {"path": "runc"}, "runc": {"path": "runc"}},
            "DefaultRuntime": "runc",
            "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": false, "Error": "", "RemoteManagers": null},
            "LiveRestoreEnabled": false, "Isolation": "", "InitBinary": "docker-init",
            "ContainerdCommit": {"ID": "hollow", "Expected": "hollow"},
            "RuncCommit": {"ID": "hollow", "Expected": "hollow"},
            "InitCommit": {"ID": "", "Expected": ""},
            "SecurityOptions": ["name=seccomp,profile=default"],
            "Warnings": null
        })
    }

    // ---- containers

    pub fn create_container(&self, name: Option<&str>, body: &Value) -> R<Value> {
        let mut s = self.lock();
        let id = s.create(self.index, name, body)?;
        Ok(json!({"Id": hex(&id), "Warnings": []}))
    }

    /// Ok(false): it was running already (304).
    pub fn start(&self, r: &str) -> R<bool> {
        let mut s = self.lock();
        let id = s.find(r)?;
        s.start(id)
    }

    pub fn stop(&self, r: &str, t: Option<i64>) -> R<bool> {
        let mut s = self.lock();
        let id = s.find(r)?;
        Ok(s.stop(id, t.unwrap_or(10)))
    }

    pub fn restart(&self, r: &str, t: Option<i64>) -> R<()> {
        let mut s = self.lock();
        let id = s.find(r)?;
        s.stop(id, t.unwrap_or(10));
        s.start(id).map_err(|e| {
            ApiError::new(500, format!("Cannot restart container {r}: {}", e.message))
        })?;
        s.container_event(id, "restart", vec![]);
        Ok(())
    }

    pub fn kill(&self, r: &str, signal: Option<&str>) -> R<()> {
        let mut s = self.lock();
        let id = s.find(r)?;
        let signo = match signal.filter(|v| !v.is_empty()) {
            None => 9,
            Some(v) => signal_number(v)
                .ok_or_else(|| ApiError::new(400, format!("Invalid signal: {v}")))?,
        };
        let c = &s.containers[&id];
        if c.status != Status::Running {
            return Err(ApiError::new(
                409,
                format!(
                    "Cannot kill container: {r}: Container {} is not running",
                    c.id_hex()
                ),
            ));
        }
        s.container_event(id, "kill", vec![("signal", signo.to_string())]);
        // A process with no handler dies of the signal; SIGCHLD, SIGCONT, SIGURG, SIGWINCH
        // are ignored by default.
        if !matches!(signo, 17 | 18 | 23 | 28) {
            s.exit(id, 128 + signo as i32);
        }
        Ok(())
    }

    pub fn remove(&self, r: &str, force: bool, _volumes: bool) -> R<()> {
        let mut s = self.lock();
        let id = s.find(r)?;
        if s.containers[&id].status == Status::Running {
            if !force {
                return Err(ApiError::new(
                    409,
                    format!(
                        "You cannot remove a running container {}. Stop the container before attempting removal or force remove",
                        hex(&id)
                    ),
                ));
            }
            s.container_event(id, "kill", vec![("signal", "9".into())]);
            s.exit(id, 137);
        }
        s.container_event(id, "destroy", vec![]);
        let c = s.containers.remove(&id).expect("found");
        s.names.remove(&c.meta.name);
        s.execs.retain(|_, e| e.container != id);
        Ok(())
    }

    pub fn inspect(&self, r: &str) -> R<Value> {
        let s = self.lock();
        let id = s.find(r)?;
        Ok(s.inspect_json(&s.containers[&id], &self.bridge_id()))
    }

    pub fn list(&self, all: bool, filters: &Filters) -> R<Value> {
        let s = self.lock();
        for (key, values) in filters {
            match key.as_str() {
                "label" | "name" | "id" => {}
                "status" => {
                    for v in values {
                        if !matches!(
                            v.as_str(),
                            "created"
                                | "restarting"
                                | "running"
                                | "removing"
                                | "paused"
                                | "exited"
                                | "dead"
                        ) {
                            return Err(ApiError::new(400, format!("Invalid filter 'status={v}'")));
                        }
                    }
                }
                "ancestor" | "before" | "expose" | "exited" | "health" | "isolation"
                | "is-task" | "network" | "publish" | "since" | "volume" => {
                    return Err(ApiError::new(
                        400,
                        format!("the hollow engine does not implement the '{key}' filter"),
                    ))
                }
                _ => return Err(ApiError::new(400, format!("Invalid filter '{key}'"))),
            }
        }
        let statuses: Option<&Vec<String>> =
            filters.iter().find(|(k, _)| k == "status").map(|(_, v)| v);
        let mut picked: Vec<&Container> = s
            .containers
            .values()
            .filter(|c| {
                (all || statuses.is_some() || c.status == Status::Running)
                    && statuses.is_none_or(|v| v.iter().any(|x| x == c.status.name()))
                    && filters.iter().all(|(key, values)| match key.as_str() {
                        "label" => util::labels_match(values, |k| c.meta.label(k)),
                        "name" => values
                            .iter()
                            .any(|v| format!("/{}", c.meta.name).contains(v.as_str())),
                        "id" => {
                            let h = c.id_hex();
                            values.iter().any(|v| h.starts_with(v.as_str()))
                        }
                        _ => true,
                    })
            })
            .collect();
        picked.sort_by_key(|c| std::cmp::Reverse(c.created));
        let now = now_nanos();
        let bridge = self.bridge_id();
        Ok(Value::Array(
            picked
                .into_iter()
                .map(|c| s.summary_json(c, now, &bridge))
                .collect(),
        ))
    }

    /// For `logs`: whether the container exists and its driver can be read; and whether it
    /// runs (a followed log ends when it stops).
    pub fn logs_check(&self, r: &str) -> R<(Id, bool, u64)> {
        let s = self.lock();
        let id = s.find(r)?;
        let c = &s.containers[&id];
        if !matches!(&*c.host.log_type, "json-file" | "local" | "journald" | "") {
            return Err(ApiError::new(
                501,
                "configured logging driver does not support reading",
            ));
        }
        Ok((id, c.status == Status::Running, s.generation))
    }

    /// Whether a followed log is done: its container stopped, was removed or vanished.
    pub fn log_done(&self, id: &Id, generation: u64) -> bool {
        let s = self.lock();
        s.generation != generation
            || s.containers
                .get(id)
                .is_none_or(|c| c.status != Status::Running)
    }

    // ---- execs

    pub fn exec_create(&self, r: &str, body: &Value) -> R<Value> {
        let mut s = self.lock();
        let id = s.find(r)?;
        let cmd = strings(&body["Cmd"]).unwrap_or_default();
        if cmd.is_empty() {
            return Err(ApiError::new(400, "No exec command specified"));
        }
        let c = &s.containers[&id];
        if c.status != Status::Running {
            return Err(ApiError::new(
                409,
                format!("Container {} is not running", c.id_hex()),
            ));
        }
        let exec_id = util::new_id(self.index);
        let flag = |k: &str| body[k].as_bool().unwrap_or(false);
        let now = now_nanos();
        s.execs
            .retain(|_, e| !(e.started && now - e.finished > EXEC_KEPT_NANOS));
        // As Docker names it: the program, a space, its arguments.
        let shown = format!("{} {}", cmd[0], cmd[1..].join(" "));
        s.execs.insert(
            exec_id,
            Exec {
                container: id,
                cmd: cmd.into(),
                tty: flag("Tty"),
                stdin: flag("AttachStdin"),
                stdout: flag("AttachStdout"),
                stderr: flag("AttachStderr"),
                privileged: flag("Privileged"),
                started: false,
                exit_code: None,
                pid: 0,
                finished: 0,
            },
        );
        s.container_event(
            id,
            &format!("exec_create: {shown}"),
            vec![("execID", hex(&exec_id))],
        );
        Ok(json!({"Id": hex(&exec_id)}))
    }

    /// Runs an exec: at once, exit code 0, no output. Returns whether it has a terminal.
    pub fn exec_start(&self, exec: &str) -> R<bool> {
        let mut s = self.lock();
        let exec_id = s.find_exec(exec)?;
        let (container, started, tty, shown) = {
            let e = &s.execs[&exec_id];
            (
                e.container,
                e.started,
                e.tty,
                format!("{} {}", e.cmd[0], e.cmd[1..].join(" ")),
            )
        };
        if started {
            return Err(ApiError::new(
                409,
                format!("Error: Exec command {} has already run", hex(&exec_id)),
            ));
        }
        match s.containers.get(&container) {
            Some(c) if c.status == Status::Running => {}
            Some(c) => {
                return Err(ApiError::new(
                    409,
                    format!("Container {} is not running", c.id_hex()),
                ))
            }
            None => return Err(no_such_container(&hex(&container))),
        }
        let pid = s.take_pid();
        let e = s.execs.get_mut(&exec_id).expect("found");
        e.started = true;
        e.exit_code = Some(0);
        e.pid = pid;
        e.finished = now_nanos();
        let x = hex(&exec_id);
        s.container_event(
            container,
            &format!("exec_start: {shown}"),
            vec![("execID", x.clone())],
        );
        s.container_event(
            container,
            "exec_die",
            vec![("execID", x), ("exitCode", "0".into())],
        );
        Ok(tty)
    }

    pub fn exec_inspect(&self, exec: &str) -> R<Value> {
        let s = self.lock();
        let exec_id = s.find_exec(exec)?;
        let e = &s.execs[&exec_id];
        Ok(json!({
            "ID": hex(&exec_id),
            "Running": false,
            "ExitCode": e.exit_code,
            "ProcessConfig": {"tty": e.tty, "entrypoint": e.cmd[0], "arguments": &e.cmd[1..],
                "privileged": e.privileged},
            "OpenStdin": e.stdin,
            "OpenStderr": e.stderr,
            "OpenStdout": e.stdout,
            "CanRemove": false,
            "ContainerID": hex(&e.container),
            "DetachKeys": "",
            "Pid": e.pid
        }))
    }

    pub fn exec_resize(&self, exec: &str) -> R<()> {
        let s = self.lock();
        s.find_exec(exec).map(|_| ())
    }

    // ---- images

    pub fn image_inspect(&self, name: &str) -> R<Value> {
        let s = self.lock();
        let i = s.find_image(name).ok_or_else(|| {
            ApiError::new(
                404,
                format!("no such image: {name}: No such image: {}", shown_ref(name)),
            )
        })?;
        Ok(image_json(&s.images[i]))
    }

    pub fn images_list(&self, all: bool, filters: &Filters) -> R<Value> {
        let _ = all;
        let s = self.lock();
        for (key, _) in filters {
            if key != "label" && key != "reference" && key != "dangling" {
                return Err(ApiError::new(
                    400,
                    format!("the hollow engine does not implement the '{key}' filter"),
                ));
            }
        }
        let mut list: Vec<&Image> = s
            .images
            .iter()
            .filter(|i| {
                filters.iter().all(|(key, values)| match key.as_str() {
                    "label" => util::labels_match(values, |k| {
                        i.labels.as_ref().and_then(|l| l.get(k)).map(String::as_str)
                    }),
                    "reference" => i.tags.iter().any(|t| {
                        values
                            .iter()
                            .any(|v| t == v || util::repository(t) == v.as_str())
                    }),
                    "dangling" => values.iter().any(|v| (v == "true") == i.tags.is_empty()),
                    _ => true,
                })
            })
            .collect();
        list.sort_by_key(|i| std::cmp::Reverse(i.created));
        Ok(Value::Array(
            list.into_iter()
                .map(|i| {
                    json!({
                        "Containers": -1,
                        "Created": i.created / 1_000_000_000,
                        "Id": format!("sha256:{}", hex(&i.id)),
                        "Labels": i.labels,
                        "ParentId": "",
                        "RepoDigests": if i.digests.is_empty() { Value::Null } else { json!(i.digests) },
                        "RepoTags": if i.tags.is_empty() { json!(["<none>:<none>"]) } else { json!(i.tags) },
                        "SharedSize": -1,
                        "Size": i.size,
                        "VirtualSize": i.size
                    })
                })
                .collect(),
        ))
    }

    /// A pull: every image name "pulls" at once. The progress lines Docker streams.
    pub fn pull(&self, from_image: &str, tag: &str) -> R<Vec<Value>> {
        let mut reference = from_image.trim().to_string();
        if reference.is_empty() {
            return Err(ApiError::new(400, "invalid reference format"));
        }
        if !tag.is_empty() {
            let repo = util::repository(&util::familiar(&reference)).to_string();
            reference = if tag.starts_with("sha256:") {
                format!("{repo}@{tag}")
            } else {
                format!("{repo}:{tag}")
            };
        }
        let wanted = util::familiar(&reference);
        let repo = util::repository(&wanted).to_string();
        if repo
            .chars()
            .any(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/:".contains(c)))
        {
            return Err(ApiError::new(
                400,
                "invalid reference format: repository name must be lowercase",
            ));
        }
        let shown_tag = wanted
            .split_once('@')
            .map(|(_, d)| d.to_string())
            .unwrap_or_else(|| wanted[repo.len() + 1..].to_string());
        let id = util::sha256(format!("hollow image {wanted}").as_bytes());
        let layer = format!(
            "sha256:{}",
            hex(&util::sha256(format!("hollow layer {wanted}").as_bytes()))
        );
        let digest = format!(
            "sha256:{}",
            hex(&util::sha256(
                format!("hollow manifest {wanted}").as_bytes()
            ))
        );
        let mut s = self.lock();
        let mut lines = vec![
            json!({"status": format!("Pulling from {}", util::remote_path(&repo)), "id": shown_tag}),
        ];
        let had = s
            .images
            .iter()
            .any(|i| i.id == id && i.tags.contains(&wanted));
        if !had {
            let short = &layer[7..19];
            for status in ["Pulling fs layer", "Download complete", "Pull complete"] {
                lines.push(json!({"status": status, "progressDetail": {}, "id": short}));
            }
        }
        lines.push(json!({"status": format!("Digest: {digest}")}));
        lines.push(json!({"status": if had {
            format!("Status: Image is up to date for {wanted}")
        } else {
            format!("Status: Downloaded newer image for {wanted}")
        }}));
        if !had {
            let now = now_nanos();
            let tags = if wanted.contains('@') {
                vec![]
            } else {
                vec![wanted.clone()]
            };
            s.add_image(Image {
                id,
                tags,
                digests: vec![format!("{repo}@{digest}")],
                created: 1_680_000_000_000_000_000,
                size: 5_000_000,
                layers: vec![layer],
                comment: String::new(),
                cmd: Some(vec!["sh".into()]),
                entrypoint: None,
                env: Some(vec![PATH_ENV.into()]),
                labels: None,
                working_dir: String::new(),
                tagged_at: now,
            });
            s.emit(EventKind::Image {
                action: "pull",
                id: wanted.clone(),
                name: repo,
            });
        }
        Ok(lines)
    }

    /// `docker import` of a root filesystem tar (its SHA-256 and size already taken).
    pub fn import(&self, layer: Id, size: i64, repo: &str, tag: &str) -> R<Value> {
        let now = now_nanos();
        let diff = format!("sha256:{}", hex(&layer));
        let config = json!({
            "architecture": "amd64",
            "config": {"Hostname": "", "Domainname": "", "User": "", "AttachStdin": false,
                "AttachStdout": false, "AttachStderr": false, "Tty": false, "OpenStdin": false,
                "StdinOnce": false, "Env": null, "Cmd": null, "Image": "", "Volumes": null,
                "WorkingDir": "", "Entrypoint": null, "OnBuild": null, "Labels": null},
            "created": rfc3339_nano(now),
            "history": [{"created": rfc3339_nano(now), "comment": "Imported from -"}],
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [diff]}
        });
        let id = util::sha256(config.to_string().as_bytes());
        let mut s = self.lock();
        let tags = if repo.is_empty() {
            vec![]
        } else {
            vec![util::familiar(&if tag.is_empty() {
                repo.to_string()
            } else {
                format!("{repo}:{tag}")
            })]
        };
        s.add_image(Image {
            id,
            tags: tags.clone(),
            digests: vec![],
            created: now,
            size,
            layers: vec![diff],
            comment: "Imported from -".into(),
            cmd: None,
            entrypoint: None,
            env: None,
            labels: None,
            working_dir: String::new(),
            tagged_at: now,
        });
        s.emit(EventKind::Image {
            action: "import",
            id: format!("sha256:{}", hex(&id)),
            name: format!("sha256:{}", hex(&id)),
        });
        for t in tags {
            s.emit(EventKind::Image {
                action: "tag",
                id: format!("sha256:{}", hex(&id)),
                name: t,
            });
        }
        Ok(json!({"status": format!("sha256:{}", hex(&id))}))
    }

    /// `docker load` of a save stream: the images its manifest names, each layer either in the
    /// stream or already here (by chain id, as Docker finds them). Returns the lines to send.
    pub fn load(&self, tar: &crate::load::Loaded) -> R<Vec<Value>> {
        let manifest: Value = tar
            .files
            .get("manifest.json")
            .and_then(|m| serde_json::from_slice(m).ok())
            .ok_or_else(|| {
                ApiError::new(
                    500,
                    "open /var/lib/docker/tmp/docker-import-hollow/repositories: no such file or directory",
                )
            })?;
        let mut s = self.lock();
        let mut have: HashSet<String> = s
            .images
            .iter()
            .flat_map(|i| crate::load::chain_ids(&i.layers))
            .collect();
        let mut lines = Vec::new();
        let mut loaded = Vec::new();
        for entry in manifest.as_array().into_iter().flatten() {
            let config_path = entry["Config"].as_str().unwrap_or("");
            let config_bytes = tar.files.get(config_path).ok_or_else(|| {
                ApiError::new(
                    500,
                    format!(
                        "open /var/lib/docker/tmp/docker-import-hollow/{config_path}: no such file or directory"
                    ),
                )
            })?;
            let config: Value = serde_json::from_slice(config_bytes)
                .map_err(|e| ApiError::new(500, format!("invalid image config: {e}")))?;
            let diff_ids: Vec<String> = strings(&config["rootfs"]["diff_ids"]).unwrap_or_default();
            let files: Vec<String> = strings(&entry["Layers"]).unwrap_or_default();
            if files.len() != diff_ids.len() {
                return Err(ApiError::new(
                    500,
                    "invalid manifest, layers length mismatch",
                ));
            }
            let chains = crate::load::chain_ids(&diff_ids);
            let mut size = 0i64;
            for (chain, file) in chains.iter().zip(&files) {
                match tar.sizes.get(file.as_str()) {
                    Some(n) => size += *n as i64,
                    None if have.contains(chain) => {}
                    None => {
                        return Err(ApiError::new(
                            500,
                            format!(
                                "open /var/lib/docker/tmp/docker-import-hollow/{file}: no such file or directory"
                            ),
                        ))
                    }
                }
            }
            have.extend(chains);
            let id = util::sha256(config_bytes);
            let c = &config["config"];
            let created = config["created"]
                .as_str()
                .and_then(parse_rfc3339)
                .unwrap_or(0);
            let tags: Vec<String> = strings(&entry["RepoTags"])
                .unwrap_or_default()
                .iter()
                .map(|t| util::familiar(t))
                .collect();
            for t in &tags {
                if let Some(prev) = s.images.iter().find(|i| i.tags.contains(t) && i.id != id) {
                    lines.push(json!({"stream": format!(
                        "The image {t} already exists, renaming the old one with ID sha256:{} to empty string\n",
                        hex(&prev.id))}));
                }
            }
            let labels: Option<BTreeMap<String, String>> = c["Labels"].as_object().map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                    .collect()
            });
            let now = now_nanos();
            s.add_image(Image {
                id,
                tags: tags.clone(),
                digests: vec![],
                created,
                size,
                layers: diff_ids,
                comment: String::new(),
                cmd: strings(&c["Cmd"]),
                entrypoint: strings(&c["Entrypoint"]),
                env: strings(&c["Env"]),
                labels,
                working_dir: c["WorkingDir"].as_str().unwrap_or("").to_string(),
                tagged_at: now,
            });
            loaded.push((id, tags));
        }
        for (id, tags) in loaded {
            let full = format!("sha256:{}", hex(&id));
            s.emit(EventKind::Image {
                action: "load",
                id: full.clone(),
                name: full.clone(),
            });
            if tags.is_empty() {
                lines.push(json!({"stream": format!("Loaded image ID: {full}\n")}));
            }
            for t in tags {
                lines.push(json!({"stream": format!("Loaded image: {t}\n")}));
            }
        }
        Ok(lines)
    }

    // ---- volumes

    pub fn volume_create(&self, body: &Value) -> R<Value> {
        let mut s = self.lock();
        let name = match body["Name"].as_str().filter(|n| !n.is_empty()) {
            Some(n) => n.to_string(),
            None => hex(&util::new_id(self.index)),
        };
        let driver = body["Driver"].as_str().unwrap_or("local");
        if !driver.is_empty() && driver != "local" {
            return Err(ApiError::new(
                404,
                format!("error looking up volume plugin {driver}: plugin \"{driver}\" not found"),
            ));
        }
        let map = |v: &Value| -> Option<BTreeMap<String, String>> {
            v.as_object().map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                    .collect()
            })
        };
        if !s.volumes.contains_key(&name) {
            s.volumes.insert(
                name.clone(),
                Volume {
                    labels: map(&body["Labels"]),
                    options: map(&body["DriverOpts"]),
                    created: now_nanos(),
                },
            );
            s.emit(EventKind::Volume {
                action: "create",
                name: name.clone(),
            });
        }
        Ok(volume_json(&name, &s.volumes[&name]))
    }

    pub fn volume_inspect(&self, name: &str) -> R<Value> {
        let s = self.lock();
        let v = s
            .volumes
            .get(name)
            .ok_or_else(|| ApiError::new(404, format!("get {name}: no such volume")))?;
        Ok(volume_json(name, v))
    }

    pub fn volumes_list(&self, filters: &Filters) -> R<Value> {
        let s = self.lock();
        let used: HashSet<&str> = s
            .containers
            .values()
            .flat_map(|c| c.volume_names())
            .collect();
        for (key, _) in filters {
            if !matches!(key.as_str(), "label" | "name" | "driver" | "dangling") {
                return Err(ApiError::new(400, format!("Invalid filter '{key}'")));
            }
        }
        let list: Vec<Value> = s
            .volumes
            .iter()
            .filter(|(name, v)| {
                filters.iter().all(|(key, values)| match key.as_str() {
                    "label" => util::labels_match(values, |k| {
                        v.labels.as_ref().and_then(|l| l.get(k)).map(String::as_str)
                    }),
                    "name" => values.iter().any(|x| name.contains(x.as_str())),
                    "driver" => values.iter().any(|x| x == "local"),
                    "dangling" => values
                        .iter()
                        .any(|x| util::bool_value(Some(x)) != used.contains(name.as_str())),
                    _ => true,
                })
            })
            .map(|(name, v)| volume_json(name, v))
            .collect();
        Ok(json!({"Volumes": list, "Warnings": null}))
    }

    pub fn volume_remove(&self, name: &str, force: bool) -> R<()> {
        let mut s = self.lock();
        if !s.volumes.contains_key(name) {
            if force {
                return Ok(());
            }
            return Err(ApiError::new(404, format!("get {name}: no such volume")));
        }
        let users: Vec<String> = s
            .containers
            .values()
            .filter(|c| c.volume_names().any(|v| v == name))
            .map(|c| c.id_hex())
            .collect();
        if !users.is_empty() {
            return Err(ApiError::new(
                409,
                format!("remove {name}: volume is in use - [{}]", users.join(", ")),
            ));
        }
        s.volumes.remove(name);
        s.emit(EventKind::Volume {
            action: "destroy",
            name: name.to_string(),
        });
        Ok(())
    }
}

impl State {
    fn counts(&self) -> Counts {
        Counts {
            containers: self.containers.len(),
            running: self
                .containers
                .values()
                .filter(|c| c.status == Status::Running)
                .count(),
            images: self.images.len(),
            volumes: self.volumes.len(),
        }
    }

    fn emit(&mut self, kind: EventKind) {
        let event = Arc::new(Event {
            time: now_nanos(),
            kind,
        });
        if self.ring.len() >= EVENTS_KEPT {
            self.ring.pop_front();
        }
        self.ring.push_back(event.clone());
        if let Some(tx) = &self.events {
            if tx.send(event).is_err() {
                // Nobody follows this engine's events any more.
                self.events = None;
            }
        }
    }

    fn container_event(&mut self, id: Id, action: &str, extra: Vec<(&'static str, String)>) {
        let meta = self.containers[&id].meta.clone();
        self.emit(EventKind::Container {
            id,
            action: action.into(),
            meta,
            extra,
        });
    }

    fn take_pid(&mut self) -> u32 {
        self.next_pid = if self.next_pid >= 4_000_000 {
            1000
        } else {
            self.next_pid + 1
        };
        self.next_pid
    }

    /// A container by full id, name, or unique id prefix, as Docker's `GetContainer`.
    fn find(&self, r: &str) -> R<Id> {
        if r.is_empty() {
            return Err(no_such_container(r));
        }
        if let Some(id) = util::parse_hex(r) {
            if self.containers.contains_key(&id) {
                return Ok(id);
            }
        }
        if let Some(id) = self.names.get(r.trim_start_matches('/')) {
            return Ok(*id);
        }
        if r.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            let mut found = self.containers.keys().filter(|id| hex(id).starts_with(r));
            if let Some(id) = found.next() {
                if found.next().is_some() {
                    return Err(ApiError::new(
                        400,
                        format!("multiple IDs found with provided prefix: {r}"),
                    ));
                }
                return Ok(*id);
            }
        }
        Err(no_such_container(r))
    }

    fn find_exec(&self, r: &str) -> R<Id> {
        util::parse_hex(r)
            .filter(|id| self.execs.contains_key(id))
            .ok_or_else(|| ApiError::new(404, format!("No such exec instance: {r}")))
    }

    /// An image by name (familiar form), full or short id.
    fn find_image(&self, r: &str) -> Option<usize> {
        let hexpart = r.strip_prefix("sha256:").unwrap_or(r);
        if hexpart.len() == 64 {
            if let Some(id) = util::parse_hex(hexpart) {
                if let Some(i) = self.images.iter().position(|i| i.id == id) {
                    return Some(i);
                }
            }
        }
        let wanted = util::familiar(r);
        if let Some(i) = self.images.iter().position(|i| {
            i.tags.contains(&wanted)
                || i.digests
                    .iter()
                    .any(|d| *d == wanted || util::familiar(d) == wanted)
        }) {
            return Some(i);
        }
        if !hexpart.is_empty()
            && hexpart.len() < 64
            && hexpart.bytes().all(|b| b.is_ascii_hexdigit())
        {
            let found: Vec<usize> = (0..self.images.len())
                .filter(|&i| hex(&self.images[i].id).starts_with(hexpart))
                .collect();
            if found.len() == 1 {
                return Some(found[0]);
            }
        }
        None
    }

    /// Adds an image; its tags leave any other image that had them (which stays, untagged).
    fn add_image(&mut self, image: Image) {
        for other in &mut self.images {
            other.tags.retain(|t| !image.tags.contains(t));
        }
        match self.images.iter_mut().find(|i| i.id == image.id) {
            Some(existing) => {
                for t in image.tags {
                    if !existing.tags.contains(&t) {
                        existing.tags.push(t);
                    }
                }
                for d in image.digests {
                    if !existing.digests.contains(&d) {
                        existing.digests.push(d);
                    }
                }
                existing.tagged_at = image.tagged_at;
            }
            None => self.images.push(image),
        }
    }

    fn create(&mut self, engine: usize, name: Option<&str>, body: &Value) -> R<Id> {
        let name = match name.filter(|n| !n.is_empty()) {
            Some(n) => {
                let bare = n.strip_prefix('/').unwrap_or(n);
                let ok = bare.len() >= 2
                    && bare.as_bytes()[0].is_ascii_alphanumeric()
                    && bare
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
                if !ok {
                    return Err(ApiError::new(
                        400,
                        format!(
                            "Invalid container name ({n}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                        ),
                    ));
                }
                bare.to_string()
            }
            None => format!("hollow_{}", &hex(&util::new_id(engine))[..12]),
        };
        let image_ref = body["Image"].as_str().unwrap_or("");
        if image_ref.is_empty() {
            return Err(ApiError::new(
                400,
                "Config cannot be empty in order to create a container",
            ));
        }
        let image = self
            .find_image(image_ref)
            .map(|i| &self.images[i])
            .ok_or_else(|| {
                ApiError::new(404, format!("No such image: {}", shown_ref(image_ref)))
            })?;
        let host = &body["HostConfig"];
        let network_mode = host["NetworkMode"].as_str().unwrap_or("");
        let network_mode = if network_mode.is_empty() {
            "default"
        } else {
            network_mode
        };
        let bindings = host["PortBindings"].as_object();
        if network_mode.starts_with("container:")
            && (bindings.is_some_and(|b| !b.is_empty())
                || body["ExposedPorts"]
                    .as_object()
                    .is_some_and(|e| !e.is_empty()))
        {
            return Err(ApiError::new(
                400,
                "conflicting options: port publishing and the container type network mode",
            ));
        }
        let restart = &host["RestartPolicy"];
        let restart_name = restart["Name"].as_str().unwrap_or("");
        if !matches!(
            restart_name,
            "" | "no" | "always" | "unless-stopped" | "on-failure"
        ) {
            return Err(ApiError::new(
                400,
                format!("invalid restart policy '{restart_name}'"),
            ));
        }
        let mut port_bindings = Vec::new();
        let mut exposed: Vec<PortKey> = Vec::new();
        for (spec, list) in bindings.into_iter().flatten() {
            let key = parse_port(spec)?;
            let list: Vec<Binding> = list
                .as_array()
                .into_iter()
                .flatten()
                .map(|b| Binding {
                    host_ip: intern(b["HostIp"].as_str().unwrap_or("")),
                    host_port: intern(b["HostPort"].as_str().unwrap_or("")),
                })
                .collect();
            for b in &list {
                if !b.host_port.is_empty() && parse_host_port(&b.host_port).is_none() {
                    return Err(ApiError::new(
                        400,
                        format!("invalid port specification: \"{}\"", b.host_port),
                    ));
                }
            }
            port_bindings.push((key, list.into_boxed_slice()));
            exposed.push(key);
        }
        port_bindings.sort_by_key(|(k, _)| *k);
        for spec in body["ExposedPorts"].as_object().into_iter().flatten() {
            exposed.push(parse_port(spec.0)?);
        }
        exposed.sort();
        exposed.dedup();
        let cmd = strings(&body["Cmd"]);
        let entrypoint = strings(&body["Entrypoint"]);
        let (entrypoint, cmd) = match (entrypoint, cmd) {
            (Some(e), c) if !e.is_empty() => (Some(e), c),
            (_, Some(c)) if !c.is_empty() => (image.entrypoint.clone(), Some(c)),
            _ => (image.entrypoint.clone(), image.cmd.clone()),
        };
        if entrypoint.as_ref().is_none_or(|e| e.is_empty())
            && cmd.as_ref().is_none_or(|c| c.is_empty())
        {
            return Err(ApiError::new(400, "No command specified"));
        }
        // The image's environment, each variable the create sets replacing it.
        let mut env: Vec<String> = image.env.clone().unwrap_or_default();
        for e in strings(&body["Env"]).unwrap_or_default() {
            let key = e.split('=').next().unwrap_or("");
            match env.iter_mut().find(|x| x.split('=').next() == Some(key)) {
                Some(x) => *x = e,
                None => env.push(e),
            }
        }
        let mut labels: BTreeMap<String, String> = image.labels.clone().unwrap_or_default();
        for (k, v) in body["Labels"].as_object().into_iter().flatten() {
            labels.insert(k.clone(), v.as_str().unwrap_or("").to_string());
        }
        let working_dir = body["WorkingDir"]
            .as_str()
            .filter(|w| !w.is_empty())
            .unwrap_or(&image.working_dir)
            .to_string();
        let image_id = image.id;
        let binds: Option<Vec<String>> = strings(&host["Binds"]);
        if self.names.contains_key(name.as_str()) {
            let other = self.names[name.as_str()];
            return Err(ApiError::new(
                409,
                format!(
                    "Conflict. The container name \"/{name}\" is already in use by container \"{}\". You have to remove (or rename) that container to be able to reuse that name.",
                    hex(&other)
                ),
            ));
        }
        // A named volume a bind names is made if missing, as Docker does.
        for b in binds.iter().flatten() {
            if let Some((source, _)) = b.split_once(':') {
                if !source.starts_with('/') && !self.volumes.contains_key(source) {
                    self.volumes.insert(
                        source.to_string(),
                        Volume {
                            labels: None,
                            options: None,
                            created: now_nanos(),
                        },
                    );
                    self.emit(EventKind::Volume {
                        action: "create",
                        name: source.to_string(),
                    });
                }
            }
        }
        let memory = host["Memory"].as_i64().unwrap_or(0);
        let memory_swap = match host["MemorySwap"].as_i64().unwrap_or(0) {
            0 if memory > 0 => memory * 2,
            s => s,
        };
        let id = util::new_id(engine);
        let istrs = |v: Vec<String>| -> Box<[Arc<str>]> { v.iter().map(|s| intern(s)).collect() };
        let name: Arc<str> = Arc::from(name.as_str());
        let container = Container {
            id,
            meta: Arc::new(Meta {
                name: name.clone(),
                image: intern(image_ref),
                labels: labels.iter().map(|(k, v)| (intern(k), intern(v))).collect(),
            }),
            image_id,
            created: now_nanos(),
            entrypoint: entrypoint.map(istrs),
            cmd: cmd.map(istrs),
            env: (!env.is_empty()).then(|| istrs(env)),
            working_dir: intern(&working_dir),
            exposed: exposed.into(),
            host: Box::new(HostCfg {
                network_mode: intern(network_mode),
                port_bindings: bindings.map(|_| port_bindings.into_boxed_slice()),
                binds: binds.map(istrs),
                restart_name: intern(restart_name),
                restart_max: restart["MaximumRetryCount"].as_i64().unwrap_or(0),
                cpu_shares: host["CpuShares"].as_i64().unwrap_or(0),
                memory,
                memory_swap,
                privileged: host["Privileged"].as_bool().unwrap_or(false),
                log_type: intern(
                    host["LogConfig"]["Type"]
                        .as_str()
                        .filter(|t| !t.is_empty())
                        .unwrap_or("json-file"),
                ),
            }),
            status: Status::Created,
            pid: 0,
            exit_code: 0,
            started_at: 0,
            finished_at: 0,
            sandbox: false,
            ip: None,
            published: Box::new([]),
        };
        self.names.insert(name, id);
        self.containers.insert(id, container);
        self.container_event(id, "create", vec![]);
        Ok(id)
    }

    /// Starts a container: it runs at once.
    fn start(&mut self, id: Id) -> R<bool> {
        let c = &self.containers[&id];
        if c.status == Status::Running {
            return Ok(false);
        }
        if let Some(target) = c.joins() {
            let target_id = self.find(target).map_err(|_| no_such_container(target))?;
            if self.containers[&target_id].status != Status::Running {
                return Err(ApiError::new(
                    409,
                    format!(
                        "cannot join network of a non running container: {}",
                        hex(&target_id)
                    ),
                ));
            }
        }
        let on_bridge = c.on_bridge();
        // Published ports: fixed ones checked, the others given ephemeral ports.
        let mut published = Vec::new();
        let mut taken: Vec<(u16, Proto)> = Vec::new();
        if on_bridge {
            for (key, list) in c.host.port_bindings.iter().flatten() {
                for b in list.iter() {
                    let port = match parse_host_port(&b.host_port) {
                        Some(p) if p != 0 => {
                            if self.ports.contains(&(p, key.1)) || taken.contains(&(p, key.1)) {
                                let ip = if b.host_ip.is_empty() {
                                    "0.0.0.0"
                                } else {
                                    &b.host_ip
                                };
                                return Err(ApiError::new(
                                    500,
                                    format!(
                                        "driver failed programming external connectivity on endpoint {} ({}): Bind for {ip}:{p} failed: port is already allocated",
                                        c.meta.name,
                                        hex(&util::sha256(&id))
                                    ),
                                ));
                            }
                            p
                        }
                        _ => 0,
                    };
                    taken.push((port, key.1));
                    published.push((*key, b.host_ip.clone(), port));
                }
            }
        }
        // Ephemeral ports, from Docker's range.
        for p in published.iter_mut() {
            if p.2 == 0 {
                let mut tries = 0;
                loop {
                    self.port_cursor = if self.port_cursor >= 60999 {
                        32768
                    } else {
                        self.port_cursor + 1
                    };
                    let candidate = (self.port_cursor, p.0 .1);
                    if !self.ports.contains(&candidate) && !taken.contains(&candidate) {
                        p.2 = self.port_cursor;
                        taken.push(candidate);
                        break;
                    }
                    tries += 1;
                    if tries > 30000 {
                        return Err(ApiError::new(
                            500,
                            "Bind for 0.0.0.0:0 failed: no free ephemeral port",
                        ));
                    }
                }
            }
        }
        taken.retain(|t| t.0 != 0);
        let ip = if on_bridge {
            let mut tries = 0u32;
            loop {
                self.ip_cursor = if self.ip_cursor >= 0xfffe {
                    2
                } else {
                    self.ip_cursor + 1
                };
                if self.ip_cursor >= 2 && !self.ips.contains(&self.ip_cursor) {
                    break Some(self.ip_cursor);
                }
                tries += 1;
                if tries > 70_000 {
                    return Err(ApiError::new(
                        500,
                        "no available IPv4 addresses on this network's address pools: bridge",
                    ));
                }
            }
        } else {
            None
        };
        if let Some(ip) = ip {
            self.ips.insert(ip);
        }
        self.ports.extend(taken);
        let pid = self.take_pid();
        let c = self.containers.get_mut(&id).expect("found");
        let mut out = Vec::new();
        for (key, host_ip, port) in published {
            if host_ip.is_empty() {
                out.push(Published {
                    port: key,
                    host_ip: intern("0.0.0.0"),
                    host_port: port,
                });
                out.push(Published {
                    port: key,
                    host_ip: intern("::"),
                    host_port: port,
                });
            } else {
                out.push(Published {
                    port: key,
                    host_ip,
                    host_port: port,
                });
            }
        }
        c.published = out.into();
        c.ip = ip;
        c.status = Status::Running;
        c.pid = pid;
        c.exit_code = 0;
        c.started_at = now_nanos();
        c.sandbox = true;
        self.container_event(id, "start", vec![]);
        Ok(true)
    }

    /// The container's process ended with `code`: its address and ports are given back.
    fn exit(&mut self, id: Id, code: i32) {
        let c = self.containers.get_mut(&id).expect("found");
        c.status = Status::Exited;
        c.exit_code = code;
        c.pid = 0;
        c.finished_at = now_nanos();
        let ip = c.ip.take();
        let published = std::mem::take(&mut c.published);
        if let Some(ip) = ip {
            self.ips.remove(&ip);
        }
        for p in published.iter() {
            self.ports.remove(&(p.host_port, p.port.1));
        }
        self.container_event(id, "die", vec![("exitCode", code.to_string())]);
    }

    /// Stops a running container: SIGTERM ends a hollow process at once (SIGKILL at once
    /// with no grace time). Returns false when it was not running (304).
    fn stop(&mut self, id: Id, t: i64) -> bool {
        if self.containers[&id].status != Status::Running {
            return false;
        }
        self.container_event(id, "kill", vec![("signal", "15".into())]);
        if t == 0 {
            self.container_event(id, "kill", vec![("signal", "9".into())]);
            self.exit(id, 137);
        } else {
            self.exit(id, 143);
        }
        self.container_event(id, "stop", vec![]);
        true
    }

    fn summary_json(&self, c: &Container, now: i64, bridge: &str) -> Value {
        let id = c.id_hex();
        let mut ports: Vec<Value> = Vec::new();
        if c.status == Status::Running && c.on_bridge() {
            let mut list: Vec<(PortKey, Option<(&str, u16)>)> = c
                .published
                .iter()
                .map(|p| (p.port, Some((&*p.host_ip, p.host_port))))
                .collect();
            for e in c.exposed.iter() {
                if !c.published.iter().any(|p| p.port == *e) {
                    list.push((*e, None));
                }
            }
            list.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
            for (key, bound) in list {
                ports.push(match bound {
                    Some((ip, port)) => json!({"IP": ip, "PrivatePort": key.0, "PublicPort": port, "Type": key.1.name()}),
                    None => json!({"PrivatePort": key.0, "Type": key.1.name()}),
                });
            }
        }
        let command = c.path_args().join(" ");
        json!({
            "Id": id,
            "Names": [format!("/{}", c.meta.name)],
            "Image": &*c.meta.image,
            "ImageID": format!("sha256:{}", hex(&c.image_id)),
            "Command": command,
            "Created": c.created / 1_000_000_000,
            "Ports": ports,
            "Labels": labels_json(&c.meta),
            "State": c.status.name(),
            "Status": c.status_text(now),
            "HostConfig": {"NetworkMode": &*c.host.network_mode},
            "NetworkSettings": {"Networks": self.networks_json(c, bridge)},
            "Mounts": c.mounts()
        })
    }

    fn networks_json(&self, c: &Container, bridge: &str) -> Value {
        if !c.on_bridge() {
            return json!({});
        }
        let endpoint = if c.ip.is_some() {
            hex(&util::sha256(format!("endpoint {}", c.id_hex()).as_bytes()))
        } else {
            String::new()
        };
        json!({"bridge": {
            "IPAMConfig": null, "Links": null, "Aliases": null,
            "NetworkID": if c.sandbox { bridge } else { "" },
            "EndpointID": endpoint,
            "Gateway": if c.ip.is_some() { "172.17.0.1" } else { "" },
            "IPAddress": c.ip.map(ip_text).unwrap_or_default(),
            "IPPrefixLen": if c.ip.is_some() { 16 } else { 0 },
            "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
            "MacAddress": c.ip.map(mac_text).unwrap_or_default(),
            "DriverOpts": null
        }})
    }

    fn inspect_json(&self, c: &Container, bridge: &str) -> Value {
        let id = c.id_hex();
        // A container in another's network namespace has its hostname and files.
        let holder = c
            .joins()
            .and_then(|t| self.find(t).ok())
            .map(|t| hex(&t))
            .unwrap_or_else(|| id.clone());
        let args = c.path_args();
        let path = args.first().copied().unwrap_or("");
        let running = c.status == Status::Running;
        let mut ports = Map::new();
        if running && c.on_bridge() {
            for e in c.exposed.iter() {
                let bound: Vec<Value> = c
                    .published
                    .iter()
                    .filter(|p| p.port == *e)
                    .map(|p| json!({"HostIp": &*p.host_ip, "HostPort": p.host_port.to_string()}))
                    .collect();
                ports.insert(
                    port_name(*e),
                    if bound.is_empty() {
                        Value::Null
                    } else {
                        Value::Array(bound)
                    },
                );
            }
        }
        let sandbox = if c.sandbox && c.on_bridge() {
            hex(&util::sha256(format!("sandbox {id}").as_bytes()))
        } else {
            String::new()
        };
        let ip = if c.on_bridge() { c.ip } else { None };
        let endpoint = if ip.is_some() {
            hex(&util::sha256(format!("endpoint {id}").as_bytes()))
        } else {
            String::new()
        };
        let network_settings = json!({
            "Bridge": "",
            "SandboxID": sandbox,
            "HairpinMode": false,
            "LinkLocalIPv6Address": "",
            "LinkLocalIPv6PrefixLen": 0,
            "Ports": Value::Object(ports),
            "SandboxKey": if sandbox.is_empty() { String::new() } else { format!("/var/run/docker/netns/{}", &sandbox[..12]) },
            "SecondaryIPAddresses": null,
            "SecondaryIPv6Addresses": null,
            "EndpointID": endpoint,
            "Gateway": if ip.is_some() { "172.17.0.1" } else { "" },
            "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0,
            "IPAddress": ip.map(ip_text).unwrap_or_default(),
            "IPPrefixLen": if ip.is_some() { 16 } else { 0 },
            "IPv6Gateway": "",
            "MacAddress": ip.map(mac_text).unwrap_or_default(),
            "Networks": self.networks_json(c, bridge)
        });
        let h = &c.host;
        let port_bindings = h.port_bindings.as_ref().map(|list| {
            let m: Map<String, Value> = list
                .iter()
                .map(|(k, bs)| {
                    (
                        port_name(*k),
                        Value::Array(
                            bs.iter()
                                .map(|b| json!({"HostIp": &*b.host_ip, "HostPort": &*b.host_port}))
                                .collect(),
                        ),
                    )
                })
                .collect();
            Value::Object(m)
        });
        let (masked, readonly) = if h.privileged {
            (Value::Null, Value::Null)
        } else {
            (
                json!([
                    "/proc/asound",
                    "/proc/acpi",
                    "/proc/kcore",
                    "/proc/keys",
                    "/proc/latency_stats",
                    "/proc/timer_list",
                    "/proc/timer_stats",
                    "/proc/sched_debug",
                    "/proc/scsi",
                    "/sys/firmware"
                ]),
                json!([
                    "/proc/bus",
                    "/proc/fs",
                    "/proc/irq",
                    "/proc/sys",
                    "/proc/sysrq-trigger"
                ]),
            )
        };
        let host_config = json!({
            "Binds": h.binds.as_ref().map(|b| b.iter().map(|s| &**s).collect::<Vec<_>>()),
            "ContainerIDFile": "",
            "LogConfig": {"Type": &*h.log_type, "Config": {}},
            "NetworkMode": &*h.network_mode,
            "PortBindings": port_bindings,
            "RestartPolicy": {"Name": &*h.restart_name, "MaximumRetryCount": h.restart_max},
            "AutoRemove": false, "VolumeDriver": "", "VolumesFrom": null, "CapAdd": null,
            "CapDrop": null, "CgroupnsMode": "host", "Dns": null, "DnsOptions": null,
            "DnsSearch": null, "ExtraHosts": null, "GroupAdd": null, "IpcMode": "private",
            "Cgroup": "", "Links": null, "OomScoreAdj": 0, "PidMode": "",
            "Privileged": h.privileged, "PublishAllPorts": false, "ReadonlyRootfs": false,
            "SecurityOpt": null, "UTSMode": "", "UsernsMode": "", "ShmSize": 67108864,
            "Runtime": "runc", "ConsoleSize": [0, 0], "Isolation": "",
            "CpuShares": h.cpu_shares, "Memory": h.memory, "NanoCpus": 0, "CgroupParent": "",
            "BlkioWeight": 0, "BlkioWeightDevice": null, "BlkioDeviceReadBps": null,
            "BlkioDeviceWriteBps": null, "BlkioDeviceReadIOps": null,
            "BlkioDeviceWriteIOps": null, "CpuPeriod": 0, "CpuQuota": 0,
            "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0, "CpusetCpus": "",
            "CpusetMems": "", "Devices": null, "DeviceCgroupRules": null,
            "DeviceRequests": null, "KernelMemory": 0, "KernelMemoryTCP": 0,
            "MemoryReservation": 0, "MemorySwap": h.memory_swap, "MemorySwappiness": null,
            "OomKillDisable": false, "PidsLimit": null, "Ulimits": null, "CpuCount": 0,
            "CpuPercent": 0, "IOMaximumIOps": 0, "IOMaximumBandwidth": 0,
            "MaskedPaths": masked, "ReadonlyPaths": readonly
        });
        let mut config = Map::new();
        config.insert("Hostname".into(), holder[..12].into());
        config.insert("Domainname".into(), "".into());
        config.insert("User".into(), "".into());
        config.insert("AttachStdin".into(), false.into());
        config.insert("AttachStdout".into(), false.into());
        config.insert("AttachStderr".into(), false.into());
        if !c.exposed.is_empty() {
            let m: Map<String, Value> = c
                .exposed
                .iter()
                .map(|e| (port_name(*e), json!({})))
                .collect();
            config.insert("ExposedPorts".into(), Value::Object(m));
        }
        config.insert("Tty".into(), false.into());
        config.insert("OpenStdin".into(), false.into());
        config.insert("StdinOnce".into(), false.into());
        let list = |v: &Option<Box<[Arc<str>]>>| -> Value {
            v.as_ref()
                .map(|l| Value::Array(l.iter().map(|s| Value::String(s.to_string())).collect()))
                .unwrap_or(Value::Null)
        };
        config.insert("Env".into(), list(&c.env));
        config.insert("Cmd".into(), list(&c.cmd));
        config.insert("Image".into(), (*c.meta.image).into());
        config.insert("Volumes".into(), Value::Null);
        config.insert("WorkingDir".into(), (*c.working_dir).into());
        config.insert("Entrypoint".into(), list(&c.entrypoint));
        config.insert("OnBuild".into(), Value::Null);
        config.insert("Labels".into(), labels_json(&c.meta));
        let layer = hex(&util::sha256(format!("rw {id}").as_bytes()));
        json!({
            "Id": id,
            "Created": rfc3339_nano(c.created),
            "Path": path,
            "Args": args.get(1..).unwrap_or(&[]),
            "State": {
                "Status": c.status.name(),
                "Running": running,
                "Paused": false,
                "Restarting": false,
                "OOMKilled": false,
                "Dead": false,
                "Pid": c.pid,
                "ExitCode": c.exit_code,
                "Error": "",
                "StartedAt": rfc3339_nano(c.started_at),
                "FinishedAt": rfc3339_nano(c.finished_at)
            },
            "Image": format!("sha256:{}", hex(&c.image_id)),
            "ResolvConfPath": format!("/var/lib/docker/containers/{holder}/resolv.conf"),
            "HostnamePath": format!("/var/lib/docker/containers/{holder}/hostname"),
            "HostsPath": format!("/var/lib/docker/containers/{holder}/hosts"),
            "LogPath": if &*h.log_type == "json-file" { format!("/var/lib/docker/containers/{id}/{id}-json.log") } else { String::new() },
            "Name": format!("/{}", c.meta.name),
            "RestartCount": 0,
            "Driver": "overlay2",
            "Platform": "linux",
            "MountLabel": "",
            "ProcessLabel": "",
            "AppArmorProfile": "",
            "ExecIDs": null,
            "HostConfig": host_config,
            "GraphDriver": {"Data": {
                "LowerDir": format!("/var/lib/docker/overlay2/{layer}-init/diff"),
                "MergedDir": format!("/var/lib/docker/overlay2/{layer}/merged"),
                "UpperDir": format!("/var/lib/docker/overlay2/{layer}/diff"),
                "WorkDir": format!("/var/lib/docker/overlay2/{layer}/work")}, "Name": "overlay2"},
            "Mounts": c.mounts(),
            "Config": Value::Object(config),
            "NetworkSettings": network_settings
        })
    }
}

fn labels_json(meta: &Meta) -> Value {
    Value::Object(
        meta.labels
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect(),
    )
}

fn image_json(i: &Image) -> Value {
    let config = |with_labels: bool| {
        json!({
            "Hostname": "", "Domainname": "", "User": "", "AttachStdin": false,
            "AttachStdout": false, "AttachStderr": false, "Tty": false, "OpenStdin": false,
            "StdinOnce": false, "Env": i.env, "Cmd": i.cmd, "Image": "", "Volumes": null,
            "WorkingDir": i.working_dir, "Entrypoint": i.entrypoint, "OnBuild": null,
            "Labels": if with_labels { json!(i.labels) } else { Value::Null }
        })
    };
    let layer = hex(&util::sha256(format!("image {}", hex(&i.id)).as_bytes()));
    json!({
        "Id": format!("sha256:{}", hex(&i.id)),
        "RepoTags": i.tags,
        "RepoDigests": i.digests,
        "Parent": "",
        "Comment": i.comment,
        "Created": rfc3339_nano(i.created),
        "Container": "",
        "ContainerConfig": config(false),
        "DockerVersion": ENGINE_VERSION,
        "Author": "",
        "Config": config(true),
        "Architecture": "amd64",
        "Os": "linux",
        "Size": i.size,
        "VirtualSize": i.size,
        "GraphDriver": {"Data": {
            "MergedDir": format!("/var/lib/docker/overlay2/{layer}/merged"),
            "UpperDir": format!("/var/lib/docker/overlay2/{layer}/diff"),
            "WorkDir": format!("/var/lib/docker/overlay2/{layer}/work")}, "Name": "overlay2"},
        "RootFS": {"Type": "layers", "Layers": i.layers},
        "Metadata": {"LastTagTime": rfc3339_nano(i.tagged_at)}
    })
}

fn volume_json(name: &str, v: &Volume) -> Value {
    json!({
        "CreatedAt": rfc3339_secs(v.created / 1_000_000_000),
        "Driver": "local",
        "Labels": v.labels,
        "Mountpoint": format!("/var/lib/docker/volumes/{name}/_data"),
        "Name": name,
        "Options": v.options,
        "Scope": "local"
    })
}

/// An image reference as Docker's messages show it.
fn shown_ref(r: &str) -> String {
    if r.starts_with("sha256:") {
        r.to_string()
    } else {
        util::familiar(r)
    }
}

/// A list of strings, or one string (Docker's `strslice` takes both).
fn strings(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::Array(a) => Some(
            a.iter()
                .map(|x| x.as_str().unwrap_or("").to_string())
                .collect(),
        ),
        Value::String(s) => Some(vec![s.clone()]),
        _ => None,
    }
}

fn parse_host_port(p: &str) -> Option<u16> {
    // A range ("8000-8010") takes its first port.
    p.split('-').next()?.parse().ok()
}

fn signal_number(v: &str) -> Option<u32> {
    if let Ok(n) = v.parse::<u32>() {
        return (n > 0 && n < 65).then_some(n);
    }
    let name = v.to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    let n = [
        "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2",
        "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG",
        "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS",
    ]
    .iter()
    .position(|s| *s == name)?;
    Some(n as u32 + 1)
}

/// Seconds from an RFC 3339 time (`2026-12-08T00:15:41.73308049Z`), as nanoseconds.
fn parse_rfc3339(s: &str) -> Option<i64> {
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let time = time.trim_end_matches('Z');
    let time = time.split(['+']).next()?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|x| x.parse::<i64>());
    let (hh, mm, ss) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    // days_from_civil
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let frac: String = frac.chars().take(9).collect();
    let nanos: i64 = format!("{frac:0<9}").parse().ok()?;
    Some(((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1_000_000_000) + nanos)
}

fn kernel() -> String {
    static K: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    K.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "hollow".into())
    })
    .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_back() {
        assert_eq!(
            parse_rfc3339("2026-12-08T00:15:47.90573559Z"),
            Some(1_796_688_947_905_735_590)
        );
        assert_eq!(signal_number("SIGTERM"), Some(15));
        assert_eq!(signal_number("kill"), Some(9));
    }
}
