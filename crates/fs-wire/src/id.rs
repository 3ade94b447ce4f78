//! IKE identities (RFC 7296 3.5) and the text form used in configuration.
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// ID Type code points.
pub mod id_type {
    pub const IPV4_ADDR: u8 = 1;
    pub const FQDN: u8 = 2;
    pub const RFC822_ADDR: u8 = 3;
    pub const IPV6_ADDR: u8 = 5;
    pub const DER_ASN1_DN: u8 = 9;
    pub const KEY_ID: u8 = 11;
}

/// An IKE identity.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Identity {
    Ipv4(Ipv4Addr),
    Ipv6(Ipv6Addr),
    Fqdn(String),
    Email(String),
    KeyId(Vec<u8>),
    /// Any other type, kept as (type, body) so it round-trips.
    Other(u8, Vec<u8>),
}

impl Identity {
    /// Parse the configuration text form, like strongSwan: an IP literal is an address ID,
    /// `user@host` is an RFC 822 ID, `@name` or any other text is an FQDN.
    pub fn from_config(s: &str) -> Identity {
        let s = s.trim();
        if let Ok(a) = s.parse::<Ipv4Addr>() {
            return Identity::Ipv4(a);
        }
        if let Ok(a) = s.parse::<Ipv6Addr>() {
            return Identity::Ipv6(a);
        }
        if let Some(rest) = s.strip_prefix('@') {
            return Identity::Fqdn(rest.to_string());
        }
        if s.contains('@') {
            return Identity::Email(s.to_string());
        }
        Identity::Fqdn(s.to_string())
    }

    /// The ID Type code point.
    pub fn id_type(&self) -> u8 {
        match self {
            Identity::Ipv4(_) => id_type::IPV4_ADDR,
            Identity::Ipv6(_) => id_type::IPV6_ADDR,
            Identity::Fqdn(_) => id_type::FQDN,
            Identity::Email(_) => id_type::RFC822_ADDR,
            Identity::KeyId(_) => id_type::KEY_ID,
            Identity::Other(t, _) => *t,
        }
    }

    /// The identification data (the payload body after the 4-byte type/reserved header).
    pub fn data(&self) -> Vec<u8> {
        match self {
            Identity::Ipv4(a) => a.octets().to_vec(),
            Identity::Ipv6(a) => a.octets().to_vec(),
            Identity::Fqdn(s) | Identity::Email(s) => s.as_bytes().to_vec(),
            Identity::KeyId(b) | Identity::Other(_, b) => b.clone(),
        }
    }

    /// Build from the wire (type, data). Never fails: unknown or malformed becomes `Other`.
    pub fn from_wire(t: u8, data: &[u8]) -> Identity {
        match t {
            id_type::IPV4_ADDR if data.len() == 4 => match <[u8; 4]>::try_from(data) {
                Ok(o) => Identity::Ipv4(Ipv4Addr::from(o)),
                Err(_) => Identity::Other(t, data.to_vec()),
            },
            id_type::IPV6_ADDR if data.len() == 16 => match <[u8; 16]>::try_from(data) {
                Ok(o) => Identity::Ipv6(Ipv6Addr::from(o)),
                Err(_) => Identity::Other(t, data.to_vec()),
            },
            id_type::FQDN => match std::str::from_utf8(data) {
                Ok(s) => Identity::Fqdn(s.to_string()),
                Err(_) => Identity::Other(t, data.to_vec()),
            },
            id_type::RFC822_ADDR => match std::str::from_utf8(data) {
                Ok(s) => Identity::Email(s.to_string()),
                Err(_) => Identity::Other(t, data.to_vec()),
            },
            id_type::KEY_ID => Identity::KeyId(data.to_vec()),
            _ => Identity::Other(t, data.to_vec()),
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Ipv4(a) => write!(f, "{a}"),
            Identity::Ipv6(a) => write!(f, "{a}"),
            Identity::Fqdn(s) | Identity::Email(s) => write!(f, "{s}"),
            Identity::KeyId(b) => {
                write!(f, "keyid:")?;
                b.iter().try_for_each(|x| write!(f, "{x:02x}"))
            }
            Identity::Other(t, b) => {
                write!(f, "id{t}:")?;
                b.iter().try_for_each(|x| write!(f, "{x:02x}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn address_identities_from_wire() {
        assert_eq!(
            Identity::from_wire(id_type::IPV4_ADDR, &[192, 0, 2, 7]),
            Identity::Ipv4(Ipv4Addr::new(192, 0, 2, 7))
        );
        let v6: Ipv6Addr = "2001:db8::9".parse().unwrap();
        assert_eq!(
            Identity::from_wire(id_type::IPV6_ADDR, &v6.octets()),
            Identity::Ipv6(v6)
        );
        assert_eq!(
            Identity::from_wire(id_type::IPV4_ADDR, &[1, 2, 3]),
            Identity::Other(id_type::IPV4_ADDR, vec![1, 2, 3])
        );
    }

    #[test]
    fn config_forms() {
        assert_eq!(
            Identity::from_config("gw-a.example"),
            Identity::Fqdn("gw-a.example".into())
        );
        assert_eq!(Identity::from_config("@gw"), Identity::Fqdn("gw".into()));
        assert_eq!(
            Identity::from_config("a@b.c"),
            Identity::Email("a@b.c".into())
        );
        assert_eq!(
            Identity::from_config("100.1.1.1").id_type(),
            id_type::IPV4_ADDR
        );
        for id in [
            Identity::from_config("::1"),
            Identity::from_config("x.y"),
            Identity::from_config("a@b"),
        ] {
            assert_eq!(Identity::from_wire(id.id_type(), &id.data()), id);
        }
    }
}
