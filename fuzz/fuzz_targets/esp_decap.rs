//! Fuzz ESP decapsulation and inner-packet parsing (`ferroswan_fuzz::targets::esp_decap`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ferroswan_fuzz::targets::esp_decap(data));
