//! Packet senders inside a namespace.

use crate::*;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{FromRawFd, OwnedFd};
use std::thread;
use std::time::Duration;

// ---------------------------------------------------------------------------------------
// senders (in a thread that entered the namespace)
// ---------------------------------------------------------------------------------------

/// Run `f` on a thread inside network namespace `ns`.
pub fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = ns.to_string();
    thread::spawn(move || {
        enter_netns(&ns).unwrap_or_else(|e| panic!("setns {ns}: {e}"));
        f()
    })
    .join()
    .expect("sender thread panicked")
}

/// Send one UDP datagram from namespace `ns` (ephemeral port) to `dst` and collect the
/// datagrams that come back within `wait` (none expected: pass a short wait).
pub fn udp_exchange(ns: &str, dst: SocketAddr, data: &[u8], wait: Duration) -> Vec<Vec<u8>> {
    let data = data.to_vec();
    in_ns(ns, move || {
        let any: SocketAddr = if dst.is_ipv4() {
            "0.0.0.0:0".parse().unwrap()
        } else {
            "[::]:0".parse().unwrap()
        };
        let s = UdpSocket::bind(any).expect("bind sender");
        s.send_to(&data, dst).expect("send_to");
        let mut got = Vec::new();
        if wait.is_zero() {
            return got;
        }
        s.set_read_timeout(Some(wait)).unwrap();
        let mut buf = vec![0u8; 65536];
        while let Ok((n, _)) = s.recv_from(&mut buf) {
            got.push(buf[..n].to_vec());
        }
        got
    })
}

/// Send `data` as the payload of a raw IP packet with protocol `proto` from namespace `ns`
/// to `dst` (the kernel builds the IP header with the namespace's source address).
pub fn raw_ip_send(ns: &str, proto: i32, dst: IpAddr, data: &[u8]) {
    let data = data.to_vec();
    in_ns(ns, move || {
        let fam = if dst.is_ipv4() {
            libc::AF_INET
        } else {
            libc::AF_INET6
        };
        // SAFETY: plain socket(2); the fd is owned by OwnedFd right away.
        let fd = unsafe { libc::socket(fam, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto) };
        assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
        // SAFETY: fresh descriptor, owned by nothing else.
        let s = UdpSocket::from(unsafe { OwnedFd::from_raw_fd(fd) });
        s.send_to(&data, SocketAddr::new(dst, 0))
            .expect("raw send_to");
    })
}
