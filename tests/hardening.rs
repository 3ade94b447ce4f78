//! Hardening of the running daemon (issue 9, items 3, 7, 8, 10):
//! - least privilege: every thread of the daemon has only CAP_NET_ADMIN (effective,
//!   permitted, bounding) and `NoNewPrivs: 1`; with `[daemon] user = "nobody"` it runs as
//!   that user and still installs its routes and carries traffic;
//! - the control socket is created 0660;
//! - an ESP flood with unknown SPIs at `log_level = "debug"` writes a bounded log while the
//!   drop counter stays exact;
//! - an IKE_SA_INIT flood that outruns the control thread is shed at the bounded queue
//!   (counted in `control_queue_shed_init`) while the established SA keeps working.
//!
//! Needs root, strongSwan's tools, tshark (prerequisites as in tests/interop.rs).

use fs_testbed::*;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

const GCM: &str = "aes256gcm16";
/// CAP_NET_ADMIN is capability 12.
const NET_ADMIN_ONLY: u64 = 1 << 12;

fn status_field(pid: &str, task: &str, key: &str) -> String {
    let s = std::fs::read_to_string(format!("/proc/{pid}/task/{task}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/task/{task}/status: {e}"));
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in status of {pid}/{task}"))
        .trim()
        .to_string()
}

/// Checks every thread of `pid`; returns the number of threads.
fn assert_least_privilege(tag: &str, pid: u32) -> usize {
    let pid = pid.to_string();
    let tasks: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("task dir")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().to_string()))
        .collect();
    assert!(
        tasks.len() > 3,
        "[{tag}] expected the daemon's threads: {tasks:?}"
    );
    for t in &tasks {
        for key in ["CapEff:", "CapPrm:", "CapBnd:"] {
            let v = u64::from_str_radix(&status_field(&pid, t, key), 16).expect("hex caps");
            assert_eq!(
                v, NET_ADMIN_ONLY,
                "[{tag}] thread {t}: {key} {v:016x}, want only CAP_NET_ADMIN"
            );
        }
        assert_eq!(
            status_field(&pid, t, "NoNewPrivs:"),
            "1",
            "[{tag}] thread {t}"
        );
    }
    tasks.len()
}

fn pair(topo: &Topology, user_a: Option<&str>) -> (Ferroswan, Ferroswan) {
    let gwb = Ferroswan::start_with_config(
        topo,
        &topo.gb,
        "gwB",
        &fs_config(&GwParams::b(GCM), &FsOpts::default()),
    );
    let mut cfg = fs_config(&GwParams::a(GCM), &FsOpts::default());
    if let Some(u) = user_a {
        cfg = cfg.replace(
            "tun_name = \"fs0\"",
            &format!("tun_name = \"fs0\"\nuser = \"{u}\""),
        );
    }
    let gwa = Ferroswan::start_with_config(topo, &topo.ga, "gwA", &cfg);
    gwa.up(CONN).unwrap_or_else(|e| panic!("up: {e}"));
    wait_ping(&topo.ha, HB_IP, Duration::from_secs(10)).unwrap_or_else(|e| panic!("ping: {e}"));
    (gwa, gwb)
}

#[test]
fn privileges_dropped_in_every_thread_and_socket_0660() {
    let tag = "privs";
    if !prerequisites(tag) {
        return;
    }
    let topo = Topology::new(tag);
    let (gwa, gwb) = pair(&topo, None);
    for f in [&gwa, &gwb] {
        let n = assert_least_privilege(tag, f.pid().expect("pid"));
        let mode = std::fs::metadata(&f.socket)
            .expect("socket")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o660, "[{tag}] control socket mode {mode:o}");
        eprintln!("[{tag}] {}: {n} threads with CapEff=CapPrm=CapBnd={NET_ADMIN_ONLY:016x}, NoNewPrivs 1, socket 0660", f.name);
    }
    assert!(
        gwa.log().contains("privileges dropped"),
        "[{tag}] no log line about the privilege drop"
    );
}

#[test]
fn runs_as_an_unprivileged_user() {
    let tag = "privuser";
    if !prerequisites(tag) {
        return;
    }
    let topo = Topology::new(tag);
    // `pair` brought the tunnel up: routes were installed after the switch to nobody
    let (gwa, _gwb) = pair(&topo, Some("nobody"));
    let pid = gwa.pid().expect("pid").to_string();
    let uid = status_field(&pid, &pid, "Uid:");
    assert!(
        uid.split_whitespace().all(|u| u == "65534"),
        "[{tag}] Uid line {uid:?}, want nobody (65534) everywhere"
    );
    assert_least_privilege(tag, gwa.pid().expect("pid"));
    // and the daemon still changes routes: down + up again re-installs nothing it lacks
    gwa.down(CONN)
        .unwrap_or_else(|e| panic!("[{tag}] down: {e}"));
    gwa.up(CONN)
        .unwrap_or_else(|e| panic!("[{tag}] up again: {e}"));
    wait_ping(&topo.ha, HB_IP, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("[{tag}] ping after up again: {e}"));
    assert_healthy(tag, &gwa);
}

/// ESP with unknown SPIs at gwB for `secs` from gwA's namespace, as fast as one thread sends.
fn esp_flood(ns: &str, secs: u64) -> u64 {
    in_ns(ns, move || {
        // SAFETY: plain socket(2), owned right away.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 50) };
        assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
        // SAFETY: fresh descriptor.
        let s = UdpSocket::from(unsafe {
            <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd)
        });
        let dst = SocketAddr::new(GB_OUT.parse::<IpAddr>().unwrap(), 0);
        let mut pkt = vec![0u8; 100];
        let (mut n, t0) = (0u64, Instant::now());
        while t0.elapsed() < Duration::from_secs(secs) {
            pkt[..4].copy_from_slice(&(0x1000_0000u32 + (n as u32 % 1000)).to_be_bytes());
            pkt[4..8].copy_from_slice(&(n as u32).to_be_bytes());
            if s.send_to(&pkt, dst).is_ok() {
                n += 1;
            }
        }
        n
    })
}

#[test]
fn esp_flood_at_debug_writes_a_bounded_log() {
    let tag = "logflood";
    if !prerequisites(tag) {
        return;
    }
    let topo = Topology::new(tag);
    let (gwa, gwb) = pair(&topo, None);
    let before = counter(&gwb.counters().unwrap(), "unknown_spi");
    let log_before = std::fs::metadata(&gwb.log).map(|m| m.len()).unwrap_or(0);
    let secs = 5;
    let sent = esp_flood(&topo.ga, secs);
    std::thread::sleep(Duration::from_millis(500));
    let dropped = counter(&gwb.counters().unwrap(), "unknown_spi") - before;
    let grown = std::fs::metadata(&gwb.log).map(|m| m.len()).unwrap_or(0) - log_before;
    let unknown_lines = gwb
        .log()
        .lines()
        .filter(|l| l.contains("unknown SPI"))
        .count();
    eprintln!(
        "[{tag}] {sent} ESP packets in {secs} s, unknown_spi +{dropped}, log +{grown} bytes, \
         {unknown_lines} 'unknown SPI' lines"
    );
    assert!(
        dropped > 10_000,
        "[{tag}] flood too small to show anything: {dropped}"
    );
    // 5 lines a second per reason, plus one summary line a second, plus the rest of the log
    assert!(
        unknown_lines as u64 <= (secs + 2) * 6,
        "[{tag}] {unknown_lines} 'unknown SPI' lines for a {secs} s flood"
    );
    assert!(
        grown < 64 * 1024,
        "[{tag}] log grew by {grown} bytes during the flood"
    );
    assert!(
        gwb.log().contains("suppressed"),
        "[{tag}] no summary line with the count of suppressed lines"
    );

    // The same for IKE: informational requests for IKE SPIs gwB does not hold (fs-ike's
    // per-datagram drop lines).
    let before = counter(&gwb.counters().unwrap(), "dropped_unknown_spi");
    let log_before = std::fs::metadata(&gwb.log).map(|m| m.len()).unwrap_or(0);
    let sent = in_ns(&topo.ga, move || {
        let s = UdpSocket::bind("0.0.0.0:0").expect("bind");
        let dst: SocketAddr = format!("{GB_OUT}:500").parse().unwrap();
        let (mut n, t0) = (0u64, Instant::now());
        while t0.elapsed() < Duration::from_secs(3) {
            let m = ike_header(n | 1, 0x77, 0, EXCH_INFORMATIONAL, FLAG_INITIATOR, 1, 28);
            if s.send_to(&m, dst).is_ok() {
                n += 1;
            }
        }
        n
    });
    std::thread::sleep(Duration::from_millis(500));
    let dropped = counter(&gwb.counters().unwrap(), "dropped_unknown_spi") - before;
    let grown = std::fs::metadata(&gwb.log).map(|m| m.len()).unwrap_or(0) - log_before;
    let lines = gwb
        .log()
        .lines()
        .filter(|l| l.contains("unknown IKE SPI"))
        .count();
    eprintln!(
        "[{tag}] {sent} IKE datagrams with unknown SPIs in 3 s: dropped_unknown_spi +{dropped}, log +{grown} bytes, {lines} 'unknown IKE SPI' lines"
    );
    assert!(dropped > 5_000, "[{tag}] IKE flood too small: {dropped}");
    assert!(
        lines <= 5 * 6,
        "[{tag}] {lines} 'unknown IKE SPI' lines for a 3 s flood"
    );
    assert!(
        grown < 32 * 1024,
        "[{tag}] log grew by {grown} bytes during the IKE flood"
    );
    assert_healthy(tag, &gwb);
    assert_healthy(tag, &gwa);
}

#[test]
fn ike_sa_init_flood_is_shed_at_the_bounded_queue() {
    let tag = "ikeshed";
    if !prerequisites(tag) {
        return;
    }
    let topo = Topology::new(tag);
    let (gwa, gwb) = pair(&topo, None);
    let sa_before = gwa.ike_sas().unwrap();
    let pid = gwb.pid().expect("pid");
    let rss0 = vm_rss_kib(pid).unwrap_or(0);
    let threads: Vec<_> = (0..2)
        .map(|k| {
            let ns = topo.ga.clone();
            std::thread::spawn(move || {
                enter_netns(&ns).expect("setns");
                let s = UdpSocket::bind("0.0.0.0:0").expect("bind");
                let dst: SocketAddr = format!("{GB_OUT}:500").parse().unwrap();
                let pkts: Vec<Vec<u8>> = (0..256u64)
                    .map(|i| {
                        let ke = [(i as u8) | 1; 32];
                        ike_sa_init_request((k << 32) | (i + 1), &ke, &[7u8; 32])
                    })
                    .collect();
                let (mut n, t0) = (0u64, Instant::now());
                while t0.elapsed() < Duration::from_secs(4) {
                    if s.send_to(&pkts[(n % 256) as usize], dst).is_ok() {
                        n += 1;
                    }
                }
                n
            })
        })
        .collect();
    // the established SA keeps working during the flood
    let mut pings_ok = 0;
    for _ in 0..5 {
        if ping(&topo.ha, HB_IP).is_ok() {
            pings_ok += 1;
        }
    }
    let sent: u64 = threads.into_iter().map(|t| t.join().expect("flood")).sum();
    let c = gwb.counters().unwrap();
    let shed = counter(&c, "control_queue_shed_init");
    let full = counter(&c, "control_queue_full");
    let rss1 = vm_rss_kib(pid).unwrap_or(0);
    eprintln!(
        "[{tag}] {sent} IKE_SA_INIT sent in 4 s: {shed} shed at the queue, {full} dropped \
         full; pings during the flood {pings_ok}/5; RSS {rss0} -> {rss1} KiB"
    );
    assert!(
        shed > 0,
        "[{tag}] the flood never filled half the queue: {c:?}"
    );
    assert!(
        pings_ok >= 4,
        "[{tag}] established SA disturbed: {pings_ok}/5 pings"
    );
    assert!(rss1 < rss0 + 50 * 1024, "[{tag}] RSS {rss0} -> {rss1} KiB");
    // still the same IKE SA, and it still answers (a CHILD_SA and pings after the flood)
    wait_ping(&topo.ha, HB_IP, Duration::from_secs(5)).unwrap_or_else(|e| panic!("[{tag}] {e}"));
    let sa_after = gwa.ike_sas().unwrap();
    assert_eq!(
        sa_before.first().map(|s| s["spi_i"].clone()),
        sa_after.first().map(|s| s["spi_i"].clone()),
        "[{tag}] the IKE SA changed during the flood"
    );
    assert_healthy(tag, &gwb);
}
