//! Hostile values and hostile peers (issue 9): configuration durations that would overflow
//! `Instant` arithmetic, per-peer limits (CHILD_SAs per IKE SA, the `unique` policy), IKE
//! datagrams from UDP source port 0, and INVALID_MAJOR_VERSION answers.
use super::*;
use crate::cookie::Limits;

/// Durations that overflow `Instant + Duration` (the largest a config can express).
const HUGE: [Duration; 3] = [
    Duration::MAX,
    Duration::from_secs(u64::MAX),
    Duration::from_secs(i64::MAX as u64),
];

/// Every duration setting of both connections (and of B's `[limits]`) set to `d`, plus the
/// retransmission backoff at its extreme; `reauth` selects reauthentication over rekeying.
fn huge_sim(d: Duration, reauth: bool, nat: bool, seed: u64) -> Sim {
    let (mut a, mut b) = pair();
    if nat {
        a.local_addrs = vec!["10.1.1.1".parse().unwrap()];
    }
    for c in [&mut a, &mut b] {
        c.dpd_delay = Some(d);
        c.nat_keepalive = Some(d);
        c.life_time = Some(d);
        c.rand_time = Some(d);
        if reauth {
            c.reauth_time = Some(d);
        } else {
            c.rekey_time = Some(d);
        }
        c.retransmit = RetransmitConfig {
            timeout: d,
            base: f64::MAX,
            tries: u32::MAX,
        };
        for ch in &mut c.children {
            ch.rekey_time = Some(d);
            ch.life_time = Some(d);
            ch.rand_time = Some(d);
        }
    }
    let mut sim = Sim::new(a, b.clone(), seed);
    if nat {
        sim.nat = Some(Nat::new(A));
    }
    sim.nodes[1].ep.set_config(Config {
        connections: vec![b],
        limits: Limits {
            half_open_timeout: d,
            cookie_secret_lifetime: d,
            // Cookies on every IKE_SA_INIT: the secret lifetime is used too.
            cookie_threshold: 0,
            ..Limits::default()
        },
    });
    sim
}

/// Issue 9 item 4: `limits.half_open_timeout = 9223372036854775807` panicked at the first
/// IKE_SA_INIT, a huge `dpd_delay` once the SA was up; the same for the NAT keepalive, the
/// superseded-SA grace (after an IKE rekey), retransmission backoff, lifetimes and jitter.
#[test]
fn huge_durations_never_panic() {
    for (i, d) in HUGE.into_iter().enumerate() {
        for (reauth, nat) in [(false, false), (true, false), (false, true)] {
            let mut sim = huge_sim(d, reauth, nat, 9000 + i as u64);
            sim.establish();
            // Timers are armed far in the future, not overflowed nor fired.
            let far = sim.now + Duration::from_secs(10 * 365 * 86_400);
            for n in &sim.nodes {
                assert!(n.ep.poll_timeout().is_none_or(|t| t > far), "{d:?}");
            }
            let st = sim.nodes[0].ep.status(sim.now);
            assert_eq!(st.len(), 1);
            // IKE and CHILD rekeys: the superseded IKE SA's grace and the new SAs' timers.
            let now = sim.now;
            sim.a().ep.rekey(now, "s2s", None).unwrap();
            sim.a().ep.rekey(now, "s2s", Some("net")).unwrap();
            assert!(sim.run_until(Duration::from_secs(600), |s| settled(s, 1)));
            for n in &mut sim.nodes {
                n.ep.handle_timeout(far);
            }
            sim.run_until(Duration::from_secs(3600), |_| false);
            let now = sim.now;
            sim.a().ep.terminate(now, "s2s").unwrap();
            sim.run_until(Duration::from_secs(7200), |s| {
                s.nodes.iter().all(|n| n.ep.status(s.now).is_empty())
            });
        }
    }
}

/// The IKE_SA_INIT request A sends to B, and B's endpoint (fresh, nothing sent yet).
fn init_request() -> (Vec<u8>, Endpoint) {
    let (a, b) = pair();
    let mut sim = Sim::new(a, b.clone(), 4243);
    let now = sim.now;
    sim.a().ep.initiate(now, "s2s", None).unwrap();
    sim.pump();
    let b = Endpoint::new(
        Config {
            connections: vec![b],
            ..Default::default()
        },
        Box::new(TestRng::from_seed(99)),
    );
    (sim.nodes[0].sent[0].data.clone(), b)
}

fn drain(ep: &mut Endpoint) -> Vec<Transmit> {
    while ep.poll_event().is_some() {}
    std::iter::from_fn(|| ep.poll_transmit()).collect()
}

const B_IKE: &str = "200.2.2.2:500";

/// Issue 9 item 10: IKE datagrams from UDP source port 0 are dropped and counted, without
/// processing (no state, no answer).
#[test]
fn source_port_zero_dropped_and_counted() {
    let (req, mut b) = init_request();
    let local: SocketAddr = B_IKE.parse().unwrap();
    let now = Instant::now();
    for _ in 0..1000 {
        b.handle_datagram(now, local, "100.1.1.1:0".parse().unwrap(), &req);
    }
    assert!(drain(&mut b).is_empty(), "no answer to port 0");
    assert_eq!(b.test_table_sizes().0, 0, "no IKE SA");
    let st = b.stats().clone();
    assert_eq!(st.dropped_source_port_zero, 1000);
    assert_eq!(st.dropped_malformed, 0);
    // The same request from a real port is answered.
    b.handle_datagram(now, local, "100.1.1.1:500".parse().unwrap(), &req);
    assert_eq!(drain(&mut b).len(), 1);
    assert_eq!(b.stats().dropped_source_port_zero, 1000);
}

/// Issue 9 item 10 / RFC 7296 2.5, 1.5: a request with major version 3 gets an unencrypted
/// INVALID_MAJOR_VERSION response carrying version 2.0, SPIs, exchange and message ID copied;
/// responses get nothing; a flood is answered at the rate limit and the rest counted.
#[test]
fn invalid_major_version_answered_rate_limited() {
    use crate::endpoint::MAJOR_VERSION_ANSWERS_PER_SEC as RATE;
    use fs_wire::ike::{flags, notify_type as nt, Header, Message, Payload};
    let (mut req, mut b) = init_request();
    req[17] = 0x30; // version 3.0
    let h = Header::parse(&req).unwrap();
    let (local, from): (SocketAddr, SocketAddr) =
        (B_IKE.parse().unwrap(), "100.1.1.1:500".parse().unwrap());
    let t0 = Instant::now();
    b.handle_datagram(t0, local, from, &req);
    let out = drain(&mut b);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].local, out[0].remote), (local, from));
    let m = Message::parse(&out[0].data).unwrap();
    assert_eq!(m.header.version, 0x20, "the highest version we support");
    assert_eq!((m.header.spi_i, m.header.spi_r), (h.spi_i, h.spi_r));
    assert_eq!(m.header.exchange, h.exchange);
    assert_eq!(m.header.message_id, h.message_id);
    assert_eq!(
        m.header.flags,
        flags::RESPONSE,
        "response, from the responder"
    );
    match m.payloads.as_slice() {
        [Payload::Notify(n)] => {
            assert_eq!(n.ntype, nt::INVALID_MAJOR_VERSION);
            assert!(n.data.is_empty() && n.spi.is_empty());
        }
        p => panic!("unexpected payloads {p:?}"),
    }
    assert_eq!(b.test_table_sizes().0, 0, "no state kept");
    // A response with a higher version is dropped silently.
    let mut resp = req.clone();
    resp[19] |= flags::RESPONSE;
    b.handle_datagram(t0, local, from, &resp);
    assert!(drain(&mut b).is_empty());
    // Version 1 (IKEv1) is not "higher": dropped as malformed, no answer.
    let mut v1 = req.clone();
    v1[17] = 0x10;
    b.handle_datagram(t0, local, from, &v1);
    assert!(drain(&mut b).is_empty());
    // A flood of 10,000 over 2 s: the burst plus the rate, the rest suppressed.
    let mut answered = 0u64;
    for i in 0..10_000u64 {
        b.handle_datagram(t0 + Duration::from_micros(200 * i), local, from, &req);
        answered += drain(&mut b).len() as u64;
    }
    let st = b.stats().clone();
    let limit = u64::from(RATE) * 3;
    assert!(answered <= limit, "{answered} answers");
    assert!(answered >= u64::from(RATE) * 2 - 1, "{answered} answers");
    assert_eq!(st.invalid_major_version_sent, answered + 1);
    assert_eq!(st.invalid_major_version_suppressed, 10_000 - answered);
    assert_eq!(
        st.dropped_malformed, 2,
        "the response and the IKEv1 message"
    );
    println!(
        "INVALID_MAJOR_VERSION flood: 10000 requests in 2 s, {answered} answered, {} suppressed",
        st.invalid_major_version_suppressed
    );
}

/// A pair whose responder B holds at most `max` CHILD_SAs per IKE SA.
fn capped_sim(max: usize, tweak: impl Fn(&mut ConnConfig), seed: u64) -> Sim {
    let (mut a, mut b) = pair();
    tweak(&mut a);
    tweak(&mut b);
    let mut sim = Sim::new(a, b.clone(), seed);
    sim.nodes[1].ep.set_config(Config {
        connections: vec![b],
        limits: Limits {
            max_children_per_ike_sa: max,
            ..Limits::default()
        },
    });
    sim
}

/// A sends B a CREATE_CHILD_SA request for a new CHILD_SA (A keeps no state for it); B's
/// answer, decrypted.
fn request_new_child(sim: &mut Sim, i: u32) -> Vec<fs_wire::ike::Payload> {
    use fs_wire::ike::{exchange, Payload};
    let prop = crate::proposals::esp_to_wire(1, &esp("aes256gcm16"), 0x5000_0000 | i, false);
    let payloads = [
        Payload::Sa(vec![prop]),
        Payload::Nonce(vec![i as u8; 32]),
        Payload::TsI(vec![ts("192.168.1.0/24")]),
        Payload::TsR(vec![ts("192.168.2.0/24")]),
    ];
    let t = sim.nodes[0]
        .ep
        .test_request("s2s", exchange::CREATE_CHILD_SA, &payloads)
        .unwrap();
    let now = sim.now;
    sim.nodes[1]
        .ep
        .handle_datagram(now, t.remote, t.local, &t.data);
    let resp = sim.nodes[1].ep.poll_transmit().expect("an answer");
    assert!(sim.nodes[1].ep.poll_transmit().is_none());
    sim.nodes[0].ep.test_open("s2s", &resp.data).unwrap()
}

fn b_children(sim: &Sim) -> usize {
    sim.nodes[1].ep.status(sim.now)[0].child_sas.len()
}

/// Issue 9 item 6: 20,000 CREATE_CHILD_SA requests on one IKE SA gave 20,001 CHILD_SAs. With
/// the default cap (64), 200 requests: the IKE_AUTH child plus 63 are installed, the other
/// 137 are answered NO_ADDITIONAL_SAS; a rekey of an existing child still works at the cap.
#[test]
fn child_sa_cap_answers_no_additional_sas() {
    use fs_wire::ike::{notify_type as nt, Payload};
    let max = crate::DEFAULT_MAX_CHILDREN_PER_IKE_SA;
    let mut sim = capped_sim(max, |_| {}, 9100);
    sim.establish();
    let (mut installed, mut refused) = (0usize, 0usize);
    for i in 0..200 {
        let resp = request_new_child(&mut sim, i);
        let notify = |t| {
            resp.iter()
                .any(|p| matches!(p, Payload::Notify(n) if n.ntype == t))
        };
        if notify(nt::NO_ADDITIONAL_SAS) {
            assert_eq!(resp.len(), 1, "only the notify");
            refused += 1;
        } else {
            assert!(resp.iter().any(|p| matches!(p, Payload::Sa(_))), "{resp:?}");
            installed += 1;
        }
    }
    println!(
        "200 CREATE_CHILD_SA requests, cap {max}: {} CHILD_SAs, {installed} installed by \
         CREATE_CHILD_SA, {refused} NO_ADDITIONAL_SAS",
        b_children(&sim)
    );
    assert_eq!(b_children(&sim), max);
    assert_eq!((installed, refused), (max - 1, 200 - (max - 1)));
    assert_eq!(sim.b().ep.stats().child_limit_refused, refused as u64);
    // The refusals are not events (a flood would otherwise be one log line each).
    sim.pump();
    let failed = sim.nodes[1].events.iter();
    assert_eq!(
        failed
            .filter(|e| matches!(e, Event::ChildSaFailed { .. }))
            .count(),
        0
    );
    // Rekeying the IKE_AUTH child at the cap: accepted (it replaces one), count unchanged.
    let before = sim.nodes[0].children()[0].inbound.spi;
    let now = sim.now;
    sim.a().ep.rekey(now, "s2s", Some("net")).unwrap();
    assert!(sim.run_until(Duration::from_secs(60), |s| idle(s)
        && !s.nodes[0]
            .children()
            .iter()
            .any(|c| c.inbound.spi == before)));
    assert_eq!(b_children(&sim), max);
    assert_eq!(sim.b().ep.stats().child_limit_refused, refused as u64);
    assert!(sim.nodes[0].child_failed().is_none());
}

/// Our initiator refused by a peer's cap gets a typed ChildSaFailed (NO_ADDITIONAL_SAS by
/// peer); the IKE SA and its first CHILD_SA stay up (RFC 7296 1.3.1).
#[test]
fn child_sa_cap_refusal_seen_by_initiator() {
    let mut sim = capped_sim(
        1,
        |c| {
            let mut second = c.children[0].clone();
            second.name = "net2".into();
            c.children.push(second);
        },
        9101,
    );
    let now = sim.now;
    sim.a().ep.initiate(now, "s2s", None).unwrap();
    sim.run_until(Duration::from_secs(60), |s| {
        s.nodes[0].child_failed().is_some()
    });
    assert_eq!(
        sim.nodes[0].child_failed(),
        Some(CloseReason::NoAdditionalSas { by_peer: true })
    );
    assert!(sim.run_until(Duration::from_secs(60), |s| settled(s, 1)));
    assert_eq!(sim.b().ep.stats().child_limit_refused, 1);
}
