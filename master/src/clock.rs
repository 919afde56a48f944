//! Wall-clock time in Unix milliseconds, the unit every core takes as `now`.
//!
//! Tests that need another date (a month that has closed) start the master with the hidden
//! environment variable `HEARTH_TEST_CLOCK_OFFSET_MS` (signed milliseconds added to the system
//! clock); it is read once and logged as a warning.

use std::sync::OnceLock;

/// The environment variable moving the master's clock, for tests only.
pub const TEST_CLOCK_OFFSET_ENV: &str = "HEARTH_TEST_CLOCK_OFFSET_MS";

fn offset_ms() -> i64 {
    static OFFSET: OnceLock<i64> = OnceLock::new();
    *OFFSET.get_or_init(|| {
        let offset = std::env::var(TEST_CLOCK_OFFSET_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<i64>().ok())
            .unwrap_or(0);
        if offset != 0 {
            tracing::warn!(
                offset_ms = offset,
                "{TEST_CLOCK_OFFSET_ENV} moves this master's clock (tests only)"
            );
        }
        offset
    })
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    let real = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    real.saturating_add_signed(offset_ms())
}

/// Microseconds since the Unix epoch, moved like [`now_ms`].
pub fn now_us() -> u64 {
    let real = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    real.saturating_add_signed(offset_ms().saturating_mul(1000))
}
