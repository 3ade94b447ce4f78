//! Robustness against malformed peer input on a live ferroswan <-> ferroswan tunnel, and
//! configuration errors. Malformed datagrams are sent from inside the *other* gateway's
//! namespace, only to the test's own addresses. After every input the daemon must still run
//! (PID exists, no "panicked" in its log), count the drop under the right counter of
//! `ferroswan status --json`, and the tunnel must still carry pings.
//! Prerequisites and cleanup as in tests/interop.rs.

use fs_testbed::*;
use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(5);

struct Tunnel {
    // field order = drop order: daemons first, then the namespaces
    gwa: Ferroswan,
    gwb: Ferroswan,
    topo: Topology,
    tag: String,
}

/// gwA initiates to gwB (both ferroswan, AES-GCM, raw ESP), pings pass.
fn tunnel(tag: &str) -> Option<Tunnel> {
    if !prerequisites(tag) {
        return None;
    }
    let topo = Topology::new(tag);
    let gwb = Ferroswan::start(&topo, &topo.gb, "gwB", &GwParams::b("aes256gcm16"));
    let gwa = Ferroswan::start(&topo, &topo.ga, "gwA", &GwParams::a("aes256gcm16"));
    gwa.up(CONN).unwrap_or_else(|e| panic!("[{tag}] {e}"));
    gwa.wait_for_sa(CONN, T * 3)
        .unwrap_or_else(|e| panic!("[{tag}] {e}"));
    gwb.wait_for_sa(CONN, T * 3)
        .unwrap_or_else(|e| panic!("[{tag}] {e}"));
    wait_ping(&topo.ha, HB_IP, T * 2).unwrap_or_else(|e| panic!("[{tag}] {e}"));
    Some(Tunnel {
        gwa,
        gwb,
        topo,
        tag: tag.to_string(),
    })
}

impl Tunnel {
    /// Send something to `target` (via `send`), then: counter `key` of `target` went up,
    /// both daemons are healthy, and hostA still reaches hostB (and back).
    fn check(&self, target: &Ferroswan, what: &str, key: &str, send: impl FnOnce()) {
        let tag = &self.tag;
        let before = target
            .counters()
            .unwrap_or_else(|e| panic!("[{tag}] {what}: {e}"));
        let b = counter(&before, key);
        send();
        let now = wait_counter_above(target, key, b, T)
            .unwrap_or_else(|e| panic!("[{tag}] after {what}: {e}"));
        eprintln!("[{tag}] {what}: {key} {b} -> {now}");
        assert_healthy(tag, &self.gwa);
        assert_healthy(tag, &self.gwb);
        ping(&self.topo.ha, HB_IP)
            .unwrap_or_else(|e| panic!("[{tag}] tunnel broken after {what}: {e}"));
        ping(&self.topo.hb, HA_IP)
            .unwrap_or_else(|e| panic!("[{tag}] tunnel broken after {what}: {e}"));
    }
}

/// Malformed IKE on UDP 500 of the daemon in `target` (gwA = initiator of the tunnel,
/// gwB = responder), sent from the other gateway's namespace.
fn malformed_ike(tag: &str, to_responder: bool) {
    let Some(t) = tunnel(tag) else { return };
    let (target, from_ns, ip) = if to_responder {
        (&t.gwb, t.topo.ga.clone(), GB_OUT)
    } else {
        (&t.gwa, t.topo.gb.clone(), GA_OUT)
    };
    let dst: SocketAddr = format!("{ip}:500").parse().unwrap();
    let send = |data: Vec<u8>| {
        let ns = from_ns.clone();
        move || {
            udp_exchange(&ns, dst, &data, Duration::ZERO);
        }
    };
    // truncated header (10 of 28 bytes)
    let hdr = ike_header(0x1111, 0x2222, 0, EXCH_INFORMATIONAL, FLAG_INITIATOR, 0, 28);
    t.check(
        target,
        "truncated IKE header",
        "dropped_malformed",
        send(hdr[..10].to_vec()),
    );
    // header whose length field is larger than the datagram
    let long = ike_header(
        0x1111,
        0x2222,
        0,
        EXCH_INFORMATIONAL,
        FLAG_INITIATOR,
        0,
        1000,
    );
    t.check(
        target,
        "IKE header length 1000 > datagram 28",
        "dropped_malformed",
        send(long),
    );
    // header whose length field is below the header size, with trailing bytes
    let mut short = ike_header(0x1111, 0x2222, 0, EXCH_INFORMATIONAL, FLAG_INITIATOR, 0, 20);
    short.extend_from_slice(&[0u8; 12]);
    t.check(
        target,
        "IKE header length 20 < 28",
        "dropped_malformed",
        send(short),
    );
    // well-formed header for an IKE SA that does not exist
    let unknown = ike_header(
        0x0123_4567_89ab_cdef,
        0x0fed_cba9_8765_4321,
        0,
        EXCH_INFORMATIONAL,
        FLAG_INITIATOR,
        1,
        28,
    );
    t.check(
        target,
        "IKE INFORMATIONAL with unknown SPIs",
        "dropped_unknown_spi",
        send(unknown),
    );
    // random garbage (version nibble forced to an invalid 0xf)
    let mut garbage = payload(333, 0xbad);
    garbage[17] = 0xf0;
    t.check(
        target,
        "300 bytes of garbage",
        "dropped_malformed",
        send(garbage),
    );
    // IKE_SA_INIT request with an unknown payload marked critical: answered with
    // UNSUPPORTED_CRITICAL_PAYLOAD (RFC 7296 2.5), no IKE SA created
    let sas_before = target.ike_sas().unwrap().len();
    let init = ike_init_with_critical(0x5151_5151_5151_5151, 200);
    let replies = udp_exchange(&from_ns, dst, &init, Duration::from_secs(3));
    let notifies: Vec<_> = replies.iter().flat_map(|r| notify_types(r)).collect();
    assert!(
        notifies.iter().any(|(ty, data)| *ty == 1 && data == &[200]),
        "[{tag}] IKE_SA_INIT with critical payload 200: want N(UNSUPPORTED_CRITICAL_PAYLOAD) \
         with data [200], got {} replies, notifies {notifies:?}",
        replies.len()
    );
    assert_eq!(
        target.ike_sas().unwrap().len(),
        sas_before,
        "[{tag}] IKE_SA_INIT with an unknown critical payload created state"
    );
    assert_healthy(tag, &t.gwa);
    assert_healthy(tag, &t.gwb);
    ping(&t.topo.ha, HB_IP).unwrap_or_else(|e| panic!("[{tag}] {e}"));
    // the original IKE SA is untouched
    t.gwa
        .wait_for_sa(CONN, T)
        .unwrap_or_else(|e| panic!("[{tag}] {e}"));
    t.gwb
        .wait_for_sa(CONN, T)
        .unwrap_or_else(|e| panic!("[{tag}] {e}"));
    eprintln!("[{tag}] OK");
}

#[test]
fn malformed_ike_to_initiator() {
    malformed_ike("rbikei", false);
}

#[test]
fn malformed_ike_to_responder() {
    malformed_ike("rbiker", true);
}

/// UDP 4500: keepalive, non-ESP marker + garbage, short datagrams, ESP with unknown SPI,
/// ESP with the real SPI but a bad ICV.
#[test]
fn malformed_natt_4500() {
    let Some(t) = tunnel("rbnatt") else { return };
    let tag = &t.tag;
    let dst: SocketAddr = format!("{GA_OUT}:4500").parse().unwrap();
    let ns = t.topo.gb.clone();
    let send = |data: Vec<u8>| {
        let ns = ns.clone();
        move || {
            udp_exchange(&ns, dst, &data, Duration::ZERO);
        }
    };
    t.check(
        &t.gwa,
        "NAT keepalive 0xff",
        "nat_keepalives",
        send(vec![0xff]),
    );
    let mut g = vec![0, 0, 0, 0];
    g.extend(payload(120, 7));
    g[4 + 17] = 0x20; // version 2.0 so the length check is what fails
    t.check(
        &t.gwa,
        "non-ESP marker + garbage IKE",
        "dropped_malformed",
        send(g),
    );
    let mut trunc = vec![0, 0, 0, 0];
    trunc.extend_from_slice(&[0x42; 12]);
    t.check(
        &t.gwa,
        "non-ESP marker + truncated IKE header",
        "dropped_malformed",
        send(trunc),
    );
    t.check(&t.gwa, "3-byte datagram", "malformed", send(vec![1, 2, 3]));
    let mut esp = 0xdead_beefu32.to_be_bytes().to_vec();
    esp.extend_from_slice(&1u32.to_be_bytes());
    esp.extend(payload(64, 9));
    t.check(&t.gwa, "UDP-ESP with unknown SPI", "unknown_spi", send(esp));
    let spi = spi_in(&t.gwa);
    let mut bad = spi.to_be_bytes().to_vec();
    bad.extend_from_slice(&50_000u32.to_be_bytes()); // far ahead: must not move the window
    bad.extend(payload(8 + 48 + 16, 11));
    t.check(
        &t.gwa,
        &format!("UDP-ESP with real SPI {spi:08x} and a bad ICV"),
        "auth_failed",
        send(bad),
    );
    let sa = t.gwa.wait_for_sa(CONN, T).unwrap();
    let ch = children(&sa);
    assert!(
        ch.iter()
            .any(|c| c["dropped_auth"].as_u64().unwrap_or(0) > 0),
        "[{tag}] child dropped_auth not counted: {ch:?}"
    );
    eprintln!("[{tag}] OK");
}

/// Raw IP protocol 50: garbage, unknown SPI, real SPI with a bad ICV, and replays (raw and
/// UDP-encapsulated) of an ESP packet captured on gwA's outside link.
#[test]
fn malformed_raw_esp_and_replay() {
    let Some(t) = tunnel("rbesp") else { return };
    let tag = &t.tag;
    let ga: IpAddr = GA_OUT.parse().unwrap();
    let ns = t.topo.gb.clone();
    let raw = |data: Vec<u8>| {
        let ns = ns.clone();
        move || raw_ip_send(&ns, 50, ga, &data)
    };
    t.check(&t.gwa, "proto 50, 5 bytes", "malformed", raw(vec![9; 5]));
    t.check(
        &t.gwa,
        "proto 50, 200 bytes of garbage",
        "unknown_spi",
        raw({
            let mut g = payload(200, 3);
            g[..4].copy_from_slice(&0x0bad_0badu32.to_be_bytes());
            g
        }),
    );
    let spi = spi_in(&t.gwa);
    let mut bad = spi.to_be_bytes().to_vec();
    bad.extend_from_slice(&60_000u32.to_be_bytes());
    bad.extend(payload(8 + 64 + 16, 5));
    t.check(
        &t.gwa,
        &format!("proto 50 with real SPI {spi:08x}, bad ICV"),
        "auth_failed",
        raw(bad),
    );

    // capture real ESP towards gwA, then replay the last one
    let cap = Capture::start(&t.topo, &t.topo.ga, GA_OUT_IF, "outside");
    ping(&t.topo.ha, HB_IP).unwrap_or_else(|e| panic!("[{tag}] {e}"));
    capture_sync(&cap, &t.topo.gb, GA_OUT);
    cap.stop();
    let esp = pcap_esp_to(&cap.pcap, ga);
    let pkt = esp
        .iter()
        .rev()
        .find(|p| p.len() > 8 && p[..4] == spi.to_be_bytes())
        .unwrap_or_else(|| {
            panic!(
                "[{tag}] no ESP with SPI {spi:08x} to {ga} captured ({} ESP):\n{}",
                esp.len(),
                cap.summary(20)
            )
        })
        .clone();
    let seq = u32::from_be_bytes([pkt[4], pkt[5], pkt[6], pkt[7]]);
    eprintln!(
        "[{tag}] replaying captured ESP SPI {spi:08x} seq {seq} ({} bytes)",
        pkt.len()
    );
    t.check(&t.gwa, "replayed ESP (raw)", "replay", raw(pkt.clone()));
    let dst: SocketAddr = format!("{GA_OUT}:4500").parse().unwrap();
    let p2 = pkt.clone();
    let ns2 = ns.clone();
    t.check(&t.gwa, "replayed ESP (UDP 4500)", "replay", move || {
        udp_exchange(&ns2, dst, &p2, Duration::ZERO);
    });
    let sa = t.gwa.wait_for_sa(CONN, T).unwrap();
    let ch = children(&sa);
    assert!(
        ch.iter()
            .any(|c| c["dropped_replay"].as_u64().unwrap_or(0) >= 2),
        "[{tag}] child dropped_replay not counted: {ch:?}"
    );
    tcp_transfer(&t.topo.ha, &t.topo.hb, HB_IP, 5001, 256 << 10, T * 6)
        .unwrap_or_else(|e| panic!("[{tag}] TCP after the garbage: {e}"));
    eprintln!("[{tag}] OK");
}

// ---- configuration errors ---------------------------------------------------------------

const GOOD: &str = r#"
[daemon]
control_socket = "/nonexistent/ferroswan-test.sock"

[connections.s2s]
local_addrs = ["100.1.1.1"]
remote_addrs = ["200.2.2.2"]
proposals = ["aes256gcm16-prfsha256-x25519"]
  [connections.s2s.local]
  auth = "psk"
  id = "gw-a.example"
  [connections.s2s.remote]
  id = "gw-b.example"
  [connections.s2s.children.net]
  local_ts = ["192.168.1.0/24"]
  remote_ts = ["192.168.2.0/24"]
  esp_proposals = ["aes256gcm16"]
  start_action = "none"

[secrets.ike-ab]
ids = ["gw-a.example", "gw-b.example"]
secret = "0123456789"
"#;

/// Broken configs: `check-config` exits 2 naming file, field and reason; `run` exits 2.
#[test]
fn config_errors_exit_2() {
    let dir = std::env::temp_dir().join(format!("ferroswan-cfgerr-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("good.toml");
    std::fs::write(&f, GOOD).unwrap();
    let o = run_timeout(
        Command::new(ferroswan_bin()).arg("check-config").arg(&f),
        Duration::from_secs(10),
    );
    assert!(
        o.status.success(),
        "the base config is invalid: {}",
        text(&o)
    );

    // (name, replace this, by this, expected field, expected words of the reason)
    let cases: &[(&str, &str, &str, &str, &[&str])] = &[
        (
            "ts",
            r#"local_ts = ["192.168.1.0/24"]"#,
            r#"local_ts = ["192.168.1.0/24", "192.168.1.0/33"]"#,
            "connections.s2s.children.net.local_ts[1]",
            &["192.168.1.0/33"],
        ),
        (
            "esp",
            r#"esp_proposals = ["aes256gcm16"]"#,
            r#"esp_proposals = ["aes999"]"#,
            "connections.s2s.children.net.esp_proposals[0]",
            &["aes999"],
        ),
        (
            "addr",
            r#"remote_addrs = ["200.2.2.2"]"#,
            r#"remote_addrs = ["200.2.2.256"]"#,
            "connections.s2s.remote_addrs[0]",
            &["invalid IP address", "200.2.2.256"],
        ),
        (
            "start",
            r#"start_action = "none""#,
            r#"start_action = "sometimes""#,
            "connections.s2s.children.net.start_action",
            &["sometimes"],
        ),
        (
            "dur",
            r#"proposals = ["aes256gcm16-prfsha256-x25519"]"#,
            "proposals = [\"aes256gcm16-prfsha256-x25519\"]\nretransmit_timeout = \"4 fortnights\"",
            "connections.s2s.retransmit_timeout",
            &["4 fortnights"],
        ),
        (
            "unknown",
            r#"start_action = "none""#,
            "start_action = \"none\"\n  colour = \"blue\"",
            "line ",
            &["colour"],
        ),
        (
            "syntax",
            r#"[secrets.ike-ab]"#,
            r#"[secrets.ike-ab"#,
            "line ",
            &[],
        ),
    ];
    for (name, from, to, field, words) in cases {
        assert!(GOOD.contains(from), "case {name}: base lacks {from:?}");
        let p = dir.join(format!("{name}.toml"));
        std::fs::write(&p, GOOD.replacen(from, to, 1)).unwrap();
        let o = run_timeout(
            Command::new(ferroswan_bin()).arg("check-config").arg(&p),
            Duration::from_secs(10),
        );
        let err = String::from_utf8_lossy(&o.stderr);
        eprintln!(
            "[cfgerr] {name}: exit {:?}: {}",
            o.status.code(),
            err.trim()
        );
        assert_eq!(
            o.status.code(),
            Some(2),
            "check-config {name}: want exit 2; output: {}",
            text(&o)
        );
        let file = p.display().to_string();
        assert!(
            err.starts_with(&format!("{file}: ")),
            "check-config {name}: stderr does not start with the file name {file}: {err}"
        );
        assert!(
            err.contains(field),
            "check-config {name}: stderr lacks field {field:?}: {err}"
        );
        for w in *words {
            assert!(
                err.contains(w),
                "check-config {name}: stderr lacks reason word {w:?}: {err}"
            );
        }
        // `run` with the same file: exit 2 before touching the network. In a throwaway
        // network namespace (unshare -n) in case it got further than it should.
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            let mut c = Command::new("unshare");
            c.arg("-n")
                .arg(ferroswan_bin())
                .arg("run")
                .arg("--config")
                .arg(&p)
                .arg("--control")
                .arg(dir.join(format!("{name}.sock")));
            let o = run_timeout(&mut c, Duration::from_secs(10));
            assert_eq!(
                o.status.code(),
                Some(2),
                "ferroswan run with {name}: want exit 2; output: {}",
                text(&o)
            );
            assert!(
                text(&o).contains(field),
                "ferroswan run with {name}: output lacks {field:?}: {}",
                text(&o)
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
