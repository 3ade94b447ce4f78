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

/// Retransmission backoff `timeout * base^n` at its extremes (huge, infinite, NaN base; huge
/// timeout; unbounded tries): every timeout is clamped (at most a day), no panic.
#[test]
fn retransmit_backoff_extremes_never_panic() {
    for (timeout, base) in [
        (Duration::MAX, f64::MAX),
        (Duration::from_secs(u64::MAX), 2.0),
        (Duration::ZERO, f64::INFINITY),
        (Duration::from_secs(1), f64::NAN),
        (Duration::from_secs(1), -5.0),
    ] {
        let (mut a, b) = pair();
        a.retransmit = RetransmitConfig {
            timeout,
            base,
            tries: u32::MAX,
        };
        a.dpd_delay = Some(Duration::MAX);
        let mut sim = Sim::new(a, b, 9200);
        sim.blackhole[1] = true; // B never answers
        let now = sim.now;
        sim.a().ep.initiate(now, "s2s", None).unwrap();
        sim.run_until(Duration::from_secs(30 * 86_400), |s| {
            s.nodes[0].ep.stats().retransmits_sent >= 20
        });
        let st = sim.a().ep.stats().clone();
        assert!(st.retransmits_sent >= 20, "{timeout:?} {base}: {st:?}");
        // At most a day between two transmissions.
        assert!(sim.now - sim.start <= Duration::from_secs(21 * 86_400));
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
    request_child(sim, i, None)
}

/// ... or for a rekey of the CHILD_SA whose inbound SPI at A is `rekey`.
fn request_child(
    sim: &mut Sim,
    i: u32,
    rekey: Option<fs_wire::EspSpi>,
) -> Vec<fs_wire::ike::Payload> {
    use fs_wire::ike::{exchange, protocol_id, Notify, Payload};
    let prop = crate::proposals::esp_to_wire(
        1,
        &esp("aes256gcm16"),
        fs_wire::EspSpi(0x5000_0000 | i),
        false,
    );
    let rekey = rekey.map(|spi| {
        Payload::Notify(Notify {
            protocol: protocol_id::ESP,
            spi: spi.to_be_bytes().to_vec(),
            ntype: fs_wire::ike::notify_type::REKEY_SA,
            data: vec![],
        })
    });
    let payloads: Vec<Payload> = rekey
        .into_iter()
        .chain([
            Payload::Sa(vec![prop]),
            Payload::Nonce(vec![i as u8; 32]),
            Payload::TsI(vec![ts("192.168.1.0/24")]),
            Payload::TsR(vec![ts("192.168.2.0/24")]),
        ])
        .collect();
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

/// Rekeys are accepted at the cap, but a peer that rekeys without ever deleting the replaced
/// CHILD_SAs is stopped at twice the cap (TEMPORARY_FAILURE).
#[test]
fn child_sa_cap_bounds_rekeys_never_deleted() {
    use fs_wire::ike::{notify_type as nt, Payload};
    let mut sim = capped_sim(2, |_| {}, 9102);
    sim.establish();
    let first = sim.nodes[0].children()[0].inbound.spi;
    let mut rekeyed = first;
    let mut kinds = vec![];
    for i in 0..6u32 {
        let resp = request_child(&mut sim, i, Some(rekeyed));
        let notify = resp.iter().find_map(|p| match p {
            Payload::Notify(n) if nt::is_error(n.ntype) => Some(n.ntype),
            _ => None,
        });
        if notify.is_none() {
            rekeyed = fs_wire::EspSpi(0x5000_0000 | i);
        }
        kinds.push(notify);
    }
    // 1 child + 3 accepted rekeys = 4 held (2 x cap), then TEMPORARY_FAILURE.
    assert_eq!(
        kinds,
        [
            None,
            None,
            None,
            Some(nt::TEMPORARY_FAILURE),
            Some(nt::TEMPORARY_FAILURE),
            Some(nt::TEMPORARY_FAILURE)
        ]
    );
    assert_eq!(b_children(&sim), 4);
    // A new CHILD_SA: one installed (the last rekey), under the cap of 2 -> accepted.
    let resp = request_new_child(&mut sim, 100);
    assert!(resp.iter().any(|p| matches!(p, Payload::Sa(_))), "{resp:?}");
    let resp = request_new_child(&mut sim, 101);
    assert!(resp
        .iter()
        .any(|p| matches!(p, Payload::Notify(n) if n.ntype == nt::NO_ADDITIONAL_SAS)));
    assert_eq!(sim.b().ep.stats().child_limit_refused, 4);
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

// ------------------------------------------------------------------ unique policy

/// Responder B (any peer address) and peers with A's identity and PSK, each at its own
/// address; datagrams are delivered at once, by address (no loss).
struct Net {
    now: Instant,
    b: Node,
    peers: Vec<Node>,
}

fn peer(ip: &str, seed: u64, omit_initial_contact: bool) -> Node {
    let (mut a, _) = pair();
    a.local_addrs = vec![ip.parse().unwrap()];
    let mut ep = Endpoint::new(
        Config {
            connections: vec![a],
            ..Default::default()
        },
        Box::new(TestRng::from_seed(seed)),
    );
    ep.test_omit_initial_contact = omit_initial_contact;
    Node {
        ep,
        addr: ip.parse().unwrap(),
        events: vec![],
        sent: vec![],
    }
}

impl Net {
    fn new(unique: crate::UniquePolicy) -> Net {
        let (_, mut b) = pair();
        b.remote_addrs.clear();
        b.unique = unique;
        let ep = Endpoint::new(
            Config {
                connections: vec![b],
                ..Default::default()
            },
            Box::new(TestRng::from_seed(31337)),
        );
        Net {
            now: Instant::now(),
            b: Node {
                ep,
                addr: B.parse().unwrap(),
                events: vec![],
                sent: vec![],
            },
            peers: vec![],
        }
    }

    fn deliver(&mut self) {
        let now = self.now;
        loop {
            let mut moved = false;
            while let Some(e) = self.b.ep.poll_event() {
                self.b.events.push(e);
            }
            while let Some(t) = self.b.ep.poll_transmit() {
                moved = true;
                if let Some(p) = self.peers.iter_mut().find(|p| p.addr == t.remote.ip()) {
                    p.ep.handle_datagram(now, t.remote, t.local, &t.data);
                }
            }
            for p in &mut self.peers {
                while let Some(e) = p.ep.poll_event() {
                    p.events.push(e);
                }
                while let Some(t) = p.ep.poll_transmit() {
                    moved = true;
                    self.b.ep.handle_datagram(now, t.remote, t.local, &t.data);
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// Let `d` of virtual time pass, running every timer.
    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            self.deliver();
            let next = std::iter::once(&self.b)
                .chain(&self.peers)
                .filter_map(|n| n.ep.poll_timeout())
                .min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    let now = self.now;
                    for n in std::iter::once(&mut self.b).chain(&mut self.peers) {
                        if n.ep.poll_timeout().is_some_and(|t| t <= now) {
                            n.ep.handle_timeout(now);
                        }
                    }
                }
                _ => {
                    self.now = end;
                    return;
                }
            }
        }
    }

    /// Peer `i` initiates; the exchanges run to completion.
    fn connect(&mut self, i: usize) {
        let now = self.now;
        self.peers[i].ep.initiate(now, "s2s", None).unwrap();
        self.deliver();
    }

    /// B's IKE SAs in the given state.
    fn b_sas(&self, state: &str) -> usize {
        let st = self.b.ep.status(self.now);
        st.iter().filter(|s| s.state == state).count()
    }
}

fn closed_reasons(n: &Node) -> Vec<CloseReason> {
    n.events
        .iter()
        .filter_map(|e| match e {
            Event::IkeSaClosed { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

/// Issue 9 item 6: a peer that omits INITIAL_CONTACT opened 2,001 IKE SAs with the same
/// identity. With `unique = replace` (the default) a peer restarting 100 times from the same
/// address holds at most two established IKE SAs at any time (the newest, and the previous
/// one during its reauthentication grace) plus one whose Delete goes unanswered, and exactly
/// one once the grace is over.
#[test]
fn unique_replace_same_address_keeps_one() {
    let mut net = Net::new(crate::UniquePolicy::default());
    let mut peak = (0, 0);
    for k in 0..100u64 {
        // The peer restarts (its old state is gone) and reconnects without INITIAL_CONTACT.
        net.peers = vec![peer(A, 500 + k, true)];
        net.connect(0);
        assert!(net.peers[0].established(), "reconnect {k}");
        let est = net.b_sas("ESTABLISHED");
        assert!(est <= 2, "reconnect {k}: {est} established IKE SAs");
        let held = net.b.ep.test_table_sizes().0;
        assert!(held <= 3, "reconnect {k}: {held} IKE SAs held");
        peak = peak.max((est, held));
        net.advance(Duration::from_secs(1));
    }
    println!(
        "unique = replace, 100 reconnects from one address: peak {} established / {} held \
         IKE SAs",
        peak.0, peak.1
    );
    // The waiting one is deleted after its grace; unanswered Deletes time out.
    net.advance(Duration::from_secs(3600));
    assert_eq!(net.b.ep.status(net.now).len(), 1);
    assert_eq!(net.b.ep.test_table_sizes().0, 1);
}

/// `unique = replace` from other addresses: the old IKE SA is deleted at once (Delete
/// exchange, which its peer sees).
#[test]
fn unique_replace_other_address_deletes_at_once() {
    let mut net = Net::new(crate::UniquePolicy::Replace);
    for k in 0..20usize {
        net.peers
            .push(peer(&format!("100.1.1.{}", k + 1), 600 + k as u64, true));
        net.connect(k);
        assert!(net.peers[k].established());
        assert_eq!(net.b.ep.status(net.now).len(), 1, "after peer {k}");
        if k > 0 {
            assert_eq!(
                closed_reasons(&net.peers[k - 1]),
                vec![CloseReason::Deleted { by_peer: true }]
            );
        }
    }
}

/// `unique = keep`: a newcomer with the same identity is refused (AUTHENTICATION_FAILED)
/// while the first IKE SA is established, from another address or the same one; with
/// INITIAL_CONTACT the old one is removed first and the newcomer accepted.
#[test]
fn unique_keep_refuses_newcomer() {
    let mut net = Net::new(crate::UniquePolicy::Keep);
    net.peers.push(peer("100.1.1.1", 700, true));
    net.connect(0);
    let first = net.b.ep.status(net.now)[0].id;
    net.peers.push(peer("100.1.1.2", 701, true));
    net.connect(1);
    assert!(!net.peers[1].established());
    assert_eq!(
        net.peers[1].closed(),
        Some(CloseReason::AuthenticationFailed { by_peer: true })
    );
    assert_eq!(closed_reasons(&net.b), vec![CloseReason::UniqueKeep]);
    // The same address, restarted without INITIAL_CONTACT: refused too.
    net.peers[0] = peer("100.1.1.1", 702, true);
    net.connect(0);
    assert!(!net.peers[0].established());
    let st = net.b.ep.status(net.now);
    assert_eq!((st.len(), st[0].id), (1, first));
    assert!(net.peers[1].children().is_empty());
    // With INITIAL_CONTACT: the stale one goes, the newcomer stays.
    net.peers[0] = peer("100.1.1.1", 703, false);
    net.connect(0);
    assert!(net.peers[0].established());
    let st = net.b.ep.status(net.now);
    assert_eq!(st.len(), 1);
    assert_ne!(st[0].id, first);
}

/// `unique = no`: several IKE SAs per identity, INITIAL_CONTACT still closes the old ones.
/// `unique = never`: INITIAL_CONTACT is ignored too.
#[test]
fn unique_no_and_never() {
    for (policy, after_ic) in [
        (crate::UniquePolicy::No, 1),
        (crate::UniquePolicy::Never, 6),
    ] {
        let mut net = Net::new(policy);
        for k in 0..5usize {
            net.peers
                .push(peer(&format!("100.1.1.{}", k + 1), 800 + k as u64, true));
            net.connect(k);
        }
        assert_eq!(net.b_sas("ESTABLISHED"), 5, "{policy:?}");
        net.peers.push(peer("100.1.1.9", 809, false));
        net.connect(5);
        assert!(net.peers[5].established());
        assert_eq!(net.b.ep.status(net.now).len(), after_ic, "{policy:?}");
    }
}
