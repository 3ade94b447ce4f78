//! PRFs, prf+ (RFC 7296 2.13) and truncated-HMAC integrity.
use crate::alg::{IntegAlg, PrfAlg};
use zeroize::Zeroizing;

impl PrfAlg {
    /// prf(key, data).
    pub fn compute(self, key: &[u8], data: &[u8]) -> Zeroizing<Vec<u8>> {
        let _ = (key, data);
        todo!("fs-crypto: PrfAlg::compute")
    }
    /// prf+(key, seed) truncated to `len` bytes: T1 | T2 | ..., Tn = prf(K, Tn-1 | S | n).
    pub fn prf_plus(self, key: &[u8], seed: &[u8], len: usize) -> Zeroizing<Vec<u8>> {
        let _ = (key, seed, len);
        todo!("fs-crypto: PrfAlg::prf_plus")
    }
}

impl IntegAlg {
    /// The truncated HMAC (ICV) of `data`.
    pub fn compute(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        let _ = (key, data);
        todo!("fs-crypto: IntegAlg::compute")
    }
}
