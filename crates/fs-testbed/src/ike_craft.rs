//! Hand-made IKE datagrams.

// ---------------------------------------------------------------------------------------
// hand-made IKE datagrams
// ---------------------------------------------------------------------------------------

pub const EXCH_IKE_SA_INIT: u8 = 34;
pub const EXCH_INFORMATIONAL: u8 = 37;
pub const FLAG_INITIATOR: u8 = 0x08;

/// A 28-byte IKEv2 header (version 2.0).
pub fn ike_header(
    spi_i: u64,
    spi_r: u64,
    next: u8,
    exch: u8,
    flags: u8,
    msg_id: u32,
    len: u32,
) -> Vec<u8> {
    let mut h = Vec::with_capacity(28);
    h.extend_from_slice(&spi_i.to_be_bytes());
    h.extend_from_slice(&spi_r.to_be_bytes());
    h.extend_from_slice(&[next, 0x20, exch, flags]);
    h.extend_from_slice(&msg_id.to_be_bytes());
    h.extend_from_slice(&len.to_be_bytes());
    h
}

/// A generic payload: header (next, critical bit, length) + body.
pub fn ike_payload(next: u8, critical: bool, body: &[u8]) -> Vec<u8> {
    let mut p = vec![next, if critical { 0x80 } else { 0 }];
    p.extend_from_slice(&((4 + body.len()) as u16).to_be_bytes());
    p.extend_from_slice(body);
    p
}

/// IKE_SA_INIT request: Nonce, then an unknown payload type `ptype` marked critical.
pub fn ike_init_with_critical(spi_i: u64, ptype: u8) -> Vec<u8> {
    let mut body = ike_payload(ptype, false, &[0x5a; 32]); // Nonce (40) -> ptype
    body.extend(ike_payload(0, true, &[1, 2, 3, 4]));
    let mut m = ike_header(
        spi_i,
        0,
        40,
        EXCH_IKE_SA_INIT,
        FLAG_INITIATOR,
        0,
        (28 + body.len()) as u32,
    );
    m.extend(body);
    m
}

/// The Notify types in an unencrypted IKE message (first payload chain), if it parses.
pub fn notify_types(msg: &[u8]) -> Vec<(u16, Vec<u8>)> {
    let mut out = Vec::new();
    if msg.len() < 28 {
        return out;
    }
    let mut next = msg[16];
    let mut at = 28;
    while next != 0 && at + 4 <= msg.len() {
        let len = u16::from_be_bytes([msg[at + 2], msg[at + 3]]) as usize;
        if len < 4 || at + len > msg.len() {
            break;
        }
        if next == 41 && len >= 8 {
            let spi_size = msg[at + 5] as usize;
            let t = u16::from_be_bytes([msg[at + 6], msg[at + 7]]);
            let data = msg.get(at + 8 + spi_size..at + len).unwrap_or(&[]).to_vec();
            out.push((t, data));
        }
        next = msg[at];
        at += len;
    }
    out
}

// ---------------------------------------------------------------------------------------
// IKE_SA_INIT requests for flood tests
// ---------------------------------------------------------------------------------------

/// A well-formed IKE_SA_INIT request offering aes256gcm16-prfsha256-x25519 (the harness'
/// `IKE_PROPOSAL`): SA, KE (Curve25519 public value `ke`), Nonce `nonce`; no NAT-D.
pub fn ike_sa_init_request(spi_i: u64, ke: &[u8; 32], nonce: &[u8]) -> Vec<u8> {
    // Transforms: ENCR AES-GCM-16 (20) with key length 256, PRF HMAC-SHA2-256 (5), DH 31.
    let mut trans = vec![3, 0, 0, 12, 1, 0, 0, 20, 0x80, 14, 1, 0];
    trans.extend_from_slice(&[3, 0, 0, 8, 2, 0, 0, 5]);
    trans.extend_from_slice(&[0, 0, 0, 8, 4, 0, 0, 31]);
    let mut prop = vec![0, 0];
    prop.extend_from_slice(&((8 + trans.len()) as u16).to_be_bytes());
    prop.extend_from_slice(&[1, 1, 0, 3]); // proposal 1, IKE, no SPI, 3 transforms
    prop.extend(trans);
    let mut ke_body = vec![0, 31, 0, 0];
    ke_body.extend_from_slice(ke);
    let mut body = ike_payload(34, false, &prop); // SA -> KE
    body.extend(ike_payload(40, false, &ke_body)); // KE -> Nonce
    body.extend(ike_payload(0, false, nonce));
    let mut m = ike_header(
        spi_i,
        0,
        33,
        EXCH_IKE_SA_INIT,
        FLAG_INITIATOR,
        0,
        (28 + body.len()) as u32,
    );
    m.extend(body);
    m
}

/// `VmRSS` of a process in KiB (from /proc/PID/status).
pub fn vm_rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
