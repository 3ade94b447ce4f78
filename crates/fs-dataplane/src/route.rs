//! Routes towards the TUN device and the egress lookup, over rtnetlink (`NETLINK_ROUTE`) in the
//! network namespace of the socket (the calling thread's when it is opened).
//!
//! Each change is one request and one acknowledgement on a netlink socket instead of an `ip`
//! subprocess (fork + exec + its own netlink exchange): a gateway with many road warriors
//! changes routes often. The requests are the ones iproute2 sends, so `ip route show` prints
//! the routes exactly as before:
//! - `ip route replace NET dev DEV [mtu MTU]`: `RTM_NEWROUTE` with `NLM_F_CREATE |
//!   NLM_F_REPLACE`, table main, protocol `boot`, scope link (IPv4) or universe (IPv6), type
//!   unicast, `RTA_DST`, `RTA_OIF`, and `RTAX_MTU` inside `RTA_METRICS` when an MTU is given;
//! - `ip route del NET dev DEV`: `RTM_DELROUTE`, table main, scope nowhere (IPv4) or universe
//!   (IPv6), protocol and type unspecified, `RTA_DST`, `RTA_OIF`;
//! - `ip route get DST`: `RTM_GETROUTE` for the host prefix of DST; the answer's `RTA_OIF` and
//!   the `RTAX_MTU` of its `RTA_METRICS` (route MTU or learnt path MTU), then `RTM_GETLINK` by
//!   index for the device's name and `IFLA_MTU`;
//! - a device name becomes an index with `RTM_GETLINK` by `IFLA_IFNAME` on the same socket (so
//!   in the same namespace).
//!
//! Crates: `netlink-packet-route` (typed rtnetlink messages) and `netlink-sys` (a plain blocking
//! netlink socket, no async feature) from the rust-netlink project, the crates under
//! `rtnetlink`. `rtnetlink` itself is async only (tokio or async-std) and the daemon's control
//! thread is synchronous, so the requests are built and the answers read here, blocking, one at
//! a time: rtnetlink answers a route request in the sender's system call, so the answer is
//! queued when `send` returns. `neli` would do the same job but is a second netlink stack: these
//! two are the versions tun-rs already builds (through netconfig-rs), so no crate is added to
//! the build. Requests are built with the crate's typed messages; answers are matched by
//! sequence number (a stale one is skipped), read whole (`MSG_TRUNC` tells a truncated
//! datagram) and read through the crate's checked buffer views, only the attributes needed.
//!
//! Privileges: the kernel checks `CAP_NET_ADMIN` on every change, for the sender and for the
//! opener of the socket; the daemon keeps exactly that capability after
//! `privs::drop_privileges` (in every thread), and opens its socket after the drop. Lookups
//! need no capability.
use ipnet::IpNet;
use netlink_packet_core::{
    parse_string, parse_u32, ErrorBuffer, NetlinkBuffer, NetlinkHeader, NetlinkMessage,
    NetlinkPayload, NlaBuffer, NlasIterator, NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::link::{LinkAttribute, LinkMessage, LinkMessageBuffer};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteMessageBuffer, RouteMetric,
    RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{constants::NETLINK_ROUTE, Socket, SocketAddr};
use std::cell::Cell;
use std::fmt;
use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;

/// Largest answer read (a link message with its statistics is a few KiB).
const RECV_BUF: usize = 32 * 1024;
/// How long to wait for an answer (the kernel answers within the request's system call).
const RECV_TIMEOUT_SECS: libc::time_t = 5;
/// Datagrams read for one request before giving up (stale answers are skipped).
const MAX_DATAGRAMS: usize = 16;

/// A request, written as the `ip` command it replaces (for error messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `ip route replace NET dev DEV [mtu MTU]`.
    Replace {
        net: IpNet,
        dev: String,
        mtu: Option<u32>,
    },
    /// `ip route del NET dev DEV`.
    Delete { net: IpNet, dev: String },
    /// `ip route get DST`.
    Get { dst: IpAddr },
    /// `ip link show dev DEV`.
    LinkByName { dev: String },
    /// `ip link show` of the interface with this index.
    LinkByIndex { index: u32 },
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Replace { net, dev, mtu } => {
                write!(f, "ip route replace {net} dev {dev}")?;
                match mtu {
                    Some(m) => write!(f, " mtu {m}"),
                    None => Ok(()),
                }
            }
            Self::Delete { net, dev } => write!(f, "ip route del {net} dev {dev}"),
            Self::Get { dst } => write!(f, "ip route get {dst}"),
            Self::LinkByName { dev } => write!(f, "ip link show dev {dev}"),
            Self::LinkByIndex { index } => write!(f, "ip link show (index {index})"),
        }
    }
}

/// Why a route change or lookup failed.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// Opening, sending on or reading from the netlink socket failed.
    #[error("netlink socket: {0}")]
    Socket(#[source] io::Error),
    /// The kernel refused the request (`NLMSG_ERROR` with an errno: `ENODEV` for an unknown
    /// device, `ESRCH` for a route that is not there, `EPERM` without `CAP_NET_ADMIN`, ...).
    #[error("{req}: {source}")]
    Refused {
        req: Request,
        #[source]
        source: io::Error,
    },
    /// The answer could not be decoded, or no answer came.
    #[error("{req}: bad answer: {why}")]
    BadAnswer { req: Request, why: String },
    /// The answer lacks an attribute the lookup needs.
    #[error("{req}: no {what} in the answer")]
    Missing { req: Request, what: &'static str },
}

impl RouteError {
    /// The errno of a refusal by the kernel.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Self::Refused { source, .. } => source.raw_os_error(),
            Self::Socket(e) => e.raw_os_error(),
            _ => None,
        }
    }
}

impl From<RouteError> for io::Error {
    fn from(e: RouteError) -> Self {
        match e.errno() {
            Some(n) => io::Error::new(io::Error::from_raw_os_error(n).kind(), e),
            None => io::Error::other(e),
        }
    }
}

/// An rtnetlink socket for route changes and lookups; reuse it for many requests.
pub struct Rtnl {
    sock: Socket,
    seq: Cell<u32>,
}

impl Rtnl {
    /// Open a socket in the calling thread's network namespace.
    pub fn open() -> Result<Self, RouteError> {
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(RouteError::Socket)?;
        sock.bind_auto().map_err(RouteError::Socket)?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(RouteError::Socket)?;
        // The control thread must not hang on an answer that never comes.
        let tv = libc::timeval {
            tv_sec: RECV_TIMEOUT_SECS,
            tv_usec: 0,
        };
        // SAFETY: setsockopt on an open socket with a pointer to a timeval and its size.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                std::ptr::addr_of!(tv).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(RouteError::Socket(io::Error::last_os_error()));
        }
        Ok(Self {
            sock,
            seq: Cell::new(0),
        })
    }

    /// `ip route replace NET dev DEV [mtu MTU]`.
    pub fn replace_mtu(&self, net: IpNet, dev: &str, mtu: Option<u32>) -> Result<(), RouteError> {
        let oif = self.ifindex(dev)?;
        let req = Request::Replace {
            net,
            dev: dev.to_string(),
            mtu,
        };
        let msg = RouteNetlinkMessage::NewRoute(change_message(net, oif, mtu, Change::Replace));
        self.change(req, msg, NLM_F_CREATE | NLM_F_REPLACE)
    }

    /// `ip route del NET dev DEV`.
    pub fn delete(&self, net: IpNet, dev: &str) -> Result<(), RouteError> {
        let oif = self.ifindex(dev)?;
        let req = Request::Delete {
            net,
            dev: dev.to_string(),
        };
        let msg = RouteNetlinkMessage::DelRoute(change_message(net, oif, None, Change::Delete));
        self.change(req, msg, 0)
    }

    /// The interface the kernel would use to reach `dst` and its MTU: the route's MTU (a
    /// configured `mtu` or a learnt path MTU) when it has one and it is lower, else the
    /// device's.
    pub fn egress_mtu(&self, dst: IpAddr) -> Result<(String, u32), RouteError> {
        let req = Request::Get { dst };
        let answer = self.exchange(
            &req,
            RouteNetlinkMessage::GetRoute(get_route_message(dst)),
            NLM_F_REQUEST,
        )?;
        let Answer::Route {
            oif: Some(oif),
            mtu: route_mtu,
        } = answer
        else {
            return Err(RouteError::Missing {
                req,
                what: "output device",
            });
        };
        let req = Request::LinkByIndex { index: oif };
        let mut link = LinkMessage::default();
        link.header.index = oif;
        let answer = self.exchange(&req, RouteNetlinkMessage::GetLink(link), NLM_F_REQUEST)?;
        let (dev, dev_mtu) = match answer {
            Answer::Link {
                name: Some(name),
                mtu: Some(mtu),
                ..
            } => (name, mtu),
            _ => {
                return Err(RouteError::Missing {
                    req,
                    what: "name and mtu",
                })
            }
        };
        Ok((dev, route_mtu.map_or(dev_mtu, |r| r.min(dev_mtu))))
    }

    /// The index of the interface named `dev`.
    pub fn ifindex(&self, dev: &str) -> Result<u32, RouteError> {
        let req = Request::LinkByName {
            dev: dev.to_string(),
        };
        let mut link = LinkMessage::default();
        link.attributes.push(LinkAttribute::IfName(dev.to_string()));
        let answer = self.exchange(&req, RouteNetlinkMessage::GetLink(link), NLM_F_REQUEST)?;
        match answer {
            Answer::Link { index, .. } if index != 0 => Ok(index),
            _ => Err(RouteError::Missing {
                req,
                what: "interface index",
            }),
        }
    }

    /// Send a change (with `flags` added to the request and acknowledgement flags) and wait
    /// for its acknowledgement.
    fn change(&self, req: Request, msg: RouteNetlinkMessage, flags: u16) -> Result<(), RouteError> {
        match self.exchange(&req, msg, CHANGE_FLAGS | flags)? {
            Answer::Ack => Ok(()),
            other => Err(RouteError::BadAnswer {
                req,
                why: format!("{other:?} instead of an acknowledgement"),
            }),
        }
    }

    /// Send one request and read its answer.
    fn exchange(
        &self,
        req: &Request,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Answer, RouteError> {
        let seq = self.seq.get().wrapping_add(1);
        self.seq.set(seq);
        let bytes = encode(msg, flags, seq);
        let sent = self.sock.send(&bytes, 0).map_err(RouteError::Socket)?;
        if sent != bytes.len() {
            return Err(RouteError::BadAnswer {
                req: req.clone(),
                why: format!("sent {sent} of {} bytes", bytes.len()),
            });
        }
        let mut buf = vec![0u8; RECV_BUF];
        for _ in 0..MAX_DATAGRAMS {
            let n = {
                let mut b: &mut [u8] = &mut buf;
                // MSG_TRUNC: the datagram's real length even when it did not fit.
                self.sock
                    .recv(&mut b, libc::MSG_TRUNC)
                    .map_err(RouteError::Socket)?
            };
            let Some(data) = buf.get(..n) else {
                return Err(RouteError::BadAnswer {
                    req: req.clone(),
                    why: format!("{n}-byte datagram truncated to {RECV_BUF}"),
                });
            };
            if let Some(answer) = scan(req, data, seq)? {
                return Ok(answer);
            }
        }
        Err(RouteError::BadAnswer {
            req: req.clone(),
            why: format!("no answer to sequence {seq} in {MAX_DATAGRAMS} datagrams"),
        })
    }
}

/// `ip route replace NET dev DEV`.
pub fn replace(net: IpNet, dev: &str) -> Result<(), RouteError> {
    replace_mtu(net, dev, None)
}

/// `ip route replace NET dev DEV [mtu MTU]`: with a route MTU the kernel answers oversized
/// DF packets itself (ICMP frag-needed / packet-too-big) and local TCP derives its MSS from it.
/// Opens a socket for this one change; [`Rtnl`] keeps one for many.
pub fn replace_mtu(net: IpNet, dev: &str, mtu: Option<u32>) -> Result<(), RouteError> {
    Rtnl::open()?.replace_mtu(net, dev, mtu)
}

/// The MTU of the interface the kernel would use to reach `dst` (the route's MTU when it is
/// lower), and that interface's name.
pub fn egress_mtu(dst: IpAddr) -> Result<(String, u32), RouteError> {
    Rtnl::open()?.egress_mtu(dst)
}

/// `ip route del NET dev DEV`.
pub fn delete(net: IpNet, dev: &str) -> Result<(), RouteError> {
    Rtnl::open()?.delete(net, dev)
}

/// Flags of every change: a request, acknowledged (success is an `NLMSG_ERROR` with code 0).
const CHANGE_FLAGS: u16 = NLM_F_REQUEST | NLM_F_ACK;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Change {
    Replace,
    Delete,
}

fn family(a: IpAddr) -> AddressFamily {
    if a.is_ipv6() {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    }
}

/// The route message of `ip route replace|del NET dev DEV [mtu MTU]`, as iproute2 builds it.
fn change_message(net: IpNet, oif: u32, mtu: Option<u32>, change: Change) -> RouteMessage {
    let v6 = net.addr().is_ipv6();
    let mut m = RouteMessage::default();
    m.header.address_family = family(net.addr());
    m.header.destination_prefix_length = net.prefix_len();
    m.header.table = RouteHeader::RT_TABLE_MAIN;
    (m.header.protocol, m.header.scope, m.header.kind) = match (change, v6) {
        (Change::Replace, false) => (RouteProtocol::Boot, RouteScope::Link, RouteType::Unicast),
        (Change::Replace, true) => (
            RouteProtocol::Boot,
            RouteScope::Universe,
            RouteType::Unicast,
        ),
        (Change::Delete, false) => (
            RouteProtocol::Unspec,
            RouteScope::NoWhere,
            RouteType::Unspec,
        ),
        (Change::Delete, true) => (
            RouteProtocol::Unspec,
            RouteScope::Universe,
            RouteType::Unspec,
        ),
    };
    if net.prefix_len() > 0 {
        m.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(net.addr())));
    }
    m.attributes.push(RouteAttribute::Oif(oif));
    if let Some(mtu) = mtu {
        m.attributes
            .push(RouteAttribute::Metrics(vec![RouteMetric::Mtu(mtu)]));
    }
    m
}

/// The route message of `ip route get DST`.
fn get_route_message(dst: IpAddr) -> RouteMessage {
    let mut m = RouteMessage::default();
    m.header.address_family = family(dst);
    m.header.destination_prefix_length = if dst.is_ipv6() { 128 } else { 32 };
    m.attributes
        .push(RouteAttribute::Destination(RouteAddress::from(dst)));
    m
}

fn encode(msg: RouteNetlinkMessage, flags: u16, seq: u32) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = seq;
    let mut m = NetlinkMessage::new(header, NetlinkPayload::from(msg));
    m.finalize();
    let mut buf = vec![0u8; m.buffer_len()];
    m.serialize(&mut buf);
    buf
}

/// An answer, reduced to what the requests here read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    /// `NLMSG_ERROR` with code 0.
    Ack,
    /// `RTM_NEWROUTE`: output interface and route MTU (`RTAX_MTU`, 0 read as none).
    Route { oif: Option<u32>, mtu: Option<u32> },
    /// `RTM_NEWLINK`: index, name and MTU.
    Link {
        index: u32,
        name: Option<String>,
        mtu: Option<u32>,
    },
}

const NLMSG_NOOP: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_OVERRUN: u16 = 4;
const RTM_NEWLINK: u16 = 16;
const RTM_NEWROUTE: u16 = 24;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const RTA_OIF: u16 = 4;
const RTA_METRICS: u16 = 8;
const RTAX_MTU: u16 = 2;

/// Look for the answer to `seq` in one datagram (`None` when it holds only other answers).
///
/// Answers are read through the crates' checked buffer views, taking only the attributes
/// needed: a full decode of a link message fails or warns whenever the kernel adds a field the
/// crate does not know yet (`IFLA_INET6_CONF` grows with new kernels), which must not break
/// routing.
fn scan(req: &Request, mut data: &[u8], seq: u32) -> Result<Option<Answer>, RouteError> {
    let bad = |why: String| RouteError::BadAnswer {
        req: req.clone(),
        why,
    };
    while !data.is_empty() {
        // Checked: header present, 16 <= length <= data.len().
        let nl = NetlinkBuffer::new_checked(data).map_err(|e| bad(e.to_string()))?;
        let (kind, their_seq, payload) = (nl.message_type(), nl.sequence_number(), nl.payload());
        let len = usize::try_from(nl.length()).unwrap_or(usize::MAX);
        // Messages are aligned on 4 bytes within a datagram.
        data = data.get(len.saturating_add(3) & !3..).unwrap_or_default();
        if their_seq != seq {
            continue;
        }
        return match kind {
            NLMSG_ERROR => {
                let e = ErrorBuffer::new_checked(payload).map_err(|e| bad(e.to_string()))?;
                match e.code() {
                    None => Ok(Some(Answer::Ack)),
                    Some(code) => Err(RouteError::Refused {
                        req: req.clone(),
                        source: io::Error::from_raw_os_error(code.get().saturating_abs()),
                    }),
                }
            }
            RTM_NEWROUTE => route_answer(payload).map(Some).map_err(bad),
            RTM_NEWLINK => link_answer(payload).map(Some).map_err(bad),
            NLMSG_NOOP | NLMSG_OVERRUN => continue,
            NLMSG_DONE => Err(bad("end of dump".into())),
            other => Err(bad(format!("message type {other}"))),
        };
    }
    Ok(None)
}

fn u32_of(nla: &NlaBuffer<&[u8]>) -> Result<u32, String> {
    parse_u32(nla.value()).map_err(|e| e.to_string())
}

/// Output interface and route MTU of an `RTM_NEWROUTE` answer.
fn route_answer(payload: &[u8]) -> Result<Answer, String> {
    let m = RouteMessageBuffer::new_checked(payload).map_err(|e| e.to_string())?;
    let (mut oif, mut mtu) = (None, None);
    for nla in m.attributes() {
        let nla = nla.map_err(|e| e.to_string())?;
        match nla.kind() {
            RTA_OIF => oif = Some(u32_of(&nla)?),
            RTA_METRICS => {
                for x in NlasIterator::new(nla.value()) {
                    let x = x.map_err(|e| e.to_string())?;
                    if x.kind() == RTAX_MTU {
                        mtu = Some(u32_of(&x)?).filter(|v| *v > 0);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(Answer::Route { oif, mtu })
}

/// Index, name and MTU of an `RTM_NEWLINK` answer.
fn link_answer(payload: &[u8]) -> Result<Answer, String> {
    let m = LinkMessageBuffer::new_checked(payload).map_err(|e| e.to_string())?;
    let (mut name, mut mtu) = (None, None);
    for nla in m.attributes() {
        let nla = nla.map_err(|e| e.to_string())?;
        match nla.kind() {
            IFLA_IFNAME => name = Some(parse_string(nla.value()).map_err(|e| e.to_string())?),
            IFLA_MTU => mtu = Some(u32_of(&nla)?),
            _ => {}
        }
    }
    Ok(Answer::Link {
        index: m.link_index(),
        name,
        mtu,
    })
}

#[cfg(test)]
mod tests;
