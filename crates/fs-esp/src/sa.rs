//! Outbound and inbound ESP SAs.
//!
//! Packet layout (RFC 4303 2): `SPI | seq (low 32) | IV | payload | padding 1,2,3.. | pad_len |
//! next_header | ICV`, padded so that the ciphertext is a multiple of max(4, cipher block).
//!
//! IVs: AEAD suites carry the 64-bit sequence number as the 8-byte explicit IV (unique per key,
//! RFC 4106 3.1, RFC 7634 2). AES-CBC needs an unpredictable IV (RFC 3602 2.3): we encrypt
//! `seq || SPI || 0` with AES-128-ECB under a per-SA random key drawn once from the system
//! CSPRNG (the "encrypted counter" method of NIST SP 800-38A appendix C). That is unique per
//! packet, unpredictable without the key, lock-free and allocation-free, and costs one AES block
//! instead of a system RNG call per packet.
use crate::replay::ReplayWindow;
use crate::{NH_IPV4, NH_IPV6};
use aws_lc_rs::cipher::{EncryptingKey, EncryptionContext, UnboundCipherKey, AES_128};
use fs_crypto::{CryptoError, EncrAlg, IntegAlg, Secret, Transform};
use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::sync::atomic::{
    AtomicU64,
    Ordering::{Acquire, Relaxed, Release},
};
use std::sync::Mutex;

pub use fs_wire::{EspSpi, Mode};

/// Everything needed to key one direction of a CHILD_SA. The keys are [`Secret`]s (wiped on
/// drop, redacted in `Debug`); the config is not `Clone`.
#[derive(Debug)]
pub struct SaConfig {
    pub spi: EspSpi,
    pub encr: EncrAlg,
    pub integ: Option<IntegAlg>,
    pub encr_key: Secret,
    pub integ_key: Secret,
    pub mode: Mode,
    /// Anti-replay window in packets (inbound only); 0 disables replay protection.
    pub replay_window: u32,
    /// Extended (64-bit) sequence numbers negotiated.
    pub esn: bool,
}

/// Why a packet was not processed. Each maps to a drop counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EspError {
    #[error("packet too short or malformed")]
    Malformed,
    #[error("SPI does not belong to this SA")]
    WrongSpi,
    #[error("sequence number replayed or left of the window")]
    Replay,
    #[error("integrity check failed")]
    AuthFailed,
    #[error("invalid padding")]
    BadPadding,
    #[error("unexpected next header {0}")]
    BadNextHeader(u8),
    #[error("output buffer too small")]
    BufferTooSmall,
    #[error("sequence number space exhausted: SA must be rekeyed")]
    SeqExhausted,
    #[error("crypto failure")]
    Crypto,
    /// A valid dummy packet (next header 59, RFC 4303 2.6): drop silently, not an error.
    #[error("dummy packet (next header 59)")]
    Dummy,
}

/// A snapshot of an SA's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub packets: u64,
    pub bytes: u64,
    pub dropped_replay: u64,
    pub dropped_auth: u64,
    pub dropped_malformed: u64,
}

/// Next Header value of dummy packets (IPv6 "no next header", RFC 4303 2.6).
pub const NH_NO_NEXT: u8 = 59;

/// Result of a successful decapsulation: the inner packet is `buf[inner]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decapsulated {
    pub next_header: u8,
    pub inner: Range<usize>,
    /// The full 64-bit sequence number of the packet.
    pub seq: u64,
}

/// Atomic counters behind [`Counters`].
#[derive(Default)]
struct AtomicCounters {
    packets: AtomicU64,
    bytes: AtomicU64,
    dropped_replay: AtomicU64,
    dropped_auth: AtomicU64,
    dropped_malformed: AtomicU64,
}

impl AtomicCounters {
    fn snapshot(&self) -> Counters {
        Counters {
            packets: self.packets.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            dropped_replay: self.dropped_replay.load(Relaxed),
            dropped_auth: self.dropped_auth.load(Relaxed),
            dropped_malformed: self.dropped_malformed.load(Relaxed),
        }
    }
}

fn new_transform(cfg: &SaConfig) -> Result<Transform, EspError> {
    Transform::new(cfg.encr, cfg.integ, &cfg.encr_key, &cfg.integ_key).map_err(|_| EspError::Crypto)
}

/// Padding alignment: max(4, cipher block length) (RFC 4303 2.4).
fn alignment(t: &Transform) -> usize {
    t.block_len().max(4)
}

/// Sending side of an SA.
pub struct OutboundSa {
    spi: EspSpi,
    esn: bool,
    transform: Transform,
    align: usize,
    /// Key for CBC IV generation (`None` for AEAD).
    iv_key: Option<EncryptingKey>,
    /// Last sequence number used (0 = none yet).
    seq: AtomicU64,
    /// Ordered sending by several workers ([`OutboundSa::reserve`]): every sequence number
    /// up to this one is sent (or abandoned).
    sent: AtomicU64,
    counters: AtomicCounters,
}

/// How long [`OutboundSa::wait_turn`] waits for earlier ranges before giving up on ordering.
const TURN_WAIT_MAX: std::time::Duration = std::time::Duration::from_millis(100);

impl OutboundSa {
    /// Key the outbound direction. `Crypto` if the keys do not match the algorithms.
    pub fn new(cfg: &SaConfig) -> Result<Self, EspError> {
        let transform = new_transform(cfg)?;
        let iv_key = if cfg.encr.is_aead() {
            None
        } else {
            let mut k = [0u8; 16];
            aws_lc_rs::rand::fill(&mut k).map_err(|_| EspError::Crypto)?;
            let key = UnboundCipherKey::new(&AES_128, &k).map_err(|_| EspError::Crypto)?;
            k.fill(0);
            Some(EncryptingKey::ecb(key).map_err(|_| EspError::Crypto)?)
        };
        Ok(OutboundSa {
            spi: cfg.spi,
            esn: cfg.esn,
            align: alignment(&transform),
            transform,
            iv_key,
            seq: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            counters: AtomicCounters::default(),
        })
    }

    /// The peer-assigned SPI written into every packet.
    pub fn spi(&self) -> EspSpi {
        self.spi
    }

    /// Bytes the ESP encapsulation adds at most to an inner packet (header, IV, padding,
    /// trailer, ICV); the output buffer needs `inner.len() + max_overhead()`.
    pub fn max_overhead(&self) -> usize {
        crate::ESP_HEADER_LEN
            + self.transform.iv_len()
            + (self.align - 1)
            + 2
            + self.transform.icv_len()
    }

    /// Exact ESP packet length for an inner packet of `inner_len` bytes.
    pub fn encapsulated_len(&self, inner_len: usize) -> usize {
        let body = inner_len + 2;
        let pad = (self.align - body % self.align) % self.align;
        crate::ESP_HEADER_LEN + self.transform.iv_len() + body + pad + self.transform.icv_len()
    }

    /// Largest sequence number this SA may use.
    fn seq_limit(&self) -> u64 {
        if self.esn {
            u64::MAX
        } else {
            u64::from(u32::MAX)
        }
    }

    /// Write the ESP packet (SPI .. ICV; no outer IP/UDP header) for `inner` into `out` and
    /// return its length. Takes the next sequence number atomically. Allocation-free.
    pub fn encapsulate(
        &self,
        inner: &[u8],
        next_header: u8,
        out: &mut [u8],
    ) -> Result<usize, EspError> {
        let total = self.fits(inner, out)?; // before taking a sequence number
        let seq = self.reserve(1)?;
        let out = out.get_mut(..total).ok_or(EspError::BufferTooSmall)?; // fits() checked it
        self.seal_with(seq, inner, next_header, out)
    }

    /// The ESP packet length for `inner`, if `out` can hold it.
    fn fits(&self, inner: &[u8], out: &[u8]) -> Result<usize, EspError> {
        let total = self.encapsulated_len(inner.len());
        if out.len() < total {
            return Err(EspError::BufferTooSmall);
        }
        Ok(total)
    }

    /// Reserve `n` (>= 1) consecutive sequence numbers and return the first. For several
    /// workers sharing the SA and sending in sequence-number order: encapsulate with
    /// [`OutboundSa::encapsulate_with_seq`], [`OutboundSa::wait_turn`] before sending,
    /// [`OutboundSa::finish`] after (also when packets of the range were dropped).
    /// `SeqExhausted` if fewer than `n` remain.
    pub fn reserve(&self, n: u64) -> Result<u64, EspError> {
        let limit = self.seq_limit();
        self.seq
            .fetch_update(Relaxed, Relaxed, |s| {
                s.checked_add(n).filter(|&e| n > 0 && e <= limit)
            })
            .map(|s| s + 1)
            .map_err(|_| EspError::SeqExhausted)
    }

    /// [`OutboundSa::encapsulate`] with sequence number `seq` from [`OutboundSa::reserve`].
    pub fn encapsulate_with_seq(
        &self,
        seq: u64,
        inner: &[u8],
        next_header: u8,
        out: &mut [u8],
    ) -> Result<usize, EspError> {
        let total = self.fits(inner, out)?;
        if seq == 0 || seq > self.seq.load(Relaxed) {
            return Err(EspError::SeqExhausted); // not reserved
        }
        let out = out.get_mut(..total).ok_or(EspError::BufferTooSmall)?; // fits() checked it
        self.seal_with(seq, inner, next_header, out)
    }

    /// Wait until every range reserved before the one starting at `first` is finished
    /// ([`OutboundSa::finish`]), so that this range goes out after them. Spins, then yields;
    /// gives up after a bounded time (a worker stalled that long must not stop the others;
    /// its packets then arrive late and count against the peer's replay window). Returns
    /// whether the turn came.
    pub fn wait_turn(&self, first: u64) -> bool {
        let ready = || self.sent.load(Acquire) >= first.saturating_sub(1);
        for _ in 0..256 {
            if ready() {
                return true;
            }
            std::hint::spin_loop();
        }
        let start = std::time::Instant::now();
        while !ready() {
            if start.elapsed() > TURN_WAIT_MAX {
                return false;
            }
            std::thread::yield_now();
        }
        true
    }

    /// The range ending with `last` is sent (or dropped): the next range may go.
    pub fn finish(&self, last: u64) {
        self.sent.fetch_max(last, Release);
    }

    /// Build the packet with sequence number `seq` in `out` (exactly `encapsulated_len`).
    // Every range lies within `out`: callers slice it to `fits()`, which is `encapsulated_len`
    // (header + IV + inner + padding + 2 + ICV).
    #[allow(clippy::indexing_slicing)]
    fn seal_with(
        &self,
        seq: u64,
        inner: &[u8],
        next_header: u8,
        out: &mut [u8],
    ) -> Result<usize, EspError> {
        let total = out.len();
        let iv_len = self.transform.iv_len();
        let hdr = crate::ESP_HEADER_LEN;
        out[0..4].copy_from_slice(&self.spi.to_be_bytes());
        out[4..8].copy_from_slice(&(seq as u32).to_be_bytes());
        let iv = &mut out[hdr..hdr + iv_len];
        match &self.iv_key {
            None => iv.copy_from_slice(&seq.to_be_bytes()),
            Some(key) => {
                iv[..8].copy_from_slice(&seq.to_be_bytes());
                iv[8..12].copy_from_slice(&self.spi.to_be_bytes());
                iv[12..].fill(0);
                key.less_safe_encrypt(iv, EncryptionContext::None)
                    .map_err(|_| EspError::Crypto)?;
            }
        }
        let p = hdr + iv_len;
        out[p..p + inner.len()].copy_from_slice(inner);
        let trailer = total - self.transform.icv_len() - 2;
        for (i, b) in out[p + inner.len()..trailer].iter_mut().enumerate() {
            *b = (i + 1) as u8;
        }
        out[trailer] = (trailer - p - inner.len()) as u8;
        out[trailer + 1] = next_header;
        let esn_high = self.esn.then_some((seq >> 32) as u32);
        self.transform
            .seal(out, hdr, esn_high)
            .map_err(|_| EspError::Crypto)?;
        self.counters.packets.fetch_add(1, Relaxed);
        self.counters.bytes.fetch_add(inner.len() as u64, Relaxed);
        Ok(total)
    }

    /// Highest sequence number used so far.
    pub fn seq(&self) -> u64 {
        self.seq.load(Relaxed)
    }

    /// Set the last-used sequence number (the next packet uses `seq + 1`). For tests and
    /// simulations of long-lived SAs only.
    #[doc(hidden)]
    pub fn set_seq_for_testing(&self, seq: u64) {
        self.seq.store(seq, Relaxed);
    }

    /// Snapshot of packets/bytes sent (inner bytes). Drop counters stay 0 outbound.
    pub fn counters(&self) -> Counters {
        self.counters.snapshot()
    }
}

/// Receiving side of an SA.
///
/// The replay window sits behind a `Mutex` held only for the pre-check and the update (never
/// during crypto). A lock-free window (atomic words, CAS on the top) is future work.
pub struct InboundSa {
    spi: EspSpi,
    esn: bool,
    mode: Mode,
    transform: Transform,
    cbc: bool,
    replay: Mutex<ReplayWindow>,
    counters: AtomicCounters,
}

impl InboundSa {
    /// Key the inbound direction. `Crypto` if the keys do not match the algorithms.
    pub fn new(cfg: &SaConfig) -> Result<Self, EspError> {
        let transform = new_transform(cfg)?;
        Ok(InboundSa {
            spi: cfg.spi,
            esn: cfg.esn,
            mode: cfg.mode,
            cbc: !cfg.encr.is_aead(),
            transform,
            replay: Mutex::new(ReplayWindow::new(cfg.replay_window, cfg.esn)),
            counters: AtomicCounters::default(),
        })
    }

    /// Our SPI, expected in every packet.
    pub fn spi(&self) -> EspSpi {
        self.spi
    }

    fn window(&self) -> std::sync::MutexGuard<'_, ReplayWindow> {
        // A poisoned lock only means another worker panicked; the window itself is consistent.
        self.replay.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Process the ESP packet in `pkt` (SPI .. ICV) in place: replay pre-check, ICV check and
    /// decryption, replay window update (RFC 4303 3.4.3: once the ICV verified), padding and
    /// next-header checks. Counts drops. A dummy packet yields [`EspError::Dummy`] (not
    /// counted as a drop).
    pub fn decapsulate(&self, pkt: &mut [u8]) -> Result<Decapsulated, EspError> {
        let r = self.decapsulate_inner(pkt);
        match r {
            Ok(ref d) => {
                self.counters.packets.fetch_add(1, Relaxed);
                self.counters.bytes.fetch_add(d.inner.len() as u64, Relaxed);
            }
            Err(EspError::Replay) => {
                self.counters.dropped_replay.fetch_add(1, Relaxed);
            }
            Err(EspError::AuthFailed) | Err(EspError::Crypto) => {
                self.counters.dropped_auth.fetch_add(1, Relaxed);
            }
            Err(EspError::Dummy) => {}
            Err(_) => {
                self.counters.dropped_malformed.fetch_add(1, Relaxed);
            }
        }
        r
    }

    fn decapsulate_inner(&self, pkt: &mut [u8]) -> Result<Decapsulated, EspError> {
        let hdr = crate::ESP_HEADER_LEN;
        let iv_len = self.transform.iv_len();
        let icv_len = self.transform.icv_len();
        // Header, IV, at least pad_len + next header, ICV.
        if pkt.len() < hdr + iv_len + 2 + icv_len {
            return Err(EspError::Malformed);
        }
        let ct_len = pkt.len() - hdr - iv_len - icv_len;
        // Block lengths are powers of two (16): a mask tests the multiple.
        if self.cbc && ct_len & (self.transform.block_len() - 1) != 0 {
            return Err(EspError::Malformed);
        }
        // Never taken: the length check above covers the 8-byte header.
        let Some(&[s0, s1, s2, s3, q0, q1, q2, q3]) = pkt.first_chunk::<8>() else {
            return Err(EspError::Malformed);
        };
        let spi = EspSpi::from_be_bytes([s0, s1, s2, s3]);
        if spi != self.spi {
            return Err(EspError::WrongSpi);
        }
        let seq_low = u32::from_be_bytes([q0, q1, q2, q3]);
        let seq = self.window().check(seq_low).map_err(|_| EspError::Replay)?;
        let esn_high = self.esn.then_some((seq >> 32) as u32);
        let plain = self
            .transform
            .open(pkt, hdr, esn_high)
            .map_err(|e| match e {
                CryptoError::IntegrityCheckFailed => EspError::AuthFailed,
                CryptoError::InvalidBuffer(_) | CryptoError::NotBlockAligned => EspError::Malformed,
                _ => EspError::Crypto,
            })?;
        // The trailer (pad length, next header): the last two plaintext bytes.
        let trailer = match plain.end.checked_sub(2) {
            Some(t) if plain.len() >= 2 => pkt.get(t..plain.end),
            _ => None,
        };
        let Some(&[pad_len, next_header]) = trailer else {
            return Err(EspError::Malformed);
        };
        self.window().update(seq).map_err(|_| EspError::Replay)?;

        let pad_len = usize::from(pad_len);
        if pad_len + 2 > plain.len() {
            return Err(EspError::BadPadding);
        }
        let inner_end = plain.end - 2 - pad_len;
        let padding_ok = pkt
            .get(inner_end..plain.end - 2)
            .unwrap_or_default()
            .iter()
            .enumerate()
            .all(|(i, &b)| usize::from(b) == i + 1);
        if !padding_ok {
            return Err(EspError::BadPadding);
        }
        if next_header == NH_NO_NEXT {
            return Err(EspError::Dummy);
        }
        if self.mode == Mode::Tunnel && next_header != NH_IPV4 && next_header != NH_IPV6 {
            return Err(EspError::BadNextHeader(next_header));
        }
        Ok(Decapsulated {
            next_header,
            inner: plain.start..inner_end,
            seq,
        })
    }

    /// Snapshot of packets/bytes received (inner bytes) and drops by reason. `WrongSpi`,
    /// `BadPadding`, `BadNextHeader` count as malformed; `Crypto` as auth.
    pub fn counters(&self) -> Counters {
        self.counters.snapshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ip::testpkt::{ipv4, ipv6};
    use crate::ip::PacketInfo;
    use std::sync::Arc;

    const SUITES: [(EncrAlg, Option<IntegAlg>); 9] = [
        (EncrAlg::AesGcm16_128, None),
        (EncrAlg::AesGcm16_256, None),
        (EncrAlg::ChaCha20Poly1305, None),
        (EncrAlg::AesCbc128, Some(IntegAlg::HmacSha256_128)),
        (EncrAlg::AesCbc128, Some(IntegAlg::HmacSha384_192)),
        (EncrAlg::AesCbc128, Some(IntegAlg::HmacSha512_256)),
        (EncrAlg::AesCbc256, Some(IntegAlg::HmacSha256_128)),
        (EncrAlg::AesCbc256, Some(IntegAlg::HmacSha384_192)),
        (EncrAlg::AesCbc256, Some(IntegAlg::HmacSha512_256)),
    ];

    fn cfg(encr: EncrAlg, integ: Option<IntegAlg>, mode: Mode, window: u32, esn: bool) -> SaConfig {
        SaConfig {
            spi: EspSpi(0xc0de_0001),
            encr,
            integ,
            encr_key: Secret::new((0..encr.key_len()).map(|i| i as u8 ^ 0x5a).collect()),
            integ_key: Secret::new(integ.map_or(Vec::new(), |a| {
                (0..a.key_len()).map(|i| i as u8 ^ 0x3c).collect()
            })),
            mode,
            replay_window: window,
            esn,
        }
    }

    fn pair(c: &SaConfig) -> (OutboundSa, InboundSa) {
        (OutboundSa::new(c).unwrap(), InboundSa::new(c).unwrap())
    }

    /// `threads` threads each encapsulate `per` copies of `inner(thread)` on `out`, yielding
    /// every `yield_every` packets; all packets, thread by thread.
    fn encap_in_threads(
        out: &Arc<OutboundSa>,
        threads: usize,
        per: usize,
        inner: impl Fn(usize) -> Vec<u8>,
        yield_every: usize,
    ) -> Vec<Vec<u8>> {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let out = Arc::clone(out);
                let inner = inner(t);
                std::thread::spawn(move || {
                    (0..per)
                        .map(|i| {
                            if i % yield_every == yield_every - 1 {
                                std::thread::yield_now();
                            }
                            encap(&out, &inner, NH_IPV4)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    }

    fn encap(out: &OutboundSa, inner: &[u8], nh: u8) -> Vec<u8> {
        let mut buf = vec![0u8; inner.len() + out.max_overhead()];
        let n = out.encapsulate(inner, nh, &mut buf).unwrap();
        buf.truncate(n);
        buf
    }

    fn name(encr: EncrAlg, integ: Option<IntegAlg>) -> String {
        format!("{}{}", encr.name(), integ.map_or("", |i| i.name()))
    }

    #[test]
    fn sa_is_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<OutboundSa>();
        check::<InboundSa>();
    }

    #[test]
    fn roundtrip_all_suites_and_modes() {
        for (encr, integ) in SUITES {
            for mode in [Mode::Tunnel, Mode::Transport] {
                let c = cfg(encr, integ, mode, 1024, false);
                let (out, inb) = pair(&c);
                let mut inners: Vec<(Vec<u8>, u8)> = Vec::new();
                for n in [0usize, 1, 2, 3, 13, 14, 15, 16, 17, 100, 1372] {
                    inners.push((ipv4(17, n), NH_IPV4));
                    inners.push((ipv6(6, &[], n), NH_IPV6));
                }
                if mode == Mode::Transport {
                    for n in 0..40 {
                        inners.push(((0..n).map(|i| i as u8).collect(), 6));
                    }
                }
                let mut bytes = 0;
                for (i, (inner, nh)) in inners.iter().enumerate() {
                    let pkt = encap(&out, inner, *nh);
                    let what = format!("{} {mode:?} len {}", name(encr, integ), inner.len());
                    assert_eq!(pkt.len(), out.encapsulated_len(inner.len()), "{what}");
                    assert!(pkt.len() <= inner.len() + out.max_overhead(), "{what}");
                    let icv = integ.map_or(16, |a| a.icv_len());
                    let ct = pkt.len() - 8 - encr.iv_len() - icv;
                    assert_eq!(ct % encr.block_len().max(4), 0, "{what}");
                    assert_eq!(&pkt[0..4], &0xc0de_0001u32.to_be_bytes());
                    let seq = i as u64 + 1;
                    assert_eq!(&pkt[4..8], &(seq as u32).to_be_bytes());
                    if encr.is_aead() {
                        assert_eq!(&pkt[8..16], &seq.to_be_bytes(), "AEAD IV = seq");
                    }
                    let mut rx = pkt.clone();
                    let d = inb
                        .decapsulate(&mut rx)
                        .unwrap_or_else(|e| panic!("{what}: {e}"));
                    assert_eq!(d.next_header, *nh);
                    assert_eq!(d.seq, seq);
                    assert_eq!(&rx[d.inner.clone()], &inner[..], "{what}");
                    if mode == Mode::Tunnel {
                        assert!(PacketInfo::parse(&rx[d.inner]).is_ok());
                    }
                    bytes += inner.len() as u64;
                }
                let n = inners.len() as u64;
                assert_eq!(out.seq(), n);
                assert_eq!(
                    out.counters(),
                    Counters {
                        packets: n,
                        bytes,
                        ..Default::default()
                    }
                );
                assert_eq!(
                    inb.counters(),
                    Counters {
                        packets: n,
                        bytes,
                        ..Default::default()
                    }
                );
            }
        }
    }

    #[test]
    fn cbc_ivs_are_unique_and_not_the_counter() {
        let c = cfg(
            EncrAlg::AesCbc256,
            Some(IntegAlg::HmacSha256_128),
            Mode::Tunnel,
            64,
            false,
        );
        let out = OutboundSa::new(&c).unwrap();
        let a = encap(&out, &ipv4(17, 10), NH_IPV4);
        let b = encap(&out, &ipv4(17, 10), NH_IPV4);
        assert_ne!(&a[8..24], &b[8..24]);
        assert_ne!(&a[8..16], &1u64.to_be_bytes());
        // Another SA with the same keys draws another IV key.
        let out2 = OutboundSa::new(&c).unwrap();
        let a2 = encap(&out2, &ipv4(17, 10), NH_IPV4);
        assert_ne!(&a[8..24], &a2[8..24]);
    }

    #[test]
    fn buffer_too_small_does_not_consume_seq() {
        let c = cfg(EncrAlg::AesGcm16_256, None, Mode::Tunnel, 64, false);
        let out = OutboundSa::new(&c).unwrap();
        let inner = ipv4(17, 50);
        let mut buf = vec![0u8; out.encapsulated_len(inner.len()) - 1];
        assert_eq!(
            out.encapsulate(&inner, NH_IPV4, &mut buf),
            Err(EspError::BufferTooSmall)
        );
        assert_eq!(out.seq(), 0);
    }

    #[test]
    fn bad_keys_rejected() {
        let mut c = cfg(EncrAlg::AesGcm16_256, None, Mode::Tunnel, 64, false);
        c.encr_key = Secret::from_slice(&c.encr_key[..c.encr_key.len() - 1]);
        assert!(OutboundSa::new(&c).is_err());
        assert!(InboundSa::new(&c).is_err());
    }

    #[test]
    fn tampered_packets_fail_auth() {
        for (encr, integ) in SUITES {
            let c = cfg(encr, integ, Mode::Tunnel, 1024, false);
            let (out, inb) = pair(&c);
            let pkt = encap(&out, &ipv4(17, 64), NH_IPV4);
            let mut fails = 0;
            // Every byte after the SPI: seq, IV, ciphertext, ICV.
            for pos in 4..pkt.len() {
                let mut rx = pkt.clone();
                rx[pos] ^= 0x10; // never turns seq 1 into the invalid 0
                let r = inb.decapsulate(&mut rx);
                assert_eq!(
                    r,
                    Err(EspError::AuthFailed),
                    "{} pos {pos}",
                    name(encr, integ)
                );
                fails += 1;
            }
            assert_eq!(inb.counters().dropped_auth, fails);
            assert_eq!(inb.counters().packets, 0);
            // The original still decapsulates: failed packets do not touch the window.
            let mut rx = pkt.clone();
            assert!(inb.decapsulate(&mut rx).is_ok());
        }
    }

    #[test]
    fn wrong_spi() {
        let c = cfg(EncrAlg::AesGcm16_128, None, Mode::Tunnel, 1024, false);
        let (out, inb) = pair(&c);
        let mut pkt = encap(&out, &ipv4(17, 20), NH_IPV4);
        pkt[3] ^= 0xff;
        assert_eq!(inb.decapsulate(&mut pkt), Err(EspError::WrongSpi));
        assert_eq!(inb.counters().dropped_malformed, 1);
    }

    #[test]
    fn replayed_packet_counted() {
        for (encr, integ) in [SUITES[1], SUITES[2], SUITES[6]] {
            let c = cfg(encr, integ, Mode::Tunnel, 1024, false);
            let (out, inb) = pair(&c);
            let pkt = encap(&out, &ipv4(17, 20), NH_IPV4);
            assert!(inb.decapsulate(&mut pkt.clone()).is_ok());
            assert_eq!(inb.decapsulate(&mut pkt.clone()), Err(EspError::Replay));
            assert_eq!(inb.decapsulate(&mut pkt.clone()), Err(EspError::Replay));
            let c2 = inb.counters();
            assert_eq!((c2.packets, c2.dropped_replay, c2.dropped_auth), (1, 2, 0));
            // Window disabled: replays accepted.
            let c = cfg(encr, integ, Mode::Tunnel, 0, false);
            let (out, inb) = pair(&c);
            let pkt = encap(&out, &ipv4(17, 20), NH_IPV4);
            assert!(inb.decapsulate(&mut pkt.clone()).is_ok());
            assert!(inb.decapsulate(&mut pkt.clone()).is_ok());
        }
    }

    #[test]
    fn out_of_order_and_too_old() {
        let c = cfg(EncrAlg::ChaCha20Poly1305, None, Mode::Tunnel, 1024, false);
        let (out, inb) = pair(&c);
        let pkts: Vec<Vec<u8>> = (0..1100)
            .map(|_| encap(&out, &ipv4(17, 8), NH_IPV4))
            .collect();
        assert!(inb.decapsulate(&mut pkts[1099].clone()).is_ok()); // seq 1100
        assert!(inb.decapsulate(&mut pkts[500].clone()).is_ok()); // inside the window
        assert_eq!(inb.decapsulate(&mut pkts[0].clone()), Err(EspError::Replay)); // left
        assert!(inb.decapsulate(&mut pkts[76].clone()).is_ok()); // seq 77 = lowest in window
        assert_eq!(
            inb.decapsulate(&mut pkts[75].clone()),
            Err(EspError::Replay)
        );
    }

    #[test]
    fn truncated_packets_never_panic() {
        for (encr, integ) in SUITES {
            let c = cfg(encr, integ, Mode::Tunnel, 1024, false);
            let (out, inb) = pair(&c);
            let pkt = encap(&out, &ipv6(17, &[], 33), NH_IPV6);
            for n in 0..pkt.len() {
                let mut rx = pkt[..n].to_vec();
                let r = inb.decapsulate(&mut rx);
                assert!(
                    matches!(r, Err(EspError::Malformed) | Err(EspError::AuthFailed)),
                    "{} len {n}: {r:?}",
                    name(encr, integ)
                );
            }
            let cn = inb.counters();
            assert_eq!(cn.dropped_auth + cn.dropped_malformed, pkt.len() as u64);
            assert!(inb.decapsulate(&mut pkt.clone()).is_ok());
        }
    }

    /// Seal an arbitrary plaintext (payload || padding || pad_len || nh already included)
    /// with the SA's keys, bypassing `OutboundSa`'s padding.
    fn seal_raw(c: &SaConfig, seq: u64, plaintext: &[u8]) -> Vec<u8> {
        let t = Transform::new(c.encr, c.integ, &c.encr_key, &c.integ_key).unwrap();
        let mut buf = Vec::new();
        buf.extend_from_slice(&c.spi.to_be_bytes());
        buf.extend_from_slice(&(seq as u32).to_be_bytes());
        if c.encr.is_aead() {
            buf.extend_from_slice(&seq.to_be_bytes());
        } else {
            buf.extend_from_slice(&[0x42; 16]);
        }
        buf.extend_from_slice(plaintext);
        buf.resize(buf.len() + t.icv_len(), 0);
        t.seal(&mut buf, 8, c.esn.then_some((seq >> 32) as u32))
            .unwrap();
        buf
    }

    #[test]
    fn bad_padding_detected() {
        for (encr, integ) in [SUITES[0], SUITES[2], SUITES[3], SUITES[8]] {
            let c = cfg(encr, integ, Mode::Tunnel, 1024, false);
            let inb = InboundSa::new(&c).unwrap();
            let mut payload = ipv4(17, 0); // 28 bytes
                                           // Sanity: correct padding accepted (28 + 2 + 2 = 32).
            let mut good = payload.clone();
            good.extend_from_slice(&[1, 2, 2, NH_IPV4]);
            let mut pkt = seal_raw(&c, 1, &good);
            let d = inb.decapsulate(&mut pkt).unwrap();
            assert_eq!(&pkt[d.inner], &payload[..]);
            // Wrong padding bytes.
            let mut bad = payload.clone();
            bad.extend_from_slice(&[1, 3, 2, NH_IPV4]);
            assert_eq!(
                inb.decapsulate(&mut seal_raw(&c, 2, &bad)),
                Err(EspError::BadPadding)
            );
            let mut bad = payload.clone();
            bad.extend_from_slice(&[0, 0, 2, NH_IPV4]);
            assert_eq!(
                inb.decapsulate(&mut seal_raw(&c, 3, &bad)),
                Err(EspError::BadPadding)
            );
            // pad_len longer than the plaintext.
            payload.extend_from_slice(&[1, 2, 250, NH_IPV4]);
            assert_eq!(
                inb.decapsulate(&mut seal_raw(&c, 4, &payload)),
                Err(EspError::BadPadding)
            );
            assert_eq!(inb.counters().dropped_malformed, 3);
            // Authenticated packets enter the window even when their padding is bad.
            assert_eq!(
                inb.decapsulate(&mut seal_raw(&c, 2, &bad)),
                Err(EspError::Replay)
            );
        }
    }

    #[test]
    fn next_header_checks_and_dummy() {
        let c = cfg(EncrAlg::AesGcm16_256, None, Mode::Tunnel, 1024, false);
        let (out, inb) = pair(&c);
        let mut pkt = encap(&out, &[1, 2, 3], 17);
        assert_eq!(inb.decapsulate(&mut pkt), Err(EspError::BadNextHeader(17)));
        assert_eq!(inb.counters().dropped_malformed, 1);
        let mut pkt = encap(&out, &[], NH_NO_NEXT);
        assert_eq!(inb.decapsulate(&mut pkt), Err(EspError::Dummy));
        let mut pkt = encap(&out, &[0; 30], NH_NO_NEXT);
        assert_eq!(inb.decapsulate(&mut pkt), Err(EspError::Dummy));
        let cn = inb.counters();
        assert_eq!(
            (cn.packets, cn.dropped_malformed, cn.dropped_auth),
            (0, 1, 0)
        );

        let c = cfg(EncrAlg::AesGcm16_256, None, Mode::Transport, 1024, false);
        let (out, inb) = pair(&c);
        let mut pkt = encap(&out, &[1, 2, 3], 17);
        let d = inb.decapsulate(&mut pkt).unwrap();
        assert_eq!((d.next_header, &pkt[d.inner]), (17, &[1u8, 2, 3][..]));
        let mut pkt = encap(&out, &[], NH_NO_NEXT);
        assert_eq!(inb.decapsulate(&mut pkt), Err(EspError::Dummy));
    }

    #[test]
    fn seq_exhaustion_without_esn() {
        let c = cfg(EncrAlg::AesGcm16_128, None, Mode::Tunnel, 1024, false);
        let (out, inb) = pair(&c);
        out.set_seq_for_testing(u64::from(u32::MAX) - 1);
        let inner = ipv4(17, 10);
        let mut pkt = encap(&out, &inner, NH_IPV4);
        assert_eq!(out.seq(), u64::from(u32::MAX));
        assert_eq!(inb.decapsulate(&mut pkt).unwrap().seq, u64::from(u32::MAX));
        let mut buf = vec![0u8; 200];
        for _ in 0..3 {
            assert_eq!(
                out.encapsulate(&inner, NH_IPV4, &mut buf),
                Err(EspError::SeqExhausted)
            );
        }
        assert_eq!(out.seq(), u64::from(u32::MAX));
        assert_eq!(out.counters().packets, 1);
        // ESN: the limit is 2^64 - 1.
        let c = cfg(EncrAlg::AesGcm16_128, None, Mode::Tunnel, 1024, true);
        let out = OutboundSa::new(&c).unwrap();
        out.set_seq_for_testing(u64::MAX - 1);
        assert!(out.encapsulate(&inner, NH_IPV4, &mut buf).is_ok());
        assert_eq!(
            out.encapsulate(&inner, NH_IPV4, &mut buf),
            Err(EspError::SeqExhausted)
        );
        assert_eq!(out.seq(), u64::MAX);
    }

    #[test]
    fn esn_across_32bit_boundary() {
        for (encr, integ) in [SUITES[1], SUITES[2], SUITES[6]] {
            let c = cfg(encr, integ, Mode::Tunnel, 1024, true);
            let (out, inb) = pair(&c);
            let start = (1u64 << 32) - 4;
            out.set_seq_for_testing(start - 1);
            let pkts: Vec<Vec<u8>> = (0..8).map(|_| encap(&out, &ipv4(17, 5), NH_IPV4)).collect();
            assert_eq!(out.seq(), start + 7);
            for (i, p) in pkts.iter().enumerate() {
                assert_eq!(&p[4..8], &((start + i as u64) as u32).to_be_bytes());
            }
            // Reordered across the wrap.
            for i in [0usize, 5, 1, 4, 2, 7, 3, 6] {
                let d = inb
                    .decapsulate(&mut pkts[i].clone())
                    .unwrap_or_else(|e| panic!("{i}: {e}"));
                assert_eq!(d.seq, start + i as u64);
            }
            assert_eq!(inb.decapsulate(&mut pkts[2].clone()), Err(EspError::Replay));
            // The high bits are authenticated: a non-ESN receiver cannot open them.
            let c2 = cfg(encr, integ, Mode::Tunnel, 1024, false);
            let inb2 = InboundSa::new(&c2).unwrap();
            assert_eq!(
                inb2.decapsulate(&mut pkts[6].clone()),
                Err(EspError::AuthFailed)
            );
        }
    }

    #[test]
    fn concurrent_encapsulation() {
        const THREADS: usize = 4;
        const PER: usize = 2000;
        let c = cfg(
            EncrAlg::AesGcm16_256,
            None,
            Mode::Tunnel,
            crate::replay::MAX_WINDOW,
            false,
        );
        let (out, inb) = pair(&c);
        let (out, inb) = (Arc::new(out), Arc::new(inb));
        let mut pkts = encap_in_threads(&out, THREADS, PER, |t| ipv4(17, t * 10), usize::MAX);
        let mut seqs: Vec<u32> = pkts
            .iter()
            .map(|p| u32::from_be_bytes([p[4], p[5], p[6], p[7]]))
            .collect();
        seqs.sort_unstable();
        seqs.dedup();
        assert_eq!(seqs.len(), THREADS * PER);
        assert_eq!(
            (seqs[0], *seqs.last().unwrap()),
            (1, (THREADS * PER) as u32)
        );
        assert_eq!(out.counters().packets, (THREADS * PER) as u64);
        // Decapsulate concurrently too.
        let chunks: Vec<Vec<Vec<u8>>> = (0..THREADS)
            .map(|t| pkts.iter().skip(t).step_by(THREADS).cloned().collect())
            .collect();
        pkts.clear();
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|mut chunk| {
                let inb = Arc::clone(&inb);
                std::thread::spawn(move || {
                    for p in &mut chunk {
                        inb.decapsulate(p).unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(inb.counters().packets, (THREADS * PER) as u64);
    }

    /// Several TUN workers share one outbound SA and send their batches independently: the
    /// receiver sees sequence numbers reordered (boundedly) and may see duplicates. N threads
    /// encapsulating get unique, gap-free sequence numbers; an inbound SA with the default
    /// window (1024) fed them shuffled within blocks smaller than the window accepts each
    /// exactly once, also when two threads feed the same packets concurrently.
    #[test]
    fn multi_worker_seq_and_bounded_reordering() {
        const THREADS: usize = 4;
        const PER: usize = 1500;
        const N: usize = THREADS * PER;
        const BLOCK: usize = 512; // reordering distance < window
        let c = cfg(EncrAlg::AesGcm16_256, None, Mode::Tunnel, 1024, false);
        let (out, inb) = pair(&c);
        let out = Arc::new(out);
        // encapsulate in small batches, like a worker per TUN read
        let mut pkts = encap_in_threads(&out, THREADS, PER, |t| ipv4(6, 40 + t), 16);
        let seq_of = |p: &[u8]| u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
        pkts.sort_by_key(|p| seq_of(p));
        let seqs: Vec<u32> = pkts.iter().map(|p| seq_of(p)).collect();
        assert_eq!(seqs, (1..=N as u32).collect::<Vec<_>>(), "unique, gap-free");
        assert_eq!(out.seq(), N as u64);
        // bounded shuffle: Fisher-Yates within consecutive blocks
        let mut rng = Prng(0x0123_4567_89ab_cdef);
        for block in pkts.chunks_mut(BLOCK) {
            for i in (1..block.len()).rev() {
                block.swap(i, rng.below(i + 1));
            }
        }
        assert_ne!(pkts.iter().map(|p| seq_of(p)).collect::<Vec<_>>(), seqs);
        // one receiver: every packet accepted once, a second copy rejected as replay
        let mut accepted = vec![false; N + 1];
        for p in &pkts {
            let d = inb
                .decapsulate(&mut p.clone())
                .expect("reordered within the window");
            assert!(!std::mem::replace(&mut accepted[d.seq as usize], true));
            assert_eq!(inb.decapsulate(&mut p.clone()), Err(EspError::Replay));
        }
        assert_eq!(inb.counters().packets, N as u64);
        assert_eq!(inb.counters().dropped_replay, N as u64);
        // two receiver threads feeding the same shuffled stream into a fresh SA: each
        // sequence number accepted by exactly one of them
        let inb = Arc::new(InboundSa::new(&c).unwrap());
        let pkts = Arc::new(pkts);
        let feeders: Vec<_> = (0..2)
            .map(|_| {
                let (inb, pkts) = (Arc::clone(&inb), Arc::clone(&pkts));
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    for p in pkts.iter() {
                        match inb.decapsulate(&mut p.clone()) {
                            Ok(d) => got.push(d.seq),
                            Err(e) => assert_eq!(e, EspError::Replay),
                        }
                    }
                    got
                })
            })
            .collect();
        let mut all: Vec<u64> = feeders
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        all.sort_unstable();
        assert_eq!(all, (1..=N as u64).collect::<Vec<_>>(), "each exactly once");
        let cn = inb.counters();
        assert_eq!((cn.packets, cn.dropped_replay), (N as u64, N as u64));
    }

    /// Workers reserving ranges, encapsulating in parallel and sending in turn: the "wire"
    /// sees strictly increasing sequence numbers, so even a 32-packet window (strongSwan's
    /// default) accepts everything.
    #[test]
    fn reserved_ranges_are_sent_in_order() {
        const THREADS: usize = 4;
        const ROUNDS: usize = 300;
        let c = cfg(EncrAlg::AesGcm16_256, None, Mode::Tunnel, 32, false);
        let (out, inb) = pair(&c);
        let out = Arc::new(out);
        let wire = Arc::new(std::sync::Mutex::new(Vec::<Vec<u8>>::new()));
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (out, wire) = (Arc::clone(&out), Arc::clone(&wire));
                std::thread::spawn(move || {
                    let mut rng = Prng(0x1234_5678 + t as u64);
                    let inner = ipv4(6, 100);
                    for _ in 0..ROUNDS {
                        let n = 1 + rng.below(40);
                        let first = out.reserve(n as u64).unwrap();
                        let batch: Vec<Vec<u8>> = (0..n as u64)
                            .map(|i| {
                                let mut b = vec![0u8; inner.len() + out.max_overhead()];
                                let l = out
                                    .encapsulate_with_seq(first + i, &inner, NH_IPV4, &mut b)
                                    .unwrap();
                                b.truncate(l);
                                b
                            })
                            .collect();
                        if rng.below(4) == 0 {
                            std::thread::yield_now(); // descheduled before sending
                        }
                        assert!(out.wait_turn(first), "turn within the bound");
                        wire.lock().unwrap().extend(batch);
                        out.finish(first + n as u64 - 1);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let wire = wire.lock().unwrap();
        let seqs: Vec<u64> = wire
            .iter()
            .map(|p| u64::from(u32::from_be_bytes([p[4], p[5], p[6], p[7]])))
            .collect();
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "in order, gap-free"
        );
        assert_eq!(seqs.first(), Some(&1));
        for p in wire.iter() {
            inb.decapsulate(&mut p.clone()).unwrap();
        }
        assert_eq!(inb.counters().dropped_replay, 0);
        assert_eq!(out.counters().packets, wire.len() as u64);
    }

    #[test]
    fn reserve_limits_and_turn_timeout() {
        let c = cfg(EncrAlg::AesGcm16_256, None, Mode::Tunnel, 32, false);
        let (out, _) = pair(&c);
        assert_eq!(out.reserve(0), Err(EspError::SeqExhausted));
        assert_eq!(out.reserve(5), Ok(1));
        assert_eq!(out.reserve(1), Ok(6));
        let mut b = vec![0u8; 200];
        assert_eq!(
            out.encapsulate_with_seq(7, &[0u8; 20], NH_IPV4, &mut b),
            Err(EspError::SeqExhausted),
            "not reserved"
        );
        // range 1..=5 never finished: the turn of 6 does not come, but the wait ends
        let t = std::time::Instant::now();
        assert!(!out.wait_turn(6));
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
        out.finish(5);
        assert!(out.wait_turn(6));
        out.set_seq_for_testing(u64::from(u32::MAX) - 2);
        assert_eq!(out.reserve(3), Err(EspError::SeqExhausted));
        assert_eq!(out.reserve(2), Ok(u64::from(u32::MAX) - 1));
        assert_eq!(out.reserve(1), Err(EspError::SeqExhausted));
    }

    /// xorshift64* — deterministic, dependency-free.
    struct Prng(u64);
    impl Prng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn mutation_fuzz_decapsulate() {
        let mut rng = Prng(0x9e37_79b9_7f4a_7c15);
        let suites = [SUITES[1], SUITES[2], SUITES[3], SUITES[8]];
        let sas: Vec<(SaConfig, OutboundSa, InboundSa)> = suites
            .iter()
            .flat_map(|&(e, i)| {
                [Mode::Tunnel, Mode::Transport].map(|m| {
                    let c = cfg(e, i, m, 64, m == Mode::Transport);
                    let (o, inb) = pair(&c);
                    (c, o, inb)
                })
            })
            .collect();
        let mut ok = 0;
        for iter in 0..100_000u32 {
            let (c, out, inb) = &sas[rng.below(sas.len())];
            let len = rng.below(80);
            let mut pkt = if iter % 2 == 0 {
                // Valid packet, then mutated (almost always fails the ICV).
                let inner: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                let nh = [NH_IPV4, NH_IPV6, NH_NO_NEXT, 6][rng.below(4)];
                encap(out, &inner, nh)
            } else {
                // Authentic packet with a random trailer: exercises the post-ICV checks.
                let align = if c.encr.is_aead() { 4 } else { 16 };
                let n = (len + 2).div_ceil(align) * align;
                let mut pt: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                if rng.below(2) == 0 {
                    let pad = n - len - 2;
                    for i in 0..pad {
                        pt[len + i] = (i + 1) as u8;
                    }
                    pt[n - 2] = pad as u8;
                }
                if rng.below(2) == 0 {
                    pt[n - 1] = [NH_IPV4, NH_IPV6, NH_NO_NEXT][rng.below(3)];
                }
                seal_raw(c, out.seq() + 1 + u64::from(iter), &pt)
            };
            match rng.below(6) {
                0 => {}
                1 => {
                    let n = rng.below(pkt.len() + 1);
                    pkt.truncate(n);
                }
                2 => {
                    let extra = rng.below(20);
                    pkt.extend((0..extra).map(|_| rng.next() as u8));
                }
                _ => {
                    for _ in 0..1 + rng.below(4) {
                        let p = rng.below(pkt.len());
                        pkt[p] = rng.next() as u8;
                    }
                }
            }
            match inb.decapsulate(&mut pkt) {
                Ok(d) => {
                    assert!(d.inner.end <= pkt.len());
                    ok += 1;
                }
                Err(EspError::BufferTooSmall | EspError::SeqExhausted) => panic!("unexpected"),
                Err(_) => {}
            }
        }
        assert!(ok > 1000, "too few valid packets: {ok}");
    }
}
