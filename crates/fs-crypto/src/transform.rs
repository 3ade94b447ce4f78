//! One keyed protection transform, used for IKE SK payloads (RFC 7296 3.14, RFC 5282) and for
//! ESP packets (RFC 4303, 4106, 7634, 4868), which share the same layout:
//!
//! ```text
//! buf = [ aad (aad_len bytes) | IV (iv_len) | plaintext/ciphertext | ICV (icv_len) ]
//! ```
//! - AEAD (AES-GCM-16, ChaCha20-Poly1305): nonce = salt (last 4 bytes of the key material)
//!   || IV (8 bytes); AAD = `buf[..aad_len]` (ESP: SPI || seq, with ESN: SPI || seq_hi ||
//!   seq_lo; IKE: the IKE header and the SK payload header); 16-byte tag as ICV.
//! - CBC + HMAC: AES-CBC over the ciphertext with the 16-byte IV; ICV = truncated HMAC over
//!   `buf[..end of ciphertext]` (aad | IV | ciphertext), with ESN: seq_hi appended to the HMAC
//!   input only (RFC 4303 3.3.2.1).
//! The caller writes the IV (ESP AEAD: the 64-bit sequence number; CBC: random) and any padding;
//! this type never allocates on the packet path.
use crate::{
    alg::{EncrAlg, IntegAlg},
    CryptoError,
};
use std::ops::Range;

/// A keyed transform for one direction of one SA. `Send + Sync`: share it across workers.
pub struct Transform {
    encr: EncrAlg,
    integ: Option<IntegAlg>,
    // IMPLEMENTATION: keyed aws-lc-rs objects
}

impl Transform {
    /// Key a transform. `encr_key` is `encr.key_len()` bytes (AEAD: key || 4-byte salt);
    /// `integ` must be `None` for AEAD and `Some` for CBC; `integ_key` is `integ.key_len()` bytes.
    pub fn new(
        encr: EncrAlg,
        integ: Option<IntegAlg>,
        encr_key: &[u8],
        integ_key: &[u8],
    ) -> Result<Self, CryptoError> {
        let _ = (encr_key, integ_key);
        let _t = Transform { encr, integ };
        todo!("fs-crypto: Transform::new")
    }
    pub fn encr(&self) -> EncrAlg {
        self.encr
    }
    pub fn integ(&self) -> Option<IntegAlg> {
        self.integ
    }
    /// Bytes of explicit IV (8 AEAD, 16 CBC).
    pub fn iv_len(&self) -> usize {
        self.encr.iv_len()
    }
    /// Bytes of ICV (16 AEAD; the integrity algorithm's truncation for CBC).
    pub fn icv_len(&self) -> usize {
        match self.integ {
            Some(i) if !self.encr.is_aead() => i.icv_len(),
            _ => self.encr.aead_icv_len(),
        }
    }
    /// Cipher block length (16 CBC, 1 AEAD). Callers apply protocol minimums (ESP: 4).
    pub fn block_len(&self) -> usize {
        self.encr.block_len()
    }
    /// Encrypt `buf[aad_len + iv_len .. len - icv_len]` in place and write the ICV into the last
    /// `icv_len` bytes. The IV must already be in place. The plaintext length must already be a
    /// multiple of `block_len()`.
    pub fn seal(&self, buf: &mut [u8], aad_len: usize, esn_high: Option<u32>) -> Result<(), CryptoError> {
        let _ = (buf, aad_len, esn_high);
        todo!("fs-crypto: Transform::seal")
    }
    /// Verify the ICV (constant time) and decrypt in place. Returns the plaintext range in `buf`.
    /// On failure `buf` may be partly modified and must be dropped.
    pub fn open(
        &self,
        buf: &mut [u8],
        aad_len: usize,
        esn_high: Option<u32>,
    ) -> Result<Range<usize>, CryptoError> {
        let _ = (buf, aad_len, esn_high);
        todo!("fs-crypto: Transform::open")
    }
}
