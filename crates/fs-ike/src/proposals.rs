//! Conversion between configured proposals and wire SA payload proposals, proposal selection
//! (RFC 7296 2.7, 3.3) and traffic selector narrowing (2.9).
use fs_crypto::alg::transform_type as tt;
use fs_crypto::proposal::{EspProposal, IkeProposal};
use fs_crypto::{DhGroup, EncrAlg, IntegAlg, PrfAlg};
use fs_wire::ike::{protocol_id, Proposal, Transform as WTransform};
use fs_wire::ts::TrafficSelector;
use fs_wire::{EspSpi, IkeSpi};

/// A fully negotiated IKE SA algorithm suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IkeSuite {
    pub encr: EncrAlg,
    pub integ: Option<IntegAlg>,
    pub prf: PrfAlg,
    pub dh: DhGroup,
}

/// A fully negotiated ESP suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EspSuite {
    pub encr: EncrAlg,
    pub integ: Option<IntegAlg>,
    pub esn: bool,
    /// PFS group negotiated in CREATE_CHILD_SA (never in IKE_AUTH, RFC 7296 1.2).
    pub dh: Option<DhGroup>,
}

fn encr_t(e: EncrAlg) -> WTransform {
    WTransform {
        ttype: tt::ENCR,
        id: e.transform_id(),
        key_len: e.key_bits(),
    }
}
fn t(ttype: u8, id: u16) -> WTransform {
    WTransform {
        ttype,
        id,
        key_len: None,
    }
}

/// PRFs of a configured proposal (strongSwan derives them from INTEG when none is given).
fn prfs_of(p: &IkeProposal) -> Vec<PrfAlg> {
    if p.prf.is_empty() {
        p.integ.iter().map(|i| i.matching_prf()).collect()
    } else {
        p.prf.clone()
    }
}

fn esns_of(p: &EspProposal) -> Vec<bool> {
    if p.esn.is_empty() {
        vec![false]
    } else {
        p.esn.clone()
    }
}

/// Our IKE proposal as a wire proposal (AEAD: no INTEG transform, RFC 5282 8).
pub(crate) fn ike_to_wire(num: u8, p: &IkeProposal) -> Proposal {
    let mut tr: Vec<WTransform> = p.encr.iter().map(|e| encr_t(*e)).collect();
    tr.extend(prfs_of(p).iter().map(|x| t(tt::PRF, x.transform_id())));
    if !p.encr.iter().all(|e| e.is_aead()) {
        tr.extend(p.integ.iter().map(|x| t(tt::INTEG, x.transform_id())));
    }
    tr.extend(p.dh.iter().map(|x| t(tt::DH, x.transform_id())));
    Proposal {
        num,
        protocol: protocol_id::IKE,
        spi: Vec::new(),
        transforms: tr,
    }
}

/// Our IKE proposals for an IKE SA rekey (RFC 7296 1.3.2): with our new 8-byte SPI, the group of
/// `group` (the KE we send) first so the responder prefers it.
pub(crate) fn ike_rekey_to_wire(
    ours: &[IkeProposal],
    spi: IkeSpi,
    group: DhGroup,
) -> Vec<Proposal> {
    ours.iter()
        .enumerate()
        .map(|(i, p)| {
            let mut p = p.clone();
            if let Some(k) = p.dh.iter().position(|g| *g == group) {
                p.dh.swap(0, k);
            }
            let mut w = ike_to_wire(u8::try_from(i + 1).unwrap_or(u8::MAX), &p);
            w.spi = spi.to_be_bytes().to_vec();
            w
        })
        .collect()
}
/// Our ESP proposal as a wire proposal with our inbound SPI. DH transforms are only included
/// when `with_dh` (never in IKE_AUTH, RFC 7296 1.2).
pub(crate) fn esp_to_wire(num: u8, p: &EspProposal, spi: EspSpi, with_dh: bool) -> Proposal {
    let mut tr: Vec<WTransform> = p.encr.iter().map(|e| encr_t(*e)).collect();
    if !p.encr.iter().all(|e| e.is_aead()) {
        tr.extend(p.integ.iter().map(|x| t(tt::INTEG, x.transform_id())));
    }
    if with_dh {
        tr.extend(p.dh.iter().map(|x| t(tt::DH, x.transform_id())));
    }
    tr.extend(esns_of(p).iter().map(|e| t(tt::ESN, u16::from(*e))));
    Proposal {
        num,
        protocol: protocol_id::ESP,
        spi: spi.to_be_bytes().to_vec(),
        transforms: tr,
    }
}

/// The selected IKE suite as the single-transform proposal of a response.
pub(crate) fn ike_suite_to_wire(num: u8, s: &IkeSuite) -> Proposal {
    let mut tr = vec![encr_t(s.encr), t(tt::PRF, s.prf.transform_id())];
    if let Some(i) = s.integ {
        tr.push(t(tt::INTEG, i.transform_id()));
    }
    tr.push(t(tt::DH, s.dh.transform_id()));
    Proposal {
        num,
        protocol: protocol_id::IKE,
        spi: Vec::new(),
        transforms: tr,
    }
}

/// The selected ESP suite as the proposal of a response, with our inbound SPI.
pub(crate) fn esp_suite_to_wire(num: u8, s: &EspSuite, spi: EspSpi) -> Proposal {
    let mut tr = vec![encr_t(s.encr)];
    if let Some(i) = s.integ {
        tr.push(t(tt::INTEG, i.transform_id()));
    }
    if let Some(g) = s.dh {
        tr.push(t(tt::DH, g.transform_id()));
    }
    tr.push(t(tt::ESN, u16::from(s.esn)));
    Proposal {
        num,
        protocol: protocol_id::ESP,
        spi: spi.to_be_bytes().to_vec(),
        transforms: tr,
    }
}

/// The transforms of one peer proposal, decoded (unknown IDs are skipped).
#[derive(Default)]
struct Offer {
    encr: Vec<EncrAlg>,
    prf: Vec<PrfAlg>,
    integ: Vec<IntegAlg>,
    /// INTEG transforms other than NONE (known or not).
    integ_count: usize,
    dh: Vec<DhGroup>,
    /// DH transforms other than NONE.
    dh_count: usize,
    /// A DH transform NONE was offered.
    dh_none: bool,
    esn: Vec<bool>,
    /// Counts per type, to check that a response carries exactly one of each.
    counts: [usize; 6],
}

fn decode(p: &Proposal) -> Offer {
    let mut o = Offer::default();
    for x in &p.transforms {
        if let Some(c) = o.counts.get_mut(usize::from(x.ttype)) {
            *c += 1;
        }
        match x.ttype {
            tt::ENCR => o.encr.extend(EncrAlg::from_wire(x.id, x.key_len)),
            tt::PRF => o.prf.extend(PrfAlg::from_wire(x.id)),
            tt::INTEG if x.id != 0 => {
                o.integ_count += 1;
                o.integ.extend(IntegAlg::from_wire(x.id));
            }
            tt::DH if x.id != 0 => {
                o.dh_count += 1;
                o.dh.extend(DhGroup::from_wire(x.id));
            }
            tt::DH => o.dh_none = true,
            tt::ESN => match x.id {
                0 => o.esn.push(false),
                1 => o.esn.push(true),
                _ => {}
            },
            _ => {}
        }
    }
    o
}

fn first_common<T: PartialEq + Copy>(ours: &[T], theirs: &[T]) -> Option<T> {
    ours.iter().copied().find(|a| theirs.contains(a))
}

fn match_ike(ours: &IkeProposal, p: &Proposal) -> Option<IkeSuite> {
    if p.protocol != protocol_id::IKE {
        return None;
    }
    let o = decode(p);
    let encr = first_common(&ours.encr, &o.encr)?;
    let integ = if encr.is_aead() {
        if o.integ_count != 0 {
            return None;
        }
        None
    } else {
        Some(first_common(&ours.integ, &o.integ)?)
    };
    let prf = first_common(&prfs_of(ours), &o.prf)?;
    let dh = first_common(&ours.dh, &o.dh)?;
    Some(IkeSuite {
        encr,
        integ,
        prf,
        dh,
    })
}

/// `negotiate_dh`: CREATE_CHILD_SA, where a DH transform means PFS (RFC 7296 1.3.1); in IKE_AUTH
/// DH transforms are ignored.
fn match_esp(ours: &EspProposal, p: &Proposal, negotiate_dh: bool) -> Option<EspSuite> {
    if p.protocol != protocol_id::ESP || p.spi.len() != 4 {
        return None;
    }
    let o = decode(p);
    let encr = first_common(&ours.encr, &o.encr)?;
    let integ = if encr.is_aead() {
        if o.integ_count != 0 {
            return None;
        }
        None
    } else {
        Some(first_common(&ours.integ, &o.integ)?)
    };
    let dh = if !negotiate_dh {
        None
    } else if ours.dh.is_empty() {
        // No PFS configured: acceptable only if the peer allows NONE (or offers no group).
        if o.dh_count != 0 && !o.dh_none {
            return None;
        }
        None
    } else {
        Some(first_common(&ours.dh, &o.dh)?)
    };
    let theirs_esn = if o.esn.is_empty() { vec![false] } else { o.esn };
    let esn = first_common(&esns_of(ours), &theirs_esn)?;
    Some(EspSuite {
        encr,
        integ,
        esn,
        dh,
    })
}

/// Responder selection: the first of OUR proposals (configuration order) that some peer
/// proposal satisfies; within a proposal, our algorithm order wins. Like strongSwan's default
/// (`prefer_configured_proposals = yes`). Returns the peer's proposal number and the suite.
pub(crate) fn select_ike(ours: &[IkeProposal], theirs: &[Proposal]) -> Option<(u8, IkeSuite)> {
    ours.iter().find_map(|o| {
        theirs
            .iter()
            .find_map(|p| match_ike(o, p).map(|s| (p.num, s)))
    })
}

/// ESP counterpart of [`select_ike`]; also returns the peer's SPI.
pub(crate) fn select_esp(
    ours: &[EspProposal],
    theirs: &[Proposal],
    negotiate_dh: bool,
) -> Option<(u8, EspSuite, EspSpi)> {
    ours.iter().find_map(|o| {
        theirs.iter().find_map(|p| {
            let s = match_esp(o, p, negotiate_dh)?;
            let spi = EspSpi::from_be_bytes(p.spi.as_slice().try_into().ok()?);
            Some((p.num, s, spi))
        })
    })
}

/// Initiator check of the responder's choice: exactly one proposal with one transform of each
/// type, acceptable under our proposals (RFC 7296 2.7).
pub(crate) fn check_ike_response(ours: &[IkeProposal], resp: &[Proposal]) -> Option<IkeSuite> {
    let [p] = resp else { return None };
    let o = decode(p);
    if o.counts.iter().any(|c| *c > 1) {
        return None;
    }
    ours.iter().find_map(|x| match_ike(x, p))
}

/// ESP counterpart of [`check_ike_response`].
pub(crate) fn check_esp_response(
    ours: &[EspProposal],
    resp: &[Proposal],
    negotiate_dh: bool,
) -> Option<(EspSuite, EspSpi)> {
    let [p] = resp else { return None };
    let o = decode(p);
    if o.counts.iter().any(|c| *c > 1) {
        return None;
    }
    let spi = EspSpi::from_be_bytes(p.spi.as_slice().try_into().ok()?);
    ours.iter()
        .find_map(|x| match_esp(x, p, negotiate_dh))
        .map(|s| (s, spi))
}

/// Responder selection for an IKE SA rekey (RFC 7296 1.3.2): like [`select_ike`], but the
/// proposal must carry the initiator's new 8-byte SPI, which is returned too.
pub(crate) fn select_ike_rekey(
    ours: &[IkeProposal],
    theirs: &[Proposal],
) -> Option<(u8, IkeSuite, IkeSpi)> {
    ours.iter().find_map(|o| {
        theirs.iter().find_map(|p| {
            let spi = u64::from_be_bytes(p.spi.as_slice().try_into().ok()?);
            if spi == 0 {
                return None;
            }
            match_ike(o, p).map(|s| (p.num, s, IkeSpi(spi)))
        })
    })
}

/// Initiator check of an IKE SA rekey response; also returns the responder's new SPI.
pub(crate) fn check_ike_rekey_response(
    ours: &[IkeProposal],
    resp: &[Proposal],
) -> Option<(IkeSuite, IkeSpi)> {
    let s = check_ike_response(ours, resp)?;
    let spi = u64::from_be_bytes(resp.first()?.spi.as_slice().try_into().ok()?);
    (spi != 0).then_some((s, IkeSpi(spi)))
}

/// All groups named in our ESP proposals (PFS groups), in order.
pub(crate) fn esp_groups(ours: &[EspProposal]) -> Vec<DhGroup> {
    let mut v: Vec<DhGroup> = Vec::new();
    for g in ours.iter().flat_map(|p| p.dh.iter()) {
        if !v.contains(g) {
            v.push(*g);
        }
    }
    v
}

/// All groups named in our IKE proposals.
pub(crate) fn our_groups(ours: &[IkeProposal]) -> Vec<DhGroup> {
    let mut v: Vec<DhGroup> = Vec::new();
    for g in ours.iter().flat_map(|p| p.dh.iter()) {
        if !v.contains(g) {
            v.push(*g);
        }
    }
    v
}

/// Most traffic selectors one TS payload can carry: its Number of TSs field is one octet
/// (RFC 7296 3.13).
pub(crate) const MAX_TS: usize = u8::MAX as usize;

/// Narrowing (RFC 7296 2.9): the distinct intersections of the peer's selectors with ours, in
/// the peer's order, at most [`MAX_TS`]. The flag is true when more intersections existed.
///
/// Choice for an oversized result (issue 9): narrow to what fits rather than answer
/// TS_UNACCEPTABLE. The first [`MAX_TS`] intersections are a subset of both policies, which
/// 2.9 allows, so the CHILD_SA still comes up; the caller then adds
/// N(ADDITIONAL_TS_POSSIBLE) (3.10.1: "the responder has narrowed the proposed Traffic
/// Selectors but that other Traffic Selectors would also have been acceptable, though only in
/// a separate SA"). The peer's first selector (the triggering packet, 2.9) stays first.
///
//= https://www.rfc-editor.org/rfc/rfc7296#section-2.9
//# To enable the responder to choose the appropriate range in this case,
//# if the initiator has requested the SA due to a data packet, the
//# initiator SHOULD include as the first Traffic Selector in each of TSi
//# and TSr a very specific Traffic Selector including the addresses in
//# the packet triggering the request.
pub(crate) fn narrow(
    ours: &[TrafficSelector],
    theirs: &[TrafficSelector],
) -> (Vec<TrafficSelector>, bool) {
    let mut out: Vec<TrafficSelector> = Vec::new();
    for t in theirs {
        for o in ours {
            if let Some(x) = o.intersect(t) {
                if !out.contains(&x) {
                    if out.len() == MAX_TS {
                        return (out, true);
                    }
                    out.push(x);
                }
            }
        }
    }
    (out, false)
}

/// True if every selector of `resp` lies within one of `ours` (initiator check of narrowing).
pub(crate) fn within(ours: &[TrafficSelector], resp: &[TrafficSelector]) -> bool {
    !resp.is_empty() && resp.iter().all(|r| ours.iter().any(|o| o.contains(r)))
}
