//! The IKE endpoint: demultiplexes datagrams by IKE SPI to IKE SAs, runs their state machines.
use crate::config::{ChildConfig, Config, ConnConfig, DpdAction, RetransmitConfig, UniquePolicy};
use crate::cookie::{Admit, DosGuard};
use crate::fragment::{self, FragState, Verdict, Window};
use crate::limited;
use crate::proposals::{self, EspSuite, IkeSuite};
use crate::ratelimit::TokenBucket;
use crate::sk::{self, OpenError};
use crate::time::{after, scale};
use fs_crypto::dh::KeyExchange;
use fs_crypto::{ikev2, DhGroup, EncrAlg, IntegAlg, PrfAlg, Rng, Secret, Transform as Cipher};
use fs_wire::id::Identity;
use fs_wire::ike::{
    auth_method, exchange, flags, notify_name, notify_type as nt, protocol_id, Delete, Header,
    IdPayload, Message, Payload, Proposal, WireError, IKE_VERSION,
};
use fs_wire::ts::TrafficSelector;
use fs_wire::{EspSpi, IkeSpi, Mode};

/// The unique id of an IKE SA within an [`Endpoint`] (`ferroswan status` `#n`, the logs'
/// `conn[n]`), never reused; not an SPI. Printed and serialized as its number.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct IkeSaId(pub u64);

impl std::fmt::Display for IkeSaId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};
use zeroize::Zeroizing;

/// A datagram to send. `data` is the IKE message; the I/O layer adds the 4-byte non-ESP marker
/// (RFC 3948 2.2) when either port is 4500 -- except for a NAT-keepalive: a `data` of exactly
/// one byte `0xFF` on the port 4500 path is sent as is (RFC 3948 2.3), never prefixed. No IKE
/// message is that short, so the convention is unambiguous.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub data: Vec<u8>,
}

/// Keys of one direction of a CHILD_SA ([`Secret`]: wiped on drop, redacted in `Debug`).
#[derive(Debug)]
pub struct SaKeys {
    pub spi: EspSpi,
    pub encr_key: Secret,
    pub integ_key: Secret,
}

/// A copy of the keys goes with each [`Event::ChildSaInstalled`]; the copy is explicit
/// ([`Secret::duplicate`]), never a derived `Clone`.
impl Clone for SaKeys {
    fn clone(&self) -> Self {
        SaKeys {
            spi: self.spi,
            encr_key: self.encr_key.duplicate(),
            integ_key: self.integ_key.duplicate(),
        }
    }
}

/// A negotiated CHILD_SA, to install in the data plane.
#[derive(Clone)]
pub struct ChildSa {
    pub ike_sa: IkeSaId,
    pub conn: String,
    pub child: String,
    pub mode: Mode,
    pub local_ts: Vec<TrafficSelector>,
    pub remote_ts: Vec<TrafficSelector>,
    pub encr: EncrAlg,
    pub integ: Option<IntegAlg>,
    pub esn: bool,
    pub replay_window: u32,
    pub inbound: SaKeys,
    pub outbound: SaKeys,
    /// Outer addresses (IKE SA's current endpoints).
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// ESP in UDP (RFC 3948) on the IKE SA's port 4500 path; false = raw ESP (IP proto 50).
    pub udp_encap: bool,
    /// We answered the CREATE_CHILD_SA that rekeyed an existing CHILD_SA: the peer installs
    /// its inbound SA only when it processes our response, so the data plane should keep
    /// sending on the old SA until the new one carries inbound traffic or the old one is
    /// removed (RFC 7296 2.8).
    pub rekey_responder: bool,
}

/// Why an IKE SA (or attempt) ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum CloseReason {
    /// We sent or received a Delete for it.
    Deleted { by_peer: bool },
    /// Peer rejected our AUTH or we rejected the peer's (AUTHENTICATION_FAILED).
    AuthenticationFailed { by_peer: bool },
    /// NO_PROPOSAL_CHOSEN (sent or received).
    NoProposalChosen { by_peer: bool },
    /// TS_UNACCEPTABLE for the CHILD_SA in IKE_AUTH.
    TsUnacceptable { by_peer: bool },
    /// NO_ADDITIONAL_SAS: a CHILD_SA beyond the responder's limit per IKE SA.
    NoAdditionalSas { by_peer: bool },
    /// The peer's new IKE SA was refused by `unique = keep`: another IKE SA with the same
    /// identity is established (sent as AUTHENTICATION_FAILED, like strongSwan).
    UniqueKeep,
    /// Retransmissions exhausted.
    Timeout,
    /// Any other error notify or protocol failure, with its name.
    Error(String),
}

/// Something the daemon must act on.
#[derive(Clone)]
pub enum Event {
    IkeSaEstablished {
        ike_sa: IkeSaId,
        conn: String,
        local: SocketAddr,
        remote: SocketAddr,
    },
    /// An IKE SA ended or an attempt failed; all its CHILD_SAs are removed (ChildSaRemoved first).
    IkeSaClosed {
        ike_sa: IkeSaId,
        conn: String,
        reason: CloseReason,
        /// It had been established: a `Timeout` then means a dead peer (DPD or an
        /// exchange on the live SA went unanswered), not a failed setup.
        established: bool,
    },
    ChildSaInstalled(Box<ChildSa>),
    ChildSaRemoved {
        ike_sa: IkeSaId,
        conn: String,
        child: String,
        spi_in: EspSpi,
        spi_out: EspSpi,
    },
    /// A CHILD_SA could not be negotiated (e.g. TS_UNACCEPTABLE or NO_PROPOSAL_CHOSEN for the
    /// child in IKE_AUTH or CREATE_CHILD_SA); the IKE SA stays up (RFC 7296 2.21.2). `child` is
    /// empty when the responder found no matching child configuration.
    ChildSaFailed {
        ike_sa: IkeSaId,
        conn: String,
        child: String,
        reason: CloseReason,
    },
    /// The peer of an established IKE SA now sends from `remote` (NAT rebinding, RFC 7296
    /// 2.23): its CHILD_SAs' outbound ESP must go there too.
    PeerEndpointChanged {
        ike_sa: IkeSaId,
        conn: String,
        remote: SocketAddr,
    },
}

/// Errors from commands (not from peer input: peer input never errors, it is dropped/answered).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IkeError {
    #[error("no connection named {0:?}")]
    UnknownConnection(String),
    #[error("connection {0:?} has no child named {1:?}")]
    UnknownChild(String, String),
    #[error("connection {0:?} has no remote address to initiate to")]
    NoRemoteAddress(String),
    #[error("connection {0:?} has no IKE SA")]
    NotEstablished(String),
    #[error("no CHILD_SA with inbound SPI {0:08x}")]
    UnknownChildSa(EspSpi),
}

/// Status of one CHILD_SA for `ferroswan status` (counters are filled in by the daemon).
#[derive(Clone, Debug, Serialize)]
pub struct ChildSaInfo {
    pub name: String,
    pub state: String,
    pub mode: Mode,
    pub protocol: String,
    pub spi_in: EspSpi,
    pub spi_out: EspSpi,
    pub encr: String,
    pub integ: Option<String>,
    pub esn: bool,
    pub encap: bool,
    pub local_ts: Vec<String>,
    pub remote_ts: Vec<String>,
    pub established_secs: u64,
    /// Seconds until we start rekeying it (None: no rekey scheduled).
    pub rekey_in_secs: Option<u64>,
    /// Seconds until its hard lifetime ends (None: unlimited).
    pub expires_in_secs: Option<u64>,
    /// How many rekeys led to this SA.
    pub rekey_count: u32,
}

/// Status of one IKE SA.
#[derive(Clone, Debug, Serialize)]
pub struct IkeSaInfo {
    pub id: IkeSaId,
    pub conn: String,
    pub state: String,
    pub initiator: bool,
    pub local: String,
    pub remote: String,
    pub local_id: String,
    pub remote_id: String,
    pub spi_i: IkeSpi,
    pub spi_r: IkeSpi,
    pub encr: Option<String>,
    pub integ: Option<String>,
    pub prf: Option<String>,
    pub dh: Option<String>,
    pub nat_local: bool,
    pub nat_remote: bool,
    /// Both peers prefer UDP-encapsulated ESP (ferroswan notify): ESP in UDP without a NAT.
    pub udp_encap_preferred: bool,
    pub established_secs: u64,
    pub child_sas: Vec<ChildSaInfo>,
    /// Seconds until we start rekeying it (None: no rekey scheduled).
    pub rekey_in_secs: Option<u64>,
    /// Seconds until it is dropped (a rekeyed IKE SA waiting for its Delete) or deleted
    /// (hard `life_time`).
    pub expires_in_secs: Option<u64>,
    /// How many rekeys led to this IKE SA.
    pub rekey_count: u32,
    /// Seconds until we start reauthenticating it (None: not scheduled).
    pub reauth_in_secs: Option<u64>,
}

/// Counters of peer input that was dropped or answered specially (for `ferroswan status`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct IkeStats {
    /// Unparseable datagrams, bad SK padding/lengths, undecodable inner payloads.
    pub dropped_malformed: u64,
    /// SK payloads whose ICV did not verify.
    pub dropped_integrity: u64,
    /// Messages for an IKE SPI we do not know.
    pub dropped_unknown_spi: u64,
    /// Requests outside the window / responses to no outstanding request.
    pub dropped_message_id: u64,
    /// Well-formed messages not valid in the SA's current state.
    pub dropped_unexpected: u64,
    /// Requests we retransmitted.
    pub retransmits_sent: u64,
    /// Retransmitted requests answered from the response cache.
    pub retransmits_answered: u64,
    /// Responder IKE SAs removed because IKE_AUTH never came.
    pub half_open_expired: u64,
    /// Simultaneous rekeys of the same SA by both peers, resolved by nonces (RFC 7296 2.8.1,
    /// 2.8.2), counted where our own rekey completed.
    pub rekey_collisions: u64,
    /// IKE_SA_INIT requests answered with only N(COOKIE) (no state kept), see `cookie.rs`.
    pub cookies_sent: u64,
    /// IKE_SA_INIT requests with a valid COOKIE while cookies were required.
    pub cookies_accepted: u64,
    /// IKE_SA_INIT requests with a wrong or expired COOKIE while cookies were required.
    pub cookie_invalid: u64,
    /// IKE_SA_INIT requests dropped by `half_open_max` / `half_open_per_source_max`.
    pub half_open_limit_drops: u64,
    /// Half-open responder IKE SAs now (a gauge).
    pub half_open: u64,
    /// Highest `half_open` seen.
    pub half_open_peak: u64,
    /// Authenticated IKE fragments received (RFC 7383).
    pub fragments_received: u64,
    /// IKE fragments sent (first transmissions and retransmissions).
    pub fragments_sent: u64,
    /// Messages reassembled from fragments.
    pub messages_reassembled: u64,
    /// IKE fragments discarded: bad ICV, duplicates, stale, over the caps, expired sets,
    /// fragmentation not negotiated (RFC 7383 2.6).
    pub fragment_drops: u64,
    /// NAT-keepalives sent (RFC 3948 4).
    pub nat_keepalives_sent: u64,
    /// Established IKE SAs that followed the peer to a new address/port (RFC 7296 2.23).
    pub peer_endpoint_changes: u64,
    /// IKE_SA_INIT requests from addresses matching no connection (answered statelessly with
    /// NO_PROPOSAL_CHOSEN, no event).
    pub init_no_match: u64,
    /// Duplicate IKE SAs from simultaneous initiation, deleted (the one with the lowest nonce).
    pub duplicates_deleted: u64,
    /// CHILD_SAs rekeyed because of a volume limit or the 32-bit sequence number space.
    pub volume_rekeys: u64,
    /// CREATE_CHILD_SA requests for a new CHILD_SA refused with NO_ADDITIONAL_SAS
    /// (`max_children_per_ike_sa`), and rekeys refused with TEMPORARY_FAILURE because twice
    /// that many CHILD_SAs are held.
    pub child_limit_refused: u64,
    /// Datagrams from UDP source port 0 (no reply can reach it): dropped unprocessed.
    pub dropped_source_port_zero: u64,
    /// Requests with IKE major version > 2 answered with INVALID_MAJOR_VERSION (RFC 7296 2.5).
    pub invalid_major_version_sent: u64,
    /// ... and those left unanswered by the rate limit ([`MAJOR_VERSION_ANSWERS_PER_SEC`]).
    pub invalid_major_version_suppressed: u64,
    /// Messages of ours that could not be encoded (a count or length past its field width,
    /// `fs_wire::ike::WireError::Unencodable`): logged and not sent, never truncated.
    pub emit_failures: u64,
}

/// Traffic counters of one CHILD_SA as the data plane reports them (`note_child_counters`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChildCounters {
    pub bytes_in: u64,
    pub packets_in: u64,
    pub bytes_out: u64,
    pub packets_out: u64,
    /// Highest outbound ESP sequence number used.
    pub seq_out: u64,
}

/// Without ESN, a CHILD_SA is rekeyed once its outbound sequence number passes
/// 2^32 - SEQ_REKEY_MARGIN (RFC 4303 3.3.3: the counter MUST NOT cycle; a new SA is needed).
pub const SEQ_REKEY_MARGIN: u64 = 1 << 24;
/// ... and deleted once the 32-bit space is exhausted (the data plane cannot send on it).
pub const SEQ_HARD_LIMIT: u64 = u32::MAX as u64;
/// INVALID_MAJOR_VERSION answers: at most this many per second (after a burst of as many).
pub const MAJOR_VERSION_ANSWERS_PER_SEC: u32 = 10;
/// At most one info line per this interval about IKE_SA_INIT requests matching no connection.
const NO_MATCH_LOG_INTERVAL: Duration = Duration::from_secs(10);

const NONCE_LEN: usize = 32;
const IKE_PORT: u16 = 500;
const NATT_PORT: u16 = 4500;
/// Bound on IKE_SA_INIT restarts (INVALID_KE_PAYLOAD / COOKIE) per attempt.
const MAX_INIT_RESTARTS: u32 = 5;
/// Delay before retrying after TEMPORARY_FAILURE or a failed rekey (plus up to the same again
/// at random; RFC 7296 2.25: MUST NOT retry immediately).
const RETRY_DELAY: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Initiator: IKE_SA_INIT sent.
    InitSent,
    /// Responder: IKE_SA_INIT answered, waiting for IKE_AUTH.
    InitDone,
    /// Initiator: IKE_AUTH sent.
    AuthSent,
    Established,
    /// Delete for the IKE SA sent.
    Deleting,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::InitSent | State::InitDone | State::AuthSent => "CONNECTING",
            State::Established => "ESTABLISHED",
            State::Deleting => "DELETING",
        }
    }
}

struct Keys {
    sk_d: Secret,
    sk_pi: Secret,
    sk_pr: Secret,
    tx: Cipher,
    rx: Cipher,
}

/// A CHILD_SA we proposed (initiator side), waiting for the answer.
struct ChildProposal {
    name: String,
    spi_in: EspSpi,
    /// Our nonce for CREATE_CHILD_SA (empty in IKE_AUTH: the IKE SA nonces are used).
    ni: Vec<u8>,
    transport: bool,
    local_ts: Vec<TrafficSelector>,
    remote_ts: Vec<TrafficSelector>,
    /// Inbound SPI of the CHILD_SA this request rekeys (REKEY_SA).
    rekey: Option<EspSpi>,
    /// Our PFS key exchange (KEi).
    kex: Option<KeyExchange>,
    /// Collision (RFC 7296 2.8.1): the peer rekeyed the same CHILD_SA meanwhile; our inbound
    /// SPI of the SA it created and the lowest nonce of its exchange.
    collision: Option<(EspSpi, Vec<u8>)>,
}

/// Our IKE SA rekey request (RFC 7296 1.3.2), waiting for the answer.
struct IkeRekey {
    spi: IkeSpi,
    ni: Vec<u8>,
    kex: KeyExchange,
    /// Collision (RFC 7296 2.8.2): the peer rekeyed this IKE SA meanwhile; our SPI of the IKE SA
    /// it created (kept inactive until we decide) and the lowest nonce of its exchange.
    collision: Option<(IkeSpi, Vec<u8>)>,
}

enum ReqKind {
    Init,
    Auth(Option<ChildProposal>),
    CreateChild(ChildProposal),
    RekeyIke(IkeRekey),
    /// Delete of these inbound ESP SPIs of ours.
    DeleteChild(Vec<EspSpi>),
    DeleteIke,
    /// Liveness check (empty INFORMATIONAL).
    Dpd,
}

/// Work waiting for the request window (window size 1).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Task {
    /// Delete our inbound ESP SPI.
    DeleteChild(EspSpi),
    RekeyIke,
    /// Rekey the CHILD_SA with this inbound SPI.
    RekeyChild(EspSpi),
    /// Create a CHILD_SA from configuration (only in the delayed list).
    Create(String),
    Dpd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChildState {
    Installed,
    /// Replaced by a rekey; deleted by us or waiting for the peer's Delete.
    Rekeyed,
    /// Our Delete is on its way.
    Deleting,
}

/// The one outstanding request of an IKE SA (window size 1, RFC 7296 2.3).
struct Pending {
    msg_id: u32,
    exchange: u8,
    /// The request's datagrams: one message, or all its fragments (RFC 7383 2.5).
    data: Vec<Vec<u8>>,
    local: SocketAddr,
    remote: SocketAddr,
    /// Transmissions so far.
    sent: u32,
    deadline: Instant,
    kind: ReqKind,
}

struct InstalledChild {
    sa: ChildSa,
    established: Instant,
    state: ChildState,
    rekey_at: Option<Instant>,
    /// Hard lifetime: deleted at this time if still there.
    expire_at: Option<Instant>,
    rekey_count: u32,
    /// Last counters reported by the data plane.
    counters: ChildCounters,
    /// A volume/sequence rekey was started (at most once per SA).
    volume_rekey: bool,
}

struct IkeSa {
    id: IkeSaId,
    conn: ConnConfig,
    initiator: bool,
    state: State,
    spi_i: IkeSpi,
    spi_r: IkeSpi,
    local: SocketAddr,
    remote: SocketAddr,
    /// Responder: key of the IKE_SA_INIT retransmit index.
    init_key: Option<(SocketAddr, IkeSpi)>,
    suite: Option<IkeSuite>,
    kex: Option<KeyExchange>,
    ni: Vec<u8>,
    nr: Vec<u8>,
    keys: Option<Keys>,
    /// Our and the peer's IKE_SA_INIT messages as sent/received (AUTH input, RFC 7296 2.15).
    init_req: Vec<u8>,
    init_resp: Vec<u8>,
    cookie: Option<Vec<u8>>,
    init_restarts: u32,
    nat_local: bool,
    nat_remote: bool,
    /// Both peers announced FERROSWAN_UDP_ENCAP_PREFERRED: ESP goes in UDP without a NAT.
    udp_pref: bool,
    next_req_id: u32,
    pending: Option<Pending>,
    to_create: VecDeque<String>,
    delete_queued: bool,
    expected_req_id: u32,
    last_response: Option<(u32, Vec<u8>)>,
    children: Vec<InstalledChild>,
    established_at: Option<Instant>,
    half_open_deadline: Option<Instant>,
    remote_identity: Option<Identity>,
    /// Replaced by a rekeyed IKE SA (children moved away), or a redundant/undecided one from a
    /// rekey collision: inactive, closed without events.
    superseded: bool,
    /// A collision IKE SA created by the peer's rekey, not yet adopted: requests on it are
    /// dropped (the peer retransmits) until our own rekey decides (RFC 7296 2.8.2).
    adopt_pending: bool,
    /// A superseded SA is dropped silently at this time if the peer never deletes it.
    superseded_deadline: Option<Instant>,
    tasks: VecDeque<Task>,
    /// Tasks to queue later (retries after TEMPORARY_FAILURE).
    delayed: Vec<(Instant, Task)>,
    rekey_at: Option<Instant>,
    /// Last authenticated message from the peer (or ESP activity), for DPD.
    last_rx: Instant,
    rekey_count: u32,
    /// IKE fragmentation (RFC 7383): negotiation, reassembly, fragmented response cache.
    frag: FragState,
    /// When we created it (sent or received its IKE_SA_INIT request).
    created_at: Instant,
    /// Last datagram we sent to the peer (IKE or, via `note_child_counters`, ESP): NAT
    /// keepalives are only needed after this much silence.
    last_tx: Instant,
    /// Hard lifetime of the IKE SA (`ConnConfig::life_time`).
    expire_at: Option<Instant>,
    /// Reauthentication due (`ConnConfig::reauth_time`, RFC 7296 2.8.3).
    reauth_at: Option<Instant>,
    /// This IKE SA reauthenticates (replaces) the IKE SA with this unique id: once it is
    /// established with its children, that one is deleted (make-before-break).
    reauth_of: Option<IkeSaId>,
    /// A reauthentication of this IKE SA is in progress (unique id of the new IKE SA).
    reauth_by: Option<IkeSaId>,
    /// Authenticated ESP came from this new address ([`Endpoint::note_peer_endpoint`]): the
    /// next liveness check goes there; its authenticated answer moves the IKE SA.
    probe_remote: Option<SocketAddr>,
    /// A CREATE_CHILD_SA was refused by `max_children_per_ike_sa` (logged once at info).
    child_limit_logged: bool,
    /// `unique = replace`: a newer IKE SA of the same identity came from the same address
    /// (likely a make-before-break reauthentication): deleted at this time unless the peer
    /// deletes it first.
    replace_at: Option<Instant>,
    /// Being deleted because a newer IKE SA of the same identity replaced it.
    replaced: bool,
}

impl IkeSa {
    /// An IKE SA with everything but its identity, role, state, SPIs and addresses at the
    /// starting values; callers override the rest with struct-update syntax.
    #[allow(clippy::too_many_arguments)]
    fn new(
        id: IkeSaId,
        conn: ConnConfig,
        initiator: bool,
        state: State,
        spi_i: IkeSpi,
        spi_r: IkeSpi,
        local: SocketAddr,
        remote: SocketAddr,
        now: Instant,
    ) -> IkeSa {
        IkeSa {
            id,
            conn,
            initiator,
            state,
            spi_i,
            spi_r,
            local,
            remote,
            init_key: None,
            suite: None,
            kex: None,
            ni: Vec::new(),
            nr: Vec::new(),
            keys: None,
            init_req: Vec::new(),
            init_resp: Vec::new(),
            cookie: None,
            init_restarts: 0,
            nat_local: false,
            nat_remote: false,
            udp_pref: false,
            next_req_id: 0,
            pending: None,
            to_create: VecDeque::new(),
            delete_queued: false,
            expected_req_id: 0,
            last_response: None,
            children: Vec::new(),
            established_at: None,
            half_open_deadline: None,
            remote_identity: None,
            superseded: false,
            adopt_pending: false,
            superseded_deadline: None,
            tasks: VecDeque::new(),
            delayed: Vec::new(),
            rekey_at: None,
            last_rx: now,
            rekey_count: 0,
            frag: FragState::new(false),
            created_at: now,
            last_tx: now,
            expire_at: None,
            reauth_at: None,
            reauth_of: None,
            reauth_by: None,
            probe_remote: None,
            child_limit_logged: false,
            replace_at: None,
            replaced: false,
        }
    }
}

impl IkeSa {
    fn our_spi(&self) -> IkeSpi {
        if self.initiator {
            self.spi_i
        } else {
            self.spi_r
        }
    }
    fn nat_any(&self) -> bool {
        self.nat_local || self.nat_remote
    }
    fn udp_encap(&self) -> bool {
        self.nat_any() || self.conn.force_encap || self.udp_pref || self.local.port() == NATT_PORT
    }
    /// Lifecycle timers (rekeys, expiry, DPD, retries) run only on active established SAs.
    fn active(&self) -> bool {
        self.state == State::Established && !self.superseded && !self.delete_queued
    }
    fn dpd_due(&self) -> Option<Instant> {
        let d = self.conn.dpd_delay?;
        (self.active()
            && self.pending.is_none()
            && self.tasks.is_empty()
            && self.to_create.is_empty())
        .then(|| after(self.last_rx, d))
    }
    /// Next NAT keepalive (RFC 3948 4): only the side behind the NAT sends them, on the
    /// port 4500 path, when nothing else went to the peer for `nat_keepalive`.
    fn keepalive_due(&self) -> Option<Instant> {
        let d = self.conn.nat_keepalive?;
        (self.active() && self.nat_local && self.local.port() == NATT_PORT)
            .then(|| after(self.last_tx, d))
    }
    fn deadline(&self) -> Option<Instant> {
        let mut t: Vec<Instant> = Vec::new();
        t.extend(self.pending.as_ref().map(|p| p.deadline));
        t.extend(self.half_open_deadline);
        t.extend(self.superseded_deadline);
        t.extend(self.frag.expiry());
        if self.active() {
            t.extend(self.rekey_at);
            t.extend(self.delayed.iter().map(|d| d.0));
            t.extend(self.dpd_due());
            t.extend(self.keepalive_due());
            t.extend(self.expire_at);
            t.extend(self.reauth_at);
            t.extend(self.replace_at);
        }
        if self.state == State::Established && !self.superseded {
            for c in &self.children {
                if c.state == ChildState::Installed && self.active() {
                    t.extend(c.rekey_at);
                }
                t.extend(c.expire_at);
            }
        }
        t.into_iter().min()
    }
    fn child_by_in(&self, spi: EspSpi) -> Option<usize> {
        self.children.iter().position(|c| c.sa.inbound.spi == spi)
    }
    fn pending_rekey_ike(&mut self) -> Option<&mut IkeRekey> {
        match &mut self.pending {
            Some(Pending {
                kind: ReqKind::RekeyIke(r),
                ..
            }) => Some(r),
            _ => None,
        }
    }
    fn has_child(&self, name: &str) -> bool {
        self.children.iter().any(|c| c.sa.child == name)
            || self.to_create.iter().any(|c| c == name)
            || matches!(&self.pending, Some(Pending { kind: ReqKind::Auth(Some(cp)) | ReqKind::CreateChild(cp), .. }) if cp.name == name)
    }
    fn remote_id_str(&self) -> String {
        match (&self.remote_identity, &self.conn.remote_id) {
            (Some(id), _) | (None, Some(id)) => id.to_string(),
            _ => "%any".to_string(),
        }
    }
}

enum Outcome {
    Keep,
    Close(CloseReason),
    /// Remove without events (never-reported responder half-open SA).
    Discard,
}

fn reason_from_notify(t: u16, by_peer: bool) -> CloseReason {
    match t {
        nt::AUTHENTICATION_FAILED => CloseReason::AuthenticationFailed { by_peer },
        nt::NO_PROPOSAL_CHOSEN => CloseReason::NoProposalChosen { by_peer },
        nt::TS_UNACCEPTABLE => CloseReason::TsUnacceptable { by_peer },
        nt::NO_ADDITIONAL_SAS => CloseReason::NoAdditionalSas { by_peer },
        _ => CloseReason::Error(notify_name(t)),
    }
}

impl CloseReason {
    /// The upper-case reason as logged (`AUTHENTICATION_FAILED`, `TIMEOUT`, ...).
    pub fn name(&self) -> String {
        match self {
            CloseReason::Deleted { .. } => "DELETED".into(),
            CloseReason::AuthenticationFailed { .. } => "AUTHENTICATION_FAILED".into(),
            CloseReason::NoProposalChosen { .. } => "NO_PROPOSAL_CHOSEN".into(),
            CloseReason::TsUnacceptable { .. } => "TS_UNACCEPTABLE".into(),
            CloseReason::NoAdditionalSas { .. } => "NO_ADDITIONAL_SAS".into(),
            CloseReason::UniqueKeep => "UNIQUE_KEEP".into(),
            CloseReason::Timeout => "TIMEOUT".into(),
            CloseReason::Error(s) => s.clone(),
        }
    }
}

fn rto(cfg: &RetransmitConfig, n: u32) -> Duration {
    let exp = i32::try_from(n).unwrap_or(i32::MAX);
    let secs = cfg.timeout.as_secs_f64() * cfg.base.max(1.0).powi(exp);
    if secs.is_finite() {
        Duration::from_secs_f64(secs.clamp(0.001, 86_400.0))
    } else {
        Duration::from_secs(86_400)
    }
}

fn host_ts(ip: IpAddr) -> TrafficSelector {
    TrafficSelector {
        start: ip,
        end: ip,
        protocol: 0,
        start_port: 0,
        end_port: u16::MAX,
    }
}

fn ts_list(ts: &[TrafficSelector]) -> String {
    ts.iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Empty list = any; an unspecified address (daemon bound to the wildcard) matches any list.
fn addr_ok(list: &[IpAddr], ip: IpAddr) -> bool {
    list.is_empty() || ip.is_unspecified() || list.contains(&ip)
}

fn nonce_ok(n: &[u8]) -> bool {
    (16..=256).contains(&n.len())
}

fn first_error(payloads: &[Payload]) -> Option<u16> {
    payloads.iter().find_map(|p| match p {
        Payload::Notify(n) if nt::is_error(n.ntype) => Some(n.ntype),
        _ => None,
    })
}

fn has_notify(payloads: &[Payload], t: u16) -> bool {
    payloads
        .iter()
        .any(|p| matches!(p, Payload::Notify(n) if n.ntype == t))
}

fn notify_data(payloads: &[Payload], t: u16) -> Vec<&[u8]> {
    payloads
        .iter()
        .filter_map(|p| match p {
            Payload::Notify(n) if n.ntype == t => Some(n.data.as_slice()),
            _ => None,
        })
        .collect()
}

/// Our FERROSWAN_UDP_ENCAP_PREFERRED notify (status type, magic data).
fn udp_pref_notify() -> Payload {
    Payload::notify(
        nt::FERROSWAN_UDP_ENCAP_PREFERRED,
        nt::FERROSWAN_UDP_ENCAP_MAGIC.to_vec(),
    )
}

/// The peer announced FERROSWAN_UDP_ENCAP_PREFERRED with the right data (a private-use type
/// that some other implementation might use differently is ignored without the magic).
pub(crate) fn has_udp_pref(payloads: &[Payload]) -> bool {
    notify_data(payloads, nt::FERROSWAN_UDP_ENCAP_PREFERRED)
        .contains(&nt::FERROSWAN_UDP_ENCAP_MAGIC)
}

/// The payloads a message carries, looked up by type.
#[derive(Default)]
struct Parts<'a> {
    sa: Option<&'a [Proposal]>,
    ke: Option<(u16, &'a [u8])>,
    nonce: Option<&'a [u8]>,
    idi: Option<&'a IdPayload>,
    idr: Option<&'a IdPayload>,
    auth: Option<(u8, &'a [u8])>,
    tsi: Option<&'a [TrafficSelector]>,
    tsr: Option<&'a [TrafficSelector]>,
}

fn parts(payloads: &[Payload]) -> Parts<'_> {
    let mut p = Parts::default();
    for x in payloads {
        match x {
            Payload::Sa(v) => p.sa = p.sa.or(Some(v)),
            Payload::Ke { group, data } => p.ke = p.ke.or(Some((*group, data))),
            Payload::Nonce(n) => p.nonce = p.nonce.or(Some(n)),
            Payload::IdI(i) => p.idi = p.idi.or(Some(i)),
            Payload::IdR(i) => p.idr = p.idr.or(Some(i)),
            Payload::Auth { method, data } => p.auth = p.auth.or(Some((*method, data))),
            Payload::TsI(t) => p.tsi = p.tsi.or(Some(t)),
            Payload::TsR(t) => p.tsr = p.tsr.or(Some(t)),
            _ => {}
        }
    }
    p
}

/// A refused CHILD_SA request: (notify type, notify data, child config name or "").
type ChildError = (u16, Vec<u8>, String);

/// The lowest nonce of an exchange (RFC 7296 2.8.1: octet-by-octet, a prefix is lower, which
/// is exactly the lexicographic order of byte slices).
fn lowest(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.min(b).to_vec()
}

/// Sum of all retransmission timeouts of one request.
fn total_rto(cfg: &RetransmitConfig) -> Duration {
    (0..=cfg.tries.min(64)).map(|n| rto(cfg, n)).sum()
}

fn critical_unknown(payloads: &[Payload]) -> Option<u8> {
    payloads.iter().find_map(|p| match p {
        Payload::Unknown {
            ptype,
            critical: true,
            ..
        } => Some(*ptype),
        _ => None,
    })
}

/// CHILD_SA keys (RFC 7296 2.17): KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr); i->r
/// encryption key, i->r integrity key, then r->i.
fn child_keys(
    prf: PrfAlg,
    sk_d: &[u8],
    g_ir: Option<&[u8]>,
    ni: &[u8],
    nr: &[u8],
    s: &EspSuite,
) -> (SaKeys, SaKeys) {
    let ek = s.encr.key_len();
    let ik = s.integ.map_or(0, |i| i.key_len());
    let km = ikev2::child_keymat(prf, sk_d, g_ir, ni, nr, 2 * (ek + ik));
    let part = |a: usize, b: usize| Secret::from_slice(km.get(a..b).unwrap_or_default());
    let i2r = SaKeys {
        spi: EspSpi(0),
        encr_key: part(0, ek),
        integ_key: part(ek, ek + ik),
    };
    let r2i = SaKeys {
        spi: EspSpi(0),
        encr_key: part(ek + ik, 2 * ek + ik),
        integ_key: part(2 * ek + ik, 2 * (ek + ik)),
    };
    (i2r, r2i)
}

/// The IKE endpoint: owns all IKE SAs, keyed by our SPI.
pub struct Endpoint {
    config: Config,
    rng: Box<dyn Rng>,
    sas: HashMap<IkeSpi, IkeSa>,
    /// Responder: (peer address, SPIi) of IKE_SA_INIT requests -> our SPI, for retransmits.
    init_index: HashMap<(SocketAddr, IkeSpi), IkeSpi>,
    next_id: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: IkeStats,
    /// COOKIE secrets and the half-open table (`Config::limits`).
    dos: DosGuard,
    /// Rate limit of the "matches no connection" info line: last logged, and not yet logged.
    no_match_logged: Option<Instant>,
    no_match_unlogged: u64,
    /// Test knob: never send INITIAL_CONTACT (a peer that omits it).
    #[cfg(test)]
    pub(crate) test_omit_initial_contact: bool,
    /// Rate limit of INVALID_MAJOR_VERSION answers (unauthenticated, spoofable sources).
    major_version_answers: TokenBucket,
}

impl Endpoint {
    /// An endpoint with `config`; all randomness (SPIs, nonces, IVs, DH keys) comes from `rng`.
    pub fn new(config: Config, rng: Box<dyn Rng>) -> Self {
        Endpoint {
            config,
            rng,
            sas: HashMap::new(),
            init_index: HashMap::new(),
            next_id: 1,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: IkeStats::default(),
            dos: DosGuard::default(),
            no_match_logged: None,
            no_match_unlogged: 0,
            #[cfg(test)]
            test_omit_initial_contact: false,
            major_version_answers: TokenBucket::new(
                MAJOR_VERSION_ANSWERS_PER_SEC,
                MAJOR_VERSION_ANSWERS_PER_SEC,
            ),
        }
    }
    /// Replace the configuration (existing SAs are kept).
    pub fn set_config(&mut self, config: Config) {
        self.config = config;
    }
    /// Counters of dropped/answered peer input.
    pub fn stats(&self) -> &IkeStats {
        &self.stats
    }

    /// An IKE datagram arrived (non-ESP marker already stripped).
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
    ) {
        if remote.port() == 0 {
            // No reply could reach port 0 (sending to it fails): not worth a parse, nor a
            // log line per datagram.
            self.stats.dropped_source_port_zero += 1;
            return;
        }
        // Cheap checks first (issue 9): the fixed header (version and Length checked as in a
        // full parse, counted as malformed) names the IKE SA, so a message for an SPI we do
        // not hold, or with SPIs/flags that do not fit it, is dropped before any payload is
        // parsed. Only well-formed IKE_SA_INIT request headers and messages for a
        // known SA are parsed in full. COOKIE admission (cookie.rs) needs the parsed Ni, so it
        // runs after the (bounded) parse.
        let h = match Message::parse_header(data) {
            Ok(h) => h,
            Err(WireError::UnsupportedVersion(v)) if v >> 4 > IKE_VERSION >> 4 => {
                self.on_invalid_major_version(now, local, remote, data);
                return;
            }
            Err(e) => {
                limited!(now, DEBUG, %remote, "dropping malformed IKE message: {e}");
                self.stats.dropped_malformed += 1;
                return;
            }
        };
        let from_initiator = h.flags & flags::INITIATOR != 0;
        let is_response = h.flags & flags::RESPONSE != 0;
        let init_req = h.exchange == exchange::IKE_SA_INIT && !is_response;
        let our_spi = IkeSpi(if from_initiator { h.spi_r } else { h.spi_i });
        if init_req && !(from_initiator && h.spi_r == 0 && h.message_id == 0 && h.spi_i != 0) {
            limited!(now, DEBUG, %remote, "dropping invalid IKE_SA_INIT request");
            self.stats.dropped_malformed += 1;
            return;
        }
        if !init_req {
            let Some(sa) = self.sas.get(&our_spi) else {
                limited!(now, DEBUG, %remote, "dropping message for unknown IKE SPI {our_spi:016x}");
                self.stats.dropped_unknown_spi += 1;
                return;
            };
            let init_resp =
                h.exchange == exchange::IKE_SA_INIT && is_response && sa.state == State::InitSent;
            if sa.initiator == from_initiator
                || sa.spi_i != IkeSpi(h.spi_i)
                || (sa.spi_r != IkeSpi(h.spi_r) && !init_resp)
            {
                limited!(now, DEBUG, %remote, "dropping message with mismatched SPIs/flags");
                self.stats.dropped_unknown_spi += 1;
                return;
            }
        }
        let msg = match Message::parse(data) {
            Ok(m) => m,
            Err(e) => {
                limited!(now, DEBUG, %remote, "dropping malformed IKE message: {e}");
                self.stats.dropped_malformed += 1;
                return;
            }
        };
        let h = &msg.header;
        if init_req {
            self.on_init_request(now, local, remote, data, &msg);
            return;
        }
        let Some(mut sa) = self.sas.remove(&our_spi) else {
            self.stats.dropped_unknown_spi += 1;
            return;
        };
        if h.exchange != exchange::IKE_SA_INIT
            && matches!(msg.payloads.last(), Some(Payload::Skf { .. }))
            && !self.on_fragment(&mut sa, now, data, &msg)
        {
            // RFC 7383 2.6: fragment stored (or dropped, or a retransmission answered).
            self.finish(sa, Outcome::Keep, now);
            return;
        }
        let outcome = if h.exchange == exchange::IKE_SA_INIT {
            if is_response {
                self.on_init_response(&mut sa, now, local, remote, data, &msg)
            } else {
                self.stats.dropped_unexpected += 1;
                Outcome::Keep
            }
        } else if is_response {
            self.on_response(&mut sa, now, local, remote, data, &msg)
        } else {
            self.on_request(&mut sa, now, local, remote, data, &msg)
        };
        self.finish(sa, outcome, now);
    }

    /// Hook for SKF messages (RFC 7383 2.6), before the normal dispatch: true once the message
    /// is complete (`open` then yields the reassembled payloads, so the SK code path runs).
    fn on_fragment(&mut self, sa: &mut IkeSa, now: Instant, data: &[u8], msg: &Message) -> bool {
        let h = &msg.header;
        let Some(keys) = sa.keys.as_ref().filter(|_| !sa.adopt_pending) else {
            self.stats.dropped_unexpected += 1;
            return false;
        };
        let window = if h.is_response() {
            let p = sa.pending.as_ref().filter(|p| p.exchange == h.exchange);
            Window::Response(p.map(|p| p.msg_id))
        } else {
            Window::Request {
                expected: sa.expected_req_id,
                answered: sa.last_response.as_ref().map(|r| r.0),
            }
        };
        match sa
            .frag
            .on_fragment(&keys.rx, data, msg, now, window, &mut self.stats)
        {
            Verdict::Wait => false,
            Verdict::Complete => true,
            Verdict::Retransmitted => {
                if let Some((mid, resp)) = sa.last_response.clone() {
                    self.resend_response(sa, mid, resp);
                }
                false
            }
        }
    }

    /// Establish connection `conn` (IKE SA plus all its children, or only `child` if given).
    /// If an IKE SA of `conn` exists, missing children are created on it (CREATE_CHILD_SA);
    /// children already installed or in negotiation are not duplicated.
    pub fn initiate(
        &mut self,
        now: Instant,
        conn: &str,
        child: Option<&str>,
    ) -> Result<(), IkeError> {
        let cfg = self
            .config
            .connections
            .iter()
            .find(|c| c.name == conn)
            .cloned()
            .ok_or_else(|| IkeError::UnknownConnection(conn.to_string()))?;
        let wanted: Vec<String> = match child {
            Some(c) => {
                if !cfg.children.iter().any(|x| x.name == c) {
                    return Err(IkeError::UnknownChild(conn.to_string(), c.to_string()));
                }
                vec![c.to_string()]
            }
            None => cfg.children.iter().map(|c| c.name.clone()).collect(),
        };
        if let Some(spi) = self.find_active(conn) {
            if let Some(mut sa) = self.sas.remove(&spi) {
                for w in wanted {
                    if !sa.has_child(&w) {
                        sa.to_create.push_back(w);
                    }
                }
                self.finish(sa, Outcome::Keep, now);
            }
            return Ok(());
        }
        self.start_sa(now, cfg, wanted, None).map(|_| ())
    }

    /// A new IKE SA as initiator (IKE_SA_INIT sent) creating `wanted` children; `path` =
    /// (local, remote) to use instead of the configured addresses (reauthentication).
    /// Returns its unique id (None if no proposal is usable: IkeSaClosed is queued).
    fn start_sa(
        &mut self,
        now: Instant,
        cfg: ConnConfig,
        wanted: Vec<String>,
        path: Option<(SocketAddr, SocketAddr)>,
    ) -> Result<Option<IkeSaId>, IkeError> {
        let conn = cfg.name.clone();
        let (local, remote) = match path {
            Some(p) => p,
            None => {
                let remote_ip = *cfg
                    .remote_addrs
                    .first()
                    .ok_or_else(|| IkeError::NoRemoteAddress(conn.clone()))?;
                let port = if cfg.remote_port == 0 {
                    IKE_PORT
                } else {
                    cfg.remote_port
                };
                let local_ip = cfg
                    .local_addrs
                    .iter()
                    .copied()
                    .find(|a| a.is_ipv6() == remote_ip.is_ipv6())
                    .unwrap_or(if remote_ip.is_ipv6() {
                        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
                    } else {
                        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
                    });
                (
                    SocketAddr::new(local_ip, IKE_PORT),
                    SocketAddr::new(remote_ip, port),
                )
            }
        };
        let id = IkeSaId(self.next_id);
        self.next_id += 1;
        let group = cfg
            .ike_proposals
            .first()
            .and_then(|p| p.dh.first().copied());
        let kex = group.and_then(|g| KeyExchange::generate(g, self.rng.as_mut()).ok());
        let Some(kex) = kex else {
            warn!("IKE_SA {conn}[{id}] failed: no usable IKE proposal");
            self.events.push_back(Event::IkeSaClosed {
                ike_sa: id,
                conn: conn.to_string(),
                reason: CloseReason::NoProposalChosen { by_peer: false },
                established: false,
            });
            return Ok(None);
        };
        let spi_i = self.alloc_spi();
        let mut ni = vec![0u8; NONCE_LEN];
        self.rng.fill(&mut ni);
        info!("initiating IKE_SA {conn}[{id}] to {remote}");
        let mut sa = IkeSa {
            kex: Some(kex),
            ni,
            next_req_id: 1,
            to_create: wanted.into(),
            ..IkeSa::new(
                id,
                cfg,
                true,
                State::InitSent,
                spi_i,
                IkeSpi(0),
                local,
                remote,
                now,
            )
        };
        self.send_init(&mut sa, now);
        self.sas.insert(spi_i, sa);
        Ok(Some(id))
    }

    /// A packet matched a trapped child with no SA: initiate it unless already in progress.
    pub fn acquire(&mut self, now: Instant, conn: &str, child: &str) -> Result<(), IkeError> {
        self.initiate(now, conn, Some(child))
    }

    /// Delete the IKE SA(s) of `conn` (sends INFORMATIONAL Delete).
    pub fn terminate(&mut self, now: Instant, conn: &str) -> Result<(), IkeError> {
        if !self.config.connections.iter().any(|c| c.name == conn)
            && !self.sas.values().any(|s| s.conn.name == conn)
        {
            return Err(IkeError::UnknownConnection(conn.to_string()));
        }
        let mut spis: Vec<IkeSpi> = self
            .sas
            .iter()
            .filter(|(_, s)| s.conn.name == conn)
            .map(|(k, _)| *k)
            .collect();
        spis.sort_unstable();
        if spis.is_empty() {
            return Err(IkeError::NotEstablished(conn.to_string()));
        }
        for spi in spis {
            self.terminate_spi(spi, now);
        }
        Ok(())
    }

    /// Rekey now: the IKE SA of `conn` (`child` = None) or its installed CHILD_SAs named
    /// `child` (like `swanctl --rekey`).
    pub fn rekey(&mut self, now: Instant, conn: &str, child: Option<&str>) -> Result<(), IkeError> {
        let spi = self
            .find_active(conn)
            .ok_or_else(|| IkeError::NotEstablished(conn.to_string()))?;
        let Some(mut sa) = self.sas.remove(&spi) else {
            return Err(IkeError::NotEstablished(conn.to_string()));
        };
        let r = if sa.state != State::Established {
            Err(IkeError::NotEstablished(conn.to_string()))
        } else {
            match child {
                None => {
                    if !sa.tasks.contains(&Task::RekeyIke) {
                        sa.tasks.push_back(Task::RekeyIke);
                    }
                    sa.rekey_at = None;
                    Ok(())
                }
                Some(c) => {
                    if !sa.conn.children.iter().any(|x| x.name == c) {
                        Err(IkeError::UnknownChild(conn.to_string(), c.to_string()))
                    } else {
                        for ch in &mut sa.children {
                            if ch.sa.child == c && ch.state == ChildState::Installed {
                                ch.rekey_at = None;
                                let t = Task::RekeyChild(ch.sa.inbound.spi);
                                if !sa.tasks.contains(&t) {
                                    sa.tasks.push_back(t);
                                }
                            }
                        }
                        Ok(())
                    }
                }
            }
        };
        self.finish(sa, Outcome::Keep, now);
        r
    }

    /// Delete every IKE SA (daemon shutdown).
    pub fn shutdown(&mut self, now: Instant) {
        let mut spis: Vec<IkeSpi> = self.sas.keys().copied().collect();
        spis.sort_unstable();
        for spi in spis {
            self.terminate_spi(spi, now);
        }
    }

    /// Run timers due at `now` (retransmissions, timeouts, rekeys, DPD).
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<IkeSpi> = self
            .sas
            .iter()
            .filter(|(_, s)| s.deadline().is_some_and(|d| d <= now))
            .map(|(k, _)| *k)
            .collect();
        let mut due = due;
        due.sort_unstable(); // deterministic order for simulations
        for spi in due {
            let Some(mut sa) = self.sas.remove(&spi) else {
                continue;
            };
            let outcome = self.on_timer(&mut sa, now);
            self.finish(sa, outcome, now);
        }
    }

    /// The earliest pending timer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.sas.values().filter_map(|s| s.deadline()).min()
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event for the daemon.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Status of all IKE SAs (ordered by unique id).
    pub fn status(&self, now: Instant) -> Vec<IkeSaInfo> {
        let mut v: Vec<&IkeSa> = self.sas.values().collect();
        v.sort_by_key(|s| s.id);
        let secs = |t: Option<Instant>| t.map(|t| t.saturating_duration_since(now).as_secs());
        v.into_iter()
            .map(|sa| IkeSaInfo {
                id: sa.id,
                conn: sa.conn.name.clone(),
                state: if sa.superseded {
                    "REKEYED".to_string()
                } else {
                    sa.state.name().to_string()
                },
                initiator: sa.initiator,
                local: sa.local.to_string(),
                remote: sa.remote.to_string(),
                local_id: sa.conn.local_id.to_string(),
                remote_id: sa.remote_id_str(),
                spi_i: sa.spi_i,
                spi_r: sa.spi_r,
                encr: sa.suite.map(|s| s.encr.iana_name().to_string()),
                integ: sa
                    .suite
                    .and_then(|s| s.integ)
                    .map(|i| i.iana_name().to_string()),
                prf: sa.suite.map(|s| s.prf.iana_name().to_string()),
                dh: sa.suite.map(|s| s.dh.iana_name().to_string()),
                nat_local: sa.nat_local,
                nat_remote: sa.nat_remote,
                udp_encap_preferred: sa.udp_pref,
                established_secs: sa
                    .established_at
                    .map_or(0, |t| now.saturating_duration_since(t).as_secs()),
                rekey_in_secs: secs(sa.rekey_at),
                expires_in_secs: secs(sa.superseded_deadline.or(sa.expire_at)),
                rekey_count: sa.rekey_count,
                reauth_in_secs: secs(sa.reauth_at),
                child_sas: sa
                    .children
                    .iter()
                    .map(|c| ChildSaInfo {
                        name: c.sa.child.clone(),
                        state: match c.state {
                            ChildState::Installed => "INSTALLED",
                            ChildState::Rekeyed => "REKEYED",
                            ChildState::Deleting => "DELETING",
                        }
                        .to_string(),
                        mode: c.sa.mode,
                        protocol: "ESP".to_string(),
                        spi_in: c.sa.inbound.spi,
                        spi_out: c.sa.outbound.spi,
                        encr: c.sa.encr.iana_name().to_string(),
                        integ: c.sa.integ.map(|i| i.iana_name().to_string()),
                        esn: c.sa.esn,
                        encap: c.sa.udp_encap,
                        local_ts: c.sa.local_ts.iter().map(|t| t.to_string()).collect(),
                        remote_ts: c.sa.remote_ts.iter().map(|t| t.to_string()).collect(),
                        established_secs: now.saturating_duration_since(c.established).as_secs(),
                        rekey_in_secs: secs(c.rekey_at),
                        expires_in_secs: secs(c.expire_at),
                        rekey_count: c.rekey_count,
                    })
                    .collect(),
            })
            .collect()
    }

    /// Inbound ESP traffic was seen on the CHILD_SA with inbound SPI `spi_in`: proof of
    /// liveness that postpones DPD of its IKE SA.
    pub fn note_child_activity(&mut self, spi_in: EspSpi, now: Instant) {
        if let Some(sa) = self
            .sas
            .values_mut()
            .find(|s| s.child_by_in(spi_in).is_some())
        {
            sa.last_rx = sa.last_rx.max(now);
        }
    }

    /// The data plane's counters of the CHILD_SA with inbound SPI `spi_in` (the daemon polls
    /// them about once a second). Inbound traffic postpones DPD, outbound traffic postpones
    /// NAT keepalives, and the volume limits are enforced: `rekey_bytes`/`rekey_packets` and,
    /// without ESN, an outbound sequence number past 2^32 - [`SEQ_REKEY_MARGIN`] start a rekey
    /// (RFC 4303 3.3.3: the sequence number MUST NOT cycle); `life_bytes`/`life_packets` and
    /// [`SEQ_HARD_LIMIT`] delete the SA.
    pub fn note_child_counters(&mut self, now: Instant, spi_in: EspSpi, c: ChildCounters) {
        let Some(mut sa) = self.take_sa_with_child(spi_in, false) else {
            return;
        };
        if let Some(i) = sa.child_by_in(spi_in) {
            self.child_counters(&mut sa, now, i, c);
        }
        self.finish(sa, Outcome::Keep, now);
    }

    /// The data plane saw authenticated ESP (ICV and replay checks passed) of the CHILD_SA
    /// with inbound SPI `spi_in` arrive from `remote`, which differs from where its outbound
    /// ESP goes (NAT rebinding seen on ESP, like an XFRM mapping change). Followed under the
    /// same rule as authenticated IKE messages ([`Endpoint::handle_datagram`], RFC 7296 2.23):
    /// only on an established IKE SA with the peer behind a NAT, and either we are not behind
    /// one or we are the responder. Then the ESP of all CHILD_SAs of that IKE SA goes to
    /// `remote` at once ([`Event::PeerEndpointChanged`], RFC 3948 behaviour), while the IKE
    /// SA's own address only follows an authenticated IKE message: a liveness check
    /// (empty INFORMATIONAL) is sent to `remote` right away, and its answer moves the IKE SA.
    /// Anything else (unknown SPI, no NAT, unchanged address) is ignored.
    pub fn note_peer_endpoint(&mut self, now: Instant, spi_in: EspSpi, remote: SocketAddr) {
        let Some(mut sa) = self.take_sa_with_child(spi_in, false) else {
            return;
        };
        let follow = sa.active()
            && sa.udp_encap()
            && sa.nat_remote
            && (!sa.nat_local || !sa.initiator)
            && remote.port() != 0
            && remote.is_ipv4() == sa.remote.is_ipv4();
        let moved = sa.children.iter().any(|c| c.sa.remote != remote);
        if follow && moved {
            info!(
                "IKE_SA {}[{}]: peer's ESP arrives from {remote} (was {}), NAT rebinding: moving CHILD_SAs, checking liveness",
                sa.conn.name,
                sa.id,
                sa.children.first().map(|c| c.sa.remote).unwrap_or(sa.remote)
            );
            for c in &mut sa.children {
                c.sa.remote = remote;
            }
            self.stats.peer_endpoint_changes += 1;
            self.events.push_back(Event::PeerEndpointChanged {
                ike_sa: sa.id,
                conn: sa.conn.name.clone(),
                remote,
            });
            if sa.remote != remote {
                sa.probe_remote = Some(remote);
                if !sa.tasks.contains(&Task::Dpd) {
                    sa.last_rx = sa.last_rx.max(now);
                    sa.tasks.push_back(Task::Dpd);
                }
            }
        } else if !follow && moved {
            debug!(
                "IKE_SA {}[{}]: ESP from {remote} ignored (no NAT rebinding to follow)",
                sa.conn.name, sa.id
            );
        }
        self.finish(sa, Outcome::Keep, now);
    }

    fn child_counters(&mut self, sa: &mut IkeSa, now: Instant, i: usize, c: ChildCounters) {
        let Some(ch) = sa.children.get_mut(i) else {
            return;
        };
        if c.packets_in > ch.counters.packets_in {
            sa.last_rx = sa.last_rx.max(now);
        }
        if c.packets_out > ch.counters.packets_out {
            sa.last_tx = sa.last_tx.max(now);
        }
        ch.counters = c;
        let Some(cfg) = sa.conn.children.iter().find(|x| x.name == ch.sa.child) else {
            return;
        };
        let (bytes, packets) = (c.bytes_in.max(c.bytes_out), c.packets_in.max(c.packets_out));
        let over = |limit: u64, v: u64| limit != 0 && v >= limit;
        let seq_soft = !ch.sa.esn && c.seq_out >= (1u64 << 32) - SEQ_REKEY_MARGIN;
        let seq_hard = !ch.sa.esn && c.seq_out >= SEQ_HARD_LIMIT;
        if over(cfg.life_bytes, bytes) || over(cfg.life_packets, packets) || seq_hard {
            info!(
                "CHILD_SA {}{{{}}} {:08x}_i hard volume limit reached ({bytes} bytes, {packets} packets, seq {}), deleting",
                ch.sa.conn, ch.sa.child, ch.sa.inbound.spi, c.seq_out
            );
            self.expire_child(sa, i);
            return;
        }
        let soft = over(cfg.rekey_bytes, bytes) || over(cfg.rekey_packets, packets) || seq_soft;
        if soft && !ch.volume_rekey && ch.state == ChildState::Installed {
            ch.volume_rekey = true;
            ch.rekey_at = None;
            info!(
                "CHILD_SA {}{{{}}} {:08x}_i soft volume limit reached ({bytes} bytes, {packets} packets, seq {}), rekeying",
                ch.sa.conn, ch.sa.child, ch.sa.inbound.spi, c.seq_out
            );
            self.stats.volume_rekeys += 1;
            let t = Task::RekeyChild(ch.sa.inbound.spi);
            if !sa.tasks.contains(&t) {
                sa.tasks.push_back(t);
            }
        }
    }

    /// Rekey the CHILD_SA with inbound SPI `spi_in` now.
    pub fn rekey_child(&mut self, now: Instant, spi_in: EspSpi) -> Result<(), IkeError> {
        self.with_child(now, spi_in, |sa, i| {
            if let Some(c) = sa.children.get_mut(i) {
                if c.state == ChildState::Installed {
                    c.rekey_at = None;
                    let t = Task::RekeyChild(c.sa.inbound.spi);
                    if !sa.tasks.contains(&t) {
                        sa.tasks.push_back(t);
                    }
                }
            }
        })
    }

    /// Delete the CHILD_SA with inbound SPI `spi_in` (INFORMATIONAL Delete; removed when the
    /// peer answers, or with the IKE SA).
    pub fn delete_child(&mut self, now: Instant, spi_in: EspSpi) -> Result<(), IkeError> {
        self.with_child(now, spi_in, |sa, i| {
            if sa
                .children
                .get(i)
                .is_some_and(|c| c.state != ChildState::Deleting)
            {
                let t = Task::DeleteChild(spi_in);
                if !sa.tasks.contains(&t) {
                    sa.tasks.push_back(t);
                }
            }
        })
    }

    /// Remove and return the IKE SA that has the CHILD_SA with inbound SPI `spi_in`
    /// (only an established one if `established`); the caller hands it back via `finish`.
    fn take_sa_with_child(&mut self, spi_in: EspSpi, established: bool) -> Option<IkeSa> {
        let spi = self
            .sas
            .iter()
            .find(|(_, s)| {
                (!established || s.state == State::Established) && s.child_by_in(spi_in).is_some()
            })
            .map(|(k, _)| *k)?;
        self.sas.remove(&spi)
    }

    fn with_child(
        &mut self,
        now: Instant,
        spi_in: EspSpi,
        f: impl FnOnce(&mut IkeSa, usize),
    ) -> Result<(), IkeError> {
        let mut sa = self
            .take_sa_with_child(spi_in, true)
            .ok_or(IkeError::UnknownChildSa(spi_in))?;
        if let Some(i) = sa.child_by_in(spi_in) {
            f(&mut sa, i);
        }
        self.finish(sa, Outcome::Keep, now);
        Ok(())
    }

    // ---------------------------------------------------------------------------------------
    // SA bookkeeping

    /// `d` minus a random jitter of up to `rand` (default 10% of `d`; spreads rekeys so both
    /// peers rarely start together), like strongSwan's `rand_time`.
    fn jittered(&mut self, d: Duration, rand: Option<Duration>) -> Duration {
        let mut b = [0u8; 8];
        self.rng.fill(&mut b);
        let f = (u64::from_be_bytes(b) % 1_000_001) as f64 / 1_000_000.0;
        let max = rand.unwrap_or_else(|| scale(d, 0.1)).min(d);
        d.saturating_sub(scale(max, f))
    }

    /// RETRY_DELAY plus up to as much again at random.
    fn retry_delay(&mut self) -> Duration {
        let mut b = [0u8; 4];
        self.rng.fill(&mut b);
        let f = f64::from(u32::from_be_bytes(b)) / f64::from(u32::MAX);
        RETRY_DELAY.saturating_add(scale(RETRY_DELAY, f))
    }

    /// How long a superseded IKE SA waits for the peer's Delete (or our decision).
    fn superseded_grace(sa: &IkeSa) -> Duration {
        total_rto(&sa.conn.retransmit)
            .saturating_mul(2)
            .saturating_add(Duration::from_secs(10))
    }

    fn alloc_spi(&mut self) -> IkeSpi {
        loop {
            let mut b = [0u8; 8];
            self.rng.fill(&mut b);
            let spi = IkeSpi(u64::from_be_bytes(b));
            if spi != IkeSpi(0) && !self.sas.contains_key(&spi) {
                return spi;
            }
        }
    }

    /// A fresh inbound ESP SPI (strongSwan style 0xc.......), unique among our CHILD_SAs.
    fn alloc_child_spi(&mut self, current: &IkeSa) -> EspSpi {
        loop {
            let mut b = [0u8; 4];
            self.rng.fill(&mut b);
            let spi = EspSpi(u32::from_be_bytes(b) | 0xc000_0000);
            let used = |sa: &IkeSa| sa.children.iter().any(|c| c.sa.inbound.spi == spi);
            if !used(current) && !self.sas.values().any(used) {
                return spi;
            }
        }
    }

    fn find_active(&self, conn: &str) -> Option<IkeSpi> {
        let mut best: Option<&IkeSa> = None;
        for sa in self.sas.values() {
            if sa.conn.name != conn
                || sa.state == State::Deleting
                || sa.delete_queued
                || sa.superseded
                || !sa.initiator && sa.state == State::InitDone
            {
                continue;
            }
            if best.is_none_or(|b| b.state != State::Established && sa.state == State::Established)
            {
                best = Some(sa);
            }
        }
        best.map(|s| s.our_spi())
    }

    fn transmit(&mut self, local: SocketAddr, remote: SocketAddr, data: Vec<u8>) {
        self.transmits.push_back(Transmit {
            local,
            remote,
            data,
        });
    }

    fn finish(&mut self, mut sa: IkeSa, outcome: Outcome, now: Instant) {
        if !(matches!(outcome, Outcome::Keep) && !sa.initiator && sa.state == State::InitDone) {
            self.dos.settled(sa.our_spi(), &mut self.stats);
        }
        match outcome {
            Outcome::Keep => {
                self.kick(&mut sa, now);
                // Anything queued for the peer in this call counts as traffic (NAT keepalive
                // timer; the queue only holds this call's datagrams).
                if self.transmits.iter().any(|t| t.remote == sa.remote) {
                    sa.last_tx = sa.last_tx.max(now);
                }
                // Reauthentication complete (all children negotiated): delete the old SA.
                let done = sa.state == State::Established
                    && !sa.superseded
                    && sa.pending.is_none()
                    && sa.to_create.is_empty()
                    && !sa.delayed.iter().any(|d| matches!(d.1, Task::Create(_)));
                let old = if done { sa.reauth_of.take() } else { None };
                let id = sa.id;
                self.sas.insert(sa.our_spi(), sa);
                if let Some(o) = old {
                    self.reauth_done(o, id, now);
                }
            }
            Outcome::Close(reason) => {
                if let Some(o) = sa.reauth_of.take() {
                    self.reauth_failed(o, now);
                }
                let restart = reason == CloseReason::Timeout
                    && sa.established_at.is_some()
                    && !sa.superseded
                    && sa.conn.dpd_action == DpdAction::Restart;
                let conn = sa.conn.name.clone();
                let mut names: Vec<String> = Vec::new();
                for c in &sa.children {
                    if !names.contains(&c.sa.child) {
                        names.push(c.sa.child.clone());
                    }
                }
                self.close(sa, reason);
                if restart {
                    info!("restarting connection {conn} (dpd_action = restart)");
                    let r = if names.is_empty() {
                        self.initiate(now, &conn, None)
                    } else {
                        names
                            .iter()
                            .try_for_each(|n| self.initiate(now, &conn, Some(n)))
                    };
                    if let Err(e) = r {
                        warn!("cannot restart {conn}: {e}");
                    }
                }
            }
            Outcome::Discard => {
                if let Some(k) = sa.init_key {
                    self.init_index.remove(&k);
                }
            }
        }
    }

    /// Emit ChildSaRemoved for every child, then IkeSaClosed, and forget the SA.
    fn close(&mut self, sa: IkeSa, reason: CloseReason) {
        self.dos.settled(sa.our_spi(), &mut self.stats);
        if let Some(k) = sa.init_key {
            self.init_index.remove(&k);
        }
        if sa.superseded && sa.children.is_empty() {
            // Replaced by its rekeyed successor: nothing to report (RFC 7296 2.18).
            debug!(
                "rekeyed IKE_SA {}[{}] ({:016x}_i {:016x}_r) removed: {}",
                sa.conn.name,
                sa.id,
                sa.spi_i,
                sa.spi_r,
                reason.name()
            );
            return;
        }
        for c in &sa.children {
            self.events.push_back(Event::ChildSaRemoved {
                ike_sa: sa.id,
                conn: sa.conn.name.clone(),
                child: c.sa.child.clone(),
                spi_in: c.sa.inbound.spi,
                spi_out: c.sa.outbound.spi,
            });
        }
        match reason {
            CloseReason::Deleted { .. } => info!("IKE_SA {}[{}] deleted", sa.conn.name, sa.id),
            ref r => info!("IKE_SA {}[{}] failed: {}", sa.conn.name, sa.id, r.name()),
        }
        self.events.push_back(Event::IkeSaClosed {
            ike_sa: sa.id,
            conn: sa.conn.name.clone(),
            reason,
            established: sa.established_at.is_some(),
        });
    }

    fn terminate_spi(&mut self, spi: IkeSpi, now: Instant) {
        let Some(mut sa) = self.sas.remove(&spi) else {
            return;
        };
        let outcome = match sa.state {
            State::InitSent | State::InitDone => {
                Outcome::Close(CloseReason::Deleted { by_peer: false })
            }
            State::AuthSent | State::Established => {
                // In AuthSent the Delete goes out once IKE_AUTH completes (window size 1).
                sa.delete_queued = true;
                sa.to_create.clear();
                Outcome::Keep
            }
            State::Deleting => Outcome::Keep,
        };
        self.finish(sa, outcome, now);
    }

    /// Start the next queued request if the window is free.
    fn kick(&mut self, sa: &mut IkeSa, now: Instant) {
        if sa.pending.is_some() || sa.state != State::Established || sa.adopt_pending {
            return;
        }
        if sa.delete_queued {
            sa.delete_queued = false;
            sa.state = State::Deleting;
            if sa.superseded {
                debug!("deleting rekeyed IKE_SA {}[{}]", sa.conn.name, sa.id);
            } else {
                info!("deleting IKE_SA {}[{}]", sa.conn.name, sa.id);
            }
            let del = Payload::Delete(Delete {
                protocol: protocol_id::IKE,
                spi_size: 0,
                spis: Vec::new(),
            });
            self.send_request(
                sa,
                now,
                exchange::INFORMATIONAL,
                vec![del],
                ReqKind::DeleteIke,
            );
            return;
        }
        if sa.superseded {
            return;
        }
        // Deletes of replaced SAs first, then rekeys, then new children, then liveness.
        let prio = |t: &Task| match t {
            Task::DeleteChild(_) => 0,
            Task::RekeyIke => 1,
            Task::RekeyChild(_) => 2,
            Task::Create(_) => 3,
            Task::Dpd => 4,
        };
        loop {
            let best = sa
                .tasks
                .iter()
                .enumerate()
                .filter(|(_, t)| prio(t) < 3)
                .min_by_key(|(i, t)| (prio(t), *i))
                .map(|(i, _)| i);
            let Some(i) = best else { break };
            let Some(t) = sa.tasks.remove(i) else { break };
            if self.start_task(sa, now, t) {
                sa.tasks.retain(|t| *t != Task::Dpd);
                return;
            }
        }
        while let Some(name) = sa.to_create.pop_front() {
            let Some(cfg) = sa.conn.children.iter().find(|c| c.name == name).cloned() else {
                continue;
            };
            let mut ni = vec![0u8; NONCE_LEN];
            self.rng.fill(&mut ni);
            let (cp, payloads) = self.child_proposal(sa, &cfg, Some(ni), None, None);
            self.send_request(
                sa,
                now,
                exchange::CREATE_CHILD_SA,
                payloads,
                ReqKind::CreateChild(cp),
            );
            sa.tasks.retain(|t| *t != Task::Dpd);
            return;
        }
        if let Some(i) = sa.tasks.iter().position(|t| *t == Task::Dpd) {
            sa.tasks.remove(i);
            debug!("IKE_SA {}[{}]: sending DPD", sa.conn.name, sa.id);
            // After an ESP-observed NAT rebinding the check goes to the new address (its
            // retransmissions too); only its authenticated answer moves the IKE SA there.
            let ike_remote = sa.remote;
            if let Some(p) = sa.probe_remote.take() {
                sa.remote = p;
            }
            self.send_request(sa, now, exchange::INFORMATIONAL, Vec::new(), ReqKind::Dpd);
            sa.remote = ike_remote;
        }
    }

    /// Send the request for `t`; false if it no longer applies.
    fn start_task(&mut self, sa: &mut IkeSa, now: Instant, t: Task) -> bool {
        match t {
            Task::DeleteChild(spi) => {
                if let Some(i) = sa.child_by_in(spi) {
                    if let Some(c) = sa.children.get_mut(i) {
                        c.state = ChildState::Deleting;
                        c.rekey_at = None;
                    }
                }
                debug!(
                    "IKE_SA {}[{}]: deleting CHILD_SA {spi:08x}_i",
                    sa.conn.name, sa.id
                );
                let del = Payload::Delete(Delete {
                    protocol: protocol_id::ESP,
                    spi_size: 4,
                    spis: vec![spi.to_be_bytes().to_vec()],
                });
                self.send_request(
                    sa,
                    now,
                    exchange::INFORMATIONAL,
                    vec![del],
                    ReqKind::DeleteChild(vec![spi]),
                );
                true
            }
            Task::RekeyIke => self.start_ike_rekey(sa, now, None),
            Task::RekeyChild(spi) => self.start_child_rekey(sa, now, spi, None),
            Task::Create(name) => {
                if !sa.has_child(&name) {
                    sa.to_create.push_back(name);
                }
                false
            }
            Task::Dpd => false,
        }
    }

    /// Rekey the CHILD_SA with inbound SPI `spi` (RFC 7296 1.3.3).
    fn start_child_rekey(
        &mut self,
        sa: &mut IkeSa,
        now: Instant,
        spi: EspSpi,
        group: Option<DhGroup>,
    ) -> bool {
        let Some(old) = sa
            .children
            .iter()
            .find(|c| c.sa.inbound.spi == spi && c.state == ChildState::Installed)
            .map(|c| c.sa.clone())
        else {
            return false;
        };
        let Some(cfg) = sa
            .conn
            .children
            .iter()
            .find(|c| c.name == old.child)
            .cloned()
        else {
            return false;
        };
        info!(
            "rekeying CHILD_SA {}{{{}}} {:08x}_i {:08x}_o",
            old.conn, old.child, old.inbound.spi, old.outbound.spi
        );
        let mut ni = vec![0u8; NONCE_LEN];
        self.rng.fill(&mut ni);
        let (cp, payloads) = self.child_proposal(sa, &cfg, Some(ni), Some(&old), group);
        self.send_request(
            sa,
            now,
            exchange::CREATE_CHILD_SA,
            payloads,
            ReqKind::CreateChild(cp),
        );
        true
    }

    /// Reauthenticate `old` (RFC 7296 2.8.3, strongSwan's `reauth_time`), either side: a new
    /// IKE SA with a full IKE_SA_INIT + IKE_AUTH (PSK) carrying the first of `old`'s children,
    /// CREATE_CHILD_SA for the others; `old` is deleted once the new one is complete (`finish`
    /// -> `reauth_done`): make-before-break. No INITIAL_CONTACT is sent (`send_auth`: the
    /// connection has an established IKE SA), so the peer keeps `old` until our Delete.
    fn start_reauth(&mut self, old: &mut IkeSa, now: Instant) {
        if old.reauth_by.is_some() || !old.active() {
            return;
        }
        let cfg = self
            .config
            .connections
            .iter()
            .find(|c| c.name == old.conn.name)
            .cloned()
            .unwrap_or_else(|| old.conn.clone());
        let have = |n: &str| {
            old.children
                .iter()
                .any(|c| c.sa.child == n && c.state != ChildState::Deleting)
                || old.to_create.iter().any(|c| c == n)
        };
        let mut wanted: Vec<String> = cfg
            .children
            .iter()
            .filter(|c| have(&c.name))
            .map(|c| c.name.clone())
            .collect();
        if wanted.is_empty() {
            wanted = cfg.children.iter().map(|c| c.name.clone()).collect();
        }
        let path = if old.nat_any() {
            (old.local, old.remote)
        } else {
            let port = if !old.initiator {
                old.remote.port()
            } else if cfg.remote_port == 0 {
                IKE_PORT
            } else {
                cfg.remote_port
            };
            (
                SocketAddr::new(old.local.ip(), IKE_PORT),
                SocketAddr::new(old.remote.ip(), port),
            )
        };
        info!(
            "reauthenticating IKE_SA {}[{}] ({} children)",
            old.conn.name,
            old.id,
            wanted.len()
        );
        match self.start_sa(now, cfg, wanted, Some(path)) {
            Ok(Some(id)) => {
                old.reauth_by = Some(id);
                old.rekey_at = None;
                if let Some(n) = self.sas.values_mut().find(|s| s.id == id) {
                    n.reauth_of = Some(old.id);
                }
            }
            Ok(None) | Err(_) => {
                old.reauth_at = Some(after(now, self.retry_delay().saturating_mul(5)));
            }
        }
    }

    /// The reauthenticating IKE SA `new_id` is complete: delete the IKE SA `old_id` it
    /// replaces (its children are removed with it, after the new ones were installed).
    fn reauth_done(&mut self, old_id: IkeSaId, new_id: IkeSaId, now: Instant) {
        let Some(k) = self
            .sas
            .iter()
            .find(|(_, s)| s.id == old_id && !s.superseded)
            .map(|(k, _)| *k)
        else {
            return;
        };
        let Some(mut old) = self.sas.remove(&k) else {
            return;
        };
        old.reauth_by = None;
        old.reauth_at = None;
        if matches!(old.state, State::Established | State::AuthSent) {
            info!(
                "IKE_SA {}[{}] reauthenticated as IKE_SA {}[{}], deleting the old one",
                old.conn.name, old.id, old.conn.name, new_id
            );
            old.delete_queued = true;
            old.to_create.clear();
            old.tasks.clear();
            old.delayed.clear();
        }
        self.finish(old, Outcome::Keep, now);
    }

    /// The reauthenticating IKE SA for `old_id` failed: `old_id` stays, and tries again later.
    fn reauth_failed(&mut self, old_id: IkeSaId, now: Instant) {
        let delay = self.retry_delay().saturating_mul(5);
        if let Some(o) = self
            .sas
            .values_mut()
            .find(|s| s.id == old_id && !s.superseded)
        {
            o.reauth_by = None;
            if o.conn.reauth_time.is_some() {
                o.reauth_at = Some(after(now, delay));
            }
        }
    }

    /// Rekey the IKE SA (RFC 7296 1.3.2): SA (with our new SPI), Ni, KEi.
    fn start_ike_rekey(&mut self, sa: &mut IkeSa, now: Instant, group: Option<DhGroup>) -> bool {
        let Some(suite) = sa.suite else { return false };
        let groups = proposals::our_groups(&sa.conn.ike_proposals);
        let g = group
            .or_else(|| groups.contains(&suite.dh).then_some(suite.dh))
            .or_else(|| groups.first().copied());
        let Some(kex) = g.and_then(|g| KeyExchange::generate(g, self.rng.as_mut()).ok()) else {
            return false;
        };
        info!("rekeying IKE_SA {}[{}]", sa.conn.name, sa.id);
        let spi = loop {
            let s = self.alloc_spi();
            if s != sa.our_spi() {
                break s;
            }
        };
        let mut ni = vec![0u8; NONCE_LEN];
        self.rng.fill(&mut ni);
        let payloads = vec![
            Payload::Sa(proposals::ike_rekey_to_wire(
                &sa.conn.ike_proposals,
                spi,
                kex.group(),
            )),
            Payload::Nonce(ni.clone()),
            Payload::Ke {
                group: kex.group().transform_id(),
                data: kex.public_key().to_vec(),
            },
        ];
        self.send_request(
            sa,
            now,
            exchange::CREATE_CHILD_SA,
            payloads,
            ReqKind::RekeyIke(IkeRekey {
                spi,
                ni,
                kex,
                collision: None,
            }),
        );
        true
    }

    fn on_timer(&mut self, sa: &mut IkeSa, now: Instant) -> Outcome {
        // incomplete IKE fragment sets go when they time out, not only on the next fragment
        sa.frag.expire(now, &mut self.stats);
        if sa.state == State::InitDone && sa.half_open_deadline.is_some_and(|d| d <= now) {
            debug!("half-open IKE_SA {}[{}] timed out", sa.conn.name, sa.id);
            self.stats.half_open_expired += 1;
            return Outcome::Discard;
        }
        if sa.superseded_deadline.is_some_and(|d| d <= now) {
            // The peer never deleted the replaced IKE SA (or never completed the collision).
            return Outcome::Close(CloseReason::Deleted { by_peer: false });
        }
        self.lifecycle_timers(sa, now);
        let tries = sa.conn.retransmit.tries;
        let cfg = sa.conn.retransmit;
        let Some(p) = sa.pending.as_mut() else {
            return Outcome::Keep;
        };
        if p.deadline > now {
            return Outcome::Keep;
        }
        if p.sent > tries {
            debug!(
                "giving up on request {} of IKE_SA {}[{}]",
                p.msg_id, sa.conn.name, sa.id
            );
            return match p.kind {
                ReqKind::DeleteIke => Outcome::Close(CloseReason::Deleted { by_peer: false }),
                _ => Outcome::Close(CloseReason::Timeout),
            };
        }
        debug!(
            "retransmit {} of request {} (IKE_SA {}[{}])",
            p.sent, p.msg_id, sa.conn.name, sa.id
        );
        p.deadline = after(now, rto(&cfg, p.sent));
        p.sent += 1;
        let (l, r, d) = (p.local, p.remote, p.data.clone());
        self.stats.retransmits_sent += 1;
        self.transmit_all(l, r, d); // all fragments as a unit (RFC 7383 2.5)
        Outcome::Keep
    }

    /// Rekey, expiry, retry and DPD timers: due ones become tasks (sent by `kick`).
    fn lifecycle_timers(&mut self, sa: &mut IkeSa, now: Instant) {
        if sa.state != State::Established || sa.superseded {
            return;
        }
        // Hard lifetime of CHILD_SAs: remove locally now, tell the peer.
        let expired: Vec<usize> = sa
            .children
            .iter()
            .enumerate()
            .filter(|(_, c)| c.expire_at.is_some_and(|t| t <= now))
            .map(|(i, _)| i)
            .collect();
        for i in expired.into_iter().rev() {
            info!("CHILD_SA of IKE_SA {}[{}] expired", sa.conn.name, sa.id);
            self.expire_child(sa, i);
        }
        if !sa.active() {
            return;
        }
        if sa.replace_at.is_some_and(|t| t <= now) {
            info!(
                "IKE_SA {}[{}] replaced by a newer IKE_SA of '{}' (unique = replace), deleting",
                sa.conn.name,
                sa.id,
                sa.remote_id_str()
            );
            sa.replaced = true;
            Self::queue_ike_delete(sa);
            return;
        }
        if sa.expire_at.is_some_and(|t| t <= now) {
            // Hard lifetime of the IKE SA (not replaced by a rekey in time).
            info!(
                "IKE_SA {}[{}] lifetime expired, deleting",
                sa.conn.name, sa.id
            );
            sa.expire_at = None;
            sa.delete_queued = true;
            sa.to_create.clear();
            return;
        }
        if sa.reauth_at.is_some_and(|t| t <= now) {
            sa.reauth_at = None;
            self.start_reauth(sa, now);
        }
        if sa.rekey_at.is_some_and(|t| t <= now) {
            sa.rekey_at = None;
            if !sa.tasks.contains(&Task::RekeyIke) {
                sa.tasks.push_back(Task::RekeyIke);
            }
        }
        let mut i = 0;
        while i < sa.delayed.len() {
            if sa.delayed.get(i).is_some_and(|d| d.0 <= now) {
                let (_, t) = sa.delayed.swap_remove(i);
                match t {
                    Task::Create(name) => {
                        if !sa.has_child(&name) {
                            sa.to_create.push_back(name);
                        }
                    }
                    t => {
                        if !sa.tasks.contains(&t) {
                            sa.tasks.push_back(t);
                        }
                    }
                }
            } else {
                i += 1;
            }
        }
        for c in &mut sa.children {
            if c.state == ChildState::Installed && c.rekey_at.is_some_and(|t| t <= now) {
                c.rekey_at = None;
                let t = Task::RekeyChild(c.sa.inbound.spi);
                if !sa.tasks.contains(&t) {
                    sa.tasks.push_back(t);
                }
            }
        }
        if sa.dpd_due().is_some_and(|t| t <= now) {
            // RFC 7296 1.4: an empty INFORMATIONAL request checks liveness.
            sa.last_rx = now;
            sa.tasks.push_back(Task::Dpd);
        }
        if sa.keepalive_due().is_some_and(|t| t <= now) {
            sa.last_tx = now;
            // A request about to go out (`kick`) refreshes the mapping just as well.
            let request_now =
                sa.pending.is_none() && !(sa.tasks.is_empty() && sa.to_create.is_empty());
            if !request_now {
                // RFC 3948 4: a single 0xFF octet keeps the NAT mapping alive.
                self.stats.nat_keepalives_sent += 1;
                debug!(
                    "IKE_SA {}[{}]: sending NAT keepalive to {}",
                    sa.conn.name, sa.id, sa.remote
                );
                self.transmit(sa.local, sa.remote, vec![0xFF]);
            }
        }
    }

    // ---------------------------------------------------------------------------------------
    // Sending

    fn header(sa: &IkeSa, exch: u8, mid: u32, response: bool) -> Header {
        let mut f = if sa.initiator { flags::INITIATOR } else { 0 };
        if response {
            f |= flags::RESPONSE;
        }
        Header {
            spi_i: sa.spi_i.get(),
            spi_r: sa.spi_r.get(),
            next_payload: 0,
            version: IKE_VERSION,
            exchange: exch,
            flags: f,
            message_id: mid,
            length: 0,
        }
    }

    fn protect(
        &mut self,
        sa: &IkeSa,
        exch: u8,
        mid: u32,
        response: bool,
        payloads: &[Payload],
    ) -> Option<Vec<u8>> {
        let keys = sa.keys.as_ref()?;
        let h = Self::header(sa, exch, mid, response);
        let out = sk::seal(&keys.tx, self.rng.as_mut(), &h, payloads);
        self.sealed(sa, out)
    }

    /// Log and count a message that could not be built; `None` then (nothing is sent).
    fn sealed<T>(&mut self, sa: &IkeSa, out: Result<T, sk::SealError>) -> Option<T> {
        match out {
            Ok(d) => Some(d),
            Err(sk::SealError::Crypto) => {
                warn!("IKE_SA {}[{}]: encryption failed", sa.conn.name, sa.id);
                None
            }
            Err(sk::SealError::Encode(e)) => {
                self.emit_failed(&sa.conn.name, &e);
                None
            }
        }
    }

    /// A message of ours cannot be encoded: log, count, send nothing.
    fn emit_failed(&mut self, conn: &str, e: &fs_wire::ike::WireError) {
        warn!("{conn}: message not sent, it cannot be encoded: {e}");
        self.stats.emit_failures += 1;
    }

    /// Like `protect`, but split into SKF fragments when negotiated and the message exceeds
    /// the connection's `fragment_size` (RFC 7383 2.5).
    fn protect_frags(
        &mut self,
        sa: &IkeSa,
        exch: u8,
        mid: u32,
        response: bool,
        payloads: &[Payload],
    ) -> Option<Vec<Vec<u8>>> {
        let keys = sa.keys.as_ref()?;
        let h = Self::header(sa, exch, mid, response);
        let max = (sa.frag.negotiated && sa.conn.fragmentation)
            .then(|| fragment::max_message_len(sa.conn.fragment_size, sa.local, sa.remote));
        let out = fragment::seal(&keys.tx, self.rng.as_mut(), &h, payloads, max);
        self.sealed(sa, out)
    }

    /// Send every datagram of a (possibly fragmented) message.
    fn transmit_all(&mut self, local: SocketAddr, remote: SocketAddr, data: Vec<Vec<u8>>) {
        if data.len() > 1 {
            self.stats.fragments_sent += data.len() as u64;
        }
        for d in data {
            self.transmit(local, remote, d);
        }
    }

    /// Resend our cached response to `mid` (every fragment if it was fragmented).
    fn resend_response(&mut self, sa: &IkeSa, mid: u32, resp: Vec<u8>) {
        self.stats.retransmits_answered += 1;
        let data = match sa.frag.cached_response(mid) {
            Some(f) => f.to_vec(),
            None => vec![resp],
        };
        self.transmit_all(sa.local, sa.remote, data);
    }

    fn start_pending(
        &mut self,
        sa: &mut IkeSa,
        now: Instant,
        mid: u32,
        exch: u8,
        data: Vec<Vec<u8>>,
        kind: ReqKind,
    ) {
        self.transmit_all(sa.local, sa.remote, data.clone());
        sa.pending = Some(Pending {
            msg_id: mid,
            exchange: exch,
            data,
            local: sa.local,
            remote: sa.remote,
            sent: 1,
            deadline: after(now, rto(&sa.conn.retransmit, 0)),
            kind,
        });
    }

    fn send_request(
        &mut self,
        sa: &mut IkeSa,
        now: Instant,
        exch: u8,
        payloads: Vec<Payload>,
        kind: ReqKind,
    ) {
        let mid = sa.next_req_id;
        sa.next_req_id = sa.next_req_id.wrapping_add(1);
        if let Some(data) = self.protect_frags(sa, exch, mid, false, &payloads) {
            self.start_pending(sa, now, mid, exch, data, kind);
        }
    }

    /// Answer request `mid` and cache the answer for retransmitted requests (RFC 7296 2.1).
    fn respond(&mut self, sa: &mut IkeSa, exch: u8, mid: u32, payloads: Vec<Payload>) {
        if let Some(data) = self.protect_frags(sa, exch, mid, true, &payloads) {
            self.transmit_all(sa.local, sa.remote, data.clone());
            sa.frag.cache_response(mid, &data);
            sa.last_response = Some((mid, data.into_iter().next().unwrap_or_default()));
        }
        sa.expected_req_id = mid.wrapping_add(1);
    }

    /// An unencrypted IKE_SA_INIT error response (stateless, RFC 7296 1.2/2.6).
    fn respond_init_notify(
        &mut self,
        req: &Header,
        local: SocketAddr,
        remote: SocketAddr,
        ntype: u16,
        data: Vec<u8>,
    ) {
        let h = Header {
            spi_i: req.spi_i,
            spi_r: 0,
            next_payload: 0,
            version: IKE_VERSION,
            exchange: exchange::IKE_SA_INIT,
            flags: flags::RESPONSE,
            message_id: 0,
            length: 0,
        };
        let m = Message {
            header: h,
            payloads: vec![Payload::notify(ntype, data)],
        };
        match m.emit() {
            Ok(d) => self.transmit(local, remote, d),
            Err(e) => self.emit_failed("IKE_SA_INIT", &e),
        }
    }

    /// A message with a major version above ours.
    fn on_invalid_major_version(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
    ) {
        //= https://www.rfc-editor.org/rfc/rfc7296#section-2.5
        //# If an endpoint receives a message with a higher major version number,
        //# it MUST drop the message and SHOULD send an unauthenticated Notify
        //# message of type INVALID_MAJOR_VERSION containing the highest
        //# (closest) version number it supports.
        let Ok(req) = Header::parse(data) else {
            self.stats.dropped_malformed += 1;
            return;
        };
        if req.is_response() {
            // Only requests are answered (RFC 7296 1.5: the answer is a response).
            self.stats.dropped_malformed += 1;
            return;
        }
        if !self.major_version_answers.take(now) {
            self.stats.invalid_major_version_suppressed += 1;
            return;
        }
        self.stats.invalid_major_version_sent += 1;
        debug!(%remote, "IKE major version {} not supported, answering", req.version >> 4);
        //= https://www.rfc-editor.org/rfc/rfc7296#section-1.5
        //# In the second and third cases, the message is always sent without
        //# cryptographic protection (outside of an IKE SA), and includes either
        //# an INVALID_IKE_SPI or an INVALID_MAJOR_VERSION notification (with no
        //# notification data).  The message is a response message, and thus it
        //# is sent to the IP address and port from whence it came with the same
        //# IKE SPIs and the Message ID and Exchange Type are copied from the
        //# request.  The Response flag is set to 1, and the version flags are
        //# set in the normal fashion.
        let initiator = if req.flags & flags::INITIATOR == 0 {
            flags::INITIATOR
        } else {
            0
        };
        let h = Header {
            spi_i: req.spi_i,
            spi_r: req.spi_r,
            next_payload: 0,
            version: IKE_VERSION,
            exchange: req.exchange,
            flags: flags::RESPONSE | initiator,
            message_id: req.message_id,
            length: 0,
        };
        let m = Message {
            header: h,
            payloads: vec![Payload::notify(nt::INVALID_MAJOR_VERSION, Vec::new())],
        };
        match m.emit() {
            Ok(d) => self.transmit(local, remote, d),
            Err(e) => self.emit_failed("INVALID_MAJOR_VERSION", &e),
        }
    }

    fn send_init(&mut self, sa: &mut IkeSa, now: Instant) {
        let Some(kex) = sa.kex.as_ref() else { return };
        let mut payloads = Vec::new();
        if let Some(c) = &sa.cookie {
            // RFC 7296 2.6: the COOKIE notify comes first.
            payloads.push(Payload::notify(nt::COOKIE, c.clone()));
        }
        let props = sa
            .conn
            .ike_proposals
            .iter()
            .enumerate()
            .map(|(i, p)| proposals::ike_to_wire(u8::try_from(i + 1).unwrap_or(u8::MAX), p))
            .collect();
        payloads.push(Payload::Sa(props));
        payloads.push(Payload::Ke {
            group: kex.group().transform_id(),
            data: kex.public_key().to_vec(),
        });
        payloads.push(Payload::Nonce(sa.ni.clone()));
        let src = if sa.conn.force_encap {
            // Fake the source hash so both sides detect a NAT and use UDP encapsulation
            // (what strongSwan does for `encap = yes`).
            let mut f = vec![0u8; 20];
            self.rng.fill(&mut f);
            f
        } else {
            sk::nat_hash(sa.spi_i, IkeSpi(0), sa.local)
        };
        payloads.push(Payload::notify(nt::NAT_DETECTION_SOURCE_IP, src));
        payloads.push(Payload::notify(
            nt::NAT_DETECTION_DESTINATION_IP,
            sk::nat_hash(sa.spi_i, IkeSpi(0), sa.remote),
        ));
        if sa.conn.fragmentation {
            // RFC 7383 2.3
            payloads.push(Payload::notify(
                nt::IKEV2_FRAGMENTATION_SUPPORTED,
                Vec::new(),
            ));
        }
        if sa.conn.prefer_udp_encap {
            payloads.push(udp_pref_notify());
        }
        let h = Self::header(sa, exchange::IKE_SA_INIT, 0, false);
        let data = match (Message {
            header: h,
            payloads,
        })
        .emit()
        {
            Ok(d) => d,
            Err(e) => {
                self.emit_failed(&sa.conn.name, &e);
                return;
            }
        };
        sa.init_req = data.clone();
        self.start_pending(sa, now, 0, exchange::IKE_SA_INIT, vec![data], ReqKind::Init);
    }

    /// Our CHILD_SA proposal payloads: [USE_TRANSPORT_MODE], [N(REKEY_SA)], SA, [Ni, [KEi]],
    /// TSi, TSr. `nonce` is given for CREATE_CHILD_SA; then a KE is added if the ESP proposals
    /// name DH groups (PFS, RFC 7296 1.3.1), of `group` if given. `rekey` is the CHILD_SA being
    /// rekeyed (its selectors are reused, RFC 7296 1.3.3).
    fn child_proposal(
        &mut self,
        sa: &IkeSa,
        cfg: &ChildConfig,
        nonce: Option<Vec<u8>>,
        rekey: Option<&ChildSa>,
        group: Option<DhGroup>,
    ) -> (ChildProposal, Vec<Payload>) {
        let spi_in = self.alloc_child_spi(sa);
        let local_ts = if let Some(r) = rekey {
            r.local_ts.clone()
        } else if cfg.local_ts.is_empty() {
            vec![host_ts(sa.local.ip())]
        } else {
            cfg.local_ts.clone()
        };
        let remote_ts = if let Some(r) = rekey {
            r.remote_ts.clone()
        } else if cfg.remote_ts.is_empty() {
            vec![host_ts(sa.remote.ip())]
        } else {
            cfg.remote_ts.clone()
        };
        let transport = cfg.mode == Mode::Transport;
        let create_child = nonce.is_some();
        let kex = if create_child {
            group
                .or_else(|| proposals::esp_groups(&cfg.esp_proposals).first().copied())
                .and_then(|g| KeyExchange::generate(g, self.rng.as_mut()).ok())
        } else {
            None
        };
        let mut p = Vec::new();
        if transport {
            p.push(Payload::notify(nt::USE_TRANSPORT_MODE, Vec::new()));
        }
        if let Some(r) = rekey {
            // RFC 7296 1.3.3: the SPI is the one we expect in inbound packets.
            p.push(Payload::Notify(fs_wire::ike::Notify {
                protocol: protocol_id::ESP,
                spi: r.inbound.spi.to_be_bytes().to_vec(),
                ntype: nt::REKEY_SA,
                data: Vec::new(),
            }));
        }
        let props = cfg
            .esp_proposals
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let mut e = e.clone();
                if let Some(k) = kex.as_ref() {
                    if let Some(j) = e.dh.iter().position(|g| *g == k.group()) {
                        e.dh.swap(0, j);
                    }
                }
                proposals::esp_to_wire(
                    u8::try_from(i + 1).unwrap_or(u8::MAX),
                    &e,
                    spi_in,
                    create_child,
                )
            })
            .collect();
        p.push(Payload::Sa(props));
        if let Some(n) = &nonce {
            p.push(Payload::Nonce(n.clone()));
        }
        if let Some(k) = &kex {
            p.push(Payload::Ke {
                group: k.group().transform_id(),
                data: k.public_key().to_vec(),
            });
        }
        p.push(Payload::TsI(local_ts.clone()));
        p.push(Payload::TsR(remote_ts.clone()));
        let cp = ChildProposal {
            name: cfg.name.clone(),
            spi_in,
            ni: nonce.unwrap_or_default(),
            transport,
            local_ts,
            remote_ts,
            rekey: rekey.map(|r| r.inbound.spi),
            kex,
            collision: None,
        };
        (cp, p)
    }

    fn send_auth(&mut self, sa: &mut IkeSa, now: Instant) -> Outcome {
        let (Some(suite), Some(keys)) = (sa.suite, sa.keys.as_ref()) else {
            return Outcome::Close(CloseReason::Error("INTERNAL".into()));
        };
        let idi = IdPayload::from(&sa.conn.local_id);
        let auth = ikev2::psk_auth(
            suite.prf,
            &sa.conn.psk,
            &sa.init_req,
            &sa.nr,
            &keys.sk_pi,
            &idi.body(),
        );
        let mut payloads = vec![Payload::IdI(idi)];
        let first_contact = !self
            .sas
            .values()
            .any(|s| s.conn.name == sa.conn.name && s.established_at.is_some());
        #[cfg(test)]
        let first_contact = first_contact && !self.test_omit_initial_contact;
        if first_contact {
            payloads.push(Payload::notify(nt::INITIAL_CONTACT, Vec::new()));
        }
        if let Some(r) = &sa.conn.remote_id {
            payloads.push(Payload::IdR(IdPayload::from(r)));
        }
        payloads.push(Payload::Auth {
            method: auth_method::PSK,
            data: auth,
        });
        let mut cp = None;
        while let Some(name) = sa.to_create.pop_front() {
            if let Some(cfg) = sa.conn.children.iter().find(|c| c.name == name).cloned() {
                let (p, pl) = self.child_proposal(sa, &cfg, None, None, None);
                payloads.extend(pl);
                cp = Some(p);
                break;
            }
        }
        sa.state = State::AuthSent;
        self.send_request(sa, now, exchange::IKE_AUTH, payloads, ReqKind::Auth(cp));
        Outcome::Keep
    }

    // ---------------------------------------------------------------------------------------
    // IKE_SA_INIT

    fn on_init_request(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
        msg: &Message,
    ) {
        let h = &msg.header;
        if let Some(spi) = self.init_index.get(&(remote, IkeSpi(h.spi_i))) {
            // Retransmitted IKE_SA_INIT: resend our cached response.
            if let Some(sa) = self.sas.get(spi) {
                if let Some((0, resp)) = &sa.last_response {
                    let (l, r, d) = (sa.local, sa.remote, resp.clone());
                    self.stats.retransmits_answered += 1;
                    self.transmit(l, r, d);
                    return;
                }
            }
            self.stats.dropped_message_id += 1;
            return;
        }
        // DoS guard (cookie.rs): COOKIE / half-open caps before any per-request work.
        let limits = self.config.limits;
        match self.dos.admit(
            now,
            &limits,
            self.rng.as_mut(),
            msg,
            remote.ip(),
            &mut self.stats,
        ) {
            Admit::Accept => {}
            Admit::Cookie(c) => return self.respond_init_notify(h, local, remote, nt::COOKIE, c),
            Admit::Drop => return,
        }
        if let Some(ptype) = critical_unknown(&msg.payloads) {
            // RFC 7296 2.5
            self.respond_init_notify(
                h,
                local,
                remote,
                nt::UNSUPPORTED_CRITICAL_PAYLOAD,
                vec![ptype],
            );
            return;
        }
        let p = parts(&msg.payloads);
        let (Some(props), Some((group, ke_data)), Some(ni)) = (p.sa, p.ke, p.nonce) else {
            limited!(now, DEBUG, %remote, "IKE_SA_INIT request without SA/KE/Nonce");
            self.stats.dropped_malformed += 1;
            return;
        };
        if !nonce_ok(ni) {
            self.stats.dropped_malformed += 1;
            return;
        }
        let conns: Vec<&ConnConfig> = self
            .config
            .connections
            .iter()
            .filter(|c| {
                addr_ok(&c.local_addrs, local.ip()) && addr_ok(&c.remote_addrs, remote.ip())
            })
            .collect();
        if conns.is_empty() {
            // No connection for this address pair: a stateless answer, no SA, no event, and
            // at most one info line per NO_MATCH_LOG_INTERVAL (a flood must not flood the log).
            self.stats.init_no_match += 1;
            self.no_match_unlogged += 1;
            limited!(now, DEBUG, %remote, %local, "IKE_SA_INIT matches no connection: NO_PROPOSAL_CHOSEN");
            if self
                .no_match_logged
                .is_none_or(|t| now.saturating_duration_since(t) >= NO_MATCH_LOG_INTERVAL)
            {
                info!(
                    "IKE_SA_INIT from {remote} to {local} matches no connection ({} such request(s) since the last report), answered NO_PROPOSAL_CHOSEN",
                    self.no_match_unlogged
                );
                self.no_match_logged = Some(now);
                self.no_match_unlogged = 0;
            }
            self.respond_init_notify(h, local, remote, nt::NO_PROPOSAL_CHOSEN, Vec::new());
            return;
        }
        // Prefer a selection whose group is the one the initiator already sent a KE for (saves
        // an INVALID_KE_PAYLOAD round trip, like strongSwan); else our normal preference.
        let chosen = conns.iter().find_map(|c| {
            let mut same_group = c.ike_proposals.clone();
            for p in &mut same_group {
                p.dh.retain(|g| g.transform_id() == group);
            }
            proposals::select_ike(&same_group, props)
                .or_else(|| proposals::select_ike(&c.ike_proposals, props))
                .map(|(num, s)| ((*c).clone(), num, s))
        });
        let Some((conn, num, suite)) = chosen else {
            let name = conns.first().map(|c| c.name.clone()).unwrap_or_default();
            let id = IkeSaId(self.next_id);
            self.next_id += 1;
            limited!(now, INFO, "received proposals from {remote} unacceptable");
            info!("IKE_SA {name}[{id}] failed: NO_PROPOSAL_CHOSEN");
            self.respond_init_notify(h, local, remote, nt::NO_PROPOSAL_CHOSEN, Vec::new());
            self.events.push_back(Event::IkeSaClosed {
                ike_sa: id,
                conn: name,
                reason: CloseReason::NoProposalChosen { by_peer: false },
                established: false,
            });
            return;
        };
        if group != suite.dh.transform_id() {
            // RFC 7296 1.2: tell the initiator which group we want; keep no state.
            limited!(now, DEBUG, %remote, "KE group {group} unacceptable, requesting {}", suite.dh.name());
            self.respond_init_notify(
                h,
                local,
                remote,
                nt::INVALID_KE_PAYLOAD,
                suite.dh.transform_id().to_be_bytes().to_vec(),
            );
            return;
        }
        let Ok(kex) = KeyExchange::generate(suite.dh, self.rng.as_mut()) else {
            warn!("key exchange generation failed");
            return;
        };
        let Ok(g_ir) = kex.shared_secret(ke_data) else {
            limited!(now, DEBUG, %remote, "invalid KE payload");
            self.stats.dropped_malformed += 1;
            return;
        };
        let spi_r = self.alloc_spi();
        let mut nr = vec![0u8; NONCE_LEN];
        self.rng.fill(&mut nr);
        let spi_i = IkeSpi(h.spi_i);
        let k = ikev2::derive_ike_sa_keys(
            suite.prf,
            suite.encr,
            suite.integ,
            ni,
            &nr,
            &g_ir,
            spi_i.get(),
            spi_r.get(),
        );
        let tx = Cipher::new(suite.encr, suite.integ, &k.sk_er, &k.sk_ar);
        let rx = Cipher::new(suite.encr, suite.integ, &k.sk_ei, &k.sk_ai);
        let (Ok(tx), Ok(rx)) = (tx, rx) else {
            warn!("could not key IKE SA transforms");
            return;
        };
        // NAT detection (RFC 7296 2.23): the request's hashes use SPIr = 0.
        let src = notify_data(&msg.payloads, nt::NAT_DETECTION_SOURCE_IP);
        let dst = notify_data(&msg.payloads, nt::NAT_DETECTION_DESTINATION_IP);
        let natt = !src.is_empty() || !dst.is_empty();
        let (mut nat_local, mut nat_remote) = (false, false);
        if natt {
            let hr = sk::nat_hash(spi_i, IkeSpi(0), remote);
            let hl = sk::nat_hash(spi_i, IkeSpi(0), local);
            nat_remote = !src.contains(&hr.as_slice());
            nat_local = !dst.contains(&hl.as_slice());
        }
        let id = IkeSaId(self.next_id);
        self.next_id += 1;
        let mut payloads = vec![
            Payload::Sa(vec![proposals::ike_suite_to_wire(num, &suite)]),
            Payload::Ke {
                group: suite.dh.transform_id(),
                data: kex.public_key().to_vec(),
            },
            Payload::Nonce(nr.clone()),
        ];
        if natt {
            let src = if conn.force_encap {
                let mut f = vec![0u8; 20];
                self.rng.fill(&mut f);
                f
            } else {
                sk::nat_hash(spi_i, spi_r, local)
            };
            payloads.push(Payload::notify(nt::NAT_DETECTION_SOURCE_IP, src));
            payloads.push(Payload::notify(
                nt::NAT_DETECTION_DESTINATION_IP,
                sk::nat_hash(spi_i, spi_r, remote),
            ));
        }
        // RFC 7383 2.3: answer the peer's IKEV2_FRAGMENTATION_SUPPORTED if we support it too.
        let frag_ok = conn.fragmentation && msg.notify(nt::IKEV2_FRAGMENTATION_SUPPORTED).is_some();
        if frag_ok {
            payloads.push(Payload::notify(
                nt::IKEV2_FRAGMENTATION_SUPPORTED,
                Vec::new(),
            ));
        }
        // Both data planes prefer ESP in UDP: answer the notify; the initiator moves to 4500.
        let udp_pref = conn.prefer_udp_encap && has_udp_pref(&msg.payloads);
        if udp_pref {
            payloads.push(udp_pref_notify());
        }
        let rh = Header {
            spi_i: spi_i.get(),
            spi_r: spi_r.get(),
            next_payload: 0,
            version: IKE_VERSION,
            exchange: exchange::IKE_SA_INIT,
            flags: flags::RESPONSE,
            message_id: 0,
            length: 0,
        };
        let resp = match (Message {
            header: rh,
            payloads,
        })
        .emit()
        {
            Ok(d) => d,
            Err(e) => {
                self.emit_failed(&conn.name, &e);
                return;
            }
        };
        self.transmit(local, remote, resp.clone());
        debug!(
            "IKE_SA {}[{id}] responding to {remote} with {:?}",
            conn.name, suite
        );
        let sa = IkeSa {
            init_key: Some((remote, spi_i)),
            suite: Some(suite),
            ni: ni.to_vec(),
            nr,
            keys: Some(Keys {
                sk_d: k.sk_d,
                sk_pi: k.sk_pi,
                sk_pr: k.sk_pr,
                tx,
                rx,
            }),
            init_req: data.to_vec(),
            init_resp: resp.clone(),
            nat_local,
            nat_remote,
            udp_pref,
            expected_req_id: 1,
            last_response: Some((0, resp)),
            half_open_deadline: Some(after(now, limits.half_open_timeout)),
            frag: FragState::new(frag_ok),
            ..IkeSa::new(
                id,
                conn,
                false,
                State::InitDone,
                spi_i,
                spi_r,
                local,
                remote,
                now,
            )
        };
        self.init_index.insert((remote, spi_i), spi_r);
        self.sas.insert(spi_r, sa);
        self.dos.opened(spi_r, remote.ip(), &mut self.stats);
    }

    fn on_init_response(
        &mut self,
        sa: &mut IkeSa,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
        msg: &Message,
    ) -> Outcome {
        if sa.state != State::InitSent
            || msg.header.message_id != 0
            || !matches!(
                sa.pending,
                Some(Pending {
                    kind: ReqKind::Init,
                    ..
                })
            )
        {
            self.stats.dropped_unexpected += 1;
            return Outcome::Keep;
        }
        let pl = &msg.payloads;
        if let Some(c) = msg.notify(nt::COOKIE) {
            if sa.init_restarts >= MAX_INIT_RESTARTS || c.data.is_empty() {
                return Outcome::Close(CloseReason::Error("COOKIE".into()));
            }
            debug!("IKE_SA {}[{}]: retrying with COOKIE", sa.conn.name, sa.id);
            sa.init_restarts += 1;
            sa.cookie = Some(c.data.clone());
            self.send_init(sa, now);
            return Outcome::Keep;
        }
        if let Some(n) = msg.notify(nt::INVALID_KE_PAYLOAD) {
            let g = n
                .data
                .first_chunk::<2>()
                .and_then(|b| fs_crypto::DhGroup::from_wire(u16::from_be_bytes(*b)));
            let cur = sa.kex.as_ref().map(|k| k.group());
            match g {
                Some(g)
                    if proposals::our_groups(&sa.conn.ike_proposals).contains(&g)
                        && Some(g) != cur
                        && sa.init_restarts < MAX_INIT_RESTARTS =>
                {
                    info!(
                        "peer didn't accept DH group {:?}, it requested {}",
                        cur.map(|c| c.name()),
                        g.name()
                    );
                    let Ok(kex) = KeyExchange::generate(g, self.rng.as_mut()) else {
                        return Outcome::Close(CloseReason::Error("INVALID_KE_PAYLOAD".into()));
                    };
                    sa.init_restarts += 1;
                    sa.kex = Some(kex);
                    self.send_init(sa, now);
                    return Outcome::Keep;
                }
                _ => return Outcome::Close(CloseReason::Error("INVALID_KE_PAYLOAD".into())),
            }
        }
        if let Some(t) = first_error(pl) {
            return Outcome::Close(reason_from_notify(t, true));
        }
        let p = parts(pl);
        let (Some(props), Some((group, ke_data)), Some(nr)) = (p.sa, p.ke, p.nonce) else {
            return Outcome::Close(CloseReason::Error("INVALID_SYNTAX".into()));
        };
        let Some(suite) = proposals::check_ike_response(&sa.conn.ike_proposals, props) else {
            info!(
                "IKE_SA {}[{}]: invalid proposal selected by peer",
                sa.conn.name, sa.id
            );
            return Outcome::Close(CloseReason::NoProposalChosen { by_peer: false });
        };
        let Some(kex) = sa.kex.take() else {
            return Outcome::Close(CloseReason::Error("INTERNAL".into()));
        };
        if group != suite.dh.transform_id()
            || kex.group() != suite.dh
            || msg.header.spi_r == 0
            || !nonce_ok(nr)
        {
            return Outcome::Close(CloseReason::Error("INVALID_SYNTAX".into()));
        }
        let Ok(g_ir) = kex.shared_secret(ke_data) else {
            return Outcome::Close(CloseReason::Error("INVALID_KE_PAYLOAD".into()));
        };
        sa.pending = None;
        sa.spi_r = IkeSpi(msg.header.spi_r);
        sa.nr = nr.to_vec();
        sa.suite = Some(suite);
        sa.init_resp = data.to_vec();
        sa.local = local;
        sa.remote = remote;
        let k = ikev2::derive_ike_sa_keys(
            suite.prf,
            suite.encr,
            suite.integ,
            &sa.ni,
            nr,
            &g_ir,
            sa.spi_i.get(),
            sa.spi_r.get(),
        );
        let tx = Cipher::new(suite.encr, suite.integ, &k.sk_ei, &k.sk_ai);
        let rx = Cipher::new(suite.encr, suite.integ, &k.sk_er, &k.sk_ar);
        let (Ok(tx), Ok(rx)) = (tx, rx) else {
            return Outcome::Close(CloseReason::Error("INTERNAL".into()));
        };
        sa.keys = Some(Keys {
            sk_d: k.sk_d,
            sk_pi: k.sk_pi,
            sk_pr: k.sk_pr,
            tx,
            rx,
        });
        // RFC 7383 2.3: fragmentation is used only if both sides announced it.
        sa.frag.negotiated =
            sa.conn.fragmentation && has_notify(pl, nt::IKEV2_FRAGMENTATION_SUPPORTED);
        let src = notify_data(pl, nt::NAT_DETECTION_SOURCE_IP);
        let dst = notify_data(pl, nt::NAT_DETECTION_DESTINATION_IP);
        if !src.is_empty() || !dst.is_empty() {
            let hr = sk::nat_hash(sa.spi_i, sa.spi_r, remote);
            let hl = sk::nat_hash(sa.spi_i, sa.spi_r, local);
            sa.nat_remote = !src.contains(&hr.as_slice());
            sa.nat_local = !dst.contains(&hl.as_slice());
        }
        sa.udp_pref = sa.conn.prefer_udp_encap && has_udp_pref(pl);
        if sa.nat_any() || sa.conn.force_encap || sa.udp_pref {
            // RFC 7296 2.23: continue on port 4500 from IKE_AUTH on.
            sa.local.set_port(NATT_PORT);
            if sa.remote.port() == IKE_PORT {
                sa.remote.set_port(NATT_PORT);
            }
            debug!(
                "IKE_SA {}[{}]: NAT local={} remote={} udp-preferred={}, switching to {}",
                sa.conn.name, sa.id, sa.nat_local, sa.nat_remote, sa.udp_pref, sa.remote
            );
        }
        self.send_auth(sa, now)
    }

    // ---------------------------------------------------------------------------------------
    // Encrypted exchanges

    fn count_open_error(&mut self, e: OpenError, now: Instant, remote: SocketAddr) {
        match e {
            OpenError::Malformed => {
                limited!(now, DEBUG, %remote, "dropping malformed SK payload");
                self.stats.dropped_malformed += 1;
            }
            OpenError::Integrity => {
                limited!(now, DEBUG, %remote, "dropping message with invalid ICV");
                self.stats.dropped_integrity += 1;
            }
        }
    }

    fn open(
        &mut self,
        sa: &mut IkeSa,
        now: Instant,
        data: &[u8],
        msg: &Message,
        remote: SocketAddr,
    ) -> Option<Vec<Payload>> {
        if matches!(msg.payloads.last(), Some(Payload::Skf { .. })) {
            // RFC 7383 2.6: verified and reassembled by `on_fragment`.
            return sa.frag.take_reassembled(msg);
        }
        let keys = sa.keys.as_ref()?;
        match sk::open(&keys.rx, data, msg) {
            Ok(p) => Some(p),
            Err(e) => {
                self.count_open_error(e, now, remote);
                None
            }
        }
    }

    /// Follow the peer's address (RFC 7296 2.23), on authenticated messages only: after
    /// NAT-T floating to port 4500, and when a NAT rebinds the peer's mapping. "The host that
    /// is not behind a NAT SHOULD send all packets ... to the IP address and port received
    /// from the last valid authenticated packet"; a host behind a NAT SHOULD NOT (DoS), unless
    /// it is the responder (a static NAT in front of it, like strongSwan assumes).
    fn update_addrs(&mut self, sa: &mut IkeSa, local: SocketAddr, remote: SocketAddr) {
        if sa.local == local && sa.remote == remote {
            return;
        }
        let float = remote.port() == NATT_PORT && sa.remote.port() == IKE_PORT;
        let established = matches!(sa.state, State::Established | State::Deleting);
        let follow = if established {
            float || (sa.nat_remote && (!sa.nat_local || !sa.initiator))
        } else {
            float || sa.nat_any()
        };
        if !follow {
            return;
        }
        let old = sa.remote;
        sa.local = local;
        sa.remote = remote;
        sa.probe_remote = None;
        if let Some(p) = sa.pending.as_mut() {
            // Retransmissions follow too.
            p.local = local;
            p.remote = remote;
        }
        for c in &mut sa.children {
            c.sa.local = local;
            c.sa.remote = remote;
        }
        if established && old != remote {
            info!(
                "IKE_SA {}[{}]: peer moved from {old} to {remote} (NAT rebinding)",
                sa.conn.name, sa.id
            );
            self.stats.peer_endpoint_changes += 1;
            self.events.push_back(Event::PeerEndpointChanged {
                ike_sa: sa.id,
                conn: sa.conn.name.clone(),
                remote,
            });
        }
    }

    fn on_request(
        &mut self,
        sa: &mut IkeSa,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
        msg: &Message,
    ) -> Outcome {
        let mid = msg.header.message_id;
        if sa.keys.is_none() || sa.adopt_pending {
            // adopt_pending: the peer retransmits once our rekey collision is decided.
            self.stats.dropped_unexpected += 1;
            return Outcome::Keep;
        }
        if let Some((last, resp)) = &sa.last_response {
            if *last == mid && mid.wrapping_add(1) == sa.expected_req_id {
                // A retransmitted request: verify it, then resend the cached answer (2.1).
                let resp = resp.clone();
                if self.open(sa, now, data, msg, remote).is_some() {
                    // The retransmission may come through a new NAT mapping: answer there.
                    sa.last_rx = now;
                    self.update_addrs(sa, local, remote);
                    self.resend_response(sa, mid, resp);
                }
                return Outcome::Keep;
            }
        }
        if mid != sa.expected_req_id {
            limited!(now, DEBUG, %remote, "dropping request with message ID {mid}, expected {}", sa.expected_req_id);
            self.stats.dropped_message_id += 1;
            return Outcome::Keep;
        }
        if msg
            .payloads
            .last()
            .is_none_or(|p| !matches!(p, Payload::Sk { .. } | Payload::Skf { .. }))
        {
            self.stats.dropped_malformed += 1;
            return Outcome::Keep;
        }
        let Some(payloads) = self.open(sa, now, data, msg, remote) else {
            return Outcome::Keep;
        };
        sa.last_rx = now;
        self.update_addrs(sa, local, remote);
        let exch = msg.header.exchange;
        if let Some(ptype) = critical_unknown(&payloads) {
            // RFC 7296 2.5: reject the whole message.
            limited!(now, DEBUG, %remote, "unsupported critical payload {ptype}");
            self.respond(
                sa,
                exch,
                mid,
                vec![Payload::notify(
                    nt::UNSUPPORTED_CRITICAL_PAYLOAD,
                    vec![ptype],
                )],
            );
            return if sa.state == State::InitDone {
                Outcome::Close(CloseReason::Error("UNSUPPORTED_CRITICAL_PAYLOAD".into()))
            } else {
                Outcome::Keep
            };
        }
        match (exch, sa.state) {
            (exchange::IKE_AUTH, State::InitDone) => self.on_auth_request(sa, now, mid, &payloads),
            (exchange::INFORMATIONAL, State::Established | State::Deleting) => {
                self.on_info_request(sa, now, mid, &payloads)
            }
            (exchange::CREATE_CHILD_SA, State::Established) => {
                self.on_create_child_request(sa, now, mid, &payloads);
                Outcome::Keep
            }
            (exchange::CREATE_CHILD_SA, State::Deleting) => {
                self.respond(
                    sa,
                    exch,
                    mid,
                    vec![Payload::notify(nt::TEMPORARY_FAILURE, Vec::new())],
                );
                Outcome::Keep
            }
            _ => {
                limited!(now, DEBUG, %remote, "unexpected exchange {exch} in state {:?}", sa.state);
                self.stats.dropped_unexpected += 1;
                Outcome::Keep
            }
        }
    }

    fn established(&mut self, sa: &mut IkeSa, now: Instant) {
        sa.state = State::Established;
        sa.established_at = Some(now);
        sa.half_open_deadline = None;
        sa.last_rx = now;
        if let Some(d) = sa.conn.reauth_time {
            // Reauthentication replaces the IKE rekey (it refreshes all keys too).
            sa.reauth_at = Some(after(now, self.jittered(d, sa.conn.rand_time)));
        } else if let Some(d) = sa.conn.rekey_time {
            sa.rekey_at = Some(after(now, self.jittered(d, sa.conn.rand_time)));
        }
        sa.expire_at = sa.conn.life_time.map(|l| after(now, l));
        info!(
            "IKE_SA {}[{}] established between {}[{}]...{}[{}]",
            sa.conn.name,
            sa.id,
            sa.local.ip(),
            sa.conn.local_id,
            sa.remote.ip(),
            sa.remote_id_str()
        );
        self.events.push_back(Event::IkeSaEstablished {
            ike_sa: sa.id,
            conn: sa.conn.name.clone(),
            local: sa.local,
            remote: sa.remote,
        });
    }

    /// Simultaneous IKE_SA_INIT (both peers initiate the same connection at once) leaves two
    /// IKE SAs, one initiated by each side, each with its CHILD_SAs. Both peers keep the one
    /// whose exchange had the highest lowest nonce and delete the other with a Delete exchange
    /// (like a rekey collision, RFC 7296 2.8.1/2.8.2): both compute the same answer from the
    /// nonces they share, so they converge on one IKE SA with one CHILD_SA per child. The
    /// initiator of the survivor creates children only the deleted one had.
    fn resolve_duplicates(&mut self, sa: &mut IkeSa, now: Instant) {
        let Some(pid) = sa.remote_identity.clone() else {
            return;
        };
        if sa.rekey_count != 0 {
            return;
        }
        let window = total_rto(&sa.conn.retransmit);
        let dup = self
            .sas
            .iter()
            .filter(|(_, o)| {
                o.conn.name == sa.conn.name
                    && o.active()
                    && !o.adopt_pending
                    && o.rekey_count == 0
                    && o.initiator != sa.initiator
                    && o.remote_identity.as_ref() == Some(&pid)
                    && o.established_at
                        .is_some_and(|t| now.saturating_duration_since(t) <= window)
                    // Only genuinely simultaneous initiations: `o` was still being negotiated
                    // when `sa` started. A reauthentication (RFC 7296 2.8.3) starts after the
                    // IKE SA it replaces was established, so that one is not a duplicate.
                    && o.established_at.is_some_and(|t| t >= sa.created_at)
            })
            .map(|(k, _)| *k)
            .min();
        let Some(mut o) = dup.and_then(|k| self.sas.remove(&k)) else {
            return;
        };
        self.stats.duplicates_deleted += 1;
        let key = |x: &IkeSa| lowest(&x.ni, &x.nr);
        let sa_loses = key(sa) < key(&o);
        let (winner, loser) = if sa_loses {
            (&mut o, &mut *sa)
        } else {
            (&mut *sa, &mut o)
        };
        info!(
            "IKE_SA {}[{}] duplicates IKE_SA {}[{}] (simultaneous initiation), deleting it",
            loser.conn.name, loser.id, winner.conn.name, winner.id
        );
        if winner.initiator {
            let mut names: Vec<String> =
                loser.children.iter().map(|c| c.sa.child.clone()).collect();
            names.extend(loser.to_create.iter().cloned());
            for n in names {
                if !winner.has_child(&n) {
                    winner.to_create.push_back(n);
                }
            }
        }
        loser.to_create.clear();
        loser.tasks.clear();
        loser.delayed.clear();
        loser.delete_queued = true;
        self.finish(o, Outcome::Keep, now);
    }

    fn on_auth_request(
        &mut self,
        sa: &mut IkeSa,
        now: Instant,
        mid: u32,
        payloads: &[Payload],
    ) -> Outcome {
        let p = parts(payloads);
        let (Some(idi), Some((method, auth)), Some(suite)) = (p.idi, p.auth, sa.suite) else {
            self.respond(
                sa,
                exchange::IKE_AUTH,
                mid,
                vec![Payload::notify(nt::INVALID_SYNTAX, Vec::new())],
            );
            return Outcome::Close(CloseReason::Error("INVALID_SYNTAX".into()));
        };
        let peer_id = idi.identity();
        let our_suite = [proposals::ike_suite_to_wire(1, &suite)];
        let (lip, rip) = (sa.local.ip(), sa.remote.ip());
        let fits = |c: &ConnConfig| {
            addr_ok(&c.local_addrs, lip)
                && addr_ok(&c.remote_addrs, rip)
                && proposals::select_ike(&c.ike_proposals, &our_suite).is_some()
                && c.remote_id.as_ref().is_none_or(|r| *r == peer_id)
                && p.idr.is_none_or(|r| r.identity() == c.local_id)
        };
        let conn = if fits(&sa.conn) {
            Some(sa.conn.clone())
        } else {
            self.config.connections.iter().find(|c| fits(c)).cloned()
        };
        let Some(conn) = conn else {
            info!(
                "IKE_SA {}[{}]: no matching peer config for '{}'",
                sa.conn.name, sa.id, peer_id
            );
            self.respond(
                sa,
                exchange::IKE_AUTH,
                mid,
                vec![Payload::notify(nt::AUTHENTICATION_FAILED, Vec::new())],
            );
            return Outcome::Close(CloseReason::AuthenticationFailed { by_peer: false });
        };
        sa.conn = conn;
        let Some(keys) = sa.keys.as_ref() else {
            return Outcome::Close(CloseReason::Error("INTERNAL".into()));
        };
        let expected = ikev2::psk_auth(
            suite.prf,
            &sa.conn.psk,
            &sa.init_req,
            &sa.nr,
            &keys.sk_pi,
            &idi.body(),
        );
        let ok = method == auth_method::PSK
            && aws_lc_rs::constant_time::verify_slices_are_equal(&expected, auth).is_ok();
        if !ok {
            info!(
                "IKE_SA {}[{}]: PSK authentication of '{}' failed",
                sa.conn.name, sa.id, peer_id
            );
            // RFC 7296 2.21.2: the error goes in the (encrypted) IKE_AUTH response.
            self.respond(
                sa,
                exchange::IKE_AUTH,
                mid,
                vec![Payload::notify(nt::AUTHENTICATION_FAILED, Vec::new())],
            );
            return Outcome::Close(CloseReason::AuthenticationFailed { by_peer: false });
        }
        sa.remote_identity = Some(peer_id.clone());
        let idr = IdPayload::from(&sa.conn.local_id);
        let our_auth = ikev2::psk_auth(
            suite.prf,
            &sa.conn.psk,
            &sa.init_resp,
            &sa.ni,
            &keys.sk_pr,
            &idr.body(),
        );
        let unique = sa.conn.unique;
        if has_notify(payloads, nt::INITIAL_CONTACT) && unique != UniquePolicy::Never {
            self.initial_contact(sa, &peer_id);
        } else {
            // Probably a reauthentication by the peer (RFC 7296 2.8.3): it deletes the IKE SAs
            // this one replaces, so they need no reauthentication of their own.
            for o in self.sas.values_mut() {
                if o.conn.name == sa.conn.name
                    && o.remote_identity.as_ref() == Some(&peer_id)
                    && o.established_at.is_some_and(|t| t < sa.created_at)
                {
                    o.reauth_at = None;
                }
            }
        }
        if unique == UniquePolicy::Keep && !self.duplicates(sa, &peer_id).is_empty() {
            info!(
                "IKE_SA {}[{}]: '{}' already has an IKE_SA, refused (unique = keep)",
                sa.conn.name, sa.id, peer_id
            );
            self.respond(
                sa,
                exchange::IKE_AUTH,
                mid,
                vec![Payload::notify(nt::AUTHENTICATION_FAILED, Vec::new())],
            );
            return Outcome::Close(CloseReason::UniqueKeep);
        }
        self.established(sa, now);
        let mut resp = vec![
            Payload::IdR(idr),
            Payload::Auth {
                method: auth_method::PSK,
                data: our_auth,
            },
        ];
        let mut install = None;
        if let (Some(props), Some(tsi), Some(tsr)) = (p.sa, p.tsi, p.tsr) {
            let transport = has_notify(payloads, nt::USE_TRANSPORT_MODE);
            let (ni, nr) = (sa.ni.clone(), sa.nr.clone());
            match self.negotiate_child(sa, props, tsi, tsr, transport, &ni, &nr, None, None, None) {
                Ok((child, pl)) => {
                    resp.extend(pl);
                    install = Some(child);
                }
                Err((t, _, name)) => {
                    resp.push(Payload::notify(t, Vec::new()));
                    self.child_failed(sa, &name, reason_from_notify(t, false));
                }
            }
        }
        self.respond(sa, exchange::IKE_AUTH, mid, resp);
        if let Some(c) = install {
            self.install_child(sa, now, c);
        }
        self.resolve_duplicates(sa, now);
        // (Unless `sa` just lost a simultaneous initiation and is being deleted itself.)
        if unique == UniquePolicy::Replace && sa.active() {
            self.replace_duplicates(sa, &peer_id, now);
        }
        Outcome::Keep
    }

    /// Established IKE SAs the peer `peer_id` created on `sa`'s connection, other than `sa`
    /// (our SPIs, sorted) -- for the `unique` policy, which limits what a peer makes us hold.
    /// Not counted: IKE SAs being deleted or replaced by a rekey, and IKE SAs we initiated
    /// (a simultaneous initiation by both peers is resolved by `resolve_duplicates`, with
    /// the peer's agreement; deleting ours here could make both sides delete a different
    /// one).
    fn duplicates(&self, sa: &IkeSa, peer_id: &Identity) -> Vec<IkeSpi> {
        let mut v: Vec<IkeSpi> = self
            .sas
            .iter()
            .filter(|(_, o)| {
                o.id != sa.id
                    && !o.initiator
                    && o.conn.name == sa.conn.name
                    && o.remote_identity.as_ref() == Some(peer_id)
                    && o.active()
                    && !o.adopt_pending
            })
            .map(|(k, _)| *k)
            .collect();
        v.sort_unstable();
        v
    }

    /// `unique = replace`: the new IKE SA `sa` of `peer_id` replaces the established ones.
    /// From another address they are deleted at once; from the same address the peer is
    /// probably reauthenticating make-before-break (RFC 7296 2.8.3) and deletes the old one
    /// itself once its children are moved, so it gets a grace period first (like strongSwan
    /// did for suspected reauthentications). At most one such IKE SA waits per identity: one
    /// already waiting is deleted at once, so a peer reconnecting without INITIAL_CONTACT
    /// holds at most two established IKE SAs. And at most one replaced IKE SA waits for the
    /// answer to its Delete: an older one (its peer is probably gone) is removed locally.
    fn replace_duplicates(&mut self, sa: &IkeSa, peer_id: &Identity, now: Instant) {
        let mut gone: Vec<IkeSpi> = self
            .sas
            .iter()
            .filter(|(_, o)| {
                o.replaced
                    && o.id != sa.id
                    && o.conn.name == sa.conn.name
                    && o.remote_identity.as_ref() == Some(peer_id)
            })
            .map(|(k, _)| *k)
            .collect();
        gone.sort_unstable();
        for k in gone {
            if let Some(o) = self.sas.remove(&k) {
                debug!(
                    "IKE_SA {}[{}] replaced earlier, its Delete unanswered: removed",
                    o.conn.name, o.id
                );
                self.close(o, CloseReason::Deleted { by_peer: false });
            }
        }
        for k in self.duplicates(sa, peer_id) {
            let Some(mut o) = self.sas.remove(&k) else {
                continue;
            };
            if o.remote.ip() == sa.remote.ip() && o.replace_at.is_none() {
                let grace = Self::superseded_grace(&o);
                info!(
                    "IKE_SA {}[{}] of '{peer_id}' replaced by IKE_SA {}[{}] from the same \
                     address (unique = replace), deleting it in {}s unless the peer does",
                    o.conn.name,
                    o.id,
                    sa.conn.name,
                    sa.id,
                    grace.as_secs()
                );
                o.replace_at = Some(after(now, grace));
                o.reauth_at = None;
            } else {
                info!(
                    "IKE_SA {}[{}] of '{peer_id}' replaced by IKE_SA {}[{}] \
                     (unique = replace), deleting it",
                    o.conn.name, o.id, sa.conn.name, sa.id
                );
                o.replaced = true;
                Self::queue_ike_delete(&mut o);
            }
            self.finish(o, Outcome::Keep, now);
        }
    }

    /// Delete `sa` with a Delete exchange (sent by `kick` when the window is free); nothing
    /// else is started on it any more.
    fn queue_ike_delete(sa: &mut IkeSa) {
        sa.delete_queued = true;
        sa.replace_at = None;
        sa.expire_at = None;
        sa.to_create.clear();
        sa.tasks.clear();
        sa.delayed.clear();
    }

    /// INITIAL_CONTACT (RFC 7296 2.4): the peer has no state from before; delete, locally and
    /// without exchanges, all other IKE SAs of this connection with the same remote identity.
    ///
    /// Except an IKE SA we initiated that became established only after `sa`'s IKE_SA_INIT
    /// arrived: the peer sends INITIAL_CONTACT when it has no established IKE SA at the time
    /// it sends IKE_AUTH, and it established ours before we did, so such an SA is not stale but
    /// the other half of a simultaneous initiation (both sides sent INITIAL_CONTACT). Deleting
    /// it locally would leave the peer with CHILD_SAs we no longer have; duplicates are
    /// resolved by `resolve_duplicates` instead, with Delete exchanges.
    fn initial_contact(&mut self, sa: &IkeSa, peer_id: &Identity) {
        let mut old: Vec<IkeSpi> = self
            .sas
            .iter()
            .filter(|(_, s)| {
                s.conn.name == sa.conn.name
                    && s.remote_identity.as_ref() == Some(peer_id)
                    && s.id != sa.id
                    && !(s.initiator
                        && s.rekey_count == 0
                        && s.established_at.is_none_or(|t| t >= sa.created_at))
            })
            .map(|(k, _)| *k)
            .collect();
        old.sort_unstable();
        for k in old {
            if let Some(o) = self.sas.remove(&k) {
                info!(
                    "INITIAL_CONTACT from '{peer_id}': removing stale IKE_SA {}[{}]",
                    o.conn.name, o.id
                );
                self.close(o, CloseReason::Deleted { by_peer: true });
            }
        }
    }

    /// Responder CHILD_SA negotiation: pick the first child config whose selectors intersect
    /// the peer's (our local = peer's TSr), narrow (RFC 7296 2.9), select an ESP proposal.
    /// `prefer` (a rekey) names the config tried first. In CREATE_CHILD_SA (`nonce` given) a
    /// selected DH group needs the peer's KE of that group (PFS, RFC 7296 1.3.1): our KEr is then
    /// added and g^ir goes into KEYMAT (2.17). Errors: (notify type, notify data, child name).
    #[allow(clippy::too_many_arguments)]
    fn negotiate_child(
        &mut self,
        sa: &IkeSa,
        props: &[Proposal],
        tsi: &[TrafficSelector],
        tsr: &[TrafficSelector],
        transport_req: bool,
        ni: &[u8],
        nr: &[u8],
        nonce: Option<Vec<u8>>,
        prefer: Option<&str>,
        ke: Option<(u16, &[u8])>,
    ) -> Result<(ChildSa, Vec<Payload>), ChildError> {
        let create_child = nonce.is_some();
        let mut chosen = None;
        let mut cfgs: Vec<&ChildConfig> = sa.conn.children.iter().collect();
        if let Some(n) = prefer {
            cfgs.sort_by_key(|c| c.name != n);
        }
        for cfg in cfgs {
            let lc = if cfg.local_ts.is_empty() {
                vec![host_ts(sa.local.ip())]
            } else {
                cfg.local_ts.clone()
            };
            let rc = if cfg.remote_ts.is_empty() {
                vec![host_ts(sa.remote.ip())]
            } else {
                cfg.remote_ts.clone()
            };
            let (l, l_capped) = proposals::narrow(&lc, tsr);
            let (r, r_capped) = proposals::narrow(&rc, tsi);
            if !l.is_empty() && !r.is_empty() {
                chosen = Some((cfg.clone(), l, r, l_capped || r_capped));
                break;
            }
        }
        let Some((cfg, l, r, capped)) = chosen else {
            info!(
                "IKE_SA {}[{}]: traffic selectors {} === {} unacceptable",
                sa.conn.name,
                sa.id,
                ts_list(tsr),
                ts_list(tsi)
            );
            return Err((nt::TS_UNACCEPTABLE, Vec::new(), String::new()));
        };
        let no_proposal = || (nt::NO_PROPOSAL_CHOSEN, Vec::new(), cfg.name.clone());
        // Prefer the group the initiator already sent a KE for (saves INVALID_KE_PAYLOAD).
        let same_group = ke.and_then(|(g, _)| {
            let mut ours = cfg.esp_proposals.clone();
            ours.retain_mut(|p| {
                if p.dh.is_empty() {
                    return true;
                }
                p.dh.retain(|x| x.transform_id() == g);
                !p.dh.is_empty()
            });
            proposals::select_esp(&ours, props, create_child)
        });
        let Some((num, suite, peer_spi)) =
            same_group.or_else(|| proposals::select_esp(&cfg.esp_proposals, props, create_child))
        else {
            return Err(no_proposal());
        };
        let Some(prf) = sa.suite.map(|s| s.prf) else {
            return Err(no_proposal());
        };
        let mut kex = None;
        let mut g_ir = None;
        if let Some(g) = suite.dh {
            match ke {
                Some((kg, data)) if kg == g.transform_id() => {
                    let Ok(k) = KeyExchange::generate(g, self.rng.as_mut()) else {
                        return Err(no_proposal());
                    };
                    let Ok(secret) = k.shared_secret(data) else {
                        return Err((nt::INVALID_SYNTAX, Vec::new(), cfg.name.clone()));
                    };
                    g_ir = Some(secret);
                    kex = Some(k);
                }
                // RFC 7296 1.3.1 / 3.4: tell the initiator which group we selected.
                _ => {
                    return Err((
                        nt::INVALID_KE_PAYLOAD,
                        g.transform_id().to_be_bytes().to_vec(),
                        cfg.name.clone(),
                    ))
                }
            }
        }
        let Some(keys) = sa.keys.as_ref() else {
            return Err(no_proposal());
        };
        let transport = transport_req && cfg.mode == Mode::Transport;
        let spi_in = self.alloc_child_spi(sa);
        let (mut i2r, mut r2i) = child_keys(
            prf,
            &keys.sk_d,
            g_ir.as_deref().map(|v| v.as_slice()),
            ni,
            nr,
            &suite,
        );
        i2r.spi = spi_in;
        r2i.spi = peer_spi;
        let mut pl = Vec::new();
        if transport {
            pl.push(Payload::notify(nt::USE_TRANSPORT_MODE, Vec::new()));
        }
        pl.push(Payload::Sa(vec![proposals::esp_suite_to_wire(
            num, &suite, spi_in,
        )]));
        if let Some(n) = nonce {
            pl.push(Payload::Nonce(n));
        }
        if let Some(k) = &kex {
            pl.push(Payload::Ke {
                group: k.group().transform_id(),
                data: k.public_key().to_vec(),
            });
        }
        if capped {
            // proposals::narrow: more intersections than one TS payload holds.
            info!(
                "IKE_SA {}[{}]: narrowed to {} === {} ({} selectors at most per side)",
                sa.conn.name,
                sa.id,
                ts_list(&l),
                ts_list(&r),
                proposals::MAX_TS
            );
            pl.push(Payload::notify(nt::ADDITIONAL_TS_POSSIBLE, Vec::new()));
        }
        pl.push(Payload::TsI(r.clone()));
        pl.push(Payload::TsR(l.clone()));
        let child = ChildSa {
            ike_sa: sa.id,
            conn: sa.conn.name.clone(),
            child: cfg.name.clone(),
            mode: if transport {
                Mode::Transport
            } else {
                Mode::Tunnel
            },
            local_ts: l,
            remote_ts: r,
            encr: suite.encr,
            integ: suite.integ,
            esn: suite.esn,
            replay_window: cfg.replay_window,
            inbound: i2r,
            outbound: r2i,
            local: sa.local,
            remote: sa.remote,
            udp_encap: sa.udp_encap(),
            rekey_responder: false,
        };
        Ok((child, pl))
    }

    fn install_child(&mut self, sa: &mut IkeSa, now: Instant, child: ChildSa) {
        info!(
            "CHILD_SA {}{{{}}} established SPIs {:08x}_i {:08x}_o TS {} === {}",
            child.conn,
            child.child,
            child.inbound.spi,
            child.outbound.spi,
            ts_list(&child.local_ts),
            ts_list(&child.remote_ts)
        );
        self.events
            .push_back(Event::ChildSaInstalled(Box::new(child.clone())));
        let cfg = sa.conn.children.iter().find(|c| c.name == child.child);
        let (rekey, life, rand) = cfg.map_or((None, None, None), |c| {
            (c.rekey_time, c.life_time, c.rand_time)
        });
        let rekey_at = rekey.map(|d| after(now, self.jittered(d, rand)));
        // Hard lifetime: life_time, else rekey_time * 1.1 (strongSwan's default margin).
        let expire_at = life
            .or_else(|| rekey.map(|d| scale(d, 1.1)))
            .map(|h| after(now, h));
        sa.children.push(InstalledChild {
            sa: child,
            established: now,
            state: ChildState::Installed,
            rekey_at,
            expire_at,
            rekey_count: 0,
            counters: ChildCounters::default(),
            volume_rekey: false,
        });
    }

    fn child_failed(&mut self, sa: &IkeSa, name: &str, reason: CloseReason) {
        info!(
            "CHILD_SA {}{{{}}} failed: {}",
            sa.conn.name,
            name,
            reason.name()
        );
        self.events.push_back(Event::ChildSaFailed {
            ike_sa: sa.id,
            conn: sa.conn.name.clone(),
            child: name.to_string(),
            reason,
        });
    }

    fn on_create_child_request(
        &mut self,
        sa: &mut IkeSa,
        now: Instant,
        mid: u32,
        payloads: &[Payload],
    ) {
        let p = parts(payloads);
        let exch = exchange::CREATE_CHILD_SA;
        let notify = |t: u16| vec![Payload::notify(t, Vec::new())];
        if p.sa
            .and_then(|v| v.first())
            .is_some_and(|x| x.protocol == protocol_id::IKE)
        {
            self.on_ike_rekey_request(sa, now, mid, payloads);
            return;
        }
        let (Some(props), Some(ni), Some(tsi), Some(tsr)) = (p.sa, p.nonce, p.tsi, p.tsr) else {
            self.respond(sa, exch, mid, notify(nt::INVALID_SYNTAX));
            return;
        };
        if !nonce_ok(ni) {
            self.respond(sa, exch, mid, notify(nt::INVALID_SYNTAX));
            return;
        }
        // RFC 7296 2.25.2: no CHILD_SA creation/rekey while the IKE SA is being rekeyed.
        if sa.superseded || sa.delete_queued || sa.pending_rekey_ike().is_some() {
            self.respond(sa, exch, mid, notify(nt::TEMPORARY_FAILURE));
            return;
        }
        // REKEY_SA (RFC 7296 1.3.3): its SPI is the peer's inbound SPI, i.e. our outbound one.
        let rekey_spi = payloads.iter().find_map(|x| match x {
            Payload::Notify(n) if n.ntype == nt::REKEY_SA => Some(n),
            _ => None,
        });
        let mut old: Option<(EspSpi, String, u32)> = None;
        if let Some(n) = rekey_spi {
            let spi = <[u8; 4]>::try_from(n.spi.as_slice()).map(EspSpi::from_be_bytes);
            let found = spi
                .ok()
                .and_then(|spi| sa.children.iter().find(|c| c.sa.outbound.spi == spi));
            match found {
                None => {
                    // RFC 7296 2.25: CHILD_SA_NOT_FOUND with the SPI copied.
                    let resp = vec![Payload::Notify(fs_wire::ike::Notify {
                        protocol: n.protocol,
                        spi: n.spi.clone(),
                        ntype: nt::CHILD_SA_NOT_FOUND,
                        data: Vec::new(),
                    })];
                    self.respond(sa, exch, mid, resp);
                    return;
                }
                Some(c) => {
                    let closing = c.state != ChildState::Installed
                        || sa.tasks.contains(&Task::DeleteChild(c.sa.inbound.spi));
                    if closing {
                        // RFC 7296 2.25.1: rekey of a CHILD_SA we are closing (or already
                        // replaced).
                        self.respond(sa, exch, mid, notify(nt::TEMPORARY_FAILURE));
                        return;
                    }
                    old = Some((c.sa.inbound.spi, c.sa.child.clone(), c.rekey_count));
                }
            }
        }
        if let Some(t) = self.child_limit(sa, old.is_some()) {
            self.respond(sa, exch, mid, notify(t));
            return;
        }
        let mut nr = vec![0u8; NONCE_LEN];
        self.rng.fill(&mut nr);
        let transport = has_notify(payloads, nt::USE_TRANSPORT_MODE);
        let prefer = old.as_ref().map(|o| o.1.clone());
        match self.negotiate_child(
            sa,
            props,
            tsi,
            tsr,
            transport,
            ni,
            &nr,
            Some(nr.clone()),
            prefer.as_deref(),
            p.ke,
        ) {
            Ok((mut child, pl)) => {
                self.respond(sa, exch, mid, pl);
                child.rekey_responder = old.is_some();
                let new_in = child.inbound.spi;
                self.install_child(sa, now, child);
                if let Some((old_in, _, count)) = old {
                    if let Some(c) = sa.children.last_mut() {
                        c.rekey_count = count + 1;
                    }
                    // Make-before-break (RFC 7296 2.8): the old SA stays until the peer
                    // deletes it.
                    if let Some(i) = sa.child_by_in(old_in) {
                        if let Some(c) = sa.children.get_mut(i) {
                            c.state = ChildState::Rekeyed;
                            c.rekey_at = None;
                        }
                    }
                    sa.tasks.retain(|t| *t != Task::RekeyChild(old_in));
                    sa.delayed.retain(|t| t.1 != Task::RekeyChild(old_in));
                    if let Some(Pending {
                        kind: ReqKind::CreateChild(cp),
                        ..
                    }) = &mut sa.pending
                    {
                        if cp.rekey == Some(old_in) {
                            // RFC 7296 2.8.1: both rekeyed it; decided by nonces when our own
                            // exchange completes.
                            debug!("CHILD_SA rekey collision on {old_in:08x}_i");
                            cp.collision = Some((new_in, lowest(ni, &nr)));
                        }
                    }
                }
            }
            Err((t, data, name)) => {
                self.respond(sa, exch, mid, vec![Payload::notify(t, data)]);
                if t != nt::INVALID_KE_PAYLOAD {
                    self.child_failed(sa, &name, reason_from_notify(t, false));
                }
            }
        }
    }

    /// `max_children_per_ike_sa`: the error to answer a CREATE_CHILD_SA request with, if any.
    /// A new CHILD_SA counts against the installed ones; a rekey (which replaces one, net
    /// zero) is refused only while twice the limit is held, i.e. the peer does not delete the
    /// CHILD_SAs it replaced.
    fn child_limit(&mut self, sa: &mut IkeSa, rekey: bool) -> Option<u16> {
        let max = self.config.limits.max_children_per_ike_sa;
        let installed = sa
            .children
            .iter()
            .filter(|c| c.state == ChildState::Installed)
            .count();
        let t = if !rekey && installed >= max {
            //= https://www.rfc-editor.org/rfc/rfc7296#section-1.3
            //# The responder sends a NO_ADDITIONAL_SAS notification to indicate that
            //# a CREATE_CHILD_SA request is unacceptable because the responder is
            //# unwilling to accept any more Child SAs on this IKE SA.
            nt::NO_ADDITIONAL_SAS
        } else if rekey && sa.children.len() >= max.saturating_mul(2) {
            nt::TEMPORARY_FAILURE
        } else {
            return None;
        };
        self.stats.child_limit_refused += 1;
        if sa.child_limit_logged {
            debug!(
                "IKE_SA {}[{}]: CHILD_SA limit {max} reached, answering {}",
                sa.conn.name,
                sa.id,
                notify_name(t)
            );
        } else {
            sa.child_limit_logged = true;
            info!(
                "IKE_SA {}[{}]: CHILD_SA limit {max} reached, answering {} \
                 (further refusals on this IKE_SA are logged at debug level)",
                sa.conn.name,
                sa.id,
                notify_name(t)
            );
        }
        Some(t)
    }

    /// Responder of an IKE SA rekey (RFC 7296 1.3.2, 2.18).
    fn on_ike_rekey_request(
        &mut self,
        sa: &mut IkeSa,
        now: Instant,
        mid: u32,
        payloads: &[Payload],
    ) {
        let exch = exchange::CREATE_CHILD_SA;
        let notify = |t: u16| vec![Payload::notify(t, Vec::new())];
        let colliding = sa.pending_rekey_ike().is_some();
        let child_busy = matches!(
            sa.pending,
            Some(Pending {
                kind: ReqKind::CreateChild(_) | ReqKind::DeleteChild(_),
                ..
            })
        );
        // RFC 7296 2.25.1/2.25.2: not while we create, rekey or delete a CHILD_SA, nor while
        // closing the IKE SA (or after it was rekeyed already).
        if sa.superseded || sa.delete_queued || child_busy {
            self.respond(sa, exch, mid, notify(nt::TEMPORARY_FAILURE));
            return;
        }
        let p = parts(payloads);
        let (Some(props), Some(ni), Some((group, ke))) = (p.sa, p.nonce, p.ke) else {
            self.respond(sa, exch, mid, notify(nt::INVALID_SYNTAX));
            return;
        };
        let (Some(old_suite), Some(old_keys)) = (sa.suite, sa.keys.as_ref()) else {
            return;
        };
        if !nonce_ok(ni) {
            self.respond(sa, exch, mid, notify(nt::INVALID_SYNTAX));
            return;
        }
        let mut same_group = sa.conn.ike_proposals.clone();
        for x in &mut same_group {
            x.dh.retain(|g| g.transform_id() == group);
        }
        let sel = proposals::select_ike_rekey(&same_group, props)
            .or_else(|| proposals::select_ike_rekey(&sa.conn.ike_proposals, props));
        let Some((num, suite, peer_spi)) = sel else {
            info!(
                "IKE_SA {}[{}]: no acceptable proposal for IKE SA rekey",
                sa.conn.name, sa.id
            );
            self.respond(sa, exch, mid, notify(nt::NO_PROPOSAL_CHOSEN));
            return;
        };
        if group != suite.dh.transform_id() {
            let data = suite.dh.transform_id().to_be_bytes().to_vec();
            self.respond(
                sa,
                exch,
                mid,
                vec![Payload::notify(nt::INVALID_KE_PAYLOAD, data)],
            );
            return;
        }
        let Ok(kex) = KeyExchange::generate(suite.dh, self.rng.as_mut()) else {
            self.respond(sa, exch, mid, notify(nt::NO_PROPOSAL_CHOSEN));
            return;
        };
        let Ok(g_ir) = kex.shared_secret(ke) else {
            self.respond(sa, exch, mid, notify(nt::INVALID_SYNTAX));
            return;
        };
        let our_spi = loop {
            let s = self.alloc_spi();
            if s != sa.our_spi() {
                break s;
            }
        };
        let mut nr = vec![0u8; NONCE_LEN];
        self.rng.fill(&mut nr);
        // RFC 7296 2.18: SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr), new SPIs.
        let k = ikev2::derive_rekeyed_ike_sa_keys(
            old_suite.prf,
            &old_keys.sk_d,
            suite.prf,
            suite.encr,
            suite.integ,
            &g_ir,
            ni,
            &nr,
            peer_spi.get(),
            our_spi.get(),
        );
        let Some(new) = self.rekeyed_sa(sa, now, false, peer_spi, our_spi, suite, &k, ni, &nr)
        else {
            self.respond(sa, exch, mid, notify(nt::NO_PROPOSAL_CHOSEN));
            return;
        };
        let mut w = proposals::ike_suite_to_wire(num, &suite);
        w.spi = our_spi.to_be_bytes().to_vec();
        let resp = vec![
            Payload::Sa(vec![w]),
            Payload::Nonce(nr.clone()),
            Payload::Ke {
                group: suite.dh.transform_id(),
                data: kex.public_key().to_vec(),
            },
        ];
        self.respond(sa, exch, mid, resp);
        if colliding {
            // RFC 7296 2.8.2: keep the new SA inactive until our own rekey completes.
            debug!("IKE_SA {}[{}]: IKE SA rekey collision", sa.conn.name, sa.id);
            let mut new = new;
            new.superseded = true;
            new.adopt_pending = true;
            new.superseded_deadline = Some(after(now, Self::superseded_grace(sa)));
            if let Some(r) = sa.pending_rekey_ike() {
                r.collision = Some((our_spi, lowest(ni, &nr)));
            }
            self.sas.insert(our_spi, new);
        } else {
            // The initiator of the rekey deletes the old IKE SA (RFC 7296 2.18).
            self.adopt(sa, new, now);
        }
    }

    /// A new IKE SA that replaces `old` (RFC 7296 2.18): same connection, peer and addresses;
    /// `initiator` = we initiated the rekey; message IDs restart at 0.
    #[allow(clippy::too_many_arguments)]
    fn rekeyed_sa(
        &mut self,
        old: &IkeSa,
        now: Instant,
        initiator: bool,
        spi_i: IkeSpi,
        spi_r: IkeSpi,
        suite: IkeSuite,
        k: &ikev2::IkeSaKeys,
        ni: &[u8],
        nr: &[u8],
    ) -> Option<IkeSa> {
        let (tx, rx) = if initiator {
            (
                Cipher::new(suite.encr, suite.integ, &k.sk_ei, &k.sk_ai),
                Cipher::new(suite.encr, suite.integ, &k.sk_er, &k.sk_ar),
            )
        } else {
            (
                Cipher::new(suite.encr, suite.integ, &k.sk_er, &k.sk_ar),
                Cipher::new(suite.encr, suite.integ, &k.sk_ei, &k.sk_ai),
            )
        };
        let (Ok(tx), Ok(rx)) = (tx, rx) else {
            warn!("could not key rekeyed IKE SA transforms");
            return None;
        };
        let id = IkeSaId(self.next_id);
        self.next_id += 1;
        Some(IkeSa {
            suite: Some(suite),
            ni: ni.to_vec(),
            nr: nr.to_vec(),
            keys: Some(Keys {
                sk_d: k.sk_d.duplicate(),
                sk_pi: k.sk_pi.duplicate(),
                sk_pr: k.sk_pr.duplicate(),
                tx,
                rx,
            }),
            nat_local: old.nat_local,
            nat_remote: old.nat_remote,
            udp_pref: old.udp_pref,
            established_at: Some(now),
            remote_identity: old.remote_identity.clone(),
            rekey_count: old.rekey_count + 1,
            // RFC 7383 2.3: negotiated in IKE_SA_INIT; the rekeyed IKE SA keeps it.
            frag: FragState::new(old.frag.negotiated),
            created_at: old.created_at,
            ..IkeSa::new(
                id,
                old.conn.clone(),
                initiator,
                State::Established,
                spi_i,
                spi_r,
                old.local,
                old.remote,
                now,
            )
        })
    }

    /// `new` replaces `old`: it takes over the unique id (so `ChildSa::ike_sa` stays valid),
    /// the CHILD_SAs (keys unchanged) and queued work; `old` becomes inactive and is closed
    /// silently later (by our or the peer's Delete).
    fn adopt(&mut self, old: &mut IkeSa, mut new: IkeSa, now: Instant) {
        new.superseded = false;
        new.adopt_pending = false;
        new.superseded_deadline = None;
        std::mem::swap(&mut new.id, &mut old.id);
        new.children = std::mem::take(&mut old.children);
        new.to_create = std::mem::take(&mut old.to_create);
        new.tasks = std::mem::take(&mut old.tasks);
        new.tasks
            .retain(|t| !matches!(t, Task::RekeyIke | Task::Dpd));
        new.delayed = std::mem::take(&mut old.delayed);
        new.delayed.retain(|t| t.1 != Task::RekeyIke);
        new.last_rx = now;
        if new.conn.reauth_time.is_none() {
            if let Some(d) = new.conn.rekey_time {
                new.rekey_at = Some(after(now, self.jittered(d, new.conn.rand_time)));
            }
        }
        // A rekey (e.g. by the peer) does not postpone our reauthentication.
        new.reauth_at = old.reauth_at.take();
        new.reauth_by = old.reauth_by.take();
        new.reauth_of = old.reauth_of.take();
        new.expire_at = new.conn.life_time.map(|l| after(now, l));
        old.superseded = true;
        old.adopt_pending = false;
        old.rekey_at = None;
        old.superseded_deadline = Some(after(now, Self::superseded_grace(old)));
        info!(
            "IKE_SA {}[{}] rekeyed: {:016x}_i {:016x}_r",
            new.conn.name, new.id, new.spi_i, new.spi_r
        );
        self.finish(new, Outcome::Keep, now);
    }

    /// Hard limit reached: remove the CHILD_SA locally now and tell the peer (a Delete is
    /// still sent, RFC 7296 1.4.1, unless ours is already on its way).
    fn expire_child(&mut self, sa: &mut IkeSa, i: usize) {
        let Some(c) = sa.children.get(i) else { return };
        let (spi, deleting) = (c.sa.inbound.spi, c.state == ChildState::Deleting);
        self.remove_child(sa, i);
        if !deleting {
            sa.tasks.push_back(Task::DeleteChild(spi));
        }
    }

    fn remove_child(&mut self, sa: &mut IkeSa, idx: usize) {
        if idx >= sa.children.len() {
            return;
        }
        let c = sa.children.remove(idx);
        info!("CHILD_SA {}{{{}}} deleted", c.sa.conn, c.sa.child);
        self.events.push_back(Event::ChildSaRemoved {
            ike_sa: sa.id,
            conn: c.sa.conn.clone(),
            child: c.sa.child.clone(),
            spi_in: c.sa.inbound.spi,
            spi_out: c.sa.outbound.spi,
        });
    }

    fn on_info_request(
        &mut self,
        sa: &mut IkeSa,
        now: Instant,
        mid: u32,
        payloads: &[Payload],
    ) -> Outcome {
        let exch = exchange::INFORMATIONAL;
        let mut delete_ike = false;
        let mut our_spis: Vec<EspSpi> = Vec::new();
        for p in payloads {
            if let Payload::Delete(d) = p {
                match d.protocol {
                    protocol_id::IKE => delete_ike = true,
                    protocol_id::ESP => {
                        for s in &d.spis {
                            let Ok(b) = <[u8; 4]>::try_from(s.as_slice()) else {
                                continue;
                            };
                            let spi = EspSpi::from_be_bytes(b);
                            if let Some(i) =
                                sa.children.iter().position(|c| c.sa.outbound.spi == spi)
                            {
                                if let Some(c) = sa.children.get(i) {
                                    // RFC 7296 2.25.1: closing it ourselves too => no Delete
                                    // payload in the answer.
                                    if c.state != ChildState::Deleting {
                                        our_spis.push(c.sa.inbound.spi);
                                    }
                                }
                                self.remove_child(sa, i);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        if delete_ike {
            // RFC 7296 1.4.1: answer with an empty INFORMATIONAL and close.
            self.respond(sa, exch, mid, Vec::new());
            // RFC 7296 2.25.2: deleted while we rekey it: forget our rekey; if the peer's
            // colliding rekey created a new IKE SA, that one is the successor.
            let succ = sa
                .pending_rekey_ike()
                .and_then(|r| r.collision.as_ref().map(|c| c.0));
            if let Some(new) = succ.and_then(|k| self.sas.remove(&k)) {
                sa.pending = None;
                self.adopt(sa, new, now);
            }
            if sa.superseded {
                debug!(
                    "received DELETE for rekeyed IKE_SA {}[{}]",
                    sa.conn.name, sa.id
                );
            } else {
                info!("received DELETE for IKE_SA {}[{}]", sa.conn.name, sa.id);
            }
            return Outcome::Close(CloseReason::Deleted { by_peer: true });
        }
        if has_notify(payloads, nt::AUTHENTICATION_FAILED) {
            self.respond(sa, exch, mid, Vec::new());
            return Outcome::Close(CloseReason::AuthenticationFailed { by_peer: true });
        }
        let mut resp = Vec::new();
        if !our_spis.is_empty() {
            resp.push(Payload::Delete(Delete {
                protocol: protocol_id::ESP,
                spi_size: 4,
                spis: our_spis.iter().map(|s| s.to_be_bytes().to_vec()).collect(),
            }));
        }
        self.respond(sa, exch, mid, resp);
        Outcome::Keep
    }

    fn on_response(
        &mut self,
        sa: &mut IkeSa,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
        msg: &Message,
    ) -> Outcome {
        let mid = msg.header.message_id;
        if !sa
            .pending
            .as_ref()
            .is_some_and(|p| p.msg_id == mid && p.exchange == msg.header.exchange)
        {
            limited!(now, DEBUG, %remote, "dropping unexpected response {mid}");
            self.stats.dropped_message_id += 1;
            return Outcome::Keep;
        }
        let Some(payloads) = self.open(sa, now, data, msg, remote) else {
            return Outcome::Keep;
        };
        sa.last_rx = now;
        self.update_addrs(sa, local, remote);
        let Some(pending) = sa.pending.take() else {
            return Outcome::Keep;
        };
        match pending.kind {
            ReqKind::Init => Outcome::Keep,
            ReqKind::Auth(cp) => self.on_auth_response(sa, now, &payloads, cp),
            ReqKind::CreateChild(cp) => {
                self.on_create_child_response(sa, now, cp, &payloads);
                Outcome::Keep
            }
            ReqKind::RekeyIke(r) => {
                self.on_ike_rekey_response(sa, now, r, &payloads);
                Outcome::Keep
            }
            ReqKind::DeleteChild(spis) => {
                for spi in spis {
                    if let Some(i) = sa.child_by_in(spi) {
                        self.remove_child(sa, i);
                    }
                }
                Outcome::Keep
            }
            ReqKind::Dpd => Outcome::Keep,
            ReqKind::DeleteIke => Outcome::Close(CloseReason::Deleted { by_peer: false }),
        }
    }

    /// The group an INVALID_KE_PAYLOAD notify asks for.
    fn requested_group(payloads: &[Payload]) -> Option<DhGroup> {
        notify_data(payloads, nt::INVALID_KE_PAYLOAD)
            .first()
            .and_then(|b| b.first_chunk::<2>())
            .and_then(|b| DhGroup::from_wire(u16::from_be_bytes(*b)))
    }

    fn on_create_child_response(
        &mut self,
        sa: &mut IkeSa,
        now: Instant,
        cp: ChildProposal,
        payloads: &[Payload],
    ) {
        let err = first_error(payloads);
        let old_installed = cp.rekey.and_then(|spi| {
            sa.children
                .iter()
                .find(|c| c.sa.inbound.spi == spi && c.state == ChildState::Installed)
                .map(|_| spi)
        });
        match err {
            Some(nt::INVALID_KE_PAYLOAD) => {
                let groups = sa
                    .conn
                    .children
                    .iter()
                    .find(|c| c.name == cp.name)
                    .map(|c| proposals::esp_groups(&c.esp_proposals))
                    .unwrap_or_default();
                let g = Self::requested_group(payloads);
                let cur = cp.kex.as_ref().map(|k| k.group());
                if let Some(g) = g.filter(|g| groups.contains(g) && Some(*g) != cur) {
                    // RFC 7296 1.3.1: retry with the group the responder selected.
                    let sent = match cp.rekey {
                        Some(spi) => self.start_child_rekey(sa, now, spi, Some(g)),
                        None => {
                            let cfg = sa.conn.children.iter().find(|c| c.name == cp.name).cloned();
                            if let Some(cfg) = cfg {
                                let mut ni = vec![0u8; NONCE_LEN];
                                self.rng.fill(&mut ni);
                                let (ncp, pl) =
                                    self.child_proposal(sa, &cfg, Some(ni), None, Some(g));
                                self.send_request(
                                    sa,
                                    now,
                                    exchange::CREATE_CHILD_SA,
                                    pl,
                                    ReqKind::CreateChild(ncp),
                                );
                                true
                            } else {
                                false
                            }
                        }
                    };
                    if sent {
                        if let Some(Pending {
                            kind: ReqKind::CreateChild(ncp),
                            ..
                        }) = &mut sa.pending
                        {
                            ncp.collision = cp.collision;
                        }
                        return;
                    }
                }
            }
            Some(nt::TEMPORARY_FAILURE) => {
                // RFC 7296 2.25: retry later, not immediately.
                let at = after(now, self.retry_delay());
                match (cp.rekey, old_installed) {
                    (Some(_), Some(spi)) => sa.delayed.push((at, Task::RekeyChild(spi))),
                    (Some(_), None) => {}
                    (None, _) => sa.delayed.push((at, Task::Create(cp.name.clone()))),
                }
                debug!(
                    "CHILD_SA {}{{{}}}: TEMPORARY_FAILURE, retrying later",
                    sa.conn.name, cp.name
                );
                return;
            }
            Some(nt::CHILD_SA_NOT_FOUND) if cp.rekey.is_some() => {
                // RFC 7296 2.25: silently delete it and create it again from scratch.
                if let Some(i) = cp.rekey.and_then(|spi| sa.child_by_in(spi)) {
                    self.remove_child(sa, i);
                }
                if !sa.has_child(&cp.name) {
                    sa.to_create.push_back(cp.name.clone());
                }
                return;
            }
            _ => {}
        }
        let nr = parts(payloads)
            .nonce
            .map(|n| n.to_vec())
            .unwrap_or_default();
        let ni = cp.ni.clone();
        let (rekey, collision, name) = (cp.rekey, cp.collision.clone(), cp.name.clone());
        let Some(new_in) = self.complete_child(sa, now, cp, payloads, &ni, &nr) else {
            if let Some(spi) = old_installed {
                // Rekey failed: try again later (the hard lifetime bounds the old SA).
                let at = after(now, self.retry_delay());
                sa.delayed.push((at, Task::RekeyChild(spi)));
            }
            return;
        };
        let Some(old_in) = rekey else { return };
        let count = sa
            .child_by_in(old_in)
            .and_then(|i| sa.children.get(i))
            .map_or(0, |c| c.rekey_count);
        if let Some(c) = sa.children.last_mut() {
            c.rekey_count = count + 1;
        }
        if collision.is_some() {
            self.stats.rekey_collisions += 1;
        }
        let lose = collision
            .as_ref()
            .is_some_and(|(_, theirs)| lowest(&ni, &nr) < *theirs);
        if lose {
            // RFC 7296 2.8.1: our exchange had the lowest nonce: our new SA is redundant and
            // we close it; the peer deletes the old one.
            info!(
                "CHILD_SA {}{{{name}}} rekey collision lost, deleting redundant {new_in:08x}_i",
                sa.conn.name
            );
            if let Some(c) = sa.children.last_mut() {
                c.state = ChildState::Rekeyed;
                c.rekey_at = None;
            }
            sa.tasks.push_back(Task::DeleteChild(new_in));
        } else if let Some(i) = sa.child_by_in(old_in) {
            // Make-before-break (RFC 7296 2.8): the new SA is installed, delete the old one.
            if let Some(c) = sa.children.get_mut(i) {
                c.state = ChildState::Rekeyed;
                c.rekey_at = None;
            }
            sa.tasks.push_back(Task::DeleteChild(old_in));
        }
    }

    fn on_ike_rekey_response(
        &mut self,
        sa: &mut IkeSa,
        now: Instant,
        r: IkeRekey,
        payloads: &[Payload],
    ) {
        if let Some(g) = Self::requested_group(payloads) {
            if proposals::our_groups(&sa.conn.ike_proposals).contains(&g) && g != r.kex.group() {
                // RFC 7296 1.3.2: retry with the group the responder selected.
                if self.start_ike_rekey(sa, now, Some(g)) {
                    if let Some(n) = sa.pending_rekey_ike() {
                        n.collision = r.collision;
                    }
                    return;
                }
            }
        }
        let p = parts(payloads);
        type Answer = (IkeSuite, IkeSpi, Vec<u8>, Zeroizing<Vec<u8>>);
        let result = (|| -> Result<Answer, String> {
            if let Some(t) = first_error(payloads) {
                return Err(notify_name(t));
            }
            let (Some(props), Some(nr), Some((group, ke))) = (p.sa, p.nonce, p.ke) else {
                return Err("INVALID_SYNTAX".to_string());
            };
            let Some((suite, peer_spi)) =
                proposals::check_ike_rekey_response(&sa.conn.ike_proposals, props)
            else {
                return Err("NO_PROPOSAL_CHOSEN".to_string());
            };
            if group != suite.dh.transform_id() || r.kex.group() != suite.dh || !nonce_ok(nr) {
                return Err("INVALID_SYNTAX".to_string());
            }
            let g_ir = r
                .kex
                .shared_secret(ke)
                .map_err(|_| "INVALID_KE_PAYLOAD".to_string())?;
            Ok((suite, peer_spi, nr.to_vec(), g_ir))
        })();
        let (suite, peer_spi, nr, g_ir) = match result {
            Ok(x) => x,
            Err(e) => {
                if let Some(n2) = r.collision.and_then(|c| self.sas.remove(&c.0)) {
                    // Ours failed, the peer's succeeded: that one is the successor.
                    self.adopt(sa, n2, now);
                } else {
                    info!(
                        "IKE_SA {}[{}] rekey failed: {e}, retrying later",
                        sa.conn.name, sa.id
                    );
                    let at = after(now, self.retry_delay());
                    sa.delayed.push((at, Task::RekeyIke));
                }
                return;
            }
        };
        let (Some(old_suite), Some(old_keys)) = (sa.suite, sa.keys.as_ref()) else {
            return;
        };
        // RFC 7296 2.18.
        let k = ikev2::derive_rekeyed_ike_sa_keys(
            old_suite.prf,
            &old_keys.sk_d,
            suite.prf,
            suite.encr,
            suite.integ,
            &g_ir,
            &r.ni,
            &nr,
            r.spi.get(),
            peer_spi.get(),
        );
        let Some(mut new) = self.rekeyed_sa(sa, now, true, r.spi, peer_spi, suite, &k, &r.ni, &nr)
        else {
            return;
        };
        if r.collision.is_some() {
            self.stats.rekey_collisions += 1;
        }
        let lose = r
            .collision
            .as_ref()
            .is_some_and(|(_, theirs)| lowest(&r.ni, &nr) < *theirs);
        let n2 = r.collision.as_ref().and_then(|c| self.sas.remove(&c.0));
        match n2 {
            Some(n2) if lose => {
                // RFC 7296 2.8.2: ours had the lowest nonce: our new IKE SA is redundant, we
                // delete it; the peer's becomes the successor and the peer deletes the old one.
                info!("IKE_SA {}[{}] rekey collision lost", sa.conn.name, sa.id);
                new.superseded = true;
                new.delete_queued = true;
                new.superseded_deadline = Some(after(now, Self::superseded_grace(sa)));
                self.finish(new, Outcome::Keep, now);
                self.adopt(sa, n2, now);
            }
            n2 => {
                if let Some(mut n2) = n2 {
                    // We won: the peer deletes its redundant SA.
                    n2.adopt_pending = false;
                    self.sas.insert(n2.our_spi(), n2);
                }
                sa.delete_queued = true;
                self.adopt(sa, new, now);
            }
        }
    }

    fn on_auth_response(
        &mut self,
        sa: &mut IkeSa,
        now: Instant,
        payloads: &[Payload],
        cp: Option<ChildProposal>,
    ) -> Outcome {
        if has_notify(payloads, nt::AUTHENTICATION_FAILED) {
            return Outcome::Close(CloseReason::AuthenticationFailed { by_peer: true });
        }
        let p = parts(payloads);
        let (Some(idr), Some((method, auth)), Some(suite)) = (p.idr, p.auth, sa.suite) else {
            return Outcome::Close(match first_error(payloads) {
                Some(t) => reason_from_notify(t, true),
                None => CloseReason::Error("INVALID_SYNTAX".into()),
            });
        };
        let Some(keys) = sa.keys.as_ref() else {
            return Outcome::Close(CloseReason::Error("INTERNAL".into()));
        };
        let peer_id = idr.identity();
        let id_ok = sa.conn.remote_id.as_ref().is_none_or(|r| *r == peer_id);
        let expected = ikev2::psk_auth(
            suite.prf,
            &sa.conn.psk,
            &sa.init_resp,
            &sa.ni,
            &keys.sk_pr,
            &idr.body(),
        );
        let ok = id_ok
            && method == auth_method::PSK
            && aws_lc_rs::constant_time::verify_slices_are_equal(&expected, auth).is_ok();
        if !ok {
            info!(
                "IKE_SA {}[{}]: authentication of '{}' failed",
                sa.conn.name, sa.id, peer_id
            );
            // RFC 7296 2.21.2: tell the responder in a separate INFORMATIONAL (not retransmitted).
            let mid = sa.next_req_id;
            sa.next_req_id = sa.next_req_id.wrapping_add(1);
            let n = [Payload::notify(nt::AUTHENTICATION_FAILED, Vec::new())];
            if let Some(d) = self.protect(sa, exchange::INFORMATIONAL, mid, false, &n) {
                self.transmit(sa.local, sa.remote, d);
            }
            return Outcome::Close(CloseReason::AuthenticationFailed { by_peer: false });
        }
        if has_notify(payloads, nt::INITIAL_CONTACT) && sa.conn.unique != UniquePolicy::Never {
            self.initial_contact(sa, &peer_id);
        }
        sa.remote_identity = Some(peer_id);
        self.established(sa, now);
        if let Some(cp) = cp {
            let (ni, nr) = (sa.ni.clone(), sa.nr.clone());
            self.complete_child(sa, now, cp, payloads, &ni, &nr);
        }
        self.resolve_duplicates(sa, now);
        Outcome::Keep
    }

    /// Initiator: check the responder's CHILD_SA answer and install it; returns the new
    /// inbound SPI.
    fn complete_child(
        &mut self,
        sa: &mut IkeSa,
        now: Instant,
        cp: ChildProposal,
        payloads: &[Payload],
        ni: &[u8],
        nr: &[u8],
    ) -> Option<EspSpi> {
        if let Some(t) = first_error(payloads) {
            self.child_failed(sa, &cp.name, reason_from_notify(t, true));
            return None;
        }
        let p = parts(payloads);
        let (Some(props), Some(tsi), Some(tsr)) = (p.sa, p.tsi, p.tsr) else {
            self.child_failed(sa, &cp.name, CloseReason::Error("INVALID_SYNTAX".into()));
            return None;
        };
        let cfg = sa
            .conn
            .children
            .iter()
            .find(|c| c.name == cp.name)
            .cloned()?;
        let create_child = !cp.ni.is_empty();
        let Some((suite, peer_spi)) =
            proposals::check_esp_response(&cfg.esp_proposals, props, create_child)
        else {
            self.child_failed(
                sa,
                &cp.name,
                CloseReason::NoProposalChosen { by_peer: false },
            );
            return None;
        };
        if !proposals::within(&cp.local_ts, tsi) || !proposals::within(&cp.remote_ts, tsr) {
            self.child_failed(sa, &cp.name, CloseReason::TsUnacceptable { by_peer: false });
            return None;
        }
        if cp.transport && !has_notify(payloads, nt::USE_TRANSPORT_MODE) {
            self.child_failed(
                sa,
                &cp.name,
                CloseReason::Error("USE_TRANSPORT_MODE".into()),
            );
            return None;
        }
        if !nonce_ok(nr) {
            self.child_failed(sa, &cp.name, CloseReason::Error("INVALID_SYNTAX".into()));
            return None;
        }
        // PFS (RFC 7296 1.3.1): the selected group must be the one of our KEi, with a KEr.
        let g_ir = match suite.dh {
            None => None,
            Some(g) => {
                let secret = match (cp.kex.as_ref(), p.ke) {
                    (Some(k), Some((kg, data))) if k.group() == g && kg == g.transform_id() => {
                        k.shared_secret(data).ok()
                    }
                    _ => None,
                };
                let Some(secret) = secret else {
                    self.child_failed(
                        sa,
                        &cp.name,
                        CloseReason::Error("INVALID_KE_PAYLOAD".into()),
                    );
                    return None;
                };
                Some(secret)
            }
        };
        let (Some(s), Some(keys)) = (sa.suite, sa.keys.as_ref()) else {
            return None;
        };
        let (mut i2r, mut r2i) = child_keys(
            s.prf,
            &keys.sk_d,
            g_ir.as_deref().map(|v| v.as_slice()),
            ni,
            nr,
            &suite,
        );
        i2r.spi = peer_spi;
        r2i.spi = cp.spi_in;
        let child = ChildSa {
            ike_sa: sa.id,
            conn: sa.conn.name.clone(),
            child: cp.name.clone(),
            mode: cfg.mode,
            local_ts: tsi.to_vec(),
            remote_ts: tsr.to_vec(),
            encr: suite.encr,
            integ: suite.integ,
            esn: suite.esn,
            replay_window: cfg.replay_window,
            inbound: r2i,
            outbound: i2r,
            local: sa.local,
            remote: sa.remote,
            udp_encap: sa.udp_encap(),
            rekey_responder: false,
        };
        self.install_child(sa, now, child);
        Some(cp.spi_in)
    }
}

#[cfg(test)]
impl Endpoint {
    /// Test hook: protect `payloads` as the next request of `conn`'s IKE SA (not tracked for
    /// retransmission; the message ID is consumed).
    pub(crate) fn test_request(
        &mut self,
        conn: &str,
        exch: u8,
        payloads: &[Payload],
    ) -> Option<Transmit> {
        let spi = self.find_active(conn)?;
        let mut sa = self.sas.remove(&spi)?;
        let mid = sa.next_req_id;
        sa.next_req_id += 1;
        let d = self.protect(&sa, exch, mid, false, payloads);
        let t = d.map(|data| Transmit {
            local: sa.local,
            remote: sa.remote,
            data,
        });
        self.sas.insert(spi, sa);
        t
    }
    /// Test hook: no exchange in progress or queued, no rekeyed IKE SA left over.
    pub(crate) fn test_idle(&self) -> bool {
        self.sas.values().all(|s| {
            s.pending.is_none()
                && s.tasks.is_empty()
                && s.to_create.is_empty()
                && !s.superseded
                && !s.delete_queued
                && s.children.iter().all(|c| c.state == ChildState::Installed)
        })
    }
    /// Test hook: decrypt a message received on `conn`'s IKE SA.
    pub(crate) fn test_open(&mut self, conn: &str, data: &[u8]) -> Option<Vec<Payload>> {
        let spi = self.find_active(conn)?;
        let msg = Message::parse(data).ok()?;
        let sa = self.sas.get(&spi)?;
        sk::open(&sa.keys.as_ref()?.rx, data, &msg).ok()
    }
}

#[cfg(test)]
impl Endpoint {
    /// Test hook (DoS tests): sizes of every per-peer table: (IKE SAs, IKE_SA_INIT index,
    /// half-open table, per-source table, queued transmits).
    pub(crate) fn test_table_sizes(&self) -> (usize, usize, usize, usize, usize) {
        (
            self.sas.len(),
            self.init_index.len(),
            self.dos.half_open(),
            self.dos.sources(),
            self.transmits.len(),
        )
    }
}

#[cfg(feature = "fuzzing")]
impl Endpoint {
    /// Fuzzing hook ([`crate::fuzzing`]): `seal` gets the send and receive ciphers, the RNG,
    /// the header and the addresses of a message on `conn`'s newest keyed IKE SA (established
    /// or not). `mid` maps the SA's next request message ID to the message ID to use and the
    /// new next one (a request consumes its ID; a `response` answers the peer's ID).
    pub(crate) fn fuzz_seal<R>(
        &mut self,
        conn: &str,
        exch: u8,
        mid: impl FnOnce(u32) -> (u32, u32),
        response: bool,
        seal: impl FnOnce(&Cipher, &Cipher, &mut dyn Rng, &Header, SocketAddr, SocketAddr) -> R,
    ) -> Option<R> {
        let sa = self
            .sas
            .values_mut()
            .filter(|s| s.conn.name == conn && s.keys.is_some() && !s.superseded)
            .max_by_key(|s| (s.state == State::Established, s.id))?;
        let (mid, next) = mid(sa.next_req_id);
        sa.next_req_id = next;
        let h = Self::header(sa, exch, mid, response);
        let keys = sa.keys.as_ref()?;
        let rng = self.rng.as_mut();
        Some(seal(&keys.tx, &keys.rx, rng, &h, sa.local, sa.remote))
    }
}
