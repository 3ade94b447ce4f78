//! Rate-limited log lines for what a peer (or anyone on the network) can cause per datagram:
//! dropped, malformed or unacceptable messages. Each call site of [`limited!`](crate::limited)
//! is one reason with its own budget of [`LINES_PER_SECOND`] lines per second of the
//! endpoint's clock (the `now` the caller passes in: no clock is read here); what goes over is
//! counted and reported in one summary line with the next line logged. Counters stay exact.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// Lines per second and call site.
pub const LINES_PER_SECOND: u64 = 5;

/// The first `now` seen: the origin of the millisecond clock of every call site.
static ORIGIN: OnceLock<Instant> = OnceLock::new();

/// The budget of one call site.
pub struct LogLimit {
    window_ms: AtomicU64,
    in_window: AtomicU64,
    suppressed: AtomicU64,
}

impl LogLimit {
    #[allow(clippy::new_without_default)]
    pub const fn new() -> LogLimit {
        LogLimit {
            window_ms: AtomicU64::new(0),
            in_window: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(n)`: log this line, after a summary of the `n` suppressed before it (if n > 0);
    /// `None`: suppressed (counted).
    pub fn allow(&self, now: Instant) -> Option<u64> {
        let origin = *ORIGIN.get_or_init(|| now);
        let ms = u64::try_from(now.saturating_duration_since(origin).as_millis())
            .unwrap_or(u64::MAX)
            // window 0 must be a full window too
            .saturating_add(1000);
        self.allow_at(ms)
    }

    fn allow_at(&self, ms: u64) -> Option<u64> {
        let w = self.window_ms.load(Ordering::Relaxed);
        if ms.saturating_sub(w) >= 1000
            && self
                .window_ms
                .compare_exchange(w, ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.in_window.store(0, Ordering::Relaxed);
        }
        if self.in_window.fetch_add(1, Ordering::Relaxed) < LINES_PER_SECOND {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// `limited!(now, LEVEL, fields.. "format", args..)`: a `tracing` event at `LEVEL` (DEBUG,
/// INFO, WARN), at most [`LINES_PER_SECOND`](crate::ratelog::LINES_PER_SECOND) a second per
/// call site, with a count of the suppressed ones.
#[macro_export]
macro_rules! limited {
    ($now:expr, $lvl:ident, $($arg:tt)+) => {{
        static LIMIT: $crate::ratelog::LogLimit = $crate::ratelog::LogLimit::new();
        if tracing::enabled!(tracing::Level::$lvl) {
            if let Some(n) = LIMIT.allow($now) {
                if n > 0 {
                    tracing::event!(
                        tracing::Level::$lvl,
                        "({n} more like the next line suppressed: at most {} a second)",
                        $crate::ratelog::LINES_PER_SECOND
                    );
                }
                tracing::event!(tracing::Level::$lvl, $($arg)+);
            }
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn five_a_second_then_a_count() {
        let l = LogLimit::new();
        let t0 = Instant::now();
        let allowed: Vec<_> = (0..1000).map(|_| l.allow(t0)).collect();
        assert_eq!(allowed.iter().filter(|a| a.is_some()).count(), 5);
        assert_eq!(l.allow(t0 + Duration::from_millis(999)), None);
        assert_eq!(l.allow(t0 + Duration::from_secs(2)), Some(996));
        assert_eq!(l.allow(t0 + Duration::from_secs(2)), Some(0));
    }
}
