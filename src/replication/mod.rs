//! Raft replication (feature `replication`) on openraft 0.9.
//!
//! Every openraft type stays inside this module.
#![allow(missing_docs)]

pub mod apply;
pub mod codec;
pub mod error;
mod files;
pub mod identity;
pub mod log_store;
pub mod network;
pub mod node;
pub mod routes;
pub mod snapshot_file;
mod snapshots;
pub mod state_machine;
pub mod types;

#[cfg(test)]
mod measure;
