//! Fail-closed state that outlives the daemon: one nftables table per TUN device.
//!
//! While the daemon runs, routes pull the traffic of every configured child into the TUN
//! device, where the data plane encrypts it or drops it (`no_sa`). Those routes die with the
//! TUN device (SIGKILL, panic, clean exit), and the kernel would then forward the same packets
//! by its other routes (a default route towards the Internet) in clear. The table installed
//! here closes that gap: it drops, in the `output` and `forward` hooks, every packet that
//! matches a child's selectors (local_ts -> remote_ts) and does *not* leave through the TUN
//! device; and in `input` and `forward` every packet that matches the reverse selectors and
//! did not come in through the TUN device (cleartext injected from outside). The daemon's own
//! IKE and ESP packets carry [`FWMARK`] (`SO_MARK`) and are exempt, as are inbound ESP and
//! IKE ports, so selectors that cover the gateways' own addresses do not cut the control
//! channel.
//!
//! The table is kernel state: it stays when the process dies and is replaced atomically (one
//! nftables transaction: add, delete, add again with the new rules) at the next start from the
//! then current config, so it is found and reused, never duplicated. It goes away only through
//! [`remove`] (`ferroswan unblock`) or when the config no longer has any child.
//!
//! nftables is driven through the `nftables` crate (JSON API of the `nft` binary).
use fs_wire::ts::TrafficSelector;
use nftables::{batch::Batch, expr, helper, schema, stmt, types};
use std::borrow::Cow;
use std::io;
use std::net::IpAddr;

/// `SO_MARK` on the daemon's own UDP and raw ESP sockets: packets with it pass the table.
pub const FWMARK: u32 = 0x0f5e_0001;

/// One configured child's selectors, as blocked outside the tunnel.
#[derive(Clone, Debug)]
pub struct BlockedChild {
    /// `conn/child`, written as the rules' comment.
    pub name: String,
    pub local_ts: Vec<TrafficSelector>,
    pub remote_ts: Vec<TrafficSelector>,
}

/// What the fail-closed table is built from.
#[derive(Clone, Debug)]
pub struct FailClosed {
    /// TUN device name: the only way out for protected traffic.
    pub tun: String,
    /// Local IKE and NAT-T ports (inbound IKE / ESP-in-UDP stays reachable).
    pub ike_ports: [u16; 2],
    pub children: Vec<BlockedChild>,
}

/// The nftables table (family `inet`) that holds the state for TUN device `tun`.
pub fn table_name(tun: &str) -> String {
    format!(
        "ferroswan_{}",
        tun.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    )
}

const CHAINS: [(&str, types::NfHook); 3] = [
    ("out", types::NfHook::Output),
    ("fwd", types::NfHook::Forward),
    ("in", types::NfHook::Input),
];

impl FailClosed {
    /// The drop rules: (outbound: local -> remote, inbound: remote -> local) per selector pair
    /// of one address family.
    fn pairs(&self) -> impl Iterator<Item = (&str, &TrafficSelector, &TrafficSelector)> {
        self.children.iter().flat_map(|c| {
            c.local_ts.iter().flat_map(move |l| {
                c.remote_ts
                    .iter()
                    .filter(move |r| r.start.is_ipv4() == l.start.is_ipv4())
                    .map(move |r| (c.name.as_str(), l, r))
            })
        })
    }

    /// Number of selector pairs blocked (rules per direction).
    pub fn pair_count(&self) -> usize {
        self.pairs().count()
    }

    /// The whole table as one nftables transaction: create it (so that the delete cannot
    /// fail), delete it with whatever an earlier run left, and create it again.
    fn batch(&self) -> Batch<'static> {
        let table = table_name(&self.tun);
        let mut b = Batch::new();
        let tbl = || schema::Table {
            family: types::NfFamily::INet,
            name: Cow::Owned(table.clone()),
            handle: None,
        };
        b.add(schema::NfListObject::Table(tbl()));
        b.delete(schema::NfListObject::Table(tbl()));
        b.add(schema::NfListObject::Table(tbl()));
        for (name, hook) in CHAINS {
            b.add(schema::NfListObject::Chain(schema::Chain {
                family: types::NfFamily::INet,
                table: Cow::Owned(table.clone()),
                name: Cow::Borrowed(name),
                _type: Some(types::NfChainType::Filter),
                hook: Some(hook),
                prio: Some(0),
                policy: Some(types::NfChainPolicy::Accept),
                ..Default::default()
            }));
        }
        let rule = |chain: &'static str, expr: Vec<stmt::Statement<'static>>, comment: &str| {
            schema::NfListObject::Rule(schema::Rule {
                family: types::NfFamily::INet,
                table: Cow::Owned(table.clone()),
                chain: Cow::Borrowed(chain),
                expr: Cow::Owned(expr),
                handle: None,
                index: None,
                comment: (!comment.is_empty()).then(|| Cow::Owned(comment.to_string())),
            })
        };
        let tun = self.tun.clone();
        let accept = || stmt::Statement::Accept(None);
        // Exemptions first.
        b.add(rule(
            "out",
            vec![meta_eq(expr::MetaKey::Oifname, &tun), accept()],
            "",
        ));
        b.add(rule(
            "out",
            vec![mark_eq(FWMARK), accept()],
            "ferroswan's own IKE/ESP",
        ));
        b.add(rule(
            "fwd",
            vec![meta_eq(expr::MetaKey::Oifname, &tun), accept()],
            "",
        ));
        b.add(rule(
            "fwd",
            vec![meta_eq(expr::MetaKey::Iifname, &tun), accept()],
            "",
        ));
        b.add(rule(
            "in",
            vec![meta_eq(expr::MetaKey::Iifname, &tun), accept()],
            "",
        ));
        b.add(rule("in", vec![l4proto_eq(50), accept()], "ESP"));
        for port in self.ike_ports.iter().filter(|p| **p != 0) {
            b.add(rule(
                "in",
                vec![udp_dport(*port), accept()],
                "IKE / ESP in UDP",
            ));
        }
        for (name, l, r) in self.pairs() {
            let out = selector_match(l, r);
            let back = selector_match(r, l);
            for (chain, m) in [("out", &out), ("fwd", &out), ("fwd", &back), ("in", &back)] {
                let mut e = m.clone();
                e.push(stmt::Statement::Counter(stmt::Counter::Anonymous(None)));
                e.push(stmt::Statement::Drop(None));
                b.add(rule(chain, e, name));
            }
        }
        b
    }
}

fn matches(
    left: expr::Expression<'static>,
    right: expr::Expression<'static>,
) -> stmt::Statement<'static> {
    stmt::Statement::Match(stmt::Match {
        left,
        right,
        op: stmt::Operator::EQ,
    })
}

fn meta(key: expr::MetaKey) -> expr::Expression<'static> {
    expr::Expression::Named(expr::NamedExpression::Meta(expr::Meta { key }))
}

fn meta_eq(key: expr::MetaKey, s: &str) -> stmt::Statement<'static> {
    matches(
        meta(key),
        expr::Expression::String(Cow::Owned(s.to_string())),
    )
}

fn mark_eq(mark: u32) -> stmt::Statement<'static> {
    matches(meta(expr::MetaKey::Mark), expr::Expression::Number(mark))
}

fn l4proto_eq(p: u8) -> stmt::Statement<'static> {
    matches(
        meta(expr::MetaKey::L4proto),
        expr::Expression::Number(u32::from(p)),
    )
}

fn payload(protocol: &'static str, field: &'static str) -> expr::Expression<'static> {
    expr::Expression::Named(expr::NamedExpression::Payload(expr::Payload::PayloadField(
        expr::PayloadField {
            protocol: Cow::Borrowed(protocol),
            field: Cow::Borrowed(field),
        },
    )))
}

fn udp_dport(port: u16) -> stmt::Statement<'static> {
    matches(
        payload("udp", "dport"),
        expr::Expression::Number(u32::from(port)),
    )
}

/// `a` or `a-b` (inclusive) as an nftables value.
fn range<T: ToString + PartialEq>(
    a: T,
    b: T,
    num: impl Fn(T) -> expr::Expression<'static>,
) -> expr::Expression<'static> {
    if a == b {
        num(a)
    } else {
        expr::Expression::Range(Box::new(expr::Range {
            range: [num(a), num(b)],
        }))
    }
}

fn addr_range(ts: &TrafficSelector) -> expr::Expression<'static> {
    if let Some(net) = ts.to_net() {
        return expr::Expression::Named(expr::NamedExpression::Prefix(expr::Prefix {
            addr: Box::new(expr::Expression::String(Cow::Owned(
                net.network().to_string(),
            ))),
            len: u32::from(net.prefix_len()),
        }));
    }
    range(ts.start, ts.end, |a: IpAddr| {
        expr::Expression::String(Cow::Owned(a.to_string()))
    })
}

/// Protocols whose selector ports are ports (for ICMP they are type/code: not matched, so
/// the rule covers more, never less, than the child).
fn has_ports(proto: u8) -> bool {
    matches!(proto, 6 | 17 | 132 | 33 | 136)
}

/// Statements matching packets from `src` to `dst` (addresses, protocol, ports).
fn selector_match(src: &TrafficSelector, dst: &TrafficSelector) -> Vec<stmt::Statement<'static>> {
    let ipp = if src.start.is_ipv4() { "ip" } else { "ip6" };
    let mut v = vec![
        matches(payload(ipp, "saddr"), addr_range(src)),
        matches(payload(ipp, "daddr"), addr_range(dst)),
    ];
    // Either side may name the protocol (0 = any); narrowed selectors agree on it.
    let proto = if src.protocol != 0 {
        src.protocol
    } else {
        dst.protocol
    };
    if proto != 0 {
        v.push(l4proto_eq(proto));
        if has_ports(proto) {
            let port = |p: u16| expr::Expression::Number(u32::from(p));
            for (ts, field) in [(src, "sport"), (dst, "dport")] {
                if !(ts.start_port == 0 && ts.end_port == u16::MAX) {
                    v.push(matches(
                        payload("th", field),
                        range(ts.start_port, ts.end_port, port),
                    ));
                }
            }
        }
    }
    v
}

fn nft_err(e: nftables::helper::NftablesError) -> io::Error {
    io::Error::other(format!("nft: {e}"))
}

/// Install (or atomically replace) the table for `fc.tun`. With no child, the table is removed
/// instead (nothing to protect). Returns the number of selector pairs blocked.
pub fn install(fc: &FailClosed) -> io::Result<usize> {
    if fc
        .children
        .iter()
        .all(|c| c.local_ts.is_empty() || c.remote_ts.is_empty())
    {
        remove(&fc.tun)?;
        return Ok(0);
    }
    helper::apply_ruleset(&fc.batch().to_nftables()).map_err(nft_err)?;
    Ok(fc.pair_count())
}

/// Remove the table for TUN device `tun`; `Ok(false)` if there was none.
pub fn remove(tun: &str) -> io::Result<bool> {
    let table = table_name(tun);
    if !exists(tun)? {
        return Ok(false);
    }
    let mut b = Batch::new();
    b.delete(schema::NfListObject::Table(schema::Table {
        family: types::NfFamily::INet,
        name: Cow::Owned(table),
        handle: None,
    }));
    helper::apply_ruleset(&b.to_nftables()).map_err(nft_err)?;
    Ok(true)
}

/// Whether the table for TUN device `tun` exists.
pub fn exists(tun: &str) -> io::Result<bool> {
    let table = table_name(tun);
    let out = std::process::Command::new("nft")
        .args(["list", "table", "inet", &table])
        .output()?;
    Ok(out.status.success())
}

/// Packets dropped by the table so far (sum of its rule counters); `None` without table.
pub fn dropped_packets(tun: &str) -> io::Result<Option<u64>> {
    let table = table_name(tun);
    let out = std::process::Command::new("nft")
        .args(["-j", "list", "table", "inet", &table])
        .output()?;
    if !out.status.success() {
        return Ok(None);
    }
    let rs: schema::Nftables = serde_json::from_slice(&out.stdout)
        .map_err(|e| io::Error::other(format!("nft -j: {e}")))?;
    let mut n = 0u64;
    for o in rs.objects.iter() {
        if let schema::NfObject::ListObject(schema::NfListObject::Rule(r)) = o {
            for s in r.expr.iter() {
                if let stmt::Statement::Counter(stmt::Counter::Anonymous(Some(c))) = s {
                    let p = c.packets.unwrap_or(0);
                    n = n.saturating_add(u64::try_from(p).unwrap_or(u64::MAX));
                }
            }
        }
    }
    Ok(Some(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> TrafficSelector {
        s.parse().unwrap()
    }

    fn fc() -> FailClosed {
        FailClosed {
            tun: "fs0".into(),
            ike_ports: [500, 4500],
            children: vec![BlockedChild {
                name: "s2s/net".into(),
                local_ts: vec![ts("192.168.1.0/24"), ts("fd01::/64")],
                remote_ts: vec![ts("192.168.2.0/24"), ts("fd02::/64")],
            }],
        }
    }

    #[test]
    fn pairs_only_within_a_family() {
        let f = fc();
        assert_eq!(f.pair_count(), 2);
        let json = serde_json::to_string(&f.batch().to_nftables()).unwrap();
        assert!(json.contains("\"192.168.2.0\""), "{json}");
        assert!(json.contains("\"fd02::\""), "{json}");
        assert!(json.contains("ferroswan_fs0"), "{json}");
        // 4 drop rules (out, fwd out, fwd back, in) per pair
        assert_eq!(json.matches("\"drop\"").count(), 8, "{json}");
    }

    #[test]
    fn table_names_are_identifiers() {
        assert_eq!(table_name("fs0"), "ferroswan_fs0");
        assert_eq!(table_name("vpn-a.1"), "ferroswan_vpn_a_1");
    }

    #[test]
    fn ports_and_protocol_narrow_the_rule() {
        let mut l = ts("10.0.0.1/32");
        l.protocol = 6;
        let mut r = ts("10.0.0.2/32");
        r.protocol = 6;
        r.start_port = 22;
        r.end_port = 22;
        let m = serde_json::to_string(&selector_match(&l, &r)).unwrap();
        assert!(m.contains("\"dport\""), "{m}");
        assert!(!m.contains("\"sport\""), "{m}");
        assert!(m.contains("l4proto"), "{m}");
    }

    /// Install, reinstall (replaced, not duplicated), count and remove the table in a
    /// namespace of its own. Needs root and `nft` (skipped otherwise, failed under CI).
    #[test]
    fn install_replace_remove_in_a_namespace() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 && std::env::var_os("CI").is_none() {
            eprintln!("skipped: not root");
            return;
        }
        let ns = format!("fsfc-{}", std::process::id());
        let ip = |args: &[&str]| {
            std::process::Command::new("ip")
                .args(args)
                .status()
                .map(|s| s.success())
        };
        assert_eq!(ip(&["netns", "add", &ns]).ok(), Some(true), "ip netns add");
        struct Del(String);
        impl Drop for Del {
            fn drop(&mut self) {
                let _ = std::process::Command::new("ip")
                    .args(["netns", "del", &self.0])
                    .status();
            }
        }
        let _guard = Del(ns.clone());
        let ns2 = ns.clone();
        let r = std::thread::spawn(move || -> Result<String, String> {
            crate::netns::enter(&ns2).map_err(|e| e.to_string())?;
            let f = fc();
            assert_eq!(install(&f).map_err(|e| e.to_string())?, 2);
            assert_eq!(install(&f).map_err(|e| e.to_string())?, 2);
            let out = std::process::Command::new("nft")
                .args(["list", "ruleset"])
                .output()
                .map_err(|e| e.to_string())?;
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            if dropped_packets("fs0").map_err(|e| e.to_string())? != Some(0) {
                return Err("counters".into());
            }
            if !remove("fs0").map_err(|e| e.to_string())? || exists("fs0").unwrap_or(true) {
                return Err("not removed".into());
            }
            if remove("fs0").map_err(|e| e.to_string())? {
                return Err("removed twice".into());
            }
            Ok(text)
        })
        .join()
        .expect("thread");
        let text = r.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            text.matches("table inet ferroswan_fs0").count(),
            1,
            "{text}"
        );
        assert_eq!(text.matches("drop").count(), 8, "{text}");
        assert!(text.contains("oifname \"fs0\" accept"), "{text}");
        assert!(
            text.contains("ip saddr 192.168.1.0/24 ip daddr 192.168.2.0/24"),
            "{text}"
        );
    }
}
