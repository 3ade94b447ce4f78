//! CHILD_SA installation into the data plane: SAs, policies (make-before-break on rekey),
//! route MTUs, `dpd_action = trap`, NAT rebinding and the per-SA activity poll.
use super::control_server::same_sa;
use super::routes::nets_of;
use super::Daemon;
use fs_dataplane::{InboundEntry, OutboundEntry, Policy, PolicyAction};
use fs_ike::{ChildSa, DpdAction, IkeSaId, StartAction};
use fs_wire::EspSpi;
use ipnet::IpNet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, error, info, warn};

pub(super) struct InstalledChild {
    pub(super) ike_sa: IkeSaId,
    pub(super) child: String,
    pub(super) spi_in: EspSpi,
    pub(super) spi_out: EspSpi,
    pub(super) nets: Vec<IpNet>,
    /// Outbound policy held back (we answered the rekey): installed once the new SA carries
    /// inbound traffic or the SA it replaces is removed.
    pub(super) pending_out: Option<Policy>,
    /// Inbound packets at the last activity poll (switches a held-back outbound policy).
    pub(super) last_packets_in: u64,
}

/// How often the control thread reads per-SA inbound counters (DPD liveness).
pub(super) const ACTIVITY_POLL: Duration = Duration::from_secs(1);

impl Daemon {
    pub(super) fn install_child(&mut self, c: ChildSa) {
        let Some((out, inb)) = esp_sas(&c) else {
            return;
        };
        let policy = Policy::new(
            &c.conn,
            &c.child,
            c.local_ts.clone(),
            c.remote_ts.clone(),
            PolicyAction::Protect(OutboundEntry {
                sa: out,
                local: c.local,
                remote: c.remote,
                udp_encap: c.udp_encap,
            }),
        );
        let entry = InboundEntry {
            sa: inb,
            conn: c.conn.clone(),
            child: c.child.clone(),
            local_ts: c.local_ts.clone(),
            remote_ts: c.remote_ts.clone(),
        };
        // Make-before-break (RFC 7296 2.8): the new inbound SA is accepted at once. Outbound
        // switches at once when we initiated the rekey (the peer installed both directions
        // before answering); as responder we keep sending on the old SA until the peer shows
        // it has the new one (traffic on it) or the old one is removed.
        let hold = c.rekey_responder
            && self
                .installed
                .iter()
                .any(|o| o.ike_sa == c.ike_sa && o.child == c.child && o.pending_out.is_none());
        let pending_out = if hold {
            self.dp.tables().install_inbound(entry);
            debug!(
                "CHILD_SA {}{{{}}}: outbound {:08x}_o held until the peer uses {:08x}_i",
                c.conn, c.child, c.outbound.spi, c.inbound.spi
            );
            Some(policy)
        } else {
            self.dp.tables().install_child(policy, entry);
            None
        };
        if c.udp_encap {
            // NAT rebinding seen on authenticated ESP is reported (DpMessage::PeerEndpoint).
            self.dp.tables().track_peer(c.inbound.spi, c.remote);
        }
        let nets = nets_of(&c.remote_ts);
        let mtu = self.child_mtu(&c);
        debug!(
            "CHILD_SA {}{{{}}}: route MTU {mtu} ({}{}, towards {})",
            c.conn,
            c.child,
            c.encr.name(),
            if c.udp_encap {
                ", UDP-encapsulated"
            } else {
                ""
            },
            c.remote.ip()
        );
        for n in &nets {
            // IPv6 routes cannot go below the IPv6 minimum MTU
            let m = if n.addr().is_ipv6() {
                mtu.max(1280)
            } else {
                mtu
            };
            self.routes.add(*n, Some(m));
        }
        self.installed.push(InstalledChild {
            ike_sa: c.ike_sa,
            child: c.child.clone(),
            spi_in: c.inbound.spi,
            spi_out: c.outbound.spi,
            nets,
            pending_out,
            last_packets_in: 0,
        });
        let join = |v: &[fs_wire::ts::TrafficSelector]| {
            v.iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let line = format!(
            "CHILD_SA {}{{{}}} established SPIs {:08x}_i {:08x}_o TS {} === {}",
            c.conn,
            c.child,
            c.inbound.spi,
            c.outbound.spi,
            join(&c.local_ts),
            join(&c.remote_ts)
        );
        debug!(
            "{line}{}",
            if c.udp_encap {
                " (UDP-encapsulated)"
            } else {
                ""
            }
        );
        for p in self
            .pending_up
            .iter_mut()
            .filter(|p| p.conn == c.conn && same_sa(p.ike_sa, c.ike_sa))
        {
            p.ike_sa = Some(c.ike_sa);
            p.children_needed.retain(|n| *n != c.child);
            p.lines.push(line.clone());
        }
        self.complete_ups();
    }

    /// Route MTU for a CHILD_SA's remote selectors: the egress MTU towards the peer minus the
    /// overhead of its negotiated suite and encapsulation, at most the TUN MTU, at least 576.
    pub(super) fn child_mtu(&self, c: &ChildSa) -> u32 {
        let path = self
            .routes
            .egress_mtu(c.remote.ip())
            .map(|(_, m)| m)
            .unwrap_or(crate::config::DEFAULT_PATH_MTU);
        fs_esp::tunnel_mtu(path, c.encr, c.integ, c.remote.is_ipv6(), c.udp_encap)
            .min(u32::from(self.tun_mtu))
            .max(576)
    }

    /// `dpd_action = trap` (strongSwan-like): when the peer is found dead, the configured
    /// policies of the connection's children (which stay: routes remain, packets are dropped,
    /// never sent in cleartext) become trap policies, so the next matching packet re-initiates
    /// the connection; once a CHILD_SA is installed again its policy reverts to its
    /// `start_action` (drop unless `trap`). No-op for other connections.
    pub(super) fn set_dpd_trap(&mut self, conn: &str, child: Option<&str>, trap: bool) {
        let Some(c) = self.cfg.ike.connections.iter().find(|c| c.name == conn) else {
            return;
        };
        if c.dpd_action != DpdAction::Trap {
            return;
        }
        for ch in c
            .children
            .iter()
            .filter(|ch| child.is_none_or(|n| n == ch.name))
        {
            let on = trap || ch.start_action == StartAction::Trap;
            if self.dp.tables().set_config_trap(conn, &ch.name, on) && trap {
                info!(
                    "CHILD_SA {conn}{{{}}}: trap policy installed (dpd_action = trap)",
                    ch.name
                );
            }
        }
    }

    /// Install the held-back outbound policy of the newest successor of `ike_sa`/`child`,
    /// if no SA of that child is sending any more.
    pub(super) fn activate_successor(&mut self, ike_sa: IkeSaId, child: &str) {
        let same = |c: &InstalledChild| c.ike_sa == ike_sa && c.child == child;
        if self
            .installed
            .iter()
            .any(|c| same(c) && c.pending_out.is_none())
        {
            return;
        }
        // The last installed successor wins; older held-back ones stay inbound-only.
        if let Some(c) = self.installed.iter_mut().rev().find(|c| same(c)) {
            if let Some(p) = c.pending_out.take() {
                debug!(
                    "CHILD_SA {}{{{child}}}: outbound switched to {:08x}_o",
                    p.conn, c.spi_out
                );
                self.dp.tables().install_outbound(p);
            }
        }
    }

    /// Once a second: report inbound ESP activity to fs-ike (DPD liveness). Every call:
    /// switch held-back outbound SAs whose inbound side carried traffic.
    pub(super) fn poll_sa_activity(&mut self, now: Instant) {
        let full = now.saturating_duration_since(self.last_activity_poll) >= ACTIVITY_POLL;
        if full {
            self.last_activity_poll = now;
        }
        let mut counters = Vec::new();
        for c in self.installed.iter_mut() {
            if !full && c.pending_out.is_none() {
                continue;
            }
            if full {
                // Lifetimes by volume / sequence number, DPD and NAT-keepalive activity.
                counters.push((
                    c.spi_in,
                    child_counters(self.dp.tables(), c.spi_in, c.spi_out),
                ));
            }
            let Some(p) = self.dp.tables().inbound_packets(c.spi_in) else {
                continue;
            };
            if p > c.last_packets_in {
                c.last_packets_in = p;
                if let Some(pol) = c.pending_out.take() {
                    debug!(
                        "CHILD_SA {}{{{}}}: peer uses {:08x}_i, outbound switched to {:08x}_o",
                        pol.conn, c.child, c.spi_in, c.spi_out
                    );
                    self.dp.tables().install_outbound(pol);
                }
            }
        }
        for (spi, c) in counters {
            self.endpoint.note_child_counters(now, spi, c);
        }
    }

    /// NAT rebinding: the outbound ESP of every CHILD_SA of `ike_sa` goes to `remote` now.
    pub(super) fn peer_moved(&mut self, ike_sa: IkeSaId, remote: SocketAddr) {
        for c in self.installed.iter_mut().filter(|c| c.ike_sa == ike_sa) {
            if let Some(PolicyAction::Protect(e)) = c.pending_out.as_mut().map(|p| &mut p.action) {
                e.remote = remote;
            }
            self.dp.tables().set_outbound_remote(c.spi_out, remote);
            self.dp.tables().set_peer_remote(c.spi_in, remote);
        }
    }
}

/// The outbound and inbound ESP SAs of a CHILD_SA (None, logged, if either cannot be made).
fn esp_sas(c: &ChildSa) -> Option<(Arc<fs_esp::OutboundSa>, Arc<fs_esp::InboundSa>)> {
    let mode = c.mode;
    if mode == fs_wire::Mode::Transport {
        warn!("CHILD_SA {}{{{}}}: transport mode is not supported by the TUN data plane; packets will be dropped", c.conn, c.child);
    }
    let mk = |k: &fs_ike::SaKeys, window: u32| fs_esp::SaConfig {
        spi: k.spi,
        encr: c.encr,
        integ: c.integ,
        encr_key: k.encr_key.duplicate(),
        integ_key: k.integ_key.duplicate(),
        mode,
        replay_window: window,
        esn: c.esn,
    };
    let out = match fs_esp::OutboundSa::new(&mk(&c.outbound, 0)) {
        Ok(sa) => Arc::new(sa),
        Err(e) => {
            error!(
                "CHILD_SA {}{{{}}}: cannot create outbound SA: {e}",
                c.conn, c.child
            );
            return None;
        }
    };
    let inb = match fs_esp::InboundSa::new(&mk(&c.inbound, c.replay_window)) {
        Ok(sa) => Arc::new(sa),
        Err(e) => {
            error!(
                "CHILD_SA {}{{{}}}: cannot create inbound SA: {e}",
                c.conn, c.child
            );
            return None;
        }
    };
    Some((out, inb))
}

/// The data-plane counters of one CHILD_SA for [`Endpoint::note_child_counters`] (the
/// outbound side is absent while its policy is held back after a rekey we answered).
fn child_counters(
    tables: &fs_dataplane::Tables,
    spi_in: EspSpi,
    spi_out: EspSpi,
) -> fs_ike::ChildCounters {
    let (i, o) = tables.sa_counters(spi_in, spi_out);
    let (i, o) = (i.unwrap_or_default(), o.unwrap_or_default());
    fs_ike::ChildCounters {
        bytes_in: i.bytes,
        packets_in: i.packets,
        bytes_out: o.bytes,
        packets_out: o.packets,
        seq_out: tables.outbound_seq(spi_out).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fs_dataplane::Tables;

    fn sa_cfg(spi: u32) -> fs_esp::SaConfig {
        fs_esp::SaConfig {
            spi: EspSpi(spi),
            encr: fs_crypto::EncrAlg::AesGcm16_256,
            integ: None,
            encr_key: vec![7; 36].into(),
            integ_key: vec![].into(),
            mode: fs_esp::Mode::Tunnel,
            replay_window: 32,
            esn: false,
        }
    }

    /// The counters the daemon feeds to fs-ike, with an outbound sequence number close to the
    /// 32-bit wrap (fs-ike's simulation tests check that this starts a rekey).
    #[test]
    fn child_counters_report_outbound_seq() {
        let t = Tables::new();
        let l: fs_wire::ts::TrafficSelector = "10.1.0.0/16".parse().unwrap();
        let r: fs_wire::ts::TrafficSelector = "10.2.0.0/16".parse().unwrap();
        let out = Arc::new(fs_esp::OutboundSa::new(&sa_cfg(0x200)).unwrap());
        let near = (1u64 << 32) - fs_ike::SEQ_REKEY_MARGIN + 5;
        out.set_seq_for_testing(near);
        let entry = OutboundEntry {
            sa: out,
            local: "1.1.1.1:4500".parse().unwrap(),
            remote: "2.2.2.2:4500".parse().unwrap(),
            udp_encap: true,
        };
        let inb = InboundEntry {
            sa: Arc::new(fs_esp::InboundSa::new(&sa_cfg(0x100)).unwrap()),
            conn: "c".into(),
            child: "ch".into(),
            local_ts: vec![l],
            remote_ts: vec![r],
        };
        t.install_child(
            Policy::new("c", "ch", vec![l], vec![r], PolicyAction::Protect(entry)),
            inb,
        );
        let c = child_counters(&t, EspSpi(0x100), EspSpi(0x200));
        assert_eq!(c.seq_out, near);
        assert!(c.seq_out >= (1u64 << 32) - fs_ike::SEQ_REKEY_MARGIN);
        assert_eq!(
            child_counters(&t, EspSpi(0x101), EspSpi(0x201)),
            fs_ike::ChildCounters::default()
        );
        // NAT rebinding: the outbound entry follows the peer.
        let new: SocketAddr = "2.2.2.2:31337".parse().unwrap();
        assert!(t.set_outbound_remote(EspSpi(0x200), new));
        assert!(!t.set_outbound_remote(EspSpi(0x999), new));
        let remote = t.spd().iter().find_map(|p| match &p.action {
            PolicyAction::Protect(e) => Some(e.remote),
            _ => None,
        });
        assert_eq!(remote, Some(new));
    }
}
