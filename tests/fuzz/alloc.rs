//! A counting global allocator: live bytes per thread, and a per-thread bound that a fuzz input
//! may not push the thread past.
//!
//! Allocators must not unwind, so an input over the bound cannot fail like a panic. Instead the
//! allocator copies the input file being run (the harness writes every input to disk before it
//! runs it) to the crash folder, prints where it put it, and returns null, which aborts the
//! test binary: the abort is the failure signal, the printed path the reproducer.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;

pub struct Counting;

thread_local! {
    /// Bytes allocated minus bytes freed on this thread (frees of memory allocated on another
    /// thread make it drift low, never high).
    static LIVE: Cell<isize> = const { Cell::new(0) };
    /// Largest `LIVE` allowed while an input runs; `isize::MAX` when no input is running.
    static LIMIT: Cell<isize> = const { Cell::new(isize::MAX) };
    /// Set while the allocator itself is reporting (its own allocations are not limited).
    static REPORTING: Cell<bool> = const { Cell::new(false) };
    /// What the running input is: its file, where to copy it on a failure, and the target.
    static CURRENT: Cell<Option<&'static Current>> = const { Cell::new(None) };
}

/// The input running on this thread, for the over-bound report.
pub struct Current {
    pub target: String,
    pub input: std::path::PathBuf,
    pub crash_dir: std::path::PathBuf,
    /// No report (the harness's own test of the bound).
    pub quiet: bool,
}

/// Runs `f` with the thread's live bytes bounded to `bound` more than now.
pub fn bounded<R>(bound: usize, current: &'static Current, f: impl FnOnce() -> R) -> R {
    struct Reset(isize);
    impl Drop for Reset {
        fn drop(&mut self) {
            LIMIT.with(|l| l.set(self.0));
            CURRENT.with(|c| c.set(None));
        }
    }
    let old = LIMIT.with(|l| l.get());
    let _reset = Reset(old);
    let live = LIVE.with(|l| l.get());
    LIMIT.with(|l| l.set(live.saturating_add(bound as isize)));
    CURRENT.with(|c| c.set(Some(current)));
    f()
}

fn over_bound(size: usize) {
    OVER.with(|o| o.set(true));
    if CURRENT.with(|c| c.get()).is_some_and(|c| c.quiet) {
        return;
    }
    REPORTING.with(|r| r.set(true));
    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "\nfuzz: an input asked for {size} bytes more, beyond the allocation bound"
    );
    if let Some(c) = CURRENT.with(|c| c.get()) {
        let saved = crate::harness::save_crash(&c.crash_dir, &c.target, &c.input);
        let _ = writeln!(
            err,
            "fuzz: target {}: over-bound allocation; input saved to {}",
            c.target,
            saved.display()
        );
    }
    let _ = err.flush();
    REPORTING.with(|r| r.set(false));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !self.admit(layout.size()) {
            return std::ptr::null_mut();
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !self.admit(layout.size()) {
            return std::ptr::null_mut();
        }
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let _ = LIVE.try_with(|l| l.set(l.get() - layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let grow = new_size.saturating_sub(layout.size());
        if !self.admit(grow) {
            return std::ptr::null_mut();
        }
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() && new_size < layout.size() {
            let _ = LIVE.try_with(|l| l.set(l.get() - (layout.size() - new_size) as isize));
        }
        p
    }
}

impl Counting {
    /// Counts `size` more live bytes; false (after reporting) when that passes the bound.
    fn admit(&self, size: usize) -> bool {
        let Ok(live) = LIVE.try_with(|l| l.get()) else {
            return true; // thread-local storage being torn down
        };
        let limit = LIMIT.try_with(|m| m.get()).unwrap_or(isize::MAX);
        let new = live.saturating_add(size.min(isize::MAX as usize) as isize);
        if new > limit && !REPORTING.with(|r| r.get()) {
            over_bound(size);
            return false;
        }
        let _ = LIVE.try_with(|l| l.set(new));
        true
    }
}

thread_local! {
    static OVER: Cell<bool> = const { Cell::new(false) };
}

/// Whether an allocation was refused since the last call (the code survived the refusal).
pub fn take_over() -> bool {
    OVER.with(|o| o.replace(false))
}
