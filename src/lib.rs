//! ferroswan as a library: the configuration parser, shared by the binary and the fuzz
//! targets in `fuzz/`.
pub mod config;
