//! drover: a declarative GitOps reconciler for containers on plain Linux hosts.
//!
//! Data flows one way: source -> desired model -> plan <- observed model <- minions. See
//! ARCHITECTURE.md for the map; each module's `//!` says what it owns.

pub mod clock;
pub mod config;
pub mod daemon;
pub mod events;
pub mod executor;
pub mod files;
pub mod image_pins;
pub mod images;
pub mod known_hosts;
pub mod manifest;
pub mod metrics;
pub mod minion;
pub mod model;
pub mod net;
pub mod par;
pub mod plan;
pub mod proxy;
pub mod reconcile;
pub mod serving;
pub mod source;
pub mod store;
