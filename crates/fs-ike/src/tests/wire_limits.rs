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
