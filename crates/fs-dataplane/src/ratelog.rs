//! Rate-limited logging for per-packet events (drops, receive errors): a flood must not turn
//! into a flood of log lines, at any log level. Each call site of [`drop_log!`](crate::drop_log)
//! is one reason with its own budget: at most [`LINES_PER_SECOND`] lines per second; what
//! goes over is counted and reported in one summary line with the next line logged. The drop
//! counters themselves are counted elsewhere and stay exact.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// Lines per second and call site.
pub const LINES_PER_SECOND: u64 = 5;

/// Milliseconds since the first call (process-wide, monotonic).
fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let e = EPOCH.get_or_init(Instant::now);
    u64::try_from(e.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The budget of one call site: a one-second window, the lines logged in it, and the lines
/// suppressed since the last one logged.
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

    /// `Some(n)`: log this line, after a summary of the `n` lines suppressed before it (if
    /// n > 0). `None`: suppress it (counted).
    pub fn allow(&self) -> Option<u64> {
        self.allow_at(now_ms())
    }

    fn allow_at(&self, now: u64) -> Option<u64> {
        let w = self.window_ms.load(Ordering::Relaxed);
        if now.saturating_sub(w) >= 1000
            && self
                .window_ms
                .compare_exchange(w, now, Ordering::Relaxed, Ordering::Relaxed)
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

/// `drop_log!(level, "format", args..)`: a `tracing` event at `level` (debug, warn, ...),
/// limited per call site to [`LINES_PER_SECOND`](crate::ratelog::LINES_PER_SECOND) lines a
/// second, with a count of the suppressed ones.
#[macro_export]
macro_rules! drop_log {
    ($lvl:ident, $($arg:tt)+) => {{
        static LIMIT: $crate::ratelog::LogLimit = $crate::ratelog::LogLimit::new();
        if tracing::enabled!(tracing::Level::$lvl) {
            if let Some(n) = LIMIT.allow() {
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

    #[test]
    fn five_a_second_then_a_count() {
        let l = LogLimit::new();
        let t0 = 5_000;
        let allowed: Vec<_> = (0..1000).map(|_| l.allow_at(t0)).collect();
        assert_eq!(allowed.iter().filter(|a| a.is_some()).count(), 5);
        assert!(allowed[..5].iter().all(|a| *a == Some(0)));
        // the next window: the first line carries the count of the 995 suppressed
        assert_eq!(l.allow_at(t0 + 1000), Some(995));
        assert_eq!(l.allow_at(t0 + 1001), Some(0));
    }
}
