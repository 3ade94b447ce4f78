//! Ferroswan launcher.

use crate::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

// ---------------------------------------------------------------------------------------
// ferroswan
// ---------------------------------------------------------------------------------------

/// The ferroswan binary under test: `$FERROSWAN_BIN` if set, else `ferroswan` in the directory
/// above the running test executable (`target/<profile>/deps/<test>-<hash>` ->
/// `target/<profile>/ferroswan`, which is what `CARGO_BIN_EXE_ferroswan` names for the root
/// package's integration tests; cargo builds the binary before running them). Panics if that
/// file does not exist, so a test never runs some other ferroswan by accident.
pub fn ferroswan_bin() -> &'static str {
    static BIN: OnceLock<String> = OnceLock::new();
    BIN.get_or_init(|| {
        let path = match std::env::var_os("FERROSWAN_BIN") {
            Some(p) => PathBuf::from(p),
            None => {
                let exe = std::env::current_exe()
                    .unwrap_or_else(|e| panic!("cannot find the test executable: {e}"));
                let deps = exe.parent().unwrap_or_else(|| Path::new("."));
                // `cargo test` runs test executables from target/<profile>/deps/.
                let profile_dir = if deps.file_name().is_some_and(|n| n == "deps") {
                    deps.parent().unwrap_or(deps)
                } else {
                    deps
                };
                profile_dir.join("ferroswan")
            }
        };
        assert!(
            path.is_file(),
            "ferroswan binary not found at {} (build it with `cargo build --bin ferroswan`, or set \
             FERROSWAN_BIN)",
            path.display()
        );
        path.to_string_lossy().into_owned()
    })
}

/// `ferroswan run` in a namespace, with a rendered TOML config and a per-test control socket.
pub struct Ferroswan {
    pub name: String,
    pub ns: String,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub socket: PathBuf,
    pub log: PathBuf,
    proc_id: usize,
    reg: Arc<Registry>,
}

impl Ferroswan {
    pub fn start(topo: &Topology, ns: &str, name: &str, p: &GwParams) -> Ferroswan {
        Self::start_opts(topo, ns, name, p, &[])
    }

    /// Like `start`, with template variables overridden (`FS_CONN_EXTRA`, `FS_CHILD_EXTRA`:
    /// extra lines in the connection / child table).
    pub fn start_opts(
        topo: &Topology,
        ns: &str,
        name: &str,
        p: &GwParams,
        opts: &[(&str, &str)],
    ) -> Ferroswan {
        let dir = topo.dir.join(name);
        fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("ctl.sock");
        let _ = fs::remove_file(&socket);
        let config = dir.join("ferroswan.toml");
        let mut vars = [opts, &p.vars()].concat();
        let sock_s = socket.to_str().unwrap().to_string();
        vars.push(("CONTROL_SOCKET", &sock_s));
        fs::write(&config, render("ferroswan.toml.tmpl", &vars)).unwrap();
        Self::launch(topo, ns, name, dir, config, socket)
    }

    /// Start `ferroswan run` in `ns` with the config file already written at `config`, wait
    /// for its control socket (panics with the log tail if it dies during startup).
    fn launch(
        topo: &Topology,
        ns: &str,
        name: &str,
        dir: PathBuf,
        config: PathBuf,
        socket: PathBuf,
    ) -> Ferroswan {
        let log = dir.join("ferroswan.log");
        let f = fs::File::create(&log).unwrap();
        topo.reg.add_log(&format!("ferroswan {name} ({ns})"), &log);
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, ferroswan_bin(), "run", "--config"])
            .arg(&config)
            .arg("--control")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f);
        if let Some(v) = std::env::var_os("FS_TEST_RUST_LOG") {
            cmd.env("RUST_LOG", v);
        }
        let proc_id = topo.spawn(&format!("ferroswan {name}"), &mut cmd, libc::SIGTERM);
        let fsw = Ferroswan {
            name: name.into(),
            ns: ns.into(),
            dir,
            config,
            socket,
            log,
            proc_id,
            reg: topo.reg.clone(),
        };
        let ok = poll(Duration::from_secs(15), || {
            if let Some(st) = fsw.reg.exited(fsw.proc_id) {
                panic!(
                    "ferroswan daemon {name} exited during startup ({st:?}); its log:\n{}",
                    tail(&fsw.log, 30)
                );
            }
            fsw.socket.exists().then_some(())
        });
        assert!(
            ok.is_some(),
            "ferroswan {name}: control socket {} not there after 15 s",
            fsw.socket.display()
        );
        fsw
    }

    /// Panic with the log tail if the daemon died.
    pub fn assert_alive(&self) {
        if let Some(st) = self.reg.exited(self.proc_id) {
            panic!(
                "ferroswan daemon {} exited ({st:?}); log:\n{}",
                self.name,
                tail(&self.log, 30)
            );
        }
    }

    /// `ferroswan --control SOCK <args>` (60 s limit).
    pub fn ctl(&self, args: &[&str]) -> Output {
        let mut c = Command::new(ferroswan_bin());
        c.arg("--control").arg(&self.socket).args(args);
        run_timeout(&mut c, Duration::from_secs(60))
    }

    /// `ferroswan up CONN`: Ok(output) on exit 0, Err(output) otherwise.
    pub fn up(&self, conn: &str) -> Result<String, String> {
        let o = self.ctl(&["up", conn, "--timeout", "20"]);
        if o.status.success() {
            Ok(text(&o))
        } else {
            Err(format!(
                "`ferroswan up {conn}` on {} failed ({}): {}",
                self.name,
                o.status,
                text(&o)
            ))
        }
    }

    pub fn down(&self, conn: &str) -> Result<String, String> {
        let o = self.ctl(&["down", conn]);
        if o.status.success() {
            Ok(text(&o))
        } else {
            Err(format!(
                "`ferroswan down {conn}` on {} failed ({}): {}",
                self.name,
                o.status,
                text(&o)
            ))
        }
    }

    /// `ferroswan status --json`, parsed.
    pub fn status_json(&self) -> Result<serde_json::Value, String> {
        let o = self.ctl(&["status", "--json"]);
        if !o.status.success() {
            return Err(format!(
                "`ferroswan status --json` on {} failed ({}): {}",
                self.name,
                o.status,
                text(&o)
            ));
        }
        serde_json::from_slice(&o.stdout).map_err(|e| {
            format!(
                "status --json on {}: bad JSON ({e}): {}",
                self.name,
                text(&o)
            )
        })
    }

    /// The IKE SAs of `status --json` (accepts `{"ike_sas": [...]}`, the control response
    /// `{"ok": true, "status": {"ike_sas": [...]}}`, or a bare array).
    pub fn ike_sas(&self) -> Result<Vec<serde_json::Value>, String> {
        let v = self.status_json()?;
        // `{"ike_sas": [..]}`, or wrapped as the control response `{"status": {"ike_sas": ..}}`
        // A reply without the array is an error, never "no SAs" (that would let checks for
        // the absence of SAs pass on an error reply).
        v.get("ike_sas")
            .or_else(|| v.get("status").and_then(|s| s.get("ike_sas")))
            .and_then(|a| a.as_array())
            .cloned()
            .ok_or_else(|| format!("status --json on {}: no ike_sas array: {v}", self.name))
    }

    /// Wait until an IKE SA of `conn` is ESTABLISHED with an INSTALLED child.
    pub fn wait_for_sa(&self, conn: &str, timeout: Duration) -> Result<serde_json::Value, String> {
        let mut last = String::new();
        poll(timeout, || {
            self.assert_alive();
            match self.ike_sas() {
                Ok(sas) => {
                    last = format!("{sas:?}");
                    sas.into_iter().find(|sa| {
                        sa["conn"] == conn
                            && sa["state"] == "ESTABLISHED"
                            && children(sa).iter().any(|c| c["state"] == "INSTALLED")
                    })
                }
                Err(e) => {
                    last = e;
                    None
                }
            }
        })
        .ok_or_else(|| {
            format!(
                "ferroswan {}: no ESTABLISHED IKE SA {conn} with an INSTALLED child; last status: {last}",
                self.name
            )
        })
    }

    pub fn wait_no_sa(&self, timeout: Duration) -> Result<(), String> {
        let mut last = String::new();
        poll(timeout, || match self.ike_sas() {
            Ok(sas) if sas.is_empty() => Some(()),
            Ok(sas) => {
                last = format!("{sas:?}");
                None
            }
            Err(e) => {
                last = e;
                None
            }
        })
        .ok_or_else(|| format!("ferroswan {}: SAs still present: {last}", self.name))
    }

    pub fn log(&self) -> String {
        read_lossy(&self.log)
    }

    pub fn stop(&self) -> Option<ExitStatus> {
        self.reg.stop(self.proc_id, Duration::from_secs(10))
    }

    /// Crash: SIGKILL the daemon by PID (no Delete sent), then reap it.
    pub fn kill(&self) {
        self.reg.kill(self.proc_id);
    }
}

// Additive helpers (robustness/policy/ipv6 tests): a daemon from a full config text, its PID
// and its counters. `start` above is unchanged.
impl Ferroswan {
    /// Like [`Ferroswan::start`], but with a complete TOML config text instead of the
    /// template; `${CONTROL_SOCKET}` in it is replaced by the per-test control socket.
    pub fn start_with_config(
        topo: &Topology,
        ns: &str,
        name: &str,
        config_text: &str,
    ) -> Ferroswan {
        let dir = topo.dir.join(name);
        fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("ctl.sock");
        let config = dir.join("ferroswan.toml");
        fs::write(
            &config,
            config_text.replace("${CONTROL_SOCKET}", socket.to_str().unwrap()),
        )
        .unwrap();
        Self::launch(topo, ns, name, dir, config, socket)
    }

    /// PID of the daemon process (`ip netns exec` execs it), while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.reg.pid(self.proc_id)
    }

    /// True while the daemon process has not exited.
    pub fn alive(&self) -> bool {
        self.reg.exited(self.proc_id).is_none()
    }

    /// Data-plane (`counters`) and IKE (`ike_counters`) drop counters of `status --json`,
    /// merged into one map; IKE ones keep their `dropped_...` names.
    pub fn counters(&self) -> Result<std::collections::BTreeMap<String, u64>, String> {
        let v = self.status_json()?;
        let root = v.get("status").unwrap_or(&v);
        let mut m = std::collections::BTreeMap::new();
        for key in ["counters", "ike_counters"] {
            if let Some(obj) = root.get(key).and_then(|c| c.as_object()) {
                for (k, val) in obj {
                    if let Some(n) = val.as_u64() {
                        m.insert(k.clone(), n);
                    }
                }
            }
        }
        if m.is_empty() {
            return Err(format!("status --json on {}: no counters: {v}", self.name));
        }
        Ok(m)
    }
}

impl Drop for Ferroswan {
    fn drop(&mut self) {
        self.reg.stop(self.proc_id, Duration::from_secs(5));
    }
}

/// CHILD_SAs of one IKE SA from `status --json` (`child_sas`, or `children`).
pub fn children(sa: &serde_json::Value) -> Vec<serde_json::Value> {
    sa.get("child_sas")
        .or_else(|| sa.get("children"))
        .and_then(|c| c.as_array())
        .cloned()
        .unwrap_or_default()
}
