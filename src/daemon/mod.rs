//! `ferroswan run`: the control thread (owns the IKE [`Endpoint`]) and its event loop. The
//! parts: [`control_server`] (the control socket, pending `up`/`down`), [`events`] (applying
//! fs-ike events), [`install`] (CHILD_SAs and their policies in the data plane), [`routes`]
//! (route reference counts towards the TUN device) and [`status`] (the typed status report).
mod control_server;
mod events;
mod install;
mod routes;
mod status;

use crate::config::FileConfig;
use control_server::{
    accept_loop, bind_control, ControlMsg, PendingDown, PendingUp, CONTROL_CLIENTS_MAX,
};
use crossbeam_channel::{bounded, select, Receiver};
use fs_dataplane::{route, DataPlane, DataPlaneConfig, DpMessage};
use fs_ike::{Endpoint, StartAction};
use install::InstalledChild;
use routes::{nets_of, Routes};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tracing::{debug, error, info, warn};

/// How long shutdown waits for the Delete exchanges.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

fn init_logging(level: Option<&str>) {
    use std::io::IsTerminal;
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => tracing_subscriber::EnvFilter::new(v),
        _ => tracing_subscriber::EnvFilter::new(level.unwrap_or("info")),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

/// Run the daemon in the foreground. Returns the process exit code.
pub fn run(cfg: FileConfig, control_override: Option<PathBuf>) -> i32 {
    init_logging(cfg.daemon.log_level.as_deref());
    for w in &cfg.warnings {
        warn!("{w}");
    }
    // Before any thread exists, so that all threads inherit the blocked mask.
    if let Err(e) = fs_dataplane::signals::block_term_signals() {
        error!("cannot block signals: {e}");
        return 1;
    }
    let control_path = control_override.unwrap_or_else(|| cfg.daemon.control_socket.clone());
    // Before the data plane (and the privilege drop in it): the socket's directory may need
    // root, and a second daemon on the same socket is refused before it touches the TUN.
    let listener = match bind_control(&control_path) {
        Ok(l) => l,
        Err(e) => {
            error!("control socket {}: {e}", control_path.display());
            return 1;
        }
    };
    // The drop state before the TUN device: from here on, whatever happens to this process,
    // the children's traffic is encrypted or dropped.
    if crate::failclosed::install_at_start(&cfg).is_err() {
        let _ = std::fs::remove_file(&control_path);
        return 1;
    }
    crate::failclosed::abort_on_panic();
    let (dp_tx, dp_rx) = bounded::<DpMessage>(fs_dataplane::CONTROL_QUEUE_LEN);
    let mut bind = cfg.local_addrs();
    if cfg.any_wildcard() {
        bind.clear();
    }
    let (tun_mtu, tun_mtu_how) = cfg.resolve_tun_mtu(|r| route::egress_mtu(r).ok());
    info!("tunnel MTU {tun_mtu} ({tun_mtu_how})");
    let user = cfg.daemon.user.clone();
    let dp = match DataPlane::start_with(
        DataPlaneConfig {
            tun_name: cfg.daemon.tun_name.clone(),
            tun_mtu,
            ike_port: cfg.daemon.ike_port,
            natt_port: cfg.daemon.natt_port,
            bind,
            ipv6: cfg.uses_ipv6(),
            workers: cfg.daemon.workers,
        },
        dp_tx,
        || {
            crate::privs::drop_privileges(user.as_deref())
                .map_err(|e| std::io::Error::new(e.kind(), format!("dropping privileges: {e}")))?;
            info!(
                "privileges dropped: capabilities {:?} only, no_new_privs{}",
                crate::privs::KEEP,
                user.as_deref()
                    .map(|u| format!(", user {u}"))
                    .unwrap_or_default()
            );
            Ok(())
        },
    ) {
        Ok(dp) => dp,
        Err(e) => {
            error!("cannot start data plane: {e}");
            let _ = std::fs::remove_file(&control_path);
            return 1;
        }
    };

    let (ctl_tx, ctl_rx) = bounded::<ControlMsg>(CONTROL_CLIENTS_MAX);
    let _ = std::thread::Builder::new()
        .name("control-accept".into())
        .spawn(move || accept_loop(listener, ctl_tx));
    let (sig_tx, sig_rx) = bounded::<i32>(4);
    let _ = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            let s = fs_dataplane::signals::wait();
            if sig_tx.send(s).is_err() {
                break;
            }
        });
    info!(
        "ferroswan started: {} connection(s), control socket {}",
        cfg.ike.connections.len(),
        control_path.display()
    );

    let mut d = Daemon {
        endpoint: Endpoint::new(cfg.ike.clone(), Box::new(fs_crypto::SystemRng)),
        routes: Routes::new(dp.tun_name().to_string()),
        dp,
        cfg,
        pending_up: Vec::new(),
        pending_down: Vec::new(),
        installed: Vec::new(),
        last_activity_poll: Instant::now(),
        tun_mtu,
        tun_mtu_how,
    };
    d.setup_policies();
    d.initiate_start_children();
    d.run_loop(dp_rx, ctl_rx, sig_rx);

    d.dp.tables().clear_sas();
    d.routes.remove_all();
    let _ = std::fs::remove_file(&control_path);
    d.dp.stop();
    info!("ferroswan stopped");
    0
}

struct Daemon {
    endpoint: Endpoint,
    dp: DataPlane,
    cfg: FileConfig,
    routes: Routes,
    pending_up: Vec<PendingUp>,
    pending_down: Vec<PendingDown>,
    installed: Vec<InstalledChild>,
    last_activity_poll: Instant,
    /// TUN device MTU (configured or derived, see `FileConfig::resolve_tun_mtu`).
    tun_mtu: u16,
    tun_mtu_how: String,
}

impl Daemon {
    /// Configured policies without SA: packets for a child that is not up are dropped (or
    /// trigger an acquire for `trap` children) instead of leaving in cleartext.
    fn setup_policies(&mut self) {
        for c in &self.cfg.ike.connections {
            for ch in &c.children {
                let trap = ch.start_action == StartAction::Trap;
                self.dp.tables().add_config_policy(
                    &c.name,
                    &ch.name,
                    ch.local_ts.clone(),
                    ch.remote_ts.clone(),
                    trap,
                );
                // Route the remote nets into the TUN device for every configured child, not
                // only trap ones: otherwise, while no SA is up (start_action none, or after
                // `down`), the kernel forwards these packets by its other routes (a default
                // route) in cleartext instead of ferroswan dropping them as `no_sa`.
                for n in nets_of(&ch.remote_ts) {
                    self.routes.add(n, None);
                }
            }
        }
    }

    fn initiate_start_children(&mut self) {
        let now = Instant::now();
        let conns: Vec<(String, Vec<String>, bool)> = self
            .cfg
            .ike
            .connections
            .iter()
            .map(|c| {
                let start: Vec<String> = c
                    .children
                    .iter()
                    .filter(|ch| ch.start_action == StartAction::Start)
                    .map(|ch| ch.name.clone())
                    .collect();
                let all = start.len() == c.children.len();
                (c.name.clone(), start, all)
            })
            .collect();
        for (conn, start, all) in conns {
            if start.is_empty() {
                continue;
            }
            let res = if all {
                self.endpoint.initiate(now, &conn, None)
            } else {
                start
                    .iter()
                    .try_for_each(|ch| self.endpoint.initiate(now, &conn, Some(ch)))
            };
            match res {
                Ok(()) => info!("initiating {conn} (start_action = start)"),
                Err(e) => warn!("cannot initiate {conn}: {e}"),
            }
        }
    }

    fn run_loop(
        &mut self,
        dp_rx: Receiver<DpMessage>,
        ctl_rx: Receiver<ControlMsg>,
        sig_rx: Receiver<i32>,
    ) {
        let mut shutdown_deadline: Option<Instant> = None;
        loop {
            // Send what commands queued (e.g. start_action initiations) before waiting.
            self.drain();
            let now = Instant::now();
            let mut deadline = now + Duration::from_secs(1);
            if let Some(t) = self.endpoint.poll_timeout() {
                deadline = deadline.min(t);
            }
            for p in &self.pending_up {
                deadline = deadline.min(p.deadline);
            }
            for p in &self.pending_down {
                deadline = deadline.min(p.deadline);
            }
            if let Some(s) = shutdown_deadline {
                deadline = deadline.min(s);
            }
            let wait = deadline.saturating_duration_since(now);
            select! {
                recv(dp_rx) -> m => if let Ok(m) = m { self.on_dp(m) },
                recv(ctl_rx) -> m => if let Ok(m) = m { self.on_control(m, shutdown_deadline.is_some()) },
                recv(sig_rx) -> s => {
                    if shutdown_deadline.is_some() {
                        info!("second signal: exiting now");
                        break;
                    }
                    info!("signal {}: deleting all SAs and shutting down", s.unwrap_or(0));
                    let now = Instant::now();
                    self.endpoint.shutdown(now);
                    shutdown_deadline = Some(now + SHUTDOWN_GRACE);
                },
                default(wait) => {},
            }
            let now = Instant::now();
            self.poll_sa_activity(now);
            self.endpoint.handle_timeout(now);
            self.drain();
            self.expire_pending(now);
            if let Some(s) = shutdown_deadline {
                if now >= s || self.endpoint.status(now).is_empty() {
                    break;
                }
            }
        }
    }

    fn on_dp(&mut self, m: DpMessage) {
        let now = Instant::now();
        match m {
            DpMessage::Ike {
                local,
                remote,
                data,
            } => self.endpoint.handle_datagram(now, local, remote, &data),
            DpMessage::Acquire { conn, child } => {
                if let Err(e) = self.endpoint.acquire(now, &conn, &child) {
                    debug!("acquire {conn}/{child}: {e}");
                }
            }
            // Authenticated ESP from a new peer address: fs-ike decides (NAT rules) and, if
            // it follows, emits PeerEndpointChanged (outbound ESP re-targeted at once) and
            // sends a liveness check there, whose answer moves the IKE SA (RFC 7296 2.23).
            DpMessage::PeerEndpoint { spi_in, remote } => {
                self.endpoint.note_peer_endpoint(now, spi_in, remote)
            }
        }
    }

    /// Send every pending IKE datagram and apply every pending event.
    fn drain(&mut self) {
        while let Some(t) = self.endpoint.poll_transmit() {
            let local = self.map_local(t.local);
            if let Err(e) = self.dp.send_ike(local, t.remote, &t.data) {
                fs_dataplane::drop_log!(WARN, "sending IKE {} -> {} failed: {e}", local, t.remote);
            }
        }
        while let Some(ev) = self.endpoint.poll_event() {
            self.on_event(ev);
        }
    }

    /// fs-ike speaks of ports 500/4500; map them to the configured local ports.
    fn map_local(&self, local: SocketAddr) -> SocketAddr {
        let d = &self.cfg.daemon;
        let port = match local.port() {
            500 => d.ike_port,
            4500 => d.natt_port,
            p => p,
        };
        SocketAddr::new(local.ip(), port)
    }
}
