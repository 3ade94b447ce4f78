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
