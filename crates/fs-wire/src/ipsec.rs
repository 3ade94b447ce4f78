//! Small IPsec values that are easy to mix up when they are bare integers: the IKE SPI
//! ([`IkeSpi`], 64 bits, RFC 7296 3.1), the ESP SPI ([`EspSpi`], 32 bits, RFC 4303 2.1), and the
//! IPsec [`Mode`] shared by the IKE core, the ESP layer and the daemon.
//!
//! Their `Display` and serde formats are those of `ferroswan status`: an IKE SPI is 16 hex
//! digits, an ESP SPI 8 hex digits, a mode `"tunnel"` / `"transport"`.
use core::fmt;
use serde::{de::Error as _, Deserialize, Deserializer, Serialize, Serializer};

/// Tunnel (whole inner IP packet) or transport (upper-layer payload) mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Tunnel,
    Transport,
}

/// An IKE SA SPI (initiator's or responder's half of the IKE SA's identity).
//= https://www.rfc-editor.org/rfc/rfc7296#section-3.1
//# IKE SA Initiator's SPI (8 octets) - A value chosen by the
//# initiator to identify a unique IKE Security Association.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IkeSpi(pub u64);

/// An ESP SPI: the value in the ESP header that selects the inbound SA.
//= https://www.rfc-editor.org/rfc/rfc4303#section-2.1
//# The SPI is an arbitrary 32-bit value that is used by a receiver to
//# identify the SA to which an incoming packet is bound.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EspSpi(pub u32);

impl IkeSpi {
    /// The SPI as it is on the wire.
    pub const fn get(self) -> u64 {
        self.0
    }
    /// The 8 octets of the IKE header's SPI field.
    pub const fn to_be_bytes(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }
    /// `"0123456789abcdef"` (or with a `0x` prefix) as an SPI.
    pub fn from_hex(s: &str) -> Option<Self> {
        let s = s.strip_prefix("0x").unwrap_or(s);
        u64::from_str_radix(s, 16).ok().map(Self)
    }
}

impl EspSpi {
    /// The SPI as it is on the wire.
    pub const fn get(self) -> u32 {
        self.0
    }
    /// The 4 octets of the ESP header's SPI field.
    pub const fn to_be_bytes(self) -> [u8; 4] {
        self.0.to_be_bytes()
    }
    /// The SPI in the 4 octets of an ESP header's SPI field.
    pub const fn from_be_bytes(b: [u8; 4]) -> Self {
        Self(u32::from_be_bytes(b))
    }
    /// `"c0000001"` (or `"0xc0000001"`) as an SPI.
    pub fn from_hex(s: &str) -> Option<Self> {
        let s = s.strip_prefix("0x").unwrap_or(s);
        u32::from_str_radix(s, 16).ok().map(Self)
    }
}

impl From<u64> for IkeSpi {
    fn from(v: u64) -> Self {
        Self(v)
    }
}
impl From<IkeSpi> for u64 {
    fn from(v: IkeSpi) -> Self {
        v.0
    }
}
impl From<u32> for EspSpi {
    fn from(v: u32) -> Self {
        Self(v)
    }
}
impl From<EspSpi> for u32 {
    fn from(v: EspSpi) -> Self {
        v.0
    }
}

/// 16 lowercase hex digits, as `ferroswan status` prints it.
impl fmt::Display for IkeSpi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}
/// 8 lowercase hex digits, as `ferroswan status` and the logs print it.
impl fmt::Display for EspSpi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}
impl fmt::LowerHex for IkeSpi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.0, f)
    }
}
impl fmt::LowerHex for EspSpi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.0, f)
    }
}

impl Serialize for IkeSpi {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
impl<'de> Deserialize<'de> for IkeSpi {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::from_hex(&s).ok_or_else(|| D::Error::custom(format!("bad IKE SPI {s:?}")))
    }
}
impl Serialize for EspSpi {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
impl<'de> Deserialize<'de> for EspSpi {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::from_hex(&s).ok_or_else(|| D::Error::custom(format!("bad ESP SPI {s:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_status_format() {
        assert_eq!(IkeSpi(0x1234).to_string(), "0000000000001234");
        assert_eq!(EspSpi(0xc000_0001).to_string(), "c0000001");
        assert_eq!(EspSpi(0x10).to_string(), "00000010");
        assert_eq!(format!("{:x}", EspSpi(0x10)), "10");
    }

    #[test]
    fn parse_hex() {
        assert_eq!(EspSpi::from_hex("0xc0000001"), Some(EspSpi(0xc000_0001)));
        assert_eq!(EspSpi::from_hex("c0000001"), Some(EspSpi(0xc000_0001)));
        assert_eq!(EspSpi::from_hex("1c0000001"), None);
        assert_eq!(EspSpi::from_hex("zz"), None);
        assert_eq!(IkeSpi::from_hex("00000000000000ff"), Some(IkeSpi(0xff)));
    }

    #[test]
    fn serde_formats() {
        let j = serde_json::to_string(&(IkeSpi(0xab), EspSpi(0xc1), Mode::Transport));
        assert_eq!(
            j.ok().as_deref(),
            Some(r#"["00000000000000ab","000000c1","transport"]"#)
        );
        let back: Result<(IkeSpi, EspSpi, Mode), _> =
            serde_json::from_str(r#"["00000000000000ab","000000c1","tunnel"]"#);
        assert_eq!(back.ok(), Some((IkeSpi(0xab), EspSpi(0xc1), Mode::Tunnel)));
    }
}
