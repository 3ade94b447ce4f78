//! The TOML configuration file (see DESIGN.md) and its conversion to [`fs_ike::Config`].
//!
//! Every error names the file, the field path and the reason, e.g.
//! `gw-a.toml: connections.s2s.children.net.esp_proposals[0]: unknown algorithm keyword "aes999"`.
use fs_crypto::Secret;
use fs_ike::{ChildConfig, ConnConfig, DpdAction, RetransmitConfig, StartAction};
use fs_wire::{id::Identity, ts::TrafficSelector};
use serde::Deserialize;
use std::collections::BTreeMap;
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

// ---------------------------------------------------------------- raw (serde) form

/// A duration: `"500ms"`, `"4s"`, `"2m"`, `"1h"`, `"1d"`, or an integer number of seconds.
#[derive(Debug, Clone)]
enum RawDuration {
    Secs(u64),
    Text(String),
}

impl<'de> Deserialize<'de> for RawDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = RawDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a duration like \"500ms\", \"4s\", \"2m\", \"1h\" or a number of seconds",
                )
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RawDuration, E> {
                Ok(RawDuration::Secs(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RawDuration, E> {
                u64::try_from(v)
                    .map(RawDuration::Secs)
                    .map_err(|_| E::custom("negative duration"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawDuration, E> {
                Ok(RawDuration::Text(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    daemon: RawDaemon,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    connections: BTreeMap<String, RawConn>,
    #[serde(default)]
    secrets: BTreeMap<String, RawSecret>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    control_socket: Option<String>,
    tun_name: Option<String>,
    tun_mtu: Option<RawTunMtu>,
    workers: Option<RawTunMtu>,
    log_level: Option<String>,
    ike_port: Option<u16>,
    natt_port: Option<u16>,
}

/// `tun_mtu`, `workers`: a number or `"auto"`.
#[derive(Deserialize, Debug)]
#[serde(untagged)]
enum RawTunMtu {
    Num(i64),
    Text(String),
}

/// `encap`: `true` (always UDP), `false` (UDP only behind NAT) or `"auto"`.
#[derive(Deserialize, Debug)]
#[serde(untagged)]
enum RawEncap {
    Bool(bool),
    Text(String),
}

/// `[limits]`: responder DoS limits (fs_ike::Limits), all optional.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    cookie_threshold: Option<usize>,
    half_open_max: Option<usize>,
    half_open_per_source_max: Option<usize>,
    half_open_timeout: Option<RawDuration>,
    cookie_secret_lifetime: Option<RawDuration>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawConn {
    #[serde(default)]
    local_addrs: Vec<String>,
    #[serde(default)]
    remote_addrs: Vec<String>,
    remote_port: Option<u16>,
    proposals: Option<Vec<String>>,
    encap: Option<RawEncap>,
    retransmit_timeout: Option<RawDuration>,
    retransmit_tries: Option<u32>,
    retransmit_base: Option<f64>,
    rekey_time: Option<RawDuration>,
    reauth_time: Option<RawDuration>,
    dpd_delay: Option<RawDuration>,
    dpd_action: Option<String>,
    fragmentation: Option<bool>,
    fragment_size: Option<usize>,
    nat_keepalive: Option<RawDuration>,
    life_time: Option<RawDuration>,
    rand_time: Option<RawDuration>,
    local: RawLocal,
    #[serde(default)]
    remote: RawRemote,
    #[serde(default)]
    children: BTreeMap<String, RawChild>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawLocal {
    auth: Option<String>,
    id: Option<String>,
    /// Convenience: inline PSK instead of a [secrets] entry.
    psk: Option<RawSecretText>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawRemote {
    auth: Option<String>,
    id: Option<String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawChild {
    #[serde(default)]
    local_ts: Vec<String>,
    #[serde(default)]
    remote_ts: Vec<String>,
    esp_proposals: Option<Vec<String>>,
    mode: Option<String>,
    start_action: Option<String>,
    replay_window: Option<u32>,
    rekey_time: Option<RawDuration>,
    life_time: Option<RawDuration>,
    rand_time: Option<RawDuration>,
    rekey_bytes: Option<u64>,
    rekey_packets: Option<u64>,
    life_bytes: Option<u64>,
    life_packets: Option<u64>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawSecret {
    #[serde(default)]
    ids: Vec<String>,
    secret: Option<RawSecretText>,
    secret_file: Option<String>,
}

/// A secret as written in the file (`secret = "..."`, `psk = "..."`): wiped on drop, and the
/// raw types' derived `Debug` prints only its length.
struct RawSecretText(zeroize::Zeroizing<String>);

impl fmt::Debug for RawSecretText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RawSecretText(<redacted, {} bytes>)", self.0.len())
    }
}

impl<'de> Deserialize<'de> for RawSecretText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| RawSecretText(zeroize::Zeroizing::new(s)))
    }
}

// ---------------------------------------------------------------- validated form

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
}

/// A validated configuration file.
#[derive(Debug, Clone)]
pub struct FileConfig {
    pub daemon: DaemonSettings,
    /// Connections, ready for `fs_ike::Endpoint`.
    pub ike: fs_ike::Config,
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

/// Path MTU assumed when the egress interface towards a peer cannot be determined.
pub const DEFAULT_PATH_MTU: u32 = 1500;

impl FileConfig {
    /// Worst-case ESP overhead (header, IV, padding, trailer, ICV) over all configured ESP
    /// proposals (every encryption x integrity combination), with the suite's name.
    pub fn worst_esp_overhead(&self) -> (usize, String) {
        use fs_crypto::EncrAlg;
        let mut worst = (0usize, String::new());
        for ch in self.ike.connections.iter().flat_map(|c| &c.children) {
            for p in &ch.esp_proposals {
                for &e in &p.encr {
                    let integs: Vec<Option<fs_crypto::IntegAlg>> =
                        if e.is_aead() || p.integ.is_empty() {
                            vec![None]
                        } else {
                            p.integ.iter().copied().map(Some).collect()
                        };
                    for i in integs {
                        let o = fs_esp::esp_overhead(e, i);
                        if o > worst.0 {
                            let name = match i {
                                Some(i) => format!("{}-{}", e.name(), i.name()),
                                None => e.name().to_string(),
                            };
                            worst = (o, name);
                        }
                    }
                }
            }
        }
        if worst.0 == 0 {
            // no ESP proposal at all: the largest suite we implement
            let (e, i) = (EncrAlg::AesCbc256, fs_crypto::IntegAlg::HmacSha512_256);
            worst = (
                fs_esp::esp_overhead(e, Some(i)),
                format!("{}-{}", e.name(), i.name()),
            );
        }
        worst
    }

    /// The TUN MTU: the configured number, or (`"auto"`) the smallest over all connections'
    /// remote addresses of `egress MTU - (outer IP 20/40 + UDP 8 + worst ESP overhead)`.
    /// `lookup(remote)` gives the egress interface and its MTU (None: assume
    /// [`DEFAULT_PATH_MTU`]). Returns the MTU and how it was derived (for the log).
    pub fn resolve_tun_mtu(
        &self,
        lookup: impl Fn(IpAddr) -> Option<(String, u32)>,
    ) -> (u16, String) {
        if let TunMtu::Fixed(m) = self.daemon.tun_mtu {
            return (m, "configured".into());
        }
        let (esp, suite) = self.worst_esp_overhead();
        let mut best: Option<(u32, String)> = None;
        let mut consider = |path: u32, outer_v6: bool, via: String| {
            let ip = if outer_v6 {
                fs_esp::mtu::IPV6_HEADER_LEN
            } else {
                fs_esp::mtu::IPV4_HEADER_LEN
            };
            let over = (ip + fs_esp::mtu::UDP_HEADER_LEN + esp) as u32;
            let mtu = path.saturating_sub(over);
            if best.as_ref().is_none_or(|(b, _)| mtu < *b) {
                best = Some((
                    mtu,
                    format!(
                        "auto: path MTU {path} ({via}) - {over} (IPv{} {ip} + UDP {} + ESP {suite} {esp})",
                        if outer_v6 { 6 } else { 4 },
                        fs_esp::mtu::UDP_HEADER_LEN,
                    ),
                ));
            }
        };
        for c in &self.ike.connections {
            for &r in &c.remote_addrs {
                match lookup(r) {
                    Some((dev, m)) => consider(m, r.is_ipv6(), format!("{dev} towards {r}")),
                    None => consider(
                        DEFAULT_PATH_MTU,
                        r.is_ipv6(),
                        format!("assumed, no route to {r}"),
                    ),
                }
            }
            if c.remote_addrs.is_empty() {
                let v6 = c.local_addrs.iter().any(|a| a.is_ipv6());
                consider(
                    DEFAULT_PATH_MTU,
                    v6,
                    format!("assumed, {} has no remote address", c.name),
                );
            }
        }
        let (mtu, how) =
            best.unwrap_or_else(|| (DEFAULT_PATH_MTU - 100, "auto: no connection".into()));
        let clamped = mtu.clamp(576, 65535);
        if clamped != mtu {
            (
                clamped as u16,
                format!("{how} = {mtu}, raised to the minimum 576"),
            )
        } else {
            (mtu as u16, format!("{how} = {mtu}"))
        }
    }
}

struct Ctx<'a> {
    file: &'a str,
}

impl Ctx<'_> {
    fn err(&self, path: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_string(),
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// Parse a duration: `500ms`, `4s`, `2m`, `1h`, `1d`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
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
    if !secs.is_finite() || secs > 1e9 {
        return Err(format!("invalid duration {s:?}: too large"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn duration(
    ctx: &Ctx,
    path: &str,
    d: &Option<RawDuration>,
) -> Result<Option<Duration>, ConfigError> {
    match d {
        None => Ok(None),
        Some(RawDuration::Secs(s)) => Ok(Some(Duration::from_secs(*s))),
        Some(RawDuration::Text(t)) => parse_duration(t).map(Some).map_err(|e| ctx.err(path, e)),
    }
}

/// `Some(d)` unless zero (zero disables).
fn nonzero(d: Option<Duration>, default: Option<Duration>) -> Option<Duration> {
    match d {
        None => default,
        Some(d) if d.is_zero() => None,
        Some(d) => Some(d),
    }
}

fn decode_secret(ctx: &Ctx, path: &str, s: &str) -> Result<Secret, ConfigError> {
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        hex::decode(h)
            .map(Secret::new)
            .map_err(|e| ctx.err(path, format!("invalid hex secret: {e}")))
    } else {
        Ok(Secret::from_slice(s.as_bytes()))
    }
}

/// Load and validate a configuration file.
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
    parse(&file, &text, path.parent().unwrap_or(Path::new(".")))
}

/// Parse and validate configuration text; `file` names it in errors, `base_dir` resolves
/// relative `secret_file`s.
pub fn parse(file: &str, text: &str, base_dir: &Path) -> Result<FileConfig, ConfigError> {
    let ctx = Ctx { file };
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let pos = e
            .span()
            .map(|sp| {
                let before = &text[..sp.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let col = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
                format!("line {line}, column {col}")
            })
            .unwrap_or_default();
        ctx.err(pos, e.message().trim().to_string())
    })?;

    // [daemon]
    let d = &raw.daemon;
    let tun_mtu = match &d.tun_mtu {
        None => TunMtu::Auto,
        Some(RawTunMtu::Text(t)) if t == "auto" => TunMtu::Auto,
        Some(RawTunMtu::Text(t)) => {
            return Err(ctx.err(
                "daemon.tun_mtu",
                format!("invalid value {t:?} (\"auto\" or a number 576..65535)"),
            ))
        }
        Some(RawTunMtu::Num(n)) => match u16::try_from(*n) {
            Ok(m) if m >= 576 => TunMtu::Fixed(m),
            _ => return Err(ctx.err("daemon.tun_mtu", format!("{n} out of range 576..65535"))),
        },
    };
    let max = fs_dataplane::WORKERS_MAX;
    let workers = match &d.workers {
        None => 0,
        Some(RawTunMtu::Text(t)) if t == "auto" => 0,
        Some(RawTunMtu::Text(t)) => {
            return Err(ctx.err(
                "daemon.workers",
                format!("invalid value {t:?} (\"auto\" or a number 0..{max}, 0 = auto)"),
            ))
        }
        Some(RawTunMtu::Num(n)) => match usize::try_from(*n) {
            Ok(w) if w <= max => w,
            _ => {
                return Err(ctx.err(
                    "daemon.workers",
                    format!("{n} out of range 0..{max} (0 = \"auto\")"),
                ))
            }
        },
    };
    let tun_name = d.tun_name.clone().unwrap_or_else(|| "fs0".into());
    if tun_name.is_empty() || tun_name.len() > 15 || tun_name.contains(['/', ' ', '\0']) {
        return Err(ctx.err(
            "daemon.tun_name",
            format!("invalid interface name {tun_name:?} (1-15 characters)"),
        ));
    }
    if let Some(l) = &d.log_level {
        if tracing_subscriber::EnvFilter::try_new(l).is_err() {
            return Err(ctx.err(
                "daemon.log_level",
                format!("invalid log level {l:?} (error, warn, info, debug, trace)"),
            ));
        }
    }
    let ike_port = d.ike_port.unwrap_or(500);
    let natt_port = d.natt_port.unwrap_or(4500);
    if ike_port == 0 || natt_port == 0 || ike_port == natt_port {
        return Err(ctx.err(
            "daemon.natt_port",
            "ike_port and natt_port must be distinct and non-zero",
        ));
    }
    let daemon = DaemonSettings {
        control_socket: PathBuf::from(
            d.control_socket
                .clone()
                .unwrap_or_else(|| DEFAULT_CONTROL_SOCKET.into()),
        ),
        tun_name,
        tun_mtu,
        workers,
        log_level: d.log_level.clone(),
        ike_port,
        natt_port,
    };

    // [secrets]
    let mut secrets: Vec<(Vec<Identity>, Secret, String)> = Vec::new();
    for (name, s) in &raw.secrets {
        let p = format!("secrets.{name}");
        let value = match (&s.secret, &s.secret_file) {
            (Some(v), None) => decode_secret(&ctx, &format!("{p}.secret"), &v.0)?,
            (None, Some(f)) => {
                let fp = base_dir.join(f);
                let v = std::fs::read_to_string(&fp)
                    .map(zeroize::Zeroizing::new)
                    .map_err(|e| {
                        ctx.err(
                            format!("{p}.secret_file"),
                            format!("cannot read {}: {e}", fp.display()),
                        )
                    })?;
                decode_secret(
                    &ctx,
                    &format!("{p}.secret_file"),
                    v.trim_end_matches(['\n', '\r']),
                )?
            }
            (Some(_), Some(_)) => {
                return Err(ctx.err(&p, "give either secret or secret_file, not both"))
            }
            (None, None) => return Err(ctx.err(&p, "missing secret (or secret_file)")),
        };
        if value.is_empty() {
            return Err(ctx.err(format!("{p}.secret"), "empty secret"));
        }
        let ids = s.ids.iter().map(|i| Identity::from_config(i)).collect();
        secrets.push((ids, value, name.clone()));
    }

    // [connections]
    let mut connections = Vec::new();
    for (cname, c) in &raw.connections {
        let p = format!("connections.{cname}");
        let addrs = |field: &str, v: &[String]| -> Result<Vec<IpAddr>, ConfigError> {
            v.iter()
                .enumerate()
                .map(|(i, a)| {
                    a.trim().parse::<IpAddr>().map_err(|_| {
                        ctx.err(
                            format!("{p}.{field}[{i}]"),
                            format!("invalid IP address {a:?}"),
                        )
                    })
                })
                .collect()
        };
        let local_addrs = addrs("local_addrs", &c.local_addrs)?;
        let remote_addrs = addrs("remote_addrs", &c.remote_addrs)?;
        let proposals = c
            .proposals
            .clone()
            .unwrap_or_else(|| vec!["aes256gcm16-prfsha256-x25519".to_string()]);
        if proposals.is_empty() {
            return Err(ctx.err(
                format!("{p}.proposals"),
                "at least one proposal is required",
            ));
        }
        let mut ike_proposals = Vec::new();
        for (i, s) in proposals.iter().enumerate() {
            ike_proposals.push(
                fs_crypto::proposal::parse_ike_proposal(s)
                    .map_err(|e| ctx.err(format!("{p}.proposals[{i}]"), e.to_string()))?,
            );
        }
        for (side, auth) in [("local", &c.local.auth), ("remote", &c.remote.auth)] {
            if let Some(a) = auth {
                if a != "psk" {
                    return Err(ctx.err(
                        format!("{p}.{side}.auth"),
                        format!("unsupported auth {a:?} (only \"psk\")"),
                    ));
                }
            }
        }
        let local_id = match &c.local.id {
            Some(id) if !id.trim().is_empty() => Identity::from_config(id.trim()),
            Some(_) => return Err(ctx.err(format!("{p}.local.id"), "empty identity")),
            None => match local_addrs.first() {
                Some(a) => Identity::from_config(&a.to_string()),
                None => {
                    return Err(ctx.err(
                        format!("{p}.local.id"),
                        "required when local_addrs is empty",
                    ))
                }
            },
        };
        let remote_id = match &c.remote.id {
            Some(id) if !id.trim().is_empty() => Some(Identity::from_config(id.trim())),
            Some(_) => return Err(ctx.err(format!("{p}.remote.id"), "empty identity")),
            None => None,
        };
        let psk = match &c.local.psk {
            Some(s) => decode_secret(&ctx, &format!("{p}.local.psk"), &s.0)?,
            None => {
                // Best match: a secret naming both ids, then one naming one of them, then one
                // with no ids (wildcard).
                let score = |ids: &Vec<Identity>| -> Option<u8> {
                    if ids.is_empty() {
                        return Some(0);
                    }
                    let l = ids.contains(&local_id);
                    let r = remote_id.as_ref().is_some_and(|r| ids.contains(r));
                    match (l, r) {
                        (true, true) => Some(3),
                        (false, true) => Some(2),
                        (true, false) => Some(1),
                        _ => None,
                    }
                };
                let best = secrets
                    .iter()
                    .filter_map(|(ids, v, _)| score(ids).map(|s| (s, v)))
                    .max_by_key(|(s, _)| *s);
                match best {
                    Some((_, v)) => v.duplicate(),
                    None => {
                        let r = c.remote.id.as_deref().unwrap_or("%any");
                        let l = c
                            .local
                            .id
                            .clone()
                            .unwrap_or_else(|| format!("{local_id:?}"));
                        return Err(ctx.err(
                            &p,
                            format!("no PSK: add [secrets.NAME] with ids = [\"{l}\", \"{r}\"] or local.psk"),
                        ));
                    }
                }
            }
        };
        if psk.is_empty() {
            return Err(ctx.err(format!("{p}.local.psk"), "empty secret"));
        }
        let mut rt = RetransmitConfig::default();
        if let Some(t) = duration(
            &ctx,
            &format!("{p}.retransmit_timeout"),
            &c.retransmit_timeout,
        )? {
            if t.is_zero() {
                return Err(ctx.err(format!("{p}.retransmit_timeout"), "must be > 0"));
            }
            rt.timeout = t;
        }
        if let Some(n) = c.retransmit_tries {
            if n == 0 {
                return Err(ctx.err(format!("{p}.retransmit_tries"), "must be >= 1"));
            }
            rt.tries = n;
        }
        if let Some(b) = c.retransmit_base {
            if !(1.0..=10.0).contains(&b) {
                return Err(ctx.err(
                    format!("{p}.retransmit_base"),
                    format!("{b} out of range 1.0..10.0"),
                ));
            }
            rt.base = b;
        }
        let rekey_time = nonzero(
            duration(&ctx, &format!("{p}.rekey_time"), &c.rekey_time)?,
            Some(Duration::from_secs(4 * 3600)),
        );
        let dpd_delay = nonzero(
            duration(&ctx, &format!("{p}.dpd_delay"), &c.dpd_delay)?,
            None,
        );
        let dpd_action = match c.dpd_action.as_deref().unwrap_or("clear") {
            "clear" => DpdAction::Clear,
            "restart" => DpdAction::Restart,
            "trap" => DpdAction::Trap,
            a => {
                return Err(ctx.err(
                    format!("{p}.dpd_action"),
                    format!("invalid dpd_action {a:?} (clear | restart | trap)"),
                ))
            }
        };
        // RFC 7383 2.5.1: IP datagram size of IKE fragments (strongSwan's default 1280).
        let fragment_size = c
            .fragment_size
            .unwrap_or(fs_ike::config::DEFAULT_FRAGMENT_SIZE);
        if !(256..=65535).contains(&fragment_size) {
            return Err(ctx.err(
                format!("{p}.fragment_size"),
                format!("{fragment_size} out of range 256..65535"),
            ));
        }
        // RFC 3948 4: keepalives from the NATed side (strongSwan's keep_alive, default 20s).
        let nat_keepalive = nonzero(
            duration(&ctx, &format!("{p}.nat_keepalive"), &c.nat_keepalive)?,
            Some(fs_ike::config::DEFAULT_NAT_KEEPALIVE),
        );
        let life_time = nonzero(
            duration(&ctx, &format!("{p}.life_time"), &c.life_time)?,
            None,
        );
        let rand_time = duration(&ctx, &format!("{p}.rand_time"), &c.rand_time)?;
        // RFC 7296 2.8.3 (strongSwan's reauth_time, default off): when set it replaces the
        // IKE rekey, so rekey_time only matters without it.
        let reauth_time = nonzero(
            duration(&ctx, &format!("{p}.reauth_time"), &c.reauth_time)?,
            None,
        );
        if let (Some(r), Some(l)) = (reauth_time, life_time) {
            if r >= l {
                return Err(ctx.err(format!("{p}.reauth_time"), "must be less than life_time"));
            }
        }
        if let (Some(r), Some(l)) = (rekey_time, life_time) {
            if r >= l && reauth_time.is_none() {
                return Err(ctx.err(format!("{p}.rekey_time"), "must be less than life_time"));
            }
        }
        if dpd_action != DpdAction::Clear && remote_addrs.is_empty() {
            return Err(ctx.err(
                format!("{p}.dpd_action"),
                "restart/trap need a peer to initiate to: set remote_addrs",
            ));
        }

        let mut children = Vec::new();
        for (chname, ch) in &c.children {
            let cp = format!("{p}.children.{chname}");
            let ts = |field: &str, v: &[String]| -> Result<Vec<TrafficSelector>, ConfigError> {
                if v.is_empty() {
                    return Err(ctx.err(
                        format!("{cp}.{field}"),
                        "at least one traffic selector is required",
                    ));
                }
                v.iter()
                    .enumerate()
                    .map(|(i, s)| {
                        s.parse().map_err(|e: fs_wire::ts::TsParseError| {
                            ctx.err(format!("{cp}.{field}[{i}]"), e.to_string())
                        })
                    })
                    .collect()
            };
            let local_ts = ts("local_ts", &ch.local_ts)?;
            let remote_ts = ts("remote_ts", &ch.remote_ts)?;
            let esp = ch
                .esp_proposals
                .clone()
                .unwrap_or_else(|| vec!["aes256gcm16".to_string()]);
            if esp.is_empty() {
                return Err(ctx.err(
                    format!("{cp}.esp_proposals"),
                    "at least one proposal is required",
                ));
            }
            let mut esp_proposals = Vec::new();
            for (i, s) in esp.iter().enumerate() {
                esp_proposals.push(
                    fs_crypto::proposal::parse_esp_proposal(s)
                        .map_err(|e| ctx.err(format!("{cp}.esp_proposals[{i}]"), e.to_string()))?,
                );
            }
            use fs_ike::config::fs_esp_mode::Mode;
            let mode = match ch.mode.as_deref().unwrap_or("tunnel") {
                "tunnel" => Mode::Tunnel,
                "transport" => Mode::Transport,
                m => {
                    return Err(ctx.err(
                        format!("{cp}.mode"),
                        format!("invalid mode {m:?} (tunnel | transport)"),
                    ))
                }
            };
            let start_action = match ch.start_action.as_deref().unwrap_or("none") {
                "none" => StartAction::None,
                "start" => StartAction::Start,
                "trap" => StartAction::Trap,
                a => {
                    return Err(ctx.err(
                        format!("{cp}.start_action"),
                        format!("invalid start_action {a:?} (none | start | trap)"),
                    ))
                }
            };
            if start_action != StartAction::None && remote_addrs.is_empty() {
                return Err(ctx.err(
                    format!("{cp}.start_action"),
                    "start/trap need a peer to initiate to: set remote_addrs",
                ));
            }
            let replay_window = ch.replay_window.unwrap_or(1024);
            if replay_window > 1 << 20 {
                return Err(ctx.err(
                    format!("{cp}.replay_window"),
                    format!("{replay_window} too large (max 1048576)"),
                ));
            }
            let rekey = nonzero(
                duration(&ctx, &format!("{cp}.rekey_time"), &ch.rekey_time)?,
                Some(Duration::from_secs(3600)),
            );
            let life_time = nonzero(
                duration(&ctx, &format!("{cp}.life_time"), &ch.life_time)?,
                None,
            );
            let rand_time = duration(&ctx, &format!("{cp}.rand_time"), &ch.rand_time)?;
            let (rekey_bytes, life_bytes) =
                (ch.rekey_bytes.unwrap_or(0), ch.life_bytes.unwrap_or(0));
            let (rekey_packets, life_packets) =
                (ch.rekey_packets.unwrap_or(0), ch.life_packets.unwrap_or(0));
            for (what, soft, hard) in [
                ("bytes", rekey_bytes, life_bytes),
                ("packets", rekey_packets, life_packets),
            ] {
                if soft != 0 && hard != 0 && soft >= hard {
                    return Err(ctx.err(
                        format!("{cp}.rekey_{what}"),
                        format!("must be less than life_{what} ({soft} >= {hard})"),
                    ));
                }
            }
            if let (Some(r), Some(l)) = (rekey, life_time) {
                if r >= l {
                    return Err(ctx.err(format!("{cp}.rekey_time"), "must be less than life_time"));
                }
            }
            children.push(ChildConfig {
                name: chname.clone(),
                local_ts,
                remote_ts,
                esp_proposals,
                mode,
                start_action,
                replay_window,
                rekey_time: rekey,
                life_time,
                rand_time,
                rekey_bytes,
                rekey_packets,
                life_bytes,
                life_packets,
            });
        }
        if children.is_empty() {
            return Err(ctx.err(format!("{p}.children"), "at least one child is required"));
        }
        // encap: true = always ESP in UDP (fake NAT-D, like strongSwan `encap = yes`);
        // false = RFC 7296 2.23 only (UDP when a NAT is detected); "auto" (default) = also
        // UDP when the peer is a ferroswan that prefers it (both data planes get UDP GSO/GRO).
        let (force_encap, prefer_udp_encap) = match &c.encap {
            None => (false, true),
            Some(RawEncap::Bool(b)) => (*b, false),
            Some(RawEncap::Text(t)) if t == "auto" => (false, true),
            Some(RawEncap::Text(t)) => {
                return Err(ctx.err(
                    format!("{p}.encap"),
                    format!("invalid value {t:?} (true, false or \"auto\")"),
                ))
            }
        };
        connections.push(ConnConfig {
            name: cname.clone(),
            local_addrs,
            remote_addrs,
            remote_port: c.remote_port.unwrap_or(500),
            local_id,
            remote_id,
            psk,
            ike_proposals,
            children,
            retransmit: rt,
            force_encap,
            prefer_udp_encap,
            rekey_time,
            reauth_time,
            dpd_delay,
            dpd_action,
            fragmentation: c.fragmentation.unwrap_or(true),
            fragment_size,
            nat_keepalive,
            life_time,
            rand_time,
        });
    }
    // [limits]
    let rl = &raw.limits;
    let dl = fs_ike::Limits::default();
    let positive = |path: &str, d: Option<Duration>, default: Duration| match d {
        Some(d) if d.is_zero() => Err(ctx.err(path, "must be greater than 0")),
        d => Ok(d.unwrap_or(default)),
    };
    let limits = fs_ike::Limits {
        cookie_threshold: rl.cookie_threshold.unwrap_or(dl.cookie_threshold),
        half_open_max: rl.half_open_max.unwrap_or(dl.half_open_max),
        half_open_per_source_max: rl
            .half_open_per_source_max
            .unwrap_or(dl.half_open_per_source_max),
        half_open_timeout: positive(
            "limits.half_open_timeout",
            duration(&ctx, "limits.half_open_timeout", &rl.half_open_timeout)?,
            dl.half_open_timeout,
        )?,
        cookie_secret_lifetime: positive(
            "limits.cookie_secret_lifetime",
            duration(
                &ctx,
                "limits.cookie_secret_lifetime",
                &rl.cookie_secret_lifetime,
            )?,
            dl.cookie_secret_lifetime,
        )?,
    };
    Ok(FileConfig {
        daemon,
        ike: fs_ike::Config {
            connections,
            limits,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[daemon]
tun_name = "fs9"
[connections.s2s]
local_addrs = ["100.1.1.1"]
remote_addrs = ["200.2.2.2"]
proposals = ["aes256gcm16-prfsha256-x25519"]
retransmit_timeout = "500ms"
rekey_time = "2m"
dpd_delay = 0
  [connections.s2s.local]
  auth = "psk"
  id = "gw-a.example"
  [connections.s2s.remote]
  id = "gw-b.example"
  [connections.s2s.children.net]
  local_ts = ["192.168.1.0/24"]
  remote_ts = ["192.168.2.0/24"]
  esp_proposals = ["aes256gcm16"]
  start_action = "trap"
[secrets.ab]
ids = ["gw-a.example", "gw-b.example"]
secret = "0x0102ff"
[secrets.other]
ids = ["gw-a.example"]
secret = "wrong"
"#;

    fn p(text: &str) -> Result<FileConfig, ConfigError> {
        parse("t.toml", text, Path::new("."))
    }

    fn err(text: &str) -> String {
        p(text).expect_err("config should be rejected").to_string()
    }

    #[test]
    fn auto_tun_mtu_derivation() {
        // GOOD: one aes256gcm16 child towards an IPv4 peer: 20 + 8 + 37 = 65
        let c = p(GOOD).unwrap();
        assert_eq!(c.worst_esp_overhead(), (37, "aes256gcm16".into()));
        let (m, how) = c.resolve_tun_mtu(|_| Some(("eth0".into(), 1500)));
        assert_eq!(m, 1435, "{how}");
        assert!(
            how.starts_with("auto: path MTU 1500 (eth0 towards "),
            "{how}"
        );
        assert_eq!(c.resolve_tun_mtu(|_| Some(("eth0".into(), 1400))).0, 1335);
        assert_eq!(c.resolve_tun_mtu(|_| None).0, 1435, "assumed 1500");
        assert_eq!(c.resolve_tun_mtu(|_| Some(("x".into(), 300))).0, 576);
        // the largest overhead over all proposals: CBC + SHA-512 = 73
        let cbc = GOOD.replace(
            "esp_proposals = [\"aes256gcm16\"]",
            "esp_proposals = [\"aes256gcm16\", \"aes128-sha256-sha512\"]",
        );
        let c = p(&cbc).unwrap();
        assert_eq!(c.worst_esp_overhead(), (73, "aes128-sha512".into()));
        assert_eq!(c.resolve_tun_mtu(|_| Some(("e".into(), 1500))).0, 1399);
        // a fixed value is kept as is
        let c = p(&GOOD.replace("tun_name = \"fs9\"", "tun_mtu = 1300")).unwrap();
        assert_eq!(c.resolve_tun_mtu(|_| None), (1300, "configured".into()));
    }

    #[test]
    fn tun_mtu_values() {
        let with = |v: &str| GOOD.replace("tun_name = \"fs9\"", &format!("tun_mtu = {v}"));
        assert_eq!(p(&with("\"auto\"")).unwrap().daemon.tun_mtu, TunMtu::Auto);
        assert_eq!(
            p(&with("1400")).unwrap().daemon.tun_mtu,
            TunMtu::Fixed(1400)
        );
        assert_eq!(p(&with("576")).unwrap().daemon.tun_mtu, TunMtu::Fixed(576));
        assert_eq!(
            p(&with("65535")).unwrap().daemon.tun_mtu,
            TunMtu::Fixed(65535)
        );
        for (v, want) in [
            ("575", "t.toml: daemon.tun_mtu: 575 out of range 576..65535"),
            (
                "65536",
                "t.toml: daemon.tun_mtu: 65536 out of range 576..65535",
            ),
            ("-1", "t.toml: daemon.tun_mtu: -1 out of range 576..65535"),
            (
                "\"big\"",
                "t.toml: daemon.tun_mtu: invalid value \"big\" (\"auto\" or a number 576..65535)",
            ),
        ] {
            assert_eq!(err(&with(v)), want, "{v}");
        }
        let e = err(&with("1.5"));
        assert!(e.starts_with("t.toml: line "), "{e}");
    }

    #[test]
    fn encap_values() {
        let with = |v: &str| GOOD.replace("dpd_delay = 0", &format!("dpd_delay = 0\nencap = {v}"));
        let flags = |text: &str| {
            let c = p(text).unwrap();
            let c = &c.ike.connections[0];
            (c.force_encap, c.prefer_udp_encap)
        };
        assert_eq!(flags(GOOD), (false, true), "default is auto");
        assert_eq!(flags(&with("\"auto\"")), (false, true));
        assert_eq!(flags(&with("true")), (true, false));
        assert_eq!(flags(&with("false")), (false, false));
        assert_eq!(
            err(&with("\"yes\"")),
            "t.toml: connections.s2s.encap: invalid value \"yes\" (true, false or \"auto\")"
        );
    }

    #[test]
    fn workers_values() {
        let with = |v: &str| GOOD.replace("tun_name = \"fs9\"", &format!("workers = {v}"));
        assert_eq!(p(GOOD).unwrap().daemon.workers, 0, "default: auto");
        assert_eq!(p(&with("\"auto\"")).unwrap().daemon.workers, 0);
        assert_eq!(p(&with("0")).unwrap().daemon.workers, 0);
        assert_eq!(p(&with("1")).unwrap().daemon.workers, 1);
        assert_eq!(p(&with("64")).unwrap().daemon.workers, 64);
        for (v, want) in [
            ("65", "t.toml: daemon.workers: 65 out of range 0..64 (0 = \"auto\")"),
            ("-2", "t.toml: daemon.workers: -2 out of range 0..64 (0 = \"auto\")"),
            (
                "\"many\"",
                "t.toml: daemon.workers: invalid value \"many\" (\"auto\" or a number 0..64, 0 = auto)",
            ),
        ] {
            assert_eq!(err(&with(v)), want, "{v}");
        }
        let e = err(&with("2.5"));
        assert!(e.starts_with("t.toml: line "), "{e}");
    }

    #[test]
    fn good_config() {
        let c = p(GOOD).unwrap();
        assert_eq!(c.daemon.tun_name, "fs9");
        assert_eq!(c.daemon.tun_mtu, TunMtu::Auto, "default");
        assert_eq!(c.daemon.ike_port, 500);
        assert_eq!(
            c.daemon.control_socket,
            PathBuf::from(DEFAULT_CONTROL_SOCKET)
        );
        let s = &c.ike.connections[0];
        assert_eq!(s.name, "s2s");
        assert_eq!(s.psk, vec![1, 2, 0xff], "best match names both ids");
        assert_eq!(s.retransmit.timeout, Duration::from_millis(500));
        assert_eq!(s.rekey_time, Some(Duration::from_secs(120)));
        assert_eq!(s.dpd_delay, None);
        assert_eq!(s.dpd_action, DpdAction::Clear);
        assert_eq!(s.children[0].rekey_time, Some(Duration::from_secs(3600)));
        assert_eq!(s.remote_port, 500);
        assert_eq!(s.local_id, Identity::Fqdn("gw-a.example".into()));
        assert_eq!(s.children[0].start_action, StartAction::Trap);
        assert_eq!(s.children[0].replay_window, 1024);
        assert_eq!(s.children[0].local_ts[0].to_string(), "192.168.1.0/24");
        assert!(!c.uses_ipv6());
        assert_eq!(
            c.local_addrs(),
            vec!["100.1.1.1".parse::<IpAddr>().unwrap()]
        );
    }

    #[test]
    fn examples_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/site-to-site");
        for f in ["gw-a.toml", "gw-b.toml"] {
            let c = load(&dir.join(f)).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(c.ike.connections[0].psk.len(), 33);
        }
    }

    #[test]
    fn nat_and_volume_lifetimes() {
        let c = p(GOOD).unwrap();
        let s = &c.ike.connections[0];
        assert_eq!(s.nat_keepalive, Some(Duration::from_secs(20)));
        assert_eq!((s.life_time, s.rand_time), (None, None));
        let ch = &s.children[0];
        assert_eq!(
            (
                ch.rekey_bytes,
                ch.rekey_packets,
                ch.life_bytes,
                ch.life_packets
            ),
            (0, 0, 0, 0)
        );
        let c = p(&GOOD
            .replace(
                "dpd_delay = 0",
                "dpd_delay = 0\nnat_keepalive = \"3s\"\nlife_time = \"5h\"\nrand_time = \"10m\"",
            )
            .replace(
                "start_action = \"trap\"",
                "start_action = \"trap\"\n  rekey_bytes = 1000000\n  life_bytes = 2000000\n  rekey_packets = 1000\n  life_packets = 2000\n  life_time = \"2h\"\n  rand_time = \"1m\"",
            ))
        .unwrap();
        let s = &c.ike.connections[0];
        assert_eq!(s.nat_keepalive, Some(Duration::from_secs(3)));
        assert_eq!(s.life_time, Some(Duration::from_secs(5 * 3600)));
        assert_eq!(s.rand_time, Some(Duration::from_secs(600)));
        assert_eq!(s.reauth_time, None);
        let c = p(&GOOD.replace("dpd_delay = 0", "dpd_delay = 0\nreauth_time = \"20s\"")).unwrap();
        assert_eq!(
            c.ike.connections[0].reauth_time,
            Some(Duration::from_secs(20))
        );
        let e = p(&GOOD.replace(
            "dpd_delay = 0",
            "dpd_delay = 0\nreauth_time = \"2h\"\nlife_time = \"1h\"",
        ))
        .unwrap_err();
        assert!(e.to_string().contains("reauth_time"), "{e}");
        let ch = &s.children[0];
        assert_eq!(
            (
                ch.rekey_bytes,
                ch.life_bytes,
                ch.rekey_packets,
                ch.life_packets
            ),
            (1_000_000, 2_000_000, 1000, 2000)
        );
        assert_eq!(ch.life_time, Some(Duration::from_secs(7200)));
        assert_eq!(ch.rand_time, Some(Duration::from_secs(60)));
        let c = p(&GOOD.replace("dpd_delay = 0", "dpd_delay = 0\nnat_keepalive = 0")).unwrap();
        assert_eq!(c.ike.connections[0].nat_keepalive, None);
        assert!(err(&GOOD.replace(
            "start_action = \"trap\"",
            "start_action = \"trap\"\n  rekey_bytes = 10\n  life_bytes = 5"
        ))
        .contains("children.net.rekey_bytes: must be less than life_bytes"));
        assert!(
            err(&GOOD.replace("dpd_delay = 0", "dpd_delay = 0\nlife_time = \"1m\""))
                .contains("connections.s2s.rekey_time: must be less than life_time")
        );
    }

    #[test]
    fn lifecycle_settings() {
        let c = p(&GOOD
            .replace(
                "dpd_delay = 0",
                "dpd_delay = \"5s\"\ndpd_action = \"restart\"",
            )
            .replace(
                "start_action = \"trap\"",
                "start_action = \"trap\"\n  rekey_time = \"15s\"",
            ))
        .unwrap();
        let s = &c.ike.connections[0];
        assert_eq!(s.dpd_delay, Some(Duration::from_secs(5)));
        assert_eq!(s.dpd_action, DpdAction::Restart);
        assert_eq!(s.children[0].rekey_time, Some(Duration::from_secs(15)));
        let c = p(&GOOD.replace("dpd_delay = 0", "dpd_action = \"trap\"")).unwrap();
        assert_eq!(c.ike.connections[0].dpd_action, DpdAction::Trap);
        let e = err(&GOOD.replace("dpd_delay = 0", "dpd_action = \"hold\""));
        assert!(e.contains("connections.s2s.dpd_action"), "{e}");
        assert!(e.contains("clear | restart | trap"), "{e}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("4s").unwrap(), Duration::from_secs(4));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert!(parse_duration("4 parsecs").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("ms").is_err());
    }

    #[test]
    fn bad_proposal() {
        let e = err(&GOOD.replace(
            r#"esp_proposals = ["aes256gcm16"]"#,
            r#"esp_proposals = ["aes999"]"#,
        ));
        assert!(
            e.starts_with("t.toml: connections.s2s.children.net.esp_proposals[0]: unknown algorithm keyword \"aes999\""),
            "{e}"
        );
        let e = err(&GOOD.replace(
            "aes256gcm16-prfsha256-x25519",
            "aes256gcm16-prfsha256-x25519\", \"nope",
        ));
        assert!(
            e.starts_with("t.toml: connections.s2s.proposals[1]: "),
            "{e}"
        );
    }

    #[test]
    fn bad_traffic_selector() {
        let e = err(&GOOD.replace("192.168.2.0/24", "192.168.300.0/24"));
        assert!(
            e.starts_with(
                "t.toml: connections.s2s.children.net.remote_ts[0]: invalid traffic selector"
            ),
            "{e}"
        );
        let e = err(&GOOD.replace(r#"local_ts = ["192.168.1.0/24"]"#, "local_ts = []"));
        assert!(
            e.contains("connections.s2s.children.net.local_ts: at least one"),
            "{e}"
        );
    }

    #[test]
    fn unknown_field_and_syntax() {
        let e = err(&GOOD.replace("tun_name = \"fs9\"", "tun_name = \"fs9\"\nbogus = 1"));
        assert!(
            e.starts_with("t.toml: line 4, column 1: unknown field `bogus`"),
            "{e}"
        );
        let e = err(&GOOD.replace("start_action = \"trap\"", "start_actoin = \"trap\""));
        assert!(e.contains("unknown field `start_actoin`"), "{e}");
        let e = err("[connections.x\n");
        assert!(e.starts_with("t.toml: line 1"), "{e}");
        let e = err(&GOOD
            .replace("retransmit_tries", "x")
            .replace("rekey_time = \"2m\"", "rekey_time = [1]"));
        assert!(
            e.starts_with("t.toml: line 9, column 14: invalid type: sequence, expected a duration"),
            "{e}"
        );
    }

    #[test]
    fn bad_values() {
        let e = err(&GOOD.replace("\"100.1.1.1\"", "\"100.1.1\""));
        assert_eq!(
            e,
            "t.toml: connections.s2s.local_addrs[0]: invalid IP address \"100.1.1\""
        );
        let e = err(&GOOD.replace("\"500ms\"", "\"5 fortnights\""));
        assert!(
            e.starts_with("t.toml: connections.s2s.retransmit_timeout: invalid duration"),
            "{e}"
        );
        let e = err(&GOOD.replace("start_action = \"trap\"", "start_action = \"later\""));
        assert!(
            e.starts_with(
                "t.toml: connections.s2s.children.net.start_action: invalid start_action"
            ),
            "{e}"
        );
        let e = err(&GOOD.replace("start_action = \"trap\"", "mode = \"beet\""));
        assert!(
            e.starts_with("t.toml: connections.s2s.children.net.mode: invalid mode"),
            "{e}"
        );
        let e = err(&GOOD.replace("auth = \"psk\"", "auth = \"pubkey\""));
        assert!(
            e.starts_with("t.toml: connections.s2s.local.auth: unsupported auth"),
            "{e}"
        );
        let e = err(&GOOD.replace("tun_name = \"fs9\"", "tun_mtu = 100"));
        assert!(
            e.starts_with("t.toml: daemon.tun_mtu: 100 out of range"),
            "{e}"
        );
        let e = err(&GOOD.replace("remote_addrs = [\"200.2.2.2\"]", ""));
        assert!(
            e.starts_with("t.toml: connections.s2s.children.net.start_action: start/trap need"),
            "{e}"
        );
    }

    #[test]
    fn secrets() {
        let e = err(&GOOD.replace("0x0102ff", "0xzz"));
        assert!(
            e.starts_with("t.toml: secrets.ab.secret: invalid hex secret"),
            "{e}"
        );
        let no_secrets = &GOOD[..GOOD.find("[secrets.ab]").unwrap()];
        let e = err(no_secrets);
        assert!(e.starts_with("t.toml: connections.s2s: no PSK"), "{e}");
        // inline PSK
        let inline = no_secrets.replace(
            "auth = \"psk\"\n  id = \"gw-a.example\"",
            "id = \"gw-a.example\"\n  psk = \"inline\"",
        );
        assert_eq!(p(&inline).unwrap().ike.connections[0].psk, b"inline");
        // secret_file relative to the config's directory
        let dir = std::env::temp_dir().join(format!("fs-cfg-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("psk.txt"), "from-file\n").unwrap();
        let f = GOOD.replace("secret = \"0x0102ff\"", "secret_file = \"psk.txt\"");
        let c = parse("t.toml", &f, &dir).unwrap();
        assert_eq!(c.ike.connections[0].psk, b"from-file");
        let e = parse("t.toml", &f.replace("psk.txt", "missing.txt"), &dir)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("t.toml: secrets.ab.secret_file: cannot read"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).ok();
        // no remote id: a secret naming the local id matches
        let anyremote = GOOD.replace("[connections.s2s.remote]\n  id = \"gw-b.example\"", "");
        assert_eq!(p(&anyremote).unwrap().ike.connections[0].remote_id, None);
    }

    #[test]
    fn limits_section() {
        assert_eq!(p(GOOD).unwrap().ike.limits, fs_ike::Limits::default());
        let text = format!(
            "[limits]\ncookie_threshold = 0\nhalf_open_max = 7\nhalf_open_per_source_max = 2\n\
             half_open_timeout = \"5s\"\ncookie_secret_lifetime = \"1m\"\n{GOOD}"
        );
        let l = p(&text).unwrap().ike.limits;
        assert_eq!(
            (
                l.cookie_threshold,
                l.half_open_max,
                l.half_open_per_source_max
            ),
            (0, 7, 2)
        );
        assert_eq!(l.half_open_timeout, Duration::from_secs(5));
        assert_eq!(l.cookie_secret_lifetime, Duration::from_secs(60));
        let e = err(&format!("[limits]\nhalf_open_timeout = 0\n{GOOD}"));
        assert!(e.contains("limits.half_open_timeout"), "{e}");
        let e = err(&format!("[limits]\nbogus = 1\n{GOOD}"));
        assert!(e.contains("bogus"), "{e}");
    }
}
