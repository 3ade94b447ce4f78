//! The SK payload (RFC 7296 3.14, RFC 5282) and NAT detection hashes (2.23).
use fs_crypto::{Rng, Transform};
use fs_wire::ike::{
    emit_payloads, parse_payloads, payload_type, sk_message_prefix, Header, Message, Payload,
    WireError,
};
use std::net::{IpAddr, SocketAddr};

/// Why an SK payload could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenError {
    /// Not an SK message, bad lengths, bad padding, or undecodable inner payloads.
    Malformed,
    /// ICV mismatch.
    Integrity,
}

/// Why a protected message could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SealError {
    /// The payloads cannot be encoded (a count or length past its field width): nothing is
    /// sent rather than a truncated field.
    Encode(WireError),
    /// The cipher failed.
    Crypto,
}

impl From<WireError> for SealError {
    fn from(e: WireError) -> Self {
        SealError::Encode(e)
    }
}

/// Build a whole protected message:
/// `[IKE header | SK header | IV | inner payloads | padding | pad length | ICV]`.
pub(crate) fn seal(
    cipher: &Transform,
    rng: &mut dyn Rng,
    header: &Header,
    payloads: &[Payload],
) -> Result<Vec<u8>, SealError> {
    let (first, inner) = if payloads.is_empty() {
        (payload_type::NONE, Vec::new())
    } else {
        emit_payloads(payloads)?
    };
    seal_inner(cipher, rng, &inner, |body_len| {
        sk_message_prefix(header, first, body_len)
    })
}

/// Bytes of an SK/SKF body (IV | ciphertext | ICV) carrying `inner_len` bytes of payloads.
pub(crate) fn body_len(cipher: &Transform, inner_len: usize) -> usize {
    let block = cipher.block_len().max(1);
    let pad = (block - (inner_len + 1) % block) % block;
    cipher.iv_len() + inner_len + pad + 1 + cipher.icv_len()
}

/// Encrypt `inner` (an already encoded payload chain, or a piece of one for SKF) behind
/// `prefix(body_len)` (IKE header + SK/SKF header with final lengths: the AAD / start of the
/// integrity input), with a fresh random IV, padding and ICV (RFC 7296 3.14, RFC 7383 2.5).
pub(crate) fn seal_inner(
    cipher: &Transform,
    rng: &mut dyn Rng,
    inner: &[u8],
    prefix: impl FnOnce(usize) -> Result<Vec<u8>, WireError>,
) -> Result<Vec<u8>, SealError> {
    let block = cipher.block_len().max(1);
    let pad = (block - (inner.len() + 1) % block) % block;
    let (iv_len, icv_len) = (cipher.iv_len(), cipher.icv_len());
    let mut buf = prefix(body_len(cipher, inner.len()))?;
    let aad_len = buf.len();
    let mut iv = vec![0u8; iv_len];
    rng.fill(&mut iv);
    buf.extend_from_slice(&iv);
    buf.extend_from_slice(inner);
    buf.resize(buf.len() + pad, 0);
    // RFC 7296 3.14: Pad Length is one octet (pad < block <= 16 for our ciphers).
    buf.push(u8::try_from(pad).map_err(|_| {
        SealError::Encode(WireError::Unencodable {
            what: "SK Pad Length",
            value: pad,
            max: usize::from(u8::MAX),
        })
    })?);
    buf.resize(buf.len() + icv_len, 0);
    cipher
        .seal(&mut buf, aad_len, None)
        .map_err(|_| SealError::Crypto)?;
    Ok(buf)
}

/// Verify and decrypt the SK payload of `msg` (parsed from `data`) and decode its payloads.
pub(crate) fn open(
    cipher: &Transform,
    data: &[u8],
    msg: &Message,
) -> Result<Vec<Payload>, OpenError> {
    let Some(Payload::Sk { first_inner, body }) = msg.payloads.last() else {
        return Err(OpenError::Malformed);
    };
    let inner = open_inner(cipher, data, msg.header.length as usize, body.len())?;
    parse_payloads(*first_inner, &inner).map_err(|_| OpenError::Malformed)
}

/// Verify and decrypt the last (SK or SKF) payload of a message of `total` bytes whose body
/// (IV | ciphertext | ICV) is the last `body_len` bytes; everything before is the AAD (RFC 7296
/// 3.14; RFC 7383 2.5: for SKF it includes Fragment Number and Total Fragments). Returns the
/// inner bytes without padding.
pub(crate) fn open_inner(
    cipher: &Transform,
    data: &[u8],
    total: usize,
    body_len: usize,
) -> Result<Vec<u8>, OpenError> {
    let mut buf = data.get(..total).ok_or(OpenError::Malformed)?.to_vec();
    let aad_len = total.checked_sub(body_len).ok_or(OpenError::Malformed)?;
    if body_len < cipher.iv_len() + cipher.icv_len() + 1 {
        return Err(OpenError::Malformed);
    }
    if !(body_len - cipher.iv_len() - cipher.icv_len()).is_multiple_of(cipher.block_len().max(1)) {
        return Err(OpenError::Malformed);
    }
    let range = cipher.open(&mut buf, aad_len, None).map_err(|e| match e {
        fs_crypto::CryptoError::IntegrityCheckFailed => OpenError::Integrity,
        _ => OpenError::Malformed,
    })?;
    let plain = buf.get(range).ok_or(OpenError::Malformed)?;
    let (&pad_len, rest) = plain.split_last().ok_or(OpenError::Malformed)?;
    let inner_len = rest
        .len()
        .checked_sub(usize::from(pad_len))
        .ok_or(OpenError::Malformed)?;
    rest.get(..inner_len)
        .map(<[u8]>::to_vec)
        .ok_or(OpenError::Malformed)
}

/// NAT detection hash: SHA-1(SPIi | SPIr | IP | port) (RFC 7296 2.23).
pub(crate) fn nat_hash(
    spi_i: fs_wire::IkeSpi,
    spi_r: fs_wire::IkeSpi,
    addr: SocketAddr,
) -> Vec<u8> {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(&spi_i.to_be_bytes());
    ctx.update(&spi_r.to_be_bytes());
    match addr.ip() {
        IpAddr::V4(a) => ctx.update(&a.octets()),
        IpAddr::V6(a) => ctx.update(&a.octets()),
    }
    ctx.update(&addr.port().to_be_bytes());
    ctx.finish().as_ref().to_vec()
}
