//! Routes towards the TUN device, via the `ip` command (iproute2) of the current namespace.
use ipnet::IpNet;
use std::io;
use std::net::IpAddr;
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
    replace_mtu(net, dev, None)
}

/// `ip route replace NET dev DEV [mtu MTU]`: with a route MTU the kernel answers oversized
/// DF packets itself (ICMP frag-needed / packet-too-big) and local TCP derives its MSS from it.
pub fn replace_mtu(net: IpNet, dev: &str, mtu: Option<u32>) -> io::Result<()> {
    let fam = if net.addr().is_ipv6() { "-6" } else { "-4" };
    let net_s = net.to_string();
    let mtu_s = mtu.map(|m| m.to_string());
    let mut args = vec![fam, "route", "replace", net_s.as_str(), "dev", dev];
    if let Some(m) = &mtu_s {
        args.extend(["mtu", m.as_str()]);
    }
    ip(&args)
}

/// The MTU of the interface the kernel would use to reach `dst` (`ip -o route get DST`,
/// then `ip -o link show dev DEV`), and that interface's name.
pub fn egress_mtu(dst: IpAddr) -> io::Result<(String, u32)> {
    let out = Command::new("ip")
        .args(["-o", "route", "get", &dst.to_string()])
        .output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "ip route get {dst}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut words = text.split_whitespace();
    let dev = words
        .by_ref()
        .skip_while(|w| *w != "dev")
        .nth(1)
        .ok_or_else(|| io::Error::other(format!("ip route get {dst}: no device in {text:?}")))?
        .to_string();
    // A route MTU (`mtu N` / `mtu lock N`) overrides the device's.
    let route_mtu = text
        .split_whitespace()
        .skip_while(|w| *w != "mtu")
        .skip(1)
        .find(|w| *w != "lock")
        .and_then(|w| w.parse::<u32>().ok());
    let link = Command::new("ip")
        .args(["-o", "link", "show", "dev", &dev])
        .output()?;
    let ltext = String::from_utf8_lossy(&link.stdout);
    let dev_mtu = ltext
        .split_whitespace()
        .skip_while(|w| *w != "mtu")
        .nth(1)
        .and_then(|w| w.parse::<u32>().ok())
        .ok_or_else(|| io::Error::other(format!("ip link show dev {dev}: no mtu in {ltext:?}")))?;
    Ok((dev, route_mtu.map_or(dev_mtu, |r| r.min(dev_mtu))))
}

/// `ip route del NET dev DEV`.
pub fn delete(net: IpNet, dev: &str) -> io::Result<()> {
    let fam = if net.addr().is_ipv6() { "-6" } else { "-4" };
    ip(&[fam, "route", "del", &net.to_string(), "dev", dev])
}
