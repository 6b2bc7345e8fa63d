//! The program's memory allocator: mimalloc, which keeps freed pages for reuse instead of
//! returning every large tensor to the kernel (with glibc's allocator a third of a CPU
//! training step went to page faults and munmap), with two changes measured on training
//! steps, where the same large tensors are freed and allocated again every step:
//! - freed pages are never handed back ([`keep_freed_pages`]);
//! - a zeroed block is allocated and then cleared here ([`Allocator`]), not by mimalloc.
//!
//! The binary installs it (`main.rs`); the library's tests run on the system allocator and
//! test this one directly.
use std::alloc::{GlobalAlloc, Layout};

/// `mi_option_purge_delay` in mimalloc.h (v2 and v3), which the Rust bindings do not name.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Tells mimalloc never to hand freed pages back to the kernel: purging them after its
/// default 10 ms made the kernel clear every page again on the next step (ResNet-50 batch 32
/// at 128 px: 10.1 -> 15.8 img/s). Call it once at start-up, before other threads allocate.
pub fn keep_freed_pages() {
    // SAFETY: sets a process-wide option, an integer mimalloc reads atomically.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

/// mimalloc, except that a zeroed allocation is a plain one cleared in place. mimalloc's own
/// zeroed allocation of a large block (`vec![0.0; n]`, every tensor op's output) can hand
/// back pages that the kernel clears again on first touch: one 33.5 MB buffer (ResNet-18's
/// max-pool gradient, batch 32 at 128 px) took 24 ms that way against 0.7 ms cleared in
/// place (AMD EPYC, 2 cores; how often it happens depends on the machine's memory).
pub struct Allocator;

// SAFETY: every method forwards to mimalloc's with the caller's layout and pointer; the
// bytes `alloc_zeroed` clears are the `layout.size()` bytes mimalloc has just allocated.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract (a layout of non-zero size), passed on.
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on; a non-null block holds `layout.size()`
        // writable bytes.
        unsafe {
            let p = mimalloc::MiMalloc.alloc(layout);
            if !p.is_null() {
                std::ptr::write_bytes(p, 0, layout.size());
            }
            p
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract (`ptr` came from this allocator with `layout`).
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A zeroed block is zero even where the memory was just freed dirty, for small and
    /// large (33.5 MB, a tensor's) sizes and a large alignment; `realloc` keeps the bytes.
    #[test]
    fn zeroed_blocks_are_zero_after_dirty_frees() {
        for (size, align) in [(24, 8), (4096, 64), (33_554_432, 64), (1 << 20, 4096)] {
            let layout = Layout::from_size_align(size, align).unwrap();
            for _ in 0..3 {
                // SAFETY: non-zero sizes; each block is freed with its own layout.
                unsafe {
                    let dirty = Allocator.alloc(layout);
                    assert!(!dirty.is_null());
                    std::ptr::write_bytes(dirty, 0xA5, size);
                    Allocator.dealloc(dirty, layout);
                    let z = Allocator.alloc_zeroed(layout);
                    assert!(!z.is_null() && (z as usize).is_multiple_of(align));
                    let bytes = std::slice::from_raw_parts(z, size);
                    assert!(bytes.iter().all(|&b| b == 0), "{size} bytes, align {align}");
                    std::ptr::write_bytes(z, 7, size);
                    let bigger = Allocator.realloc(z, layout, size * 2);
                    assert!(!bigger.is_null());
                    let kept = std::slice::from_raw_parts(bigger, size);
                    assert!(kept.iter().all(|&b| b == 7));
                    Allocator.dealloc(bigger, Layout::from_size_align(size * 2, align).unwrap());
                }
            }
        }
    }
}
