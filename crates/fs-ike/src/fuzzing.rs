//! Fuzzing support (cargo feature `fuzzing`, used by the `fuzz/` crate; not compiled otherwise).
//!
//! [`run`] builds two endpoints deterministically (fixed RNG seeds, a virtual clock) up to an
//! established IKE SA (or up to IKE_AUTH), then reads the fuzz input as plaintext payload
//! chains and wraps each into a correctly encrypted SK message, or SKF fragments (RFC 7383),
//! with a valid message ID, so that [`Endpoint::handle_datagram`] gets past decryption into the
//! exchange handlers (IKE_AUTH, CREATE_CHILD_SA, INFORMATIONAL with Delete, CP, Notify, unknown
//! critical payloads, fragment reassembly).
//!
//! Input: `mode` then records `[kind, first payload type, length (2 bytes BE), chain]`.
//! - `mode` bit 0: sender B (responder) instead of A; bits 1-2: fragments of 0 (unfragmented),
//!   40, 120 or 400 chain bytes each; bit 3: stop the handshake before IKE_AUTH (A's request is
//!   held back) and send the first record from A as IKE_AUTH message ID 1; bit 4: deliver
//!   fragments in reverse order; bit 5: after each record, let the endpoints exchange their
//!   answers and fire their timers.
//! - `kind` bits 0-1: exchange CREATE_CHILD_SA, INFORMATIONAL, IKE_AUTH, or `32 + kind >> 4`;
//!   bits 2-3: a request with the next message ID; the previous one (a retransmission); the
//!   response to a request the receiver makes (bits 4-5: rekey child `net`, rekey the IKE SA,
//!   create child `net6`, delete the IKE SA; its exchange unless bits 0-1 are 3); a request one
//!   ID ahead (out of window).
//!
//! [`endpoint_seeds`] and [`message_seeds`] give seed inputs made from real exchanges.
// Test support (the `fuzzing` feature is enabled only by fuzz/, never by the daemon): it
// drives two in-process endpoints with inputs it builds itself, like the unit tests do.
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
use crate::config::{ChildConfig, Config, ConnConfig, RetransmitConfig};
use crate::{sk, Endpoint, Event, Transmit};
use fs_crypto::proposal::{EspProposal, IkeProposal};
use fs_crypto::{DhGroup, EncrAlg, Rng, TestRng, Transform};
use fs_wire::id::Identity;
use fs_wire::ike::{
    emit_payloads, exchange, payload_type, protocol_id, sk_message_prefix, skf_message_prefix,
    CpAttribute, Delete, Header, Message, Payload,
};

use std::time::{Duration, Instant};

/// The connection name on both endpoints.
pub const CONN: &str = "s2s";
const A: usize = 0;
const B: usize = 1;
const ADDRS: [&str; 2] = ["100.1.1.1", "200.2.2.2"];
/// Rounds of datagram exchange per step (each round delivers everything queued).
const MAX_ROUNDS: usize = 16;
/// Timer firings after a record (pump mode).
const MAX_TIMERS: usize = 4;
/// Fragment sizes (chain bytes per SKF) selected by mode bits 1-2; 0 = unfragmented.
const CHUNKS: [usize; 4] = [0, 40, 120, 400];

fn ike_proposal() -> IkeProposal {
    IkeProposal {
        encr: vec![EncrAlg::AesGcm16_256],
        integ: vec![],
        prf: vec![fs_crypto::PrfAlg::HmacSha256],
        dh: vec![DhGroup::Curve25519],
    }
}

fn esp_proposal(pfs: bool) -> EspProposal {
    EspProposal {
        encr: vec![EncrAlg::AesGcm16_256],
        integ: vec![],
        dh: if pfs {
            vec![DhGroup::Curve25519]
        } else {
            vec![]
        },
        esn: vec![false],
    }
}

fn ts(s: &str) -> Option<fs_wire::ts::TrafficSelector> {
    s.parse().ok()
}

/// Endpoint `me`'s site-to-site connection: child `net` (IPv4, started with the IKE SA) and
/// child `net6` (IPv6, PFS, created on demand with CREATE_CHILD_SA).
fn conn(me: usize) -> Option<ConnConfig> {
    let peer = 1 - me;
    let id = |i: usize| Identity::Fqdn(format!("gw-{i}.example"));
    let nets4 = ["192.168.1.0/24", "192.168.2.0/24"];
    let nets6 = ["fd00:1::/64", "fd00:2::/64"];
    Some(ConnConfig {
        name: CONN.into(),
        local_addrs: vec![ADDRS[me].parse().ok()?],
        remote_addrs: vec![ADDRS[peer].parse().ok()?],
        remote_port: 500,
        local_id: id(me),
        remote_id: Some(id(peer)),
        psk: b"correct horse battery staple".to_vec().into(),
        ike_proposals: vec![ike_proposal()],
        children: vec![
            ChildConfig::new(
                "net",
                vec![ts(nets4[me])?],
                vec![ts(nets4[peer])?],
                vec![esp_proposal(false)],
            ),
            ChildConfig::new(
                "net6",
                vec![ts(nets6[me])?],
                vec![ts(nets6[peer])?],
                vec![esp_proposal(true)],
            ),
        ],
        retransmit: RetransmitConfig::default(),
        force_encap: false,
        prefer_udp_encap: false,
        rekey_time: None,
        reauth_time: None,
        dpd_delay: Some(Duration::from_secs(30)),
        dpd_action: Default::default(),
        fragmentation: true,
        fragment_size: crate::config::DEFAULT_FRAGMENT_SIZE,
        nat_keepalive: Some(crate::config::DEFAULT_NAT_KEEPALIVE),
        life_time: None,
        rand_time: None,
        unique: Default::default(),
    })
}

/// Two endpoints and the datagrams between them.
pub struct Pair {
    eps: [Endpoint; 2],
    now: Instant,
    /// Datagrams sent by each endpoint, not yet delivered.
    out: [Vec<Transmit>; 2],
    /// Every datagram delivered, if recording (for seeds).
    log: Option<Vec<Vec<u8>>>,
}

impl Pair {
    /// A (initiator) and B with an established IKE SA and child `net`; with `before_auth`
    /// only up to IKE_SA_INIT (A's IKE_AUTH request is dropped). `None` if that fails.
    pub fn new(before_auth: bool, record: bool) -> Option<Pair> {
        let mk = |me: usize| -> Option<Endpoint> {
            let config = Config {
                connections: vec![conn(me)?],
                ..Default::default()
            };
            Some(Endpoint::new(
                config,
                Box::new(TestRng::from_seed(1 + me as u64)),
            ))
        };
        let mut p = Pair {
            eps: [mk(A)?, mk(B)?],
            now: Instant::now(),
            out: [Vec::new(), Vec::new()],
            log: record.then(Vec::new),
        };
        p.eps[A].initiate(p.now, CONN, Some("net")).ok()?;
        for _ in 0..MAX_ROUNDS {
            p.collect();
            if before_auth {
                let auth = |t: &Transmit| header(&t.data).map(|h| h.exchange) == Some(35);
                if p.out[A].iter().any(auth) {
                    p.out[A].clear();
                    return Some(p);
                }
            }
            if !p.deliver_all() {
                break;
            }
        }
        let up = p.eps[A]
            .status(p.now)
            .iter()
            .any(|s| s.state == "ESTABLISHED");
        (up && !before_auth).then_some(p)
    }

    /// Move every endpoint's transmits and events into `out` (events are dropped).
    fn collect(&mut self) {
        for i in [A, B] {
            while let Some(t) = self.eps[i].poll_transmit() {
                self.out[i].push(t);
            }
            while let Some(e) = self.eps[i].poll_event() {
                drop::<Event>(e);
            }
        }
    }

    fn deliver(&mut self, to: usize, t: &Transmit) {
        if let Some(log) = self.log.as_mut() {
            log.push(t.data.clone());
        }
        self.eps[to].handle_datagram(self.now, t.remote, t.local, &t.data);
    }

    /// Deliver everything queued (one round); false if nothing was.
    fn deliver_all(&mut self) -> bool {
        let mut any = false;
        for from in [A, B] {
            for t in std::mem::take(&mut self.out[from]) {
                self.deliver(1 - from, &t);
                any = true;
            }
        }
        any
    }

    /// Exchange datagrams until quiet, then fire due timers (virtual time jumps to them).
    fn pump(&mut self) {
        for _ in 0..MAX_TIMERS {
            for _ in 0..MAX_ROUNDS {
                self.collect();
                if !self.deliver_all() {
                    break;
                }
            }
            let Some(next) = self.eps.iter().filter_map(|e| e.poll_timeout()).min() else {
                return;
            };
            self.now = self.now.max(next);
            for ep in &mut self.eps {
                if ep.poll_timeout().is_some_and(|t| t <= self.now) {
                    ep.handle_timeout(self.now);
                }
            }
        }
        self.collect();
    }

    /// Make endpoint `who` start a request (see the module doc, `kind` bits 4-5) and take it
    /// off the wire (nothing queued is delivered).
    fn start(&mut self, who: usize, what: u8) -> Option<Transmit> {
        self.collect();
        self.out = [Vec::new(), Vec::new()];
        let now = self.now;
        let ep = &mut self.eps[who];
        let _ = match what & 3 {
            0 => ep.rekey(now, CONN, Some("net")),
            1 => ep.rekey(now, CONN, None),
            2 => ep.initiate(now, CONN, Some("net6")),
            _ => ep.terminate(now, CONN),
        };
        self.collect();
        let t = self.out[who].drain(..).next();
        self.out = [Vec::new(), Vec::new()];
        t
    }

    /// Seal `chain` (first payload type `first`) from `from`; the datagrams as sent.
    fn seal(
        &mut self,
        from: usize,
        exch: u8,
        mid: impl FnOnce(u32) -> (u32, u32),
        response: bool,
        (first, chain): (u8, &[u8]),
        chunk: usize,
    ) -> Vec<Transmit> {
        let sealed = self.eps[from].fuzz_seal(CONN, exch, mid, response, |tx, _, rng, h, l, r| {
            seal_chain(tx, rng, h, first, chain, chunk).map(|d| (d, l, r))
        });
        let Some(Some((data, local, remote))) = sealed else {
            return Vec::new();
        };
        data.into_iter()
            .map(|data| Transmit {
                local,
                remote,
                data,
            })
            .collect()
    }

    /// The plaintext chain of an SK message that `from` sent: (first payload type, chain).
    fn open(&mut self, from: usize, data: &[u8]) -> Option<(u8, Vec<u8>)> {
        let msg = Message::parse(data).ok()?;
        let Some(Payload::Sk { first_inner, body }) = msg.payloads.last() else {
            return None;
        };
        let total = usize::try_from(msg.header.length).ok()?;
        let keep = |n: u32| (n, n);
        self.eps[from]
            .fuzz_seal(CONN, 0, keep, false, |tx, _, _, _, _, _| {
                sk::open_inner(tx, data, total, body.len()).ok()
            })
            .flatten()
            .map(|chain| (*first_inner, chain))
    }
}

fn header(data: &[u8]) -> Option<Header> {
    Header::parse(data).ok()
}

/// SK message, or SKF fragments of `chunk` chain bytes each (RFC 7383 2.5).
fn seal_chain(
    c: &Transform,
    rng: &mut dyn Rng,
    h: &Header,
    first: u8,
    chain: &[u8],
    chunk: usize,
) -> Option<Vec<Vec<u8>>> {
    if chunk == 0 {
        let one = sk::seal_inner(c, rng, chain, |n| sk_message_prefix(h, first, n)).ok()?;
        return Some(vec![one]);
    }
    let pieces: Vec<&[u8]> = if chain.is_empty() {
        vec![chain]
    } else {
        chain.chunks(chunk).collect()
    };
    let total = u16::try_from(pieces.len()).ok()?;
    let mut out = Vec::with_capacity(pieces.len());
    for (i, piece) in pieces.into_iter().enumerate() {
        let number = u16::try_from(i + 1).ok()?;
        let next = if number == 1 {
            first
        } else {
            payload_type::NONE
        };
        out.push(
            sk::seal_inner(c, rng, piece, |n| {
                skf_message_prefix(h, next, number, total, n)
            })
            .ok()?,
        );
    }
    Some(out)
}

/// One record (kind, first payload type, chain) and the rest of the input.
type Record<'a> = ((u8, u8, &'a [u8]), &'a [u8]);

fn record(data: &[u8]) -> Option<Record<'_>> {
    let [kind, first, hi, lo, rest @ ..] = data else {
        return None;
    };
    let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(rest.len());
    let (chain, rest) = rest.split_at(len);
    Some(((*kind, *first, chain), rest))
}

/// The record header for `chain`.
fn encode(kind: u8, first: u8, chain: &[u8]) -> Vec<u8> {
    let len = u16::try_from(chain.len()).unwrap_or(u16::MAX);
    let mut v = vec![kind, first];
    v.extend_from_slice(&len.to_be_bytes());
    v.extend_from_slice(&chain[..usize::from(len)]);
    v
}

/// Drive two endpoints with `data` (see the module doc). Never panics unless the endpoint
/// does.
pub fn run(data: &[u8]) {
    drive(data);
}

fn drive(data: &[u8]) -> Option<Pair> {
    let (&mode, mut rest) = data.split_first()?;
    let before_auth = mode & 8 != 0;
    let mut p = Pair::new(before_auth, false)?;
    let from = if before_auth || mode & 1 == 0 { A } else { B };
    let to = 1 - from;
    let chunk = CHUNKS[usize::from((mode >> 1) & 3)];
    let mut first_auth = before_auth;
    while let Some(((kind, first, chain), tail)) = record(rest) {
        rest = tail;
        let mut exch = match kind & 3 {
            0 => exchange::CREATE_CHILD_SA,
            1 => exchange::INFORMATIONAL,
            2 => exchange::IKE_AUTH,
            _ => 32 + (kind >> 4),
        };
        let body = (first, chain);
        let msgs = if std::mem::take(&mut first_auth) {
            p.seal(from, exch, |n| (1, n), false, body, chunk)
        } else {
            match (kind >> 2) & 3 {
                0 => p.seal(from, exch, |n| (n, n.wrapping_add(1)), false, body, chunk),
                1 => p.seal(from, exch, |n| (n.wrapping_sub(1), n), false, body, chunk),
                2 => {
                    let req = p.start(to, kind >> 4).and_then(|t| header(&t.data));
                    let (mid, e) = req.map_or((0, exch), |h| (h.message_id, h.exchange));
                    if kind & 3 != 3 {
                        exch = e;
                    }
                    p.seal(from, exch, |n| (mid, n), true, body, chunk)
                }
                _ => p.seal(from, exch, |n| (n.wrapping_add(1), n), false, body, chunk),
            }
        };
        let order: Vec<Transmit> = if mode & 16 != 0 {
            msgs.into_iter().rev().collect()
        } else {
            msgs
        };
        for t in &order {
            p.deliver(to, t);
        }
        if mode & 32 != 0 {
            p.pump();
        } else {
            p.collect();
            p.out = [Vec::new(), Vec::new()];
        }
    }
    Some(p)
}

/// The request `from` makes on a fresh pair (`what` as in `kind` bits 4-5; IKE_AUTH with
/// `auth`), as a plaintext chain: (exchange, first payload type, chain).
fn captured(auth: bool, from: usize, what: u8) -> Option<(u8, u8, Vec<u8>)> {
    let mut p = Pair::new(false, auth)?;
    let t = if auth {
        let log = p.log.take()?;
        log.into_iter().find(|d| {
            header(d).is_some_and(|h| h.exchange == exchange::IKE_AUTH && !h.is_response())
        })?
    } else {
        p.start(from, what)?.data
    };
    let exch = header(&t)?.exchange;
    let (first, chain) = p.open(from, &t)?;
    Some((exch, first, chain))
}

/// The response `from` gives to the request the other endpoint makes (`what` as in `kind`
/// bits 4-5): (first payload type, chain).
fn captured_response(from: usize, what: u8) -> Option<(u8, Vec<u8>)> {
    let mut p = Pair::new(false, false)?;
    let req = p.start(1 - from, what)?;
    p.deliver(from, &req);
    p.collect();
    let resp = p.out[from].first()?.data.clone();
    p.open(from, &resp)
}

/// The chain of a seed's payloads (all encodable; an empty chain if not).
fn chain_of(payloads: &[Payload]) -> (u8, Vec<u8>) {
    emit_payloads(payloads).unwrap_or((payload_type::NONE, Vec::new()))
}

/// Seed inputs for [`run`]: every exchange from real messages, in both directions, with and
/// without fragmentation, plus Delete, CP, Notify and unknown critical payloads. Named.
pub fn endpoint_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds = Vec::new();
    let mut add = |name: String, mode: u8, records: Vec<Vec<u8>>| {
        let mut v = vec![mode];
        for r in records {
            v.extend_from_slice(&r);
        }
        seeds.push((name, v));
    };
    // IKE_AUTH (the real request), whole and in fragments.
    if let Some((_, first, chain)) = captured(true, A, 0) {
        add("auth".into(), 8, vec![encode(2, first, &chain)]);
        add(
            "auth-frag40".into(),
            8 | 2 | 32,
            vec![encode(2, first, &chain)],
        );
        add(
            "auth-frag120-rev".into(),
            8 | 4 | 16,
            vec![encode(2, first, &chain)],
        );
    }
    let names = ["rekey-child", "rekey-ike", "new-child", "delete-ike"];
    for from in [A, B] {
        let dir = from as u8;
        for (what, name) in names.iter().enumerate() {
            let what = what as u8;
            if let Some((exch, first, chain)) = captured(false, from, what) {
                let kind = if exch == exchange::CREATE_CHILD_SA {
                    0
                } else {
                    1
                };
                let r = encode(kind, first, &chain);
                add(format!("{name}-req-{from}"), dir | 32, vec![r.clone()]);
                add(format!("{name}-req-frag-{from}"), dir | 6, vec![r]);
            }
            if let Some((first, chain)) = captured_response(from, what) {
                let r = encode(8 | (what << 4), first, &chain);
                add(format!("{name}-resp-{from}"), dir | 32, vec![r.clone()]);
                add(format!("{name}-resp-frag-{from}"), dir | 2, vec![r]);
            }
        }
    }
    // Hand-made INFORMATIONAL / CREATE_CHILD_SA contents.
    let esp_delete = Payload::Delete(Delete {
        protocol: protocol_id::ESP,
        spi_size: 4,
        spis: vec![vec![0xc0, 0, 0, 1], vec![0xc0, 0, 0, 2]],
    });
    let ike_delete = Payload::Delete(Delete {
        protocol: protocol_id::IKE,
        spi_size: 0,
        spis: vec![],
    });
    let cp = Payload::Cp {
        cfg_type: 1,
        attrs: vec![
            CpAttribute {
                atype: 1,
                value: vec![],
            },
            CpAttribute {
                atype: 8,
                value: vec![],
            },
        ],
    };
    let critical = Payload::Unknown {
        ptype: 200,
        critical: true,
        body: b"crit".to_vec(),
    };
    let noncritical = Payload::Unknown {
        ptype: 201,
        critical: false,
        body: b"ignored".to_vec(),
    };
    let notify = Payload::notify(16_404, vec![1, 2, 3, 4]);
    let hand: [(&str, u8, Vec<Payload>); 8] = [
        ("dpd", 1, vec![]),
        ("delete-esp", 1, vec![esp_delete.clone()]),
        ("delete-ike", 1, vec![ike_delete]),
        ("cp", 1, vec![cp.clone()]),
        ("critical-info", 1, vec![critical.clone()]),
        ("critical-create", 0, vec![critical, noncritical.clone()]),
        ("notify", 1, vec![notify, noncritical]),
        ("cp-auth", 2, vec![cp, esp_delete]),
    ];
    for (name, kind, payloads) in hand {
        let (first, chain) = chain_of(&payloads);
        let r = encode(kind, first, &chain);
        add(format!("{name}-0"), 32, vec![r.clone()]);
        add(
            format!("{name}-retransmit"),
            0,
            vec![r, encode(kind | 4, first, &chain)],
        );
    }
    seeds
}

/// Whole IKE datagrams of real exchanges (IKE_SA_INIT, IKE_AUTH, CREATE_CHILD_SA,
/// INFORMATIONAL, and SKF fragments), and the payload chains of [`endpoint_seeds`] in clear
/// (what an attacker can send before any SPI lookup): seeds for the message parser. Named.
pub fn message_seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut chains: Vec<(u8, u8, Vec<u8>)> = Vec::new();
    for (_, seed) in endpoint_seeds() {
        let mut rest = seed.get(1..).unwrap_or_default();
        while let Some(((kind, first, chain), tail)) = record(rest) {
            rest = tail;
            let exch = [36, 37, 35, 37][usize::from(kind & 3)];
            if !chains.iter().any(|c| c.1 == first && c.2 == chain) {
                chains.push((exch, first, chain.to_vec()));
            }
        }
    }
    for (i, (exch, first, chain)) in chains.into_iter().enumerate() {
        let h = Header {
            spi_i: 0x0102_0304_0506_0708,
            spi_r: 0x1112_1314_1516_1718,
            next_payload: first,
            version: fs_wire::ike::IKE_VERSION,
            exchange: exch,
            flags: fs_wire::ike::flags::INITIATOR,
            message_id: 0,
            length: u32::try_from(fs_wire::ike::HEADER_LEN + chain.len()).unwrap_or(0),
        };
        let mut m = h.to_bytes().to_vec();
        m.extend_from_slice(&chain);
        out.push((format!("clear-{i:02}"), m));
    }
    if let Some(mut p) = Pair::new(false, true) {
        let now = p.now;
        let _ = p.eps[A].initiate(now, CONN, Some("net6"));
        p.pump();
        let _ = p.eps[B].rekey(now, CONN, None);
        p.pump();
        let _ = p.eps[A].terminate(now, CONN);
        p.pump();
        // At most two datagrams per exchange, direction and SK/SKF.
        let mut kinds: Vec<(u8, bool, u8)> = Vec::new();
        for (i, d) in p.log.take().unwrap_or_default().into_iter().enumerate() {
            let Some(h) = header(&d) else { continue };
            let k = (h.exchange, h.is_response(), h.next_payload);
            if kinds.iter().filter(|x| **x == k).count() < 2 {
                kinds.push(k);
                out.push((format!("exchange-{i:02}"), d));
            }
        }
    }
    if let Some(mut p) = Pair::new(false, false) {
        let (first, chain) = chain_of(&[Payload::Vendor(vec![0x5a; 300])]);
        for (i, t) in p
            .seal(
                A,
                exchange::INFORMATIONAL,
                |n| (n, n),
                false,
                (first, &chain),
                120,
            )
            .into_iter()
            .enumerate()
        {
            out.push((format!("fragment-{i}"), t.data));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(name: &str) -> Vec<u8> {
        let seeds = endpoint_seeds();
        let s = seeds.iter().find(|s| s.0 == name);
        s.unwrap_or_else(|| panic!("no seed {name}")).1.clone()
    }

    fn sas(p: &Pair, i: usize) -> Vec<(String, usize)> {
        let st = p.eps[i].status(p.now);
        st.into_iter()
            .map(|s| (s.state, s.child_sas.len()))
            .collect()
    }

    /// The seeds reach the handlers: the real IKE_AUTH (whole or in fragments, in any order)
    /// establishes, a CREATE_CHILD_SA creates a child, a Delete closes.
    #[test]
    fn seeds_reach_the_exchange_handlers() {
        assert!(endpoint_seeds().len() >= 30, "{}", endpoint_seeds().len());
        for name in ["auth", "auth-frag40", "auth-frag120-rev"] {
            let p = drive(&seed(name)).unwrap();
            assert_eq!(sas(&p, B), [("ESTABLISHED".to_string(), 1)], "{name}");
        }
        for (name, to) in [("new-child-req-0", B), ("new-child-req-frag-1", A)] {
            let p = drive(&seed(name)).unwrap();
            assert_eq!(sas(&p, to), [("ESTABLISHED".to_string(), 2)], "{name}");
        }
        for (name, to) in [("delete-ike-req-0", B), ("delete-ike-req-frag-1", A)] {
            let p = drive(&seed(name)).unwrap();
            assert!(sas(&p, to).is_empty(), "{name}");
        }
        // The response to B's own CREATE_CHILD_SA request, sealed by A.
        let p = drive(&seed("new-child-resp-0")).unwrap();
        assert_eq!(sas(&p, B), [("ESTABLISHED".to_string(), 2)]);
    }

    /// A chain sealed with the wrong message ID does not get in: the IKE SA stays as it was.
    #[test]
    fn out_of_window_is_dropped() {
        let mut s = seed("delete-ike-req-0");
        s[1] |= 12;
        let p = drive(&s).unwrap();
        assert_eq!(sas(&p, B), [("ESTABLISHED".to_string(), 1)]);
        assert_eq!(p.eps[B].stats().dropped_message_id, 1);
    }

    #[test]
    fn message_seeds_parse() {
        let m = message_seeds();
        assert!(m.len() >= 10, "{}", m.len());
        for (name, d) in &m {
            assert!(Message::parse(d).is_ok(), "{name}");
        }
    }
}
