//! The control socket: binding it, one thread per client reading one request line, and the
//! daemon's side of `up`, `down` and `status` (pending requests answered from events).
use super::Daemon;
use crate::control::{Request, Response, MAX_REQUEST};
use crossbeam_channel::Sender;
use fs_ike::IkeSaId;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Default `up` timeout (seconds).
const DEFAULT_UP_TIMEOUT: u64 = 30;
/// Default `down` timeout (seconds).
const DEFAULT_DOWN_TIMEOUT: u64 = 10;

/// A control request with the channel to answer on.
pub(super) struct ControlMsg {
    pub(super) req: Request,
    pub(super) reply: Sender<Response>,
}

pub(super) struct PendingUp {
    pub(super) conn: String,
    pub(super) ike_sa: Option<IkeSaId>,
    pub(super) children_needed: Vec<String>,
    pub(super) deadline: Instant,
    pub(super) lines: Vec<String>,
    pub(super) reply: Sender<Response>,
}

pub(super) struct PendingDown {
    pub(super) conn: String,
    pub(super) deadline: Instant,
    pub(super) reply: Sender<Response>,
}

pub(super) fn bind_control(path: &Path) -> std::io::Result<UnixListener> {
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
pub(super) const CONTROL_CLIENTS_MAX: usize = 16;

pub(super) fn accept_loop(listener: UnixListener, tx: Sender<ControlMsg>) {
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

impl Daemon {
    pub(super) fn on_control(&mut self, m: ControlMsg, shutting_down: bool) {
        let now = Instant::now();
        if shutting_down && !matches!(m.req, Request::Status) {
            let _ = m.reply.send(Response::fail("daemon is shutting down"));
            return;
        }
        match m.req {
            Request::Status => {
                let _ = m.reply.send(Response {
                    ok: true,
                    status: Some(self.status_report(now)),
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

    pub(super) fn expire_pending(&mut self, now: Instant) {
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

    pub(super) fn complete_ups(&mut self) {
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
}

/// A pending request not yet tied to an IKE SA matches any; otherwise only its own.
pub(super) fn same_sa(pending: Option<IkeSaId>, ike_sa: IkeSaId) -> bool {
    match pending {
        None => true,
        Some(id) => id == ike_sa,
    }
}
