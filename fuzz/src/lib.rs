//! The fuzz targets as plain functions, shared by the libFuzzer binaries (`fuzz_targets/`), the
//! fallback mutation loop (`fuzz_fallback`, stable toolchain) and the regression tests; and the
//! memory cap that every one of them runs under.
//!
//! Memory cap: this crate's `#[global_allocator]` aborts the process (a crash for libFuzzer,
//! which then saves the input, and for the fallback loop) when one allocation is larger than
//! [`single_limit`] bytes (`FUZZ_MALLOC_LIMIT_MB`, default 1) or the bytes live at once exceed
//! [`total_limit`] (`FUZZ_RSS_LIMIT_MB`, default 512). It works with and without a sanitizer,
//! unlike libFuzzer's `-malloc_limit_mb` which needs one; scripts/fuzz.sh passes the same
//! numbers to libFuzzer's `-malloc_limit_mb` and `-rss_limit_mb`.
//! The allocation a datagram may cause is bounded by what its bytes back (issue 9, item 2): a
//! parser that sizes a `Vec` from a count field trips the single-allocation cap at once.
use std::alloc::{GlobalAlloc, Layout, System};
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Once, OnceLock};

pub mod mutate;

const MB: usize = 1 << 20;
static SINGLE_LIMIT: AtomicUsize = AtomicUsize::new(MB);
static TOTAL_LIMIT: AtomicUsize = AtomicUsize::new(512 * MB);
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// The input being run (fallback loop), written to [`CRASH_FILE`] if the cap trips.
static CURRENT: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
static CURRENT_LEN: AtomicUsize = AtomicUsize::new(0);
/// Inputs started by [`run_input`], reported when the cap trips.
static EXECS: AtomicUsize = AtomicUsize::new(0);
static CRASH_FILE: OnceLock<File> = OnceLock::new();
static INIT: Once = Once::new();

/// The allocator with the caps (see the crate doc).
pub struct CapAlloc;

#[global_allocator]
static ALLOC: CapAlloc = CapAlloc;

fn check(size: usize) {
    let single = SINGLE_LIMIT.load(Ordering::Relaxed);
    if size > single {
        die(
            b"single allocation of ",
            size,
            b" bytes over the limit of ",
            single,
        );
    }
    let live = LIVE.fetch_add(size, Ordering::Relaxed).saturating_add(size);
    PEAK.fetch_max(live, Ordering::Relaxed);
    let total = TOTAL_LIMIT.load(Ordering::Relaxed);
    if live > total {
        die(b"live heap of ", live, b" bytes over the limit of ", total);
    }
}

/// Decimal digits of `n` into `buf`, without allocating.
fn digits(mut n: usize, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 || i == 0 {
            return &buf[i..];
        }
    }
}

/// Report and abort; allocates nothing (it runs inside the allocator).
fn die(what: &[u8], n: usize, limit_text: &[u8], limit: usize) -> ! {
    let (mut a, mut b) = ([0u8; 20], [0u8; 20]);
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(b"\n==fuzz memory cap== ");
    let _ = err.write_all(what);
    let _ = err.write_all(digits(n, &mut a));
    let _ = err.write_all(limit_text);
    let _ = err.write_all(digits(limit, &mut b));
    let _ = err.write_all(b" (FUZZ_MALLOC_LIMIT_MB / FUZZ_RSS_LIMIT_MB), at input #");
    let _ = err.write_all(digits(EXECS.load(Ordering::Relaxed), &mut a));
    let _ = err.write_all(b"\n");
    let ptr = CURRENT.load(Ordering::Relaxed);
    if let (Some(mut f), false) = (CRASH_FILE.get(), ptr.is_null()) {
        let len = CURRENT_LEN.load(Ordering::Relaxed);
        // SAFETY: `run_input` stores a live slice here and clears it before the slice ends.
        let input = unsafe { std::slice::from_raw_parts(ptr, len) };
        let _ = f.set_len(0);
        let _ = f.write_all(input);
        let _ = f.flush();
    }
    std::process::abort()
}

// SAFETY: every call is forwarded to `System` unchanged; only bookkeeping is added.
unsafe impl GlobalAlloc for CapAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        check(new_size);
        System.realloc(ptr, layout, new_size)
    }
}

fn env_mb(name: &str) -> Option<usize> {
    std::env::var(name)
        .ok()?
        .trim()
        .parse::<usize>()
        .ok()?
        .checked_mul(MB)
}

/// Read the limits from the environment (once; every target calls it).
pub fn init() {
    INIT.call_once(|| {
        if let Some(n) = env_mb("FUZZ_MALLOC_LIMIT_MB").filter(|n| *n > 0) {
            SINGLE_LIMIT.store(n, Ordering::Relaxed);
        }
        if let Some(n) = env_mb("FUZZ_RSS_LIMIT_MB").filter(|n| *n > 0) {
            TOTAL_LIMIT.store(n, Ordering::Relaxed);
        }
    });
}

/// Set both caps (bytes); for processes that drive the targets from outside, like the tests.
pub fn set_limits(single: usize, total: usize) {
    INIT.call_once(|| {});
    SINGLE_LIMIT.store(single, Ordering::Relaxed);
    TOTAL_LIMIT.store(total, Ordering::Relaxed);
}

/// The single-allocation cap in bytes.
pub fn single_limit() -> usize {
    SINGLE_LIMIT.load(Ordering::Relaxed)
}

/// The live-heap cap in bytes.
pub fn total_limit() -> usize {
    TOTAL_LIMIT.load(Ordering::Relaxed)
}

/// The most bytes live at once so far.
pub fn peak() -> usize {
    PEAK.load(Ordering::Relaxed)
}

/// Where the input that trips the cap is written (fallback loop; libFuzzer saves its own).
pub fn set_crash_file(path: &Path) -> std::io::Result<()> {
    let f = File::create(path)?;
    let _ = CRASH_FILE.set(f);
    Ok(())
}

/// Run `target` on `data`, remembering the input for the cap's crash file.
pub fn run_input(target: fn(&[u8]), data: &[u8]) {
    EXECS.fetch_add(1, Ordering::Relaxed);
    CURRENT_LEN.store(data.len(), Ordering::Relaxed);
    CURRENT.store(data.as_ptr().cast_mut(), Ordering::Relaxed);
    target(data);
    CURRENT.store(std::ptr::null_mut(), Ordering::Relaxed);
}

/// A fuzz target: name, function, longest input worth trying.
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
    pub max_len: usize,
}

/// Every target; scripts/fuzz.sh runs them in this order.
pub const TARGETS: [Target; 4] = [
    Target {
        name: "ike_message",
        run: targets::ike_message,
        max_len: 8192,
    },
    Target {
        name: "ike_endpoint",
        run: targets::ike_endpoint,
        max_len: 8192,
    },
    Target {
        name: "config",
        run: targets::config,
        max_len: 8192,
    },
    Target {
        name: "esp_decap",
        run: targets::esp_decap,
        max_len: 4096,
    },
];

/// A target by name.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

pub mod targets {
    use fs_esp::ip::PacketInfo;
    use fs_esp::{EncrAlg, InboundSa, IntegAlg, Mode, OutboundSa, SaConfig};
    use fs_wire::ike::{parse_payloads, Message};

    /// The IKE message parser: never panic; whatever parses must round-trip.
    pub fn ike_message(data: &[u8]) {
        super::init();
        if let Ok(m) = Message::parse(data) {
            // Whatever parsed fits every field, so it re-emits.
            let emitted = m.emit().expect("a parsed message must re-emit");
            let again = Message::parse(&emitted).expect("emitted message must parse");
            // The header length may differ (unknown transform attributes are dropped on emit).
            assert_eq!(again.payloads, m.payloads);
            assert_eq!(again.header.spi_i, m.header.spi_i);
            assert_eq!(again.header.message_id, m.header.message_id);
            assert_eq!(again.emit().ok(), Some(emitted));
        }
        // Also exercise the bare chain parser (decrypted SK contents).
        if let Some((&first, rest)) = data.split_first() {
            let _ = parse_payloads(first, rest);
        }
    }

    /// `Endpoint::handle_datagram` through the encrypted path: see `fs_ike::fuzzing`.
    pub fn ike_endpoint(data: &[u8]) {
        super::init();
        fs_ike::fuzzing::run(data);
    }

    /// The TOML configuration parser and validator (`ferroswan check-config`).
    pub fn config(data: &[u8]) {
        super::init();
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        // Relative secret_files resolve under a directory that does not exist.
        let base = std::path::Path::new("/nonexistent/ferroswan-fuzz");
        if let Ok(c) = ferroswan::config::parse("fuzz.toml", text, base) {
            let _ = c.local_addrs();
            let _ = c.any_wildcard();
            let _ = c.uses_ipv6();
            let _ = c.worst_esp_overhead();
        }
    }

    const SUITES: [(EncrAlg, Option<IntegAlg>); 4] = [
        (EncrAlg::AesGcm16_256, None),
        (EncrAlg::ChaCha20Poly1305, None),
        (EncrAlg::AesCbc128, Some(IntegAlg::HmacSha256_128)),
        (EncrAlg::AesCbc256, Some(IntegAlg::HmacSha512_256)),
    ];

    /// ESP decapsulation and inner-packet parsing: never panic on any input.
    ///
    /// Byte 0 picks the suite, mode and ESN; byte 1 the strategy:
    /// - raw: the rest is decapsulated as an ESP packet (exercises length/SPI/replay/ICV checks);
    /// - authentic: the rest is encapsulated by a matching SA, one byte is then optionally
    ///   corrupted, and the result decapsulated (the success path, trailer and next-header
    ///   checks).
    ///
    /// Successful inner packets are fed to `PacketInfo::parse`.
    pub fn esp_decap(data: &[u8]) {
        super::init();
        let [sel, strat, rest @ ..] = data else {
            return;
        };
        let (encr, integ) = SUITES[usize::from(sel & 3)];
        let cfg = SaConfig {
            spi: fs_esp::EspSpi(0x0102_0304),
            encr,
            integ,
            encr_key: vec![0x11; encr.key_len()].into(),
            integ_key: integ.map_or(Vec::new(), |i| vec![0x22; i.key_len()]).into(),
            mode: if sel & 4 == 0 {
                Mode::Tunnel
            } else {
                Mode::Transport
            },
            replay_window: if sel & 8 == 0 { 1024 } else { 0 },
            esn: sel & 16 != 0,
        };
        let (Ok(out), Ok(inb)) = (OutboundSa::new(&cfg), InboundSa::new(&cfg)) else {
            return;
        };
        let mut pkt = if strat & 1 == 0 {
            rest.to_vec()
        } else {
            let Some((&nh, inner)) = rest.split_first() else {
                return;
            };
            let mut buf = vec![0u8; inner.len() + out.max_overhead()];
            let Ok(n) = out.encapsulate(inner, nh, &mut buf) else {
                return;
            };
            buf.truncate(n);
            if strat & 2 != 0 && !buf.is_empty() {
                let pos = usize::from(strat >> 2) % buf.len();
                buf[pos] ^= 0x5a;
            }
            buf
        };
        if let Ok(d) = inb.decapsulate(&mut pkt) {
            let _ = PacketInfo::parse(&pkt[d.inner]);
        }
    }
}
