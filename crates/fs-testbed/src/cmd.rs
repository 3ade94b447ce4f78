//! Environment check, commands with deadlines, templates.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// environment check
// ---------------------------------------------------------------------------------------

pub(crate) fn charon_path() -> PathBuf {
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
    let path =
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/interop")).join(template);
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
