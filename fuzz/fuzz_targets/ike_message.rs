//! Fuzz the IKE message parser: never panic; whatever parses must round-trip
//! (`ferroswan_fuzz::targets::ike_message`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ferroswan_fuzz::targets::ike_message(data));
