//! Interop tests in network namespaces: ferroswan <-> ferroswan, ferroswan <-> strongSwan
//! (both roles), strongSwan <-> strongSwan (harness smoke test), failure cases.
//! Need root, strongSwan (charon + swanctl), tcpdump and tshark: see scripts/install-deps.sh.
//! Without them the tests print SKIP and pass, unless CI is set (then they fail).
//! Each test has its own namespaces (`fs-<tag>-<pid>-*`), so they run in parallel.
//! `FS_TEST_KEEP=1` keeps /tmp/ferroswan-tests/<prefix>/ (configs, logs, pcaps).

use fs_testbed::*;
use std::time::Duration;
use Impl::{Ferroswan as FS, StrongSwan as SS};

const GCM: &str = "aes256gcm16";
const CHACHA: &str = "chacha20poly1305";
const CBC: &str = "aes256-sha256";

// ---- harness smoke tests: strongSwan on both gateways --------------------------------

#[test]
fn ss_to_ss() {
    site_to_site("ssss", SS, SS, GCM);
}

#[test]
fn ss_to_ss_wrong_psk() {
    wrong_psk("sspsk", SS, SS);
}

// ---- (a) ferroswan <-> ferroswan ------------------------------------------------------

#[test]
fn fs_to_fs_aes256gcm16() {
    site_to_site("ffgcm", FS, FS, GCM);
}

#[test]
fn fs_to_fs_chacha20poly1305() {
    site_to_site("ffcha", FS, FS, CHACHA);
}

#[test]
fn fs_to_fs_aes256_sha256() {
    site_to_site("ffcbc", FS, FS, CBC);
}

/// `encap = false` on both: RFC 7296 2.23 behaviour, raw ESP (IP protocol 50) without a NAT
/// (the default `"auto"` above negotiates ESP in UDP between two ferroswan peers).
#[test]
fn fs_to_fs_raw_esp_aes256gcm16() {
    site_to_site_opts(
        "ffraw",
        FS,
        FS,
        GCM,
        &[("FS_CONN_EXTRA", "encap = false")],
        Wire::Raw,
    );
}

#[test]
fn fs_to_fs_raw_esp_aes256_sha256() {
    site_to_site_opts(
        "ffrawcbc",
        FS,
        FS,
        CBC,
        &[("FS_CONN_EXTRA", "encap = false")],
        Wire::Raw,
    );
}

// ---- (b) ferroswan initiator (gwA) <-> strongSwan responder (gwB) --------------------

#[test]
fn fs_to_ss_aes256gcm16() {
    site_to_site("fsgcm", FS, SS, GCM);
}

#[test]
fn fs_to_ss_chacha20poly1305() {
    site_to_site("fscha", FS, SS, CHACHA);
}

#[test]
fn fs_to_ss_aes256_sha256() {
    site_to_site("fscbc", FS, SS, CBC);
}

// ---- (c) strongSwan initiator (gwA) <-> ferroswan responder (gwB) --------------------

#[test]
fn ss_to_fs_aes256gcm16() {
    site_to_site("sfgcm", SS, FS, GCM);
}

#[test]
fn ss_to_fs_chacha20poly1305() {
    site_to_site("sfcha", SS, FS, CHACHA);
}

#[test]
fn ss_to_fs_aes256_sha256() {
    site_to_site("sfcbc", SS, FS, CBC);
}

// ---- failures --------------------------------------------------------------------------

#[test]
fn fs_to_ss_wrong_psk() {
    wrong_psk("fspsk", FS, SS);
}

#[test]
fn ss_to_fs_wrong_psk() {
    wrong_psk("sfpsk", SS, FS);
}

#[test]
fn fs_to_ss_no_proposal() {
    no_proposal("fsnop", FS, SS);
}

#[test]
fn ss_to_fs_no_proposal() {
    no_proposal("sfnop", SS, FS);
}

// ---- teardown ---------------------------------------------------------------------------

/// `ferroswan down` deletes the SAs on both peers.
#[test]
fn fs_down_removes_sas() {
    let tag = "fsdown";
    if !prerequisites(tag) {
        return;
    }
    let topo = Topology::new(tag);
    let ss = StrongSwan::start(&topo, &topo.gb, "gwB", &GwParams::b(GCM));
    let fs = Ferroswan::start(&topo, &topo.ga, "gwA", &GwParams::a(GCM));
    fs.up(CONN).unwrap_or_else(|e| panic!("[{tag}] {e}"));
    fs.wait_for_sa(CONN, Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("[{tag}] {e}"));
    ss.wait_for_sa(Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("[{tag}] {e}"));
    wait_ping(&topo.ha, HB_IP, Duration::from_secs(10)).unwrap_or_else(|e| panic!("[{tag}] {e}"));

    fs.down(CONN).unwrap_or_else(|e| panic!("[{tag}] {e}"));
    ss.wait_no_sa(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("[{tag}] {e}"));
    fs.wait_no_sa(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("[{tag}] {e}"));
    assert!(
        fs.log()
            .lines()
            .any(|l| l.contains(&format!("IKE_SA {CONN}[")) && l.contains("deleted")),
        "[{tag}] ferroswan log lacks `IKE_SA {CONN}[..] deleted`"
    );
    assert!(
        ping(&topo.ha, HB_IP).is_err(),
        "[{tag}] hostA still reaches hostB after `ferroswan down`"
    );
}

// ---- harness self-checks ---------------------------------------------------------------

#[test]
fn ss_to_ss_no_proposal() {
    no_proposal("ssnop", SS, SS);
}

/// The wire check must see cleartext when there is no tunnel: on the "plain" topology
/// (gateways route the private nets to each other in clear) a ping is visible.
#[test]
fn harness_detects_cleartext() {
    let tag = "clear";
    if !prerequisites(tag) {
        return;
    }
    let topo = Topology::plain(tag);
    let cap = Capture::start(&topo, &topo.ga, GA_OUT_IF, "outside");
    ping(&topo.ha, HB_IP).unwrap_or_else(|e| panic!("[{tag}] plain forwarding: {e}"));
    tcp_transfer(
        &topo.ha,
        &topo.hb,
        HB_IP,
        5001,
        256 << 10,
        Duration::from_secs(20),
    )
    .unwrap_or_else(|e| panic!("[{tag}] {e}"));
    cap.stop();
    assert!(
        cap.count("ip.addr == 192.168.0.0/16") >= 6,
        "[{tag}] cleartext not detected:\n{}",
        cap.summary(20)
    );
    assert_eq!(cap.count("esp"), 0);
    // and without a tunnel the default topology does not forward between the sites
    drop(cap);
    drop(topo);
    let topo = Topology::new("noclear");
    assert!(
        ping(&topo.ha, HB_IP).is_err(),
        "[{tag}] private nets reachable without a tunnel"
    );
}
