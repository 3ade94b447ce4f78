//! The typed status report: built by the daemon (`daemon/status.rs`), sent once as JSON in the
//! control response, deserialized once by the CLI, and printed as text ([`format_status`]) or
//! as JSON (`ferroswan status --json`). Field names and value formats are those of fs-ike's
//! [`IkeSaInfo`] / [`ChildSaInfo`] (the namespace tests parse them): ESP SPIs are hex strings
//! on the wire (`"c0000001"`), [`EspSpi`]s in here.
use fs_ike::{ChildSaInfo, IkeSaId, IkeSaInfo};
use fs_wire::{EspSpi, Mode};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `ferroswan status`: the IKE SAs with their CHILD_SAs, and the global counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StatusReport {
    /// Ordered by unique id.
    pub ike_sas: Vec<IkeSaStatus>,
    /// Data-plane counters by name (drops, keepalives, acquires...).
    pub counters: BTreeMap<String, u64>,
    /// IKE counters by name (`dropped_...`, `cookies_sent`, `half_open`...).
    pub ike_counters: BTreeMap<String, u64>,
    /// TUN device MTU.
    pub tun_mtu: u16,
    /// How `tun_mtu` was obtained (configured, or derived from which egress route).
    pub tun_mtu_derivation: String,
    /// Packets waiting in each TUN queue.
    pub tun_queue_packets: Vec<u64>,
}

/// One IKE SA: fs-ike's [`IkeSaInfo`] with the data-plane counters of its CHILD_SAs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IkeSaStatus {
    pub id: IkeSaId,
    pub conn: String,
    pub state: String,
    pub initiator: bool,
    pub local: String,
    pub remote: String,
    pub local_id: String,
    pub remote_id: String,
    /// fs-ike's [`fs_wire::IkeSpi`] as it prints it (16 hex digits); the CLI shows the text it got.
    pub spi_i: String,
    pub spi_r: String,
    pub encr: Option<String>,
    pub integ: Option<String>,
    pub prf: Option<String>,
    pub dh: Option<String>,
    pub nat_local: bool,
    pub nat_remote: bool,
    pub udp_encap_preferred: bool,
    pub established_secs: u64,
    pub child_sas: Vec<ChildSaStatus>,
    pub rekey_in_secs: Option<u64>,
    pub expires_in_secs: Option<u64>,
    pub rekey_count: u32,
    pub reauth_in_secs: Option<u64>,
}

/// One CHILD_SA: fs-ike's [`ChildSaInfo`] and its [`ChildTraffic`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildSaStatus {
    pub name: String,
    pub state: String,
    pub mode: Mode,
    pub protocol: String,
    pub spi_in: EspSpi,
    pub spi_out: EspSpi,
    pub encr: String,
    pub integ: Option<String>,
    pub esn: bool,
    pub encap: bool,
    pub local_ts: Vec<String>,
    pub remote_ts: Vec<String>,
    pub established_secs: u64,
    pub rekey_in_secs: Option<u64>,
    pub expires_in_secs: Option<u64>,
    pub rekey_count: u32,
    #[serde(flatten)]
    pub traffic: ChildTraffic,
}

/// Data-plane counters of one CHILD_SA (drops are both directions added).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChildTraffic {
    pub bytes_in: u64,
    pub packets_in: u64,
    pub bytes_out: u64,
    pub packets_out: u64,
    pub dropped_replay: u64,
    pub dropped_auth: u64,
    pub dropped_malformed: u64,
}

impl IkeSaStatus {
    /// `info` with the counters of each CHILD_SA from `child`, called with the CHILD_SA's
    /// status (its SPIs are typed: nothing to parse back).
    pub fn new(info: IkeSaInfo, mut child: impl FnMut(&ChildSaInfo) -> ChildTraffic) -> Self {
        let child_sas = info
            .child_sas
            .into_iter()
            .map(|c| {
                let traffic = child(&c);
                ChildSaStatus {
                    name: c.name,
                    state: c.state,
                    mode: c.mode,
                    protocol: c.protocol,
                    spi_in: c.spi_in,
                    spi_out: c.spi_out,
                    encr: c.encr,
                    integ: c.integ,
                    esn: c.esn,
                    encap: c.encap,
                    local_ts: c.local_ts,
                    remote_ts: c.remote_ts,
                    established_secs: c.established_secs,
                    rekey_in_secs: c.rekey_in_secs,
                    expires_in_secs: c.expires_in_secs,
                    rekey_count: c.rekey_count,
                    traffic,
                }
            })
            .collect();
        IkeSaStatus {
            id: info.id,
            conn: info.conn,
            state: info.state,
            initiator: info.initiator,
            local: info.local,
            remote: info.remote,
            local_id: info.local_id,
            remote_id: info.remote_id,
            spi_i: info.spi_i.to_string(),
            spi_r: info.spi_r.to_string(),
            encr: info.encr,
            integ: info.integ,
            prf: info.prf,
            dh: info.dh,
            nat_local: info.nat_local,
            nat_remote: info.nat_remote,
            udp_encap_preferred: info.udp_encap_preferred,
            established_secs: info.established_secs,
            child_sas,
            rekey_in_secs: info.rekey_in_secs,
            expires_in_secs: info.expires_in_secs,
            rekey_count: info.rekey_count,
            reauth_in_secs: info.reauth_in_secs,
        }
    }
}

impl StatusReport {
    /// `ferroswan status --json`: pretty JSON with the keys of every object in sorted order,
    /// as it has always been printed.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_value(self)
            .and_then(|v| serde_json::to_string_pretty(&v))
            .unwrap_or_default()
    }
}

/// `, rekeying in 12s, expires in 30s, rekeyed 2 times` (only the parts that apply).
fn lifetimes(rekey_in: Option<u64>, expires_in: Option<u64>, rekey_count: u32) -> String {
    let mut o = String::new();
    if let Some(r) = rekey_in {
        o += &format!(", rekeying in {r}s");
    }
    if let Some(e) = expires_in {
        o += &format!(", expires in {e}s");
    }
    if rekey_count > 0 {
        let s = if rekey_count == 1 { "" } else { "s" };
        o += &format!(", rekeyed {rekey_count} time{s}");
    }
    o
}

/// Human output in the style of `swanctl --list-sas`.
pub fn format_status(st: &StatusReport) -> String {
    let mut o = String::new();
    if st.ike_sas.is_empty() {
        o.push_str("no IKE_SAs\n");
    }
    for sa in &st.ike_sas {
        format_ike_sa(&mut o, sa);
        for ch in &sa.child_sas {
            format_child_sa(&mut o, ch);
        }
    }
    let nz: Vec<String> = st
        .counters
        .iter()
        .filter(|(_, v)| **v > 0)
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if !nz.is_empty() {
        o += &format!("data plane: {}\n", nz.join(" "));
    }
    o
}

fn format_ike_sa(o: &mut String, sa: &IkeSaStatus) {
    let init = sa.initiator;
    *o += &format!(
        "{}: #{}, {}, IKEv2, {}_i{} {}_r{}\n",
        sa.conn,
        sa.id,
        sa.state,
        sa.spi_i,
        if init { "*" } else { "" },
        sa.spi_r,
        if init { "" } else { "*" },
    );
    let nat = |behind: bool| if behind { " (behind NAT)" } else { "" };
    *o += &format!(
        "  local  '{}' @ {}{}\n",
        sa.local_id,
        sa.local,
        nat(sa.nat_local)
    );
    *o += &format!(
        "  remote '{}' @ {}{}\n",
        sa.remote_id,
        sa.remote,
        nat(sa.nat_remote)
    );
    let algs: Vec<&str> = [&sa.encr, &sa.integ, &sa.prf, &sa.dh]
        .into_iter()
        .filter_map(|a| a.as_deref())
        .collect();
    if !algs.is_empty() {
        *o += &format!("  {}\n", algs.join("/"));
    }
    if sa.udp_encap_preferred {
        *o += "  ESP in UDP 4500 (both peers prefer UDP encapsulation)\n";
    }
    *o += &format!(
        "  established {}s ago{}\n",
        sa.established_secs,
        lifetimes(sa.rekey_in_secs, sa.expires_in_secs, sa.rekey_count)
    );
}

fn format_child_sa(o: &mut String, ch: &ChildSaStatus) {
    let mode = match ch.mode {
        Mode::Tunnel => "TUNNEL",
        Mode::Transport => "TRANSPORT",
    };
    let mut alg = ch.encr.clone();
    if let Some(i) = &ch.integ {
        alg += &format!("/{i}");
    }
    let encap = if ch.encap { "-in-UDP" } else { "" };
    *o += &format!(
        "  {}: {}, {}, {}{}:{}\n",
        ch.name, ch.state, mode, ch.protocol, encap, alg
    );
    *o += &format!(
        "    installed {}s ago{}\n",
        ch.established_secs,
        lifetimes(ch.rekey_in_secs, ch.expires_in_secs, ch.rekey_count)
    );
    let t = &ch.traffic;
    *o += &format!(
        "    in  {:08x}, {:>10} bytes, {:>8} packets\n",
        ch.spi_in, t.bytes_in, t.packets_in
    );
    *o += &format!(
        "    out {:08x}, {:>10} bytes, {:>8} packets\n",
        ch.spi_out, t.bytes_out, t.packets_out
    );
    let (r, a, m) = (t.dropped_replay, t.dropped_auth, t.dropped_malformed);
    if r.saturating_add(a).saturating_add(m) > 0 {
        *o += &format!("    dropped: {r} replay, {a} auth, {m} malformed\n");
    }
    *o += &format!("    local  {}\n", ch.local_ts.join(" "));
    *o += &format!("    remote {}\n", ch.remote_ts.join(" "));
}

#[cfg(test)]
mod tests {
    use super::*;
    use fs_wire::IkeSpi;
    use serde_json::{json, Value};

    fn child_info() -> ChildSaInfo {
        ChildSaInfo {
            name: "net".into(),
            state: "INSTALLED".into(),
            mode: Mode::Tunnel,
            protocol: "ESP".into(),
            spi_in: EspSpi(0xabcd),
            spi_out: EspSpi(0xc000_0002),
            encr: "AES_CBC-128".into(),
            integ: Some("HMAC_SHA2_256_128".into()),
            esn: true,
            encap: true,
            local_ts: vec!["10.1.0.0/16".into(), "10.3.0.0/16".into()],
            remote_ts: vec!["10.2.0.0/16".into()],
            established_secs: 4,
            rekey_in_secs: None,
            expires_in_secs: Some(20),
            rekey_count: 1,
        }
    }

    fn ike_info() -> IkeSaInfo {
        IkeSaInfo {
            id: IkeSaId(7),
            conn: "s2s".into(),
            state: "ESTABLISHED".into(),
            initiator: false,
            local: "100.1.1.1[4500]".into(),
            remote: "200.2.2.2[4500]".into(),
            local_id: "gw-a.example".into(),
            remote_id: "gw-b.example".into(),
            spi_i: IkeSpi(0x0123_4567_89ab_cdef),
            spi_r: IkeSpi(0xfedc_ba98_7654_3210),
            encr: Some("AES_GCM_16-256".into()),
            integ: None,
            prf: Some("PRF_HMAC_SHA2_256".into()),
            dh: Some("CURVE_25519".into()),
            nat_local: true,
            nat_remote: false,
            udp_encap_preferred: true,
            established_secs: 3,
            child_sas: vec![child_info()],
            rekey_in_secs: Some(100),
            expires_in_secs: None,
            rekey_count: 0,
            reauth_in_secs: Some(50),
        }
    }

    const TRAFFIC: ChildTraffic = ChildTraffic {
        bytes_in: 84,
        packets_in: 1,
        bytes_out: 168,
        packets_out: 2,
        dropped_replay: 3,
        dropped_auth: 4,
        dropped_malformed: 5,
    };

    /// The JSON of the typed report is what the daemon sent before it was typed: fs-ike's
    /// `IkeSaInfo` serialized, with the counters added to each CHILD_SA (the namespace tests
    /// and scripts read these names and formats).
    #[test]
    fn json_is_fs_ike_info_plus_counters() {
        let info = ike_info();
        let mut legacy = serde_json::to_value(&info).unwrap();
        for ch in legacy["child_sas"].as_array_mut().unwrap() {
            let obj = ch.as_object_mut().unwrap();
            for (k, v) in [
                ("bytes_in", 84),
                ("packets_in", 1),
                ("bytes_out", 168),
                ("packets_out", 2),
                ("dropped_replay", 3),
                ("dropped_auth", 4),
                ("dropped_malformed", 5),
            ] {
                obj.insert(k.into(), json!(v));
            }
        }
        let mut seen = None;
        let typed = IkeSaStatus::new(info, |c| {
            seen = Some((c.name.clone(), (c.spi_in.get(), c.spi_out.get())));
            TRAFFIC
        });
        assert_eq!(seen, Some(("net".into(), (0xabcd, 0xc000_0002))));
        assert_eq!(serde_json::to_value(&typed).unwrap(), legacy);

        let report = StatusReport {
            ike_sas: vec![typed],
            counters: [("no_sa".to_string(), 2)].into_iter().collect(),
            ike_counters: [("cookies_sent".to_string(), 1)].into_iter().collect(),
            tun_mtu: 1400,
            tun_mtu_derivation: "configured".into(),
            tun_queue_packets: vec![0, 3],
        };
        let v = serde_json::to_value(&report).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "counters",
                "ike_counters",
                "ike_sas",
                "tun_mtu",
                "tun_mtu_derivation",
                "tun_queue_packets"
            ]
        );
        assert_eq!(v["ike_sas"][0]["child_sas"][0]["spi_in"], json!("0000abcd"));
        // The typed ids and SPIs keep the formats of the untyped report.
        assert_eq!(v["ike_sas"][0]["id"], json!(7));
        assert_eq!(v["ike_sas"][0]["spi_i"], json!("0123456789abcdef"));
        assert_eq!(
            v["ike_sas"][0]["child_sas"][0]["spi_out"],
            json!("c0000002")
        );
        assert_eq!(v["ike_sas"][0]["child_sas"][0]["mode"], json!("tunnel"));
        assert_eq!(v["ike_sas"][0]["integ"], Value::Null);
        assert_eq!(v["tun_queue_packets"], json!([0, 3]));

        // What the CLI does with the control response: one parse, the same report back.
        let wire = serde_json::to_string(&report).unwrap();
        assert_eq!(serde_json::from_str::<StatusReport>(&wire).unwrap(), report);
        // `status --json` prints the keys sorted, as the untyped value did.
        assert_eq!(
            report.to_json_pretty(),
            serde_json::to_string_pretty(&v).unwrap()
        );
        assert!(report
            .to_json_pretty()
            .starts_with("{\n  \"counters\": {\n    \"no_sa\": 2"));
    }

    #[test]
    fn spi_hex_text() {
        let st = IkeSaStatus::new(ike_info(), |_| ChildTraffic::default());
        let v = serde_json::to_value(&st.child_sas[0]).unwrap();
        assert_eq!(
            (&v["spi_in"], &v["spi_out"]),
            (&json!("0000abcd"), &json!("c0000002"))
        );
        let ch = |spi: &str| {
            let mut v = v.clone();
            v["spi_in"] = json!(spi);
            serde_json::from_value::<ChildSaStatus>(v).map(|c| c.spi_in.get())
        };
        assert_eq!(ch("0xc0000001").unwrap(), 0xc000_0001);
        assert_eq!(ch("0000abcd").unwrap(), 0xabcd);
        assert!(ch("xyz").is_err());
        assert!(ch("100000000").is_err());
    }

    #[test]
    fn status_format() {
        let st: StatusReport = serde_json::from_value(serde_json::json!({
            "ike_sas": [{"id": 1, "conn": "s2s", "state": "ESTABLISHED", "initiator": true,
              "local": "100.1.1.1[500]", "remote": "200.2.2.2[500]", "local_id": "gw-a.example",
              "remote_id": "gw-b.example", "spi_i": "01", "spi_r": "02", "encr": "AES_GCM_16-256",
              "nat_local": false, "nat_remote": false, "udp_encap_preferred": false,
              "established_secs": 3, "rekey_in_secs": 100, "rekey_count": 0,
              "child_sas": [{"name": "net", "state": "INSTALLED", "mode": "tunnel", "protocol": "ESP",
                 "established_secs": 4, "rekey_in_secs": 10, "expires_in_secs": 20, "rekey_count": 2,
                 "spi_in": "c0000001", "spi_out": "c0000002", "encr": "AES_GCM_16-256", "encap": false,
                 "esn": false, "local_ts": ["192.168.1.0/24"], "remote_ts": ["192.168.2.0/24"],
                 "bytes_in": 84, "packets_in": 1}]}],
            "counters": {"no_policy": 2, "no_sa": 0}
        }))
        .unwrap();
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
        assert_eq!(format_status(&StatusReport::default()), "no IKE_SAs\n");
    }
}
