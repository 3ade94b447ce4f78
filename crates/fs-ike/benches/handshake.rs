//! In-process benchmark of the IKE core (issue 10's baseline): two sans-IO [`Endpoint`]s with
//! seeded RNGs exchange datagrams in memory, at a fixed clock, with no network and no sockets.
//!
//! Groups:
//! 1. `handshake`: IKE_SA_INIT + IKE_AUTH to an installed CHILD_SA on both sides (PSK,
//!    aes256gcm16-prfsha256 with each DH group fs-crypto has: x25519, ecp256, modp2048).
//! 2. `rekey_child`: CREATE_CHILD_SA rekey of the CHILD_SA of an established pair, and the
//!    INFORMATIONAL that deletes the old one (without PFS and with x25519 PFS).
//! 3. `drop`: `handle_datagram` of a datagram for an IKE SPI the endpoint does not hold.
//! 4. `cookie`: the responder's IKE_SA_INIT with cookies demanded (`cookie_threshold = 0`):
//!    the stateless COOKIE answer to one request, and a whole handshake that starts with the
//!    COOKIE round trip.
//!
//! Run: `cargo bench -p fs-ike --bench handshake` (see bench/README.md). Every setup is
//! checked once before it is measured, so a benchmark cannot silently time a failed exchange.
//!
//! What is measured is the CPU time of the benchmark thread ([`ThreadCpuTime`]), not wall
//! time: the work is single-threaded and needs no I/O, and on a machine shared with other
//! builds wall time counts the time the thread waits for a core (the same code measured twice
//! by wall time here differed by up to 2x). `FS_BENCH_WALL_TIME=1` measures wall time instead,
//! under group names ending in `@wall` so the two are never compared with each other.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "benchmark code"
)]
use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{criterion_group, BatchSize, Criterion, Throughput};
use fs_crypto::proposal::{EspProposal, IkeProposal};
use fs_crypto::{DhGroup, EncrAlg, PrfAlg, TestRng};
use fs_ike::{ChildConfig, Config, ConnConfig, Endpoint, Event, Limits, RetransmitConfig};
use fs_wire::id::Identity;
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Instant;

const A: &str = "100.1.1.1";
const B: &str = "200.2.2.2";
const IKE_PORT: u16 = 500;
/// An upper bound on the datagrams of any exchange measured here; more means a loop.
const MAX_DATAGRAMS: usize = 64;

fn ike_proposal(dh: DhGroup) -> IkeProposal {
    IkeProposal {
        encr: vec![EncrAlg::AesGcm16_256],
        integ: vec![],
        prf: vec![PrfAlg::HmacSha256],
        dh: vec![dh],
    }
}

fn esp_proposal(pfs: Option<DhGroup>) -> EspProposal {
    EspProposal {
        encr: vec![EncrAlg::AesGcm16_256],
        integ: vec![],
        dh: pfs.into_iter().collect(),
        esn: vec![false],
    }
}

/// A site-to-site connection "s2s" with one child "net", like the simulation tests' pair.
fn conn(me: &str, peer: &str, dh: DhGroup, pfs: Option<DhGroup>) -> ConnConfig {
    let id = |a: &str| {
        Identity::Fqdn(if a == A {
            "gw-a.example".into()
        } else {
            "gw-b.example".into()
        })
    };
    let (local_net, remote_net) = if me == A {
        ("192.168.1.0/24", "192.168.2.0/24")
    } else {
        ("192.168.2.0/24", "192.168.1.0/24")
    };
    ConnConfig {
        name: "s2s".into(),
        local_addrs: vec![me.parse().expect("address")],
        remote_addrs: vec![peer.parse().expect("address")],
        remote_port: IKE_PORT,
        local_id: id(me),
        remote_id: Some(id(peer)),
        psk: b"correct horse battery staple".as_slice().into(),
        ike_proposals: vec![ike_proposal(dh)],
        children: vec![ChildConfig::new(
            "net",
            vec![local_net.parse().expect("selector")],
            vec![remote_net.parse().expect("selector")],
            vec![esp_proposal(pfs)],
        )],
        retransmit: RetransmitConfig::default(),
        force_encap: false,
        prefer_udp_encap: false,
        rekey_time: None,
        reauth_time: None,
        dpd_delay: None,
        dpd_action: Default::default(),
        fragmentation: true,
        fragment_size: fs_ike::config::DEFAULT_FRAGMENT_SIZE,
        nat_keepalive: Some(fs_ike::config::DEFAULT_NAT_KEEPALIVE),
        life_time: None,
        rand_time: None,
        unique: Default::default(),
    }
}

/// What a pair is built from.
#[derive(Clone, Copy)]
struct Setup {
    dh: DhGroup,
    pfs: Option<DhGroup>,
    /// The responder's `cookie_threshold` (0 = a COOKIE is always demanded).
    cookie_threshold: usize,
}

impl Setup {
    fn new(dh: DhGroup) -> Setup {
        Setup {
            dh,
            pfs: None,
            cookie_threshold: Limits::default().cookie_threshold,
        }
    }
}

/// Initiator `a` and responder `b`, a fixed clock, and the events each has produced.
struct Pair {
    a: Endpoint,
    b: Endpoint,
    now: Instant,
    events: [Vec<Event>; 2],
    /// Datagrams carried by the last [`Pair::pump`].
    carried: usize,
}

impl Pair {
    fn new(s: Setup, seed: u64, now: Instant) -> Pair {
        let ep = |me: &str, peer: &str, seed: u64| {
            let config = Config {
                connections: vec![conn(me, peer, s.dh, s.pfs)],
                limits: Limits {
                    cookie_threshold: s.cookie_threshold,
                    ..Limits::default()
                },
            };
            Endpoint::new(config, Box::new(TestRng::from_seed(seed)))
        };
        Pair {
            a: ep(A, B, seed.wrapping_mul(2).wrapping_add(1)),
            b: ep(B, A, seed.wrapping_mul(2).wrapping_add(2)),
            now,
            events: [Vec::new(), Vec::new()],
            carried: 0,
        }
    }

    /// Carry datagrams both ways until neither endpoint has one to send (no loss, no delay,
    /// the clock does not move), and collect the events.
    fn pump(&mut self) {
        let now = self.now;
        self.carried = 0;
        loop {
            let mut moved = false;
            while let Some(t) = self.a.poll_transmit() {
                self.b.handle_datagram(now, t.remote, t.local, &t.data);
                self.carried += 1;
                moved = true;
            }
            while let Some(t) = self.b.poll_transmit() {
                self.a.handle_datagram(now, t.remote, t.local, &t.data);
                self.carried += 1;
                moved = true;
            }
            assert!(self.carried <= MAX_DATAGRAMS, "exchange does not settle");
            if !moved {
                break;
            }
        }
        while let Some(e) = self.a.poll_event() {
            self.events[0].push(e);
        }
        while let Some(e) = self.b.poll_event() {
            self.events[1].push(e);
        }
    }

    fn handshake(&mut self) {
        self.a
            .initiate(self.now, "s2s", None)
            .expect("connection s2s");
        self.pump();
    }

    /// Inbound SPIs of the CHILD_SAs node `i` holds (installed and not removed since).
    fn children(&self, i: usize) -> Vec<fs_wire::EspSpi> {
        let mut v = Vec::new();
        for e in &self.events[i] {
            match e {
                Event::ChildSaInstalled(c) => v.push(c.inbound.spi),
                Event::ChildSaRemoved { spi_in, .. } => v.retain(|s| s != spi_in),
                Event::IkeSaClosed { .. } => v.clear(),
                _ => {}
            }
        }
        v
    }

    /// Both sides hold exactly one CHILD_SA, each one's inbound SPI the other's outbound, and
    /// no IKE SA was closed.
    fn check_one_child(&self) {
        let closed = |i: usize| {
            self.events[i]
                .iter()
                .any(|e| matches!(e, Event::IkeSaClosed { .. }))
        };
        assert!(!closed(0) && !closed(1), "an IKE SA was closed");
        let (a, b) = (self.children(0), self.children(1));
        assert_eq!((a.len(), b.len()), (1, 1), "children: {a:x?} / {b:x?}");
        let out = |i: usize, spi_in: fs_wire::EspSpi| {
            self.events[i].iter().rev().find_map(|e| match e {
                Event::ChildSaInstalled(c) if c.inbound.spi == spi_in => Some(c.outbound.spi),
                _ => None,
            })
        };
        assert_eq!(out(0, a[0]), Some(b[0]), "A's outbound is not B's inbound");
        assert_eq!(out(1, b[0]), Some(a[0]), "B's outbound is not A's inbound");
        // The endpoints agree: one IKE SA each, holding one CHILD_SA (nothing piles up).
        for ep in [&self.a, &self.b] {
            let st = ep.status(self.now);
            assert_eq!(st.len(), 1, "IKE SAs held");
            assert_eq!(st[0].child_sas.len(), 1, "CHILD_SAs held");
        }
    }

    /// Rekey A's CHILD_SA (CREATE_CHILD_SA, then the INFORMATIONAL deleting the old one).
    fn rekey(&mut self) {
        let spi = *self.children(0).first().expect("a CHILD_SA to rekey");
        self.a.rekey_child(self.now, spi).expect("CHILD_SA");
        self.pump();
        // Keep the event logs short: only the live child's install matters from here on.
        for i in 0..2 {
            let live = self.children(i);
            self.events[i].retain(
                |e| matches!(e, Event::ChildSaInstalled(c) if live.contains(&c.inbound.spi)),
            );
        }
    }
}

/// CPU time of the calling thread (`CLOCK_THREAD_CPUTIME_ID`), in nanoseconds.
struct ThreadCpuTime;

fn thread_cpu_ns() -> u64 {
    use nix::time::{clock_gettime, ClockId};
    let t = clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).expect("thread CPU clock");
    let secs = u64::try_from(t.tv_sec()).unwrap_or(0);
    let nanos = u64::try_from(t.tv_nsec()).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

impl Measurement for ThreadCpuTime {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, start: u64) -> u64 {
        thread_cpu_ns().saturating_sub(start)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a.saturating_add(*b)
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuTimeFormatter
    }
}

/// Nanoseconds shown like criterion's wall-time durations (ns, µs, ms, s of CPU time).
struct CpuTimeFormatter;

impl ValueFormatter for CpuTimeFormatter {
    fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = if typical < 1e3 {
            (1.0, "ns")
        } else if typical < 1e6 {
            (1e-3, "µs")
        } else if typical < 1e9 {
            (1e-6, "ms")
        } else {
            (1e-9, "s")
        };
        for v in values {
            *v *= factor;
        }
        unit
    }
    fn scale_throughputs(&self, _typical: f64, t: &Throughput, values: &mut [f64]) -> &'static str {
        let (n, unit) = match t {
            Throughput::Bytes(n) | Throughput::BytesDecimal(n) => (*n, "B/s (CPU)"),
            Throughput::Elements(n) => (*n, "elem/s (CPU)"),
        };
        for v in values {
            *v = n as f64 * 1e9 / *v;
        }
        unit
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

/// `FS_BENCH_WALL_TIME` is set: measure wall time (criterion's default) instead.
fn wall_time() -> bool {
    std::env::var_os("FS_BENCH_WALL_TIME").is_some()
}

/// A benchmark group, named apart when it measures wall time.
fn group<'a, M: Measurement>(
    c: &'a mut Criterion<M>,
    name: &str,
) -> criterion::BenchmarkGroup<'a, M> {
    if wall_time() {
        c.benchmark_group(format!("{name}@wall"))
    } else {
        c.benchmark_group(name)
    }
}

fn dh_name(g: DhGroup) -> &'static str {
    match g {
        DhGroup::Curve25519 => "x25519",
        DhGroup::Ecp256 => "ecp256",
        DhGroup::Modp2048 => "modp2048",
    }
}

/// (1) Full handshake to an established CHILD_SA, per DH group. The endpoints are built in the
/// (unmeasured) setup; each iteration uses a fresh pair with its own seed.
fn handshake<M: Measurement>(c: &mut Criterion<M>) {
    let now = Instant::now();
    let mut g = group(c, "handshake");
    for dh in [DhGroup::Curve25519, DhGroup::Ecp256, DhGroup::Modp2048] {
        let s = Setup::new(dh);
        let mut p = Pair::new(s, 0, now);
        p.handshake();
        p.check_one_child();
        // IKE_SA_INIT and IKE_AUTH: two requests, two responses.
        assert_eq!(p.carried, 4, "handshake datagrams");
        let mut seed = 1u64;
        g.bench_function(format!("aes256gcm16-prfsha256-{}", dh_name(dh)), |bch| {
            bch.iter_batched(
                || {
                    seed = seed.wrapping_add(1);
                    Pair::new(s, seed, now)
                },
                |mut p| {
                    p.handshake();
                    p
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

/// (2) CREATE_CHILD_SA rekey of the child of one established pair, over and over: the pair
/// keeps one child (the old one is deleted each time), so every iteration does the same work.
fn rekey_child<M: Measurement>(c: &mut Criterion<M>) {
    let now = Instant::now();
    let mut g = group(c, "rekey_child");
    for pfs in [None, Some(DhGroup::Curve25519)] {
        let s = Setup {
            pfs,
            ..Setup::new(DhGroup::Curve25519)
        };
        let mut p = Pair::new(s, 0, now);
        p.handshake();
        p.check_one_child();
        let before = p.children(0);
        for _ in 0..3 {
            p.rekey();
            p.check_one_child();
            // CREATE_CHILD_SA and INFORMATIONAL (Delete): two requests, two responses.
            assert_eq!(p.carried, 4, "rekey datagrams");
        }
        assert_ne!(p.children(0), before, "the CHILD_SA was not replaced");
        let name = match pfs {
            None => "no-pfs".to_string(),
            Some(g) => format!("pfs-{}", dh_name(g)),
        };
        g.bench_function(name, |bch| bch.iter(|| p.rekey()));
        p.check_one_child();
    }
    g.finish();
}

/// An established pair and a datagram B drops as one for an unknown IKE SPI: a real message
/// of the SA (A's next request, a CREATE_CHILD_SA) with the responder SPI changed, so B drops
/// it on the header check, before any payload is parsed. Returns B's (local, remote) too.
fn unknown_spi_setup(now: Instant) -> (Pair, Vec<u8>, SocketAddr, SocketAddr) {
    let mut p = Pair::new(Setup::new(DhGroup::Curve25519), 0, now);
    p.handshake();
    p.check_one_child();
    let spi = *p.children(0).first().expect("child");
    p.a.rekey_child(now, spi).expect("CHILD_SA");
    let mut t = p.a.poll_transmit().expect("a CREATE_CHILD_SA request");
    assert!(t.data.len() > 28, "IKE message");
    // Responder SPI: header bytes 8..16.
    if let Some(b) = t.data.get_mut(8..16) {
        b.copy_from_slice(&0x0123_4567_89ab_cdefu64.to_be_bytes());
    }
    let (local, remote) = (t.remote, t.local);
    let before = p.b.stats().dropped_unknown_spi;
    p.b.handle_datagram(now, local, remote, &t.data);
    assert_eq!(
        p.b.stats().dropped_unknown_spi,
        before + 1,
        "not dropped as unknown"
    );
    assert!(p.b.poll_transmit().is_none(), "answered an unknown SPI");
    (p, t.data, local, remote)
}

/// (3) The cheap-drop path: a well-formed header for an IKE SPI the endpoint does not hold.
fn drop_unknown_spi<M: Measurement>(c: &mut Criterion<M>) {
    let now = Instant::now();
    let (mut p, data, local, remote) = unknown_spi_setup(now);
    let before = p.b.stats().dropped_unknown_spi;
    // Every measured call must have taken the same path (counted, never answered). The count
    // also holds when a filter leaves this benchmark out (no runs).
    let mut runs = 0u64;
    let mut g = group(c, "drop");
    g.bench_function("unknown_spi", |bch| {
        bch.iter(|| {
            runs += 1;
            p.b.handle_datagram(now, local, remote, black_box(&data))
        })
    });
    g.finish();
    assert!(p.b.poll_transmit().is_none(), "answered an unknown SPI");
    assert_eq!(
        p.b.stats().dropped_unknown_spi,
        before + runs,
        "not dropped as unknown"
    );
    p.check_one_child();
}

/// A pair whose responder demands a COOKIE, and A's first IKE_SA_INIT request, which B has
/// answered once with N(COOKIE) and no state. Returns B's (local, remote) too.
fn cookie_request_setup(now: Instant) -> (Pair, Vec<u8>, SocketAddr, SocketAddr) {
    let s = Setup {
        cookie_threshold: 0,
        ..Setup::new(DhGroup::Curve25519)
    };
    let mut p = Pair::new(s, 1, now);
    p.a.initiate(now, "s2s", None).expect("connection s2s");
    let req = p.a.poll_transmit().expect("IKE_SA_INIT request");
    let (local, remote) = (req.remote, req.local);
    p.b.handle_datagram(now, local, remote, &req.data);
    let answer = p.b.poll_transmit().expect("a COOKIE answer");
    assert!(
        answer.data.len() < req.data.len(),
        "not a bare COOKIE answer"
    );
    assert_eq!(p.b.stats().cookies_sent, 1);
    assert_eq!(p.b.stats().half_open, 0, "state kept for a cookie request");
    (p, req.data, local, remote)
}

/// (4) The responder with `cookie_threshold = 0`: the stateless COOKIE answer to an
/// IKE_SA_INIT request, and a whole handshake that goes through the COOKIE round trip.
fn cookie<M: Measurement>(c: &mut Criterion<M>) {
    let now = Instant::now();
    let s = Setup {
        cookie_threshold: 0,
        ..Setup::new(DhGroup::Curve25519)
    };
    // The whole handshake with a COOKIE: one more request and response than without.
    let mut p = Pair::new(s, 0, now);
    p.handshake();
    p.check_one_child();
    assert_eq!(p.carried, 6, "handshake datagrams with a COOKIE round trip");
    assert_eq!(p.b.stats().cookies_sent, 1);
    assert_eq!(p.b.stats().cookies_accepted, 1);

    // One IKE_SA_INIT request, answered again and again with N(COOKIE) and no state.
    let (mut p, req, local, remote) = cookie_request_setup(now);

    // Every measured call must have been answered with a COOKIE, keeping no state.
    let (mut runs, mut answered) = (0u64, 0u64);
    let mut g = group(c, "cookie");
    g.bench_function("ike_sa_init_answer", |bch| {
        bch.iter(|| {
            runs += 1;
            p.b.handle_datagram(now, local, remote, black_box(&req));
            answered += u64::from(p.b.poll_transmit().is_some());
        })
    });
    assert_eq!(answered, runs, "a request was not answered");
    assert_eq!(
        p.b.stats().cookies_sent,
        1 + runs,
        "not answered with a COOKIE"
    );
    assert_eq!(p.b.stats().half_open, 0, "state kept for a cookie request");
    assert!(
        p.b.status(now).is_empty(),
        "state kept for a cookie request"
    );
    let mut seed = 1u64;
    g.bench_function("handshake-x25519", |bch| {
        bch.iter_batched(
            || {
                seed = seed.wrapping_add(1);
                Pair::new(s, seed, now)
            },
            |mut p| {
                p.handshake();
                p
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group! {
    name = cpu_time;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = handshake, rekey_child, drop_unknown_spi, cookie
}
criterion_group!(wall, handshake, rekey_child, drop_unknown_spi, cookie);

/// `FS_BENCH_COUNT=<scenario>:<n>`: no criterion; set the scenario up, run its measured step
/// `n` times and exit. Under `valgrind --tool=cachegrind`, the instructions of `n = 10` minus
/// those of `n = 0`, divided by 10, are the instructions of one step: a figure that does not
/// depend on what else the machine runs (see bench/README.md). Handshakes count the creation
/// and drop of the two endpoints too.
fn count_mode(spec: &str) {
    let (name, n) = spec.split_once(':').unwrap_or((spec, "10"));
    let n: u64 = n.parse().expect("FS_BENCH_COUNT=<scenario>:<n>");
    let now = Instant::now();
    let handshakes = |s: Setup| {
        for seed in 0..n {
            let mut p = Pair::new(s, seed, now);
            p.handshake();
            p.check_one_child();
        }
    };
    let rekeys = |pfs: Option<DhGroup>| {
        let s = Setup {
            pfs,
            ..Setup::new(DhGroup::Curve25519)
        };
        let mut p = Pair::new(s, 0, now);
        p.handshake();
        for _ in 0..n {
            p.rekey();
        }
        p.check_one_child();
    };
    match name {
        "handshake-x25519" => handshakes(Setup::new(DhGroup::Curve25519)),
        "handshake-ecp256" => handshakes(Setup::new(DhGroup::Ecp256)),
        "handshake-modp2048" => handshakes(Setup::new(DhGroup::Modp2048)),
        "cookie-handshake-x25519" => handshakes(Setup {
            cookie_threshold: 0,
            ..Setup::new(DhGroup::Curve25519)
        }),
        "rekey-no-pfs" => rekeys(None),
        "rekey-pfs-x25519" => rekeys(Some(DhGroup::Curve25519)),
        "drop-unknown-spi" => {
            let (mut p, data, local, remote) = unknown_spi_setup(now);
            for _ in 0..n {
                p.b.handle_datagram(now, local, remote, black_box(&data));
            }
            assert!(p.b.poll_transmit().is_none(), "answered an unknown SPI");
        }
        "cookie-answer" => {
            let (mut p, req, local, remote) = cookie_request_setup(now);
            for _ in 0..n {
                p.b.handle_datagram(now, local, remote, black_box(&req));
                assert!(p.b.poll_transmit().is_some(), "not answered");
            }
        }
        _ => panic!(
            "unknown scenario {name:?}: handshake-x25519, handshake-ecp256, handshake-modp2048, \
             cookie-handshake-x25519, rekey-no-pfs, rekey-pfs-x25519, drop-unknown-spi, \
             cookie-answer"
        ),
    }
}

fn main() {
    if let Some(spec) = std::env::var_os("FS_BENCH_COUNT") {
        count_mode(&spec.to_string_lossy());
        return;
    }
    if wall_time() {
        wall();
    } else {
        cpu_time();
    }
    Criterion::default().configure_from_args().final_summary();
}
