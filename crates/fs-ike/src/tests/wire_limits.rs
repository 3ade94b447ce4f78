//! Issue 9, item 5: messages whose counts exceed their wire fields are never truncated.
use super::*;
use fs_wire::ts::TrafficSelector;

/// 200 single hosts 192.168.1.1..=200 (A's local selectors).
fn hosts() -> Vec<TrafficSelector> {
    (1..=200)
        .map(|i| ts(&format!("192.168.1.{i}/32")))
        .collect()
}

/// 200 TCP ports of 192.168.1.0/24 (B's remote selectors): with `hosts()` every pair
/// intersects, 40,000 distinct selectors.
fn ports() -> Vec<TrafficSelector> {
    (1..=200)
        .map(|p| TrafficSelector {
            protocol: 6,
            start_port: 1000 + p,
            end_port: 1000 + p,
            ..ts("192.168.1.0/24")
        })
        .collect()
}

#[test]
fn narrowing_past_255_selectors_narrows_to_what_fits() {
    let (mut a, mut b) = pair();
    a.children[0].local_ts = hosts();
    b.children[0].remote_ts = ports();
    let mut sim = Sim::new(a, b, 91);
    sim.establish();
    let ca = sim.a().children()[0].clone();
    let cb = sim.b().children()[0].clone();
    // Narrowed to one TS payload's worth (its count is one octet), the same on both sides.
    assert_eq!(cb.remote_ts.len(), 255);
    assert_eq!(ca.local_ts, cb.remote_ts);
    assert_eq!(ca.remote_ts, vec![ts("192.168.2.0/24")]);
    // Every narrowed selector lies within both policies; the initiator's first stays first.
    assert!(cb
        .remote_ts
        .iter()
        .all(|t| hosts().iter().any(|h| h.contains(t)) && ports().iter().any(|p| p.contains(t))));
    assert_eq!(cb.remote_ts[0].start, hosts()[0].start);
    for n in &sim.nodes {
        assert_eq!(n.ep.stats().emit_failures, 0);
        assert_eq!(n.ep.stats().dropped_malformed, 0);
    }
}

#[test]
fn too_many_configured_selectors_fail_without_truncation() {
    // An initiator configured with 300 local selectors cannot encode its TSi: the request is
    // not sent (counted), never sent with a truncated count.
    let (mut a, b) = pair();
    a.children[0].local_ts = (1..=300)
        .map(|i| ts(&format!("192.168.{}.{}/32", 1 + i / 250, i % 250)))
        .collect();
    let mut sim = Sim::new(a, b, 92);
    let now = sim.now;
    sim.a().ep.initiate(now, "s2s", None).unwrap();
    sim.run_until(Duration::from_secs(5), |s| {
        s.nodes[0].ep.stats().emit_failures > 0
    });
    assert!(sim.a().ep.stats().emit_failures > 0);
    assert_eq!(sim.b().ep.stats().dropped_malformed, 0);
    assert!(sim.a().children().is_empty() && sim.b().children().is_empty());
}

/// An unencrypted INFORMATIONAL request from A to B carrying the 8-byte Delete amplification
/// (SPI size 0, Num of SPIs 65535), with the given SPIs.
fn hostile_delete(spi_i: u64, spi_r: u64) -> Vec<u8> {
    use fs_wire::ike::{exchange, flags, payload_type, Header, HEADER_LEN, IKE_VERSION};
    let body = [0, 0, 0, 8, 1, 0, 0xff, 0xff];
    let h = Header {
        spi_i,
        spi_r,
        next_payload: payload_type::DELETE,
        version: IKE_VERSION,
        exchange: exchange::INFORMATIONAL,
        flags: flags::INITIATOR,
        message_id: 1,
        length: (HEADER_LEN + body.len()) as u32,
    };
    let mut d = h.to_bytes().to_vec();
    d.extend_from_slice(&body);
    d
}

#[test]
fn unknown_spi_is_dropped_before_the_payloads_are_parsed() {
    let (a, b) = pair();
    let mut sim = Sim::new(a, b, 93);
    sim.establish();
    let t = sim.a().sent.last().unwrap().clone();
    let real = fs_wire::ike::Header::parse(&t.data).unwrap();
    let before = sim.b().ep.stats().clone();
    // Unknown SPI: counted as such without looking at the (malformed) payloads.
    sim.inject(1, t.remote, t.local, &hostile_delete(0x1234, 0x5678));
    let s = sim.b().ep.stats().clone();
    assert_eq!(s.dropped_unknown_spi, before.dropped_unknown_spi + 1);
    assert_eq!(s.dropped_malformed, before.dropped_malformed);
    // The known SA's SPIs: parsed, rejected as malformed (the count is not backed).
    sim.inject(
        1,
        t.remote,
        t.local,
        &hostile_delete(real.spi_i, real.spi_r),
    );
    let s = sim.b().ep.stats().clone();
    assert_eq!(s.dropped_unknown_spi, before.dropped_unknown_spi + 1);
    assert_eq!(s.dropped_malformed, before.dropped_malformed + 1);
    // A bad header is judged before the SPI: a Length past the datagram is malformed, a
    // request of major version 3 is answered with INVALID_MAJOR_VERSION (RFC 7296 2.5).
    let mut long = hostile_delete(0x1234, 0x5678);
    long[24..28].copy_from_slice(&1000u32.to_be_bytes());
    let mut v3 = hostile_delete(0x1234, 0x5678);
    v3[17] = 0x30;
    for d in [long, v3] {
        sim.inject(1, t.remote, t.local, &d);
    }
    let s = sim.b().ep.stats().clone();
    assert_eq!(s.dropped_unknown_spi, before.dropped_unknown_spi + 1);
    assert_eq!(s.dropped_malformed, before.dropped_malformed + 2);
    assert_eq!(
        s.invalid_major_version_sent,
        before.invalid_major_version_sent + 1
    );
    // The SA is untouched.
    assert_eq!(sim.b().children().len(), 1);
    assert!(sim.b().closed().is_none());
}
