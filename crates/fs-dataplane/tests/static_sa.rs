//! Data plane with static SA keys (no IKE) between two network namespaces joined by a veth
//! pair: ping between the TUN-side addresses must go through ESP, raw (protocol 50) and
//! UDP-encapsulated. Needs root and iproute2; skipped otherwise.
use fs_crypto::EncrAlg;
use fs_dataplane::{DataPlane, DataPlaneConfig, InboundEntry, OutboundEntry, Policy, PolicyAction};
use fs_esp::{InboundSa, Mode, OutboundSa, SaConfig};
use fs_wire::ts::TrafficSelector;
use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::sync::Arc;

fn sh(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{args:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn can_run() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    root && Command::new("ip").arg("-V").output().is_ok()
        && std::path::Path::new("/dev/net/tun").exists()
}

/// Record a skipped test in `$FS_SKIP_LOG` (scripts/test.sh counts them in its summary).
fn skip_note(name: &str) {
    if let Some(path) = std::env::var_os("FS_SKIP_LOG") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
        {
            let _ = writeln!(f, "{name}");
        }
    }
}

/// Deletes the namespaces (and with them the veth pair and TUN devices) on drop.
struct NsGuard {
    names: Vec<String>,
    planes: Vec<DataPlane>,
}

impl Drop for NsGuard {
    fn drop(&mut self) {
        for dp in self.planes.drain(..) {
            dp.stop();
        }
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
    }
}

fn sa_cfg(spi: u32, key: u8, window: u32) -> SaConfig {
    SaConfig {
        spi,
        encr: EncrAlg::AesGcm16_256,
        integ: None,
        encr_key: vec![key; 36], // 32-byte key + 4-byte salt
        integ_key: vec![],
        mode: Mode::Tunnel,
        replay_window: window,
        esn: false,
    }
}

/// Start a data plane inside namespace `ns` (on a thread that enters it).
fn start_in(ns: &str, tun: &str, bind: IpAddr) -> DataPlane {
    let (ns, tun) = (ns.to_string(), tun.to_string());
    std::thread::spawn(move || {
        fs_dataplane::netns::enter(&ns).expect("setns");
        let (tx, _rx) = crossbeam_channel::unbounded();
        // keep the receiver alive for the test's duration
        std::mem::forget(_rx);
        DataPlane::start(
            DataPlaneConfig {
                tun_name: tun,
                tun_mtu: 1400,
                ike_port: 0,
                natt_port: 4500,
                bind: vec![bind],
                ipv6: false,
            },
            tx,
        )
        .expect("data plane start")
    })
    .join()
    .expect("thread")
}

#[allow(clippy::too_many_arguments)]
fn install(
    dp: &DataPlane,
    local_net: &str,
    remote_net: &str,
    spi_out: u32,
    key_out: u8,
    spi_in: u32,
    key_in: u8,
    local: SocketAddr,
    remote: SocketAddr,
    udp_encap: bool,
) {
    let lts: TrafficSelector = local_net.parse().unwrap();
    let rts: TrafficSelector = remote_net.parse().unwrap();
    let out = Arc::new(OutboundSa::new(&sa_cfg(spi_out, key_out, 0)).unwrap());
    let inb = Arc::new(InboundSa::new(&sa_cfg(spi_in, key_in, 64)).unwrap());
    dp.tables().install_child(
        Policy::new(
            "s2s",
            "net",
            vec![lts],
            vec![rts],
            PolicyAction::Protect(OutboundEntry {
                sa: out,
                local,
                remote,
                udp_encap,
            }),
        ),
        InboundEntry {
            sa: inb,
            conn: "s2s".into(),
            child: "net".into(),
            local_ts: vec![lts],
            remote_ts: vec![rts],
        },
    );
}

fn run_pair(tag: &str, udp_encap: bool) {
    if !can_run() {
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
        assert!(
            !ci,
            "CI is set, refusing to skip: needs root, iproute2 and /dev/net/tun"
        );
        skip_note(&format!("static_sa {tag}"));
        eprintln!("SKIP: needs root, iproute2 and /dev/net/tun");
        return;
    }
    let p = format!("fsdp{}{tag}", std::process::id());
    let (a, b) = (format!("{p}a"), format!("{p}b"));
    let mut g = NsGuard {
        names: vec![],
        planes: vec![],
    };
    for n in [&a, &b] {
        sh(&["ip", "netns", "add", n]).unwrap();
        g.names.push(n.clone());
        sh(&["ip", "-n", n, "link", "set", "lo", "up"]).unwrap();
    }
    sh(&[
        "ip", "link", "add", "va", "netns", &a, "type", "veth", "peer", "name", "vb", "netns", &b,
    ])
    .unwrap();
    sh(&["ip", "-n", &a, "addr", "add", "10.99.0.1/24", "dev", "va"]).unwrap();
    sh(&["ip", "-n", &b, "addr", "add", "10.99.0.2/24", "dev", "vb"]).unwrap();
    sh(&["ip", "-n", &a, "link", "set", "va", "up"]).unwrap();
    sh(&["ip", "-n", &b, "link", "set", "vb", "up"]).unwrap();

    let ga: SocketAddr = "10.99.0.1:4500".parse().unwrap();
    let gb: SocketAddr = "10.99.0.2:4500".parse().unwrap();
    let dpa = start_in(&a, "fst", ga.ip());
    let dpb = start_in(&b, "fst", gb.ip());
    for (ns, addr, other) in [
        (&a, "192.168.101.1", "192.168.102.0/24"),
        (&b, "192.168.102.1", "192.168.101.0/24"),
    ] {
        sh(&[
            "ip",
            "-n",
            ns,
            "addr",
            "add",
            &format!("{addr}/32"),
            "dev",
            "fst",
        ])
        .unwrap();
        sh(&[
            "ip", "-n", ns, "route", "add", other, "dev", "fst", "src", addr,
        ])
        .unwrap();
        sh(&[
            "ip",
            "-n",
            ns,
            "route",
            "add",
            "192.168.103.0/24",
            "dev",
            "fst",
            "src",
            addr,
        ])
        .unwrap();
    }
    install(
        &dpa,
        "192.168.101.0/24",
        "192.168.102.0/24",
        0x1000,
        1,
        0x2000,
        2,
        ga,
        gb,
        udp_encap,
    );
    install(
        &dpb,
        "192.168.102.0/24",
        "192.168.101.0/24",
        0x2000,
        2,
        0x1000,
        1,
        gb,
        ga,
        udp_encap,
    );
    g.planes.push(dpa);
    g.planes.push(dpb);

    let ping = sh(&[
        "ip",
        "netns",
        "exec",
        &a,
        "ping",
        "-c",
        "3",
        "-i",
        "0.2",
        "-W",
        "2",
        "-I",
        "192.168.101.1",
        "192.168.102.1",
    ]);
    let (dpa, dpb) = (&g.planes[0], &g.planes[1]);
    let (ai, ao) = dpa.tables().sa_counters(0x2000, 0x1000);
    let (bi, bo) = dpb.tables().sa_counters(0x1000, 0x2000);
    let ca = dpa.counters().snapshot();
    let cb = dpb.counters().snapshot();
    assert!(
        ping.is_ok(),
        "ping failed: {ping:?}\nA: {ca:?} in {ai:?} out {ao:?}\nB: {cb:?} in {bi:?} out {bo:?}"
    );
    let (ai, ao, bi, bo) = (ai.unwrap(), ao.unwrap(), bi.unwrap(), bo.unwrap());
    assert!(
        ao.packets >= 3 && bi.packets >= 3,
        "A->B through ESP: {ao:?} {bi:?}"
    );
    assert!(
        bo.packets >= 3 && ai.packets >= 3,
        "B->A through ESP: {bo:?} {ai:?}"
    );

    // A destination routed into the TUN but covered by no policy is dropped and counted.
    let _ = sh(&[
        "ip",
        "netns",
        "exec",
        &a,
        "ping",
        "-c",
        "1",
        "-W",
        "1",
        "192.168.103.1",
    ]);
    assert!(dpa.counters().snapshot()["no_policy"] >= 1);
}

#[test]
fn ping_through_raw_esp() {
    run_pair("r", false);
}

#[test]
fn ping_through_udp_encapsulated_esp() {
    run_pair("u", true);
}
