//! SA lifecycle: CHILD_SA and IKE SA rekeying (RFC 7296 1.3.2, 1.3.3, 2.8), collisions
//! (2.8.1, 2.8.2), DPD and INITIAL_CONTACT (2.4).
use super::*;
use crate::DpdAction;
use fs_wire::ike::{exchange, Payload};

const MIN: Duration = Duration::from_secs(60);

fn installs(n: &Node) -> usize {
    n.events
        .iter()
        .filter(|e| matches!(e, Event::ChildSaInstalled(_)))
        .count()
}

fn event_index(n: &Node, f: impl Fn(&Event) -> bool) -> Option<usize> {
    n.events.iter().position(f)
}

/// Payloads of the CREATE_CHILD_SA requests `from` sent, decrypted by the other node.
fn create_child_requests(sim: &mut Sim, from: usize) -> Vec<Vec<Payload>> {
    let sent: Vec<Transmit> = sim.nodes[from]
        .sent
        .iter()
        .filter(|t| t.data.get(18) == Some(&exchange::CREATE_CHILD_SA) && t.data[19] & 0x20 == 0)
        .cloned()
        .collect();
    let other = 1 - from;
    sent.iter()
        .filter_map(|t| sim.nodes[other].ep.test_open("s2s", &t.data))
        .collect()
}

fn child_rekey(from: usize, pfs: bool, seed: u64) {
    let (mut a, mut b) = pair();
    if pfs {
        a.children[0].esp_proposals = vec![esp("aes256gcm16-x25519")];
        b.children[0].esp_proposals = vec![esp("aes128gcm16-ecp256"), esp("aes256gcm16-x25519")];
    }
    [&mut a, &mut b][from].children[0].rekey_time = Some(MIN);
    let mut sim = Sim::new(a, b, seed);
    sim.establish();
    let old = sim.nodes[from].children()[0].clone();
    // Rekeyed between 54 and 60 s (jitter), long before the 66 s hard lifetime.
    assert!(sim.run_until(Duration::from_secs(65), |s| {
        let c = s.nodes[from].children();
        c.len() == 1 && c[0].inbound.spi != old.inbound.spi && settled(s, 1)
    }));
    let elapsed = sim.now - sim.start;
    assert!(elapsed >= Duration::from_secs(54), "{elapsed:?}");
    let new = sim.nodes[from].children()[0].clone();
    assert_ne!(new.outbound.encr_key, old.outbound.encr_key);
    assert_eq!(new.child, "net");
    assert_eq!(new.local_ts, old.local_ts);
    for n in &sim.nodes {
        assert_eq!(installs(n), 2);
        // Make-before-break: the new SA is installed before the old one is removed.
        let inst = event_index(n, |e| matches!(e, Event::ChildSaInstalled(c) if c.inbound.spi != old.inbound.spi && c.outbound.spi != old.inbound.spi && c.inbound.spi != old.outbound.spi)).unwrap();
        let rem = event_index(n, |e| matches!(e, Event::ChildSaRemoved { .. })).unwrap();
        assert!(inst < rem);
        assert!(n.closed().is_none());
    }
    let reqs = create_child_requests(&mut sim, from);
    // B's first PFS guess (ecp256) is refused with INVALID_KE_PAYLOAD, then retried.
    assert_eq!(reqs.len(), if pfs && from == 1 { 2 } else { 1 });
    for r in &reqs {
        let has_ke = r.iter().any(|p| matches!(p, Payload::Ke { .. }));
        assert_eq!(has_ke, pfs, "KE payload iff PFS");
    }
    assert!(reqs[0].iter().any(
        |p| matches!(p, Payload::Notify(n) if n.ntype == fs_wire::ike::notify_type::REKEY_SA && n.spi == old.inbound.spi.to_be_bytes())
    ));
    let now = sim.now;
    let st = sim.nodes[from].ep.status(now);
    assert_eq!(st[0].child_sas[0].rekey_count, 1);
    assert!(st[0].child_sas[0].rekey_in_secs.is_some_and(|s| s <= 60));
    assert!(st[0].child_sas[0].expires_in_secs.is_some_and(|s| s <= 66));
    // The rekeyed SA is rekeyed again.
    assert!(sim.run_until(Duration::from_secs(200), |s| {
        s.nodes[from].ep.status(s.now)[0]
            .child_sas
            .first()
            .is_some_and(|c| c.rekey_count >= 2)
            && settled(s, 1)
    }));
}

#[test]
fn child_rekey_initiator_a_no_pfs() {
    child_rekey(0, false, 200);
}

#[test]
fn child_rekey_initiator_b_no_pfs() {
    child_rekey(1, false, 201);
}

#[test]
fn child_rekey_initiator_a_pfs() {
    child_rekey(0, true, 202);
}

#[test]
fn child_rekey_initiator_b_pfs() {
    child_rekey(1, true, 203);
}

#[test]
fn child_rekey_pfs_invalid_ke_retry() {
    let (mut a, mut b) = pair();
    a.children[0].esp_proposals = vec![esp("aes256gcm16-x25519-ecp256")];
    b.children[0].esp_proposals = vec![esp("aes256gcm16-ecp256")];
    let mut sim = Sim::new(a, b, 204);
    sim.establish();
    let old = sim.a().children()[0].clone();
    let now = sim.now;
    sim.a().ep.rekey(now, "s2s", Some("net")).unwrap();
    assert!(sim.run_until(MIN, |s| settled(s, 1)
        && s.nodes[0].children()[0].inbound.spi != old.inbound.spi));
    let reqs = create_child_requests(&mut sim, 0);
    assert_eq!(reqs.len(), 2, "retried with the requested group");
}

#[test]
fn child_pfs_required_but_not_offered() {
    let (a, mut b) = pair();
    b.children[0].esp_proposals = vec![esp("aes256gcm16-x25519")];
    let mut sim = Sim::new(a, b, 205);
    sim.establish(); // IKE_AUTH: no DH for the first child
    let now = sim.now;
    sim.a().ep.rekey(now, "s2s", Some("net")).unwrap();
    assert!(sim.run_until(MIN, |s| s.nodes[0].child_failed().is_some()));
    assert_eq!(
        sim.a().child_failed(),
        Some(CloseReason::NoProposalChosen { by_peer: true })
    );
    assert_eq!(sim.a().children().len(), 1, "old SA kept");
}

fn ike_rekey(from: usize, seed: u64) {
    let (mut a, mut b) = pair();
    [&mut a, &mut b][from].rekey_time = Some(Duration::from_secs(120));
    let mut sim = Sim::new(a, b, seed);
    sim.establish();
    let now = sim.now;
    let before = sim.a().ep.status(now)[0].clone();
    let children = sim.a().children();
    assert!(sim.run_until(Duration::from_secs(121), |s| {
        settled(s, 1) && s.nodes[0].ep.status(s.now)[0].rekey_count == 1
    }));
    let now = sim.now;
    let (sa, sb) = (
        sim.a().ep.status(now)[0].clone(),
        sim.b().ep.status(now)[0].clone(),
    );
    assert_eq!(sa.id, before.id, "unique id kept across the rekey");
    assert_ne!(sa.spi_i, before.spi_i);
    assert_eq!((sa.spi_i, sa.spi_r), (sb.spi_i, sb.spi_r));
    assert_eq!(sa.initiator, from == 0);
    assert_eq!(sb.rekey_count, 1);
    assert_eq!(sa.state, "ESTABLISHED");
    // Children moved unchanged, no events for them, no IkeSaClosed.
    for n in &sim.nodes {
        assert!(n.closed().is_none());
        assert_eq!(installs(n), 1);
        assert!(!n
            .events
            .iter()
            .any(|e| matches!(e, Event::ChildSaRemoved { .. })));
    }
    let after = sim.a().children();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].inbound.spi, children[0].inbound.spi);
    assert_eq!(after[0].outbound.encr_key, children[0].outbound.encr_key);
    // The new IKE SA works: rekey the child on it, from the other side.
    let now = sim.now;
    sim.nodes[1 - from]
        .ep
        .rekey(now, "s2s", Some("net"))
        .unwrap();
    let start = sim.now - sim.start;
    assert!(sim.run_until(start + MIN, |s| settled(s, 1)
        && s.nodes[0].children()[0].inbound.spi != children[0].inbound.spi));
    // ... and delete it.
    let now = sim.now;
    sim.a().ep.terminate(now, "s2s").unwrap();
    let start = sim.now - sim.start;
    assert!(sim.run_until(start + MIN, |s| s.nodes[0].closed().is_some()
        && s.nodes[1].closed().is_some()));
    assert!(sim.a().children().is_empty() && sim.b().children().is_empty());
    assert_eq!(
        sim.b().closed(),
        Some(CloseReason::Deleted { by_peer: true })
    );
}

#[test]
fn ike_rekey_initiated_by_a() {
    ike_rekey(0, 210);
}

#[test]
fn ike_rekey_initiated_by_b() {
    ike_rekey(1, 211);
}

#[test]
fn ike_rekey_twice_with_children_rekeys() {
    let (mut a, mut b) = pair();
    a.rekey_time = Some(Duration::from_secs(100));
    b.children[0].rekey_time = Some(Duration::from_secs(45));
    let mut sim = Sim::new(a, b, 212);
    sim.establish();
    assert!(sim.run_until(Duration::from_secs(400), |s| settled(s, 1)
        && s.nodes[0].ep.status(s.now)[0].rekey_count >= 3));
    let now = sim.now;
    assert!(sim.a().ep.status(now)[0].child_sas[0].rekey_count >= 4);
    assert!(sim.a().closed().is_none() && sim.b().closed().is_none());
}

#[test]
fn simultaneous_child_rekey_collision() {
    let mut outcomes = [0usize; 2];
    for seed in 0..24u64 {
        let (a, b) = pair();
        let mut sim = Sim::new(a, b, 300 + seed);
        sim.jitter_ms = if seed % 2 == 0 { 0 } else { 30 };
        sim.establish();
        let old = sim.a().children()[0].clone();
        let now = sim.now;
        sim.a().ep.rekey(now, "s2s", Some("net")).unwrap();
        sim.b().ep.rekey(now, "s2s", Some("net")).unwrap();
        assert!(
            sim.run_until(MIN, |s| settled(s, 1)
                && s.nodes[0].children()[0].inbound.spi != old.inbound.spi),
            "seed {seed}: A {:?} B {:?}",
            sim.nodes[0].children().len(),
            sim.nodes[1].children().len()
        );
        // Let any stragglers drain: still one agreed SA.
        let t = sim.now - sim.start;
        sim.run_until(t + MIN, |_| false);
        assert!(settled(&sim, 1), "seed {seed}");
        // Both created an SA: 3 installs per side (initial, ours, theirs) => a real collision,
        // or 2 if one side answered TEMPORARY_FAILURE.
        let n = installs(&sim.nodes[0]);
        assert!(n == 2 || n == 3, "seed {seed}: {n}");
        assert_eq!(n, installs(&sim.nodes[1]), "seed {seed}");
        outcomes[usize::from(n == 3)] += 1;
        if n == 3 {
            let k = sim.a().ep.stats().rekey_collisions + sim.b().ep.stats().rekey_collisions;
            assert!(k >= 1, "seed {seed}");
        }
    }
    assert!(outcomes[1] > 0, "no real collision: {outcomes:?}");
}

#[test]
fn simultaneous_ike_rekey_collision() {
    let mut collisions = 0;
    for seed in 0..24u64 {
        let (a, b) = pair();
        let mut sim = Sim::new(a, b, 400 + seed);
        sim.jitter_ms = if seed % 2 == 0 { 0 } else { 30 };
        sim.establish();
        let child = sim.a().children()[0].clone();
        let now = sim.now;
        let before = sim.a().ep.status(now)[0].spi_i;
        sim.a().ep.rekey(now, "s2s", None).unwrap();
        sim.b().ep.rekey(now, "s2s", None).unwrap();
        assert!(
            sim.run_until(MIN, |s| settled(s, 1)
                && s.nodes[0].ep.status(s.now)[0].spi_i != before),
            "seed {seed}: A {:?} / B {:?}",
            sim.nodes[0].ep.status(sim.now),
            sim.nodes[1].ep.status(sim.now)
        );
        let t = sim.now - sim.start;
        sim.run_until(t + MIN, |_| false);
        assert!(settled(&sim, 1), "seed {seed}");
        let now = sim.now;
        let (sa, sb) = (
            sim.a().ep.status(now)[0].clone(),
            sim.b().ep.status(now)[0].clone(),
        );
        assert_eq!(
            (&sa.spi_i, &sa.spi_r),
            (&sb.spi_i, &sb.spi_r),
            "seed {seed}"
        );
        assert_eq!(sa.rekey_count, 1);
        // Children moved, untouched.
        let c = sim.a().children();
        assert_eq!(c[0].inbound.spi, child.inbound.spi);
        assert!(sim.a().closed().is_none() && sim.b().closed().is_none());
        let (ka, kb) = (
            sim.a().ep.stats().rekey_collisions,
            sim.b().ep.stats().rekey_collisions,
        );
        collisions += ka + kb;
        // Still usable.
        let now = sim.now;
        sim.a().ep.rekey(now, "s2s", Some("net")).unwrap();
        let t = sim.now - sim.start;
        assert!(
            sim.run_until(t + MIN, |s| settled(s, 1)
                && s.nodes[0].children()[0].inbound.spi != child.inbound.spi),
            "seed {seed}"
        );
    }
    assert!(collisions > 0, "no real IKE SA rekey collision");
}

#[test]
fn dpd_on_dead_peer_closes() {
    let (mut a, b) = pair();
    a.dpd_delay = Some(Duration::from_secs(30));
    a.retransmit = RetransmitConfig {
        timeout: Duration::from_secs(1),
        base: 2.0,
        tries: 3,
    };
    let mut sim = Sim::new(a, b, 500);
    sim.establish();
    // Alive peer: DPD exchanges keep it up.
    assert!(!sim.run_until(Duration::from_secs(200), |s| s.nodes[0].closed().is_some()));
    let informational = sim
        .a()
        .sent
        .iter()
        .filter(|t| t.data[18] == exchange::INFORMATIONAL)
        .count();
    assert!(informational >= 5, "{informational}");
    sim.blackhole = [false, true];
    let t0 = sim.now;
    assert!(sim.run_until(Duration::from_secs(400), |s| s.nodes[0].closed().is_some()));
    assert_eq!(sim.a().closed(), Some(CloseReason::Timeout));
    assert_eq!(sim.a().closed_established(), Some(true), "a dead peer");
    // 30 s idle + 1 + 2 + 4 + 8 s retransmissions.
    assert!(sim.now - t0 <= Duration::from_secs(30 + 15 + 1));
    assert!(sim.a().children().is_empty());
    assert!(sim
        .a()
        .events
        .iter()
        .any(|e| matches!(e, Event::ChildSaRemoved { .. })));
    let now = sim.now;
    assert!(sim.a().ep.status(now).is_empty());
}

#[test]
fn dpd_restart_reconnects_and_initial_contact_clears_stale() {
    let (mut a, b) = pair();
    a.dpd_delay = Some(Duration::from_secs(30));
    a.dpd_action = DpdAction::Restart;
    a.retransmit = RetransmitConfig {
        timeout: Duration::from_secs(1),
        base: 2.0,
        tries: 3,
    };
    let mut sim = Sim::new(a, b, 501);
    sim.establish();
    let old_b = sim.b().children()[0].clone();
    // The path dies long enough for A's DPD to fail.
    sim.blackhole = [true, true];
    assert!(sim.run_until(Duration::from_secs(400), |s| s.nodes[0].closed().is_some()));
    assert_eq!(sim.a().closed(), Some(CloseReason::Timeout));
    sim.blackhole = [false, false];
    let t = sim.now - sim.start;
    assert!(sim.run_until(t + Duration::from_secs(300), |s| {
        s.nodes[0]
            .events
            .iter()
            .filter(|e| matches!(e, Event::IkeSaEstablished { .. }))
            .count()
            == 2
            && settled(s, 1)
    }));
    // B dropped its stale SA because of INITIAL_CONTACT, with events.
    assert!(sim.b().events.iter().any(
        |e| matches!(e, Event::ChildSaRemoved { spi_in, .. } if *spi_in == old_b.inbound.spi)
    ));
    assert_eq!(
        sim.b().closed(),
        Some(CloseReason::Deleted { by_peer: true })
    );
}

#[test]
fn initial_contact_replaces_stale_sas() {
    let (a, b) = pair();
    let mut sim = Sim::new(a.clone(), b, 502);
    sim.establish();
    let now = sim.now;
    let old_id = sim.b().ep.status(now)[0].id;
    let old_child = sim.b().children()[0].clone();
    // A reboots: fresh endpoint without any state.
    sim.nodes[0].ep = Endpoint::new(
        Config {
            connections: vec![a],
            ..Default::default()
        },
        Box::new(TestRng::from_seed(9999)),
    );
    sim.nodes[0].events.clear();
    sim.nodes[0].sent.clear();
    let now = sim.now;
    sim.a().ep.initiate(now, "s2s", None).unwrap();
    let t = sim.now - sim.start;
    assert!(sim.run_until(t + MIN, |s| settled(s, 1)));
    let now = sim.now;
    let st = sim.b().ep.status(now);
    assert_eq!(st.len(), 1);
    assert_ne!(st[0].id, old_id);
    let b = &sim.nodes[1];
    let rem = event_index(
        b,
        |e| matches!(e, Event::ChildSaRemoved { spi_in, .. } if *spi_in == old_child.inbound.spi),
    )
    .unwrap();
    let closed = event_index(
        b,
        |e| matches!(e, Event::IkeSaClosed { ike_sa, .. } if *ike_sa == old_id),
    )
    .unwrap();
    assert!(rem < closed);
    // No Delete was sent for the stale SA (it's removed locally).
    assert!(!sim
        .b()
        .sent
        .iter()
        .any(|t| t.data[18] == exchange::INFORMATIONAL && t.data[19] & 0x20 == 0));
}

#[test]
fn lossy_network_lifecycle_300_seeds() {
    let child_rekey = Duration::from_secs(20);
    let hard = child_rekey.mul_f64(1.1);
    for seed in 0..300u64 {
        let (mut a, mut b) = pair();
        for c in [&mut a, &mut b] {
            c.retransmit = RetransmitConfig {
                timeout: Duration::from_millis(500),
                base: 1.5,
                tries: 10,
            };
            c.rekey_time = Some(Duration::from_secs(45));
            c.dpd_delay = Some(Duration::from_secs(10));
            c.children[0].rekey_time = Some(child_rekey);
            if seed % 3 == 0 {
                c.children[0].esp_proposals = vec![esp("aes128gcm16-x25519")];
            }
        }
        let mut sim = Sim::new(a, b, 5000 + seed);
        sim.loss = 0.1;
        sim.dup = 0.05;
        sim.jitter_ms = 50;
        let now = sim.now;
        sim.a().ep.initiate(now, "s2s", None).unwrap();
        let mut installed_at: std::collections::HashMap<(usize, fs_wire::EspSpi), Instant> =
            Default::default();
        let mut seen = [0usize; 2];
        for t in 1..=180u64 {
            sim.run_until(Duration::from_secs(t), |_| false);
            // No CHILD_SA outlives its hard lifetime (tracked through the events).
            let now = sim.now;
            for (i, n) in sim.nodes.iter().enumerate() {
                for e in &n.events[seen[i]..] {
                    if let Event::ChildSaInstalled(c) = e {
                        installed_at.insert((i, c.inbound.spi), now);
                    }
                }
                seen[i] = n.events.len();
                for c in n.children() {
                    let at = installed_at[&(i, c.inbound.spi)];
                    assert!(
                        now - at <= hard + Duration::from_secs(1),
                        "seed {seed}: node {i} SA {:08x} too old",
                        c.inbound.spi
                    );
                }
                for s in n.ep.status(now) {
                    for c in s.child_sas {
                        assert!(c.established_secs <= 22, "seed {seed}: {c:?}");
                    }
                }
            }
        }
        // Heal the network: both sides converge on the same SA set.
        sim.loss = 0.0;
        sim.dup = 0.0;
        let t = sim.now - sim.start;
        // (A redundant IKE SA of a collision whose Delete was lost expires after ~3 min.)
        let ok = sim.run_until(t + Duration::from_secs(300), |s| {
            let (a, b) = (s.nodes[0].children(), s.nodes[1].children());
            idle(s) && crosswise(&a, &b)
        });
        let now = sim.now;
        assert!(
            ok,
            "seed {seed}: A {:?}\nB {:?}",
            sim.nodes[0].ep.status(now),
            sim.nodes[1].ep.status(now)
        );
        let (ca, cb) = (sim.nodes[0].children(), sim.nodes[1].children());
        assert!(
            ca.len() == 1 && cb.len() == 1,
            "seed {seed}: {} / {} children, closed {:?} / {:?}",
            ca.len(),
            cb.len(),
            sim.nodes[0].closed(),
            sim.nodes[1].closed()
        );
        let (sa, sb) = (sim.nodes[0].ep.status(now), sim.nodes[1].ep.status(now));
        assert!(
            sa.len() == 1 && sb.len() == 1 && sa[0].spi_i == sb[0].spi_i,
            "seed {seed}: {sa:?} / {sb:?}"
        );
        assert!(sa[0].rekey_count >= 2, "seed {seed}");
    }
}
