//! Weighing evidence (M24), the same wherever an application comes in: a department's intake
//! (CreateCase, a supplement) and the coordinator's SubmitBundle for each step, so a bundle
//! is refused at the door for what its step would be refused for. Each material the catalog
//! names as e-licence evidence is verified against the trust list and matched with the
//! application.

use crate::{
    cases::{Form, MaterialRecord, Refusal},
    catalog::{Matter, evidence::EvidenceMode},
    elicence::{Evidence, Trust, Unverified},
    error::{Error, Result},
    reason::Reason,
};
use chrono::{DateTime, Utc};

/// What `materials` prove for `matter`'s application (`form`, `applicant`'s identifier) at
/// `now`: one [`Evidence`] per material the catalog names. A material whose e-licence does
/// not parse is left out: [`MaterialRecord::validate_with`] reports it as malformed.
///
/// # Errors
/// FAILED_PRECONDITION `CASE_ELICENCE_MISMATCH` when a verified e-licence is about something
/// else than the application, naming the material and the fields that differ (never values).
pub fn weigh(
    trust: &Trust,
    matter: &Matter,
    materials: &[MaterialRecord],
    form: &Form,
    applicant: &str,
    now: DateTime<Utc>,
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
        let Ok((licence, why)) = trust.verify(&m.elicence, now) else { continue };
        // Its issuer signed it: whatever else is wrong with it (expired, revoked), a licence
        // about someone else is refused as that.
        if why.is_none_or(Unverified::signature_holds) {
            let wrong = rule.mismatches(&licence, form, applicant);
            if !wrong.is_empty() {
                return Err(Error::failed_precondition(
                    Reason::CaseElicenceMismatch,
                    format!("materials[{i}] ({}): the e-licence does not match {}", m.code, wrong.join(", ")),
                ));
            }
            // The kind it is, of the kinds the rule takes.
            evidence.kind.clone_from(&licence.kind);
        }
        if why.is_none() {
            evidence.issuer = licence.iss;
        }
        evidence.unverified = why;
        found.push(evidence);
    }
    Ok(found)
}

/// The refusal of an application whose catalog requires a verified e-licence it lacks.
pub fn required_unverified(matter: &Matter, evidence: &[Evidence]) -> Option<Refusal> {
    let required =
        |e: &&Evidence| matter.evidence.get(&e.material).is_some_and(|r| r.elicence == EvidenceMode::Required);
    unverified(evidence.iter().filter(required))
        .map(|what| Refusal::new(Reason::CaseElicenceNotVerified, format!("a verified e-licence is required: {what}")))
}

/// Each of `evidence` that did not verify, with why, on one line; none when all did.
pub(crate) fn unverified<'a>(evidence: impl Iterator<Item = &'a Evidence>) -> Option<String> {
    let lines: Vec<String> = evidence.filter(|e| !e.verified()).map(Evidence::for_clerk).collect();
    (!lines.is_empty()).then(|| lines.join("; "))
}
