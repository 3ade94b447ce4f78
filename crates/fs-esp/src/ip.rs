//! Minimal zero-copy IPv4/IPv6 header views for selector checks and routing, the internet
//! checksum, and ICMP "fragmentation needed" / ICMPv6 "packet too big" builders for PMTU.
use crate::sa::EspError;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IP protocol numbers used here.
pub mod proto {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMPV6: u8 = 58;
    pub const SCTP: u8 = 132;
    /// IPv6 extension headers skipped when looking for the upper-layer protocol.
    pub const HOP_BY_HOP: u8 = 0;
    pub const ROUTING: u8 = 43;
    pub const FRAGMENT: u8 = 44;
    pub const DEST_OPTS: u8 = 60;
}

/// IPv4 header length without options.
pub const IPV4_HEADER_LEN: usize = 20;
/// IPv6 fixed header length.
pub const IPV6_HEADER_LEN: usize = 40;
/// IPv6 minimum link MTU (RFC 8200 5): ICMPv6 errors never exceed it.
pub const IPV6_MIN_MTU: usize = 1280;
/// Largest IPv4 ICMP error we emit (RFC 1812 4.3.2.3).
pub const IPV4_ICMP_ERROR_MAX: usize = 576;

// Callers are the checked views below: `at + 1` lies within the header their `new_checked`
// (or `upper_layer`'s `off + 8 <= end` test) verified.
#[allow(clippy::indexing_slicing)]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// A checked view of an IPv4 header (and its payload) in a buffer.
#[derive(Clone, Copy, Debug)]
pub struct Ipv4Packet<'a> {
    buf: &'a [u8],
}

// Every accessor reads within the header and `total_len` bounds checked by `new_checked`.
#[allow(clippy::indexing_slicing)]
impl<'a> Ipv4Packet<'a> {
    /// Validate version, IHL and total length against the buffer (trailing bytes allowed).
    pub fn new_checked(buf: &'a [u8]) -> Result<Self, EspError> {
        if buf.len() < IPV4_HEADER_LEN || buf[0] >> 4 != 4 {
            return Err(EspError::Malformed);
        }
        let p = Ipv4Packet { buf };
        let hl = p.header_len();
        let tl = usize::from(p.total_len());
        if hl < IPV4_HEADER_LEN || hl > buf.len() || tl < hl || tl > buf.len() {
            return Err(EspError::Malformed);
        }
        Ok(p)
    }
    /// The underlying buffer (may extend past `total_len`).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }
    /// Header length in bytes (IHL * 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buf[0] & 0x0f) * 4
    }
    /// DSCP/ECN byte.
    pub fn tos(&self) -> u8 {
        self.buf[1]
    }
    /// Total length field.
    pub fn total_len(&self) -> u16 {
        be16(self.buf, 2)
    }
    /// Identification field.
    pub fn ident(&self) -> u16 {
        be16(self.buf, 4)
    }
    /// DF flag.
    pub fn dont_fragment(&self) -> bool {
        self.buf[6] & 0x40 != 0
    }
    /// MF flag.
    pub fn more_fragments(&self) -> bool {
        self.buf[6] & 0x20 != 0
    }
    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> u16 {
        (be16(self.buf, 6) & 0x1fff) * 8
    }
    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.buf[8]
    }
    /// Upper-layer protocol.
    pub fn protocol(&self) -> u8 {
        self.buf[9]
    }
    /// Header checksum field.
    pub fn checksum(&self) -> u16 {
        be16(self.buf, 10)
    }
    /// True if the header checksum is correct.
    pub fn verify_checksum(&self) -> bool {
        checksum(&self.buf[..self.header_len()]) == 0
    }
    /// Source address.
    pub fn src(&self) -> Ipv4Addr {
        Ipv4Addr::new(self.buf[12], self.buf[13], self.buf[14], self.buf[15])
    }
    /// Destination address.
    pub fn dst(&self) -> Ipv4Addr {
        Ipv4Addr::new(self.buf[16], self.buf[17], self.buf[18], self.buf[19])
    }
    /// Payload (header_len .. total_len).
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[self.header_len()..usize::from(self.total_len())]
    }
}

/// A checked view of an IPv6 fixed header (and its payload) in a buffer.
#[derive(Clone, Copy, Debug)]
pub struct Ipv6Packet<'a> {
    buf: &'a [u8],
}

/// Where the upper-layer header of an IPv6 packet starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpperLayer {
    /// Upper-layer protocol (after all skipped extension headers).
    pub protocol: u8,
    /// Offset of the upper-layer header from the start of the packet.
    pub offset: usize,
    /// False for non-first fragments (no upper-layer header present).
    pub first_fragment: bool,
}

// Every accessor reads within the fixed header and payload length checked by `new_checked`;
// `upper_layer` tests each extension header against `total_len` before reading it.
#[allow(clippy::indexing_slicing)]
impl<'a> Ipv6Packet<'a> {
    /// Validate version and payload length against the buffer (trailing bytes allowed).
    pub fn new_checked(buf: &'a [u8]) -> Result<Self, EspError> {
        if buf.len() < IPV6_HEADER_LEN || buf[0] >> 4 != 6 {
            return Err(EspError::Malformed);
        }
        let p = Ipv6Packet { buf };
        if IPV6_HEADER_LEN + usize::from(p.payload_len()) > buf.len() {
            return Err(EspError::Malformed);
        }
        Ok(p)
    }
    /// The underlying buffer (may extend past the packet).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }
    /// Payload length field.
    pub fn payload_len(&self) -> u16 {
        be16(self.buf, 4)
    }
    /// Total packet length (40 + payload length).
    pub fn total_len(&self) -> usize {
        IPV6_HEADER_LEN + usize::from(self.payload_len())
    }
    /// Next Header of the fixed header (may be an extension header).
    pub fn next_header(&self) -> u8 {
        self.buf[6]
    }
    /// Hop limit.
    pub fn hop_limit(&self) -> u8 {
        self.buf[7]
    }
    /// Source address.
    pub fn src(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buf[8..24]);
        Ipv6Addr::from(a)
    }
    /// Destination address.
    pub fn dst(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buf[24..40]);
        Ipv6Addr::from(a)
    }
    /// Payload after the fixed header.
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[IPV6_HEADER_LEN..self.total_len()]
    }
    /// Skip hop-by-hop, routing, destination-options and fragment headers to find the
    /// upper-layer protocol. `Malformed` if an extension header is truncated.
    pub fn upper_layer(&self) -> Result<UpperLayer, EspError> {
        let end = self.total_len();
        let mut nh = self.next_header();
        let mut off = IPV6_HEADER_LEN;
        let mut first_fragment = true;
        // Bounded: each header is at least 8 bytes.
        loop {
            match nh {
                proto::HOP_BY_HOP | proto::ROUTING | proto::DEST_OPTS => {
                    if off + 8 > end {
                        return Err(EspError::Malformed);
                    }
                    let len = (usize::from(self.buf[off + 1]) + 1) * 8;
                    if off + len > end {
                        return Err(EspError::Malformed);
                    }
                    nh = self.buf[off];
                    off += len;
                }
                proto::FRAGMENT => {
                    if off + 8 > end {
                        return Err(EspError::Malformed);
                    }
                    if be16(self.buf, off + 2) & 0xfff8 != 0 {
                        first_fragment = false;
                    }
                    nh = self.buf[off];
                    off += 8;
                }
                _ => {
                    return Ok(UpperLayer {
                        protocol: nh,
                        offset: off,
                        first_fragment,
                    })
                }
            }
        }
    }
}

/// Summary of an inner packet for traffic-selector checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketInfo {
    /// 4 or 6.
    pub version: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// Upper-layer protocol (IPv6: after extension headers).
    pub protocol: u8,
    /// TCP/UDP/SCTP source port, first fragments only.
    pub src_port: Option<u16>,
    /// TCP/UDP/SCTP destination port, first fragments only.
    pub dst_port: Option<u16>,
    /// Packet length from the IP header (total length).
    pub len: usize,
}

fn has_ports(protocol: u8) -> bool {
    matches!(protocol, proto::TCP | proto::UDP | proto::SCTP)
}

fn ports(buf: &[u8], off: usize, end: usize) -> (Option<u16>, Option<u16>) {
    if off + 4 <= end {
        (Some(be16(buf, off)), Some(be16(buf, off + 2)))
    } else {
        (None, None)
    }
}

impl PacketInfo {
    /// Parse an IPv4 or IPv6 packet. Ports are `None` for other protocols, non-first
    /// fragments and first fragments too short to carry them.
    pub fn parse(buf: &[u8]) -> Result<PacketInfo, EspError> {
        match buf.first().map(|b| b >> 4) {
            Some(4) => {
                let p = Ipv4Packet::new_checked(buf)?;
                let protocol = p.protocol();
                let (src_port, dst_port) = if has_ports(protocol) && p.frag_offset() == 0 {
                    ports(buf, p.header_len(), usize::from(p.total_len()))
                } else {
                    (None, None)
                };
                Ok(PacketInfo {
                    version: 4,
                    src: p.src().into(),
                    dst: p.dst().into(),
                    protocol,
                    src_port,
                    dst_port,
                    len: usize::from(p.total_len()),
                })
            }
            Some(6) => {
                let p = Ipv6Packet::new_checked(buf)?;
                let ul = p.upper_layer()?;
                let (src_port, dst_port) = if has_ports(ul.protocol) && ul.first_fragment {
                    ports(buf, ul.offset, p.total_len())
                } else {
                    (None, None)
                };
                Ok(PacketInfo {
                    version: 6,
                    src: p.src().into(),
                    dst: p.dst().into(),
                    protocol: ul.protocol,
                    src_port,
                    dst_port,
                    len: p.total_len(),
                })
            }
            _ => Err(EspError::Malformed),
        }
    }
}

/// Add `data` to a running one's-complement sum (big-endian 16-bit words, odd byte padded).
pub fn checksum_add(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        if let &[hi, lo] = c {
            sum = sum.wrapping_add(u32::from(u16::from_be_bytes([hi, lo])));
            // Fold early so the sum never overflows, whatever the input size.
            sum = (sum & 0xffff) + (sum >> 16);
        }
    }
    if let [b] = chunks.remainder() {
        sum = sum.wrapping_add(u32::from(*b) << 8);
    }
    sum
}

/// Fold a running sum and complement it: the value to store in a checksum field.
pub fn checksum_finish(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Internet checksum (RFC 1071) of `data`; 0 when verifying data that includes its checksum.
pub fn checksum(data: &[u8]) -> u16 {
    checksum_finish(checksum_add(0, data))
}

/// ICMP error types that must not trigger another ICMP error (RFC 1122 3.2.2).
fn is_icmpv4_error(t: u8) -> bool {
    matches!(t, 3 | 4 | 5 | 11 | 12)
}

/// Build an IPv4 ICMP "destination unreachable, fragmentation needed" (type 3 code 4,
/// RFC 1191) reply to the oversized packet `orig`, from `src` to `orig`'s source, announcing
/// `mtu`, quoting as much of `orig` as fits in 576 bytes. Returns the reply length in `out`.
/// `Malformed` if `orig` is not IPv4, is a non-first fragment or an ICMP error itself;
/// `BufferTooSmall` if `out` cannot hold the reply.
// `out` is cut to `total` after the length check and every offset is below it; `quote` is at
// most `total_len`, which `new_checked` verified against `orig`.
#[allow(clippy::indexing_slicing)]
pub fn icmpv4_frag_needed(
    orig: &[u8],
    mtu: u16,
    src: Ipv4Addr,
    out: &mut [u8],
) -> Result<usize, EspError> {
    let p = Ipv4Packet::new_checked(orig)?;
    if p.frag_offset() != 0 {
        return Err(EspError::Malformed);
    }
    if p.protocol() == proto::ICMP {
        match p.payload().first() {
            Some(&t) if !is_icmpv4_error(t) => {}
            _ => return Err(EspError::Malformed),
        }
    }
    let quote = usize::from(p.total_len()).min(IPV4_ICMP_ERROR_MAX - IPV4_HEADER_LEN - 8);
    let total = IPV4_HEADER_LEN + 8 + quote;
    if out.len() < total {
        return Err(EspError::BufferTooSmall);
    }
    let out = &mut out[..total];
    // IPv4 header.
    out[0] = 0x45;
    out[1] = 0;
    out[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    out[4..6].fill(0); // ident
    out[6..8].fill(0); // flags/offset
    out[8] = 64; // TTL
    out[9] = proto::ICMP;
    out[10..12].fill(0);
    out[12..16].copy_from_slice(&src.octets());
    out[16..20].copy_from_slice(&p.src().octets());
    let c = checksum(&out[..IPV4_HEADER_LEN]);
    out[10..12].copy_from_slice(&c.to_be_bytes());
    // ICMP header.
    let icmp = &mut out[IPV4_HEADER_LEN..];
    icmp[0] = 3;
    icmp[1] = 4;
    icmp[2..4].fill(0);
    icmp[4..6].fill(0); // unused
    icmp[6..8].copy_from_slice(&mtu.to_be_bytes());
    icmp[8..].copy_from_slice(&orig[..quote]);
    let c = checksum(icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    Ok(total)
}

/// Build an ICMPv6 "packet too big" (type 2, RFC 4443 3.2) reply to the oversized packet
/// `orig`, from `src` to `orig`'s source, announcing `mtu`, quoting as much of `orig` as fits
/// in 1280 bytes. Returns the reply length in `out`. `Malformed` if `orig` is not IPv6 or is an
/// ICMPv6 error message itself; `BufferTooSmall` if `out` cannot hold the reply.
// `out` is cut to `total` after the length check and every offset is below it; `quote` is at
// most `total_len`, which `new_checked` verified against `orig`.
#[allow(clippy::indexing_slicing)]
pub fn icmpv6_packet_too_big(
    orig: &[u8],
    mtu: u32,
    src: Ipv6Addr,
    out: &mut [u8],
) -> Result<usize, EspError> {
    let p = Ipv6Packet::new_checked(orig)?;
    if let Ok(ul) = p.upper_layer() {
        if ul.protocol == proto::ICMPV6 {
            match orig.get(ul.offset) {
                Some(&t) if ul.first_fragment && t >= 128 => {}
                _ => return Err(EspError::Malformed),
            }
        }
    }
    let quote = p.total_len().min(IPV6_MIN_MTU - IPV6_HEADER_LEN - 8);
    let icmp_len = 8 + quote;
    let total = IPV6_HEADER_LEN + icmp_len;
    if out.len() < total {
        return Err(EspError::BufferTooSmall);
    }
    let out = &mut out[..total];
    let dst = p.src();
    out[0] = 0x60;
    out[1..4].fill(0);
    out[4..6].copy_from_slice(&(icmp_len as u16).to_be_bytes());
    out[6] = proto::ICMPV6;
    out[7] = 64;
    out[8..24].copy_from_slice(&src.octets());
    out[24..40].copy_from_slice(&dst.octets());
    let icmp = &mut out[IPV6_HEADER_LEN..];
    icmp[0] = 2;
    icmp[1] = 0;
    icmp[2..4].fill(0);
    icmp[4..8].copy_from_slice(&mtu.to_be_bytes());
    icmp[8..].copy_from_slice(&orig[..quote]);
    // Pseudo-header: src, dst, upper-layer length (32 bits), next header (32 bits).
    let mut sum = checksum_add(0, &src.octets());
    sum = checksum_add(sum, &dst.octets());
    sum = checksum_add(sum, &(icmp_len as u32).to_be_bytes());
    sum = checksum_add(sum, &[0, 0, 0, proto::ICMPV6]);
    sum = checksum_add(sum, icmp);
    let c = checksum_finish(sum);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    Ok(total)
}

/// Test packet builders shared by the unit tests of this crate.
#[cfg(test)]
pub(crate) mod testpkt {
    /// An IPv4 packet with `payload_len` bytes of payload after an 8-byte L4 header.
    pub fn ipv4(protocol: u8, payload_len: usize) -> Vec<u8> {
        let total = 20 + 8 + payload_len;
        let mut p = vec![0u8; total];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[6] = 0x40; // DF
        p[8] = 64;
        p[9] = protocol;
        p[12..16].copy_from_slice(&[192, 168, 1, 10]);
        p[16..20].copy_from_slice(&[192, 168, 2, 20]);
        let c = super::checksum(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p[20..22].copy_from_slice(&1234u16.to_be_bytes());
        p[22..24].copy_from_slice(&80u16.to_be_bytes());
        for (i, b) in p[28..].iter_mut().enumerate() {
            *b = i as u8;
        }
        p
    }

    /// An IPv6 packet with optional extension headers before an 8-byte L4 header + payload.
    pub fn ipv6(protocol: u8, ext: &[(u8, Vec<u8>)], payload_len: usize) -> Vec<u8> {
        let ext_len: usize = ext.iter().map(|(_, e)| e.len()).sum();
        let plen = ext_len + 8 + payload_len;
        let mut p = vec![0u8; 40 + plen];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&(plen as u16).to_be_bytes());
        p[6] = ext.first().map_or(protocol, |e| e.0);
        p[7] = 64;
        p[8..24].copy_from_slice(
            &"2001:db8:1::10"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        p[24..40].copy_from_slice(
            &"2001:db8:2::20"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        let mut off = 40;
        for (i, (_, e)) in ext.iter().enumerate() {
            p[off..off + e.len()].copy_from_slice(e);
            p[off] = ext.get(i + 1).map_or(protocol, |n| n.0);
            off += e.len();
        }
        p[off..off + 2].copy_from_slice(&5555u16.to_be_bytes());
        p[off + 2..off + 4].copy_from_slice(&443u16.to_be_bytes());
        p
    }
}

#[cfg(test)]
mod tests {
    use super::testpkt::{ipv4, ipv6};
    use super::*;

    #[test]
    fn ipv4_view_and_info() {
        let p = ipv4(proto::UDP, 100);
        let v = Ipv4Packet::new_checked(&p).unwrap();
        assert_eq!(v.header_len(), 20);
        assert_eq!(v.total_len(), 128);
        assert!(v.dont_fragment());
        assert!(!v.more_fragments());
        assert!(v.verify_checksum());
        assert_eq!(v.protocol(), proto::UDP);
        assert_eq!(v.payload().len(), 108);
        let i = PacketInfo::parse(&p).unwrap();
        assert_eq!(
            i,
            PacketInfo {
                version: 4,
                src: "192.168.1.10".parse().unwrap(),
                dst: "192.168.2.20".parse().unwrap(),
                protocol: proto::UDP,
                src_port: Some(1234),
                dst_port: Some(80),
                len: 128,
            }
        );
        // Trailing bytes beyond total length are allowed.
        let mut q = p.clone();
        q.extend_from_slice(&[0; 7]);
        assert_eq!(PacketInfo::parse(&q).unwrap().len, 128);
    }

    #[test]
    fn ipv4_fragments_and_no_ports() {
        let mut p = ipv4(proto::TCP, 10);
        p[6] = 0x00;
        p[7] = 0x10; // offset 16 units = 128 bytes
        let i = PacketInfo::parse(&p).unwrap();
        assert_eq!((i.src_port, i.dst_port), (None, None));
        assert_eq!(Ipv4Packet::new_checked(&p).unwrap().frag_offset(), 128);
        let p = ipv4(proto::ICMP, 10);
        assert_eq!(PacketInfo::parse(&p).unwrap().src_port, None);
        // Options: IHL 6.
        let mut p = ipv4(proto::UDP, 10);
        p.insert(20, 0);
        p.insert(20, 0);
        p.insert(20, 0);
        p.insert(20, 1);
        p[0] = 0x46;
        let tl = p.len() as u16;
        p[2..4].copy_from_slice(&tl.to_be_bytes());
        let i = PacketInfo::parse(&p).unwrap();
        assert_eq!((i.src_port, i.dst_port), (Some(1234), Some(80)));
    }

    #[test]
    fn ipv4_malformed() {
        let p = ipv4(proto::UDP, 10);
        for n in 0..p.len() {
            assert_eq!(
                PacketInfo::parse(&p[..n]),
                Err(EspError::Malformed),
                "len {n}"
            );
        }
        let mut q = p.clone();
        q[0] = 0x44; // IHL 4 < 5
        assert!(PacketInfo::parse(&q).is_err());
        let mut q = p.clone();
        q[0] = 0x4f; // IHL 15 > total
        assert!(PacketInfo::parse(&q).is_err());
        let mut q = p.clone();
        q[2..4].copy_from_slice(&10u16.to_be_bytes()); // total < header
        assert!(PacketInfo::parse(&q).is_err());
        let mut q = p;
        q[0] = 0x55;
        assert!(PacketInfo::parse(&q).is_err());
    }

    #[test]
    fn ipv6_view_and_ext_headers() {
        let p = ipv6(proto::TCP, &[], 20);
        let i = PacketInfo::parse(&p).unwrap();
        assert_eq!(i.version, 6);
        assert_eq!(i.src, "2001:db8:1::10".parse::<IpAddr>().unwrap());
        assert_eq!(i.dst, "2001:db8:2::20".parse::<IpAddr>().unwrap());
        assert_eq!(
            (i.protocol, i.src_port, i.dst_port, i.len),
            (proto::TCP, Some(5555), Some(443), 68)
        );

        let hbh = (proto::HOP_BY_HOP, vec![0, 0, 1, 4, 0, 0, 0, 0]);
        let rt = (
            proto::ROUTING,
            vec![0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        );
        let dst = (proto::DEST_OPTS, vec![0, 0, 1, 4, 0, 0, 0, 0]);
        let frag0 = (proto::FRAGMENT, vec![0, 0, 0, 1, 0, 0, 0, 7]); // offset 0, M=1
        let p = ipv6(proto::UDP, &[hbh.clone(), rt, dst.clone(), frag0], 4);
        let v = Ipv6Packet::new_checked(&p).unwrap();
        assert_eq!(v.next_header(), proto::HOP_BY_HOP);
        let ul = v.upper_layer().unwrap();
        assert_eq!(
            ul,
            UpperLayer {
                protocol: proto::UDP,
                offset: 40 + 40,
                first_fragment: true
            }
        );
        let i = PacketInfo::parse(&p).unwrap();
        assert_eq!(
            (i.protocol, i.src_port, i.dst_port),
            (proto::UDP, Some(5555), Some(443))
        );

        let frag1 = (proto::FRAGMENT, vec![0, 0, 0, 0x18, 0, 0, 0, 7]); // offset 3
        let p = ipv6(proto::SCTP, &[hbh, frag1], 4);
        let i = PacketInfo::parse(&p).unwrap();
        assert_eq!(
            (i.protocol, i.src_port, i.dst_port),
            (proto::SCTP, None, None)
        );

        // Truncated extension header.
        let p = ipv6(proto::UDP, &[dst], 0);
        let mut q = p.clone();
        q[40 + 1] = 5; // claims 48 bytes
        assert_eq!(PacketInfo::parse(&q), Err(EspError::Malformed));
        for n in 0..p.len() {
            assert!(PacketInfo::parse(&p[..n]).is_err());
        }
        assert!(PacketInfo::parse(&[]).is_err());
    }

    #[test]
    fn checksum_rfc1071_example() {
        // RFC 1071 example words: 0001 f203 f4f5 f6f7 -> sum ddf2, checksum 220d.
        assert_eq!(
            checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0x220d
        );
        // Odd length.
        assert_eq!(checksum(&[0xff]), !0xff00);
        // Large input does not overflow.
        let big = vec![0xffu8; 1 << 20];
        assert_eq!(checksum(&big), 0);
    }

    #[test]
    fn icmpv4_frag_needed_builder() {
        let orig = ipv4(proto::TCP, 1472);
        let mut out = [0u8; 1500];
        let me: Ipv4Addr = "10.0.0.1".parse().unwrap();
        let n = icmpv4_frag_needed(&orig, 1400, me, &mut out).unwrap();
        assert_eq!(n, 576);
        let r = Ipv4Packet::new_checked(&out[..n]).unwrap();
        assert!(r.verify_checksum());
        assert_eq!(r.protocol(), proto::ICMP);
        assert_eq!(r.src(), me);
        assert_eq!(r.dst(), Ipv4Addr::new(192, 168, 1, 10));
        let icmp = r.payload();
        assert_eq!((icmp[0], icmp[1]), (3, 4));
        assert_eq!(u16::from_be_bytes([icmp[6], icmp[7]]), 1400);
        assert_eq!(checksum(icmp), 0);
        assert_eq!(&icmp[8..], &orig[..548]);
        // Small packet quoted whole.
        let orig = ipv4(proto::UDP, 4);
        let n = icmpv4_frag_needed(&orig, 1400, me, &mut out).unwrap();
        assert_eq!(n, 28 + orig.len());
        // No errors about ICMP errors; output too small.
        let mut err = ipv4(proto::ICMP, 4);
        err[20] = 3;
        assert_eq!(
            icmpv4_frag_needed(&err, 1400, me, &mut out),
            Err(EspError::Malformed)
        );
        err[20] = 8; // echo request is fine
        assert!(icmpv4_frag_needed(&err, 1400, me, &mut out).is_ok());
        assert_eq!(
            icmpv4_frag_needed(&orig, 1400, me, &mut out[..20]),
            Err(EspError::BufferTooSmall)
        );
        assert_eq!(
            icmpv4_frag_needed(&[0x45], 1400, me, &mut out),
            Err(EspError::Malformed)
        );
    }

    #[test]
    fn icmpv6_packet_too_big_builder() {
        let orig = ipv6(proto::UDP, &[], 1452);
        let me: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let mut out = vec![0u8; 2000];
        let n = icmpv6_packet_too_big(&orig, 1400, me, &mut out).unwrap();
        assert_eq!(n, 1280);
        let r = Ipv6Packet::new_checked(&out[..n]).unwrap();
        assert_eq!(r.next_header(), proto::ICMPV6);
        assert_eq!(r.src(), me);
        assert_eq!(r.dst(), "2001:db8:1::10".parse::<Ipv6Addr>().unwrap());
        let icmp = r.payload();
        assert_eq!((icmp[0], icmp[1]), (2, 0));
        assert_eq!(
            u32::from_be_bytes([icmp[4], icmp[5], icmp[6], icmp[7]]),
            1400
        );
        assert_eq!(&icmp[8..], &orig[..1232]);
        let mut sum = checksum_add(0, &r.src().octets());
        sum = checksum_add(sum, &r.dst().octets());
        sum = checksum_add(sum, &(icmp.len() as u32).to_be_bytes());
        sum = checksum_add(sum, &[0, 0, 0, 58]);
        sum = checksum_add(sum, icmp);
        assert_eq!(checksum_finish(sum), 0);
        // Not in response to ICMPv6 errors.
        let mut err = ipv6(proto::ICMPV6, &[], 0);
        err[40] = 1;
        assert_eq!(
            icmpv6_packet_too_big(&err, 1280, me, &mut out),
            Err(EspError::Malformed)
        );
        err[40] = 128;
        assert!(icmpv6_packet_too_big(&err, 1280, me, &mut out).is_ok());
        assert_eq!(
            icmpv6_packet_too_big(&orig, 1280, me, &mut out[..100]),
            Err(EspError::BufferTooSmall)
        );
    }
}
