//! Sans-IO IKEv2 (RFC 7296): the state machine takes datagrams and `now`, and returns datagrams
//! to send, the next timer and events. No sockets, no clock, no threads (quinn-proto style).
//!
//! The daemon owns one [`Endpoint`]; it feeds it every IKE datagram (`handle_datagram`), commands
//! (`initiate`, `terminate`, `acquire`), and timeouts (`handle_timeout` at `poll_timeout()`), then
//! drains `poll_transmit()` and `poll_event()`.
#![forbid(unsafe_code)]

pub mod config;
mod cookie;
pub mod endpoint;
mod fragment;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod proposals;
mod ratelimit;
pub mod ratelog;
mod sk;
mod time;

pub use config::{
    ChildConfig, Config, ConnConfig, DpdAction, RetransmitConfig, StartAction, UniquePolicy,
};
pub use cookie::{Limits, DEFAULT_MAX_CHILDREN_PER_IKE_SA};
pub use endpoint::{ChildCounters, ChildSaInfo, IkeSaInfo, SEQ_HARD_LIMIT, SEQ_REKEY_MARGIN};
pub use endpoint::{
    ChildSa, CloseReason, Endpoint, Event, IkeError, IkeSaId, IkeStats, SaKeys, Transmit,
};

#[cfg(test)]
mod tests;
