//! IPv6 on the standard topology.

use crate::*;

// ---------------------------------------------------------------------------------------
// IPv6 on the standard topology
// ---------------------------------------------------------------------------------------

pub const HA_IP6: &str = "fd01::10";
pub const GA_IN6: &str = "fd01::1";
pub const NET_A6: &str = "fd01::/64";
pub const HB_IP6: &str = "fd02::10";
pub const GB_IN6: &str = "fd02::1";
pub const NET_B6: &str = "fd02::/64";
pub const GA_OUT6: &str = "2001:db8::1";
pub const GB_OUT6: &str = "2001:db8::2";

/// Turn IPv6 back on in the topology (it is disabled there) and give the inside links
/// fd01::/64 and fd02::/64; with `outer`, also 2001:db8::1/2 on the gateways' link. All
/// addresses `nodad` (usable at once). Gateways forward IPv6.
pub fn enable_ipv6(topo: &Topology, outer: bool) {
    let links: [(&String, &[&str]); 4] = [
        (&topo.ha, &["ha0"]),
        (&topo.ga, &["ga-in", "ga-out"]),
        (&topo.gb, &["gb-in", "gb-out"]),
        (&topo.hb, &["hb0"]),
    ];
    for (ns, devs) in links {
        let mut args = vec![
            "sysctl".to_string(),
            "-qw".into(),
            "net.ipv6.conf.all.disable_ipv6=0".into(),
            "net.ipv6.conf.default.disable_ipv6=0".into(),
        ];
        for d in devs {
            args.push(format!("net.ipv6.conf.{d}.disable_ipv6=0"));
        }
        let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        ns_must(ns, &a);
    }
    for ns in [&topo.ga, &topo.gb] {
        ns_must(ns, &["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
    }
    let ip = |ns: &str, args: &[&str]| {
        must(std::process::Command::new("ip").args(["-n", ns]).args(args));
    };
    let addr = |ns: &str, a: &str, dev: &str| {
        ip(
            ns,
            &["-6", "addr", "add", &format!("{a}/64"), "dev", dev, "nodad"],
        );
    };
    addr(&topo.ha, HA_IP6, "ha0");
    addr(&topo.ga, GA_IN6, "ga-in");
    addr(&topo.gb, GB_IN6, "gb-in");
    addr(&topo.hb, HB_IP6, "hb0");
    ip(&topo.ha, &["-6", "route", "add", "default", "via", GA_IN6]);
    ip(&topo.hb, &["-6", "route", "add", "default", "via", GB_IN6]);
    if outer {
        addr(&topo.ga, GA_OUT6, "ga-out");
        addr(&topo.gb, GB_OUT6, "gb-out");
    }
}
