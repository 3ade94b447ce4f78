//! Fuzz the TOML configuration parser and validator (`ferroswan check-config`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ferroswan_fuzz::targets::config(data));
