//! Rate-limited logging for per-packet events (drops, receive and send errors): a flood must
//! not turn into a flood of log lines, at any log level. [`drop_log!`](crate::drop_log) is
//! fs-ike's [`limited!`](fs_ike::limited) (one budget per call site, i.e. per reason: at most
//! [`fs_ike::ratelog::LINES_PER_SECOND`] lines a second, then a count of the suppressed ones)
//! on the wall clock. The drop counters are counted elsewhere and stay exact.

/// `drop_log!(LEVEL, "format", args..)`: a `tracing` event at `LEVEL` (DEBUG, WARN, ...),
/// rate-limited per call site.
#[macro_export]
macro_rules! drop_log {
    ($lvl:ident, $($arg:tt)+) => {
        fs_ike::limited!(std::time::Instant::now(), $lvl, $($arg)+)
    };
}
