//! Counts the operations libtorch dispatches while a closure runs, through a global
//! `RecordFunction` callback (the hook of libtorch's own profiler, compiled in `opcount.cpp`).
//! The issue of launch-bound GPU training is the number of operations per step, each at least
//! one kernel launch on a GPU; this counts them on any device.
//!
//! Counting is process-wide: operations of other threads running meanwhile are counted too, so
//! callers run alone (tests hold a lock).

use std::sync::Mutex;

#[allow(unsafe_code)]
extern "C" {
    fn effnas_opcount_start() -> i32;
    fn effnas_opcount_read(top: *mut u64, all: *mut u64);
    fn effnas_opcount_stop();
}

/// Operator calls counted during one measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Calls made by the caller (tch, or the autograd engine running backward nodes), not from
    /// inside another counted operator.
    pub top_level: u64,
    /// Every call through the dispatcher, nested ones included (a composite operator counts
    /// itself and what it calls).
    pub all: u64,
}

/// libtorch refused to install the counting callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused;

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("libtorch refused the operator-counting callback")
    }
}

impl std::error::Error for Refused {}

/// One measurement at a time in this process.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs `f` and counts the operator calls dispatched meanwhile.
#[allow(unsafe_code)]
pub fn count<R>(f: impl FnOnce() -> R) -> Result<(R, Counts), Refused> {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    // SAFETY: the C functions take no arguments but out-pointers to two local integers, and
    // only touch the counter's own state and libtorch's callback registry.
    if unsafe { effnas_opcount_start() } != 0 {
        return Err(Refused);
    }
    let value = f();
    let (mut top_level, mut all) = (0u64, 0u64);
    unsafe {
        effnas_opcount_read(&mut top_level, &mut all);
        effnas_opcount_stop();
    }
    Ok((value, Counts { top_level, all }))
}
