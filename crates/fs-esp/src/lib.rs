//! ESP (RFC 4303) SA processing as pure functions over caller buffers: encapsulation with
//! sequence numbers and padding, decapsulation with ICV check, padding/next-header checks and
//! the anti-replay window; inner-packet parsing for selector checks. No I/O here.
//!
//! An [`OutboundSa`] / [`InboundSa`] is `Send + Sync` so several data-plane workers can share it
//! (`Arc`): the sequence counter is atomic and the replay window is locked briefly.
#![forbid(unsafe_code)]

pub mod ip;
pub mod mtu;
pub mod replay;
pub mod sa;

pub use fs_crypto::{EncrAlg, IntegAlg};
pub use ip::PacketInfo;
pub use mtu::{esp_overhead, tunnel_mtu, tunnel_overhead};
pub use replay::ReplayWindow;
pub use sa::{
    Counters, Decapsulated, EspError, EspSpi, InboundSa, Mode, OutboundSa, SaConfig, NH_NO_NEXT,
};

/// ESP header: SPI (4) + sequence number (4).
pub const ESP_HEADER_LEN: usize = 8;
/// IP protocol number of ESP.
pub const IPPROTO_ESP: u8 = 50;
/// Next Header for an IPv4 inner packet (tunnel mode).
pub const NH_IPV4: u8 = 4;
/// Next Header for an IPv6 inner packet (tunnel mode).
pub const NH_IPV6: u8 = 41;
