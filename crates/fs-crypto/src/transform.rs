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
use aws_lc_rs::{
    aead::{self, Aad, LessSafeKey, Nonce, UnboundKey},
    cipher::{
        DecryptingKey, DecryptionContext, EncryptingKey, EncryptionContext, UnboundCipherKey,
        AES_128, AES_256,
    },
    constant_time, hmac,
};
use std::ops::Range;
use zeroize::Zeroize;

/// Length of the AEAD salt at the end of the key material.
const SALT_LEN: usize = 4;
/// Length of the ESP header (SPI || low sequence number) carried as AAD.
const ESP_AAD_LEN: usize = 8;

/// The keyed primitives of a transform.
enum Keys {
    Aead {
        key: LessSafeKey,
        salt: [u8; SALT_LEN],
    },
    Cbc {
        enc: EncryptingKey,
        dec: DecryptingKey,
        mac: hmac::Key,
        icv_len: usize,
    },
}

/// A keyed transform for one direction of one SA. `Send + Sync`: share it across workers.
pub struct Transform {
    encr: EncrAlg,
    integ: Option<IntegAlg>,
    keys: Keys,
}

impl Drop for Transform {
    fn drop(&mut self) {
        // aws-lc-rs zeroizes its own key schedules; the salt is ours.
        if let Keys::Aead { salt, .. } = &mut self.keys {
            salt.zeroize();
        }
    }
}

impl std::fmt::Debug for Transform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transform")
            .field("encr", &self.encr)
            .field("integ", &self.integ)
            .finish_non_exhaustive()
    }
}

impl Transform {
    /// Key a transform. `encr_key` is `encr.key_len()` bytes (AEAD: key || 4-byte salt);
    /// `integ` must be `None` for AEAD and `Some` for CBC; `integ_key` is `integ.key_len()` bytes
    /// (empty for AEAD).
    pub fn new(
        encr: EncrAlg,
        integ: Option<IntegAlg>,
        encr_key: &[u8],
        integ_key: &[u8],
    ) -> Result<Self, CryptoError> {
        if encr_key.len() != encr.key_len() {
            return Err(CryptoError::InvalidKeyLength {
                expected: encr.key_len(),
                got: encr_key.len(),
            });
        }
        let keys = if encr.is_aead() {
            if integ.is_some() {
                return Err(CryptoError::InvalidBuffer(
                    "AEAD transform takes no integrity algorithm",
                ));
            }
            if !integ_key.is_empty() {
                return Err(CryptoError::InvalidKeyLength {
                    expected: 0,
                    got: integ_key.len(),
                });
            }
            let alg = match encr {
                EncrAlg::AesGcm16_128 => &aead::AES_128_GCM,
                EncrAlg::AesGcm16_256 => &aead::AES_256_GCM,
                EncrAlg::ChaCha20Poly1305 => &aead::CHACHA20_POLY1305,
                EncrAlg::AesCbc128 | EncrAlg::AesCbc256 => unreachable!("not AEAD"),
            };
            let (k, s) = encr_key.split_at(encr_key.len() - SALT_LEN);
            let key = UnboundKey::new(alg, k).map_err(|_| CryptoError::Backend)?;
            let mut salt = [0u8; SALT_LEN];
            salt.copy_from_slice(s);
            Keys::Aead {
                key: LessSafeKey::new(key),
                salt,
            }
        } else {
            let Some(ia) = integ else {
                return Err(CryptoError::InvalidBuffer(
                    "CBC transform needs an integrity algorithm",
                ));
            };
            if integ_key.len() != ia.key_len() {
                return Err(CryptoError::InvalidKeyLength {
                    expected: ia.key_len(),
                    got: integ_key.len(),
                });
            }
            let alg = match encr {
                EncrAlg::AesCbc128 => &AES_128,
                _ => &AES_256,
            };
            let ek = UnboundCipherKey::new(alg, encr_key).map_err(|_| CryptoError::Backend)?;
            let dk = UnboundCipherKey::new(alg, encr_key).map_err(|_| CryptoError::Backend)?;
            Keys::Cbc {
                enc: EncryptingKey::cbc(ek).map_err(|_| CryptoError::Backend)?,
                dec: DecryptingKey::cbc(dk).map_err(|_| CryptoError::Backend)?,
                mac: hmac::Key::new(ia.hmac_alg(), integ_key),
                icv_len: ia.icv_len(),
            }
        };
        Ok(Transform { encr, integ, keys })
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

    /// Check the layout; returns the end of the ciphertext (start of the ICV).
    fn layout(&self, len: usize, aad_len: usize, esn_high: Option<u32>) -> Result<usize, CryptoError> {
        let min = aad_len
            .checked_add(self.iv_len() + self.icv_len())
            .ok_or(CryptoError::InvalidBuffer("AAD length overflows"))?;
        if len < min {
            return Err(CryptoError::InvalidBuffer("buffer shorter than AAD + IV + ICV"));
        }
        if esn_high.is_some() && self.encr.is_aead() && aad_len != ESP_AAD_LEN {
            return Err(CryptoError::InvalidBuffer(
                "ESN needs the 8-byte ESP header (SPI || seq) as AAD",
            ));
        }
        let ct_end = len - self.icv_len();
        if (ct_end - aad_len - self.iv_len()) % self.block_len() != 0 {
            return Err(CryptoError::NotBlockAligned);
        }
        Ok(ct_end)
    }

    /// Encrypt `buf[aad_len + iv_len .. len - icv_len]` in place and write the ICV into the last
    /// `icv_len` bytes. The IV must already be in place. The plaintext length must already be a
    /// multiple of `block_len()`.
    pub fn seal(&self, buf: &mut [u8], aad_len: usize, esn_high: Option<u32>) -> Result<(), CryptoError> {
        let ct_end = self.layout(buf.len(), aad_len, esn_high)?;
        let iv_len = self.iv_len();
        match &self.keys {
            Keys::Aead { key, salt } => {
                let (head, rest) = buf.split_at_mut(aad_len);
                let (iv, rest) = rest.split_at_mut(iv_len);
                let (pt, icv) = rest.split_at_mut(ct_end - aad_len - iv_len);
                let nonce = aead_nonce(salt, iv);
                let mut esn_aad = [0u8; ESP_AAD_LEN + 4];
                let aad = aead_aad(head, esn_high, &mut esn_aad);
                let tag = key
                    .seal_in_place_separate_tag(nonce, Aad::from(aad), pt)
                    .map_err(|_| CryptoError::Backend)?;
                icv.copy_from_slice(tag.as_ref());
            }
            Keys::Cbc {
                enc, mac, icv_len, ..
            } => {
                let (data, icv) = buf.split_at_mut(ct_end);
                let mut iv = [0u8; 16];
                iv.copy_from_slice(&data[aad_len..aad_len + iv_len]);
                let pt = &mut data[aad_len + iv_len..];
                if !pt.is_empty() {
                    enc.less_safe_encrypt(pt, EncryptionContext::Iv128(iv.into()))
                        .map_err(|_| CryptoError::Backend)?;
                }
                let tag = cbc_mac(mac, data, esn_high);
                icv.copy_from_slice(&tag.as_ref()[..*icv_len]);
            }
        }
        Ok(())
    }

    /// Verify the ICV (constant time) and decrypt in place. Returns the plaintext range in `buf`.
    /// On failure `buf` may be partly modified and must be dropped.
    pub fn open(
        &self,
        buf: &mut [u8],
        aad_len: usize,
        esn_high: Option<u32>,
    ) -> Result<Range<usize>, CryptoError> {
        let ct_end = self.layout(buf.len(), aad_len, esn_high)?;
        let iv_len = self.iv_len();
        let pt_range = aad_len + iv_len..ct_end;
        match &self.keys {
            Keys::Aead { key, salt } => {
                let (head, rest) = buf.split_at_mut(aad_len);
                let (iv, ct_icv) = rest.split_at_mut(iv_len);
                let nonce = aead_nonce(salt, iv);
                let mut esn_aad = [0u8; ESP_AAD_LEN + 4];
                let aad = aead_aad(head, esn_high, &mut esn_aad);
                key.open_in_place(nonce, Aad::from(aad), ct_icv)
                    .map_err(|_| CryptoError::IntegrityCheckFailed)?;
            }
            Keys::Cbc {
                dec, mac, icv_len, ..
            } => {
                let (data, icv) = buf.split_at_mut(ct_end);
                let tag = cbc_mac(mac, data, esn_high);
                constant_time::verify_slices_are_equal(&tag.as_ref()[..*icv_len], icv)
                    .map_err(|_| CryptoError::IntegrityCheckFailed)?;
                let mut iv = [0u8; 16];
                iv.copy_from_slice(&data[aad_len..aad_len + iv_len]);
                let ct = &mut data[aad_len + iv_len..];
                if !ct.is_empty() {
                    dec.decrypt(ct, DecryptionContext::Iv128(iv.into()))
                        .map_err(|_| CryptoError::Backend)?;
                }
            }
        }
        Ok(pt_range)
    }
}

/// nonce = salt || explicit IV (RFC 4106 4, RFC 7634 2).
fn aead_nonce(salt: &[u8; SALT_LEN], iv: &[u8]) -> Nonce {
    let mut n = [0u8; 12];
    n[..SALT_LEN].copy_from_slice(salt);
    n[SALT_LEN..].copy_from_slice(iv);
    Nonce::assume_unique_for_key(n)
}

/// The AEAD AAD: the header bytes as they are, or with ESN SPI || seq_hi || seq_lo
/// (RFC 4106 5, RFC 7634 2.1). `head` is 8 bytes when `esn_high` is set (checked by `layout`).
fn aead_aad<'a>(head: &'a [u8], esn_high: Option<u32>, scratch: &'a mut [u8; 12]) -> &'a [u8] {
    match esn_high {
        None => head,
        Some(hi) => {
            scratch[..4].copy_from_slice(&head[..4]);
            scratch[4..8].copy_from_slice(&hi.to_be_bytes());
            scratch[8..].copy_from_slice(&head[4..8]);
            &scratch[..]
        }
    }
}

/// HMAC over aad | IV | ciphertext, with ESN the high sequence bits appended (RFC 4303 3.3.2.1).
fn cbc_mac(key: &hmac::Key, data: &[u8], esn_high: Option<u32>) -> hmac::Tag {
    let mut ctx = hmac::Context::with_key(key);
    ctx.update(data);
    if let Some(hi) = esn_high {
        ctx.update(&hi.to_be_bytes());
    }
    ctx.sign()
}
