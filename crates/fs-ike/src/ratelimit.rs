//! A token bucket for answers the endpoint sends to unauthenticated input (e.g.
//! INVALID_MAJOR_VERSION, RFC 7296 2.5): a flood of such datagrams gets at most `burst`
//! answers at once and `per_sec` answers per second after that; the rest is dropped and
//! counted by the caller.
use std::time::Instant;

pub(crate) struct TokenBucket {
    burst: u32,
    per_sec: u32,
    tokens: u32,
    /// When tokens were last added (None: never used, the bucket is full).
    last: Option<Instant>,
}

impl TokenBucket {
    pub(crate) const fn new(burst: u32, per_sec: u32) -> Self {
        TokenBucket {
            burst,
            per_sec,
            tokens: burst,
            last: None,
        }
    }

    /// Take one token if there is one (refilling first for the time since the last refill).
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        match self.last {
            None => self.last = Some(now),
            Some(t) => {
                let ms = now.saturating_duration_since(t).as_millis();
                let add = ms.saturating_mul(u128::from(self.per_sec)) / 1000;
                if add > 0 {
                    let add = u32::try_from(add).unwrap_or(u32::MAX);
                    self.tokens = self.tokens.saturating_add(add).min(self.burst);
                    self.last = Some(now);
                }
            }
        }
        if self.tokens > 0 {
            self.tokens -= 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(5, 10);
        assert_eq!((0..100).filter(|_| b.take(t0)).count(), 5);
        // 1 s later: 10 more, but never more than the burst at once.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!((0..100).filter(|_| b.take(t1)).count(), 5);
        // Called every 10 ms for 1 s: about 10 answers (one per 100 ms), not starved.
        let n = (1..=100)
            .filter(|i| b.take(t1 + Duration::from_millis(10 * i)))
            .count();
        assert!((9..=11).contains(&n), "{n}");
        // A clock going backwards adds nothing and does not panic.
        let mut c = TokenBucket::new(1, 1);
        assert!(c.take(t1));
        assert!(!c.take(t0));
    }
}
