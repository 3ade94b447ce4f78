//! Deterministic mutations for the fallback loop (no coverage feedback): bit flips, interesting
//! bytes, inserts, deletes, length-field edits, splices with other seeds, repeats, truncation.

/// xorshift64*: a fixed seed gives the same run on every machine.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform-ish in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }
}

const BYTES: [u8; 8] = [0, 1, 0x7f, 0x80, 0xff, 0x21, 0x2e, 0x80 | 0x21];
const WORDS: [u16; 8] = [0, 1, 4, 8, 0x7fff, 0x8000, 0xffff, 0xfffe];

/// Apply 1-4 mutations to `buf` (kept at most `max_len` bytes); `corpus` feeds splices.
pub fn mutate(rng: &mut Rng, buf: &mut Vec<u8>, corpus: &[Vec<u8>], max_len: usize) {
    for _ in 0..=rng.below(4) {
        one(rng, buf, corpus);
    }
    buf.truncate(max_len);
}

fn one(rng: &mut Rng, buf: &mut Vec<u8>, corpus: &[Vec<u8>]) {
    let len = buf.len();
    let at = rng.below(len + 1);
    match rng.below(9) {
        0 if len > 0 => {
            let i = rng.below(len);
            buf[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            buf[i] = if rng.below(2) == 0 {
                BYTES[rng.below(BYTES.len())]
            } else {
                rng.next_u64() as u8
            };
        }
        2 => {
            let n = 1 + rng.below(8);
            for _ in 0..n {
                buf.insert(at.min(buf.len()), rng.next_u64() as u8);
            }
        }
        3 if len > 0 => {
            let n = 1 + rng.below(len.min(16));
            let end = (at + n).min(len);
            buf.drain(at.min(end)..end);
        }
        // Length / count fields: 16 bits big endian (every IKE length), sometimes 32.
        4 | 5 if len >= 2 => {
            let i = rng.below(len - 1);
            let old = u16::from_be_bytes([buf[i], buf[i + 1]]);
            let new = match rng.below(4) {
                0 => WORDS[rng.below(WORDS.len())],
                1 => old.wrapping_add(1 + rng.below(8) as u16),
                2 => old.wrapping_sub(1 + rng.below(8) as u16),
                _ => u16::try_from(len - i).unwrap_or(u16::MAX),
            };
            buf[i..i + 2].copy_from_slice(&new.to_be_bytes());
            if rng.below(4) == 0 && i >= 2 {
                buf[i - 2..i].copy_from_slice(&[0, 0]);
            }
        }
        6 if !corpus.is_empty() => {
            let other = &corpus[rng.below(corpus.len())];
            let from = rng.below(other.len() + 1);
            let n = rng.below(other.len() - from + 1);
            let piece = &other[from..from + n];
            if rng.below(2) == 0 {
                buf.splice(at..at, piece.iter().copied());
            } else {
                buf.truncate(at);
                buf.extend_from_slice(piece);
            }
        }
        7 if len > 0 => {
            let from = rng.below(len);
            let n = 1 + rng.below((len - from).min(64));
            let piece = buf[from..from + n].to_vec();
            for _ in 0..=rng.below(4) {
                buf.splice(at..at, piece.iter().copied());
            }
        }
        8 if len > 0 => buf.truncate(rng.below(len)),
        _ => buf.push(rng.next_u64() as u8),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_bounded() {
        let corpus = vec![vec![1u8; 40], vec![2u8; 10]];
        let run = || {
            let mut rng = Rng::new(7);
            let mut buf = corpus[0].clone();
            for _ in 0..1000 {
                mutate(&mut rng, &mut buf, &corpus, 100);
                assert!(buf.len() <= 100);
            }
            buf
        };
        assert_eq!(run(), run());
    }
}
