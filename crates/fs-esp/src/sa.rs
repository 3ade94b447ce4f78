//! Outbound and inbound ESP SAs.
use fs_crypto::{EncrAlg, IntegAlg};
use serde::{Deserialize, Serialize};
use std::ops::Range;

/// Tunnel (whole inner IP packet) or transport (upper-layer payload) mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Mode {
    Tunnel,
    Transport,
}

/// Everything needed to key one direction of a CHILD_SA.
#[derive(Clone)]
pub struct SaConfig {
    pub spi: u32,
    pub encr: EncrAlg,
    pub integ: Option<IntegAlg>,
    pub encr_key: Vec<u8>,
    pub integ_key: Vec<u8>,
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

/// Result of a successful decapsulation: the inner packet is `buf[inner]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decapsulated {
    pub next_header: u8,
    pub inner: Range<usize>,
    /// The full 64-bit sequence number of the packet.
    pub seq: u64,
}

/// Sending side of an SA.
pub struct OutboundSa {
    // IMPLEMENTATION: fs-esp owner
}

impl OutboundSa {
    pub fn new(cfg: &SaConfig) -> Result<Self, EspError> {
        let _ = cfg;
        todo!("fs-esp")
    }
    pub fn spi(&self) -> u32 {
        todo!("fs-esp")
    }
    /// Bytes the ESP encapsulation adds at most to an inner packet (header, IV, padding,
    /// trailer, ICV); the output buffer needs `inner.len() + max_overhead()`.
    pub fn max_overhead(&self) -> usize {
        todo!("fs-esp")
    }
    /// Write the ESP packet (SPI .. ICV; no outer IP/UDP header) for `inner` into `out` and
    /// return its length. Takes the next sequence number atomically.
    pub fn encapsulate(&self, inner: &[u8], next_header: u8, out: &mut [u8]) -> Result<usize, EspError> {
        let _ = (inner, next_header, out);
        todo!("fs-esp")
    }
    /// Highest sequence number used so far.
    pub fn seq(&self) -> u64 {
        todo!("fs-esp")
    }
    pub fn counters(&self) -> Counters {
        todo!("fs-esp")
    }
}

/// Receiving side of an SA.
pub struct InboundSa {
    // IMPLEMENTATION: fs-esp owner
}

impl InboundSa {
    pub fn new(cfg: &SaConfig) -> Result<Self, EspError> {
        let _ = cfg;
        todo!("fs-esp")
    }
    pub fn spi(&self) -> u32 {
        todo!("fs-esp")
    }
    /// Process the ESP packet in `pkt` (SPI .. ICV) in place: replay pre-check, ICV check and
    /// decryption, padding and next-header checks, then replay window update. Counts drops.
    pub fn decapsulate(&self, pkt: &mut [u8]) -> Result<Decapsulated, EspError> {
        let _ = pkt;
        todo!("fs-esp")
    }
    pub fn counters(&self) -> Counters {
        todo!("fs-esp")
    }
}
