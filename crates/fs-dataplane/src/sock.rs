//! Socket creation: UDP sockets for IKE / ESP-in-UDP and raw IP sockets for protocol 50.
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{FromRawFd, OwnedFd};

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// A UDP socket bound to `addr`; IPv6 sockets are IPV6_V6ONLY so that `[::]` and `0.0.0.0`
/// can be bound side by side.
pub fn udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    match addr {
        SocketAddr::V4(_) => UdpSocket::bind(addr),
        SocketAddr::V6(a) => {
            // SAFETY: plain socket(2); the fd is owned by OwnedFd right away.
            let fd = check(unsafe {
                libc::socket(libc::AF_INET6, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0)
            })?;
            // SAFETY: fd is a fresh, valid descriptor that nothing else owns.
            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
            let one: libc::c_int = 1;
            // SAFETY: setsockopt with a pointer to a live c_int and its exact size.
            check(unsafe {
                libc::setsockopt(
                    fd,
                    libc::IPPROTO_IPV6,
                    libc::IPV6_V6ONLY,
                    &one as *const libc::c_int as *const libc::c_void,
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            })?;
            // SAFETY: sockaddr_in6 is plain old data; all-zero is a valid starting value.
            let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sa.sin6_port = a.port().to_be();
            sa.sin6_addr.s6_addr = a.ip().octets();
            sa.sin6_scope_id = a.scope_id();
            // SAFETY: bind with a pointer to a live sockaddr_in6 and its exact size.
            check(unsafe {
                libc::bind(
                    fd,
                    &sa as *const libc::sockaddr_in6 as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                )
            })?;
            Ok(UdpSocket::from(owned))
        }
    }
}

/// A raw socket for IP protocol 50 (ESP). IPv4 raw sockets receive the IP header, IPv6 ones
/// do not; both send only the payload (the kernel builds the IP header). Wrapped in a
/// `UdpSocket`, whose `send_to`/`recv_from`/timeouts are plain datagram-socket calls that work
/// on raw sockets too (the port of addresses is 0/ignored).
pub fn raw_esp(v6: bool) -> io::Result<UdpSocket> {
    let fam = if v6 { libc::AF_INET6 } else { libc::AF_INET };
    // SAFETY: plain socket(2); the fd is owned by OwnedFd right away.
    let fd = check(unsafe {
        libc::socket(
            fam,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::c_int::from(fs_esp::IPPROTO_ESP),
        )
    })?;
    // SAFETY: fd is a fresh, valid descriptor that nothing else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok(UdpSocket::from(owned))
}

/// A blocking read on a socket with `SO_RCVTIMEO` came back empty (timeout, or a signal):
/// not an error, the reader just checks for shutdown and reads again.
pub fn read_timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// Wait until `fd` is readable or `timeout_ms` passes.
pub fn poll_readable(fd: libc::c_int, timeout_ms: libc::c_int) {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll on one live pollfd struct; the result only tells us to retry the read.
    unsafe {
        libc::poll(&mut p, 1, timeout_ms);
    }
}

/// Socket buffer size for the data-plane sockets: large enough to absorb the bursts of a
/// TCP window while a worker is busy with crypto (the 208 KB default drops under load).
pub const SOCK_BUF: libc::c_int = 8 << 20;

/// Raise `fd`'s receive and send buffers to `size` bytes: `SO_*BUFFORCE` (ignores
/// `rmem_max`/`wmem_max`, needs CAP_NET_ADMIN), else the capped `SO_*BUF`. Best effort.
pub fn set_bufs(fd: libc::c_int, size: libc::c_int) {
    for (force, plain) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        for opt in [force, plain] {
            // SAFETY: setsockopt with a pointer to a live c_int and its exact size.
            let rc = unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    opt,
                    &size as *const libc::c_int as *const libc::c_void,
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc == 0 {
                break;
            }
        }
    }
}

/// `SO_MARK` on `fd` (needs CAP_NET_ADMIN): the fail-closed table lets packets with
/// [`crate::failclosed::FWMARK`] through, so the daemon's own IKE and ESP are never blocked.
pub fn set_mark(fd: libc::c_int, mark: u32) -> io::Result<()> {
    // SAFETY: setsockopt with a pointer to a live u32 and its exact size.
    check(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_MARK,
            &mark as *const u32 as *const libc::c_void,
            std::mem::size_of::<u32>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}
