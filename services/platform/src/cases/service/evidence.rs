//! Evidence at intake (M24): each material the catalog names as e-licence evidence is
//! verified against the trust list and matched with the application. Not an e-licence at
//! all: the request is malformed. Verified but about something else: FAILED_PRECONDITION,
//! nothing stored. Otherwise what was found is kept on the case: a case with unverified
//! evidence is decided by a clerk, and one a catalog requires verified is not accepted.

use super::*;
use crate::catalog::evidence::EvidenceMode;
use crate::elicence::{Evidence, Unverified};

impl CaseApi {
    /// What `materials` prove for `matter`'s application (`form`, `applicant`'s identifier)
    /// at `now`, one [`Evidence`] per material the catalog names; malformed e-licences are
    /// added to `violations` as `materials[i].elicence`.
    ///
    /// # Errors
    /// FAILED_PRECONDITION `CASE_ELICENCE_MISMATCH` when a verified e-licence is about something
    /// else than the application, naming the fields that differ.
    pub(super) fn weigh_evidence(
        &self,
        matter: &Matter,
        materials: &[crate::cases::MaterialRecord],
        form: &crate::cases::Form,
        applicant: &str,
        now: DateTime<Utc>,
        violations: &mut Vec<crate::error::FieldViolation>,
    ) -> Result<Vec<Evidence>> {
        let mut found = Vec::new();
        for (i, m) in materials.iter().enumerate() {
            let Some(rule) = matter.evidence.get(&m.code) else { continue };
            let mut evidence =
                Evidence { material: m.code.clone(), kind: rule.kind.clone(), issuer: String::new(), unverified: None };
            if m.elicence.is_empty() {
                evidence.unverified = Some(Unverified::NotAnElicence);
                found.push(evidence);
                continue;
            }
            let (licence, why) = match self.inner.trust.verify(&m.elicence, now) {
                Ok(v) => v,
                Err(e) => {
                    violations.push(violation(&format!("materials[{i}].elicence"), &format!("{e}")));
                    continue;
                }
            };
            if why.is_none() {
                let wrong = rule.mismatches(&licence, form, applicant);
                if !wrong.is_empty() {
                    return Err(Error::failed_precondition(
                        Reason::CaseElicenceMismatch,
                        format!("materials[{i}] ({}): the e-licence does not match {}", m.code, wrong.join(", ")),
                    ));
                }
                evidence.issuer = licence.iss;
            }
            evidence.unverified = why;
            found.push(evidence);
        }
        Ok(found)
    }

    /// The refusal of a case whose catalog requires a verified e-licence it lacks.
    pub(super) fn required_unverified(matter: &Matter, evidence: &[Evidence]) -> Option<Refusal> {
        let required =
            |e: &&Evidence| matter.evidence.get(&e.material).is_some_and(|r| r.elicence == EvidenceMode::Required);
        unverified(evidence.iter().filter(required)).map(|what| {
            Refusal::new(Reason::CaseElicenceNotVerified, format!("a verified e-licence is required: {what}"))
        })
    }

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

/// Each of `evidence` that did not verify, with why, on one line; none when all did.
fn unverified<'a>(evidence: impl Iterator<Item = &'a Evidence>) -> Option<String> {
    let lines: Vec<String> = evidence.filter(|e| !e.verified()).map(Evidence::for_clerk).collect();
    (!lines.is_empty()).then(|| lines.join("; "))
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
