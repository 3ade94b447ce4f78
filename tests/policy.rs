//! Policy enforcement without an SA (ferroswan <-> ferroswan).
//!
//! These tests use the `plain` topology: both gateways have a default route to each other,
//! as a real gateway has one to the Internet. Without an SA, a packet between the private
//! nets must therefore be stopped by ferroswan's policies; if it is not, it leaves in clear
//! and the capture on gwA's outside link sees it (`harness_detects_cleartext` in
//! tests/interop.rs shows that capture does see cleartext on this topology).

use fs_testbed::*;
use std::time::Duration;

const T: Duration = Duration::from_secs(5);
const GCM: &str = "aes256gcm16";

/// A ping that is expected to fail (1 packet, 1 s).
fn ping_fails(ns: &str, dst: &str) -> bool {
    let mut c = ns_cmd(ns, "ping");
    c.args(["-n", "-c", "2", "-i", "0.2", "-W", "1", dst]);
    !run_timeout(&mut c, Duration::from_secs(10))
        .status
        .success()
}

fn start_pair(topo: &Topology, action_a: &str) -> (Ferroswan, Ferroswan) {
    let gwb = Ferroswan::start(topo, &topo.gb, "gwB", &GwParams::b(GCM));
    let o = FsOpts {
        start_action: action_a.into(),
        ..Default::default()
    };
    let gwa =
        Ferroswan::start_with_config(topo, &topo.ga, "gwA", &fs_config(&GwParams::a(GCM), &o));
    (gwa, gwb)
}

/// Stop a capture after syncing it; assert no 192.168.x.x in clear, return the ESP count.
fn finish_capture(tag: &str, topo: &Topology, cap: &Capture) -> usize {
    capture_sync(cap, &topo.gb, GA_OUT);
    cap.stop();
    let clear = cap.count("ip.addr == 192.168.0.0/16");
    let esp = cap.count("esp");
    eprintln!("[{tag}] outside link: {clear} cleartext 192.168.x.x packets, {esp} ESP");
    assert_eq!(
        clear,
        0,
        "[{tag}] private traffic leaked in clear on the outside link:\n{}",
        cap.summary(30)
    );
    esp
}

/// (a) start_action = "none", never brought up: pings are dropped and counted as no_sa,
/// nothing leaves in clear (although gwA has a default route towards gwB).
#[test]
fn no_sa_drops_and_does_not_leak() {
    let tag = "polnone";
    if !prerequisites(tag) {
        return;
    }
    let topo = Topology::plain(tag);
    let (gwa, gwb) = start_pair(&topo, "none");
    let cap = Capture::start(&topo, &topo.ga, GA_OUT_IF, "outside");
    assert!(
        ping_fails(&topo.ha, HB_IP),
        "[{tag}] hostA reaches hostB without any SA"
    );
    let n = wait_counter_above(&gwa, "no_sa", 0, T).unwrap_or_else(|e| panic!("[{tag}] {e}"));
    eprintln!("[{tag}] no_sa = {n}");
    // and the other direction, dropped by gwB
    assert!(
        ping_fails(&topo.hb, HA_IP),
        "[{tag}] hostB reaches hostA without any SA"
    );
    wait_counter_above(&gwb, "no_sa", 0, T).unwrap_or_else(|e| panic!("[{tag}] {e}"));
    let esp = finish_capture(tag, &topo, &cap);
    assert_eq!(esp, 0, "[{tag}] ESP without an SA?");
    assert!(
        gwa.ike_sas().unwrap().is_empty(),
        "[{tag}] unexpected IKE SA"
    );
    let c = gwa.counters().unwrap();
    assert_eq!(
        counter(&c, "acquires"),
        0,
        "[{tag}] acquire for a non-trap child: {c:?}"
    );
    assert_healthy(tag, &gwa);
    assert_healthy(tag, &gwb);
}

/// (b) start_action = "trap": the first packet triggers the IKE SA, then pings pass as
/// ESP. After `down`, the trap is still there: traffic brings up a new IKE SA.
#[test]
fn trap_triggers_sa() {
    let tag = "poltrap";
    if !prerequisites(tag) {
        return;
    }
    let topo = Topology::plain(tag);
    let (gwa, gwb) = start_pair(&topo, "trap");
    let cap = Capture::start(&topo, &topo.ga, GA_OUT_IF, "outside");
    assert!(
        gwa.ike_sas().unwrap().is_empty(),
        "[{tag}] SA before any traffic"
    );
    // the trigger (its packets are dropped while the SA is negotiated)
    let _ = ping_fails(&topo.ha, HB_IP);
    gwa.wait_for_sa(CONN, T * 3)
        .unwrap_or_else(|e| panic!("[{tag}] trap did not establish the SA: {e}"));
    gwb.wait_for_sa(CONN, T * 3)
        .unwrap_or_else(|e| panic!("[{tag}] {e}"));
    let log = gwa.log();
    assert!(
        log.contains(&format!("IKE_SA {CONN}[1] established between")),
        "[{tag}] gwA log lacks `IKE_SA {CONN}[1] established between`"
    );
    let c = gwa.counters().unwrap();
    assert!(
        counter(&c, "acquires") >= 1 && counter(&c, "no_sa") >= 1,
        "[{tag}] trigger not counted (want acquires >= 1, no_sa >= 1): {c:?}"
    );
    wait_ping(&topo.ha, HB_IP, T * 2).unwrap_or_else(|e| panic!("[{tag}] {e}"));
    ping(&topo.ha, HB_IP).unwrap_or_else(|e| panic!("[{tag}] {e}"));
    ping(&topo.hb, HA_IP).unwrap_or_else(|e| panic!("[{tag}] {e}"));

    // down: the SA goes, the trap stays and re-establishes on the next packet
    gwa.down(CONN).unwrap_or_else(|e| panic!("[{tag}] {e}"));
    gwa.wait_no_sa(T * 2)
        .unwrap_or_else(|e| panic!("[{tag}] {e}"));
    gwb.wait_no_sa(T * 2)
        .unwrap_or_else(|e| panic!("[{tag}] {e}"));
    let acq = counter(&gwa.counters().unwrap(), "acquires");
    wait_ping(&topo.ha, HB_IP, T * 3).unwrap_or_else(|e| panic!("[{tag}] trap after down: {e}"));
    gwa.wait_for_sa(CONN, T)
        .unwrap_or_else(|e| panic!("[{tag}] {e}"));
    assert!(
        counter(&gwa.counters().unwrap(), "acquires") > acq,
        "[{tag}] no new acquire after down"
    );
    assert!(
        gwa.log()
            .contains(&format!("IKE_SA {CONN}[2] established between")),
        "[{tag}] gwA log lacks the second IKE SA"
    );
    let esp = finish_capture(tag, &topo, &cap);
    assert!(
        esp >= 12,
        "[{tag}] only {esp} ESP packets:\n{}",
        cap.summary(30)
    );
    assert_healthy(tag, &gwa);
    assert_healthy(tag, &gwb);
}

/// (c) start_action = "none", `up`, traffic, `down`: afterwards pings are dropped again
/// (no_sa counted on gwA) and nothing leaves in clear.
#[test]
fn down_drops_again() {
    let tag = "poldown";
    if !prerequisites(tag) {
        return;
    }
    let topo = Topology::plain(tag);
    let (gwa, gwb) = start_pair(&topo, "none");
    gwa.up(CONN).unwrap_or_else(|e| panic!("[{tag}] {e}"));
    gwb.wait_for_sa(CONN, T * 3)
        .unwrap_or_else(|e| panic!("[{tag}] {e}"));
    wait_ping(&topo.ha, HB_IP, T * 2).unwrap_or_else(|e| panic!("[{tag}] {e}"));
    gwa.down(CONN).unwrap_or_else(|e| panic!("[{tag}] {e}"));
    gwa.wait_no_sa(T * 2)
        .unwrap_or_else(|e| panic!("[{tag}] {e}"));
    gwb.wait_no_sa(T * 2)
        .unwrap_or_else(|e| panic!("[{tag}] {e}"));

    let cap = Capture::start(&topo, &topo.ga, GA_OUT_IF, "outside");
    let before_a = counter(&gwa.counters().unwrap(), "no_sa");
    let before_b = counter(&gwb.counters().unwrap(), "no_sa");
    assert!(
        ping_fails(&topo.ha, HB_IP),
        "[{tag}] hostA still reaches hostB after `ferroswan down`"
    );
    wait_counter_above(&gwa, "no_sa", before_a, T)
        .unwrap_or_else(|e| panic!("[{tag}] drops after down not counted: {e}"));
    assert!(
        ping_fails(&topo.hb, HA_IP),
        "[{tag}] hostB still reaches hostA after `ferroswan down`"
    );
    wait_counter_above(&gwb, "no_sa", before_b, T)
        .unwrap_or_else(|e| panic!("[{tag}] drops after down not counted on gwB: {e}"));
    let esp = finish_capture(tag, &topo, &cap);
    assert_eq!(esp, 0, "[{tag}] ESP after down?");
    assert_healthy(tag, &gwa);
    assert_healthy(tag, &gwb);
}
