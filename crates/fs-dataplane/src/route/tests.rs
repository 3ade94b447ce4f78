//! Pure tests: the requests built (decoded back, as the kernel reads them) and the answers read.
use super::*;
use netlink_packet_core::{DefaultNla, ErrorMessage, NLM_F_DUMP};
use std::num::NonZeroI32;

const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTM_GETROUTE: u16 = 26;

fn decode(bytes: &[u8]) -> NetlinkMessage<RouteNetlinkMessage> {
    NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes).expect("decodes")
}

fn route_of(m: NetlinkMessage<RouteNetlinkMessage>) -> RouteMessage {
    match m.payload {
        NetlinkPayload::InnerMessage(
            RouteNetlinkMessage::NewRoute(r)
            | RouteNetlinkMessage::DelRoute(r)
            | RouteNetlinkMessage::GetRoute(r),
        ) => r,
        other => panic!("not a route message: {other:?}"),
    }
}

#[test]
fn replace_v4_with_mtu_is_what_ip_route_replace_sends() {
    let net: IpNet = "10.1.0.0/16".parse().unwrap();
    let msg = RouteNetlinkMessage::NewRoute(change_message(net, 3, Some(1400), Change::Replace));
    let bytes = encode(msg, CHANGE_FLAGS | NLM_F_CREATE | NLM_F_REPLACE, 7);
    let m = decode(&bytes);
    assert_eq!(m.header.message_type, RTM_NEWROUTE);
    assert_eq!(m.header.sequence_number, 7);
    assert_eq!(
        m.header.flags,
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
    );
    assert_eq!(usize::try_from(m.header.length).unwrap(), bytes.len());
    let r = route_of(m);
    assert_eq!(r.header.address_family, AddressFamily::Inet);
    assert_eq!(r.header.destination_prefix_length, 16);
    assert_eq!(r.header.table, RouteHeader::RT_TABLE_MAIN);
    assert_eq!(r.header.protocol, RouteProtocol::Boot);
    assert_eq!(r.header.scope, RouteScope::Link);
    assert_eq!(r.header.kind, RouteType::Unicast);
    assert_eq!(
        r.attributes,
        vec![
            RouteAttribute::Destination(RouteAddress::Inet("10.1.0.0".parse().unwrap())),
            RouteAttribute::Oif(3),
            RouteAttribute::Metrics(vec![RouteMetric::Mtu(1400)]),
        ]
    );
}

#[test]
fn replace_v6_without_mtu_has_universe_scope_and_no_metrics() {
    let net: IpNet = "fd00:1::/64".parse().unwrap();
    let r = change_message(net, 9, None, Change::Replace);
    assert_eq!(r.header.address_family, AddressFamily::Inet6);
    assert_eq!(r.header.destination_prefix_length, 64);
    assert_eq!(r.header.scope, RouteScope::Universe);
    assert_eq!(r.header.protocol, RouteProtocol::Boot);
    assert_eq!(
        r.attributes,
        vec![
            RouteAttribute::Destination(RouteAddress::Inet6("fd00:1::".parse().unwrap())),
            RouteAttribute::Oif(9),
        ]
    );
}

#[test]
fn delete_matches_any_protocol_and_type() {
    let net: IpNet = "10.1.2.0/24".parse().unwrap();
    let msg = RouteNetlinkMessage::DelRoute(change_message(net, 3, None, Change::Delete));
    let m = decode(&encode(msg, CHANGE_FLAGS, 8));
    assert_eq!(m.header.message_type, RTM_DELROUTE);
    assert_eq!(m.header.flags, NLM_F_REQUEST | NLM_F_ACK);
    let r = route_of(m);
    assert_eq!(r.header.scope, RouteScope::NoWhere);
    assert_eq!(r.header.protocol, RouteProtocol::Unspec);
    assert_eq!(r.header.kind, RouteType::Unspec);
    assert_eq!(r.header.table, RouteHeader::RT_TABLE_MAIN);
    let v6 = change_message("fd00::/8".parse().unwrap(), 3, None, Change::Delete);
    assert_eq!(v6.header.scope, RouteScope::Universe);
}

#[test]
fn default_route_has_no_destination() {
    for net in ["0.0.0.0/0", "::/0"] {
        let r = change_message(net.parse().unwrap(), 4, None, Change::Replace);
        assert_eq!(r.header.destination_prefix_length, 0);
        assert_eq!(r.attributes, vec![RouteAttribute::Oif(4)], "{net}");
    }
}

#[test]
fn get_asks_for_the_host_prefix() {
    let m = decode(&encode(
        RouteNetlinkMessage::GetRoute(get_route_message("2001:db8::1".parse().unwrap())),
        NLM_F_REQUEST,
        1,
    ));
    assert_eq!(m.header.message_type, RTM_GETROUTE);
    assert_eq!(m.header.flags & NLM_F_DUMP, 0);
    let r = route_of(m);
    assert_eq!(r.header.destination_prefix_length, 128);
    let r = get_route_message("192.0.2.1".parse().unwrap());
    assert_eq!(r.header.destination_prefix_length, 32);
    assert_eq!(
        r.attributes,
        vec![RouteAttribute::Destination(RouteAddress::Inet(
            "192.0.2.1".parse().unwrap()
        ))]
    );
}

fn error_msg(seq: u32, code: i32) -> Vec<u8> {
    let mut e = ErrorMessage::default();
    e.code = NonZeroI32::new(code);
    let mut h = NetlinkHeader::default();
    h.sequence_number = seq;
    let mut m = NetlinkMessage::<RouteNetlinkMessage>::new(h, NetlinkPayload::Error(e));
    m.finalize();
    let mut buf = vec![0u8; m.buffer_len()];
    m.serialize(&mut buf);
    buf
}

fn replace_req() -> Request {
    Request::Replace {
        net: "10.1.0.0/16".parse().unwrap(),
        dev: "fs0".into(),
        mtu: Some(1400),
    }
}

#[test]
fn ack_errno_and_stale_answers() {
    let req = replace_req();
    assert_eq!(scan(&req, &error_msg(5, 0), 5).unwrap(), Some(Answer::Ack));
    // Another request's answer is skipped.
    assert!(matches!(
        scan(&req, &error_msg(4, -libc::ENODEV), 5),
        Ok(None)
    ));
    let e = scan(&req, &error_msg(5, -libc::ENODEV), 5).unwrap_err();
    assert_eq!(e.errno(), Some(libc::ENODEV));
    assert!(
        e.to_string()
            .starts_with("ip route replace 10.1.0.0/16 dev fs0 mtu 1400: "),
        "{e}"
    );
    // Without CAP_NET_ADMIN: an io::Error of the kind of the errno, with the request in it.
    let e = scan(&req, &error_msg(5, -libc::EPERM), 5).unwrap_err();
    let io: io::Error = e.into();
    assert_eq!(io.kind(), io::ErrorKind::PermissionDenied);
    assert!(io.to_string().contains("dev fs0"), "{io}");
    // A stale answer then ours, in one datagram.
    let mut two = error_msg(4, -libc::EEXIST);
    two.extend(error_msg(5, -libc::ESRCH));
    let e = scan(&req, &two, 5).unwrap_err();
    assert_eq!(e.errno(), Some(libc::ESRCH));
    // The most negative code does not overflow.
    let e = scan(&req, &error_msg(5, i32::MIN), 5).unwrap_err();
    assert_eq!(e.errno(), Some(i32::MAX));
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    let req = replace_req();
    let good = error_msg(5, 0);
    for cut in 0..good.len() {
        let r = scan(&req, &good[..cut], 5);
        assert!(
            matches!(r, Ok(None) | Err(RouteError::BadAnswer { .. })),
            "cut at {cut}: {r:?}"
        );
    }
    // A link answer cut anywhere, or with any length in its header: an answer or an error.
    let mut m = LinkMessage::default();
    m.attributes = vec![
        LinkAttribute::IfName("fs0".into()),
        LinkAttribute::Mtu(1400),
    ];
    let link = encode(RouteNetlinkMessage::NewLink(m), 0, 5);
    for cut in 0..link.len() {
        let r = scan(&req, &link[..cut], 5);
        assert!(
            matches!(r, Ok(None) | Err(RouteError::BadAnswer { .. })),
            "cut at {cut}: {r:?}"
        );
        let mut patched = link.clone();
        patched[..4].copy_from_slice(&u32::try_from(cut).unwrap().to_ne_bytes());
        let _ = scan(&req, &patched, 5);
    }
    // A header claiming fewer bytes than a header.
    let mut short = good.clone();
    short[..4].copy_from_slice(&8u32.to_ne_bytes());
    assert!(scan(&req, &short, 5).is_err());
    // Length beyond the datagram.
    let mut long = good;
    long[..4].copy_from_slice(&4096u32.to_ne_bytes());
    assert!(matches!(
        scan(&req, &long, 5),
        Err(RouteError::BadAnswer { .. })
    ));
}

#[test]
fn route_answer_takes_oif_and_route_mtu() {
    let req = Request::Get {
        dst: "10.0.0.1".parse().unwrap(),
    };
    let mut m = RouteMessage::default();
    m.attributes = vec![
        RouteAttribute::Table(254),
        RouteAttribute::Oif(5),
        RouteAttribute::Metrics(vec![RouteMetric::Lock(1 << 2), RouteMetric::Mtu(1300)]),
    ];
    // Encoded as the kernel sends it.
    let answer = |m: &RouteMessage| {
        let bytes = encode(RouteNetlinkMessage::NewRoute(m.clone()), 0, 2);
        scan(&req, &bytes, 2).unwrap().unwrap()
    };
    assert_eq!(
        answer(&m),
        Answer::Route {
            oif: Some(5),
            mtu: Some(1300)
        }
    );
    m.attributes
        .retain(|a| !matches!(a, RouteAttribute::Metrics(_)));
    m.attributes
        .push(RouteAttribute::Metrics(vec![RouteMetric::Mtu(0)]));
    assert_eq!(
        answer(&m),
        Answer::Route {
            oif: Some(5),
            mtu: None
        }
    );
    m.attributes
        .retain(|a| !matches!(a, RouteAttribute::Oif(_)));
    assert_eq!(
        answer(&m),
        Answer::Route {
            oif: None,
            mtu: None
        }
    );
    // An attribute of the wrong size is refused, not read past.
    m.attributes = vec![RouteAttribute::Other(DefaultNla::new(4, vec![1, 2]))];
    let bytes = encode(RouteNetlinkMessage::NewRoute(m), 0, 2);
    assert!(matches!(
        scan(&req, &bytes, 2),
        Err(RouteError::BadAnswer { .. })
    ));
}

#[test]
fn link_answer_takes_name_and_mtu_and_skips_the_rest() {
    let req = Request::LinkByIndex { index: 5 };
    let mut m = LinkMessage::default();
    m.header.index = 5;
    m.attributes = vec![
        LinkAttribute::IfName("eth0".into()),
        LinkAttribute::TxQueueLen(1000),
        // What a newer kernel may add, or a longer IFLA_INET6_CONF than the crate knows: not
        // decoded, so not an error.
        LinkAttribute::Other(DefaultNla::new(26, vec![0xff; 240])),
        LinkAttribute::Other(DefaultNla::new(0x7ff0, vec![1, 2, 3])),
        LinkAttribute::Mtu(1450),
    ];
    let bytes = encode(RouteNetlinkMessage::NewLink(m.clone()), 0, 3);
    assert_eq!(
        scan(&req, &bytes, 3).unwrap(),
        Some(Answer::Link {
            index: 5,
            name: Some("eth0".into()),
            mtu: Some(1450)
        })
    );
    m.attributes.retain(|a| !matches!(a, LinkAttribute::Mtu(_)));
    let bytes = encode(RouteNetlinkMessage::NewLink(m), 0, 3);
    assert_eq!(
        scan(&req, &bytes, 3).unwrap(),
        Some(Answer::Link {
            index: 5,
            name: Some("eth0".into()),
            mtu: None
        })
    );
}

#[test]
fn requests_print_as_the_ip_commands() {
    assert_eq!(
        replace_req().to_string(),
        "ip route replace 10.1.0.0/16 dev fs0 mtu 1400"
    );
    let del = Request::Delete {
        net: "fd00::/64".parse().unwrap(),
        dev: "fs0".into(),
    };
    assert_eq!(del.to_string(), "ip route del fd00::/64 dev fs0");
}

/// Lookups work without privileges in the current namespace; the socket has a receive timeout.
#[test]
fn loopback_lookup_and_receive_timeout() {
    let nl = Rtnl::open().unwrap();
    let (dev, mtu) = nl.egress_mtu("127.0.0.1".parse().unwrap()).unwrap();
    assert_eq!(dev, "lo");
    assert!(mtu > 0);
    assert_eq!(nl.ifindex("lo").unwrap(), 1);
    let mut tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 0,
    };
    let mut len = std::mem::size_of::<libc::timeval>() as libc::socklen_t;
    // SAFETY: getsockopt on an open socket into a timeval of the given size.
    let rc = unsafe {
        libc::getsockopt(
            nl.sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            std::ptr::addr_of_mut!(tv).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0);
    assert_eq!(tv.tv_sec, RECV_TIMEOUT_SECS);
}
