//! `[daemon]`: control socket, TUN device, workers, log level, IKE ports.
use super::range::{CONTROL_SOCKET_MAX_LEN, PORT};
use super::raw::{RawDaemon, RawTunMtu};
use super::{ConfigError, Ctx, DaemonSettings, TunMtu, DEFAULT_CONTROL_SOCKET};
use std::path::PathBuf;

pub(super) fn parse(ctx: &Ctx, d: &RawDaemon) -> Result<DaemonSettings, ConfigError> {
    let tun_mtu = match &d.tun_mtu {
        None => TunMtu::Auto,
        Some(RawTunMtu::Text(t)) if t == "auto" => TunMtu::Auto,
        Some(RawTunMtu::Text(t)) => {
            return Err(ctx.err(
                "daemon.tun_mtu",
                format!("invalid value {t:?} (\"auto\" or a number 576..65535)"),
            ))
        }
        Some(RawTunMtu::Num(n)) => match u16::try_from(*n) {
            Ok(m) if m >= 576 => TunMtu::Fixed(m),
            _ => return Err(ctx.err("daemon.tun_mtu", format!("{n} out of range 576..65535"))),
        },
    };
    let max = fs_dataplane::WORKERS_MAX;
    let workers = match &d.workers {
        None => 0,
        Some(RawTunMtu::Text(t)) if t == "auto" => 0,
        Some(RawTunMtu::Text(t)) => {
            return Err(ctx.err(
                "daemon.workers",
                format!("invalid value {t:?} (\"auto\" or a number 0..{max}, 0 = auto)"),
            ))
        }
        Some(RawTunMtu::Num(n)) => match usize::try_from(*n) {
            Ok(w) if w <= max => w,
            _ => {
                return Err(ctx.err(
                    "daemon.workers",
                    format!("{n} out of range 0..{max} (0 = \"auto\")"),
                ))
            }
        },
    };
    let tun_name = d.tun_name.clone().unwrap_or_else(|| "fs0".into());
    if tun_name.is_empty() || tun_name.len() > 15 || tun_name.contains(['/', ' ', '\0']) {
        return Err(ctx.err(
            "daemon.tun_name",
            format!("invalid interface name {tun_name:?} (1-15 characters)"),
        ));
    }
    if let Some(l) = &d.log_level {
        if tracing_subscriber::EnvFilter::try_new(l).is_err() {
            return Err(ctx.err(
                "daemon.log_level",
                format!("invalid log level {l:?} (error, warn, info, debug, trace)"),
            ));
        }
    }
    let ike_port = PORT
        .check(ctx, "daemon.ike_port", d.ike_port)?
        .unwrap_or(500);
    let natt_port = PORT
        .check(ctx, "daemon.natt_port", d.natt_port)?
        .unwrap_or(4500);
    if ike_port == natt_port {
        return Err(ctx.err(
            "daemon.natt_port",
            "ike_port and natt_port must be distinct and non-zero",
        ));
    }
    let control_socket = d
        .control_socket
        .clone()
        .unwrap_or_else(|| DEFAULT_CONTROL_SOCKET.into());
    // An empty path would leave the daemon unreachable; a longer one does not fit sun_path.
    if control_socket.is_empty() {
        return Err(ctx.err(
            "daemon.control_socket",
            "must not be empty (omit it for the default /run/ferroswan/ferroswan.sock)",
        ));
    }
    if control_socket.len() > CONTROL_SOCKET_MAX_LEN || control_socket.contains('\0') {
        return Err(ctx.err(
            "daemon.control_socket",
            format!(
                "must be at most {CONTROL_SOCKET_MAX_LEN} bytes without NUL (a Unix socket path), got {} bytes",
                control_socket.len()
            ),
        ));
    }
    if let Some(u) = &d.user {
        if u.is_empty() || u.contains(['\0', ':', '/']) {
            return Err(ctx.err("daemon.user", format!("invalid user name {u:?}")));
        }
    }
    Ok(DaemonSettings {
        control_socket: PathBuf::from(control_socket),
        tun_name,
        tun_mtu,
        workers,
        log_level: d.log_level.clone(),
        ike_port,
        natt_port,
        fail_closed: d.fail_closed.unwrap_or(true),
        user: d.user.clone(),
    })
}
