//! The long-running process (`drover daemon`).

pub mod probes;
pub mod status;
pub mod watch;
