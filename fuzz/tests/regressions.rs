//! Every saved crash input (fuzz/regressions/TARGET/*) replayed under the memory cap, each in its
//! own `fuzz_fallback --replay` process (the cap aborts the process that trips it).
//!
//! `cargo test --manifest-path fuzz/Cargo.toml --no-default-features`. An input here stays
//! after its fix: the test fails again if the bug comes back.
use std::path::PathBuf;
use std::process::Command;

/// This process only starts the replays: no cap for it (each replay has its own).
fn uncapped() {
    ferroswan_fuzz::set_limits(usize::MAX, usize::MAX);
}

fn inputs() -> Vec<(String, PathBuf)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("regressions");
    let mut out = Vec::new();
    for t in ferroswan_fuzz::TARGETS.iter().map(|t| t.name) {
        let Ok(rd) = std::fs::read_dir(root.join(t)) else {
            continue;
        };
        for e in rd.flatten() {
            out.push((t.to_string(), e.path()));
        }
    }
    out.sort();
    out
}

#[test]
fn regressions_do_not_crash() {
    uncapped();
    let inputs = inputs();
    assert!(!inputs.is_empty(), "no regression inputs found");
    let mut failed = Vec::new();
    for (target, path) in &inputs {
        let out = Command::new(env!("CARGO_BIN_EXE_fuzz_fallback"))
            .arg("--replay")
            .arg(target)
            .arg(path)
            .output()
            .expect("run fuzz_fallback");
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            eprintln!("{target} {}: {}\n{err}", path.display(), out.status);
            failed.push(path.display().to_string());
        }
    }
    assert!(failed.is_empty(), "crashing regression inputs: {failed:?}");
}

/// The cap itself: an allocation over the single-allocation limit aborts the replay process
/// (so a parser that sizes a buffer from a count field is a crash, not a slow leak).
#[test]
fn cap_aborts_on_a_large_allocation() {
    uncapped();
    let out = Command::new(env!("CARGO_BIN_EXE_fuzz_fallback"))
        .arg("--replay")
        .arg("ike_message")
        .arg(file_with(&[0u8; 64]))
        .env("FUZZ_MALLOC_LIMIT_MB", "1")
        .output()
        .expect("run fuzz_fallback");
    assert!(out.status.success(), "64 zero bytes must not crash");
    // Written in pieces: this test process runs under the same cap.
    let big = file_with(&[0u8; 64 << 10]);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&big)
        .expect("open");
    for _ in 1..48 {
        std::io::Write::write_all(&mut f, &[0u8; 64 << 10]).expect("append");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_fuzz_fallback"))
        .arg("--replay")
        .arg("ike_message")
        .arg(&big)
        .env("FUZZ_MALLOC_LIMIT_MB", "1")
        .output()
        .expect("run fuzz_fallback");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a 3 MiB input buffer must trip the 1 MiB cap"
    );
    assert!(
        err.contains("==fuzz memory cap== single allocation of"),
        "{err}"
    );
}

fn file_with(data: &[u8]) -> PathBuf {
    let p = std::env::temp_dir().join(format!(
        "ferroswan-fuzz-{}-{}",
        std::process::id(),
        data.len()
    ));
    std::fs::write(&p, data).expect("write temp input");
    p
}
