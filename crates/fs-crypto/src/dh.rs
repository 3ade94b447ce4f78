//! Diffie-Hellman key exchange: curve25519 (RFC 8031), ECP-256 (RFC 5903: x || y, 64 bytes,
//! shared secret = x coordinate), MODP-2048 (RFC 3526 group 14, big-endian 256 bytes, peer
//! value checked 1 < y < p-1).
use crate::{alg::DhGroup, rng::Rng, CryptoError};
use zeroize::Zeroizing;

/// An ephemeral key pair of one group.
pub struct KeyExchange {
    group: DhGroup,
    public: Vec<u8>,
    // IMPLEMENTATION: private key material (zeroized on drop)
    #[allow(dead_code)]
    private: Zeroizing<Vec<u8>>,
}

impl KeyExchange {
    /// Generate a key pair; the private value comes from `rng` so simulations are deterministic.
    pub fn generate(group: DhGroup, rng: &mut dyn Rng) -> Result<Self, CryptoError> {
        let _ = (group, rng);
        todo!("fs-crypto: KeyExchange::generate")
    }
    /// The group.
    pub fn group(&self) -> DhGroup {
        self.group
    }
    /// The public value as carried in the KE payload.
    pub fn public_key(&self) -> &[u8] {
        &self.public
    }
    /// The shared secret g^ir from the peer's KE payload data. Rejects malformed/invalid values.
    pub fn shared_secret(&self, peer_public: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let _ = peer_public;
        todo!("fs-crypto: KeyExchange::shared_secret")
    }
}
