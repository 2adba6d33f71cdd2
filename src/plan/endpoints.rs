//! Services made concrete, pure: each service's endpoints (the pods of this project its
//! selector matches, each reached at its minion's published host port for the service's
//! container port, with whether it is ready), and the environment variables containers get
//! for every service.
//!
//! A service's endpoints record is what the proxy serves (only ready endpoints), what
//! `get services` and `describe service` show, and what the store keeps so a standalone
//! `drover proxy` can follow it.

use super::types::{ObservedPod, Phase, PublishedPort};
use crate::model::{
    selector_matches, DesiredState, Object, PortRef, Protocol, Service, SessionAffinity,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

/// One service and its endpoints. Its serde form is the `Service/<name>` record of the store's
/// endpoints section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceEndpoints {
    pub name: String,
    pub port: u16,
    pub protocol: Protocol,
    pub session_affinity: SessionAffinity,
    pub selector: crate::model::Labels,
    /// The service's containerPort as written (number or name); absent: the first port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_port: Option<PortRef>,
    /// Every matching pod; only those `ready` are served.
    pub endpoints: Vec<Endpoint>,
    /// Why the proxy cannot serve it (its port cannot be bound), as the daemon last saw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The PROXY protocol header its backends are sent first (`drover.io/proxy-protocol`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<crate::model::ProxyProtocol>,
}

/// A pod behind a service.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Endpoint {
    pub pod: String,
    pub minion: String,
    /// Host and port the proxy connects to; absent when the pod publishes no such port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    pub ready: bool,
    /// Why it is not ready (or has no address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl ServiceEndpoints {
    /// The addresses the proxy balances over: the ready endpoints, in a stable order.
    pub fn ready_addresses(&self) -> Vec<SocketAddr> {
        self.endpoints
            .iter()
            .filter(|e| e.ready)
            .filter_map(|e| e.address.as_deref()?.parse().ok())
            .collect()
    }
}

/// The published port a service reaches on a pod: by number, by the container port's name,
/// or the pod's first port.
fn target_port<'a>(
    ports: &'a [PublishedPort],
    wanted: Option<&PortRef>,
    protocol: Protocol,
) -> Option<&'a PublishedPort> {
    match wanted {
        None => ports.first(),
        Some(PortRef::Number(n)) => ports
            .iter()
            .find(|p| p.container_port == *n && p.protocol == protocol),
        Some(PortRef::Name(name)) => ports
            .iter()
            .find(|p| p.name.as_deref() == Some(name.as_str())),
    }
}

/// Every service of the desired state with its endpoints. `publish` is each minion's
/// publish address (for ports bound on every address); `ready` says whether a pod passes its
/// probes (the phase and container states are checked here).
pub fn endpoints(
    desired: &DesiredState,
    pods: &[ObservedPod],
    publish: &BTreeMap<String, String>,
    probes_pass: &dyn Fn(&ObservedPod) -> bool,
) -> Vec<ServiceEndpoints> {
    services(desired)
        .map(|s| {
            let mut endpoints: Vec<Endpoint> = pods
                .iter()
                // A service with no selector selects nothing here (v1beta1 left its endpoints
                // to be set by hand, which drover has no way to do).
                .filter(|p| !s.selector.is_empty() && selector_matches(&s.selector, &p.labels))
                .filter(|p| matches!(p.phase, Phase::Pending | Phase::Running))
                .map(|p| {
                    let port = target_port(&p.ports, s.container_port.as_ref(), s.protocol);
                    let address = port.and_then(|port| {
                        let host = match port.host_ip.as_str() {
                            "" | "0.0.0.0" => publish.get(&p.minion)?.clone(),
                            ip => ip.to_string(),
                        };
                        let ip: IpAddr = host.parse().ok()?;
                        Some(SocketAddr::new(ip, port.host_port).to_string())
                    });
                    let running = p.phase == Phase::Running
                        && !p.containers.is_empty()
                        && p.containers
                            .iter()
                            .all(|c| c.state == super::types::ContainerState::Running);
                    let reason = if address.is_none() {
                        Some(match &s.container_port {
                            Some(port) => format!("publishes no port {port}"),
                            None => "publishes no port".to_string(),
                        })
                    } else if !running {
                        Some("not running".to_string())
                    } else if !probes_pass(p) {
                        Some("liveness probe failing".to_string())
                    } else {
                        None
                    };
                    Endpoint {
                        pod: p.id.clone(),
                        minion: p.minion.clone(),
                        ready: reason.is_none(),
                        address,
                        reason,
                    }
                })
                .collect();
            endpoints.sort();
            ServiceEndpoints {
                name: s.id.clone(),
                port: s.port,
                protocol: s.protocol,
                session_affinity: s.session_affinity,
                selector: s.selector.clone(),
                container_port: s.container_port.clone(),
                endpoints,
                error: None,
                proxy_protocol: s.proxy_protocol,
            }
        })
        .collect()
}

fn services(desired: &DesiredState) -> impl Iterator<Item = &Service> {
    desired.objects.values().filter_map(|(o, _)| match o {
        Object::Service(s) => Some(s),
        _ => None,
    })
}

/// `{NAME}` of a service's variables: upper-cased, `-` and `.` to `_`, a leading digit
/// prefixed with `_` (Kubernetes' makeEnvVariableName).
fn env_name(service: &str) -> String {
    let name: String = service
        .chars()
        .map(|c| match c {
            '-' | '.' => '_',
            c => c.to_ascii_uppercase(),
        })
        .collect();
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        format!("_{name}")
    } else {
        name
    }
}

/// The variables every container of a pod made now gets, one set per service of the project:
/// `{NAME}_SERVICE_HOST`, `{NAME}_SERVICE_PORT` and Docker's link family `{NAME}_PORT`,
/// `{NAME}_PORT_{PORT}_{PROTO}` and its `_PROTO`, `_PORT`, `_ADDR`. `host` is the proxy's
/// address as containers reach it (`[proxy] advertise`).
pub fn service_env(desired: &DesiredState, host: &str) -> Vec<String> {
    let mut env = Vec::new();
    for s in services(desired) {
        let name = env_name(&s.id);
        let (port, proto) = (s.port, s.protocol.as_str().to_ascii_lowercase());
        let url = format!("{proto}://{host}:{port}");
        let link = format!("{name}_PORT_{port}_{}", s.protocol.as_str());
        env.extend([
            format!("{name}_SERVICE_HOST={host}"),
            format!("{name}_SERVICE_PORT={port}"),
            format!("{name}_PORT={url}"),
            format!("{link}={url}"),
            format!("{link}_PROTO={proto}"),
            format!("{link}_PORT={port}"),
            format!("{link}_ADDR={host}"),
        ]);
    }
    env
}

/// The batch that makes the store's endpoints section hold `current` (only changed records).
pub fn endpoints_batch(
    index: &crate::store::Index,
    current: &[ServiceEndpoints],
) -> crate::store::Batch {
    use crate::model::{Kind, ObjectKey};
    use crate::store::{content_hash, Batch, Section};
    let mut batch = Batch::default();
    let mut keep = std::collections::BTreeSet::new();
    for s in current {
        let key = ObjectKey::new(Kind::Service, &s.name);
        let mut text = serde_json::to_string_pretty(s).expect("endpoints serialise");
        text.push('\n');
        let unchanged = index
            .endpoints
            .get(&key)
            .is_some_and(|e| e.hash == content_hash(text.as_bytes()));
        if !unchanged {
            batch.put(Section::Endpoints, key.clone(), text, None);
        }
        keep.insert(key);
    }
    for key in index.endpoints.keys().filter(|k| !keep.contains(*k)) {
        batch.delete(Section::Endpoints, key.clone());
    }
    batch
}

/// Reads the endpoints section back.
pub fn from_records(
    texts: &BTreeMap<crate::model::ObjectKey, String>,
) -> Result<Vec<ServiceEndpoints>, String> {
    texts
        .iter()
        .map(|(k, t)| serde_json::from_str(t).map_err(|e| format!("endpoints record {k}: {e}")))
        .collect()
}

/// The proxy's table: every service with its ready endpoints.
pub fn proxy_table(services: &[ServiceEndpoints]) -> crate::proxy::ServiceTable {
    crate::proxy::ServiceTable {
        services: services
            .iter()
            .map(|s| crate::proxy::ServiceEntry {
                name: s.name.clone(),
                port: s.port,
                protocol: s.protocol,
                affinity: s.session_affinity,
                endpoints: s.ready_addresses(),
                proxy_protocol: s.proxy_protocol,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests;
