//! The replicated state machine: the strata [`Db`] that serves reads, advanced by applying
//! committed log entries, and its snapshots.
//!
//! # Applying
//!
//! Each `apply` call runs its entries through the [`Applier`] inside one [`Txn`] and writes
//! the resulting data together with the machine's own record — last applied log id,
//! membership, the replicated id counter and the clock — as one atomic [`WriteBatch`] (a
//! call whose operations pass 16 MiB is cut into several batches, each carrying the record
//! as of its last entry). The data and the record can therefore never disagree, whatever
//! crash comes. The batches are not fsynced: the log is durable, and at restart openraft
//! re-applies the committed entries after the recovered `last_applied`. That is safe only if
//! those entries are still in the log, which holds because openraft purges only entries
//! covered by a snapshot and every snapshot is made durable — its file, and the machine up
//! to it — before it is reported built or installed.
//!
//! Nothing in apply reads a clock or a random source: the same entries give byte-identical
//! stores on every replica. Replicated ids (seed B's `id`) come from a counter advanced only
//! by apply, not from the store's sequence numbers, which a snapshot install renumbers.
//!
//! # Directory layout
//!
//! ```text
//! sm/CURRENT        one line, "db-NNNNNN": the live generation
//! sm/db-NNNNNN/     a strata Db: one generation of the machine
//! snapshots/        snapshot files (see `snapshots`)
//! ```
//!
//! # Snapshots
//!
//! Building reads a consistent view (a store [`Snapshot`](crate::Snapshot) taken between two
//! apply calls, with the machine record of that moment) and streams it into a snapshot file
//! in a blocking task while apply goes on. Installing streams the received file into a new
//! generation directory, fsyncs it, then switches `sm/CURRENT` (write-then-rename): the
//! switch is the commit point, so a crash leaves either the old machine or the new one,
//! never a mix. Readers holding the old [`Db`] keep reading it; its directory is deleted at
//! a later install or open. If a crash lands after the snapshot file was published but
//! before the switch, opening finds the machine behind the current snapshot and installs it
//! again.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, RaftSnapshotBuilder};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use super::apply::{Applier, RESERVED, Txn};
use super::codec;
use super::error::{ReplicationError, StorageResult, blocking};
use super::files::{create_dir, sync_dir, write_atomic};
use super::snapshot_file::{SnapshotFile, SnapshotHeader, SnapshotReader};
use super::snapshots::{Current, SnapshotStore};
use super::types::{
    Entry, LogId, Response, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use crate::{Db, SyncMode, WriteBatch};

/// The stored key of the machine's own record.
const STATE_KEY: &[u8] = &[RESERVED, b's'];
/// An apply call writes its batch once it grows past this many bytes.
const APPLY_BATCH_BYTES: usize = 16 << 20;
/// Installing a snapshot writes batches of about this many bytes.
const INSTALL_BATCH_BYTES: usize = 4 << 20;
const CURRENT: &str = "CURRENT";

/// Opens the store of one state-machine generation in a directory.
///
/// The default opens it with [`SyncMode::Buffered`]: the machine's writes need no fsync of
/// their own (see the module documentation).
pub type DbOpener = Arc<dyn Fn(&Path) -> crate::Result<Db> + Send + Sync>;

/// The default [`DbOpener`].
pub fn default_opener() -> DbOpener {
    Arc::new(|p: &Path| Db::builder(p).sync_mode(SyncMode::Buffered).open())
}

/// The machine's own record, stored under a reserved key in the same batch as the data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineState {
    /// The last applied log id.
    pub last_applied: Option<LogId>,
    /// The last applied membership.
    pub membership: StoredMembership,
    /// The replicated id the next operation gets.
    pub next_id: u64,
    /// The largest leader timestamp applied, in milliseconds since the Unix epoch.
    pub clock_ms: u64,
}

impl MachineState {
    fn of(header: &SnapshotHeader) -> MachineState {
        MachineState {
            last_applied: header.meta.last_log_id,
            membership: header.meta.last_membership.clone(),
            next_id: header.next_id,
            clock_ms: header.clock_ms,
        }
    }
}

struct Live {
    db: Db,
    generation: u64,
    state: MachineState,
}

struct Shared {
    dir: PathBuf,
    opener: DbOpener,
    applier: Arc<dyn Applier>,
    snapshots: SnapshotStore,
    live: RwLock<Live>,
}

/// The state machine of one replica; openraft drives it, readers use a [`MachineReader`].
pub struct StateMachine {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for StateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachine")
            .field("dir", &self.shared.dir)
            .finish_non_exhaustive()
    }
}

/// A cheap handle for readers: the live store and what it has applied.
#[derive(Clone)]
pub struct MachineReader {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for MachineReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MachineReader")
            .field("dir", &self.shared.dir)
            .finish_non_exhaustive()
    }
}

impl MachineReader {
    /// The live store. A snapshot install replaces it; take a fresh handle per request.
    pub fn db(&self) -> Db {
        self.shared.live.read().db.clone()
    }

    /// The machine's record as of the last apply.
    pub fn state(&self) -> MachineState {
        self.shared.live.read().state.clone()
    }

    /// True when no state machine or snapshot builder shares this reader's store any more.
    pub(crate) fn is_sole_owner(&self) -> bool {
        Arc::strong_count(&self.shared) == 1
    }
}

fn generation_name(n: u64) -> String {
    format!("db-{n:06}")
}

fn parse_generation(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("db-")?;
    if digits.len() < 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ReplicationError + '_ {
    move |source| {
        crate::Error::Io {
            path: Some(path.to_path_buf()),
            source,
        }
        .into()
    }
}

fn read_state(db: &Db) -> Result<MachineState, ReplicationError> {
    match db.get(STATE_KEY)? {
        Some(v) => Ok(codec::decode(&v)?),
        None => Ok(MachineState::default()),
    }
}

/// Removes every generation directory numbered below `below` or above `keep`.
fn remove_generations(sm_dir: &Path, below: u64, keep: u64) -> Result<(), ReplicationError> {
    let mut removed = false;
    for entry in std::fs::read_dir(sm_dir).map_err(io(sm_dir))? {
        let entry = entry.map_err(io(sm_dir))?;
        let Some(n) = entry.file_name().to_str().and_then(parse_generation) else {
            continue;
        };
        if n < below || n > keep {
            let p = entry.path();
            std::fs::remove_dir_all(&p).map_err(io(&p))?;
            removed = true;
        }
    }
    if removed {
        sync_dir(sm_dir)?;
    }
    Ok(())
}

impl StateMachine {
    /// Opens the machine under `dir` (`dir/sm`, `dir/snapshots`), creating it if needed. If
    /// the live generation is behind the current snapshot, the snapshot is installed first.
    pub fn open(
        dir: &Path,
        opener: DbOpener,
        applier: Arc<dyn Applier>,
    ) -> Result<StateMachine, ReplicationError> {
        let sm_dir = dir.join("sm");
        create_dir(&sm_dir)?;
        let snapshots = SnapshotStore::open(&dir.join("snapshots"))?;
        let current_file = sm_dir.join(CURRENT);
        let generation = match std::fs::read_to_string(&current_file) {
            Ok(s) => s
                .strip_suffix('\n')
                .and_then(parse_generation)
                .ok_or_else(|| crate::Error::Corruption {
                    file: current_file.clone(),
                    offset: 0,
                    reason: format!("not a generation name: {s:?}"),
                })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let g = 1;
                // A generation directory is created before CURRENT names it.
                let db = (opener)(&sm_dir.join(generation_name(g)))?;
                db.close()?;
                write_atomic(
                    &sm_dir,
                    CURRENT,
                    format!("{}\n", generation_name(g)).as_bytes(),
                )?;
                g
            }
            Err(e) => return Err(io(&current_file)(e)),
        };
        // CURRENT names the live generation: every other one is unreferenced.
        remove_generations(&sm_dir, generation, generation)?;
        let db = (opener)(&sm_dir.join(generation_name(generation)))?;
        let state = read_state(&db)?;
        let machine = StateMachine {
            shared: Arc::new(Shared {
                dir: sm_dir,
                opener,
                applier,
                snapshots,
                live: RwLock::new(Live {
                    db,
                    generation,
                    state,
                }),
            }),
        };
        if let Some(cur) = machine.shared.snapshots.current()
            && cur.header.meta.last_log_id > machine.shared.live.read().state.last_applied
        {
            tracing::info!(
                snapshot = %cur.path.display(),
                "state machine is behind its snapshot; installing it"
            );
            machine.shared.load_generation(&cur)?;
        }
        Ok(machine)
    }

    /// A reader handle.
    pub fn reader(&self) -> MachineReader {
        MachineReader {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl Shared {
    /// Streams the snapshot `snap` into a new generation, makes it durable, switches
    /// `CURRENT` to it and makes it live.
    fn load_generation(&self, snap: &Current) -> Result<(), ReplicationError> {
        let old = self.live.read().generation;
        let generation = old + 1;
        let dir = self.dir.join(generation_name(generation));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
        }
        let db = (self.opener)(&dir)?;
        let (header, mut reader) = SnapshotReader::open(&snap.path)?;
        let mut batch = WriteBatch::new();
        while let Some((k, v)) = reader.next_record()? {
            if k.first() == Some(&RESERVED) {
                return Err(crate::Error::Corruption {
                    file: snap.path.clone(),
                    offset: 0,
                    reason: "snapshot holds a reserved key".into(),
                }
                .into());
            }
            batch.put(k, v);
            if batch.encoded_len() >= INSTALL_BATCH_BYTES {
                db.write(std::mem::take(&mut batch))?;
            }
        }
        let state = MachineState::of(&header);
        batch.put(STATE_KEY, codec::encode(&state)?);
        db.write(batch)?;
        db.sync()?;
        write_atomic(
            &self.dir,
            CURRENT,
            format!("{}\n", generation_name(generation)).as_bytes(),
        )?;
        let replaced = std::mem::replace(
            &mut *self.live.write(),
            Live {
                db,
                generation,
                state,
            },
        );
        // Closing the old store (if this was its last handle) happens outside the lock.
        drop(replaced);
        // The generation before the one just replaced may still be read by a snapshot
        // build or a reader; the ones before that are unused.
        remove_generations(&self.dir, old, generation)?;
        Ok(())
    }
}

/// Applies `entries` to `db` starting from `state`; returns the responses and the new state.
// openraft's storage traits fix the error type, large as it is.
#[allow(clippy::result_large_err)]
fn apply_entries(
    db: &Db,
    applier: &dyn Applier,
    mut state: MachineState,
    entries: Vec<Entry>,
) -> Result<(Vec<Response>, MachineState), StorageError> {
    let mut out = Vec::with_capacity(entries.len());
    let mut txn = Txn::new(db, state.next_id, state.clock_ms);
    let mut unsaved = false;
    for entry in entries {
        let log_id = entry.log_id;
        match entry.payload {
            EntryPayload::Blank => {
                txn.begin_entry(log_id.index, 0);
                out.push(Response::default());
            }
            EntryPayload::Normal(req) => {
                txn.begin_entry(log_id.index, req.leader_ms);
                let mut outcomes = Vec::with_capacity(req.writes.len());
                for w in &req.writes {
                    outcomes.push(applier.apply(&mut txn, w).apply_at(log_id)?);
                }
                out.push(Response { outcomes });
            }
            EntryPayload::Membership(m) => {
                txn.begin_entry(log_id.index, 0);
                state.membership = StoredMembership::new(Some(log_id), m);
                out.push(Response::default());
            }
        }
        state.last_applied = Some(log_id);
        state.next_id = txn.next_id();
        state.clock_ms = txn.clock_ms();
        unsaved = true;
        if txn.batch_bytes() >= APPLY_BATCH_BYTES {
            let meta = codec::encode(&state).apply_at(log_id)?;
            db.write(txn.take_batch(STATE_KEY, &meta))
                .apply_at(log_id)?;
            unsaved = false;
        }
    }
    if unsaved || txn.pending() {
        let meta = codec::encode(&state).write_logs()?;
        db.write(txn.take_batch(STATE_KEY, &meta)).write_logs()?;
    }
    Ok((out, state))
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let live = self.shared.live.read();
        Ok((live.state.last_applied, live.state.membership.clone()))
    }

    #[allow(clippy::result_large_err)]
    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let (db, state) = {
            let live = self.shared.live.read();
            (live.db.clone(), live.state.clone())
        };
        let applier = Arc::clone(&self.shared.applier);
        let (out, state) = match tokio::task::spawn_blocking(move || {
            apply_entries(&db, applier.as_ref(), state, entries)
        })
        .await
        {
            Ok(r) => r?,
            Err(e) => return Err(e).write_logs(),
        };
        self.shared.live.write().state = state;
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        let live = self.shared.live.read();
        SnapshotBuilder {
            shared: Arc::clone(&self.shared),
            db: live.db.clone(),
            view: live.db.snapshot(),
            state: live.state.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotFile>, StorageError> {
        let path = self.shared.snapshots.temp_path("recv");
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .write_snapshot()?;
        Ok(Box::new(SnapshotFile::new(file, path)))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<SnapshotFile>,
    ) -> Result<(), StorageError> {
        let (mut file, path) = snapshot.into_parts();
        let path = if self.shared.snapshots.is_receiving(&path) {
            file.flush().await.write_snapshot()?;
            file.sync_all().await.write_snapshot()?;
            path
        } else {
            // Not a file this machine received into: copy it in.
            let own = self.shared.snapshots.temp_path("recv");
            let mut dst = tokio::fs::File::create(&own).await.write_snapshot()?;
            file.seek(std::io::SeekFrom::Start(0))
                .await
                .write_snapshot()?;
            tokio::io::copy(&mut file, &mut dst)
                .await
                .write_snapshot()?;
            dst.sync_all().await.write_snapshot()?;
            own
        };
        drop(file);
        let shared = Arc::clone(&self.shared);
        let meta = meta.clone();
        blocking(move || {
            let (header, _) = SnapshotReader::open(&path)?;
            if header.meta != meta {
                return Err(crate::Error::Corruption {
                    file: path.clone(),
                    offset: 0,
                    reason: format!(
                        "snapshot file holds {}, the leader announced {}",
                        header.meta, meta
                    ),
                }
                .into());
            }
            let (current, _) = shared.snapshots.publish(&path, header)?;
            shared.load_generation(&current)
        })
        .await
        .write_snapshot()
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<openraft::Snapshot<TypeConfig>>, StorageError> {
        let Some(cur) = self.shared.snapshots.current() else {
            return Ok(None);
        };
        let file = tokio::fs::File::open(&cur.path).await.read_snapshot()?;
        Ok(Some(openraft::Snapshot {
            meta: cur.header.meta,
            snapshot: Box::new(SnapshotFile::new(file, cur.path)),
        }))
    }
}

/// Builds a snapshot from the view taken when it was created.
pub struct SnapshotBuilder {
    shared: Arc<Shared>,
    db: Db,
    view: crate::Snapshot,
    state: MachineState,
}

impl std::fmt::Debug for SnapshotBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotBuilder")
            .field("last_applied", &self.state.last_applied)
            .finish_non_exhaustive()
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<openraft::Snapshot<TypeConfig>, StorageError> {
        let shared = Arc::clone(&self.shared);
        let db = self.db.clone();
        let view = self.view.clone();
        let state = self.state.clone();
        let (current, file) = blocking(move || {
            let id = format!(
                "{}-{}",
                state.last_applied.map_or(0, |l| l.index),
                view.seqno()
            );
            let header = SnapshotHeader {
                meta: SnapshotMeta {
                    last_log_id: state.last_applied,
                    last_membership: state.membership.clone(),
                    snapshot_id: id,
                },
                next_id: state.next_id,
                clock_ms: state.clock_ms,
            };
            let tmp = shared.snapshots.write_view(&view, &header)?;
            // The machine must be durable up to the snapshot before logs it covers can be
            // purged.
            db.sync()?;
            shared.snapshots.publish(&tmp, header)
        })
        .await
        .write_snapshot()?;
        Ok(openraft::Snapshot {
            meta: current.header.meta,
            snapshot: Box::new(SnapshotFile::new(
                tokio::fs::File::from_std(file),
                current.path,
            )),
        })
    }
}
