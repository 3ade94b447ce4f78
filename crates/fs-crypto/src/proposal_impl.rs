//! Parser for strongSwan-style proposal strings (see [`crate::proposal`]).
//!
//! Like strongSwan, integrity keywords in an all-AEAD proposal are not proposed as integrity
//! algorithms (RFC 7296 3.3); in IKE proposals they still supply the PRF if none is named
//! (`aes256gcm16-sha256-x25519` = AES-GCM-256 with PRF-HMAC-SHA2-256).
use crate::alg::{DhGroup, EncrAlg, IntegAlg, PrfAlg};
use crate::proposal::{EspProposal, IkeProposal, ProposalError};

/// One recognised keyword.
enum Kw {
    Encr(EncrAlg),
    Integ(IntegAlg),
    Prf(PrfAlg),
    Dh(DhGroup),
    Esn(bool),
}

fn keyword(k: &str) -> Option<Kw> {
    Some(match k {
        "aes128" => Kw::Encr(EncrAlg::AesCbc128),
        "aes256" => Kw::Encr(EncrAlg::AesCbc256),
        "aes128gcm16" | "aes128gcm" => Kw::Encr(EncrAlg::AesGcm16_128),
        "aes256gcm16" | "aes256gcm" => Kw::Encr(EncrAlg::AesGcm16_256),
        "chacha20poly1305" => Kw::Encr(EncrAlg::ChaCha20Poly1305),
        "sha256" | "sha2_256" => Kw::Integ(IntegAlg::HmacSha256_128),
        "sha384" | "sha2_384" => Kw::Integ(IntegAlg::HmacSha384_192),
        "sha512" | "sha2_512" => Kw::Integ(IntegAlg::HmacSha512_256),
        "prfsha256" => Kw::Prf(PrfAlg::HmacSha256),
        "prfsha384" => Kw::Prf(PrfAlg::HmacSha384),
        "prfsha512" => Kw::Prf(PrfAlg::HmacSha512),
        "modp2048" => Kw::Dh(DhGroup::Modp2048),
        "ecp256" => Kw::Dh(DhGroup::Ecp256),
        "x25519" | "curve25519" => Kw::Dh(DhGroup::Curve25519),
        "esn" => Kw::Esn(true),
        "noesn" => Kw::Esn(false),
        _ => return None,
    })
}

fn push_unique<T: PartialEq>(v: &mut Vec<T>, x: T) {
    if !v.contains(&x) {
        v.push(x);
    }
}

/// All keywords of one proposal, in order, duplicates dropped.
#[derive(Default)]
struct Parsed {
    encr: Vec<EncrAlg>,
    integ: Vec<IntegAlg>,
    prf: Vec<PrfAlg>,
    dh: Vec<DhGroup>,
    esn: Vec<bool>,
}

/// Tokenise and check the encryption/integrity combination shared by IKE and ESP.
fn parse_common(s: &str, kind: &'static str) -> Result<Parsed, ProposalError> {
    let mut p = Parsed::default();
    let lower = s.trim().to_ascii_lowercase();
    for tok in lower.split('-') {
        match keyword(tok) {
            None => return Err(ProposalError::UnknownKeyword(tok.to_string())),
            Some(Kw::Encr(a)) => push_unique(&mut p.encr, a),
            Some(Kw::Integ(a)) => push_unique(&mut p.integ, a),
            Some(Kw::Prf(a)) => {
                if kind == "ESP" {
                    return Err(ProposalError::NotAllowed(kind, tok.to_string()));
                }
                push_unique(&mut p.prf, a)
            }
            Some(Kw::Dh(a)) => push_unique(&mut p.dh, a),
            Some(Kw::Esn(e)) => {
                if kind == "IKE" {
                    return Err(ProposalError::NotAllowed(kind, tok.to_string()));
                }
                push_unique(&mut p.esn, e)
            }
        }
    }
    let Some(first) = p.encr.first() else {
        return Err(ProposalError::NoEncryption(s.to_string()));
    };
    let aead = first.is_aead();
    if p.encr.iter().any(|e| e.is_aead() != aead) {
        return Err(ProposalError::MixedAead(s.to_string()));
    }
    if !aead && p.integ.is_empty() {
        return Err(ProposalError::NoIntegrity(s.to_string()));
    }
    Ok(p)
}

pub(crate) fn parse_ike(s: &str) -> Result<IkeProposal, ProposalError> {
    let mut p = parse_common(s, "IKE")?;
    if p.prf.is_empty() {
        for i in &p.integ {
            push_unique(&mut p.prf, i.matching_prf());
        }
    }
    if p.prf.is_empty() {
        return Err(ProposalError::NoPrf(s.to_string()));
    }
    if p.dh.is_empty() {
        return Err(ProposalError::NoDhGroup(s.to_string()));
    }
    // parse_common returns at least one encryption transform.
    if p.encr.first().is_some_and(|e| e.is_aead()) {
        p.integ.clear();
    }
    Ok(IkeProposal {
        encr: p.encr,
        integ: p.integ,
        prf: p.prf,
        dh: p.dh,
    })
}

pub(crate) fn parse_esp(s: &str) -> Result<EspProposal, ProposalError> {
    let mut p = parse_common(s, "ESP")?;
    // parse_common returns at least one encryption transform.
    if p.encr.first().is_some_and(|e| e.is_aead()) {
        p.integ.clear();
    }
    if p.esn.is_empty() {
        p.esn.push(false);
    }
    Ok(EspProposal {
        encr: p.encr,
        integ: p.integ,
        dh: p.dh,
        esn: p.esn,
    })
}

#[cfg(test)]
mod tests {
    use crate::alg::{DhGroup::*, EncrAlg::*, IntegAlg::*, PrfAlg::*};
    use crate::proposal::*;

    #[test]
    fn ike_examples() {
        let p = parse_ike_proposal("aes256gcm16-prfsha256-x25519").unwrap();
        assert_eq!(
            p,
            IkeProposal {
                encr: vec![AesGcm16_256],
                integ: vec![],
                prf: vec![HmacSha256],
                dh: vec![Curve25519]
            }
        );
        let p = parse_ike_proposal("aes128gcm16-prfsha384-ecp256").unwrap();
        assert_eq!(
            (p.encr, p.prf, p.dh),
            (vec![AesGcm16_128], vec![HmacSha384], vec![Ecp256])
        );
        let p = parse_ike_proposal("chacha20poly1305-prfsha512-modp2048").unwrap();
        assert_eq!(
            (p.encr, p.prf, p.dh),
            (vec![ChaCha20Poly1305], vec![HmacSha512], vec![Modp2048])
        );
        let p = parse_ike_proposal("aes256-sha256-modp2048").unwrap();
        assert_eq!(
            p,
            IkeProposal {
                encr: vec![AesCbc256],
                integ: vec![HmacSha256_128],
                prf: vec![HmacSha256],
                dh: vec![Modp2048]
            }
        );
        let p = parse_ike_proposal("aes128-aes256-sha256-sha384-prfsha256-x25519-ecp256").unwrap();
        assert_eq!(
            p,
            IkeProposal {
                encr: vec![AesCbc128, AesCbc256],
                integ: vec![HmacSha256_128, HmacSha384_192],
                prf: vec![HmacSha256],
                dh: vec![Curve25519, Ecp256]
            }
        );
        // PRFs derived from every integrity algorithm, in order.
        let p = parse_ike_proposal("aes256-sha512-sha2_256-curve25519").unwrap();
        assert_eq!(p.integ, vec![HmacSha512_256, HmacSha256_128]);
        assert_eq!(p.prf, vec![HmacSha512, HmacSha256]);
        assert_eq!(p.dh, vec![Curve25519]);
        // Aliases; AEAD integrity keywords only supply the PRF.
        let p = parse_ike_proposal("aes256gcm-sha2_384-ecp256").unwrap();
        assert_eq!(
            p,
            IkeProposal {
                encr: vec![AesGcm16_256],
                integ: vec![],
                prf: vec![HmacSha384],
                dh: vec![Ecp256]
            }
        );
        let p = parse_ike_proposal("AES128GCM-PRFSHA256-X25519").unwrap();
        assert_eq!(p.encr, vec![AesGcm16_128]);
    }

    #[test]
    fn esp_examples() {
        let p = parse_esp_proposal("aes256gcm16").unwrap();
        assert_eq!(
            p,
            EspProposal {
                encr: vec![AesGcm16_256],
                integ: vec![],
                dh: vec![],
                esn: vec![false]
            }
        );
        let p = parse_esp_proposal("chacha20poly1305").unwrap();
        assert_eq!(p.encr, vec![ChaCha20Poly1305]);
        let p = parse_esp_proposal("aes256-sha256").unwrap();
        assert_eq!(
            p,
            EspProposal {
                encr: vec![AesCbc256],
                integ: vec![HmacSha256_128],
                dh: vec![],
                esn: vec![false]
            }
        );
        let p = parse_esp_proposal("aes128-sha512-esn").unwrap();
        assert_eq!(
            p,
            EspProposal {
                encr: vec![AesCbc128],
                integ: vec![HmacSha512_256],
                dh: vec![],
                esn: vec![true]
            }
        );
        let p = parse_esp_proposal("aes256gcm16-x25519").unwrap();
        assert_eq!(p.dh, vec![Curve25519]);
        let p = parse_esp_proposal("aes128gcm16-noesn").unwrap();
        assert_eq!((p.encr, p.esn), (vec![AesGcm16_128], vec![false]));
        let p = parse_esp_proposal("aes128gcm-esn-noesn").unwrap();
        assert_eq!(p.esn, vec![true, false]);
        let p = parse_esp_proposal("aes128gcm16-sha256").unwrap();
        assert!(p.integ.is_empty());
    }

    #[test]
    fn rejections() {
        use ProposalError::*;
        assert_eq!(
            parse_ike_proposal("aes256-sha256-foo"),
            Err(UnknownKeyword("foo".into()))
        );
        assert_eq!(parse_ike_proposal(""), Err(UnknownKeyword("".into())));
        assert_eq!(
            parse_ike_proposal("aes256--sha256-x25519"),
            Err(UnknownKeyword("".into()))
        );
        assert_eq!(
            parse_esp_proposal("3des-sha1"),
            Err(UnknownKeyword("3des".into()))
        );
        assert_eq!(
            parse_ike_proposal("sha256-x25519"),
            Err(NoEncryption("sha256-x25519".into()))
        );
        assert_eq!(
            parse_ike_proposal("aes256gcm16-aes256-sha256-x25519"),
            Err(MixedAead("aes256gcm16-aes256-sha256-x25519".into()))
        );
        assert_eq!(
            parse_esp_proposal("aes128-chacha20poly1305-sha256"),
            Err(MixedAead("aes128-chacha20poly1305-sha256".into()))
        );
        assert_eq!(
            parse_ike_proposal("aes256-prfsha256-x25519"),
            Err(NoIntegrity("aes256-prfsha256-x25519".into()))
        );
        assert_eq!(
            parse_esp_proposal("aes256"),
            Err(NoIntegrity("aes256".into()))
        );
        assert_eq!(
            parse_ike_proposal("aes256gcm16-prfsha256"),
            Err(NoDhGroup("aes256gcm16-prfsha256".into()))
        );
        assert_eq!(
            parse_ike_proposal("aes256gcm16-x25519"),
            Err(NoPrf("aes256gcm16-x25519".into()))
        );
        assert_eq!(
            parse_ike_proposal("aes256gcm16-prfsha256-x25519-esn"),
            Err(NotAllowed("IKE", "esn".into()))
        );
        assert_eq!(
            parse_esp_proposal("aes256gcm16-prfsha256"),
            Err(NotAllowed("ESP", "prfsha256".into()))
        );
    }
}
