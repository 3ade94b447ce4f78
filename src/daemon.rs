//! `ferroswan run`: the control thread (owns the IKE [`Endpoint`]), the control socket, and
//! the glue that applies IKE events to the data plane (SAs, policies, routes).
use crate::config::FileConfig;
use crate::control::{Request, Response, MAX_REQUEST};
use crossbeam_channel::{bounded, select, Receiver, Sender};
use fs_dataplane::{
    route, DataPlane, DataPlaneConfig, DpMessage, InboundEntry, OutboundEntry, Policy, PolicyAction,
};
use fs_ike::{ChildSa, CloseReason, DpdAction, Endpoint, Event, StartAction};
use ipnet::IpNet;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, error, info, warn};

/// How long shutdown waits for the Delete exchanges.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// Default `up` timeout (seconds).
const DEFAULT_UP_TIMEOUT: u64 = 30;
/// Default `down` timeout (seconds).
const DEFAULT_DOWN_TIMEOUT: u64 = 10;

/// A control request with the channel to answer on.
struct ControlMsg {
    req: Request,
    reply: Sender<Response>,
}

struct PendingUp {
    conn: String,
    ike_sa: Option<u64>,
    children_needed: Vec<String>,
    deadline: Instant,
    lines: Vec<String>,
    reply: Sender<Response>,
}

struct PendingDown {
    conn: String,
    deadline: Instant,
    reply: Sender<Response>,
}

struct InstalledChild {
    ike_sa: u64,
    child: String,
    spi_in: u32,
    spi_out: u32,
    nets: Vec<IpNet>,
    /// Outbound policy held back (we answered the rekey): installed once the new SA carries
    /// inbound traffic or the SA it replaces is removed.
    pending_out: Option<Policy>,
    /// Inbound packets at the last activity poll (switches a held-back outbound policy).
    last_packets_in: u64,
}

/// How often the control thread reads per-SA inbound counters (DPD liveness).
const ACTIVITY_POLL: Duration = Duration::from_secs(1);

/// Route reference counts towards the TUN device, changed over one rtnetlink socket.
struct Routes {
    dev: String,
    /// Opened on the first change (after the privilege drop: `CAP_NET_ADMIN` is enough), and
    /// again after a socket error or an unreadable answer.
    nl: Option<route::Rtnl>,
    refs: HashMap<IpNet, usize>,
    /// Route MTU set on each installed route (None: the device's).
    mtus: HashMap<IpNet, Option<u32>>,
}

impl Routes {
    fn new(dev: String) -> Self {
        Routes {
            dev,
            nl: None,
            refs: HashMap::new(),
            mtus: HashMap::new(),
        }
    }

    /// Run `f` on the socket, opening it if needed; drop it when it failed (not when the
    /// kernel refused a request), so the next change starts on a fresh one.
    fn with_nl<T>(
        nl: &mut Option<route::Rtnl>,
        f: impl FnOnce(&route::Rtnl) -> Result<T, route::RouteError>,
    ) -> Result<T, route::RouteError> {
        let sock = match nl {
            Some(s) => s,
            None => nl.insert(route::Rtnl::open()?),
        };
        let r = f(sock);
        if matches!(
            r,
            Err(route::RouteError::Socket(_) | route::RouteError::BadAnswer { .. })
        ) {
            *nl = None;
        }
        r
    }

    /// `route::egress_mtu` on the routes' socket when it is open.
    fn egress_mtu(&self, dst: std::net::IpAddr) -> Result<(String, u32), route::RouteError> {
        match &self.nl {
            Some(nl) => nl.egress_mtu(dst),
            None => route::egress_mtu(dst),
        }
    }

    /// Take a reference on the route for `net`; installs it on the first one, and (re)sets
    /// its MTU when `mtu` is given and differs (the CHILD_SA's suite/encap determine it).
    fn add(&mut self, net: IpNet, mtu: Option<u32>) {
        let c = self.refs.entry(net).or_insert(0);
        *c += 1;
        let first = *c == 1;
        if first || (mtu.is_some() && self.mtus.get(&net) != Some(&mtu)) {
            match Self::with_nl(&mut self.nl, |nl| nl.replace_mtu(net, &self.dev, mtu)) {
                Ok(()) => {
                    self.mtus.insert(net, mtu);
                    match mtu {
                        Some(m) => debug!("route {net} dev {} mtu {m} installed", self.dev),
                        None => debug!("route {net} dev {} installed", self.dev),
                    }
                }
                Err(e) => warn!("cannot install route {net} dev {}: {e}", self.dev),
            }
        }
    }
    fn release(&mut self, net: IpNet) {
        if let Some(c) = self.refs.get_mut(&net) {
            *c -= 1;
            if *c == 0 {
                self.refs.remove(&net);
                self.mtus.remove(&net);
                if let Err(e) = Self::with_nl(&mut self.nl, |nl| nl.delete(net, &self.dev)) {
                    debug!("cannot remove route {net}: {e}");
                }
            }
        }
    }
    fn remove_all(&mut self) {
        self.mtus.clear();
        for (net, _) in self.refs.drain() {
            let _ = Self::with_nl(&mut self.nl, |nl| nl.delete(net, &self.dev));
        }
    }
}

fn nets_of(ts: &[fs_wire::ts::TrafficSelector]) -> Vec<IpNet> {
    ts.iter()
        .filter_map(|t| {
            let n = t.to_net();
            if n.is_none() {
                warn!("selector {t} is not a CIDR prefix: no route installed for it");
            }
            n
        })
        .collect()
}

/// Failure reason string as printed and returned by `up`.
pub fn reason_str(r: &CloseReason) -> String {
    r.name()
}

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

fn bind_control(path: &Path) -> std::io::Result<UnixListener> {
    if path.as_os_str().is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "empty control socket path",
        ));
    }
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)?;
        }
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "another daemon is listening on it",
            ));
        }
        std::fs::remove_file(path)?;
    }
    // The socket file is created by bind(2) with the umask applied: set it first, so there is
    // no moment in which the socket is more open than 0660 (a chmod after bind would race).
    // SAFETY: umask(2) cannot fail; it is restored right after the bind.
    let old = unsafe { libc::umask(0o117) };
    let l = UnixListener::bind(path);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    l
}

/// Control connections served at once (one thread each); more are refused at once.
const CONTROL_CLIENTS_MAX: usize = 16;

fn accept_loop(listener: UnixListener, tx: Sender<ControlMsg>) {
    let busy = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for conn in listener.incoming() {
        let Ok(mut stream) = conn else { continue };
        use std::sync::atomic::Ordering::Relaxed;
        if busy.fetch_add(1, Relaxed) >= CONTROL_CLIENTS_MAX {
            busy.fetch_sub(1, Relaxed);
            fs_dataplane::drop_log!(WARN, "control socket: too many clients at once, refused");
            if let Ok(mut s) = serde_json::to_string(&Response::fail("too many clients at once")) {
                s.push('\n');
                let _ = stream.write_all(s.as_bytes());
            }
            continue;
        }
        let tx = tx.clone();
        let done = busy.clone();
        let spawned = std::thread::Builder::new()
            .name("control-conn".into())
            .spawn(move || {
                handle_client(stream, tx);
                done.fetch_sub(1, Relaxed);
            });
        if spawned.is_err() {
            busy.fetch_sub(1, Relaxed);
        }
    }
}

fn handle_client(stream: UnixStream, tx: Sender<ControlMsg>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(mut w) = stream.try_clone() else {
        return;
    };
    let mut line = String::new();
    let resp = match BufReader::new(stream.take(MAX_REQUEST)).read_line(&mut line) {
        Err(e) => Response::fail(format!("cannot read request: {e}")),
        Ok(_) if !line.ends_with('\n') && line.len() as u64 >= MAX_REQUEST => {
            Response::fail("request too long")
        }
        Ok(_) => match serde_json::from_str::<Request>(line.trim()) {
            Err(e) => Response::fail(format!("invalid request: {e}")),
            Ok(req) => {
                let (rtx, rrx) = crossbeam_channel::bounded(1);
                if tx.send(ControlMsg { req, reply: rtx }).is_err() {
                    Response::fail("daemon is shutting down")
                } else {
                    rrx.recv()
                        .unwrap_or_else(|_| Response::fail("daemon is shutting down"))
                }
            }
        },
    };
    if let Ok(mut s) = serde_json::to_string(&resp) {
        s.push('\n');
        let _ = w.write_all(s.as_bytes());
    }
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

    fn on_control(&mut self, m: ControlMsg, shutting_down: bool) {
        let now = Instant::now();
        if shutting_down && !matches!(m.req, Request::Status) {
            let _ = m.reply.send(Response::fail("daemon is shutting down"));
            return;
        }
        match m.req {
            Request::Status => {
                let _ = m.reply.send(Response {
                    ok: true,
                    status: Some(self.status_json(now)),
                    ..Default::default()
                });
            }
            Request::Up {
                conn,
                child,
                timeout,
            } => {
                let Some(cc) = self.cfg.ike.connections.iter().find(|c| c.name == conn) else {
                    let _ = m
                        .reply
                        .send(Response::fail(format!("no connection named {conn:?}")));
                    return;
                };
                let children_needed = match &child {
                    Some(ch) => vec![ch.clone()],
                    None => cc.children.iter().map(|c| c.name.clone()).collect(),
                };
                if let Err(e) = self.endpoint.initiate(now, &conn, child.as_deref()) {
                    let _ = m.reply.send(Response::fail(e.to_string()));
                    return;
                }
                let secs = timeout.unwrap_or(DEFAULT_UP_TIMEOUT).clamp(1, 3600);
                self.pending_up.push(PendingUp {
                    conn,
                    ike_sa: None,
                    children_needed,
                    deadline: now + Duration::from_secs(secs),
                    lines: Vec::new(),
                    reply: m.reply,
                });
            }
            Request::Down { conn, timeout } => {
                if !self.cfg.ike.connections.iter().any(|c| c.name == conn) {
                    let _ = m
                        .reply
                        .send(Response::fail(format!("no connection named {conn:?}")));
                    return;
                }
                match self.endpoint.terminate(now, &conn) {
                    Ok(()) => {
                        let secs = timeout.unwrap_or(DEFAULT_DOWN_TIMEOUT).clamp(1, 3600);
                        self.pending_down.push(PendingDown {
                            conn,
                            deadline: now + Duration::from_secs(secs),
                            reply: m.reply,
                        });
                    }
                    Err(e) => {
                        let _ = m.reply.send(Response {
                            ok: true,
                            lines: vec![e.to_string()],
                            ..Default::default()
                        });
                    }
                }
            }
        }
    }

    fn expire_pending(&mut self, now: Instant) {
        let (done, keep): (Vec<_>, Vec<_>) =
            self.pending_up.drain(..).partition(|p| now >= p.deadline);
        self.pending_up = keep;
        for p in done {
            let mut r = Response::fail("TIMEOUT");
            r.lines = p.lines;
            let _ = p.reply.send(r);
        }
        let (done, keep): (Vec<_>, Vec<_>) =
            self.pending_down.drain(..).partition(|p| now >= p.deadline);
        self.pending_down = keep;
        for p in done {
            let _ = p.reply.send(Response {
                ok: true,
                lines: vec![format!(
                    "{}: no answer to Delete within timeout, SAs removed locally",
                    p.conn
                )],
                ..Default::default()
            });
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

    fn on_event(&mut self, ev: Event) {
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
            } => {
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
            Event::IkeSaClosed {
                ike_sa,
                conn,
                reason,
                established,
            } => {
                let line = match &reason {
                    CloseReason::Deleted { by_peer } => {
                        format!(
                            "IKE_SA {conn}[{ike_sa}] deleted{}",
                            if *by_peer { " by peer" } else { "" }
                        )
                    }
                    r => format!("IKE_SA {conn}[{ike_sa}] failed: {}", reason_str(r)),
                };
                debug!("{line}"); // logged by fs-ike
                if reason == CloseReason::Timeout && established {
                    // dpd_action = trap: the peer of a live SA went away; the next matching
                    // packet re-initiates (acquire). A setup that timed out (e.g. `up` with
                    // the peer absent) arms nothing; traps already armed stay armed.
                    self.set_dpd_trap(&conn, None, true);
                }
                // Drop any data-plane state the IKE layer may not have removed explicitly.
                let stale: Vec<(u32, u32)> = self
                    .installed
                    .iter()
                    .filter(|c| c.ike_sa == ike_sa)
                    .map(|c| (c.spi_in, c.spi_out))
                    .collect();
                for (i, o) in stale {
                    self.on_event(Event::ChildSaRemoved {
                        ike_sa,
                        conn: conn.clone(),
                        child: String::new(),
                        spi_in: i,
                        spi_out: o,
                    });
                }
                let (hit, keep): (Vec<_>, Vec<_>) = self
                    .pending_up
                    .drain(..)
                    .partition(|p| p.conn == conn && same_sa(p.ike_sa, ike_sa));
                self.pending_up = keep;
                for mut p in hit {
                    p.lines.push(line.clone());
                    let mut r = Response::fail(reason_str(&reason));
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
    }

    fn install_child(&mut self, c: ChildSa) {
        use fs_ike::config::fs_esp_mode::Mode as IkeMode;
        let mode = match c.mode {
            IkeMode::Tunnel => fs_esp::Mode::Tunnel,
            IkeMode::Transport => fs_esp::Mode::Transport,
        };
        if mode == fs_esp::Mode::Transport {
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
                return;
            }
        };
        let inb = match fs_esp::InboundSa::new(&mk(&c.inbound, c.replay_window)) {
            Ok(sa) => Arc::new(sa),
            Err(e) => {
                error!(
                    "CHILD_SA {}{{{}}}: cannot create inbound SA: {e}",
                    c.conn, c.child
                );
                return;
            }
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
    fn child_mtu(&self, c: &ChildSa) -> u32 {
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
    fn set_dpd_trap(&mut self, conn: &str, child: Option<&str>, trap: bool) {
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
    fn activate_successor(&mut self, ike_sa: u64, child: &str) {
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
    fn poll_sa_activity(&mut self, now: Instant) {
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
    fn peer_moved(&mut self, ike_sa: u64, remote: SocketAddr) {
        for c in self.installed.iter_mut().filter(|c| c.ike_sa == ike_sa) {
            if let Some(PolicyAction::Protect(e)) = c.pending_out.as_mut().map(|p| &mut p.action) {
                e.remote = remote;
            }
            self.dp.tables().set_outbound_remote(c.spi_out, remote);
            self.dp.tables().set_peer_remote(c.spi_in, remote);
        }
    }

    fn complete_ups(&mut self) {
        let (done, keep): (Vec<_>, Vec<_>) = self
            .pending_up
            .drain(..)
            .partition(|p| p.ike_sa.is_some() && p.children_needed.is_empty());
        self.pending_up = keep;
        for p in done {
            let _ = p.reply.send(Response {
                ok: true,
                lines: p.lines,
                ..Default::default()
            });
        }
    }

    fn status_json(&self, now: Instant) -> Value {
        let tables = self.dp.tables();
        let sas: Vec<Value> = self
            .endpoint
            .status(now)
            .into_iter()
            .map(|sa| {
                let id = sa.id;
                let mut v = serde_json::to_value(&sa).unwrap_or(Value::Null);
                if let Some(children) = v.get_mut("child_sas").and_then(Value::as_array_mut) {
                    for ch in children.iter_mut() {
                        let spi = |k: &str| -> Option<u32> {
                            let s = ch.get(k)?.as_str()?;
                            let s = s.trim_start_matches("0x");
                            u32::from_str_radix(s, 16).ok()
                        };
                        let spis = match (spi("spi_in"), spi("spi_out")) {
                            (Some(i), Some(o)) => Some((i, o)),
                            _ => {
                                let name = ch.get("name").and_then(Value::as_str).unwrap_or("");
                                self.installed
                                    .iter()
                                    .rev()
                                    .find(|c| c.ike_sa == id && c.child == name)
                                    .map(|c| (c.spi_in, c.spi_out))
                            }
                        };
                        let (i, o) = spis
                            .map(|(i, o)| tables.sa_counters(i, o))
                            .unwrap_or((None, None));
                        let (i, o) = (i.unwrap_or_default(), o.unwrap_or_default());
                        if let Some(obj) = ch.as_object_mut() {
                            obj.insert("bytes_in".into(), json!(i.bytes));
                            obj.insert("packets_in".into(), json!(i.packets));
                            obj.insert("bytes_out".into(), json!(o.bytes));
                            obj.insert("packets_out".into(), json!(o.packets));
                            obj.insert(
                                "dropped_replay".into(),
                                json!(i.dropped_replay + o.dropped_replay),
                            );
                            obj.insert(
                                "dropped_auth".into(),
                                json!(i.dropped_auth + o.dropped_auth),
                            );
                            obj.insert(
                                "dropped_malformed".into(),
                                json!(i.dropped_malformed + o.dropped_malformed),
                            );
                        }
                    }
                }
                v
            })
            .collect();
        json!({
            "ike_sas": sas,
            "counters": self.dp.counters().snapshot(),
            "ike_counters": self.endpoint.stats(),
            "tun_mtu": self.tun_mtu,
            "tun_mtu_derivation": self.tun_mtu_how,
            "tun_queue_packets": self.dp.tun_queue_packets(),
        })
    }
}

/// The data-plane counters of one CHILD_SA for [`Endpoint::note_child_counters`] (the
/// outbound side is absent while its policy is held back after a rekey we answered).
fn child_counters(
    tables: &fs_dataplane::Tables,
    spi_in: u32,
    spi_out: u32,
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

/// A pending request not yet tied to an IKE SA matches any; otherwise only its own.
fn same_sa(pending: Option<u64>, ike_sa: u64) -> bool {
    match pending {
        None => true,
        Some(id) => id == ike_sa,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fs_dataplane::Tables;

    fn sa_cfg(spi: u32) -> fs_esp::SaConfig {
        fs_esp::SaConfig {
            spi,
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
        let c = child_counters(&t, 0x100, 0x200);
        assert_eq!(c.seq_out, near);
        assert!(c.seq_out >= (1u64 << 32) - fs_ike::SEQ_REKEY_MARGIN);
        assert_eq!(
            child_counters(&t, 0x101, 0x201),
            fs_ike::ChildCounters::default()
        );
        // NAT rebinding: the outbound entry follows the peer.
        let new: SocketAddr = "2.2.2.2:31337".parse().unwrap();
        assert!(t.set_outbound_remote(0x200, new));
        assert!(!t.set_outbound_remote(0x999, new));
        let remote = t.spd().iter().find_map(|p| match &p.action {
            PolicyAction::Protect(e) => Some(e.remote),
            _ => None,
        });
        assert_eq!(remote, Some(new));
    }
}
