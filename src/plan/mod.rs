//! Planning: pure functions from desired and observed state to what must change.
//! No IO, no clock, no randomness: the same inputs give the same output.

pub mod endpoints;
pub mod inventory;
pub mod nodes;
pub mod objects;
pub mod observed;
pub mod pods;
pub mod saved;
pub mod scheduler;
pub mod types;
