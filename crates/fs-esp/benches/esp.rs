//! ESP encapsulation/decapsulation throughput per suite and packet size, next to a bare
//! aws-lc-rs AEAD seal of the same size so the ESP overhead is visible.
//!
//! `cargo bench -p fs-esp -- --warm-up-time 1 --measurement-time 2`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "benchmark code"
)]
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, CHACHA20_POLY1305};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use fs_crypto::{EncrAlg, IntegAlg};
use fs_esp::{InboundSa, Mode, OutboundSa, SaConfig, NH_IPV4};
use std::hint::black_box;

const SIZES: [usize; 4] = [64, 512, 1400, 9000];

fn cfg(encr: EncrAlg, integ: Option<IntegAlg>) -> SaConfig {
    SaConfig {
        spi: fs_esp::EspSpi(0x1000_0001),
        encr,
        integ,
        encr_key: vec![0x11; encr.key_len()].into(),
        integ_key: integ.map_or(Vec::new(), |i| vec![0x22; i.key_len()]).into(),
        mode: Mode::Tunnel,
        // Decapsulation re-uses one packet: replay protection off.
        replay_window: 0,
        esn: false,
    }
}

fn inner_packet(n: usize) -> Vec<u8> {
    let mut p = vec![0xabu8; n];
    p[0] = 0x45;
    p
}

fn bench(c: &mut Criterion) {
    let suites: [(&str, EncrAlg, Option<IntegAlg>); 3] = [
        ("aes256gcm16", EncrAlg::AesGcm16_256, None),
        ("chacha20poly1305", EncrAlg::ChaCha20Poly1305, None),
        (
            "aes256-sha256",
            EncrAlg::AesCbc256,
            Some(IntegAlg::HmacSha256_128),
        ),
    ];
    for (name, encr, integ) in suites {
        let mut g = c.benchmark_group(format!("esp/{name}"));
        let conf = cfg(encr, integ);
        let out = OutboundSa::new(&conf).expect("outbound SA");
        let inb = InboundSa::new(&conf).expect("inbound SA");
        let bare = match encr {
            EncrAlg::AesGcm16_256 => Some(&AES_256_GCM),
            EncrAlg::ChaCha20Poly1305 => Some(&CHACHA20_POLY1305),
            _ => None,
        }
        .map(|alg| LessSafeKey::new(UnboundKey::new(alg, &[0x11; 32]).expect("key")));
        for n in SIZES {
            g.throughput(Throughput::Bytes(n as u64));
            let inner = inner_packet(n);
            let mut buf = vec![0u8; n + out.max_overhead()];
            g.bench_function(BenchmarkId::new("encap", n), |b| {
                b.iter(|| {
                    out.encapsulate(black_box(&inner), NH_IPV4, &mut buf)
                        .expect("encap")
                })
            });
            let len = out.encapsulate(&inner, NH_IPV4, &mut buf).expect("encap");
            let pkt = buf[..len].to_vec();
            g.bench_function(BenchmarkId::new("decap", n), |b| {
                b.iter_batched_ref(
                    || pkt.clone(),
                    |p| inb.decapsulate(black_box(p)).expect("decap"),
                    BatchSize::SmallInput,
                )
            });
            if let Some(key) = &bare {
                let mut data = inner.clone();
                data.extend_from_slice(&[1, 2, 2, 4]); // same plaintext length as ESP
                g.bench_function(BenchmarkId::new("aead_seal_bare", n), |b| {
                    b.iter(|| {
                        let nonce = Nonce::assume_unique_for_key([7; 12]);
                        key.seal_in_place_separate_tag(
                            nonce,
                            Aad::from([0u8; 8]),
                            black_box(&mut data),
                        )
                        .expect("seal")
                    })
                });
            }
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
