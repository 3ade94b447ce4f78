//! DoS resistance of the responder (cookie.rs): COOKIEs above the half-open threshold,
//! half-open caps, secret rotation, and a legitimate initiator during a flood.
use super::*;
use crate::cookie::{Limits, COOKIE_LEN};
use crate::IkeStats;
use fs_wire::ike::{notify_type as nt, Message, Payload};
use std::net::Ipv4Addr;

const B_IKE: &str = "200.2.2.2:500";

fn limits(threshold: usize, max: usize, per_source: usize) -> Limits {
    Limits {
        cookie_threshold: threshold,
        half_open_max: max,
        half_open_per_source_max: per_source,
        ..Limits::default()
    }
}

/// A real IKE_SA_INIT request (as our initiator sends it), to be varied per datagram.
fn template() -> Message {
    let (a, b) = pair();
    let mut sim = Sim::new(a, b, 4242);
    let now = sim.now;
    sim.a().ep.initiate(now, "s2s", None).unwrap();
    sim.pump();
    Message::parse(&sim.a().sent[0].data).unwrap()
}

fn request(t: &Message, spi: u64, nonce: &[u8], cookie: Option<&[u8]>) -> Vec<u8> {
    let mut m = t.clone();
    m.header.spi_i = spi;
    for p in &mut m.payloads {
        if let Payload::Nonce(n) = p {
            *n = nonce.to_vec();
        }
    }
    if let Some(c) = cookie {
        m.payloads
            .insert(0, Payload::notify(nt::COOKIE, c.to_vec()));
    }
    m.emit().unwrap()
}

/// Responder B accepting any peer address (so spoofed sources match its connection).
fn responder(l: Limits, seed: u64) -> Endpoint {
    let (_, mut b) = pair();
    b.remote_addrs.clear();
    Endpoint::new(
        Config {
            connections: vec![b],
            limits: l,
        },
        Box::new(TestRng::from_seed(seed)),
    )
}

fn src(x: u32) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (x & 0x00ff_ffff))),
        500,
    )
}

/// Feed one request; return the cookie if the only answer was N(COOKIE).
fn feed(ep: &mut Endpoint, now: Instant, from: SocketAddr, data: &[u8]) -> Option<Vec<u8>> {
    ep.handle_datagram(now, B_IKE.parse().unwrap(), from, data);
    let mut cookie = None;
    while let Some(t) = ep.poll_transmit() {
        assert_eq!(t.remote, from);
        let m = Message::parse(&t.data).unwrap();
        if let [Payload::Notify(n)] = m.payloads.as_slice() {
            if n.ntype == nt::COOKIE {
                assert_eq!(m.header.spi_r, 0, "stateless answer");
                cookie = Some(n.data.clone());
            }
        }
    }
    while ep.poll_event().is_some() {}
    cookie
}

fn check_bounds(ep: &Endpoint, l: &Limits) {
    let (sas, index, half, sources, tx) = ep.test_table_sizes();
    assert!(half <= l.half_open_max, "half-open {half}");
    assert!(sas <= l.half_open_max + 2, "SAs {sas}");
    assert!(index <= sas && sources <= half && tx == 0);
}

#[test]
fn flood_engages_cookies_and_legitimate_initiator_establishes() {
    let l = limits(50, 400, 25);
    let (a, mut b) = pair();
    b.remote_addrs.clear();
    let mut sim = Sim::new(a, b.clone(), 77);
    sim.nodes[1].ep.set_config(Config {
        connections: vec![b],
        limits: l,
    });
    let t = template();
    let mut x = Xs(0x1234_5678_9abc_def1);
    let b_local: SocketAddr = B_IKE.parse().unwrap();
    let a_ip: IpAddr = A.parse().unwrap();
    let mut sent = 0u64;
    let mut spoof_answers = 0u64;
    let mut initiated = false;
    let mut established_at = None;
    // 100k datagrams over 10 s of virtual time (1000 per 100 ms step); the legitimate
    // initiator starts once the flood is under way.
    for step in 0..100u64 {
        for _ in 0..1000 {
            let mut nonce = [0u8; 32];
            nonce[..8].copy_from_slice(&x.next().to_le_bytes());
            let from = src(x.next() as u32);
            let data = request(&t, x.next() | 1, &nonce, None);
            let now = sim.now;
            sim.nodes[1].ep.handle_datagram(now, b_local, from, &data);
            sent += 1;
            // Answers to spoofed sources vanish; anything for A goes through the network.
            let mut keep = Vec::new();
            while let Some(tr) = sim.nodes[1].ep.poll_transmit() {
                if tr.remote.ip() == a_ip {
                    keep.push(tr);
                } else {
                    spoof_answers += 1;
                }
            }
            for tr in keep {
                sim.nodes[1].sent.push(tr.clone());
                sim.push(1, tr, now + Duration::from_millis(5));
            }
        }
        check_bounds(&sim.nodes[1].ep, &l);
        if step == 5 {
            let now = sim.now;
            sim.a().ep.initiate(now, "s2s", None).unwrap();
            initiated = true;
        }
        let until = sim.now + Duration::from_millis(100) - sim.start;
        sim.run_until(until, |_| false);
        sim.now = sim.now.max(sim.start + until);
        if initiated && established_at.is_none() && sim.nodes[0].established() {
            established_at = Some(step);
        }
    }
    let st: IkeStats = sim.nodes[1].ep.stats().clone();
    eprintln!("flood: sent {sent}, answers to spoofed {spoof_answers}, {st:?}");
    assert!(
        established_at.is_some(),
        "legitimate initiator not established"
    );
    assert!(sim.run_until_children(1, Duration::from_secs(60)));
    assert!(st.cookies_sent > 90_000, "{st:?}");
    assert!(st.cookies_accepted >= 1, "A's retry carried a valid cookie");
    assert_eq!(
        st.half_open_peak, 51,
        "threshold + the legitimate SA: {st:?}"
    );
    assert_eq!(st.half_open_limit_drops, 0);
    // Half-open SAs of the flood expire; the established SA stays.
    let later = sim.now + Duration::from_secs(31);
    sim.nodes[1].ep.handle_timeout(later);
    let (sas, index, half, sources, _) = sim.nodes[1].ep.test_table_sizes();
    // (the IKE_SA_INIT index keeps the established SA's entry until it closes)
    assert_eq!((sas, index, half, sources), (1, 1, 0, 0));
    assert_eq!(sim.nodes[1].ep.stats().half_open_expired, 50);
}

#[test]
fn no_sa_without_valid_cookie_over_threshold() {
    // Property: over the threshold, no request without a valid cookie allocates anything.
    let l = limits(0, 100, 100);
    let t = template();
    let mut ep = responder(l, 1);
    let now = Instant::now();
    let mut x = Xs(99);
    let mut issued: Vec<(SocketAddr, u64, [u8; 32], Vec<u8>)> = Vec::new();
    for i in 0..2000u32 {
        let from = src(x.next() as u32);
        let spi = x.next() | 1;
        let mut nonce = [0u8; 32];
        nonce[..8].copy_from_slice(&x.next().to_le_bytes());
        // Variants: no cookie, random cookie, someone else's cookie, own cookie altered.
        let cookie: Option<Vec<u8>> = match i % 4 {
            0 => None,
            1 => {
                let mut c = vec![0u8; (x.next() % 64 + 1) as usize];
                c.iter_mut().for_each(|b| *b = x.next() as u8);
                Some(c)
            }
            2 => issued.last().map(|c| c.3.clone()),
            _ => issued.last().map(|c| {
                let mut c = c.3.clone();
                c[5] ^= 1;
                c
            }),
        };
        let got = feed(
            &mut ep,
            now,
            from,
            &request(&t, spi, &nonce, cookie.as_deref()),
        );
        let c = got.expect("answered with a cookie only");
        assert_eq!(c.len(), COOKIE_LEN);
        issued.push((from, spi, nonce, c));
        assert_eq!(
            ep.test_table_sizes().0,
            0,
            "SA allocated without a valid cookie"
        );
    }
    let st = ep.stats().clone();
    assert_eq!(st.cookies_sent, 2000);
    assert!(st.cookie_invalid >= 1499, "{st:?}");
    assert_eq!(st.half_open_peak, 0);
    // A cookie is bound to (Ni, IPi, SPIi): returned by the right initiator it works.
    let (from, spi, nonce, c) = issued[0].clone();
    let other = src(x.next() as u32);
    assert!(feed(&mut ep, now, other, &request(&t, spi, &nonce, Some(&c))).is_some());
    let mut n2 = nonce;
    n2[31] ^= 1;
    assert!(feed(&mut ep, now, from, &request(&t, spi, &n2, Some(&c))).is_some());
    assert!(feed(&mut ep, now, from, &request(&t, spi ^ 2, &nonce, Some(&c))).is_some());
    assert_eq!(ep.test_table_sizes().0, 0);
    assert!(feed(&mut ep, now, from, &request(&t, spi, &nonce, Some(&c))).is_none());
    assert_eq!(ep.test_table_sizes().0, 1);
    assert_eq!(ep.stats().half_open, 1);
}

#[test]
fn rotated_cookie_valid_one_more_period_then_rejected() {
    let l = limits(0, 100, 100);
    let p = l.cookie_secret_lifetime;
    let t = template();
    let mut ep = responder(l, 2);
    let t0 = Instant::now();
    let from = src(7);
    let get = |ep: &mut Endpoint, now, spi: u64| {
        feed(ep, now, from, &request(&t, spi, &[spi as u8; 32], None)).unwrap()
    };
    let c1 = get(&mut ep, t0, 11);
    let c2 = get(&mut ep, t0, 12);
    let c3 = get(&mut ep, t0, 13);
    // After one rotation the previous secret still validates.
    let t1 = t0 + p + Duration::from_secs(1);
    let fresh = get(&mut ep, t1, 14);
    assert_ne!(fresh[..4], c1[..4], "new secret version after a period");
    assert!(feed(&mut ep, t1, from, &request(&t, 11, &[11; 32], Some(&c1))).is_none());
    assert_eq!(ep.stats().half_open, 1);
    // Two periods after its rotation out: rejected (counted), a fresh cookie is sent.
    let t2 = t1 + p + Duration::from_secs(1);
    let again = feed(&mut ep, t2, from, &request(&t, 12, &[12; 32], Some(&c2))).unwrap();
    assert_ne!(again[..4], c2[..4]);
    assert_eq!(ep.stats().cookie_invalid, 1);
    assert_eq!(ep.stats().half_open, 1);
    // Also without any activity in between (lazy rotation).
    let mut ep2 = responder(l, 3);
    let c = get(&mut ep2, t0, 21);
    let late = t0 + 2 * p + Duration::from_secs(1);
    assert!(feed(&mut ep2, late, from, &request(&t, 21, &[21; 32], Some(&c))).is_some());
    assert_eq!(ep2.stats().cookie_invalid, 1);
    assert_eq!(ep2.test_table_sizes().0, 0);
    let _ = c3;
}

#[test]
fn invalid_cookie_rejected_and_counted() {
    let l = limits(0, 100, 100);
    let t = template();
    let mut ep = responder(l, 4);
    let now = Instant::now();
    let from = src(9);
    let c = feed(&mut ep, now, from, &request(&t, 5, &[5; 32], None)).unwrap();
    for bad in [
        vec![],
        vec![0u8; COOKIE_LEN],
        c[..COOKIE_LEN - 1].to_vec(),
        {
            let mut x = c.clone();
            x[COOKIE_LEN - 1] ^= 0x80;
            x
        },
    ] {
        let data = request(&t, 5, &[5; 32], Some(&bad));
        assert!(feed(&mut ep, now, from, &data).is_some());
    }
    assert_eq!(ep.stats().cookie_invalid, 4);
    assert_eq!(ep.test_table_sizes().0, 0);
    // Below the threshold a cookie is ignored (RFC 7296 2.6): any value is fine.
    let mut ep = responder(limits(10, 100, 100), 5);
    let data = request(&t, 5, &[5; 32], Some(&[1, 2, 3]));
    assert!(feed(&mut ep, now, from, &data).is_none());
    assert_eq!(ep.test_table_sizes().0, 1);
    assert_eq!(ep.stats().cookie_invalid, 0);
}

#[test]
fn half_open_caps_and_configurable_timeout() {
    let mut l = limits(1000, 20, 3);
    l.half_open_timeout = Duration::from_secs(5);
    let t = template();
    let mut ep = responder(l, 6);
    let now = Instant::now();
    // Per source: 3 of 10 from one address.
    for spi in 1..=10u64 {
        feed(
            &mut ep,
            now,
            src(1),
            &request(&t, spi, &[spi as u8; 32], None),
        );
    }
    assert_eq!(ep.test_table_sizes().2, 3);
    assert_eq!(ep.stats().half_open_limit_drops, 7);
    // Total: 20 from 100 sources.
    for s in 2..102u32 {
        feed(
            &mut ep,
            now,
            src(s),
            &request(&t, s as u64 + 100, &[s as u8; 32], None),
        );
        check_bounds(&ep, &l);
    }
    assert_eq!(ep.test_table_sizes().2, 20);
    assert_eq!(ep.stats().half_open_peak, 20);
    assert_eq!(ep.stats().half_open_limit_drops, 7 + 83);
    // The configured timeout (5 s, not the 30 s default) empties the tables.
    ep.handle_timeout(now + Duration::from_secs(4));
    assert_eq!(ep.test_table_sizes().2, 20);
    let later = now + Duration::from_secs(6);
    assert_eq!(ep.poll_timeout(), Some(now + Duration::from_secs(5)));
    ep.handle_timeout(later);
    assert_eq!(ep.test_table_sizes(), (0, 0, 0, 0, 0));
    assert_eq!(ep.stats().half_open_expired, 20);
    assert_eq!(ep.stats().half_open, 0);
    // Room again.
    assert!(feed(&mut ep, later, src(1), &request(&t, 999, &[1; 32], None)).is_none());
    assert_eq!(ep.test_table_sizes().2, 1);
}
