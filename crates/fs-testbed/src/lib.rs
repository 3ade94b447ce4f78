//! fs-testbed: the dev-only harness shared by ferroswan's namespace tests (`tests/*.rs` of the
//! root package), compiled once. Each test file does `use fs_testbed::*;`.
//!
//! Shared harness for ferroswan's interop tests: network-namespace topology, strongSwan and
//! ferroswan launchers, traffic generators and wire checks.
//!
//! Topology (one set of namespaces per test, names `fs-<tag>-<pid>-{hA,gA,gB,hB}`):
//!
//! ```text
//! hostA 192.168.1.10 -- 192.168.1.1 gwA 100.1.1.1 ==veth== 200.2.2.2 gwB 192.168.2.1 -- 192.168.2.10 hostB
//!   ha0               ga-in          ga-out            gb-out          gb-in              hb0
//! ```
//!
//! The gateways forward but have **no route between the private nets** (except in the
//! `plain` variant): hostA can reach hostB only through a tunnel.
//!
//! Everything a test starts is registered in its [`Topology`]; dropping it (also while
//! panicking) stops those processes by PID, deletes the namespaces and, on failure, prints
//! the tail of every log. State lives in `/tmp/ferroswan-tests/<prefix>/` (kept on failure,
//! or always with `FS_TEST_KEEP=1`).
//!
//! Helpers for the robustness, policy and IPv6 tests (modules config, counters, inject, ike_craft, pcap, ipv6): ferroswan
//! configs with options the template lacks, packet senders inside a namespace (UDP and raw
//! IP), hand-made IKE datagrams, a minimal pcap reader and counter polling.
//! Every packet goes only to addresses of the test's own namespaces.
//!
//! The ferroswan binary is `target/<profile>/ferroswan` next to the test executable's `deps/`
//! directory (cargo builds it before the root package's integration tests), or `$FERROSWAN_BIN`;
//! see [`ferroswan_bin`]. Config templates are read from the root package's `tests/interop/`.

mod capture;
mod cmd;
mod config;
mod counters;
mod ferroswan;
mod gateway;
mod ike_craft;
mod inject;
mod ipv6;
mod pcap;
mod process;
mod scenarios;
mod strongswan;
mod topology;
mod traffic;

pub use capture::*;
pub use cmd::*;
pub use config::*;
pub use counters::*;
pub use ferroswan::*;
pub use gateway::*;
pub use ike_craft::*;
pub use inject::*;
pub use ipv6::*;
pub use pcap::*;
pub use process::*;
pub use scenarios::*;
pub use strongswan::*;
pub use topology::*;
pub use traffic::*;

pub const HA_IP: &str = "192.168.1.10";
pub const GA_IN: &str = "192.168.1.1";
pub const NET_A: &str = "192.168.1.0/24";
pub const HB_IP: &str = "192.168.2.10";
pub const GB_IN: &str = "192.168.2.1";
pub const NET_B: &str = "192.168.2.0/24";
pub const GA_OUT: &str = "100.1.1.1";
pub const GB_OUT: &str = "200.2.2.2";
/// Outside ("Internet") interface of gwA, where the wire checks capture.
pub const GA_OUT_IF: &str = "ga-out";

pub const IKE_PROPOSAL: &str = "aes256gcm16-prfsha256-x25519";
pub const PSK: &str = "harness-psk-0123456789abcdef";
pub const CONN: &str = "s2s";
pub const CHILD: &str = "net";

const TEST_ROOT: &str = "/tmp/ferroswan-tests";
