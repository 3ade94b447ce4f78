//! MTU handling, ferroswan <-> ferroswan in network namespaces, over an outside link of MTU
//! 1400: with `tun_mtu` left at `"auto"` both gateways derive 1400 - (IPv4 20 + UDP 8 + ESP
//! AES-GCM 37) = 1335, the routes towards the tunnel carry `mtu 1335`, a 1 MiB TCP transfer
//! between the hosts passes with no outer IP fragment and no outer packet above 1400 bytes,
//! and hostA's DF pings are refused above 1335 (ICMP frag-needed) and pass at 1335.
//! Prerequisites and cleanup as in tests/interop.rs.

use fs_testbed::*;
use std::time::Duration;

const GCM: &str = "aes256gcm16";
const LINK_MTU: u32 = 1400;
/// 1400 - 20 (IPv4) - 8 (UDP) - 8 (ESP) - 8 (IV) - 3 (pad) - 2 (trailer) - 16 (ICV)
const TUNNEL_MTU: u32 = 1335;
const T: Duration = Duration::from_secs(15);

fn auto_config(p: &GwParams) -> String {
    let c = fs_config(p, &FsOpts::default());
    assert!(c.contains("tun_mtu = 1400\n"));
    c.replace("tun_mtu = 1400\n", "")
}

/// `ping -M do -s SIZE` from `ns` to hostB.
fn ping_df(ns: &str, size: u32) -> std::process::Output {
    let mut c = ns_cmd(ns, "ping");
    c.args(["-n", "-M", "do", "-c", "2", "-i", "0.3", "-W", "2", "-s"])
        .arg(size.to_string())
        .arg(HB_IP);
    run_timeout(&mut c, Duration::from_secs(15))
}

#[test]
fn auto_mtu_no_outer_fragments() {
    let tag = "mtu";
    if !prerequisites(tag) {
        return;
    }
    let topo = Topology::new(tag);
    topo.set_outside_mtu(LINK_MTU);

    let gwb = Ferroswan::start_with_config(&topo, &topo.gb, "gwB", &auto_config(&GwParams::b(GCM)));
    let gwa = Ferroswan::start_with_config(&topo, &topo.ga, "gwA", &auto_config(&GwParams::a(GCM)));
    for g in [&gwa, &gwb] {
        let st = g.status_json().unwrap();
        assert_eq!(
            st["tun_mtu"].as_u64(),
            Some(u64::from(TUNNEL_MTU)),
            "{}: status {st}",
            g.name
        );
        assert!(
            g.log().contains(&format!(
                "tunnel MTU {TUNNEL_MTU} (auto: path MTU {LINK_MTU}"
            )),
            "{}: log lacks the MTU derivation:\n{}",
            g.name,
            g.log()
        );
    }
    let tun = ns_must(&topo.ga, &["ip", "-o", "link", "show", "dev", "fs0"]);
    assert!(tun.contains(&format!("mtu {TUNNEL_MTU} ")), "{tun}");

    let cap = Capture::start(&topo, &topo.ga, "ga-out", "outside");
    gwa.up(CONN)
        .unwrap_or_else(|e| panic!("up: {e}\n{}", topo.logs(40)));
    gwa.wait_for_sa(CONN, T).unwrap();
    gwb.wait_for_sa(CONN, T).unwrap();
    wait_ping(&topo.ha, HB_IP, T).unwrap_or_else(|e| panic!("{e}\n{}", topo.logs(40)));

    // per-route MTU from the negotiated suite (AES-GCM) and encap (none: 8 bytes more room,
    // but never above the TUN MTU)
    for (ns, net) in [(&topo.ga, NET_B), (&topo.gb, NET_A)] {
        let r = ns_must(ns, &["ip", "-o", "route", "show", net]);
        assert!(r.contains(&format!("mtu {TUNNEL_MTU}")), "{ns}: {r}");
    }

    tcp_transfer(
        &topo.ha,
        &topo.hb,
        HB_IP,
        5201,
        1 << 20,
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("TCP transfer: {e}\n{}", topo.logs(40)));

    // one byte too many with DF: refused with the tunnel MTU
    let o = ping_df(&topo.ha, TUNNEL_MTU - 28 + 1);
    let out = text(&o);
    assert!(!o.status.success(), "oversized DF ping passed:\n{out}");
    let lower = out.to_lowercase();
    assert!(
        (lower.contains("frag needed") || lower.contains("message too long"))
            && out.contains(&TUNNEL_MTU.to_string()),
        "no frag-needed with mtu {TUNNEL_MTU}:\n{out}"
    );
    // exactly the tunnel MTU: passes
    let o = ping_df(&topo.ha, TUNNEL_MTU - 28);
    assert!(
        o.status.success(),
        "DF ping of {TUNNEL_MTU} bytes failed:\n{}",
        text(&o)
    );

    cap.stop();
    let esp = cap.count("esp");
    assert!(
        esp > 700,
        "only {esp} ESP packets captured:\n{}",
        cap.summary(20)
    );
    let frags = cap.count("ip.flags.mf == 1 || ip.frag_offset > 0");
    assert_eq!(
        frags,
        0,
        "outer IP fragments on the wire:\n{}",
        cap.summary(40)
    );
    let big = cap.count(&format!("ip.len > {LINK_MTU}"));
    assert_eq!(big, 0, "outer packets above {LINK_MTU} bytes");
    let full = cap.count(&format!("esp && ip.len > {}", LINK_MTU - 8));
    eprintln!("[{tag}] {esp} ESP packets, {full} within 8 bytes of the link MTU, no fragments");
    gwa.assert_alive();
    gwb.assert_alive();
}
