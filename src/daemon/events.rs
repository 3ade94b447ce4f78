//! Applying the IKE core's events to the data plane and to pending control requests.
use super::control_server::same_sa;
use super::Daemon;
use crate::control::Response;
use fs_ike::{CloseReason, Event, IkeSaId};
use fs_wire::EspSpi;
use tracing::debug;

/// Failure reason string as printed and returned by `up`.
pub fn reason_str(r: &CloseReason) -> String {
    r.name()
}

impl Daemon {
    pub(super) fn on_event(&mut self, ev: Event) {
        match ev {
            Event::IkeSaEstablished {
                ike_sa,
                conn,
                local,
                remote,
            } => {
                let line = format!(
                    "IKE_SA {conn}[{ike_sa}] established between {}...{}",
                    local.ip(),
                    remote.ip()
                );
                debug!("{line}"); // fs-ike logs the DESIGN.md line itself
                for p in self
                    .pending_up
                    .iter_mut()
                    .filter(|p| p.conn == conn && p.ike_sa.is_none())
                {
                    p.ike_sa = Some(ike_sa);
                    p.lines.push(line.clone());
                }
                self.complete_ups();
            }
            Event::ChildSaInstalled(c) => {
                self.set_dpd_trap(&c.conn, Some(&c.child), false);
                self.install_child(*c)
            }
            Event::PeerEndpointChanged {
                ike_sa,
                conn,
                remote,
            } => {
                debug!("IKE_SA {conn}[{ike_sa}]: peer moved to {remote}, updating CHILD_SAs");
                self.peer_moved(ike_sa, remote);
            }
            Event::ChildSaFailed {
                ike_sa,
                conn,
                child,
                reason,
            } => {
                let line = format!(
                    "CHILD_SA {conn}{{{child}}} failed: {} (IKE_SA {conn}[{ike_sa}])",
                    reason_str(&reason)
                );
                debug!("{line}"); // logged by fs-ike
                let (hit, keep): (Vec<_>, Vec<_>) = self.pending_up.drain(..).partition(|p| {
                    p.conn == conn
                        && same_sa(p.ike_sa, ike_sa)
                        && (child.is_empty() || p.children_needed.contains(&child))
                });
                self.pending_up = keep;
                for mut p in hit {
                    p.lines.push(line.clone());
                    let mut r = Response::fail(reason_str(&reason));
                    r.lines = p.lines;
                    let _ = p.reply.send(r);
                }
            }
            Event::ChildSaRemoved {
                ike_sa,
                conn,
                child,
                spi_in,
                spi_out,
            } => self.child_sa_removed(ike_sa, &conn, &child, spi_in, spi_out),
            Event::IkeSaClosed {
                ike_sa,
                conn,
                reason,
                established,
            } => self.ike_sa_closed(ike_sa, &conn, &reason, established),
        }
    }

    /// A CHILD_SA is gone: remove it from the data plane (a held-back successor takes over
    /// first) and release its routes.
    fn child_sa_removed(
        &mut self,
        ike_sa: IkeSaId,
        conn: &str,
        child: &str,
        spi_in: EspSpi,
        spi_out: EspSpi,
    ) {
        if let Some(i) = self
            .installed
            .iter()
            .position(|c| c.spi_in == spi_in && c.spi_out == spi_out)
        {
            let c = self.installed.swap_remove(i);
            // Make-before-break: a held-back successor takes over before the old SA
            // goes away; routes are released after the successor holds its own.
            if c.pending_out.is_none() {
                self.activate_successor(c.ike_sa, &c.child);
            }
            self.dp.tables().remove_child(spi_in, spi_out);
            for n in c.nets {
                self.routes.release(n);
            }
        } else {
            self.dp.tables().remove_child(spi_in, spi_out);
        }
        debug!("CHILD_SA {conn}{{{child}}} removed SPIs {spi_in:08x}_i {spi_out:08x}_o (IKE_SA {conn}[{ike_sa}])");
    }

    /// An IKE SA is gone: arm `dpd_action = trap`, drop what is left of its CHILD_SAs and
    /// answer the `up` and `down` requests waiting for it.
    fn ike_sa_closed(
        &mut self,
        ike_sa: IkeSaId,
        conn: &str,
        reason: &CloseReason,
        established: bool,
    ) {
        let line = match reason {
            CloseReason::Deleted { by_peer } => {
                format!(
                    "IKE_SA {conn}[{ike_sa}] deleted{}",
                    if *by_peer { " by peer" } else { "" }
                )
            }
            r => format!("IKE_SA {conn}[{ike_sa}] failed: {}", reason_str(r)),
        };
        debug!("{line}"); // logged by fs-ike
        if *reason == CloseReason::Timeout && established {
            // dpd_action = trap: the peer of a live SA went away; the next matching
            // packet re-initiates (acquire). A setup that timed out (e.g. `up` with
            // the peer absent) arms nothing; traps already armed stay armed.
            self.set_dpd_trap(conn, None, true);
        }
        // Drop any data-plane state the IKE layer may not have removed explicitly.
        let stale: Vec<(EspSpi, EspSpi)> = self
            .installed
            .iter()
            .filter(|c| c.ike_sa == ike_sa)
            .map(|c| (c.spi_in, c.spi_out))
            .collect();
        for (i, o) in stale {
            self.child_sa_removed(ike_sa, conn, "", i, o);
        }
        let (hit, keep): (Vec<_>, Vec<_>) = self
            .pending_up
            .drain(..)
            .partition(|p| p.conn == conn && same_sa(p.ike_sa, ike_sa));
        self.pending_up = keep;
        for mut p in hit {
            p.lines.push(line.clone());
            let mut r = Response::fail(reason_str(reason));
            r.lines = p.lines;
            let _ = p.reply.send(r);
        }
        let (hit, keep): (Vec<_>, Vec<_>) =
            self.pending_down.drain(..).partition(|p| p.conn == conn);
        self.pending_down = keep;
        for p in hit {
            let _ = p.reply.send(Response {
                ok: true,
                lines: vec![line.clone()],
                ..Default::default()
            });
        }
    }
}
