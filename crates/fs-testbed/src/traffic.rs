//! Traffic.

use crate::*;
use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

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
