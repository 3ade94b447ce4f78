//! The TUN MTU: fixed, or derived from the egress interface towards the peers minus the
//! worst-case ESP overhead over all configured proposals (`tun_mtu = "auto"`).
use super::{FileConfig, TunMtu};
use std::net::IpAddr;

/// Path MTU assumed when the egress interface towards a peer cannot be determined.
pub const DEFAULT_PATH_MTU: u32 = 1500;

impl FileConfig {
    /// Worst-case ESP overhead (header, IV, padding, trailer, ICV) over all configured ESP
    /// proposals (every encryption x integrity combination), with the suite's name.
    pub fn worst_esp_overhead(&self) -> (usize, String) {
        use fs_crypto::EncrAlg;
        let mut worst = (0usize, String::new());
        for ch in self.ike.connections.iter().flat_map(|c| &c.children) {
            for p in &ch.esp_proposals {
                for &e in &p.encr {
                    let integs: Vec<Option<fs_crypto::IntegAlg>> =
                        if e.is_aead() || p.integ.is_empty() {
                            vec![None]
                        } else {
                            p.integ.iter().copied().map(Some).collect()
                        };
                    for i in integs {
                        let o = fs_esp::esp_overhead(e, i);
                        if o > worst.0 {
                            let name = match i {
                                Some(i) => format!("{}-{}", e.name(), i.name()),
                                None => e.name().to_string(),
                            };
                            worst = (o, name);
                        }
                    }
                }
            }
        }
        if worst.0 == 0 {
            // no ESP proposal at all: the largest suite we implement
            let (e, i) = (EncrAlg::AesCbc256, fs_crypto::IntegAlg::HmacSha512_256);
            worst = (
                fs_esp::esp_overhead(e, Some(i)),
                format!("{}-{}", e.name(), i.name()),
            );
        }
        worst
    }

    /// The TUN MTU: the configured number, or (`"auto"`) the smallest over all connections'
    /// remote addresses of `egress MTU - (outer IP 20/40 + UDP 8 + worst ESP overhead)`.
    /// `lookup(remote)` gives the egress interface and its MTU (None: assume
    /// [`DEFAULT_PATH_MTU`]). Returns the MTU and how it was derived (for the log).
    pub fn resolve_tun_mtu(
        &self,
        lookup: impl Fn(IpAddr) -> Option<(String, u32)>,
    ) -> (u16, String) {
        if let TunMtu::Fixed(m) = self.daemon.tun_mtu {
            return (m, "configured".into());
        }
        let (esp, suite) = self.worst_esp_overhead();
        let mut best: Option<(u32, String)> = None;
        let mut consider = |path: u32, outer_v6: bool, via: String| {
            let ip = if outer_v6 {
                fs_esp::mtu::IPV6_HEADER_LEN
            } else {
                fs_esp::mtu::IPV4_HEADER_LEN
            };
            let over = (ip + fs_esp::mtu::UDP_HEADER_LEN + esp) as u32;
            let mtu = path.saturating_sub(over);
            if best.as_ref().is_none_or(|(b, _)| mtu < *b) {
                best = Some((
                    mtu,
                    format!(
                        "auto: path MTU {path} ({via}) - {over} (IPv{} {ip} + UDP {} + ESP {suite} {esp})",
                        if outer_v6 { 6 } else { 4 },
                        fs_esp::mtu::UDP_HEADER_LEN,
                    ),
                ));
            }
        };
        for c in &self.ike.connections {
            for &r in &c.remote_addrs {
                match lookup(r) {
                    Some((dev, m)) => consider(m, r.is_ipv6(), format!("{dev} towards {r}")),
                    None => consider(
                        DEFAULT_PATH_MTU,
                        r.is_ipv6(),
                        format!("assumed, no route to {r}"),
                    ),
                }
            }
            if c.remote_addrs.is_empty() {
                let v6 = c.local_addrs.iter().any(|a| a.is_ipv6());
                consider(
                    DEFAULT_PATH_MTU,
                    v6,
                    format!("assumed, {} has no remote address", c.name),
                );
            }
        }
        let (mtu, how) =
            best.unwrap_or_else(|| (DEFAULT_PATH_MTU - 100, "auto: no connection".into()));
        let clamped = mtu.clamp(576, 65535);
        if clamped != mtu {
            (
                clamped as u16,
                format!("{how} = {mtu}, raised to the minimum 576"),
            )
        } else {
            (mtu as u16, format!("{how} = {mtu}"))
        }
    }
}
