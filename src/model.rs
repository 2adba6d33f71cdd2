//! Domain types: the four v1beta1 kinds after validation and defaulting. No IO.
//!
//! These types serialise to drover's *normalised* v1beta1 JSON: defaults filled in, empty
//! optional fields left out, fields in a fixed order. That text is what `diff` compares and what
//! the store keeps, so two manifests that mean the same thing normalise to the same bytes.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

pub type Labels = BTreeMap<String, String>;

pub const API_VERSION: &str = "v1beta1";

/// The kinds drover knows, in the order objects are listed and applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    Minion,
    Service,
    ReplicationController,
    Pod,
}

impl Kind {
    pub const ALL: [Kind; 4] = [
        Kind::Minion,
        Kind::Service,
        Kind::ReplicationController,
        Kind::Pod,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Minion => "Minion",
            Kind::Service => "Service",
            Kind::ReplicationController => "ReplicationController",
            Kind::Pod => "Pod",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Plural lower-case name, used for directories and the `get` command.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Minion => "minions",
            Kind::Service => "services",
            Kind::ReplicationController => "replicationcontrollers",
            Kind::Pod => "pods",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identity of an object: its kind and id. Ids are unique within a kind.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub kind: Kind,
    pub id: String,
}

impl ObjectKey {
    pub fn new(kind: Kind, id: impl Into<String>) -> Self {
        ObjectKey {
            kind,
            id: id.into(),
        }
    }

    /// Parses the `Kind/id` form used in the store index and on the command line.
    pub fn parse(s: &str) -> Option<ObjectKey> {
        let (kind, id) = s.split_once('/')?;
        Some(ObjectKey::new(Kind::parse(kind)?, id))
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.id)
    }
}

/// One object of any kind; serialises with its `kind` first, like the manifests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum Object {
    Minion(Minion),
    Service(Service),
    ReplicationController(ReplicationController),
    Pod(Pod),
}

impl Object {
    pub fn kind(&self) -> Kind {
        match self {
            Object::Minion(_) => Kind::Minion,
            Object::Service(_) => Kind::Service,
            Object::ReplicationController(_) => Kind::ReplicationController,
            Object::Pod(_) => Kind::Pod,
        }
    }

    pub fn id(&self) -> &str {
        match self {
            Object::Minion(o) => &o.id,
            Object::Service(o) => &o.id,
            Object::ReplicationController(o) => &o.id,
            Object::Pod(o) => &o.id,
        }
    }

    pub fn key(&self) -> ObjectKey {
        ObjectKey::new(self.kind(), self.id())
    }

    /// The normalised JSON text of this object: the form that is diffed, hashed and stored.
    pub fn normalized_json(&self) -> String {
        let mut text = Vec::new();
        self.write_normalized_json(&mut text);
        String::from_utf8(text).expect("serde_json writes UTF-8")
    }

    /// `normalized_json` appended to a buffer the caller may reuse (hashing thousands of
    /// objects then makes no text for each).
    pub fn write_normalized_json(&self, out: &mut Vec<u8>) {
        serde_json::to_writer_pretty(&mut *out, self).expect("model types always serialise");
        out.push(b'\n');
    }
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Pod {
    pub id: String,
    pub api_version: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: Labels,
    pub desired_state: PodState,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: Labels,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodState {
    pub manifest: ContainerManifest,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerManifest {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    pub containers: Vec<Container>,
    pub restart_policy: RestartPolicy,
    /// `ClusterFirst` (the default, left out of the normalised form) or `Default`. drover runs
    /// no cluster DNS, so both give containers the minion's resolver, as a kubelet without
    /// cluster DNS did.
    #[serde(default, skip_serializing_if = "is_default")]
    pub dns_policy: DnsPolicy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum DnsPolicy {
    #[default]
    ClusterFirst,
    Default,
}

/// When the image is pulled before a container starts (v1beta1's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PullPolicy {
    PullAlways,
    PullIfNotPresent,
    PullNever,
}

impl PullPolicy {
    /// The era's default (v0.9): `PullAlways` when the image's tag is `latest`, else
    /// `PullIfNotPresent`, so an untagged image is not pulled again.
    pub fn default_for(image: &str) -> PullPolicy {
        let last = image.rsplit(':').next().unwrap_or(image);
        if image.contains(':') && last == "latest" {
            PullPolicy::PullAlways
        } else {
            PullPolicy::PullIfNotPresent
        }
    }
}

/// A lifecycle hook: exactly one of `exec` or `httpGet`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Handler {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_get: Option<HttpGetAction>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Lifecycle {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_start: Option<Handler>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_stop: Option<Handler>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Container {
    pub name: String,
    pub image: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<Port>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Thousandths of a core; 0 means not limited.
    #[serde(default, skip_serializing_if = "is_default")]
    pub cpu: u64,
    /// Bytes; 0 means not limited.
    #[serde(default, skip_serializing_if = "is_default")]
    pub memory: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<LivenessProbe>,
    /// Left out when it is the image's default (`PullPolicy::default_for`), so manifests that
    /// do not say it normalise as before; `Container::pull_policy` gives the one in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
    /// Only when drover.toml says `allow_privileged = true`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub privileged: bool,
    /// Boxed: rare, and inline it would double the size of every container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Box<Lifecycle>>,
    /// The drover host's build of `image` this container runs (`sha256:…`), when drover.toml's
    /// `[images] push` names the image: set by drover from the local engine, never by a
    /// manifest (`image_pins`). Part of the template, so a rebuild is a change that rolls out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
}

impl Container {
    /// The pull policy in force: the one given, else the image's default. An image drover
    /// delivers itself is never pulled on a minion: it is there because drover sent it.
    pub fn pull_policy(&self) -> PullPolicy {
        if self.image_id.is_some() {
            return PullPolicy::PullNever;
        }
        self.image_pull_policy
            .unwrap_or_else(|| PullPolicy::default_for(&self.image))
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub enum Protocol {
    #[default]
    TCP,
    UDP,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::TCP => "TCP",
            Protocol::UDP => "UDP",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Port {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub container_port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<u16>,
    pub protocol: Protocol,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "hostIP")]
    pub host_ip: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvVar {
    pub name: String,
    #[serde(default)]
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeMount {
    pub name: String,
    pub mount_path: String,
    #[serde(default, skip_serializing_if = "is_default")]
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Volume {
    pub name: String,
    pub source: VolumeSource,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum VolumeSource {
    EmptyDir {},
    HostDir { path: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RestartPolicy {
    Always {},
    OnFailure {},
    Never {},
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy::Always {}
    }
}

/// A port given as a number or as the name of a container port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PortRef {
    Number(u16),
    Name(String),
}

impl fmt::Display for PortRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortRef::Number(n) => write!(f, "{n}"),
            PortRef::Name(s) => f.write_str(s),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LivenessProbe {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_get: Option<HttpGetAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_socket: Option<TcpSocketAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecAction>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub initial_delay_seconds: u32,
    pub timeout_seconds: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpGetAction {
    pub path: String,
    pub port: PortRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpSocketAction {
    pub port: PortRef,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecAction {
    pub command: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReplicationController {
    pub id: String,
    pub api_version: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: Labels,
    pub desired_state: ReplicationControllerState,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReplicationControllerState {
    pub replicas: u32,
    pub replica_selector: Labels,
    pub pod_template: PodTemplate,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodTemplate {
    pub desired_state: PodState,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: Labels,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: Labels,
}

/// The PROXY protocol header (HAProxy's `doc/proxy-protocol.txt`) a service's proxy sends its
/// backends first, so they learn the client's address: the annotation
/// `drover.io/proxy-protocol: "v1"` (text) or `"v2"` (binary); v1beta1 has no field for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProxyProtocol {
    #[serde(rename = "v1")]
    V1,
    #[serde(rename = "v2")]
    V2,
}

/// The Service annotation that asks for the PROXY protocol.
pub const PROXY_PROTOCOL_ANNOTATION: &str = "drover.io/proxy-protocol";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SessionAffinity {
    #[default]
    None,
    ClientIP,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Service {
    pub id: String,
    pub api_version: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: Labels,
    pub port: u16,
    pub protocol: Protocol,
    /// Number or name of the pods' port; `None` means the first port of the first container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_port: Option<PortRef>,
    pub selector: Labels,
    pub session_affinity: SessionAffinity,
    /// From the annotation `drover.io/proxy-protocol`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<ProxyProtocol>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Minion {
    pub id: String,
    pub api_version: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: Labels,
    #[serde(default, skip_serializing_if = "is_default")]
    pub resources: NodeResources,
    /// No new pod is placed on it (as `spec.unschedulable` of later Kubernetes nodes).
    #[serde(default, skip_serializing_if = "is_default")]
    pub unschedulable: bool,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeResources {
    #[serde(default, skip_serializing_if = "is_default")]
    pub capacity: Capacity,
}

/// cpu in thousandths of a core, memory in bytes; `None` means "read it from the minion".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capacity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
}

/// Where a desired object was read from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// Path relative to the source root, as the user would type it.
    pub file: String,
    /// The commit the file was read at, for git sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.commit {
            Some(c) => write!(f, "{} @ {}", self.file, &c[..c.len().min(12)]),
            None => f.write_str(&self.file),
        }
    }
}

/// The desired state: every object of the source, keyed by kind and id.
#[derive(Debug, Clone, Default)]
pub struct DesiredState {
    pub objects: BTreeMap<ObjectKey, (Object, Origin)>,
}

impl DesiredState {
    /// Objects as if read from one file (tests and benchmarks build states this way).
    pub fn of(objects: Vec<Object>, file: &str) -> DesiredState {
        let origin = Origin {
            file: file.into(),
            commit: None,
        };
        DesiredState {
            objects: objects
                .into_iter()
                .map(|o| (o.key(), (o, origin.clone())))
                .collect(),
        }
    }
}

/// Does `selector` (all key=value pairs) match `labels`? An empty selector matches nothing,
/// so that an RC or service without a selector can never claim every pod.
pub fn selector_matches(selector: &Labels, labels: &Labels) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The longest project name: it goes into container names next to pod ids.
pub const PROJECT_MAX: usize = 40;

/// A project name is a DNS label (lowercase letters, digits, `-`; starts and ends with a
/// letter or digit) of at most `PROJECT_MAX` characters: it goes into labels and names.
pub fn check_project(name: &str) -> Result<(), String> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    let ok_ends = !name.starts_with('-') && !name.ends_with('-');
    if name.is_empty() || name.len() > PROJECT_MAX || !ok_chars || !ok_ends {
        return Err(format!(
            "must be 1-{PROJECT_MAX} lowercase letters, digits or `-`, starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// `text` as project-name characters: lowercased, anything but ASCII letters and digits as
/// `-` (a name derived from a path or an etcd prefix; the caller trims and bounds it).
pub fn project_chars(text: &str) -> String {
    text.to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_key_round_trips_through_text() {
        let k = ObjectKey::new(Kind::ReplicationController, "web");
        assert_eq!(k.to_string(), "ReplicationController/web");
        assert_eq!(ObjectKey::parse(&k.to_string()), Some(k));
        assert_eq!(ObjectKey::parse("Nope/x"), None);
    }

    #[test]
    fn restart_policy_uses_the_v1beta1_wire_shape() {
        let json = serde_json::to_string(&RestartPolicy::OnFailure {}).unwrap();
        assert_eq!(json, r#"{"onFailure":{}}"#);
        let src: VolumeSource = serde_json::from_str(r#"{"hostDir":{"path":"/x"}}"#).unwrap();
        assert_eq!(src, VolumeSource::HostDir { path: "/x".into() });
    }

    #[test]
    fn empty_selector_matches_nothing() {
        let labels: Labels = [("a".to_string(), "b".to_string())].into();
        assert!(!selector_matches(&Labels::new(), &labels));
        assert!(selector_matches(&labels, &labels));
    }
}
