//! The IKE endpoint: demultiplexes datagrams by IKE SPI to IKE SAs, runs their state machines.
use crate::config::{fs_esp_mode::Mode, ChildConfig, Config, ConnConfig, RetransmitConfig};
use crate::proposals::{self, EspSuite, IkeSuite};
use crate::sk::{self, OpenError};
use fs_crypto::dh::KeyExchange;
use fs_crypto::{ikev2, EncrAlg, IntegAlg, PrfAlg, Rng, Transform as Cipher};
use fs_wire::id::Identity;
use fs_wire::ike::{
    auth_method, exchange, flags, notify_name, notify_type as nt, protocol_id, Delete, Header,
    IdPayload, Message, Payload, Proposal, IKE_VERSION,
};
use fs_wire::ts::TrafficSelector;
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};
use zeroize::Zeroizing;

/// A datagram to send. `data` is the IKE message; the I/O layer adds the 4-byte non-ESP marker
/// when either port is 4500.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub data: Vec<u8>,
}

/// Keys of one direction of a CHILD_SA.
#[derive(Clone)]
pub struct SaKeys {
    pub spi: u32,
    pub encr_key: Vec<u8>,
    pub integ_key: Vec<u8>,
}

/// A negotiated CHILD_SA, to install in the data plane.
#[derive(Clone)]
pub struct ChildSa {
    pub ike_sa: u64,
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
    /// Retransmissions exhausted.
    Timeout,
    /// Any other error notify or protocol failure, with its name.
    Error(String),
}

/// Something the daemon must act on.
#[derive(Clone)]
pub enum Event {
    IkeSaEstablished {
        ike_sa: u64,
        conn: String,
        local: SocketAddr,
        remote: SocketAddr,
    },
    /// An IKE SA ended or an attempt failed; all its CHILD_SAs are removed (ChildSaRemoved first).
    IkeSaClosed {
        ike_sa: u64,
        conn: String,
        reason: CloseReason,
    },
    ChildSaInstalled(Box<ChildSa>),
    ChildSaRemoved {
        ike_sa: u64,
        conn: String,
        child: String,
        spi_in: u32,
        spi_out: u32,
    },
    /// A CHILD_SA could not be negotiated (e.g. TS_UNACCEPTABLE or NO_PROPOSAL_CHOSEN for the
    /// child in IKE_AUTH or CREATE_CHILD_SA); the IKE SA stays up (RFC 7296 2.21.2). `child` is
    /// empty when the responder found no matching child configuration.
    ChildSaFailed {
        ike_sa: u64,
        conn: String,
        child: String,
        reason: CloseReason,
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
}

/// Status of one CHILD_SA for `ferroswan status` (counters are filled in by the daemon).
#[derive(Clone, Debug, Serialize)]
pub struct ChildSaInfo {
    pub name: String,
    pub state: String,
    pub mode: Mode,
    pub protocol: String,
    pub spi_in: String,
    pub spi_out: String,
    pub encr: String,
    pub integ: Option<String>,
    pub esn: bool,
    pub encap: bool,
    pub local_ts: Vec<String>,
    pub remote_ts: Vec<String>,
    pub established_secs: u64,
}

/// Status of one IKE SA.
#[derive(Clone, Debug, Serialize)]
pub struct IkeSaInfo {
    pub id: u64,
    pub conn: String,
    pub state: String,
    pub initiator: bool,
    pub local: String,
    pub remote: String,
    pub local_id: String,
    pub remote_id: String,
    pub spi_i: String,
    pub spi_r: String,
    pub encr: Option<String>,
    pub integ: Option<String>,
    pub prf: Option<String>,
    pub dh: Option<String>,
    pub nat_local: bool,
    pub nat_remote: bool,
    pub established_secs: u64,
    pub child_sas: Vec<ChildSaInfo>,
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
}

const NONCE_LEN: usize = 32;
const IKE_PORT: u16 = 500;
const NATT_PORT: u16 = 4500;
/// Responder SAs waiting for IKE_AUTH are dropped after this (strongSwan `half_open_timeout`).
const HALF_OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on IKE_SA_INIT restarts (INVALID_KE_PAYLOAD / COOKIE) per attempt.
const MAX_INIT_RESTARTS: u32 = 5;

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
    sk_d: Zeroizing<Vec<u8>>,
    sk_pi: Zeroizing<Vec<u8>>,
    sk_pr: Zeroizing<Vec<u8>>,
    tx: Cipher,
    rx: Cipher,
}

/// A CHILD_SA we proposed (initiator side), waiting for the answer.
struct ChildProposal {
    name: String,
    spi_in: u32,
    /// Our nonce for CREATE_CHILD_SA (empty in IKE_AUTH: the IKE SA nonces are used).
    ni: Vec<u8>,
    transport: bool,
    local_ts: Vec<TrafficSelector>,
    remote_ts: Vec<TrafficSelector>,
}

enum ReqKind {
    Init,
    Auth(Option<ChildProposal>),
    CreateChild(ChildProposal),
    DeleteIke,
}

/// The one outstanding request of an IKE SA (window size 1, RFC 7296 2.3).
struct Pending {
    msg_id: u32,
    exchange: u8,
    data: Vec<u8>,
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
}

struct IkeSa {
    id: u64,
    conn: ConnConfig,
    initiator: bool,
    state: State,
    spi_i: u64,
    spi_r: u64,
    local: SocketAddr,
    remote: SocketAddr,
    /// Responder: key of the IKE_SA_INIT retransmit index.
    init_key: Option<(SocketAddr, u64)>,
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
}

impl IkeSa {
    fn our_spi(&self) -> u64 {
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
        self.nat_any() || self.conn.force_encap || self.local.port() == NATT_PORT
    }
    fn deadline(&self) -> Option<Instant> {
        let p = self.pending.as_ref().map(|p| p.deadline);
        match (p, self.half_open_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
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

/// CHILD_SA keys (RFC 7296 2.17): KEYMAT = prf+(SK_d, Ni | Nr); i->r encryption key, i->r
/// integrity key, then r->i.
fn child_keys(prf: PrfAlg, sk_d: &[u8], ni: &[u8], nr: &[u8], s: &EspSuite) -> (SaKeys, SaKeys) {
    let ek = s.encr.key_len();
    let ik = s.integ.map_or(0, |i| i.key_len());
    let km = ikev2::child_keymat(prf, sk_d, None, ni, nr, 2 * (ek + ik));
    let part = |a: usize, b: usize| km.get(a..b).map(|x| x.to_vec()).unwrap_or_default();
    let i2r = SaKeys {
        spi: 0,
        encr_key: part(0, ek),
        integ_key: part(ek, ek + ik),
    };
    let r2i = SaKeys {
        spi: 0,
        encr_key: part(ek + ik, 2 * ek + ik),
        integ_key: part(2 * ek + ik, 2 * (ek + ik)),
    };
    (i2r, r2i)
}

/// The IKE endpoint: owns all IKE SAs, keyed by our SPI.
pub struct Endpoint {
    config: Config,
    rng: Box<dyn Rng>,
    sas: HashMap<u64, IkeSa>,
    /// Responder: (peer address, SPIi) of IKE_SA_INIT requests -> our SPI, for retransmits.
    init_index: HashMap<(SocketAddr, u64), u64>,
    next_id: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: IkeStats,
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
        let msg = match Message::parse(data) {
            Ok(m) => m,
            Err(e) => {
                debug!(%remote, "dropping malformed IKE message: {e}");
                self.stats.dropped_malformed += 1;
                return;
            }
        };
        let h = &msg.header;
        let from_initiator = h.flags & flags::INITIATOR != 0;
        let is_response = h.flags & flags::RESPONSE != 0;
        if h.exchange == exchange::IKE_SA_INIT && !is_response {
            if from_initiator && h.spi_r == 0 && h.message_id == 0 && h.spi_i != 0 {
                self.on_init_request(now, local, remote, data, &msg);
            } else {
                debug!(%remote, "dropping invalid IKE_SA_INIT request");
                self.stats.dropped_malformed += 1;
            }
            return;
        }
        let our_spi = if from_initiator { h.spi_r } else { h.spi_i };
        let Some(mut sa) = self.sas.remove(&our_spi) else {
            debug!(%remote, "dropping message for unknown IKE SPI {our_spi:016x}");
            self.stats.dropped_unknown_spi += 1;
            return;
        };
        let init_resp =
            h.exchange == exchange::IKE_SA_INIT && is_response && sa.state == State::InitSent;
        if sa.initiator == from_initiator
            || sa.spi_i != h.spi_i
            || (sa.spi_r != h.spi_r && !init_resp)
        {
            debug!(%remote, "dropping message with mismatched SPIs/flags");
            self.stats.dropped_unknown_spi += 1;
            self.sas.insert(our_spi, sa);
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
        let remote_ip = *cfg
            .remote_addrs
            .first()
            .ok_or_else(|| IkeError::NoRemoteAddress(conn.to_string()))?;
        let port = if cfg.remote_port == 0 {
            IKE_PORT
        } else {
            cfg.remote_port
        };
        let remote = SocketAddr::new(remote_ip, port);
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
        let local = SocketAddr::new(local_ip, IKE_PORT);
        let id = self.next_id;
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
            });
            return Ok(());
        };
        let spi_i = self.alloc_spi();
        let mut ni = vec![0u8; NONCE_LEN];
        self.rng.fill(&mut ni);
        info!("initiating IKE_SA {conn}[{id}] to {remote}");
        let mut sa = IkeSa {
            id,
            conn: cfg,
            initiator: true,
            state: State::InitSent,
            spi_i,
            spi_r: 0,
            local,
            remote,
            init_key: None,
            suite: None,
            kex: Some(kex),
            ni,
            nr: Vec::new(),
            keys: None,
            init_req: Vec::new(),
            init_resp: Vec::new(),
            cookie: None,
            init_restarts: 0,
            nat_local: false,
            nat_remote: false,
            next_req_id: 1,
            pending: None,
            to_create: wanted.into(),
            delete_queued: false,
            expected_req_id: 0,
            last_response: None,
            children: Vec::new(),
            established_at: None,
            half_open_deadline: None,
            remote_identity: None,
        };
        self.send_init(&mut sa, now);
        self.sas.insert(spi_i, sa);
        Ok(())
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
        let mut spis: Vec<u64> = self
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

    /// Delete every IKE SA (daemon shutdown).
    pub fn shutdown(&mut self, now: Instant) {
        let mut spis: Vec<u64> = self.sas.keys().copied().collect();
        spis.sort_unstable();
        for spi in spis {
            self.terminate_spi(spi, now);
        }
    }

    /// Run timers due at `now` (retransmissions, timeouts, rekeys, DPD).
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<u64> = self
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
        v.into_iter()
            .map(|sa| IkeSaInfo {
                id: sa.id,
                conn: sa.conn.name.clone(),
                state: sa.state.name().to_string(),
                initiator: sa.initiator,
                local: sa.local.to_string(),
                remote: sa.remote.to_string(),
                local_id: sa.conn.local_id.to_string(),
                remote_id: sa.remote_id_str(),
                spi_i: format!("{:016x}", sa.spi_i),
                spi_r: format!("{:016x}", sa.spi_r),
                encr: sa.suite.map(|s| s.encr.iana_name().to_string()),
                integ: sa
                    .suite
                    .and_then(|s| s.integ)
                    .map(|i| i.iana_name().to_string()),
                prf: sa.suite.map(|s| s.prf.iana_name().to_string()),
                dh: sa.suite.map(|s| s.dh.iana_name().to_string()),
                nat_local: sa.nat_local,
                nat_remote: sa.nat_remote,
                established_secs: sa
                    .established_at
                    .map_or(0, |t| now.saturating_duration_since(t).as_secs()),
                child_sas: sa
                    .children
                    .iter()
                    .map(|c| ChildSaInfo {
                        name: c.sa.child.clone(),
                        state: "INSTALLED".to_string(),
                        mode: c.sa.mode,
                        protocol: "ESP".to_string(),
                        spi_in: format!("{:08x}", c.sa.inbound.spi),
                        spi_out: format!("{:08x}", c.sa.outbound.spi),
                        encr: c.sa.encr.iana_name().to_string(),
                        integ: c.sa.integ.map(|i| i.iana_name().to_string()),
                        esn: c.sa.esn,
                        encap: c.sa.udp_encap,
                        local_ts: c.sa.local_ts.iter().map(|t| t.to_string()).collect(),
                        remote_ts: c.sa.remote_ts.iter().map(|t| t.to_string()).collect(),
                        established_secs: now.saturating_duration_since(c.established).as_secs(),
                    })
                    .collect(),
            })
            .collect()
    }

    // ---------------------------------------------------------------------------------------
    // SA bookkeeping

    fn alloc_spi(&mut self) -> u64 {
        loop {
            let mut b = [0u8; 8];
            self.rng.fill(&mut b);
            let spi = u64::from_be_bytes(b);
            if spi != 0 && !self.sas.contains_key(&spi) {
                return spi;
            }
        }
    }

    /// A fresh inbound ESP SPI (strongSwan style 0xc.......), unique among our CHILD_SAs.
    fn alloc_child_spi(&mut self, current: &IkeSa) -> u32 {
        loop {
            let mut b = [0u8; 4];
            self.rng.fill(&mut b);
            let spi = u32::from_be_bytes(b) | 0xc000_0000;
            let used = |sa: &IkeSa| sa.children.iter().any(|c| c.sa.inbound.spi == spi);
            if !used(current) && !self.sas.values().any(used) {
                return spi;
            }
        }
    }

    fn find_active(&self, conn: &str) -> Option<u64> {
        let mut best: Option<&IkeSa> = None;
        for sa in self.sas.values() {
            if sa.conn.name != conn
                || sa.state == State::Deleting
                || sa.delete_queued
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
        match outcome {
            Outcome::Keep => {
                self.kick(&mut sa, now);
                self.sas.insert(sa.our_spi(), sa);
            }
            Outcome::Close(reason) => self.close(sa, reason),
            Outcome::Discard => {
                if let Some(k) = sa.init_key {
                    self.init_index.remove(&k);
                }
            }
        }
    }

    /// Emit ChildSaRemoved for every child, then IkeSaClosed, and forget the SA.
    fn close(&mut self, sa: IkeSa, reason: CloseReason) {
        if let Some(k) = sa.init_key {
            self.init_index.remove(&k);
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
        });
    }

    fn terminate_spi(&mut self, spi: u64, now: Instant) {
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
        if sa.pending.is_some() || sa.state != State::Established {
            return;
        }
        if sa.delete_queued {
            sa.delete_queued = false;
            sa.state = State::Deleting;
            info!("deleting IKE_SA {}[{}]", sa.conn.name, sa.id);
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
        while let Some(name) = sa.to_create.pop_front() {
            let Some(cfg) = sa.conn.children.iter().find(|c| c.name == name).cloned() else {
                continue;
            };
            let mut ni = vec![0u8; NONCE_LEN];
            self.rng.fill(&mut ni);
            let (cp, payloads) = self.child_proposal(sa, &cfg, Some(ni));
            self.send_request(
                sa,
                now,
                exchange::CREATE_CHILD_SA,
                payloads,
                ReqKind::CreateChild(cp),
            );
            return;
        }
    }

    fn on_timer(&mut self, sa: &mut IkeSa, now: Instant) -> Outcome {
        if sa.state == State::InitDone && sa.half_open_deadline.is_some_and(|d| d <= now) {
            debug!("half-open IKE_SA {}[{}] timed out", sa.conn.name, sa.id);
            self.stats.half_open_expired += 1;
            return Outcome::Discard;
        }
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
        p.deadline = now + rto(&cfg, p.sent);
        p.sent += 1;
        let (l, r, d) = (p.local, p.remote, p.data.clone());
        self.stats.retransmits_sent += 1;
        self.transmit(l, r, d);
        Outcome::Keep
    }

    // ---------------------------------------------------------------------------------------
    // Sending

    fn header(sa: &IkeSa, exch: u8, mid: u32, response: bool) -> Header {
        let mut f = if sa.initiator { flags::INITIATOR } else { 0 };
        if response {
            f |= flags::RESPONSE;
        }
        Header {
            spi_i: sa.spi_i,
            spi_r: sa.spi_r,
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
        if out.is_none() {
            warn!("IKE_SA {}[{}]: encryption failed", sa.conn.name, sa.id);
        }
        out
    }

    fn start_pending(
        &mut self,
        sa: &mut IkeSa,
        now: Instant,
        mid: u32,
        exch: u8,
        data: Vec<u8>,
        kind: ReqKind,
    ) {
        self.transmit(sa.local, sa.remote, data.clone());
        sa.pending = Some(Pending {
            msg_id: mid,
            exchange: exch,
            data,
            local: sa.local,
            remote: sa.remote,
            sent: 1,
            deadline: now + rto(&sa.conn.retransmit, 0),
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
        if let Some(data) = self.protect(sa, exch, mid, false, &payloads) {
            self.start_pending(sa, now, mid, exch, data, kind);
        }
    }

    /// Answer request `mid` and cache the answer for retransmitted requests (RFC 7296 2.1).
    fn respond(&mut self, sa: &mut IkeSa, exch: u8, mid: u32, payloads: Vec<Payload>) {
        if let Some(data) = self.protect(sa, exch, mid, true, &payloads) {
            self.transmit(sa.local, sa.remote, data.clone());
            sa.last_response = Some((mid, data));
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
        self.transmit(local, remote, m.emit());
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
            sk::nat_hash(sa.spi_i, 0, sa.local)
        };
        payloads.push(Payload::notify(nt::NAT_DETECTION_SOURCE_IP, src));
        payloads.push(Payload::notify(
            nt::NAT_DETECTION_DESTINATION_IP,
            sk::nat_hash(sa.spi_i, 0, sa.remote),
        ));
        let h = Self::header(sa, exchange::IKE_SA_INIT, 0, false);
        let data = Message {
            header: h,
            payloads,
        }
        .emit();
        sa.init_req = data.clone();
        self.start_pending(sa, now, 0, exchange::IKE_SA_INIT, data, ReqKind::Init);
    }

    /// Our CHILD_SA proposal payloads: [USE_TRANSPORT_MODE], SA, [Ni], TSi, TSr.
    fn child_proposal(
        &mut self,
        sa: &IkeSa,
        cfg: &ChildConfig,
        nonce: Option<Vec<u8>>,
    ) -> (ChildProposal, Vec<Payload>) {
        let spi_in = self.alloc_child_spi(sa);
        let local_ts = if cfg.local_ts.is_empty() {
            vec![host_ts(sa.local.ip())]
        } else {
            cfg.local_ts.clone()
        };
        let remote_ts = if cfg.remote_ts.is_empty() {
            vec![host_ts(sa.remote.ip())]
        } else {
            cfg.remote_ts.clone()
        };
        let transport = cfg.mode == Mode::Transport;
        let mut p = Vec::new();
        if transport {
            p.push(Payload::notify(nt::USE_TRANSPORT_MODE, Vec::new()));
        }
        let props = cfg
            .esp_proposals
            .iter()
            .enumerate()
            .map(|(i, e)| {
                proposals::esp_to_wire(u8::try_from(i + 1).unwrap_or(u8::MAX), e, spi_in, false)
            })
            .collect();
        p.push(Payload::Sa(props));
        if let Some(n) = &nonce {
            p.push(Payload::Nonce(n.clone()));
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
                let (p, pl) = self.child_proposal(sa, &cfg, None);
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
        if let Some(spi) = self.init_index.get(&(remote, h.spi_i)) {
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
            debug!(%remote, "IKE_SA_INIT request without SA/KE/Nonce");
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
            let id = self.next_id;
            self.next_id += 1;
            info!("received proposals from {remote} unacceptable");
            info!("IKE_SA {name}[{id}] failed: NO_PROPOSAL_CHOSEN");
            self.respond_init_notify(h, local, remote, nt::NO_PROPOSAL_CHOSEN, Vec::new());
            self.events.push_back(Event::IkeSaClosed {
                ike_sa: id,
                conn: name,
                reason: CloseReason::NoProposalChosen { by_peer: false },
            });
            return;
        };
        if group != suite.dh.transform_id() {
            // RFC 7296 1.2: tell the initiator which group we want; keep no state.
            debug!(%remote, "KE group {group} unacceptable, requesting {}", suite.dh.name());
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
            debug!(%remote, "invalid KE payload");
            self.stats.dropped_malformed += 1;
            return;
        };
        let spi_r = self.alloc_spi();
        let mut nr = vec![0u8; NONCE_LEN];
        self.rng.fill(&mut nr);
        let spi_i = h.spi_i;
        let k = ikev2::derive_ike_sa_keys(
            suite.prf,
            suite.encr,
            suite.integ,
            ni,
            &nr,
            &g_ir,
            spi_i,
            spi_r,
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
            let hr = sk::nat_hash(spi_i, 0, remote);
            let hl = sk::nat_hash(spi_i, 0, local);
            nat_remote = !src.contains(&hr.as_slice());
            nat_local = !dst.contains(&hl.as_slice());
        }
        let id = self.next_id;
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
        let rh = Header {
            spi_i,
            spi_r,
            next_payload: 0,
            version: IKE_VERSION,
            exchange: exchange::IKE_SA_INIT,
            flags: flags::RESPONSE,
            message_id: 0,
            length: 0,
        };
        let resp = Message {
            header: rh,
            payloads,
        }
        .emit();
        self.transmit(local, remote, resp.clone());
        debug!(
            "IKE_SA {}[{id}] responding to {remote} with {:?}",
            conn.name, suite
        );
        let sa = IkeSa {
            id,
            conn,
            initiator: false,
            state: State::InitDone,
            spi_i,
            spi_r,
            local,
            remote,
            init_key: Some((remote, spi_i)),
            suite: Some(suite),
            kex: None,
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
            cookie: None,
            init_restarts: 0,
            nat_local,
            nat_remote,
            next_req_id: 0,
            pending: None,
            to_create: VecDeque::new(),
            delete_queued: false,
            expected_req_id: 1,
            last_response: Some((0, resp)),
            children: Vec::new(),
            established_at: None,
            half_open_deadline: Some(now + HALF_OPEN_TIMEOUT),
            remote_identity: None,
        };
        self.init_index.insert((remote, spi_i), spi_r);
        self.sas.insert(spi_r, sa);
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
                .get(..2)
                .and_then(|b| fs_crypto::DhGroup::from_wire(u16::from_be_bytes([b[0], b[1]])));
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
        sa.spi_r = msg.header.spi_r;
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
            sa.spi_i,
            sa.spi_r,
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
        let src = notify_data(pl, nt::NAT_DETECTION_SOURCE_IP);
        let dst = notify_data(pl, nt::NAT_DETECTION_DESTINATION_IP);
        if !src.is_empty() || !dst.is_empty() {
            let hr = sk::nat_hash(sa.spi_i, sa.spi_r, remote);
            let hl = sk::nat_hash(sa.spi_i, sa.spi_r, local);
            sa.nat_remote = !src.contains(&hr.as_slice());
            sa.nat_local = !dst.contains(&hl.as_slice());
        }
        if sa.nat_any() || sa.conn.force_encap {
            // RFC 7296 2.23: continue on port 4500 from IKE_AUTH on.
            sa.local.set_port(NATT_PORT);
            if sa.remote.port() == IKE_PORT {
                sa.remote.set_port(NATT_PORT);
            }
            debug!(
                "IKE_SA {}[{}]: NAT local={} remote={}, switching to {}",
                sa.conn.name, sa.id, sa.nat_local, sa.nat_remote, sa.remote
            );
        }
        self.send_auth(sa, now)
    }

    // ---------------------------------------------------------------------------------------
    // Encrypted exchanges

    fn count_open_error(&mut self, e: OpenError, remote: SocketAddr) {
        match e {
            OpenError::Malformed => {
                debug!(%remote, "dropping malformed SK payload");
                self.stats.dropped_malformed += 1;
            }
            OpenError::Integrity => {
                debug!(%remote, "dropping message with invalid ICV");
                self.stats.dropped_integrity += 1;
            }
        }
    }

    fn open(
        &mut self,
        sa: &IkeSa,
        data: &[u8],
        msg: &Message,
        remote: SocketAddr,
    ) -> Option<Vec<Payload>> {
        let keys = sa.keys.as_ref()?;
        match sk::open(&keys.rx, data, msg) {
            Ok(p) => Some(p),
            Err(e) => {
                self.count_open_error(e, remote);
                None
            }
        }
    }

    /// Follow the peer's address after NAT-T floating (RFC 7296 2.23).
    fn update_addrs(sa: &mut IkeSa, local: SocketAddr, remote: SocketAddr) {
        if sa.nat_any() || (remote.port() == NATT_PORT && sa.remote.port() == IKE_PORT) {
            sa.local = local;
            sa.remote = remote;
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
        if sa.keys.is_none() {
            self.stats.dropped_unexpected += 1;
            return Outcome::Keep;
        }
        if let Some((last, resp)) = &sa.last_response {
            if *last == mid && mid.wrapping_add(1) == sa.expected_req_id {
                // A retransmitted request: verify it, then resend the cached answer (2.1).
                let resp = resp.clone();
                if self.open(sa, data, msg, remote).is_some() {
                    self.stats.retransmits_answered += 1;
                    self.transmit(sa.local, sa.remote, resp);
                }
                return Outcome::Keep;
            }
        }
        if mid != sa.expected_req_id {
            debug!(%remote, "dropping request with message ID {mid}, expected {}", sa.expected_req_id);
            self.stats.dropped_message_id += 1;
            return Outcome::Keep;
        }
        if msg
            .payloads
            .last()
            .is_none_or(|p| !matches!(p, Payload::Sk { .. }))
        {
            self.stats.dropped_malformed += 1;
            return Outcome::Keep;
        }
        let Some(payloads) = self.open(sa, data, msg, remote) else {
            return Outcome::Keep;
        };
        Self::update_addrs(sa, local, remote);
        let exch = msg.header.exchange;
        if let Some(ptype) = critical_unknown(&payloads) {
            // RFC 7296 2.5: reject the whole message.
            debug!(%remote, "unsupported critical payload {ptype}");
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
                self.on_info_request(sa, mid, &payloads)
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
                debug!(%remote, "unexpected exchange {exch} in state {:?}", sa.state);
                self.stats.dropped_unexpected += 1;
                Outcome::Keep
            }
        }
    }

    fn established(&mut self, sa: &mut IkeSa, now: Instant) {
        sa.state = State::Established;
        sa.established_at = Some(now);
        sa.half_open_deadline = None;
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
        if has_notify(payloads, nt::INITIAL_CONTACT) {
            // RFC 7296 2.4: the peer has no state from before; drop our old SAs with it.
            let mut old: Vec<u64> = self
                .sas
                .iter()
                .filter(|(_, s)| {
                    s.conn.name == sa.conn.name && s.remote_identity.as_ref() == Some(&peer_id)
                })
                .map(|(k, _)| *k)
                .collect();
            old.sort_unstable();
            for k in old {
                if let Some(o) = self.sas.remove(&k) {
                    self.close(o, CloseReason::Deleted { by_peer: true });
                }
            }
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
            match self.negotiate_child(sa, props, tsi, tsr, transport, &ni, &nr, None, false) {
                Ok((child, pl)) => {
                    resp.extend(pl);
                    install = Some(child);
                }
                Err((t, name)) => {
                    resp.push(Payload::notify(t, Vec::new()));
                    self.child_failed(sa, &name, reason_from_notify(t, false));
                }
            }
        }
        self.respond(sa, exchange::IKE_AUTH, mid, resp);
        if let Some(c) = install {
            self.install_child(sa, now, c);
        }
        Outcome::Keep
    }

    /// Responder CHILD_SA negotiation: pick the first child config whose selectors intersect
    /// the peer's (our local = peer's TSr), narrow (RFC 7296 2.9), select an ESP proposal.
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
        create_child: bool,
    ) -> Result<(ChildSa, Vec<Payload>), (u16, String)> {
        let mut chosen = None;
        for cfg in &sa.conn.children {
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
            let l = proposals::narrow(&lc, tsr);
            let r = proposals::narrow(&rc, tsi);
            if !l.is_empty() && !r.is_empty() {
                chosen = Some((cfg.clone(), l, r));
                break;
            }
        }
        let Some((cfg, l, r)) = chosen else {
            info!(
                "IKE_SA {}[{}]: traffic selectors {} === {} unacceptable",
                sa.conn.name,
                sa.id,
                ts_list(tsr),
                ts_list(tsi)
            );
            return Err((nt::TS_UNACCEPTABLE, String::new()));
        };
        let Some((num, suite, peer_spi)) =
            proposals::select_esp(&cfg.esp_proposals, props, create_child)
        else {
            return Err((nt::NO_PROPOSAL_CHOSEN, cfg.name.clone()));
        };
        let Some(prf) = sa.suite.map(|s| s.prf) else {
            return Err((nt::NO_PROPOSAL_CHOSEN, cfg.name.clone()));
        };
        let Some(keys) = sa.keys.as_ref() else {
            return Err((nt::NO_PROPOSAL_CHOSEN, cfg.name.clone()));
        };
        let transport = transport_req && cfg.mode == Mode::Transport;
        let spi_in = self.alloc_child_spi(sa);
        let (mut i2r, mut r2i) = child_keys(prf, &keys.sk_d, ni, nr, &suite);
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
        sa.children.push(InstalledChild {
            sa: child,
            established: now,
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
        let (Some(props), Some(ni), Some(tsi), Some(tsr)) = (p.sa, p.nonce, p.tsi, p.tsr) else {
            // No TS: an IKE SA rekey, not supported yet.
            self.respond(
                sa,
                exch,
                mid,
                vec![Payload::notify(nt::NO_PROPOSAL_CHOSEN, Vec::new())],
            );
            return;
        };
        if !nonce_ok(ni) || p.ke.is_some() {
            // PFS (KE in CREATE_CHILD_SA) is not supported yet.
            self.respond(
                sa,
                exch,
                mid,
                vec![Payload::notify(nt::NO_PROPOSAL_CHOSEN, Vec::new())],
            );
            return;
        }
        let mut nr = vec![0u8; NONCE_LEN];
        self.rng.fill(&mut nr);
        let transport = has_notify(payloads, nt::USE_TRANSPORT_MODE);
        // A REKEY_SA request is handled as a new CHILD_SA; the peer deletes the old one (2.8).
        match self.negotiate_child(
            sa,
            props,
            tsi,
            tsr,
            transport,
            ni,
            &nr,
            Some(nr.clone()),
            true,
        ) {
            Ok((child, pl)) => {
                self.respond(sa, exch, mid, pl);
                self.install_child(sa, now, child);
            }
            Err((t, name)) => {
                self.respond(sa, exch, mid, vec![Payload::notify(t, Vec::new())]);
                self.child_failed(sa, &name, reason_from_notify(t, false));
            }
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

    fn on_info_request(&mut self, sa: &mut IkeSa, mid: u32, payloads: &[Payload]) -> Outcome {
        let exch = exchange::INFORMATIONAL;
        let mut delete_ike = false;
        let mut our_spis: Vec<u32> = Vec::new();
        for p in payloads {
            if let Payload::Delete(d) = p {
                match d.protocol {
                    protocol_id::IKE => delete_ike = true,
                    protocol_id::ESP => {
                        for s in &d.spis {
                            let Ok(b) = <[u8; 4]>::try_from(s.as_slice()) else {
                                continue;
                            };
                            let spi = u32::from_be_bytes(b);
                            if let Some(i) =
                                sa.children.iter().position(|c| c.sa.outbound.spi == spi)
                            {
                                if let Some(c) = sa.children.get(i) {
                                    our_spis.push(c.sa.inbound.spi);
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
            info!("received DELETE for IKE_SA {}[{}]", sa.conn.name, sa.id);
            self.respond(sa, exch, mid, Vec::new());
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
            debug!(%remote, "dropping unexpected response {mid}");
            self.stats.dropped_message_id += 1;
            return Outcome::Keep;
        }
        let Some(payloads) = self.open(sa, data, msg, remote) else {
            return Outcome::Keep;
        };
        Self::update_addrs(sa, local, remote);
        let Some(pending) = sa.pending.take() else {
            return Outcome::Keep;
        };
        match pending.kind {
            ReqKind::Init => Outcome::Keep,
            ReqKind::Auth(cp) => self.on_auth_response(sa, now, &payloads, cp),
            ReqKind::CreateChild(cp) => {
                let nr = parts(&payloads)
                    .nonce
                    .map(|n| n.to_vec())
                    .unwrap_or_default();
                let ni = cp.ni.clone();
                self.complete_child(sa, now, cp, &payloads, &ni, &nr);
                Outcome::Keep
            }
            ReqKind::DeleteIke => Outcome::Close(CloseReason::Deleted { by_peer: false }),
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
        sa.remote_identity = Some(peer_id);
        self.established(sa, now);
        if let Some(cp) = cp {
            let (ni, nr) = (sa.ni.clone(), sa.nr.clone());
            self.complete_child(sa, now, cp, payloads, &ni, &nr);
        }
        Outcome::Keep
    }

    /// Initiator: check the responder's CHILD_SA answer and install it.
    fn complete_child(
        &mut self,
        sa: &mut IkeSa,
        now: Instant,
        cp: ChildProposal,
        payloads: &[Payload],
        ni: &[u8],
        nr: &[u8],
    ) {
        if let Some(t) = first_error(payloads) {
            self.child_failed(sa, &cp.name, reason_from_notify(t, true));
            return;
        }
        let p = parts(payloads);
        let (Some(props), Some(tsi), Some(tsr)) = (p.sa, p.tsi, p.tsr) else {
            self.child_failed(sa, &cp.name, CloseReason::Error("INVALID_SYNTAX".into()));
            return;
        };
        let Some(cfg) = sa.conn.children.iter().find(|c| c.name == cp.name).cloned() else {
            return;
        };
        let Some((suite, peer_spi)) = proposals::check_esp_response(&cfg.esp_proposals, props)
        else {
            self.child_failed(
                sa,
                &cp.name,
                CloseReason::NoProposalChosen { by_peer: false },
            );
            return;
        };
        if !proposals::within(&cp.local_ts, tsi) || !proposals::within(&cp.remote_ts, tsr) {
            self.child_failed(sa, &cp.name, CloseReason::TsUnacceptable { by_peer: false });
            return;
        }
        if cp.transport && !has_notify(payloads, nt::USE_TRANSPORT_MODE) {
            self.child_failed(
                sa,
                &cp.name,
                CloseReason::Error("USE_TRANSPORT_MODE".into()),
            );
            return;
        }
        if !nonce_ok(nr) {
            self.child_failed(sa, &cp.name, CloseReason::Error("INVALID_SYNTAX".into()));
            return;
        }
        let (Some(s), Some(keys)) = (sa.suite, sa.keys.as_ref()) else {
            return;
        };
        let (mut i2r, mut r2i) = child_keys(s.prf, &keys.sk_d, ni, nr, &suite);
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
        };
        self.install_child(sa, now, child);
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
    /// Test hook: decrypt a message received on `conn`'s IKE SA.
    pub(crate) fn test_open(&mut self, conn: &str, data: &[u8]) -> Option<Vec<Payload>> {
        let spi = self.find_active(conn)?;
        let msg = Message::parse(data).ok()?;
        let sa = self.sas.get(&spi)?;
        sk::open(&sa.keys.as_ref()?.rx, data, &msg).ok()
    }
}
