//! IMPLEMENTATION: fs-crypto owner fills in (see DESIGN.md), with unit tests.
use crate::proposal::{EspProposal, IkeProposal, ProposalError};

pub(crate) fn parse_ike(_s: &str) -> Result<IkeProposal, ProposalError> {
    todo!("fs-crypto: parse IKE proposal")
}

pub(crate) fn parse_esp(_s: &str) -> Result<EspProposal, ProposalError> {
    todo!("fs-crypto: parse ESP proposal")
}
