//! Algorithm identifiers (IANA IKEv2 transform IDs) with their sizes and names.
use serde::{Deserialize, Serialize};

/// Transform type 1: encryption algorithms we implement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EncrAlg {
    AesCbc128,
    AesCbc256,
    AesGcm16_128,
    AesGcm16_256,
    ChaCha20Poly1305,
}

/// Transform type 2: PRFs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PrfAlg {
    HmacSha256,
    HmacSha384,
    HmacSha512,
}

/// Transform type 3: integrity algorithms (truncated HMAC, RFC 4868).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IntegAlg {
    HmacSha256_128,
    HmacSha384_192,
    HmacSha512_256,
}

/// Transform type 4: key exchange (Diffie-Hellman) groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DhGroup {
    Modp2048,
    Ecp256,
    Curve25519,
}

/// IANA transform type numbers.
pub mod transform_type {
    pub const ENCR: u8 = 1;
    pub const PRF: u8 = 2;
    pub const INTEG: u8 = 3;
    pub const DH: u8 = 4;
    pub const ESN: u8 = 5;
}

impl EncrAlg {
    pub const ALL: [EncrAlg; 5] = [
        EncrAlg::AesCbc128,
        EncrAlg::AesCbc256,
        EncrAlg::AesGcm16_128,
        EncrAlg::AesGcm16_256,
        EncrAlg::ChaCha20Poly1305,
    ];
    /// IANA Transform ID (ENCR_AES_CBC 12, ENCR_AES_GCM_16 20, ENCR_CHACHA20_POLY1305 28).
    pub fn transform_id(self) -> u16 {
        match self {
            EncrAlg::AesCbc128 | EncrAlg::AesCbc256 => 12,
            EncrAlg::AesGcm16_128 | EncrAlg::AesGcm16_256 => 20,
            EncrAlg::ChaCha20Poly1305 => 28,
        }
    }
    /// Value of the Key Length attribute (bits), if the transform carries one.
    pub fn key_bits(self) -> Option<u16> {
        match self {
            EncrAlg::AesCbc128 | EncrAlg::AesGcm16_128 => Some(128),
            EncrAlg::AesCbc256 | EncrAlg::AesGcm16_256 => Some(256),
            EncrAlg::ChaCha20Poly1305 => None,
        }
    }
    /// From a transform ID and optional Key Length attribute.
    pub fn from_wire(id: u16, key_bits: Option<u16>) -> Option<Self> {
        EncrAlg::ALL
            .into_iter()
            .find(|a| a.transform_id() == id && a.key_bits() == key_bits)
    }
    /// AEAD (combined mode): no separate integrity transform.
    pub fn is_aead(self) -> bool {
        !matches!(self, EncrAlg::AesCbc128 | EncrAlg::AesCbc256)
    }
    /// Bytes of keying material, including the 4-byte salt of AEAD modes (RFC 4106/5282/7634).
    pub fn key_len(self) -> usize {
        match self {
            EncrAlg::AesCbc128 => 16,
            EncrAlg::AesCbc256 => 32,
            EncrAlg::AesGcm16_128 => 20,
            EncrAlg::AesGcm16_256 => 36,
            EncrAlg::ChaCha20Poly1305 => 36,
        }
    }
    /// Explicit IV bytes carried in each packet.
    pub fn iv_len(self) -> usize {
        if self.is_aead() {
            8
        } else {
            16
        }
    }
    /// Cipher block size (padding alignment before protocol minimums).
    pub fn block_len(self) -> usize {
        if self.is_aead() {
            1
        } else {
            16
        }
    }
    /// ICV length of AEAD modes (0 for CBC: the integrity transform supplies it).
    pub fn aead_icv_len(self) -> usize {
        if self.is_aead() {
            16
        } else {
            0
        }
    }
    /// strongSwan keyword.
    pub fn name(self) -> &'static str {
        match self {
            EncrAlg::AesCbc128 => "aes128",
            EncrAlg::AesCbc256 => "aes256",
            EncrAlg::AesGcm16_128 => "aes128gcm16",
            EncrAlg::AesGcm16_256 => "aes256gcm16",
            EncrAlg::ChaCha20Poly1305 => "chacha20poly1305",
        }
    }
    /// IANA-style name for status output.
    pub fn iana_name(self) -> &'static str {
        match self {
            EncrAlg::AesCbc128 => "AES_CBC_128",
            EncrAlg::AesCbc256 => "AES_CBC_256",
            EncrAlg::AesGcm16_128 => "AES_GCM_16_128",
            EncrAlg::AesGcm16_256 => "AES_GCM_16_256",
            EncrAlg::ChaCha20Poly1305 => "CHACHA20_POLY1305",
        }
    }
}

impl PrfAlg {
    pub const ALL: [PrfAlg; 3] = [PrfAlg::HmacSha256, PrfAlg::HmacSha384, PrfAlg::HmacSha512];
    /// IANA Transform ID (5, 6, 7).
    pub fn transform_id(self) -> u16 {
        match self {
            PrfAlg::HmacSha256 => 5,
            PrfAlg::HmacSha384 => 6,
            PrfAlg::HmacSha512 => 7,
        }
    }
    pub fn from_wire(id: u16) -> Option<Self> {
        PrfAlg::ALL.into_iter().find(|a| a.transform_id() == id)
    }
    /// Output (and preferred key) length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            PrfAlg::HmacSha256 => 32,
            PrfAlg::HmacSha384 => 48,
            PrfAlg::HmacSha512 => 64,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            PrfAlg::HmacSha256 => "prfsha256",
            PrfAlg::HmacSha384 => "prfsha384",
            PrfAlg::HmacSha512 => "prfsha512",
        }
    }
    pub fn iana_name(self) -> &'static str {
        match self {
            PrfAlg::HmacSha256 => "PRF_HMAC_SHA2_256",
            PrfAlg::HmacSha384 => "PRF_HMAC_SHA2_384",
            PrfAlg::HmacSha512 => "PRF_HMAC_SHA2_512",
        }
    }
}

impl IntegAlg {
    pub const ALL: [IntegAlg; 3] = [
        IntegAlg::HmacSha256_128,
        IntegAlg::HmacSha384_192,
        IntegAlg::HmacSha512_256,
    ];
    /// IANA Transform ID (AUTH_HMAC_SHA2_256_128 12, _384_192 13, _512_256 14).
    pub fn transform_id(self) -> u16 {
        match self {
            IntegAlg::HmacSha256_128 => 12,
            IntegAlg::HmacSha384_192 => 13,
            IntegAlg::HmacSha512_256 => 14,
        }
    }
    pub fn from_wire(id: u16) -> Option<Self> {
        IntegAlg::ALL.into_iter().find(|a| a.transform_id() == id)
    }
    pub fn key_len(self) -> usize {
        match self {
            IntegAlg::HmacSha256_128 => 32,
            IntegAlg::HmacSha384_192 => 48,
            IntegAlg::HmacSha512_256 => 64,
        }
    }
    pub fn icv_len(self) -> usize {
        match self {
            IntegAlg::HmacSha256_128 => 16,
            IntegAlg::HmacSha384_192 => 24,
            IntegAlg::HmacSha512_256 => 32,
        }
    }
    /// The PRF strongSwan pairs with this integrity algorithm when a proposal names none.
    pub fn matching_prf(self) -> PrfAlg {
        match self {
            IntegAlg::HmacSha256_128 => PrfAlg::HmacSha256,
            IntegAlg::HmacSha384_192 => PrfAlg::HmacSha384,
            IntegAlg::HmacSha512_256 => PrfAlg::HmacSha512,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            IntegAlg::HmacSha256_128 => "sha256",
            IntegAlg::HmacSha384_192 => "sha384",
            IntegAlg::HmacSha512_256 => "sha512",
        }
    }
    pub fn iana_name(self) -> &'static str {
        match self {
            IntegAlg::HmacSha256_128 => "HMAC_SHA2_256_128",
            IntegAlg::HmacSha384_192 => "HMAC_SHA2_384_192",
            IntegAlg::HmacSha512_256 => "HMAC_SHA2_512_256",
        }
    }
}

impl DhGroup {
    pub const ALL: [DhGroup; 3] = [DhGroup::Modp2048, DhGroup::Ecp256, DhGroup::Curve25519];
    /// IANA group number (14, 19, 31).
    pub fn transform_id(self) -> u16 {
        match self {
            DhGroup::Modp2048 => 14,
            DhGroup::Ecp256 => 19,
            DhGroup::Curve25519 => 31,
        }
    }
    pub fn from_wire(id: u16) -> Option<Self> {
        DhGroup::ALL.into_iter().find(|a| a.transform_id() == id)
    }
    /// Length of the KE payload's key exchange data.
    pub fn public_len(self) -> usize {
        match self {
            DhGroup::Modp2048 => 256,
            DhGroup::Ecp256 => 64,
            DhGroup::Curve25519 => 32,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            DhGroup::Modp2048 => "modp2048",
            DhGroup::Ecp256 => "ecp256",
            DhGroup::Curve25519 => "x25519",
        }
    }
    pub fn iana_name(self) -> &'static str {
        match self {
            DhGroup::Modp2048 => "MODP_2048",
            DhGroup::Ecp256 => "ECP_256",
            DhGroup::Curve25519 => "CURVE_25519",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn wire_roundtrip() {
        for a in EncrAlg::ALL {
            assert_eq!(EncrAlg::from_wire(a.transform_id(), a.key_bits()), Some(a));
        }
        for a in PrfAlg::ALL {
            assert_eq!(PrfAlg::from_wire(a.transform_id()), Some(a));
        }
        for a in IntegAlg::ALL {
            assert_eq!(IntegAlg::from_wire(a.transform_id()), Some(a));
        }
        for a in DhGroup::ALL {
            assert_eq!(DhGroup::from_wire(a.transform_id()), Some(a));
        }
        assert_eq!(EncrAlg::from_wire(12, None), None);
    }
}
