//! NAT traversal over time, in network namespaces: ferroswan gwA behind a NAPT (an nftables
//! masquerade of gwA's own UDP 500/4500 traffic onto a port range, in gwA's namespace), with
//! strongSwan or ferroswan as gwB.
//! - the tunnel comes up over UDP 4500 (NAT detected, ESP in UDP), traffic flows;
//! - when idle, gwA sends a NAT-keepalive (1-byte 0xFF UDP datagram, RFC 3948 4) every
//!   `nat_keepalive` (3 s here), seen on gwB's wire with tcpdump/tshark;
//! - NAT rebinding: the masquerade switches to another port range and the conntrack table is
//!   flushed, so gwA's datagrams suddenly come from a new port. A ferroswan gwB follows the
//!   first authenticated ESP packet from the new mapping at once (outbound ESP re-targeted,
//!   then its liveness check's answer moves the IKE SA; well under a second while pinging,
//!   asserted < 3 s); strongSwan follows its kernel's mapping report or, at the latest, gwA's
//!   next authenticated IKE message (a DPD after `dpd_delay` of silence, RFC 7296 2.23).
//!   Pings resume; loss is bounded and the recovery time is printed.
//!
//! Prerequisites: those of tests/interop.rs plus `nft` and `conntrack`
//! (scripts/install-deps.sh installs both).

use fs_testbed::*;
use std::process::Command;
use std::time::{Duration, Instant};

const GCM: &str = "aes256gcm16";
const KEEPALIVE_SECS: f64 = 3.0;
const DPD: &str = "6s";
/// Ports of the masquerade before and after the rebinding.
const RANGE_1: &str = "20000-20099";
const RANGE_2: &str = "21000-21099";

fn nat_prerequisites(tag: &str) -> bool {
    if !prerequisites(tag) {
        return false;
    }
    for tool in ["nft", "conntrack"] {
        if Command::new(tool).arg("--version").output().is_err() {
            let msg = format!("{tag}: missing {tool} (install with: sudo scripts/install-deps.sh)");
            if std::env::var_os("CI").is_some() {
                panic!("CI is set, refusing to skip: {msg}");
            }
            eprintln!("SKIP {msg}");
            return false;
        }
    }
    true
}

/// Masquerade gwA's IKE/NAT-T traffic leaving `ga-out` onto ports `range`.
fn set_nat(topo: &Topology, range: &str) {
    let ns = &topo.ga;
    let _ = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "delete", "table", "ip", "fsnat"])
        .output();
    let rules = format!(
        "table ip fsnat {{\n  chain post {{\n    type nat hook postrouting priority srcnat; policy accept;\n    oifname \"{GA_OUT_IF}\" udp sport {{ 500, 4500 }} masquerade to :{range}\n  }}\n}}\n"
    );
    let path = topo.dir.join(format!("nat-{range}.nft"));
    std::fs::write(&path, rules).unwrap();
    ns_must(ns, &["nft", "-f", path.to_str().unwrap()]);
}

/// The NAT "reboots" onto another port range: new rule, conntrack mappings flushed.
fn rebind(topo: &Topology, range: &str) {
    set_nat(topo, range);
    let _ = ns_cmd(&topo.ga, "conntrack").arg("-F").output();
}

fn fs_opts() -> Vec<(&'static str, String)> {
    vec![(
        "FS_CONN_EXTRA",
        format!("nat_keepalive = \"{KEEPALIVE_SECS}s\"\ndpd_delay = \"{DPD}\""),
    )]
}

/// Times (epoch seconds) of the UDP datagrams in `cap` matching `filter`.
fn times(cap: &Capture, filter: &str) -> Vec<f64> {
    let mut c = Command::new("tshark");
    c.arg("-n").arg("-r").arg(&cap.pcap).args([
        "-Y",
        filter,
        "-T",
        "fields",
        "-e",
        "frame.time_epoch",
    ]);
    let o = run_timeout(&mut c, Duration::from_secs(120));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn gaps(t: &[f64]) -> Vec<f64> {
    t.windows(2).map(|w| w[1] - w[0]).collect()
}

enum Peer {
    Ss(StrongSwan),
    Fs(Ferroswan),
}

impl Peer {
    /// gwB's view of gwA's address (IP:port) on its IKE SA.
    fn remote(&self) -> String {
        match self {
            Peer::Fs(f) => f
                .wait_for_sa(CONN, Duration::from_secs(5))
                .map(|sa| sa["remote"].as_str().unwrap_or("").to_string())
                .unwrap_or_default(),
            Peer::Ss(s) => {
                // "  local  'gw-b.example' @ 200.2.2.2[4500]\n  remote 'gw-a.example' @ 100.1.1.1[20001]"
                s.list_sas()
                    .lines()
                    .find(|l| l.trim_start().starts_with("remote "))
                    .and_then(|l| l.split('@').nth(1))
                    .map(|r| r.trim().replace('[', ":").replace(']', ""))
                    .unwrap_or_default()
            }
        }
    }
}

fn nat_scenario(tag: &str, peer_is_fs: bool) {
    if !nat_prerequisites(tag) {
        return;
    }
    let topo = Topology::new(tag);
    set_nat(&topo, RANGE_1);
    let opts = fs_opts();
    let opts: Vec<(&str, &str)> = opts.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let peer = if peer_is_fs {
        Peer::Fs(Ferroswan::start(&topo, &topo.gb, "gwB", &GwParams::b(GCM)))
    } else {
        Peer::Ss(StrongSwan::start(&topo, &topo.gb, "gwB", &GwParams::b(GCM)))
    };
    let fs = Ferroswan::start_opts(&topo, &topo.ga, "gwA", &GwParams::a(GCM), &opts);
    fs.up(CONN).unwrap_or_else(|e| panic!("[{tag}] {e}"));
    wait_ping(&topo.ha, HB_IP, Duration::from_secs(10)).unwrap_or_else(|e| panic!("[{tag}] {e}"));

    // Up over 4500 with NAT detected on gwA's side, ESP in UDP.
    let sa = fs.wait_for_sa(CONN, Duration::from_secs(5)).unwrap();
    assert_eq!(sa["nat_local"], true, "[{tag}] gwA behind NAT: {sa}");
    assert!(sa["local"].as_str().unwrap().ends_with(":4500"), "{sa}");
    assert!(sa["remote"].as_str().unwrap().ends_with(":4500"), "{sa}");
    assert!(children(&sa).iter().all(|c| c["encap"] == true), "{sa}");
    let before = peer.remote();
    let port = |r: &str| r.rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
    assert!(
        port(&before).is_some_and(|p| (20000..20100).contains(&p)),
        "[{tag}] gwB sees gwA at {before:?}"
    );
    ping(&topo.ha, HB_IP).unwrap_or_else(|e| panic!("[{tag}] {e}"));

    // Idle: keepalives on the wire every interval (nothing else flows but DPD).
    let cap = Capture::start(&topo, &topo.gb, "gb-out", &format!("{tag}-idle"));
    std::thread::sleep(Duration::from_secs(16));
    cap.stop();
    let from_a = format!("ip.src == {GA_OUT} && ip.dst == {GB_OUT} && udp.dstport == 4500");
    let ka = times(&cap, &format!("{from_a} && udp.length == 9"));
    let any = times(&cap, &from_a);
    let marker_ka = cap.count(&format!("{from_a} && udp.length == 13"));
    eprintln!(
        "[{tag}] idle 16 s: {} keepalives, gaps {:?}; all gwA->gwB gaps {:?}",
        ka.len(),
        gaps(&ka),
        gaps(&any)
    );
    assert!(
        ka.len() >= 3,
        "[{tag}] keepalives: {ka:?}\n{}",
        cap.summary(40)
    );
    assert_eq!(
        marker_ka, 0,
        "[{tag}] keepalive must not carry a non-ESP marker"
    );
    for g in gaps(&ka) {
        assert!(
            g >= KEEPALIVE_SECS - 0.3,
            "[{tag}] keepalives too close: {g}"
        );
    }
    for g in gaps(&any) {
        assert!(
            g <= KEEPALIVE_SECS + 1.0,
            "[{tag}] silence of {g} s towards gwB"
        );
    }
    let c = fs.counters().unwrap();
    assert!(
        c.get("nat_keepalives_sent").copied().unwrap_or(0) >= 3,
        "{c:?}"
    );
    if let Peer::Fs(b) = &peer {
        let cb = b.counters().unwrap();
        assert!(
            cb.get("nat_keepalives").copied().unwrap_or(0) >= 3,
            "{cb:?}"
        );
    }

    // Rebinding under traffic.
    let secs = 30u32;
    let pings = PingRun::start(
        &topo,
        &topo.ha,
        HB_IP,
        "0.1",
        secs * 10,
        &format!("{tag}-rebind"),
    );
    std::thread::sleep(Duration::from_secs(3));
    let t_rebind = Instant::now();
    rebind(&topo, RANGE_2);
    let moved = poll(Duration::from_secs(25), || {
        let r = peer.remote();
        port(&r)
            .is_some_and(|p| (21000..21100).contains(&p))
            .then_some(r)
    });
    let followed = t_rebind.elapsed();
    let r = pings.finish(Duration::from_secs(secs as u64 + 10)).unwrap();
    eprintln!(
        "[{tag}] rebinding: gwB followed to {moved:?} after {followed:?}; pings {}/{} lost, longest outage {:?} ({} in a row)",
        r.lost(),
        r.transmitted,
        r.max_gap,
        r.max_missing_run
    );
    assert!(
        moved.is_some(),
        "[{tag}] gwB never followed the new mapping ({})",
        peer.remote()
    );
    // Outage bounded by the DPD delay plus a retransmission and the 1 s activity poll.
    assert!(
        r.max_gap < Duration::from_secs(12),
        "[{tag}] outage {:?}",
        r.max_gap
    );
    assert!(r.max_missing_run <= 110, "[{tag}] {r:?}");
    assert!(r.received >= r.transmitted - 110, "[{tag}] {r:?}");
    ping(&topo.ha, HB_IP).unwrap_or_else(|e| panic!("[{tag}] after rebinding: {e}"));
    ping(&topo.hb, HA_IP).unwrap_or_else(|e| panic!("[{tag}] after rebinding, B->A: {e}"));
    if let Peer::Fs(b) = &peer {
        let cb = b.counters().unwrap();
        assert!(
            cb.get("peer_endpoint_changes").copied().unwrap_or(0) >= 1,
            "{cb:?}"
        );
        assert!(
            cb.get("peer_moves").copied().unwrap_or(0) >= 1,
            "[{tag}] the data plane reported the move: {cb:?}"
        );
        assert!(b.log().contains("NAT rebinding"), "[{tag}]");
        // Followed from authenticated ESP (gwA pings every 100 ms), not after dpd_delay;
        // margin for a loaded 2-core machine (status polling, 1 s activity poll).
        assert!(
            followed < Duration::from_secs(3),
            "[{tag}] gwB's IKE SA followed only after {followed:?}"
        );
        assert!(
            r.max_gap < Duration::from_secs(3),
            "[{tag}] outage {:?} after rebinding",
            r.max_gap
        );
    }
    fs.assert_alive();
}

#[test]
fn nat_ferroswan_behind_nat_to_strongswan() {
    nat_scenario("natss", false);
}

#[test]
fn nat_ferroswan_behind_nat_to_ferroswan() {
    nat_scenario("natfs", true);
}
