//! Evidence on a case (M24), as [`crate::cases::evidence`] weighed it at intake: a case with
//! evidence that did not verify is decided by a clerk, told what could not be verified; the
//! events say what was verified and by whom, never the document.

use super::*;
use crate::cases::evidence::unverified;
use crate::elicence::Evidence;

impl CaseApi {
    /// Whether an accepted case of an automatic matter may be decided without a clerk now:
    /// all its evidence verified, and its matter's fact there ([`MatterRules::ready`]).
    ///
    /// # Errors
    /// A database failure.
    pub(super) async fn decides_itself(&self, txn: &DatabaseTransaction, case: &CaseRecord) -> Result<bool> {
        Ok(case.evidence.iter().all(Evidence::verified) && self.rules(&case.matter_code)?.ready(txn, case).await?)
    }
}

/// What a clerk is told about a case's evidence that did not verify; none when all did.
pub(super) fn for_clerk(case: &CaseRecord) -> Option<String> {
    unverified(case.evidence.iter()).map(|what| format!("for a clerk, evidence not verified: {what}"))
}

/// The evidence as the events tell it: verified or not, and by which issuer; never the document.
pub fn evidence_of(case: &CaseRecord) -> Vec<pb::Evidence> {
    case.evidence
        .iter()
        .map(|e| pb::Evidence {
            material: e.material.clone(),
            kind: e.kind.clone(),
            verified: e.verified(),
            issuer: e.issuer.clone(),
            unverified_reason: e.unverified.map(|u| u.as_str().to_string()).unwrap_or_default(),
        })
        .collect()
}
