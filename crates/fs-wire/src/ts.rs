//! Traffic selectors: the "interesting traffic" of a CHILD_SA (RFC 7296 3.13.1).
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// IANA TS Type for IPv4 address ranges.
pub const TS_IPV4_ADDR_RANGE: u8 = 7;
/// IANA TS Type for IPv6 address ranges.
pub const TS_IPV6_ADDR_RANGE: u8 = 8;

/// One traffic selector: an inclusive address range, an IP protocol (0 = any) and an inclusive
/// port range (0..=65535 = any). Both addresses are of the same family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TrafficSelector {
    pub start: IpAddr,
    pub end: IpAddr,
    pub protocol: u8,
    pub start_port: u16,
    pub end_port: u16,
}

/// Error parsing a traffic selector from text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid traffic selector {0:?}: expected CIDR (10.0.0.0/24), address, or range (a-b)")]
pub struct TsParseError(pub String);

fn ip_to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

impl TrafficSelector {
    /// A selector covering a CIDR prefix, any protocol and port.
    pub fn from_net(net: ipnet::IpNet) -> Self {
        TrafficSelector {
            start: net.network(),
            end: net.broadcast(),
            protocol: 0,
            start_port: 0,
            end_port: u16::MAX,
        }
    }

    /// The whole IPv4 or IPv6 space.
    pub fn any(v6: bool) -> Self {
        let (start, end) = if v6 {
            (
                IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                IpAddr::V6(Ipv6Addr::from(u128::MAX)),
            )
        } else {
            (
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpAddr::V4(Ipv4Addr::BROADCAST),
            )
        };
        TrafficSelector {
            start,
            end,
            protocol: 0,
            start_port: 0,
            end_port: u16::MAX,
        }
    }

    /// True for an IPv6 selector.
    pub fn is_v6(&self) -> bool {
        self.start.is_ipv6()
    }

    /// The TS Type code point (7 or 8).
    pub fn ts_type(&self) -> u8 {
        if self.is_v6() {
            TS_IPV6_ADDR_RANGE
        } else {
            TS_IPV4_ADDR_RANGE
        }
    }

    /// True if the selector is well formed (same family, start <= end, ports ordered).
    pub fn is_valid(&self) -> bool {
        self.start.is_ipv6() == self.end.is_ipv6()
            && ip_to_u128(self.start) <= ip_to_u128(self.end)
            && self.start_port <= self.end_port
    }

    /// Does a packet with these fields fall inside the selector? Ports are only checked for
    /// selectors that restrict them; `port` is `None` for protocols without ports.
    pub fn matches(&self, addr: IpAddr, protocol: u8, port: Option<u16>) -> bool {
        if addr.is_ipv6() != self.is_v6() {
            return false;
        }
        let a = ip_to_u128(addr);
        if a < ip_to_u128(self.start) || a > ip_to_u128(self.end) {
            return false;
        }
        if self.protocol != 0 && self.protocol != protocol {
            return false;
        }
        if self.start_port == 0 && self.end_port == u16::MAX {
            return true;
        }
        match port {
            Some(p) => p >= self.start_port && p <= self.end_port,
            None => false,
        }
    }

    /// The intersection of two selectors (used for narrowing, RFC 7296 2.9), if not empty.
    pub fn intersect(&self, other: &Self) -> Option<Self> {
        if self.is_v6() != other.is_v6() {
            return None;
        }
        let protocol = match (self.protocol, other.protocol) {
            (0, p) | (p, 0) => p,
            (a, b) if a == b => a,
            _ => return None,
        };
        let s = ip_to_u128(self.start).max(ip_to_u128(other.start));
        let e = ip_to_u128(self.end).min(ip_to_u128(other.end));
        if s > e {
            return None;
        }
        let sp = self.start_port.max(other.start_port);
        let ep = self.end_port.min(other.end_port);
        if sp > ep {
            return None;
        }
        let mk = |v: u128| -> IpAddr {
            if self.is_v6() {
                IpAddr::V6(Ipv6Addr::from(v))
            } else {
                IpAddr::V4(Ipv4Addr::from(v as u32))
            }
        };
        Some(TrafficSelector {
            start: mk(s),
            end: mk(e),
            protocol,
            start_port: sp,
            end_port: ep,
        })
    }

    /// True if `self` fully contains `other`.
    pub fn contains(&self, other: &Self) -> bool {
        self.intersect(other).as_ref() == Some(other)
    }

    /// The selector as a CIDR prefix, if its address range is exactly one.
    pub fn to_net(&self) -> Option<ipnet::IpNet> {
        let (s, e) = (ip_to_u128(self.start), ip_to_u128(self.end));
        let bits: u32 = if self.is_v6() { 128 } else { 32 };
        let size = e.wrapping_sub(s).wrapping_add(1);
        let host_bits = if size == 0 {
            128
        } else {
            size.trailing_zeros()
        };
        if size != 0 && !size.is_power_of_two() {
            return None;
        }
        if host_bits > bits || (host_bits < 128 && s & ((1u128 << host_bits) - 1) != 0) {
            return None;
        }
        let prefix = (bits - host_bits.min(bits)) as u8;
        ipnet::IpNet::new(self.start, prefix).ok()
    }
}

impl fmt::Display for TrafficSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_net() {
            Some(n) => write!(f, "{n}")?,
            None => write!(f, "{}-{}", self.start, self.end)?,
        }
        if self.protocol != 0 || self.start_port != 0 || self.end_port != u16::MAX {
            write!(f, "[{}", self.protocol)?;
            if self.start_port != 0 || self.end_port != u16::MAX {
                if self.start_port == self.end_port {
                    write!(f, "/{}", self.start_port)?;
                } else {
                    write!(f, "/{}-{}", self.start_port, self.end_port)?;
                }
            }
            write!(f, "]")?;
        }
        Ok(())
    }
}

impl FromStr for TrafficSelector {
    type Err = TsParseError;
    /// Accepts `10.1.0.0/16`, `10.1.2.3`, `10.0.0.1-10.0.0.9`, `dynamic` is not accepted here.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || TsParseError(s.to_string());
        let t = s.trim();
        if let Ok(n) = t.parse::<ipnet::IpNet>() {
            return Ok(Self::from_net(n.trunc()));
        }
        if let Ok(a) = t.parse::<IpAddr>() {
            return Ok(Self::from_net(ipnet::IpNet::from(a)));
        }
        if let Some((a, b)) = t.split_once('-') {
            let a: IpAddr = a.trim().parse().map_err(|_| err())?;
            let b: IpAddr = b.trim().parse().map_err(|_| err())?;
            let ts = TrafficSelector {
                start: a,
                end: b,
                protocol: 0,
                start_port: 0,
                end_port: u16::MAX,
            };
            return if ts.is_valid() { Ok(ts) } else { Err(err()) };
        }
        Err(err())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_display_roundtrip() {
        for s in ["192.168.1.0/24", "10.0.0.1/32", "::/0", "10.0.0.1-10.0.0.9"] {
            let ts: TrafficSelector = s.parse().unwrap();
            assert_eq!(ts.to_string(), s);
        }
        assert!("300.0.0.0/8".parse::<TrafficSelector>().is_err());
        assert!("10.0.0.9-10.0.0.1".parse::<TrafficSelector>().is_err());
    }

    #[test]
    fn match_and_narrow() {
        let a: TrafficSelector = "192.168.0.0/16".parse().unwrap();
        let b: TrafficSelector = "192.168.2.0/24".parse().unwrap();
        assert!(a.contains(&b));
        assert!(!b.contains(&a));
        assert_eq!(a.intersect(&b), Some(b));
        assert!(b.matches("192.168.2.77".parse().unwrap(), 6, Some(80)));
        assert!(!b.matches("192.168.3.1".parse().unwrap(), 6, Some(80)));
        let v6 = TrafficSelector::any(true);
        assert_eq!(a.intersect(&v6), None);
        let mut tcp80 = b;
        tcp80.protocol = 6;
        tcp80.start_port = 80;
        tcp80.end_port = 80;
        assert!(tcp80.matches("192.168.2.1".parse().unwrap(), 6, Some(80)));
        assert!(!tcp80.matches("192.168.2.1".parse().unwrap(), 17, Some(80)));
        assert!(!tcp80.matches("192.168.2.1".parse().unwrap(), 6, Some(81)));
        assert_eq!(tcp80.to_string(), "192.168.2.0/24[6/80]");
    }

    #[test]
    fn any_is_the_whole_prefix() {
        assert_eq!(
            TrafficSelector::any(false),
            TrafficSelector::from_net("0.0.0.0/0".parse().unwrap())
        );
        assert_eq!(
            TrafficSelector::any(true),
            TrafficSelector::from_net("::/0".parse().unwrap())
        );
    }
}
