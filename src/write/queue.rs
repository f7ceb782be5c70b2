//! The queue of writes waiting for a commit leader, and how a leader picks its group.
//!
//! Writers enqueue their batch and wait; the writer at the head becomes the leader, takes
//! the writes queued behind it as one commit group ([`take_group`]) and hands every member
//! its result when the group is committed (group commit, as in LevelDB).

use std::collections::{HashMap, VecDeque};

use crate::batch::WriteBatch;
use crate::error::Result;
use crate::seqno::SeqNo;

/// A commit group stops growing at this many bytes (LevelDB's figure).
const MAX_GROUP_BYTES: usize = 1 << 20;

/// Queued writes and the results of committed ones not yet collected.
#[derive(Default)]
pub(super) struct WriteQueue {
    pub pending: VecDeque<Pending>,
    pub results: HashMap<u64, Result<SeqNo>>,
    /// A leader is committing a group now.
    pub leader_active: bool,
    pub next_ticket: u64,
}

/// One queued write.
pub(super) struct Pending {
    /// Identifies the writer waiting for this write's result.
    pub ticket: u64,
    pub batch: WriteBatch,
    /// The writer asked for an fsync before its acknowledgement.
    pub sync: bool,
}

impl WriteQueue {
    /// Queues `batch`; returns the ticket its result will be filed under.
    pub(super) fn push(&mut self, batch: WriteBatch, sync: bool) -> u64 {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.pending.push_back(Pending {
            ticket,
            batch,
            sync,
        });
        ticket
    }

    /// True when the writer holding `ticket` should lead the next group.
    pub(super) fn leads(&self, ticket: u64) -> bool {
        !self.leader_active && self.pending.front().is_some_and(|p| p.ticket == ticket)
    }
}

/// Pops the leader's batch and the queued batches that can share its WAL record.
pub(super) fn take_group(pending: &mut VecDeque<Pending>) -> Vec<Pending> {
    let mut group = Vec::new();
    let Some(first) = pending.pop_front() else {
        return group;
    };
    let first_size = first.batch.encoded_len();
    let limit = if first_size <= 128 << 10 {
        first_size + (128 << 10)
    } else {
        MAX_GROUP_BYTES
    };
    let leader_sync = first.sync;
    let mut size = first_size;
    group.push(first);
    while let Some(next) = pending.front() {
        // A non-syncing leader must not acknowledge a syncing write without an fsync.
        if next.sync && !leader_sync {
            break;
        }
        let n = next.batch.encoded_len();
        if size + n > limit {
            break;
        }
        size += n;
        if let Some(p) = pending.pop_front() {
            group.push(p);
        }
    }
    group
}
