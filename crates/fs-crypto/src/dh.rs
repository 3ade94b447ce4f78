//! Diffie-Hellman key exchange: curve25519 (RFC 8031), ECP-256 (RFC 5903: x || y, 64 bytes,
//! shared secret = x coordinate), MODP-2048 (RFC 3526 group 14, big-endian 256 bytes, peer
//! value checked 1 < y < p-1).
//!
//! The elliptic-curve groups use aws-lc-rs (constant time). MODP-2048 uses `num-bigint`,
//! whose modular exponentiation is **not constant time** and whose temporaries are not
//! zeroized: prefer x25519/ecp256 where timing side channels matter.
use crate::{alg::DhGroup, rng::Rng, CryptoError};
use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey, ECDH_P256, X25519};
use num_bigint::BigUint;
use std::sync::OnceLock;
use zeroize::Zeroizing;

/// RFC 3526 section 3, 2048-bit MODP group prime (generator 2).
const MODP2048_P_HEX: &str = "\
    FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74\
    020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437\
    4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED\
    EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05\
    98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB\
    9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B\
    E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718\
    3995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF";

/// Bytes of the MODP private exponent (512 bits, well above twice the ~112-bit group strength).
const MODP_EXP_LEN: usize = 64;

// The hex constant above is valid (the group tests parse it); a failure is a build defect.
#[allow(clippy::expect_used)]
fn modp2048_p() -> &'static BigUint {
    static P: OnceLock<BigUint> = OnceLock::new();
    P.get_or_init(|| BigUint::parse_bytes(MODP2048_P_HEX.as_bytes(), 16).expect("valid constant"))
}

/// Big-endian, left-padded to `len` bytes (`v` < 2^(8*len)).
// Every caller passes a value reduced modulo the 2048-bit prime with `len` = 256, so
// `bytes.len() <= len`.
#[allow(clippy::indexing_slicing)]
fn to_fixed_be(v: &BigUint, len: usize) -> Zeroizing<Vec<u8>> {
    let bytes = Zeroizing::new(v.to_bytes_be());
    let mut out = Zeroizing::new(vec![0u8; len]);
    out[len - bytes.len()..].copy_from_slice(&bytes);
    out
}

/// An ephemeral key pair of one group.
pub struct KeyExchange {
    group: DhGroup,
    public: Vec<u8>,
    /// X25519: the 32-byte scalar; ECP-256: the 32-byte big-endian scalar; MODP: the
    /// big-endian exponent.
    private: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for KeyExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyExchange")
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl KeyExchange {
    /// Generate a key pair; the private value comes from `rng` so simulations are deterministic.
    pub fn generate(group: DhGroup, rng: &mut dyn Rng) -> Result<Self, CryptoError> {
        match group {
            DhGroup::Curve25519 => {
                let mut private = Zeroizing::new(vec![0u8; 32]);
                rng.fill(&mut private);
                let key = PrivateKey::from_private_key(&X25519, &private)
                    .map_err(|_| CryptoError::Backend)?;
                let public = key.compute_public_key().map_err(|_| CryptoError::Backend)?;
                Ok(KeyExchange {
                    group,
                    public: public.as_ref().to_vec(),
                    private,
                })
            }
            DhGroup::Ecp256 => {
                // A random 256-bit string is a valid scalar (1 <= d < n) with probability
                // ~1 - 2^-32; retry otherwise.
                for _ in 0..64 {
                    let mut private = Zeroizing::new(vec![0u8; 32]);
                    rng.fill(&mut private);
                    let Ok(key) = PrivateKey::from_private_key(&ECDH_P256, &private) else {
                        continue;
                    };
                    let public = key.compute_public_key().map_err(|_| CryptoError::Backend)?;
                    // Uncompressed SEC1 point 0x04 || x || y; the KE payload carries x || y.
                    let [0x04, xy @ ..] = public.as_ref() else {
                        return Err(CryptoError::Backend);
                    };
                    if xy.len() != 64 {
                        return Err(CryptoError::Backend);
                    }
                    return Ok(KeyExchange {
                        group,
                        public: xy.to_vec(),
                        private,
                    });
                }
                Err(CryptoError::Backend)
            }
            DhGroup::Modp2048 => {
                let p = modp2048_p();
                loop {
                    let mut private = Zeroizing::new(vec![0u8; MODP_EXP_LEN]);
                    rng.fill(&mut private);
                    let x = BigUint::from_bytes_be(&private);
                    if x <= BigUint::from(1u8) {
                        continue;
                    }
                    let y = BigUint::from(2u8).modpow(&x, p);
                    let public = to_fixed_be(&y, 256).to_vec();
                    return Ok(KeyExchange {
                        group,
                        public,
                        private,
                    });
                }
            }
        }
    }
    /// The group.
    pub fn group(&self) -> DhGroup {
        self.group
    }
    /// The public value as carried in the KE payload.
    pub fn public_key(&self) -> &[u8] {
        &self.public
    }
    /// The shared secret g^ir from the peer's KE payload data. Rejects malformed/invalid values
    /// (wrong length, point not on the curve, low-order X25519 points, MODP y <= 1 or >= p-1)
    /// with [`CryptoError::InvalidPublicKey`].
    pub fn shared_secret(&self, peer_public: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let invalid = CryptoError::InvalidPublicKey(self.group);
        if peer_public.len() != self.group.public_len() {
            return Err(invalid);
        }
        match self.group {
            DhGroup::Curve25519 => {
                let key = PrivateKey::from_private_key(&X25519, &self.private)
                    .map_err(|_| CryptoError::Backend)?;
                let peer = UnparsedPublicKey::new(&X25519, peer_public);
                // aws-lc rejects an all-zero result (low-order peer point, RFC 7748 6.1).
                agreement::agree(&key, peer, invalid, |s| Ok(Zeroizing::new(s.to_vec())))
            }
            DhGroup::Ecp256 => {
                let key = PrivateKey::from_private_key(&ECDH_P256, &self.private)
                    .map_err(|_| CryptoError::Backend)?;
                let mut sec1 = [0u8; 65];
                sec1[0] = 0x04;
                sec1[1..].copy_from_slice(peer_public);
                let peer = UnparsedPublicKey::new(&ECDH_P256, &sec1[..]);
                // aws-lc checks the point is on the curve; the result is the x coordinate.
                agreement::agree(&key, peer, invalid, |s| Ok(Zeroizing::new(s.to_vec())))
            }
            DhGroup::Modp2048 => {
                let p = modp2048_p();
                let y = BigUint::from_bytes_be(peer_public);
                let one = BigUint::from(1u8);
                if y <= one || y >= p - &one {
                    return Err(invalid);
                }
                let x = BigUint::from_bytes_be(&self.private);
                let s = y.modpow(&x, p);
                Ok(to_fixed_be(&s, 256))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::TestRng;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace([' ', '\n'], "")).unwrap()
    }

    /// Replays fixed bytes, to inject published private keys.
    struct FixedRng(Vec<u8>);
    impl Rng for FixedRng {
        fn fill(&mut self, dest: &mut [u8]) {
            let n = dest.len();
            dest.copy_from_slice(&self.0[..n]);
            self.0.drain(..n);
        }
    }

    #[test]
    fn both_sides_agree_every_group() {
        let mut rng = TestRng::from_seed(7);
        for g in DhGroup::ALL {
            let a = KeyExchange::generate(g, &mut rng).unwrap();
            let b = KeyExchange::generate(g, &mut rng).unwrap();
            assert_eq!(a.group(), g);
            assert_eq!(a.public_key().len(), g.public_len());
            assert_ne!(a.public_key(), b.public_key());
            let s1 = a.shared_secret(b.public_key()).unwrap();
            let s2 = b.shared_secret(a.public_key()).unwrap();
            assert_eq!(*s1, *s2, "{g:?}");
            let expected_len = match g {
                DhGroup::Modp2048 => 256,
                DhGroup::Ecp256 | DhGroup::Curve25519 => 32,
            };
            assert_eq!(s1.len(), expected_len);
        }
    }

    #[test]
    fn deterministic_from_rng() {
        for g in DhGroup::ALL {
            let a = KeyExchange::generate(g, &mut TestRng::from_seed(1)).unwrap();
            let b = KeyExchange::generate(g, &mut TestRng::from_seed(1)).unwrap();
            assert_eq!(a.public_key(), b.public_key());
        }
    }

    // RFC 7748 section 6.1 (the X25519 exchange used by RFC 8031).
    #[test]
    fn x25519_rfc7748_vector() {
        let a_priv = h("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
        let a_pub = h("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
        let b_priv = h("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
        let b_pub = h("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
        let k = h("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
        let a = KeyExchange::generate(DhGroup::Curve25519, &mut FixedRng(a_priv)).unwrap();
        let b = KeyExchange::generate(DhGroup::Curve25519, &mut FixedRng(b_priv)).unwrap();
        assert_eq!(a.public_key(), &a_pub[..]);
        assert_eq!(b.public_key(), &b_pub[..]);
        assert_eq!(&*a.shared_secret(&b_pub).unwrap(), &k[..]);
        assert_eq!(&*b.shared_secret(&a_pub).unwrap(), &k[..]);
    }

    // RFC 5903 section 8.1 (256-bit random ECP group).
    #[test]
    fn ecp256_rfc5903_vector() {
        let i = h("C88F01F510D9AC3F70A292DAA2316DE544E9AAB8AFE84049C62A9C57862D1433");
        let gi = h(
            "DAD0B65394221CF9B051E1FECA5787D098DFE637FC90B9EF945D0C3772581180\
                    5271A0461CDB8252D61F1C456FA3E59AB1F45B33ACCF5F58389E0577B8990BB3",
        );
        let r = h("C6EF9C5D78AE012A011164ACB397CE2088685D8F06BF9BE0B283AB46476BEE53");
        let gr = h(
            "D12DFB5289C8D4F81208B70270398C342296970A0BCCB74C736FC7554494BF63\
                    56FBF3CA366CC23E8157854C13C58D6AAC23F046ADA30F8353E74F33039872AB",
        );
        let gir = h("D6840F6B42F6EDAFD13116E0E12565202FEF8E9ECE7DCE03812464D04B9442DE");
        let a = KeyExchange::generate(DhGroup::Ecp256, &mut FixedRng(i)).unwrap();
        let b = KeyExchange::generate(DhGroup::Ecp256, &mut FixedRng(r)).unwrap();
        assert_eq!(a.public_key(), &gi[..]);
        assert_eq!(b.public_key(), &gr[..]);
        assert_eq!(&*a.shared_secret(&gr).unwrap(), &gir[..]);
        assert_eq!(&*b.shared_secret(&gi).unwrap(), &gir[..]);
    }

    #[test]
    fn ecp256_retries_invalid_scalar() {
        // First candidate is the all-ones string (>= n), second is valid.
        let mut bytes = vec![0xff; 32];
        bytes.extend(h(
            "C88F01F510D9AC3F70A292DAA2316DE544E9AAB8AFE84049C62A9C57862D1433",
        ));
        let a = KeyExchange::generate(DhGroup::Ecp256, &mut FixedRng(bytes)).unwrap();
        assert_eq!(a.public_key()[..4], h("DAD0B653")[..],);
    }

    #[test]
    fn modp_small_exponent_matches_definition() {
        // Exponent 3: public = 8, shared with peer y = 2 is 8 as well.
        let mut exp = vec![0u8; MODP_EXP_LEN];
        exp[MODP_EXP_LEN - 1] = 3;
        let a = KeyExchange::generate(DhGroup::Modp2048, &mut FixedRng(exp)).unwrap();
        let mut eight = vec![0u8; 256];
        eight[255] = 8;
        assert_eq!(a.public_key(), &eight[..]);
        let mut two = vec![0u8; 256];
        two[255] = 2;
        assert_eq!(&*a.shared_secret(&two).unwrap(), &eight[..]);
    }

    #[test]
    fn malformed_peer_keys_rejected() {
        let mut rng = TestRng::from_seed(3);
        for g in DhGroup::ALL {
            let a = KeyExchange::generate(g, &mut rng).unwrap();
            let err = Err(CryptoError::InvalidPublicKey(g));
            let n = g.public_len();
            assert_eq!(a.shared_secret(&[]), err);
            assert_eq!(a.shared_secret(&vec![1u8; n - 1]), err);
            assert_eq!(a.shared_secret(&vec![1u8; n + 1]), err);
            // All-zero: X25519 low-order point, ECP point at infinity/off curve, MODP y = 0.
            assert_eq!(a.shared_secret(&vec![0u8; n]), err, "{g:?}");
        }
        // ECP-256: a point off the curve (valid x, y + 1).
        let a = KeyExchange::generate(DhGroup::Ecp256, &mut rng).unwrap();
        let mut bad = h(
            "D12DFB5289C8D4F81208B70270398C342296970A0BCCB74C736FC7554494BF63\
                         56FBF3CA366CC23E8157854C13C58D6AAC23F046ADA30F8353E74F33039872AB",
        );
        bad[63] ^= 1;
        assert_eq!(
            a.shared_secret(&bad),
            Err(CryptoError::InvalidPublicKey(DhGroup::Ecp256))
        );
        // X25519: the low-order point of order 8 from RFC 7748 / libsodium's blacklist.
        let a = KeyExchange::generate(DhGroup::Curve25519, &mut rng).unwrap();
        let mut one = vec![0u8; 32];
        one[0] = 1;
        assert_eq!(
            a.shared_secret(&one),
            Err(CryptoError::InvalidPublicKey(DhGroup::Curve25519))
        );
        // MODP: 1, p - 1, p and 0xff..ff are rejected.
        let a = KeyExchange::generate(DhGroup::Modp2048, &mut rng).unwrap();
        let p = modp2048_p();
        let one_big = BigUint::from(1u8);
        for v in [one_big.clone(), p - &one_big, p.clone()] {
            assert_eq!(
                a.shared_secret(&to_fixed_be(&v, 256)),
                Err(CryptoError::InvalidPublicKey(DhGroup::Modp2048))
            );
        }
        assert_eq!(
            a.shared_secret(&[0xff; 256]),
            Err(CryptoError::InvalidPublicKey(DhGroup::Modp2048))
        );
        // p - 2 is accepted.
        assert!(a.shared_secret(&to_fixed_be(&(p - 2u8), 256)).is_ok());
    }
}
