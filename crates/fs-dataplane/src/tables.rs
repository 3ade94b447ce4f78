//! Security Policy Database (ordered, first match) and Security Association Database (by SPI),
//! shared between the control thread (writer) and the workers (readers).
use fs_esp::{Counters, EspSpi, InboundSa, OutboundSa};
use fs_wire::ts::TrafficSelector;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Where and how to send the ESP packets of an outbound SA.
#[derive(Clone)]
pub struct OutboundEntry {
    pub sa: Arc<OutboundSa>,
    /// Our outer address (port = NAT-T port when `udp_encap`).
    pub local: SocketAddr,
    /// The peer's outer address (port used when `udp_encap`).
    pub remote: SocketAddr,
    /// ESP in UDP (RFC 3948) instead of raw IP protocol 50.
    pub udp_encap: bool,
}

/// What to do with a packet that matches a policy.
#[derive(Clone)]
pub enum PolicyAction {
    /// Encrypt with this SA.
    Protect(OutboundEntry),
    /// No SA: drop, and ask the control thread to negotiate one.
    Trap,
    /// No SA: drop (counted `no_sa`).
    Drop,
}

/// One SPD entry.
pub struct Policy {
    pub conn: String,
    pub child: String,
    pub local_ts: Vec<TrafficSelector>,
    pub remote_ts: Vec<TrafficSelector>,
    pub action: PolicyAction,
    /// Milliseconds (data-plane clock) of the last acquire sent, for rate limiting.
    pub(crate) last_acquire_ms: AtomicU64,
}

impl Policy {
    /// A policy for `conn`/`child` with the given selectors and action.
    pub fn new(
        conn: &str,
        child: &str,
        local_ts: Vec<TrafficSelector>,
        remote_ts: Vec<TrafficSelector>,
        action: PolicyAction,
    ) -> Self {
        Policy {
            conn: conn.to_string(),
            child: child.to_string(),
            local_ts,
            remote_ts,
            action,
            last_acquire_ms: AtomicU64::new(0),
        }
    }

    /// Does an outbound packet (src, dst, protocol, ports) fall under this policy?
    pub fn matches_outbound(
        &self,
        src: IpAddr,
        dst: IpAddr,
        protocol: u8,
        sport: Option<u16>,
        dport: Option<u16>,
    ) -> bool {
        self.local_ts
            .iter()
            .any(|t| t.matches(src, protocol, sport))
            && self
                .remote_ts
                .iter()
                .any(|t| t.matches(dst, protocol, dport))
    }

    fn spi_out(&self) -> Option<EspSpi> {
        match &self.action {
            PolicyAction::Protect(e) => Some(e.sa.spi()),
            _ => None,
        }
    }
}

/// One SAD entry: an inbound SA and the selectors its inner packets must match.
#[derive(Clone)]
pub struct InboundEntry {
    pub sa: Arc<InboundSa>,
    pub conn: String,
    pub child: String,
    pub local_ts: Vec<TrafficSelector>,
    pub remote_ts: Vec<TrafficSelector>,
}

impl InboundEntry {
    /// Decrypted inner packet check: source in the remote selectors, destination in the local.
    pub fn selectors_match(
        &self,
        src: IpAddr,
        dst: IpAddr,
        protocol: u8,
        sport: Option<u16>,
        dport: Option<u16>,
    ) -> bool {
        self.remote_ts
            .iter()
            .any(|t| t.matches(src, protocol, sport))
            && self
                .local_ts
                .iter()
                .any(|t| t.matches(dst, protocol, dport))
    }
}

/// Minimum interval between two peer-endpoint notifications for the same inbound SA.
pub const PEER_NOTIFY_INTERVAL_MS: u64 = 1000;

/// The peer's outer address as seen on the authenticated ESP-in-UDP packets of one inbound
/// SA (NAT rebinding detection, RFC 3948 / RFC 7296 2.23). The receive path compares the
/// source of each packet that passed decapsulation (ICV and replay checks) with `key`, one
/// atomic load; only on a mismatch it takes the slow path ([`PeerTrack::observe`]).
pub struct PeerTrack {
    /// [`addr_key`] of `remote`.
    key: AtomicU64,
    /// Where the peer's ESP is expected from (the outbound remote, or the last observed).
    remote: Mutex<SocketAddr>,
    /// Data-plane clock (ms, +1) of the last notification; 0 = never.
    last_notify_ms: AtomicU64,
    /// Source changes observed (and reported) on this SA.
    pub changes: AtomicU64,
}

/// A 64-bit comparison key of a socket address: exact for IPv4, a hash for IPv6 (a
/// collision only delays following a move until the next IKE message).
fn addr_key(a: SocketAddr) -> u64 {
    match a {
        SocketAddr::V4(v) => {
            (1 << 63) | (u64::from(u32::from(*v.ip())) << 16) | u64::from(a.port())
        }
        SocketAddr::V6(v) => {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for b in v.ip().octets().iter().chain(&a.port().to_be_bytes()) {
                h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
            }
            h & !(1 << 63)
        }
    }
}

impl PeerTrack {
    /// Expect the peer's ESP from `remote`.
    pub fn new(remote: SocketAddr) -> Self {
        PeerTrack {
            key: AtomicU64::new(addr_key(remote)),
            remote: Mutex::new(remote),
            last_notify_ms: AtomicU64::new(0),
            changes: AtomicU64::new(0),
        }
    }

    /// Where the peer's ESP is expected from now.
    pub fn remote(&self) -> SocketAddr {
        *self.remote.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Expect the peer from `remote` (the control thread moved the SA), without notifying.
    pub fn set_remote(&self, remote: SocketAddr) {
        *self.remote.lock().unwrap_or_else(|e| e.into_inner()) = remote;
        self.key.store(addr_key(remote), Ordering::Relaxed);
    }

    /// An AUTHENTICATED packet (decapsulated: ICV and replay checks passed) came from
    /// `from`; `now_ms` gives the data-plane time (only read on a mismatch). Returns true if the control thread should be told
    /// (the source differs from the expected one, and the last notification for this SA is
    /// at least [`PEER_NOTIFY_INTERVAL_MS`] old); the new source is then recorded. While
    /// rate limited nothing is recorded, so a later packet reports it again.
    #[inline]
    pub fn observe(&self, from: SocketAddr, now_ms: impl FnOnce() -> u64) -> bool {
        let k = addr_key(from);
        if self.key.load(Ordering::Relaxed) == k {
            return false;
        }
        self.observe_slow(from, k, now_ms().saturating_add(1))
    }

    #[cold]
    fn observe_slow(&self, from: SocketAddr, k: u64, now: u64) -> bool {
        let last = self.last_notify_ms.load(Ordering::Relaxed);
        if last != 0 && now < last.saturating_add(PEER_NOTIFY_INTERVAL_MS) {
            return false;
        }
        if self
            .last_notify_ms
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return false; // another reader reports it
        }
        let mut g = self.remote.lock().unwrap_or_else(|e| e.into_inner());
        self.key.store(k, Ordering::Relaxed);
        if *g == from {
            return false;
        }
        *g = from;
        self.changes.fetch_add(1, Ordering::Relaxed);
        true
    }
}

/// The shared SPD and SAD.
#[derive(Default)]
pub struct Tables {
    spd: RwLock<Vec<Policy>>,
    sad: RwLock<HashMap<EspSpi, InboundEntry>>,
    /// Peer-endpoint tracking of UDP-encapsulated inbound SAs, by inbound SPI.
    peers: RwLock<HashMap<EspSpi, PeerTrack>>,
}

// A poisoned lock only means a thread panicked while holding it; the data is still usable.
fn r<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}
fn w<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

impl Tables {
    /// Empty tables.
    pub fn new() -> Self {
        Self::default()
    }

    /// Read access to the SPD (workers).
    pub fn spd(&self) -> RwLockReadGuard<'_, Vec<Policy>> {
        r(&self.spd)
    }

    /// Read access to the SAD (workers).
    pub fn sad(&self) -> RwLockReadGuard<'_, HashMap<EspSpi, InboundEntry>> {
        r(&self.sad)
    }

    /// Append a configured policy without SA (`trap` = acquire on match, else drop).
    /// SA policies are always placed before these.
    pub fn add_config_policy(
        &self,
        conn: &str,
        child: &str,
        local_ts: Vec<TrafficSelector>,
        remote_ts: Vec<TrafficSelector>,
        trap: bool,
    ) {
        let action = if trap {
            PolicyAction::Trap
        } else {
            PolicyAction::Drop
        };
        w(&self.spd).push(Policy::new(conn, child, local_ts, remote_ts, action));
    }

    /// Switch the configured (SA-less) policies of `conn`/`child` between trap (acquire on
    /// match) and drop, e.g. for `dpd_action = trap`. Returns true if one was found.
    pub fn set_config_trap(&self, conn: &str, child: &str, trap: bool) -> bool {
        let mut found = false;
        for p in w(&self.spd).iter_mut() {
            if p.spi_out().is_none() && p.conn == conn && p.child == child {
                p.action = if trap {
                    PolicyAction::Trap
                } else {
                    PolicyAction::Drop
                };
                found = true;
            }
        }
        found
    }

    /// Install a CHILD_SA: its outbound policy goes first (newest SA wins, so a rekeyed SA
    /// takes over at once) and its inbound SA is keyed by SPI.
    pub fn install_child(&self, policy_out: Policy, inbound: InboundEntry) {
        w(&self.sad).insert(inbound.sa.spi(), inbound);
        w(&self.spd).insert(0, policy_out);
    }

    /// Make-before-break, first half: accept the new inbound SA at once (the peer may switch
    /// to it any time) while outbound traffic stays on the SA it uses now.
    pub fn install_inbound(&self, inbound: InboundEntry) {
        w(&self.sad).insert(inbound.sa.spi(), inbound);
    }

    /// Make-before-break, second half: the outbound policy of a rekeyed CHILD_SA goes first,
    /// so it takes over from the older SA(s) of the same child, which stay until removed.
    pub fn install_outbound(&self, policy_out: Policy) {
        w(&self.spd).insert(0, policy_out);
    }

    /// NAT rebinding (RFC 7296 2.23): send the ESP of outbound SA `spi_out` to `remote` from
    /// now on. Returns true if the SA was found.
    pub fn set_outbound_remote(&self, spi_out: EspSpi, remote: SocketAddr) -> bool {
        let mut found = false;
        for p in w(&self.spd).iter_mut() {
            if let PolicyAction::Protect(e) = &mut p.action {
                if e.sa.spi() == spi_out {
                    e.remote = remote;
                    found = true;
                }
            }
        }
        found
    }

    /// Read access to the peer-endpoint trackers (UDP-encapsulated inbound SAs, by SPI).
    pub fn peers(&self) -> RwLockReadGuard<'_, HashMap<EspSpi, PeerTrack>> {
        r(&self.peers)
    }

    /// Track the source of the authenticated ESP-in-UDP of inbound SA `spi_in`, expected
    /// from `remote`; a different source is reported as [`crate::DpMessage::PeerEndpoint`].
    /// Replaces an existing tracker.
    pub fn track_peer(&self, spi_in: EspSpi, remote: SocketAddr) {
        w(&self.peers).insert(spi_in, PeerTrack::new(remote));
    }

    /// The control thread moved inbound SA `spi_in`'s peer to `remote`: expect it there
    /// (no report). Returns true if the SA is tracked.
    pub fn set_peer_remote(&self, spi_in: EspSpi, remote: SocketAddr) -> bool {
        match r(&self.peers).get(&spi_in) {
            Some(t) => {
                t.set_remote(remote);
                true
            }
            None => false,
        }
    }

    /// Highest sequence number used by outbound SA `spi_out` (None if not installed).
    pub fn outbound_seq(&self, spi_out: EspSpi) -> Option<u64> {
        r(&self.spd).iter().find_map(|p| match &p.action {
            PolicyAction::Protect(e) if e.sa.spi() == spi_out => Some(e.sa.seq()),
            _ => None,
        })
    }

    /// Packets received so far on inbound SA `spi_in` (None if not installed).
    pub fn inbound_packets(&self, spi_in: EspSpi) -> Option<u64> {
        r(&self.sad).get(&spi_in).map(|e| e.sa.counters().packets)
    }

    /// Remove a CHILD_SA by its SPIs. Returns true if anything was removed.
    pub fn remove_child(&self, spi_in: EspSpi, spi_out: EspSpi) -> bool {
        let a = w(&self.sad).remove(&spi_in).is_some();
        w(&self.peers).remove(&spi_in);
        let mut spd = w(&self.spd);
        let before = spd.len();
        spd.retain(|p| p.spi_out() != Some(spi_out));
        a || spd.len() != before
    }

    /// Remove every SA policy and SA (keeps configured policies).
    pub fn clear_sas(&self) {
        w(&self.sad).clear();
        w(&self.peers).clear();
        w(&self.spd).retain(|p| p.spi_out().is_none());
    }

    /// Counters of the inbound SA `spi_in` and outbound SA `spi_out`, if installed.
    pub fn sa_counters(
        &self,
        spi_in: EspSpi,
        spi_out: EspSpi,
    ) -> (Option<Counters>, Option<Counters>) {
        let inb = r(&self.sad).get(&spi_in).map(|e| e.sa.counters());
        let out = r(&self.spd).iter().find_map(|p| match &p.action {
            PolicyAction::Protect(e) if e.sa.spi() == spi_out => Some(e.sa.counters()),
            _ => None,
        });
        (inb, out)
    }
}

/// Global data-plane counters (drops by reason and traffic totals).
#[derive(Default, Debug)]
pub struct GlobalCounters {
    pub no_sa: AtomicU64,
    pub no_policy: AtomicU64,
    pub unknown_spi: AtomicU64,
    pub auth_failed: AtomicU64,
    pub replay: AtomicU64,
    pub malformed: AtomicU64,
    pub selector_mismatch: AtomicU64,
    pub unsupported: AtomicU64,
    pub too_big: AtomicU64,
    pub encap_error: AtomicU64,
    pub send_error: AtomicU64,
    pub tun_write_error: AtomicU64,
    pub nat_keepalives: AtomicU64,
    pub acquires: AtomicU64,
    /// Oversized packets (more than the tunnel MTU, DF or IPv6) answered with ICMP
    /// frag-needed / ICMPv6 packet-too-big written back into the TUN device.
    pub pmtu_icmp: AtomicU64,
    /// Authenticated ESP-in-UDP from a new peer address reported to the control thread.
    pub peer_moves: AtomicU64,
    /// UDP GSO super-packets (`GSO_UDP_L4`, several decrypted UDP datagrams of one flow)
    /// written to the TUN device.
    pub tun_gso_udp_writes: AtomicU64,
    /// New IKE_SA_INIT requests shed because the queue to the control thread was at least
    /// half full ([`crate::CONTROL_QUEUE_LEN`]): under overload new SAs go first.
    pub control_queue_shed_init: AtomicU64,
    /// Other messages (IKE of existing SAs, acquires, peer moves) dropped because the queue
    /// to the control thread was full.
    pub control_queue_full: AtomicU64,
}

impl GlobalCounters {
    /// Increment one counter.
    #[inline]
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// A snapshot by name (stable order), for `status --json`.
    pub fn snapshot(&self) -> std::collections::BTreeMap<&'static str, u64> {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("no_sa", g(&self.no_sa)),
            ("no_policy", g(&self.no_policy)),
            ("unknown_spi", g(&self.unknown_spi)),
            ("auth_failed", g(&self.auth_failed)),
            ("replay", g(&self.replay)),
            ("malformed", g(&self.malformed)),
            ("selector_mismatch", g(&self.selector_mismatch)),
            ("unsupported", g(&self.unsupported)),
            ("too_big", g(&self.too_big)),
            ("encap_error", g(&self.encap_error)),
            ("send_error", g(&self.send_error)),
            ("tun_write_error", g(&self.tun_write_error)),
            ("nat_keepalives", g(&self.nat_keepalives)),
            ("acquires", g(&self.acquires)),
            ("pmtu_icmp", g(&self.pmtu_icmp)),
            ("peer_moves", g(&self.peer_moves)),
            ("tun_gso_udp_writes", g(&self.tun_gso_udp_writes)),
            ("control_queue_shed_init", g(&self.control_queue_shed_init)),
            ("control_queue_full", g(&self.control_queue_full)),
        ]
        .into_iter()
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa_cfg(spi: u32) -> fs_esp::SaConfig {
        let spi = EspSpi(spi);
        fs_esp::SaConfig {
            spi,
            encr: fs_crypto::EncrAlg::AesGcm16_256,
            integ: None,
            encr_key: vec![7; 36].into(),
            integ_key: vec![].into(),
            mode: fs_esp::Mode::Tunnel,
            replay_window: 32,
            esn: false,
        }
    }

    #[test]
    fn install_lookup_remove() {
        let t = Tables::new();
        let l: TrafficSelector = "10.1.0.0/16".parse().unwrap();
        let r: TrafficSelector = "10.2.0.0/16".parse().unwrap();
        t.add_config_policy("c", "ch", vec![l], vec![r], true);
        let a = |s: &str| s.parse::<IpAddr>().unwrap();
        let first = |t: &Tables| {
            t.spd()
                .iter()
                .find(|p| p.matches_outbound(a("10.1.2.3"), a("10.2.3.4"), 6, Some(1), Some(2)))
                .map(|p| matches!(p.action, PolicyAction::Protect(_)))
        };
        assert_eq!(first(&t), Some(false), "trap policy before SA install");
        let out = OutboundEntry {
            sa: Arc::new(OutboundSa::new(&sa_cfg(0x200)).unwrap()),
            local: "1.1.1.1:4500".parse().unwrap(),
            remote: "2.2.2.2:4500".parse().unwrap(),
            udp_encap: false,
        };
        let inb = InboundEntry {
            sa: Arc::new(InboundSa::new(&sa_cfg(0x100)).unwrap()),
            conn: "c".into(),
            child: "ch".into(),
            local_ts: vec![l],
            remote_ts: vec![r],
        };
        t.install_child(
            Policy::new("c", "ch", vec![l], vec![r], PolicyAction::Protect(out)),
            inb,
        );
        assert_eq!(first(&t), Some(true), "SA policy wins");
        assert!(t.sad().get(&EspSpi(0x100)).unwrap().selectors_match(
            a("10.2.0.1"),
            a("10.1.0.1"),
            1,
            None,
            None
        ));
        assert!(!t.sad().get(&EspSpi(0x100)).unwrap().selectors_match(
            a("10.1.0.1"),
            a("10.2.0.1"),
            1,
            None,
            None
        ));
        let (i, o) = t.sa_counters(EspSpi(0x100), EspSpi(0x200));
        assert!(i.is_some() && o.is_some());
        assert!(t.remove_child(EspSpi(0x100), EspSpi(0x200)));
        assert_eq!(first(&t), Some(false));
        assert!(t.sad().is_empty());
        assert_eq!(t.sa_counters(EspSpi(0x100), EspSpi(0x200)), (None, None));
        assert!(!t.remove_child(EspSpi(0x100), EspSpi(0x200)));
    }

    #[test]
    fn peer_track_reports_changes_rate_limited() {
        let old: SocketAddr = "2.2.2.2:4500".parse().unwrap();
        let new: SocketAddr = "2.2.2.2:31337".parse().unwrap();
        let t = PeerTrack::new(old);
        assert!(!t.observe(old, || 0), "expected source: fast path, nothing");
        assert!(t.observe(new, || 10), "new source reported");
        assert_eq!(t.remote(), new);
        assert!(!t.observe(new, || 20), "recorded: not again");
        // Flapping back within the interval: suppressed, nothing recorded ...
        assert!(!t.observe(old, || 500));
        assert_eq!(t.remote(), new);
        // ... reported once the interval passed.
        assert!(t.observe(old, || 10 + PEER_NOTIFY_INTERVAL_MS));
        assert_eq!(t.remote(), old);
        assert_eq!(t.changes.load(Ordering::Relaxed), 2);
        // Moved by the control thread: no report for the new address.
        t.set_remote(new);
        assert!(!t.observe(new, || 5000));
        // IPv6 keys
        let a6: SocketAddr = "[2001:db8::1]:4500".parse().unwrap();
        let b6: SocketAddr = "[2001:db8::1]:4501".parse().unwrap();
        assert_ne!(addr_key(a6), addr_key(b6));
        assert_ne!(addr_key(a6), addr_key(old));
        // Tables: tracked per inbound SPI, removed with the SA.
        let tb = Tables::new();
        tb.track_peer(EspSpi(0x100), old);
        assert!(tb.set_peer_remote(EspSpi(0x100), new));
        assert!(!tb.set_peer_remote(EspSpi(0x101), new));
        assert_eq!(
            tb.peers().get(&EspSpi(0x100)).map(|p| p.remote()),
            Some(new)
        );
        tb.remove_child(EspSpi(0x100), EspSpi(0x200));
        assert!(tb.peers().is_empty());
    }
}
