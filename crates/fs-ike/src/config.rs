//! Connection configuration, as the daemon builds it from its TOML file.
use fs_crypto::proposal::{EspProposal, IkeProposal};
use fs_crypto::Secret;
use fs_wire::{id::Identity, ts::TrafficSelector};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::time::Duration;

/// The whole configuration of an endpoint.
#[derive(Clone, Debug, Default)]
pub struct Config {
    pub connections: Vec<ConnConfig>,
    /// Responder limits against IKE_SA_INIT floods (COOKIE threshold, half-open caps).
    pub limits: crate::cookie::Limits,
}

/// When a CHILD_SA is brought up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartAction {
    /// Only by `ferroswan up` or by the peer.
    None,
    /// At daemon start.
    Start,
    /// On the first packet matching the child's selectors (the packet itself is dropped).
    Trap,
}

/// What to do when DPD (or any retransmission) times out on an established IKE SA.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DpdAction {
    /// Close the IKE SA and its children (default).
    #[default]
    Clear,
    /// Close, then initiate the connection again.
    Restart,
    /// Close; the daemon's trap policies (start_action = trap) re-trigger it on traffic.
    Trap,
}

/// Uniqueness policy of a connection: how many IKE SAs one remote identity may hold, like
/// strongSwan's `connections.<conn>.unique`. Checked by the responder when the peer's
/// IKE_AUTH has authenticated; IKE SAs of other connections never count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UniquePolicy {
    /// Several IKE SAs allowed; an INITIAL_CONTACT notify still removes the older ones.
    No,
    /// Several IKE SAs allowed, INITIAL_CONTACT ignored.
    Never,
    /// A new IKE SA replaces the established ones of the same identity (default). They are
    /// deleted (Delete exchange) at once when the new one comes from another address; from
    /// the same address (a make-before-break reauthentication, RFC 7296 2.8.3) after a grace
    /// period, unless the peer deletes them first.
    #[default]
    Replace,
    /// A new IKE SA is refused (AUTHENTICATION_FAILED) while one of the same identity is
    /// established; so is a peer's make-before-break reauthentication, as in strongSwan.
    Keep,
}

/// Retransmission of requests: timeout * base^n for n in 0..tries, then give up.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetransmitConfig {
    pub timeout: Duration,
    pub base: f64,
    pub tries: u32,
}

impl Default for RetransmitConfig {
    fn default() -> Self {
        RetransmitConfig {
            timeout: Duration::from_secs(4),
            base: 1.8,
            tries: 5,
        }
    }
}

/// One IKE connection (a peer and its CHILD_SA definitions). `Debug` shows the PSK's length
/// only; `Clone` (each IKE SA keeps its connection's settings) copies the PSK explicitly.
#[derive(Debug)]
pub struct ConnConfig {
    pub name: String,
    /// Addresses we use; empty = any (responder only).
    pub local_addrs: Vec<IpAddr>,
    /// Peer addresses; the first is used to initiate; empty = any (responder only).
    pub remote_addrs: Vec<IpAddr>,
    /// UDP port of the peer's IKE (default 500).
    pub remote_port: u16,
    pub local_id: Identity,
    /// `None` accepts any identity that proves the PSK.
    pub remote_id: Option<Identity>,
    /// Pre-shared key used for both directions ([`Secret`]: wiped on drop, `Debug` shows only
    /// its length).
    pub psk: Secret,
    /// IKE proposals in order of preference.
    pub ike_proposals: Vec<IkeProposal>,
    pub children: Vec<ChildConfig>,
    pub retransmit: RetransmitConfig,
    /// Always use UDP encapsulation for ESP (pretend NAT, like strongSwan `encap = yes`).
    pub force_encap: bool,
    /// Negotiate UDP encapsulation with peers that prefer it too (a ferroswan private
    /// notify in IKE_SA_INIT): a userspace data plane gets segmentation offload (UDP GSO/GRO)
    /// only for UDP. Other peers ignore the notify and get raw ESP unless there is a NAT.
    pub prefer_udp_encap: bool,
    /// IKE SA rekey interval (None = never); 0-10% random jitter is subtracted. Ignored when
    /// `reauth_time` is set: reauthentication replaces the IKE rekey.
    pub rekey_time: Option<Duration>,
    /// IKE SA reauthentication interval (RFC 7296 2.8.3; None = never), jittered by
    /// `rand_time`: a new IKE SA (IKE_SA_INIT + IKE_AUTH with the PSK, children re-created)
    /// is built make-before-break, then the old one is deleted.
    pub reauth_time: Option<Duration>,
    /// DPD / liveness check after this much inactivity (None = off).
    pub dpd_delay: Option<Duration>,
    /// Action when the peer is found dead (retransmissions exhausted).
    pub dpd_action: DpdAction,
    /// IKE fragmentation (RFC 7383): announce support in IKE_SA_INIT and fragment large
    /// encrypted messages when the peer supports it too.
    pub fragmentation: bool,
    /// Largest IP datagram (IP + UDP headers included, like strongSwan's `fragment_size`) of
    /// an encrypted IKE message before it is split into fragments.
    pub fragment_size: usize,
    /// NAT keepalive interval (RFC 3948 4): when we are behind a NAT, a 1-byte 0xFF datagram
    /// goes to the peer's port 4500 if nothing else was sent to it for this long (None = off).
    pub nat_keepalive: Option<Duration>,
    /// Hard lifetime of an IKE SA (None: 110% of `rekey_time`, or unlimited without rekeying):
    /// an IKE SA not rekeyed by then is deleted with its children.
    pub life_time: Option<Duration>,
    /// Random jitter subtracted from rekey times (None: up to 10% of the rekey time), like
    /// strongSwan's `rand_time`.
    pub rand_time: Option<Duration>,
    /// How many IKE SAs one remote identity may hold (`unique`).
    pub unique: UniquePolicy,
}

/// Written out (not derived) because [`Secret`] has no `Clone`: the PSK is copied with the
/// explicit [`Secret::duplicate`]. The exhaustive destructuring makes a new field a compile
/// error here until it is added.
impl Clone for ConnConfig {
    fn clone(&self) -> Self {
        let ConnConfig {
            name,
            local_addrs,
            remote_addrs,
            remote_port,
            local_id,
            remote_id,
            psk,
            ike_proposals,
            children,
            retransmit,
            force_encap,
            prefer_udp_encap,
            rekey_time,
            reauth_time,
            dpd_delay,
            dpd_action,
            fragmentation,
            fragment_size,
            nat_keepalive,
            life_time,
            rand_time,
            unique,
        } = self;
        ConnConfig {
            name: name.clone(),
            local_addrs: local_addrs.clone(),
            remote_addrs: remote_addrs.clone(),
            remote_port: *remote_port,
            local_id: local_id.clone(),
            remote_id: remote_id.clone(),
            psk: psk.duplicate(),
            ike_proposals: ike_proposals.clone(),
            children: children.clone(),
            retransmit: *retransmit,
            force_encap: *force_encap,
            prefer_udp_encap: *prefer_udp_encap,
            rekey_time: *rekey_time,
            reauth_time: *reauth_time,
            dpd_delay: *dpd_delay,
            dpd_action: *dpd_action,
            fragmentation: *fragmentation,
            fragment_size: *fragment_size,
            nat_keepalive: *nat_keepalive,
            life_time: *life_time,
            rand_time: *rand_time,
            unique: *unique,
        }
    }
}

/// Default [`ConnConfig::nat_keepalive`] (strongSwan's `keep_alive`).
pub const DEFAULT_NAT_KEEPALIVE: Duration = Duration::from_secs(20);

/// Default [`ConnConfig::fragment_size`] (strongSwan's default; RFC 7383 2.5.1).
pub const DEFAULT_FRAGMENT_SIZE: usize = 1280;

/// One CHILD_SA definition.
#[derive(Clone, Debug)]
pub struct ChildConfig {
    pub name: String,
    pub local_ts: Vec<TrafficSelector>,
    pub remote_ts: Vec<TrafficSelector>,
    pub esp_proposals: Vec<EspProposal>,
    pub mode: fs_wire::Mode,
    pub start_action: StartAction,
    /// Anti-replay window (packets).
    pub replay_window: u32,
    /// CHILD_SA rekey interval (None = never). The hard lifetime is rekey_time * 1.1: a CHILD_SA
    /// still not replaced by then is deleted.
    pub rekey_time: Option<Duration>,
    /// Hard lifetime (None: rekey_time * 1.1, or unlimited without rekey_time).
    pub life_time: Option<Duration>,
    /// Random jitter subtracted from `rekey_time` (None: up to 10% of it).
    pub rand_time: Option<Duration>,
    /// Volume limits, counted per direction (0 = off): rekey (soft) and delete (hard) once
    /// either direction of the CHILD_SA carried this many bytes / packets. The daemon feeds
    /// the counters with [`crate::Endpoint::note_child_counters`].
    pub rekey_bytes: u64,
    pub rekey_packets: u64,
    pub life_bytes: u64,
    pub life_packets: u64,
}

impl ChildConfig {
    /// A child with default lifetimes (no rekeying, no limits).
    pub fn new(
        name: &str,
        local_ts: Vec<TrafficSelector>,
        remote_ts: Vec<TrafficSelector>,
        esp_proposals: Vec<EspProposal>,
    ) -> Self {
        ChildConfig {
            name: name.to_string(),
            local_ts,
            remote_ts,
            esp_proposals,
            mode: fs_wire::Mode::Tunnel,
            start_action: StartAction::None,
            replay_window: 1024,
            rekey_time: None,
            life_time: None,
            rand_time: None,
            rekey_bytes: 0,
            rekey_packets: 0,
            life_bytes: 0,
            life_packets: 0,
        }
    }
}
