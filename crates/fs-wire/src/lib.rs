//! Zero-copy wire formats for ferroswan.
//!
//! - [`ts`]: traffic selectors (RFC 7296 3.13.1) as address/port/protocol ranges, shared by the
//!   IKE and ESP layers.
//! - [`id`]: IKE identities (RFC 7296 3.5).
//! - [`ipsec`]: the IKE SPI, ESP SPI and IPsec mode types shared by every crate.
//! - IKE message header and payload views and `Repr`s (smoltcp style: `new_checked`, accessors,
//!   `parse`/`buffer_len`/`emit`).
#![forbid(unsafe_code)]

pub mod id;
pub mod ike;
pub mod ipsec;
pub mod ts;

pub use ipsec::{EspSpi, IkeSpi, Mode};
