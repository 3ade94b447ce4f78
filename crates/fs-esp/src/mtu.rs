//! Tunnel MTU arithmetic: the worst-case bytes ESP tunnel mode adds to an inner packet, and
//! the largest inner packet that fits a path MTU without fragmenting the outer packet.
//!
//! Worst case per packet: outer IPv4 20 / IPv6 40 header, UDP 8 (if encapsulated), ESP header
//! 8, IV (8 AEAD / 16 CBC), padding up to the alignment minus one (AEAD: 4-byte alignment,
//! 3; CBC: 16-byte blocks, 15), pad length + next header 2, ICV (16 AEAD; HMAC-SHA2-256/384/512
//! truncated: 16/24/32). The result is not rounded: every inner packet up to it fits.
use fs_crypto::{EncrAlg, IntegAlg};

/// Outer IPv4 header (no options).
pub const IPV4_HEADER_LEN: usize = 20;
/// Outer IPv6 header (no extension headers).
pub const IPV6_HEADER_LEN: usize = 40;
/// UDP header of UDP-encapsulated ESP (RFC 3948).
pub const UDP_HEADER_LEN: usize = 8;

/// Worst-case ESP bytes (header, IV, padding, trailer, ICV) added to an inner packet by the
/// suite `encr` (+ `integ` for non-AEAD). Same value as [`crate::OutboundSa::max_overhead`].
pub fn esp_overhead(encr: EncrAlg, integ: Option<IntegAlg>) -> usize {
    let align = encr.block_len().max(4);
    let icv = if encr.is_aead() {
        encr.aead_icv_len()
    } else {
        integ.map_or(0, IntegAlg::icv_len)
    };
    crate::ESP_HEADER_LEN + encr.iv_len() + (align - 1) + 2 + icv
}

/// Worst-case total overhead of tunnel-mode ESP: outer IP header (IPv6 if `outer_v6`), UDP
/// header if `udp_encap`, and [`esp_overhead`].
pub fn tunnel_overhead(
    encr: EncrAlg,
    integ: Option<IntegAlg>,
    outer_v6: bool,
    udp_encap: bool,
) -> usize {
    let ip = if outer_v6 {
        IPV6_HEADER_LEN
    } else {
        IPV4_HEADER_LEN
    };
    let udp = if udp_encap { UDP_HEADER_LEN } else { 0 };
    ip + udp + esp_overhead(encr, integ)
}

/// Largest inner packet that fits in one outer packet of at most `path_mtu` bytes
/// (`path_mtu - tunnel_overhead`, saturating at 0).
pub fn tunnel_mtu(
    path_mtu: u32,
    encr: EncrAlg,
    integ: Option<IntegAlg>,
    outer_v6: bool,
    udp_encap: bool,
) -> u32 {
    path_mtu.saturating_sub(tunnel_overhead(encr, integ, outer_v6, udp_encap) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use EncrAlg::*;
    use IntegAlg::*;

    #[test]
    fn esp_overhead_per_suite() {
        // 8 hdr + 8 IV + 3 pad + 2 trailer + 16 ICV
        assert_eq!(esp_overhead(AesGcm16_128, None), 37);
        assert_eq!(esp_overhead(AesGcm16_256, None), 37);
        assert_eq!(esp_overhead(ChaCha20Poly1305, None), 37);
        // 8 hdr + 16 IV + 15 pad + 2 trailer + ICV
        assert_eq!(esp_overhead(AesCbc128, Some(HmacSha256_128)), 57);
        assert_eq!(esp_overhead(AesCbc256, Some(HmacSha256_128)), 57);
        assert_eq!(esp_overhead(AesCbc256, Some(HmacSha384_192)), 65);
        assert_eq!(esp_overhead(AesCbc256, Some(HmacSha512_256)), 73);
    }

    #[test]
    fn tunnel_mtu_per_suite() {
        // 1500 - 20 - 8 - 8 - 8 - 3 - 2 - 16
        assert_eq!(tunnel_mtu(1500, AesGcm16_256, None, false, true), 1435);
        assert_eq!(tunnel_mtu(1500, AesGcm16_256, None, false, false), 1443);
        assert_eq!(tunnel_mtu(1500, AesGcm16_128, None, true, true), 1415);
        assert_eq!(tunnel_mtu(1500, AesGcm16_128, None, true, false), 1423);
        assert_eq!(tunnel_mtu(1500, ChaCha20Poly1305, None, false, true), 1435);
        assert_eq!(
            tunnel_mtu(1500, AesCbc128, Some(HmacSha256_128), false, true),
            1415
        );
        assert_eq!(
            tunnel_mtu(1500, AesCbc256, Some(HmacSha384_192), false, true),
            1407
        );
        assert_eq!(
            tunnel_mtu(1500, AesCbc256, Some(HmacSha512_256), false, true),
            1399
        );
        assert_eq!(
            tunnel_mtu(1500, AesCbc256, Some(HmacSha512_256), true, true),
            1379
        );
        assert_eq!(tunnel_mtu(1400, AesGcm16_256, None, false, true), 1335);
        assert_eq!(tunnel_mtu(40, AesGcm16_256, None, false, true), 0);
    }

    /// The formula agrees with the SA's own worst case, and the worst case is reached.
    #[test]
    fn matches_outbound_sa() {
        let suites = [
            (AesGcm16_128, None),
            (AesGcm16_256, None),
            (ChaCha20Poly1305, None),
            (AesCbc128, Some(HmacSha256_128)),
            (AesCbc256, Some(HmacSha384_192)),
            (AesCbc256, Some(HmacSha512_256)),
        ];
        for (encr, integ) in suites {
            let sa = crate::OutboundSa::new(&crate::SaConfig {
                spi: crate::EspSpi(1),
                encr,
                integ,
                encr_key: vec![7; encr.key_len()].into(),
                integ_key: integ
                    .map(|i| vec![9; i.key_len()])
                    .unwrap_or_default()
                    .into(),
                mode: crate::Mode::Tunnel,
                replay_window: 0,
                esn: false,
            })
            .unwrap();
            assert_eq!(esp_overhead(encr, integ), sa.max_overhead(), "{encr:?}");
            let mtu = tunnel_mtu(1400, encr, integ, false, true) as usize;
            let worst = (mtu - 3..=mtu)
                .map(|n| sa.encapsulated_len(n) + 28)
                .max()
                .unwrap();
            assert!(worst <= 1400, "{encr:?}: {worst}");
        }
    }
}
