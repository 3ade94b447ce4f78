//! IKE_SA_INIT flood against a ferroswan responder (DoS resistance, RFC 7296 2.6).
//!
//! gwB (ferroswan, responder, accepts any peer address so the flood matches its connection)
//! is flooded from gwA's namespace with up to 50k well-formed IKE_SA_INIT requests (random
//! SPIs, nonces and KE values) at a bounded rate for at most ~9 s. "Spoofed" sources are kept
//! simple: 16 extra addresses (100.64.0.1-16/32) on gwA's outside interface, one UDP socket
//! each; nothing leaves the test's namespaces. Meanwhile gwA's ferroswan initiates the real
//! tunnel. Checks: the tunnel comes up and carries pings, gwB answered with cookies, the
//! half-open table stayed at its limits, gwB's RSS grew by less than 50 MB, gwB is alive.
//! Prerequisites and cleanup as in tests/interop.rs.

use fs_testbed::*;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const MAX_DATAGRAMS: u64 = 50_000;
const MAX_FLOOD: Duration = Duration::from_secs(9);
/// Datagrams per 10 ms tick: 60 -> at most 6000/s.
const PER_TICK: u64 = 60;
const SOURCES: u8 = 16;
const THRESHOLD: u64 = 50;
const HALF_OPEN_MAX: u64 = 400;
const RSS_BOUND_KIB: u64 = 50 * 1024;

struct Xs(u64);
impl Xs {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn fill(&mut self, b: &mut [u8]) {
        for c in b.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
}

/// Flood from namespace `ns` until done or `stop`; returns (sent, send errors).
fn flood(ns: String, stop: Arc<AtomicBool>) -> thread::JoinHandle<(u64, u64)> {
    thread::spawn(move || {
        enter_netns(&ns).expect("setns");
        let dst: SocketAddr = format!("{GB_OUT}:500").parse().unwrap();
        let socks: Vec<UdpSocket> = (1..=SOURCES)
            .map(|i| {
                let s = UdpSocket::bind(format!("100.64.0.{i}:0")).expect("bind source");
                s.set_nonblocking(true).unwrap();
                s
            })
            .collect();
        let mut x = Xs(0x5eed_f100_d000_0001);
        let (mut sent, mut errors) = (0u64, 0u64);
        let start = Instant::now();
        let mut tick = start;
        while sent + errors < MAX_DATAGRAMS
            && start.elapsed() < MAX_FLOOD
            && !stop.load(Ordering::Relaxed)
        {
            for _ in 0..PER_TICK.min(MAX_DATAGRAMS - sent - errors) {
                let (mut ke, mut nonce) = ([0u8; 32], [0u8; 32]);
                x.fill(&mut ke);
                x.fill(&mut nonce);
                let pkt = ike_sa_init_request(x.next() | 1, &ke, &nonce);
                let s = &socks[(x.next() % socks.len() as u64) as usize];
                match s.send_to(&pkt, dst) {
                    Ok(_) => sent += 1,
                    Err(_) => errors += 1,
                }
            }
            tick += Duration::from_millis(10);
            if let Some(d) = tick.checked_duration_since(Instant::now()) {
                thread::sleep(d);
            }
        }
        (sent, errors)
    })
}

#[test]
fn ike_sa_init_flood_cookies_and_legitimate_tunnel() {
    let tag = "flood";
    if !prerequisites(tag) {
        return;
    }
    let topo = Topology::new(tag);
    let pb = GwParams::b("aes256gcm16");
    let cfg = fs_config(
        &pb,
        &FsOpts {
            log_level: "info".into(),
            ..FsOpts::default()
        },
    )
    .replace(
        &format!("remote_addrs = [\"{GA_OUT}\"]"),
        "remote_addrs = []",
    );
    let cfg = format!(
        "{cfg}\n[limits]\ncookie_threshold = {THRESHOLD}\nhalf_open_max = {HALF_OPEN_MAX}\n\
         half_open_per_source_max = 25\nhalf_open_timeout = \"30s\"\n"
    );
    let gwb = Ferroswan::start_with_config(&topo, &topo.gb, "gwB", &cfg);
    let gwa = Ferroswan::start(&topo, &topo.ga, "gwA", &GwParams::a("aes256gcm16"));
    for i in 1..=SOURCES {
        ns_must(
            &topo.ga,
            &[
                "ip",
                "addr",
                "add",
                &format!("100.64.0.{i}/32"),
                "dev",
                GA_OUT_IF,
            ],
        );
    }
    let pid = gwb.pid().expect("gwB PID");
    thread::sleep(Duration::from_millis(500));
    let rss_before = vm_rss_kib(pid).expect("VmRSS");

    // RSS sampler and flood.
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        thread::spawn(move || {
            let mut peak = 0;
            while !stop.load(Ordering::Relaxed) {
                peak = peak.max(vm_rss_kib(pid).unwrap_or(0));
                thread::sleep(Duration::from_millis(100));
            }
            peak
        })
    };
    let flood_start = Instant::now();
    let flooder = flood(topo.ga.clone(), Arc::new(AtomicBool::new(false)));
    thread::sleep(Duration::from_secs(1));

    // The legitimate initiator during the flood.
    let t = Instant::now();
    let up = gwa.up(CONN);
    let t_establish = t.elapsed();
    let during_flood = flood_start.elapsed() < MAX_FLOOD && !flooder.is_finished();
    up.unwrap_or_else(|e| panic!("[{tag}] legitimate tunnel during flood: {e}"));
    gwb.wait_for_sa(CONN, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("[{tag}] {e}"));
    wait_ping(&topo.ha, HB_IP, Duration::from_secs(10)).unwrap_or_else(|e| panic!("[{tag}] {e}"));

    let (sent, send_errors) = flooder.join().expect("flooder");
    let flood_time = flood_start.elapsed();
    thread::sleep(Duration::from_millis(500)); // let gwB drain its queue
    stop.store(true, Ordering::Relaxed);
    let rss_peak = sampler.join().unwrap();
    let rss_after = vm_rss_kib(pid).unwrap_or(0);
    let c = gwb
        .counters()
        .unwrap_or_else(|e| panic!("[{tag}] counters: {e}"));
    let get = |k: &str| counter(&c, k);
    println!(
        "[{tag}] datagrams sent {sent} (send errors {send_errors}) in {:.1} s; gwB: cookies_sent \
         {}, cookies_accepted {}, cookie_invalid {}, half_open_limit_drops {}, half_open_peak {}, \
         half_open now {}; RSS before {rss_before} KiB, peak {rss_peak} KiB, after {rss_after} \
         KiB; legitimate IKE_SA established in {:.2} s (during flood: {during_flood})",
        flood_time.as_secs_f64(),
        get("cookies_sent"),
        get("cookies_accepted"),
        get("cookie_invalid"),
        get("half_open_limit_drops"),
        get("half_open_peak"),
        get("half_open"),
        t_establish.as_secs_f64(),
    );
    assert!(sent >= 10_000, "[{tag}] flood too small: {sent}");
    assert!(during_flood, "[{tag}] tunnel came up only after the flood");
    assert!(get("cookies_sent") > 0, "[{tag}] no cookies: {c:?}");
    assert!(
        get("cookies_accepted") >= 1,
        "[{tag}] legitimate initiator did not return a cookie"
    );
    // Threshold + the legitimate SA (+ 1 for a retransmitted attempt).
    assert!(get("half_open_peak") <= THRESHOLD + 2, "[{tag}] {c:?}");
    assert!(
        rss_peak.max(rss_after) < rss_before + RSS_BOUND_KIB,
        "[{tag}] RSS grew from {rss_before} to peak {rss_peak} KiB"
    );
    assert_healthy(tag, &gwb);
    assert_healthy(tag, &gwa);
    // The tunnel still carries traffic after the flood.
    wait_ping(&topo.ha, HB_IP, Duration::from_secs(5)).unwrap_or_else(|e| panic!("[{tag}] {e}"));
}
