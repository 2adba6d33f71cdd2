//! The proxy's input: which services to serve and the endpoints behind each. Plain data, made
//! by whoever computes endpoints (the daemon, or `drover proxy` reading the store); the proxy
//! never looks anything up itself.

use crate::model::{Protocol, ProxyProtocol, SessionAffinity};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// Every service the proxy should serve. Replaced whole on each update: a service missing from
/// the table has its listener closed and its connections drained.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ServiceTable {
    pub services: Vec<ServiceEntry>,
}

/// One service: the port the proxy listens on and the ready endpoints behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEntry {
    pub name: String,
    /// The port served on the proxy's listen address. 0 lets the kernel choose (tests); the
    /// chosen port is in the status.
    pub port: u16,
    pub protocol: Protocol,
    #[serde(default)]
    pub affinity: SessionAffinity,
    /// Ready endpoints, in a stable order (round robin follows it). Duplicates are ignored.
    pub endpoints: Vec<SocketAddr>,
    /// Sent to each endpoint first, with the client's address (TCP only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<ProxyProtocol>,
}
