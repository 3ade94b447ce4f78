//! Fuzz ESP decapsulation and inner-packet parsing: never panic on any input.
//!
//! Byte 0 picks the suite, mode and ESN; byte 1 the strategy:
//! - raw: the rest is decapsulated as an ESP packet (exercises length/SPI/replay/ICV checks);
//! - authentic: the rest is encapsulated by a matching SA, one byte is then optionally
//!   corrupted, and the result decapsulated (the success path, trailer and next-header checks).
//!
//! Successful inner packets are fed to `PacketInfo::parse`.
#![no_main]

use fs_esp::ip::PacketInfo;
use fs_esp::{EncrAlg, InboundSa, IntegAlg, Mode, OutboundSa, SaConfig};
use libfuzzer_sys::fuzz_target;

const SUITES: [(EncrAlg, Option<IntegAlg>); 4] = [
    (EncrAlg::AesGcm16_256, None),
    (EncrAlg::ChaCha20Poly1305, None),
    (EncrAlg::AesCbc128, Some(IntegAlg::HmacSha256_128)),
    (EncrAlg::AesCbc256, Some(IntegAlg::HmacSha512_256)),
];

fuzz_target!(|data: &[u8]| {
    let [sel, strat, rest @ ..] = data else { return };
    let (encr, integ) = SUITES[usize::from(sel & 3)];
    let cfg = SaConfig {
        spi: 0x0102_0304,
        encr,
        integ,
        encr_key: vec![0x11; encr.key_len()].into(),
        integ_key: integ.map_or(Vec::new(), |i| vec![0x22; i.key_len()]).into(),
        mode: if sel & 4 == 0 { Mode::Tunnel } else { Mode::Transport },
        replay_window: if sel & 8 == 0 { 1024 } else { 0 },
        esn: sel & 16 != 0,
    };
    let (Ok(out), Ok(inb)) = (OutboundSa::new(&cfg), InboundSa::new(&cfg)) else { return };
    let mut pkt = if strat & 1 == 0 {
        rest.to_vec()
    } else {
        let Some((&nh, inner)) = rest.split_first() else { return };
        let mut buf = vec![0u8; inner.len() + out.max_overhead()];
        let Ok(n) = out.encapsulate(inner, nh, &mut buf) else { return };
        buf.truncate(n);
        if strat & 2 != 0 && !buf.is_empty() {
            let pos = usize::from(strat >> 2) % buf.len();
            buf[pos] ^= 0x5a;
        }
        buf
    };
    if let Ok(d) = inb.decapsulate(&mut pkt) {
        let _ = PacketInfo::parse(&pkt[d.inner]);
    }
});
