//! Writing decrypted inner packets to a TUN device with offloads (IFF_VNET_HDR), straight from
//! the receive buffers: consecutive in-order TCP segments of one flow become one GSO
//! super-packet (one virtio_net_hdr with `gso_type` TCPV4/TCPV6, `gso_size` and
//! `NEEDS_CSUM`), written with one `writev` of the rebuilt headers followed by the segments'
//! payloads where they lie (no userspace copy). Anything else is written as is, one
//! `writev` (zero virtio_net_hdr + packet) each. Order within a flow is kept: a segment that
//! cannot join its flow's open group closes (writes) that group first, and a packet that is
//! not a coalescable TCP segment writes all open groups before itself.
use std::io;

/// Length of the virtio_net_hdr (without `num_buffers`).
pub const VNET_HDR_LEN: usize = 10;
const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;
const VIRTIO_NET_HDR_GSO_TCPV6: u8 = 4;
/// Most segments merged into one super-packet.
const MAX_SEGS: usize = 64;
/// Most flows with an open group at a time.
const MAX_GROUPS: usize = 8;
/// Largest IP header + TCP header handled (IPv6 40 + TCP 60).
const MAX_HDR: usize = 100;

/// One inner packet to write: `bufs[buf][start..start + len]`.
#[derive(Clone, Copy, Debug)]
pub struct Pending {
    pub buf: usize,
    pub start: usize,
    pub len: usize,
}

/// A TCP segment that may be merged: IPv4 without options or IPv6 without extension
/// headers, no fragment, flags ACK (and maybe PSH) only, non-empty payload.
#[derive(Clone, Copy)]
struct Seg {
    v6: bool,
    /// IP header + TCP header length.
    hdr: usize,
    payload: usize,
    seq: u32,
    psh: bool,
}

fn parse_seg(p: &[u8]) -> Option<Seg> {
    let (v6, iph) = match p.first()? >> 4 {
        4 => {
            if p.len() < 40
                || p[0] != 0x45
                || usize::from(u16::from_be_bytes([p[2], p[3]])) != p.len()
                || u16::from_be_bytes([p[6], p[7]]) & 0x3fff != 0
                || p[9] != 6
            {
                return None;
            }
            (false, 20)
        }
        6 => {
            if p.len() < 60
                || usize::from(u16::from_be_bytes([p[4], p[5]])) + 40 != p.len()
                || p[6] != 6
            {
                return None;
            }
            (true, 40)
        }
        _ => return None,
    };
    let t = &p[iph..];
    let doff = usize::from(t[12] >> 4) * 4;
    let flags = t[13];
    if doff < 20 || doff > t.len() || flags & !0x08 != 0x10 {
        return None;
    }
    let hdr = iph + doff;
    let payload = p.len() - hdr;
    if payload == 0 || hdr > MAX_HDR {
        return None;
    }
    Some(Seg {
        v6,
        hdr,
        payload,
        seq: u32::from_be_bytes([t[4], t[5], t[6], t[7]]),
        psh: flags & 0x08 != 0,
    })
}

/// Same flow identity (addresses, ports).
fn same_flow(v6: bool, a: &[u8], b: &[u8]) -> bool {
    if v6 {
        a[8..40] == b[8..40] && a[40..44] == b[40..44]
    } else {
        a[12..20] == b[12..20] && a[20..24] == b[20..24]
    }
}

/// Headers that must match for `b` to be merged after `a` (flow identity assumed equal):
/// IPv4 TOS, DF, TTL / IPv6 traffic class, flow label, hop limit; TCP ack, header length and
/// options.
fn same_headers(v6: bool, hdr: usize, a: &[u8], b: &[u8]) -> bool {
    let iph = if v6 { 40 } else { 20 };
    let ip_ok = if v6 {
        a[0..4] == b[0..4] && a[7] == b[7]
    } else {
        a[1] == b[1] && a[6] == b[6] && a[8] == b[8]
    };
    ip_ok && a[iph + 8..iph + 13] == b[iph + 8..iph + 13] && a[iph + 20..hdr] == b[iph + 20..hdr]
}

/// Fold a 32-bit one's complement sum to 16 bits.
fn fold(mut s: u64) -> u16 {
    while s > 0xffff {
        s = (s >> 16) + (s & 0xffff);
    }
    s as u16
}

fn sum16(b: &[u8]) -> u64 {
    b.chunks(2)
        .map(|c| u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
}

/// An open group: the first segment's headers (to be rewritten) and the members.
struct Group {
    seg: Seg,
    /// `Pending` of every member.
    members: Vec<Pending>,
    /// Payload bytes so far.
    bytes: usize,
    next_seq: u32,
    /// A shorter segment or PSH was merged: nothing may follow.
    closed: bool,
    psh: bool,
    window: [u8; 2],
}

/// Reusable state of the TUN writer.
pub struct TunWriter {
    groups: Vec<Group>,
    spare: Vec<Vec<Pending>>,
    /// Super-packets and single packets written, write errors (for tests / counters).
    pub errors: u64,
}

impl Default for TunWriter {
    fn default() -> Self {
        TunWriter {
            groups: Vec::with_capacity(MAX_GROUPS),
            spare: (0..MAX_GROUPS)
                .map(|_| Vec::with_capacity(MAX_SEGS))
                .collect(),
            errors: 0,
        }
    }
}

impl TunWriter {
    /// Write the `pend` packets (lying in `bufs`) to `fd`, merging TCP segments. Returns the
    /// number of failed writes.
    pub fn write(&mut self, fd: libc::c_int, bufs: &[Vec<u8>], pend: &[Pending]) -> u64 {
        self.errors = 0;
        for p in pend {
            let Some(pkt) = bufs
                .get(p.buf)
                .and_then(|b| b.get(p.start..p.start + p.len))
            else {
                continue;
            };
            let Some(seg) = parse_seg(pkt) else {
                self.flush_all(fd, bufs);
                self.write_single(fd, pkt);
                continue;
            };
            let gi = self.groups.iter().position(|g| {
                g.seg.v6 == seg.v6 && same_flow(seg.v6, first(bufs, &g.members), pkt)
            });
            if let Some(gi) = gi {
                let g = &self.groups[gi];
                let ok = !g.closed
                    && g.seg.hdr == seg.hdr
                    && seg.seq == g.next_seq
                    && seg.payload <= g.seg.payload
                    && g.members.len() < MAX_SEGS
                    && seg.hdr + g.bytes + seg.payload <= if seg.v6 { 65535 + 40 } else { 65535 }
                    && same_headers(seg.v6, seg.hdr, first(bufs, &g.members), pkt);
                if ok {
                    let g = &mut self.groups[gi];
                    g.members.push(*p);
                    g.bytes += seg.payload;
                    g.next_seq = seg.seq.wrapping_add(seg.payload as u32);
                    g.closed = seg.psh || seg.payload < g.seg.payload;
                    g.psh |= seg.psh;
                    let iph = if seg.v6 { 40 } else { 20 };
                    g.window = [pkt[iph + 14], pkt[iph + 15]];
                    continue;
                }
                self.flush_group(fd, bufs, gi);
            } else if self.groups.len() >= MAX_GROUPS {
                self.flush_group(fd, bufs, 0);
            }
            let mut members = self.spare.pop().unwrap_or_default();
            members.clear();
            members.push(*p);
            let iph = if seg.v6 { 40 } else { 20 };
            self.groups.push(Group {
                seg,
                members,
                bytes: seg.payload,
                next_seq: seg.seq.wrapping_add(seg.payload as u32),
                closed: seg.psh,
                psh: seg.psh,
                window: [pkt[iph + 14], pkt[iph + 15]],
            });
        }
        self.flush_all(fd, bufs);
        self.errors
    }

    fn flush_all(&mut self, fd: libc::c_int, bufs: &[Vec<u8>]) {
        while !self.groups.is_empty() {
            self.flush_group(fd, bufs, 0);
        }
    }

    fn write_single(&mut self, fd: libc::c_int, pkt: &[u8]) {
        let vnet = [0u8; VNET_HDR_LEN];
        self.writev(fd, &[iovec(&vnet), iovec(pkt)]);
    }

    fn flush_group(&mut self, fd: libc::c_int, bufs: &[Vec<u8>], gi: usize) {
        let g = self.groups.remove(gi);
        let pkt0 = first(bufs, &g.members);
        if g.members.len() == 1 {
            self.write_single(fd, pkt0);
        } else {
            let s = g.seg;
            let iph = if s.v6 { 40 } else { 20 };
            let mut h = [0u8; VNET_HDR_LEN + MAX_HDR];
            h[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
            h[1] = if s.v6 {
                VIRTIO_NET_HDR_GSO_TCPV6
            } else {
                VIRTIO_NET_HDR_GSO_TCPV4
            };
            // virtio_net_hdr fields are in the host's byte order (legacy TUN)
            h[2..4].copy_from_slice(&(s.hdr as u16).to_ne_bytes());
            h[4..6].copy_from_slice(&(s.payload as u16).to_ne_bytes());
            h[6..8].copy_from_slice(&(iph as u16).to_ne_bytes());
            h[8..10].copy_from_slice(&16u16.to_ne_bytes());
            let ip = &mut h[VNET_HDR_LEN..VNET_HDR_LEN + s.hdr];
            ip.copy_from_slice(&pkt0[..s.hdr]);
            let tcp_len = s.hdr - iph + g.bytes;
            let addrs = if s.v6 {
                ip[4..6].copy_from_slice(&(tcp_len as u16).to_be_bytes());
                sum16(&ip[8..40])
            } else {
                ip[2..4].copy_from_slice(&((iph + tcp_len) as u16).to_be_bytes());
                ip[10..12].fill(0);
                let c = !fold(sum16(&ip[..20]));
                ip[10..12].copy_from_slice(&c.to_be_bytes());
                sum16(&ip[12..20])
            };
            let t = &mut ip[iph..];
            if g.psh {
                t[13] |= 0x08;
            }
            t[14..16].copy_from_slice(&g.window);
            // CHECKSUM_PARTIAL: the pseudo-header sum (not complemented) in the TCP checksum
            let psum = fold(addrs + 6 + tcp_len as u64);
            t[16..18].copy_from_slice(&psum.to_be_bytes());
            let mut iov = [iovec(&[]); MAX_SEGS + 1];
            iov[0] = iovec(&h[..VNET_HDR_LEN + s.hdr]);
            let mut n = 1;
            for m in &g.members {
                if let Some(b) = bufs
                    .get(m.buf)
                    .and_then(|b| b.get(m.start + s.hdr..m.start + m.len))
                {
                    if n < iov.len() {
                        iov[n] = iovec(b);
                        n += 1;
                    }
                }
            }
            self.writev(fd, &iov[..n]);
        }
        self.spare.push(g.members);
    }

    fn writev(&mut self, fd: libc::c_int, iov: &[libc::iovec]) {
        loop {
            // SAFETY: writev over iovecs that point into live buffers borrowed for the whole
            // call (`bufs` and the local header arrays of the callers); the kernel only
            // reads them.
            let rc = unsafe { libc::writev(fd, iov.as_ptr(), iov.len() as libc::c_int) };
            if rc < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            if rc < 0 {
                self.errors += 1;
            }
            break;
        }
    }
}

fn first<'a>(bufs: &'a [Vec<u8>], members: &[Pending]) -> &'a [u8] {
    members
        .first()
        .and_then(|m| {
            bufs.get(m.buf)
                .and_then(|b| b.get(m.start..m.start + m.len))
        })
        .unwrap_or(&[])
}

fn iovec(b: &[u8]) -> libc::iovec {
    libc::iovec {
        iov_base: b.as_ptr() as *mut libc::c_void,
        iov_len: b.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4 TCP segment (ACK) of `payload` bytes with sequence number `seq`, source port
    /// `sport`.
    fn seg4(sport: u16, seq: u32, payload: usize, fill: u8) -> Vec<u8> {
        let len = 40 + 12 + payload;
        let mut p = vec![0u8; len];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        p[6] = 0x40;
        p[8] = 64;
        p[9] = 6;
        p[12..16].copy_from_slice(&[192, 168, 1, 10]);
        p[16..20].copy_from_slice(&[192, 168, 2, 10]);
        p[20..22].copy_from_slice(&sport.to_be_bytes());
        p[22..24].copy_from_slice(&5201u16.to_be_bytes());
        p[24..28].copy_from_slice(&seq.to_be_bytes());
        p[28..32].copy_from_slice(&7u32.to_be_bytes());
        p[32] = 8 << 4; // 32-byte header: 12 bytes of options (NOP NOP timestamp)
        p[33] = 0x10;
        p[34..36].copy_from_slice(&512u16.to_be_bytes());
        p[40..44].copy_from_slice(&[1, 1, 8, 10]);
        for b in &mut p[52..] {
            *b = fill;
        }
        p
    }

    fn udp4() -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&40u16.to_be_bytes());
        p[9] = 17;
        p
    }

    /// Write `pkts` through a TunWriter into a SOCK_SEQPACKET pair; return the messages.
    fn run(pkts: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: socketpair with a live array of two ints.
        let rc = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_NONBLOCK,
                0,
                fds.as_mut_ptr(),
            )
        };
        assert_eq!(rc, 0);
        let pend: Vec<Pending> = pkts
            .iter()
            .enumerate()
            .map(|(i, p)| Pending {
                buf: i,
                start: 0,
                len: p.len(),
            })
            .collect();
        let mut w = TunWriter::default();
        assert_eq!(w.write(fds[0], pkts, &pend), 0);
        let mut out = Vec::new();
        loop {
            let mut b = vec![0u8; 70000];
            // SAFETY: read into a live buffer of the stated length.
            let n = unsafe { libc::read(fds[1], b.as_mut_ptr() as *mut libc::c_void, b.len()) };
            if n <= 0 {
                break;
            }
            b.truncate(n as usize);
            out.push(b);
        }
        // SAFETY: closing the two descriptors created above.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
        out
    }

    #[test]
    fn merges_consecutive_segments() {
        let pkts = vec![
            seg4(1, 1000, 1000, 1),
            seg4(1, 2000, 1000, 2),
            seg4(1, 3000, 300, 3),
        ];
        let out = run(&pkts);
        assert_eq!(out.len(), 1);
        let m = &out[0];
        assert_eq!(m[0], VIRTIO_NET_HDR_F_NEEDS_CSUM);
        assert_eq!(m[1], VIRTIO_NET_HDR_GSO_TCPV4);
        assert_eq!(u16::from_ne_bytes([m[2], m[3]]), 52);
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), 1000);
        assert_eq!(u16::from_ne_bytes([m[6], m[7]]), 20);
        assert_eq!(u16::from_ne_bytes([m[8], m[9]]), 16);
        let ip = &m[VNET_HDR_LEN..];
        assert_eq!(ip.len(), 52 + 2300);
        assert_eq!(usize::from(u16::from_be_bytes([ip[2], ip[3]])), ip.len());
        assert_eq!(fold(sum16(&ip[..20])), 0xffff, "IPv4 header checksum");
        let psum = fold(sum16(&ip[12..20]) + 6 + (ip.len() - 20) as u64);
        assert_eq!(u16::from_be_bytes([ip[36], ip[37]]), psum);
        assert_eq!(&ip[24..28], &1000u32.to_be_bytes());
        assert!(ip[52..1052].iter().all(|&b| b == 1));
        assert!(ip[1052..2052].iter().all(|&b| b == 2));
        assert!(ip[2052..].iter().all(|&b| b == 3));
    }

    /// The IPv4 segment as IPv6 (same TCP header and payload).
    fn seg6(sport: u16, seq: u32, payload: usize, fill: u8) -> Vec<u8> {
        let v4 = seg4(sport, seq, payload, fill);
        let mut p = vec![0u8; 40];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&((v4.len() - 20) as u16).to_be_bytes());
        p[6] = 6;
        p[7] = 64;
        p[8] = 0xfd;
        p[24] = 0xfd;
        p[39] = 2;
        p.extend_from_slice(&v4[20..]);
        p
    }

    #[test]
    fn merges_ipv6_segments() {
        let pkts = vec![seg6(1, 1000, 1000, 1), seg6(1, 2000, 1000, 2)];
        let out = run(&pkts);
        assert_eq!(out.len(), 1);
        let m = &out[0];
        assert_eq!(m[1], VIRTIO_NET_HDR_GSO_TCPV6);
        assert_eq!(u16::from_ne_bytes([m[2], m[3]]), 72);
        assert_eq!(u16::from_ne_bytes([m[6], m[7]]), 40);
        let ip = &m[VNET_HDR_LEN..];
        assert_eq!(ip.len(), 72 + 2000);
        assert_eq!(
            usize::from(u16::from_be_bytes([ip[4], ip[5]])),
            ip.len() - 40
        );
        let psum = fold(sum16(&ip[8..40]) + 6 + (ip.len() - 40) as u64);
        assert_eq!(u16::from_be_bytes([ip[56], ip[57]]), psum);
    }

    #[test]
    fn keeps_order_and_splits_on_gaps() {
        let pkts = vec![
            seg4(1, 1000, 1000, 1),
            seg4(2, 5000, 1000, 4),
            seg4(1, 2000, 1000, 2),
            seg4(2, 6000, 1000, 5),
            seg4(1, 9999, 1000, 3), // gap: new group
            udp4(),                 // flushes everything first
            seg4(1, 10999, 1000, 6),
        ];
        let out = run(&pkts);
        let seqs: Vec<(u32, usize)> = out
            .iter()
            .map(|m| {
                let ip = &m[VNET_HDR_LEN..];
                if ip[9] == 17 {
                    return (0, ip.len());
                }
                (
                    u32::from_be_bytes([ip[24], ip[25], ip[26], ip[27]]),
                    ip.len() - 52,
                )
            })
            .collect();
        assert_eq!(
            seqs,
            vec![
                (1000, 2000),
                (5000, 2000),
                (9999, 1000),
                (0, 40),
                (10999, 1000)
            ]
        );
        // single packets go out unchanged with a zero header
        assert!(out[2][..VNET_HDR_LEN].iter().all(|&b| b == 0));
        assert_eq!(&out[2][VNET_HDR_LEN..], &pkts[4][..]);
    }

    #[test]
    fn no_merge_after_short_segment_or_psh_and_no_panic_on_garbage() {
        let mut psh = seg4(1, 2000, 1000, 2);
        psh[33] |= 0x08;
        let pkts = vec![
            seg4(1, 1000, 1000, 1),
            psh,
            seg4(1, 3000, 1000, 3),
            seg4(1, 4000, 10, 4),
            seg4(1, 4010, 10, 5),
            vec![],
            vec![0x45],
            vec![0x60; 45],
            vec![0x45; 60],
        ];
        let out = run(&pkts);
        assert_eq!(out.len(), 3 + 4);
        let ip = &out[0][VNET_HDR_LEN..];
        assert_eq!(ip[33] & 0x08, 0x08, "PSH kept on the merged header");
        assert_eq!(ip.len(), 52 + 2000);
        assert_eq!(out[1].len(), VNET_HDR_LEN + 52 + 1010);
        assert_eq!(out[2].len(), VNET_HDR_LEN + 52 + 10);
    }
}
