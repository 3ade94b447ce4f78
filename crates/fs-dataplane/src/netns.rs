//! Network namespaces: move the calling thread into a named namespace (`ip netns add NAME`).
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// Move the calling thread into the network namespace `/var/run/netns/NAME`. Sockets, TUN
/// devices and threads created by this thread afterwards belong to that namespace.
pub fn enter(name: &str) -> io::Result<()> {
    if name.is_empty() || name.contains('/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "invalid namespace name",
        ));
    }
    let f = File::open(format!("/var/run/netns/{name}"))?;
    // SAFETY: setns(2) on a valid open fd; only changes this thread's namespace.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
