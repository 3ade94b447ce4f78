//! Deterministic simulation harness: two endpoints, virtual time, a lossy network.
use crate::config::{ChildConfig, Config, ConnConfig, RetransmitConfig};
use crate::{ChildSa, CloseReason, Endpoint, Event, Transmit};
use fs_crypto::proposal::{EspProposal, IkeProposal};
use fs_crypto::{DhGroup, EncrAlg, IntegAlg, PrfAlg, TestRng};
use fs_wire::id::Identity;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

mod cases;
mod dos;
mod esp_nat;
mod frag;
mod lifecycle;
mod limits;
mod nat;
mod reauth;
mod wire_limits;

pub const A: &str = "100.1.1.1";
pub const B: &str = "200.2.2.2";

/// IKE proposal from a strongSwan-like string (test subset).
pub fn ike(s: &str) -> IkeProposal {
    let mut p = IkeProposal {
        encr: vec![],
        integ: vec![],
        prf: vec![],
        dh: vec![],
    };
    for k in s.split('-') {
        match k {
            "aes128" => p.encr.push(EncrAlg::AesCbc128),
            "aes256" => p.encr.push(EncrAlg::AesCbc256),
            "aes128gcm16" => p.encr.push(EncrAlg::AesGcm16_128),
            "aes256gcm16" => p.encr.push(EncrAlg::AesGcm16_256),
            "chacha20poly1305" => p.encr.push(EncrAlg::ChaCha20Poly1305),
            "sha256" => p.integ.push(IntegAlg::HmacSha256_128),
            "sha384" => p.integ.push(IntegAlg::HmacSha384_192),
            "sha512" => p.integ.push(IntegAlg::HmacSha512_256),
            "prfsha256" => p.prf.push(PrfAlg::HmacSha256),
            "prfsha384" => p.prf.push(PrfAlg::HmacSha384),
            "prfsha512" => p.prf.push(PrfAlg::HmacSha512),
            "modp2048" => p.dh.push(DhGroup::Modp2048),
            "ecp256" => p.dh.push(DhGroup::Ecp256),
            "x25519" => p.dh.push(DhGroup::Curve25519),
            "esn" | "noesn" => {}
            _ => panic!("unknown keyword {k}"),
        }
    }
    if p.prf.is_empty() {
        p.prf = p.integ.iter().map(|i| i.matching_prf()).collect();
    }
    p
}

/// ESP proposal from a strongSwan-like string (test subset).
pub fn esp(s: &str) -> EspProposal {
    let i = ike(s);
    let esn = if s.contains("-esn") {
        vec![true]
    } else {
        vec![false]
    };
    EspProposal {
        encr: i.encr,
        integ: i.integ,
        dh: i.dh,
        esn,
    }
}

pub fn ts(s: &str) -> fs_wire::ts::TrafficSelector {
    s.parse().unwrap()
}

/// A site-to-site connection from `me` to `peer`.
pub fn conn(me: &str, peer: &str, local_net: &str, remote_net: &str) -> ConnConfig {
    let id = |a: &str| {
        Identity::Fqdn(if a == A {
            "gw-a.example".into()
        } else {
            "gw-b.example".into()
        })
    };
    ConnConfig {
        name: "s2s".into(),
        local_addrs: vec![me.parse().unwrap()],
        remote_addrs: vec![peer.parse().unwrap()],
        remote_port: 500,
        local_id: id(me),
        remote_id: Some(id(peer)),
        psk: b"correct horse battery staple".into(),
        ike_proposals: vec![ike("aes256gcm16-prfsha256-x25519")],
        children: vec![ChildConfig::new(
            "net",
            vec![ts(local_net)],
            vec![ts(remote_net)],
            vec![esp("aes256gcm16")],
        )],
        retransmit: RetransmitConfig::default(),
        force_encap: false,
        prefer_udp_encap: false,
        rekey_time: None,
        reauth_time: None,
        dpd_delay: None,
        dpd_action: Default::default(),
        fragmentation: true,
        fragment_size: crate::config::DEFAULT_FRAGMENT_SIZE,
        nat_keepalive: Some(crate::config::DEFAULT_NAT_KEEPALIVE),
        life_time: None,
        rand_time: None,
        unique: Default::default(),
    }
}

/// The default pair: A (initiator, 192.168.1.0/24) and B (192.168.2.0/24).
pub fn pair() -> (ConnConfig, ConnConfig) {
    (
        conn(A, B, "192.168.1.0/24", "192.168.2.0/24"),
        conn(B, A, "192.168.2.0/24", "192.168.1.0/24"),
    )
}

/// Tiny deterministic PRNG for the network model.
pub struct Xs(u64);
impl Xs {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next() % 1_000_000) as f64 / 1_000_000.0 < p
    }
}

pub struct Node {
    pub ep: Endpoint,
    pub addr: IpAddr,
    pub events: Vec<Event>,
    /// Everything this node sent, in order.
    pub sent: Vec<Transmit>,
}

impl Node {
    pub fn children(&self) -> Vec<ChildSa> {
        let mut v: Vec<ChildSa> = Vec::new();
        for e in &self.events {
            match e {
                Event::ChildSaInstalled(c) => v.push((**c).clone()),
                Event::ChildSaRemoved { spi_in, .. } => v.retain(|c| c.inbound.spi != *spi_in),
                Event::IkeSaClosed { ike_sa, .. } => v.retain(|c| c.ike_sa != *ike_sa),
                _ => {}
            }
        }
        v
    }
    pub fn closed(&self) -> Option<CloseReason> {
        self.events.iter().find_map(|e| match e {
            Event::IkeSaClosed { reason, .. } => Some(reason.clone()),
            _ => None,
        })
    }
    /// The `established` flag of the first IkeSaClosed event.
    pub fn closed_established(&self) -> Option<bool> {
        self.events.iter().find_map(|e| match e {
            Event::IkeSaClosed { established, .. } => Some(*established),
            _ => None,
        })
    }
    pub fn established(&self) -> bool {
        self.events
            .iter()
            .any(|e| matches!(e, Event::IkeSaEstablished { .. }))
    }
    pub fn child_failed(&self) -> Option<CloseReason> {
        self.events.iter().find_map(|e| match e {
            Event::ChildSaFailed { reason, .. } => Some(reason.clone()),
            _ => None,
        })
    }
}

pub struct Sim {
    pub start: Instant,
    pub now: Instant,
    pub nodes: [Node; 2],
    pub net: Xs,
    pub loss: f64,
    pub dup: f64,
    /// Max extra latency (random per datagram) in ms: reorders datagrams.
    pub jitter_ms: u64,
    /// Drop the first N datagrams (any direction).
    pub drop_first: usize,
    /// Drop everything sent by node i.
    pub blackhole: [bool; 2],
    /// A NAPT in front of node 0 (see [`Nat`]).
    pub nat: Option<Nat>,
    /// NAT keepalives (1-byte 0xFF datagrams) that reached node i (not given to its endpoint,
    /// like the data plane does).
    pub keepalives_rx: [usize; 2],
    inflight: Vec<(Instant, u64, usize, Transmit)>,
    seq: u64,
    dropped: usize,
}

/// A NAPT in front of node 0: its datagrams leave from `public` with a port allocated per
/// private source address/port (from `next_port` on); replies to unmapped ports are dropped.
pub struct Nat {
    pub public: IpAddr,
    pub next_port: u16,
    pub map: Vec<(SocketAddr, SocketAddr)>,
}

impl Nat {
    pub fn new(public: &str) -> Nat {
        Nat {
            public: public.parse().unwrap(),
            next_port: 1024,
            map: vec![],
        }
    }
    fn outbound(&mut self, private: SocketAddr) -> SocketAddr {
        if let Some(m) = self.map.iter().find(|m| m.0 == private) {
            return m.1;
        }
        let public = SocketAddr::new(self.public, self.next_port);
        self.next_port += 1;
        self.map.push((private, public));
        public
    }
    fn inbound(&self, public: SocketAddr) -> Option<SocketAddr> {
        self.map.iter().find(|m| m.1 == public).map(|m| m.0)
    }
    /// Forget every mapping and allocate from another port range (like a NAT reboot or an
    /// expired mapping).
    pub fn rebind(&mut self) {
        self.map.clear();
        self.next_port += 1000;
    }
}

impl Sim {
    pub fn new(a: ConnConfig, b: ConnConfig, seed: u64) -> Sim {
        let start = Instant::now();
        let mk = |c: ConnConfig, s: u64| Node {
            addr: c.local_addrs[0],
            ep: Endpoint::new(
                Config {
                    connections: vec![c],
                    ..Default::default()
                },
                Box::new(TestRng::from_seed(s)),
            ),
            events: vec![],
            sent: vec![],
        };
        Sim {
            start,
            now: start,
            nodes: [
                mk(a, seed.wrapping_mul(2) + 1),
                mk(b, seed.wrapping_mul(2) + 2),
            ],
            net: Xs(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1),
            loss: 0.0,
            dup: 0.0,
            jitter_ms: 0,
            drop_first: 0,
            blackhole: [false; 2],
            nat: None,
            keepalives_rx: [0; 2],
            inflight: vec![],
            seq: 0,
            dropped: 0,
        }
    }

    pub fn a(&mut self) -> &mut Node {
        &mut self.nodes[0]
    }
    pub fn b(&mut self) -> &mut Node {
        &mut self.nodes[1]
    }

    fn push(&mut self, from: usize, mut t: Transmit, at: Instant) {
        let nat_public = self.nat.as_ref().map(|n| n.public);
        let to = if self.nodes[0].addr == t.remote.ip() || nat_public == Some(t.remote.ip()) {
            0
        } else {
            1
        };
        assert_ne!(to, from, "datagram to self");
        if let Some(nat) = self.nat.as_mut() {
            if from == 0 {
                t.local = nat.outbound(t.local);
            } else {
                match nat.inbound(t.remote) {
                    Some(p) => t.remote = p,
                    None => return, // no mapping: dropped by the NAT
                }
            }
        }
        self.seq += 1;
        self.inflight.push((at, self.seq, to, t));
    }

    /// Collect transmits and events from both nodes into the network / event logs.
    pub fn pump(&mut self) {
        for i in 0..2 {
            while let Some(e) = self.nodes[i].ep.poll_event() {
                self.nodes[i].events.push(e);
            }
            while let Some(t) = self.nodes[i].ep.poll_transmit() {
                self.nodes[i].sent.push(t.clone());
                if self.blackhole[i] || self.dropped < self.drop_first {
                    self.dropped += 1;
                    continue;
                }
                if self.net.chance(self.loss) {
                    continue;
                }
                let copies = if self.net.chance(self.dup) { 2 } else { 1 };
                for _ in 0..copies {
                    let j = if self.jitter_ms > 0 {
                        self.net.next() % self.jitter_ms
                    } else {
                        0
                    };
                    let at = self.now + Duration::from_millis(5 + j);
                    self.push(i, t.clone(), at);
                }
            }
        }
    }

    /// Forget all datagrams in flight.
    pub fn clear_inflight(&mut self) {
        self.inflight.clear();
    }

    /// Deliver a datagram to node `to` right now.
    pub fn inject(&mut self, to: usize, local: SocketAddr, remote: SocketAddr, data: &[u8]) {
        let now = self.now;
        self.nodes[to].ep.handle_datagram(now, local, remote, data);
        self.pump();
    }

    /// Run until `cond` holds or nothing is left to do / `limit` of virtual time passes.
    pub fn run_until(&mut self, limit: Duration, cond: impl Fn(&Sim) -> bool) -> bool {
        loop {
            self.pump();
            if cond(self) {
                return true;
            }
            let next_pkt = self.inflight.iter().map(|p| p.0).min();
            let next_tmr = self.nodes.iter().filter_map(|n| n.ep.poll_timeout()).min();
            let next = match (next_pkt, next_tmr) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(x) => x,
                    None => return false,
                },
            };
            if next > self.start + limit {
                return false;
            }
            self.now = self.now.max(next);
            let now = self.now;
            let mut due: Vec<_> = Vec::new();
            let mut rest = Vec::new();
            for p in self.inflight.drain(..) {
                if p.0 <= now {
                    due.push(p)
                } else {
                    rest.push(p)
                }
            }
            self.inflight = rest;
            due.sort_by_key(|p| (p.0, p.1));
            for (_, _, to, t) in due {
                if t.data == [0xFF] {
                    self.keepalives_rx[to] += 1;
                    continue;
                }
                self.nodes[to]
                    .ep
                    .handle_datagram(now, t.remote, t.local, &t.data);
            }
            for n in &mut self.nodes {
                if n.ep.poll_timeout().is_some_and(|t| t <= now) {
                    n.ep.handle_timeout(now);
                }
            }
        }
    }

    /// Run until both sides have `n` children each, matching crosswise.
    pub fn run_until_children(&mut self, n: usize, limit: Duration) -> bool {
        self.run_until(limit, |s| {
            let (a, b) = (s.nodes[0].children(), s.nodes[1].children());
            a.len() == n && b.len() == n && crosswise(&a, &b)
        })
    }

    pub fn establish(&mut self) {
        let now = self.now;
        self.a().ep.initiate(now, "s2s", None).unwrap();
        assert!(
            self.run_until_children(1, Duration::from_secs(60)),
            "not established"
        );
    }
}

/// No exchange in flight and nothing queued on either node.
pub fn idle(s: &Sim) -> bool {
    s.nodes.iter().all(|n| n.ep.test_idle())
}

/// Both idle, each with exactly `n` children and one IKE SA, matching crosswise.
pub fn settled(s: &Sim, n: usize) -> bool {
    let (a, b) = (s.nodes[0].children(), s.nodes[1].children());
    idle(s)
        && a.len() == n
        && b.len() == n
        && crosswise(&a, &b)
        && s.nodes[0].ep.status(s.now).len() == 1
        && s.nodes[1].ep.status(s.now).len() == 1
}

/// Every child of `a` has a peer in `b` with swapped SPIs and keys, and vice versa.
pub fn crosswise(a: &[ChildSa], b: &[ChildSa]) -> bool {
    let pairs = |x: &ChildSa, y: &ChildSa| {
        x.outbound.spi == y.inbound.spi
            && x.inbound.spi == y.outbound.spi
            && x.outbound.encr_key == y.inbound.encr_key
            && x.outbound.integ_key == y.inbound.integ_key
            && x.inbound.encr_key == y.outbound.encr_key
            && x.inbound.integ_key == y.outbound.integ_key
            && x.encr == y.encr
            && x.integ == y.integ
            && x.esn == y.esn
            && x.local_ts == y.remote_ts
            && x.remote_ts == y.local_ts
    };
    a.iter().all(|x| b.iter().any(|y| pairs(x, y)))
        && b.iter().all(|y| a.iter().any(|x| pairs(x, y)))
}
