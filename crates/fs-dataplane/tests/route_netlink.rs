//! Routes over rtnetlink in a namespace of its own (`nl-route-PID`, a veth pair `nlv0`/`nlv1`):
//! install, replace with and without an MTU, and delete IPv4 and IPv6 routes, read back with
//! `ip route show` (and compared with what `ip route replace` itself installs); `egress_mtu`
//! through routes with and without an MTU. Needs root and iproute2; skipped otherwise (failed
//! under CI).
use fs_dataplane::route::{self, RouteError, Rtnl};
use ipnet::IpNet;
use std::process::Command;

const DEV: &str = "nlv0";

fn can_run() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    root && Command::new("ip").arg("-V").output().is_ok()
}

fn ip(ns: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(["-n", ns])
        .args(args)
        .output()
        .map_err(|e| format!("ip {args:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip route show NET` without trailing blanks, one route per line.
fn show(ns: &str, net: &str) -> String {
    let fam = if net.contains(':') { "-6" } else { "-4" };
    ip(ns, &[fam, "route", "show", net])
        .unwrap_or_else(|e| e)
        .lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Deletes the namespace (and with it the veth pair) on drop, even when the test fails.
struct NsGuard(String);
impl Drop for NsGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

fn setup(tag: &str) -> Option<NsGuard> {
    if !can_run() {
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
        assert!(!ci, "CI is set, refusing to skip: needs root and iproute2");
        eprintln!("skipped: needs root and iproute2");
        return None;
    }
    let g = NsGuard(format!("nl-{tag}-{}", std::process::id()));
    let ns = g.0.as_str();
    let _ = Command::new("ip").args(["netns", "del", ns]).output();
    Command::new("ip")
        .args(["netns", "add", ns])
        .status()
        .ok()
        .filter(|s| s.success())
        .expect("ip netns add");
    ip(
        ns,
        &["link", "add", DEV, "type", "veth", "peer", "name", "nlv1"],
    )
    .unwrap();
    ip(ns, &["link", "set", DEV, "mtu", "1450", "up"]).unwrap();
    ip(ns, &["link", "set", "nlv1", "up"]).unwrap();
    ip(ns, &["link", "set", "lo", "up"]).unwrap();
    Some(g)
}

/// Run `f` on a thread that entered namespace `ns`.
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        fs_dataplane::netns::enter(&ns).expect("setns");
        f()
    })
    .join()
    .unwrap_or_else(|p| std::panic::resume_unwind(p))
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

#[test]
fn replace_and_delete_v4_and_v6_routes() {
    let Some(g) = setup("route") else { return };
    let ns = g.0.clone();
    in_ns(&ns.clone(), move || {
        let ns = ns.as_str();
        for (n, twin, first, with_mtu) in [
            (
                "10.77.0.0/24",
                "10.76.0.0/24",
                "10.77.0.0/24 dev nlv0 scope link",
                "10.77.0.0/24 dev nlv0 scope link mtu 1400",
            ),
            (
                "fd77::/64",
                "fd76::/64",
                "fd77::/64 dev nlv0 metric 1024 pref medium",
                "fd77::/64 dev nlv0 metric 1024 mtu 1400 pref medium",
            ),
        ] {
            // The free functions (a socket per call).
            route::replace(net(n), DEV).unwrap();
            assert_eq!(show(ns, n), first);
            route::replace_mtu(net(n), DEV, Some(1400)).unwrap();
            assert_eq!(show(ns, n), with_mtu, "replaced, not added");
            // The same as what iproute2 installs for the same command.
            ip(ns, &["route", "replace", twin, "dev", DEV, "mtu", "1400"]).unwrap();
            assert_eq!(show(ns, twin).replace(twin, n), with_mtu);
            route::replace_mtu(net(n), DEV, None).unwrap();
            assert_eq!(show(ns, n), first, "MTU gone with a replace without one");
            route::delete(net(n), DEV).unwrap();
            assert_eq!(show(ns, n), "");
            let e = route::delete(net(n), DEV).unwrap_err();
            assert_eq!(e.errno(), Some(libc::ESRCH), "{e}");
            assert!(
                e.to_string()
                    .contains(&format!("ip route del {n} dev nlv0")),
                "{e}"
            );

            // One socket for many changes.
            let nl = Rtnl::open().unwrap();
            for mtu in [Some(1300), None, Some(1280), Some(1280)] {
                nl.replace_mtu(net(n), DEV, mtu).unwrap();
                let shown = show(ns, n);
                assert_eq!(shown.lines().count(), 1, "{shown}");
                match mtu {
                    Some(m) => assert!(shown.contains(&format!(" mtu {m}")), "{shown}"),
                    None => assert_eq!(shown, first),
                }
            }
            nl.delete(net(n), DEV).unwrap();
            assert_eq!(show(ns, n), "");
            ip(ns, &["route", "del", twin, "dev", DEV]).unwrap();
        }
        // An unknown device is refused before anything is sent for the route.
        let e = route::replace(net("10.78.0.0/24"), "nlnone").unwrap_err();
        assert!(matches!(e, RouteError::Refused { .. }), "{e}");
        assert_eq!(e.errno(), Some(libc::ENODEV), "{e}");
        assert!(
            e.to_string().starts_with("ip link show dev nlnone: "),
            "{e}"
        );
    });
}

#[test]
fn egress_mtu_takes_the_route_mtu_over_the_device_mtu() {
    let Some(g) = setup("egress") else { return };
    let ns = g.0.clone();
    ip(&ns, &["addr", "add", "10.80.0.1/24", "dev", DEV]).unwrap();
    ip(
        &ns,
        &["-6", "addr", "add", "fd80::1/64", "dev", DEV, "nodad"],
    )
    .unwrap();
    in_ns(&ns.clone(), move || {
        let ns = ns.as_str();
        let nl = Rtnl::open().unwrap();
        // The connected routes: the device's MTU.
        for dst in ["10.80.0.2", "fd80::2"] {
            assert_eq!(
                nl.egress_mtu(dst.parse().unwrap()).unwrap(),
                (DEV.to_string(), 1450),
                "{dst}"
            );
        }
        // A route MTU below the device's wins; above it, the device's.
        for (n, dst) in [("10.81.0.0/16", "10.81.1.1"), ("fd81::/48", "fd81::1")] {
            nl.replace_mtu(net(n), DEV, Some(1300)).unwrap();
            assert_eq!(
                route::egress_mtu(dst.parse().unwrap()).unwrap(),
                (DEV.into(), 1300)
            );
            nl.replace_mtu(net(n), DEV, Some(9000)).unwrap();
            assert_eq!(
                nl.egress_mtu(dst.parse().unwrap()).unwrap(),
                (DEV.into(), 1450)
            );
            nl.replace_mtu(net(n), DEV, None).unwrap();
            assert_eq!(
                nl.egress_mtu(dst.parse().unwrap()).unwrap(),
                (DEV.into(), 1450)
            );
        }
        // `mtu lock` (set by iproute2) is read as well.
        ip(
            ns,
            &[
                "route",
                "replace",
                "10.82.0.0/16",
                "dev",
                DEV,
                "mtu",
                "lock",
                "1280",
            ],
        )
        .unwrap();
        assert_eq!(
            nl.egress_mtu("10.82.0.9".parse().unwrap()).unwrap(),
            (DEV.into(), 1280)
        );
        // No route: refused (network unreachable), not a panic or a guess.
        let e = nl.egress_mtu("192.0.2.1".parse().unwrap()).unwrap_err();
        assert_eq!(e.errno(), Some(libc::ENETUNREACH), "{e}");
    });
}
