//! ferroswan: IKEv2/IPsec VPN gateway with a userspace ESP data plane over TUN.
use ferroswan::config;
mod control;
mod daemon;
mod failclosed;
mod privs;
mod status;

use clap::{Parser, Subcommand};
use control::{Request, Response};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const EXAMPLES: &str = "\
Examples:
  ferroswan check-config /etc/ferroswan/gw-a.toml
      Validate a configuration file (exit 2 and FILE: FIELD: REASON on error).
  ferroswan run --config /etc/ferroswan/gw-a.toml
      Run the gateway in the foreground (logs on stderr; RUST_LOG=debug for more).
      Children with start_action = \"start\" are initiated at once; Ctrl-C/SIGTERM
      deletes all SAs and exits.
  ferroswan up s2s
      Bring up connection s2s (IKE SA + all children); exit 0 when established,
      exit 1 with the reason (AUTHENTICATION_FAILED, NO_PROPOSAL_CHOSEN, TIMEOUT...).
  ferroswan up s2s --child net --timeout 10
  ferroswan down s2s
  ferroswan status            (like swanctl --list-sas)
  ferroswan status --json     (machine-readable, with per-SA and drop counters)
  ferroswan unblock --config /etc/ferroswan/gw-a.toml
      Remove the fail-closed nftables table that keeps the children's traffic from
      leaving in clear while the daemon is not running (run installs it again).

up/down/status talk to the daemon over its control socket, default
/run/ferroswan/ferroswan.sock: if the daemon's config sets [daemon] control_socket
(or `run --control` was used), pass the same path with --control.";

/// IKEv2/IPsec VPN gateway with a userspace ESP data plane (TUN + UDP/raw ESP).
#[derive(Parser, Debug)]
#[command(name = "ferroswan", version, after_help = EXAMPLES)]
struct Cli {
    /// Control socket of the daemon [default: /run/ferroswan/ferroswan.sock, or the
    /// config's [daemon] control_socket for `run`]
    #[arg(long, global = true, value_name = "SOCK")]
    control: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the gateway daemon in the foreground
    Run {
        /// Configuration file (TOML)
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
    /// Establish a connection and wait until its IKE SA and CHILD_SAs are up
    Up {
        /// Connection name ([connections.NAME] in the config)
        conn: String,
        /// Only this child ([connections.CONN.children.NAME])
        #[arg(long, value_name = "CHILD")]
        child: Option<String>,
        /// Give up after this many seconds (reports TIMEOUT)
        #[arg(long, value_name = "SECS", default_value_t = 30)]
        timeout: u64,
    },
    /// Delete a connection's IKE SA (and its CHILD_SAs)
    Down {
        /// Connection name
        conn: String,
        /// Wait at most this many seconds for the peer's answer
        #[arg(long, value_name = "SECS", default_value_t = 10)]
        timeout: u64,
    },
    /// List IKE SAs, CHILD_SAs, traffic and drop counters
    Status {
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Lift the fail-closed block: remove the nftables table that drops the configured
    /// children's traffic outside the tunnel (it outlives the daemon on purpose; the next
    /// `run` installs it again)
    Unblock {
        /// Take the TUN device name from this configuration file ([daemon] tun_name)
        #[arg(long, short, value_name = "FILE", conflicts_with = "tun")]
        config: Option<PathBuf>,
        /// TUN device name of the daemon whose table to remove
        #[arg(long, value_name = "NAME", default_value = "fs0")]
        tun: String,
    },
    /// Validate a configuration file and exit (0 = valid, 2 = invalid)
    CheckConfig {
        /// Configuration file (TOML)
        file: PathBuf,
    },
}

fn client(sock: &std::path::Path, req: Request, wait: Duration) -> Result<Response, ExitCode> {
    control::call(sock, &req, wait).map_err(|e| {
        eprintln!("ferroswan: {e}");
        ExitCode::from(1)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let sock = cli
        .control
        .clone()
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_CONTROL_SOCKET));
    match cli.cmd {
        Cmd::CheckConfig { file } => match config::load(&file) {
            Ok(c) => {
                // valid, but weak or exposed secrets: FILE: FIELD: warning: REASON
                for w in &c.warnings {
                    eprintln!("{w}");
                }
                let names: Vec<String> = c
                    .ike
                    .connections
                    .iter()
                    .map(|c| {
                        let ch: Vec<&str> = c.children.iter().map(|x| x.name.as_str()).collect();
                        format!("{} {{{}}}", c.name, ch.join(", "))
                    })
                    .collect();
                println!(
                    "{}: OK ({} connection(s): {})",
                    file.display(),
                    names.len(),
                    names.join("; ")
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        Cmd::Unblock { config, tun } => {
            let tun = match config.map(|f| config::load(&f)) {
                None => tun,
                Some(Ok(c)) => c.daemon.tun_name,
                Some(Err(e)) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            match failclosed::unblock(&tun) {
                Ok(line) => {
                    println!("{line}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("ferroswan: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Cmd::Run { config } => match config::load(&config) {
            Ok(c) => ExitCode::from(daemon::run(c, cli.control) as u8),
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        Cmd::Up {
            conn,
            child,
            timeout,
        } => {
            let req = Request::Up {
                conn,
                child,
                timeout: Some(timeout),
            };
            let r = match client(&sock, req, Duration::from_secs(timeout)) {
                Ok(r) => r,
                Err(c) => return c,
            };
            for l in &r.lines {
                println!("{l}");
            }
            if r.ok {
                ExitCode::SUCCESS
            } else {
                println!("{}", r.error.as_deref().unwrap_or("failed"));
                ExitCode::from(1)
            }
        }
        Cmd::Down { conn, timeout } => {
            let r = match client(
                &sock,
                Request::Down {
                    conn,
                    timeout: Some(timeout),
                },
                Duration::from_secs(timeout),
            ) {
                Ok(r) => r,
                Err(c) => return c,
            };
            for l in &r.lines {
                println!("{l}");
            }
            if r.ok {
                ExitCode::SUCCESS
            } else {
                eprintln!("ferroswan: {}", r.error.as_deref().unwrap_or("failed"));
                ExitCode::from(1)
            }
        }
        Cmd::Status { json } => {
            let r = match client(&sock, Request::Status, Duration::from_secs(5)) {
                Ok(r) => r,
                Err(c) => return c,
            };
            if !r.ok {
                eprintln!("ferroswan: {}", r.error.as_deref().unwrap_or("failed"));
                return ExitCode::from(1);
            }
            match (r.status, json) {
                (Some(st), true) => println!("{}", st.to_json_pretty()),
                (Some(st), false) => print!("{}", status::format_status(&st)),
                // never sent by the daemon; printed as before the report was typed
                (None, true) => println!("null"),
                (None, false) => print!("{}", status::format_status(&Default::default())),
            }
            ExitCode::SUCCESS
        }
    }
}
