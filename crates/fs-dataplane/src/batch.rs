//! Batched datagram I/O for the ESP paths:
//! - [`RecvBatch`]: `recvmmsg` of up to 64 datagrams with their source addresses and, on UDP
//!   sockets with `UDP_GRO`, the segment size of coalesced datagrams;
//! - [`send_gso`]: one `sendmsg` of equal-sized UDP datagrams with `UDP_SEGMENT` (GSO);
//! - [`send_many`]: `sendmmsg` of packets lying in one buffer (raw ESP, or UDP without GSO).
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

/// `UDP_SEGMENT` / `UDP_GRO` socket options (linux/udp.h), level `SOL_UDP`.
const UDP_SEGMENT: libc::c_int = 103;
const UDP_GRO: libc::c_int = 104;
/// Most datagrams per recvmmsg/sendmmsg call.
pub const MAX_BATCH: usize = 64;
/// Largest UDP payload in one GSO send (IPv4 total length limit minus IP and UDP headers).
pub const GSO_MAX_BYTES: usize = 65535 - 20 - 8;
/// Most segments per GSO send (UDP_MAX_SEGMENTS on older kernels).
pub const GSO_MAX_SEGS: usize = 64;

/// Control-message space: enough for one `int` cmsg (UDP_GRO), 8-byte aligned.
type Ctrl = [u64; 8];

/// Receive buffers and per-datagram metadata of one recvmmsg batch.
pub struct RecvBatch {
    pub bufs: Vec<Vec<u8>>,
    /// Length of datagram i (0 = truncated, to be dropped).
    pub lens: Vec<usize>,
    /// UDP GRO segment size of datagram i (0 = a single datagram).
    pub segs: Vec<usize>,
    names: Vec<libc::sockaddr_storage>,
    ctrl: Vec<Ctrl>,
}

impl RecvBatch {
    /// `n` (at most [`MAX_BATCH`]) buffers of `buf_len` bytes.
    pub fn new(n: usize, buf_len: usize) -> Self {
        let n = n.clamp(1, MAX_BATCH);
        RecvBatch {
            bufs: vec![vec![0u8; buf_len]; n],
            lens: vec![0; n],
            segs: vec![0; n],
            // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
            names: vec![unsafe { std::mem::zeroed() }; n],
            ctrl: vec![[0u64; 8]; n],
        }
    }

    /// Source address of datagram `i` (None if the kernel gave none we understand).
    pub fn src(&self, i: usize) -> Option<SocketAddr> {
        self.names.get(i).and_then(sockaddr_to_std)
    }

    /// Receive up to `bufs.len()` datagrams from `fd`. Blocks (subject to SO_RCVTIMEO) for the
    /// first one only (MSG_WAITFORONE). Returns how many were received.
    pub fn recv(&mut self, fd: libc::c_int) -> io::Result<usize> {
        let n = self.bufs.len();
        let mut iov: [libc::iovec; MAX_BATCH] = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; MAX_BATCH];
        // SAFETY: mmsghdr is plain old data; all-zero (null pointers, zero lengths) is valid.
        let mut msgs: [libc::mmsghdr; MAX_BATCH] = unsafe { std::mem::zeroed() };
        for i in 0..n {
            iov[i].iov_base = self.bufs[i].as_mut_ptr() as *mut libc::c_void;
            iov[i].iov_len = self.bufs[i].len();
            let h = &mut msgs[i].msg_hdr;
            h.msg_iov = &mut iov[i];
            h.msg_iovlen = 1;
            h.msg_name = &mut self.names[i] as *mut libc::sockaddr_storage as *mut libc::c_void;
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_control = self.ctrl[i].as_mut_ptr() as *mut libc::c_void;
            h.msg_controllen = std::mem::size_of::<Ctrl>() as _;
        }
        // SAFETY: recvmmsg on `n` headers whose iovecs, names and control buffers point into
        // live, exclusively borrowed buffers of the stated lengths; the kernel writes at most
        // those lengths.
        let rc = unsafe {
            libc::recvmmsg(
                fd,
                msgs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        let got = rc as usize;
        for (i, m) in msgs.iter().enumerate().take(got) {
            let h = &m.msg_hdr;
            self.lens[i] = if h.msg_flags & libc::MSG_TRUNC != 0 {
                0
            } else {
                m.msg_len as usize
            };
            if h.msg_namelen == 0 {
                self.names[i].ss_family = 0;
            }
            self.segs[i] = gro_segment(h);
        }
        Ok(got)
    }
}

/// The UDP_GRO segment size from a received message's control data (0 if none).
fn gro_segment(h: &libc::msghdr) -> usize {
    let mut seg = 0usize;
    if h.msg_controllen == 0 || h.msg_control.is_null() {
        return 0;
    }
    // SAFETY: CMSG_* walk the control buffer the kernel filled for this message (its length
    // is msg_controllen, within our Ctrl buffer); data is read unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == UDP_GRO {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::c_int);
                seg = usize::try_from(v).unwrap_or(0);
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    seg
}

fn sockaddr_to_std(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match libc::c_int::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in (storage is larger).
            let a: &libc::sockaddr_in =
                unsafe { &*(ss as *const libc::sockaddr_storage as *const libc::sockaddr_in) };
            Some(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr))),
                u16::from_be(a.sin_port),
            ))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6 (storage is larger).
            let a: &libc::sockaddr_in6 =
                unsafe { &*(ss as *const libc::sockaddr_storage as *const libc::sockaddr_in6) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                u32::from_be(a.sin6_flowinfo),
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

fn std_to_sockaddr(a: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match a {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            let s =
                unsafe { &mut *(&mut ss as *mut libc::sockaddr_storage as *mut libc::sockaddr_in) };
            s.sin_family = libc::AF_INET as libc::sa_family_t;
            s.sin_port = v4.port().to_be();
            s.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            let s = unsafe {
                &mut *(&mut ss as *mut libc::sockaddr_storage as *mut libc::sockaddr_in6)
            };
            s.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            s.sin6_port = v6.port().to_be();
            s.sin6_addr.s6_addr = v6.ip().octets();
            s.sin6_flowinfo = v6.flowinfo().to_be();
            s.sin6_scope_id = v6.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

/// Enable UDP_GRO on a UDP socket: coalesced datagrams arrive in one read with their
/// segment size in a control message. Returns false if the kernel refuses.
pub fn enable_gro(fd: libc::c_int) -> bool {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt with a pointer to a live c_int and its exact size.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_UDP,
            UDP_GRO,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
    }
}

/// Send `data` to `dest` as UDP datagrams of `seg` bytes each (the last may be shorter) with
/// one sendmsg and UDP_SEGMENT. `data.len()` must be at most [`GSO_MAX_BYTES`] and
/// `GSO_MAX_SEGS * seg`.
pub fn send_gso(fd: libc::c_int, dest: SocketAddr, data: &[u8], seg: u16) -> io::Result<usize> {
    let (mut name, namelen) = std_to_sockaddr(dest);
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let mut ctrl: Ctrl = [0; 8];
    // SAFETY: msghdr is plain old data; all-zero is valid.
    let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
    h.msg_name = &mut name as *mut libc::sockaddr_storage as *mut libc::c_void;
    h.msg_namelen = namelen;
    h.msg_iov = &mut iov;
    h.msg_iovlen = 1;
    h.msg_control = ctrl.as_mut_ptr() as *mut libc::c_void;
    // SAFETY: CMSG_SPACE is a pure size computation.
    h.msg_controllen = unsafe { libc::CMSG_SPACE(std::mem::size_of::<u16>() as u32) } as _;
    // SAFETY: the control buffer (64 bytes) holds CMSG_SPACE(2) bytes; we fill the one cmsg
    // header and its u16 payload inside it. sendmsg only reads the iovec (the kernel does
    // not write through iov_base on send) and the name/control buffers, all live here.
    let rc = unsafe {
        let c = libc::CMSG_FIRSTHDR(&h);
        (*c).cmsg_level = libc::SOL_UDP;
        (*c).cmsg_type = UDP_SEGMENT;
        (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut u16, seg);
        libc::sendmsg(fd, &h, 0)
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc as usize)
}

/// Send the packets `buf[start..start+len]` for each `(start, len)` of `pkts` to `dest` with
/// sendmmsg (as many calls as needed). Returns the number of packets the kernel accepted
/// before the first error (or the error if none was).
pub fn send_many(
    fd: libc::c_int,
    dest: SocketAddr,
    buf: &[u8],
    pkts: &[(usize, usize)],
) -> io::Result<usize> {
    let (mut name, namelen) = std_to_sockaddr(dest);
    let mut sent = 0;
    for chunk in pkts.chunks(MAX_BATCH) {
        let mut iov: [libc::iovec; MAX_BATCH] = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; MAX_BATCH];
        // SAFETY: mmsghdr is plain old data; all-zero is valid.
        let mut msgs: [libc::mmsghdr; MAX_BATCH] = unsafe { std::mem::zeroed() };
        let mut n = 0;
        for &(s, l) in chunk {
            let Some(p) = buf.get(s..s + l) else { continue };
            iov[n].iov_base = p.as_ptr() as *mut libc::c_void;
            iov[n].iov_len = p.len();
            let h = &mut msgs[n].msg_hdr;
            h.msg_iov = &mut iov[n];
            h.msg_iovlen = 1;
            h.msg_name = &mut name as *mut libc::sockaddr_storage as *mut libc::c_void;
            h.msg_namelen = namelen;
            n += 1;
        }
        let mut done = 0;
        while done < n {
            // SAFETY: sendmmsg over `n - done` headers whose iovecs point into `buf` (live,
            // read only by the kernel) and whose name points to `name`.
            let rc = unsafe {
                libc::sendmmsg(
                    fd,
                    msgs.as_mut_ptr().add(done),
                    (n - done) as libc::c_uint,
                    0,
                )
            };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return if sent + done > 0 {
                    Ok(sent + done)
                } else {
                    Err(e)
                };
            }
            done += rc as usize;
        }
        sent += done;
    }
    Ok(sent)
}
