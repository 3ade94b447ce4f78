//! Tests of the whole file: parse() of complete configurations.
use super::*;
use fs_ike::{DpdAction, StartAction};
use fs_wire::id::Identity;

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
        (
            "65",
            "t.toml: daemon.workers: 65 out of range 0..64 (0 = \"auto\")",
        ),
        (
            "-2",
            "t.toml: daemon.workers: -2 out of range 0..64 (0 = \"auto\")",
        ),
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
        e.starts_with("t.toml: connections.s2s.children.net.start_action: invalid start_action"),
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

// ---------------------------------------------------------------- ranges (issue 9, item 4)

/// Where a field goes in `GOOD`.
#[derive(Clone, Copy)]
enum Sec {
    Daemon,
    Limits,
    Conn,
    Child,
}

/// `GOOD` with `field = value` set in section `sec` (an existing line for it replaced), plus
/// `extra` lines in the same section.
fn with_field(sec: Sec, field: &str, value: &str, extra: &str) -> String {
    let mut lines: Vec<String> = GOOD.lines().map(str::to_string).collect();
    let indent = if matches!(sec, Sec::Child) { "  " } else { "" };
    let mut set = vec![format!("{indent}{field} = {value}")];
    set.extend(
        extra
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| format!("{indent}{l}")),
    );
    let names: Vec<String> = set
        .iter()
        .map(|l| l.split('=').next().unwrap_or("").trim().to_string())
        .collect();
    let (anchor, prefix) = match sec {
        Sec::Daemon => ("tun_name = \"fs9\"", ""),
        Sec::Limits => ("", "[limits]\n"),
        Sec::Conn => ("proposals = [\"aes256gcm16-prfsha256-x25519\"]", ""),
        Sec::Child => ("  esp_proposals = [\"aes256gcm16\"]", ""),
    };
    // drop GOOD's own line for a field we set (same indentation = same section here)
    lines.retain(|l| {
        !names.iter().any(|n| {
            l.strip_prefix(indent)
                .and_then(|r| r.strip_prefix(n.as_str()))
                .is_some_and(|r| r.starts_with(" ="))
                && !l[indent.len()..].starts_with(' ')
        })
    });
    let mut text = lines.join("\n");
    if prefix.is_empty() {
        let at = text.find(anchor).expect("anchor") + anchor.len();
        text.insert_str(at, &format!("\n{}", set.join("\n")));
        text
    } else {
        format!("{prefix}{}\n{text}", set.join("\n"))
    }
}

/// (section, field, full path, range text, value below the range, lowest, highest, value
/// above, extra lines that keep the other checks quiet).
type Bound = (
    Sec,
    &'static str,
    &'static str,
    String,
    Option<&'static str>,
    &'static str,
    &'static str,
    Option<&'static str>,
    &'static str,
);

fn bounds() -> Vec<Bound> {
    use super::range::*;
    vec![
        (
            Sec::Daemon,
            "ike_port",
            "daemon.ike_port",
            PORT.describe(),
            Some("0"),
            "1",
            "65535",
            Some("65536"),
            "",
        ),
        (
            Sec::Daemon,
            "natt_port",
            "daemon.natt_port",
            PORT.describe(),
            Some("0"),
            "1",
            "65535",
            Some("65536"),
            "",
        ),
        (
            Sec::Limits,
            "cookie_threshold",
            "limits.cookie_threshold",
            COOKIE_THRESHOLD.describe(),
            Some("-1"),
            "0",
            "10000000",
            Some("10000001"),
            "",
        ),
        (
            Sec::Limits,
            "half_open_max",
            "limits.half_open_max",
            HALF_OPEN_MAX.describe(),
            Some("0"),
            "1",
            "10000000",
            Some("10000001"),
            "",
        ),
        (
            Sec::Limits,
            "half_open_per_source_max",
            "limits.half_open_per_source_max",
            HALF_OPEN_PER_SOURCE_MAX.describe(),
            Some("0"),
            "1",
            "10000000",
            Some("10000001"),
            "",
        ),
        (
            Sec::Limits,
            "half_open_timeout",
            "limits.half_open_timeout",
            HALF_OPEN_TIMEOUT.describe(),
            Some("0"),
            "1",
            "\"1d\"",
            Some("86401"),
            "",
        ),
        (
            Sec::Limits,
            "cookie_secret_lifetime",
            "limits.cookie_secret_lifetime",
            COOKIE_SECRET_LIFETIME.describe(),
            Some("\"999ms\""),
            "\"1s\"",
            "86400",
            Some("9223372036854775807"),
            "",
        ),
        (
            Sec::Conn,
            "remote_port",
            "connections.s2s.remote_port",
            PORT.describe(),
            Some("0"),
            "1",
            "65535",
            Some("65536"),
            "",
        ),
        (
            Sec::Conn,
            "retransmit_timeout",
            "connections.s2s.retransmit_timeout",
            RETRANSMIT_TIMEOUT.describe(),
            Some("\"99ms\""),
            "\"100ms\"",
            "\"1h\"",
            Some("3601"),
            "",
        ),
        (
            Sec::Conn,
            "retransmit_tries",
            "connections.s2s.retransmit_tries",
            RETRANSMIT_TRIES.describe(),
            Some("-1"),
            "0",
            "100",
            Some("101"),
            "",
        ),
        (
            Sec::Conn,
            "rekey_time",
            "connections.s2s.rekey_time",
            REKEY_TIME.describe(),
            Some("\"999ms\""),
            "1",
            "\"365d\"",
            Some("31536001"),
            "",
        ),
        (
            Sec::Conn,
            "reauth_time",
            "connections.s2s.reauth_time",
            REAUTH_TIME.describe(),
            Some("\"999ms\""),
            "1",
            "\"365d\"",
            Some("31536001"),
            "",
        ),
        (
            Sec::Conn,
            "life_time",
            "connections.s2s.life_time",
            LIFE_TIME.describe(),
            Some("\"999ms\""),
            "1",
            "\"365d\"",
            Some("31536001"),
            "rekey_time = 0",
        ),
        (
            Sec::Conn,
            "rand_time",
            "connections.s2s.rand_time",
            RAND_TIME.describe(),
            None,
            "0",
            "\"365d\"",
            Some("31536001"),
            "",
        ),
        (
            Sec::Conn,
            "dpd_delay",
            "connections.s2s.dpd_delay",
            DPD_DELAY.describe(),
            Some("\"999ms\""),
            "1",
            "\"1d\"",
            Some("9223372036854775807"),
            "",
        ),
        (
            Sec::Conn,
            "nat_keepalive",
            "connections.s2s.nat_keepalive",
            NAT_KEEPALIVE.describe(),
            Some("\"999ms\""),
            "1",
            "\"1h\"",
            Some("3601"),
            "",
        ),
        (
            Sec::Conn,
            "fragment_size",
            "connections.s2s.fragment_size",
            FRAGMENT_SIZE.describe(),
            Some("255"),
            "256",
            "65535",
            Some("65536"),
            "",
        ),
        (
            Sec::Child,
            "replay_window",
            "connections.s2s.children.net.replay_window",
            REPLAY_WINDOW.describe(),
            Some("-1"),
            "0",
            "65536",
            Some("65537"),
            "",
        ),
        (
            Sec::Child,
            "rekey_time",
            "connections.s2s.children.net.rekey_time",
            REKEY_TIME.describe(),
            Some("\"999ms\""),
            "1",
            "\"365d\"",
            Some("31536001"),
            "",
        ),
        (
            Sec::Child,
            "life_time",
            "connections.s2s.children.net.life_time",
            LIFE_TIME.describe(),
            Some("\"999ms\""),
            "1",
            "\"365d\"",
            Some("31536001"),
            "rekey_time = 0",
        ),
        (
            Sec::Child,
            "rand_time",
            "connections.s2s.children.net.rand_time",
            RAND_TIME.describe(),
            None,
            "0",
            "\"365d\"",
            Some("31536001"),
            "",
        ),
        (
            Sec::Child,
            "rekey_bytes",
            "connections.s2s.children.net.rekey_bytes",
            VOLUME.describe(),
            Some("-1"),
            "0",
            "9223372036854775807",
            None,
            "",
        ),
        (
            Sec::Child,
            "life_bytes",
            "connections.s2s.children.net.life_bytes",
            VOLUME.describe(),
            Some("-1"),
            "0",
            "9223372036854775807",
            None,
            "",
        ),
        (
            Sec::Child,
            "rekey_packets",
            "connections.s2s.children.net.rekey_packets",
            VOLUME.describe(),
            Some("-1"),
            "0",
            "9223372036854775807",
            None,
            "",
        ),
        (
            Sec::Child,
            "life_packets",
            "connections.s2s.children.net.life_packets",
            VOLUME.describe(),
            Some("-1"),
            "0",
            "9223372036854775807",
            None,
            "",
        ),
    ]
}

#[test]
fn every_field_has_its_range() {
    for (sec, field, path, range, below, lo, hi, above, extra) in bounds() {
        for ok in [lo, hi] {
            let text = with_field(sec, field, ok, extra);
            if let Err(e) = p(&text) {
                panic!("{path} = {ok} should be accepted: {e}\n{text}");
            }
        }
        for bad in [below, above].into_iter().flatten() {
            let text = with_field(sec, field, bad, extra);
            let e = err(&text);
            let want = format!("t.toml: {path}: {range} (got ");
            assert!(
                e.starts_with(&want),
                "{path} = {bad}: want {want:?}..., got {e:?}"
            );
            assert!(e.ends_with(')'), "{e}");
        }
    }
}

#[test]
fn hostile_values_from_issue_9() {
    // each passed check-config before, then crashed the daemon (Instant + Duration overflow)
    let e = err(&format!(
        "[limits]\nhalf_open_timeout = 9223372036854775807\n{GOOD}"
    ));
    assert_eq!(
        e,
        "t.toml: limits.half_open_timeout: must be between 1s and 1d (got 9223372036854775807)"
    );
    let e = err(&GOOD.replace("dpd_delay = 0", "dpd_delay = 9223372036854775807"));
    assert_eq!(
        e,
        "t.toml: connections.s2s.dpd_delay: must be 0 (off) or between 1s and 1d (got 9223372036854775807)"
    );
    let e = err(&GOOD.replace(
        "dpd_delay = 0",
        "dpd_delay = 0\nnat_keepalive = 9223372036854775807",
    ));
    assert!(
        e.starts_with(
            "t.toml: connections.s2s.nat_keepalive: must be 0 (off) or between 1s and 1h"
        ),
        "{e}"
    );
    let e = err(&GOOD.replace("dpd_delay = 0", "dpd_delay = \"999999999s\""));
    assert!(
        e.starts_with("t.toml: connections.s2s.dpd_delay: must be 0 (off) or between 1s and 1d (got \"999999999s\")"),
        "{e}"
    );
    // zero still means off where it did
    let c = p(&GOOD.replace("dpd_delay = 0", "dpd_delay = 0\nnat_keepalive = 0"));
    let c = c.unwrap();
    let s = &c.ike.connections[0];
    assert_eq!((s.dpd_delay, s.nat_keepalive), (None, None));
}

#[test]
fn control_socket_must_be_usable() {
    let with = |v: &str| GOOD.replace("tun_name = \"fs9\"", &format!("control_socket = {v}"));
    assert_eq!(
        p(&with("\"/tmp/x.sock\"")).unwrap().daemon.control_socket,
        PathBuf::from("/tmp/x.sock")
    );
    let e = err(&with("\"\""));
    assert!(
        e.starts_with("t.toml: daemon.control_socket: must not be empty"),
        "{e}"
    );
    let long = format!("\"/{}\"", "a".repeat(107));
    let e = err(&with(&long));
    assert!(
        e.starts_with("t.toml: daemon.control_socket: must be at most 107 bytes"),
        "{e}"
    );
    let just = format!("\"/{}\"", "a".repeat(106));
    assert!(p(&with(&just)).is_ok());
}

// ---------------------------------------------------------------- secrets (issue 9, item 9)

const LONG_PSK: &str = "correct-horse-battery-staple-42";

#[test]
fn debug_never_prints_the_psk() {
    let text = GOOD.replace("0x0102ff", LONG_PSK);
    // the bytes as a derived Debug of Vec<u8> would print them: "99, 111, 114, ..."
    let as_bytes = LONG_PSK
        .bytes()
        .take(4)
        .map(|b| b.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let c = p(&text).unwrap();
    assert_eq!(c.ike.connections[0].psk, LONG_PSK.as_bytes());
    for shown in [
        format!("{c:?}"),
        format!("{c:#?}"),
        format!("{:?}", c.ike.connections[0]),
        format!("{:?}", c.ike.connections[0].clone()),
        format!("{:?}", raw::from_toml(&Ctx::new("t.toml"), &text).unwrap()),
    ] {
        assert!(!shown.contains(LONG_PSK), "{shown}");
        assert!(!shown.contains("horse"), "{shown}");
        assert!(!shown.contains(&as_bytes), "{shown}");
    }
    assert!(format!("{c:?}").contains("Secret(<redacted, 31 bytes>)"));
    // inline psk too
    let no_secrets = &text[..text.find("[secrets.ab]").unwrap()];
    let inline = no_secrets.replace(
        "id = \"gw-a.example\"\n  [connections.s2s.remote]",
        &format!("id = \"gw-a.example\"\n  psk = \"{LONG_PSK}\"\n  [connections.s2s.remote]"),
    );
    let raw = format!(
        "{:?}",
        raw::from_toml(&Ctx::new("t.toml"), &inline).unwrap()
    );
    assert!(raw.contains("RawSecretText(<redacted, 31 bytes>)"), "{raw}");
    assert!(!raw.contains("horse"), "{raw}");
}

#[test]
fn short_psk_warns() {
    // GOOD's secrets are 3 and 5 bytes: valid, with a warning each
    let c = p(GOOD).unwrap();
    let w: Vec<String> = c.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(
        w,
        [
            "t.toml: secrets.ab.secret: warning: PSK is only 3 bytes long; use at least 20 random bytes (e.g. 32, as \"0x...\" hex)",
            "t.toml: secrets.other.secret: warning: PSK is only 5 bytes long; use at least 20 random bytes (e.g. 32, as \"0x...\" hex)",
        ]
    );
    // 20 bytes: no warning
    let twenty = GOOD
        .replace("0x0102ff", &format!("0x{}", "ab".repeat(20)))
        .replace("\"wrong\"", &format!("\"{}\"", "w".repeat(20)));
    assert!(p(&twenty).unwrap().warnings.is_empty());
    let nineteen = twenty.replace(&"w".repeat(20), &"w".repeat(19));
    let w = p(&nineteen).unwrap().warnings;
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].path, "secrets.other.secret");
}

#[test]
fn secrets_readable_by_others_warn() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("fs-cfg-mode-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let chmod =
        |f: &Path, m: u32| std::fs::set_permissions(f, std::fs::Permissions::from_mode(m)).unwrap();
    let strong = GOOD
        .replace("0x0102ff", LONG_PSK)
        .replace("\"wrong\"", &format!("\"{LONG_PSK}\""));
    let f = dir.join("gw.toml");
    std::fs::write(&f, &strong).unwrap();
    let warnings = |f: &Path| -> Vec<String> {
        load(f)
            .unwrap()
            .warnings
            .iter()
            .map(|w| w.to_string())
            .collect()
    };
    chmod(&f, 0o600);
    assert!(warnings(&f).is_empty());
    chmod(&f, 0o640);
    let w = warnings(&f);
    assert_eq!(w.len(), 1, "{w:?}");
    let file = f.display().to_string();
    assert_eq!(
        w[0],
        format!("{file}: secrets.ab.secret: warning: config file holding secrets {file} is readable by group or others (mode 0640); chmod 600 it")
    );
    chmod(&f, 0o604);
    assert_eq!(warnings(&f).len(), 1);
    // group-writable but not readable: no secret leaks
    chmod(&f, 0o620);
    assert!(warnings(&f).is_empty());
    // secret_file: both the config (it names the file) and the file itself
    let sf = dir.join("psk.txt");
    std::fs::write(&sf, format!("{LONG_PSK}\n")).unwrap();
    let g = dir.join("gw2.toml");
    std::fs::write(
        &g,
        strong.replace(
            &format!("secret = \"{LONG_PSK}\"\n[secrets.other]"),
            "secret_file = \"psk.txt\"\n[secrets.other]",
        ),
    )
    .unwrap();
    chmod(&g, 0o600);
    chmod(&sf, 0o600);
    // secrets.other still holds an inline secret; the file is private: no warning
    assert!(warnings(&g).is_empty(), "{:?}", warnings(&g));
    chmod(&sf, 0o644);
    let w = warnings(&g);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("secrets.ab.secret_file: warning: secret file ")
            && w[0].contains("psk.txt is readable by group or others (mode 0644)"),
        "{w:?}"
    );
    assert_eq!(
        load(&g).unwrap().ike.connections[0].psk,
        LONG_PSK.as_bytes()
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn unique_policy() {
    let conn = |text: &str| p(text).unwrap().ike.connections[0].unique;
    assert_eq!(conn(GOOD), fs_ike::UniquePolicy::Replace);
    let at = "[connections.s2s]\n";
    assert!(GOOD.contains(at));
    for (v, want) in [
        ("no", fs_ike::UniquePolicy::No),
        ("never", fs_ike::UniquePolicy::Never),
        ("replace", fs_ike::UniquePolicy::Replace),
        ("keep", fs_ike::UniquePolicy::Keep),
    ] {
        let text = GOOD.replace(at, &format!("{at}unique = \"{v}\"\n"));
        assert_eq!(conn(&text), want);
    }
    let e = err(&GOOD.replace(at, &format!("{at}unique = \"yes\"\n")));
    assert!(e.contains("connections.s2s.unique"), "{e}");
}

#[test]
fn limits_max_children_per_ike_sa() {
    let l = p(GOOD).unwrap().ike.limits;
    assert_eq!(
        l.max_children_per_ike_sa,
        fs_ike::DEFAULT_MAX_CHILDREN_PER_IKE_SA
    );
    let text = format!("[limits]\nmax_children_per_ike_sa = 3\n{GOOD}");
    assert_eq!(p(&text).unwrap().ike.limits.max_children_per_ike_sa, 3);
    for bad in ["0", "100001"] {
        let e = err(&format!(
            "[limits]\nmax_children_per_ike_sa = {bad}\n{GOOD}"
        ));
        assert!(e.contains("limits.max_children_per_ike_sa"), "{e}");
        assert!(e.contains("between 1 and 100000"), "{e}");
    }
}

#[test]
fn daemon_fail_closed_and_user() {
    let c = p(GOOD).unwrap();
    assert!(c.daemon.fail_closed, "default: on");
    assert_eq!(c.daemon.user, None);
    let at = "tun_name = \"fs9\"";
    let c = p(&GOOD.replace(at, &format!("{at}\nfail_closed = false\nuser = \"nobody\""))).unwrap();
    assert!(!c.daemon.fail_closed);
    assert_eq!(c.daemon.user.as_deref(), Some("nobody"));
    for bad in ["\"\"", "\"a:b\""] {
        let e = err(&GOOD.replace(at, &format!("{at}\nuser = {bad}")));
        assert!(e.contains("daemon.user"), "{e}");
    }
}

#[test]
fn at_most_255_selectors() {
    let list = |n: usize| {
        let v: Vec<String> = (0..n)
            .map(|i| format!("\"10.{}.{}.0/24\"", i / 256, i % 256))
            .collect();
        format!("[{}]", v.join(", "))
    };
    let c = GOOD.replace(
        "local_ts = [\"192.168.1.0/24\"]",
        &format!("local_ts = {}", list(255)),
    );
    assert_ne!(c, GOOD, "GOOD has no local_ts line to replace");
    assert_eq!(
        p(&c).unwrap().ike.connections[0].children[0].local_ts.len(),
        255
    );
    let c = GOOD.replace(
        "local_ts = [\"192.168.1.0/24\"]",
        &format!("local_ts = {}", list(256)),
    );
    let e = err(&c);
    assert!(
        e.contains("local_ts: at most 255 traffic selectors (got 256)"),
        "{e}"
    );
}
