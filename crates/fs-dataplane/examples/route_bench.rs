//! Time N route replace + delete pairs through `fs_dataplane::route` in a namespace of its
//! own (`nlbench-PID`, a veth pair `nlb0`/`nlb1`), IPv4 and IPv6 alternately, then N
//! `egress_mtu` lookups through a route with an MTU. The pairs are timed twice: with the free
//! functions (a socket per call) and on one `route::Rtnl` (as the daemon does).
//! Needs root and iproute2 (for the namespace and the veth only).
//!
//! `cargo run --release -p fs-dataplane --example route_bench [-- N]` (N defaults to 1000).
use fs_dataplane::route;
use ipnet::IpNet;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::Command;
use std::time::Instant;

fn ip(args: &[&str]) -> Result<(), String> {
    let s = Command::new("ip")
        .args(args)
        .status()
        .map_err(|e| format!("ip {args:?}: {e}"))?;
    if s.success() {
        Ok(())
    } else {
        Err(format!("ip {args:?}: {s}"))
    }
}

struct Netns(String);
impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn main() -> Result<(), String> {
    let n: u32 = std::env::args()
        .nth(1)
        .map_or(Ok(1000), |a| a.parse())
        .map_err(|e| format!("N: {e}"))?;
    let ns = Netns(format!("nlbench-{}", std::process::id()));
    ip(&["netns", "add", &ns.0])?;
    ip(&[
        "-n", &ns.0, "link", "add", "nlb0", "type", "veth", "peer", "name", "nlb1",
    ])?;
    ip(&["-n", &ns.0, "link", "set", "nlb0", "up"])?;
    let name = ns.0.clone();
    let t = std::thread::spawn(move || -> Result<(f64, f64, f64), String> {
        fs_dataplane::netns::enter(&name).map_err(|e| e.to_string())?;
        let start = Instant::now();
        for i in 0..n {
            let b = i.to_be_bytes();
            let net: IpNet = if i % 2 == 0 {
                IpNet::new(Ipv4Addr::new(10, b[1], b[2], b[3] & 0xf0).into(), 28)
            } else {
                let a = Ipv6Addr::new(0xfd00, 0, u16::from(b[2]), u16::from(b[3]), 0, 0, 0, 0);
                IpNet::new(a.into(), 64)
            }
            .map_err(|e| e.to_string())?;
            route::replace_mtu(net, "nlb0", Some(1400)).map_err(|e| format!("{net}: {e}"))?;
            route::delete(net, "nlb0").map_err(|e| format!("{net}: {e}"))?;
        }
        let pairs = start.elapsed().as_secs_f64();
        // The same on one socket, as the daemon does.
        let nl = route::Rtnl::open().map_err(|e| e.to_string())?;
        let start = Instant::now();
        for i in 0..n {
            let b = i.to_be_bytes();
            let net: IpNet = if i % 2 == 0 {
                IpNet::new(Ipv4Addr::new(10, b[1], b[2], b[3] & 0xf0).into(), 28)
            } else {
                let a = Ipv6Addr::new(0xfd00, 0, u16::from(b[2]), u16::from(b[3]), 0, 0, 0, 0);
                IpNet::new(a.into(), 64)
            }
            .map_err(|e| e.to_string())?;
            nl.replace_mtu(net, "nlb0", Some(1400))
                .map_err(|e| format!("{net}: {e}"))?;
            nl.delete(net, "nlb0").map_err(|e| format!("{net}: {e}"))?;
        }
        let pairs_one = start.elapsed().as_secs_f64();
        let net: IpNet = "10.200.0.0/16".parse().map_err(|e| format!("{e}"))?;
        route::replace_mtu(net, "nlb0", Some(1300)).map_err(|e| e.to_string())?;
        let dst = "10.200.1.1".parse().map_err(|e| format!("{e}"))?;
        let start = Instant::now();
        for _ in 0..n {
            let (dev, mtu) = route::egress_mtu(dst).map_err(|e| e.to_string())?;
            if dev != "nlb0" || mtu != 1300 {
                return Err(format!("egress_mtu {dst}: {dev} {mtu}"));
            }
        }
        Ok((pairs, pairs_one, start.elapsed().as_secs_f64()))
    });
    let (secs, one, lookups) = t.join().map_err(|_| "thread panicked".to_string())??;
    let per = |s: f64| s * 1e6 / f64::from(n.max(1));
    println!(
        "{n} replace+delete pairs: {secs:.3} s total, {:.1} us per pair",
        per(secs)
    );
    println!(
        "{n} replace+delete pairs on one Rtnl socket: {one:.3} s total, {:.1} us per pair",
        per(one)
    );
    println!(
        "{n} egress_mtu lookups: {lookups:.3} s total, {:.1} us per lookup",
        per(lookups)
    );
    Ok(())
}
