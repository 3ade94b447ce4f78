//! Fuzz `Endpoint::handle_datagram` through the encrypted path: the input is plaintext payload
//! chains that the harness seals with valid keys and message IDs (`fs_ike::fuzzing`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ferroswan_fuzz::targets::ike_endpoint(data));
