//! openraft's storage conformance suite against the real Raft log store and state machine,
//! each built in a fresh temporary directory.
#![cfg(feature = "replication")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test should panic

use std::sync::Arc;

use openraft::testing::{StoreBuilder, Suite};
use strata::replication::apply::PlainApplier;
use strata::replication::log_store::LogStore;
use strata::replication::state_machine::{StateMachine, default_opener};
use strata::replication::types::{StorageError, TypeConfig};
use tempfile::TempDir;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().unwrap();
        let log = LogStore::open(&dir.path().join("log")).unwrap();
        let sm = StateMachine::open(dir.path(), default_opener(), Arc::new(PlainApplier)).unwrap();
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite_passes() {
    Suite::test_all(Builder).unwrap();
}
