//! StrongSwan launcher.

use crate::*;
use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

// ---------------------------------------------------------------------------------------
// strongSwan
// ---------------------------------------------------------------------------------------

/// A private charon in its own mount namespace (private /run), own strongswan.conf and vici
/// socket, inside one of the topology's network namespaces.
pub struct StrongSwan {
    pub name: String,
    pub ns: String,
    pub dir: PathBuf,
    pub log: PathBuf,
    proc_id: usize,
    reg: Arc<Registry>,
}

impl StrongSwan {
    pub fn start(topo: &Topology, ns: &str, name: &str, p: &GwParams) -> StrongSwan {
        Self::start_opts(topo, ns, name, p, &[])
    }

    /// Like `start`, with template variables overridden (`SS_IKE_REKEY_TIME`,
    /// `SS_CHILD_REKEY_TIME`, `SS_CONN_EXTRA`, `SS_CHILD_EXTRA`, `CHARON_EXTRA`: extra lines
    /// in the connection / child / charon sections).
    pub fn start_opts(
        topo: &Topology,
        ns: &str,
        name: &str,
        p: &GwParams,
        opts: &[(&str, &str)],
    ) -> StrongSwan {
        let dir = topo.dir.join(name);
        let inst = dir.to_str().unwrap().to_string();
        fs::create_dir_all(dir.join("run")).unwrap();
        for sub in [
            "x509", "x509ca", "private", "rsa", "ecdsa", "pkcs8", "pkcs12", "x509crl", "pubkey",
            "conf.d",
        ] {
            fs::create_dir_all(dir.join("swanctl").join(sub)).unwrap();
        }
        fs::write(
            dir.join("strongswan.conf"),
            render(
                "strongswan.conf.tmpl",
                &[opts, &[("INST_DIR", &inst), ("CHARON_EXTRA", "")]].concat(),
            ),
        )
        .unwrap();
        fs::write(
            dir.join("swanctl/swanctl.conf"),
            render("swanctl.conf.tmpl", &[opts, &p.vars()].concat()),
        )
        .unwrap();
        // a restarted instance must not find its predecessor's socket
        let _ = fs::remove_file(dir.join("run/charon.vici"));
        let log = dir.join("charon.log");
        let stdout = fs::File::create(dir.join("stdout.log")).unwrap();
        topo.reg.add_log(&format!("charon {name} ({ns})"), &log);
        topo.reg
            .add_log(&format!("charon {name} stdout"), &dir.join("stdout.log"));
        // charon's pid file is hard-wired to /run/charon.pid: give it a private /run.
        // ip netns exec -> unshare -> sh -> env -> charon all exec, so the PID is charon's.
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            ns,
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
        ])
        .arg(r#"mount --bind "$1/run" /run && exec env STRONGSWAN_CONF="$1/strongswan.conf" "$2""#)
        .arg("sh")
        .arg(&inst)
        .arg(charon_path())
        .stdin(Stdio::null())
        .stdout(stdout.try_clone().unwrap())
        .stderr(stdout);
        let proc_id = topo.spawn(&format!("charon {name}"), &mut cmd, libc::SIGTERM);
        let ss = StrongSwan {
            name: name.into(),
            ns: ns.into(),
            dir,
            log,
            proc_id,
            reg: topo.reg.clone(),
        };
        let vici = ss.dir.join("run/charon.vici");
        let ok = poll(Duration::from_secs(15), || {
            if let Some(st) = ss.reg.exited(ss.proc_id) {
                panic!("charon {name} exited during startup ({st:?})");
            }
            vici.exists().then_some(())
        });
        assert!(ok.is_some(), "charon {name}: no vici socket after 15 s");
        let o = ss.swanctl(&["--load-all", "--noprompt"]);
        assert!(
            o.status.success(),
            "swanctl --load-all on {name} failed:\n{}",
            text(&o)
        );
        ss
    }

    pub fn uri(&self) -> String {
        format!("unix://{}", self.dir.join("run/charon.vici").display())
    }

    /// Run swanctl against this instance (30 s limit).
    pub fn swanctl(&self, args: &[&str]) -> Output {
        let mut c = Command::new("swanctl");
        c.args(args)
            .arg("--uri")
            .arg(self.uri())
            .env("SWANCTL_DIR", self.dir.join("swanctl"));
        run_timeout(&mut c, Duration::from_secs(30))
    }

    pub fn initiate(&self) -> Output {
        self.swanctl(&[
            "--initiate",
            "--ike",
            CONN,
            "--child",
            CHILD,
            "--timeout",
            "20",
        ])
    }

    pub fn list_sas(&self) -> String {
        text(&self.swanctl(&["--list-sas"]))
    }

    pub fn established(&self) -> bool {
        let s = self.list_sas();
        s.contains("ESTABLISHED") && s.contains("INSTALLED")
    }

    /// Wait until the IKE SA is ESTABLISHED and the CHILD_SA INSTALLED.
    pub fn wait_for_sa(&self, timeout: Duration) -> Result<String, String> {
        poll(timeout, || {
            let s = self.list_sas();
            (s.contains("ESTABLISHED") && s.contains("INSTALLED")).then_some(s)
        })
        .ok_or_else(|| {
            format!(
                "strongSwan {}: no ESTABLISHED/INSTALLED SA:\n{}",
                self.name,
                self.list_sas()
            )
        })
    }

    /// Wait until `swanctl --list-sas` lists no SA at all. Only a successful listing from a
    /// running charon counts: a dead daemon or a failed swanctl is not "no SA".
    pub fn wait_no_sa(&self, timeout: Duration) -> Result<(), String> {
        poll(timeout, || {
            let out = self.swanctl(&["--list-sas"]);
            (out.status.success() && self.alive() && !text(&out).contains(&format!("{CONN}: #")))
                .then_some(())
        })
        .ok_or_else(|| {
            format!(
                "strongSwan {}: SAs still present:\n{}",
                self.name,
                self.list_sas()
            )
        })
    }

    /// Sum of (bytes_in, packets_in, bytes_out, packets_out) over the CHILD_SAs.
    pub fn child_counters(&self) -> (u64, u64, u64, u64) {
        let mut c = (0, 0, 0, 0);
        for line in self.list_sas().lines() {
            let l = line.trim_start();
            let dir_in = l.starts_with("in ");
            if !(dir_in || l.starts_with("out ")) {
                continue;
            }
            let n = |unit: &str| -> u64 {
                let words: Vec<&str> = l
                    .split(|ch: char| ch == ',' || ch.is_whitespace())
                    .filter(|w| !w.is_empty())
                    .collect();
                words
                    .windows(2)
                    .find(|w| w[1] == unit)
                    .and_then(|w| w[0].parse().ok())
                    .unwrap_or(0)
            };
            if dir_in {
                c.0 += n("bytes");
                c.1 += n("packets");
            } else {
                c.2 += n("bytes");
                c.3 += n("packets");
            }
        }
        c
    }

    pub fn log(&self) -> String {
        read_lossy(&self.log)
    }

    pub fn alive(&self) -> bool {
        self.reg.exited(self.proc_id).is_none()
    }

    pub fn stop(&self) {
        self.reg.stop(self.proc_id, Duration::from_secs(5));
    }

    /// charon's PID.
    pub fn pid(&self) -> Option<u32> {
        self.reg.pid(self.proc_id)
    }

    /// Crash: SIGKILL charon by PID (no Delete sent), then reap it.
    pub fn kill(&self) {
        self.reg.kill(self.proc_id);
    }
}

impl Drop for StrongSwan {
    fn drop(&mut self) {
        self.reg.stop(self.proc_id, Duration::from_secs(5));
    }
}
