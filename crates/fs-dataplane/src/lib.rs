//! Data-plane I/O for ferroswan: a TUN device, UDP sockets for IKE (500) and NAT-T (4500,
//! non-ESP marker demultiplexing), raw ESP sockets, the shared SPD/SAD, routes and the worker
//! threads that move packets between them.
//!
//! Threads (each a [`Worker`] owning its buffers):
//! - TUN readers, one per TUN queue (`workers`): policy lookup, ESP encapsulation of all
//!   segments of one (GSO) read back to back into one buffer, sent with one syscall per
//!   destination: UDP GSO (`UDP_SEGMENT`) for ESP-in-UDP, `sendmmsg` for raw protocol 50.
//!   Oversized DF / IPv6 packets are answered with ICMP frag-needed / packet-too-big (tunnel
//!   MTU = `tun_mtu`) written back to TUN. More than one queue: IFF_MULTI_QUEUE; the kernel
//!   spreads flows over the queues by flow hash (one flow stays on one queue, so the data
//!   plane never reorders a flow), and the readers send each SA's ESP in sequence-number
//!   order (`Worker::outbound_ordered`).
//! - UDP readers: keepalives dropped, IKE (marker stripped on 4500) to the control thread,
//!   ESP decapsulated, selector-checked and written to the TUN device. The 4500 reader uses
//!   `recvmmsg` + `UDP_GRO` (coalesced datagrams split by their segment size).
//! - raw ESP readers (IPv4 header skipped, IPv6): `recvmmsg` batches.
//!
//! Receive paths decrypt in place in the batch buffers, look the SA up once per SPI change
//! within a batch, and write the inner packets to TUN from where they lie: consecutive TCP
//! segments of a flow as one GSO super-packet per `writev`, and with UDP segmentation offload
//! (Linux >= 6.2) equal-sized UDP datagrams of a flow likewise ([`tunout`]).
//!
//! Cleartext is never sent to the network: a packet read from TUN leaves only encrypted.

mod batch;
#[macro_use]
pub mod ratelog;
pub mod failclosed;
pub mod netns;
pub mod route;
pub mod signals;
mod sock;
pub mod tables;
mod tunout;

pub use tables::{
    GlobalCounters, InboundEntry, OutboundEntry, PeerTrack, Policy, PolicyAction, Tables,
};

use crossbeam_channel::Sender;
use fs_esp::ip::PacketInfo;
use fs_esp::EspSpi;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
/// Capacity of the queue from the socket threads to the control thread (create it with
/// `crossbeam_channel::bounded(CONTROL_QUEUE_LEN)`). New IKE_SA_INIT requests are queued only
/// while it is less than half full; everything else until it is full (then dropped, counted).
pub const CONTROL_QUEUE_LEN: usize = 1024;
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
    /// TUN queues, each with its own reader thread; 0 = auto ([`auto_workers`]). 1 = one
    /// queue without IFF_MULTI_QUEUE.
    pub workers: usize,
}

/// Most TUN queues chosen by `workers = 0` (auto).
pub const AUTO_WORKERS_MAX: usize = 8;
/// Most TUN queues accepted at all (the kernel allows 256; more readers than cores only cost).
pub const WORKERS_MAX: usize = 64;

/// The number of TUN queues for `workers = 0`: half the online CPUs (at least 1, at most
/// [`AUTO_WORKERS_MAX`]). The other half is left to the receive threads and to the kernel's
/// per-packet work (UDP/TUN copies, which the sending thread pays): on 2 CPUs a second TUN
/// reader made 4 TCP streams about 20% slower (bench, ESP in UDP) and one stream no faster.
pub fn auto_workers() -> usize {
    auto_workers_for(std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// [`auto_workers`] for `cpus` online CPUs.
pub fn auto_workers_for(cpus: usize) -> usize {
    (cpus / 2).clamp(1, AUTO_WORKERS_MAX)
}

/// `workers` setting -> number of TUN queues (0 = auto, capped at [`WORKERS_MAX`]).
pub fn resolve_workers(workers: usize) -> usize {
    if workers == 0 {
        auto_workers()
    } else {
        workers.min(WORKERS_MAX)
    }
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
    /// Authenticated ESP-in-UDP (decapsulated: ICV and replay checks passed) of inbound SA
    /// `spi_in` came from `remote`, not from where the peer was expected (NAT rebinding).
    /// At most once a second per SA ([`tables::PEER_NOTIFY_INTERVAL_MS`]).
    PeerEndpoint { spi_in: EspSpi, remote: SocketAddr },
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
    /// TUN queue 0 (the only one with `workers = 1`).
    tun: tun_rs::SyncDevice,
    /// TUN queues 1.. (IFF_MULTI_QUEUE, same vnet_hdr/offload state as queue 0).
    tun_extra: Vec<tun_rs::SyncDevice>,
    /// Packets (segments after GSO splitting) read from each TUN queue.
    queue_packets: Vec<AtomicU64>,
    udp: Vec<UdpSock>,
    raw4: Option<UdpSocket>,
    raw6: Option<UdpSocket>,
    stop: AtomicBool,
    tx: Sender<DpMessage>,
    epoch: Instant,
}

impl Shared {
    /// Number of TUN queues.
    fn nqueues(&self) -> usize {
        1 + self.tun_extra.len()
    }

    /// TUN queue `i` (queue 0 if out of range).
    fn queue(&self, i: usize) -> &tun_rs::SyncDevice {
        i.checked_sub(1)
            .and_then(|j| self.tun_extra.get(j))
            .unwrap_or(&self.tun)
    }

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
        Self::start_with(cfg, tx, || Ok(()))
    }

    /// Like [`DataPlane::start`], calling `before_threads` once the TUN device and the sockets
    /// are open and before any thread is spawned: the place to drop privileges, which Linux
    /// keeps per thread (threads spawned afterwards inherit the reduced set).
    pub fn start_with(
        cfg: DataPlaneConfig,
        tx: Sender<DpMessage>,
        before_threads: impl FnOnce() -> io::Result<()>,
    ) -> io::Result<DataPlane> {
        let build = |multi_queue: bool| {
            let b = tun_rs::DeviceBuilder::new()
                .name(cfg.tun_name.clone())
                .mtu(cfg.tun_mtu)
                .packet_information(false)
                // IFF_VNET_HDR + TUN_F_CSUM/TSO: reads return TCP super-segments (one syscall
                // for up to 64 KB), split in userspace by tun-rs; writes carry a
                // virtio_net_hdr.
                .offload(true)
                .enable(false);
            // workers = 1: exactly the single-queue device (no IFF_MULTI_QUEUE flag)
            let b = if multi_queue { b.multi_queue(true) } else { b };
            b.build_sync()
                .map_err(|e| io::Error::new(e.kind(), format!("TUN device {}: {e}", cfg.tun_name)))
        };
        let want_queues = resolve_workers(cfg.workers);
        let (tun, tun_extra) = if want_queues > 1 {
            match build(true) {
                Ok(tun) => {
                    let extra = open_queues(&tun, want_queues - 1);
                    (tun, extra)
                }
                Err(e) => {
                    warn!("multi-queue TUN unavailable ({e}); using 1 queue");
                    (build(false)?, Vec::new())
                }
            }
        } else {
            (build(false)?, Vec::new())
        };
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
        let mark = |fd| {
            if let Err(e) = sock::set_mark(fd, failclosed::FWMARK) {
                warn!("SO_MARK on a data-plane socket: {e} (selectors that cover the peers' own addresses would block IKE/ESP)");
            }
        };
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
                mark(sock.as_raw_fd());
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
                mark(s.as_raw_fd());
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

        let queue_packets = (0..=tun_extra.len()).map(|_| AtomicU64::new(0)).collect();
        let shared = Arc::new(Shared {
            cfg,
            tables: Tables::new(),
            counters: GlobalCounters::default(),
            tun,
            tun_extra,
            queue_packets,
            udp,
            raw4,
            raw6,
            stop: AtomicBool::new(false),
            tx,
            epoch: Instant::now(),
        });
        before_threads()?;
        let mut threads = Vec::new();
        let spawn =
            |name: String, f: Box<dyn FnOnce(Worker) + Send>| -> io::Result<JoinHandle<()>> {
                let w = Worker::new(shared.clone());
                std::thread::Builder::new().name(name).spawn(move || f(w))
            };
        if shared.nqueues() == 1 {
            threads.push(spawn("dp-tun".into(), Box::new(|mut w| w.tun_loop(0)))?);
        } else {
            for q in 0..shared.nqueues() {
                threads.push(spawn(
                    format!("dp-tun{q}"),
                    Box::new(move |mut w| w.tun_loop(q)),
                )?);
            }
        }
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
            "data plane up: TUN {tun_name} mtu {} queues {}, UDP {:?}, raw ESP v4={} v6={}",
            shared.cfg.tun_mtu,
            shared.nqueues(),
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

    /// Whether the TUN device accepted UDP segmentation offload (`TUN_F_USO4|TUN_F_USO6`):
    /// decrypted UDP datagrams of a flow are then written as `GSO_UDP_L4` super-packets.
    pub fn tun_udp_gso(&self) -> bool {
        self.shared.tun.udp_gso()
    }

    /// Global counters.
    pub fn counters(&self) -> &GlobalCounters {
        &self.shared.counters
    }

    /// Packets read from each TUN queue (one entry per queue / TUN reader worker; segments
    /// of a GSO read counted one by one).
    pub fn tun_queue_packets(&self) -> Vec<u64> {
        self.shared
            .queue_packets
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
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
    /// NAT-T port). A NAT-keepalive (exactly one byte 0xFF, RFC 3948 2.3) is sent as is.
    pub fn send_ike(&self, local: SocketAddr, remote: SocketAddr, data: &[u8]) -> io::Result<()> {
        let sock = self.shared.socket_for(local).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no socket for local address {local}"),
            )
        })?;
        if local.port() == self.shared.cfg.natt_port && data != [0xFF] {
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

/// Open `n` more queues of the multi-queue TUN device `tun` (nonblocking, same offload
/// state: tun-rs re-applies TUNSETOFFLOAD on the new fd and IFF_VNET_HDR is part of the
/// flags it attaches with). Stops at the first failure with a warning: fewer queues, not an
/// error.
fn open_queues(tun: &tun_rs::SyncDevice, n: usize) -> Vec<tun_rs::SyncDevice> {
    let mut v = Vec::with_capacity(n);
    for i in 1..=n {
        let q = match tun.try_clone() {
            Ok(q) if q.tcp_gso() == tun.tcp_gso() && q.udp_gso() == tun.udp_gso() => q,
            Ok(_) => {
                warn!("TUN queue {i}: offload state differs from queue 0; not used");
                break;
            }
            Err(e) => {
                warn!("TUN queue {i}: {e}; using {i} queue(s)");
                break;
            }
        };
        if let Err(e) = q.set_nonblocking(true) {
            warn!("TUN queue {i}: nonblocking: {e}; using {i} queue(s)");
            break;
        }
        v.push(q);
    }
    v
}

/// The TUN queue for an inner packet written to TUN, out of `n`: a hash of its addresses,
/// protocol and ports, the same for both directions of a flow. Packets that do not parse go
/// to queue 0.
fn flow_queue(pkt: &[u8], n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    let Ok(i) = PacketInfo::parse(pkt) else {
        return 0;
    };
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let ep = |ip: IpAddr, port: Option<u16>| -> u64 {
        let a = match ip {
            IpAddr::V4(a) => u64::from(u32::from(a)),
            IpAddr::V6(a) => {
                let o = u128::from(a);
                (o as u64) ^ ((o >> 64) as u64).rotate_left(17)
            }
        };
        (a ^ (u64::from(port.unwrap_or(0)) << 48)).wrapping_mul(K)
    };
    // XOR of the two endpoints: symmetric in source and destination
    let mut h = (ep(i.src, i.src_port) ^ ep(i.dst, i.dst_port)) ^ u64::from(i.protocol);
    h = h.wrapping_mul(K);
    h ^= h >> 31;
    (((h >> 32) * n as u64) >> 32) as usize
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
    /// TUN queue read by this worker (TUN readers) / used for its ICMP replies.
    queue: usize,
    buf: Box<[u8]>,
    /// Cache remote -> our address, for IKE on wildcard-bound sockets.
    local_cache: Vec<(IpAddr, IpAddr)>,
    /// Inner packets of the current receive batch waiting for the TUN write (they stay in
    /// the receive buffers; see [`Worker::flush_tun`]).
    pending: Vec<tunout::Pending>,
    /// Multi-queue TUN: the queue of each `pending` entry, and one queue's share of them.
    pending_q: Vec<usize>,
    pending_one: Vec<tunout::Pending>,
    /// Several TUN workers: per segment of a read, its policy index and next header if it
    /// is to be encrypted ([`Worker::outbound_ordered`]).
    plan: Vec<Option<(usize, u8)>>,
    tun_out: tunout::TunWriter,
    /// Encrypted packets waiting to be sent, all to `out_dest`, laid out back to back in
    /// `out` as `out_pkts` (start, len).
    out: Box<[u8]>,
    out_used: usize,
    out_pkts: Vec<(usize, usize)>,
    out_dest: Option<Dest>,
    /// UDP GSO failed once on this worker: use sendmmsg from then on.
    no_gso: bool,
}

/// Where a batch of encrypted packets goes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Dest {
    udp: bool,
    local: SocketAddr,
    remote: SocketAddr,
}

/// Size of the outbound ESP batch buffer (two 64 KB TUN reads with ESP overhead fit).
const OUT_BATCH_BYTES: usize = 256 * 1024;
/// Most single-packet TUN reads whose ESP packets are sent together (one sendmmsg or UDP
/// GSO send; [`batch::GSO_MAX_SEGS`]).
const TUN_READS_PER_SEND: usize = batch::GSO_MAX_SEGS;
/// Receive buffers per recvmmsg on the ESP sockets.
const RECV_BATCH: usize = 32;
/// Receive buffers per recvmmsg on a UDP socket with GRO (each up to 64 KB).
const RECV_BATCH_GRO: usize = 8;

impl Worker {
    fn new(shared: Arc<Shared>) -> Self {
        let udp_gso = shared.tun.udp_gso();
        Worker {
            shared,
            queue: 0,
            buf: vec![0u8; BUF_LEN].into_boxed_slice(),
            local_cache: Vec::new(),
            pending: Vec::new(),
            pending_q: Vec::new(),
            pending_one: Vec::new(),
            plan: Vec::new(),
            tun_out: tunout::TunWriter::new(udp_gso),
            out: Box::new([]),
            out_used: 0,
            out_pkts: Vec::new(),
            out_dest: None,
            no_gso: false,
        }
    }

    fn stopped(&self) -> bool {
        self.shared.stop.load(Ordering::Relaxed)
    }

    /// TUN reader of queue `queue`.
    fn tun_loop(&mut self, queue: usize) {
        self.queue = queue;
        let sh = self.shared.clone();
        let tun = sh.queue(queue);
        let fd = tun.as_raw_fd();
        self.out = vec![0u8; OUT_BATCH_BYTES].into_boxed_slice();
        if tun.tcp_gso() {
            return self.tun_loop_offload(fd);
        }
        let mut buf = vec![0u8; BUF_LEN];
        let ordered = sh.nqueues() > 1;
        let read = &sh.queue_packets[queue.min(sh.queue_packets.len() - 1)];
        while !self.stopped() {
            match tun.recv(&mut buf) {
                Ok(n) => {
                    GlobalCounters::inc(read);
                    let spd = sh.tables.spd();
                    if ordered {
                        self.outbound_ordered(&sh, &spd, std::slice::from_ref(&buf), &[n], 1);
                    } else {
                        self.outbound(&sh, &spd, &buf[..n]);
                    }
                    drop(spd);
                    self.flush_out();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => sock::poll_readable(fd, POLL_MS),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    drop_log!(WARN, "TUN read failed: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    /// TUN reader with offloads: one read returns a (possibly GSO) packet with its
    /// virtio_net_hdr; tun-rs splits it into MTU-sized segments with fixed headers and
    /// checksums. All segments are encrypted back to back into one buffer and sent with one
    /// syscall per destination (UDP GSO, else sendmmsg).
    fn tun_loop_offload(&mut self, fd: libc::c_int) {
        let seg_len = usize::from(self.shared.cfg.tun_mtu).max(1500) + 256;
        let mut segs = vec![vec![0u8; seg_len]; tun_rs::IDEAL_BATCH_SIZE];
        let mut sizes = vec![0usize; segs.len()];
        let sh = self.shared.clone();
        let tun = sh.queue(self.queue);
        let read = &sh.queue_packets[self.queue.min(sh.queue_packets.len() - 1)];
        let ordered = sh.nqueues() > 1;
        let mut singles = 0;
        while !self.stopped() {
            match tun.recv_multiple(&mut self.buf, &mut segs, &mut sizes, 0) {
                Ok(k) => {
                    read.fetch_add(k as u64, Ordering::Relaxed);
                    let spd = sh.tables.spd();
                    if ordered {
                        self.outbound_ordered(&sh, &spd, &segs, &sizes, k.min(segs.len()));
                        drop(spd);
                        self.flush_out();
                        continue;
                    }
                    for i in 0..k.min(segs.len()) {
                        let Some(seg) = segs[i].get(..sizes[i]) else {
                            GlobalCounters::inc(&sh.counters.malformed);
                            continue;
                        };
                        self.outbound(&sh, &spd, seg);
                    }
                    drop(spd);
                    // A GSO read (k > 1) is a batch by itself. Single packets (UDP, ICMP,
                    // small TCP segments) are gathered over the reads the queue has ready
                    // at once, so one sendmmsg / UDP GSO send carries up to
                    // TUN_READS_PER_SEND of them; an empty queue (WouldBlock) sends at once.
                    singles += 1;
                    if k > 1 || singles >= TUN_READS_PER_SEND {
                        self.flush_out();
                        singles = 0;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.flush_out();
                    singles = 0;
                    sock::poll_readable(fd, POLL_MS)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error().is_none() => {
                    // a packet tun-rs could not split (bad virtio header / IP header)
                    drop_log!(DEBUG, "drop: malformed packet from TUN: {e}");
                    GlobalCounters::inc(&sh.counters.malformed);
                }
                Err(e) => {
                    self.flush_out();
                    singles = 0;
                    drop_log!(WARN, "TUN read failed: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        self.flush_out();
    }

    /// A cleartext packet from TUN: find its policy, encrypt it into the outbound batch
    /// (sent by [`Worker::flush_out`]).
    fn outbound(&mut self, sh: &Shared, spd: &[Policy], pkt: &[u8]) {
        if let Some((i, nh)) = self.classify(sh, spd, pkt) {
            if let PolicyAction::Protect(e) = &spd[i].action {
                self.protect(sh, e, nh, pkt, None);
            }
        }
    }

    /// Several TUN workers: the segments `segs[i][..sizes[i]]` (i < k) of one TUN read,
    /// encrypted with per-SA ranges of sequence numbers sent in sequence-number order
    /// across the workers ([`fs_esp::OutboundSa::reserve`], `wait_turn`, `finish`).
    /// Without this, workers taking numbers packet by packet and sending batches
    /// independently interleave them: the peer sees reordering of a batch or more per
    /// worker, beyond small replay windows (strongSwan's default is 32), and a worker
    /// descheduled between encrypting and sending can fall behind any window.
    fn outbound_ordered(
        &mut self,
        sh: &Shared,
        spd: &[Policy],
        segs: &[Vec<u8>],
        sizes: &[usize],
        k: usize,
    ) {
        let seg = |i: usize| segs.get(i).and_then(|s| s.get(..*sizes.get(i)?));
        self.plan.clear();
        for i in 0..k {
            let p = match seg(i) {
                Some(pkt) => self.classify(sh, spd, pkt),
                None => {
                    GlobalCounters::inc(&sh.counters.malformed);
                    None
                }
            };
            self.plan.push(p);
        }
        let mut i = 0;
        while i < k {
            let Some((pi, _)) = self.plan[i] else {
                i += 1;
                continue;
            };
            let PolicyAction::Protect(e) = &spd[pi].action else {
                i += 1;
                continue;
            };
            // a run of segments for the same policy (one SA)
            let mut j = i + 1;
            while j < k && matches!(self.plan[j], Some((pj, _)) if pj == pi) {
                j += 1;
            }
            let n = (j - i) as u64;
            let first = match e.sa.reserve(n) {
                Ok(f) => f,
                Err(err) => {
                    drop_log!(DEBUG, "drop: SPI {:08x}: {err}", e.sa.spi());
                    sh.counters.encap_error.fetch_add(n, Ordering::Relaxed);
                    i = j;
                    continue;
                }
            };
            // nothing of an earlier run may wait for this run's turn
            self.flush_out();
            // Wait (once) for the earlier ranges before the first send and before finishing,
            // also if every packet was dropped: finishing early would let later ranges pass
            // earlier ones.
            let mut waited = false;
            let mut wait = |sa: &fs_esp::OutboundSa| {
                if !std::mem::replace(&mut waited, true) && !sa.wait_turn(first) {
                    drop_log!(
                        DEBUG,
                        "SPI {:08x}: earlier batch stalled; sending",
                        sa.spi()
                    );
                }
            };
            for (m, x) in (i..j).enumerate() {
                let (Some(pkt), Some((_, nh))) = (seg(x), self.plan[x]) else {
                    continue;
                };
                let need = pkt.len() + e.sa.max_overhead();
                if self.out_used + need > self.out.len() && !self.out_pkts.is_empty() {
                    wait(&e.sa);
                    self.flush_out();
                }
                self.protect(sh, e, nh, pkt, Some(first + m as u64));
            }
            wait(&e.sa);
            self.flush_out();
            e.sa.finish(first + n - 1);
            i = j;
        }
    }

    /// Policy lookup for a cleartext packet from TUN: `Some((policy index, next header))`
    /// if it is to be encrypted; trap (acquire), drop, no policy and too-big (ICMP answer)
    /// are handled here and give None.
    fn classify(&mut self, sh: &Shared, spd: &[Policy], pkt: &[u8]) -> Option<(usize, u8)> {
        let c = &sh.counters;
        let n = pkt.len();
        let Ok(info) = PacketInfo::parse(pkt) else {
            drop_log!(DEBUG, "drop: malformed packet from TUN ({n} bytes)");
            GlobalCounters::inc(&c.malformed);
            return None;
        };
        let Some(pi) = spd.iter().position(|p| {
            p.matches_outbound(
                info.src,
                info.dst,
                info.protocol,
                info.src_port,
                info.dst_port,
            )
        }) else {
            drop_log!(DEBUG, "drop: no policy for {} -> {}", info.src, info.dst);
            GlobalCounters::inc(&c.no_policy);
            return None;
        };
        let p = &spd[pi];
        match &p.action {
            PolicyAction::Protect(e) => {
                if n > usize::from(sh.cfg.tun_mtu) && self.too_big(sh, &info, pkt) {
                    return None;
                }
                if n + e.sa.max_overhead() > self.out.len() {
                    GlobalCounters::inc(&c.too_big);
                    return None;
                }
                return Some((pi, next_header(&info)));
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
                    drop_log!(
                        DEBUG,
                        "acquire {}/{} for {} -> {}",
                        p.conn,
                        p.child,
                        info.src,
                        info.dst
                    );
                    to_control(
                        sh,
                        DpMessage::Acquire {
                            conn: p.conn.clone(),
                            child: p.child.clone(),
                        },
                    );
                }
            }
            PolicyAction::Drop => {
                drop_log!(
                    DEBUG,
                    "drop: {}/{} has no SA ({} -> {})",
                    p.conn,
                    p.child,
                    info.src,
                    info.dst
                );
                GlobalCounters::inc(&c.no_sa);
            }
        }
        None
    }

    /// Encrypt `pkt` (next header `nh`) with `e`'s SA into the outbound batch, with
    /// sequence number `seq` if reserved ([`Worker::outbound_ordered`]), else the next one.
    fn protect(&mut self, sh: &Shared, e: &OutboundEntry, nh: u8, pkt: &[u8], seq: Option<u64>) {
        let need = pkt.len() + e.sa.max_overhead();
        let dest = Dest {
            udp: e.udp_encap,
            local: e.local,
            remote: e.remote,
        };
        if self.out_dest != Some(dest) || self.out_used + need > self.out.len() {
            self.flush_out();
            self.out_dest = Some(dest);
        }
        let start = self.out_used;
        let out = &mut self.out[start..];
        let res = match seq {
            None => e.sa.encapsulate(pkt, nh, out),
            Some(s) => e.sa.encapsulate_with_seq(s, pkt, nh, out),
        };
        let len = match res {
            Ok(l) => l,
            Err(err) => {
                drop_log!(
                    DEBUG,
                    "drop: encapsulation failed on SPI {:08x}: {err}",
                    e.sa.spi()
                );
                GlobalCounters::inc(&sh.counters.encap_error);
                return;
            }
        };
        self.out_pkts.push((start, len));
        self.out_used += len;
    }

    /// An inner packet longer than the tunnel MTU: if it must not be fragmented (IPv4 DF,
    /// or IPv6), answer it with ICMP frag-needed / ICMPv6 packet-too-big (MTU = tun_mtu)
    /// written back into the TUN device, so the sender learns the path MTU, and return true
    /// (the packet is dropped). IPv4 without DF: false (sent; the outer packet fragments).
    fn too_big(&mut self, sh: &Shared, info: &PacketInfo, pkt: &[u8]) -> bool {
        let mtu = sh.cfg.tun_mtu;
        let mut icmp = [0u8; VNET_HDR_LEN + fs_esp::ip::IPV6_MIN_MTU];
        let out = &mut icmp[VNET_HDR_LEN..];
        // The reply comes "from" the unreachable destination: a local address as source
        // would be dropped as martian when it enters through the TUN device.
        let built = match (info.version, info.dst) {
            (4, IpAddr::V4(dst)) => {
                if !matches!(pkt.get(6), Some(b) if b & 0x40 != 0) {
                    return false;
                }
                fs_esp::ip::icmpv4_frag_needed(pkt, mtu, dst, out)
            }
            (6, IpAddr::V6(dst)) => {
                fs_esp::ip::icmpv6_packet_too_big(pkt, u32::from(mtu), dst, out)
            }
            _ => return false,
        };
        let Ok(len) = built else {
            // an ICMP error or non-first fragment itself: drop without a reply
            GlobalCounters::inc(&sh.counters.too_big);
            return true;
        };
        let tun = sh.queue(self.queue);
        let res = if tun.tcp_gso() {
            tun.send(&icmp[..VNET_HDR_LEN + len])
        } else {
            tun.send(&icmp[VNET_HDR_LEN..VNET_HDR_LEN + len])
        };
        match res {
            Ok(_) => GlobalCounters::inc(&sh.counters.pmtu_icmp),
            Err(e) => {
                drop_log!(DEBUG, "drop: TUN write of ICMP too-big failed: {e}");
                GlobalCounters::inc(&sh.counters.tun_write_error);
            }
        }
        true
    }

    /// Send the queued ESP packets (all to `out_dest`): ESP-in-UDP as runs of equal-sized
    /// datagrams with one UDP GSO sendmsg each, raw ESP (or UDP if GSO fails) with sendmmsg.
    fn flush_out(&mut self) {
        let Some(dest) = self.out_dest else {
            self.out_pkts.clear();
            self.out_used = 0;
            return;
        };
        if self.out_pkts.is_empty() {
            self.out_used = 0;
            return;
        }
        let sh = self.shared.clone();
        let c = &sh.counters;
        let total = self.out_pkts.len();
        let fd = if dest.udp {
            sh.socket_for(SocketAddr::new(dest.local.ip(), sh.cfg.natt_port))
                .map(|s| s.as_raw_fd())
        } else if dest.remote.is_ipv4() {
            sh.raw4.as_ref().map(|s| s.as_raw_fd())
        } else {
            sh.raw6.as_ref().map(|s| s.as_raw_fd())
        };
        let mut failed = 0;
        match fd {
            None => failed = total,
            Some(fd) if dest.udp && !self.no_gso => {
                let pk = &self.out_pkts;
                let mut i = 0;
                while i < pk.len() {
                    // a run: equal-sized datagrams, the last one may be shorter
                    let seg = pk[i].1;
                    let start = pk[i].0;
                    let mut j = i + 1;
                    let mut bytes = seg;
                    while j < pk.len()
                        && j - i < batch::GSO_MAX_SEGS
                        && pk[j].1 <= seg
                        && bytes + pk[j].1 <= batch::GSO_MAX_BYTES
                        && pk[j].0 == pk[j - 1].0 + pk[j - 1].1
                    {
                        bytes += pk[j].1;
                        j += 1;
                        if pk[j - 1].1 < seg {
                            break;
                        }
                    }
                    let res = if j - i == 1 {
                        batch::send_many(fd, dest.remote, &self.out, &pk[i..j]).map(|_| 0)
                    } else {
                        match u16::try_from(seg) {
                            Ok(s) => {
                                batch::send_gso(fd, dest.remote, &self.out[start..start + bytes], s)
                            }
                            Err(_) => Err(io::Error::from(io::ErrorKind::InvalidInput)),
                        }
                    };
                    if let Err(err) = res {
                        if matches!(
                            err.raw_os_error(),
                            Some(libc::EIO | libc::EINVAL | libc::ENOPROTOOPT)
                        ) && j - i > 1
                        {
                            // no UDP GSO here: send this run and all later ones one by one
                            debug!("UDP GSO unavailable ({err}); using sendmmsg");
                            self.no_gso = true;
                            let sent =
                                batch::send_many(fd, dest.remote, &self.out, &pk[i..]).unwrap_or(0);
                            failed += pk.len() - i - sent;
                            break;
                        }
                        drop_log!(DEBUG, "drop: sending ESP to {} failed: {err}", dest.remote);
                        failed += j - i;
                    }
                    i = j;
                }
            }
            Some(fd) => {
                let remote = if dest.udp {
                    dest.remote
                } else {
                    SocketAddr::new(dest.remote.ip(), 0)
                };
                match batch::send_many(fd, remote, &self.out, &self.out_pkts) {
                    Ok(sent) => failed = total - sent.min(total),
                    Err(err) => {
                        drop_log!(DEBUG, "drop: sending ESP to {} failed: {err}", dest.remote);
                        failed = total;
                    }
                }
            }
        }
        if failed > 0 {
            c.send_error.fetch_add(failed as u64, Ordering::Relaxed);
        }
        self.out_pkts.clear();
        self.out_used = 0;
    }

    fn udp_loop(&mut self, idx: usize) {
        let sh = self.shared.clone();
        let s = &sh.udp[idx];
        if s.natt {
            return self.natt_loop(idx);
        }
        while !self.stopped() {
            let (n, from) = match s.sock.recv_from(&mut self.buf) {
                Ok(r) => r,
                Err(e) if sock::read_timed_out(&e) => continue,
                Err(e) => {
                    // e.g. ICMP errors reported on the socket; keep going
                    drop_log!(DEBUG, "UDP {} receive error: {e}", s.local);
                    continue;
                }
            };
            let data = self.buf[..n].to_vec();
            self.ike_to_control(s.local, from, data);
        }
    }

    /// NAT-T socket reader: recvmmsg with UDP GRO (a coalesced datagram is split by its
    /// segment size); keepalives counted, IKE (marker stripped) to the control thread, ESP
    /// decrypted in place and written to TUN in batches.
    fn natt_loop(&mut self, idx: usize) {
        let sh = self.shared.clone();
        let s = &sh.udp[idx];
        let fd = s.sock.as_raw_fd();
        let gro = batch::enable_gro(fd);
        let mut rb = if gro {
            batch::RecvBatch::new(RECV_BATCH_GRO, 65536)
        } else {
            batch::RecvBatch::new(RECV_BATCH, BUF_LEN.min(16384))
        };
        debug!("UDP {} reader: GRO {gro}", s.local);
        while !self.stopped() {
            let k = match rb.recv(fd) {
                Ok(k) => k,
                Err(e) => {
                    if !sock::read_timed_out(&e) {
                        // e.g. ICMP errors reported on the socket; keep going
                        drop_log!(DEBUG, "UDP {} receive error: {e}", s.local);
                    }
                    continue;
                }
            };
            let sad = sh.tables.sad();
            let peers = sh.tables.peers();
            let mut cache = SaCache::default();
            let mut peer_cache = None;
            for i in 0..k {
                let n = rb.lens[i];
                let Some(from) = rb.src(i) else {
                    GlobalCounters::inc(&sh.counters.malformed);
                    continue;
                };
                let seg = if rb.segs[i] == 0 {
                    n.max(1)
                } else {
                    rb.segs[i]
                };
                let Some(data) = rb.bufs[i].get_mut(..n) else {
                    continue;
                };
                for (ci, d) in data.chunks_mut(seg).enumerate() {
                    if d.len() == 1 && d[0] == 0xff {
                        GlobalCounters::inc(&sh.counters.nat_keepalives);
                    } else if d.len() >= 4 && d[..4] == NON_ESP_MARKER {
                        self.ike_to_control(s.local, from, d[4..].to_vec());
                    } else {
                        let spi = d.get(..4).map_or(EspSpi(0), |b| {
                            EspSpi::from_be_bytes([b[0], b[1], b[2], b[3]])
                        });
                        if let Some(r) = self.inbound_esp(&sad, &mut cache, d, from) {
                            // authenticated: the peer may have moved (NAT rebinding)
                            note_peer(&sh, &peers, &mut peer_cache, spi, from);
                            self.pending.push(tunout::Pending {
                                buf: i,
                                start: ci * seg + r.start,
                                len: r.len(),
                            });
                        }
                    }
                }
            }
            drop(peers);
            drop(sad);
            self.flush_tun(&rb.bufs);
        }
    }

    /// Raw ESP reader (IPv4: the IP header is delivered and skipped; IPv6: not delivered):
    /// recvmmsg a batch, decrypt each packet in place, and write the inner packets to TUN
    /// with [`Worker::flush_tun`] (consecutive TCP segments of a flow as one GSO super-packet).
    fn raw_loop(&mut self, v6: bool) {
        let sh = self.shared.clone();
        let Some(s) = (if v6 { &sh.raw6 } else { &sh.raw4 }) else {
            return;
        };
        let fd = s.as_raw_fd();
        let rlen = usize::from(sh.cfg.tun_mtu).max(1500) + 2048;
        let mut rb = batch::RecvBatch::new(RECV_BATCH, rlen);
        while !self.stopped() {
            let k = match rb.recv(fd) {
                Ok(k) => k,
                Err(e) => {
                    if !sock::read_timed_out(&e) {
                        drop_log!(DEBUG, "raw ESP receive error: {e}");
                    }
                    continue;
                }
            };
            let sad = sh.tables.sad();
            let mut cache = SaCache::default();
            for i in 0..k {
                let n = rb.lens[i];
                let from = match rb.src(i) {
                    Some(a) => SocketAddr::new(a.ip(), 0),
                    None => {
                        GlobalCounters::inc(&sh.counters.malformed);
                        continue;
                    }
                };
                let Some(data) = rb.bufs[i].get_mut(..n) else {
                    continue;
                };
                let off = if v6 {
                    0
                } else {
                    let ihl = usize::from(data.first().copied().unwrap_or(0) & 0x0f) * 4;
                    if n < 20 || ihl < 20 || ihl > n {
                        GlobalCounters::inc(&sh.counters.malformed);
                        continue;
                    }
                    ihl
                };
                if let Some(r) = self.inbound_esp(&sad, &mut cache, &mut data[off..], from) {
                    self.pending.push(tunout::Pending {
                        buf: i,
                        start: off + r.start,
                        len: r.len(),
                    });
                }
            }
            drop(sad);
            self.flush_tun(&rb.bufs);
        }
    }

    /// Write the inner packets queued in `pending` (lying in `bufs`, the receive batch) to
    /// TUN: with offloads consecutive TCP segments (and, with USO, UDP datagrams) of a flow
    /// as one GSO super-packet ([`tunout::TunWriter`]), else one write each.
    ///
    /// Multi-queue TUN: each packet is written on the queue its flow hashes to
    /// ([`flow_queue`]), in order within the flow. Which queue a packet is written on does
    /// not matter for its delivery, but the kernel remembers the queue a flow was last
    /// written on and reads the flow's outgoing packets from that queue (tun "automq" flow
    /// steering). Writing everything on queue 0 would therefore pull every flow that has
    /// inbound traffic onto queue 0's reader; spreading writes by flow hash keeps the flows
    /// spread over the TUN readers, each flow on one of them.
    fn flush_tun(&mut self, bufs: &[Vec<u8>]) {
        if self.pending.is_empty() {
            return;
        }
        let sh = &*self.shared;
        let nq = sh.nqueues();
        let failed = if sh.tun.tcp_gso() {
            if nq == 1 {
                self.tun_out.write(sh.tun.as_raw_fd(), bufs, &self.pending)
            } else {
                self.pending_q.clear();
                for p in &self.pending {
                    let pkt = bufs
                        .get(p.buf)
                        .and_then(|b| b.get(p.start..p.start + p.len))
                        .unwrap_or(&[]);
                    self.pending_q.push(flow_queue(pkt, nq));
                }
                let mut failed = 0;
                for q in 0..nq {
                    self.pending_one.clear();
                    self.pending_one.extend(
                        self.pending
                            .iter()
                            .zip(&self.pending_q)
                            .filter(|(_, &pq)| pq == q)
                            .map(|(p, _)| *p),
                    );
                    if !self.pending_one.is_empty() {
                        failed +=
                            self.tun_out
                                .write(sh.queue(q).as_raw_fd(), bufs, &self.pending_one);
                    }
                }
                failed
            }
        } else {
            let mut failed = 0;
            for p in &self.pending {
                let Some(pkt) = bufs
                    .get(p.buf)
                    .and_then(|b| b.get(p.start..p.start + p.len))
                else {
                    continue;
                };
                if sh.queue(flow_queue(pkt, nq)).send(pkt).is_err() {
                    failed += 1;
                }
            }
            failed
        };
        self.pending.clear();
        let udp_gso = std::mem::take(&mut self.tun_out.udp_gso_writes);
        if udp_gso > 0 {
            sh.counters
                .tun_gso_udp_writes
                .fetch_add(udp_gso, Ordering::Relaxed);
        }
        if failed > 0 {
            drop_log!(DEBUG, "drop: {failed} TUN writes failed");
            sh.counters
                .tun_write_error
                .fetch_add(failed, Ordering::Relaxed);
        }
    }

    fn ike_to_control(&mut self, local: SocketAddr, remote: SocketAddr, data: Vec<u8>) {
        let local = if local.ip().is_unspecified() {
            SocketAddr::new(
                self.resolve_local(remote.ip()).unwrap_or(local.ip()),
                local.port(),
            )
        } else {
            local
        };
        let sh = &*self.shared;
        // Under overload, shed requests for new SAs first: they cost a DH each, while the
        // messages of established SAs keep them alive (DPD, rekeys, deletes).
        if is_ike_sa_init_request(&data) && sh.tx.len() >= CONTROL_QUEUE_LEN / 2 {
            GlobalCounters::inc(&sh.counters.control_queue_shed_init);
            drop_log!(
                DEBUG,
                "control queue half full: new IKE_SA_INIT request from {remote} shed"
            );
            return;
        }
        to_control(
            sh,
            DpMessage::Ike {
                local,
                remote,
                data,
            },
        );
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

    /// An ESP packet `pkt` (SPI .. ICV) from `from`: find the SA, decrypt in place, check
    /// selectors. Returns where the inner packet lies in `pkt`, to be queued for the TUN
    /// write ([`Worker::flush_tun`]); None if the packet was dropped.
    fn inbound_esp<'s>(
        &mut self,
        sad: &'s HashMap<EspSpi, InboundEntry>,
        cache: &mut SaCache<'s>,
        pkt: &mut [u8],
        from: SocketAddr,
    ) -> Option<std::ops::Range<usize>> {
        let sh = &*self.shared;
        let c = &sh.counters;
        if pkt.len() < fs_esp::ESP_HEADER_LEN {
            drop_log!(DEBUG, "drop: short ESP packet from {from}");
            GlobalCounters::inc(&c.malformed);
            return None;
        }
        let spi = EspSpi::from_be_bytes([pkt[0], pkt[1], pkt[2], pkt[3]]);
        let entry = match cache.last {
            Some((s, e)) if s == spi => e,
            _ => {
                let Some(e) = sad.get(&spi) else {
                    drop_log!(DEBUG, "drop: unknown SPI {spi:08x} from {from}");
                    GlobalCounters::inc(&c.unknown_spi);
                    return None;
                };
                cache.last = Some((spi, e));
                e
            }
        };
        let d = match entry.sa.decapsulate(pkt) {
            Ok(d) => d,
            Err(e) => {
                drop_log!(DEBUG, "drop: ESP SPI {spi:08x} from {from}: {e}");
                use fs_esp::EspError::*;
                let ctr = match e {
                    Dummy => return None, // dummy packet (TFC), RFC 4303 2.6
                    Replay => &c.replay,
                    AuthFailed => &c.auth_failed,
                    WrongSpi => &c.unknown_spi,
                    Malformed | BadPadding | BadNextHeader(_) => &c.malformed,
                    _ => &c.unsupported,
                };
                GlobalCounters::inc(ctr);
                return None;
            }
        };
        if d.next_header == 59 {
            return None; // dummy packet (TFC), RFC 4303 2.6
        }
        if d.next_header != fs_esp::NH_IPV4 && d.next_header != fs_esp::NH_IPV6 {
            drop_log!(
                DEBUG,
                "drop: SPI {spi:08x}: next header {} (transport mode is not supported over TUN)",
                d.next_header
            );
            GlobalCounters::inc(&c.unsupported);
            return None;
        }
        let Some(inner) = pkt.get(d.inner.clone()) else {
            GlobalCounters::inc(&c.malformed);
            return None;
        };
        let Ok(info) = PacketInfo::parse(inner) else {
            drop_log!(DEBUG, "drop: SPI {spi:08x}: malformed inner packet");
            GlobalCounters::inc(&c.malformed);
            return None;
        };
        if !entry.selectors_match(
            info.src,
            info.dst,
            info.protocol,
            info.src_port,
            info.dst_port,
        ) {
            drop_log!(
                DEBUG,
                "drop: SPI {spi:08x}: inner {} -> {} outside {}/{} selectors",
                info.src,
                info.dst,
                entry.conn,
                entry.child
            );
            GlobalCounters::inc(&c.selector_mismatch);
            return None;
        }
        Some(d.inner)
    }
}

/// After an AUTHENTICATED ESP-in-UDP packet of inbound SA `spi` from `from`: if the SA is
/// tracked and the source differs from the expected one, tell the control thread (rate
/// limited per SA, see [`PeerTrack::observe`]). `cache` keeps the last tracker looked up in
/// the batch; the common case is one SPI comparison and one atomic load.
#[inline]
fn note_peer<'p>(
    sh: &Shared,
    peers: &'p HashMap<EspSpi, PeerTrack>,
    cache: &mut Option<(EspSpi, Option<&'p PeerTrack>)>,
    spi: EspSpi,
    from: SocketAddr,
) {
    let t = match *cache {
        Some((s, t)) if s == spi => t,
        _ => {
            let t = peers.get(&spi);
            *cache = Some((spi, t));
            t
        }
    };
    let Some(t) = t else { return };
    let now_ms = || u64::try_from(sh.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
    if t.observe(from, now_ms) {
        drop_log!(
            DEBUG,
            "SPI {spi:08x}: authenticated ESP from new peer address {from}"
        );
        GlobalCounters::inc(&sh.counters.peer_moves);
        to_control(
            sh,
            DpMessage::PeerEndpoint {
                spi_in: spi,
                remote: from,
            },
        );
    }
}

/// Queue `m` for the control thread; dropped and counted when the queue is full (never
/// blocks a socket thread, never grows without bound).
fn to_control(sh: &Shared, m: DpMessage) {
    if let Err(crossbeam_channel::TrySendError::Full(_)) = sh.tx.try_send(m) {
        GlobalCounters::inc(&sh.counters.control_queue_full);
        drop_log!(DEBUG, "control queue full: message dropped");
    }
}

/// An IKE_SA_INIT request for a new SA (exchange 34, Response flag clear, responder SPI 0):
/// the cheapest thing to shed under overload. Reads only the fixed header.
fn is_ike_sa_init_request(ike: &[u8]) -> bool {
    match (ike.get(8..16), ike.get(18), ike.get(19)) {
        (Some(spi_r), Some(&34), Some(&flags)) => {
            flags & fs_wire::ike::flags::RESPONSE == 0 && spi_r.iter().all(|b| *b == 0)
        }
        _ => false,
    }
}

/// The last SAD entry looked up in one receive batch (packets of a batch nearly always
/// share their SA; saves the hash lookup). Lives only while the SAD read guard is held.
#[derive(Default)]
struct SaCache<'s> {
    last: Option<(EspSpi, &'s InboundEntry)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// IPv4 UDP packet src:sp -> dst:dp with 8 bytes of payload.
    fn udp4(src: [u8; 4], sp: u16, dst: [u8; 4], dp: u16) -> Vec<u8> {
        let mut p = vec![0u8; 36];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&36u16.to_be_bytes());
        p[8] = 64;
        p[9] = 17;
        p[12..16].copy_from_slice(&src);
        p[16..20].copy_from_slice(&dst);
        p[20..22].copy_from_slice(&sp.to_be_bytes());
        p[22..24].copy_from_slice(&dp.to_be_bytes());
        p[24..26].copy_from_slice(&16u16.to_be_bytes());
        p
    }

    #[test]
    fn flow_queue_symmetric_in_range_and_spread() {
        let (a, b) = ([10, 0, 0, 1], [10, 0, 1, 2]);
        let mut used = [0usize; 4];
        for port in 40000..40064 {
            let q = flow_queue(&udp4(a, port, b, 5201), 4);
            assert!(q < 4);
            assert_eq!(q, flow_queue(&udp4(b, 5201, a, port), 4), "both directions");
            used[q] += 1;
        }
        assert!(
            used.iter().all(|&n| n > 0),
            "64 flows over 4 queues: {used:?}"
        );
        assert_eq!(flow_queue(&udp4(a, 1, b, 2), 1), 0, "single queue");
        assert_eq!(flow_queue(&[0x45, 0, 0], 4), 0, "malformed: queue 0");
        assert_eq!(flow_queue(&[], 8), 0);
    }

    #[test]
    fn workers_resolution() {
        assert_eq!(
            [1, 2, 3, 4, 8, 16, 64].map(auto_workers_for),
            [1, 1, 1, 2, 4, 8, 8]
        );
        let auto = auto_workers();
        assert!((1..=AUTO_WORKERS_MAX).contains(&auto));
        assert_eq!(resolve_workers(0), auto);
        assert_eq!(resolve_workers(1), 1);
        assert_eq!(resolve_workers(3), 3);
        assert_eq!(resolve_workers(1000), WORKERS_MAX);
    }
}
