//! Responder DoS resistance (RFC 7296 2.4, 2.6; ideas from RFC 8019): stateless COOKIEs once
//! too many IKE SAs are half-open, caps on the half-open table (total and per source address),
//! and the half-open timeout.
//!
//! A *half-open* SA is a responder IKE SA whose IKE_SA_INIT we answered and for which no
//! IKE_AUTH request has been processed yet. [`DosGuard`] keeps the only per-peer state the
//! endpoint holds for unauthenticated peers (our SPI -> source address, and a count per
//! source address), both bounded by the capped half-open table.
//!
//! Cookie format (20 octets): `VersionIDofSecret (4, big endian) | SHA-256(Ni | IPi | SPIi |
//! secret)[..16]`, where IPi is the initiator's address as 4 or 16 octets and SPIi is 8
//! octets. The 32-octet secrets come from the endpoint's injected `Rng`. The secret rotates
//! every `cookie_secret_lifetime` of the endpoint's `now` (rotation is lazy, done when a
//! cookie is made or checked); the previous secret stays valid for one more period, so a
//! cookie is accepted for at least one and at most two periods (plus the lazy slack) after
//! it was issued.
use crate::endpoint::IkeStats;
use aws_lc_rs::digest;
use fs_crypto::Rng;
use fs_wire::ike::{notify_type as nt, Message, Payload};
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// Length of the truncated hash in a cookie.
const HASH_LEN: usize = 16;
/// Length of a cookie we issue.
pub const COOKIE_LEN: usize = 4 + HASH_LEN;
const SECRET_LEN: usize = 32;

/// Limits against floods and hostile peers (daemon `[limits]` section): IKE_SA_INIT floods
/// (cookies, half-open caps) and what one authenticated peer can make us hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Require a COOKIE (RFC 7296 2.6) when at least this many SAs are half-open
    /// (0 = always).
    pub cookie_threshold: usize,
    /// Never more half-open SAs than this; further IKE_SA_INIT requests (even with a valid
    /// cookie) are dropped.
    pub half_open_max: usize,
    /// Never more half-open SAs from one source address than this (checked after the
    /// cookie, so it also limits a source that proved its address).
    pub half_open_per_source_max: usize,
    /// A half-open SA is removed if IKE_AUTH does not arrive within this time.
    pub half_open_timeout: Duration,
    /// The cookie secret is replaced after this much time; the previous one stays valid for
    /// one more period.
    pub cookie_secret_lifetime: Duration,
    /// At most this many CHILD_SAs (installed, not counting those replaced by a rekey) per
    /// IKE SA: a CREATE_CHILD_SA request for one more is answered with NO_ADDITIONAL_SAS.
    /// Rekeys are still accepted, until twice as many (replaced ones the peer has not deleted
    /// yet included) are held.
    pub max_children_per_ike_sa: usize,
}

/// Default [`Limits::max_children_per_ike_sa`].
pub const DEFAULT_MAX_CHILDREN_PER_IKE_SA: usize = 64;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            cookie_threshold: 50,
            half_open_max: 1000,
            half_open_per_source_max: 25,
            half_open_timeout: Duration::from_secs(30),
            cookie_secret_lifetime: Duration::from_secs(120),
            max_children_per_ike_sa: DEFAULT_MAX_CHILDREN_PER_IKE_SA,
        }
    }
}

/// What to do with an IKE_SA_INIT request that would create a new half-open SA.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Go on (allocate the SA).
    Accept,
    /// Answer with only N(COOKIE) carrying this data; keep no state.
    Cookie(Vec<u8>),
    /// Drop silently (counted).
    Drop,
}

struct Secret {
    version: u32,
    key: Zeroizing<[u8; SECRET_LEN]>,
}

struct Secrets {
    current: Secret,
    previous: Option<Secret>,
    rotated_at: Instant,
}

/// Cookie secrets and the half-open table (owned by the `Endpoint`).
#[derive(Default)]
pub(crate) struct DosGuard {
    secrets: Option<Secrets>,
    /// Our SPI of every half-open responder SA -> the initiator's address.
    half_open: HashMap<fs_wire::IkeSpi, IpAddr>,
    /// Half-open SAs per initiator address (entries removed at 0).
    per_source: HashMap<IpAddr, u32>,
}

fn new_secret(version: u32, rng: &mut dyn Rng) -> Secret {
    let mut key = Zeroizing::new([0u8; SECRET_LEN]);
    rng.fill(key.as_mut());
    Secret { version, key }
}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// What a cookie is bound to: the request's Ni, the initiator's address and SPIi.
#[derive(Clone, Copy)]
pub(crate) struct Binding<'a> {
    pub ni: &'a [u8],
    pub ip: IpAddr,
    pub spi_i: u64,
}

// A SHA-256 digest is 32 bytes; the cookie keeps its first HASH_LEN (16).
#[allow(clippy::indexing_slicing)]
fn hash(secret: &Secret, b: &Binding) -> [u8; HASH_LEN] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(b.ni);
    ctx.update(&ip_bytes(b.ip));
    ctx.update(&b.spi_i.to_be_bytes());
    ctx.update(secret.key.as_ref());
    let d = ctx.finish();
    let mut out = [0u8; HASH_LEN];
    out.copy_from_slice(&d.as_ref()[..HASH_LEN]);
    out
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The Ni of an IKE_SA_INIT request (empty if missing: such a request is dropped later).
fn nonce(msg: &Message) -> &[u8] {
    msg.payloads
        .iter()
        .find_map(|p| match p {
            Payload::Nonce(n) => Some(n.as_slice()),
            _ => None,
        })
        .unwrap_or(&[])
}

impl DosGuard {
    /// Number of half-open SAs.
    #[cfg(test)]
    pub(crate) fn half_open(&self) -> usize {
        self.half_open.len()
    }

    /// Entries of the per-source table (bounded by the half-open table).
    #[cfg(test)]
    pub(crate) fn sources(&self) -> usize {
        self.per_source.len()
    }

    /// Replace the secret if its period is over; forget the previous one after two.
    fn rotate(&mut self, now: Instant, period: Duration, rng: &mut dyn Rng) -> &Secrets {
        let s = match self.secrets.take() {
            None => Secrets {
                current: new_secret(1, rng),
                previous: None,
                rotated_at: now,
            },
            Some(mut s) => {
                let age = now.saturating_duration_since(s.rotated_at);
                if age >= period {
                    let fresh = new_secret(s.current.version.wrapping_add(1), rng);
                    let old = std::mem::replace(&mut s.current, fresh);
                    s.previous = (age < period.saturating_mul(2)).then_some(old);
                    s.rotated_at = now;
                }
                s
            }
        };
        self.secrets.insert(s)
    }

    /// A cookie for this request under the current secret.
    pub(crate) fn make_cookie(
        &mut self,
        now: Instant,
        limits: &Limits,
        rng: &mut dyn Rng,
        b: &Binding,
    ) -> Vec<u8> {
        let s = self.rotate(now, limits.cookie_secret_lifetime, rng);
        let mut c = Vec::with_capacity(COOKIE_LEN);
        c.extend_from_slice(&s.current.version.to_be_bytes());
        c.extend_from_slice(&hash(&s.current, b));
        c
    }

    /// Whether `cookie` was made by us (current or previous secret) for this request.
    pub(crate) fn cookie_valid(
        &mut self,
        now: Instant,
        limits: &Limits,
        rng: &mut dyn Rng,
        cookie: &[u8],
        b: &Binding,
    ) -> bool {
        if cookie.len() != COOKIE_LEN {
            return false;
        }
        let Some((version, mac)) = cookie.split_first_chunk::<4>() else {
            return false;
        };
        let version = u32::from_be_bytes(*version);
        let s = self.rotate(now, limits.cookie_secret_lifetime, rng);
        let secret = if s.current.version == version {
            Some(&s.current)
        } else {
            s.previous.as_ref().filter(|p| p.version == version)
        };
        secret.is_some_and(|k| ct_eq(&hash(k, b), mac))
    }

    /// Decide on an IKE_SA_INIT request from `ip` that is not a retransmission.
    pub(crate) fn admit(
        &mut self,
        now: Instant,
        limits: &Limits,
        rng: &mut dyn Rng,
        msg: &Message,
        ip: IpAddr,
        stats: &mut IkeStats,
    ) -> Admit {
        let n = self.half_open.len();
        if n >= limits.cookie_threshold {
            let b = Binding {
                ni: nonce(msg),
                ip,
                spi_i: msg.header.spi_i,
            };
            match msg.notify(nt::COOKIE) {
                None => {
                    stats.cookies_sent += 1;
                    return Admit::Cookie(self.make_cookie(now, limits, rng, &b));
                }
                Some(c) if !self.cookie_valid(now, limits, rng, &c.data, &b) => {
                    // Stale (rotated out) or forged: ask again with a fresh cookie, which
                    // costs no more than the first answer.
                    stats.cookie_invalid += 1;
                    stats.cookies_sent += 1;
                    return Admit::Cookie(self.make_cookie(now, limits, rng, &b));
                }
                Some(_) => stats.cookies_accepted += 1,
            }
        }
        // Below the threshold a COOKIE notify, if any, is ignored (RFC 7296 2.6).
        let per = self.per_source.get(&ip).copied().unwrap_or(0) as usize;
        if n >= limits.half_open_max || per >= limits.half_open_per_source_max {
            stats.half_open_limit_drops += 1;
            return Admit::Drop;
        }
        Admit::Accept
    }

    /// A half-open SA was created.
    pub(crate) fn opened(&mut self, spi: fs_wire::IkeSpi, ip: IpAddr, stats: &mut IkeStats) {
        if self.half_open.insert(spi, ip).is_none() {
            *self.per_source.entry(ip).or_insert(0) += 1;
        }
        stats.half_open = self.half_open.len() as u64;
        stats.half_open_peak = stats.half_open_peak.max(stats.half_open);
    }

    /// The SA with our SPI `spi` is no longer half-open (IKE_AUTH came, or it is gone).
    pub(crate) fn settled(&mut self, spi: fs_wire::IkeSpi, stats: &mut IkeStats) {
        let Some(ip) = self.half_open.remove(&spi) else {
            return;
        };
        if let Some(c) = self.per_source.get_mut(&ip) {
            *c = c.saturating_sub(1);
            if *c == 0 {
                self.per_source.remove(&ip);
            }
        }
        stats.half_open = self.half_open.len() as u64;
    }
}
