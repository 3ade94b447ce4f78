//! Issue 9: parsing a datagram allocates in proportion to its bytes, whatever its count fields
//! say. A counting allocator (per thread, so parallel tests do not disturb each other) records
//! the peak of live heap bytes while `Message::parse` runs on hostile shapes.
#![allow(
    unsafe_code,
    reason = "a counting GlobalAlloc is an unsafe impl; fs-wire's library stays forbid(unsafe_code)"
)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test code"
)]
use fs_wire::ike::{
    exchange, flags, payload_type as pt, Header, Message, WireError, HEADER_LEN, IKE_VERSION,
    MAX_PAYLOADS,
};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn add(n: usize) {
    let _ = LIVE.try_with(|l| {
        let v = l.get().saturating_add(n);
        l.set(v);
        let _ = PEAK.try_with(|p| p.set(p.get().max(v)));
    });
}

fn sub(n: usize) {
    let _ = LIVE.try_with(|l| l.set(l.get().saturating_sub(n)));
}

// SAFETY: every call is forwarded to the system allocator with the same arguments; the
// bookkeeping only touches const-initialised thread-locals (no allocation, no destructor).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        add(l.size());
        // SAFETY: same layout as requested from us.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        sub(l.size());
        // SAFETY: `p` was allocated by `System` with layout `l`.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        // Count the moment both blocks may exist.
        add(new);
        sub(l.size());
        // SAFETY: `p`/`l` come from `System`; `new` is the caller's size.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Peak heap bytes (above what was live before) while parsing `b`.
fn parse_peak(b: &[u8]) -> usize {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let r = Message::parse(b);
    let peak = PEAK.with(Cell::get) - base;
    drop(r);
    peak
}

/// An unencrypted INFORMATIONAL whose chain repeats payload `ptype` with `body` up to about
/// `size` bytes.
fn hostile(ptype: u8, body: &[u8], size: usize) -> Vec<u8> {
    let one = 4 + body.len();
    let n = (size.saturating_sub(HEADER_LEN) / one).max(1);
    let mut chain = Vec::new();
    for i in 0..n {
        chain.extend_from_slice(&[if i + 1 == n { 0 } else { ptype }, 0]);
        chain.extend_from_slice(&(one as u16).to_be_bytes());
        chain.extend_from_slice(body);
    }
    let h = Header {
        spi_i: 1,
        spi_r: 2,
        next_payload: ptype,
        version: IKE_VERSION,
        exchange: exchange::INFORMATIONAL,
        flags: flags::INITIATOR,
        message_id: 0,
        length: (HEADER_LEN + chain.len()) as u32,
    };
    let mut b = h.to_bytes().to_vec();
    b.extend_from_slice(&chain);
    b
}

/// The bound: a parsed payload costs a small constant times its bytes (enum, vectors).
fn bound(len: usize) -> usize {
    32 * len + 1024
}

#[test]
fn hostile_counts_allocate_in_proportion_to_the_bytes() {
    let shapes: &[(&str, u8, &[u8])] = &[
        ("Delete spi_size 0 x 65535", pt::DELETE, &[1, 0, 0xff, 0xff]),
        (
            "Delete spi_size 4 x 65535",
            pt::DELETE,
            &[3, 4, 0xff, 0xff, 1, 2, 3, 4],
        ),
        ("TS count 255, none present", pt::TSI, &[255, 0, 0, 0]),
        (
            "TS count 255, one present",
            pt::TSR,
            &[
                255, 0, 0, 0, 7, 0, 0, 16, 0, 0, 255, 255, 10, 0, 0, 0, 10, 0, 0, 255,
            ],
        ),
        (
            "proposal 255 transforms",
            pt::SA,
            &[0, 0, 0, 8, 1, 1, 0, 255],
        ),
        (
            "CP attribute 65535 bytes",
            pt::CP,
            &[1, 0, 0, 0, 0, 1, 0xff, 0xff],
        ),
        ("Notify SPI 255 bytes", pt::NOTIFY, &[3, 255, 0x40, 0x09]),
        ("SKF 65535 fragments", pt::SKF, &[0, 1, 0xff, 0xff]),
    ];
    for (name, ptype, body) in shapes {
        for size in [40, 1468, 65_507] {
            let b = hostile(*ptype, body, size);
            let peak = parse_peak(&b);
            println!("{name}: {} bytes -> peak {peak} bytes", b.len());
            assert!(
                peak <= bound(b.len()),
                "{name}: parsing {} bytes allocated {peak} bytes",
                b.len()
            );
        }
    }
}

#[test]
fn many_small_payloads_stop_at_max_payloads() {
    // Valid payloads, but ~16,000 of them in a 64 KB datagram: the chain is cut at
    // MAX_PAYLOADS, so the decoded vector stays small (it was ~1.4 MB of heap).
    for (ptype, body) in [(pt::DELETE, &[1u8, 0, 0, 0][..]), (pt::VENDOR, &[][..])] {
        let b = hostile(ptype, body, 65_507);
        let peak = parse_peak(&b);
        println!("{ptype} x many: {} bytes -> peak {peak} bytes", b.len());
        assert_eq!(
            Message::parse(&b).unwrap_err(),
            WireError::TooManyPayloads { max: MAX_PAYLOADS }
        );
        assert!(peak <= 32 * 1024, "{peak}");
    }
}

#[test]
fn large_valid_payloads_stay_proportional() {
    // Delete(ESP) with 1023 SPIs per payload, 15 payloads: each 4-byte SPI becomes its own
    // vector.
    let spis: Vec<u8> = [3u8, 4, 0x03, 0xff]
        .into_iter()
        .chain((0..1023u32).flat_map(u32::to_be_bytes))
        .collect();
    let b = hostile(pt::DELETE, &spis, 65_507);
    let peak = parse_peak(&b);
    println!(
        "Delete 1023 SPIs x 15: {} bytes -> peak {peak} bytes",
        b.len()
    );
    assert!(Message::parse(&b).is_ok());
    assert!(peak <= bound(b.len()), "{peak}");
}
