//! Opens an SSTable from its bytes (a read-only memory map in production) and reads it:
//! point lookups through the filter and index, and a two-level cursor for scans.
//!
//! Opening checks the footer, then the index, filter and properties blocks. Each data
//! block's checksum is verified the first time the block is read after the table is opened
//! (a bitmap remembers which blocks passed, as a block cache would), so damaged bytes are
//! reported as corruption rather than returned, without re-hashing hot blocks on every read.
//!
//! An uncompressed data block is read in place from the map (no copy). A compressed one is
//! looked up in the table's slots of decompressed blocks ([`TableBlocks`], bounded by the
//! store's [`BlockCache`]) and decompressed into them on a miss. Readers pin the table's
//! slots while they hold blocks read from them: a cursor from its first such block until it
//! is dropped, a point lookup for its duration.
#![deny(clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use super::block::{self, Block, BlockCursor, BlockRef};
use super::block_cache::BlockCache;
use super::compression::{Compression, decompress};
use super::filter::Filter;
use super::format::{
    BlockHandle, BlockType, FOOTER_LEN, Footer, Properties, StoredBlock, trailer_len,
};
use super::index_summary::IndexSummary;
use super::table_blocks::TableBlocks;
use crate::cursor::Cursor;
use crate::error::{Corrupt, Error, IoContext, Result};
use crate::fs::{FileSystem, MappedFile};
use crate::key::{self, KIND_SEEK};
use crate::lookup::Hit;
use crate::prefetch;
use crate::seqno::SeqNo;

/// An open, immutable table.
pub struct Table {
    number: u64,
    path: PathBuf,
    data: Bytes,
    index: Block,
    filter: Filter,
    props: Properties,
    obsolete: AtomicBool,
    fs: Option<Arc<dyn FileSystem>>,
    /// One bit per data block (by index ordinal): set once its checksum passed.
    verified: Box<[AtomicU64]>,
    /// The table format version (from the footer).
    version: u32,
    /// The store's block cache, which counts reads of compressed blocks.
    cache: Option<Arc<BlockCache>>,
    /// Where decompressed blocks are kept, if anywhere (a table with compressed blocks, in a
    /// store whose block cache holds anything).
    blocks: Option<Arc<TableBlocks>>,
    /// Every data block is stored compressed (as the properties say): seeks ask for the
    /// lines of cached blocks rather than of stored ones.
    all_compressed: bool,
    /// The file's map, when `data` is one: sequential cursors hand back the pages behind
    /// them.
    mapped: Option<MappedFile>,
    /// Built on the first search of the index (`None` inside: the index has none).
    summary: OnceLock<Option<IndexSummary>>,
}

/// With more index entries than this sharing the target's rank, a seek falls back to the
/// index block's own binary search.
const MAX_EQUAL_RANKS: usize = 4;

/// Positions `index` at the first entry at or after internal key `target`, starting from
/// `equal` (the summary's narrowing of its user key) when there is one and it is short.
fn seek_narrowed(index: &mut BlockCursor, target: &[u8], equal: Option<std::ops::Range<usize>>) {
    match equal {
        Some(e) if e.len() <= MAX_EQUAL_RANKS => index.seek_from(e.start, target),
        _ => index.seek(target),
    }
}

/// How far a sequential cursor reads past the pages it last released before releasing
/// again.
const RELEASE_STEP: usize = 1 << 20;

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("number", &self.number)
            .field("size", &self.data.len())
            .field("entries", &self.props.entries)
            .finish_non_exhaustive()
    }
}

impl Table {
    /// Maps and opens table file `path`.
    pub fn open(fs: Arc<dyn FileSystem>, path: &Path, number: u64) -> Result<Table> {
        let mapped = fs.map_file(path).at(path)?;
        let mut t =
            Table::from_bytes(mapped.bytes().clone(), number, path).map_err(|e| e.in_file(path))?;
        t.fs = Some(fs);
        t.mapped = Some(mapped);
        Ok(t)
    }

    /// Opens a table held in memory (the file-system-free entry point fuzzers use).
    pub fn from_bytes(data: Bytes, number: u64, path: &Path) -> Result<Table, Corrupt> {
        let len = data.len() as u64;
        let footer_at = data
            .len()
            .checked_sub(FOOTER_LEN)
            .ok_or_else(|| Corrupt::new(0, "file too short to be a table"))?;
        let footer = Footer::decode(data.get(footer_at..).unwrap_or_default(), len)?;
        let read = |h: BlockHandle, t: BlockType| {
            StoredBlock::locate(&data, footer_at as u64, h, footer.version)?.contents(t, true)
        };
        let index = Block::new(read(footer.index, BlockType::Index)?, footer.index.offset)?;
        let filter = Filter::new(
            read(footer.filter, BlockType::Filter)?,
            footer.filter.offset,
        )?;
        let props = Properties::decode(
            &read(footer.props, BlockType::Properties)?,
            footer.props.offset,
            footer.version,
        )?;
        if props.entries > 0
            && (key::parse(&props.smallest).is_none() || key::parse(&props.largest).is_none())
        {
            return Err(Corrupt::new(
                footer.props.offset,
                "bad key range in properties",
            ));
        }
        let all_compressed = props.data_blocks > 0 && props.compressed_blocks == props.data_blocks;
        let verified = (0..index.num_restarts().div_ceil(64))
            .map(|_| AtomicU64::new(0))
            .collect();
        Ok(Table {
            number,
            path: path.to_path_buf(),
            data,
            index,
            filter,
            props,
            obsolete: AtomicBool::new(false),
            fs: None,
            verified,
            version: footer.version,
            cache: None,
            blocks: None,
            all_compressed,
            mapped: None,
            summary: OnceLock::new(),
        })
    }

    /// Keeps this table's decompressed blocks within `cache`'s bound.
    pub fn with_cache(mut self, cache: Arc<BlockCache>) -> Table {
        if self.props.compressed_blocks > 0 {
            self.blocks = cache.register(self.index.num_restarts());
        }
        self.cache = Some(cache);
        self
    }

    /// Pins the table's decompressed blocks for a read, when it keeps any.
    fn pin(&self) -> Option<super::table_blocks::Pin<'_>> {
        self.blocks.as_ref().and_then(|b| b.try_pin())
    }

    /// The table's format version.
    #[cfg(test)]
    pub fn format_version(&self) -> u32 {
        self.version
    }

    /// The file number.
    pub fn number(&self) -> u64 {
        self.number
    }

    /// File size in bytes.
    pub fn file_size(&self) -> u64 {
        self.data.len() as u64
    }

    /// The properties block.
    pub fn props(&self) -> &Properties {
        &self.props
    }

    /// The smallest user key.
    pub fn smallest_user_key(&self) -> &[u8] {
        key::user_key(&self.props.smallest)
    }

    /// The largest user key.
    pub fn largest_user_key(&self) -> &[u8] {
        key::user_key(&self.props.largest)
    }

    /// Marks the table for deletion once the last reader drops it.
    pub fn mark_obsolete(&self) {
        self.obsolete.store(true, Ordering::Release);
    }

    fn footer_start(&self) -> u64 {
        (self.data.len().saturating_sub(FOOTER_LEN)) as u64
    }

    fn corrupt(&self, e: Corrupt) -> Error {
        e.in_file(&self.path)
    }

    /// The data block the index cursor points at, checksummed unless it passed before. A
    /// compressed block is taken from the table's slots when `pinned` (the caller holds a pin
    /// on them and drops the block before releasing it), and otherwise decompressed, and put
    /// in the slots when `fill_cache` (one pass over a table, as a compaction makes, would
    /// only evict the blocks that readers use). `forward`: a scan goes on to the next block,
    /// whose lines are asked for when it is cached.
    fn data_block(
        &self,
        index: &BlockCursor,
        fill_cache: bool,
        pinned: bool,
        forward: bool,
    ) -> Result<BlockRef, Corrupt> {
        let h = BlockHandle::decode(&index.value())?;
        let ordinal = index.ordinal();
        if forward && let (Some(b), Some(o)) = (&self.blocks, ordinal) {
            b.ask_for(o + 1, &[0, 64], &[64, 1]);
        }
        self.block_at(ordinal, h, fill_cache, pinned)
    }

    /// [`data_block`](Self::data_block) for the block `h` names, the index's entry
    /// `ordinal` (used to remember that its checksum passed, and to find it in the slots).
    /// `pinned` promises that the caller holds a pin on the table's blocks and no block
    /// read under it, and that it drops the returned block before releasing the pin.
    #[allow(unsafe_code)]
    fn block_at(
        &self,
        ordinal: Option<usize>,
        h: BlockHandle,
        fill_cache: bool,
        pinned: bool,
    ) -> Result<BlockRef, Corrupt> {
        let slot = self.blocks.as_ref().filter(|_| pinned).zip(ordinal);
        // A cached block needs neither the stored block nor its trailer (it was checked
        // when it was decompressed).
        if let Some((b, o)) = slot
            // SAFETY: `pinned` says the caller holds a pin, and drops the block before
            // releasing it.
            && let Some(data) = unsafe { b.get(o) }
        {
            b.cache().hit();
            return Ok(BlockRef::Pinned(Block::new(data, h.offset)?));
        }
        let check = ordinal.and_then(|o| self.verified.get(o / 64).map(|w| (w, 1u64 << (o % 64))));
        let known_good = check.is_some_and(|(w, bit)| w.load(Ordering::Relaxed) & bit != 0);
        let stored = StoredBlock::locate(&self.data, self.footer_start(), h, self.version)?;
        stored.check(BlockType::Data, !known_good)?;
        let codec = stored.codec()?;
        let block = if codec == Compression::None {
            BlockRef::Mapped(Block::new(stored.stored, h.offset)?)
        } else {
            if let Some(c) = &self.cache {
                c.miss();
            }
            let raw = decompress(&stored.stored, codec, h.offset)?;
            match slot.filter(|_| fill_cache) {
                Some((b, o)) => {
                    // SAFETY: as above; besides, `pinned` says the caller holds no other
                    // block of this table read under its pin.
                    let data = unsafe { b.insert(o, raw) };
                    BlockRef::Pinned(Block::new(data, h.offset)?)
                }
                None => BlockRef::Decompressed(Block::new(Bytes::from(raw), h.offset)?),
            }
        };
        if let Some((w, bit)) = check {
            w.fetch_or(bit, Ordering::Relaxed);
        }
        Ok(block)
    }

    /// For a seek over several sorted runs, which asks every run for the lines it will read
    /// before it searches any (see [`MergeCursor`](crate::merge_iter::MergeCursor)): the data
    /// block a seek for `target` lands in, when the index summary names it and the table is
    /// read in place or cached, after asking for the cache lines of its restart array; with
    /// its index ordinal.
    pub(crate) fn ask_for_seek(&self, target: &[u8]) -> Option<(usize, BlockHandle)> {
        let s = self.summary()?;
        let (ordinal, h) = s.block_in(&s.narrow(key::user_key(target)))?;
        if self.all_compressed {
            self.blocks.as_ref()?.ask_for(ordinal, &[], &[64, 1]);
            return Some((ordinal, h));
        }
        let end = usize::try_from(h.offset.checked_add(h.size)?).ok()?;
        prefetch::lines(&self.data, &[end.saturating_sub(64), end]);
        Some((ordinal, h))
    }

    /// The second step of [`ask_for_seek`](Self::ask_for_seek), once the restart array of
    /// the block it named (index entry `ordinal`, stored at `h`) has had time to arrive:
    /// asks for the lines of its restart keys (see [`block::ask_for_restart_keys`]).
    pub(crate) fn ask_for_restart_keys(&self, (ordinal, h): (usize, BlockHandle)) {
        if self.all_compressed {
            if let Some(pin) = self.pin()
                && let Some(body) = pin.get(ordinal)
            {
                block::ask_for_restart_keys(body);
            }
            return;
        }
        let (Ok(start), Ok(size)) = (usize::try_from(h.offset), usize::try_from(h.size)) else {
            return;
        };
        if let Some(body) = start
            .checked_add(size)
            .and_then(|end| self.data.get(start..end))
        {
            block::ask_for_restart_keys(body);
        }
    }

    /// The index summary, built on first use.
    fn summary(&self) -> Option<&IndexSummary> {
        self.summary
            .get_or_init(|| {
                IndexSummary::build(
                    &self.index,
                    self.smallest_user_key(),
                    self.largest_user_key(),
                )
            })
            .as_ref()
    }

    /// Bytes of memory of the index summary, 0 until the table's first search.
    pub fn index_summary_bytes(&self) -> u64 {
        self.summary
            .get()
            .and_then(Option::as_ref)
            .map_or(0, IndexSummary::memory_bytes)
    }

    /// Positions `index` (a cursor over this table's index) at the first entry at or after
    /// internal key `target`, narrowed by the summary when there is one.
    fn seek_index(&self, index: &mut BlockCursor, target: &[u8]) {
        let equal = self.summary().map(|s| s.narrow(key::user_key(target)));
        seek_narrowed(index, target, equal);
    }

    /// The newest version of `user_key` at or below `snap`; `hash` is `hash64(user_key)`.
    pub fn get(&self, user_key: &[u8], hash: u64, snap: u64) -> Result<Option<Hit>> {
        if !self.filter.may_contain(hash) {
            return Ok(None);
        }
        if user_key < self.smallest_user_key() || user_key > self.largest_user_key() {
            return Ok(None);
        }
        let target = key::encode(user_key, SeqNo::new(snap), KIND_SEEK);
        let summary = self.summary();
        let equal = summary.map(|s| s.narrow(user_key));
        let named = summary.zip(equal.as_ref()).and_then(|(s, e)| s.block_in(e));
        let pin = self.pin();
        let pinned = pin.is_some();
        let block = match named {
            // The summary names the block: the index block is not read at all.
            Some((ordinal, h)) => self.block_at(Some(ordinal), h, true, pinned),
            None => {
                let mut index = self.index.cursor();
                seek_narrowed(&mut index, &target, equal);
                if !index.valid() {
                    return index
                        .corruption()
                        .map_or(Ok(None), |e| Err(self.corrupt(e.clone())));
                }
                self.data_block(&index, true, pinned, false)
            }
        }
        .map_err(|e| self.corrupt(e))?;
        let found = self.search(&block, &target, user_key);
        // The block goes before the pin it was read under.
        drop(block);
        drop(pin);
        found
    }

    /// The entry for `user_key` at or after internal key `target` in `block`, if any. A
    /// value from a decompressed block is copied out: a cached one is only valid under the
    /// read's pin, and a private one would keep its whole block alive.
    fn search(&self, block: &BlockRef, target: &[u8], user_key: &[u8]) -> Result<Option<Hit>> {
        let mut c = BlockCursor::new(block.block());
        c.seek(target);
        if let Some(e) = c.corruption() {
            return Err(self.corrupt(e.clone()));
        }
        if !c.valid() {
            return Ok(None);
        }
        let parsed = key::parse(c.key())
            .ok_or_else(|| self.corrupt(Corrupt::new(0, "malformed internal key")))?;
        if parsed.user_key != user_key {
            return Ok(None);
        }
        Ok(Some(Hit {
            seq: parsed.seq,
            kind: parsed.kind,
            value: match block {
                BlockRef::Mapped(_) => c.value(),
                BlockRef::Decompressed(_) | BlockRef::Pinned(_) => {
                    Bytes::copy_from_slice(c.value_ref())
                }
            },
        }))
    }

    /// An owned cursor over the whole table.
    pub fn cursor(self: &Arc<Self>) -> TableCursor {
        TableCursor {
            index: self.index.cursor(),
            table: Arc::clone(self),
            data: None,
            err: None,
            sequential: false,
            released: 0,
            pending_index: None,
            pinned: false,
        }
    }

    /// A cursor for one pass from the start to the end (a compaction's input): as it moves
    /// forward it drops the map's pages it has passed from the process's resident set, and
    /// it leaves the block cache alone, so reading a large table grows neither the process's
    /// memory nor the cache by the table's size.
    pub fn sequential_cursor(self: &Arc<Self>) -> TableCursor {
        let mut c = self.cursor();
        c.sequential = true;
        c
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        if self.obsolete.load(Ordering::Acquire)
            && let Some(fs) = &self.fs
            && let Err(e) = fs.remove_file(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), error = %e, "could not delete obsolete table");
        }
    }
}

/// A two-level cursor: the index block picks data blocks, loaded as the cursor moves.
#[derive(Debug)]
pub struct TableCursor {
    table: Arc<Table>,
    index: BlockCursor,
    data: Option<BlockCursor<BlockRef>>,
    err: Option<Error>,
    /// Made by [`Table::sequential_cursor`]: it releases the map's pages behind it, and the
    /// blocks it decompresses are not cached.
    sequential: bool,
    /// The file offset up to which pages were released.
    released: usize,
    /// Set when a seek went from the index summary straight to a data block: the index
    /// entry naming that block, where the index cursor is to be positioned before it is
    /// used. A seek that stays in its block, the common case, never reads the index block.
    pending_index: Option<usize>,
    /// Holds a pin on the table's decompressed blocks (taken at the first block read from
    /// them, released when the cursor is dropped).
    pinned: bool,
}

impl Drop for TableCursor {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        self.data = None;
        if self.pinned
            && let Some(b) = &self.table.blocks
        {
            // SAFETY: the pin was taken by `pin_blocks`, and the only block read under it
            // was just dropped.
            unsafe { b.unpin() };
        }
    }
}

impl TableCursor {
    /// The table this cursor reads.
    pub(crate) fn table(&self) -> &Table {
        &self.table
    }

    /// Releases the map's pages before file offset `upto` (a sequential cursor on a mapped
    /// table only), once at least `step` bytes have been read since the last release.
    fn release_until(&mut self, upto: usize, step: usize) {
        if !self.sequential || upto < self.released + step {
            return;
        }
        if let Some(m) = &self.table.mapped {
            m.release(self.released, upto);
        }
        self.released = upto;
    }

    /// Pins the table's decompressed blocks for the rest of the cursor's life, unless it
    /// already did, is a sequential cursor (which reads around the cache) or the table
    /// keeps none; whether it holds a pin.
    fn pin_blocks(&mut self) -> bool {
        if !self.pinned
            && !self.sequential
            && let Some(b) = &self.table.blocks
        {
            self.pinned = b.pin();
        }
        self.pinned
    }

    /// Positions the index cursor where a seek through the summary left it logically.
    fn index_ready(&mut self) {
        if let Some(i) = self.pending_index.take() {
            self.index.seek_to_restart_point(i);
        }
    }

    fn fail(&mut self, e: Corrupt) {
        if self.err.is_none() {
            self.err = Some(self.table.corrupt(e));
        }
        self.data = None;
    }

    /// Loads the data block the index cursor points at; `forward` when a scan goes on to the
    /// block after it.
    fn load(&mut self, forward: bool) -> bool {
        if let Some(e) = self.index.corruption() {
            let e = e.clone();
            self.fail(e);
            return false;
        }
        if !self.index.valid() {
            self.data = None;
            self.release_until(self.table.data.len(), 0);
            return false;
        }
        self.read_block(forward, |t, index, fill, pinned| {
            t.data_block(index, fill, pinned, forward)
        })
        .is_some()
    }

    /// Reads a data block with `read` (given the table, the index cursor, whether to cache
    /// what it decompresses and whether the cursor holds a pin) and makes it the current
    /// block, not positioned; `None` after a failure. The pin is taken and the current block
    /// dropped before the read: a cursor reads its next block with none held.
    fn read_block(
        &mut self,
        forward: bool,
        read: impl FnOnce(&Table, &BlockCursor, bool, bool) -> Result<BlockRef, Corrupt>,
    ) -> Option<&mut BlockCursor<BlockRef>> {
        let pinned = self.pin_blocks();
        let buffer = self.release_block();
        match read(&self.table, &self.index, !self.sequential, pinned) {
            Ok(b) => Some(self.put_block(b, forward, buffer)),
            Err(e) => {
                self.fail(e);
                None
            }
        }
    }

    /// Drops the current data block, for its key buffer (to make room for a block it caches,
    /// the cursor may evict its own table's blocks, so it must hold none).
    fn release_block(&mut self) -> Vec<u8> {
        self.data
            .take()
            .map(BlockCursor::into_buffer)
            .unwrap_or_default()
    }

    /// Makes `b` the current data block (not positioned), with the key buffer `buffer`
    /// (the previous block's, handed on); `forward` when a scan goes on to the block after
    /// it.
    fn put_block(
        &mut self,
        b: BlockRef,
        forward: bool,
        buffer: Vec<u8>,
    ) -> &mut BlockCursor<BlockRef> {
        self.release_until(b.block().offset() as usize, RELEASE_STEP);
        if forward {
            self.ask_for_following_block(&b);
        }
        self.data.insert(BlockCursor::reusing(b, buffer))
    }

    /// Asks for the cache lines a forward scan needs first from the block stored after `b`
    /// (when `b` is read in place from the map): its first entries, and its restart count at
    /// the end, which is read before anything else in a block. The CPU's own prefetcher does
    /// not follow a scan across that jump. The next block's size is taken to be `b`'s (blocks
    /// are cut at a target size), so the guess may miss by a line; a wrong guess costs only
    /// bandwidth.
    fn ask_for_following_block(&self, b: &BlockRef) {
        if let BlockRef::Mapped(block) = b {
            let size = block.size();
            let next = block.offset() as usize + size + trailer_len(self.table.version);
            prefetch::lines(
                &self.table.data,
                &[
                    next,
                    next + 64,
                    (next + size).saturating_sub(64),
                    next + size,
                ],
            );
        }
    }

    fn check_data(&mut self) -> bool {
        if let Some(e) = self.data.as_ref().and_then(|d| d.corruption().cloned()) {
            self.fail(e);
            return false;
        }
        self.data.as_ref().is_some_and(|d| d.valid())
    }

    fn skip_forward(&mut self) {
        while self.err.is_none() && !self.check_data() {
            self.index_ready();
            if self.data.is_none() && !self.index.valid() {
                return;
            }
            self.index.next();
            if !self.load(true) {
                return;
            }
            if let Some(d) = &mut self.data {
                d.seek_to_first();
            }
        }
    }

    fn skip_backward(&mut self) {
        self.index_ready();
        while self.err.is_none() && !self.check_data() {
            if self.data.is_none() && !self.index.valid() {
                return;
            }
            self.index.prev();
            if !self.load(false) {
                return;
            }
            if let Some(d) = &mut self.data {
                d.seek_to_last();
            }
        }
    }
}

impl Cursor for TableCursor {
    fn seek(&mut self, target: &[u8]) {
        self.pending_index = None;
        let summary = self.table.summary();
        let equal = summary.map(|s| s.narrow(key::user_key(target)));
        let named = summary.zip(equal.as_ref()).and_then(|(s, e)| s.block_in(e));
        if let Some((ordinal, h)) = named {
            // The summary names the block: go there, and leave the index for later.
            self.pending_index = Some(ordinal);
            if let Some(d) = self.read_block(true, |t, _, fill, pinned| {
                t.block_at(Some(ordinal), h, fill, pinned)
            }) {
                d.seek(target);
            }
            self.skip_forward();
            return;
        }
        seek_narrowed(&mut self.index, target, equal);
        if self.load(true)
            && let Some(d) = &mut self.data
        {
            d.seek(target);
        }
        self.skip_forward();
    }

    fn seek_to_first(&mut self) {
        self.pending_index = None;
        self.index.seek_to_first();
        if self.load(true)
            && let Some(d) = &mut self.data
        {
            d.seek_to_first();
        }
        self.skip_forward();
    }

    fn seek_for_prev(&mut self, target: &[u8]) {
        self.pending_index = None;
        self.table.seek_index(&mut self.index, target);
        if !self.index.valid() && self.index.corruption().is_none() {
            self.index.seek_to_last();
        }
        if self.load(false)
            && let Some(d) = &mut self.data
        {
            d.seek_for_prev(target);
        }
        self.skip_backward();
    }

    fn seek_to_last(&mut self) {
        self.pending_index = None;
        self.index.seek_to_last();
        if self.load(false)
            && let Some(d) = &mut self.data
        {
            d.seek_to_last();
        }
        self.skip_backward();
    }

    fn next(&mut self) {
        if let Some(d) = &mut self.data {
            d.next();
            // Within a block (most steps) there is nothing else to do: a block cursor that
            // stays on an entry has met no damage.
            if d.valid() {
                return;
            }
        }
        self.skip_forward();
    }

    fn prev(&mut self) {
        if let Some(d) = &mut self.data {
            d.prev();
        }
        self.skip_backward();
    }

    fn valid(&self) -> bool {
        self.err.is_none() && self.data.as_ref().is_some_and(|d| d.valid())
    }

    fn key(&self) -> &[u8] {
        self.data.as_ref().map_or(&[][..], |d| d.key())
    }

    fn value(&self) -> Bytes {
        match &self.data {
            // A cached block's bytes are valid under the cursor's pin only.
            Some(d) if matches!(d.holder(), BlockRef::Pinned(_)) => {
                Bytes::copy_from_slice(d.value_ref())
            }
            Some(d) => d.value(),
            None => Bytes::new(),
        }
    }

    fn value_ref(&self) -> &[u8] {
        self.data.as_ref().map_or(&[][..], |d| d.value_ref())
    }

    fn status(&self) -> Result<()> {
        match &self.err {
            None => Ok(()),
            Some(e) => Err(e.duplicate()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::table_builder::{TableBuilder, TableOptions};
    use super::*;
    use crate::fs::WritableFile;
    use crate::key::Kind;
    use crate::sstable::block_cache::BlockCache;
    use std::sync::Mutex;

    #[derive(Debug, Clone, Default)]
    struct MemFile(Arc<Mutex<Vec<u8>>>);

    impl WritableFile for MemFile {
        fn append(&mut self, data: &[u8]) -> std::io::Result<()> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(())
        }
        fn sync(&mut self) -> std::io::Result<()> {
            Ok(())
        }
        fn truncate(&mut self, len: u64) -> std::io::Result<()> {
            self.0.lock().unwrap().truncate(len as usize);
            Ok(())
        }
    }

    fn user(i: u32) -> Vec<u8> {
        format!("key{i:05}").into_bytes()
    }

    /// A table of 2000 keys in many 512-byte blocks.
    fn build() -> Vec<u8> {
        build_with(Compression::None)
    }

    fn build_with(compression: Compression) -> Vec<u8> {
        let file = MemFile::default();
        let opts = TableOptions {
            block_bytes: 512,
            restart_interval: 16,
            filter_bits_per_key: 10,
            compression,
        };
        let mut b = TableBuilder::new(Box::new(file.clone()), opts);
        for i in 0..2000 {
            let k = key::encode(&user(i), SeqNo::new(u64::from(i) + 1), Kind::Put as u8);
            b.add(&k, format!("value{i}").as_bytes()).unwrap();
        }
        b.finish().unwrap();
        file.0.lock().unwrap().clone()
    }

    fn get(t: &Table, i: u32) -> Result<Option<Hit>> {
        let u = user(i);
        t.get(&u, crate::hash::hash64(&u), u64::MAX >> 8)
    }

    #[test]
    fn damage_in_a_data_block_is_found_on_its_first_read() {
        let mut bytes = build();
        let clean = Table::from_bytes(Bytes::from(bytes.clone()), 1, Path::new("t.sst")).unwrap();
        // Read everything once: every block is now known good in this table.
        for i in 0..2000 {
            assert!(get(&clean, i).unwrap().is_some());
        }
        // Damage a byte in the middle of the data blocks of a fresh copy.
        let victim = bytes.len() / 3;
        bytes[victim] ^= 0x20;
        let t = Arc::new(Table::from_bytes(Bytes::from(bytes), 1, Path::new("t.sst")).unwrap());
        let results: Vec<_> = (0..2000).map(|i| get(&t, i)).collect();
        let bad = results.iter().filter(|r| r.is_err()).count();
        assert!(bad > 0 && bad < 100, "{bad} lookups failed");
        assert!(
            results
                .iter()
                .filter_map(|r| r.as_ref().err())
                .all(Error::is_corruption)
        );
        // The damaged block keeps failing; it is never remembered as good.
        let first_bad = results.iter().position(|r| r.is_err()).unwrap() as u32;
        assert!(get(&t, first_bad).is_err());
        // A scan stops with the error instead of returning the damaged entries.
        let mut c = t.cursor();
        c.seek_to_first();
        let mut n = 0;
        while c.valid() {
            n += 1;
            c.next();
        }
        assert!(n < 2000);
        assert!(c.status().unwrap_err().is_corruption());
    }

    fn scan(t: &Arc<Table>) -> Result<Vec<(Vec<u8>, Bytes)>> {
        let mut c = t.cursor();
        c.seek_to_first();
        let mut out = Vec::new();
        while c.valid() {
            out.push((c.key().to_vec(), c.value()));
            c.next();
        }
        c.status().map(|()| out)
    }

    /// Seeks (both directions) and gets on a table whose keys share a long prefix, with runs
    /// of keys that agree on the eight bytes after it (so the index summary ranks many
    /// index entries alike): every answer matches a plain search of the sorted keys.
    #[test]
    fn seeks_through_the_index_summary_match_a_plain_search() {
        let mut users: Vec<Vec<u8>> = Vec::new();
        for i in 0..600u32 {
            users.push(format!("tenant/{:08}", i * 3).into_bytes());
        }
        for i in 0..400u32 {
            // Equal on the 8 bytes after the common prefix "tenant/": a long run of one rank.
            users.push(format!("tenant/99999999/{i:05}").into_bytes());
        }
        users.sort();
        let file = MemFile::default();
        let opts = TableOptions {
            block_bytes: 256,
            restart_interval: 4,
            filter_bits_per_key: 10,
            compression: Compression::None,
        };
        let mut b = TableBuilder::new(Box::new(file.clone()), opts);
        let ikeys: Vec<Vec<u8>> = users
            .iter()
            .enumerate()
            .map(|(i, u)| key::encode(u, SeqNo::new(i as u64 + 1), Kind::Put as u8))
            .collect();
        for k in &ikeys {
            b.add(k, b"v").unwrap();
        }
        b.finish().unwrap();
        let bytes = file.0.lock().unwrap().clone();
        let t = Arc::new(Table::from_bytes(Bytes::from(bytes), 1, Path::new("t.sst")).unwrap());
        assert!(
            t.summary().is_some(),
            "the summary is built for a sound index"
        );

        let mut targets: Vec<Vec<u8>> = users.clone();
        for u in &users {
            let mut after = u.clone();
            after.push(0);
            targets.push(after);
            let mut before = u.clone();
            before.pop();
            targets.push(before);
        }
        targets.extend([
            b"".to_vec(),
            b"tenant".to_vec(),
            b"tenant/".to_vec(),
            b"tenant0".to_vec(),
            b"zzz".to_vec(),
        ]);
        let mut c = t.cursor();
        for user in &targets {
            let target = key::encode(user, SeqNo::MAX, KIND_SEEK);
            let want = ikeys.iter().find(|k| key::compare(k, &target).is_ge());
            c.seek(&target);
            assert_eq!(
                c.valid().then(|| c.key().to_vec()).as_ref(),
                want,
                "seek {user:?}"
            );
            // Steps after a seek cross into the blocks that follow, or back into those
            // before: the index is where the seek left it, whether it was read or not.
            if let Some(at) = ikeys.iter().position(|k| key::compare(k, &target).is_ge()) {
                for step in 1..=24 {
                    c.next();
                    let want = ikeys.get(at + step);
                    assert_eq!(c.valid().then(|| c.key().to_vec()).as_ref(), want);
                    if want.is_none() {
                        break;
                    }
                }
                c.seek(&target);
                for step in 1..=24 {
                    c.prev();
                    let want = at.checked_sub(step).and_then(|i| ikeys.get(i));
                    assert_eq!(c.valid().then(|| c.key().to_vec()).as_ref(), want);
                    if want.is_none() {
                        break;
                    }
                }
            }
            let want_prev = ikeys
                .iter()
                .rev()
                .find(|k| key::compare(k, &target).is_le());
            c.seek_for_prev(&target);
            assert_eq!(
                c.valid().then(|| c.key().to_vec()).as_ref(),
                want_prev,
                "seek_for_prev {user:?}"
            );
            let hit = t
                .get(user, crate::hash::hash64(user), u64::MAX >> 8)
                .unwrap()
                .map(|h| h.seq);
            let want_hit = users.iter().position(|u| u == user).map(|i| i as u64 + 1);
            assert_eq!(hit, want_hit, "get {user:?}");
        }
    }

    /// A full pass with a sequential cursor reads what a plain cursor reads, and leaves
    /// little of the mapped file resident; a plain cursor leaves all of it.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_sequential_cursor_reads_everything_and_releases_the_pages_behind_it() {
        let dir = tempfile::tempdir().unwrap();
        let fs: Arc<dyn FileSystem> = Arc::new(crate::fs::StdFs);
        let path = dir.path().join("000001.sst");
        let opts = TableOptions {
            block_bytes: 4096,
            restart_interval: 16,
            filter_bits_per_key: 10,
            compression: Compression::None,
        };
        let mut b = TableBuilder::new(fs.create(&path).unwrap(), opts);
        let value = vec![b'v'; 1000];
        for i in 0..10_000u32 {
            let k = key::encode(&user(i), SeqNo::new(u64::from(i) + 1), Kind::Put as u8);
            b.add(&k, &value).unwrap();
        }
        b.finish().unwrap();
        let size = std::fs::metadata(&path).unwrap().len() as usize;
        assert!(size > 8 << 20);

        let plain = Arc::new(Table::open(Arc::clone(&fs), &path, 1).unwrap());
        let expected = scan(&plain).unwrap();
        assert_eq!(expected.len(), 10_000);
        assert!(crate::mmap::resident_bytes_of(&path) > size / 2);
        drop(expected);
        drop(plain);
        assert_eq!(
            crate::mmap::resident_bytes_of(&path),
            0,
            "the map is gone with its table"
        );

        let t = Arc::new(Table::open(Arc::clone(&fs), &path, 1).unwrap());
        let mut c = t.sequential_cursor();
        c.seek_to_first();
        let mut n = 0u32;
        let mut most = 0;
        while c.valid() {
            let want = key::encode(&user(n), SeqNo::new(u64::from(n) + 1), Kind::Put as u8);
            assert_eq!(c.key(), &want[..]);
            assert_eq!(&c.value()[..], &value[..]);
            n += 1;
            if n.is_multiple_of(500) {
                most = most.max(crate::mmap::resident_bytes_of(&path));
            }
            c.next();
        }
        c.status().unwrap();
        assert_eq!(n, 10_000);
        assert!(
            most < 4 << 20,
            "{most} bytes of a {size}-byte table resident during the pass"
        );
        assert!(crate::mmap::resident_bytes_of(&path) < 1 << 20);
        // Released pages stay readable.
        assert_eq!(scan(&t).unwrap().len(), 10_000);
    }

    #[test]
    fn compressed_tables_read_like_uncompressed_ones_and_hit_the_cache() {
        let plain = build();
        let packed = build_with(Compression::Lz4);
        assert!(
            packed.len() < plain.len() * 2 / 3,
            "{} vs {}",
            packed.len(),
            plain.len()
        );
        let cache = Arc::new(BlockCache::new(1 << 20));
        let p = Arc::new(Table::from_bytes(Bytes::from(plain), 1, Path::new("p.sst")).unwrap());
        let c = Arc::new(
            Table::from_bytes(Bytes::from(packed), 2, Path::new("c.sst"))
                .unwrap()
                .with_cache(Arc::clone(&cache)),
        );
        assert_eq!(c.format_version(), 2);
        assert_eq!(p.props().compressed_blocks, 0);
        // Every block shrinks but perhaps the last, short one.
        let compressed = c.props().compressed_blocks;
        assert!(compressed + 1 >= c.props().data_blocks && compressed > 50);
        assert_eq!(c.props().raw_data_bytes, p.props().raw_data_bytes);
        assert_eq!(scan(&p).unwrap(), scan(&c).unwrap());
        let first = cache.stats();
        assert_eq!(first.misses, compressed);
        assert_eq!(first.blocks, compressed);
        for i in 0..2000 {
            let (a, b) = (get(&p, i).unwrap().unwrap(), get(&c, i).unwrap().unwrap());
            assert_eq!((a.seq, a.value), (b.seq, b.value));
        }
        let second = cache.stats();
        assert_eq!(second.misses, first.misses, "every block was cached");
        assert!(second.hits > 1900, "{second:?}");
        // Without a cache, compressed blocks are decompressed on every read.
        let bare = Table::from_bytes(Bytes::from(build_with(Compression::Lz4)), 3, Path::new("b"));
        assert!(get(&bare.unwrap(), 7).unwrap().is_some());
        // A sequential pass (a compaction's) reads through the cache but adds nothing to it.
        let d = Arc::new(
            Table::from_bytes(Bytes::from(build_with(Compression::Lz4)), 4, Path::new("d"))
                .unwrap()
                .with_cache(Arc::clone(&cache)),
        );
        let blocks = cache.stats().blocks;
        let mut cur = d.sequential_cursor();
        cur.seek_to_first();
        let mut n = 0;
        while cur.valid() {
            n += 1;
            cur.next();
        }
        assert_eq!(n, 2000);
        assert_eq!(cache.stats().blocks, blocks);
        assert_eq!(scan(&d).unwrap().len(), 2000);
        assert_eq!(
            cache.stats().blocks,
            blocks + compressed,
            "a plain cursor fills it"
        );
    }

    #[test]
    fn a_table_compressed_throughout_asks_the_cache_once_per_read() {
        // Values of one repeated letter: every block, the last one too, shrinks.
        let file = MemFile::default();
        let opts = TableOptions {
            block_bytes: 512,
            restart_interval: 16,
            filter_bits_per_key: 10,
            compression: Compression::Lz4,
        };
        let mut b = TableBuilder::new(Box::new(file.clone()), opts);
        for i in 0..2000 {
            let k = key::encode(&user(i), SeqNo::new(u64::from(i) + 1), Kind::Put as u8);
            b.add(&k, &[b'a' + (i % 26) as u8; 60]).unwrap();
        }
        b.finish().unwrap();
        let bytes = file.0.lock().unwrap().clone();
        let cache = Arc::new(BlockCache::new(1 << 20));
        let t = Arc::new(
            Table::from_bytes(Bytes::from(bytes), 1, Path::new("t.sst"))
                .unwrap()
                .with_cache(Arc::clone(&cache)),
        );
        let blocks = t.props().data_blocks;
        assert!(blocks > 50);
        assert_eq!(t.props().compressed_blocks, blocks);
        assert_eq!(scan(&t).unwrap().len(), 2000);
        let s = cache.stats();
        // One lookup per block on the way in, none counted twice.
        assert_eq!((s.misses, s.hits, s.blocks), (blocks, 0, blocks));
        for i in 0..2000 {
            let hit = get(&t, i).unwrap().unwrap();
            assert_eq!(&hit.value[..], &[b'a' + (i % 26) as u8; 60][..]);
        }
        let s = cache.stats();
        assert_eq!((s.misses, s.hits), (blocks, 2000));
    }

    #[test]
    fn damage_in_a_compressed_block_is_corruption() {
        let clean = build_with(Compression::Lz4);
        // Every single-bit flip anywhere in the data blocks is caught by a scan or lookup
        // (mostly by the checksum; with the checksum fixed up, by the decoder or the block
        // checks), and none panics.
        let t = Table::from_bytes(Bytes::from(clean.clone()), 1, Path::new("t.sst")).unwrap();
        let data_end = t.index.cursor().corruption().map_or(0, |_| 0) + {
            let mut ic = t.index.cursor();
            ic.seek_to_last();
            let h = BlockHandle::decode(&ic.value()).unwrap();
            (h.offset + h.size) as usize
        };
        for at in (0..data_end).step_by(7) {
            let mut bytes = clean.clone();
            bytes[at] ^= 0x04;
            let t = Arc::new(Table::from_bytes(Bytes::from(bytes), 1, Path::new("t")).unwrap());
            let e = scan(&t).unwrap_err();
            assert!(e.is_corruption(), "flip at {at}: {e}");
        }
        // Rewrite one block's payload with garbage and a valid checksum: the decoder must
        // refuse it with a corruption error.
        let mut ic = t.index.cursor();
        ic.seek_to_first();
        let h = BlockHandle::decode(&ic.value()).unwrap();
        let (start, end) = (h.offset as usize, (h.offset + h.size) as usize);
        let mut bytes = clean.clone();
        for b in &mut bytes[start + 2..end] {
            *b = 0xff;
        }
        let crc = super::super::format::block_crc(
            h.offset,
            &bytes[start..end],
            BlockType::Data as u8,
            Some(Compression::Lz4.code()),
        );
        bytes[end + 2..end + 6].copy_from_slice(&crc.to_le_bytes());
        let t = Arc::new(Table::from_bytes(Bytes::from(bytes), 1, Path::new("t")).unwrap());
        let e = get(&t, 0).unwrap_err();
        assert!(e.is_corruption(), "{e}");
        assert!(scan(&t).unwrap_err().is_corruption());
    }

    #[test]
    fn version_1_tables_still_read() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/table-v1-store");
        let bytes = std::fs::read(dir.join("000005.sst")).unwrap();
        let t = Arc::new(Table::from_bytes(Bytes::from(bytes), 5, Path::new("x")).unwrap());
        assert_eq!(t.format_version(), 1);
        assert_eq!(t.props().compressed_blocks, 0);
        let all = scan(&t).unwrap();
        assert_eq!(all.len(), 300);
        assert_eq!(key::user_key(&all[0].0), b"key00000");
        let hit = t
            .get(b"key00002", crate::hash::hash64(b"key00002"), u64::MAX >> 8)
            .unwrap()
            .unwrap();
        assert_eq!(&hit.value[..], b"v1-value-0-1-x");
    }
}
