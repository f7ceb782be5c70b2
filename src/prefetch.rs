//! Hints that ask the CPU to bring cache lines in before they are read, so that misses a
//! search would otherwise take one after another overlap. A seek that positions several
//! sorted runs asks for each run's block before searching any of them; a binary search asks
//! for both of its possible next probes while it compares.
//!
//! A hint reads nothing and cannot fault, so a wrong guess costs only memory bandwidth. On
//! targets without a prefetch instruction in the standard library the hints do nothing.
#![allow(unsafe_code)]

/// Asks for the cache lines holding `items[i]` for each `i` in `at`; an index past the end
/// is ignored.
#[inline]
pub(crate) fn lines<T>(items: &[T], at: &[usize]) {
    for &i in at {
        if let Some(item) = items.get(i) {
            line(item);
        }
    }
}

/// Asks for the cache line holding the byte at `address`, which need not be live (a hint
/// never reads it).
#[inline]
pub(crate) fn address(address: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` only hints the cache: it performs no access the program can
    // observe and never faults, whatever the address.
    unsafe {
        use core::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(address.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}

/// Asks for the cache line holding `item`.
#[inline]
fn line<T>(item: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` only hints the cache: it performs no access the program can
    // observe and never faults, and the address is that of a live reference.
    unsafe {
        use core::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(item).cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = item;
}
