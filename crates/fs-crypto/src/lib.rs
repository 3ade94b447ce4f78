//! Crypto for ferroswan: algorithm identifiers, strongSwan-style proposal strings,
//! Diffie-Hellman groups, PRFs and prf+, IKEv2 key derivation and PSK AUTH, and the
//! [`transform::Transform`] that protects both IKE SK payloads and ESP packets.
//!
//! The packet path uses aws-lc-rs (AES-NI/VAES, PCLMULQDQ); MODP groups use a bignum crate.
#![forbid(unsafe_code)]

pub mod alg;
pub mod dh;
pub mod ikev2;
pub mod prf;
pub mod proposal;
mod proposal_impl;
pub mod rng;
pub mod secret;
pub mod transform;

pub use alg::{DhGroup, EncrAlg, IntegAlg, PrfAlg};
pub use rng::{Rng, SystemRng, TestRng};
pub use secret::Secret;
pub use transform::Transform;

/// Errors of the crypto layer. None of them carries secret material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("integrity check failed")]
    IntegrityCheckFailed,
    #[error("invalid key length: expected {expected}, got {got}")]
    InvalidKeyLength { expected: usize, got: usize },
    #[error("invalid public key for {0:?}")]
    InvalidPublicKey(DhGroup),
    #[error("buffer layout invalid: {0}")]
    InvalidBuffer(&'static str),
    #[error("ciphertext is not a multiple of the block size")]
    NotBlockAligned,
    #[error("crypto backend failure")]
    Backend,
}
