//! IKE fragmentation (RFC 7383): splitting large encrypted messages into SKF fragments and
//! reassembling them, per IKE SA.
//!
//! - Negotiation (2.3): both peers send N(IKEV2_FRAGMENTATION_SUPPORTED) in IKE_SA_INIT;
//!   [`FragState::negotiated`] records the outcome (inherited by rekeyed IKE SAs).
//! - Sending (2.5): an encrypted message larger than the connection's `fragment_size` (a whole
//!   IP datagram, like strongSwan's option) is cut into pieces of its inner payload chain; each
//!   piece is sealed on its own (own IV, padding, ICV) in an SKF payload whose Next Payload is the
//!   first inner payload type in fragment 1 and 0 in the others. All fragments are
//!   (re)transmitted as a unit, and cached as a unit for retransmitted requests.
//! - Receiving (2.6): every fragment's ICV is verified before it is stored; fragments arrive in
//!   any order, duplicates are ignored, a higher Total Fragments restarts reassembly and a lower
//!   one is ignored (2.6.1); memory is capped ([`MAX_FRAGMENTS`], [`MAX_REASSEMBLED`]) and
//!   incomplete sets expire ([`REASSEMBLY_TIMEOUT`]). The reassembled payload chain is then
//!   processed exactly like the contents of an SK payload (`Endpoint::open` hands it out).
use crate::endpoint::IkeStats;
use crate::sk::{self, OpenError, SealError};
use fs_crypto::{Rng, Transform};
use fs_wire::ike::{
    emit_payloads, parse_payloads, payload_type, skf_message_prefix, Header, Message, Payload,
    HEADER_LEN,
};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tracing::debug;

/// Most fragments we accept for one message (RFC 7383 2.6: protect reassembly memory).
pub(crate) const MAX_FRAGMENTS: u16 = 64;
/// Largest reassembled payload chain we accept (bytes of decrypted fragment contents).
pub(crate) const MAX_REASSEMBLED: usize = 64 * 1024;
/// Incomplete fragment sets are dropped after this.
pub(crate) const REASSEMBLY_TIMEOUT: Duration = Duration::from_secs(30);
/// Generic payload header + Fragment Number + Total Fragments (RFC 7383 2.5).
const SKF_HEADER_LEN: usize = 8;
const UDP_HEADER_LEN: usize = 8;
const NON_ESP_MARKER_LEN: usize = 4;
const NATT_PORT: u16 = 4500;
/// Below this many payload bytes per fragment, fragmenting is pointless: send unfragmented.
const MIN_FRAGMENT_CONTENT: usize = 32;

/// The largest IKE message (UDP payload without the non-ESP marker) that fits into an IP
/// datagram of `fragment_size` bytes on the path `local` -> `remote` (RFC 7383 2.5.1).
pub(crate) fn max_message_len(
    fragment_size: usize,
    local: SocketAddr,
    remote: SocketAddr,
) -> usize {
    let ip = if remote.is_ipv4() { 20 } else { 40 };
    let marker = if local.port() == NATT_PORT || remote.port() == NATT_PORT {
        NON_ESP_MARKER_LEN
    } else {
        0
    };
    fragment_size.saturating_sub(ip + UDP_HEADER_LEN + marker)
}

/// Seal `payloads` as one SK message, or, if that is longer than `max_len` (`Some` only when
/// fragmentation was negotiated), as SKF fragments 1..=N (RFC 7383 2.5). Fails if the
/// payloads cannot be encoded or encryption failed.
pub(crate) fn seal(
    cipher: &Transform,
    rng: &mut dyn Rng,
    header: &Header,
    payloads: &[Payload],
    max_len: Option<usize>,
) -> Result<Vec<Vec<u8>>, SealError> {
    let (first, inner) = if payloads.is_empty() {
        (payload_type::NONE, Vec::new())
    } else {
        emit_payloads(payloads)?
    };
    let whole = HEADER_LEN + 4 + sk::body_len(cipher, inner.len());
    let content = max_len.and_then(|m| fragment_content_len(cipher, m));
    let Some(content) = content.filter(|_| whole > max_len.unwrap_or(usize::MAX)) else {
        let one = sk::seal_inner(cipher, rng, &inner, |body_len| {
            fs_wire::ike::sk_message_prefix(header, first, body_len)
        })?;
        return Ok(vec![one]);
    };
    let count = inner.len().div_ceil(content);
    let Ok(total) = u16::try_from(count) else {
        // Over 65535 fragments cannot be expressed; the message is far beyond any UDP size.
        return Err(SealError::Encode(fs_wire::ike::WireError::Unencodable {
            what: "Total Fragments",
            value: count,
            max: usize::from(u16::MAX),
        }));
    };
    let mut out = Vec::with_capacity(usize::from(total));
    for (i, piece) in inner.chunks(content).enumerate() {
        // i < total <= u16::MAX, so the fragment number fits.
        let number = u16::try_from(i + 1).unwrap_or(u16::MAX);
        // 2.5: Next Payload is the first inner payload type in fragment 1, 0 in the others.
        let next = if number == 1 {
            first
        } else {
            payload_type::NONE
        };
        let frag = sk::seal_inner(cipher, rng, piece, |body_len| {
            skf_message_prefix(header, next, number, total, body_len)
        })?;
        out.push(frag);
    }
    debug!(
        "fragmented message {} ({whole} bytes) into {total} SKF fragments",
        header.message_id
    );
    Ok(out)
}

/// Payload-chain bytes that fit into one fragment of at most `max_len` bytes: the IKE header,
/// SKF header, IV and ICV are fixed; the plaintext (content | padding | pad length) is a
/// whole number of cipher blocks.
fn fragment_content_len(cipher: &Transform, max_len: usize) -> Option<usize> {
    let fixed = HEADER_LEN + SKF_HEADER_LEN + cipher.iv_len() + cipher.icv_len();
    let block = cipher.block_len().max(1);
    let plain = max_len.checked_sub(fixed)? / block * block;
    plain.checked_sub(1).filter(|c| *c >= MIN_FRAGMENT_CONTENT)
}

/// What to do with an incoming SKF message, from the IKE SA's message ID window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Window {
    /// A response: the message ID of our outstanding request of the same exchange, if any.
    Response(Option<u32>),
    /// A request: the next expected message ID and the one we last answered.
    Request {
        expected: u32,
        answered: Option<u32>,
    },
}

/// The outcome of [`FragState::on_fragment`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Stored, ignored or dropped: nothing more to do now.
    Wait,
    /// The message is complete: `FragState::take_reassembled` returns its payloads.
    Complete,
    /// A verified fragment 1 of the request we last answered: resend the cached response
    /// (RFC 7383 2.6.1, RFC 7296 2.1).
    Retransmitted,
}

/// One message being reassembled.
struct Reassembly {
    response: bool,
    msg_id: u32,
    total: u16,
    /// Next Payload of fragment 1 (the first inner payload type).
    first_inner: u8,
    /// Decrypted contents of the fragments received so far, by fragment number (sorted,
    /// distinct). Grows with verified fragments only: Total Fragments sizes nothing.
    parts: Vec<(u16, Vec<u8>)>,
    bytes: usize,
    started: Instant,
}

/// Fragmentation state of one IKE SA.
#[derive(Default)]
pub(crate) struct FragState {
    /// Both peers announced IKEV2_FRAGMENTATION_SUPPORTED (RFC 7383 2.3).
    pub(crate) negotiated: bool,
    /// Fragments of our last response (message ID, all fragments), resent as a unit.
    response: Option<(u32, Vec<Vec<u8>>)>,
    /// At most one request and one response in reassembly (window size 1, RFC 7296 2.3).
    sets: Vec<Reassembly>,
    /// A completed message: (response?, message ID, payloads).
    done: Option<(bool, u32, Vec<Payload>)>,
}

impl Reassembly {
    /// Fragment `number` is stored.
    fn has(&self, number: u16) -> bool {
        self.parts.binary_search_by_key(&number, |p| p.0).is_ok()
    }
}

impl FragState {
    /// Fragmentation state for a new IKE SA: negotiated iff both sides support it.
    pub(crate) fn new(negotiated: bool) -> Self {
        FragState {
            negotiated,
            ..FragState::default()
        }
    }

    /// Remember the datagrams of our response to `msg_id` if it was fragmented.
    pub(crate) fn cache_response(&mut self, msg_id: u32, datagrams: &[Vec<u8>]) {
        self.response = (datagrams.len() > 1).then(|| (msg_id, datagrams.to_vec()));
    }

    /// All fragments of our cached response to `msg_id`, if it was fragmented.
    pub(crate) fn cached_response(&self, msg_id: u32) -> Option<&[Vec<u8>]> {
        match &self.response {
            Some((m, d)) if *m == msg_id => Some(d),
            _ => None,
        }
    }

    /// The reassembled payloads of the SKF message `msg`, once (see [`Verdict::Complete`]).
    pub(crate) fn take_reassembled(&mut self, msg: &Message) -> Option<Vec<Payload>> {
        let response = msg.header.is_response();
        match &self.done {
            Some((r, m, _)) if *r == response && *m == msg.header.message_id => {
                self.done.take().map(|d| d.2)
            }
            _ => None,
        }
    }

    /// Handle one SKF message (RFC 7383 2.6), `data` as received, `msg` parsed from it, keyed
    /// with the peer's `cipher`.
    pub(crate) fn on_fragment(
        &mut self,
        cipher: &Transform,
        data: &[u8],
        msg: &Message,
        now: Instant,
        window: Window,
        stats: &mut IkeStats,
    ) -> Verdict {
        self.done = None;
        self.expire(now, stats);
        let Some(Payload::Skf {
            first_inner,
            fragment_number: number,
            total_fragments: total,
            body,
        }) = msg.payloads.last()
        else {
            stats.dropped_malformed += 1;
            return Verdict::Wait;
        };
        let (number, total) = (*number, *total);
        let drop = |stats: &mut IkeStats, why: &str| {
            debug!(
                "dropping IKE fragment {number}/{total} of message {}: {why}",
                msg.header.message_id
            );
            stats.fragment_drops += 1;
            Verdict::Wait
        };
        if !self.negotiated {
            // 2.3: fragments are only sent once support was negotiated.
            stats.dropped_unexpected += 1;
            return drop(stats, "fragmentation not negotiated");
        }
        let mid = msg.header.message_id;
        let response = msg.header.is_response();
        let retransmit = match window {
            Window::Response(pending) if pending == Some(mid) => false,
            Window::Request { expected, .. } if expected == mid => false,
            Window::Request { expected, answered }
                if answered == Some(mid) && mid.wrapping_add(1) == expected =>
            {
                true
            }
            _ => {
                stats.dropped_message_id += 1;
                return drop(stats, "message ID outside the window");
            }
        };
        if number == 0 || number > total {
            // fs-wire already rejects these; keep the invariant local.
            stats.dropped_malformed += 1;
            return drop(stats, "bad fragment number");
        }
        if total > MAX_FRAGMENTS {
            return drop(stats, "too many fragments");
        }
        // Cheap checks that change no state, before spending a decryption.
        let existing = self
            .sets
            .iter()
            .find(|s| s.response == response && s.msg_id == mid);
        if let Some(s) = existing {
            if total < s.total {
                // 2.6.1: a lower Total Fragments is from an older fragmentation: ignore.
                return drop(stats, "stale fragmentation");
            }
            if total == s.total && s.has(number) {
                return drop(stats, "duplicate");
            }
        }
        // 2.6: the ICV of each fragment is verified before the fragment is stored.
        let plain = match sk::open_inner(cipher, data, msg.header.length as usize, body.len()) {
            Ok(p) => p,
            Err(OpenError::Integrity) => {
                stats.dropped_integrity += 1;
                return drop(stats, "invalid ICV");
            }
            Err(OpenError::Malformed) => {
                stats.dropped_malformed += 1;
                return drop(stats, "malformed");
            }
        };
        stats.fragments_received += 1;
        if retransmit {
            // 2.6.1: a retransmitted request; answer once per retransmission, on fragment 1.
            return if number == 1 {
                Verdict::Retransmitted
            } else {
                Verdict::Wait
            };
        }
        let idx = match self
            .sets
            .iter()
            .position(|s| s.response == response && s.msg_id == mid)
        {
            Some(i) if self.sets.get(i).is_some_and(|s| s.total == total) => i,
            found => {
                if let Some(i) = found {
                    // 2.6: a higher Total Fragments (the sender re-fragmented, e.g. with a
                    // smaller size): discard what we have and start over.
                    let old = self.sets.remove(i);
                    stats.fragment_drops += old.parts.len() as u64;
                    debug!("IKE fragment set of message {mid} restarted ({total} fragments)");
                }
                // A newer message replaces an older incomplete one in the same direction.
                for s in self.sets.iter().filter(|s| s.response == response) {
                    stats.fragment_drops += s.parts.len() as u64;
                }
                self.sets.retain(|s| s.response != response);
                self.sets.push(Reassembly {
                    response,
                    msg_id: mid,
                    total,
                    first_inner: payload_type::NONE,
                    parts: Vec::new(),
                    bytes: 0,
                    started: now,
                });
                self.sets.len() - 1
            }
        };
        let Some(set) = self.sets.get_mut(idx) else {
            return Verdict::Wait;
        };
        if set.bytes + plain.len() > MAX_REASSEMBLED {
            let old = self.sets.remove(idx);
            stats.fragment_drops += old.parts.len() as u64 + 1;
            debug!("IKE fragment set of message {mid} exceeds {MAX_REASSEMBLED} bytes: dropped");
            return Verdict::Wait;
        }
        if number == 1 {
            set.first_inner = *first_inner;
        }
        if let Err(at) = set.parts.binary_search_by_key(&number, |p| p.0) {
            set.bytes += plain.len();
            set.parts.insert(at, (number, plain));
        }
        // Distinct numbers in 1..=total: complete when there are `total` of them.
        if set.parts.len() < usize::from(set.total) {
            return Verdict::Wait;
        }
        let set = self.sets.remove(idx);
        // `bytes` is capped at MAX_REASSEMBLED and backed by decrypted fragments.
        let mut chain = Vec::with_capacity(set.bytes);
        for (_, p) in set.parts {
            chain.extend_from_slice(&p);
        }
        match parse_payloads(set.first_inner, &chain) {
            Ok(payloads) => {
                stats.messages_reassembled += 1;
                self.done = Some((response, mid, payloads));
                Verdict::Complete
            }
            Err(e) => {
                debug!("reassembled IKE message {mid} is malformed: {e}");
                stats.dropped_malformed += 1;
                Verdict::Wait
            }
        }
    }

    /// When the oldest incomplete set expires (a timer of the IKE SA).
    pub(crate) fn expiry(&self) -> Option<Instant> {
        self.sets
            .iter()
            .map(|s| crate::time::after(s.started, REASSEMBLY_TIMEOUT))
            .min()
    }

    /// Drop incomplete sets older than [`REASSEMBLY_TIMEOUT`].
    pub(crate) fn expire(&mut self, now: Instant, stats: &mut IkeStats) {
        self.sets.retain(|s| {
            let keep = now.saturating_duration_since(s.started) < REASSEMBLY_TIMEOUT;
            if !keep {
                stats.fragment_drops += s.parts.len() as u64;
            }
            keep
        });
    }

    /// Bytes held for reassembly (tests: memory stays bounded).
    #[cfg(test)]
    pub(crate) fn held_bytes(&self) -> usize {
        self.sets.iter().map(|s| s.bytes).sum()
    }
}
