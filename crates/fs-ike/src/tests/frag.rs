//! IKE fragmentation (RFC 7383) in simulation: negotiation, fragmented IKE_AUTH both ways,
//! reordering/duplication/loss, forged fragments, memory caps, SKF wire layout.
use super::*;
use crate::endpoint::IkeStats;
use crate::fragment::{self, FragState, Verdict, Window, MAX_FRAGMENTS, MAX_REASSEMBLED};
use fs_crypto::Transform as Cipher;
use fs_wire::ike::{exchange, notify_type as nt, payload_type, Message, Payload};

/// Extra subnets to make IKE_AUTH (TSi/TSr) big.
fn many_ts(base: u8, n: u8) -> Vec<fs_wire::ts::TrafficSelector> {
    (0..n).map(|i| ts(&format!("10.{base}.{i}.0/24"))).collect()
}

/// A pair whose IKE_AUTH messages exceed `fragment_size` in both directions.
fn big_pair(fragment_size: usize) -> (ConnConfig, ConnConfig) {
    let (mut a, mut b) = pair();
    for (c, mine, theirs) in [(&mut a, 1, 2), (&mut b, 2, 1)] {
        c.fragment_size = fragment_size;
        c.children[0].local_ts.extend(many_ts(mine, 12));
        c.children[0].remote_ts.extend(many_ts(theirs, 12));
    }
    (a, b)
}

fn parse(t: &Transmit) -> Message {
    Message::parse(&t.data).expect("own datagrams parse")
}

/// (exchange, message ID, fragment number, total, first_inner) of every SKF datagram sent.
fn skf_sent(n: &Node) -> Vec<(u8, u32, u16, u16, u8)> {
    n.sent
        .iter()
        .filter_map(|t| {
            let m = parse(t);
            match m.payloads.last() {
                Some(Payload::Skf {
                    first_inner,
                    fragment_number,
                    total_fragments,
                    ..
                }) => Some((
                    m.header.exchange,
                    m.header.message_id,
                    *fragment_number,
                    *total_fragments,
                    *first_inner,
                )),
                _ => None,
            }
        })
        .collect()
}

fn init_has_frag_notify(n: &Node) -> bool {
    n.sent.iter().any(|t| {
        let m = parse(t);
        m.header.exchange == exchange::IKE_SA_INIT
            && m.notify(nt::IKEV2_FRAGMENTATION_SUPPORTED).is_some()
    })
}

#[test]
fn fragmented_ike_auth_both_ways() {
    let (a, b) = big_pair(300);
    let mut sim = Sim::new(a, b, 7);
    sim.establish();
    for i in 0..2 {
        let n = &sim.nodes[i];
        assert!(
            init_has_frag_notify(n),
            "node {i}: no N(IKEV2_FRAGMENTATION_SUPPORTED)"
        );
        let f = skf_sent(n);
        assert!(
            f.iter().any(|x| x.0 == exchange::IKE_AUTH && x.3 > 1),
            "node {i} sent no IKE_AUTH fragments: {f:?}"
        );
        // Every datagram fits into 300 bytes of IPv4 + UDP.
        for t in &n.sent {
            assert!(
                t.data.len() + 28 <= 300,
                "datagram of {} bytes",
                t.data.len()
            );
        }
        let s = n.ep.stats();
        assert!(s.messages_reassembled >= 1, "node {i}: {s:?}");
        assert_eq!(s.fragment_drops, 0, "node {i}: {s:?}");
        assert_eq!(s.dropped_integrity, 0);
    }
    // Traffic selectors survived reassembly.
    let ch = sim.a().children();
    assert_eq!(ch[0].local_ts.len(), 13);
    assert_eq!(ch[0].remote_ts.len(), 13);
}

#[test]
fn skf_layout_is_rfc7383() {
    let (a, b) = big_pair(300);
    let mut sim = Sim::new(a, b, 11);
    sim.establish();
    for i in 0..2 {
        let n = &sim.nodes[i];
        let frags: Vec<&Transmit> = n
            .sent
            .iter()
            .filter(|t| parse(t).header.exchange == exchange::IKE_AUTH)
            .collect();
        let total = frags.len();
        assert!(total > 1, "node {i}: IKE_AUTH not fragmented");
        for (k, t) in frags.iter().enumerate() {
            let m = parse(t);
            // RFC 7383 2.5: the IKE header's Next Payload is SKF (53), which is the only
            // payload; all fragments share the message ID.
            assert_eq!(m.header.next_payload, payload_type::SKF);
            assert_eq!(t.data.get(16), Some(&53u8));
            assert_eq!(m.header.message_id, 1);
            assert_eq!(m.payloads.len(), 1);
            let Some(Payload::Skf {
                first_inner,
                fragment_number,
                total_fragments,
                body,
            }) = m.payloads.last()
            else {
                panic!("not SKF")
            };
            assert_eq!(usize::from(*fragment_number), k + 1);
            assert_eq!(usize::from(*total_fragments), total);
            // Next Payload: first inner payload in fragment 1 (IDi / IDr), 0 in the others.
            if k == 0 {
                let want = if i == 0 {
                    payload_type::IDI
                } else {
                    payload_type::IDR
                };
                assert_eq!(*first_inner, want);
            } else {
                assert_eq!(*first_inner, payload_type::NONE);
            }
            // Own IV (8) and ICV (16) for AES-GCM, plus at least the pad length byte.
            assert!(body.len() > 8 + 16);
            // Payload length covers the 8-byte SKF header + body; the raw header agrees.
            let plen = u16::from_be_bytes([t.data[30], t.data[31]]);
            assert_eq!(usize::from(plen), 8 + body.len());
            let raw_num = u16::from_be_bytes([t.data[32], t.data[33]]);
            let raw_tot = u16::from_be_bytes([t.data[34], t.data[35]]);
            assert_eq!((raw_num, raw_tot), (*fragment_number, *total_fragments));
        }
        // Distinct IVs per fragment.
        let ivs: std::collections::HashSet<&[u8]> = frags.iter().map(|t| &t.data[36..44]).collect();
        assert_eq!(ivs.len(), total);
    }
}

#[test]
fn no_skf_when_peer_lacks_support() {
    let (a, mut b) = big_pair(300);
    b.fragmentation = false;
    let mut sim = Sim::new(a, b, 3);
    sim.establish();
    assert!(init_has_frag_notify(&sim.nodes[0]));
    assert!(!init_has_frag_notify(&sim.nodes[1]));
    for i in 0..2 {
        assert!(skf_sent(&sim.nodes[i]).is_empty(), "node {i} sent SKF");
        assert_eq!(sim.nodes[i].ep.stats().fragments_sent, 0);
    }
    // The big IKE_AUTH went unfragmented.
    assert!(sim.nodes[0].sent.iter().any(|t| t.data.len() + 28 > 300));

    // And the other way round: the initiator does not announce it.
    let (mut a, b) = big_pair(300);
    a.fragmentation = false;
    let mut sim = Sim::new(a, b, 4);
    sim.establish();
    assert!(!init_has_frag_notify(&sim.nodes[0]));
    assert!(
        !init_has_frag_notify(&sim.nodes[1]),
        "responder answered an absent notify"
    );
    assert!(skf_sent(&sim.nodes[0]).is_empty() && skf_sent(&sim.nodes[1]).is_empty());
}

#[test]
fn small_messages_are_not_fragmented() {
    let mut sim = Sim::new(pair().0, pair().1, 5);
    sim.establish();
    assert!(skf_sent(&sim.nodes[0]).is_empty() && skf_sent(&sim.nodes[1]).is_empty());
}

/// Manual network: two endpoints, every transmit collected by hand.
struct Wire {
    a: Endpoint,
    b: Endpoint,
    now: Instant,
}

impl Wire {
    fn new(a: ConnConfig, b: ConnConfig) -> Wire {
        let mk = |c: ConnConfig, s| {
            Endpoint::new(
                Config {
                    connections: vec![c],
                    ..Default::default()
                },
                Box::new(TestRng::from_seed(s)),
            )
        };
        Wire {
            a: mk(a, 21),
            b: mk(b, 22),
            now: Instant::now(),
        }
    }
    fn out(ep: &mut Endpoint) -> Vec<Transmit> {
        std::iter::from_fn(|| ep.poll_transmit()).collect()
    }
    fn to(ep: &mut Endpoint, now: Instant, ts: &[&Transmit]) {
        for t in ts {
            ep.handle_datagram(now, t.remote, t.local, &t.data);
        }
    }
    /// Run IKE_SA_INIT; returns A's IKE_AUTH datagrams.
    fn init(&mut self) -> Vec<Transmit> {
        self.a.initiate(self.now, "s2s", None).unwrap();
        let req = Self::out(&mut self.a);
        Self::to(&mut self.b, self.now, &req.iter().collect::<Vec<_>>());
        let resp = Self::out(&mut self.b);
        Self::to(&mut self.a, self.now, &resp.iter().collect::<Vec<_>>());
        Self::out(&mut self.a)
    }
    fn established(ep: &mut Endpoint) -> bool {
        std::iter::from_fn(|| ep.poll_event()).any(|e| matches!(e, Event::IkeSaEstablished { .. }))
    }
}

#[test]
fn out_of_order_duplicates_and_loss_then_retransmit() {
    let (a, b) = big_pair(300);
    let mut w = Wire::new(a, b);
    let auth = w.init();
    let n = auth.len();
    assert!(n >= 3, "want at least 3 fragments, got {n}");
    // Reverse order, fragment 2 duplicated, the last one lost.
    let mut some: Vec<&Transmit> = auth[..n - 1].iter().rev().collect();
    some.push(&auth[1]);
    some.insert(0, &auth[1]);
    Wire::to(&mut w.b, w.now, &some);
    assert!(
        Wire::out(&mut w.b).is_empty(),
        "answered an incomplete message"
    );
    assert_eq!(
        w.b.stats().fragment_drops,
        2,
        "two duplicates: {:?}",
        w.b.stats()
    );
    // A retransmits all fragments as a unit.
    w.now += Duration::from_secs(5);
    w.a.handle_timeout(w.now);
    let again = Wire::out(&mut w.a);
    assert_eq!(again.len(), n, "retransmission must resend every fragment");
    assert_eq!(w.a.stats().fragments_sent, 2 * n as u64);
    // Only the missing one arrives (the rest are lost again): B completes and answers.
    Wire::to(&mut w.b, w.now, &[&again[n - 1]]);
    let resp = Wire::out(&mut w.b);
    assert!(resp.len() > 1, "B's IKE_AUTH response is fragmented too");
    assert!(Wire::established(&mut w.b));
    assert_eq!(w.b.stats().messages_reassembled, 1);
    // The response is lost; A retransmits; B resends the cached response fragments once
    // (triggered by fragment 1 only, RFC 7383 2.6.1).
    w.now += Duration::from_secs(8);
    w.a.handle_timeout(w.now);
    let again = Wire::out(&mut w.a);
    assert_eq!(again.len(), n);
    Wire::to(&mut w.b, w.now, &again.iter().collect::<Vec<_>>());
    let resent = Wire::out(&mut w.b);
    assert_eq!(resent, resp, "cached fragments resent unchanged");
    assert_eq!(w.b.stats().retransmits_answered, 1);
    // Response fragments out of order with a duplicate: A establishes.
    let mut r: Vec<&Transmit> = resent.iter().rev().collect();
    r.push(&resent[0]);
    Wire::to(&mut w.a, w.now, &r);
    assert!(Wire::established(&mut w.a));
    assert_eq!(w.a.stats().messages_reassembled, 1);
}

/// An incomplete fragment set is dropped by the SA's timer after REASSEMBLY_TIMEOUT, even if
/// no further fragment arrives (its memory does not wait for the next fragment or SA close).
#[test]
fn incomplete_set_expires_on_timer() {
    let (a, b) = big_pair(300);
    let mut w = Wire::new(a, b.clone());
    // B keeps the half-open SA longer than the reassembly timeout
    w.b = Endpoint::new(
        Config {
            connections: vec![b],
            limits: crate::cookie::Limits {
                half_open_timeout: Duration::from_secs(300),
                ..Default::default()
            },
        },
        Box::new(TestRng::from_seed(22)),
    );
    let auth = w.init();
    let n = auth.len();
    assert!(n >= 3, "want at least 3 fragments, got {n}");
    Wire::to(&mut w.b, w.now, &auth[..n - 1].iter().collect::<Vec<_>>());
    assert!(
        Wire::out(&mut w.b).is_empty(),
        "answered an incomplete message"
    );
    let drops = w.b.stats().fragment_drops;
    let t = w.b.poll_timeout().expect("a timer");
    assert!(
        t <= w.now + fragment::REASSEMBLY_TIMEOUT,
        "no timer for the fragment set: {:?}",
        t - w.now
    );
    w.b.handle_timeout(t);
    assert_eq!(
        w.b.stats().fragment_drops,
        drops + (n - 1) as u64,
        "the held fragments are dropped and counted"
    );
    // the half-open SA is still there; the last fragment alone completes nothing
    Wire::to(&mut w.b, t, &[&auth[n - 1]]);
    assert!(Wire::out(&mut w.b).is_empty());
}

/// Flip one ciphertext byte (the ICV no longer verifies).
fn corrupt(t: &Transmit, at_from_end: usize) -> Transmit {
    let mut f = t.clone();
    let i = f.data.len() - at_from_end;
    f.data[i] ^= 0x55;
    f
}

#[test]
fn forged_fragments_do_not_poison_reassembly() {
    let (a, b) = big_pair(300);
    let mut w = Wire::new(a, b);
    let auth = w.init();
    let n = auth.len();
    assert!(n >= 3);
    // A forged copy of fragment 2 arrives first: it must not occupy slot 2.
    let bad = corrupt(&auth[1], 20);
    // A forged fragment claiming a higher Total Fragments must not reset the set (the
    // total is covered by the ICV: 2.5).
    let mut bigger = auth[2].clone();
    bigger.data[35] = bigger.data[35].wrapping_add(1);
    Wire::to(&mut w.b, w.now, &[&auth[0], &bad, &bigger]);
    let s = w.b.stats().clone();
    assert_eq!(s.dropped_integrity, 2, "{s:?}");
    assert_eq!(s.fragment_drops, 2, "{s:?}");
    assert_eq!(s.fragments_received, 1, "{s:?}");
    // The genuine rest completes the message.
    let rest: Vec<&Transmit> = auth[1..].iter().collect();
    Wire::to(&mut w.b, w.now, &rest);
    assert!(Wire::established(&mut w.b));
    assert!(!Wire::out(&mut w.b).is_empty());
}

#[test]
fn fragments_without_negotiation_are_dropped() {
    let (a, mut b) = big_pair(300);
    b.fragmentation = false;
    let mut w = Wire::new(a, b);
    let auth = w.init();
    assert_eq!(
        auth.len(),
        1,
        "not negotiated: IKE_AUTH must not be fragmented"
    );
    assert!(auth[0].data.len() + 28 > 300);
    Wire::to(&mut w.b, w.now, &[&auth[0]]);
    assert!(Wire::established(&mut w.b));
    // (SKF on an SA without negotiation is dropped: see `reassembly_rules`.)
}

// ---------------------------------------------------------------------------------------------
// FragState directly (caps)

fn cipher() -> Cipher {
    Cipher::new(fs_crypto::EncrAlg::AesGcm16_256, None, &[7u8; 36], &[]).unwrap()
}

fn header(mid: u32) -> fs_wire::ike::Header {
    fs_wire::ike::Header {
        spi_i: 1,
        spi_r: 2,
        next_payload: 0,
        version: fs_wire::ike::IKE_VERSION,
        exchange: exchange::INFORMATIONAL,
        flags: fs_wire::ike::flags::INITIATOR,
        message_id: mid,
        length: 0,
    }
}

fn feed(st: &mut FragState, frags: &[Vec<u8>], stats: &mut IkeStats, now: Instant) -> Vec<Verdict> {
    let w = Window::Request {
        expected: 5,
        answered: Some(4),
    };
    frags
        .iter()
        .map(|d| {
            let m = Message::parse(d).unwrap();
            st.on_fragment(&cipher(), d, &m, now, w, stats)
        })
        .collect()
}

#[test]
fn over_cap_fragment_sets_are_dropped() {
    let mut rng = TestRng::from_seed(1);
    let now = Instant::now();
    // > 64 KiB of payloads in <= 64 fragments of ~1200 bytes: the size cap trips.
    let big = vec![
        Payload::Vendor(vec![0xAB; 60_000]),
        Payload::Vendor(vec![0xCD; 12_000]),
    ];
    let frags = fragment::seal(&cipher(), &mut rng, &header(5), &big, Some(1200)).unwrap();
    assert!(frags.len() <= usize::from(MAX_FRAGMENTS), "{}", frags.len());
    let mut st = FragState::new(true);
    let mut stats = IkeStats::default();
    let mut peak = 0;
    for d in &frags {
        let v = feed(&mut st, std::slice::from_ref(d), &mut stats, now);
        assert_eq!(v, vec![Verdict::Wait]);
        peak = peak.max(st.held_bytes());
    }
    assert!(peak <= MAX_REASSEMBLED, "held {peak}");
    assert!(stats.fragment_drops > 0, "{stats:?}");
    assert_eq!(stats.messages_reassembled, 0);

    // More than MAX_FRAGMENTS fragments: dropped before decryption, nothing stored.
    let many = vec![Payload::Vendor(vec![1; 20_000])];
    let frags = fragment::seal(&cipher(), &mut rng, &header(5), &many, Some(250)).unwrap();
    assert!(frags.len() > usize::from(MAX_FRAGMENTS));
    let mut st = FragState::new(true);
    let mut stats = IkeStats::default();
    feed(&mut st, &frags, &mut stats, now);
    assert_eq!(st.held_bytes(), 0);
    assert_eq!(stats.fragment_drops, frags.len() as u64);
    assert_eq!(stats.fragments_received, 0);
}

#[test]
fn reassembly_rules() {
    let mut rng = TestRng::from_seed(2);
    let now = Instant::now();
    let pl = vec![
        Payload::notify(nt::INITIAL_CONTACT, vec![]),
        Payload::Vendor(vec![9; 1500]),
    ];
    let small = fragment::seal(&cipher(), &mut rng, &header(5), &pl, Some(400)).unwrap();
    let large = fragment::seal(&cipher(), &mut rng, &header(5), &pl, Some(300)).unwrap();
    assert!(large.len() > small.len() && small.len() > 2);

    // 2.6: a higher Total Fragments restarts reassembly; the old pieces are discarded.
    let mut st = FragState::new(true);
    let mut stats = IkeStats::default();
    feed(&mut st, &small[..2], &mut stats, now);
    let v = feed(&mut st, &large, &mut stats, now);
    assert_eq!(v.last(), Some(&Verdict::Complete));
    let m = Message::parse(&large[0]).unwrap();
    assert_eq!(st.take_reassembled(&m), Some(pl.clone()));
    assert_eq!(st.take_reassembled(&m), None, "handed out once");
    assert_eq!(stats.fragment_drops, 2);

    // 2.6.1: a lower Total Fragments than the current set is ignored.
    let mut st = FragState::new(true);
    let mut stats = IkeStats::default();
    feed(&mut st, &large[..1], &mut stats, now);
    let v = feed(&mut st, &small, &mut stats, now);
    assert!(v.iter().all(|v| *v == Verdict::Wait));
    assert_eq!(stats.fragment_drops, small.len() as u64);

    // Incomplete sets expire.
    let mut st = FragState::new(true);
    let mut stats = IkeStats::default();
    feed(&mut st, &small[..1], &mut stats, now);
    assert!(st.held_bytes() > 0);
    st.expire(now + fragment::REASSEMBLY_TIMEOUT, &mut stats);
    assert_eq!(st.held_bytes(), 0);
    assert_eq!(stats.fragment_drops, 1);

    // Outside the message ID window: dropped; not negotiated: dropped.
    let old = fragment::seal(&cipher(), &mut rng, &header(9), &pl, Some(400)).unwrap();
    let mut st = FragState::new(true);
    let mut stats = IkeStats::default();
    feed(&mut st, &old, &mut stats, now);
    assert_eq!(stats.dropped_message_id, old.len() as u64);
    let mut st = FragState::new(false);
    let mut stats = IkeStats::default();
    feed(&mut st, &small, &mut stats, now);
    assert_eq!(stats.fragment_drops, small.len() as u64);
    assert_eq!(st.held_bytes(), 0);

    // Unfragmented when it fits, or without negotiation.
    let one = fragment::seal(&cipher(), &mut rng, &header(5), &pl, None).unwrap();
    assert_eq!(one.len(), 1);
    let one = fragment::seal(&cipher(), &mut rng, &header(5), &pl, Some(4000)).unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(
        Message::parse(&one[0]).unwrap().header.next_payload,
        payload_type::SK
    );
}

#[test]
fn lossy_reordering_network_with_fragments() {
    let mut up = 0;
    for seed in 0..40 {
        let (a, b) = big_pair(300);
        let mut sim = Sim::new(a, b, 1000 + seed);
        sim.loss = 0.15;
        sim.dup = 0.2;
        sim.jitter_ms = 40;
        let now = sim.now;
        sim.a().ep.initiate(now, "s2s", None).unwrap();
        let ok = sim.run_until_children(1, Duration::from_secs(120));
        up += usize::from(ok);
        if !ok {
            // Possible under heavy loss (retransmissions exhausted): must end cleanly.
            assert!(
                sim.a().closed().is_some(),
                "seed {seed}: neither up nor closed"
            );
        }
        for i in 0..2 {
            assert_eq!(sim.nodes[i].ep.stats().dropped_integrity, 0, "seed {seed}");
        }
    }
    assert!(up >= 36, "only {up}/40 established");
}

#[test]
fn fragmented_with_cbc_hmac_and_chacha() {
    for suite in ["aes256-sha384-x25519", "chacha20poly1305-prfsha256-x25519"] {
        let (mut a, mut b) = big_pair(300);
        a.ike_proposals = vec![ike(suite)];
        b.ike_proposals = vec![ike(suite)];
        let mut sim = Sim::new(a, b, 9);
        sim.establish();
        for i in 0..2 {
            let n = &sim.nodes[i];
            assert!(skf_sent(n).len() > 2, "{suite}: node {i} did not fragment");
            assert!(n.sent.iter().all(|t| t.data.len() + 28 <= 300), "{suite}");
            assert_eq!(n.ep.stats().messages_reassembled, 1, "{suite}");
        }
    }
}
