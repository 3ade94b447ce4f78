//! The daemon's side of fail-closed operation: the nftables table that keeps every configured
//! child's traffic from leaving in clear while no ferroswan process routes it into the TUN
//! device (see `fs_dataplane::failclosed` for the rules, DESIGN.md "Fail closed" for the whole
//! picture), installed before the data plane starts, and `ferroswan unblock` to lift it.
use crate::config::FileConfig;
use fs_dataplane::failclosed::{self, BlockedChild, FailClosed};
use tracing::{error, info, warn};

/// The table's content for `cfg`: one entry per configured child.
pub fn spec(cfg: &FileConfig) -> FailClosed {
    FailClosed {
        tun: cfg.daemon.tun_name.clone(),
        ike_ports: [cfg.daemon.ike_port, cfg.daemon.natt_port],
        children: cfg
            .ike
            .connections
            .iter()
            .flat_map(|c| {
                c.children.iter().map(|ch| BlockedChild {
                    name: format!("{}/{}", c.name, ch.name),
                    local_ts: ch.local_ts.clone(),
                    remote_ts: ch.remote_ts.clone(),
                })
            })
            .collect(),
    }
}

/// Install (or replace) the table at daemon start, before the TUN device exists. `Err` (the
/// daemon must not start) when it cannot be installed and `[daemon] fail_closed` is on.
pub fn install_at_start(cfg: &FileConfig) -> Result<(), String> {
    let fc = spec(cfg);
    let table = failclosed::table_name(&fc.tun);
    if !cfg.daemon.fail_closed {
        match failclosed::remove(&fc.tun) {
            Ok(true) => warn!("fail_closed = false: removed nftables table inet {table}"),
            Ok(false) => {}
            Err(e) => warn!("fail_closed = false: cannot check for table inet {table}: {e}"),
        }
        warn!(
            "fail_closed = false: while ferroswan is not running, traffic of the configured \
             children follows the other routes, in clear"
        );
        return Ok(());
    }
    match failclosed::install(&fc) {
        Ok(0) => {
            info!("fail-closed: no child configured, no nftables table");
            Ok(())
        }
        Ok(n) => {
            info!(
                "fail-closed: nftables table inet {table} drops {n} selector pair(s) outside \
                 {} (stays when ferroswan stops; `ferroswan unblock` lifts it)",
                fc.tun
            );
            Ok(())
        }
        Err(e) => {
            error!(
                "cannot install the fail-closed nftables table inet {table}: {e}; install \
                 nftables, or set [daemon] fail_closed = false to run without it"
            );
            Err(e.to_string())
        }
    }
}

/// `ferroswan unblock`: remove the table of TUN device `tun`. Returns the line to print.
pub fn unblock(tun: &str) -> Result<String, String> {
    let table = failclosed::table_name(tun);
    match failclosed::remove(tun) {
        Ok(true) => Ok(format!(
            "removed nftables table inet {table}: while ferroswan is not running, traffic of \
             its children is no longer blocked (the next `ferroswan run` installs it again)"
        )),
        Ok(false) => Ok(format!(
            "no fail-closed table inet {table}: nothing to unblock"
        )),
        Err(e) => Err(format!("cannot remove nftables table inet {table}: {e}")),
    }
}

/// Make a panic anywhere end the process: the fail-closed table keeps blocking, and a daemon
/// whose control thread died must not keep half its threads running.
pub fn abort_on_panic() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        error!("panic: aborting (the fail-closed table keeps the children's traffic blocked)");
        std::process::abort();
    }));
}
