//! NAT rebinding observed on authenticated ESP ([`Endpoint::note_peer_endpoint`]): the
//! CHILD_SAs' outbound ESP follows at once, the IKE SA only after an authenticated IKE
//! message (the liveness check sent to the new address), and only under the RFC 7296 2.23
//! rule (peer behind a NAT; we are not, or we are the responder).
use super::*;

const PRIVATE_A: &str = "10.1.1.1";

fn nat_sim(seed: u64) -> Sim {
    let (mut a, b) = pair();
    a.local_addrs = vec![PRIVATE_A.parse().unwrap()];
    let mut sim = Sim::new(a, b, seed);
    sim.nat = Some(Nat::new(A));
    sim
}

fn peer_moves(n: &Node) -> Vec<SocketAddr> {
    n.events
        .iter()
        .filter_map(|e| match e {
            Event::PeerEndpointChanged { remote, .. } => Some(*remote),
            _ => None,
        })
        .collect()
}

#[test]
fn esp_rebinding_moves_esp_then_ike_after_liveness_check() {
    let mut sim = nat_sim(950);
    sim.establish();
    assert!(sim.run_until(Duration::from_secs(60), |s| settled(s, 1)));
    let now = sim.now;
    let old = sim.b().ep.status(now)[0].remote.clone();
    // The NAT forgets its mappings; A's next ESP packet (from its 4500) gets a new one.
    let nat = sim.nat.as_mut().unwrap();
    nat.rebind();
    let new = nat.outbound(SocketAddr::new(PRIVATE_A.parse().unwrap(), 4500));
    assert_ne!(new.to_string(), old);
    let spi_in = sim.b().children()[0].inbound.spi;
    let sent_before = sim.b().sent.len();
    sim.b().ep.note_peer_endpoint(now, spi_in, new);
    sim.pump();
    // ESP follows at once ...
    assert_eq!(peer_moves(&sim.nodes[1]), vec![new]);
    assert_eq!(sim.b().ep.stats().peer_endpoint_changes, 1);
    // ... the IKE SA not yet (RFC 7296 2.23: only authenticated IKE messages move it) ...
    assert_eq!(sim.b().ep.status(now)[0].remote, old);
    // ... but a liveness check goes to the new address right away.
    let probes: Vec<_> = sim.b().sent[sent_before..]
        .iter()
        .filter(|t| t.data != [0xFF])
        .cloned()
        .collect();
    assert_eq!(probes.len(), 1, "one liveness check");
    assert_eq!(probes[0].remote, new);
    // A answers (through the new mapping): the IKE SA follows.
    assert!(
        sim.run_until(sim.now - sim.start + Duration::from_secs(30), |s| {
            s.nodes[1].ep.status(s.now)[0].remote == new.to_string()
        })
    );
    assert!(peer_moves(&sim.nodes[1]).iter().all(|r| *r == new));
    // Same address again: nothing happens.
    let n = peer_moves(&sim.nodes[1]).len();
    let now = sim.now;
    sim.b().ep.note_peer_endpoint(now, spi_in, new);
    sim.pump();
    assert_eq!(peer_moves(&sim.nodes[1]).len(), n);
    // Everything keeps working through the new mapping: B's rekey reaches A.
    let now = sim.now;
    sim.b().ep.rekey(now, "s2s", Some("net")).unwrap();
    assert!(
        sim.run_until(sim.now - sim.start + Duration::from_secs(60), |s| settled(
            s, 1
        ) && s
            .nodes[1]
            .children()[0]
            .inbound
            .spi
            != spi_in),
        "rekey after rebinding"
    );
    assert!(sim.a().closed().is_none() && sim.b().closed().is_none());
}

#[test]
fn esp_rebinding_ignored_when_nat_rules_forbid() {
    // A is behind the NAT and the initiator: it never follows B's ESP source.
    let mut sim = nat_sim(951);
    sim.establish();
    let now = sim.now;
    let spi_a = sim.a().children()[0].inbound.spi;
    let evil: SocketAddr = "200.2.2.2:31337".parse().unwrap();
    sim.a().ep.note_peer_endpoint(now, spi_a, evil);
    sim.pump();
    assert!(peer_moves(&sim.nodes[0]).is_empty());
    assert_eq!(sim.a().ep.stats().peer_endpoint_changes, 0);
    // Unknown SPI, raw ESP (port 0), other family: ignored on B too.
    let spi_b = sim.b().children()[0].inbound.spi;
    sim.b().ep.note_peer_endpoint(
        now,
        fs_wire::EspSpi(spi_b.0 ^ 1),
        "100.1.1.1:7777".parse().unwrap(),
    );
    sim.b()
        .ep
        .note_peer_endpoint(now, spi_b, "100.1.1.1:0".parse().unwrap());
    sim.b()
        .ep
        .note_peer_endpoint(now, spi_b, "[2001:db8::1]:4500".parse().unwrap());
    sim.pump();
    assert!(peer_moves(&sim.nodes[1]).is_empty());

    // No NAT at all (plain ESP): nobody follows.
    let (a, b) = pair();
    let mut sim = Sim::new(a, b, 952);
    sim.establish();
    let now = sim.now;
    for i in 0..2 {
        let spi = sim.nodes[i].children()[0].inbound.spi;
        sim.nodes[i]
            .ep
            .note_peer_endpoint(now, spi, "6.6.6.6:4500".parse().unwrap());
    }
    sim.pump();
    assert!(peer_moves(&sim.nodes[0]).is_empty() && peer_moves(&sim.nodes[1]).is_empty());
    let now = sim.now;
    assert_eq!(sim.b().ep.status(now)[0].remote, format!("{A}:500"));
}
