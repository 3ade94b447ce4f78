//! IKEv2 key derivation (RFC 7296 2.14, 2.17, 2.18) and PSK authentication (2.15).
use crate::alg::{EncrAlg, IntegAlg, PrfAlg};
use crate::Secret;
use zeroize::Zeroizing;

/// The constant of RFC 7296 2.15 (17 ASCII bytes, no terminator).
const KEY_PAD: &[u8] = b"Key Pad for IKEv2";

/// The seven IKE SA keys (wiped on drop, redacted in `Debug`).
#[derive(Debug)]
pub struct IkeSaKeys {
    pub sk_d: Secret,
    pub sk_ai: Secret,
    pub sk_ar: Secret,
    pub sk_ei: Secret,
    pub sk_er: Secret,
    pub sk_pi: Secret,
    pub sk_pr: Secret,
}

/// SKEYSEED = prf(Ni | Nr, g^ir); {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} =
/// prf+(SKEYSEED, Ni | Nr | SPIi | SPIr). SK_a* are empty for AEAD; SK_e* include the salt.
#[allow(clippy::too_many_arguments)]
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
    let skeyseed = prf.compute(&[ni, nr].concat(), g_ir);
    split_ike_sa_keys(&skeyseed, prf, encr, integ, ni, nr, spi_i, spi_r)
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
    let data = Zeroizing::new([g_ir, ni, nr].concat());
    let skeyseed = old_prf.compute(old_sk_d, &data);
    split_ike_sa_keys(&skeyseed, prf, encr, integ, ni, nr, spi_i, spi_r)
}

/// CHILD_SA KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr), `len` bytes (2.17). The caller splits
/// it: initiator->responder SA first (encryption key then integrity key), then the reverse.
pub fn child_keymat(
    prf: PrfAlg,
    sk_d: &[u8],
    g_ir: Option<&[u8]>,
    ni: &[u8],
    nr: &[u8],
    len: usize,
) -> Secret {
    let mut seed = Zeroizing::new(Vec::with_capacity(
        g_ir.map_or(0, <[u8]>::len) + ni.len() + nr.len(),
    ));
    if let Some(g) = g_ir {
        seed.extend_from_slice(g);
    }
    seed.extend_from_slice(ni);
    seed.extend_from_slice(nr);
    Secret::from(prf.prf_plus(sk_d, &seed, len))
}

/// PSK AUTH data (2.15): prf(prf(PSK, "Key Pad for IKEv2"), <SignedOctets>) where SignedOctets
/// = `message` (the sender's first message, IKE_SA_INIT, as sent) | `peer_nonce` |
/// prf(SK_p, `id_payload_body`) and `id_payload_body` is the ID payload without its generic
/// header (ID Type, 3 reserved bytes, data). `sk_p` is the sender's SK_pi or SK_pr.
pub fn psk_auth(
    prf: PrfAlg,
    psk: &[u8],
    message: &[u8],
    peer_nonce: &[u8],
    sk_p: &[u8],
    id_payload_body: &[u8],
) -> Vec<u8> {
    let key = prf.compute(psk, KEY_PAD);
    let maced_id = prf.compute(sk_p, id_payload_body);
    let mut signed = Vec::with_capacity(message.len() + peer_nonce.len() + maced_id.len());
    signed.extend_from_slice(message);
    signed.extend_from_slice(peer_nonce);
    signed.extend_from_slice(&maced_id);
    prf.compute(&key, &signed).to_vec()
}

/// {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr).
#[allow(clippy::too_many_arguments)]
fn split_ike_sa_keys(
    skeyseed: &[u8],
    prf: PrfAlg,
    encr: EncrAlg,
    integ: Option<IntegAlg>,
    ni: &[u8],
    nr: &[u8],
    spi_i: u64,
    spi_r: u64,
) -> IkeSaKeys {
    let p = prf.output_len();
    let a = if encr.is_aead() {
        0
    } else {
        integ.map_or(0, IntegAlg::key_len)
    };
    let e = encr.key_len();
    let mut seed = Vec::with_capacity(ni.len() + nr.len() + 16);
    seed.extend_from_slice(ni);
    seed.extend_from_slice(nr);
    seed.extend_from_slice(&spi_i.to_be_bytes());
    seed.extend_from_slice(&spi_r.to_be_bytes());
    let km = prf.prf_plus(skeyseed, &seed, 3 * p + 2 * a + 2 * e);
    let mut off = 0;
    // `km` is exactly 3p + 2a + 2e bytes and the seven takes below add up to that.
    #[allow(clippy::indexing_slicing)]
    let mut take = |n: usize| {
        let k = Secret::from_slice(&km[off..off + n]);
        off += n;
        k
    };
    IkeSaKeys {
        sk_d: take(p),
        sk_ai: take(a),
        sk_ar: take(a),
        sk_ei: take(e),
        sk_er: take(e),
        sk_pi: take(p),
        sk_pr: take(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace([' ', '\n'], "")).unwrap()
    }

    // NIST CAVP SP 800-135 IKEv2 KDF sample (SHA-256), as carried in NSS's
    // gtests/common/testvectors/ike-sha256-vectors.h (cases 6, 7, 8).
    const CAVP_NI: &str = "3f302be1abcb28e1";
    const CAVP_NR: &str = "8c332ee006064c9b";
    const CAVP_GIR: &str = "0f4d257d7a58fc4545c7d7a88119eee5d5c9690c5b4c989171d3abbfd99d1d29";
    const CAVP_GIR_NEW: &str = "25f3b12d6f282739256e39bf54eda53b60ffcf379bb7bcc90c27b4c4c578616c";
    const CAVP_SPII: u64 = 0x40dac39e1e1a8640;
    const CAVP_SPIR: u64 = 0x8619a1cf9a6e4c07;
    const CAVP_SKEYSEED: &str = "5f00d1bd2c58ec224b1e6b71fa0f19a1faa7a193952c444411b47c1a9d8ba6fe";
    const CAVP_DKM: &str = "0b137d669b0947d7d026d593f0305ad401ff0c471357d695778a9c7f4b4869ec\
        e98aca531188d16041b3bb936d2dbb3b4993a6e768a809160de45d0283f273a6cdf6854379e31be72b\
        8d3d1fa990cf9c5b015ca9f918a7df6253c958114a09d4e1c19bdcd4db14b29d98db1a74ad405c588662\
        c14a04d0d36aa4ab55e90f8986d12d4aad";
    const CAVP_SKEYSEED_REKEY: &str =
        "2d63f6debc92048b4fef3889c4c99ca67d6496e0fac14a2bca9a2d6566ff2398";

    #[test]
    fn cavp_ikev2_kdf_sha256() {
        let (ni, nr, gir) = (h(CAVP_NI), h(CAVP_NR), h(CAVP_GIR));
        let prf = PrfAlg::HmacSha256;
        assert_eq!(
            &*prf.compute(&[&ni[..], &nr[..]].concat(), &gir),
            &h(CAVP_SKEYSEED)[..]
        );
        let seed = [
            &ni[..],
            &nr[..],
            &CAVP_SPII.to_be_bytes(),
            &CAVP_SPIR.to_be_bytes(),
        ]
        .concat();
        let dkm = h(CAVP_DKM);
        assert_eq!(&*prf.prf_plus(&h(CAVP_SKEYSEED), &seed, 132), &dkm[..]);

        // AES-GCM-128: 3 * 32 + 2 * 20 = 136 bytes; the first 132 are the CAVP DKM.
        let k = derive_ike_sa_keys(
            prf,
            EncrAlg::AesGcm16_128,
            None,
            &ni,
            &nr,
            &gir,
            CAVP_SPII,
            CAVP_SPIR,
        );
        assert_eq!(&*k.sk_d, &dkm[..32]);
        assert!(k.sk_ai.is_empty() && k.sk_ar.is_empty());
        assert_eq!(&*k.sk_ei, &dkm[32..52]);
        assert_eq!(&*k.sk_er, &dkm[52..72]);
        assert_eq!(&*k.sk_pi, &dkm[72..104]);
        assert_eq!(k.sk_pr.len(), 32);
        assert_eq!(&k.sk_pr[..28], &dkm[104..132]);

        // Rekey: SKEYSEED = prf(SK_d, g^ir (new) | Ni | Nr).
        let gir_new = h(CAVP_GIR_NEW);
        let r = derive_rekeyed_ike_sa_keys(
            prf,
            &dkm[..32],
            prf,
            EncrAlg::AesGcm16_128,
            None,
            &gir_new,
            &ni,
            &nr,
            1,
            2,
        );
        let seed = [&ni[..], &nr[..], &1u64.to_be_bytes(), &2u64.to_be_bytes()].concat();
        let km = prf.prf_plus(&h(CAVP_SKEYSEED_REKEY), &seed, 136);
        assert_eq!(&*r.sk_d, &km[..32]);
        assert_eq!(&*r.sk_pr, &km[104..]);
    }

    // Known answers computed independently with Python's hmac/hashlib:
    //
    //   import hmac, hashlib
    //   def prf(alg, k, d): return hmac.new(k, d, alg).digest()
    //   def prfplus(alg, k, s, n):
    //       out, t, i = b"", b"", 1
    //       while len(out) < n:
    //           t = prf(alg, k, t + s + bytes([i])); out += t; i += 1
    //       return out[:n]
    //   ni = bytes(range(0x10, 0x30)); nr = bytes(range(0x40, 0x60))
    //   gir = bytes([0xa5]) * 32; gir2 = bytes([0x5a]) * 32
    //   spi_i = (0x0102030405060708).to_bytes(8, "big")
    //   spi_r = (0x1112131415161718).to_bytes(8, "big")
    //   A = hashlib.sha384
    //   skeyseed = prf(A, ni + nr, gir)
    //   km = prfplus(A, skeyseed, ni + nr + spi_i + spi_r, 3 * 48 + 2 * 32 + 2 * 32)
    //   print("ike_km", km.hex())
    //   sk_d = km[:48]
    //   nspi_i = (0x2122232425262728).to_bytes(8, "big")
    //   nspi_r = (0x3132333435363738).to_bytes(8, "big")
    //   n2i = bytes(range(0x60, 0x80)); n2r = bytes(range(0x80, 0xa0))
    //   ss2 = prf(A, sk_d, gir2 + n2i + n2r)
    //   km2 = prfplus(hashlib.sha256, ss2, n2i + n2r + nspi_i + nspi_r, 3 * 32 + 2 * 20)
    //   print("rekey_km", km2.hex())
    //   print("child", prfplus(A, sk_d, ni + nr, 128).hex())
    //   print("child_pfs", prfplus(A, sk_d, gir2 + ni + nr, 128).hex())
    //   msg = b"IKE_SA_INIT message bytes"; psk = b"secret psk"
    //   sk_pi = bytes([0x77]) * 32; idb = bytes([2, 0, 0, 0]) + b"gw-a.example"
    //   maced = prf(hashlib.sha256, sk_pi, idb)
    //   print("auth", prf(hashlib.sha256,
    //         prf(hashlib.sha256, psk, b"Key Pad for IKEv2"), msg + nr + maced).hex())
    const KAT_IKE_KM: &str = "97b689f03115ee0e60692be9ff5eeca6a979a22901bcc1e57774ab0dcd54e670\
        69e0646f7a1c3fea2a875beae7671c809a81b9ce3865ce750e7c4a508bf7d8c1\
        02ed2d62ce83ee31e7ca9dbc636a356cd0c341950b6834d79df7e4e0ac899369\
        db5327c0998ba64ecff86c4f9934c39fd9053066ad7ac4d253e0f8ff72202d34\
        bb654faefac134d9b4d3f84274ec67198b72bee25b77674ae74fb90652292691\
        40d8020995767189d1b3c1aa3e5fdccf135237247cfc8752b8dae19954d87d96\
        d2af8b42cb5d7a632620385cff05e091541fc45e31e6b266699482d68c6c8c99\
        d76e16ae28bb1644597833b81d43d74306731811a28683ab692b7c3644b5a571\
        a90b4f2ddd62c849165763a65227cb5b";
    const KAT_REKEY_KM: &str = "169c921cd9a225092e303296794cc8d01586294181baf389db5478fb73c28516\
        688a68aa20eebb77f69e07822eb63b2e44752d8a0e5ba330231bcac5045163ac\
        391e6aff4e09adc9e44479f4a13cd3d484f3c91a4ac92940f911fa1d40cf346b\
        a963714746fcd2919c8d085de1c806af60930f939fe7cb98c583a637fcaba5bf\
        43e8345b9d1b4dad";
    const KAT_CHILD: &str = "0157ceac8c755e9e09aaae54594ea513343b3da9410a4bad4cbdf99d81073dce\
        53ae148fb55e137e2d87fe7d7395ef579d4281d2461f7d3601a2813ab9aaf4e7\
        be25dd45e44e80907da4210cbd5a50c2fccd7dd701c01fea9457bd55ffa131f2\
        18a233dbc41af51766dbd24d02af4b0f3f0845dc98d904d2b5d70b8bbadcb2bf";
    const KAT_CHILD_PFS: &str = "fb470b73b57cfb8e43219647b4b897a8afcd651acd6fb510b6d485ac5e936650\
        c8fea598e2b476411f2cab27b00102855ceff221bbe57ee2a40eb4a67a187743\
        e22cfd31925e70b7f92b2296af6b014e4b4a340983e784f619e9bdb0fc44ea25\
        a8b8396a3f2be9e5728aafd2a7e22bf4b31c7d2f5f79911b5da0490700ff40e9";
    const KAT_AUTH: &str = "c1ee2c2351bcd20b4f3034b8afd0c6f710261188eb8417afef5f2f4703e4aa8a";

    fn kat_inputs() -> (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>) {
        let ni: Vec<u8> = (0x10..0x30).collect();
        let nr: Vec<u8> = (0x40..0x60).collect();
        (ni, nr, vec![0xa5; 32], vec![0x5a; 32])
    }

    #[test]
    fn kat_ike_sa_keys_cbc() {
        let (ni, nr, gir, _) = kat_inputs();
        let k = derive_ike_sa_keys(
            PrfAlg::HmacSha384,
            EncrAlg::AesCbc256,
            Some(IntegAlg::HmacSha256_128),
            &ni,
            &nr,
            &gir,
            0x0102030405060708,
            0x1112131415161718,
        );
        let km = h(KAT_IKE_KM);
        let parts = [
            &k.sk_d, &k.sk_ai, &k.sk_ar, &k.sk_ei, &k.sk_er, &k.sk_pi, &k.sk_pr,
        ];
        let lens = [48, 32, 32, 32, 32, 48, 48];
        let mut off = 0;
        for (p, l) in parts.iter().zip(lens) {
            assert_eq!(p.len(), l);
            assert_eq!(&p[..], &km[off..off + l]);
            off += l;
        }
        assert_eq!(off, km.len());
    }

    #[test]
    fn kat_rekey_child_auth() {
        let (ni, nr, gir, gir2) = kat_inputs();
        let km = h(KAT_IKE_KM);
        let sk_d = &km[..48];
        let n2i: Vec<u8> = (0x60..0x80).collect();
        let n2r: Vec<u8> = (0x80..0xa0).collect();
        let r = derive_rekeyed_ike_sa_keys(
            PrfAlg::HmacSha384,
            sk_d,
            PrfAlg::HmacSha256,
            EncrAlg::AesGcm16_128,
            None,
            &gir2,
            &n2i,
            &n2r,
            0x2122232425262728,
            0x3132333435363738,
        );
        let rk = h(KAT_REKEY_KM);
        let joined: Vec<u8> = [
            &r.sk_d, &r.sk_ai, &r.sk_ar, &r.sk_ei, &r.sk_er, &r.sk_pi, &r.sk_pr,
        ]
        .iter()
        .flat_map(|v| v.iter().copied())
        .collect();
        assert_eq!(joined, rk);
        assert_eq!((r.sk_ei.len(), r.sk_ai.len(), r.sk_pr.len()), (20, 0, 32));
        let _ = gir;

        let c = child_keymat(PrfAlg::HmacSha384, sk_d, None, &ni, &nr, 128);
        assert_eq!(&*c, &h(KAT_CHILD)[..]);
        let c = child_keymat(PrfAlg::HmacSha384, sk_d, Some(&gir2), &ni, &nr, 128);
        assert_eq!(&*c, &h(KAT_CHILD_PFS)[..]);

        let mut idb = vec![2, 0, 0, 0];
        idb.extend_from_slice(b"gw-a.example");
        let auth = psk_auth(
            PrfAlg::HmacSha256,
            b"secret psk",
            b"IKE_SA_INIT message bytes",
            &nr,
            &[0x77; 32],
            &idb,
        );
        assert_eq!(auth, h(KAT_AUTH));
    }

    #[test]
    fn key_lengths_per_suite() {
        for prf in PrfAlg::ALL {
            for encr in EncrAlg::ALL {
                let integs: Vec<Option<IntegAlg>> = if encr.is_aead() {
                    vec![None]
                } else {
                    IntegAlg::ALL.into_iter().map(Some).collect()
                };
                for integ in integs {
                    let k = derive_ike_sa_keys(prf, encr, integ, b"ni", b"nr", b"gir", 1, 2);
                    let p = prf.output_len();
                    let a = integ.map_or(0, IntegAlg::key_len);
                    assert_eq!(k.sk_d.len(), p);
                    assert_eq!((k.sk_pi.len(), k.sk_pr.len()), (p, p));
                    assert_eq!((k.sk_ai.len(), k.sk_ar.len()), (a, a));
                    assert_eq!(
                        (k.sk_ei.len(), k.sk_er.len()),
                        (encr.key_len(), encr.key_len())
                    );
                    assert_ne!(k.sk_ei, k.sk_er);
                }
            }
        }
    }
}
