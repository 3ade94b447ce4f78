//! IKEv2 message header and payloads (RFC 7296 section 3, RFC 7383 fragments).
//!
//! [`Message::parse`] / [`Message::emit`] convert whole datagrams; [`parse_payloads`] /
//! [`emit_payloads`] handle payload chains (the decrypted contents of an SK payload);
//! [`Message::parse_header`] checks only the fixed header (to route by SPI before parsing).
//!
//! Contract:
//! - Parsing never panics: malformed input yields a [`WireError`].
//! - Parsing allocates only what the bytes back: no count field (Num of SPIs, Number of TSs,
//!   Number of Transforms, attribute or SPI lengths) sizes a vector beyond the elements the
//!   payload can hold; a count that disagrees with the bytes is an error
//!   ([`WireError::CountMismatch`] / [`WireError::InvalidPayload`]), and a chain holds at most
//!   [`MAX_PAYLOADS`]. The heap used for a parsed message is a small constant times the
//!   datagram size (`tests/parse_alloc.rs`).
//! - Emitting is fallible: a count or length that does not fit its field is
//!   [`WireError::Unencodable`], never a truncated field.
use crate::id::Identity;
use crate::ts::{TrafficSelector, TS_IPV4_ADDR_RANGE, TS_IPV6_ADDR_RANGE};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Exchange types.
pub mod exchange {
    pub const IKE_SA_INIT: u8 = 34;
    pub const IKE_AUTH: u8 = 35;
    pub const CREATE_CHILD_SA: u8 = 36;
    pub const INFORMATIONAL: u8 = 37;
}

/// Header flag bits.
pub mod flags {
    pub const INITIATOR: u8 = 0x08;
    pub const VERSION: u8 = 0x10;
    pub const RESPONSE: u8 = 0x20;
}

/// Payload type code points.
pub mod payload_type {
    pub const NONE: u8 = 0;
    pub const SA: u8 = 33;
    pub const KE: u8 = 34;
    pub const IDI: u8 = 35;
    pub const IDR: u8 = 36;
    pub const CERT: u8 = 37;
    pub const CERTREQ: u8 = 38;
    pub const AUTH: u8 = 39;
    pub const NONCE: u8 = 40;
    pub const NOTIFY: u8 = 41;
    pub const DELETE: u8 = 42;
    pub const VENDOR: u8 = 43;
    pub const TSI: u8 = 44;
    pub const TSR: u8 = 45;
    pub const SK: u8 = 46;
    pub const CP: u8 = 47;
    pub const EAP: u8 = 48;
    pub const SKF: u8 = 53;
}

/// Notify message types (errors < 16384, status >= 16384).
pub mod notify_type {
    pub const UNSUPPORTED_CRITICAL_PAYLOAD: u16 = 1;
    pub const INVALID_IKE_SPI: u16 = 4;
    pub const INVALID_MAJOR_VERSION: u16 = 5;
    pub const INVALID_SYNTAX: u16 = 7;
    pub const INVALID_MESSAGE_ID: u16 = 9;
    pub const INVALID_SPI: u16 = 11;
    pub const NO_PROPOSAL_CHOSEN: u16 = 14;
    pub const INVALID_KE_PAYLOAD: u16 = 17;
    pub const AUTHENTICATION_FAILED: u16 = 24;
    pub const SINGLE_PAIR_REQUIRED: u16 = 34;
    pub const NO_ADDITIONAL_SAS: u16 = 35;
    pub const INTERNAL_ADDRESS_FAILURE: u16 = 36;
    pub const FAILED_CP_REQUIRED: u16 = 37;
    pub const TS_UNACCEPTABLE: u16 = 38;
    pub const INVALID_SELECTORS: u16 = 39;
    pub const TEMPORARY_FAILURE: u16 = 43;
    pub const CHILD_SA_NOT_FOUND: u16 = 44;
    pub const INITIAL_CONTACT: u16 = 16384;
    pub const SET_WINDOW_SIZE: u16 = 16385;
    pub const ADDITIONAL_TS_POSSIBLE: u16 = 16386;
    pub const IPCOMP_SUPPORTED: u16 = 16387;
    pub const NAT_DETECTION_SOURCE_IP: u16 = 16388;
    pub const NAT_DETECTION_DESTINATION_IP: u16 = 16389;
    pub const COOKIE: u16 = 16390;
    pub const USE_TRANSPORT_MODE: u16 = 16391;
    pub const HTTP_CERT_LOOKUP_SUPPORTED: u16 = 16392;
    pub const REKEY_SA: u16 = 16393;
    pub const ESP_TFC_PADDING_NOT_SUPPORTED: u16 = 16394;
    pub const NON_FIRST_FRAGMENTS_ALSO: u16 = 16395;
    pub const MOBIKE_SUPPORTED: u16 = 16396;
    pub const IKEV2_FRAGMENTATION_SUPPORTED: u16 = 16430;
    pub const SIGNATURE_HASH_ALGORITHMS: u16 = 16431;
    /// ferroswan private status type (RFC 7296 3.10.1 private-use range 40960-65535): "my
    /// data plane prefers UDP-encapsulated ESP". Recognised only together with the data
    /// [`FERROSWAN_UDP_ENCAP_MAGIC`]; unrecognised status types are ignored by other peers.
    pub const FERROSWAN_UDP_ENCAP_PREFERRED: u16 = 62949;
    /// The data that must accompany [`FERROSWAN_UDP_ENCAP_PREFERRED`].
    pub const FERROSWAN_UDP_ENCAP_MAGIC: &[u8] = b"ferroswan:udp-encap:v1";

    /// The IANA name of a notify type, or `NOTIFY(<n>)` for one not listed here.
    pub fn notify_name(t: u16) -> String {
        let s = match t {
            UNSUPPORTED_CRITICAL_PAYLOAD => "UNSUPPORTED_CRITICAL_PAYLOAD",
            INVALID_IKE_SPI => "INVALID_IKE_SPI",
            INVALID_MAJOR_VERSION => "INVALID_MAJOR_VERSION",
            INVALID_SYNTAX => "INVALID_SYNTAX",
            INVALID_MESSAGE_ID => "INVALID_MESSAGE_ID",
            INVALID_SPI => "INVALID_SPI",
            NO_PROPOSAL_CHOSEN => "NO_PROPOSAL_CHOSEN",
            INVALID_KE_PAYLOAD => "INVALID_KE_PAYLOAD",
            AUTHENTICATION_FAILED => "AUTHENTICATION_FAILED",
            SINGLE_PAIR_REQUIRED => "SINGLE_PAIR_REQUIRED",
            NO_ADDITIONAL_SAS => "NO_ADDITIONAL_SAS",
            INTERNAL_ADDRESS_FAILURE => "INTERNAL_ADDRESS_FAILURE",
            FAILED_CP_REQUIRED => "FAILED_CP_REQUIRED",
            TS_UNACCEPTABLE => "TS_UNACCEPTABLE",
            INVALID_SELECTORS => "INVALID_SELECTORS",
            TEMPORARY_FAILURE => "TEMPORARY_FAILURE",
            CHILD_SA_NOT_FOUND => "CHILD_SA_NOT_FOUND",
            INITIAL_CONTACT => "INITIAL_CONTACT",
            SET_WINDOW_SIZE => "SET_WINDOW_SIZE",
            ADDITIONAL_TS_POSSIBLE => "ADDITIONAL_TS_POSSIBLE",
            IPCOMP_SUPPORTED => "IPCOMP_SUPPORTED",
            NAT_DETECTION_SOURCE_IP => "NAT_DETECTION_SOURCE_IP",
            NAT_DETECTION_DESTINATION_IP => "NAT_DETECTION_DESTINATION_IP",
            COOKIE => "COOKIE",
            USE_TRANSPORT_MODE => "USE_TRANSPORT_MODE",
            HTTP_CERT_LOOKUP_SUPPORTED => "HTTP_CERT_LOOKUP_SUPPORTED",
            REKEY_SA => "REKEY_SA",
            ESP_TFC_PADDING_NOT_SUPPORTED => "ESP_TFC_PADDING_NOT_SUPPORTED",
            NON_FIRST_FRAGMENTS_ALSO => "NON_FIRST_FRAGMENTS_ALSO",
            MOBIKE_SUPPORTED => "MOBIKE_SUPPORTED",
            IKEV2_FRAGMENTATION_SUPPORTED => "IKEV2_FRAGMENTATION_SUPPORTED",
            SIGNATURE_HASH_ALGORITHMS => "SIGNATURE_HASH_ALGORITHMS",
            FERROSWAN_UDP_ENCAP_PREFERRED => "FERROSWAN_UDP_ENCAP_PREFERRED",
            _ => return format!("NOTIFY({t})"),
        };
        s.to_string()
    }

    /// True for error types (below 16384).
    pub fn is_error(t: u16) -> bool {
        t < 16384
    }
}

pub use notify_type::notify_name;

/// Security protocol identifiers (proposals, notify, delete).
pub mod protocol_id {
    pub const IKE: u8 = 1;
    pub const AH: u8 = 2;
    pub const ESP: u8 = 3;
}

/// Authentication methods (AUTH payload).
pub mod auth_method {
    pub const RSA: u8 = 1;
    pub const PSK: u8 = 2;
    pub const DSS: u8 = 3;
    pub const ECDSA_256: u8 = 9;
    pub const DIGITAL_SIGNATURE: u8 = 14;
}

/// Transform types (SA payload).
pub mod transform_type {
    pub const ENCR: u8 = 1;
    pub const PRF: u8 = 2;
    pub const INTEG: u8 = 3;
    pub const DH: u8 = 4;
    pub const ESN: u8 = 5;
}

/// Transform attribute types.
pub mod transform_attr {
    /// Key Length in bits (TV format).
    pub const KEY_LENGTH: u16 = 14;
}

/// Configuration payload types and attribute types (RFC 7296 3.15).
pub mod cfg {
    pub const CFG_REQUEST: u8 = 1;
    pub const CFG_REPLY: u8 = 2;
    pub const CFG_SET: u8 = 3;
    pub const CFG_ACK: u8 = 4;
    pub const INTERNAL_IP4_ADDRESS: u16 = 1;
    pub const INTERNAL_IP4_NETMASK: u16 = 2;
    pub const INTERNAL_IP4_DNS: u16 = 3;
    pub const INTERNAL_IP4_NBNS: u16 = 4;
    pub const INTERNAL_IP4_DHCP: u16 = 6;
    pub const APPLICATION_VERSION: u16 = 7;
    pub const INTERNAL_IP6_ADDRESS: u16 = 8;
    pub const INTERNAL_IP6_DNS: u16 = 10;
    pub const INTERNAL_IP6_DHCP: u16 = 12;
    pub const INTERNAL_IP4_SUBNET: u16 = 13;
    pub const SUPPORTED_ATTRIBUTES: u16 = 14;
    pub const INTERNAL_IP6_SUBNET: u16 = 15;
}

/// Length of the fixed IKE header.
pub const HEADER_LEN: usize = 28;
/// Length of the generic payload header.
pub const PAYLOAD_HEADER_LEN: usize = 4;
/// The IKEv2 version byte (major 2, minor 0).
pub const IKE_VERSION: u8 = 0x20;
/// Critical bit in the generic payload header.
pub const CRITICAL: u8 = 0x80;

/// Error decoding IKE wire data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The buffer ends before a fixed-size field.
    #[error("truncated")]
    Truncated,
    /// The IKE header Length field disagrees with the datagram (too long, or below 28).
    #[error("bad message length: header says {declared}, datagram has {actual}")]
    BadLength { declared: usize, actual: usize },
    /// A generic payload header Length is below 4 or runs past its container.
    #[error("bad length {length} for payload type {ptype} ({available} bytes available)")]
    BadPayloadLength {
        ptype: u8,
        length: usize,
        available: usize,
    },
    /// Major version is not 2; carries the version byte.
    #[error("unsupported IKE version 0x{0:02x}")]
    UnsupportedVersion(u8),
    /// Bytes after the declared end of the message or payload chain.
    #[error("trailing bytes")]
    TrailingBytes,
    /// An SK or SKF payload is followed by more payloads.
    #[error("encrypted payload is not the last payload")]
    SkNotLast,
    /// A payload body is malformed.
    #[error("invalid payload type {ptype}: {reason}")]
    InvalidPayload { ptype: u8, reason: &'static str },
    /// A count field of payload type `ptype` claims `count` elements where the bytes carry
    /// (at most) `fits`: the count never sizes an allocation.
    #[error(
        "payload type {ptype}: count {count} does not match the {fits} elements the bytes carry"
    )]
    CountMismatch {
        ptype: u8,
        count: usize,
        fits: usize,
    },
    /// A payload chain longer than [`MAX_PAYLOADS`].
    #[error("more than {max} payloads in one message")]
    TooManyPayloads { max: usize },
    /// Emit: a value does not fit its wire field (`what`, e.g. "TS count"), so the payload
    /// or message cannot be encoded. Never truncated.
    #[error("cannot encode {what}: {value} exceeds the field maximum {max}")]
    Unencodable {
        what: &'static str,
        value: usize,
        max: usize,
    },
}

// ---------------------------------------------------------------------------------------------
// Byte helpers (checked; never panic).

fn be16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([*s.first()?, *s.get(1)?]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    let mut a = [0u8; 4];
    a.copy_from_slice(s);
    Some(u32::from_be_bytes(a))
}

fn be64(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_be_bytes(a))
}

fn u8at(b: &[u8], at: usize) -> Option<u8> {
    b.get(at).copied()
}

/// Emit buffer. Every field is written (a count or length that does not fit its field is
/// written as 0, never truncated), and the first such value is remembered: [`Emitter::finish`]
/// then fails with [`WireError::Unencodable`], so nothing half-encoded leaves the codec while
/// lengths computed from the buffer stay exact.
#[derive(Default)]
struct Emitter {
    o: Vec<u8>,
    err: Option<WireError>,
}

impl Emitter {
    fn put(&mut self, b: &[u8]) {
        self.o.extend_from_slice(b);
    }

    fn fail(&mut self, what: &'static str, value: usize, max: usize) {
        self.err
            .get_or_insert(WireError::Unencodable { what, value, max });
    }

    /// An 8-bit count/size field.
    fn u8_field(&mut self, n: usize, what: &'static str) {
        let v = u8::try_from(n).unwrap_or_else(|_| {
            self.fail(what, n, usize::from(u8::MAX));
            0
        });
        self.o.push(v);
    }

    /// A 16-bit big-endian count/length field.
    fn u16_field(&mut self, n: usize, what: &'static str) {
        let v = u16::try_from(n).unwrap_or_else(|_| {
            self.fail(what, n, usize::from(u16::MAX));
            0
        });
        self.put(&v.to_be_bytes());
    }

    /// Fill the 16-bit length at `start + 2` with the bytes written since `start` (the
    /// generic payload header, proposal and transform substructures).
    fn patch_len16(&mut self, start: usize, what: &'static str) {
        let n = self.o.len().saturating_sub(start);
        let v = u16::try_from(n).unwrap_or_else(|_| {
            self.fail(what, n, usize::from(u16::MAX));
            0
        });
        if let Some(f) = start
            .checked_add(2)
            .and_then(|a| self.o.get_mut(a..a.checked_add(2)?))
        {
            f.copy_from_slice(&v.to_be_bytes());
        }
    }

    fn finish(self) -> Result<Vec<u8>, WireError> {
        match self.err {
            Some(e) => Err(e),
            None => Ok(self.o),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Header

/// Zero-copy view of the fixed 28-byte IKE header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderView<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> HeaderView<T> {
    /// Wrap a buffer without checking its length (accessors then return 0 for missing bytes).
    pub fn new_unchecked(buffer: T) -> Self {
        HeaderView { buffer }
    }

    /// Wrap a buffer of at least [`HEADER_LEN`] bytes.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(HeaderView { buffer })
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Initiator SPI.
    pub fn spi_i(&self) -> u64 {
        be64(self.b(), 0).unwrap_or(0)
    }
    /// Responder SPI.
    pub fn spi_r(&self) -> u64 {
        be64(self.b(), 8).unwrap_or(0)
    }
    /// Type of the first payload.
    pub fn next_payload(&self) -> u8 {
        u8at(self.b(), 16).unwrap_or(0)
    }
    /// Version byte (major in the high nibble).
    pub fn version(&self) -> u8 {
        u8at(self.b(), 17).unwrap_or(0)
    }
    /// Exchange type.
    pub fn exchange(&self) -> u8 {
        u8at(self.b(), 18).unwrap_or(0)
    }
    /// Flags.
    pub fn flags(&self) -> u8 {
        u8at(self.b(), 19).unwrap_or(0)
    }
    /// Message ID.
    pub fn message_id(&self) -> u32 {
        be32(self.b(), 20).unwrap_or(0)
    }
    /// Total message length as declared in the header.
    pub fn length(&self) -> u32 {
        be32(self.b(), 24).unwrap_or(0)
    }
}

/// Owned IKE header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub spi_i: u64,
    pub spi_r: u64,
    pub next_payload: u8,
    /// Version byte, normally [`IKE_VERSION`] (0x20).
    pub version: u8,
    pub exchange: u8,
    pub flags: u8,
    pub message_id: u32,
    pub length: u32,
}

impl Header {
    /// Read the 28 header bytes at the start of `buf`. Only the buffer size is checked (not
    /// version or length), so a caller can answer e.g. INVALID_MAJOR_VERSION.
    pub fn parse(buf: &[u8]) -> Result<Header, WireError> {
        let v = HeaderView::new_checked(buf)?;
        Ok(Header {
            spi_i: v.spi_i(),
            spi_r: v.spi_r(),
            next_payload: v.next_payload(),
            version: v.version(),
            exchange: v.exchange(),
            flags: v.flags(),
            message_id: v.message_id(),
            length: v.length(),
        })
    }

    /// Write the header as is into the first 28 bytes of `out`; [`WireError::Truncated`]
    /// (and nothing written) if `out` is shorter.
    pub fn emit(&self, out: &mut [u8]) -> Result<(), WireError> {
        let o = out.get_mut(..HEADER_LEN).ok_or(WireError::Truncated)?;
        o.copy_from_slice(&self.to_bytes());
        Ok(())
    }

    /// The header as 28 bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut o = [0u8; HEADER_LEN];
        let fields = self
            .spi_i
            .to_be_bytes()
            .into_iter()
            .chain(self.spi_r.to_be_bytes())
            .chain([self.next_payload, self.version, self.exchange, self.flags]);
        let fields = fields
            .chain(self.message_id.to_be_bytes())
            .chain(self.length.to_be_bytes());
        for (d, s) in o.iter_mut().zip(fields) {
            *d = s;
        }
        o
    }

    /// The Response flag is set.
    pub fn is_response(&self) -> bool {
        self.flags & flags::RESPONSE != 0
    }

    /// The Initiator flag is set (sent by the original initiator of the IKE SA).
    pub fn is_initiator(&self) -> bool {
        self.flags & flags::INITIATOR != 0
    }
}

// ---------------------------------------------------------------------------------------------
// Payload representations

/// One transform of a proposal. Only the Key Length attribute is represented; other
/// attributes are skipped on parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transform {
    /// Transform type (see [`transform_type`]); unknown types are kept.
    pub ttype: u8,
    pub id: u16,
    /// Key Length attribute (type 14, TV format), in bits.
    pub key_len: Option<u16>,
}

/// One proposal of an SA payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposal {
    pub num: u8,
    /// Protocol ID (see [`protocol_id`]).
    pub protocol: u8,
    /// SPI (empty for an initial IKE proposal, 8 bytes for IKE rekey, 4 for ESP/AH).
    pub spi: Vec<u8>,
    pub transforms: Vec<Transform>,
}

/// Notify payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notify {
    /// Protocol ID (0 when not about a specific SA).
    pub protocol: u8,
    pub spi: Vec<u8>,
    pub ntype: u16,
    pub data: Vec<u8>,
}

impl Notify {
    /// A notify without protocol/SPI.
    pub fn new(ntype: u16, data: Vec<u8>) -> Self {
        Notify {
            protocol: 0,
            spi: Vec::new(),
            ntype,
            data,
        }
    }
}

/// Delete payload. On emit, the SPI Size field is `spi_size` and every SPI is written as is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delete {
    pub protocol: u8,
    pub spi_size: u8,
    pub spis: Vec<Vec<u8>>,
}

/// Identification payload (IDi / IDr).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdPayload {
    pub id_type: u8,
    pub data: Vec<u8>,
}

impl IdPayload {
    /// The payload body `[type, 0, 0, 0] | data`: the input to the AUTH octets' MACedID.
    pub fn body(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(4 + self.data.len());
        v.extend_from_slice(&[self.id_type, 0, 0, 0]);
        v.extend_from_slice(&self.data);
        v
    }

    /// The identity carried.
    pub fn identity(&self) -> Identity {
        Identity::from_wire(self.id_type, &self.data)
    }
}

impl From<&Identity> for IdPayload {
    fn from(id: &Identity) -> Self {
        IdPayload {
            id_type: id.id_type(),
            data: id.data(),
        }
    }
}

/// Configuration attribute (CP payload). `atype` is the 15-bit attribute type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpAttribute {
    pub atype: u16,
    pub value: Vec<u8>,
}

/// A decoded IKE payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    Sa(Vec<Proposal>),
    Ke {
        group: u16,
        data: Vec<u8>,
    },
    IdI(IdPayload),
    IdR(IdPayload),
    Cert {
        encoding: u8,
        data: Vec<u8>,
    },
    CertReq {
        encoding: u8,
        data: Vec<u8>,
    },
    Auth {
        method: u8,
        data: Vec<u8>,
    },
    Nonce(Vec<u8>),
    Notify(Notify),
    Delete(Delete),
    Vendor(Vec<u8>),
    TsI(Vec<TrafficSelector>),
    TsR(Vec<TrafficSelector>),
    Cp {
        cfg_type: u8,
        attrs: Vec<CpAttribute>,
    },
    Eap(Vec<u8>),
    /// Encrypted payload: `first_inner` is the Next Payload field of the SK header (type of
    /// the first inner payload); `body` = IV | ciphertext | ICV.
    Sk {
        first_inner: u8,
        body: Vec<u8>,
    },
    /// Encrypted fragment (RFC 7383).
    Skf {
        first_inner: u8,
        fragment_number: u16,
        total_fragments: u16,
        body: Vec<u8>,
    },
    /// A payload type this codec does not know, with its critical bit.
    Unknown {
        ptype: u8,
        critical: bool,
        body: Vec<u8>,
    },
}

impl Payload {
    /// The payload type code point.
    pub fn ptype(&self) -> u8 {
        use payload_type as t;
        match self {
            Payload::Sa(_) => t::SA,
            Payload::Ke { .. } => t::KE,
            Payload::IdI(_) => t::IDI,
            Payload::IdR(_) => t::IDR,
            Payload::Cert { .. } => t::CERT,
            Payload::CertReq { .. } => t::CERTREQ,
            Payload::Auth { .. } => t::AUTH,
            Payload::Nonce(_) => t::NONCE,
            Payload::Notify(_) => t::NOTIFY,
            Payload::Delete(_) => t::DELETE,
            Payload::Vendor(_) => t::VENDOR,
            Payload::TsI(_) => t::TSI,
            Payload::TsR(_) => t::TSR,
            Payload::Cp { .. } => t::CP,
            Payload::Eap(_) => t::EAP,
            Payload::Sk { .. } => t::SK,
            Payload::Skf { .. } => t::SKF,
            Payload::Unknown { ptype, .. } => *ptype,
        }
    }

    /// Shorthand for a Notify payload without protocol/SPI.
    pub fn notify(ntype: u16, data: Vec<u8>) -> Payload {
        Payload::Notify(Notify::new(ntype, data))
    }

    /// True for SK and SKF (which end a payload chain).
    pub fn is_encrypted(&self) -> bool {
        matches!(self, Payload::Sk { .. } | Payload::Skf { .. })
    }

    /// Bytes this payload occupies on the wire, generic header included (also for a payload
    /// that cannot be encoded: field values do not change the layout).
    pub fn buffer_len(&self) -> usize {
        let mut w = Emitter::default();
        self.emit_body(&mut w);
        PAYLOAD_HEADER_LEN + w.o.len()
    }

    /// The payload body (after the generic header) as emitted, or
    /// [`WireError::Unencodable`] if a count or length does not fit its field.
    pub fn body_bytes(&self) -> Result<Vec<u8>, WireError> {
        let mut w = Emitter::default();
        self.emit_body(&mut w);
        w.finish()
    }

    fn emit_body(&self, w: &mut Emitter) {
        match self {
            Payload::Sa(props) => emit_sa(props, w),
            Payload::Ke { group, data } => {
                w.put(&group.to_be_bytes());
                w.put(&[0, 0]);
                w.put(data);
            }
            Payload::IdI(id) | Payload::IdR(id) => {
                w.put(&[id.id_type, 0, 0, 0]);
                w.put(&id.data);
            }
            Payload::Cert { encoding, data } | Payload::CertReq { encoding, data } => {
                w.put(&[*encoding]);
                w.put(data);
            }
            Payload::Auth { method, data } => {
                w.put(&[*method, 0, 0, 0]);
                w.put(data);
            }
            Payload::Nonce(d) | Payload::Vendor(d) | Payload::Eap(d) => w.put(d),
            Payload::Notify(n) => {
                w.put(&[n.protocol]);
                w.u8_field(n.spi.len(), "Notify SPI size");
                w.put(&n.ntype.to_be_bytes());
                w.put(&n.spi);
                w.put(&n.data);
            }
            Payload::Delete(d) => {
                w.put(&[d.protocol, d.spi_size]);
                w.u16_field(d.spis.len(), "Delete number of SPIs");
                for s in &d.spis {
                    // 3.11: the SPI field length is SPI Size x Num of SPIs; an SPI of another
                    // length would desynchronise the receiver.
                    if s.len() != usize::from(d.spi_size) {
                        w.fail("Delete SPI length", s.len(), usize::from(d.spi_size));
                    }
                    w.put(s);
                }
            }
            Payload::TsI(ts) | Payload::TsR(ts) => emit_ts(ts, w),
            Payload::Cp { cfg_type, attrs } => {
                w.put(&[*cfg_type, 0, 0, 0]);
                for a in attrs {
                    w.put(&(a.atype & 0x7fff).to_be_bytes());
                    w.u16_field(a.value.len(), "CP attribute length");
                    w.put(&a.value);
                }
            }
            Payload::Sk { body, .. } | Payload::Unknown { body, .. } => w.put(body),
            Payload::Skf {
                fragment_number,
                total_fragments,
                body,
                ..
            } => {
                w.put(&fragment_number.to_be_bytes());
                w.put(&total_fragments.to_be_bytes());
                w.put(body);
            }
        }
    }

    /// Decode the body of a payload of type `ptype`.
    fn parse_body(ptype: u8, critical: bool, next: u8, b: &[u8]) -> Result<Payload, WireError> {
        use payload_type as t;
        let inv = |reason| WireError::InvalidPayload { ptype, reason };
        let rest = |n: usize| b.get(n..).map(<[u8]>::to_vec).ok_or(inv("too short"));
        Ok(match ptype {
            t::SA => Payload::Sa(parse_sa(b)?),
            t::KE => Payload::Ke {
                group: be16(b, 0).ok_or(inv("too short"))?,
                data: rest(4)?,
            },
            t::IDI | t::IDR => {
                let id = IdPayload {
                    id_type: u8at(b, 0).ok_or(inv("too short"))?,
                    data: rest(4)?,
                };
                if ptype == t::IDI {
                    Payload::IdI(id)
                } else {
                    Payload::IdR(id)
                }
            }
            t::CERT | t::CERTREQ => {
                let encoding = u8at(b, 0).ok_or(inv("too short"))?;
                let data = rest(1)?;
                if ptype == t::CERT {
                    Payload::Cert { encoding, data }
                } else {
                    Payload::CertReq { encoding, data }
                }
            }
            t::AUTH => Payload::Auth {
                method: u8at(b, 0).ok_or(inv("too short"))?,
                data: rest(4)?,
            },
            t::NONCE => Payload::Nonce(b.to_vec()),
            t::NOTIFY => {
                let protocol = u8at(b, 0).ok_or(inv("too short"))?;
                let spi_size = usize::from(u8at(b, 1).ok_or(inv("too short"))?);
                let ntype = be16(b, 2).ok_or(inv("too short"))?;
                let spi = b
                    .get(4..4 + spi_size)
                    .ok_or(inv("SPI runs past payload"))?
                    .to_vec();
                Payload::Notify(Notify {
                    protocol,
                    spi,
                    ntype,
                    data: rest(4 + spi_size)?,
                })
            }
            t::DELETE => {
                let protocol = u8at(b, 0).ok_or(inv("too short"))?;
                let spi_size = u8at(b, 1).ok_or(inv("too short"))?;
                let n = usize::from(be16(b, 2).ok_or(inv("too short"))?);
                let body = b.get(4..).ok_or(inv("too short"))?;
                //= https://www.rfc-editor.org/rfc/rfc7296#section-3.11
                //# SPI Size (1 octet) - Length in octets of the SPI as defined by the
                //# protocol ID.  It MUST be zero for IKE (SPI is in message header)
                //# or four for AH and ESP.
                //
                //= https://www.rfc-editor.org/rfc/rfc7296#section-3.11
                //# Deletion of the IKE SA is indicated by a protocol ID of 1 (IKE) but
                //# no SPIs.
                //
                // SPI Size 0 carries no SPIs, so a nonzero count cannot be backed by bytes:
                // reject it instead of materialising `n` empty SPIs (an 8-byte payload with
                // count 65535 would otherwise allocate 1.5 MiB).
                if spi_size != 0 && spi_size != 4 {
                    return Err(inv("SPI size must be 0 (IKE) or 4 (AH, ESP)"));
                }
                if spi_size == 0 && n != 0 {
                    return Err(WireError::CountMismatch {
                        ptype,
                        count: n,
                        fits: 0,
                    });
                }
                //= https://www.rfc-editor.org/rfc/rfc7296#section-3.11
                //# Security Parameter Index(es) (variable length) - Identifies the
                //# specific Security Association(s) to delete.  The length of this field
                //# is determined by the SPI Size and Num of SPIs fields.
                let size = usize::from(spi_size);
                let fits = body.len().checked_div(size).unwrap_or(0);
                if n.checked_mul(size) != Some(body.len()) {
                    return Err(WireError::CountMismatch {
                        ptype,
                        count: n,
                        fits,
                    });
                }
                // n * size == body.len(): the vector holds exactly the SPIs the bytes carry.
                let spis = if size == 0 {
                    Vec::new()
                } else {
                    body.chunks_exact(size).map(<[u8]>::to_vec).collect()
                };
                Payload::Delete(Delete {
                    protocol,
                    spi_size,
                    spis,
                })
            }
            t::VENDOR => Payload::Vendor(b.to_vec()),
            t::TSI => Payload::TsI(parse_ts(ptype, b)?),
            t::TSR => Payload::TsR(parse_ts(ptype, b)?),
            t::CP => {
                let cfg_type = u8at(b, 0).ok_or(inv("too short"))?;
                let mut attrs = Vec::new();
                let mut at = 4;
                if b.len() < 4 {
                    return Err(inv("too short"));
                }
                while at < b.len() {
                    let atype = be16(b, at).ok_or(inv("truncated attribute"))? & 0x7fff;
                    let len = usize::from(be16(b, at + 2).ok_or(inv("truncated attribute"))?);
                    let value = b
                        .get(at + 4..at + 4 + len)
                        .ok_or(inv("attribute runs past payload"))?
                        .to_vec();
                    attrs.push(CpAttribute { atype, value });
                    at += 4 + len;
                }
                Payload::Cp { cfg_type, attrs }
            }
            t::EAP => Payload::Eap(b.to_vec()),
            t::SK => Payload::Sk {
                first_inner: next,
                body: b.to_vec(),
            },
            t::SKF => {
                let fragment_number = be16(b, 0).ok_or(inv("too short"))?;
                let total_fragments = be16(b, 2).ok_or(inv("too short"))?;
                if fragment_number == 0 || fragment_number > total_fragments {
                    return Err(inv("bad fragment number"));
                }
                Payload::Skf {
                    first_inner: next,
                    fragment_number,
                    total_fragments,
                    body: rest(4)?,
                }
            }
            _ => Payload::Unknown {
                ptype,
                critical,
                body: b.to_vec(),
            },
        })
    }
}

// ---------------------------------------------------------------------------------------------
// SA payload

fn emit_sa(props: &[Proposal], w: &mut Emitter) {
    //= https://www.rfc-editor.org/rfc/rfc7296#section-3.3.1
    //# When a proposal is made, the first
    //# proposal in an SA payload MUST be 1, and subsequent proposals MUST
    //# be one more than the previous proposal (indicating an OR of the two
    //# proposals).
    //
    // Proposal Num is one octet: more than 255 proposals cannot be numbered.
    if props.len() > usize::from(u8::MAX) {
        w.fail("SA proposal count", props.len(), usize::from(u8::MAX));
    }
    for (pi, p) in props.iter().enumerate() {
        let start = w.o.len();
        let last = if pi + 1 == props.len() { 0 } else { 2 };
        w.put(&[last, 0, 0, 0, p.num, p.protocol]);
        w.u8_field(p.spi.len(), "proposal SPI size");
        w.u8_field(p.transforms.len(), "proposal number of transforms");
        w.put(&p.spi);
        for (ti, t) in p.transforms.iter().enumerate() {
            let last = if ti + 1 == p.transforms.len() { 0 } else { 3 };
            let len: u16 = if t.key_len.is_some() { 12 } else { 8 };
            w.put(&[last, 0]);
            w.put(&len.to_be_bytes());
            w.put(&[t.ttype, 0]);
            w.put(&t.id.to_be_bytes());
            if let Some(k) = t.key_len {
                w.put(&(0x8000 | transform_attr::KEY_LENGTH).to_be_bytes());
                w.put(&k.to_be_bytes());
            }
        }
        w.patch_len16(start, "proposal length");
    }
}

fn parse_sa(b: &[u8]) -> Result<Vec<Proposal>, WireError> {
    let inv = |reason| WireError::InvalidPayload {
        ptype: payload_type::SA,
        reason,
    };
    let mut props = Vec::new();
    let mut at = 0;
    while at < b.len() {
        let last = u8at(b, at).ok_or(inv("truncated proposal"))?;
        let plen = usize::from(be16(b, at + 2).ok_or(inv("truncated proposal"))?);
        if plen < 8 {
            return Err(inv("proposal length below 8"));
        }
        let p = b
            .get(at..at + plen)
            .ok_or(inv("proposal runs past payload"))?;
        at += plen;
        match (last, at == b.len()) {
            (0, true) | (2, false) => {}
            (0, false) => return Err(inv("data after last proposal")),
            (2, true) => return Err(inv("missing proposal after 'more' flag")),
            _ => return Err(inv("bad proposal 'last substructure' value")),
        }
        // 3.3.1: proposals are numbered 1, 2, ... in one octet, so at most 255 (the same limit
        // emit_sa enforces: whatever parses can be emitted again).
        if props.len() == usize::from(u8::MAX) {
            return Err(inv("more than 255 proposals"));
        }
        props.push(parse_proposal(p)?);
    }
    Ok(props)
}

fn parse_proposal(p: &[u8]) -> Result<Proposal, WireError> {
    let inv = |reason| WireError::InvalidPayload {
        ptype: payload_type::SA,
        reason,
    };
    let num = u8at(p, 4).ok_or(inv("truncated proposal"))?;
    let protocol = u8at(p, 5).ok_or(inv("truncated proposal"))?;
    let spi_size = usize::from(u8at(p, 6).ok_or(inv("truncated proposal"))?);
    let ntrans = usize::from(u8at(p, 7).ok_or(inv("truncated proposal"))?);
    let spi = p
        .get(8..8 + spi_size)
        .ok_or(inv("SPI runs past proposal"))?
        .to_vec();
    let mut at = 8 + spi_size;
    // Each transform takes at least 8 bytes: the count sizes nothing beyond what the bytes
    // can hold (a wrong count is rejected below, after the transforms are walked).
    let fits = p.len().saturating_sub(at) / 8;
    let mut transforms = Vec::with_capacity(ntrans.min(fits));
    while at < p.len() {
        let last = u8at(p, at).ok_or(inv("truncated transform"))?;
        let tlen = usize::from(be16(p, at + 2).ok_or(inv("truncated transform"))?);
        if tlen < 8 {
            return Err(inv("transform length below 8"));
        }
        let t = p
            .get(at..at + tlen)
            .ok_or(inv("transform runs past proposal"))?;
        at += tlen;
        match (last, at == p.len()) {
            (0, true) | (3, false) => {}
            (0, false) => return Err(inv("data after last transform")),
            (3, true) => return Err(inv("missing transform after 'more' flag")),
            _ => return Err(inv("bad transform 'last substructure' value")),
        }
        transforms.push(parse_transform(t)?);
    }
    if transforms.len() != ntrans {
        return Err(inv("transform count mismatch"));
    }
    Ok(Proposal {
        num,
        protocol,
        spi,
        transforms,
    })
}

fn parse_transform(t: &[u8]) -> Result<Transform, WireError> {
    let inv = |reason| WireError::InvalidPayload {
        ptype: payload_type::SA,
        reason,
    };
    let ttype = u8at(t, 4).ok_or(inv("truncated transform"))?;
    let id = be16(t, 6).ok_or(inv("truncated transform"))?;
    let mut key_len = None;
    let mut at = 8;
    while at < t.len() {
        let af_type = be16(t, at).ok_or(inv("truncated attribute"))?;
        let val = be16(t, at + 2).ok_or(inv("truncated attribute"))?;
        if af_type & 0x8000 != 0 {
            // TV format: 2-byte value.
            if af_type & 0x7fff == transform_attr::KEY_LENGTH {
                key_len = Some(val);
            }
            at += 4;
        } else {
            // TLV format: skip.
            let end = at + 4 + usize::from(val);
            if end > t.len() {
                return Err(inv("attribute runs past transform"));
            }
            at = end;
        }
    }
    Ok(Transform { ttype, id, key_len })
}

// ---------------------------------------------------------------------------------------------
// Traffic selector payloads

fn emit_ts(ts: &[TrafficSelector], w: &mut Emitter) {
    //= https://www.rfc-editor.org/rfc/rfc7296#section-3.13
    //# Number of TSs (1 octet) - Number of Traffic Selectors being
    //# provided.
    w.u8_field(ts.len(), "TS count");
    w.put(&[0, 0, 0]);
    for t in ts {
        let v6 = t.is_v6();
        let len: u16 = if v6 { 40 } else { 16 };
        w.put(&[t.ts_type(), t.protocol]);
        w.put(&len.to_be_bytes());
        w.put(&t.start_port.to_be_bytes());
        w.put(&t.end_port.to_be_bytes());
        for a in [t.start, t.end] {
            match a {
                IpAddr::V4(a) if !v6 => w.put(&a.octets()),
                IpAddr::V6(a) if v6 => w.put(&a.octets()),
                // Mixed families are invalid; keep the layout of the selector's family.
                IpAddr::V4(a) => w.put(&a.to_ipv6_mapped().octets()),
                IpAddr::V6(_) => w.put(&[0; 4]),
            }
        }
    }
}

fn parse_ts(ptype: u8, b: &[u8]) -> Result<Vec<TrafficSelector>, WireError> {
    let inv = |reason| WireError::InvalidPayload { ptype, reason };
    let n = usize::from(u8at(b, 0).ok_or(inv("too short"))?);
    if b.len() < 4 {
        return Err(inv("too short"));
    }
    //= https://www.rfc-editor.org/rfc/rfc7296#section-3.13
    //# Number of TSs (1 octet) - Number of Traffic Selectors being
    //# provided.
    //
    // A selector takes at least 16 bytes (IPv4): the count sizes nothing beyond what the
    // bytes can hold (a count past the selectors present fails in the loop below).
    let fits = b.len().saturating_sub(4) / 16;
    let mut out = Vec::with_capacity(n.min(fits));
    let mut at = 4;
    for _ in 0..n {
        let ts_type = u8at(b, at).ok_or(inv("truncated selector"))?;
        let protocol = u8at(b, at + 1).ok_or(inv("truncated selector"))?;
        let len = usize::from(be16(b, at + 2).ok_or(inv("truncated selector"))?);
        let s = b
            .get(at..at + len)
            .ok_or(inv("selector runs past payload"))?;
        let start_port = be16(s, 4).ok_or(inv("truncated selector"))?;
        let end_port = be16(s, 6).ok_or(inv("truncated selector"))?;
        let (start, end) = match (ts_type, len) {
            (TS_IPV4_ADDR_RANGE, 16) => {
                let a = be32(s, 8).ok_or(inv("truncated selector"))?;
                let z = be32(s, 12).ok_or(inv("truncated selector"))?;
                (IpAddr::V4(Ipv4Addr::from(a)), IpAddr::V4(Ipv4Addr::from(z)))
            }
            (TS_IPV6_ADDR_RANGE, 40) => {
                let a = s.get(8..24).ok_or(inv("truncated selector"))?;
                let z = s.get(24..40).ok_or(inv("truncated selector"))?;
                let mut aa = [0u8; 16];
                let mut zz = [0u8; 16];
                aa.copy_from_slice(a);
                zz.copy_from_slice(z);
                (
                    IpAddr::V6(Ipv6Addr::from(aa)),
                    IpAddr::V6(Ipv6Addr::from(zz)),
                )
            }
            (TS_IPV4_ADDR_RANGE, _) | (TS_IPV6_ADDR_RANGE, _) => {
                return Err(inv("bad selector length"))
            }
            _ => return Err(inv("unsupported TS type")),
        };
        out.push(TrafficSelector {
            start,
            end,
            protocol,
            start_port,
            end_port,
        });
        at += len;
    }
    if at != b.len() {
        return Err(inv("data after last selector"));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Payload chains and messages

/// Most payloads accepted in one chain (a message, or the contents of an SK payload or of a
/// reassembled fragment set). Real messages carry a few dozen at most (strongSwan caps Notify,
/// Delete and Vendor ID payloads at 20 each per message); without a cap, 64 KB of empty
/// 4-byte payloads would cost ~16,000 decoded payloads (about 1 MiB and the CPU to walk them)
/// per datagram.
pub const MAX_PAYLOADS: usize = 128;

/// Parse a chain of payloads starting with type `first` (e.g. decrypted SK contents).
/// Rejects bad lengths, bytes after the last payload, and chains of more than
/// [`MAX_PAYLOADS`]. An SK/SKF payload ends the chain (its Next Payload is the first inner
/// type) and must end the buffer.
pub fn parse_payloads(first: u8, buf: &[u8]) -> Result<Vec<Payload>, WireError> {
    let mut out = Vec::new();
    let mut next = first;
    let mut at = 0usize;
    while next != payload_type::NONE {
        if out.len() == MAX_PAYLOADS {
            return Err(WireError::TooManyPayloads { max: MAX_PAYLOADS });
        }
        let ptype = next;
        let hdr = buf
            .get(at..at + PAYLOAD_HEADER_LEN)
            .ok_or(WireError::Truncated)?;
        let (nxt, crit) = match hdr {
            [n, c, _, _] => (*n, *c & CRITICAL != 0),
            _ => return Err(WireError::Truncated),
        };
        let length = usize::from(be16(hdr, 2).ok_or(WireError::Truncated)?);
        let available = buf.len() - at;
        if length < PAYLOAD_HEADER_LEN || length > available {
            return Err(WireError::BadPayloadLength {
                ptype,
                length,
                available,
            });
        }
        let body = buf
            .get(at + PAYLOAD_HEADER_LEN..at + length)
            .ok_or(WireError::Truncated)?;
        let p = Payload::parse_body(ptype, crit, nxt, body)?;
        at += length;
        if p.is_encrypted() {
            out.push(p);
            if at != buf.len() {
                return Err(WireError::SkNotLast);
            }
            return Ok(out);
        }
        out.push(p);
        next = nxt;
    }
    if at != buf.len() {
        return Err(WireError::TrailingBytes);
    }
    Ok(out)
}

/// Serialize a chain; returns (type of the first payload or 0, bytes). An SK/SKF payload
/// must be last: its Next Payload field carries `first_inner`.
///
/// Fails with [`WireError::Unencodable`] when a count or length does not fit its field
/// (payloads of 64 KiB or more, SPIs or TS/transform counts of 256 or more, more than 255
/// proposals, 65536 Delete SPIs or more, a Delete SPI not `spi_size` bytes long): a field is
/// never truncated. `Unknown` is meant only for unknown types.
pub fn emit_payloads(payloads: &[Payload]) -> Result<(u8, Vec<u8>), WireError> {
    let mut w = Emitter::default();
    for (i, p) in payloads.iter().enumerate() {
        let next = match p {
            Payload::Sk { first_inner, .. } | Payload::Skf { first_inner, .. } => *first_inner,
            _ => payloads
                .get(i + 1)
                .map_or(payload_type::NONE, Payload::ptype),
        };
        let crit = match p {
            Payload::Unknown { critical: true, .. } => CRITICAL,
            _ => 0,
        };
        let start = w.o.len();
        w.put(&[next, crit, 0, 0]);
        p.emit_body(&mut w);
        //= https://www.rfc-editor.org/rfc/rfc7296#section-3.2
        //# Payload Length (2 octets, unsigned integer) - Length in octets of
        //# the current payload, including the generic payload header.
        w.patch_len16(start, "payload length");
    }
    let first = payloads.first().map_or(payload_type::NONE, Payload::ptype);
    Ok((first, w.finish()?))
}

/// A whole IKE message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub header: Header,
    pub payloads: Vec<Payload>,
}

impl Message {
    /// Parse a whole datagram: checks major version 2, header length == datagram length,
    /// every payload length and the chain. An SK/SKF payload must be last. Unknown payload
    /// types become [`Payload::Unknown`] with their critical bit.
    pub fn parse(buf: &[u8]) -> Result<Message, WireError> {
        let header = Self::parse_header(buf)?;
        let body = buf.get(HEADER_LEN..).ok_or(WireError::Truncated)?;
        let payloads = parse_payloads(header.next_payload, body)?;
        Ok(Message { header, payloads })
    }

    /// The checks of [`Message::parse`] that need only the fixed header (major version 2,
    /// header Length == datagram length), without touching the payloads: lets a receiver
    /// route or drop a datagram (e.g. by IKE SPI) before paying for the payload parse.
    pub fn parse_header(buf: &[u8]) -> Result<Header, WireError> {
        let header = Header::parse(buf)?;
        if header.version >> 4 != 2 {
            return Err(WireError::UnsupportedVersion(header.version));
        }
        let declared = header.length as usize;
        if declared < HEADER_LEN || declared > buf.len() {
            return Err(WireError::BadLength {
                declared,
                actual: buf.len(),
            });
        }
        if declared < buf.len() {
            return Err(WireError::TrailingBytes);
        }
        Ok(header)
    }

    /// Serialize; fills `header.next_payload` and `header.length` from the payloads. Fails
    /// with [`WireError::Unencodable`] as [`emit_payloads`] does.
    pub fn emit(&self) -> Result<Vec<u8>, WireError> {
        let (first, body) = emit_payloads(&self.payloads)?;
        let mut h = self.header.clone();
        h.next_payload = first;
        h.length = message_len(body.len())?;
        let mut o = Vec::with_capacity(HEADER_LEN + body.len());
        o.extend_from_slice(&h.to_bytes());
        o.extend_from_slice(&body);
        Ok(o)
    }

    /// Bytes [`Message::emit`] produces.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payloads.iter().map(Payload::buffer_len).sum::<usize>()
    }

    /// The first Notify of type `ntype`.
    pub fn notify(&self, ntype: u16) -> Option<&Notify> {
        self.payloads.iter().find_map(|p| match p {
            Payload::Notify(n) if n.ntype == ntype => Some(n),
            _ => None,
        })
    }
}

/// The header Length of a message with `body_len` bytes after the header.
fn message_len(body_len: usize) -> Result<u32, WireError> {
    //= https://www.rfc-editor.org/rfc/rfc7296#section-3.1
    //# Length (4 octets, unsigned integer) - Length of the total message
    //# (header + payloads) in octets.
    HEADER_LEN
        .checked_add(body_len)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or(WireError::Unencodable {
            what: "message length",
            value: body_len.saturating_add(HEADER_LEN),
            max: u32::MAX as usize,
        })
}

/// The 16-bit Payload Length of a payload of `plen` bytes (generic header included).
fn payload_len(plen: usize) -> Result<[u8; 2], WireError> {
    u16::try_from(plen)
        .map(u16::to_be_bytes)
        .map_err(|_| WireError::Unencodable {
            what: "payload length",
            value: plen,
            max: usize::from(u16::MAX),
        })
}

/// IKE header + SK generic payload header with final lengths, for an SK body (IV |
/// ciphertext | ICV) of `body_len` bytes. The header's Next Payload is set to SK and its
/// Length to the full message length. This is the AEAD AAD / start of the integrity input.
/// Fails with [`WireError::Unencodable`] if the SK payload reaches 64 KiB.
pub fn sk_message_prefix(
    header: &Header,
    first_inner: u8,
    body_len: usize,
) -> Result<Vec<u8>, WireError> {
    let plen = body_len.saturating_add(PAYLOAD_HEADER_LEN);
    let len = payload_len(plen)?;
    let mut h = header.clone();
    h.next_payload = payload_type::SK;
    h.length = message_len(plen)?;
    let mut o = h.to_bytes().to_vec();
    o.extend_from_slice(&[first_inner, 0]);
    o.extend_from_slice(&len);
    Ok(o)
}

/// Like [`sk_message_prefix`] for an SKF payload; the prefix includes the fragment
/// number and total.
pub fn skf_message_prefix(
    header: &Header,
    first_inner: u8,
    fragment_number: u16,
    total_fragments: u16,
    body_len: usize,
) -> Result<Vec<u8>, WireError> {
    let plen = body_len.saturating_add(PAYLOAD_HEADER_LEN + 4);
    let len = payload_len(plen)?;
    let mut h = header.clone();
    h.next_payload = payload_type::SKF;
    h.length = message_len(plen)?;
    let mut o = h.to_bytes().to_vec();
    o.extend_from_slice(&[first_inner, 0]);
    o.extend_from_slice(&len);
    o.extend_from_slice(&fragment_number.to_be_bytes());
    o.extend_from_slice(&total_fragments.to_be_bytes());
    Ok(o)
}

#[cfg(test)]
mod tests;
