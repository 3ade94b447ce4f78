//! IKE fragmentation (RFC 7383) interop in network namespaces: ferroswan <-> strongSwan in both
//! roles with a small `fragment_size` (400 on both sides) and IKE_AUTH messages made large with
//! extra traffic selectors, while IP fragments are dropped on the outside link (nftables, in
//! both gateways' namespaces, before defragmentation). The tunnel must come up, carry traffic,
//! and the capture must show SKF payloads (type 53) from both peers and no IP fragments.
//! Needs what tests/interop.rs needs, plus `nft` (scripts/install-deps.sh).

use fs_testbed::*;
use std::time::Duration;
use Impl::{Ferroswan as FS, StrongSwan as SS};

const GCM: &str = "aes256gcm16";
const FRAGMENT_SIZE: &str = "400";
/// Extra subnets per side: 10 selectors of 16 bytes in each of TSi/TSr.
const EXTRA: usize = 10;

fn extra_nets(site: u8) -> Vec<String> {
    (0..EXTRA).map(|i| format!("10.{site}.{i}.0/24")).collect()
}

/// `, "a", "b"` (ferroswan TOML list tail) / `,a,b` (swanctl list tail).
fn fs_list(nets: &[String]) -> String {
    nets.iter().map(|n| format!(", \"{n}\"")).collect()
}
fn ss_list(nets: &[String]) -> String {
    nets.iter().map(|n| format!(",{n}")).collect()
}

fn have_nft() -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].iter().map(std::path::PathBuf::from))
        .any(|d| d.join("nft").is_file())
}

/// Drop every IP fragment arriving in `ns` (prerouting, before conntrack defragmentation).
fn drop_ip_fragments(ns: &str) {
    ns_must(ns, &["nft", "add", "table", "ip", "fsfrag"]);
    ns_must(
        ns,
        &[
            "nft",
            "add",
            "chain",
            "ip",
            "fsfrag",
            "pre",
            "{",
            "type",
            "filter",
            "hook",
            "prerouting",
            "priority",
            "-450",
            ";",
            "policy",
            "accept",
            ";",
            "}",
        ],
    );
    ns_must(
        ns,
        &[
            "nft", "add", "rule", "ip", "fsfrag", "pre", "ip", "frag-off", "&", "0x3fff", "!=",
            "0", "counter", "drop",
        ],
    );
}

/// Packets the fragment-drop rule in `ns` dropped.
fn dropped_ip_fragments(ns: &str) -> u64 {
    let out = ns_must(ns, &["nft", "list", "chain", "ip", "fsfrag", "pre"]);
    out.split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no packet counter in the nft chain of {ns}:\n{out}"))
}

/// Template overrides for gateway `site` (1 = A, 2 = B) of kind `kind`.
fn opts(kind: Impl, site: u8) -> Vec<(&'static str, String)> {
    let (mine, theirs) = (extra_nets(site), extra_nets(3 - site));
    match kind {
        Impl::Ferroswan => vec![
            (
                "FS_CONN_EXTRA",
                format!("fragmentation = true\nfragment_size = {FRAGMENT_SIZE}"),
            ),
            ("FS_LOCAL_TS_EXTRA", fs_list(&mine)),
            ("FS_REMOTE_TS_EXTRA", fs_list(&theirs)),
        ],
        Impl::StrongSwan => vec![
            ("SS_CONN_EXTRA", "fragmentation = yes".to_string()),
            ("CHARON_EXTRA", format!("fragment_size = {FRAGMENT_SIZE}")),
            ("SS_LOCAL_TS_EXTRA", ss_list(&mine)),
            ("SS_REMOTE_TS_EXTRA", ss_list(&theirs)),
        ],
    }
}

fn start(kind: Impl, topo: &Topology, ns: &str, name: &str, p: &GwParams, site: u8) -> Gw {
    let o = opts(kind, site);
    let o: Vec<(&str, &str)> = o.iter().map(|(k, v)| (*k, v.as_str())).collect();
    match kind {
        Impl::StrongSwan => Gw::Ss(StrongSwan::start_opts(topo, ns, name, p, &o)),
        Impl::Ferroswan => Gw::Fs(Ferroswan::start_opts(topo, ns, name, p, &o)),
    }
}

fn fragmented_tunnel(tag: &str, a: Impl, b: Impl) {
    if !prerequisites(tag) {
        return;
    }
    if !have_nft() {
        let msg = format!("{tag}: missing nft (install with: sudo scripts/install-deps.sh)");
        if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false") {
            panic!("CI is set, refusing to skip: {msg}");
        }
        eprintln!("SKIP {msg}");
        return;
    }
    let topo = Topology::new(tag);
    drop_ip_fragments(&topo.ga);
    drop_ip_fragments(&topo.gb);
    // Each gateway owns an address in its extra subnets (strongSwan needs one as the source of
    // the routes it installs for them).
    for (ns, dev, site) in [(&topo.ga, "ga-in", 1u8), (&topo.gb, "gb-in", 2u8)] {
        for i in 0..EXTRA {
            ns_must(
                ns,
                &[
                    "ip",
                    "addr",
                    "add",
                    &format!("10.{site}.{i}.1/24"),
                    "dev",
                    dev,
                ],
            );
        }
    }
    let cap = Capture::start(&topo, &topo.ga, GA_OUT_IF, "outside");
    let gwb = start(b, &topo, &topo.gb, "gwB", &GwParams::b(GCM), 2);
    let gwa = start(a, &topo, &topo.ga, "gwA", &GwParams::a(GCM), 1);
    eprintln!("[{tag}] gwA={a:?} gwB={b:?} fragment_size {FRAGMENT_SIZE}: initiating");
    let t0 = establish(tag, &gwa, &gwb);
    wait_ping(&topo.ha, HB_IP, Duration::from_secs(10)).unwrap_or_else(|e| panic!("[{tag}] {e}"));
    ping(&topo.hb, HA_IP).unwrap_or_else(|e| panic!("[{tag}] {e}"));
    tcp_transfer(
        &topo.ha,
        &topo.hb,
        HB_IP,
        5001,
        256 << 10,
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("[{tag}] TCP transfer hostA -> hostB: {e}"));
    cap.stop();

    // Wire: SKF (payload type 53) from both peers in IKE_AUTH, no IP fragments at all, and
    // every IKE datagram within fragment_size.
    let skf_a = cap.count(&format!("ip.src == {GA_OUT} && isakmp.typepayload == 53"));
    let skf_b = cap.count(&format!("ip.src == {GB_OUT} && isakmp.typepayload == 53"));
    let ip_frags = cap.count("ip.flags.mf == 1 || ip.frag_offset > 0");
    let big_ike = cap.count(&format!("isakmp && ip.len > {FRAGMENT_SIZE}"));
    let esp = cap.count("esp");
    eprintln!(
        "[{tag}] outside link: SKF {skf_a} from gwA, {skf_b} from gwB; {ip_frags} IP fragments; \
         {big_ike} IKE datagrams > {FRAGMENT_SIZE} bytes; {esp} ESP"
    );
    let summary = || cap.summary(40);
    assert!(
        skf_a >= 2,
        "[{tag}] gwA sent no IKE fragments:\n{}",
        summary()
    );
    assert!(
        skf_b >= 2,
        "[{tag}] gwB sent no IKE fragments:\n{}",
        summary()
    );
    assert_eq!(
        ip_frags,
        0,
        "[{tag}] IP fragments on the wire:\n{}",
        summary()
    );
    assert_eq!(
        big_ike,
        0,
        "[{tag}] IKE datagram over fragment_size:\n{}",
        summary()
    );
    assert!(esp > 0, "[{tag}] no ESP on the wire");
    for ns in [&topo.ga, &topo.gb] {
        assert_eq!(
            dropped_ip_fragments(ns),
            0,
            "[{tag}] {ns} dropped IP fragments"
        );
    }
    for gw in [&gwa, &gwb] {
        if let Gw::Ss(s) = gw {
            // charon reassembled our SKF fragments (and fragmented its own messages).
            let log = s.log();
            assert!(
                log.contains("reassembled fragmented IKE message"),
                "[{tag}] charon {} did not reassemble fragments",
                s.name
            );
        }
        if let Gw::Fs(f) = gw {
            let c = f.counters().unwrap_or_else(|e| panic!("[{tag}] {e}"));
            let get = |k: &str| {
                c.get(k)
                    .copied()
                    .unwrap_or_else(|| panic!("[{tag}] counter {k:?} missing: {c:?}"))
            };
            eprintln!(
                "[{tag}] ferroswan {}: fragments_sent {} fragments_received {} \
                 messages_reassembled {} fragment_drops {}",
                f.name,
                get("fragments_sent"),
                get("fragments_received"),
                get("messages_reassembled"),
                get("fragment_drops")
            );
            assert!(get("fragments_sent") >= 2, "[{tag}] {}: {c:?}", f.name);
            assert!(
                get("messages_reassembled") >= 1,
                "[{tag}] {}: {c:?}",
                f.name
            );
            assert_eq!(get("fragment_drops"), 0, "[{tag}] {}: {c:?}", f.name);
        }
    }
    gwa.assert_traffic_counted();
    gwb.assert_traffic_counted();
    eprintln!("[{tag}] OK in {:?}", t0.elapsed());
}

#[test]
fn frag_fs_to_ss() {
    fragmented_tunnel("fragfs", FS, SS);
}

#[test]
fn frag_ss_to_fs() {
    fragmented_tunnel("fragsf", SS, FS);
}

#[test]
fn frag_fs_to_fs() {
    fragmented_tunnel("fragff", FS, FS);
}
