//! The fallback when no coverage-guided engine is available (stable toolchain, no libFuzzer):
//! runs every seed of a target, then mutates the seeds deterministically for a fixed time,
//! under the same memory cap as the libFuzzer runs (`ferroswan_fuzz` crate doc).
//!
//! ```text
//! fuzz_fallback [--seconds N] [--seed S] [--corpus DIR]... TARGET
//!                                 seeds: the DIRs, default fuzz/corpus/TARGET and fuzz/regressions/TARGET
//! fuzz_fallback --replay TARGET FILE...             run inputs once (regressions)
//! fuzz_fallback --write-seeds                       regenerate fuzz/corpus/* (committed)
//! ```
//! Exit 0 when no input crashed. A panicking input is saved to fuzz/artifacts/TARGET/; an input
//! that trips the memory cap aborts the process after writing itself to
//! fuzz/artifacts/TARGET/fallback-crash (exit by SIGABRT).
use ferroswan_fuzz::mutate::{mutate, Rng};
use ferroswan_fuzz::{init, peak, set_crash_file, single_limit, target, total_limit, Target};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every file in `dirs` (default: corpus/TARGET and regressions/TARGET), sorted per directory.
fn seeds(name: &str, dirs: &[PathBuf]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let default = ["corpus", "regressions"].map(|sub| dir().join(sub).join(name));
    for d in if dirs.is_empty() { &default[..] } else { dirs } {
        let Ok(rd) = std::fs::read_dir(d) else {
            continue;
        };
        let mut files: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for f in files {
            if let Ok(d) = std::fs::read(&f) {
                out.push(d);
            }
        }
    }
    out
}

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Run one input; on a panic save it and return false.
fn run_one(t: &Target, data: &[u8]) -> bool {
    if catch_unwind(AssertUnwindSafe(|| ferroswan_fuzz::run_input(t.run, data))).is_ok() {
        return true;
    }
    let dir = dir().join("artifacts").join(t.name);
    let path = dir.join(format!("crash-{:016x}", fnv(data)));
    let _ = std::fs::create_dir_all(&dir);
    match std::fs::write(&path, data) {
        Ok(()) => eprintln!(
            "fallback: {}: PANIC, input saved to {}",
            t.name,
            path.display()
        ),
        Err(e) => eprintln!("fallback: {}: PANIC, cannot save input: {e}", t.name),
    }
    false
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: fuzz_fallback [--seconds N] [--seed S] [--corpus DIR]... TARGET \
         | --replay TARGET FILE... | --write-seeds"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut seconds, mut seed, mut replay, mut rest) = (45u64, 1u64, false, Vec::new());
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => match it.next().and_then(|s| s.parse().ok()) {
                Some(n) => seconds = n,
                None => return usage(),
            },
            "--seed" => match it.next().and_then(|s| s.parse().ok()) {
                Some(n) => seed = n,
                None => return usage(),
            },
            "--corpus" => match it.next() {
                Some(d) => dirs.push(d.into()),
                None => return usage(),
            },
            "--replay" => replay = true,
            "--write-seeds" => return write_seeds(),
            _ => rest.push(a),
        }
    }
    let Some(t) = rest.first().and_then(|n| target(n)) else {
        return usage();
    };
    if replay {
        let mut ok = true;
        for f in &rest[1..] {
            let Ok(data) = std::fs::read(f) else {
                eprintln!("fallback: cannot read {f}");
                return ExitCode::from(2);
            };
            eprintln!("fallback: {}: replaying {f} ({} bytes)", t.name, data.len());
            ok &= run_one(t, &data);
        }
        return if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    let crash_dir = dir().join("artifacts").join(t.name);
    let crash_file = crash_dir.join("fallback-crash");
    let _ = std::fs::create_dir_all(&crash_dir);
    if let Err(e) = set_crash_file(&crash_file) {
        eprintln!("fallback: cannot create {}: {e}", crash_file.display());
    }
    let corpus = seeds(t.name, &dirs);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let mut execs: u64 = 0;
    let mut crashes: u64 = 0;
    for s in &corpus {
        execs += 1;
        crashes += u64::from(!run_one(t, s));
    }
    let mut rng = Rng::new(seed ^ fnv(t.name.as_bytes()));
    let mut buf: Vec<u8> = Vec::new();
    while crashes == 0 && Instant::now() < deadline {
        for _ in 0..32 {
            // Mostly a fresh seed, sometimes keep stacking on the last input.
            if rng.below(4) != 0 || buf.is_empty() {
                buf = corpus
                    .get(rng.below(corpus.len()))
                    .cloned()
                    .unwrap_or_default();
            }
            mutate(&mut rng, &mut buf, &corpus, t.max_len);
            execs += 1;
            if !run_one(t, &buf) {
                crashes += 1;
                break;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&crash_file);
    println!(
        "fallback: {}: {execs} execs in {secs:.0} s ({:.0}/s), {} seeds, {crashes} crashes, \
         peak heap {} KiB (caps: {} KiB per allocation, {} MiB live)",
        t.name,
        execs as f64 / secs.max(1e-9),
        corpus.len(),
        peak() / 1024,
        single_limit() / 1024,
        total_limit() >> 20,
    );
    if crashes == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Named seed inputs.
type Seeds = Vec<(String, Vec<u8>)>;

/// Regenerate the committed seed corpora: real exchanges from the `fs_ike::fuzzing` pair,
/// the example configurations, and a few ESP inputs.
fn write_seeds() -> ExitCode {
    let mut sets: Vec<(&str, Seeds)> = vec![
        ("ike_endpoint", fs_ike::fuzzing::endpoint_seeds()),
        ("ike_message", fs_ike::fuzzing::message_seeds()),
    ];
    let mut configs = Vec::new();
    let examples = dir().join("../examples/site-to-site");
    for name in ["gw-a.toml", "gw-b.toml"] {
        if let Ok(d) = std::fs::read(examples.join(name)) {
            configs.push((name.replace(".toml", ""), d));
        }
    }
    configs.push(("minimal".into(), MINIMAL.as_bytes().to_vec()));
    configs.push(("limits".into(), LIMITS.as_bytes().to_vec()));
    sets.push(("config", configs));
    let mut esp = Vec::new();
    // An IPv4/UDP packet (next header 4), sealed by the matching SA ("authentic" strategy).
    let ipv4: [u8; 28] = [
        0x45, 0, 0, 28, 0, 1, 0, 0, 64, 17, 0, 0, 192, 168, 1, 1, 192, 168, 2, 1, 0x30, 0x39, 0,
        53, 0, 8, 0, 0,
    ];
    for sel in 0u8..4 {
        let mut v = vec![sel, 1, 4];
        v.extend_from_slice(&ipv4);
        esp.push((format!("authentic-{sel}"), v));
        let mut v = vec![sel | 8, 3 | (5 << 2), 4];
        v.extend_from_slice(&ipv4);
        esp.push((format!("corrupt-{sel}"), v));
    }
    esp.push((
        "raw".into(),
        [&[0u8, 0][..], &[1, 2, 3, 4, 0, 0, 0, 1], &[0; 40]].concat(),
    ));
    sets.push(("esp_decap", esp));
    for (t, seeds) in sets {
        let d = dir().join("corpus").join(t);
        let _ = std::fs::remove_dir_all(&d);
        if let Err(e) = std::fs::create_dir_all(&d) {
            eprintln!("cannot create {}: {e}", d.display());
            return ExitCode::FAILURE;
        }
        for (name, data) in &seeds {
            if let Err(e) = std::fs::write(d.join(name), data) {
                eprintln!("cannot write {name}: {e}");
                return ExitCode::FAILURE;
            }
        }
        println!("{t}: {} seeds", seeds.len());
    }
    ExitCode::SUCCESS
}

const MINIMAL: &str = r#"[connections.c]
local_addrs = ["10.0.0.1"]
remote_addrs = ["10.0.0.2", "fd00::2"]
proposals = ["aes128gcm16-prfsha256-ecp256", "aes256-sha256-modp2048"]
rekey_time = "1h"
[connections.c.local]
auth = "psk"
id = "a.example"
[connections.c.remote]
auth = "psk"
id = "b.example"
[connections.c.children.net]
local_ts = ["10.1.0.0/16"]
remote_ts = ["10.2.0.0/16", "fd00::/64"]
esp_proposals = ["aes128gcm16-esn"]
start_action = "trap"
[secrets.x]
ids = ["a.example", "b.example"]
secret = "0x00112233445566778899aabbccddeeff0011"
"#;

const LIMITS: &str = r#"[daemon]
tun_mtu = 1400
workers = 2
log_level = "debug"
[limits]
cookie_threshold = 0
half_open_max = 10
half_open_timeout = "5s"
cookie_secret_lifetime = 120
"#;
