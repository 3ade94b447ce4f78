//! The range of every duration, count and size in the file, in one table (DESIGN.md's config
//! block documents the same values). Generous but finite: whatever passes here, the daemon
//! can add to an `Instant`, multiply by its jitter and margins, or allocate.
//!
//! A new field: add its range here as a `const`, and check it where its section is parsed
//! (`daemon.rs`, `limits.rs`, `connections.rs`, `children.rs`) with
//! [`DurationRange::check`] or [`CountRange::check`]; add a row to `tests.rs`'s `BOUNDS`.
use super::raw::RawDuration;
use super::{ConfigError, Ctx};
use std::time::Duration;

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;
/// "A year": the longest lifetime or rekey interval.
const YEAR: u64 = 365 * DAY;

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// What a zero means for a duration field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Zero {
    /// Zero is out of range (unless `min` is zero).
    Rejected,
    /// Zero switches the feature off; the text says how (`off`, `never`, `none`).
    Means(&'static str),
}

/// The range of a duration field: `min..=max`, and zero as [`Zero`] says.
#[derive(Debug, Clone, Copy)]
pub(super) struct DurationRange {
    pub min: Duration,
    pub max: Duration,
    pub zero: Zero,
}

/// The range of an integer field: `min..=max`; `note` explains a special value (`0 = off`).
#[derive(Debug, Clone, Copy)]
pub(super) struct CountRange {
    pub min: i64,
    pub max: i64,
    pub note: &'static str,
}

// ---- [daemon]

/// `ike_port`, `natt_port`, `connections.*.remote_port`.
pub(super) const PORT: CountRange = CountRange {
    min: 1,
    max: 65535,
    note: "",
};
/// `control_socket`: a Unix socket path must fit `sun_path` (108 bytes with its NUL).
pub(super) const CONTROL_SOCKET_MAX_LEN: usize = 107;
// tun_mtu 576..65535 and workers 0..fs_dataplane::WORKERS_MAX are checked in daemon.rs.

// ---- [limits]

pub(super) const COOKIE_THRESHOLD: CountRange = CountRange {
    min: 0,
    max: 10_000_000,
    note: " (0 = always demand a cookie)",
};
pub(super) const HALF_OPEN_MAX: CountRange = CountRange {
    min: 1,
    max: 10_000_000,
    note: "",
};
pub(super) const HALF_OPEN_PER_SOURCE_MAX: CountRange = HALF_OPEN_MAX;
/// `max_children_per_ike_sa`: beyond it, NO_ADDITIONAL_SAS.
pub(super) const MAX_CHILDREN_PER_IKE_SA: CountRange = CountRange {
    min: 1,
    max: 100_000,
    note: "",
};
pub(super) const HALF_OPEN_TIMEOUT: DurationRange = DurationRange {
    min: secs(1),
    max: secs(DAY),
    zero: Zero::Rejected,
};
pub(super) const COOKIE_SECRET_LIFETIME: DurationRange = HALF_OPEN_TIMEOUT;

// ---- [connections.NAME]

pub(super) const RETRANSMIT_TIMEOUT: DurationRange = DurationRange {
    min: Duration::from_millis(100),
    max: secs(HOUR),
    zero: Zero::Rejected,
};
/// 0 = send once, never retransmit.
pub(super) const RETRANSMIT_TRIES: CountRange = CountRange {
    min: 0,
    max: 100,
    note: " (0 = no retransmission)",
};
pub(super) const RETRANSMIT_BASE: (f64, f64) = (1.0, 10.0);
/// IKE `rekey_time`, `reauth_time`, `life_time`; CHILD_SA `rekey_time`, `life_time`.
pub(super) const REKEY_TIME: DurationRange = DurationRange {
    min: secs(1),
    max: secs(YEAR),
    zero: Zero::Means("never"),
};
pub(super) const REAUTH_TIME: DurationRange = DurationRange {
    zero: Zero::Means("off"),
    ..REKEY_TIME
};
pub(super) const LIFE_TIME: DurationRange = DurationRange {
    zero: Zero::Means("none"),
    ..REKEY_TIME
};
/// Rekey jitter (IKE and CHILD_SA); never more than the rekey time itself in effect.
pub(super) const RAND_TIME: DurationRange = DurationRange {
    min: Duration::ZERO,
    max: secs(YEAR),
    zero: Zero::Rejected,
};
pub(super) const DPD_DELAY: DurationRange = DurationRange {
    min: secs(1),
    max: secs(DAY),
    zero: Zero::Means("off"),
};
pub(super) const NAT_KEEPALIVE: DurationRange = DurationRange {
    min: secs(1),
    max: secs(HOUR),
    zero: Zero::Means("off"),
};
/// IP datagram size of IKE fragments (RFC 7383 2.5.1), IP and UDP headers included.
pub(super) const FRAGMENT_SIZE: CountRange = CountRange {
    min: 256,
    max: 65535,
    note: "",
};

// ---- [connections.NAME.children.CHILD]

/// fs-esp's largest anti-replay window (0 = no replay check).
pub(super) const REPLAY_WINDOW: CountRange = CountRange {
    min: 0,
    max: fs_esp::replay::MAX_WINDOW as i64,
    note: " (0 = off)",
};
/// `rekey_bytes`, `life_bytes`, `rekey_packets`, `life_packets`: any TOML integer >= 0.
pub(super) const VOLUME: CountRange = CountRange {
    min: 0,
    max: i64::MAX,
    note: " (0 = off)",
};

/// `500ms`, `4s`, `2m`, `1h`, `1d`, `365d`: the largest unit that divides evenly.
pub(super) fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0".into();
    }
    for (unit, n) in [
        ("d", u128::from(DAY) * 1000),
        ("h", u128::from(HOUR) * 1000),
        ("m", u128::from(MINUTE) * 1000),
        ("s", 1000),
    ] {
        if (ms / n) * n == ms {
            return format!("{}{unit}", ms / n);
        }
    }
    format!("{ms}ms")
}

impl DurationRange {
    /// "must be between 1s and 1d", "must be 0 (off) or between 1s and 1d".
    pub(super) fn describe(&self) -> String {
        let between = format!("between {} and {}", human(self.min), human(self.max));
        match self.zero {
            Zero::Means(what) if !self.min.is_zero() => format!("must be 0 ({what}) or {between}"),
            _ => format!("must be {between}"),
        }
    }

    fn contains(&self, d: Duration) -> bool {
        (d.is_zero() && matches!(self.zero, Zero::Means(_))) || (self.min <= d && d <= self.max)
    }

    /// Parse and range-check a duration field: `None` if absent, else the value (zero
    /// included when it means "off": callers map it). Out of range: `PATH: must be ... (got V)`.
    pub(super) fn check(
        &self,
        ctx: &Ctx,
        path: &str,
        raw: &Option<RawDuration>,
    ) -> Result<Option<Duration>, ConfigError> {
        let (d, shown) = match raw {
            None => return Ok(None),
            // seconds as written: no Duration can overflow here (u64 seconds)
            Some(RawDuration::Secs(s)) => (Duration::from_secs(*s), s.to_string()),
            Some(RawDuration::Text(t)) => {
                let shown = format!("{t:?}");
                let s = super::duration_secs(t).map_err(|e| ctx.err(path, e))?;
                if s > self.max.as_secs_f64() + 0.001 {
                    // too large for any Duration arithmetic: report the range, not "too large"
                    return Err(ctx.err(path, format!("{} (got {shown})", self.describe())));
                }
                (
                    super::parse_duration(t).map_err(|e| ctx.err(path, e))?,
                    shown,
                )
            }
        };
        if self.contains(d) {
            Ok(Some(d))
        } else {
            Err(ctx.err(path, format!("{} (got {shown})", self.describe())))
        }
    }
}

impl CountRange {
    /// "must be between 1 and 10000000".
    pub(super) fn describe(&self) -> String {
        format!("must be between {} and {}{}", self.min, self.max, self.note)
    }

    /// Range-check an integer field; `None` if absent.
    pub(super) fn check<T: TryFrom<i64>>(
        &self,
        ctx: &Ctx,
        path: &str,
        raw: Option<i64>,
    ) -> Result<Option<T>, ConfigError> {
        let Some(v) = raw else { return Ok(None) };
        match T::try_from(v) {
            Ok(t) if (self.min..=self.max).contains(&v) => Ok(Some(t)),
            _ => Err(ctx.err(path, format!("{} (got {v})", self.describe()))),
        }
    }
}

/// `retransmit_base`: a finite factor in [`RETRANSMIT_BASE`].
pub(super) fn check_base(
    ctx: &Ctx,
    path: &str,
    b: Option<f64>,
) -> Result<Option<f64>, ConfigError> {
    let (lo, hi) = RETRANSMIT_BASE;
    match b {
        None => Ok(None),
        Some(b) if (lo..=hi).contains(&b) => Ok(Some(b)),
        Some(b) => Err(ctx.err(
            path,
            format!("must be between {lo:.1} and {hi:.1} (got {b})"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Ctx<'static> {
        Ctx::new("t.toml")
    }

    fn dur(r: &DurationRange, v: RawDuration) -> Result<Option<Duration>, String> {
        r.check(&ctx(), "x.y", &Some(v)).map_err(|e| e.to_string())
    }

    #[test]
    fn human_units() {
        assert_eq!(human(Duration::from_millis(100)), "100ms");
        assert_eq!(human(Duration::from_millis(1500)), "1500ms");
        assert_eq!(human(secs(1)), "1s");
        assert_eq!(human(secs(90)), "90s");
        assert_eq!(human(secs(HOUR)), "1h");
        assert_eq!(human(secs(DAY)), "1d");
        assert_eq!(human(secs(YEAR)), "365d");
        assert_eq!(human(Duration::ZERO), "0");
    }

    #[test]
    fn duration_bounds() {
        use RawDuration::{Secs, Text};
        let r = DPD_DELAY;
        assert_eq!(r.describe(), "must be 0 (off) or between 1s and 1d");
        assert_eq!(dur(&r, Secs(0)), Ok(Some(Duration::ZERO)));
        assert_eq!(dur(&r, Secs(1)), Ok(Some(secs(1))));
        assert_eq!(dur(&r, Secs(DAY)), Ok(Some(secs(DAY))));
        assert_eq!(dur(&r, Text("1d".into())), Ok(Some(secs(DAY))));
        assert_eq!(
            dur(&r, Secs(DAY + 1)),
            Err("t.toml: x.y: must be 0 (off) or between 1s and 1d (got 86401)".into())
        );
        assert_eq!(
            dur(&r, Secs(u64::MAX)),
            Err(format!(
                "t.toml: x.y: must be 0 (off) or between 1s and 1d (got {})",
                u64::MAX
            ))
        );
        assert_eq!(
            dur(&r, Text("999ms".into())),
            Err("t.toml: x.y: must be 0 (off) or between 1s and 1d (got \"999ms\")".into())
        );
        let r = HALF_OPEN_TIMEOUT;
        assert_eq!(r.describe(), "must be between 1s and 1d");
        assert_eq!(
            dur(&r, Secs(0)),
            Err("t.toml: x.y: must be between 1s and 1d (got 0)".into())
        );
        let r = RETRANSMIT_TIMEOUT;
        assert_eq!(r.describe(), "must be between 100ms and 1h");
        assert!(dur(&r, Text("99ms".into())).is_err());
        assert!(dur(&r, Text("100ms".into())).is_ok());
        assert!(dur(&r, Text("1h".into())).is_ok());
        assert!(dur(&r, Secs(HOUR + 1)).is_err());
        let r = RAND_TIME;
        assert_eq!(r.describe(), "must be between 0 and 365d");
        assert_eq!(dur(&r, Secs(0)), Ok(Some(Duration::ZERO)));
        assert!(dur(&r, Secs(YEAR)).is_ok());
        assert!(dur(&r, Secs(YEAR + 1)).is_err());
        assert_eq!(
            REKEY_TIME.describe(),
            "must be 0 (never) or between 1s and 365d"
        );
        assert_eq!(
            LIFE_TIME.describe(),
            "must be 0 (none) or between 1s and 365d"
        );
        // a text far beyond the range names the range too (not a parse error)
        assert_eq!(
            dur(&DPD_DELAY, Text("100000d".into())),
            Err("t.toml: x.y: must be 0 (off) or between 1s and 1d (got \"100000d\")".into())
        );
        assert_eq!(
            dur(&DPD_DELAY, Text("9".repeat(400))),
            Err(format!(
                "t.toml: x.y: must be 0 (off) or between 1s and 1d (got \"{}\")",
                "9".repeat(400)
            ))
        );
        // absent stays absent
        assert_eq!(DPD_DELAY.check(&ctx(), "x", &None), Ok(None));
    }

    #[test]
    fn count_bounds() {
        let c = |r: &CountRange, v: i64| {
            r.check::<u32>(&ctx(), "x.n", Some(v))
                .map_err(|e| e.to_string())
        };
        assert_eq!(c(&RETRANSMIT_TRIES, 0), Ok(Some(0)));
        assert_eq!(c(&RETRANSMIT_TRIES, 100), Ok(Some(100)));
        assert_eq!(
            c(&RETRANSMIT_TRIES, 101),
            Err("t.toml: x.n: must be between 0 and 100 (0 = no retransmission) (got 101)".into())
        );
        assert!(c(&RETRANSMIT_TRIES, -1).is_err());
        assert_eq!(c(&REPLAY_WINDOW, 65536), Ok(Some(65536)));
        assert!(c(&REPLAY_WINDOW, 65537).is_err());
        // the target type bounds it too: a u16 port cannot hold 65536 even if a range said so
        assert_eq!(PORT.check::<u16>(&ctx(), "p", Some(65535)), Ok(Some(65535)));
        assert!(PORT.check::<u16>(&ctx(), "p", Some(0)).is_err());
        assert!(PORT.check::<u16>(&ctx(), "p", Some(65536)).is_err());
        let huge = VOLUME.check::<u64>(&ctx(), "v", Some(i64::MAX));
        assert_eq!(huge, Ok(Some(i64::MAX as u64)));
        assert!(VOLUME.check::<u64>(&ctx(), "v", Some(-1)).is_err());
        assert!(HALF_OPEN_MAX.check::<usize>(&ctx(), "h", Some(0)).is_err());
        assert!(HALF_OPEN_MAX
            .check::<usize>(&ctx(), "h", Some(10_000_001))
            .is_err());
        assert!(COOKIE_THRESHOLD
            .check::<usize>(&ctx(), "h", Some(0))
            .is_ok());
    }

    #[test]
    fn base_bounds() {
        let b = |v: f64| check_base(&ctx(), "b", Some(v)).map_err(|e| e.to_string());
        assert_eq!(b(1.0), Ok(Some(1.0)));
        assert_eq!(b(10.0), Ok(Some(10.0)));
        assert_eq!(
            b(0.5),
            Err("t.toml: b: must be between 1.0 and 10.0 (got 0.5)".into())
        );
        assert!(b(10.5).is_err());
        assert!(b(f64::NAN).is_err());
        assert!(b(f64::INFINITY).is_err());
    }
}
