//! The IKE endpoint: demultiplexes datagrams by IKE SPI to IKE SAs, runs their state machines.
use crate::config::{fs_esp_mode::Mode, ChildConfig, Config, ConnConfig, RetransmitConfig};
use crate::proposals::{self, EspSuite, IkeSuite};
use crate::sk::{self, OpenError};
use fs_crypto::dh::KeyExchange;
use fs_crypto::{ikev2, EncrAlg, IntegAlg, PrfAlg, Rng, Transform as Cipher};
use fs_wire::id::Identity;
use fs_wire::ike::{
    auth_method, exchange, flags, notify_name, notify_type as nt, protocol_id, Delete, Header, IdPayload, Message,
    Payload, Proposal, IKE_VERSION,
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
    IkeSaEstablished { ike_sa: u64, conn: String, local: SocketAddr, remote: SocketAddr },
    /// An IKE SA ended or an attempt failed; all its CHILD_SAs are removed (ChildSaRemoved first).
    IkeSaClosed { ike_sa: u64, conn: String, reason: CloseReason },
    ChildSaInstalled(Box<ChildSa>),
    ChildSaRemoved { ike_sa: u64, conn: String, child: String, spi_in: u32, spi_out: u32 },
    /// A CHILD_SA could not be negotiated (e.g. TS_UNACCEPTABLE or NO_PROPOSAL_CHOSEN for the
    /// child in IKE_AUTH or CREATE_CHILD_SA); the IKE SA stays up (RFC 7296 2.21.2). `child` is
    /// empty when the responder found no matching child configuration.
    ChildSaFailed { ike_sa: u64, conn: String, child: String, reason: CloseReason },
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

