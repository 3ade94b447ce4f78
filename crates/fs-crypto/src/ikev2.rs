//! IKEv2 key derivation (RFC 7296 2.14, 2.17, 2.18) and PSK authentication (2.15).
use crate::alg::{EncrAlg, IntegAlg, PrfAlg};
use zeroize::Zeroizing;

/// The seven IKE SA keys.
pub struct IkeSaKeys {
    pub sk_d: Zeroizing<Vec<u8>>,
    pub sk_ai: Zeroizing<Vec<u8>>,
    pub sk_ar: Zeroizing<Vec<u8>>,
    pub sk_ei: Zeroizing<Vec<u8>>,
    pub sk_er: Zeroizing<Vec<u8>>,
    pub sk_pi: Zeroizing<Vec<u8>>,
    pub sk_pr: Zeroizing<Vec<u8>>,
}

/// SKEYSEED = prf(Ni | Nr, g^ir); {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} =
/// prf+(SKEYSEED, Ni | Nr | SPIi | SPIr). SK_a* are empty for AEAD; SK_e* include the salt.
pub fn derive_ike_sa_keys(
    prf: PrfAlg,
    encr: EncrAlg,
    integ: Option<IntegAlg>,
    ni: &[u8],
    nr: &[u8],
    g_ir: &[u8],
    spi_i: u64,
    spi_r: u64,
) -> IkeSaKeys {
    let _ = (prf, encr, integ, ni, nr, g_ir, spi_i, spi_r);
    todo!("fs-crypto: derive_ike_sa_keys")
}

/// Rekeyed IKE SA (2.18): SKEYSEED = prf(SK_d(old), g^ir(new) | Ni | Nr), then as above with
/// the new SPIs. `old_prf` keys the SKEYSEED step, `prf` is the new SA's PRF.
#[allow(clippy::too_many_arguments)]
pub fn derive_rekeyed_ike_sa_keys(
    old_prf: PrfAlg,
    old_sk_d: &[u8],
    prf: PrfAlg,
    encr: EncrAlg,
    integ: Option<IntegAlg>,
    g_ir: &[u8],
    ni: &[u8],
    nr: &[u8],
    spi_i: u64,
    spi_r: u64,
) -> IkeSaKeys {
    let _ = (old_prf, old_sk_d, prf, encr, integ, g_ir, ni, nr, spi_i, spi_r);
    todo!("fs-crypto: derive_rekeyed_ike_sa_keys")
}

/// CHILD_SA KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr), `len` bytes (2.17). The caller splits
/// it: initiator->responder SA first (encryption key then integrity key), then the reverse.
pub fn child_keymat(prf: PrfAlg, sk_d: &[u8], g_ir: Option<&[u8]>, ni: &[u8], nr: &[u8], len: usize) -> Zeroizing<Vec<u8>> {
    let _ = (prf, sk_d, g_ir, ni, nr, len);
    todo!("fs-crypto: child_keymat")
}

/// PSK AUTH data (2.15): prf(prf(PSK, "Key Pad for IKEv2"), <SignedOctets>) where SignedOctets
/// = `message` (the sender's first message, IKE_SA_INIT, as sent) | `peer_nonce` |
/// prf(SK_p, `id_payload_body`) and `id_payload_body` is the ID payload without its generic
/// header (ID Type, 3 reserved bytes, data). `sk_p` is the sender's SK_pi or SK_pr.
pub fn psk_auth(prf: PrfAlg, psk: &[u8], message: &[u8], peer_nonce: &[u8], sk_p: &[u8], id_payload_body: &[u8]) -> Vec<u8> {
    let _ = (prf, psk, message, peer_nonce, sk_p, id_payload_body);
    todo!("fs-crypto: psk_auth")
}
