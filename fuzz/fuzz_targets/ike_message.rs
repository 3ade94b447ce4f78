//! Fuzz the IKE message parser: never panic; whatever parses must round-trip.
#![no_main]

use fs_wire::ike::{parse_payloads, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::parse(data) {
        // Whatever parsed fits every field, so it re-emits.
        let emitted = m.emit().expect("a parsed message must re-emit");
        let again = Message::parse(&emitted).expect("emitted message must parse");
        // The header length may differ (unknown transform attributes are dropped on emit).
        assert_eq!(again.payloads, m.payloads);
        assert_eq!(again.header.spi_i, m.header.spi_i);
        assert_eq!(again.header.message_id, m.header.message_id);
        assert_eq!(again.emit().ok(), Some(emitted));
    }
    // Also exercise the bare chain parser (decrypted SK contents).
    if let Some((&first, rest)) = data.split_first() {
        let _ = parse_payloads(first, rest);
    }
});
