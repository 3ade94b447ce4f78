//! Helpers for the robustness, policy and IPv6 tests (on top of tests/common): ferroswan
//! configs with options the template lacks, packet senders inside a namespace (UDP and raw
//! IP), hand-made IKE datagrams, a minimal pcap reader and counter polling.
//! Every packet goes only to addresses of the test's own namespaces.
#![allow(dead_code)]

use crate::common::*;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::thread;
use std::time::Duration;

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

// ---------------------------------------------------------------------------------------
// senders (in a thread that entered the namespace)
// ---------------------------------------------------------------------------------------

/// Run `f` on a thread inside network namespace `ns`.
pub fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = ns.to_string();
    thread::spawn(move || {
        enter_netns(&ns).unwrap_or_else(|e| panic!("setns {ns}: {e}"));
        f()
    })
    .join()
    .expect("sender thread panicked")
}

/// Send one UDP datagram from namespace `ns` (ephemeral port) to `dst` and collect the
/// datagrams that come back within `wait` (none expected: pass a short wait).
pub fn udp_exchange(ns: &str, dst: SocketAddr, data: &[u8], wait: Duration) -> Vec<Vec<u8>> {
    let data = data.to_vec();
    in_ns(ns, move || {
        let any: SocketAddr = if dst.is_ipv4() {
            "0.0.0.0:0".parse().unwrap()
        } else {
            "[::]:0".parse().unwrap()
        };
        let s = UdpSocket::bind(any).expect("bind sender");
        s.send_to(&data, dst).expect("send_to");
        let mut got = Vec::new();
        if wait.is_zero() {
            return got;
        }
        s.set_read_timeout(Some(wait)).unwrap();
        let mut buf = vec![0u8; 65536];
        while let Ok((n, _)) = s.recv_from(&mut buf) {
            got.push(buf[..n].to_vec());
        }
        got
    })
}

/// Send `data` as the payload of a raw IP packet with protocol `proto` from namespace `ns`
/// to `dst` (the kernel builds the IP header with the namespace's source address).
pub fn raw_ip_send(ns: &str, proto: i32, dst: IpAddr, data: &[u8]) {
    let data = data.to_vec();
    in_ns(ns, move || {
        let fam = if dst.is_ipv4() {
            libc::AF_INET
        } else {
            libc::AF_INET6
        };
        // SAFETY: plain socket(2); the fd is owned by OwnedFd right away.
        let fd = unsafe { libc::socket(fam, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto) };
        assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
        // SAFETY: fresh descriptor, owned by nothing else.
        let s = UdpSocket::from(unsafe { OwnedFd::from_raw_fd(fd) });
        s.send_to(&data, SocketAddr::new(dst, 0))
            .expect("raw send_to");
    })
}

// ---------------------------------------------------------------------------------------
// hand-made IKE datagrams
// ---------------------------------------------------------------------------------------

pub const EXCH_IKE_SA_INIT: u8 = 34;
pub const EXCH_INFORMATIONAL: u8 = 37;
pub const FLAG_INITIATOR: u8 = 0x08;

/// A 28-byte IKEv2 header (version 2.0).
pub fn ike_header(
    spi_i: u64,
    spi_r: u64,
    next: u8,
    exch: u8,
    flags: u8,
    msg_id: u32,
    len: u32,
) -> Vec<u8> {
    let mut h = Vec::with_capacity(28);
    h.extend_from_slice(&spi_i.to_be_bytes());
    h.extend_from_slice(&spi_r.to_be_bytes());
    h.extend_from_slice(&[next, 0x20, exch, flags]);
    h.extend_from_slice(&msg_id.to_be_bytes());
    h.extend_from_slice(&len.to_be_bytes());
    h
}

/// A generic payload: header (next, critical bit, length) + body.
pub fn ike_payload(next: u8, critical: bool, body: &[u8]) -> Vec<u8> {
    let mut p = vec![next, if critical { 0x80 } else { 0 }];
    p.extend_from_slice(&((4 + body.len()) as u16).to_be_bytes());
    p.extend_from_slice(body);
    p
}

/// IKE_SA_INIT request: Nonce, then an unknown payload type `ptype` marked critical.
pub fn ike_init_with_critical(spi_i: u64, ptype: u8) -> Vec<u8> {
    let mut body = ike_payload(ptype, false, &[0x5a; 32]); // Nonce (40) -> ptype
    body.extend(ike_payload(0, true, &[1, 2, 3, 4]));
    let mut m = ike_header(
        spi_i,
        0,
        40,
        EXCH_IKE_SA_INIT,
        FLAG_INITIATOR,
        0,
        (28 + body.len()) as u32,
    );
    m.extend(body);
    m
}

/// The Notify types in an unencrypted IKE message (first payload chain), if it parses.
pub fn notify_types(msg: &[u8]) -> Vec<(u16, Vec<u8>)> {
    let mut out = Vec::new();
    if msg.len() < 28 {
        return out;
    }
    let mut next = msg[16];
    let mut at = 28;
    while next != 0 && at + 4 <= msg.len() {
        let len = u16::from_be_bytes([msg[at + 2], msg[at + 3]]) as usize;
        if len < 4 || at + len > msg.len() {
            break;
        }
        if next == 41 && len >= 8 {
            let spi_size = msg[at + 5] as usize;
            let t = u16::from_be_bytes([msg[at + 6], msg[at + 7]]);
            let data = msg.get(at + 8 + spi_size..at + len).unwrap_or(&[]).to_vec();
            out.push((t, data));
        }
        next = msg[at];
        at += len;
    }
    out
}

// ---------------------------------------------------------------------------------------
// pcap
// ---------------------------------------------------------------------------------------

/// One IP packet from a pcap: addresses, protocol, and the bytes after the IP header.
#[derive(Clone, Debug)]
pub struct IpPkt {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub payload: Vec<u8>,
}

/// IP packets of a pcap (Ethernet, Linux cooked v1, or raw IP link types). IPv6 extension
/// headers are not walked (the next header of the fixed header is reported).
pub fn pcap_ip_packets(path: &Path) -> Vec<IpPkt> {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert!(b.len() >= 24, "pcap {} too short", path.display());
    let magic = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let le = match magic {
        0xa1b2c3d4 | 0xa1b23c4d => true,
        0xd4c3b2a1 | 0x4d3cb2a1 => false,
        m => panic!("{}: not a pcap file (magic {m:08x})", path.display()),
    };
    let u32_at = |o: usize| {
        let a = [b[o], b[o + 1], b[o + 2], b[o + 3]];
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    let linktype = u32_at(20);
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= b.len() {
        let caplen = u32_at(at + 8) as usize;
        let start = at + 16;
        at = start + caplen;
        let Some(frame) = b.get(start..start + caplen) else {
            break;
        };
        let ip = match linktype {
            1 => {
                // Ethernet, possibly one VLAN tag
                if frame.len() < 14 {
                    continue;
                }
                let mut et = u16::from_be_bytes([frame[12], frame[13]]);
                let mut off = 14;
                if et == 0x8100 && frame.len() >= 18 {
                    et = u16::from_be_bytes([frame[16], frame[17]]);
                    off = 18;
                }
                if et != 0x0800 && et != 0x86dd {
                    continue;
                }
                &frame[off..]
            }
            113 => {
                if frame.len() < 16 {
                    continue;
                }
                &frame[16..]
            }
            101 | 12 | 228 | 229 => frame,
            _ => continue,
        };
        if let Some(p) = parse_ip(ip) {
            out.push(p);
        }
    }
    out
}

fn parse_ip(ip: &[u8]) -> Option<IpPkt> {
    match ip.first()? >> 4 {
        4 => {
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
            let end = total.min(ip.len());
            Some(IpPkt {
                src: IpAddr::from(<[u8; 4]>::try_from(ip.get(12..16)?).ok()?),
                dst: IpAddr::from(<[u8; 4]>::try_from(ip.get(16..20)?).ok()?),
                proto: *ip.get(9)?,
                payload: ip.get(ihl..end)?.to_vec(),
            })
        }
        6 => {
            let plen = usize::from(u16::from_be_bytes([*ip.get(4)?, *ip.get(5)?]));
            let end = (40 + plen).min(ip.len());
            Some(IpPkt {
                src: IpAddr::from(<[u8; 16]>::try_from(ip.get(8..24)?).ok()?),
                dst: IpAddr::from(<[u8; 16]>::try_from(ip.get(24..40)?).ok()?),
                proto: *ip.get(6)?,
                payload: ip.get(40..end)?.to_vec(),
            })
        }
        _ => None,
    }
}

/// ESP packets (raw protocol 50, or UDP 4500 without the non-ESP marker) sent to `dst`
/// in a pcap, as ESP bytes (SPI first).
pub fn pcap_esp_to(path: &Path, dst: IpAddr) -> Vec<Vec<u8>> {
    pcap_ip_packets(path)
        .into_iter()
        .filter(|p| p.dst == dst)
        .filter_map(|p| match p.proto {
            50 => Some(p.payload),
            17 if p.payload.len() > 8 + 8
                && u16::from_be_bytes([p.payload[2], p.payload[3]]) == 4500
                && p.payload[8..12] != [0, 0, 0, 0] =>
            {
                Some(p.payload[8..].to_vec())
            }
            _ => None,
        })
        .collect()
}

/// Make sure everything seen so far on a capture is in its pcap file: tcpdump hands packets
/// over in blocks (up to ~1 s late), so send a marker UDP datagram from `from_ns` to
/// `dst_ip`:9 over the captured link and wait (10 s) until the marker is in the file.
/// Packets captured before the marker are then written too.
pub fn capture_sync(cap: &Capture, from_ns: &str, dst_ip: &str) {
    let marker = format!(
        "ferroswan-capture-sync-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let dst: SocketAddr = SocketAddr::new(dst_ip.parse().unwrap(), 9);
    let found = poll(Duration::from_secs(10), || {
        udp_exchange(from_ns, dst, marker.as_bytes(), Duration::ZERO);
        let b = std::fs::read(&cap.pcap).unwrap_or_default();
        b.windows(marker.len())
            .any(|w| w == marker.as_bytes())
            .then_some(())
    });
    assert!(
        found.is_some(),
        "capture {} never showed the sync marker",
        cap.pcap.display()
    );
}

// ---------------------------------------------------------------------------------------
// IPv6 on the standard topology
// ---------------------------------------------------------------------------------------

pub const HA_IP6: &str = "fd01::10";
pub const GA_IN6: &str = "fd01::1";
pub const NET_A6: &str = "fd01::/64";
pub const HB_IP6: &str = "fd02::10";
pub const GB_IN6: &str = "fd02::1";
pub const NET_B6: &str = "fd02::/64";
pub const GA_OUT6: &str = "2001:db8::1";
pub const GB_OUT6: &str = "2001:db8::2";

/// Turn IPv6 back on in the topology (it is disabled there) and give the inside links
/// fd01::/64 and fd02::/64; with `outer`, also 2001:db8::1/2 on the gateways' link. All
/// addresses `nodad` (usable at once). Gateways forward IPv6.
pub fn enable_ipv6(topo: &Topology, outer: bool) {
    let links: [(&String, &[&str]); 4] = [
        (&topo.ha, &["ha0"]),
        (&topo.ga, &["ga-in", "ga-out"]),
        (&topo.gb, &["gb-in", "gb-out"]),
        (&topo.hb, &["hb0"]),
    ];
    for (ns, devs) in links {
        let mut args = vec![
            "sysctl".to_string(),
            "-qw".into(),
            "net.ipv6.conf.all.disable_ipv6=0".into(),
            "net.ipv6.conf.default.disable_ipv6=0".into(),
        ];
        for d in devs {
            args.push(format!("net.ipv6.conf.{d}.disable_ipv6=0"));
        }
        let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        ns_must(ns, &a);
    }
    for ns in [&topo.ga, &topo.gb] {
        ns_must(ns, &["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
    }
    let ip = |ns: &str, args: &[&str]| {
        must(std::process::Command::new("ip").args(["-n", ns]).args(args));
    };
    let addr = |ns: &str, a: &str, dev: &str| {
        ip(
            ns,
            &["-6", "addr", "add", &format!("{a}/64"), "dev", dev, "nodad"],
        );
    };
    addr(&topo.ha, HA_IP6, "ha0");
    addr(&topo.ga, GA_IN6, "ga-in");
    addr(&topo.gb, GB_IN6, "gb-in");
    addr(&topo.hb, HB_IP6, "hb0");
    ip(&topo.ha, &["-6", "route", "add", "default", "via", GA_IN6]);
    ip(&topo.hb, &["-6", "route", "add", "default", "via", GB_IN6]);
    if outer {
        addr(&topo.ga, GA_OUT6, "ga-out");
        addr(&topo.gb, GB_OUT6, "gb-out");
    }
}

// ---------------------------------------------------------------------------------------
// IKE_SA_INIT requests for flood tests
// ---------------------------------------------------------------------------------------

/// A well-formed IKE_SA_INIT request offering aes256gcm16-prfsha256-x25519 (the harness'
/// `IKE_PROPOSAL`): SA, KE (Curve25519 public value `ke`), Nonce `nonce`; no NAT-D.
pub fn ike_sa_init_request(spi_i: u64, ke: &[u8; 32], nonce: &[u8]) -> Vec<u8> {
    // Transforms: ENCR AES-GCM-16 (20) with key length 256, PRF HMAC-SHA2-256 (5), DH 31.
    let mut trans = vec![3, 0, 0, 12, 1, 0, 0, 20, 0x80, 14, 1, 0];
    trans.extend_from_slice(&[3, 0, 0, 8, 2, 0, 0, 5]);
    trans.extend_from_slice(&[0, 0, 0, 8, 4, 0, 0, 31]);
    let mut prop = vec![0, 0];
    prop.extend_from_slice(&((8 + trans.len()) as u16).to_be_bytes());
    prop.extend_from_slice(&[1, 1, 0, 3]); // proposal 1, IKE, no SPI, 3 transforms
    prop.extend(trans);
    let mut ke_body = vec![0, 31, 0, 0];
    ke_body.extend_from_slice(ke);
    let mut body = ike_payload(34, false, &prop); // SA -> KE
    body.extend(ike_payload(40, false, &ke_body)); // KE -> Nonce
    body.extend(ike_payload(0, false, nonce));
    let mut m = ike_header(
        spi_i,
        0,
        33,
        EXCH_IKE_SA_INIT,
        FLAG_INITIATOR,
        0,
        (28 + body.len()) as u32,
    );
    m.extend(body);
    m
}

/// `VmRSS` of a process in KiB (from /proc/PID/status).
pub fn vm_rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
