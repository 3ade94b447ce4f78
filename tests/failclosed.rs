//! Fail closed across the daemon's whole life (issue 9): with a default route towards the
//! "Internet" on both gateways (the `plain` topology), hostA pings hostB over IPv4 and IPv6
//! every 20 ms while ferroswan on gwA is, in turn, up; SIGKILLed; restarted; SIGTERMed;
//! restarted; `down`; up again; and the peer (gwB) is SIGKILLed. The capture on gwA's outside
//! link must show no packet with an inner (192.168.x / fd0x::) address in clear in any of
//! those phases, and ESP after each restart. A last phase lifts the block with
//! `ferroswan unblock` while no daemon runs: then the same pings *must* show up in clear,
//! which proves that the capture and its filter would see a leak.
//! Needs root, tcpdump, tshark, nft (scripts/install-deps.sh); SKIPs without them unless CI.

use fs_testbed::*;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const GCM: &str = "aes256gcm16";
/// Inner addresses of both families, as a tshark display filter.
const INNER: &str = "(ip.addr == 192.168.0.0/16 or ipv6.addr == fd00::/8)";

fn epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn params() -> (GwParams, GwParams, FsOpts, FsOpts) {
    let a = GwParams::a(GCM);
    let b = GwParams::b(GCM);
    let oa = FsOpts {
        start_action: "start".into(),
        local_ts: vec![NET_A.into(), NET_A6.into()],
        remote_ts: vec![NET_B.into(), NET_B6.into()],
        ..Default::default()
    };
    let ob = FsOpts {
        local_ts: vec![NET_B.into(), NET_B6.into()],
        remote_ts: vec![NET_A.into(), NET_A6.into()],
        ..Default::default()
    };
    (a, b, oa, ob)
}

/// gwA's daemon, (re)started from the same config; waits for its SA and for pings through it.
fn start_a(tag: &str, topo: &Topology, cfg: &str) -> Ferroswan {
    let fs = Ferroswan::start_with_config(topo, &topo.ga, "gwA", cfg);
    fs.wait_for_sa(CONN, Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("[{tag}] {e}"));
    for dst in [HB_IP, HB_IP6] {
        wait_ping(&topo.ha, dst, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("[{tag}] ping {dst} after start: {e}"));
    }
    fs
}

/// Packets the fail-closed table in `ns` dropped (None: no table).
fn table_drops(ns: &str) -> Option<u64> {
    in_ns(ns, || fs_dataplane::failclosed::dropped_packets("fs0"))
        .unwrap_or_else(|e| panic!("nft in {ns}: {e}"))
}

fn nft_tables(ns: &str) -> String {
    ns_must(ns, &["nft", "list", "tables"])
}

#[test]
fn no_cleartext_when_the_daemon_stops_crashes_or_restarts() {
    let tag = "failclosed";
    if !prerequisites(tag) {
        return;
    }
    let topo = Topology::plain(tag);
    enable_ipv6(&topo, true);
    ns_must(
        &topo.ga,
        &[
            "ip", "-6", "route", "add", "default", "via", GB_OUT6, "dev", "ga-out",
        ],
    );
    ns_must(
        &topo.gb,
        &[
            "ip", "-6", "route", "add", "default", "via", GA_OUT6, "dev", "gb-out",
        ],
    );
    let (a, b, oa, ob) = params();
    let cfg_a = fs_config(&a, &oa);
    let gwb = Ferroswan::start_with_config(&topo, &topo.gb, "gwB", &fs_config(&b, &ob));
    let cap = Capture::start(&topo, &topo.ga, GA_OUT_IF, "outside");
    let mut gwa = start_a(tag, &topo, &cfg_a);
    for dst in [HB_IP, HB_IP6] {
        let mut c = ns_cmd(&topo.ha, "ping");
        c.args(["-n", "-q", "-i", "0.02", dst])
            .stdout(std::process::Stdio::null());
        topo.spawn(&format!("ping {dst}"), &mut c, libc::SIGINT);
    }
    let settle = || std::thread::sleep(Duration::from_millis(1500));
    // (name, start epoch, cleartext allowed)
    let mut phases: Vec<(&str, f64, bool)> = vec![("tunnel up", epoch(), false)];
    settle();

    phases.push(("SIGKILL gwA", epoch(), false));
    gwa.kill();
    settle();
    let drops = table_drops(&topo.ga).unwrap_or_else(|| {
        panic!(
            "[{tag}] no fail-closed table after SIGKILL:\n{}",
            nft_tables(&topo.ga)
        )
    });
    assert!(
        drops > 0,
        "[{tag}] the fail-closed table dropped nothing after SIGKILL (pings go elsewhere?)"
    );

    phases.push(("restart", epoch(), false));
    gwa = start_a(tag, &topo, &cfg_a);
    let tables = nft_tables(&topo.ga);
    assert_eq!(
        tables.matches("ferroswan_fs0").count(),
        1,
        "[{tag}] the table left by the killed daemon is not reused:\n{tables}"
    );
    settle();

    phases.push(("SIGTERM gwA", epoch(), false));
    let st = gwa.stop().expect("gwA running");
    assert!(st.success(), "[{tag}] exit after SIGTERM: {st}");
    settle();

    phases.push(("restart 2", epoch(), false));
    gwa = start_a(tag, &topo, &cfg_a);
    settle();

    phases.push(("down", epoch(), false));
    gwa.down(CONN)
        .unwrap_or_else(|e| panic!("[{tag}] down: {e}"));
    settle();

    phases.push(("up again", epoch(), false));
    gwa.up(CONN).unwrap_or_else(|e| panic!("[{tag}] up: {e}"));
    wait_ping(&topo.ha, HB_IP, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("[{tag}] ping after up: {e}"));
    settle();

    phases.push(("peer SIGKILLed", epoch(), false));
    gwb.kill();
    settle();
    assert_healthy(tag, &gwa);

    // Negative control: no daemon and no table, the pings take the default route in clear.
    let st = gwa.stop().expect("gwA running");
    assert!(st.success(), "[{tag}] exit after SIGTERM: {st}");
    phases.push(("unblocked, no daemon", epoch(), true));
    let mut c = ns_cmd(&topo.ga, ferroswan_bin());
    c.args(["unblock", "--tun", "fs0"]);
    let out = must(&mut c);
    assert!(
        out.contains("removed nftables table"),
        "[{tag}] unblock: {out}"
    );
    assert!(
        table_drops(&topo.ga).is_none(),
        "[{tag}] table still there after unblock"
    );
    settle();
    phases.push(("end", epoch(), true));

    capture_sync(&cap, &topo.gb, GA_OUT);
    cap.stop();
    let mut report = Vec::new();
    let mut leaks = Vec::new();
    for w in phases.windows(2) {
        let (name, t0, allowed) = w[0];
        let t1 = w[1].1;
        let span = format!("frame.time_epoch >= {t0:.6} and frame.time_epoch < {t1:.6}");
        let clear = cap.count(&format!("{INNER} and {span}"));
        let clear6 = cap.count(&format!("ipv6.addr == fd00::/8 and {span}"));
        let esp = cap.count(&format!("(esp or udp.port == 4500) and {span}"));
        report.push(format!(
            "  {name:<22} {:>5.2} s: {clear} in clear ({clear6} IPv6), {esp} ESP",
            t1 - t0
        ));
        if allowed {
            assert!(
                clear > 0 && clear6 > 0,
                "[{tag}] phase {name:?}: the capture saw no cleartext although nothing blocks \
                 it (the check cannot see a leak?):\n{}",
                report.join("\n")
            );
        } else if clear > 0 {
            leaks.push(name);
        }
        if matches!(name, "tunnel up" | "restart" | "restart 2" | "up again") {
            assert!(
                esp > 0,
                "[{tag}] phase {name:?}: no ESP\n{}",
                report.join("\n")
            );
        }
    }
    eprintln!("[{tag}] per phase:\n{}", report.join("\n"));
    assert!(
        leaks.is_empty(),
        "[{tag}] cleartext on the outside link in phase(s) {leaks:?}:\n{}\n{}",
        report.join("\n"),
        cap.summary(30)
    );
}
