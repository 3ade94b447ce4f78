//! Routes towards the TUN device, via the `ip` command (iproute2) of the current namespace.
use ipnet::IpNet;
use std::io;
use std::process::Command;

fn ip(args: &[&str]) -> io::Result<()> {
    let out = Command::new("ip").args(args).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// `ip route replace NET dev DEV`.
pub fn replace(net: IpNet, dev: &str) -> io::Result<()> {
    let fam = if net.addr().is_ipv6() { "-6" } else { "-4" };
    ip(&[fam, "route", "replace", &net.to_string(), "dev", dev])
}

/// `ip route del NET dev DEV`.
pub fn delete(net: IpNet, dev: &str) -> io::Result<()> {
    let fam = if net.addr().is_ipv6() { "-6" } else { "-4" };
    ip(&[fam, "route", "del", &net.to_string(), "dev", dev])
}
