//! Lifecycle interop tests against strongSwan: CHILD_SA and IKE SA rekeys (initiated by either
//! side, with and without PFS) under continuous traffic, and peer restarts recovered by DPD.
//! ferroswan is always gwA (initiator of the tunnel), strongSwan gwB. Lifetimes are short
//! (10-20 s) so that every test sees its rekeys within ~40 s; the tests run in parallel.
//! Same prerequisites as tests/interop.rs (root, strongSwan, tcpdump, tshark).

use fs_testbed::*;
use serde_json::Value;
use std::time::{Duration, Instant};

const GCM: &str = "aes256gcm16";
const GCM_PFS: &str = "aes256gcm16-x25519";
/// `ping -i` for the loss tests.
const FAST: &str = "0.01";

struct Setup {
    topo: Topology,
    fs: Ferroswan,
    ss: StrongSwan,
}

/// gwB = strongSwan (responder), gwA = ferroswan; `ferroswan up`, then wait for a ping.
fn setup(tag: &str, esp: &str, fs_opts: &[(&str, &str)], ss_opts: &[(&str, &str)]) -> Setup {
    let topo = Topology::new(tag);
    let ss = StrongSwan::start_opts(&topo, &topo.gb, "gwB", &GwParams::b(esp), ss_opts);
    let fs = Ferroswan::start_opts(&topo, &topo.ga, "gwA", &GwParams::a(esp), fs_opts);
    fs.up(CONN).unwrap_or_else(|e| panic!("[{tag}] {e}"));
    ss.wait_for_sa(Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("[{tag}] {e}"));
    wait_ping(&topo.ha, HB_IP, Duration::from_secs(10)).unwrap_or_else(|e| panic!("[{tag}] {e}"));
    Setup { topo, fs, ss }
}

/// ferroswan's ESTABLISHED IKE SA of CONN.
fn fs_sa(tag: &str, fs: &Ferroswan) -> Value {
    fs.wait_for_sa(CONN, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("[{tag}] {e}"))
}

/// (spi_in, spi_out, rekey_count) of ferroswan's newest INSTALLED child.
fn fs_child(tag: &str, fs: &Ferroswan) -> (String, String, u64) {
    let sa = fs_sa(tag, fs);
    let ch = children(&sa)
        .into_iter()
        .rev()
        .find(|c| c["state"] == "INSTALLED")
        .unwrap_or_else(|| panic!("[{tag}] no INSTALLED child: {sa}"));
    for k in [
        "established_secs",
        "rekey_in_secs",
        "expires_in_secs",
        "rekey_count",
    ] {
        assert!(ch.get(k).is_some(), "[{tag}] status lacks {k}: {ch}");
    }
    (
        ch["spi_in"].as_str().unwrap_or("").to_string(),
        ch["spi_out"].as_str().unwrap_or("").to_string(),
        ch["rekey_count"].as_u64().unwrap_or(0),
    )
}

/// (in, out) SPIs of strongSwan's INSTALLED CHILD_SAs, from `swanctl --list-sas`.
fn ss_child_spis(ss: &StrongSwan) -> Vec<(String, String)> {
    let list = ss.list_sas();
    let mut v = Vec::new();
    let mut cur_installed = false;
    let mut spi_in = String::new();
    for line in list.lines() {
        let l = line.trim_start();
        if l.starts_with(&format!("{CHILD}: #")) {
            cur_installed = l.contains("INSTALLED");
        } else if let Some(r) = l.strip_prefix("in  ") {
            spi_in = r
                .split(|c: char| c == ',' || c.is_whitespace())
                .next()
                .unwrap_or("")
                .to_string();
        } else if let Some(r) = l.strip_prefix("out ") {
            if cur_installed {
                let spi_out = r
                    .split(|c: char| c == ',' || c.is_whitespace())
                    .next()
                    .unwrap_or("")
                    .to_string();
                v.push((spi_in.clone(), spi_out));
            }
        }
    }
    v
}

/// The current ferroswan child must be one strongSwan has installed, mirrored.
fn assert_spis_match(tag: &str, fs: &Ferroswan, ss: &StrongSwan) -> (String, String, u64) {
    let mut last = String::new();
    let r = poll(Duration::from_secs(5), || {
        let (i, o, n) = fs_child(tag, fs);
        let sss = ss_child_spis(ss);
        last = format!("ferroswan in {i} out {o}; strongSwan {sss:?}");
        sss.iter()
            .any(|(si, so)| *si == o && *so == i)
            .then_some((i, o, n))
    });
    r.unwrap_or_else(|| {
        panic!(
            "[{tag}] SPIs differ: {last}\n{}\n{}",
            ss.list_sas(),
            text(&fs.ctl(&["status"]))
        )
    })
}

fn spawn_tcp(
    topo: &Topology,
    dur: Duration,
) -> std::thread::JoinHandle<Result<TcpStreamResult, String>> {
    let (ha, hb) = (topo.ha.clone(), topo.hb.clone());
    std::thread::spawn(move || tcp_stream(&ha, &hb, HB_IP, 5201, dur, 400_000))
}

/// Ping through `secs` of rekeys: 0 lost, at least `min_rekeys` CHILD_SA rekeys, SPIs changed
/// and identical on both sides; with `tcp`, a TCP stream never stalls for a second.
fn child_rekeys(
    tag: &str,
    esp: &str,
    fs_opts: &[(&str, &str)],
    ss_opts: &[(&str, &str)],
    secs: u32,
    min_rekeys: u64,
    tcp: bool,
) {
    if !prerequisites(tag) {
        return;
    }
    let s = setup(tag, esp, fs_opts, ss_opts);
    let (i0, o0, _) = assert_spis_match(tag, &s.fs, &s.ss);
    let t0 = Instant::now();
    let count = secs * 100;
    let ping = PingRun::start(&s.topo, &s.topo.ha, HB_IP, FAST, count, "rekey");
    let tcp = tcp.then(|| spawn_tcp(&s.topo, Duration::from_secs(secs as u64 - 5)));
    let mut seen = vec![(i0.clone(), o0.clone())];
    // watch the SPIs change while the traffic runs
    while t0.elapsed() < Duration::from_secs(secs as u64) {
        std::thread::sleep(Duration::from_secs(2));
        s.fs.assert_alive();
        let (i, o, _) = fs_child(tag, &s.fs);
        if !seen.contains(&(i.clone(), o.clone())) {
            eprintln!(
                "[{tag}] {:>5.1}s: CHILD_SA now {i}_i {o}_o",
                t0.elapsed().as_secs_f64()
            );
            seen.push((i, o));
        }
    }
    // under load ping -i 0.01 runs late: give it as long again to finish its count
    let r = ping
        .finish(Duration::from_secs(secs as u64 + 30))
        .unwrap_or_else(|e| panic!("[{tag}] {e}"));
    let (i, o, rekeys) = assert_spis_match(tag, &s.fs, &s.ss);
    eprintln!(
        "[{tag}] ping: {}/{} received, {} lost, max gap {:?}; {rekeys} rekeys, SPIs seen {seen:?}",
        r.received,
        r.transmitted,
        r.lost(),
        r.max_gap
    );
    if let Some(t) = tcp {
        let t = t
            .join()
            .expect("tcp thread")
            .unwrap_or_else(|e| panic!("[{tag}] TCP: {e}"));
        eprintln!(
            "[{tag}] TCP: {} bytes, longest stall {:?}",
            t.bytes, t.max_stall
        );
        assert!(
            t.max_stall < Duration::from_secs(1),
            "[{tag}] TCP stalled for {:?}",
            t.max_stall
        );
    }
    assert_eq!(r.transmitted, count, "[{tag}] ping sent {r:?}");
    assert_eq!(r.lost(), 0, "[{tag}] lost pings across rekeys: {r:?}");
    assert!(
        rekeys >= min_rekeys,
        "[{tag}] only {rekeys} CHILD_SA rekeys (want >= {min_rekeys})"
    );
    assert!(i != i0 && o != o0, "[{tag}] SPIs unchanged");
    assert!(
        seen.len() as u64 > min_rekeys,
        "[{tag}] SPI changes seen: {seen:?}"
    );
    let ssl = s.ss.log();
    assert!(
        ssl.contains("CREATE_CHILD_SA"),
        "[{tag}] strongSwan log shows no CREATE_CHILD_SA"
    );
}

// ---- (a) CHILD_SA rekeys initiated by strongSwan -------------------------------------------

#[test]
fn child_rekey_by_strongswan() {
    child_rekeys(
        "lcssrk",
        GCM,
        &[],
        &[("SS_CHILD_REKEY_TIME", "12s")],
        40,
        2,
        true,
    );
}

// ---- (b) CHILD_SA rekeys initiated by ferroswan, without and with PFS ----------------------

#[test]
fn child_rekey_by_ferroswan() {
    child_rekeys(
        "lcfsrk",
        GCM,
        &[("FS_CHILD_EXTRA", "rekey_time = \"10s\"")],
        &[],
        25,
        2,
        true,
    );
}

#[test]
fn child_rekey_by_ferroswan_pfs() {
    child_rekeys(
        "lcfspfs",
        GCM_PFS,
        &[("FS_CHILD_EXTRA", "rekey_time = \"10s\"")],
        &[],
        25,
        2,
        false,
    );
}

#[test]
fn child_rekey_by_strongswan_pfs() {
    child_rekeys(
        "lcsspfs",
        GCM_PFS,
        &[],
        &[("SS_CHILD_REKEY_TIME", "10s")],
        25,
        2,
        false,
    );
}

// ---- (c) IKE SA rekeys ---------------------------------------------------------------------

fn ike_rekey(tag: &str, fs_opts: &[(&str, &str)], ss_opts: &[(&str, &str)]) {
    if !prerequisites(tag) {
        return;
    }
    let s = setup(tag, GCM, fs_opts, ss_opts);
    let sa0 = fs_sa(tag, &s.fs);
    let secs = 25;
    let count = secs * 100;
    let ping = PingRun::start(&s.topo, &s.topo.ha, HB_IP, FAST, count, "ikerekey");
    let r = ping
        .finish(Duration::from_secs(secs as u64 + 30))
        .unwrap_or_else(|e| panic!("[{tag}] {e}"));
    let sa = fs_sa(tag, &s.fs);
    eprintln!(
        "[{tag}] ping: {}/{} received, {} lost; IKE SA {}_i {}_r -> {}_i {}_r, rekey_count {}",
        r.received,
        r.transmitted,
        r.lost(),
        sa0["spi_i"],
        sa0["spi_r"],
        sa["spi_i"],
        sa["spi_r"],
        sa["rekey_count"]
    );
    assert_eq!(r.transmitted, count, "[{tag}] ping sent {r:?}");
    assert_eq!(
        r.lost(),
        0,
        "[{tag}] lost pings across the IKE rekey: {r:?}"
    );
    assert!(
        sa["rekey_count"].as_u64().unwrap_or(0) >= 1 && sa["spi_i"] != sa0["spi_i"],
        "[{tag}] IKE SA not rekeyed: before {sa0}, after {sa}"
    );
    let list = s.ss.list_sas();
    let spi = |v: &Value| {
        v.as_str()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| panic!("[{tag}] IKE SA without an SPI: {sa}"))
            .to_string()
    };
    assert!(
        list.contains(&spi(&sa["spi_i"])) && list.contains(&spi(&sa["spi_r"])),
        "[{tag}] strongSwan does not list the rekeyed IKE SA {}_i {}_r:\n{list}",
        spi(&sa["spi_i"]),
        spi(&sa["spi_r"])
    );
    // the CHILD_SA survived the IKE rekey and still carries traffic
    assert_spis_match(tag, &s.fs, &s.ss);
    ping_once(tag, &s.topo);
}

fn ping_once(tag: &str, topo: &Topology) {
    ping(&topo.ha, HB_IP).unwrap_or_else(|e| panic!("[{tag}] {e}"));
}

#[test]
fn ike_rekey_by_strongswan() {
    ike_rekey("lcssike", &[], &[("SS_IKE_REKEY_TIME", "20s")]);
}

#[test]
fn ike_rekey_by_ferroswan() {
    ike_rekey("lcfsike", &[("FS_CONN_EXTRA", "rekey_time = \"20s\"")], &[]);
}

// ---- (d)/(e) peer restarts -----------------------------------------------------------------

/// DPD delay of the surviving side, and its retransmission round (2 s, x1.8, 2 retries:
/// 2 + 3.6 + 6.48 s, both templates) until it declares the peer dead.
const DPD_DELAY: f64 = 5.0;
const RETRANSMIT_ROUND: f64 = 2.0 + 3.6 + 6.48;
/// New IKE_SA_INIT + IKE_AUTH + data plane install, and one ping interval.
const SETUP_SLACK: f64 = 3.0;

/// Ping every 50 ms; crash `restart` at 5 s and start it again at once; the outage (longest
/// time between two replies) must stay within dpd_delay + one retransmission round + slack.
fn restart_test(tag: &str, restart_ferroswan: bool) {
    if !prerequisites(tag) {
        return;
    }
    let fs_opts: &[(&str, &str)] = &[(
        "FS_CONN_EXTRA",
        "dpd_delay = \"5s\"\ndpd_action = \"restart\"",
    )];
    // swanctl: dpd_delay is per connection, dpd_action per child
    let ss_opts: &[(&str, &str)] = &[
        ("SS_CONN_EXTRA", "dpd_delay = 5s"),
        ("SS_CHILD_EXTRA", "dpd_action = restart"),
    ];
    let (fs_opts, ss_opts) = if restart_ferroswan {
        (&[][..], ss_opts)
    } else {
        (fs_opts, &[][..])
    };
    let mut s = setup(tag, GCM, fs_opts, ss_opts);
    let count = 600; // 30 s
    let ping = PingRun::start(&s.topo, &s.topo.ha, HB_IP, "0.05", count, "restart");
    std::thread::sleep(Duration::from_secs(5));
    let t_crash = Instant::now();
    if restart_ferroswan {
        s.fs.kill();
        s.fs = Ferroswan::start_opts(&s.topo, &s.topo.ga, "gwA", &GwParams::a(GCM), fs_opts);
    } else {
        s.ss.kill();
        s.ss = StrongSwan::start_opts(&s.topo, &s.topo.gb, "gwB", &GwParams::b(GCM), ss_opts);
    }
    eprintln!("[{tag}] peer restarted in {:?}", t_crash.elapsed());
    let back = poll(Duration::from_secs(40), || {
        (s.ss.established() && s.fs.wait_for_sa(CONN, Duration::ZERO).is_ok()).then_some(())
    });
    let t_sa = t_crash.elapsed();
    assert!(back.is_some(), "[{tag}] tunnel not back after {t_sa:?}");
    let r = ping
        .finish(Duration::from_secs(40))
        .unwrap_or_else(|e| panic!("[{tag}] {e}"));
    let bound = DPD_DELAY + RETRANSMIT_ROUND + SETUP_SLACK;
    eprintln!(
        "[{tag}] SAs back {t_sa:?} after the crash; ping outage {:?} ({} of {} lost), bound {bound:.1}s",
        r.max_gap,
        r.lost(),
        r.transmitted
    );
    assert!(
        r.max_gap.as_secs_f64() <= bound,
        "[{tag}] outage {:?} > {bound:.1}s",
        r.max_gap
    );
    assert!(
        r.max_missing_run as f64 * 0.05 <= bound + 1.0,
        "[{tag}] {} pings in a row unanswered (incl. at the end): {r:?}",
        r.max_missing_run
    );
    assert!(
        r.lost() > 0,
        "[{tag}] no loss at all: was the peer really restarted? {r:?}"
    );
    ping_once(tag, &s.topo);
}

#[test]
fn strongswan_restart_dpd() {
    restart_test("lcssrst", false);
}

#[test]
fn ferroswan_restart_dpd() {
    restart_test("lcfsrst", true);
}
