//! The raw (serde) form of the file: what TOML gives, before any check. Counts are read as
//! `i64` (any TOML integer) so that a value out of range is reported by the section parsers
//! with its field and range, not as a serde type error.
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;

/// A duration: `"500ms"`, `"4s"`, `"2m"`, `"1h"`, `"1d"`, or an integer number of seconds.
#[derive(Debug, Clone)]
pub(super) enum RawDuration {
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

/// A secret as written in the file (`secret = "..."`, `psk = "..."`): wiped on drop, and the
/// raw types' derived `Debug` prints only its length.
pub(super) struct RawSecretText(pub(super) zeroize::Zeroizing<String>);

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

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    #[serde(default)]
    pub daemon: RawDaemon,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub connections: BTreeMap<String, RawConn>,
    #[serde(default)]
    pub secrets: BTreeMap<String, RawSecret>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDaemon {
    pub control_socket: Option<String>,
    pub tun_name: Option<String>,
    pub tun_mtu: Option<RawTunMtu>,
    pub workers: Option<RawTunMtu>,
    pub log_level: Option<String>,
    pub ike_port: Option<i64>,
    pub natt_port: Option<i64>,
    pub fail_closed: Option<bool>,
    pub user: Option<String>,
}

/// `tun_mtu`, `workers`: a number or `"auto"`.
#[derive(Deserialize, Debug)]
#[serde(untagged)]
pub(super) enum RawTunMtu {
    Num(i64),
    Text(String),
}

/// `encap`: `true` (always UDP), `false` (UDP only behind NAT) or `"auto"`.
#[derive(Deserialize, Debug)]
#[serde(untagged)]
pub(super) enum RawEncap {
    Bool(bool),
    Text(String),
}

/// `[limits]`: responder DoS limits (fs_ike::Limits), all optional.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub cookie_threshold: Option<i64>,
    pub half_open_max: Option<i64>,
    pub half_open_per_source_max: Option<i64>,
    pub half_open_timeout: Option<RawDuration>,
    pub cookie_secret_lifetime: Option<RawDuration>,
    pub max_children_per_ike_sa: Option<i64>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConn {
    #[serde(default)]
    pub local_addrs: Vec<String>,
    #[serde(default)]
    pub remote_addrs: Vec<String>,
    pub remote_port: Option<i64>,
    pub proposals: Option<Vec<String>>,
    pub encap: Option<RawEncap>,
    pub retransmit_timeout: Option<RawDuration>,
    pub retransmit_tries: Option<i64>,
    pub retransmit_base: Option<f64>,
    pub rekey_time: Option<RawDuration>,
    pub reauth_time: Option<RawDuration>,
    pub dpd_delay: Option<RawDuration>,
    pub dpd_action: Option<String>,
    pub fragmentation: Option<bool>,
    pub fragment_size: Option<i64>,
    pub nat_keepalive: Option<RawDuration>,
    pub life_time: Option<RawDuration>,
    pub rand_time: Option<RawDuration>,
    pub unique: Option<String>,
    pub local: RawLocal,
    #[serde(default)]
    pub remote: RawRemote,
    #[serde(default)]
    pub children: BTreeMap<String, RawChild>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLocal {
    pub auth: Option<String>,
    pub id: Option<String>,
    /// Convenience: inline PSK instead of a [secrets] entry.
    pub psk: Option<RawSecretText>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRemote {
    pub auth: Option<String>,
    pub id: Option<String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(super) struct RawChild {
    #[serde(default)]
    pub local_ts: Vec<String>,
    #[serde(default)]
    pub remote_ts: Vec<String>,
    pub esp_proposals: Option<Vec<String>>,
    pub mode: Option<String>,
    pub start_action: Option<String>,
    pub replay_window: Option<i64>,
    pub rekey_time: Option<RawDuration>,
    pub life_time: Option<RawDuration>,
    pub rand_time: Option<RawDuration>,
    pub rekey_bytes: Option<i64>,
    pub rekey_packets: Option<i64>,
    pub life_bytes: Option<i64>,
    pub life_packets: Option<i64>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSecret {
    #[serde(default)]
    pub ids: Vec<String>,
    pub secret: Option<RawSecretText>,
    pub secret_file: Option<String>,
}

/// Parse the TOML text; a syntax or type error names `line L, column C`.
pub(super) fn from_toml(ctx: &super::Ctx, text: &str) -> Result<RawFile, super::ConfigError> {
    toml::from_str(text).map_err(|e| {
        let pos = e
            .span()
            .map(|sp| {
                let before = text.get(..sp.start).unwrap_or(text);
                let line = before.matches('\n').count() + 1;
                let col = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
                format!("line {line}, column {col}")
            })
            .unwrap_or_default();
        ctx.err(pos, e.message().trim().to_string())
    })
}
