//! IKE SA reauthentication (RFC 7296 2.8.3, strongSwan `reauth_time`): a new IKE SA with a full
//! IKE_SA_INIT + IKE_AUTH and the same children, make-before-break, then the old one deleted.
use super::*;
use fs_wire::ike::{exchange, notify_type as nt, Payload};

const MIN: Duration = Duration::from_secs(60);

/// Once the first CHILD_SA of each child name was installed, every child name always has at
/// least one installed CHILD_SA (traffic keys never absent), judged from the events.
fn never_absent(n: &Node) -> Result<(), String> {
    let mut live: Vec<(crate::IkeSaId, String, fs_wire::EspSpi)> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for (i, e) in n.events.iter().enumerate() {
        match e {
            Event::ChildSaInstalled(c) => {
                live.push((c.ike_sa, c.child.clone(), c.inbound.spi));
                if !names.contains(&c.child) {
                    names.push(c.child.clone());
                }
            }
            Event::ChildSaRemoved { spi_in, .. } => live.retain(|l| l.2 != *spi_in),
            Event::IkeSaClosed { ike_sa, .. } => live.retain(|l| l.0 != *ike_sa),
            _ => {}
        }
        for name in &names {
            if !live.iter().any(|l| &l.1 == name) {
                return Err(format!("child {name} absent after event {i}"));
            }
        }
    }
    Ok(())
}

fn ike_ids(n: &Node) -> Vec<crate::IkeSaId> {
    n.events
        .iter()
        .filter_map(|e| match e {
            Event::IkeSaEstablished { ike_sa, .. } => Some(*ike_sa),
            _ => None,
        })
        .collect()
}

/// IKE_AUTH requests `from` sent, decrypted by the other node (for INITIAL_CONTACT checks).
fn auth_requests(sim: &mut Sim, from: usize) -> Vec<Vec<Payload>> {
    let sent: Vec<Transmit> = sim.nodes[from]
        .sent
        .iter()
        .filter(|t| t.data.get(18) == Some(&exchange::IKE_AUTH) && t.data[19] & 0x20 == 0)
        .cloned()
        .collect();
    let other = 1 - from;
    sent.iter()
        .filter_map(|t| sim.nodes[other].ep.test_open("s2s", &t.data))
        .collect()
}

fn second_child(c: &mut ConnConfig, local: &str, remote: &str) {
    let mut ch = c.children[0].clone();
    ch.name = "net2".into();
    ch.local_ts = vec![ts(local)];
    ch.remote_ts = vec![ts(remote)];
    c.children.push(ch);
}

fn reauth(from: usize, two_children: bool, seed: u64) {
    let (mut a, mut b) = pair();
    if two_children {
        second_child(&mut a, "10.1.0.0/16", "10.2.0.0/16");
        second_child(&mut b, "10.2.0.0/16", "10.1.0.0/16");
    }
    [&mut a, &mut b][from].reauth_time = Some(MIN);
    // reauth replaces the IKE rekey
    [&mut a, &mut b][from].rekey_time = Some(Duration::from_secs(30));
    let n = if two_children { 2 } else { 1 };
    let mut sim = Sim::new(a, b, seed);
    let now = sim.now;
    sim.a().ep.initiate(now, "s2s", None).unwrap();
    assert!(sim.run_until(Duration::from_secs(10), |s| settled(s, n)));
    let old_sa = sim.nodes[0].ep.status(sim.now)[0].clone();
    let old_children = sim.nodes[from].children();
    let s0 = sim.nodes[from].ep.status(sim.now);
    assert!(s0[0].rekey_in_secs.is_none(), "{s0:?}");
    assert!(s0[0].reauth_in_secs.is_some_and(|t| (54..=60).contains(&t)));
    assert!(sim.run_until(Duration::from_secs(70), |s| {
        settled(s, n) && s.nodes[0].ep.status(s.now)[0].spi_i != old_sa.spi_i
    }));
    let elapsed = sim.now - sim.start;
    assert!(elapsed >= Duration::from_secs(54), "{elapsed:?}");
    let now = sim.now;
    let (sa, sb) = (sim.nodes[0].ep.status(now), sim.nodes[1].ep.status(now));
    assert_eq!((sa[0].spi_i, sa[0].spi_r), (sb[0].spi_i, sb[0].spi_r));
    assert_ne!(sa[0].spi_r, old_sa.spi_r);
    assert_eq!(sa[0].rekey_count, 0);
    // The reauthenticating side is the initiator of the new IKE SA.
    assert!([&sa, &sb][from][0].initiator);
    let new_children = sim.nodes[from].children();
    for c in &new_children {
        assert!(old_children.iter().all(|o| o.inbound.spi != c.inbound.spi
            && o.outbound.spi != c.outbound.spi
            && o.inbound.encr_key != c.inbound.encr_key));
    }
    for (i, node) in sim.nodes.iter().enumerate() {
        never_absent(node).unwrap_or_else(|e| panic!("node {i}: {e}"));
        let ids = ike_ids(node);
        assert_eq!(ids.len(), 2, "node {i}");
        assert_ne!(ids[0], ids[1]);
        // Old children removed after the new ones were installed, old IKE SA deleted.
        let closed: Vec<&CloseReason> = node
            .events
            .iter()
            .filter_map(|e| match e {
                Event::IkeSaClosed { ike_sa, reason, .. } if *ike_sa == ids[0] => Some(reason),
                _ => None,
            })
            .collect();
        assert_eq!(
            closed,
            vec![&CloseReason::Deleted { by_peer: i != from }],
            "node {i}"
        );
        assert!(node.children().iter().all(|c| c.ike_sa == ids[1]));
        assert_eq!(node.ep.stats().duplicates_deleted, 0, "node {i}");
    }
    // No INITIAL_CONTACT on the reauthentication (it would delete the old SA early).
    let auths = auth_requests(&mut sim, from);
    let last = auths.last().expect("IKE_AUTH");
    assert!(!last
        .iter()
        .any(|p| matches!(p, Payload::Notify(x) if x.ntype == nt::INITIAL_CONTACT)));
    // And again one period later.
    let id1 = sim.nodes[0].ep.status(sim.now)[0].spi_i;
    assert!(sim.run_until(Duration::from_secs(135), |s| {
        settled(s, n) && s.nodes[0].ep.status(s.now)[0].spi_i != id1
    }));
    for node in &sim.nodes {
        never_absent(node).unwrap();
        assert_eq!(ike_ids(node).len(), 3);
    }
}

#[test]
fn reauth_by_original_initiator() {
    reauth(0, false, 1);
}

#[test]
fn reauth_by_original_responder() {
    reauth(1, false, 2);
}

#[test]
fn reauth_two_children() {
    reauth(0, true, 3);
    reauth(1, true, 4);
}

/// Lossy network: reauthentications (by A, by B, or both) under loss, duplication and
/// reordering; traffic keys never absent; after healing one IKE SA and one CHILD pair.
#[test]
fn reauth_lossy_100_seeds() {
    for seed in 0..100u64 {
        let (mut a, mut b) = pair();
        for (i, c) in [&mut a, &mut b].into_iter().enumerate() {
            c.retransmit = RetransmitConfig {
                timeout: Duration::from_millis(500),
                base: 1.5,
                tries: 10,
            };
            c.dpd_delay = Some(Duration::from_secs(10));
            let who = seed % 3; // 0: A, 1: B, 2: both
            if who == 2 || who == i as u64 {
                c.reauth_time = Some(Duration::from_secs(30));
            }
            if seed % 4 == 0 {
                c.children[0].rekey_time = Some(Duration::from_secs(20));
            }
        }
        let mut sim = Sim::new(a, b, 7000 + seed);
        sim.loss = 0.1;
        sim.dup = 0.05;
        sim.jitter_ms = 50;
        let now = sim.now;
        sim.a().ep.initiate(now, "s2s", None).unwrap();
        sim.run_until(Duration::from_secs(150), |_| false);
        for (i, node) in sim.nodes.iter().enumerate() {
            never_absent(node).unwrap_or_else(|e| panic!("seed {seed}: node {i}: {e}"));
            assert!(
                ike_ids(node).len() >= 3,
                "seed {seed}: node {i}: {:?}",
                ike_ids(node)
            );
        }
        sim.loss = 0.0;
        sim.dup = 0.0;
        let t = sim.now - sim.start;
        let ok = sim.run_until(t + Duration::from_secs(300), |s| settled(s, 1));
        let now = sim.now;
        assert!(
            ok,
            "seed {seed}: A {:?}\nB {:?}",
            sim.nodes[0].ep.status(now),
            sim.nodes[1].ep.status(now)
        );
        for (i, node) in sim.nodes.iter().enumerate() {
            never_absent(node).unwrap_or_else(|e| panic!("seed {seed}: node {i}: {e}"));
        }
        let (sa, sb) = (sim.nodes[0].ep.status(now), sim.nodes[1].ep.status(now));
        assert_eq!(sa[0].spi_i, sb[0].spi_i, "seed {seed}");
    }
}
