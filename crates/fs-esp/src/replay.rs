//! Anti-replay sliding window (RFC 4303 3.4.3, appendix A2 for ESN).
//!
//! The window is a ring of `u64` words (RFC 6479 style): the bit of sequence number `s` lives
//! at ring position `s mod (64 * words)`, so advancing the window only clears the words that
//! slide in, never shifts the whole bitmap. The ring holds one spare word beyond the window so
//! the word of the highest sequence number never aliases a word still inside the window.
//!
//! Use [`ReplayWindow::check`] before the ICV check (no state change) and
//! [`ReplayWindow::update`] once the ICV verified. `update` re-checks, so two workers racing
//! with the same packet (both passing `check`, then both verifying the ICV) cannot both win.

/// The packet's sequence number is a duplicate or left of the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("replayed or too old sequence number")]
pub struct Replay;

/// Largest supported window (packets); larger configured values are clamped to it.
pub const MAX_WINDOW: u32 = 1 << 16;

/// Window used to infer the high-order ESN bits when replay protection is disabled (RFC 4303
/// A2.2 needs a window; half the 32-bit space tolerates any sane reordering).
const ESN_INFER_WINDOW_DISABLED: u32 = 1 << 31;

/// Sliding anti-replay window. Not synchronized: the SA keeps it under a lock.
#[derive(Debug, Clone)]
pub struct ReplayWindow {
    /// Window size in packets; 0 = replay protection disabled.
    size: u32,
    /// Extended sequence numbers: infer the high 32 bits of received sequence numbers.
    esn: bool,
    /// Highest authenticated sequence number so far (0 = nothing received yet).
    top: u64,
    /// Ring bitmap, `words.len() * 64 > size`. Empty when disabled.
    words: Vec<u64>,
}

impl ReplayWindow {
    /// A window of `size` packets (0 disables the check, values above [`MAX_WINDOW`] are
    /// clamped). `esn`: infer the high 32 bits per RFC 4303 A2.2.
    pub fn new(size: u32, esn: bool) -> Self {
        let size = size.min(MAX_WINDOW);
        let words = if size == 0 {
            Vec::new()
        } else {
            vec![0u64; size.div_ceil(64) as usize + 1]
        };
        ReplayWindow {
            size,
            esn,
            top: 0,
            words,
        }
    }

    /// Window size in packets (0 = disabled).
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Highest sequence number accepted so far (0 if none).
    pub fn top(&self) -> u64 {
        self.top
    }

    /// Full 64-bit sequence number for the received low 32 bits: itself without ESN, the
    /// inferred value (RFC 4303 A2.2) with ESN. `None` if it cannot be represented.
    fn infer(&self, seq_low: u32) -> Option<u64> {
        if !self.esn {
            return Some(u64::from(seq_low));
        }
        let w = if self.size == 0 {
            ESN_INFER_WINDOW_DISABLED
        } else {
            self.size
        };
        let tl = self.top as u32;
        let th = (self.top >> 32) as u32;
        let bottom = tl.wrapping_sub(w - 1); // Tl - W + 1 (mod 2^32)
        let seqh = if tl >= w - 1 {
            // Case A: the window lies within one 2^32 epoch.
            if seq_low >= bottom {
                th
            } else {
                th.checked_add(1)?
            }
        } else if seq_low >= bottom {
            // Case B: the window spans the previous epoch; high values belong to it. Before
            // the first wrap there is no previous epoch: take the packet as a forward jump.
            th.checked_sub(1).unwrap_or(th)
        } else {
            th
        };
        Some((u64::from(seqh) << 32) | u64::from(seq_low))
    }

    /// Pre-ICV check of a received sequence number (low 32 bits as carried in the packet).
    /// Returns the full sequence number to authenticate with; changes nothing.
    pub fn check(&self, seq_low: u32) -> Result<u64, Replay> {
        let full = self.infer(seq_low).ok_or(Replay)?;
        self.check_full(full)?;
        Ok(full)
    }

    fn check_full(&self, full: u64) -> Result<(), Replay> {
        if self.size == 0 {
            return Ok(());
        }
        if full == 0 {
            // Sequence numbers start at 1 (RFC 4303 3.3.3).
            return Err(Replay);
        }
        if full > self.top {
            return Ok(());
        }
        if self.top - full >= u64::from(self.size) {
            return Err(Replay);
        }
        let (w, b) = self.pos(full);
        if self.words.get(w).is_some_and(|word| word & (1 << b) != 0) {
            Err(Replay)
        } else {
            Ok(())
        }
    }

    /// Ring word and bit of a sequence number.
    fn pos(&self, full: u64) -> (usize, u32) {
        let nwords = self.words.len() as u64;
        (((full >> 6) % nwords) as usize, (full & 63) as u32)
    }

    /// Record an authenticated sequence number (as returned by [`check`](Self::check)),
    /// advancing the window if needed. Re-checks first: `Err(Replay)` if it was taken
    /// meanwhile (concurrent duplicate) or fell out of the window.
    pub fn update(&mut self, full: u64) -> Result<(), Replay> {
        self.check_full(full)?;
        if self.size == 0 {
            self.top = self.top.max(full);
            return Ok(());
        }
        if full > self.top {
            let nwords = self.words.len() as u64;
            let old_word = self.top >> 6;
            let new_word = full >> 6;
            let diff = new_word - old_word;
            if diff >= nwords {
                self.words.fill(0);
            } else {
                for i in 1..=diff {
                    let idx = ((old_word + i) % nwords) as usize;
                    if let Some(word) = self.words.get_mut(idx) {
                        *word = 0; // always: idx < nwords
                    }
                }
            }
            self.top = full;
        }
        let (w, b) = self.pos(full);
        if let Some(word) = self.words.get_mut(w) {
            *word |= 1 << b; // always: pos() reduces modulo the ring length
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(w: &mut ReplayWindow, low: u32) -> Result<u64, Replay> {
        let full = w.check(low)?;
        w.update(full)?;
        Ok(full)
    }

    #[test]
    fn in_order() {
        let mut w = ReplayWindow::new(1024, false);
        for s in 1..=5000u32 {
            assert_eq!(accept(&mut w, s), Ok(u64::from(s)));
        }
        assert_eq!(w.top(), 5000);
    }

    #[test]
    fn seq_zero_rejected() {
        let w = ReplayWindow::new(64, false);
        assert_eq!(w.check(0), Err(Replay));
    }

    #[test]
    fn duplicates() {
        let mut w = ReplayWindow::new(1024, false);
        for s in [1u32, 2, 3, 10, 7] {
            accept(&mut w, s).unwrap();
        }
        for s in [1u32, 2, 3, 10, 7] {
            assert_eq!(w.check(s), Err(Replay), "seq {s}");
            assert_eq!(w.update(u64::from(s)), Err(Replay));
        }
        // Not yet seen ones within the window are fine.
        for s in [4u32, 5, 6, 8, 9, 11] {
            assert!(w.check(s).is_ok());
        }
    }

    #[test]
    fn out_of_order_within_window() {
        let mut w = ReplayWindow::new(1024, false);
        // Receive in reverse blocks of 100.
        for block in 0..20u32 {
            for s in (block * 100 + 1..=block * 100 + 100).rev() {
                accept(&mut w, s).unwrap();
            }
        }
        assert_eq!(w.top(), 2000);
        for s in 977..=2000u32 {
            assert_eq!(w.check(s), Err(Replay));
        }
    }

    #[test]
    fn left_of_window_and_boundaries() {
        for size in [2u32, 63, 64, 65, 1024, 1000, 4096] {
            let mut w = ReplayWindow::new(size, false);
            accept(&mut w, 10_000).unwrap();
            let size64 = u64::from(size);
            // Lowest acceptable: top - size + 1.
            let lowest = (10_000 - size64 + 1) as u32;
            assert!(w.check(lowest).is_ok(), "size {size}");
            assert_eq!(w.check(lowest - 1), Err(Replay), "size {size}");
            assert_eq!(w.check(1), Err(Replay));
            accept(&mut w, lowest).unwrap();
            assert_eq!(w.check(lowest), Err(Replay));
            // Advance by one: `lowest` now falls out of the window.
            accept(&mut w, 10_001).unwrap();
            assert_eq!(w.check(lowest), Err(Replay));
            if lowest + 1 < 10_000 {
                assert!(w.check(lowest + 1).is_ok());
            }
        }
        // Window of one packet: only strictly increasing sequence numbers.
        let mut w = ReplayWindow::new(1, false);
        accept(&mut w, 5).unwrap();
        assert_eq!(w.check(5), Err(Replay));
        assert_eq!(w.check(4), Err(Replay));
        accept(&mut w, 7).unwrap();
        assert_eq!(w.check(6), Err(Replay));
    }

    #[test]
    fn big_jumps_clear_stale_bits() {
        let mut w = ReplayWindow::new(128, false);
        for s in 1..=200u32 {
            accept(&mut w, s).unwrap();
        }
        // Jump by exactly the ring size and more: no stale bits may survive.
        let ring = (w.words.len() * 64) as u32;
        accept(&mut w, 200 + ring).unwrap();
        for s in (200 + ring - 127)..(200 + ring) {
            assert!(w.check(s).is_ok(), "seq {s} stale");
        }
        accept(&mut w, 1_000_000).unwrap();
        for s in (1_000_000 - 127)..1_000_000u32 {
            assert!(w.check(s).is_ok());
        }
        assert_eq!(w.check(1_000_000 - 128), Err(Replay));
        // Jump by less than the ring: bits between cleared, older still valid.
        accept(&mut w, 1_000_000 - 5).unwrap();
        accept(&mut w, 1_000_070).unwrap();
        assert_eq!(w.check(1_000_000 - 5), Err(Replay));
        assert_eq!(w.check(1_000_000), Err(Replay));
        assert!(w.check(1_000_000 - 4).is_ok());
        assert!(w.check(1_000_069).is_ok());
    }

    #[test]
    fn randomized_against_model() {
        // Compare with a naive set-based model.
        use std::collections::BTreeSet;
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for size in [64u32, 100, 1024, 4096] {
            let mut w = ReplayWindow::new(size, false);
            let mut seen = BTreeSet::new();
            let mut top = 0u64;
            let mut base = 1u64;
            for _ in 0..20_000 {
                let r = next();
                let s = match r % 10 {
                    0 => base + (r >> 8) % 10_000,
                    _ => (base + (r >> 8) % (2 * u64::from(size))).saturating_sub(u64::from(size)),
                };
                base += r % 3;
                let expect_ok =
                    s != 0 && !seen.contains(&s) && (s > top || top - s < u64::from(size));
                let got = w.check(s as u32);
                assert_eq!(got.is_ok(), expect_ok, "size {size} seq {s} top {top}");
                if expect_ok {
                    w.update(s).unwrap();
                    seen.insert(s);
                    top = top.max(s);
                }
            }
        }
    }

    #[test]
    fn window_disabled() {
        let mut w = ReplayWindow::new(0, false);
        for s in [5u32, 5, 1, 0, 5, u32::MAX] {
            assert_eq!(accept(&mut w, s), Ok(u64::from(s)));
        }
    }

    #[test]
    fn large_window_clamped() {
        let w = ReplayWindow::new(u32::MAX, false);
        assert_eq!(w.size(), MAX_WINDOW);
    }

    #[test]
    fn esn_wrap_of_low_bits() {
        let mut w = ReplayWindow::new(1024, true);
        let start = (1u64 << 32) - 600;
        for s in start..start + 1200 {
            assert_eq!(accept(&mut w, s as u32), Ok(s));
        }
        assert_eq!(w.top(), (1 << 32) + 599);
        // Late packet from the previous epoch, inside the window: inferred Th - 1.
        let late = (1u64 << 32) - 1;
        // Already received -> replay.
        assert_eq!(w.check(late as u32), Err(Replay));
        // A fresh window where the old-epoch value was not received.
        let mut w = ReplayWindow::new(1024, true);
        accept(&mut w, u32::MAX - 9).unwrap();
        // Forward into the next epoch.
        assert_eq!(accept(&mut w, 5), Ok((1 << 32) + 5));
        // Case B: Tl = 5 < W - 1, high low-bits value -> previous epoch.
        // Below Tl - W + 1 (mod 2^32) in case B: current epoch, i.e. a forward jump.
        assert_eq!(
            w.check(u32::MAX - 2000),
            Ok((1 << 32) + u64::from(u32::MAX - 2000))
        );
        assert_eq!(accept(&mut w, u32::MAX - 3), Ok((1 << 32) - 4));
        assert_eq!(w.check(u32::MAX - 9), Err(Replay)); // seen
                                                        // Case A, low value below the window -> next epoch.
        let mut w = ReplayWindow::new(64, true);
        accept(&mut w, 1_000_000).unwrap();
        assert_eq!(w.check(10), Ok((1 << 32) + 10));
        assert_eq!(w.check(1_000_000 - 63), Ok(1_000_000 - 63));
    }

    #[test]
    fn esn_first_epoch_high_values_are_forward() {
        // No previous epoch before the first wrap: a high value is a forward jump.
        let w = ReplayWindow::new(1024, true);
        assert_eq!(w.check(u32::MAX - 1), Ok(u64::from(u32::MAX - 1)));
        let w = ReplayWindow::new(0, true);
        assert_eq!(w.check(7), Ok(7));
    }

    #[test]
    fn esn_disabled_window_still_infers() {
        let mut w = ReplayWindow::new(0, true);
        accept(&mut w, u32::MAX - 1).unwrap();
        assert_eq!(accept(&mut w, 3), Ok((1 << 32) + 3));
        // Reordered straggler of the old epoch.
        assert_eq!(accept(&mut w, u32::MAX), Ok(u64::from(u32::MAX)));
    }

    #[test]
    fn esn_exhausted_high_bits() {
        let mut w = ReplayWindow::new(64, true);
        w.update(u64::MAX - 10).unwrap();
        // Would need Th + 1 > u32::MAX.
        assert_eq!(w.check(3), Err(Replay));
    }
}
