//! Per-peer limits and small protocol items of issue 9 on a live ferroswan <-> ferroswan
//! tunnel: `[limits] max_children_per_ike_sa` (NO_ADDITIONAL_SAS), INVALID_MAJOR_VERSION
//! answers, and IKE datagrams from UDP source port 0 (dropped and counted). Hand-made
//! datagrams are sent from gwA's namespace to gwB only. Prerequisites and cleanup as in
//! tests/interop.rs; namespace tag "lim".

use fs_testbed::*;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

const T: Duration = Duration::from_secs(5);

/// gwB holds at most one CHILD_SA per IKE SA; gwA's connection has two children, so its
/// second is refused with NO_ADDITIONAL_SAS while the first carries traffic. Then gwB gets a
/// version 3.0 IKE_SA_INIT request (answered with INVALID_MAJOR_VERSION) and IKE datagrams
/// from UDP source port 0 (dropped and counted, no answer, no log line each).
#[test]
fn child_cap_major_version_and_port_zero() {
    let tag = "lim";
    if !prerequisites(tag) {
        return;
    }
    let topo = Topology::new(tag);
    let gwb = Ferroswan::start_opts(
        &topo,
        &topo.gb,
        "gwB",
        &GwParams::b("aes256gcm16"),
        &[("FS_CONN_EXTRA", "[limits]\nmax_children_per_ike_sa = 1")],
    );
    let second = format!(
        "\n  [connections.s2s.children.net2]\n  local_ts = [\"{NET_A}\"]\n  \
         remote_ts = [\"{NET_B}\"]\n  esp_proposals = [\"aes256gcm16\"]\n"
    );
    let gwa = Ferroswan::start_opts(
        &topo,
        &topo.ga,
        "gwA",
        &GwParams::a("aes256gcm16"),
        &[("FS_CHILD_EXTRA", &second)],
    );
    // `up` waits for both children: the second is refused by gwB's cap.
    let e = gwa
        .up(CONN)
        .expect_err("the second CHILD_SA must be refused");
    assert!(e.contains("NO_ADDITIONAL_SAS"), "[{tag}] {e}");
    let sa = gwb
        .wait_for_sa(CONN, T)
        .unwrap_or_else(|e| panic!("[{tag}] {e}"));
    assert_eq!(children(&sa).len(), 1, "[{tag}] gwB children: {sa}");
    let c = gwb.counters().unwrap();
    assert_eq!(counter(&c, "child_limit_refused"), 1, "[{tag}] {c:?}");
    wait_ping(&topo.ha, HB_IP, T * 2).unwrap_or_else(|e| panic!("[{tag}] {e}"));

    // IKE major version 3: an unencrypted INVALID_MAJOR_VERSION response, version 2.0, with
    // the request's SPIs and message ID, response flag set.
    let dst: SocketAddr = format!("{GB_OUT}:500").parse().unwrap();
    let mut req = ike_init_with_critical(0x7172_7374_7576_7778, 200);
    req[17] = 0x30;
    let replies = udp_exchange(&topo.ga, dst, &req, Duration::from_secs(2));
    assert_eq!(replies.len(), 1, "[{tag}] replies {replies:?}");
    let r = &replies[0];
    assert_eq!(r[17], 0x20, "[{tag}] version of the answer");
    assert_eq!(r[..16], req[..16], "[{tag}] SPIs copied");
    assert_eq!(r[18], EXCH_IKE_SA_INIT);
    assert_eq!(r[19], 0x20, "[{tag}] response flag, from the responder");
    assert_eq!(r[20..24], req[20..24], "[{tag}] message ID copied");
    let notifies = notify_types(r);
    assert_eq!(notifies, vec![(5, vec![])], "[{tag}] INVALID_MAJOR_VERSION");
    let c = gwb.counters().unwrap();
    assert_eq!(
        counter(&c, "invalid_major_version_sent"),
        1,
        "[{tag}] {c:?}"
    );

    // UDP source port 0 (a raw UDP packet; checksum 0 = none, allowed over IPv4).
    let gb: IpAddr = GB_OUT.parse().unwrap();
    let init = ike_init_with_critical(0x1112_1314_1516_1718, 200);
    let mut udp = Vec::new();
    udp.extend_from_slice(&0u16.to_be_bytes()); // source port 0
    udp.extend_from_slice(&500u16.to_be_bytes());
    udp.extend_from_slice(&((8 + init.len()) as u16).to_be_bytes());
    udp.extend_from_slice(&0u16.to_be_bytes());
    udp.extend_from_slice(&init);
    let warns_before = gwb.log().matches("WARN").count();
    for _ in 0..50 {
        raw_ip_send(&topo.ga, libc::IPPROTO_UDP, gb, &udp);
    }
    let n = poll(T, || {
        let v = counter(&gwb.counters().ok()?, "dropped_source_port_zero");
        (v >= 50).then_some(v)
    });
    assert_eq!(n, Some(50), "[{tag}] {:?}", gwb.counters());
    let c = gwb.counters().unwrap();
    eprintln!(
        "[{tag}] gwB: child_limit_refused {}, invalid_major_version_sent {}, \
         dropped_source_port_zero {}",
        counter(&c, "child_limit_refused"),
        counter(&c, "invalid_major_version_sent"),
        counter(&c, "dropped_source_port_zero")
    );
    assert_eq!(
        gwb.log().matches("WARN").count(),
        warns_before,
        "[{tag}] warnings for port 0 datagrams"
    );
    assert_eq!(gwb.ike_sas().unwrap().len(), 1, "[{tag}] no new IKE SA");
    assert_healthy(tag, &gwa);
    assert_healthy(tag, &gwb);
    ping(&topo.ha, HB_IP).unwrap_or_else(|e| panic!("[{tag}] {e}"));
    eprintln!("[{tag}] OK");
}
