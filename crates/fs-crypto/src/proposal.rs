//! strongSwan-style proposal strings: `aes256gcm16-prfsha256-x25519`,
//! `aes256-sha256-modp2048`, `chacha20poly1305-prfsha512-ecp256`; ESP: `aes256gcm16`,
//! `aes128-sha256-esn`, `aes256gcm16-x25519` (PFS group).
//!
//! Keywords: encryption `aes128 aes256 aes128gcm16 aes256gcm16 aes128gcm aes256gcm
//! chacha20poly1305`; integrity `sha256 sha384 sha512` (also `sha2_256` ...); PRF
//! `prfsha256 prfsha384 prfsha512`; groups `modp2048 ecp256 x25519 curve25519`; ESP only `esn noesn`.
//! A proposal lists several algorithms of a type as alternatives, in order of preference.
//! IKE proposals without a PRF take it from the integrity algorithms (strongSwan behaviour).
use crate::alg::{DhGroup, EncrAlg, IntegAlg, PrfAlg};
use serde::{Deserialize, Serialize};

/// One IKE proposal: any combination of the listed algorithms is acceptable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IkeProposal {
    pub encr: Vec<EncrAlg>,
    /// Empty for AEAD-only proposals.
    pub integ: Vec<IntegAlg>,
    pub prf: Vec<PrfAlg>,
    pub dh: Vec<DhGroup>,
}

/// One ESP proposal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EspProposal {
    pub encr: Vec<EncrAlg>,
    /// Empty for AEAD-only proposals.
    pub integ: Vec<IntegAlg>,
    /// PFS groups for CREATE_CHILD_SA; empty = no PFS.
    pub dh: Vec<DhGroup>,
    /// Acceptable ESN values in order of preference; default `[false]`.
    pub esn: Vec<bool>,
}

/// Why a proposal string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposalError {
    #[error("unknown algorithm keyword {0:?}")]
    UnknownKeyword(String),
    #[error("proposal {0:?} has no encryption algorithm")]
    NoEncryption(String),
    #[error("proposal {0:?} has no key exchange group")]
    NoDhGroup(String),
    #[error("proposal {0:?} mixes AEAD and non-AEAD encryption")]
    MixedAead(String),
    #[error("proposal {0:?} with non-AEAD encryption needs an integrity algorithm")]
    NoIntegrity(String),
    #[error("proposal {0:?} needs a PRF (or an integrity algorithm to derive it from)")]
    NoPrf(String),
    #[error("keyword {1:?} is not valid in an {0} proposal")]
    NotAllowed(&'static str, String),
}

/// Parse an IKE proposal string.
pub fn parse_ike_proposal(s: &str) -> Result<IkeProposal, ProposalError> {
    crate::proposal_impl::parse_ike(s)
}

/// Parse an ESP proposal string.
pub fn parse_esp_proposal(s: &str) -> Result<EspProposal, ProposalError> {
    crate::proposal_impl::parse_esp(s)
}
