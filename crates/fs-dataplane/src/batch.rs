//! Batched datagram receive (recvmmsg) for the ESP readers: one syscall for up to
//! `bufs.len()` packets.
use std::io;

/// Receive up to `bufs.len()` datagrams from `fd` into `bufs`, their lengths into `lens`.
/// Blocks (subject to SO_RCVTIMEO) for the first one only (MSG_WAITFORONE). Truncated
/// datagrams get length 0 (callers drop them). Returns how many were received.
pub fn recv_batch(fd: libc::c_int, bufs: &mut [Vec<u8>], lens: &mut [usize]) -> io::Result<usize> {
    let n = bufs.len().min(lens.len()).min(64);
    let mut iov: [libc::iovec; 64] = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; 64];
    // SAFETY: mmsghdr is plain old data; all-zero (null pointers, zero lengths) is valid.
    let mut msgs: [libc::mmsghdr; 64] = unsafe { std::mem::zeroed() };
    for i in 0..n {
        iov[i].iov_base = bufs[i].as_mut_ptr() as *mut libc::c_void;
        iov[i].iov_len = bufs[i].len();
        msgs[i].msg_hdr.msg_iov = &mut iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: recvmmsg on `n` headers whose iovecs point into live, exclusively borrowed
    // buffers of the stated lengths; the kernel writes at most iov_len bytes into each.
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
    for i in 0..got {
        lens[i] = if msgs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
            0
        } else {
            msgs[i].msg_len as usize
        };
    }
    Ok(got)
}
