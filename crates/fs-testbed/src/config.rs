//! Gateway parameters and ferroswan configs.

use crate::*;
use std::fmt::Write as _;

// ---------------------------------------------------------------------------------------
// gateway parameters
// ---------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct GwParams {
    pub local_addr: String,
    pub remote_addr: String,
    pub local_id: String,
    pub remote_id: String,
    pub local_ts: String,
    pub remote_ts: String,
    pub ike_proposal: String,
    pub esp_proposal: String,
    pub psk: String,
}

impl GwParams {
    /// Site A gateway (the initiator in every test).
    pub fn a(esp: &str) -> GwParams {
        GwParams {
            local_addr: GA_OUT.into(),
            remote_addr: GB_OUT.into(),
            local_id: "gw-a.example".into(),
            remote_id: "gw-b.example".into(),
            local_ts: NET_A.into(),
            remote_ts: NET_B.into(),
            ike_proposal: IKE_PROPOSAL.into(),
            esp_proposal: esp.into(),
            psk: PSK.into(),
        }
    }
    /// Site B gateway (the responder).
    pub fn b(esp: &str) -> GwParams {
        GwParams {
            local_addr: GB_OUT.into(),
            remote_addr: GA_OUT.into(),
            local_id: "gw-b.example".into(),
            remote_id: "gw-a.example".into(),
            local_ts: NET_B.into(),
            remote_ts: NET_A.into(),
            ike_proposal: IKE_PROPOSAL.into(),
            esp_proposal: esp.into(),
            psk: PSK.into(),
        }
    }
    pub(crate) fn vars(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("LOCAL_ADDR", &self.local_addr),
            ("REMOTE_ADDR", &self.remote_addr),
            ("LOCAL_ID", &self.local_id),
            ("REMOTE_ID", &self.remote_id),
            ("LOCAL_TS", &self.local_ts),
            ("REMOTE_TS", &self.remote_ts),
            ("IKE_PROPOSAL", &self.ike_proposal),
            ("ESP_PROPOSAL", &self.esp_proposal),
            ("PSK", &self.psk),
            // lifecycle knobs (tests/lifecycle.rs overrides them via `start_opts`)
            ("SS_IKE_REKEY_TIME", "4h"),
            ("SS_CHILD_REKEY_TIME", "1h"),
            ("SS_CONN_EXTRA", ""),
            ("SS_CHILD_EXTRA", ""),
            ("FS_CONN_EXTRA", ""),
            ("FS_CHILD_EXTRA", ""),
            // extra traffic selectors, appended to the lists (tests/fragmentation.rs: big
            // IKE_AUTH messages); ferroswan: `, "a/b", ...`, strongSwan: `,a/b,...`
            ("FS_LOCAL_TS_EXTRA", ""),
            ("FS_REMOTE_TS_EXTRA", ""),
            ("SS_LOCAL_TS_EXTRA", ""),
            ("SS_REMOTE_TS_EXTRA", ""),
        ]
    }
}

// ---------------------------------------------------------------------------------------
// configs
// ---------------------------------------------------------------------------------------

/// What a ferroswan config needs beyond [`GwParams`].
#[derive(Clone, Debug)]
pub struct FsOpts {
    pub start_action: String,
    /// Selectors (several allowed); empty = `GwParams::local_ts` / `remote_ts`.
    pub local_ts: Vec<String>,
    pub remote_ts: Vec<String>,
    pub encap: bool,
    pub log_level: String,
}

impl Default for FsOpts {
    fn default() -> Self {
        FsOpts {
            start_action: "none".into(),
            local_ts: Vec::new(),
            remote_ts: Vec::new(),
            encap: false,
            log_level: "debug".into(),
        }
    }
}

fn toml_list(v: &[String]) -> String {
    let items: Vec<String> = v.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", items.join(", "))
}

/// A full ferroswan config (DESIGN.md format) for `Ferroswan::start_with_config`.
pub fn fs_config(p: &GwParams, o: &FsOpts) -> String {
    let lts = if o.local_ts.is_empty() {
        vec![p.local_ts.clone()]
    } else {
        o.local_ts.clone()
    };
    let rts = if o.remote_ts.is_empty() {
        vec![p.remote_ts.clone()]
    } else {
        o.remote_ts.clone()
    };
    let mut s = String::new();
    let _ = write!(
        s,
        r#"[daemon]
control_socket = "${{CONTROL_SOCKET}}"
tun_name = "fs0"
tun_mtu = 1400
log_level = "{log}"

[connections.{CONN}]
local_addrs = ["{la}"]
remote_addrs = ["{ra}"]
proposals = ["{ike}"]
encap = {encap}
retransmit_timeout = "2s"
retransmit_tries = 2

  [connections.{CONN}.local]
  auth = "psk"
  id = "{lid}"

  [connections.{CONN}.remote]
  auth = "psk"
  id = "{rid}"

  [connections.{CONN}.children.{CHILD}]
  local_ts = {lts}
  remote_ts = {rts}
  esp_proposals = ["{esp}"]
  mode = "tunnel"
  start_action = "{sa}"

[secrets.ike-ab]
ids = ["gw-a.example", "gw-b.example"]
secret = "{psk}"
"#,
        log = o.log_level,
        la = p.local_addr,
        ra = p.remote_addr,
        ike = p.ike_proposal,
        encap = o.encap,
        lid = p.local_id,
        rid = p.remote_id,
        lts = toml_list(&lts),
        rts = toml_list(&rts),
        esp = p.esp_proposal,
        sa = o.start_action,
        psk = p.psk,
    );
    s
}
