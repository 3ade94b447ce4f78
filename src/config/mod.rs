//! The TOML configuration file (see DESIGN.md) and its conversion to [`fs_ike::Config`].
//!
//! Every error names the file, the field path and the reason, e.g.
//! `gw-a.toml: connections.s2s.children.net.esp_proposals[0]: unknown algorithm keyword "aes999"`,
//! and every duration, count and size has a finite range (`range.rs`), e.g.
//! `gw-a.toml: connections.s2s.dpd_delay: must be 0 (off) or between 1s and 1d (got 99999999)`.
//!
//! One module per section: `raw.rs` (serde form), `daemon.rs`, `limits.rs`, `secrets.rs`,
//! `connections.rs`, `children.rs`; `range.rs` holds the ranges, `mtu.rs` the TUN MTU
//! derivation. [`parse`] composes them.
mod children;
mod connections;
mod daemon;
mod limits;
mod mtu;
mod range;
mod raw;
mod secrets;
#[cfg(test)]
mod tests;

pub use mtu::DEFAULT_PATH_MTU;
use std::cell::RefCell;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default control socket path.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/ferroswan/ferroswan.sock";

/// A configuration error: `FILE: PATH: REASON`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// Field path (`connections.s2s.local.id`) or `line:col` for syntax errors; may be empty.
    pub path: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}: {}", self.file, self.reason)
        } else {
            write!(f, "{}: {}: {}", self.file, self.path, self.reason)
        }
    }
}

impl std::error::Error for ConfigError {}

/// A warning about a valid file: `FILE: PATH: warning: REASON`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    pub file: String,
    pub path: String,
    pub reason: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: warning: {}", self.file, self.path, self.reason)
    }
}

/// `[daemon] tun_mtu`: fixed, or derived at startup from the egress interface MTU towards
/// the connections' remote addresses minus the worst-case ESP overhead (`"auto"`, default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunMtu {
    Auto,
    Fixed(u16),
}

/// Daemon settings from `[daemon]`, with defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonSettings {
    pub control_socket: PathBuf,
    pub tun_name: String,
    pub tun_mtu: TunMtu,
    /// TUN queues / TUN reader threads; 0 = `"auto"` (half the online CPUs, 1 to
    /// [`fs_dataplane::AUTO_WORKERS_MAX`]).
    pub workers: usize,
    pub log_level: Option<String>,
    pub ike_port: u16,
    pub natt_port: u16,
    /// Keep an nftables table that drops the children's traffic outside the TUN device, also
    /// while no daemon runs (see `crate::failclosed`). Default true.
    pub fail_closed: bool,
    /// Run as this user after start-up (keeping CAP_NET_ADMIN); None = stay root.
    pub user: Option<String>,
}

/// A validated configuration file.
#[derive(Debug, Clone)]
pub struct FileConfig {
    pub daemon: DaemonSettings,
    /// Connections, ready for `fs_ike::Endpoint`.
    pub ike: fs_ike::Config,
    /// Warnings (short PSK, secrets readable by group or others): printed by `check-config`
    /// and logged at daemon start; the file is still valid.
    pub warnings: Vec<ConfigWarning>,
    /// Fields holding a secret inline or naming a secret file (`secrets.ab.secret`).
    secret_fields: Vec<String>,
}

impl FileConfig {
    /// All local addresses named by connections (for binding sockets).
    pub fn local_addrs(&self) -> Vec<IpAddr> {
        let mut v: Vec<IpAddr> = Vec::new();
        for c in &self.ike.connections {
            for a in &c.local_addrs {
                if !v.contains(a) {
                    v.push(*a);
                }
            }
        }
        v
    }

    /// True if any connection has no local address (sockets must be bound to the wildcard).
    pub fn any_wildcard(&self) -> bool {
        self.ike
            .connections
            .iter()
            .any(|c| c.local_addrs.is_empty())
    }

    /// True if any address or selector is IPv6.
    pub fn uses_ipv6(&self) -> bool {
        self.ike.connections.iter().any(|c| {
            c.local_addrs
                .iter()
                .chain(&c.remote_addrs)
                .any(|a| a.is_ipv6())
                || c.children
                    .iter()
                    .any(|ch| ch.local_ts.iter().chain(&ch.remote_ts).any(|t| t.is_v6()))
        })
    }
}

/// The file being parsed: names it in errors, collects warnings and the fields that hold
/// secrets.
struct Ctx<'a> {
    file: &'a str,
    warnings: RefCell<Vec<ConfigWarning>>,
    /// Fields holding a secret inline or naming a secret file (`secrets.ab.secret`).
    secret_fields: RefCell<Vec<String>>,
}

impl<'a> Ctx<'a> {
    fn new(file: &'a str) -> Self {
        Ctx {
            file,
            warnings: RefCell::new(Vec::new()),
            secret_fields: RefCell::new(Vec::new()),
        }
    }

    fn err(&self, path: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_string(),
            path: path.into(),
            reason: reason.into(),
        }
    }

    fn warn(&self, path: impl Into<String>, reason: impl Into<String>) {
        self.warnings.borrow_mut().push(ConfigWarning {
            file: self.file.to_string(),
            path: path.into(),
            reason: reason.into(),
        });
    }

    fn holds_secret(&self, path: &str) {
        self.secret_fields.borrow_mut().push(path.to_string());
    }
}

/// Parse a duration: `500ms`, `4s`, `2m`, `1h`, `1d`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let secs = duration_secs(s)?;
    if secs > DURATION_TEXT_MAX_SECS {
        return Err(format!("invalid duration {s:?}: too large"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Longest duration text [`parse_duration`] converts (longer than any field's range).
const DURATION_TEXT_MAX_SECS: f64 = 1e9;

/// The number of seconds a duration text means (`f64::INFINITY` if it overflows).
fn duration_secs(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: expected e.g. 500ms, 4s, 2m, 1h"))?;
    let mult = match unit.trim() {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        u => {
            return Err(format!(
                "invalid duration {s:?}: unknown unit {u:?} (use ms, s, m, h, d)"
            ))
        }
    };
    let secs = v * mult;
    Ok(if secs.is_finite() {
        secs
    } else {
        f64::INFINITY
    })
}

/// `Some(d)` unless zero (zero disables).
fn nonzero(d: Option<Duration>, default: Option<Duration>) -> Option<Duration> {
    match d {
        None => default,
        Some(d) if d.is_zero() => None,
        Some(d) => Some(d),
    }
}

/// Load and validate a configuration file. Besides [`parse`]: a warning if the file holds
/// secrets (inline, or naming a `secret_file`) and is readable by group or others.
pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
    let file = path.display().to_string();
    // the text may hold secrets: wiped when parsed
    let text = std::fs::read_to_string(path)
        .map(zeroize::Zeroizing::new)
        .map_err(|e| ConfigError {
            file: file.clone(),
            path: String::new(),
            reason: format!("cannot read: {e}"),
        })?;
    let mut cfg = parse(&file, &text, path.parent().unwrap_or(Path::new(".")))?;
    if let Some(field) = cfg.secret_fields.first() {
        let ctx = Ctx::new(&file);
        secrets::check_mode(&ctx, field, path, "config file holding secrets");
        // the file's own mode first: it is the broader exposure
        let mut w = ctx.warnings.take();
        w.append(&mut cfg.warnings);
        cfg.warnings = w;
    }
    Ok(cfg)
}

/// Parse and validate configuration text; `file` names it in errors, `base_dir` resolves
/// relative `secret_file`s.
pub fn parse(file: &str, text: &str, base_dir: &Path) -> Result<FileConfig, ConfigError> {
    let ctx = &Ctx::new(file);
    let raw = raw::from_toml(ctx, text)?;
    let daemon = daemon::parse(ctx, &raw.daemon)?;
    let secrets = secrets::parse(ctx, &raw.secrets, base_dir)?;
    let connections = raw
        .connections
        .iter()
        .map(|(name, c)| connections::parse(ctx, name, c, &secrets))
        .collect::<Result<Vec<_>, _>>()?;
    let limits = limits::parse(ctx, &raw.limits)?;
    Ok(FileConfig {
        daemon,
        ike: fs_ike::Config {
            connections,
            limits,
        },
        warnings: ctx.warnings.take(),
        secret_fields: ctx.secret_fields.take(),
    })
}
