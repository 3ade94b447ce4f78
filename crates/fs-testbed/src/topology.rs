//! Topology.

use crate::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::thread;

// ---------------------------------------------------------------------------------------
// topology
// ---------------------------------------------------------------------------------------

pub struct Topology {
    pub prefix: String,
    pub ha: String,
    pub ga: String,
    pub gb: String,
    pub hb: String,
    /// Per-test state directory (configs, logs, pcaps, sockets).
    pub dir: PathBuf,
    pub reg: Arc<Registry>,
}

/// Remove namespaces left behind by a killed earlier run of these tests (`fs-<tag>-<pid>-*`
/// whose pid is gone). Never touches other names.
fn remove_stale_namespaces() {
    let Ok(o) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let parts: Vec<&str> = name.split('-').collect();
        if parts.len() == 4
            && parts[0] == "fs"
            && ["hA", "gA", "gB", "hB"].contains(&parts[3])
            && parts[2].parse::<u32>().is_ok()
            && !Path::new(&format!("/proc/{}", parts[2])).exists()
        {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

impl Topology {
    /// The tunnel-only topology: no route between the private nets on the gateways.
    pub fn new(tag: &str) -> Topology {
        Self::build(tag, false)
    }

    /// Gateways route the private nets to each other in clear (baseline; unused so far).
    pub fn plain(tag: &str) -> Topology {
        Self::build(tag, true)
    }

    fn build(tag: &str, plain: bool) -> Topology {
        assert!(
            !tag.is_empty() && tag.chars().all(|c| c.is_ascii_alphanumeric()),
            "tag must be alphanumeric"
        );
        remove_stale_namespaces();
        let prefix = format!("fs-{tag}-{}", std::process::id());
        let dir = PathBuf::from(TEST_ROOT).join(&prefix);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create test dir");
        let t = Topology {
            ha: format!("{prefix}-hA"),
            ga: format!("{prefix}-gA"),
            gb: format!("{prefix}-gB"),
            hb: format!("{prefix}-hB"),
            prefix,
            dir,
            reg: Arc::new(Registry::default()),
        };
        // from here on, Drop cleans up whatever was created
        for ns in t.all() {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
            must(Command::new("ip").args(["netns", "add", ns]));
            must(Command::new("ip").args(["-n", ns, "link", "set", "lo", "up"]));
            ns_must(ns, &["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
            ns_must(
                ns,
                &["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"],
            );
        }
        let veth = |a: &str, ans: &str, b: &str, bns: &str| {
            must(Command::new("ip").args([
                "link", "add", a, "netns", ans, "type", "veth", "peer", "name", b, "netns", bns,
            ]));
        };
        veth("ha0", &t.ha, "ga-in", &t.ga);
        veth("ga-out", &t.ga, "gb-out", &t.gb);
        veth("hb0", &t.hb, "gb-in", &t.gb);
        let ip = |ns: &str, args: &[&str]| {
            must(Command::new("ip").args(["-n", ns]).args(args));
        };
        ip(
            &t.ha,
            &["addr", "add", &format!("{HA_IP}/24"), "dev", "ha0"],
        );
        ip(
            &t.ga,
            &["addr", "add", &format!("{GA_IN}/24"), "dev", "ga-in"],
        );
        ip(
            &t.ga,
            &[
                "addr",
                "add",
                &format!("{GA_OUT}/32"),
                "peer",
                &format!("{GB_OUT}/32"),
                "dev",
                "ga-out",
            ],
        );
        ip(
            &t.gb,
            &[
                "addr",
                "add",
                &format!("{GB_OUT}/32"),
                "peer",
                &format!("{GA_OUT}/32"),
                "dev",
                "gb-out",
            ],
        );
        ip(
            &t.gb,
            &["addr", "add", &format!("{GB_IN}/24"), "dev", "gb-in"],
        );
        ip(
            &t.hb,
            &["addr", "add", &format!("{HB_IP}/24"), "dev", "hb0"],
        );
        for (ns, dev) in [
            (&t.ha, "ha0"),
            (&t.ga, "ga-in"),
            (&t.ga, "ga-out"),
            (&t.gb, "gb-out"),
            (&t.gb, "gb-in"),
            (&t.hb, "hb0"),
        ] {
            ip(ns, &["link", "set", dev, "mtu", "1500", "up"]);
        }
        ip(&t.ha, &["route", "add", "default", "via", GA_IN]);
        ip(&t.hb, &["route", "add", "default", "via", GB_IN]);
        if plain {
            ip(
                &t.ga,
                &["route", "add", "default", "via", GB_OUT, "dev", "ga-out"],
            );
            ip(
                &t.gb,
                &["route", "add", "default", "via", GA_OUT, "dev", "gb-out"],
            );
        }
        for ns in [&t.ga, &t.gb] {
            ns_must(ns, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
            ns_must(
                ns,
                &[
                    "sysctl",
                    "-qw",
                    "net.ipv4.conf.all.rp_filter=0",
                    "net.ipv4.conf.default.rp_filter=0",
                ],
            );
        }
        t
    }

    pub fn all(&self) -> [&String; 4] {
        [&self.ha, &self.ga, &self.gb, &self.hb]
    }

    /// Start a background process (registered: stopped by PID on drop).
    pub fn spawn(&self, label: &str, cmd: &mut Command, stop_signal: i32) -> usize {
        let desc = format!("{cmd:?}");
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {label}: {desc}: {e}"));
        self.reg.add(label, child, stop_signal)
    }

    pub fn log_file(&self, name: &str) -> (PathBuf, fs::File) {
        let p = self.dir.join(name);
        let f = fs::File::create(&p).unwrap_or_else(|e| panic!("create {}: {e}", p.display()));
        (p, f)
    }

    /// Tail of every registered log (what a failure prints).
    pub fn logs(&self, lines: usize) -> String {
        self.reg.dump_logs(lines)
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        let failed = thread::panicking();
        if failed {
            eprintln!(
                "\n===== {} FAILED; state kept in {} =====\n{}",
                self.prefix,
                self.dir.display(),
                self.reg.dump_logs(40)
            );
        }
        self.reg.stop_all();
        for ns in self.all() {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
        if !failed && std::env::var_os("FS_TEST_KEEP").is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}
