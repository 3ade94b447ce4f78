//! `ferroswan check-config` against the hostile configurations of issue 9 (items 4, 9, 10):
//! values that used to pass and then crash the daemon exit 2 naming file, field and range;
//! weak or exposed secrets draw a warning (exit 0). No namespaces, no root needed.
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_ferroswan");

/// A valid config with a 32-byte PSK; `{PSK}` is replaced by the test.
const BASE: &str = r#"
[daemon]
tun_name = "fscc0"

[connections.s2s]
local_addrs = ["100.1.1.1"]
remote_addrs = ["200.2.2.2"]
proposals = ["aes256gcm16-prfsha256-x25519"]
dpd_delay = "30s"

  [connections.s2s.local]
  id = "gw-a.example"
  [connections.s2s.remote]
  id = "gw-b.example"
  [connections.s2s.children.net]
  local_ts = ["192.168.1.0/24"]
  remote_ts = ["192.168.2.0/24"]
  start_action = "none"

[secrets.ike-ab]
ids = ["gw-a.example", "gw-b.example"]
secret = "{PSK}"
"#;

const STRONG_PSK: &str = "0x8f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("fs-config-check-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }

    /// Write `text` to `name` with `mode`; returns the path.
    fn file(&self, name: &str, text: &str, mode: u32) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn check(p: &Path) -> Output {
    Command::new(BIN)
        .arg("check-config")
        .arg(p)
        .output()
        .expect("run ferroswan check-config")
}

/// Run `c` to completion, or kill it (only this child) after `limit`: a daemon that got past
/// its config check must not outlive the test.
fn output_within(c: &mut Command, limit: std::time::Duration) -> Output {
    use std::process::Stdio;
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ferroswan");
    let start = std::time::Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().expect("collect output")
}

fn base(psk: &str) -> String {
    BASE.replace("{PSK}", psk)
}

#[test]
fn hostile_values_exit_2_with_file_field_reason() {
    let dir = Dir::new("hostile");
    let good = dir.file("good.toml", &base(STRONG_PSK), 0o600);
    let o = check(&good);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(
        o.stderr.is_empty(),
        "no warning for a private file and a 32-byte PSK: {o:?}"
    );

    let big = "9223372036854775807";
    // (name, replace, by, field, reason)
    let cases: &[(&str, &str, String, &str, String)] = &[
        (
            "half_open_timeout",
            "[daemon]",
            format!("[limits]\nhalf_open_timeout = {big}\n[daemon]"),
            "limits.half_open_timeout",
            format!("must be between 1s and 1d (got {big})"),
        ),
        (
            "dpd_delay",
            "dpd_delay = \"30s\"",
            format!("dpd_delay = {big}"),
            "connections.s2s.dpd_delay",
            format!("must be 0 (off) or between 1s and 1d (got {big})"),
        ),
        (
            "nat_keepalive",
            "dpd_delay = \"30s\"",
            format!("nat_keepalive = {big}"),
            "connections.s2s.nat_keepalive",
            format!("must be 0 (off) or between 1s and 1h (got {big})"),
        ),
        (
            "retransmit_timeout",
            "dpd_delay = \"30s\"",
            format!("retransmit_timeout = {big}"),
            "connections.s2s.retransmit_timeout",
            format!("must be between 100ms and 1h (got {big})"),
        ),
        (
            "ike_rekey_time",
            "dpd_delay = \"30s\"",
            format!("rekey_time = {big}"),
            "connections.s2s.rekey_time",
            format!("must be 0 (never) or between 1s and 365d (got {big})"),
        ),
        (
            "child_life_time",
            "start_action = \"none\"",
            format!("start_action = \"none\"\n  life_time = {big}"),
            "connections.s2s.children.net.life_time",
            format!("must be 0 (none) or between 1s and 365d (got {big})"),
        ),
        (
            "cookie_secret_lifetime",
            "[daemon]",
            "[limits]\ncookie_secret_lifetime = \"100000d\"\n[daemon]".into(),
            "limits.cookie_secret_lifetime",
            "must be between 1s and 1d (got \"100000d\")".into(),
        ),
        (
            "half_open_max",
            "[daemon]",
            "[limits]\nhalf_open_max = 0\n[daemon]".into(),
            "limits.half_open_max",
            "must be between 1 and 10000000 (got 0)".into(),
        ),
        (
            "retransmit_tries",
            "dpd_delay = \"30s\"",
            "retransmit_tries = 4294967296".into(),
            "connections.s2s.retransmit_tries",
            "must be between 0 and 100 (0 = no retransmission) (got 4294967296)".into(),
        ),
        (
            "replay_window",
            "start_action = \"none\"",
            "start_action = \"none\"\n  replay_window = 1048576".into(),
            "connections.s2s.children.net.replay_window",
            "must be between 0 and 65536 (0 = off) (got 1048576)".into(),
        ),
        (
            "control_socket",
            "tun_name = \"fscc0\"",
            "tun_name = \"fscc0\"\ncontrol_socket = \"\"".into(),
            "daemon.control_socket",
            "must not be empty".into(),
        ),
    ];
    for (name, from, to, field, reason) in cases {
        let text = base(STRONG_PSK);
        assert!(text.contains(from), "{name}: base lacks {from:?}");
        let p = dir.file(&format!("{name}.toml"), &text.replacen(from, to, 1), 0o600);
        let o = check(&p);
        let err = String::from_utf8_lossy(&o.stderr);
        eprintln!(
            "[config_check] {name}: exit {:?}: {}",
            o.status.code(),
            err.trim()
        );
        assert_eq!(o.status.code(), Some(2), "{name}: want exit 2: {o:?}");
        let want = format!("{}: {field}: {reason}", p.display());
        assert!(
            err.lines().any(|l| l.starts_with(&want)),
            "{name}: want a line starting {want:?}, got {err:?}"
        );
        assert_eq!(err.lines().count(), 1, "{name}: one clear message: {err:?}");
        assert!(o.stdout.is_empty(), "{name}: {o:?}");
    }
}

/// The daemon applies the same checks at start: `run` exits 2 before touching the network.
#[test]
fn run_refuses_hostile_values() {
    let dir = Dir::new("run");
    let p = dir.file(
        "big.toml",
        &base(STRONG_PSK).replace(
            "[daemon]",
            "[limits]\nhalf_open_timeout = 9223372036854775807\n[daemon]",
        ),
        0o600,
    );
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    // As root, in a throwaway network namespace in case it got further than it should.
    let mut c = if root {
        let mut c = Command::new("unshare");
        c.arg("-n").arg(BIN);
        c
    } else {
        Command::new(BIN)
    };
    c.arg("run")
        .arg("--config")
        .arg(&p)
        .arg("--control")
        .arg(dir.0.join("ctl.sock"));
    let o = output_within(&mut c, std::time::Duration::from_secs(10));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(
        err.contains("limits.half_open_timeout: must be between 1s and 1d"),
        "{err}"
    );
}

#[test]
fn secret_warnings() {
    let dir = Dir::new("secrets");
    // a short PSK in a world-readable file: two warnings, still valid (exit 0)
    let p = dir.file("weak.toml", &base("0123456789"), 0o644);
    let o = check(&p);
    let err = String::from_utf8_lossy(&o.stderr);
    eprintln!("[config_check] weak: {}", err.trim());
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let f = p.display().to_string();
    assert!(
        err.contains(&format!(
            "{f}: secrets.ike-ab.secret: warning: config file holding secrets {f} is readable by group or others (mode 0644)"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{f}: secrets.ike-ab.secret: warning: PSK is only 10 bytes long"
        )),
        "{err}"
    );
    assert!(
        !err.contains("0123456789"),
        "the PSK itself is never printed: {err}"
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(": OK ("),
        "{o:?}"
    );

    // private file, strong PSK: silent
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&p, base(STRONG_PSK)).unwrap();
    let o = check(&p);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(o.stderr.is_empty(), "{o:?}");

    // a secret_file readable by others: its own warning (the config is private)
    let sf = dir.file("psk.txt", &format!("{STRONG_PSK}\n"), 0o604);
    let q = dir.file(
        "file.toml",
        &base(STRONG_PSK).replace(
            &format!("secret = \"{STRONG_PSK}\""),
            "secret_file = \"psk.txt\"",
        ),
        0o600,
    );
    let o = check(&q);
    let err = String::from_utf8_lossy(&o.stderr);
    eprintln!("[config_check] secret_file: {}", err.trim());
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(
        err.contains(&format!(
            "{}: secrets.ike-ab.secret_file: warning: secret file {} is readable by group or others (mode 0604)",
            q.display(),
            sf.display()
        )),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}
