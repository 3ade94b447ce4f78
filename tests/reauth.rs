//! IKE SA reauthentication (RFC 7296 2.8.3) against strongSwan under continuous traffic, by
//! either side (`reauth_time = 20s`), and `dpd_action = "trap"` (a dead peer's tunnel comes
//! back through a trap policy on the next packet). ferroswan is gwA (initiator of the
//! tunnel), strongSwan gwB. Same prerequisites as tests/interop.rs.

use fs_testbed::*;
use serde_json::Value;
use std::time::Duration;

const GCM: &str = "aes256gcm16";

struct Setup {
    topo: Topology,
    fs: Ferroswan,
    ss: StrongSwan,
}

fn setup(tag: &str, fs_opts: &[(&str, &str)], ss_opts: &[(&str, &str)]) -> Setup {
    let topo = Topology::new(tag);
    let ss = StrongSwan::start_opts(&topo, &topo.gb, "gwB", &GwParams::b(GCM), ss_opts);
    let fs = Ferroswan::start_opts(&topo, &topo.ga, "gwA", &GwParams::a(GCM), fs_opts);
    fs.up(CONN).unwrap_or_else(|e| panic!("[{tag}] {e}"));
    ss.wait_for_sa(Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("[{tag}] {e}"));
    wait_ping(&topo.ha, HB_IP, Duration::from_secs(10)).unwrap_or_else(|e| panic!("[{tag}] {e}"));
    Setup { topo, fs, ss }
}

/// strongSwan's IKE SAs of CONN, as `swanctl --list-sas` lines `s2s: #n, STATE, ...`.
fn ss_ike_lines(ss: &StrongSwan) -> Vec<String> {
    ss.list_sas()
        .lines()
        .filter(|l| l.starts_with(&format!("{CONN}: #")))
        .map(|l| l.to_string())
        .collect()
}

/// (spi_i, spi_r, [(child spi_in, spi_out)]) of ferroswan's single IKE SA.
type FsState = (String, String, Vec<(String, String)>);

fn fs_state(fs: &Ferroswan) -> Option<FsState> {
    let sas = fs.ike_sas().ok()?;
    if sas.len() != 1 || sas[0]["state"] != "ESTABLISHED" {
        return None;
    }
    let s = &sas[0];
    // A missing or empty SPI is a broken status, not a state to compare (an empty string
    // would be "contained" in any listing).
    let st = |v: &Value| {
        v.as_str()
            .filter(|x| !x.is_empty())
            .unwrap_or_else(|| panic!("status without an SPI: {s}"))
            .to_string()
    };
    let ch: Vec<(String, String)> = children(s)
        .iter()
        .map(|c| (st(&c["spi_in"]), st(&c["spi_out"])))
        .collect();
    Some((st(&s["spi_i"]), st(&s["spi_r"]), ch))
}

fn reauth(tag: &str, fs_opts: &[(&str, &str)], ss_opts: &[(&str, &str)]) {
    if !prerequisites(tag) {
        return;
    }
    let s = setup(tag, fs_opts, ss_opts);
    let (i0, r0, c0) = fs_state(&s.fs).unwrap_or_else(|| panic!("[{tag}] no single IKE SA"));
    let secs = 45;
    let count = secs * 100;
    let run = PingRun::start(&s.topo, &s.topo.ha, HB_IP, "0.01", count, "reauth");
    // Sample the IKE SPIs during the run: every reauthentication changes both.
    let mut seen: Vec<(String, String)> = vec![(i0.clone(), r0.clone())];
    let t0 = std::time::Instant::now();
    while t0.elapsed() < Duration::from_secs(secs as u64) {
        if let Some((i, r, _)) = fs_state(&s.fs) {
            if !seen.contains(&(i.clone(), r.clone())) {
                seen.push((i, r));
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let res = run
        .finish(Duration::from_secs(40))
        .unwrap_or_else(|e| panic!("[{tag}] {e}"));
    // Both sides end with exactly one IKE SA (the old one was deleted).
    let ends = poll(Duration::from_secs(10), || {
        let st = fs_state(&s.fs)?;
        (ss_ike_lines(&s.ss).len() == 1).then_some(st)
    });
    let (i1, r1, c1) = ends.unwrap_or_else(|| {
        panic!(
            "[{tag}] not one IKE SA each:\n{}\n{}",
            s.ss.list_sas(),
            text(&s.fs.ctl(&["status"]))
        )
    });
    let log = s.fs.log();
    let reauths = log.matches("reauthenticated as IKE_SA").count();
    eprintln!(
        "[{tag}] ping: {}/{} received, {} lost, max gap {:?}; IKE SA {i0}_i {r0}_r -> {i1}_i {r1}_r; \
         IKE SPIs seen {}; ferroswan reauths {reauths}; child {c0:?} -> {c1:?}",
        res.received,
        res.transmitted,
        res.lost(),
        res.max_gap,
        seen.len()
    );
    assert_eq!(res.transmitted, count, "[{tag}] ping sent {res:?}");
    assert!(
        res.lost() <= 2,
        "[{tag}] lost pings across reauthentication: {res:?}"
    );
    assert!(
        i1 != i0 && r1 != r0 && seen.len() >= 2,
        "[{tag}] IKE SPIs did not change: {seen:?}"
    );
    assert_eq!(c1.len(), 1, "[{tag}] children {c1:?}");
    assert!(!c0.is_empty(), "[{tag}] no child before the reauth");
    assert!(
        c0.iter().all(|(a, b)| c1[0].0 != *a && c1[0].1 != *b),
        "[{tag}] child SPIs did not change: {c0:?} -> {c1:?}"
    );
    let list = s.ss.list_sas();
    assert!(
        list.contains(&i1) && list.contains(&r1),
        "[{tag}] strongSwan does not list IKE SA {i1}_i {r1}_r:\n{list}"
    );
    assert!(
        list.contains(&c1[0].0) && list.contains(&c1[0].1),
        "[{tag}] strongSwan does not list CHILD_SA {c1:?}:\n{list}"
    );
    ping(&s.topo.ha, HB_IP).unwrap_or_else(|e| panic!("[{tag}] {e}"));
}

#[test]
fn reauth_by_ferroswan() {
    reauth(
        "rafs",
        &[("FS_CONN_EXTRA", "reauth_time = \"20s\"\nrand_time = \"2s\"")],
        &[],
    );
}

#[test]
fn reauth_by_strongswan() {
    reauth(
        "rass",
        &[],
        &[
            ("SS_IKE_REKEY_TIME", "0"),
            ("SS_CONN_EXTRA", "reauth_time = 20s\nrand_time = 2s"),
            // strongSwan 5.x reauthenticates break-before-make by default
            ("CHARON_EXTRA", "make_before_break = yes"),
        ],
    );
}

/// dpd_action = "trap" with start_action = "none": strongSwan is SIGKILLed, ferroswan's DPD
/// clears the SAs and installs trap policies (packets dropped, never cleartext); strongSwan
/// restarts (without initiating), and a ping from hostA re-creates the tunnel via acquire.
#[test]
fn dpd_trap_reinitiates_on_traffic() {
    let tag = "radpdtrap";
    if !prerequisites(tag) {
        return;
    }
    let fs_opts: &[(&str, &str)] =
        &[("FS_CONN_EXTRA", "dpd_delay = \"3s\"\ndpd_action = \"trap\"")];
    let mut s = setup(tag, fs_opts, &[]);
    let (i0, _, _) = fs_state(&s.fs).unwrap_or_else(|| panic!("[{tag}] no IKE SA"));
    s.ss.kill();
    // DPD: 3 s + retransmissions (2 + 3.6 + 6.48 s) until the peer is declared dead.
    s.fs.wait_no_sa(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("[{tag}] DPD did not clear: {e}"));
    let c0 = s.fs.counters().unwrap_or_else(|e| panic!("[{tag}] {e}"));
    assert!(
        s.fs.log().contains("trap policy installed"),
        "[{tag}] no trap after DPD"
    );
    // While the peer is down: the packet is dropped (trap), and triggers an acquire.
    assert!(ping(&s.topo.ha, HB_IP).is_err(), "[{tag}] ping without SA");
    let c1 = s.fs.counters().unwrap_or_else(|e| panic!("[{tag}] {e}"));
    let get = |c: &std::collections::BTreeMap<String, u64>, k: &str| c.get(k).copied().unwrap_or(0);
    assert!(
        get(&c1, "acquires") > get(&c0, "acquires"),
        "[{tag}] no acquire: {c0:?} -> {c1:?}"
    );
    // That attempt times out; restart strongSwan (responder only), ping again.
    s.ss = StrongSwan::start_opts(&s.topo, &s.topo.gb, "gwB", &GwParams::b(GCM), &[]);
    let t = std::time::Instant::now();
    wait_ping(&s.topo.ha, HB_IP, Duration::from_secs(40))
        .unwrap_or_else(|e| panic!("[{tag}] tunnel not back through the trap: {e}"));
    let (i1, _, _) = fs_state(&s.fs).unwrap_or_else(|| panic!("[{tag}] no IKE SA"));
    let c2 = s.fs.counters().unwrap_or_else(|e| panic!("[{tag}] {e}"));
    eprintln!(
        "[{tag}] back via trap after {:?}; IKE SA {i0} -> {i1}; counters {c0:?} -> {c2:?}",
        t.elapsed()
    );
    assert_ne!(i0, i1);
    assert!(s.ss.established(), "[{tag}] strongSwan has no SA");
}

/// dpd_action = "trap" arms traps only when the peer of a live SA went away: an `up` that
/// times out because the peer is absent arms nothing (start_action = "none"), so later
/// traffic is dropped without acquires (no unsolicited IKE towards the absent peer).
#[test]
fn dpd_trap_not_armed_by_failed_setup() {
    let tag = "radpdnotrap";
    if !prerequisites(tag) {
        return;
    }
    let topo = Topology::new(tag);
    let fs_opts: &[(&str, &str)] =
        &[("FS_CONN_EXTRA", "dpd_delay = \"3s\"\ndpd_action = \"trap\"")];
    // no gwB at all: IKE_SA_INIT goes unanswered (2 s, then 2 retransmissions)
    let fs = Ferroswan::start_opts(&topo, &topo.ga, "gwA", &GwParams::a(GCM), fs_opts);
    let e = fs.up(CONN).expect_err("up without a peer must fail");
    assert!(e.contains("TIMEOUT"), "[{tag}] {e}");
    let c0 = fs.counters().unwrap_or_else(|e| panic!("[{tag}] {e}"));
    assert!(ping(&topo.ha, HB_IP).is_err(), "[{tag}] ping without SA");
    let c1 = fs.counters().unwrap_or_else(|e| panic!("[{tag}] {e}"));
    let get = |c: &std::collections::BTreeMap<String, u64>, k: &str| {
        *c.get(k)
            .unwrap_or_else(|| panic!("[{tag}] no counter {k}: {c:?}"))
    };
    assert_eq!(
        get(&c1, "acquires"),
        get(&c0, "acquires"),
        "[{tag}] acquire after a failed setup: {c0:?} -> {c1:?}"
    );
    assert!(
        get(&c1, "no_sa") > get(&c0, "no_sa"),
        "[{tag}] the ping was not dropped as no_sa: {c0:?} -> {c1:?}"
    );
    assert!(
        !fs.log().contains("trap policy installed"),
        "[{tag}] trap installed after a failed setup"
    );
    eprintln!("[{tag}] OK: {c0:?} -> {c1:?}");
}
