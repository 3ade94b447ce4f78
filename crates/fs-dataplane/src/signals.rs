//! SIGINT/SIGTERM delivery to a dedicated thread (no async signal handlers): block the
//! signals in the calling thread before any other thread is spawned (threads inherit the
//! mask), then [`wait`] for them with `sigwait` on one thread.
use std::io;

fn term_set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data initialised by sigemptyset before use.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        set
    }
}

/// Block SIGINT and SIGTERM in the calling thread (and threads it spawns afterwards).
pub fn block_term_signals() -> io::Result<()> {
    let set = term_set();
    // SAFETY: pthread_sigmask with a valid set and no old-set pointer.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// Wait for SIGINT or SIGTERM (which must be blocked); returns the signal number.
pub fn wait() -> i32 {
    let set = term_set();
    let mut sig: libc::c_int = 0;
    loop {
        // SAFETY: sigwait with a valid set and a pointer to a live c_int.
        let rc = unsafe { libc::sigwait(&set, &mut sig) };
        if rc == 0 {
            return sig;
        }
    }
}
