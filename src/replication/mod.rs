//! Raft replication (feature `replication`): a strata store replicated on openraft 0.9.
//!
//! Every openraft type stays inside this module, so a move to another openraft version
//! touches this folder only. Dependencies point one way: the server uses this module, this
//! module uses the core [`Db`](crate::Db), and the core knows nothing of either.
//!
//! | piece | file | what it owns |
//! |---|---|---|
//! | types | [`types`] | the type configuration, members, the replicated [`Request`](types::Request) (clients' intent) and its [`Response`](types::Response) |
//! | identity | [`identity`] | numeric Raft ids derived from node names; the `NODE` file |
//! | codec | [`codec`] | the one serde encoding (postcard) of entries, votes, RPC bodies and snapshot metadata |
//! | log store | [`log_store`] | the durable Raft log (a second `Db`) |
//! | applier | [`apply`] | the boundary between the state machine and what a write means |
//! | state machine | [`state_machine`] | the `Db` that serves reads; apply, snapshots, installs |
//! | snapshot file | [`snapshot_file`] | the streamed, checksummed snapshot format |
//! | network | [`network`], [`routes`] | Raft RPCs over HTTP: pooled clients and the receiving routes |
//! | transport | [`transport`] | how peers are reached: plain HTTP, or mutual TLS with reloadable certificates |
//! | node | [`node`] | a replica's lifecycle: open, start, bootstrap, stop |
//! | replica | [`replica`] | what the server asks of a replica, in plain types: propose, read barrier, membership, status |
//! | read index | [`read_index`] | linearizable reads on every node, concurrent reads sharing one quorum round |
//!
//! On-disk formats are in `docs/format.md` ("Replication").

pub mod apply;
pub mod codec;
pub mod error;
mod files;
pub mod identity;
pub mod log_store;
pub mod network;
pub mod node;
pub mod read_index;
pub mod replica;
pub mod routes;
pub mod snapshot_file;
mod snapshots;
pub mod state_machine;
pub mod transport;
pub mod types;

#[cfg(test)]
mod measure;
