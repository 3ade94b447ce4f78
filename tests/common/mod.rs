//! Shared harness for ferroswan's interop tests: network-namespace topology, strongSwan and
//! ferroswan launchers, traffic generators and wire checks.
//!
//! Topology (one set of namespaces per test, names `fs-<tag>-<pid>-{hA,gA,gB,hB}`):
//!
//! ```text
//! hostA 192.168.1.10 -- 192.168.1.1 gwA 100.1.1.1 ==veth== 200.2.2.2 gwB 192.168.2.1 -- 192.168.2.10 hostB
//!   ha0               ga-in          ga-out            gb-out          gb-in              hb0
//! ```
//!
//! The gateways forward but have **no route between the private nets** (except in the
//! `plain` variant): hostA can reach hostB only through a tunnel.
//!
//! Everything a test starts is registered in its [`Topology`]; dropping it (also while
//! panicking) stops those processes by PID, deletes the namespaces and, on failure, prints
//! the tail of every log. State lives in `/tmp/ferroswan-tests/<prefix>/` (kept on failure,
//! or always with `FS_TEST_KEEP=1`).
#![allow(dead_code)]

use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub const HA_IP: &str = "192.168.1.10";
pub const GA_IN: &str = "192.168.1.1";
pub const NET_A: &str = "192.168.1.0/24";
pub const HB_IP: &str = "192.168.2.10";
pub const GB_IN: &str = "192.168.2.1";
pub const NET_B: &str = "192.168.2.0/24";
pub const GA_OUT: &str = "100.1.1.1";
pub const GB_OUT: &str = "200.2.2.2";
/// Outside ("Internet") interface of gwA, where the wire checks capture.
pub const GA_OUT_IF: &str = "ga-out";

pub const IKE_PROPOSAL: &str = "aes256gcm16-prfsha256-x25519";
pub const PSK: &str = "harness-psk-0123456789abcdef";
pub const CONN: &str = "s2s";
pub const CHILD: &str = "net";

const TEST_ROOT: &str = "/tmp/ferroswan-tests";

// ---------------------------------------------------------------------------------------
// environment check
// ---------------------------------------------------------------------------------------

fn charon_path() -> PathBuf {
    std::env::var_os("CHARON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/ipsec/charon"))
}

fn in_path(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(
            ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
                .iter()
                .map(PathBuf::from),
        )
        .any(|d| d.join(tool).is_file())
}

fn is_ci() -> bool {
    std::env::var("CI")
        .map(|v| !v.is_empty() && v != "0" && v != "false")
        .unwrap_or(false)
}

/// Whether the interop test `name` can run here. Without root or the tools it prints a
/// clear SKIP message and returns false -- except under `CI` (set, not "false"/"0"), where
/// a missing prerequisite fails the test (CI installs them with scripts/install-deps.sh).
pub fn prerequisites(name: &str) -> bool {
    let mut missing = Vec::new();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        missing.push("root (network namespaces)".to_string());
    }
    if !charon_path().is_file() {
        missing.push(format!("strongSwan charon ({})", charon_path().display()));
    }
    for tool in ["swanctl", "tshark", "tcpdump", "ip", "ping", "unshare"] {
        if !in_path(tool) {
            missing.push(tool.to_string());
        }
    }
    if missing.is_empty() {
        return true;
    }
    let msg = format!(
        "{name}: missing {} (install with: sudo scripts/install-deps.sh; run as root)",
        missing.join(", ")
    );
    if is_ci() {
        panic!("CI is set, refusing to skip: {msg}");
    }
    eprintln!("SKIP {msg}");
    // libtest captures that line: record the skip where scripts/test.sh counts it.
    if let Some(path) = std::env::var_os("FS_SKIP_LOG") {
        if let Ok(mut f) = fs::OpenOptions::new().append(true).create(true).open(path) {
            let _ = writeln!(f, "{name}");
        }
    }
    false
}

// ---------------------------------------------------------------------------------------
// commands with deadlines
// ---------------------------------------------------------------------------------------

/// Poll `f` every 100 ms until it returns `Some` or `timeout` passes.
pub fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Run a command to completion with a time limit (killed past it), capturing its output.
pub fn run_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {desc}: {e}"));
    let mut out_pipe = child.stdout.take().unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let out_t = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out_pipe.read_to_end(&mut v);
        v
    });
    let err_t = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err_pipe.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let st = child.wait().expect("wait");
            eprintln!("[harness] timed out after {timeout:?}, killed: {desc}");
            break st;
        }
        thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out_t.join().unwrap(),
        stderr: err_t.join().unwrap(),
    }
}

pub fn text(o: &Output) -> String {
    let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&o.stderr));
    s
}

/// Run a command that must succeed (short administrative commands).
pub fn must(cmd: &mut Command) -> String {
    let desc = format!("{cmd:?}");
    let o = run_timeout(cmd, Duration::from_secs(30));
    assert!(
        o.status.success(),
        "command failed ({}): {desc}\n{}",
        o.status,
        text(&o)
    );
    text(&o)
}

pub fn ns_cmd(ns: &str, prog: &str) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, prog]);
    c
}

pub fn ns_must(ns: &str, args: &[&str]) -> String {
    let mut c = ns_cmd(ns, args[0]);
    c.args(&args[1..]);
    must(&mut c)
}

pub fn tail(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(b) => {
            let s = String::from_utf8_lossy(&b);
            let all: Vec<&str> = s.lines().collect();
            if all.is_empty() {
                return "(empty)".into();
            }
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

pub fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Replace every `${KEY}` in the template file `tests/interop/<name>`.
pub fn render(template: &str, vars: &[(&str, &str)]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(template);
    let mut s = fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read template {}: {e}", path.display()));
    for (k, v) in vars {
        s = s.replace(&format!("${{{k}}}"), v);
    }
    if let Some(i) = s.find("${") {
        let end = s[i..].find('}').map(|e| i + e + 1).unwrap_or(s.len());
        panic!("template {template}: unset variable {}", &s[i..end]);
    }
    s
}

// ---------------------------------------------------------------------------------------
// process registry: everything a test starts, stopped by PID on drop
// ---------------------------------------------------------------------------------------

struct Proc {
    id: usize,
    label: String,
    child: Child,
    stop_signal: i32,
}

#[derive(Default)]
pub struct Registry {
    procs: Mutex<Vec<Proc>>,
    logs: Mutex<Vec<(String, PathBuf)>>,
    next: Mutex<usize>,
}

impl Registry {
    fn add(&self, label: &str, child: Child, stop_signal: i32) -> usize {
        let mut n = self.next.lock().unwrap();
        *n += 1;
        let id = *n;
        self.procs.lock().unwrap().push(Proc {
            id,
            label: label.into(),
            child,
            stop_signal,
        });
        id
    }

    pub fn add_log(&self, label: &str, path: &Path) {
        self.logs
            .lock()
            .unwrap()
            .push((label.into(), path.to_path_buf()));
    }

    /// `Some(status)` if the process has exited (or was already stopped).
    pub fn exited(&self, id: usize) -> Option<Option<ExitStatus>> {
        let mut procs = self.procs.lock().unwrap();
        match procs.iter_mut().find(|p| p.id == id) {
            Some(p) => p.child.try_wait().ok().flatten().map(Some),
            None => Some(None),
        }
    }

    pub fn pid(&self, id: usize) -> Option<u32> {
        self.procs
            .lock()
            .unwrap()
            .iter()
            .find(|p| p.id == id)
            .map(|p| p.child.id())
    }

    fn stop_proc(p: &mut Proc, grace: Duration) -> Option<ExitStatus> {
        if let Ok(Some(st)) = p.child.try_wait() {
            return Some(st);
        }
        // Not reaped yet, so the PID is still ours (a zombie at worst): safe to signal.
        // SAFETY: plain kill(2) on our own un-reaped child.
        unsafe { libc::kill(p.child.id() as libc::pid_t, p.stop_signal) };
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = p.child.try_wait() {
                return Some(st);
            }
            thread::sleep(Duration::from_millis(25));
        }
        eprintln!(
            "[harness] {} (pid {}) ignored signal, SIGKILL",
            p.label,
            p.child.id()
        );
        let _ = p.child.kill();
        p.child.wait().ok()
    }

    /// SIGKILL process `id` and reap it (it stays registered, already exited).
    pub fn kill(&self, id: usize) {
        let mut procs = self.procs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = procs.iter_mut().find(|p| p.id == id) {
            if matches!(p.child.try_wait(), Ok(None)) {
                let _ = p.child.kill();
                let _ = p.child.wait();
            }
        }
    }

    /// Stop one process (its stop signal, then SIGKILL after `grace`).
    pub fn stop(&self, id: usize, grace: Duration) -> Option<ExitStatus> {
        let taken = {
            let mut procs = self.procs.lock().unwrap();
            procs
                .iter()
                .position(|p| p.id == id)
                .map(|i| procs.remove(i))
        };
        taken.and_then(|mut p| Self::stop_proc(&mut p, grace))
    }

    fn stop_all(&self) {
        let mut procs: Vec<Proc> = std::mem::take(&mut *self.procs.lock().unwrap());
        while let Some(mut p) = procs.pop() {
            Self::stop_proc(&mut p, Duration::from_secs(3));
        }
    }

    fn dump_logs(&self, lines: usize) -> String {
        let mut s = String::new();
        for (label, path) in self.logs.lock().unwrap().iter() {
            let _ = writeln!(
                s,
                "----- {label}: last {lines} lines of {} -----\n{}",
                path.display(),
                tail(path, lines)
            );
        }
        s
    }
}

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

// ---------------------------------------------------------------------------------------
// gateway parameters
// ---------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct GwParams {
    pub local_addr: String,
    pub remote_addr: String,
    pub local_id: String,
    pub remote_id: String,
    pub local_ts: String,
    pub remote_ts: String,
    pub ike_proposal: String,
    pub esp_proposal: String,
    pub psk: String,
}

impl GwParams {
    /// Site A gateway (the initiator in every test).
    pub fn a(esp: &str) -> GwParams {
        GwParams {
            local_addr: GA_OUT.into(),
            remote_addr: GB_OUT.into(),
            local_id: "gw-a.example".into(),
            remote_id: "gw-b.example".into(),
            local_ts: NET_A.into(),
            remote_ts: NET_B.into(),
            ike_proposal: IKE_PROPOSAL.into(),
            esp_proposal: esp.into(),
            psk: PSK.into(),
        }
    }
    /// Site B gateway (the responder).
    pub fn b(esp: &str) -> GwParams {
        GwParams {
            local_addr: GB_OUT.into(),
            remote_addr: GA_OUT.into(),
            local_id: "gw-b.example".into(),
            remote_id: "gw-a.example".into(),
            local_ts: NET_B.into(),
            remote_ts: NET_A.into(),
            ike_proposal: IKE_PROPOSAL.into(),
            esp_proposal: esp.into(),
            psk: PSK.into(),
        }
    }
    fn vars(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("LOCAL_ADDR", &self.local_addr),
            ("REMOTE_ADDR", &self.remote_addr),
            ("LOCAL_ID", &self.local_id),
            ("REMOTE_ID", &self.remote_id),
            ("LOCAL_TS", &self.local_ts),
            ("REMOTE_TS", &self.remote_ts),
            ("IKE_PROPOSAL", &self.ike_proposal),
            ("ESP_PROPOSAL", &self.esp_proposal),
            ("PSK", &self.psk),
            // lifecycle knobs (tests/lifecycle.rs overrides them via `start_opts`)
            ("SS_IKE_REKEY_TIME", "4h"),
            ("SS_CHILD_REKEY_TIME", "1h"),
            ("SS_CONN_EXTRA", ""),
            ("SS_CHILD_EXTRA", ""),
            ("FS_CONN_EXTRA", ""),
            ("FS_CHILD_EXTRA", ""),
            // extra traffic selectors, appended to the lists (tests/fragmentation.rs: big
            // IKE_AUTH messages); ferroswan: `, "a/b", ...`, strongSwan: `,a/b,...`
            ("FS_LOCAL_TS_EXTRA", ""),
            ("FS_REMOTE_TS_EXTRA", ""),
            ("SS_LOCAL_TS_EXTRA", ""),
            ("SS_REMOTE_TS_EXTRA", ""),
        ]
    }
}

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

// ---------------------------------------------------------------------------------------
// ferroswan
// ---------------------------------------------------------------------------------------

pub fn ferroswan_bin() -> &'static str {
    env!("CARGO_BIN_EXE_ferroswan")
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

// ---------------------------------------------------------------------------------------
// either gateway
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Impl {
    StrongSwan,
    Ferroswan,
}

pub enum Gw {
    Ss(StrongSwan),
    Fs(Ferroswan),
}

/// The INSTALLED CHILD_SA of CONN on a ferroswan gateway (`status --json`).
fn installed_child(f: &Ferroswan) -> serde_json::Value {
    let sa = f
        .wait_for_sa(CONN, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e}"));
    children(&sa)
        .into_iter()
        .find(|c| c["state"] == "INSTALLED")
        .unwrap_or_else(|| panic!("ferroswan {}: no INSTALLED CHILD_SA: {sa}", f.name))
}

impl Gw {
    pub fn start(kind: Impl, topo: &Topology, ns: &str, name: &str, p: &GwParams) -> Gw {
        Self::start_opts(kind, topo, ns, name, p, &[])
    }

    /// Like `start`; `fs_opts` are template overrides for a ferroswan gateway (a strongSwan
    /// one ignores them).
    pub fn start_opts(
        kind: Impl,
        topo: &Topology,
        ns: &str,
        name: &str,
        p: &GwParams,
        fs_opts: &[(&str, &str)],
    ) -> Gw {
        match kind {
            Impl::StrongSwan => Gw::Ss(StrongSwan::start(topo, ns, name, p)),
            Impl::Ferroswan => Gw::Fs(Ferroswan::start_opts(topo, ns, name, p, fs_opts)),
        }
    }

    /// Bring the tunnel up from this side: Err(text of the failure).
    pub fn initiate(&self) -> Result<String, String> {
        match self {
            Gw::Ss(s) => {
                let o = s.initiate();
                if o.status.success() {
                    Ok(text(&o))
                } else {
                    Err(format!(
                        "swanctl --initiate on {} failed ({}): {}",
                        s.name,
                        o.status,
                        text(&o)
                    ))
                }
            }
            Gw::Fs(f) => f.up(CONN),
        }
    }

    pub fn wait_established(&self, timeout: Duration) -> Result<(), String> {
        match self {
            Gw::Ss(s) => s.wait_for_sa(timeout).map(|_| ()),
            Gw::Fs(f) => f.wait_for_sa(CONN, timeout).map(|_| ()),
        }
    }

    pub fn wait_no_sa(&self, timeout: Duration) -> Result<(), String> {
        match self {
            Gw::Ss(s) => s.wait_no_sa(timeout),
            Gw::Fs(f) => f.wait_no_sa(timeout),
        }
    }

    /// After traffic: the CHILD_SA counted bytes and packets in both directions.
    pub fn assert_traffic_counted(&self) {
        match self {
            Gw::Ss(s) => {
                let (bi, pi, bo, po) = s.child_counters();
                assert!(
                    bi > 0 && pi > 0 && bo > 0 && po > 0,
                    "strongSwan {}: CHILD_SA counters not all > 0 (in {bi} B/{pi} pkts, out {bo} B/{po} pkts):\n{}",
                    s.name,
                    s.list_sas()
                );
            }
            Gw::Fs(f) => {
                let c = installed_child(f);
                for k in ["bytes_in", "packets_in", "bytes_out", "packets_out"] {
                    let v = c[k].as_u64().unwrap_or(0);
                    assert!(
                        v > 0,
                        "ferroswan {}: child {k} = {} (want > 0); child: {c}",
                        f.name,
                        c[k]
                    );
                }
            }
        }
    }

    /// (bytes in, bytes out) of the installed CHILD_SA.
    pub fn child_bytes(&self) -> (u64, u64) {
        match self {
            Gw::Ss(s) => {
                let (bi, _, bo, _) = s.child_counters();
                (bi, bo)
            }
            Gw::Fs(f) => {
                let c = installed_child(f);
                let get = |k: &str| {
                    c[k].as_u64()
                        .unwrap_or_else(|| panic!("ferroswan {}: child without {k}: {c}", f.name))
                };
                (get("bytes_in"), get("bytes_out"))
            }
        }
    }

    pub fn log(&self) -> String {
        match self {
            Gw::Ss(s) => s.log(),
            Gw::Fs(f) => f.log(),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Gw::Ss(s) => &s.name,
            Gw::Fs(f) => &f.name,
        }
    }
}

// ---------------------------------------------------------------------------------------
// traffic
// ---------------------------------------------------------------------------------------

/// `ping -c 3 -W 2` from namespace `ns` to `dst`; Err(output) unless it exits 0.
pub fn ping(ns: &str, dst: &str) -> Result<(), String> {
    let mut c = ns_cmd(ns, "ping");
    c.args(["-n", "-c", "3", "-i", "0.2", "-W", "2", dst]);
    let o = run_timeout(&mut c, Duration::from_secs(15));
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ping {dst} from {ns} failed ({}):\n{}",
            o.status,
            text(&o)
        ))
    }
}

/// Wait until a single ping gets through (tunnel fully installed on both ends).
pub fn wait_ping(ns: &str, dst: &str, timeout: Duration) -> Result<(), String> {
    poll(timeout, || {
        let mut c = ns_cmd(ns, "ping");
        c.args(["-n", "-c", "1", "-W", "1", dst]);
        run_timeout(&mut c, Duration::from_secs(5))
            .status
            .success()
            .then_some(())
    })
    .ok_or_else(|| format!("no ping reply from {dst} (from {ns}) within {timeout:?}"))
}

/// Move the calling thread into network namespace `ns` (setns is per thread).
pub fn enter_netns(ns: &str) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let f = fs::File::open(format!("/run/netns/{ns}"))?;
    // SAFETY: setns on a valid fd; only this thread's network namespace changes.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Deterministic pseudo-random payload (xorshift64*).
pub fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        v.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    v.truncate(len);
    v
}

fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// In a server thread: enter `ns` and listen on `bind_ip:port` (non-blocking), then tell the
/// client through `ready` whether that worked.
fn listen_in(
    ns: &str,
    bind_ip: &str,
    port: u16,
    ready: &mpsc::Sender<Result<(), String>>,
) -> Result<TcpListener, String> {
    let setup = (|| -> Result<TcpListener, String> {
        enter_netns(ns).map_err(|e| format!("setns {ns}: {e}"))?;
        let l = TcpListener::bind((bind_ip, port))
            .map_err(|e| format!("bind {bind_ip}:{port} in {ns}: {e}"))?;
        l.set_nonblocking(true).map_err(|e| e.to_string())?;
        Ok(l)
    })();
    let _ = ready.send(setup.as_ref().map(|_| ()).map_err(Clone::clone));
    setup
}

/// Accept one connection on a non-blocking `listener` before `deadline` (if the client never
/// connects the test fails instead of hanging); the stream is returned in blocking mode.
fn accept_by(listener: &TcpListener, deadline: Instant) -> Result<TcpStream, String> {
    let s = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Err("server: no connection before the deadline".into());
                }
                thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(format!("server accept: {e}")),
        }
    };
    s.set_nonblocking(false).map_err(|e| e.to_string())?;
    Ok(s)
}

/// Send `len` pseudo-random bytes over TCP from a socket in `client_ns` to a listener in
/// `server_ns` on `server_ip:port` (IPv4 or IPv6); the server checks every byte (length + content) and
/// answers "OK". Err(reason) on any mismatch, error or timeout.
pub fn tcp_transfer(
    client_ns: &str,
    server_ns: &str,
    server_ip: &str,
    port: u16,
    len: usize,
    timeout: Duration,
) -> Result<(), String> {
    let data = Arc::new(payload(len, 0x5eed ^ std::process::id() as u64));
    let expect_hash = fnv1a(&data);
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
    let deadline = Instant::now() + timeout;

    let addr = SocketAddr::new(server_ip.parse().map_err(|e| format!("{e}"))?, port);
    // Listen on the wildcard of the server address' family.
    let bind_ip = if addr.is_ipv6() { "::" } else { "0.0.0.0" };
    let sns = server_ns.to_string();
    let server = thread::spawn(move || -> Result<(), String> {
        let listener = listen_in(&sns, bind_ip, port, &ready_tx)?;
        let mut stream = accept_by(&listener, deadline)?;
        stream
            .set_read_timeout(Some(Duration::from_millis(500)))
            .map_err(|e| e.to_string())?;
        let mut got = Vec::with_capacity(len);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(format!("server read after {} bytes: {e}", got.len())),
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "server: only {} of {len} bytes before the deadline",
                    got.len()
                ));
            }
        }
        let ok = got.len() == len && fnv1a(&got) == expect_hash;
        let _ = stream.write_all(if ok { b"OK" } else { b"BAD" });
        if ok {
            Ok(())
        } else {
            let first_diff = got.iter().zip(data.iter()).position(|(a, b)| a != b);
            Err(format!(
                "server: received {} bytes (want {len}), content mismatch at {first_diff:?}",
                got.len()
            ))
        }
    });

    match ready_rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err("server thread did not start".into()),
    }

    let cns = client_ns.to_string();
    let send_data = payload(len, 0x5eed ^ std::process::id() as u64);
    let client = thread::spawn(move || -> Result<(), String> {
        enter_netns(&cns).map_err(|e| format!("setns {cns}: {e}"))?;
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .map_err(|e| format!("connect {addr} from {cns}: {e}"))?;
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(100));
        s.set_write_timeout(Some(left)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
        s.write_all(&send_data)
            .map_err(|e| format!("client write: {e}"))?;
        s.shutdown(Shutdown::Write)
            .map_err(|e| format!("client shutdown: {e}"))?;
        let mut reply = Vec::new();
        let _ = s.read_to_end(&mut reply);
        if reply == b"OK" {
            Ok(())
        } else {
            Err(format!(
                "client: server replied {:?}",
                String::from_utf8_lossy(&reply)
            ))
        }
    });
    let c = client
        .join()
        .map_err(|_| "client thread panicked".to_string())?;
    let s = server
        .join()
        .map_err(|_| "server thread panicked".to_string())?;
    s.and(c)
}

// ---------------------------------------------------------------------------------------
// wire capture
// ---------------------------------------------------------------------------------------

/// tcpdump on one interface of one namespace, written to a pcap; analysed with tshark.
pub struct Capture {
    pub pcap: PathBuf,
    proc_id: usize,
    reg: Arc<Registry>,
}

impl Capture {
    pub fn start(topo: &Topology, ns: &str, iface: &str, name: &str) -> Capture {
        let pcap = topo.dir.join(format!("{name}.pcap"));
        let errlog = topo.dir.join(format!("{name}.tcpdump.log"));
        let ef = fs::File::create(&errlog).unwrap();
        let mut cmd = ns_cmd(ns, "tcpdump");
        // -B: a 32 MB ring, so bursts of full-size ESP are not dropped while tcpdump writes
        cmd.args(["-Z", "root", "-U", "-B", "32768", "-n", "-i", iface, "-w"])
            .arg(&pcap)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(ef);
        let proc_id = topo.spawn(&format!("tcpdump {name}"), &mut cmd, libc::SIGINT);
        let cap = Capture {
            pcap,
            proc_id,
            reg: topo.reg.clone(),
        };
        let ok = poll(Duration::from_secs(10), || {
            if cap.reg.exited(cap.proc_id).is_some() {
                panic!("tcpdump on {ns}/{iface} exited: {}", read_lossy(&errlog));
            }
            read_lossy(&errlog).contains("listening on").then_some(())
        });
        assert!(
            ok.is_some(),
            "tcpdump on {ns}/{iface} not listening: {}",
            read_lossy(&errlog)
        );
        cap
    }

    /// Stop the capture (SIGINT, so the pcap is complete).
    pub fn stop(&self) {
        // let the last packets be written: libpcap hands tcpdump a ring block when it is
        // full or after its timeout, so wait until the file has not grown for 300 ms
        // (at most 5 s)
        let size = || fs::metadata(&self.pcap).map(|m| m.len()).unwrap_or(0);
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut last = size();
        loop {
            thread::sleep(Duration::from_millis(300));
            let now = size();
            if now == last || Instant::now() > deadline {
                break;
            }
            last = now;
        }
        self.reg.stop(self.proc_id, Duration::from_secs(5));
    }

    /// Number of packets matching a tshark display filter.
    pub fn count(&self, filter: &str) -> usize {
        self.field(filter, "frame.number").len()
    }

    /// Total length on the wire (`frame.len`, not the captured part) of the frames matching
    /// `filter`. Unlike [`Capture::count`] it does not depend on how packets were batched: a
    /// UDP GSO super-packet is one frame on a veth capture.
    pub fn bytes(&self, filter: &str) -> u64 {
        self.field(filter, "frame.len")
            .iter()
            .map(|l| {
                l.trim()
                    .parse::<u64>()
                    .unwrap_or_else(|e| panic!("tshark frame.len {l:?}: {e}"))
            })
            .sum()
    }

    /// The non-empty values of `field` for the frames matching `filter`.
    fn field(&self, filter: &str, field: &str) -> Vec<String> {
        let mut c = Command::new("tshark");
        c.arg("-n")
            .arg("-r")
            .arg(&self.pcap)
            .args(["-Y", filter, "-T", "fields", "-e", field]);
        let o = run_timeout(&mut c, Duration::from_secs(120));
        assert!(
            o.status.success(),
            "tshark -Y '{filter}' failed: {}",
            text(&o)
        );
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect()
    }

    /// Human summary of the capture (first lines), for failure messages.
    pub fn summary(&self, lines: usize) -> String {
        let mut c = Command::new("tshark");
        c.arg("-n").arg("-r").arg(&self.pcap);
        let o = run_timeout(&mut c, Duration::from_secs(120));
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .take(lines)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.reg.stop(self.proc_id, Duration::from_secs(3));
    }
}

// ---------------------------------------------------------------------------------------
// scenarios
// ---------------------------------------------------------------------------------------

/// Establish a site-to-site tunnel (gwA `a` initiates, gwB `b` responds) with ESP suite
/// `esp`, then check: SA state on both, ping both ways, a 2 MB TCP transfer whose bytes are
/// verified, ESP on the outside link and no 192.168.x.x in clear there, and SA counters.
pub fn site_to_site(tag: &str, a: Impl, b: Impl, esp: &str) {
    site_to_site_opts(tag, a, b, esp, &[], Wire::Udp)
}

/// gwA initiates; both gateways must show the SAs established within 15 s (panics
/// otherwise). Returns when the initiation started.
pub fn establish(tag: &str, gwa: &Gw, gwb: &Gw) -> Instant {
    let t0 = Instant::now();
    if let Err(e) = gwa.initiate() {
        panic!("[{tag}] tunnel setup failed: {e}");
    }
    gwa.wait_established(Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("[{tag}] {e}"));
    gwb.wait_established(Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("[{tag}] {e}"));
    eprintln!("[{tag}] established in {:?}", t0.elapsed());
    t0
}

/// How ESP must look on the outside link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    /// Every ESP packet in UDP 4500: strongSwan's kernel-libipsec always encapsulates, and
    /// two ferroswan peers with the default `encap = "auto"` negotiate it.
    Udp,
    /// Raw IP protocol 50 only (two ferroswan peers with `encap = false`, no NAT).
    Raw,
}

/// [`site_to_site`] with template overrides for the ferroswan gateways (`fs_opts`, see
/// [`Ferroswan::start_opts`]) and the expected ESP encapsulation on the wire.
pub fn site_to_site_opts(
    tag: &str,
    a: Impl,
    b: Impl,
    esp: &str,
    fs_opts: &[(&str, &str)],
    wire: Wire,
) {
    if !prerequisites(tag) {
        return;
    }
    let topo = Topology::new(tag);
    let gwb = Gw::start_opts(b, &topo, &topo.gb, "gwB", &GwParams::b(esp), fs_opts);
    let gwa = Gw::start_opts(a, &topo, &topo.ga, "gwA", &GwParams::a(esp), fs_opts);
    eprintln!("[{tag}] gwA={a:?} gwB={b:?} ESP {esp}: initiating");
    let t0 = establish(tag, &gwa, &gwb);
    for gw in [&gwa, &gwb] {
        if let Gw::Fs(f) = gw {
            let log = f.log();
            assert!(
                log.contains(&format!("IKE_SA {CONN}[")) && log.contains("established between"),
                "[{tag}] ferroswan {} log lacks `IKE_SA {CONN}[..] established between`",
                f.name
            );
            assert!(
                log.contains(&format!("CHILD_SA {CONN}{{{CHILD}}} established")),
                "[{tag}] ferroswan {} log lacks `CHILD_SA {CONN}{{{CHILD}}} established`",
                f.name
            );
        }
    }

    let cap = Capture::start(&topo, &topo.ga, GA_OUT_IF, "outside");
    wait_ping(&topo.ha, HB_IP, Duration::from_secs(10)).unwrap_or_else(|e| panic!("[{tag}] {e}"));
    ping(&topo.ha, HB_IP).unwrap_or_else(|e| panic!("[{tag}] {e}"));
    ping(&topo.hb, HA_IP).unwrap_or_else(|e| panic!("[{tag}] {e}"));
    let t1 = Instant::now();
    tcp_transfer(
        &topo.ha,
        &topo.hb,
        HB_IP,
        5001,
        2 << 20,
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("[{tag}] TCP transfer hostA -> hostB: {e}"));
    eprintln!("[{tag}] 2 MiB TCP transfer verified in {:?}", t1.elapsed());
    cap.stop();

    let esp_pkts = cap.count("esp");
    let udp_encap = cap.count("udp.port == 4500 && esp");
    let clear = cap.count("ip.addr == 192.168.0.0/16");
    eprintln!("[{tag}] outside link: {esp_pkts} ESP frames ({udp_encap} UDP-encapsulated), {clear} with a 192.168.x.x address");
    assert_eq!(
        clear,
        0,
        "[{tag}] private addresses seen in clear on the outside link:\n{}",
        cap.summary(30)
    );
    // the transfer (2 MiB, plus pings) crossed as ESP. Counted in bytes, because batched
    // sends (UDP GSO) are fewer, larger frames on the veth capture; at least half of it,
    // because tcpdump may miss the tail of a burst on a busy machine (the transfer itself
    // was checked byte by byte, the SA counters below must show it too)
    let esp_bytes = cap.bytes("esp");
    assert!(
        esp_pkts >= 12 && esp_bytes >= 1 << 20,
        "[{tag}] only {esp_pkts} ESP packets / {esp_bytes} bytes on the outside link:\n{}",
        cap.summary(30)
    );
    let want_udp = match wire {
        Wire::Udp => esp_pkts,
        Wire::Raw => 0,
    };
    assert_eq!(
        udp_encap,
        want_udp,
        "[{tag}] expected {wire:?} ESP: {udp_encap} of {esp_pkts} ESP packets were in UDP:\n{}",
        cap.summary(30)
    );

    gwa.assert_traffic_counted();
    gwb.assert_traffic_counted();
    // the whole transfer went through the CHILD_SA (inner bytes counted by both gateways)
    let (a_out, b_in) = (gwa.child_bytes().1, gwb.child_bytes().0);
    assert!(
        a_out >= 2 << 20 && b_in >= 2 << 20,
        "[{tag}] CHILD_SA carried less than the 2 MiB transfer: gwA out {a_out} B, gwB in {b_in} B"
    );
    eprintln!("[{tag}] OK in {:?}", t0.elapsed());
}

/// The initiator `a` and responder `b` disagree on the PSK: the initiation fails with
/// AUTHENTICATION_FAILED, both logs say so, and no SA is left on either side.
pub fn wrong_psk(tag: &str, a: Impl, b: Impl) {
    if !prerequisites(tag) {
        return;
    }
    let topo = Topology::new(tag);
    let mut pb = GwParams::b("aes256gcm16");
    pb.psk = "a-different-psk-9876543210".into();
    let gwb = Gw::start(b, &topo, &topo.gb, "gwB", &pb);
    let gwa = Gw::start(a, &topo, &topo.ga, "gwA", &GwParams::a("aes256gcm16"));
    expect_setup_failure(
        tag,
        &gwa,
        &gwb,
        "AUTHENTICATION_FAILED",
        &["AUTHENTICATION_FAILED", "AUTH_FAILED"],
    );
}

/// No common IKE proposal: NO_PROPOSAL_CHOSEN on both sides, no SA.
pub fn no_proposal(tag: &str, a: Impl, b: Impl) {
    if !prerequisites(tag) {
        return;
    }
    let topo = Topology::new(tag);
    // ferroswan always gets the standard proposal; the strongSwan side gets another one.
    let mut pa = GwParams::a("aes256gcm16");
    let mut pb = GwParams::b("aes256gcm16");
    let other = "aes128-sha256-modp3072";
    if b == Impl::StrongSwan {
        pb.ike_proposal = other.into();
    } else {
        pa.ike_proposal = other.into();
    }
    let gwb = Gw::start(b, &topo, &topo.gb, "gwB", &pb);
    let gwa = Gw::start(a, &topo, &topo.ga, "gwA", &pa);
    expect_setup_failure(
        tag,
        &gwa,
        &gwb,
        "NO_PROPOSAL_CHOSEN",
        &["NO_PROPOSAL_CHOSEN", "N(NO_PROP)"],
    );
}

/// Initiating from `gwa` must fail: a ferroswan initiator reports `reason` (its `up` error),
/// the initiator's log names `reason`, the responder's log one of `responder_needles`, and
/// neither side keeps an SA.
fn expect_setup_failure(tag: &str, gwa: &Gw, gwb: &Gw, reason: &str, responder_needles: &[&str]) {
    let err = match gwa.initiate() {
        Ok(o) => panic!("[{tag}] initiation succeeded despite {reason}: {o}"),
        Err(e) => e,
    };
    if matches!(gwa, Gw::Fs(_)) {
        assert!(
            err.contains(reason),
            "[{tag}] `ferroswan up` failed without {reason}: {err}"
        );
    }
    expect_in_log(tag, gwa, &[reason]);
    expect_in_log(tag, gwb, responder_needles);
    gwa.wait_no_sa(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("[{tag}] {e}"));
    gwb.wait_no_sa(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("[{tag}] {e}"));
}

/// Wait (5 s) until the gateway's log contains one of `needles`.
pub fn expect_in_log(tag: &str, gw: &Gw, needles: &[&str]) {
    let found = poll(Duration::from_secs(5), || {
        let log = gw.log();
        needles.iter().any(|n| log.contains(n)).then_some(())
    });
    assert!(
        found.is_some(),
        "[{tag}] {} log has none of {needles:?}",
        gw.name()
    );
}

// ---------------------------------------------------------------------------------------
// long-running traffic (lifecycle tests)
// ---------------------------------------------------------------------------------------

/// A background `ping -D -i INTERVAL -c COUNT` (registered: stopped by PID on drop).
pub struct PingRun {
    pub out: PathBuf,
    pub count: u32,
    proc_id: usize,
    reg: Arc<Registry>,
}

/// What a finished [`PingRun`] saw.
#[derive(Debug, Clone)]
pub struct PingResult {
    pub transmitted: u32,
    pub received: u32,
    /// Longest time between two consecutive replies (the outage, for restart tests).
    pub max_gap: Duration,
    /// Longest run of consecutive sequence numbers without reply.
    pub max_missing_run: u32,
}

impl PingResult {
    pub fn lost(&self) -> u32 {
        self.transmitted.saturating_sub(self.received)
    }
}

impl PingRun {
    /// `count` pings every `interval` from `ns` to `dst` (each waits at most 1 s for its reply).
    pub fn start(
        topo: &Topology,
        ns: &str,
        dst: &str,
        interval: &str,
        count: u32,
        name: &str,
    ) -> PingRun {
        let out = topo.dir.join(format!("{name}.ping.log"));
        let f = fs::File::create(&out).unwrap();
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns", "exec", ns, "ping", "-n", "-D", "-W", "1", "-i", interval, "-c",
        ])
        .arg(count.to_string())
        .arg(dst)
        .stdin(Stdio::null())
        .stdout(f.try_clone().unwrap())
        .stderr(f);
        let proc_id = topo.spawn(&format!("ping {name}"), &mut cmd, libc::SIGINT);
        PingRun {
            out,
            count,
            proc_id,
            reg: topo.reg.clone(),
        }
    }

    /// Wait for ping to finish (or stop it after `timeout`) and parse its output.
    pub fn finish(&self, timeout: Duration) -> Result<PingResult, String> {
        let done = poll(timeout, || self.reg.exited(self.proc_id).map(|_| ()));
        if done.is_none() {
            self.reg.stop(self.proc_id, Duration::from_secs(3));
        }
        let text = read_lossy(&self.out);
        parse_ping(&text, self.count).ok_or_else(|| format!("cannot parse ping output:\n{text}"))
    }
}

fn parse_ping(text: &str, count: u32) -> Option<PingResult> {
    let mut seqs: Vec<(u32, f64)> = Vec::new();
    let (mut transmitted, mut received) = (None, None);
    for line in text.lines() {
        if let Some(i) = line.find(" packets transmitted, ") {
            transmitted = line[..i].trim().parse::<u32>().ok();
            let rest = &line[i + " packets transmitted, ".len()..];
            received = rest.split_whitespace().next().and_then(|w| w.parse().ok());
        }
        if line.contains("bytes from") && !line.contains("DUP!") {
            let ts = line
                .strip_prefix('[')
                .and_then(|l| l.split(']').next())
                .and_then(|t| t.parse::<f64>().ok());
            let seq = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("icmp_seq="))
                .and_then(|s| s.parse::<u32>().ok());
            if let (Some(t), Some(s)) = (ts, seq) {
                seqs.push((s, t));
            }
        }
    }
    let transmitted = transmitted?;
    let received = received?;
    let mut by_time: Vec<f64> = seqs.iter().map(|s| s.1).collect();
    by_time.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let max_gap = by_time
        .windows(2)
        .map(|w| w[1] - w[0])
        .fold(0.0f64, f64::max);
    let mut got: Vec<u32> = seqs.iter().map(|s| s.0).collect();
    got.sort_unstable();
    got.dedup();
    let mut run = 0;
    let mut prev = 0u32; // seqs start at 1
    for s in got
        .iter()
        .copied()
        .chain(std::iter::once(count.min(transmitted) + 1))
    {
        run = run.max(s.saturating_sub(prev + 1));
        prev = s;
    }
    Some(PingResult {
        transmitted,
        received,
        max_gap: Duration::from_secs_f64(max_gap),
        max_missing_run: run,
    })
}

/// What [`tcp_stream`] measured.
#[derive(Debug, Clone)]
pub struct TcpStreamResult {
    pub bytes: u64,
    /// Longest time the receiver saw no data (from the first byte to EOF).
    pub max_stall: Duration,
}

/// Stream pseudo-random data over one TCP connection from `client_ns` to a listener in
/// `server_ns` for `duration` at about `rate` bytes/s; the server checks every byte and
/// measures the longest receive stall.
pub fn tcp_stream(
    client_ns: &str,
    server_ns: &str,
    server_ip: &str,
    port: u16,
    duration: Duration,
    rate: usize,
) -> Result<TcpStreamResult, String> {
    const CHUNK: usize = 4096;
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
    let hard_deadline = Instant::now() + duration + Duration::from_secs(20);
    let sns = server_ns.to_string();
    let server = thread::spawn(move || -> Result<TcpStreamResult, String> {
        let listener = listen_in(&sns, "0.0.0.0", port, &ready_tx)?;
        let mut s = accept_by(&listener, hard_deadline)?;
        s.set_read_timeout(Some(Duration::from_millis(50)))
            .map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        let mut last: Option<Instant> = None;
        let mut max_stall = Duration::ZERO;
        let mut x = 0x9e37_79b9_7f4a_7c15u64; // same generator as the client
        let mut expect = Vec::new();
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let now = Instant::now();
                    if let Some(l) = last {
                        max_stall = max_stall.max(now - l);
                    }
                    last = Some(now);
                    while expect.len() < n {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        expect.extend_from_slice(&x.to_le_bytes());
                    }
                    if buf[..n] != expect[..n] {
                        return Err(format!("content mismatch after {total} bytes"));
                    }
                    expect.drain(..n);
                    total += n as u64;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    if let Some(l) = last {
                        max_stall = max_stall.max(l.elapsed());
                    }
                }
                Err(e) => return Err(format!("server read after {total} bytes: {e}")),
            }
            if Instant::now() > hard_deadline {
                return Err(format!("server: no EOF after {total} bytes"));
            }
        }
        Ok(TcpStreamResult {
            bytes: total,
            max_stall,
        })
    });
    match ready_rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err("server thread did not start".into()),
    }
    let cns = client_ns.to_string();
    let addr: SocketAddr = format!("{server_ip}:{port}")
        .parse()
        .map_err(|e| format!("{e}"))?;
    let client = thread::spawn(move || -> Result<u64, String> {
        enter_netns(&cns).map_err(|e| format!("setns {cns}: {e}"))?;
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .map_err(|e| format!("connect {addr}: {e}"))?;
        s.set_write_timeout(Some(Duration::from_secs(15)))
            .map_err(|e| e.to_string())?;
        let start = Instant::now();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut sent = 0u64;
        let mut chunk = Vec::with_capacity(CHUNK);
        while start.elapsed() < duration {
            chunk.clear();
            while chunk.len() < CHUNK {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                chunk.extend_from_slice(&x.to_le_bytes());
            }
            s.write_all(&chunk)
                .map_err(|e| format!("client write after {sent} bytes: {e}"))?;
            sent += CHUNK as u64;
            let due = Duration::from_secs_f64(sent as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                thread::sleep(wait);
            }
        }
        s.shutdown(Shutdown::Write)
            .map_err(|e| format!("client shutdown: {e}"))?;
        Ok(sent)
    });
    let sent = client
        .join()
        .map_err(|_| "client thread panicked".to_string())?;
    let got = server
        .join()
        .map_err(|_| "server thread panicked".to_string())?;
    let sent = sent?;
    let got = got?;
    if got.bytes != sent {
        return Err(format!("sent {sent} bytes, server got {}", got.bytes));
    }
    Ok(got)
}

// Outside link MTU (tests/mtu.rs).
impl Topology {
    /// Set the MTU of the gateways' outside link (`ga-out` and `gb-out`).
    pub fn set_outside_mtu(&self, mtu: u32) {
        let m = mtu.to_string();
        ns_must(&self.ga, &["ip", "link", "set", "ga-out", "mtu", &m]);
        ns_must(&self.gb, &["ip", "link", "set", "gb-out", "mtu", &m]);
    }
}
