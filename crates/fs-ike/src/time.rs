//! Checked time arithmetic for the core's timers.
//!
//! Durations reach the core from the configuration (half-open timeout, DPD delay, NAT
//! keepalive, lifetimes, rekey jitter, retransmission backoff) and may be as large as
//! `u64::MAX` seconds. `Instant + Duration` and `Duration::mul_f64` panic on overflow, so the
//! core never uses them: a timer is armed with [`after`] (saturated at [`FAR_FUTURE`], in
//! effect "never"), and a duration is scaled with [`scale`] (saturated, never negative).
use std::time::{Duration, Instant};

/// The longest delay a timer is armed for (about 100 years): a later deadline is clamped to
/// it, which is indistinguishable from "never" for a running daemon.
pub(crate) const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 86_400);

/// The deadline `d` after `now`, saturated: at most [`FAR_FUTURE`] after `now`, and if even
/// that is not representable, the latest representable instant found by halving (never a
/// panic, never earlier than `now`).
pub(crate) fn after(now: Instant, d: Duration) -> Instant {
    let mut d = d.min(FAR_FUTURE);
    loop {
        if let Some(t) = now.checked_add(d) {
            return t;
        }
        if d.is_zero() {
            return now;
        }
        d /= 2;
    }
}

/// `d * f`, saturated at `Duration::MAX`; a negative or NaN factor gives zero.
pub(crate) fn scale(d: Duration, f: f64) -> Duration {
    let x = d.as_secs_f64() * f;
    if x.is_nan() || x <= 0.0 {
        Duration::ZERO
    } else {
        Duration::try_from_secs_f64(x).unwrap_or(Duration::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_saturates() {
        let now = Instant::now();
        assert_eq!(
            after(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
        assert_eq!(after(now, Duration::MAX), now + FAR_FUTURE);
        let secs = Duration::from_secs(i64::MAX as u64);
        assert_eq!(after(now, secs), now + FAR_FUTURE);
        // Near the end of the representable range: still no panic, never before `now`.
        let late = after(now, FAR_FUTURE);
        assert!(after(late, Duration::MAX) >= late);
    }

    #[test]
    fn scale_saturates() {
        assert_eq!(scale(Duration::from_secs(10), 0.5), Duration::from_secs(5));
        assert_eq!(scale(Duration::MAX, 1.0), Duration::MAX);
        assert_eq!(scale(Duration::MAX, 1e30), Duration::MAX);
        assert_eq!(scale(Duration::from_secs(10), -1.0), Duration::ZERO);
        assert_eq!(scale(Duration::from_secs(10), f64::NAN), Duration::ZERO);
        assert_eq!(scale(Duration::MAX, f64::INFINITY), Duration::MAX);
    }
}
