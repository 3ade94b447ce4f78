//! Pcap reader.

use crate::*;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

// ---------------------------------------------------------------------------------------
// pcap
// ---------------------------------------------------------------------------------------

/// One IP packet from a pcap: addresses, protocol, and the bytes after the IP header.
#[derive(Clone, Debug)]
pub struct IpPkt {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub payload: Vec<u8>,
}

/// IP packets of a pcap (Ethernet, Linux cooked v1, or raw IP link types). IPv6 extension
/// headers are not walked (the next header of the fixed header is reported).
pub fn pcap_ip_packets(path: &Path) -> Vec<IpPkt> {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert!(b.len() >= 24, "pcap {} too short", path.display());
    let magic = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let le = match magic {
        0xa1b2c3d4 | 0xa1b23c4d => true,
        0xd4c3b2a1 | 0x4d3cb2a1 => false,
        m => panic!("{}: not a pcap file (magic {m:08x})", path.display()),
    };
    let u32_at = |o: usize| {
        let a = [b[o], b[o + 1], b[o + 2], b[o + 3]];
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    let linktype = u32_at(20);
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= b.len() {
        let caplen = u32_at(at + 8) as usize;
        let start = at + 16;
        at = start + caplen;
        let Some(frame) = b.get(start..start + caplen) else {
            break;
        };
        let ip = match linktype {
            1 => {
                // Ethernet, possibly one VLAN tag
                if frame.len() < 14 {
                    continue;
                }
                let mut et = u16::from_be_bytes([frame[12], frame[13]]);
                let mut off = 14;
                if et == 0x8100 && frame.len() >= 18 {
                    et = u16::from_be_bytes([frame[16], frame[17]]);
                    off = 18;
                }
                if et != 0x0800 && et != 0x86dd {
                    continue;
                }
                &frame[off..]
            }
            113 => {
                if frame.len() < 16 {
                    continue;
                }
                &frame[16..]
            }
            101 | 12 | 228 | 229 => frame,
            _ => continue,
        };
        if let Some(p) = parse_ip(ip) {
            out.push(p);
        }
    }
    out
}

fn parse_ip(ip: &[u8]) -> Option<IpPkt> {
    match ip.first()? >> 4 {
        4 => {
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
            let end = total.min(ip.len());
            Some(IpPkt {
                src: IpAddr::from(<[u8; 4]>::try_from(ip.get(12..16)?).ok()?),
                dst: IpAddr::from(<[u8; 4]>::try_from(ip.get(16..20)?).ok()?),
                proto: *ip.get(9)?,
                payload: ip.get(ihl..end)?.to_vec(),
            })
        }
        6 => {
            let plen = usize::from(u16::from_be_bytes([*ip.get(4)?, *ip.get(5)?]));
            let end = (40 + plen).min(ip.len());
            Some(IpPkt {
                src: IpAddr::from(<[u8; 16]>::try_from(ip.get(8..24)?).ok()?),
                dst: IpAddr::from(<[u8; 16]>::try_from(ip.get(24..40)?).ok()?),
                proto: *ip.get(6)?,
                payload: ip.get(40..end)?.to_vec(),
            })
        }
        _ => None,
    }
}

/// ESP packets (raw protocol 50, or UDP 4500 without the non-ESP marker) sent to `dst`
/// in a pcap, as ESP bytes (SPI first).
pub fn pcap_esp_to(path: &Path, dst: IpAddr) -> Vec<Vec<u8>> {
    pcap_ip_packets(path)
        .into_iter()
        .filter(|p| p.dst == dst)
        .filter_map(|p| match p.proto {
            50 => Some(p.payload),
            17 if p.payload.len() > 8 + 8
                && u16::from_be_bytes([p.payload[2], p.payload[3]]) == 4500
                && p.payload[8..12] != [0, 0, 0, 0] =>
            {
                Some(p.payload[8..].to_vec())
            }
            _ => None,
        })
        .collect()
}

/// Make sure everything seen so far on a capture is in its pcap file: tcpdump hands packets
/// over in blocks (up to ~1 s late), so send a marker UDP datagram from `from_ns` to
/// `dst_ip`:9 over the captured link and wait (10 s) until the marker is in the file.
/// Packets captured before the marker are then written too.
pub fn capture_sync(cap: &Capture, from_ns: &str, dst_ip: &str) {
    let marker = format!(
        "ferroswan-capture-sync-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let dst: SocketAddr = SocketAddr::new(dst_ip.parse().unwrap(), 9);
    let found = poll(Duration::from_secs(10), || {
        udp_exchange(from_ns, dst, marker.as_bytes(), Duration::ZERO);
        let b = std::fs::read(&cap.pcap).unwrap_or_default();
        b.windows(marker.len())
            .any(|w| w == marker.as_bytes())
            .then_some(())
    });
    assert!(
        found.is_some(),
        "capture {} never showed the sync marker",
        cap.pcap.display()
    );
}
