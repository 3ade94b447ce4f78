//! PRFs, prf+ (RFC 7296 2.13) and truncated-HMAC integrity.
use crate::alg::{IntegAlg, PrfAlg};
use aws_lc_rs::hmac;
use zeroize::Zeroizing;

impl PrfAlg {
    /// The aws-lc-rs HMAC algorithm behind this PRF.
    pub(crate) fn hmac_alg(self) -> hmac::Algorithm {
        match self {
            PrfAlg::HmacSha256 => hmac::HMAC_SHA256,
            PrfAlg::HmacSha384 => hmac::HMAC_SHA384,
            PrfAlg::HmacSha512 => hmac::HMAC_SHA512,
        }
    }

    /// prf(key, data).
    pub fn compute(self, key: &[u8], data: &[u8]) -> Zeroizing<Vec<u8>> {
        let key = hmac::Key::new(self.hmac_alg(), key);
        Zeroizing::new(hmac::sign(&key, data).as_ref().to_vec())
    }

    /// prf+(key, seed) truncated to `len` bytes: T1 | T2 | ..., Tn = prf(K, Tn-1 | S | n).
    ///
    /// # Panics
    /// If `len > 255 * output_len()` (the counter is one octet); callers derive `len` from
    /// negotiated algorithm sizes, which stay far below that limit.
    pub fn prf_plus(self, key: &[u8], seed: &[u8], len: usize) -> Zeroizing<Vec<u8>> {
        let out_len = self.output_len();
        assert!(len <= 255 * out_len, "prf+ output length {len} too long");
        let key = hmac::Key::new(self.hmac_alg(), key);
        let mut out = Zeroizing::new(Vec::with_capacity(len + out_len));
        let mut prev: Option<hmac::Tag> = None;
        let mut n: u8 = 1;
        while out.len() < len {
            let mut ctx = hmac::Context::with_key(&key);
            if let Some(t) = &prev {
                ctx.update(t.as_ref());
            }
            ctx.update(seed);
            ctx.update(&[n]);
            let t = ctx.sign();
            out.extend_from_slice(t.as_ref());
            prev = Some(t);
            n = n.wrapping_add(1);
        }
        out.truncate(len);
        out
    }
}

impl IntegAlg {
    /// The aws-lc-rs HMAC algorithm behind this integrity transform.
    pub(crate) fn hmac_alg(self) -> hmac::Algorithm {
        match self {
            IntegAlg::HmacSha256_128 => hmac::HMAC_SHA256,
            IntegAlg::HmacSha384_192 => hmac::HMAC_SHA384,
            IntegAlg::HmacSha512_256 => hmac::HMAC_SHA512,
        }
    }

    /// The truncated HMAC (ICV) of `data`.
    // The ICV is a truncation: `icv_len()` (16/24/32) is half the HMAC output (32/48/64).
    #[allow(clippy::indexing_slicing)]
    pub fn compute(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        let key = hmac::Key::new(self.hmac_alg(), key);
        hmac::sign(&key, data).as_ref()[..self.icv_len()].to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace([' ', '\n'], "")).unwrap()
    }

    // RFC 4231 test cases 1, 2, 4, 6 (key longer than the block size) and 7.
    #[test]
    fn rfc4231_hmac_sha2() {
        struct Case {
            key: Vec<u8>,
            data: Vec<u8>,
            s256: &'static str,
            s384: &'static str,
            s512: &'static str,
        }
        let cases = [
            Case {
                key: vec![0x0b; 20],
                data: b"Hi There".to_vec(),
                s256: "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
                s384: "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59c\
                       faea9ea9076ede7f4af152e8b2fa9cb6",
                s512: "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde\
                       daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854",
            },
            Case {
                key: b"Jefe".to_vec(),
                data: b"what do ya want for nothing?".to_vec(),
                s256: "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
                s384: "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e\
                       8e2240ca5e69e2c78b3239ecfab21649",
                s512: "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554\
                       9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
            },
            Case {
                key: (1u8..=25).collect(),
                data: vec![0xcd; 50],
                s256: "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
                s384: "3e8a69b7783c25851933ab6290af6ca77a9981480850009cc5577c6e1f573b4e\
                       6801dd23c4a7d679ccf8a386c674cffb",
                s512: "b0ba465637458c6990e5a8c5f61d4af7e576d97ff94b872de76f8050361ee3db\
                       a91ca5c11aa25eb4d679275cc5788063a5f19741120c4f2de2adebeb10a298dd",
            },
            Case {
                key: vec![0xaa; 131],
                data: b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
                s256: "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
                s384: "4ece084485813e9088d2c63a041bc5b44f9ef1012a2b588f3cd11f05033ac4c6\
                       0c2ef6ab4030fe8296248df163f44952",
                s512: "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f352\
                       6b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598",
            },
            Case {
                key: vec![0xaa; 131],
                data: b"This is a test using a larger than block-size key and a larger than \
                        block-size data. The key needs to be hashed before being used by the \
                        HMAC algorithm."
                    .to_vec(),
                s256: "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
                s384: "6617178e941f020d351e2f254e8fd32c602420feb0b8fb9adccebb82461e99c5\
                       a678cc31e799176d3860e6110c46523e",
                s512: "e37b6a775dc87dbaa4dfa9f96e5e3ffddebd71f8867289865df5a32d20cdc944\
                       b6022cac3c4982b10d5eeb55c3e4de15134676fb6de0446065c97440fa8c6a58",
            },
        ];
        for c in &cases {
            assert_eq!(
                &*PrfAlg::HmacSha256.compute(&c.key, &c.data),
                &h(c.s256)[..]
            );
            assert_eq!(
                &*PrfAlg::HmacSha384.compute(&c.key, &c.data),
                &h(c.s384)[..]
            );
            assert_eq!(
                &*PrfAlg::HmacSha512.compute(&c.key, &c.data),
                &h(c.s512)[..]
            );
        }
    }

    // RFC 4231 test case 5 (truncation to 128 bits).
    #[test]
    fn rfc4231_truncated() {
        let key = vec![0x0c; 20];
        let data = b"Test With Truncation";
        let t = PrfAlg::HmacSha256.compute(&key, data);
        assert_eq!(&t[..16], &h("a3b6167473100ee06e0c796c2955552b")[..]);
        assert_eq!(
            IntegAlg::HmacSha256_128.compute(&key, data),
            h("a3b6167473100ee06e0c796c2955552b")
        );
        let t = PrfAlg::HmacSha384.compute(&key, data);
        assert_eq!(&t[..16], &h("3abf34c3503b2a23a46efc619baef897")[..]);
        let t = PrfAlg::HmacSha512.compute(&key, data);
        assert_eq!(&t[..16], &h("415fad6271580a531d4179bc891d87a6")[..]);
    }

    // RFC 4868 section 2.7.2.1 (authentication test vectors, ICVs truncated to 128/192/256
    // bits).
    #[test]
    fn rfc4868_icv() {
        // Test case AUTH256-1
        let key = vec![0x0b; 32];
        assert_eq!(
            IntegAlg::HmacSha256_128.compute(&key, b"Hi There"),
            h("198a607eb44bfbc69903a0f1cf2bbdc5")
        );
        // AUTH256-2
        let key = b"JefeJefeJefeJefeJefeJefeJefeJefe";
        assert_eq!(
            IntegAlg::HmacSha256_128.compute(key, b"what do ya want for nothing?"),
            h("167f928588c5cc2eef8e3093caa0e87c")
        );
        // AUTH384-1
        let key = vec![0x0b; 48];
        assert_eq!(
            IntegAlg::HmacSha384_192.compute(&key, b"Hi There"),
            h("b6a8d5636f5c6a7224f9977dcf7ee6c7fb6d0c48cbdee973")
        );
        // AUTH512-1
        let key = vec![0x0b; 64];
        assert_eq!(
            IntegAlg::HmacSha512_256.compute(&key, b"Hi There"),
            h("637edc6e01dce7e6742a99451aae82df23da3e92439e590e43e761b33e910fb8")
        );
    }

    #[test]
    fn prf_plus_structure() {
        let key = b"key";
        let seed = b"seed";
        for prf in PrfAlg::ALL {
            let n = prf.output_len();
            let out = prf.prf_plus(key, seed, 3 * n + 5);
            assert_eq!(out.len(), 3 * n + 5);
            let t1 = prf.compute(key, &[&seed[..], &[1]].concat());
            let t2 = prf.compute(key, &[&t1[..], &seed[..], &[2]].concat());
            let t3 = prf.compute(key, &[&t2[..], &seed[..], &[3]].concat());
            let t4 = prf.compute(key, &[&t3[..], &seed[..], &[4]].concat());
            assert_eq!(&out[..n], &t1[..]);
            assert_eq!(&out[n..2 * n], &t2[..]);
            assert_eq!(&out[2 * n..3 * n], &t3[..]);
            assert_eq!(&out[3 * n..], &t4[..5]);
            // Shorter outputs are prefixes.
            assert_eq!(&prf.prf_plus(key, seed, 7)[..], &out[..7]);
            assert!(prf.prf_plus(key, seed, 0).is_empty());
        }
    }
}
