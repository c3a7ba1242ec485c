//! The clock stamped into every event: CLOCK_MONOTONIC in nanoseconds, the
//! one time base of publish stamps, deadlines and latencies.

use std::time::Duration;

/// Nanoseconds on CLOCK_MONOTONIC, the clock stamped into every event: a raw
/// number (unlike `Instant`) that anything else on this machine can compare.
pub(crate) fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer and CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A duration in nanoseconds; one too long for a `u64` (centuries) becomes
/// `u64::MAX / 4`, so that adding it to a time cannot overflow.
pub(crate) fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX / 4)
}
