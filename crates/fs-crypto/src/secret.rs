//! [`Secret`]: the one type for secret bytes -- pre-shared keys (and EAP passwords to come),
//! the IKE SA keys (SK_d, SK_ai/ar, SK_ei/er, SK_pi/pr) and the ESP keys.
//!
//! - The bytes live in one heap buffer that is overwritten with zeros when the `Secret` is
//!   dropped (`zeroize`).
//! - `Debug` prints `Secret(<redacted, N bytes>)`: a struct holding a secret may derive `Debug`
//!   and still never log it. There is no `Display`, no `Serialize`.
//! - There is no `Clone`: a copy of the bytes is made only by the explicit
//!   [`Secret::duplicate`], so every copy can be found with `grep duplicate`.
//! - Comparisons (`==`, used by tests and to compare configurations) run in constant time
//!   for equal lengths.
use std::fmt;
use zeroize::Zeroize;

/// Secret bytes: wiped on drop, redacted in `Debug`, copied only by [`Secret::duplicate`].
pub struct Secret(Box<[u8]>);

impl Secret {
    /// Takes ownership of `bytes` (no copy is left behind: the vector's buffer becomes the
    /// secret's buffer, trimmed to its length -- a shrink may reallocate, so the old buffer is
    /// wiped first when capacity and length differ).
    pub fn new(mut bytes: Vec<u8>) -> Secret {
        if bytes.capacity() != bytes.len() {
            let s = Secret(bytes.as_slice().into());
            bytes.zeroize();
            return s;
        }
        Secret(bytes.into_boxed_slice())
    }

    /// A secret copied from `bytes` (the caller wipes its own copy if it owns one).
    pub fn from_slice(bytes: &[u8]) -> Secret {
        Secret(bytes.into())
    }

    /// An explicit copy of the secret (a second buffer, also wiped on drop). Grep for
    /// `duplicate` to find every copy of secret material.
    pub fn duplicate(&self) -> Secret {
        Secret::from_slice(&self.0)
    }

    /// The secret bytes (for keying a cipher or a PRF).
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<redacted, {} bytes>)", self.0.len())
    }
}

impl std::ops::Deref for Secret {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for Secret {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for Secret {
    fn from(v: Vec<u8>) -> Secret {
        Secret::new(v)
    }
}

impl From<&[u8]> for Secret {
    fn from(v: &[u8]) -> Secret {
        Secret::from_slice(v)
    }
}

impl<const N: usize> From<&[u8; N]> for Secret {
    fn from(v: &[u8; N]) -> Secret {
        Secret::from_slice(v)
    }
}

impl From<zeroize::Zeroizing<Vec<u8>>> for Secret {
    fn from(v: zeroize::Zeroizing<Vec<u8>>) -> Secret {
        Secret::from_slice(&v)
    }
}

/// Constant-time for equal lengths (the length itself is not secret).
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        ct_eq(&self.0, &other.0)
    }
}

impl Eq for Secret {}

impl PartialEq<[u8]> for Secret {
    fn eq(&self, other: &[u8]) -> bool {
        ct_eq(&self.0, other)
    }
}

impl PartialEq<&[u8]> for Secret {
    fn eq(&self, other: &&[u8]) -> bool {
        ct_eq(&self.0, other)
    }
}

impl PartialEq<Vec<u8>> for Secret {
    fn eq(&self, other: &Vec<u8>) -> bool {
        ct_eq(&self.0, other)
    }
}

impl<const N: usize> PartialEq<[u8; N]> for Secret {
    fn eq(&self, other: &[u8; N]) -> bool {
        ct_eq(&self.0, other)
    }
}

impl<const N: usize> PartialEq<&[u8; N]> for Secret {
    fn eq(&self, other: &&[u8; N]) -> bool {
        ct_eq(&self.0, *other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let s = Secret::from(b"hunter2-hunter2".to_vec());
        let d = format!("{s:?}");
        assert_eq!(d, "Secret(<redacted, 15 bytes>)");
        assert!(!d.contains("hunter2"), "{d}");
        // nor as bytes (the derived Debug of a Vec<u8> would print 104, 117, ...)
        assert!(!d.contains("104"), "{d}");
        let pretty = format!("{s:#?}");
        assert!(!pretty.contains("hunter"), "{pretty}");
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Holder {
            psk: Secret,
        }
        let h = format!("{:?}", Holder { psk: s });
        assert!(!h.contains("hunter2") && !h.contains("104"), "{h}");
    }

    #[test]
    fn duplicate_and_compare() {
        let s = Secret::new(vec![1, 2, 3]);
        let d = s.duplicate();
        assert_eq!(s, d);
        assert_eq!(s, vec![1, 2, 3]);
        assert_eq!(s, [1u8, 2, 3]);
        assert_eq!(s, &[1u8, 2, 3]);
        assert_ne!(s, Secret::from(&[1u8, 2]));
        assert_ne!(s, vec![1, 2, 4]);
        assert_eq!(&*s, &[1, 2, 3]);
        assert_eq!(s.len(), 3);
        assert!(!s.is_empty());
        assert_eq!(s.expose(), &[1, 2, 3]);
        // a vector with spare capacity: its old buffer is wiped, the secret keeps the bytes
        let mut v = Vec::with_capacity(64);
        v.extend_from_slice(b"abc");
        assert_eq!(Secret::new(v), b"abc");
    }
}
