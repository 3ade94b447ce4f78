use super::*;
use crate::id::id_type;

/// Decode hex, ignoring whitespace (test helper).
fn hx(s: &str) -> Vec<u8> {
    let d: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    d.chunks(2)
        .map(|c| u8::from_str_radix(std::str::from_utf8(c).unwrap(), 16).unwrap())
        .collect()
}

fn ts(s: &str) -> TrafficSelector {
    s.parse().unwrap()
}

/// An IKE_SA_INIT request laid out the way strongSwan 5.9 sends one (SA, KE, Nonce,
/// NAT-D source/destination, IKEV2_FRAGMENTATION_SUPPORTED, SIGNATURE_HASH_ALGORITHMS,
/// REDIRECT_SUPPORTED), hand-assembled per RFC 7296 section 3.
fn strongswan_sa_init() -> Vec<u8> {
    hx(concat!(
        // IKE header: SPIi, SPIr, next=SA(33), ver 2.0, IKE_SA_INIT(34), flags I, msgid 0,
        // length 276
        "1122334455667788 0000000000000000 21 20 22 08 00000000 00000114",
        // SA payload: next=KE(34), length 84
        "22 00 0054",
        // Proposal 1 (more follows=2), len 36, #1, IKE, SPI size 0, 3 transforms
        "02 00 0024 01 01 00 03",
        // ENCR AES-GCM-16 (20), key length 256 (attr 0x800e)
        "03 00 000c 01 00 0014 800e 0100",
        // PRF HMAC-SHA2-256 (5)
        "03 00 0008 02 00 0005",
        // DH curve25519 (31)
        "00 00 0008 04 00 001f",
        // Proposal 2 (last), len 44, #2, IKE, SPI size 0, 4 transforms
        "00 00 002c 02 01 00 04",
        // ENCR AES-CBC (12) 128
        "03 00 000c 01 00 000c 800e 0080",
        // INTEG HMAC-SHA2-256-128 (12)
        "03 00 0008 03 00 000c",
        // PRF HMAC-SHA2-256 (5)
        "03 00 0008 02 00 0005",
        // DH ECP-256 (19)
        "00 00 0008 04 00 0013",
        // KE payload: next=Nonce(40), len 40, group 31, reserved, 32-byte public value
        "28 00 0028 001f 0000",
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
        // Nonce: next=Notify(41), len 36, 32 bytes
        "29 00 0024",
        "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf",
        // N(NAT_DETECTION_SOURCE_IP): len 28, proto 0, SPI size 0, type 16388, SHA-1 hash
        "29 00 001c 00 00 4004 c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3",
        // N(NAT_DETECTION_DESTINATION_IP) 16389
        "29 00 001c 00 00 4005 e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3",
        // N(IKEV2_FRAGMENTATION_SUPPORTED) 16430
        "29 00 0008 00 00 402e",
        // N(SIGNATURE_HASH_ALGORITHMS) 16431: SHA2-256, SHA2-384, SHA2-512, Identity
        "29 00 0010 00 00 402f 0002 0003 0004 0005",
        // N(REDIRECT_SUPPORTED) 16406 (not in our table), last payload
        "00 00 0008 00 00 4016",
    ))
}

#[test]
fn strongswan_sa_init_field_by_field() {
    let b = strongswan_sa_init();
    assert_eq!(b.len(), 276);
    let v = HeaderView::new_checked(&b[..]).unwrap();
    assert_eq!(v.spi_i(), 0x1122334455667788);
    assert_eq!(v.spi_r(), 0);
    assert_eq!(v.next_payload(), payload_type::SA);
    assert_eq!(v.version(), 0x20);
    assert_eq!(v.exchange(), exchange::IKE_SA_INIT);
    assert_eq!(v.flags(), flags::INITIATOR);
    assert_eq!(v.message_id(), 0);
    assert_eq!(v.length(), 276);

    let m = Message::parse(&b).unwrap();
    assert!(m.header.is_initiator());
    assert!(!m.header.is_response());
    assert_eq!(m.payloads.len(), 8);
    let Payload::Sa(props) = &m.payloads[0] else {
        panic!("not SA")
    };
    assert_eq!(props.len(), 2);
    assert_eq!(props[0].num, 1);
    assert_eq!(props[0].protocol, protocol_id::IKE);
    assert!(props[0].spi.is_empty());
    assert_eq!(
        props[0].transforms,
        vec![
            Transform {
                ttype: transform_type::ENCR,
                id: 20,
                key_len: Some(256)
            },
            Transform {
                ttype: transform_type::PRF,
                id: 5,
                key_len: None
            },
            Transform {
                ttype: transform_type::DH,
                id: 31,
                key_len: None
            },
        ]
    );
    assert_eq!(props[1].num, 2);
    assert_eq!(props[1].transforms.len(), 4);
    assert_eq!(props[1].transforms[0].key_len, Some(128));
    assert_eq!(
        props[1].transforms[1],
        Transform {
            ttype: 3,
            id: 12,
            key_len: None
        }
    );
    let Payload::Ke { group, data } = &m.payloads[1] else {
        panic!("not KE")
    };
    assert_eq!(*group, 31);
    assert_eq!(data.len(), 32);
    assert_eq!(data[31], 0x1f);
    let Payload::Nonce(n) = &m.payloads[2] else {
        panic!("not Nonce")
    };
    assert_eq!(n.len(), 32);
    assert_eq!(n[0], 0xa0);
    let src = m.notify(notify_type::NAT_DETECTION_SOURCE_IP).unwrap();
    assert_eq!(src.protocol, 0);
    assert!(src.spi.is_empty());
    assert_eq!(src.data.len(), 20);
    assert_eq!(
        m.notify(notify_type::NAT_DETECTION_DESTINATION_IP)
            .unwrap()
            .data[0],
        0xe0
    );
    assert!(m
        .notify(notify_type::IKEV2_FRAGMENTATION_SUPPORTED)
        .unwrap()
        .data
        .is_empty());
    assert_eq!(
        m.notify(notify_type::SIGNATURE_HASH_ALGORITHMS)
            .unwrap()
            .data,
        vec![0, 2, 0, 3, 0, 4, 0, 5]
    );
    assert!(m.notify(16406).is_some());
    assert!(m.notify(notify_type::COOKIE).is_none());

    // Emit reproduces the exact bytes.
    assert_eq!(m.emit().unwrap(), b);
}

#[test]
fn header_roundtrip_and_view() {
    let h = Header {
        spi_i: 0x0102030405060708,
        spi_r: 0xa1a2a3a4a5a6a7a8,
        next_payload: payload_type::SK,
        version: IKE_VERSION,
        exchange: exchange::IKE_AUTH,
        flags: flags::RESPONSE,
        message_id: 0xdeadbeef,
        length: 1234,
    };
    let mut b = [0u8; HEADER_LEN + 3];
    h.emit(&mut b).unwrap();
    assert_eq!(Header::parse(&b).unwrap(), h);
    assert_eq!(&b[..8], &[1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(&b[16..20], &[46, 0x20, 35, 0x20]);
    assert_eq!(&b[20..28], &[0xde, 0xad, 0xbe, 0xef, 0, 0, 0x04, 0xd2]);
    assert!(h.is_response() && !h.is_initiator());
    assert_eq!(
        HeaderView::new_checked(&b[..27]).unwrap_err(),
        WireError::Truncated
    );
    assert_eq!(Header::parse(&b[..0]).unwrap_err(), WireError::Truncated);
    let v = HeaderView::new_checked(&b[..]).unwrap();
    assert_eq!(v.message_id(), 0xdeadbeef);
    assert_eq!(v.length(), 1234);
    assert_eq!(v.into_inner().len(), 31);
}

#[test]
fn notify_names() {
    assert_eq!(notify_name(24), "AUTHENTICATION_FAILED");
    assert_eq!(
        notify_type::notify_name(notify_type::NO_PROPOSAL_CHOSEN),
        "NO_PROPOSAL_CHOSEN"
    );
    assert_eq!(notify_name(16431), "SIGNATURE_HASH_ALGORITHMS");
    assert_eq!(notify_name(12345), "NOTIFY(12345)");
    assert!(notify_type::is_error(notify_type::TS_UNACCEPTABLE));
    assert!(!notify_type::is_error(notify_type::COOKIE));
}

#[test]
fn id_payload_helpers() {
    let id = Identity::from_config("gw-a.example");
    let p = IdPayload::from(&id);
    assert_eq!(p.id_type, id_type::FQDN);
    assert_eq!(p.body(), [&[2u8, 0, 0, 0][..], b"gw-a.example"].concat());
    assert_eq!(p.identity(), id);
    let ip = IdPayload::from(&Identity::from_config("100.1.1.1"));
    assert_eq!(ip.body(), vec![1, 0, 0, 0, 100, 1, 1, 1]);
}

/// One of every payload type (all but SK/SKF, which must end a chain).
fn all_plain_payloads() -> Vec<Payload> {
    vec![
        Payload::Sa(vec![
            Proposal {
                num: 1,
                protocol: protocol_id::IKE,
                spi: vec![1, 2, 3, 4, 5, 6, 7, 8],
                transforms: vec![
                    Transform {
                        ttype: 1,
                        id: 20,
                        key_len: Some(256),
                    },
                    Transform {
                        ttype: 2,
                        id: 7,
                        key_len: None,
                    },
                    Transform {
                        ttype: 4,
                        id: 31,
                        key_len: None,
                    },
                    // Unknown transform type still parses.
                    Transform {
                        ttype: 200,
                        id: 999,
                        key_len: Some(7),
                    },
                ],
            },
            Proposal {
                num: 2,
                protocol: protocol_id::ESP,
                spi: vec![0xc0, 0, 0, 1],
                transforms: vec![
                    Transform {
                        ttype: 1,
                        id: 12,
                        key_len: Some(128),
                    },
                    Transform {
                        ttype: 5,
                        id: 0,
                        key_len: None,
                    },
                ],
            },
            Proposal {
                num: 3,
                protocol: protocol_id::AH,
                spi: vec![],
                transforms: vec![],
            },
        ]),
        Payload::Sa(vec![]),
        Payload::Ke {
            group: 19,
            data: vec![7; 64],
        },
        Payload::Ke {
            group: 0,
            data: vec![],
        },
        Payload::IdI(IdPayload::from(&Identity::from_config("a@b.c"))),
        Payload::IdR(IdPayload {
            id_type: 99,
            data: vec![],
        }),
        Payload::Cert {
            encoding: 4,
            data: vec![0x30, 0x82, 1, 2],
        },
        Payload::CertReq {
            encoding: 4,
            data: vec![],
        },
        Payload::Auth {
            method: auth_method::PSK,
            data: vec![9; 32],
        },
        Payload::Nonce(vec![1; 16]),
        Payload::Nonce(vec![]),
        Payload::notify(notify_type::INITIAL_CONTACT, vec![]),
        Payload::Notify(Notify {
            protocol: protocol_id::ESP,
            spi: vec![1, 2, 3, 4],
            ntype: notify_type::REKEY_SA,
            data: vec![5, 6],
        }),
        Payload::Delete(Delete {
            protocol: protocol_id::IKE,
            spi_size: 0,
            spis: vec![],
        }),
        Payload::Delete(Delete {
            protocol: protocol_id::ESP,
            spi_size: 4,
            spis: vec![vec![1, 2, 3, 4], vec![5, 6, 7, 8]],
        }),
        Payload::Vendor(b"strongSwan".to_vec()),
        Payload::TsI(vec![ts("10.0.0.0/24"), ts("::/0")]),
        Payload::TsR(vec![TrafficSelector {
            protocol: 6,
            start_port: 80,
            end_port: 443,
            ..ts("192.168.0.1-192.168.0.9")
        }]),
        Payload::TsR(vec![]),
        Payload::Cp {
            cfg_type: cfg::CFG_REQUEST,
            attrs: vec![
                CpAttribute {
                    atype: cfg::INTERNAL_IP4_ADDRESS,
                    value: vec![],
                },
                CpAttribute {
                    atype: cfg::INTERNAL_IP4_DNS,
                    value: vec![8, 8, 8, 8],
                },
            ],
        },
        Payload::Cp {
            cfg_type: cfg::CFG_ACK,
            attrs: vec![],
        },
        Payload::Eap(vec![1, 2, 0, 5, 1]),
        Payload::Unknown {
            ptype: 49,
            critical: false,
            body: vec![1, 2, 3],
        },
        Payload::Unknown {
            ptype: 200,
            critical: true,
            body: vec![],
        },
    ]
}

fn msg(payloads: Vec<Payload>) -> Message {
    Message {
        header: Header {
            spi_i: 1,
            spi_r: 2,
            next_payload: 0,
            version: IKE_VERSION,
            exchange: exchange::CREATE_CHILD_SA,
            flags: flags::INITIATOR | flags::RESPONSE,
            message_id: 7,
            length: 0,
        },
        payloads,
    }
}

/// Emit, parse, compare (with the header fields emit fills).
fn roundtrip(m: &Message) -> Vec<u8> {
    let b = m.emit().unwrap();
    let back = Message::parse(&b).unwrap_or_else(|e| panic!("{e}: {m:?}"));
    let mut want = m.clone();
    want.header.next_payload = m.payloads.first().map_or(0, Payload::ptype);
    want.header.length = b.len() as u32;
    assert_eq!(back, want);
    assert_eq!(back.emit().unwrap(), b);
    b
}

#[test]
fn roundtrip_every_payload_type() {
    let all = all_plain_payloads();
    for p in &all {
        assert_eq!(
            p.buffer_len(),
            emit_payloads(std::slice::from_ref(p)).unwrap().1.len()
        );
        roundtrip(&msg(vec![p.clone()]));
        // Chains (no header) too.
        let (first, bytes) = emit_payloads(std::slice::from_ref(p)).unwrap();
        assert_eq!(first, p.ptype());
        assert_eq!(parse_payloads(first, &bytes).unwrap(), vec![p.clone()]);
    }
    roundtrip(&msg(all.clone()));
    roundtrip(&msg(vec![]));
    assert_eq!(
        msg(all.clone()).buffer_len(),
        msg(all.clone()).emit().unwrap().len()
    );
    let sk = Payload::Sk {
        first_inner: payload_type::IDI,
        body: vec![0xee; 48],
    };
    roundtrip(&msg(vec![sk.clone()]));
    roundtrip(&msg(vec![Payload::Sk {
        first_inner: 0,
        body: vec![],
    }]));
    let mut with_sk = all.clone();
    with_sk.push(sk);
    roundtrip(&msg(with_sk));
    let skf = Payload::Skf {
        first_inner: payload_type::IDI,
        fragment_number: 1,
        total_fragments: 3,
        body: vec![0xdd; 100],
    };
    roundtrip(&msg(vec![skf]));
    roundtrip(&msg(vec![Payload::Skf {
        first_inner: 0,
        fragment_number: 3,
        total_fragments: 3,
        body: vec![],
    }]));
    let (first, bytes) = emit_payloads(&all).unwrap();
    assert_eq!(parse_payloads(first, &bytes).unwrap(), all);
    assert_eq!(emit_payloads(&[]).unwrap(), (0, vec![]));
    assert_eq!(parse_payloads(0, &[]).unwrap(), vec![]);
}

#[test]
fn sk_prefix_matches_emit() {
    let body = vec![0x5a; 61];
    let m = msg(vec![Payload::Sk {
        first_inner: payload_type::TSI,
        body: body.clone(),
    }]);
    let b = m.emit().unwrap();
    let prefix = sk_message_prefix(&m.header, payload_type::TSI, body.len()).unwrap();
    assert_eq!(prefix.len(), HEADER_LEN + 4);
    assert_eq!(&b[..prefix.len()], &prefix[..]);
    assert_eq!(&b[prefix.len()..], &body[..]);

    let m = msg(vec![Payload::Skf {
        first_inner: 0,
        fragment_number: 2,
        total_fragments: 2,
        body: body.clone(),
    }]);
    let b = m.emit().unwrap();
    let prefix = skf_message_prefix(&m.header, 0, 2, 2, body.len()).unwrap();
    assert_eq!(prefix.len(), HEADER_LEN + 8);
    assert_eq!(&b[..prefix.len()], &prefix[..]);
    assert_eq!(&b[prefix.len()..], &body[..]);
}

#[test]
fn truncated_at_every_length() {
    let mut m = msg(all_plain_payloads());
    m.payloads.push(Payload::Sk {
        first_inner: 33,
        body: vec![1; 20],
    });
    for b in [strongswan_sa_init(), m.emit().unwrap()] {
        for n in 0..b.len() {
            assert!(Message::parse(&b[..n]).is_err(), "len {n}");
            // Even with the header length patched to match, the chain is short.
            if n >= HEADER_LEN {
                let mut t = b[..n].to_vec();
                t[24..28].copy_from_slice(&(n as u32).to_be_bytes());
                assert!(Message::parse(&t).is_err(), "patched len {n}");
                assert!(parse_payloads(b[16], &b[HEADER_LEN..n]).is_err());
            }
        }
        assert!(Message::parse(&b).is_ok());
    }
}

#[test]
fn header_errors() {
    let b = strongswan_sa_init();
    let set_len = |v: u32| {
        let mut t = b.clone();
        t[24..28].copy_from_slice(&v.to_be_bytes());
        t
    };
    assert_eq!(
        Message::parse(&set_len(277)).unwrap_err(),
        WireError::BadLength {
            declared: 277,
            actual: 276
        }
    );
    assert_eq!(
        Message::parse(&set_len(275)).unwrap_err(),
        WireError::TrailingBytes
    );
    assert_eq!(
        Message::parse(&set_len(0)).unwrap_err(),
        WireError::BadLength {
            declared: 0,
            actual: 276
        }
    );
    assert!(Message::parse(&set_len(27)).is_err());
    assert!(Message::parse(&set_len(u32::MAX)).is_err());
    // Trailing bytes after a correct header length.
    let mut t = b.clone();
    t.push(0);
    assert_eq!(Message::parse(&t).unwrap_err(), WireError::TrailingBytes);
    // Header length covering an extra byte not consumed by the chain.
    let mut t = b.clone();
    t.push(0);
    t[24..28].copy_from_slice(&277u32.to_be_bytes());
    assert_eq!(Message::parse(&t).unwrap_err(), WireError::TrailingBytes);
    // Version.
    let mut t = b.clone();
    t[17] = 0x10;
    assert_eq!(
        Message::parse(&t).unwrap_err(),
        WireError::UnsupportedVersion(0x10)
    );
    t[17] = 0x30;
    assert_eq!(
        Message::parse(&t).unwrap_err(),
        WireError::UnsupportedVersion(0x30)
    );
    t[17] = 0x21; // minor versions are accepted
    assert!(Message::parse(&t).is_ok());
    // Header::parse itself does not check the version.
    t[17] = 0x30;
    assert_eq!(Header::parse(&t).unwrap().version, 0x30);
}

#[test]
fn payload_length_errors() {
    let b = strongswan_sa_init();
    // First payload (SA) length field lives at 28+2.
    for bad in [0u16, 3] {
        let mut t = b.clone();
        t[30..32].copy_from_slice(&bad.to_be_bytes());
        assert_eq!(
            Message::parse(&t).unwrap_err(),
            WireError::BadPayloadLength {
                ptype: 33,
                length: bad as usize,
                available: 248
            }
        );
    }
    let mut t = b.clone();
    t[30..32].copy_from_slice(&0xffffu16.to_be_bytes());
    assert!(matches!(
        Message::parse(&t).unwrap_err(),
        WireError::BadPayloadLength {
            ptype: 33,
            length: 0xffff,
            ..
        }
    ));
    // Last payload one byte longer than the datagram.
    let mut t = b.clone();
    let n = t.len();
    t[n - 6..n - 4].copy_from_slice(&9u16.to_be_bytes());
    assert!(matches!(
        Message::parse(&t).unwrap_err(),
        WireError::BadPayloadLength { .. }
    ));
    // Chain ends early: last-but-one says "none".
    let mut t = b.clone();
    t[n - 8 - 16] = 0;
    assert_eq!(Message::parse(&t).unwrap_err(), WireError::TrailingBytes);
    // Chain claims more but the buffer ends.
    let mut t = b.clone();
    t[n - 8] = payload_type::NOTIFY;
    assert_eq!(Message::parse(&t).unwrap_err(), WireError::Truncated);
    // parse_payloads rejects trailing bytes too.
    let (first, mut chain) = emit_payloads(&[Payload::Nonce(vec![1; 16])]).unwrap();
    chain.push(0);
    assert_eq!(
        parse_payloads(first, &chain).unwrap_err(),
        WireError::TrailingBytes
    );
}

#[test]
fn unknown_critical_payload() {
    let m = msg(vec![
        Payload::Nonce(vec![3; 16]),
        Payload::Unknown {
            ptype: 150,
            critical: true,
            body: vec![0xaa; 5],
        },
    ]);
    let b = m.emit().unwrap();
    // Generic header of the unknown payload: next 0, critical bit, length 9.
    assert_eq!(&b[HEADER_LEN + 20..HEADER_LEN + 24], &[0, 0x80, 0, 9]);
    let back = Message::parse(&b).unwrap();
    assert_eq!(
        back.payloads[1],
        Payload::Unknown {
            ptype: 150,
            critical: true,
            body: vec![0xaa; 5]
        }
    );
    // Critical bit on a known payload is ignored; reserved bits too.
    let mut t = b.clone();
    t[HEADER_LEN + 1] = 0xff;
    assert_eq!(Message::parse(&t).unwrap().payloads, back.payloads);
}

#[test]
fn sk_must_be_last() {
    let m = msg(vec![Payload::Sk {
        first_inner: payload_type::IDI,
        body: vec![1; 32],
    }]);
    let mut b = m.emit().unwrap();
    // Append a Nonce after the SK payload (the SK's next payload is the inner type).
    b.extend_from_slice(&[0, 0, 0, 8, 1, 2, 3, 4]);
    let len = b.len() as u32;
    b[24..28].copy_from_slice(&len.to_be_bytes());
    assert_eq!(Message::parse(&b).unwrap_err(), WireError::SkNotLast);
}

fn ts_payload_bytes(ts_type: u8, sel_len: u16, addr_len: usize) -> Vec<u8> {
    let mut v = vec![1, 0, 0, 0, ts_type, 0];
    v.extend_from_slice(&sel_len.to_be_bytes());
    v.extend_from_slice(&[0, 0, 0xff, 0xff]);
    v.extend_from_slice(&vec![0x0a; addr_len * 2]);
    let mut p = vec![0, 0];
    p.extend_from_slice(&((v.len() + 4) as u16).to_be_bytes());
    p.extend_from_slice(&v);
    p
}

#[test]
fn ts_errors() {
    let good = ts_payload_bytes(7, 16, 4);
    assert_eq!(
        parse_payloads(payload_type::TSI, &good).unwrap(),
        vec![Payload::TsI(vec![ts("10.10.10.10/32")])]
    );
    let good6 = ts_payload_bytes(8, 40, 16);
    assert!(parse_payloads(payload_type::TSR, &good6).is_ok());
    for (t, l, a) in [
        (7, 40, 4),
        (7, 17, 4),
        (8, 16, 16),
        (7, 40, 16),
        (8, 16, 4),
        (7, 0, 4),
    ] {
        let b = ts_payload_bytes(t, l, a);
        assert!(
            matches!(
                parse_payloads(payload_type::TSI, &b).unwrap_err(),
                WireError::InvalidPayload { ptype: 44, .. }
            ),
            "{t} {l} {a}"
        );
    }
    // Unknown TS type (e.g. 10 = TS_FC_ADDR_RANGE).
    let b = ts_payload_bytes(10, 16, 4);
    assert_eq!(
        parse_payloads(payload_type::TSR, &b).unwrap_err(),
        WireError::InvalidPayload {
            ptype: 45,
            reason: "unsupported TS type"
        }
    );
    // Count says 2 but only one selector present; count 0 with data.
    let mut b = good.clone();
    b[4] = 2;
    assert!(parse_payloads(payload_type::TSI, &b).is_err());
    b[4] = 0;
    assert!(parse_payloads(payload_type::TSI, &b).is_err());
}

#[test]
fn sa_parsing_details() {
    // One proposal, one transform carrying an unknown TLV attribute, an unknown TV attribute
    // and the key length.
    let body = hx(concat!(
        "00 00 0022 01 03 04 01 c0000001",
        "00 00 0016 01 00 000c 0001 0002 beef 8001 0005 800e 00c0",
    ));
    let mut p = vec![0, 0];
    p.extend_from_slice(&((body.len() + 4) as u16).to_be_bytes());
    p.extend_from_slice(&body);
    assert_eq!(
        parse_payloads(payload_type::SA, &p).unwrap(),
        vec![Payload::Sa(vec![Proposal {
            num: 1,
            protocol: protocol_id::ESP,
            spi: vec![0xc0, 0, 0, 1],
            transforms: vec![Transform {
                ttype: 1,
                id: 12,
                key_len: Some(192)
            }],
        }])]
    );
    let bad = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut q = p.clone();
        f(&mut q);
        parse_payloads(payload_type::SA, &q).unwrap_err()
    };
    // Proposal "more" flag on the last proposal.
    assert!(matches!(
        bad(&|q| q[4] = 2),
        WireError::InvalidPayload { ptype: 33, .. }
    ));
    // Bad last-substructure value.
    assert!(matches!(
        bad(&|q| q[4] = 1),
        WireError::InvalidPayload { ptype: 33, .. }
    ));
    // Transform count mismatch.
    assert!(matches!(
        bad(&|q| q[11] = 2),
        WireError::InvalidPayload { ptype: 33, .. }
    ));
    // Transform "more" flag on the last transform.
    assert!(matches!(
        bad(&|q| q[16] = 3),
        WireError::InvalidPayload { ptype: 33, .. }
    ));
    // TLV attribute longer than the transform.
    assert!(matches!(
        bad(&|q| q[27] = 9),
        WireError::InvalidPayload { ptype: 33, .. }
    ));
    // SPI size past the proposal.
    assert!(matches!(
        bad(&|q| q[10] = 200),
        WireError::InvalidPayload { ptype: 33, .. }
    ));
    // Proposal length below 8.
    assert!(matches!(
        bad(&|q| q[7] = 4),
        WireError::InvalidPayload { ptype: 33, .. }
    ));
}

#[test]
fn delete_notify_skf_errors() {
    let one = |ptype: u8, body: &[u8]| {
        let mut p = vec![0, 0];
        p.extend_from_slice(&((body.len() + 4) as u16).to_be_bytes());
        p.extend_from_slice(body);
        parse_payloads(ptype, &p)
    };
    // Delete: count 2 x 4 bytes but only 7 bytes of SPIs.
    assert!(one(payload_type::DELETE, &[3, 4, 0, 2, 1, 2, 3, 4, 5, 6, 7]).is_err());
    assert!(one(payload_type::DELETE, &[3, 4, 0]).is_err());
    // Notify SPI size past the payload.
    assert!(one(payload_type::NOTIFY, &[3, 8, 0x40, 0x09, 1, 2, 3, 4]).is_err());
    assert!(one(payload_type::NOTIFY, &[3, 0, 0x40]).is_err());
    // KE / AUTH / ID too short.
    assert!(one(payload_type::KE, &[0, 19, 0]).is_err());
    assert!(one(payload_type::AUTH, &[2, 0]).is_err());
    assert!(one(payload_type::IDI, &[]).is_err());
    assert!(one(payload_type::CERT, &[]).is_err());
    assert!(one(payload_type::CP, &[1, 0, 0, 0, 0, 1, 0, 5, 1]).is_err());
    // SKF: fragment number 0 or above total.
    assert!(one(payload_type::SKF, &[0, 0, 0, 1]).is_err());
    assert!(one(payload_type::SKF, &[0, 3, 0, 2]).is_err());
    assert!(one(payload_type::SKF, &[0, 1, 0]).is_err());
}

/// xorshift64* PRNG with a fixed seed (deterministic property test).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Parse; on success, emit and re-parse must give the same payloads (header length may
/// shrink when unknown transform attributes are dropped).
fn check_no_panic(b: &[u8]) -> bool {
    match Message::parse(b) {
        Ok(m) => {
            let e = m.emit().unwrap();
            let again = Message::parse(&e).expect("re-parse of emitted message");
            assert_eq!(again.payloads, m.payloads);
            assert_eq!(again.emit().unwrap(), e);
            true
        }
        Err(_) => false,
    }
}

#[test]
fn mutation_property() {
    let mut all = msg(all_plain_payloads());
    all.payloads.push(Payload::Sk {
        first_inner: 33,
        body: vec![9; 24],
    });
    let seeds = [
        strongswan_sa_init(),
        all.emit().unwrap(),
        msg(vec![Payload::Skf {
            first_inner: 35,
            fragment_number: 1,
            total_fragments: 2,
            body: vec![1; 30],
        }])
        .emit()
        .unwrap(),
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut ok = 0;
    for i in 0..100_000 {
        let mut b = seeds[i % seeds.len()].clone();
        for _ in 0..1 + rng.below(4) {
            match rng.below(6) {
                0 => {
                    let at = rng.below(b.len());
                    b[at] = rng.next() as u8;
                }
                1 => {
                    let at = rng.below(b.len());
                    b[at] ^= 1 << rng.below(8);
                }
                2 => {
                    // Nudge a likely length field (small values).
                    let at = rng.below(b.len());
                    b[at] = b[at].wrapping_add(rng.below(5) as u8).wrapping_sub(2);
                }
                3 => {
                    let n = rng.below(b.len() + 1);
                    b.truncate(n);
                }
                4 => {
                    let at = rng.below(b.len() + 1);
                    b.insert(at, rng.next() as u8);
                }
                _ => {
                    // Keep the header length consistent so the payload parser gets exercised.
                    if b.len() >= HEADER_LEN {
                        let n = b.len() as u32;
                        b[24..28].copy_from_slice(&n.to_be_bytes());
                    }
                }
            }
            if b.is_empty() {
                break;
            }
        }
        if check_no_panic(&b) {
            ok += 1;
        }
        let first = rng.next() as u8;
        let _ = parse_payloads(first, b.get(HEADER_LEN..).unwrap_or(&[]));
    }
    // Some mutations must still parse, so the round-trip path is exercised.
    assert!(ok > 1000, "only {ok} mutated messages parsed");
}

// ---------------------------------------------------------------------------------------------
// Hostile counts (issue 9): a count field never sizes more than the bytes carry.

/// A message (unencrypted INFORMATIONAL) whose chain repeats the payload `ptype` with `body`
/// until the datagram reaches about `size` bytes.
fn hostile(ptype: u8, body: &[u8], size: usize) -> Vec<u8> {
    let one = PAYLOAD_HEADER_LEN + body.len();
    let n = (size.saturating_sub(HEADER_LEN) / one).max(1);
    let mut chain = Vec::new();
    for i in 0..n {
        chain.push(if i + 1 == n { 0 } else { ptype });
        chain.push(0);
        chain.extend_from_slice(&(one as u16).to_be_bytes());
        chain.extend_from_slice(body);
    }
    let h = Header {
        spi_i: 1,
        spi_r: 2,
        next_payload: ptype,
        version: IKE_VERSION,
        exchange: exchange::INFORMATIONAL,
        flags: flags::INITIATOR,
        message_id: 0,
        length: (HEADER_LEN + chain.len()) as u32,
    };
    let mut b = h.to_bytes().to_vec();
    b.extend_from_slice(&chain);
    b
}

#[test]
fn delete_spi_count_is_backed_by_bytes() {
    // The 8-byte amplification: SPI size 0, Num of SPIs 65535, no SPIs.
    for size in [40, 1400, 65_000] {
        let b = hostile(
            payload_type::DELETE,
            &[protocol_id::IKE, 0, 0xff, 0xff],
            size,
        );
        assert_eq!(
            Message::parse(&b).unwrap_err(),
            WireError::CountMismatch {
                ptype: payload_type::DELETE,
                count: 65535,
                fits: 0
            }
        );
    }
    // SPI size 4, 65535 SPIs announced, two present.
    let b = hostile(
        payload_type::DELETE,
        &[protocol_id::ESP, 4, 0xff, 0xff, 1, 2, 3, 4, 5, 6, 7, 8],
        40,
    );
    assert_eq!(
        Message::parse(&b).unwrap_err(),
        WireError::CountMismatch {
            ptype: payload_type::DELETE,
            count: 65535,
            fits: 2
        }
    );
    // SPI sizes other than 0 (IKE) and 4 (AH, ESP) are invalid (3.11 MUST).
    let b = hostile(payload_type::DELETE, &[protocol_id::ESP, 1, 0, 2, 1, 2], 40);
    assert!(matches!(
        Message::parse(&b).unwrap_err(),
        WireError::InvalidPayload { ptype: 42, .. }
    ));
    // Valid shapes still parse to exactly what the bytes carry.
    let b = hostile(payload_type::DELETE, &[protocol_id::IKE, 0, 0, 0], 40);
    let m = Message::parse(&b).unwrap();
    assert_eq!(
        m.payloads,
        vec![Payload::Delete(Delete {
            protocol: protocol_id::IKE,
            spi_size: 0,
            spis: vec![]
        })]
    );
    let b = hostile(
        payload_type::DELETE,
        &[protocol_id::ESP, 4, 0, 2, 1, 2, 3, 4, 5, 6, 7, 8],
        40,
    );
    let Payload::Delete(d) = &Message::parse(&b).unwrap().payloads[0] else {
        panic!("not a Delete")
    };
    assert_eq!(d.spis, vec![vec![1, 2, 3, 4], vec![5, 6, 7, 8]]);
}

#[test]
fn hostile_counts_in_proposals_ts_cp_notify_skf_fail() {
    // Proposal announcing 255 transforms, carrying one.
    let prop = [0, 0, 0, 16, 1, 1, 0, 255, 0, 0, 0, 8, 1, 0, 0, 20];
    let b = hostile(payload_type::SA, &prop, 40);
    assert!(matches!(
        Message::parse(&b).unwrap_err(),
        WireError::InvalidPayload { ptype: 33, .. }
    ));
    // Proposal announcing 255 transforms and an SPI of 255 bytes, carrying nothing.
    let b = hostile(payload_type::SA, &[0, 0, 0, 8, 1, 1, 255, 255], 40);
    assert!(Message::parse(&b).is_err());
    // TS payload announcing 255 selectors, carrying none / one.
    for body in [
        &[255u8, 0, 0, 0][..],
        &[
            255, 0, 0, 0, 7, 0, 0, 16, 0, 0, 255, 255, 10, 0, 0, 0, 10, 0, 0, 255,
        ][..],
    ] {
        for size in [40, 1400, 65_000] {
            let b = hostile(payload_type::TSI, body, size);
            assert!(matches!(
                Message::parse(&b).unwrap_err(),
                WireError::InvalidPayload { ptype: 44, .. }
            ));
        }
    }
    // CP attribute announcing 65535 value bytes, carrying none.
    let b = hostile(payload_type::CP, &[1, 0, 0, 0, 0, 1, 0xff, 0xff], 1400);
    assert!(matches!(
        Message::parse(&b).unwrap_err(),
        WireError::InvalidPayload { ptype: 47, .. }
    ));
    // Notify announcing a 255-byte SPI, carrying none.
    let b = hostile(payload_type::NOTIFY, &[3, 255, 0x40, 0x09], 1400);
    assert!(matches!(
        Message::parse(&b).unwrap_err(),
        WireError::InvalidPayload { ptype: 41, .. }
    ));
    // SKF announcing 65535 fragments: parsed (the count is a number, nothing is sized by it).
    let b = hostile(payload_type::SKF, &[0, 1, 0xff, 0xff, 9, 9], 40);
    let m = Message::parse(&b).unwrap();
    assert!(matches!(
        m.payloads[..],
        [Payload::Skf {
            total_fragments: 65535,
            ..
        }]
    ));
}

#[test]
fn capacity_never_exceeds_what_the_bytes_hold() {
    // Success paths: the vectors hold exactly the elements present.
    let b = hostile(
        payload_type::TSI,
        &[
            1, 0, 0, 0, 7, 0, 0, 16, 0, 0, 255, 255, 10, 0, 0, 0, 10, 0, 0, 255,
        ],
        40,
    );
    let Payload::TsI(t) = &Message::parse(&b).unwrap().payloads[0] else {
        panic!("not TSi")
    };
    assert_eq!(t.len(), 1);
    assert!(t.capacity() <= 1);
}

// ---------------------------------------------------------------------------------------------
// Fallible emit (issue 9): a value past its field width is an error, never a truncated field.

fn unencodable(p: Payload) -> &'static str {
    match emit_payloads(std::slice::from_ref(&p)).unwrap_err() {
        WireError::Unencodable { what, .. } => {
            let m = Message {
                header: Header::parse(&[0; HEADER_LEN]).unwrap(),
                payloads: vec![p.clone()],
            };
            assert!(m.emit().is_err());
            // The body alone is fine when only the generic header's length overflows.
            assert_eq!(p.body_bytes().is_err(), what != "payload length");
            what
        }
        e => panic!("unexpected error {e}"),
    }
}

#[test]
fn emit_rejects_values_past_their_field() {
    let sel = ts("10.0.0.1/32");
    assert_eq!(unencodable(Payload::TsI(vec![sel; 256])), "TS count");
    // 255 selectors fit the count (255 * 16 + 4 bytes < 64 KiB).
    let (_, b) = emit_payloads(&[Payload::TsR(vec![sel; 255])]).unwrap();
    assert_eq!(b[4], 255);
    // 1700 IPv6 selectors would not fit the count, nor the payload length.
    assert_eq!(
        unencodable(Payload::TsI(vec![ts("::1/128"); 1700])),
        "TS count"
    );
    let tr = Transform {
        ttype: transform_type::ENCR,
        id: 20,
        key_len: Some(256),
    };
    let prop = |n: usize| Proposal {
        num: 1,
        protocol: protocol_id::ESP,
        spi: vec![1, 2, 3, 4],
        transforms: vec![tr.clone(); n],
    };
    assert_eq!(
        unencodable(Payload::Sa(vec![prop(256)])),
        "proposal number of transforms"
    );
    assert_eq!(
        unencodable(Payload::Sa(vec![prop(1); 256])),
        "SA proposal count"
    );
    assert_eq!(
        unencodable(Payload::Sa(vec![Proposal {
            spi: vec![0; 256],
            ..prop(1)
        }])),
        "proposal SPI size"
    );
    assert_eq!(
        unencodable(Payload::Notify(Notify {
            protocol: protocol_id::ESP,
            spi: vec![0; 256],
            ntype: notify_type::REKEY_SA,
            data: vec![],
        })),
        "Notify SPI size"
    );
    assert_eq!(
        unencodable(Payload::Delete(Delete {
            protocol: protocol_id::ESP,
            spi_size: 4,
            spis: vec![vec![0; 4]; 65536],
        })),
        "Delete number of SPIs"
    );
    assert_eq!(
        unencodable(Payload::Delete(Delete {
            protocol: protocol_id::ESP,
            spi_size: 4,
            spis: vec![vec![0; 8]],
        })),
        "Delete SPI length"
    );
    assert_eq!(
        unencodable(Payload::Cp {
            cfg_type: cfg::CFG_REPLY,
            attrs: vec![CpAttribute {
                atype: cfg::APPLICATION_VERSION,
                value: vec![0; 65536],
            }],
        }),
        "CP attribute length"
    );
    assert_eq!(
        unencodable(Payload::Vendor(vec![0; 65532])),
        "payload length"
    );
    // The largest payload that fits is emitted.
    let (_, b) = emit_payloads(&[Payload::Vendor(vec![0; 65531])]).unwrap();
    assert_eq!(&b[2..4], &[0xff, 0xff]);
    let h = Header::parse(&[0; HEADER_LEN]).unwrap();
    assert!(matches!(
        sk_message_prefix(&h, 0, 65532),
        Err(WireError::Unencodable {
            what: "payload length",
            ..
        })
    ));
    assert!(skf_message_prefix(&h, 0, 1, 1, 65528).is_err());
    assert!(skf_message_prefix(&h, 0, 1, 1, 65527).is_ok());
    // buffer_len stays the layout size also for an unencodable payload.
    assert_eq!(
        Payload::TsI(vec![sel; 256]).buffer_len(),
        PAYLOAD_HEADER_LEN + 4 + 256 * 16
    );
    let mut short = [0u8; HEADER_LEN - 1];
    assert_eq!(h.emit(&mut short), Err(WireError::Truncated));
}

#[test]
fn parse_header_checks_version_and_length_only() {
    // The Delete amplification behind a valid header: the header checks pass, the payloads
    // are not looked at.
    let b = hostile(payload_type::DELETE, &[protocol_id::IKE, 0, 0xff, 0xff], 40);
    let h = Message::parse_header(&b).unwrap();
    assert_eq!((h.spi_i, h.spi_r, h.length as usize), (1, 2, b.len()));
    assert!(Message::parse(&b).is_err());
    let mut v3 = b.clone();
    v3[17] = 0x30;
    assert_eq!(
        Message::parse_header(&v3),
        Err(WireError::UnsupportedVersion(0x30))
    );
    let mut long = b.clone();
    long[27] += 1;
    assert!(matches!(
        Message::parse_header(&long),
        Err(WireError::BadLength { .. })
    ));
    let mut trailing = b.clone();
    trailing.push(0);
    assert_eq!(
        Message::parse_header(&trailing),
        Err(WireError::TrailingBytes)
    );
    assert_eq!(Message::parse_header(&b[..27]), Err(WireError::Truncated));
}

#[test]
fn sa_payload_with_more_than_255_proposals_is_rejected() {
    // Proposals of 8 bytes (no transforms): 255 parse (and re-emit), 256 do not.
    let sa = |n: usize| {
        let mut b = Vec::new();
        for i in 0..n {
            let more = if i + 1 == n { 0 } else { 2 };
            b.extend_from_slice(&[more, 0, 0, 8, (i % 255 + 1) as u8, 1, 0, 0]);
        }
        let mut p = vec![0, 0];
        p.extend_from_slice(&((b.len() + 4) as u16).to_be_bytes());
        p.extend_from_slice(&b);
        parse_payloads(payload_type::SA, &p)
    };
    let ok = sa(255).unwrap();
    assert!(emit_payloads(&ok).is_ok());
    assert!(matches!(
        sa(256).unwrap_err(),
        WireError::InvalidPayload { ptype: 33, .. }
    ));
}

#[test]
fn payload_chain_is_capped() {
    // MAX_PAYLOADS empty Vendor IDs parse; one more is rejected.
    let chain = |n: usize| {
        let mut b = Vec::new();
        for i in 0..n {
            b.extend_from_slice(&[if i + 1 == n { 0 } else { payload_type::VENDOR }, 0, 0, 4]);
        }
        parse_payloads(payload_type::VENDOR, &b)
    };
    assert_eq!(chain(MAX_PAYLOADS).unwrap().len(), MAX_PAYLOADS);
    assert_eq!(
        chain(MAX_PAYLOADS + 1).unwrap_err(),
        WireError::TooManyPayloads { max: MAX_PAYLOADS }
    );
}
