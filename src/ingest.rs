//! Building a new store directory straight from versions given in internal order (key
//! ascending, each key's versions newest first), keeping every version's seqno exactly:
//! what `strata load` does with a dump.
//!
//! The versions are written as tables in the deepest level, cut at the target table size
//! between keys, with a manifest whose `last_seqno` is the given one; the directory is built
//! under a temporary name and renamed into place.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use crate::config::Config;
use crate::error::{Error, IoContext, Result};
use crate::file_names;
use crate::key::{self, Kind};
use crate::manifest::{ManifestState, ManifestWriter, TableMeta};
use crate::seqno::MAX_SEQNO;
use crate::sstable::table_builder::TableBuilder;
use crate::sstable::table_reader::Table;
use crate::staging::Staging;
use crate::{MAX_KEY_LEN, MAX_VALUE_LEN, NUM_LEVELS, SeqNo};

/// One version of a key to ingest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestVersion {
    /// The user key.
    pub key: Bytes,
    /// The version's seqno (at least 1).
    pub seqno: SeqNo,
    /// The value, or `None` for a delete.
    pub value: Option<Bytes>,
}

/// What [`build_store`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestSummary {
    /// Versions written.
    pub versions: u64,
    /// Tables written.
    pub tables: usize,
    /// Bytes of tables written.
    pub bytes: u64,
}

fn invalid(n: u64, what: impl std::fmt::Display) -> Error {
    Error::InvalidConfig(format!("version {n}: {what}"))
}

/// Builds a new store in `dest` (which must not exist) holding exactly `versions`, with
/// `last_seqno` as the store's last seqno. Versions must come in internal order (key
/// ascending, seqnos descending within a key) with seqnos in `1..=last_seqno`; anything
/// else fails with [`Error::InvalidConfig`] naming the offending version (counted from 1).
/// Tables use `config`'s block, filter and table sizes and its filesystem.
pub fn build_store(
    dest: &Path,
    config: &Config,
    last_seqno: SeqNo,
    versions: impl IntoIterator<Item = Result<IngestVersion>>,
) -> Result<IngestSummary> {
    let fs = Arc::clone(&config.fs);
    let staging = Staging::begin(Arc::clone(&fs), dest)?;
    let level = NUM_LEVELS - 1;
    let options = config.table_options(level);
    let mut state = ManifestState::new();
    let mut summary = IngestSummary {
        versions: 0,
        tables: 0,
        bytes: 0,
    };
    let mut number = 0u64;
    let mut current: Option<(u64, TableBuilder)> = None;
    let mut prev: Option<(Bytes, u64)> = None;
    let finish = |n: u64, b: TableBuilder, state: &mut ManifestState| -> Result<u64> {
        let path = staging.dir().join(file_names::table(n));
        let (_, size) = b.finish().at(&path)?;
        let table = Table::open(Arc::clone(&fs), &path, n)?;
        if let Some(l) = state.levels.get_mut(level) {
            l.insert(n, TableMeta::of(&table));
        }
        Ok(size)
    };
    for v in versions {
        let v = v?;
        let n = summary.versions + 1;
        let seq = v.seqno.get();
        if seq == 0 || seq > last_seqno.get() || seq > MAX_SEQNO {
            return Err(invalid(n, format!("seqno {seq} outside 1..={last_seqno}")));
        }
        if v.key.len() > MAX_KEY_LEN {
            return Err(invalid(n, "key too long"));
        }
        if v.value.as_ref().is_some_and(|x| x.len() > MAX_VALUE_LEN) {
            return Err(invalid(n, "value too long"));
        }
        let new_key = match &prev {
            None => true,
            Some((k, s)) => match key::compare_bytes(k, &v.key) {
                std::cmp::Ordering::Less => true,
                std::cmp::Ordering::Equal if *s > seq => false,
                _ => {
                    return Err(invalid(
                        n,
                        "out of order (keys ascending, versions newest first)",
                    ));
                }
            },
        };
        // Cut tables only between keys, so that no key spans two tables of the level.
        if new_key
            && let Some((_, b)) = &current
            && b.estimated_size() >= config.target_table_bytes
            && let Some((n, b)) = current.take()
        {
            summary.bytes += finish(n, b, &mut state)?;
        }
        let b = match &mut current {
            Some((_, b)) => b,
            None => {
                number += 1;
                let path = staging.dir().join(file_names::table(number));
                summary.tables += 1;
                &mut current
                    .insert((
                        number,
                        TableBuilder::new(fs.create(&path).at(&path)?, options),
                    ))
                    .1
            }
        };
        let kind = if v.value.is_some() {
            Kind::Put
        } else {
            Kind::Delete
        };
        let ikey = key::encode(&v.key, v.seqno, kind as u8);
        b.add(&ikey, v.value.as_deref().unwrap_or_default())
            .at(staging.dir())?;
        summary.versions += 1;
        prev = Some((v.key, seq));
    }
    if let Some((n, b)) = current.take() {
        summary.bytes += finish(n, b, &mut state)?;
    }
    state.last_seq = last_seqno.get();
    state.next_file = number + 2;
    state.log_number = state.next_file;
    ManifestWriter::create(Arc::clone(&fs), staging.dir(), number + 1, &state)?;
    staging.publish()?;
    Ok(summary)
}
