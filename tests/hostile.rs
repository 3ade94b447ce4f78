//! Hostile IKE datagrams against a running ferroswan (issue 9, item 2).
//!
//! gwB runs ferroswan (the responder of the standard topology; no peer daemon). From gwA's
//! namespace, hand-made unencrypted IKE messages whose count fields claim far more than the
//! bytes carry are sent to gwB's UDP 500, and to UDP 4500 behind the non-ESP marker: the
//! 8-byte Delete amplification (SPI size 0, Num of SPIs 65535) and the same shape in
//! Delete-with-SPIs, TS, proposal/transform, CP and Notify payloads, plus valid but numerous
//! empty Vendor ID payloads (~16,000 in 64 KB), each repeated to fill a ~1468-byte and a
//! 64 KB datagram (IPv4 UDP maximum), under two headers:
//! - an INFORMATIONAL request for an unknown IKE SPI (the pre-fix daemon parsed every
//!   datagram before looking the SPI up; now it is dropped from the header alone),
//! - an IKE_SA_INIT request (parsed in full, as it creates state).
//!
//! Checks: the daemon stays alive, its VmRSS grows by less than 4 MB, and the datagrams are
//! counted as drops (`ike_counters` in `status --json`: dropped_unknown_spi,
//! dropped_malformed). Prints RSS before/peak/after.

use fs_testbed::*;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Datagrams per (shape, size, header, port).
const PER_CASE: usize = 200;
const RSS_BOUND_KIB: u64 = 4 * 1024;
/// Largest UDP payload over IPv4.
const UDP_MAX: usize = 65_507;

const PT_SA: u8 = 33;
const PT_NOTIFY: u8 = 41;
const PT_DELETE: u8 = 42;
const PT_TSI: u8 = 44;
const PT_CP: u8 = 47;
const PT_VENDOR: u8 = 43;

/// (name, payload type, payload body): each claims a count its bytes do not back.
fn shapes() -> Vec<(&'static str, u8, Vec<u8>)> {
    vec![
        // SPI size 0, Num of SPIs 65535: 1.5 MiB per 8 bytes in the old parser.
        ("delete-spi0-65535", PT_DELETE, vec![1, 0, 0xff, 0xff]),
        (
            "delete-spi4-65535",
            PT_DELETE,
            vec![3, 4, 0xff, 0xff, 1, 2, 3, 4],
        ),
        ("ts-255-none", PT_TSI, vec![255, 0, 0, 0]),
        // Proposal: length 8, #1, IKE, SPI size 0, 255 transforms, none present.
        (
            "proposal-255-transforms",
            PT_SA,
            vec![0, 0, 0, 8, 1, 1, 0, 255],
        ),
        // CFG_REQUEST, one attribute claiming 65535 value bytes.
        ("cp-attr-65535", PT_CP, vec![1, 0, 0, 0, 0, 1, 0xff, 0xff]),
        // Notify: ESP, SPI size 255, REKEY_SA, no SPI bytes.
        ("notify-spi-255", PT_NOTIFY, vec![3, 255, 0x40, 0x09]),
        // Valid but numerous: empty Vendor ID payloads (4 bytes each, ~16,000 in 64 KB)
        // parse, then the IKE_SA_INIT request lacks SA/KE/Nonce.
        ("vendor-empty", PT_VENDOR, vec![]),
    ]
}

/// A message of about `size` bytes: header + payload `ptype`/`body` repeated.
fn message(ptype: u8, body: &[u8], size: usize, init: bool, seq: u64) -> Vec<u8> {
    let one = 4 + body.len();
    let n = (size.saturating_sub(28) / one).max(1);
    let mut chain = Vec::with_capacity(n * one);
    for i in 0..n {
        chain.extend(ike_payload(if i + 1 == n { 0 } else { ptype }, false, body));
    }
    let spi_i = 0x4844_0000_0000_0000 | seq;
    let (spi_r, exch) = if init {
        (0, EXCH_IKE_SA_INIT)
    } else {
        (0x7777_0000_0000_0000 | seq, EXCH_INFORMATIONAL)
    };
    let mut m = ike_header(
        spi_i,
        spi_r,
        ptype,
        exch,
        FLAG_INITIATOR,
        if init { 0 } else { 1 },
        (28 + chain.len()) as u32,
    );
    m.extend(chain);
    m
}

/// Every test case: (label, datagram as sent, port).
fn cases() -> Vec<(String, Vec<u8>, u16)> {
    let mut out = Vec::new();
    let mut seq = 1;
    for (name, ptype, body) in shapes() {
        for port in [500u16, 4500] {
            // The non-ESP marker takes 4 bytes of the UDP payload on 4500.
            let marker = if port == 4500 { 4 } else { 0 };
            for size in [1468, UDP_MAX - marker] {
                for init in [false, true] {
                    let mut d = vec![0u8; marker];
                    d.extend(message(ptype, &body, size, init, seq));
                    seq += 1;
                    let hdr = if init { "init" } else { "unknown-spi" };
                    out.push((format!("{name}/{port}/{}B/{hdr}", d.len()), d, port));
                }
            }
        }
    }
    out
}

/// Sum of the drop counters the hostile datagrams land in (None once the daemon is gone).
fn drops(f: &Ferroswan) -> Option<u64> {
    let c = f.counters().ok()?;
    Some(counter(&c, "dropped_unknown_spi") + counter(&c, "dropped_malformed"))
}

#[test]
fn hostile_counts_do_not_grow_memory() {
    let tag = "hd";
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
    );
    let gwb = Ferroswan::start_with_config(&topo, &topo.gb, "gwB", &cfg);
    let pid = gwb.pid().expect("gwB PID");
    thread::sleep(Duration::from_millis(500));
    let drops_before = drops(&gwb).expect("counters");
    let rss_before = vm_rss_kib(pid).expect("VmRSS");

    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        thread::spawn(move || {
            let mut peak = 0;
            while !stop.load(Ordering::Relaxed) {
                peak = peak.max(vm_rss_kib(pid).unwrap_or(0));
                thread::sleep(Duration::from_millis(20));
            }
            peak
        })
    };

    let cases = cases();
    let ncases = cases.len();
    let t = Instant::now();
    let (sent, errors) = in_ns(&topo.ga, move || {
        let s = UdpSocket::bind("0.0.0.0:0").expect("bind sender");
        let (mut sent, mut errors) = (0u64, 0u64);
        for (_, d, port) in &cases {
            let dst: SocketAddr = format!("{GB_OUT}:{port}").parse().unwrap();
            for i in 0..PER_CASE {
                match s.send_to(d, dst) {
                    Ok(_) => sent += 1,
                    Err(_) => errors += 1,
                }
                // Pace: a 64 KB datagram is 45 IP fragments and a receive buffer holds few
                // of them; losses would hide what the daemon does with the datagrams.
                if d.len() > 2000 || i % 20 == 19 {
                    thread::sleep(Duration::from_micros(700));
                }
            }
        }
        (sent, errors)
    });
    let send_time = t.elapsed();
    // Let the control thread finish what is queued (or notice that the daemon died: the
    // figures are printed before the assertions either way).
    let counted = poll(Duration::from_secs(20), || {
        if !gwb.alive() {
            return Some(0);
        }
        let d = drops(&gwb)?.saturating_sub(drops_before);
        (d >= sent).then_some(d)
    })
    .unwrap_or_else(|| drops(&gwb).unwrap_or(0).saturating_sub(drops_before));
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let rss_peak = sampler.join().unwrap();
    let rss_after = vm_rss_kib(pid).unwrap_or(0);
    let c = gwb.counters().unwrap_or_default();
    let get = |k: &str| c.get(k).copied().unwrap_or(0);
    println!(
        "[{tag}] {ncases} cases x {PER_CASE}: sent {sent} datagrams (send errors {errors}) in \
         {:.1} s; gwB counted {counted} drops (dropped_unknown_spi {}, dropped_malformed {}); \
         VmRSS before {rss_before} KiB, peak {rss_peak} KiB, after {rss_after} KiB \
         (growth {} KiB)",
        send_time.as_secs_f64(),
        get("dropped_unknown_spi"),
        get("dropped_malformed"),
        rss_peak.max(rss_after).saturating_sub(rss_before),
    );
    gwb.assert_alive();
    assert!(
        rss_peak.max(rss_after) < rss_before + RSS_BOUND_KIB,
        "[{tag}] VmRSS grew from {rss_before} KiB to peak {rss_peak} / after {rss_after} KiB"
    );
    assert!(
        sent > 0 && errors == 0,
        "[{tag}] sender: {sent} sent, {errors} errors"
    );
    // Local veths lose nothing when paced; allow a little for the receive buffer.
    assert!(
        counted * 100 >= sent * 95,
        "[{tag}] only {counted} of {sent} hostile datagrams were counted as drops: {c:?}"
    );
    assert!(
        counter(&c, "dropped_unknown_spi") > 0 && counter(&c, "dropped_malformed") > 0,
        "[{tag}] {c:?}"
    );
    assert_healthy(tag, &gwb);
}
