//! Control socket protocol (one JSON request line, one JSON response line over a Unix stream)
//! and the client side used by `up`, `down` and `status`.
use crate::status::StatusReport;
use serde::{Deserialize, Serialize};
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
    /// `status` payload: `{"ike_sas": [...], "counters": {...}, ...}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<StatusReport>,
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
}
