//! Tunnel shutdown on SIGTERM: ferroswan sends Delete for its SAs, the peer removes them at
//! once (well before any DPD could notice), and the daemon exits 0 with its TUN and routes gone.
//! Needs root, strongSwan and tshark (see scripts/install-deps.sh); SKIPs without them unless CI.

use fs_testbed::*;
use std::time::{Duration, Instant};

/// ferroswan initiator (gwA) <-> strongSwan responder (gwB); SIGTERM to ferroswan.
#[test]
fn sigterm_deletes_sas_and_exits_0() {
    let tag = "sigterm";
    if !prerequisites(tag) {
        return;
    }
    let topo = Topology::new(tag);
    let ss = StrongSwan::start(&topo, &topo.gb, "gwB", &GwParams::b("aes256gcm16"));
    let fs = Ferroswan::start(&topo, &topo.ga, "gwA", &GwParams::a("aes256gcm16"));
    fs.up(CONN).unwrap_or_else(|e| panic!("[{tag}] {e}"));
    ss.wait_for_sa(Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("[{tag}] {e}"));
    wait_ping(&topo.ha, HB_IP, Duration::from_secs(10)).unwrap_or_else(|e| panic!("[{tag}] {e}"));
    let routes = ns_must(&topo.ga, &["ip", "route", "show"]);
    assert!(
        routes.contains(NET_B) && routes.contains("fs0"),
        "[{tag}] no route for {NET_B} via the TUN while the tunnel is up:\n{routes}"
    );

    let t0 = Instant::now();
    let status = fs
        .stop()
        .unwrap_or_else(|| panic!("[{tag}] ferroswan was not running"));
    let took = t0.elapsed();
    assert!(
        status.success(),
        "[{tag}] ferroswan exited with {status} after SIGTERM"
    );
    assert!(
        took < Duration::from_secs(5),
        "[{tag}] ferroswan took {took:?} to exit after SIGTERM"
    );
    // strongSwan runs without DPD here: the SA disappearing proves it got our Delete.
    ss.wait_no_sa(Duration::from_secs(5)).unwrap_or_else(|e| {
        panic!("[{tag}] strongSwan kept its SA after ferroswan's SIGTERM: {e}")
    });
    assert!(
        ss.log().contains("received DELETE for IKE_SA"),
        "[{tag}] strongSwan log shows no DELETE from ferroswan"
    );
    let routes = ns_must(&topo.ga, &["ip", "route", "show"]);
    assert!(
        !routes.contains("fs0"),
        "[{tag}] routes via the TUN left behind after exit:\n{routes}"
    );
    let links = ns_must(&topo.ga, &["ip", "link", "show"]);
    assert!(
        !links.contains("fs0"),
        "[{tag}] TUN device left behind after exit:\n{links}"
    );
    eprintln!("[{tag}] exit 0 in {took:?}, peer SA deleted");
}
