//! Control socket protocol (one JSON request line, one JSON response line over a Unix stream)
//! and the client side used by `up`, `down` and `status`.
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Longest request line the daemon accepts.
pub const MAX_REQUEST: u64 = 64 * 1024;

/// A request to the daemon.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Request {
    /// Establish `conn` (all its children, or only `child`), wait up to `timeout` seconds.
    Up {
        conn: String,
        child: Option<String>,
        timeout: Option<u64>,
    },
    /// Delete the IKE SA(s) of `conn`, wait up to `timeout` seconds for the answer.
    Down { conn: String, timeout: Option<u64> },
    /// IKE/CHILD SAs with counters, and global drop counters.
    Status,
}

/// The daemon's answer.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct Response {
    pub ok: bool,
    /// Failure reason (`AUTHENTICATION_FAILED`, `NO_PROPOSAL_CHOSEN`, `TIMEOUT`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Human-readable lines to print.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<String>,
    /// `status` payload: `{"ike_sas": [...], "counters": {...}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Value>,
}

impl Response {
    /// A failure with `reason`.
    pub fn fail(reason: impl Into<String>) -> Self {
        Response {
            ok: false,
            error: Some(reason.into()),
            ..Default::default()
        }
    }
}

/// Send one request and read the response.
pub fn call(sock: &Path, req: &Request, wait: Duration) -> Result<Response, String> {
    let mut s = UnixStream::connect(sock).map_err(|e| {
        format!(
            "cannot connect to control socket {}: {e} (is `ferroswan run` running? use --control)",
            sock.display()
        )
    })?;
    s.set_read_timeout(Some(wait.saturating_add(Duration::from_secs(5))))
        .ok();
    let mut line = serde_json::to_string(req).map_err(|e| e.to_string())?;
    line.push('\n');
    s.write_all(line.as_bytes())
        .map_err(|e| format!("control socket write: {e}"))?;
    let mut resp = String::new();
    BufReader::new(s)
        .read_line(&mut resp)
        .map_err(|e| format!("control socket read: {e}"))?;
    if resp.trim().is_empty() {
        return Err("daemon closed the control connection without answering".into());
    }
    serde_json::from_str(&resp).map_err(|e| format!("invalid response from daemon: {e}"))
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}
fn n(v: &Value, k: &str) -> u64 {
    v.get(k).and_then(Value::as_u64).unwrap_or(0)
}

/// Human output in the style of `swanctl --list-sas`.
/// `, rekeying in 12s, expires in 30s, rekeyed 2 times` (only the parts that apply).
fn lifetimes(v: &Value) -> String {
    let mut o = String::new();
    if let Some(r) = v.get("rekey_in_secs").and_then(Value::as_u64) {
        o += &format!(", rekeying in {r}s");
    }
    if let Some(e) = v.get("expires_in_secs").and_then(Value::as_u64) {
        o += &format!(", expires in {e}s");
    }
    let c = v.get("rekey_count").and_then(Value::as_u64).unwrap_or(0);
    if c > 0 {
        o += &format!(", rekeyed {c} time{}", if c == 1 { "" } else { "s" });
    }
    o
}

pub fn format_status(st: &Value) -> String {
    let mut o = String::new();
    let empty = Vec::new();
    let sas = st
        .get("ike_sas")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    if sas.is_empty() {
        o.push_str("no IKE_SAs\n");
    }
    for sa in sas {
        let init = sa
            .get("initiator")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        o += &format!(
            "{}: #{}, {}, IKEv2, {}_i{} {}_r{}\n",
            s(sa, "conn"),
            n(sa, "id"),
            s(sa, "state"),
            s(sa, "spi_i"),
            if init { "*" } else { "" },
            s(sa, "spi_r"),
            if init { "" } else { "*" },
        );
        let nat = |k: &str| {
            if sa.get(k).and_then(Value::as_bool).unwrap_or(false) {
                " (behind NAT)"
            } else {
                ""
            }
        };
        o += &format!(
            "  local  '{}' @ {}{}\n",
            s(sa, "local_id"),
            s(sa, "local"),
            nat("nat_local")
        );
        o += &format!(
            "  remote '{}' @ {}{}\n",
            s(sa, "remote_id"),
            s(sa, "remote"),
            nat("nat_remote")
        );
        let algs: Vec<&str> = ["encr", "integ", "prf", "dh"]
            .iter()
            .filter_map(|k| sa.get(*k).and_then(Value::as_str))
            .collect();
        if !algs.is_empty() {
            o += &format!("  {}\n", algs.join("/"));
        }
        if sa
            .get("udp_encap_preferred")
            .and_then(Value::as_bool)
            .unwrap_or(false)
        {
            o += "  ESP in UDP 4500 (both peers prefer UDP encapsulation)\n";
        }
        o += &format!(
            "  established {}s ago{}\n",
            n(sa, "established_secs"),
            lifetimes(sa)
        );
        for ch in sa
            .get("child_sas")
            .and_then(Value::as_array)
            .unwrap_or(&empty)
        {
            let mode = ch
                .get("mode")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_uppercase();
            let mut alg = s(ch, "encr").to_string();
            if let Some(i) = ch.get("integ").and_then(Value::as_str) {
                alg += &format!("/{i}");
            }
            let encap = if ch.get("encap").and_then(Value::as_bool).unwrap_or(false) {
                "-in-UDP"
            } else {
                ""
            };
            o += &format!(
                "  {}: {}, {}, {}{}:{}\n",
                s(ch, "name"),
                s(ch, "state"),
                mode,
                s(ch, "protocol"),
                encap,
                alg
            );
            o += &format!(
                "    installed {}s ago{}\n",
                n(ch, "established_secs"),
                lifetimes(ch)
            );
            o += &format!(
                "    in  {:>8}, {:>10} bytes, {:>8} packets\n",
                s(ch, "spi_in"),
                n(ch, "bytes_in"),
                n(ch, "packets_in")
            );
            o += &format!(
                "    out {:>8}, {:>10} bytes, {:>8} packets\n",
                s(ch, "spi_out"),
                n(ch, "bytes_out"),
                n(ch, "packets_out")
            );
            let (r, a, m) = (
                n(ch, "dropped_replay"),
                n(ch, "dropped_auth"),
                n(ch, "dropped_malformed"),
            );
            if r + a + m > 0 {
                o += &format!("    dropped: {r} replay, {a} auth, {m} malformed\n");
            }
            let ts = |k: &str| -> String {
                ch.get(k)
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .unwrap_or_default()
            };
            o += &format!("    local  {}\n", ts("local_ts"));
            o += &format!("    remote {}\n", ts("remote_ts"));
        }
    }
    if let Some(c) = st.get("counters").and_then(Value::as_object) {
        let nz: Vec<String> = c
            .iter()
            .filter(|(_, v)| v.as_u64().unwrap_or(0) > 0)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !nz.is_empty() {
            o += &format!("data plane: {}\n", nz.join(" "));
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_roundtrip() {
        let r = Request::Up {
            conn: "s2s".into(),
            child: Some("net".into()),
            timeout: Some(5),
        };
        let j = serde_json::to_string(&r).unwrap();
        assert_eq!(j, r#"{"cmd":"up","conn":"s2s","child":"net","timeout":5}"#);
        assert_eq!(serde_json::from_str::<Request>(&j).unwrap(), r);
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"cmd":"status"}"#).unwrap(),
            Request::Status
        );
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"reboot"}"#).is_err());
    }

    #[test]
    fn status_format() {
        let st = serde_json::json!({
            "ike_sas": [{"id": 1, "conn": "s2s", "state": "ESTABLISHED", "initiator": true,
              "local": "100.1.1.1[500]", "remote": "200.2.2.2[500]", "local_id": "gw-a.example",
              "remote_id": "gw-b.example", "spi_i": "01", "spi_r": "02", "encr": "AES_GCM_16-256",
              "established_secs": 3, "rekey_in_secs": 100, "rekey_count": 0,
              "child_sas": [{"name": "net", "state": "INSTALLED", "mode": "Tunnel", "protocol": "ESP",
                 "established_secs": 4, "rekey_in_secs": 10, "expires_in_secs": 20, "rekey_count": 2,
                 "spi_in": "c0000001", "spi_out": "c0000002", "encr": "AES_GCM_16-256", "encap": false,
                 "local_ts": ["192.168.1.0/24"], "remote_ts": ["192.168.2.0/24"], "bytes_in": 84,
                 "packets_in": 1}]}],
            "counters": {"no_policy": 2, "no_sa": 0}
        });
        let out = format_status(&st);
        assert!(
            out.contains("s2s: #1, ESTABLISHED, IKEv2, 01_i* 02_r"),
            "{out}"
        );
        assert!(
            out.contains("net: INSTALLED, TUNNEL, ESP:AES_GCM_16-256"),
            "{out}"
        );
        assert!(out.contains("local  192.168.1.0/24"), "{out}");
        assert!(
            out.contains("established 3s ago, rekeying in 100s\n"),
            "{out}"
        );
        assert!(
            out.contains("installed 4s ago, rekeying in 10s, expires in 20s, rekeyed 2 times"),
            "{out}"
        );
        assert!(out.contains("data plane: no_policy=2"), "{out}");
        assert_eq!(format_status(&serde_json::json!({})), "no IKE_SAs\n");
    }
}
