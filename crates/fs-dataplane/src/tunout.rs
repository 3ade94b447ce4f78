//! Writing decrypted inner packets to a TUN device with offloads (IFF_VNET_HDR), straight from
//! the receive buffers: consecutive in-order TCP segments of one flow become one GSO
//! super-packet (one virtio_net_hdr with `gso_type` TCPV4/TCPV6, `gso_size` and
//! `NEEDS_CSUM`), written with one `writev` of the rebuilt headers followed by the segments'
//! payloads where they lie (no userspace copy). When the device has UDP segmentation offload
//! (`TUN_F_USO4/6`, Linux >= 6.2; [`TunWriter::new`]), consecutive UDP datagrams of one flow
//! (same addresses, ports, TTL/hop limit, TOS/traffic class; IPv4 without options or
//! fragmentation, IPv6 without extension headers) with equal payload lengths (the last may be
//! shorter and ends the group) become one `GSO_UDP_L4` super-packet the same way: IP and UDP
//! lengths cover the whole super-packet, the UDP checksum holds the pseudo-header sum and the
//! kernel splits it into `gso_size` datagrams again. At most 64 segments and 64 KB per
//! super-packet. Anything else is written as is, one `writev` (zero virtio_net_hdr + packet)
//! each. Order within a flow is kept: a segment that cannot join its flow's open group closes
//! (writes) that group first, and a packet that is not a coalescable TCP segment / UDP
//! datagram writes all open groups before itself.
use std::io;

/// Length of the virtio_net_hdr (without `num_buffers`).
pub const VNET_HDR_LEN: usize = 10;
const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;
const VIRTIO_NET_HDR_GSO_TCPV6: u8 = 4;
const VIRTIO_NET_HDR_GSO_UDP_L4: u8 = 5;
/// Most segments merged into one super-packet.
const MAX_SEGS: usize = 64;
/// Most flows with an open group at a time.
const MAX_GROUPS: usize = 8;
/// Largest IP header + TCP header handled (IPv6 40 + TCP 60).
const MAX_HDR: usize = 100;
/// UDP header length.
const UDP_HDR: usize = 8;

/// One inner packet to write: `bufs[buf][start..start + len]`.
#[derive(Clone, Copy, Debug)]
pub struct Pending {
    pub buf: usize,
    pub start: usize,
    pub len: usize,
}

/// A TCP segment or UDP datagram that may be merged: IPv4 without options or IPv6 without
/// extension headers, no fragment, non-empty payload; TCP: flags ACK (and maybe PSH) only.
#[derive(Clone, Copy)]
struct Seg {
    v6: bool,
    udp: bool,
    /// IP header + TCP/UDP header length.
    hdr: usize,
    payload: usize,
    /// TCP only.
    seq: u32,
    /// TCP only.
    psh: bool,
}

/// Parse `p` as a mergeable TCP segment, or (with `udp`) a mergeable UDP datagram.
fn parse_seg(p: &[u8], udp: bool) -> Option<Seg> {
    let proto_ok = |n: u8| n == 6 || (udp && n == 17);
    let (v6, iph, proto) = match p.first()? >> 4 {
        4 => {
            if p.len() < 28
                || p[0] != 0x45
                || usize::from(u16::from_be_bytes([p[2], p[3]])) != p.len()
                || u16::from_be_bytes([p[6], p[7]]) & 0x3fff != 0
                || !proto_ok(p[9])
            {
                return None;
            }
            (false, 20, p[9])
        }
        6 => {
            if p.len() < 48
                || usize::from(u16::from_be_bytes([p[4], p[5]])) + 40 != p.len()
                || !proto_ok(p[6])
            {
                return None;
            }
            (true, 40, p[6])
        }
        _ => return None,
    };
    let t = p.get(iph..)?;
    if proto == 17 {
        // the UDP length must be exactly the datagram (no trailing bytes)
        if t.len() <= UDP_HDR || usize::from(u16::from_be_bytes([t[4], t[5]])) != t.len() {
            return None;
        }
        return Some(Seg {
            v6,
            udp: true,
            hdr: iph + UDP_HDR,
            payload: t.len() - UDP_HDR,
            seq: 0,
            psh: false,
        });
    }
    if t.len() < 20 {
        return None;
    }
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
        udp: false,
        hdr,
        payload,
        seq: u32::from_be_bytes([t[4], t[5], t[6], t[7]]),
        psh: flags & 0x08 != 0,
    })
}

/// Same flow identity (addresses, ports). Both packets passed [`parse_seg`] with the same
/// IP version (so they are long enough).
fn same_flow(v6: bool, a: &[u8], b: &[u8]) -> bool {
    if v6 {
        a.get(8..44) == b.get(8..44)
    } else {
        a.get(12..24) == b.get(12..24)
    }
}

/// Headers that must match for `b` to be merged after `a` (flow identity assumed equal):
/// IPv4 TOS, DF, TTL / IPv6 traffic class, flow label, hop limit; TCP ack, header length and
/// options.
fn same_headers(s: &Seg, a: &[u8], b: &[u8]) -> bool {
    let (Some(a), Some(b)) = (a.get(..s.hdr), b.get(..s.hdr)) else {
        return false;
    };
    let iph = if s.v6 { 40 } else { 20 };
    let ip_ok = if s.v6 {
        a[0..4] == b[0..4] && a[7] == b[7]
    } else {
        a[1] == b[1] && a[6] == b[6] && a[8] == b[8]
    };
    ip_ok
        && (s.udp
            || (a[iph + 8..iph + 13] == b[iph + 8..iph + 13] && a[iph + 20..] == b[iph + 20..]))
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
    /// TCP only.
    next_seq: u32,
    /// A shorter segment or PSH was merged: nothing may follow.
    closed: bool,
    /// TCP only.
    psh: bool,
    /// TCP only.
    window: [u8; 2],
}

/// Reusable state of the TUN writer.
pub struct TunWriter {
    groups: Vec<Group>,
    spare: Vec<Vec<Pending>>,
    /// Merge UDP datagrams (the device has `TUN_F_USO4/6`).
    udp: bool,
    /// Failed writes of the last [`TunWriter::write`].
    pub errors: u64,
    /// UDP GSO super-packets written (accumulates; the caller takes and resets it).
    pub udp_gso_writes: u64,
}

impl Default for TunWriter {
    fn default() -> Self {
        TunWriter::new(false)
    }
}

impl TunWriter {
    /// A writer that merges TCP segments, and UDP datagrams too when `udp_gso` (the device
    /// accepted `TUN_F_USO4|TUN_F_USO6`, tun-rs `udp_gso()`).
    pub fn new(udp_gso: bool) -> Self {
        TunWriter {
            groups: Vec::with_capacity(MAX_GROUPS),
            spare: (0..MAX_GROUPS)
                .map(|_| Vec::with_capacity(MAX_SEGS))
                .collect(),
            udp: udp_gso,
            errors: 0,
            udp_gso_writes: 0,
        }
    }

    /// Write the `pend` packets (lying in `bufs`) to `fd`, merging TCP segments (and UDP
    /// datagrams). Returns the number of failed writes.
    pub fn write(&mut self, fd: libc::c_int, bufs: &[Vec<u8>], pend: &[Pending]) -> u64 {
        self.errors = 0;
        for p in pend {
            let Some(pkt) = bufs
                .get(p.buf)
                .and_then(|b| b.get(p.start..p.start + p.len))
            else {
                continue;
            };
            let Some(seg) = parse_seg(pkt, self.udp) else {
                self.flush_all(fd, bufs);
                self.write_single(fd, pkt);
                continue;
            };
            let gi = self.groups.iter().position(|g| {
                g.seg.v6 == seg.v6
                    && g.seg.udp == seg.udp
                    && same_flow(seg.v6, first(bufs, &g.members), pkt)
            });
            if let Some(gi) = gi {
                let g = &self.groups[gi];
                let max_len = if seg.v6 && !seg.udp {
                    65535 + 40
                } else {
                    65535
                };
                let ok = !g.closed
                    && g.seg.hdr == seg.hdr
                    && (seg.udp || seg.seq == g.next_seq)
                    && seg.payload <= g.seg.payload
                    && g.members.len() < MAX_SEGS
                    && seg.hdr + g.bytes + seg.payload <= max_len
                    && same_headers(&seg, first(bufs, &g.members), pkt);
                if ok {
                    let g = &mut self.groups[gi];
                    g.members.push(*p);
                    g.bytes += seg.payload;
                    g.next_seq = seg.seq.wrapping_add(seg.payload as u32);
                    g.closed = seg.psh || seg.payload < g.seg.payload;
                    g.psh |= seg.psh;
                    g.window = window(&seg, pkt);
                    continue;
                }
                self.flush_group(fd, bufs, gi);
            } else if self.groups.len() >= MAX_GROUPS {
                self.flush_group(fd, bufs, 0);
            }
            let mut members = self.spare.pop().unwrap_or_default();
            members.clear();
            members.push(*p);
            self.groups.push(Group {
                seg,
                members,
                bytes: seg.payload,
                next_seq: seg.seq.wrapping_add(seg.payload as u32),
                closed: seg.psh,
                psh: seg.psh,
                window: window(&seg, pkt),
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
        let s = g.seg;
        if g.members.len() == 1 || pkt0.len() < s.hdr {
            self.write_single(fd, pkt0);
        } else {
            let iph = if s.v6 { 40 } else { 20 };
            let mut h = [0u8; VNET_HDR_LEN + MAX_HDR];
            h[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
            h[1] = match (s.udp, s.v6) {
                (true, _) => VIRTIO_NET_HDR_GSO_UDP_L4,
                (false, true) => VIRTIO_NET_HDR_GSO_TCPV6,
                (false, false) => VIRTIO_NET_HDR_GSO_TCPV4,
            };
            // checksum field offset in the TCP / UDP header
            let csum_off = if s.udp { 6 } else { 16 };
            // virtio_net_hdr fields are in the host's byte order (legacy TUN)
            h[2..4].copy_from_slice(&(s.hdr as u16).to_ne_bytes());
            h[4..6].copy_from_slice(&(s.payload as u16).to_ne_bytes());
            h[6..8].copy_from_slice(&(iph as u16).to_ne_bytes());
            h[8..10].copy_from_slice(&(csum_off as u16).to_ne_bytes());
            let ip = &mut h[VNET_HDR_LEN..VNET_HDR_LEN + s.hdr];
            ip.copy_from_slice(&pkt0[..s.hdr]);
            // TCP / UDP length of the whole super-packet (the kernel rewrites the lengths and
            // checksums per segment)
            let l4_len = s.hdr - iph + g.bytes;
            let addrs = if s.v6 {
                ip[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
                sum16(&ip[8..40])
            } else {
                ip[2..4].copy_from_slice(&((iph + l4_len) as u16).to_be_bytes());
                ip[10..12].fill(0);
                let c = !fold(sum16(&ip[..20]));
                ip[10..12].copy_from_slice(&c.to_be_bytes());
                sum16(&ip[12..20])
            };
            let t = &mut ip[iph..];
            let proto = if s.udp {
                // __udp_gso_segment adjusts the checksum from this length to each
                // segment's, so it must be the length the pseudo-header sum below uses
                t[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
                17
            } else {
                if g.psh {
                    t[13] |= 0x08;
                }
                t[14..16].copy_from_slice(&g.window);
                6
            };
            // CHECKSUM_PARTIAL: the pseudo-header sum (not complemented) in the checksum field
            let psum = fold(addrs + proto + l4_len as u64);
            t[csum_off..csum_off + 2].copy_from_slice(&psum.to_be_bytes());
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
            if self.writev(fd, &iov[..n]) && s.udp {
                self.udp_gso_writes += 1;
            }
        }
        self.spare.push(g.members);
    }

    /// One `writev`; false (and counted in `errors`) if it failed.
    fn writev(&mut self, fd: libc::c_int, iov: &[libc::iovec]) -> bool {
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
                return false;
            }
            return true;
        }
    }
}

/// The TCP window of `pkt` (a segment `seg` describes), zero for UDP.
fn window(seg: &Seg, pkt: &[u8]) -> [u8; 2] {
    let iph = if seg.v6 { 40 } else { 20 };
    match pkt.get(iph + 14..iph + 16) {
        Some(w) if !seg.udp => [w[0], w[1]],
        _ => [0; 2],
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
        run_with(pkts, false).0
    }

    /// As [`run`], with UDP merging on or off; also the UDP super-packet count.
    fn run_with(pkts: &[Vec<u8>], udp: bool) -> (Vec<Vec<u8>>, u64) {
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
        let mut w = TunWriter::new(udp);
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
        (out, w.udp_gso_writes)
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

    /// An IPv4 UDP datagram 192.168.1.10:`sport` -> 192.168.2.10:5201 with `payload` bytes
    /// of `fill`, TTL `ttl`, DF, checksum 0.
    fn dgram4(sport: u16, payload: usize, fill: u8, ttl: u8) -> Vec<u8> {
        let len = 28 + payload;
        let mut p = vec![0u8; len];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        p[6] = 0x40;
        p[8] = ttl;
        p[9] = 17;
        p[12..16].copy_from_slice(&[192, 168, 1, 10]);
        p[16..20].copy_from_slice(&[192, 168, 2, 10]);
        let c = !fold(sum16(&p[..20]));
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p[20..22].copy_from_slice(&sport.to_be_bytes());
        p[22..24].copy_from_slice(&5201u16.to_be_bytes());
        p[24..26].copy_from_slice(&((8 + payload) as u16).to_be_bytes());
        p[28..].fill(fill);
        p
    }

    /// The IPv4 datagram as IPv6 (fd00::... addresses, same UDP header and payload).
    fn dgram6(sport: u16, payload: usize, fill: u8) -> Vec<u8> {
        let v4 = dgram4(sport, payload, fill, 64);
        let mut p = vec![0u8; 40];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&((v4.len() - 20) as u16).to_be_bytes());
        p[6] = 17;
        p[7] = 64;
        p[8] = 0xfd;
        p[24] = 0xfd;
        p[39] = 2;
        p.extend_from_slice(&v4[20..]);
        p
    }

    /// What the kernel does with a `GSO_UDP_L4` super-packet (`__udp_gso_segment` with
    /// CHECKSUM_PARTIAL): split the payload into `gso_size` pieces, give each the UDP length
    /// of its own, adjust the pseudo-header sum from the super-packet's UDP length to it and
    /// complete the checksum. Returns (UDP header + payload) of each datagram, checking that
    /// each carries a valid UDP checksum.
    fn kernel_split(m: &[u8]) -> Vec<Vec<u8>> {
        assert_eq!(m[0], VIRTIO_NET_HDR_F_NEEDS_CSUM);
        assert_eq!(m[1], VIRTIO_NET_HDR_GSO_UDP_L4);
        let hdr_len = usize::from(u16::from_ne_bytes([m[2], m[3]]));
        let mss = usize::from(u16::from_ne_bytes([m[4], m[5]]));
        let iph = usize::from(u16::from_ne_bytes([m[6], m[7]]));
        assert_eq!(u16::from_ne_bytes([m[8], m[9]]), 6, "csum_offset");
        assert_eq!(hdr_len, iph + 8);
        let ip = &m[VNET_HDR_LEN..];
        let udp = &ip[iph..];
        let old_len = u16::from_be_bytes([udp[4], udp[5]]);
        assert_eq!(
            usize::from(old_len),
            udp.len(),
            "UDP length of the super-packet"
        );
        let addrs = if iph == 40 {
            sum16(&ip[8..40])
        } else {
            sum16(&ip[12..20])
        };
        let check = u16::from_be_bytes([udp[6], udp[7]]);
        assert_eq!(check, fold(addrs + 17 + u64::from(old_len)), "pseudo sum");
        udp[8..]
            .chunks(mss)
            .map(|piece| {
                let new_len = (8 + piece.len()) as u16;
                // csum16_add(csum16_sub(check, old_len), new_len)
                let adj = fold(u64::from(check) + u64::from(!old_len) + u64::from(new_len));
                let mut d = udp[..8].to_vec();
                d[4..6].copy_from_slice(&new_len.to_be_bytes());
                d[6..8].copy_from_slice(&adj.to_be_bytes());
                d.extend_from_slice(piece);
                let c = !fold(sum16(&d));
                d[6..8].copy_from_slice(&c.to_be_bytes());
                // receiver's verification: pseudo-header + datagram sums to 0xffff
                let v = fold(addrs + 17 + u64::from(new_len) + sum16(&d));
                assert_eq!(v, 0xffff, "UDP checksum of a segment");
                d
            })
            .collect()
    }

    #[test]
    fn merges_udp_datagrams_ipv4() {
        let pkts = vec![
            dgram4(1, 200, 1, 64),
            dgram4(1, 200, 2, 64),
            dgram4(1, 100, 3, 64),
        ];
        let (out, n) = run_with(&pkts, true);
        assert_eq!((out.len(), n), (1, 1));
        let m = &out[0];
        assert_eq!(m[1], VIRTIO_NET_HDR_GSO_UDP_L4);
        assert_eq!(u16::from_ne_bytes([m[2], m[3]]), 28, "hdr_len");
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), 200, "gso_size");
        assert_eq!(u16::from_ne_bytes([m[6], m[7]]), 20, "csum_start");
        let ip = &m[VNET_HDR_LEN..];
        assert_eq!(ip.len(), 28 + 500);
        assert_eq!(usize::from(u16::from_be_bytes([ip[2], ip[3]])), ip.len());
        assert_eq!(fold(sum16(&ip[..20])), 0xffff, "IPv4 header checksum");
        assert_eq!(&ip[..2], &pkts[0][..2]);
        assert_eq!(&ip[4..10], &pkts[0][4..10], "id, DF, TTL, protocol kept");
        let psum = fold(sum16(&ip[12..20]) + 17 + 508);
        assert_eq!(u16::from_be_bytes([ip[26], ip[27]]), psum);
        let segs = kernel_split(m);
        assert_eq!(segs.len(), 3);
        for (d, p) in segs.iter().zip(&pkts) {
            assert_eq!(&d[..6], &p[20..26], "ports and length of the segment");
            assert_eq!(&d[8..], &p[28..]);
        }
    }

    #[test]
    fn merges_udp_datagrams_ipv6() {
        let pkts = vec![dgram6(7, 300, 1), dgram6(7, 300, 2), dgram6(7, 300, 3)];
        let (out, n) = run_with(&pkts, true);
        assert_eq!((out.len(), n), (1, 1));
        let m = &out[0];
        assert_eq!(u16::from_ne_bytes([m[2], m[3]]), 48, "hdr_len");
        assert_eq!(u16::from_ne_bytes([m[6], m[7]]), 40, "csum_start");
        let ip = &m[VNET_HDR_LEN..];
        assert_eq!(ip.len(), 48 + 900);
        assert_eq!(usize::from(u16::from_be_bytes([ip[4], ip[5]])), 908);
        let segs = kernel_split(m);
        assert_eq!(segs.len(), 3);
        for (d, p) in segs.iter().zip(&pkts) {
            assert_eq!(&d[..6], &p[40..46]);
            assert_eq!(&d[8..], &p[48..]);
        }
    }

    /// UDP header + payload lengths of what was written: (gso_size, UDP payload bytes) of a
    /// super-packet, (0, payload) of a single datagram; sport first.
    fn udp_shape(out: &[Vec<u8>]) -> Vec<(u16, usize, usize)> {
        out.iter()
            .map(|m| {
                let ip = &m[VNET_HDR_LEN..];
                let sport = u16::from_be_bytes([ip[20], ip[21]]);
                let gso = if m[1] == VIRTIO_NET_HDR_GSO_UDP_L4 {
                    usize::from(u16::from_ne_bytes([m[4], m[5]]))
                } else {
                    assert!(m[..VNET_HDR_LEN].iter().all(|&b| b == 0));
                    0
                };
                (sport, gso, ip.len() - 28)
            })
            .collect()
    }

    #[test]
    fn udp_groups_split_by_flow_length_and_headers() {
        let pkts = vec![
            dgram4(1, 200, 1, 64),
            dgram4(2, 200, 2, 64), // another flow: its own group
            dgram4(1, 200, 3, 64),
            dgram4(2, 200, 4, 64),
            dgram4(1, 100, 5, 64), // shorter: ends flow 1's group
            dgram4(1, 100, 6, 64), // so this starts a new one
            dgram4(2, 300, 7, 64), // longer: flow 2's group written, new group
            dgram4(2, 300, 8, 64),
            dgram4(2, 300, 9, 63), // other TTL: new group
        ];
        let (out, n) = run_with(&pkts, true);
        assert_eq!(
            udp_shape(&out),
            vec![
                (1, 200, 500),
                (2, 200, 400),
                (2, 300, 600),
                (1, 0, 100),
                (2, 0, 300),
            ]
        );
        assert_eq!(n, 3);
        // the merged payloads are the members' in order
        let segs = kernel_split(&out[0]);
        let fills: Vec<u8> = segs.iter().map(|d| d[8]).collect();
        assert_eq!(fills, vec![1, 3, 5]);
        // TCP and UDP of the same addresses and ports are not mixed
        let mut tcp = seg4(1, 1000, 200, 9);
        tcp[22..24].copy_from_slice(&5201u16.to_be_bytes());
        let pkts = vec![dgram4(1, 200, 1, 64), tcp, dgram4(1, 200, 2, 64)];
        let (out, n) = run_with(&pkts, true);
        assert_eq!((out.len(), n), (2, 1));
        assert_eq!(out[0][1], VIRTIO_NET_HDR_GSO_UDP_L4);
        assert_eq!(out[1][VNET_HDR_LEN + 9], 6);
    }

    #[test]
    fn udp_groups_capped_at_64_segments_and_64k() {
        let pkts: Vec<Vec<u8>> = (0..70).map(|i| dgram4(1, 64, i as u8, 64)).collect();
        let (out, n) = run_with(&pkts, true);
        assert_eq!(udp_shape(&out), vec![(1, 64, 64 * 64), (1, 64, 6 * 64)]);
        assert_eq!(n, 2);
        let fills: Vec<u8> = out
            .iter()
            .flat_map(|m| kernel_split(m))
            .map(|d| d[8])
            .collect();
        assert_eq!(fills, (0..70).collect::<Vec<u8>>());
        // 28 + 46 * 1400 = 64428 fits in 65535, one more does not
        let pkts: Vec<Vec<u8>> = (0..64).map(|i| dgram4(1, 1400, i as u8, 64)).collect();
        let (out, _) = run_with(&pkts, true);
        assert_eq!(
            udp_shape(&out),
            vec![(1, 1400, 46 * 1400), (1, 1400, 18 * 1400)]
        );
        for m in &out {
            let ip = &m[VNET_HDR_LEN..];
            assert_eq!(usize::from(u16::from_be_bytes([ip[2], ip[3]])), ip.len());
        }
    }

    #[test]
    fn udp_not_mergeable_written_alone_in_order() {
        let mut frag = dgram4(1, 200, 10, 64);
        frag[6] |= 0x20; // more fragments
        let mut opts = dgram4(1, 200, 11, 64);
        opts.splice(20..20, [1u8, 1, 1, 0]); // 4 bytes of options (NOPs + EOL)
        opts[0] = 0x46;
        let l = opts.len() as u16;
        opts[2..4].copy_from_slice(&l.to_be_bytes());
        let mut badlen = dgram4(1, 200, 12, 64);
        badlen[24..26].copy_from_slice(&100u16.to_be_bytes());
        let mut v6ext = dgram6(1, 200, 13);
        v6ext[6] = 0; // hop-by-hop options header
        let pkts = vec![
            dgram4(1, 200, 1, 64),
            dgram4(1, 200, 2, 64),
            frag.clone(),
            dgram4(1, 200, 3, 64),
            dgram4(1, 200, 4, 64),
            opts.clone(),
            badlen.clone(),
            dgram4(1, 200, 5, 64),
            dgram4(1, 0, 0, 64), // empty datagram: alone
            v6ext.clone(),
            dgram4(1, 200, 6, 64),
        ];
        let (out, n) = run_with(&pkts, true);
        assert_eq!(out.len(), 9);
        assert_eq!(n, 2);
        let expect: Vec<Option<&Vec<u8>>> = vec![
            None,
            Some(&frag),
            None,
            Some(&opts),
            Some(&badlen),
            Some(&pkts[7]),
            Some(&pkts[8]),
            Some(&v6ext),
            Some(&pkts[10]),
        ];
        for (m, e) in out.iter().zip(expect) {
            match e {
                None => assert_eq!(m[1], VIRTIO_NET_HDR_GSO_UDP_L4),
                Some(p) => {
                    assert!(m[..VNET_HDR_LEN].iter().all(|&b| b == 0));
                    assert_eq!(&m[VNET_HDR_LEN..], &p[..]);
                }
            }
        }
    }

    #[test]
    fn udp_not_merged_without_uso() {
        let pkts: Vec<Vec<u8>> = (0..5).map(|i| dgram4(1, 200, i, 64)).collect();
        let (out, n) = run_with(&pkts, false);
        assert_eq!((out.len(), n), (5, 0));
        for (m, p) in out.iter().zip(&pkts) {
            assert!(m[..VNET_HDR_LEN].iter().all(|&b| b == 0));
            assert_eq!(&m[VNET_HDR_LEN..], &p[..]);
        }
    }

    #[test]
    fn udp_no_panic_on_garbage() {
        for len in 0..80 {
            let mut pkts = vec![dgram4(1, 200, 1, 64), dgram4(1, 200, 2, 64)];
            for fill in [0x45u8, 0x60, 0x11, 0xff] {
                let mut p = vec![fill; len];
                if len > 9 {
                    p[9] = 17;
                }
                if len > 6 && fill == 0x60 {
                    p[6] = 17;
                }
                pkts.push(p);
            }
            let (out, n) = run_with(&pkts, true);
            assert_eq!((out.len(), n), (5, 1));
        }
    }
}
