//! IPv6: IPv6 inner traffic over an IPv4 outer tunnel, and IPv4 + IPv6 inner traffic over
//! an IPv6 outer tunnel (gateways 2001:db8::1 / ::2), ferroswan <-> ferroswan and
//! ferroswan <-> strongSwan. Hosts get fd01::10 (behind fd01::1) and fd02::10 (behind
//! fd02::1) next to their IPv4 addresses; one CHILD_SA carries both families.
//! Prerequisites and cleanup as in tests/interop.rs.

use fs_testbed::*;
use std::time::{Duration, Instant};
use Impl::{Ferroswan as FS, StrongSwan as SS};

const T: Duration = Duration::from_secs(5);
const GCM: &str = "aes256gcm16";

fn params(outer_v6: bool) -> (GwParams, GwParams) {
    let mut a = GwParams::a(GCM);
    let mut b = GwParams::b(GCM);
    if outer_v6 {
        a.local_addr = GA_OUT6.into();
        a.remote_addr = GB_OUT6.into();
        b.local_addr = GB_OUT6.into();
        b.remote_addr = GA_OUT6.into();
    }
    // for strongSwan's template (comma list); ferroswan gets the lists via FsOpts
    a.local_ts = format!("{NET_A},{NET_A6}");
    a.remote_ts = format!("{NET_B},{NET_B6}");
    b.local_ts = format!("{NET_B},{NET_B6}");
    b.remote_ts = format!("{NET_A},{NET_A6}");
    (a, b)
}

fn start(kind: Impl, topo: &Topology, ns: &str, name: &str, p: &GwParams) -> Gw {
    match kind {
        Impl::StrongSwan => Gw::Ss(StrongSwan::start(topo, ns, name, p)),
        Impl::Ferroswan => {
            let o = FsOpts {
                local_ts: p.local_ts.split(',').map(String::from).collect(),
                remote_ts: p.remote_ts.split(',').map(String::from).collect(),
                ..Default::default()
            };
            Gw::Fs(Ferroswan::start_with_config(
                topo,
                ns,
                name,
                &fs_config(p, &o),
            ))
        }
    }
}

/// gwA (`a`, initiator) <-> gwB (`b`); `outer_v6`: the IKE/ESP addresses are IPv6.
fn dual_stack(tag: &str, a: Impl, b: Impl, outer_v6: bool) {
    if !prerequisites(tag) {
        return;
    }
    let topo = Topology::new(tag);
    enable_ipv6(&topo, outer_v6);
    let (pa, pb) = params(outer_v6);
    let gwb = start(b, &topo, &topo.gb, "gwB", &pb);
    let gwa = start(a, &topo, &topo.ga, "gwA", &pa);
    let t0 = Instant::now();
    gwa.initiate()
        .unwrap_or_else(|e| panic!("[{tag}] tunnel setup failed: {e}"));
    gwa.wait_established(T * 3)
        .unwrap_or_else(|e| panic!("[{tag}] {e}"));
    gwb.wait_established(T * 3)
        .unwrap_or_else(|e| panic!("[{tag}] {e}"));
    eprintln!("[{tag}] established in {:?}", t0.elapsed());
    if let Gw::Fs(f) = &gwa {
        let log = f.log();
        let want = if outer_v6 {
            format!("established between {GA_OUT6}")
        } else {
            format!("established between {GA_OUT}")
        };
        assert!(log.contains(&want), "[{tag}] gwA log lacks `{want}`");
        // both families negotiated in the CHILD_SA
        assert!(
            log.contains(NET_A6) && log.contains(NET_B6),
            "[{tag}] gwA's CHILD_SA lacks the IPv6 selectors:\n{}",
            log.lines()
                .filter(|l| l.contains("CHILD_SA"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    let cap = Capture::start(&topo, &topo.ga, GA_OUT_IF, "outside");
    wait_ping(&topo.ha, HB_IP6, T * 2).unwrap_or_else(|e| panic!("[{tag}] IPv6 inner: {e}"));
    ping(&topo.ha, HB_IP6).unwrap_or_else(|e| panic!("[{tag}] {e}"));
    ping(&topo.hb, HA_IP6).unwrap_or_else(|e| panic!("[{tag}] {e}"));
    wait_ping(&topo.ha, HB_IP, T * 2).unwrap_or_else(|e| panic!("[{tag}] IPv4 inner: {e}"));
    ping(&topo.hb, HA_IP).unwrap_or_else(|e| panic!("[{tag}] {e}"));
    tcp_transfer(&topo.ha, &topo.hb, HB_IP6, 5006, 1 << 20, T * 8)
        .unwrap_or_else(|e| panic!("[{tag}] TCP over IPv6 inner: {e}"));
    tcp_transfer(&topo.hb, &topo.ha, HA_IP, 5004, 256 << 10, T * 8)
        .unwrap_or_else(|e| panic!("[{tag}] TCP over IPv4 inner: {e}"));
    let sync_dst = if outer_v6 { GA_OUT6 } else { GA_OUT };
    capture_sync(&cap, &topo.gb, sync_dst);
    cap.stop();

    let clear = cap.count("ip.addr == 192.168.0.0/16 || ipv6.addr == fd00::/8");
    let esp = cap.count("esp");
    let esp_outer = if outer_v6 {
        cap.count("ipv6 && esp")
    } else {
        cap.count("ip && esp")
    };
    eprintln!("[{tag}] outside link: {esp} ESP ({esp_outer} with the expected outer family), {clear} cleartext");
    assert_eq!(
        clear,
        0,
        "[{tag}] private traffic in clear on the outside link:\n{}",
        cap.summary(30)
    );
    assert!(
        esp_outer >= 100 && esp_outer == esp,
        "[{tag}] {esp} ESP packets, {esp_outer} with the expected outer family:\n{}",
        cap.summary(30)
    );
    gwa.assert_traffic_counted();
    gwb.assert_traffic_counted();
    for gw in [&gwa, &gwb] {
        if let Gw::Fs(f) = gw {
            assert_healthy(tag, f);
        }
    }
    eprintln!("[{tag}] OK in {:?}", t0.elapsed());
}

#[test]
fn fs_to_fs_ipv6_inner_ipv4_outer() {
    dual_stack("v6in", FS, FS, false);
}

#[test]
fn fs_to_fs_ipv6_outer() {
    dual_stack("v6out", FS, FS, true);
}

#[test]
fn fs_to_ss_ipv6_inner_ipv4_outer() {
    dual_stack("v6inss", FS, SS, false);
}

#[test]
fn ss_to_fs_ipv6_outer() {
    dual_stack("v6outsf", SS, FS, true);
}
