//! Counters and liveness.

use crate::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

// ---------------------------------------------------------------------------------------
// counters and liveness
// ---------------------------------------------------------------------------------------

/// One counter (0 if absent).
/// Counter `k`; panics if the daemon does not report it (so a renamed counter cannot make an
/// `== 0` check pass).
pub fn counter(c: &BTreeMap<String, u64>, k: &str) -> u64 {
    c.get(k)
        .copied()
        .unwrap_or_else(|| panic!("counter {k:?} not in status --json: {c:?}"))
}

/// Wait until counter `key` exceeds `before`; Ok(new value) or Err(all counters).
pub fn wait_counter_above(
    f: &Ferroswan,
    key: &str,
    before: u64,
    timeout: Duration,
) -> Result<u64, String> {
    let mut last = BTreeMap::new();
    poll(timeout, || {
        f.assert_alive();
        if let Ok(c) = f.counters() {
            let v = counter(&c, key);
            last = c;
            (v > before).then_some(v)
        } else {
            None
        }
    })
    .ok_or_else(|| {
        format!(
            "ferroswan {}: counter {key} stayed at {before} (want > {before}); counters: {last:?}",
            f.name
        )
    })
}

/// The daemon still runs (its PID exists) and its log has no panic.
pub fn assert_healthy(tag: &str, f: &Ferroswan) {
    f.assert_alive();
    let pid = f.pid().expect("daemon PID");
    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "[{tag}] ferroswan {} PID {pid} is gone",
        f.name
    );
    let log = f.log();
    assert!(
        !log.contains("panicked"),
        "[{tag}] ferroswan {} log contains a panic:\n{}",
        f.name,
        log.lines()
            .filter(|l| l.contains("panicked"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The inbound SPI (`spi_in`, hex) of the first installed CHILD_SA.
pub fn spi_in(f: &Ferroswan) -> u32 {
    let sa = f
        .wait_for_sa(CONN, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e}"));
    let ch = children(&sa);
    let c = ch
        .iter()
        .find(|c| c["state"] == "INSTALLED")
        .expect("installed child");
    let s = c["spi_in"].as_str().expect("spi_in string");
    u32::from_str_radix(s.trim_start_matches("0x"), 16).expect("hex spi_in")
}
