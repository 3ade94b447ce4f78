//! Least privilege for `ferroswan run`: once the fail-closed table, the TUN device and the
//! sockets exist (and before any thread is spawned: Linux keeps capabilities per thread),
//! the daemon keeps only what it needs at run time and cannot gain more:
//! - capabilities: only `CAP_NET_ADMIN` (routes towards the TUN device, changed over rtnetlink
//!   as SAs come and go) in the effective, permitted, inheritable and ambient sets; every
//!   other one is also dropped from the bounding set, so the `nft` commands it runs get no
//!   more either;
//! - `no_new_privs`: no exec can raise privileges (setuid binaries, file capabilities);
//! - optionally `[daemon] user`: switch to that user and its group (supplementary groups
//!   cleared), keeping `CAP_NET_ADMIN` across the switch.
//!
//! Done with the `caps` crate (capability sets) and libc (`prctl`, `setuid`, `getpwnam_r`).
use caps::{CapSet, Capability, CapsHashSet};
use std::ffi::CString;
use std::io;

/// Capabilities kept at run time.
pub const KEEP: [Capability; 1] = [Capability::CAP_NET_ADMIN];

fn caps_err(what: &str, e: caps::errors::CapsError) -> io::Error {
    io::Error::other(format!("{what}: {e}"))
}

fn check(rc: libc::c_int, what: &str) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        let e = io::Error::last_os_error();
        Err(io::Error::new(e.kind(), format!("{what}: {e}")))
    }
}

/// `(uid, gid)` of user `name` from the passwd database.
fn lookup_user(name: &str) -> io::Result<(libc::uid_t, libc::gid_t)> {
    let c = CString::new(name).map_err(|_| io::Error::other("user name contains NUL"))?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: passwd is plain old data; all-zero is a valid value to be filled in.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut res: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: all pointers are live for the call; buf's length is passed.
    let rc =
        unsafe { libc::getpwnam_r(c.as_ptr(), &mut pw, buf.as_mut_ptr(), buf.len(), &mut res) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    if res.is_null() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no user {name:?}"),
        ));
    }
    Ok((pw.pw_uid, pw.pw_gid))
}

/// Drop to [`KEEP`] (and to `user`, if given) for this thread and every thread and process
/// it creates afterwards; set `no_new_privs`.
pub fn drop_privileges(user: Option<&str>) -> io::Result<()> {
    let keep: CapsHashSet = KEEP.into_iter().collect();
    // The bounding set first: dropping from it needs CAP_SETPCAP, which the user switch ends.
    for c in caps::all() {
        if !keep.contains(&c) {
            caps::drop(None, CapSet::Bounding, c).map_err(|e| caps_err("bounding set", e))?;
        }
    }
    if let Some(name) = user {
        let (uid, gid) = lookup_user(name)?;
        // SAFETY: prctl/setgroups/setgid/setuid with plain integer arguments.
        unsafe {
            // Keep the permitted set across setuid (the effective one is cleared: set below).
            check(
                libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0),
                "PR_SET_KEEPCAPS",
            )?;
            check(libc::setgroups(0, std::ptr::null()), "setgroups")?;
            check(libc::setgid(gid), "setgid")?;
            check(libc::setuid(uid), "setuid")?;
        }
    }
    caps::set(None, CapSet::Effective, &keep).map_err(|e| caps_err("effective set", e))?;
    caps::set(None, CapSet::Inheritable, &keep).map_err(|e| caps_err("inheritable set", e))?;
    caps::set(None, CapSet::Permitted, &keep).map_err(|e| caps_err("permitted set", e))?;
    // Ambient: the `nft` commands keep CAP_NET_ADMIN also when we are not root (routes go
    // over rtnetlink from this process: the effective set is enough for them).
    caps::set(None, CapSet::Ambient, &keep).map_err(|e| caps_err("ambient set", e))?;
    // SAFETY: prctl with plain integer arguments.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    check(rc, "PR_SET_NO_NEW_PRIVS")?;
    Ok(())
}
