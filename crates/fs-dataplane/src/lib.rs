//! Data-plane I/O for ferroswan: a TUN device, UDP sockets for IKE (500) and NAT-T (4500,
//! non-ESP marker demultiplexing), raw ESP sockets, the shared SPD/SAD, routes and the worker
//! threads that move packets between them.
//!
//! Threads (each a [`Worker`] owning its buffers, so one worker per TUN queue / socket can be
//! added later):
//! - TUN reader: policy lookup, ESP encapsulation, send (UDP 4500 or raw protocol 50).
//! - UDP readers: keepalives dropped, IKE (marker stripped on 4500) to the control thread,
//!   ESP decapsulated, selector-checked and written to the TUN device.
//! - raw ESP readers: same as the UDP ESP path (IPv4 header skipped).
//!
//! Cleartext is never sent to the network: a packet read from TUN leaves only encrypted.

mod batch;
pub mod netns;
pub mod route;
pub mod signals;
mod sock;
pub mod tables;

pub use tables::{GlobalCounters, InboundEntry, OutboundEntry, Policy, PolicyAction, Tables};

use crossbeam_channel::Sender;
use fs_esp::ip::PacketInfo;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// How often blocked readers wake up to check for shutdown.
const POLL_MS: i32 = 200;
/// Largest packet handled (IP maximum) plus room for the ESP overhead.
const BUF_LEN: usize = 65535 + 512;
/// Length of the virtio_net_hdr in front of each TUN read/write when offloads are on.
const VNET_HDR_LEN: usize = 10;
/// TUN transmit queue length (packets waiting for the TUN reader).
const TUN_TXQUEUELEN: u32 = 2000;
/// Minimum interval between two acquires for the same trap policy.
const ACQUIRE_INTERVAL_MS: u64 = 1000;
/// The RFC 3948 non-ESP marker that precedes IKE messages on the NAT-T port.
pub const NON_ESP_MARKER: [u8; 4] = [0; 4];

/// Data-plane settings.
#[derive(Clone, Debug)]
pub struct DataPlaneConfig {
    /// TUN device name.
    pub tun_name: String,
    /// TUN MTU.
    pub tun_mtu: u16,
    /// Local IKE port (0 = no IKE socket).
    pub ike_port: u16,
    /// Local NAT-T / ESP-in-UDP port.
    pub natt_port: u16,
    /// Addresses to bind the UDP sockets to; empty = `0.0.0.0` (and `[::]` if `ipv6`).
    pub bind: Vec<IpAddr>,
    /// Also open IPv6 sockets (wildcard bind, raw ESP over IPv6).
    pub ipv6: bool,
}

/// Messages from the data plane to the control thread.
#[derive(Clone, Debug)]
pub enum DpMessage {
    /// An IKE datagram (non-ESP marker already stripped).
    Ike {
        local: SocketAddr,
        remote: SocketAddr,
        data: Vec<u8>,
    },
    /// A packet matched a trap policy without SA.
    Acquire { conn: String, child: String },
}

struct UdpSock {
    local: SocketAddr,
    sock: UdpSocket,
    natt: bool,
}

struct Shared {
    cfg: DataPlaneConfig,
    tables: Tables,
    counters: GlobalCounters,
    tun: tun_rs::SyncDevice,
    udp: Vec<UdpSock>,
    raw4: Option<UdpSocket>,
    raw6: Option<UdpSocket>,
    stop: AtomicBool,
    tx: Sender<DpMessage>,
    epoch: Instant,
}

impl Shared {
    /// The UDP socket to send from for local address `local` (exact match, else a wildcard
    /// socket of the same family and port).
    fn socket_for(&self, local: SocketAddr) -> Option<&UdpSocket> {
        let same =
            |s: &&UdpSock| s.local.port() == local.port() && s.local.is_ipv4() == local.is_ipv4();
        self.udp
            .iter()
            .filter(same)
            .find(|s| s.local.ip() == local.ip())
            .or_else(|| {
                self.udp
                    .iter()
                    .filter(same)
                    .find(|s| s.local.ip().is_unspecified())
            })
            .or_else(|| self.udp.iter().find(same))
            .map(|s| &s.sock)
    }
}

/// A running data plane. Dropping it without [`DataPlane::stop`] leaves the threads running.
pub struct DataPlane {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    tun_name: String,
}

impl DataPlane {
    /// Create the TUN device and sockets in the current network namespace and start the
    /// worker threads. IKE datagrams and acquires are sent to `tx`.
    pub fn start(cfg: DataPlaneConfig, tx: Sender<DpMessage>) -> io::Result<DataPlane> {
        let tun = tun_rs::DeviceBuilder::new()
            .name(cfg.tun_name.clone())
            .mtu(cfg.tun_mtu)
            .packet_information(false)
            // IFF_VNET_HDR + TUN_F_CSUM/TSO: reads return TCP super-segments (one syscall for
            // up to 64 KB), split in userspace by tun-rs; writes carry a virtio_net_hdr.
            .offload(true)
            .enable(false)
            .build_sync()
            .map_err(|e| io::Error::new(e.kind(), format!("TUN device {}: {e}", cfg.tun_name)))?;
        tun.set_nonblocking(true)?;
        let tun_name = tun.name().unwrap_or_else(|_| cfg.tun_name.clone());
        if !cfg.ipv6 {
            // No IPv6 configured: keep the kernel from sending router solicitations and MLD
            // reports into the tunnel (they would only be counted as no_policy drops).
            let _ = std::fs::write(
                format!("/proc/sys/net/ipv6/conf/{tun_name}/disable_ipv6"),
                "1",
            );
        }
        // A deeper TUN queue than the default 500 absorbs bursts of a TCP window while the
        // reader encrypts (drops here show up as TCP retransmits).
        if let Err(e) = tun.set_tx_queue_len(TUN_TXQUEUELEN) {
            debug!("TUN txqueuelen: {e}");
        }
        tun.enabled(true)?;

        let mut binds = cfg.bind.clone();
        if binds.is_empty() {
            binds.push(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            if cfg.ipv6 {
                binds.push(IpAddr::V6(Ipv6Addr::UNSPECIFIED));
            }
        }
        let mut udp = Vec::new();
        for ip in &binds {
            for (port, natt) in [(cfg.ike_port, false), (cfg.natt_port, true)] {
                if port == 0 {
                    continue;
                }
                let addr = SocketAddr::new(*ip, port);
                let sock = sock::udp(addr)
                    .map_err(|e| io::Error::new(e.kind(), format!("UDP socket {addr}: {e}")))?;
                sock.set_read_timeout(Some(Duration::from_millis(POLL_MS as u64)))?;
                sock::set_bufs(sock.as_raw_fd(), sock::SOCK_BUF);
                udp.push(UdpSock {
                    local: sock.local_addr()?,
                    sock,
                    natt,
                });
            }
        }
        let want_v6 = cfg.ipv6 || binds.iter().any(|a| a.is_ipv6());
        let want_v4 = binds.iter().any(|a| a.is_ipv4());
        let raw = |v6: bool| match sock::raw_esp(v6) {
            Ok(s) => {
                s.set_read_timeout(Some(Duration::from_millis(POLL_MS as u64)))
                    .ok()?;
                sock::set_bufs(s.as_raw_fd(), sock::SOCK_BUF);
                Some(s)
            }
            Err(e) => {
                warn!(
                    "raw ESP socket (IPv{}) unavailable: {e}; only UDP-encapsulated ESP",
                    if v6 { 6 } else { 4 }
                );
                None
            }
        };
        let raw4 = if want_v4 { raw(false) } else { None };
        let raw6 = if want_v6 { raw(true) } else { None };

        let shared = Arc::new(Shared {
            cfg,
            tables: Tables::new(),
            counters: GlobalCounters::default(),
            tun,
            udp,
            raw4,
            raw6,
            stop: AtomicBool::new(false),
            tx,
            epoch: Instant::now(),
        });
        let mut threads = Vec::new();
        let spawn =
            |name: String, f: Box<dyn FnOnce(Worker) + Send>| -> io::Result<JoinHandle<()>> {
                let w = Worker::new(shared.clone());
                std::thread::Builder::new().name(name).spawn(move || f(w))
            };
        threads.push(spawn("dp-tun".into(), Box::new(|mut w| w.tun_loop()))?);
        for i in 0..shared.udp.len() {
            let name = format!("dp-udp{}", shared.udp[i].local.port());
            threads.push(spawn(name, Box::new(move |mut w| w.udp_loop(i)))?);
        }
        if shared.raw4.is_some() {
            threads.push(spawn(
                "dp-esp4".into(),
                Box::new(|mut w| w.raw_loop(false)),
            )?);
        }
        if shared.raw6.is_some() {
            threads.push(spawn("dp-esp6".into(), Box::new(|mut w| w.raw_loop(true)))?);
        }
        info!(
            "data plane up: TUN {tun_name} mtu {}, UDP {:?}, raw ESP v4={} v6={}",
            shared.cfg.tun_mtu,
            shared.udp.iter().map(|s| s.local).collect::<Vec<_>>(),
            shared.raw4.is_some(),
            shared.raw6.is_some()
        );
        Ok(DataPlane {
            shared,
            threads,
            tun_name,
        })
    }

    /// The SPD and SAD.
    pub fn tables(&self) -> &Tables {
        &self.shared.tables
    }

    /// Global counters.
    pub fn counters(&self) -> &GlobalCounters {
        &self.shared.counters
    }

    /// The TUN device's name.
    pub fn tun_name(&self) -> &str {
        &self.tun_name
    }

    /// Local addresses of the UDP sockets.
    pub fn udp_locals(&self) -> Vec<SocketAddr> {
        self.shared.udp.iter().map(|s| s.local).collect()
    }

    /// Send an IKE message from the socket bound to `local` (adding the non-ESP marker on the
    /// NAT-T port).
    pub fn send_ike(&self, local: SocketAddr, remote: SocketAddr, data: &[u8]) -> io::Result<()> {
        let sock = self.shared.socket_for(local).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no socket for local address {local}"),
            )
        })?;
        if local.port() == self.shared.cfg.natt_port {
            let mut v = Vec::with_capacity(data.len() + 4);
            v.extend_from_slice(&NON_ESP_MARKER);
            v.extend_from_slice(data);
            sock.send_to(&v, remote)?;
        } else {
            sock.send_to(data, remote)?;
        }
        Ok(())
    }

    /// Stop and join the worker threads (the TUN device disappears when dropped).
    pub fn stop(mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// ESP Next Header for a tunnelled inner packet.
fn next_header(info: &PacketInfo) -> u8 {
    if info.version == 6 {
        fs_esp::NH_IPV6
    } else {
        fs_esp::NH_IPV4
    }
}

/// A packet-processing thread's state: its buffers and a handle on the shared state.
/// The fast path reuses these buffers and does not allocate.
pub struct Worker {
    shared: Arc<Shared>,
    buf: Box<[u8]>,
    out: Box<[u8]>,
    /// Cache remote -> our address, for IKE on wildcard-bound sockets.
    local_cache: Vec<(IpAddr, IpAddr)>,
    /// Inner packets waiting for one batched TUN write (raw ESP reader with offloads):
    /// `tun_batch[..batch_n]`, each with `VNET_HDR_LEN` bytes of headroom.
    tun_batch: Vec<Vec<u8>>,
    batch_n: usize,
}

impl Worker {
    fn new(shared: Arc<Shared>) -> Self {
        Worker {
            shared,
            buf: vec![0u8; BUF_LEN].into_boxed_slice(),
            out: vec![0u8; BUF_LEN].into_boxed_slice(),
            local_cache: Vec::new(),
            tun_batch: Vec::new(),
            batch_n: 0,
        }
    }

    fn stopped(&self) -> bool {
        self.shared.stop.load(Ordering::Relaxed)
    }

    fn tun_loop(&mut self) {
        let fd = self.shared.tun.as_raw_fd();
        if self.shared.tun.tcp_gso() {
            return self.tun_loop_offload(fd);
        }
        while !self.stopped() {
            match self.shared.tun.recv(&mut self.buf) {
                Ok(n) => self.outbound(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => sock::poll_readable(fd, POLL_MS),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    warn!("TUN read failed: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    /// TUN reader with offloads: one read returns a (possibly GSO) packet with its
    /// virtio_net_hdr; tun-rs splits it into MTU-sized segments with fixed headers and
    /// checksums, each of which is encrypted and sent like a plain read.
    fn tun_loop_offload(&mut self, fd: libc::c_int) {
        let seg_len = usize::from(self.shared.cfg.tun_mtu).max(1500) + 256;
        let mut segs = vec![vec![0u8; seg_len]; tun_rs::IDEAL_BATCH_SIZE];
        let mut sizes = vec![0usize; segs.len()];
        while !self.stopped() {
            match self
                .shared
                .tun
                .recv_multiple(&mut self.buf, &mut segs, &mut sizes, 0)
            {
                Ok(k) => {
                    for i in 0..k.min(segs.len()) {
                        let n = sizes[i];
                        let Some(seg) = segs[i].get(..n) else {
                            GlobalCounters::inc(&self.shared.counters.malformed);
                            continue;
                        };
                        self.buf[..n].copy_from_slice(seg);
                        self.outbound(n);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => sock::poll_readable(fd, POLL_MS),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error().is_none() => {
                    // a packet tun-rs could not split (bad virtio header / IP header)
                    debug!("drop: malformed packet from TUN: {e}");
                    GlobalCounters::inc(&self.shared.counters.malformed);
                }
                Err(e) => {
                    warn!("TUN read failed: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    /// A cleartext packet from TUN in `buf[..n]`: find its policy, encrypt, send.
    fn outbound(&mut self, n: usize) {
        let sh = &*self.shared;
        let c = &sh.counters;
        let Ok(info) = PacketInfo::parse(&self.buf[..n]) else {
            debug!("drop: malformed packet from TUN ({n} bytes)");
            GlobalCounters::inc(&c.malformed);
            return;
        };
        let spd = sh.tables.spd();
        let Some(p) = spd.iter().find(|p| {
            p.matches_outbound(
                info.src,
                info.dst,
                info.protocol,
                info.src_port,
                info.dst_port,
            )
        }) else {
            debug!("drop: no policy for {} -> {}", info.src, info.dst);
            GlobalCounters::inc(&c.no_policy);
            return;
        };
        match &p.action {
            PolicyAction::Protect(e) => {
                let need = n + e.sa.max_overhead();
                if need > self.out.len() {
                    GlobalCounters::inc(&c.too_big);
                    return;
                }
                let len = match e
                    .sa
                    .encapsulate(&self.buf[..n], next_header(&info), &mut self.out)
                {
                    Ok(l) => l,
                    Err(err) => {
                        debug!(
                            "drop: encapsulation failed on SPI {:08x}: {err}",
                            e.sa.spi()
                        );
                        GlobalCounters::inc(&c.encap_error);
                        return;
                    }
                };
                let res = if e.udp_encap {
                    match sh.socket_for(SocketAddr::new(e.local.ip(), sh.cfg.natt_port)) {
                        Some(s) => s.send_to(&self.out[..len], e.remote),
                        None => Err(io::Error::from(io::ErrorKind::NotFound)),
                    }
                } else {
                    let raw = if e.remote.is_ipv4() {
                        &sh.raw4
                    } else {
                        &sh.raw6
                    };
                    match raw {
                        Some(s) => s.send_to(&self.out[..len], SocketAddr::new(e.remote.ip(), 0)),
                        None => Err(io::Error::from(io::ErrorKind::NotFound)),
                    }
                };
                if let Err(err) = res {
                    debug!("drop: sending ESP to {} failed: {err}", e.remote);
                    GlobalCounters::inc(&c.send_error);
                }
            }
            PolicyAction::Trap => {
                GlobalCounters::inc(&c.no_sa);
                let now = sh.epoch.elapsed().as_millis() as u64 + ACQUIRE_INTERVAL_MS;
                let last = p.last_acquire_ms.load(Ordering::Relaxed);
                if now.saturating_sub(last) >= ACQUIRE_INTERVAL_MS
                    && p.last_acquire_ms
                        .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok()
                {
                    GlobalCounters::inc(&c.acquires);
                    debug!(
                        "acquire {}/{} for {} -> {}",
                        p.conn, p.child, info.src, info.dst
                    );
                    let _ = sh.tx.send(DpMessage::Acquire {
                        conn: p.conn.clone(),
                        child: p.child.clone(),
                    });
                }
            }
            PolicyAction::Drop => {
                debug!(
                    "drop: {}/{} has no SA ({} -> {})",
                    p.conn, p.child, info.src, info.dst
                );
                GlobalCounters::inc(&c.no_sa);
            }
        }
    }

    fn udp_loop(&mut self, idx: usize) {
        let sh = self.shared.clone();
        let s = &sh.udp[idx];
        while !self.stopped() {
            let (n, from) = match s.sock.recv_from(&mut self.buf) {
                Ok(r) => r,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) =>
                {
                    continue
                }
                Err(e) => {
                    // e.g. ICMP errors reported on the socket; keep going
                    debug!("UDP {} receive error: {e}", s.local);
                    continue;
                }
            };
            if !s.natt {
                self.ike_to_control(s.local, from, 0, n);
            } else if n == 1 && self.buf[0] == 0xff {
                GlobalCounters::inc(&sh.counters.nat_keepalives);
            } else if n >= 4 && self.buf[..4] == NON_ESP_MARKER {
                self.ike_to_control(s.local, from, 4, n);
            } else {
                self.inbound_esp(0, n, from);
            }
        }
    }

    fn raw_loop(&mut self, v6: bool) {
        let sh = self.shared.clone();
        let Some(s) = (if v6 { &sh.raw6 } else { &sh.raw4 }) else {
            return;
        };
        if !v6 && sh.tun.tcp_gso() {
            return self.raw4_loop_batched(s.as_raw_fd());
        }
        while !self.stopped() {
            let (n, from) = match s.recv_from(&mut self.buf) {
                Ok(r) => r,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) =>
                {
                    continue
                }
                Err(e) => {
                    debug!("raw ESP receive error: {e}");
                    continue;
                }
            };
            let off = if v6 {
                0
            } else {
                // IPv4 raw sockets deliver the IP header: skip IHL*4 bytes.
                let ihl = usize::from(self.buf.first().copied().unwrap_or(0) & 0x0f) * 4;
                if ihl < 20 || ihl > n {
                    GlobalCounters::inc(&sh.counters.malformed);
                    continue;
                }
                ihl
            };
            self.inbound_esp(off, n, from);
        }
    }

    /// IPv4 raw ESP reader: recvmmsg a batch, decrypt each, and write the inner packets to
    /// TUN with one `send_multiple` (which coalesces consecutive TCP segments, GRO).
    fn raw4_loop_batched(&mut self, fd: libc::c_int) {
        const BATCH: usize = 64;
        let rlen = usize::from(self.shared.cfg.tun_mtu).max(1500) + 1024;
        let mut rbufs = vec![vec![0u8; rlen]; BATCH];
        let mut lens = [0usize; BATCH];
        let mut gro = tun_rs::GROTable::default();
        self.tun_batch = (0..BATCH).map(|_| Vec::with_capacity(rlen)).collect();
        while !self.stopped() {
            let k = match batch::recv_batch(fd, &mut rbufs, &mut lens) {
                Ok(k) => k,
                Err(e) => {
                    if !matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) {
                        debug!("raw ESP receive error: {e}");
                    }
                    continue;
                }
            };
            self.batch_n = 0;
            for i in 0..k {
                let n = lens[i];
                let ihl = usize::from(rbufs[i].first().copied().unwrap_or(0) & 0x0f) * 4;
                if n < 20 || ihl < 20 || ihl > n {
                    GlobalCounters::inc(&self.shared.counters.malformed);
                    continue;
                }
                let b = &rbufs[i];
                let from =
                    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(b[12], b[13], b[14], b[15])), 0);
                self.buf[..n].copy_from_slice(&b[..n]);
                self.inbound_esp(ihl, n, from);
            }
            if self.batch_n > 0 {
                let nb = self.batch_n;
                self.batch_n = 0;
                if let Err(e) =
                    self.shared
                        .tun
                        .send_multiple(&mut gro, &mut self.tun_batch[..nb], VNET_HDR_LEN)
                {
                    debug!("drop: TUN write failed: {e}");
                    GlobalCounters::inc(&self.shared.counters.tun_write_error);
                }
            }
        }
    }

    fn ike_to_control(&mut self, local: SocketAddr, remote: SocketAddr, off: usize, n: usize) {
        let local = if local.ip().is_unspecified() {
            SocketAddr::new(
                self.resolve_local(remote.ip()).unwrap_or(local.ip()),
                local.port(),
            )
        } else {
            local
        };
        let _ = self.shared.tx.send(DpMessage::Ike {
            local,
            remote,
            data: self.buf[off..n].to_vec(),
        });
    }

    /// Our source address towards `remote` (routing lookup by connecting a UDP socket; no
    /// packet is sent). Needed on wildcard-bound sockets for NAT detection.
    fn resolve_local(&mut self, remote: IpAddr) -> Option<IpAddr> {
        if let Some((_, l)) = self.local_cache.iter().find(|(r, _)| *r == remote) {
            return Some(*l);
        }
        let any: SocketAddr = if remote.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let s = UdpSocket::bind(any).ok()?;
        s.connect((remote, 9)).ok()?;
        let l = s.local_addr().ok()?.ip();
        if self.local_cache.len() >= 256 {
            self.local_cache.clear();
        }
        self.local_cache.push((remote, l));
        Some(l)
    }

    /// An ESP packet in `buf[off..end]` from `from`: find the SA, decrypt, check selectors,
    /// write the inner packet to TUN.
    fn inbound_esp(&mut self, off: usize, end: usize, from: SocketAddr) {
        let sh = &*self.shared;
        let c = &sh.counters;
        let pkt = &mut self.buf[off..end];
        if pkt.len() < fs_esp::ESP_HEADER_LEN {
            debug!("drop: short ESP packet from {from}");
            GlobalCounters::inc(&c.malformed);
            return;
        }
        let spi = u32::from_be_bytes([pkt[0], pkt[1], pkt[2], pkt[3]]);
        let sad = sh.tables.sad();
        let Some(entry) = sad.get(&spi) else {
            debug!("drop: unknown SPI {spi:08x} from {from}");
            GlobalCounters::inc(&c.unknown_spi);
            return;
        };
        let d = match entry.sa.decapsulate(pkt) {
            Ok(d) => d,
            Err(e) => {
                debug!("drop: ESP SPI {spi:08x} from {from}: {e}");
                use fs_esp::EspError::*;
                let ctr = match e {
                    Replay => &c.replay,
                    AuthFailed => &c.auth_failed,
                    WrongSpi => &c.unknown_spi,
                    Malformed | BadPadding | BadNextHeader(_) => &c.malformed,
                    _ => &c.unsupported,
                };
                GlobalCounters::inc(ctr);
                return;
            }
        };
        if d.next_header == 59 {
            return; // dummy packet (TFC), RFC 4303 2.6
        }
        if d.next_header != fs_esp::NH_IPV4 && d.next_header != fs_esp::NH_IPV6 {
            debug!(
                "drop: SPI {spi:08x}: next header {} (transport mode is not supported over TUN)",
                d.next_header
            );
            GlobalCounters::inc(&c.unsupported);
            return;
        }
        let Some(inner) = pkt.get(d.inner.clone()) else {
            GlobalCounters::inc(&c.malformed);
            return;
        };
        let Ok(info) = PacketInfo::parse(inner) else {
            debug!("drop: SPI {spi:08x}: malformed inner packet");
            GlobalCounters::inc(&c.malformed);
            return;
        };
        if !entry.selectors_match(
            info.src,
            info.dst,
            info.protocol,
            info.src_port,
            info.dst_port,
        ) {
            debug!(
                "drop: SPI {spi:08x}: inner {} -> {} outside {}/{} selectors",
                info.src, info.dst, entry.conn, entry.child
            );
            GlobalCounters::inc(&c.selector_mismatch);
            return;
        }
        let res = if self.batch_n < self.tun_batch.len() {
            // batched reader: queue the packet for one send_multiple after the batch
            let v = &mut self.tun_batch[self.batch_n];
            v.clear();
            v.resize(VNET_HDR_LEN, 0);
            v.extend_from_slice(inner);
            self.batch_n += 1;
            return;
        } else if sh.tun.tcp_gso() {
            // The device expects a virtio_net_hdr before each packet: write an all-zero one
            // (GSO_NONE, checksum complete) over the consumed ESP header/IV in front of it.
            let start = off + d.inner.start;
            let end = off + d.inner.end;
            match start.checked_sub(VNET_HDR_LEN) {
                Some(h) if end <= self.buf.len() => {
                    self.buf[h..start].fill(0);
                    sh.tun.send(&self.buf[h..end])
                }
                _ => {
                    GlobalCounters::inc(&c.malformed);
                    return;
                }
            }
        } else {
            sh.tun.send(inner)
        };
        if let Err(e) = res {
            debug!("drop: TUN write failed: {e}");
            GlobalCounters::inc(&c.tun_write_error);
        }
    }
}
