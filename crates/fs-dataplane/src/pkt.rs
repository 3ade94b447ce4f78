//! Minimal inner-packet parsing (addresses, protocol, ports) for policy lookup and selector
//! checks. Stand-in until `fs_esp::ip::PacketInfo::parse` lands; same information.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The fields of an IP packet that traffic selectors look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketInfo {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IP protocol (IPv4) or first Next Header (IPv6).
    pub protocol: u8,
    /// Ports for TCP/UDP/SCTP (first fragment only).
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
    /// ESP Next Header value for tunnel mode: 4 (IPv4) or 41 (IPv6).
    pub next_header: u8,
}

fn has_ports(proto: u8) -> bool {
    matches!(proto, 6 | 17 | 132 | 136)
}

/// Parse an IPv4 or IPv6 packet; `None` if it is truncated or not IP.
pub fn parse(p: &[u8]) -> Option<PacketInfo> {
    match p.first()? >> 4 {
        4 => {
            if p.len() < 20 {
                return None;
            }
            let ihl = usize::from(p[0] & 0x0f) * 4;
            if ihl < 20 || p.len() < ihl {
                return None;
            }
            let protocol = p[9];
            let frag_off = u16::from_be_bytes([p[6], p[7]]) & 0x1fff;
            let (sp, dp) = ports(protocol, frag_off == 0, p.get(ihl..));
            Some(PacketInfo {
                src: IpAddr::V4(Ipv4Addr::new(p[12], p[13], p[14], p[15])),
                dst: IpAddr::V4(Ipv4Addr::new(p[16], p[17], p[18], p[19])),
                protocol,
                src_port: sp,
                dst_port: dp,
                next_header: 4,
            })
        }
        6 => {
            if p.len() < 40 {
                return None;
            }
            let protocol = p[6];
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            s.copy_from_slice(&p[8..24]);
            d.copy_from_slice(&p[24..40]);
            let (sp, dp) = ports(protocol, true, p.get(40..));
            Some(PacketInfo {
                src: IpAddr::V6(Ipv6Addr::from(s)),
                dst: IpAddr::V6(Ipv6Addr::from(d)),
                protocol,
                src_port: sp,
                dst_port: dp,
                next_header: 41,
            })
        }
        _ => None,
    }
}

fn ports(proto: u8, first_frag: bool, l4: Option<&[u8]>) -> (Option<u16>, Option<u16>) {
    match l4 {
        Some(l4) if first_frag && has_ports(proto) && l4.len() >= 4 => (
            Some(u16::from_be_bytes([l4[0], l4[1]])),
            Some(u16::from_be_bytes([l4[2], l4[3]])),
        ),
        _ => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_udp() {
        let mut p = [0u8; 28];
        p[0] = 0x45;
        p[9] = 17;
        p[12..16].copy_from_slice(&[10, 0, 0, 1]);
        p[16..20].copy_from_slice(&[10, 0, 0, 2]);
        p[20..24].copy_from_slice(&[0x13, 0x88, 0x00, 0x35]);
        let i = parse(&p).unwrap();
        assert_eq!(i.src, "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(i.dst_port, Some(53));
        assert_eq!(i.src_port, Some(5000));
        assert_eq!(i.next_header, 4);
    }

    #[test]
    fn garbage() {
        assert!(parse(&[]).is_none());
        assert!(parse(&[0x45, 0, 0]).is_none());
        assert!(parse(&[0x4f; 20]).is_none());
        assert!(parse(&[0x60; 39]).is_none());
        assert!(parse(&[0x10; 60]).is_none());
    }
}
