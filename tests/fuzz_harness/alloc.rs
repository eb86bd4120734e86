//! A counting global allocator: live and peak bytes per thread, so that the
//! runner can measure what one input made the code allocate (a target runs
//! on the runner's thread; other threads' allocations do not count).
//!
//! Past a hard cap it runs a hook (which saves the input) and returns null,
//! so that a huge allocation aborts with the input kept instead of taking
//! the machine's memory. Allocations made inside the hook are not capped.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::OnceLock;

pub struct CountingAlloc;

thread_local! {
    // Const-initialised `Cell`s without destructors: reading them never
    // allocates, which an allocator needs.
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
    static CAP: Cell<isize> = const { Cell::new(isize::MAX) };
    static IN_HOOK: Cell<bool> = const { Cell::new(false) };
}

/// Called once when a thread passes its cap, with the size asked for.
static OVER_CAP_HOOK: OnceLock<fn(usize)> = OnceLock::new();

pub fn set_over_cap_hook(hook: fn(usize)) {
    let _ = OVER_CAP_HOOK.set(hook);
}

/// Starts a measurement on this thread: the peak restarts at the current
/// live bytes, and at most `cap_bytes` more may be live at once.
pub fn start(cap_bytes: usize) -> isize {
    let live = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(live));
    CAP.with(|c| c.set(live.saturating_add(cap_bytes.min(isize::MAX as usize) as isize)));
    live
}

/// Peak bytes above `start`'s live bytes since then; lifts the cap.
pub fn finish(start_live: isize) -> usize {
    CAP.with(|c| c.set(isize::MAX));
    PEAK.with(Cell::get).saturating_sub(start_live).max(0) as usize
}

/// Counts `delta` bytes; false when that would pass the thread's cap.
fn count(delta: isize) -> bool {
    let live = LIVE.try_with(Cell::get).unwrap_or(0).saturating_add(delta);
    let cap = CAP.try_with(Cell::get).unwrap_or(isize::MAX);
    let in_hook = IN_HOOK.try_with(Cell::get).unwrap_or(true);
    if delta > 0 && live > cap && !in_hook {
        let _ = IN_HOOK.try_with(|h| h.set(true));
        if let Some(hook) = OVER_CAP_HOOK.get() {
            hook(delta as usize);
        }
        let _ = IN_HOOK.try_with(|h| h.set(false));
        return false;
    }
    let _ = LIVE.try_with(|l| l.set(live));
    let _ = PEAK.try_with(|p| p.set(p.get().max(live)));
    true
}

// SAFETY: every call is passed to `System`; we only count sizes.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !count(layout.size() as isize) {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's layout contract is passed on unchanged.
        let ptr = unsafe { System.alloc(layout) };
        if ptr.is_null() {
            count(-(layout.size() as isize));
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !count(layout.size() as isize) {
            return std::ptr::null_mut();
        }
        // SAFETY: as above.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if ptr.is_null() {
            count(-(layout.size() as isize));
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize));
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let delta = new_size as isize - layout.size() as isize;
        if !count(delta) {
            return std::ptr::null_mut();
        }
        // SAFETY: as above.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if new.is_null() {
            count(-delta);
        }
        new
    }
}
