//! The decompressed data blocks one table keeps in memory: one slot per data block (by its
//! index ordinal), read under a pin instead of a reference count per read.
//!
//! A slot is one word: the address of the block's decompressed contents in its low 47 bits,
//! a referenced bit, and their length in the high 16 (0 for an empty slot), so it is filled,
//! read and emptied by single atomic operations, and a reader finds a cached block with one
//! load from an array the table owns, where a shared hash table needs a probe, an entry and
//! a reference count. Blocks whose address or length does not fit are not kept.
//!
//! The pin is a counter per table. Readers add one before they read slots and subtract it
//! when they hold none of the blocks they read. Blocks are freed only by an eviction that
//! moved the counter from 0 to [`EVICTING`] (or from 1, when the one pinned reader is the
//! evictor and holds no block of the table): while any other reader holds a pin no block of
//! the table is freed, and a reader that pins while an eviction runs finds the flag, takes
//! its pin back and reads without the slots (decompressing into memory of its own). An
//! eviction is a clock sweep over the slots: a block read since the hand last passed loses
//! its referenced bit and stays, the next one is freed. This is the only module of the crate
//! that frees decompressed blocks.
#![allow(unsafe_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;

use super::block_cache::BlockCache;
use crate::prefetch;

/// Set in the pin counter while the cache empties the table's slots.
const EVICTING: u32 = 1 << 31;
/// Bits of a slot holding the address.
const ADDRESS_BITS: u32 = 47;
const ADDRESS_MASK: u64 = (1 << ADDRESS_BITS) - 1;
/// Set in a slot when its block was read since the eviction hand last passed.
const REFERENCED: u64 = 1 << ADDRESS_BITS;
/// Where a slot's length starts.
const LEN_SHIFT: u32 = ADDRESS_BITS + 1;
/// The largest block a slot can hold.
pub const MAX_CACHED_BLOCK: usize = (1 << (64 - LEN_SHIFT)) - 1;

/// Packs a block's address and length into a slot word, when both fit.
fn pack(address: *mut u8, len: usize) -> Option<u64> {
    let a = address as usize as u64;
    (a & !ADDRESS_MASK == 0 && (1..=MAX_CACHED_BLOCK).contains(&len))
        .then_some(a | ((len as u64) << LEN_SHIFT))
}

/// The address and length a non-empty slot word holds.
fn unpack(word: u64) -> (*mut u8, usize) {
    (
        (word & ADDRESS_MASK) as usize as *mut u8,
        (word >> LEN_SHIFT) as usize,
    )
}

/// Frees the block a non-empty slot word names.
///
/// # Safety
/// `word` was made by [`pack`] from a `Box<[u8]>` given up with `Box::into_raw`, and no
/// other copy of it will be freed or read.
unsafe fn free(word: u64) {
    let (address, len) = unpack(word);
    // SAFETY: the caller's contract: this is the box `pack` was given, freed once.
    drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(address, len)) });
}

/// The decompressed blocks of one open table.
pub struct TableBlocks {
    slots: Box<[AtomicU64]>,
    pins: AtomicU32,
    /// The slot the eviction sweep looks at next (moved only while evicting).
    hand: AtomicUsize,
    /// 1 + the ordinal of the block cached last, 0 when none waits: the first block given up
    /// to make room for the next one unless a read found it in between.
    probation: AtomicUsize,
    /// Blocks held and their bytes (contents plus the cache's overhead per block).
    blocks: AtomicU64,
    bytes: AtomicU64,
    cache: Arc<BlockCache>,
}

impl std::fmt::Debug for TableBlocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableBlocks")
            .field("slots", &self.slots.len())
            .field("blocks", &self.blocks.load(Ordering::Relaxed))
            .field("bytes", &self.bytes.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// A pin on a table's blocks, released when dropped.
#[derive(Debug)]
pub struct Pin<'a>(&'a TableBlocks);

impl Drop for Pin<'_> {
    fn drop(&mut self) {
        // SAFETY: the pin was taken by `try_pin`; whatever was read under it borrowed `self`.
        unsafe { self.0.unpin() }
    }
}

impl Pin<'_> {
    /// The cached block `ordinal`, if any, borrowed for as long as the pin is held.
    pub fn get(&self, ordinal: usize) -> Option<&[u8]> {
        let (address, len) = self.0.word(ordinal).map(unpack)?;
        // SAFETY: a non-empty slot holds a live block, which is not freed while this pin is
        // held, and the borrow ends with the pin.
        Some(unsafe { std::slice::from_raw_parts(address, len) })
    }
}

/// The bytes of the live block a non-empty slot word names, presented as static.
///
/// # Safety
/// The block stays live (the table stays pinned) until the returned bytes and their clones
/// are dropped.
unsafe fn bytes_of(word: u64) -> Bytes {
    let (address, len) = unpack(word);
    // SAFETY: the caller's contract.
    let data: &'static [u8] = unsafe { std::slice::from_raw_parts(address, len) };
    Bytes::from_static(data)
}

impl TableBlocks {
    /// Empty slots for a table of `data_blocks` blocks, accounted in `cache`.
    pub(super) fn new(data_blocks: usize, cache: Arc<BlockCache>) -> TableBlocks {
        TableBlocks {
            slots: (0..data_blocks).map(|_| AtomicU64::new(0)).collect(),
            pins: AtomicU32::new(0),
            hand: AtomicUsize::new(0),
            probation: AtomicUsize::new(0),
            blocks: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            cache,
        }
    }

    /// Pins the table, or returns false when the cache is emptying it (then its slots must
    /// not be read). A `true` must be matched by one [`unpin`](Self::unpin).
    pub fn pin(&self) -> bool {
        let before = self.pins.fetch_add(1, Ordering::Acquire);
        if before & EVICTING != 0 {
            self.pins.fetch_sub(1, Ordering::Release);
            return false;
        }
        true
    }

    /// A pin released when dropped, or `None` when the cache is emptying the table.
    pub fn try_pin(&self) -> Option<Pin<'_>> {
        self.pin().then(|| Pin(self))
    }

    /// Releases a pin.
    ///
    /// # Safety
    /// The caller took the pin with a successful [`pin`](Self::pin) and no longer holds any
    /// [`Bytes`] it got from [`get`](Self::get) or [`insert`](Self::insert) under it.
    pub unsafe fn unpin(&self) {
        self.pins.fetch_sub(1, Ordering::Release);
    }

    /// The cached block `ordinal`, if any.
    ///
    /// # Safety
    /// The caller holds a pin, and drops the returned [`Bytes`] and every clone of it before
    /// releasing the pin (the bytes are freed once the table is unpinned and evicted).
    pub unsafe fn get(&self, ordinal: usize) -> Option<Bytes> {
        let word = self.word(ordinal)?;
        if word & REFERENCED == 0 {
            // Only an eviction clears the bit or the slot, and none runs while this reader
            // holds its pin.
            if let Some(slot) = self.slots.get(ordinal) {
                slot.fetch_or(REFERENCED, Ordering::Relaxed);
            }
        }
        // SAFETY: a non-empty slot holds a live block, which is not freed while the caller's
        // pin is held (eviction needs the counter at 0); the caller does not keep the bytes
        // past the pin.
        Some(unsafe { bytes_of(word) })
    }

    /// The word of slot `ordinal`, when it holds a block.
    fn word(&self, ordinal: usize) -> Option<u64> {
        let word = self.slots.get(ordinal)?.load(Ordering::Acquire);
        (word != 0).then_some(word)
    }

    /// Asks for the cache lines at offsets `at` from the end of cached block `ordinal`, and
    /// `from_start` from its start, if it is cached; reads nothing and needs no pin.
    pub fn ask_for(&self, ordinal: usize, from_start: &[usize], from_end: &[usize]) {
        let Some(word) = self.slots.get(ordinal).map(|s| s.load(Ordering::Relaxed)) else {
            return;
        };
        if word == 0 {
            return;
        }
        let (address, len) = unpack(word);
        let at = |off: usize| address.wrapping_add(off.min(len.saturating_sub(1)));
        for &o in from_start {
            prefetch::address(at(o));
        }
        for &o in from_end {
            prefetch::address(at(len.saturating_sub(o)));
        }
    }

    /// Keeps `contents` as block `ordinal`, if the cache has room for it, and returns the
    /// cached bytes; otherwise (or when another reader cached the block first, whose copy is
    /// returned instead) gives `contents` back as owned bytes.
    ///
    /// # Safety
    /// As for [`get`](Self::get): the caller holds a pin and drops what is returned before
    /// releasing it. Besides, it holds no block of this table read under its pin (to make
    /// room, it may evict this table's blocks when its pin is the only one).
    pub unsafe fn insert(&self, ordinal: usize, contents: Vec<u8>) -> Bytes {
        let Some(slot) = self.slots.get(ordinal) else {
            return Bytes::from(contents);
        };
        let weight = BlockCache::weight(contents.len());
        if contents.len() > MAX_CACHED_BLOCK || !self.cache.reserve(weight, self) {
            return Bytes::from(contents);
        }
        let raw = Box::into_raw(contents.into_boxed_slice());
        let Some(word) = pack(raw.cast::<u8>(), raw.len()) else {
            self.cache.release(weight, 0);
            // SAFETY: `raw` came from `Box::into_raw` just above and was not shared.
            return Bytes::from(unsafe { Box::from_raw(raw) });
        };
        match slot.compare_exchange(0, word, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => {
                self.probation.store(ordinal + 1, Ordering::Relaxed);
                self.blocks.fetch_add(1, Ordering::Relaxed);
                self.bytes.fetch_add(weight, Ordering::Relaxed);
                self.cache.added(1);
                // SAFETY: just published in the slot, under the caller's pin.
                unsafe { bytes_of(word) }
            }
            Err(theirs) => {
                self.cache.release(weight, 0);
                // SAFETY: our word was not published; the box is still ours alone.
                unsafe { free(word) };
                // SAFETY: the block another reader cached is live under the caller's pin.
                unsafe { bytes_of(theirs) }
            }
        }
    }

    /// The cache whose bound these blocks count against.
    pub fn cache(&self) -> &BlockCache {
        &self.cache
    }

    /// Bytes of the slot array itself.
    pub fn slot_bytes(&self) -> u64 {
        (self.slots.len() * std::mem::size_of::<AtomicU64>()) as u64
    }

    /// Bytes held (contents plus overhead).
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Frees the block cached last, if no read found it since (a block read once, as a scan
    /// or a random read over more data than the cache holds leaves them, goes before blocks
    /// read again, and while its memory is still warm). The caller is a reader making room
    /// for a block of this table, holding one pin on it and no block read under it (as
    /// `by_own_reader` for [`evict`](Self::evict)); nothing is freed when others hold pins.
    pub(super) fn evict_probation(&self) {
        let Some(ordinal) = self.probation.swap(0, Ordering::Relaxed).checked_sub(1) else {
            return;
        };
        self.exclusive(true, || {
            let Some(slot) = self.slots.get(ordinal) else {
                return (0, 0);
            };
            let word = slot.load(Ordering::Relaxed);
            if word == 0 || word & REFERENCED != 0 {
                return (0, 0);
            }
            slot.store(0, Ordering::Relaxed);
            // SAFETY: as in `evict`.
            unsafe { free(word) };
            (1, BlockCache::weight(unpack(word).1))
        });
    }

    /// Runs `free` (which empties slots, returning the blocks and bytes it freed) with the
    /// table to itself: no other reader pinned, and none able to pin until it returns. Does
    /// nothing and returns 0 when another reader holds a pin.
    fn exclusive(&self, by_own_reader: bool, free: impl FnOnce() -> (u64, u64)) -> u64 {
        let pinned = u32::from(by_own_reader);
        if self
            .pins
            .compare_exchange(
                pinned,
                pinned | EVICTING,
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .is_err()
        {
            return 0;
        }
        let (blocks, bytes) = free();
        self.blocks.fetch_sub(blocks, Ordering::Relaxed);
        self.bytes.fetch_sub(bytes, Ordering::Relaxed);
        self.cache.release(bytes, blocks);
        self.pins.fetch_and(!EVICTING, Ordering::Release);
        bytes
    }

    /// Frees blocks not read since the hand last passed, until `need` bytes are freed or the
    /// hand went once round; the bytes freed. `by_own_reader`: the caller holds the only pin
    /// on the table and no block read under it. Frees nothing when another reader holds a pin.
    pub(super) fn evict(&self, need: u64, by_own_reader: bool) -> u64 {
        self.exclusive(by_own_reader, || {
            let n = self.slots.len();
            let mut hand = self.hand.load(Ordering::Relaxed);
            let (mut blocks, mut bytes) = (0, 0);
            for _ in 0..n {
                hand = (hand + 1) % n;
                let Some(slot) = self.slots.get(hand) else {
                    break;
                };
                let word = slot.load(Ordering::Relaxed);
                if word == 0 {
                    continue;
                }
                if word & REFERENCED != 0 {
                    slot.store(word & !REFERENCED, Ordering::Relaxed);
                    continue;
                }
                slot.store(0, Ordering::Relaxed);
                bytes += BlockCache::weight(unpack(word).1);
                blocks += 1;
                // SAFETY: the word was taken out of its slot, and no reader that could hold
                // it is pinned (the counter was at 0, or at 1 for the caller, who holds none).
                unsafe { free(word) };
                if bytes >= need {
                    break;
                }
            }
            self.hand.store(hand, Ordering::Relaxed);
            (blocks, bytes)
        })
    }

    /// Empties every slot; only when no reader can hold a pin (the table is dropped).
    fn free_all(&mut self) {
        let mut blocks = 0;
        let mut bytes = 0;
        for slot in self.slots.iter_mut() {
            let word = std::mem::take(slot.get_mut());
            if word != 0 {
                bytes += BlockCache::weight(unpack(word).1);
                blocks += 1;
                // SAFETY: the word was taken out of its slot, and nobody holds a pin.
                unsafe { free(word) };
            }
        }
        self.blocks.fetch_sub(blocks, Ordering::Relaxed);
        self.bytes.fetch_sub(bytes, Ordering::Relaxed);
        self.cache.release(bytes, blocks);
    }
}

impl Drop for TableBlocks {
    fn drop(&mut self) {
        self.free_all();
        self.cache.slots_dropped(self.slot_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_words_round_trip_and_refuse_what_does_not_fit() {
        let a = 0x7f12_3456_7890usize as *mut u8;
        let w = pack(a, 4096).unwrap();
        assert_eq!(unpack(w), (a, 4096));
        assert_eq!(unpack(w | REFERENCED), (a, 4096));
        assert_eq!(
            unpack(pack(a, MAX_CACHED_BLOCK).unwrap()).1,
            MAX_CACHED_BLOCK
        );
        assert!(pack(a, 0).is_none());
        assert!(pack(a, MAX_CACHED_BLOCK + 1).is_none());
        assert!(pack((1usize << 47) as *mut u8, 10).is_none());
    }

    #[test]
    fn a_pinned_table_is_not_evicted_and_an_evicting_one_is_not_pinned() {
        let cache = Arc::new(BlockCache::new(1 << 20));
        let t = cache.register(4).unwrap();
        assert!(t.pin());
        // SAFETY: pinned; the bytes are dropped before the unpin below.
        let b = unsafe { t.insert(1, vec![7; 1000]) };
        assert_eq!(&b[..], &[7; 1000][..]);
        assert_eq!(
            t.evict(u64::MAX, false),
            0,
            "a pinned table keeps its blocks"
        );
        // SAFETY: still pinned.
        assert_eq!(unsafe { t.get(1) }.as_deref(), Some(&[7u8; 1000][..]));
        drop(b);
        // SAFETY: nothing read under the pin is held.
        unsafe { t.unpin() };
        // The read set the block's referenced bit: the first pass only clears it.
        assert_eq!(t.evict(u64::MAX, false), 0);
        assert_eq!(t.evict(u64::MAX, false), BlockCache::weight(1000));
        assert_eq!(
            (t.bytes(), cache.stats().bytes, cache.stats().blocks),
            (0, 0, 0)
        );
        t.pins.fetch_or(EVICTING, Ordering::Relaxed);
        assert!(
            t.try_pin().is_none(),
            "no pin while the table is being emptied"
        );
        t.pins.fetch_and(!EVICTING, Ordering::Relaxed);
        let p = t.try_pin().unwrap();
        assert!(p.get(1).is_none());
        // Its only reader, holding no block, may evict the table it pins.
        drop(p);
        assert!(t.pin());
        // SAFETY: pinned; dropped at once.
        drop(unsafe { t.insert(2, vec![1; 10]) });
        assert_eq!(t.evict(u64::MAX, true), BlockCache::weight(10));
        // SAFETY: nothing read under the pin is held.
        unsafe { t.unpin() };
    }

    #[test]
    fn a_second_insert_of_a_block_returns_the_first() {
        let cache = Arc::new(BlockCache::new(1 << 20));
        let t = cache.register(2).unwrap();
        assert!(t.pin());
        // SAFETY: pinned; both are dropped before the unpin.
        let (a, b) = unsafe { (t.insert(0, vec![1; 100]), t.insert(0, vec![2; 100])) };
        assert_eq!((a[0], b[0]), (1, 1));
        assert_eq!(cache.stats().blocks, 1);
        assert_eq!(cache.stats().bytes, BlockCache::weight(100));
        drop((a, b));
        // SAFETY: nothing read under the pin is held.
        unsafe { t.unpin() };
        drop(t);
        assert_eq!(
            cache.stats().bytes,
            0,
            "a dropped table gives its bytes back"
        );
    }
}
