//! The registry's facts given at once (即办, M23): a household certificate (户籍类证明), a
//! confirmation for school enrollment or retirement (户籍信息确认), and the expedited ID card
//! of the green channel (M12). Each only for the person or a member of their household.

use super::{deceased, living, refused, subject_for};
use crate::store::person::PersonStatus;
use chrono::{DateTime, Utc};
use onething_platform::{
    cases::{CaseRecord, CaseResult, MatterRules, Refusal},
    error::Result,
    events::OutgoingEvent,
    reason::Reason,
};
use sea_orm::DatabaseTransaction;

/// `household.certificate`.
pub struct Certificate;

#[onething_platform::async_trait]
impl MatterRules for Certificate {
    fn code(&self) -> &'static str {
        "household.certificate"
    }

    async fn check_intake(&self, txn: &DatabaseTransaction, case: &CaseRecord) -> Result<Option<Refusal>> {
        Ok(subject_for(txn, case).await?.err())
    }

    async fn on_approve(
        &self,
        _txn: &DatabaseTransaction,
        _events: &mut Vec<OutgoingEvent>,
        case: &CaseRecord,
        _now: DateTime<Utc>,
    ) -> Result<CaseResult> {
        Ok(CaseResult::from([("certificate_number".into(), case.document_number("HJZM"))]))
    }
}

/// The subject of a request about a living person's registration, or the refusal.
async fn living_subject(txn: &DatabaseTransaction, case: &CaseRecord) -> Result<Option<Refusal>> {
    Ok(match subject_for(txn, case).await? {
        Ok(subject) if subject.status != PersonStatus::Active => Some(deceased()),
        Ok(_) => None,
        Err(r) => Some(r),
    })
}

/// `household.info_confirmation`.
pub struct InfoConfirmation;

#[onething_platform::async_trait]
impl MatterRules for InfoConfirmation {
    fn code(&self) -> &'static str {
        "household.info_confirmation"
    }

    async fn check_intake(&self, txn: &DatabaseTransaction, case: &CaseRecord) -> Result<Option<Refusal>> {
        living_subject(txn, case).await
    }

    async fn on_approve(
        &self,
        txn: &DatabaseTransaction,
        _events: &mut Vec<OutgoingEvent>,
        case: &CaseRecord,
        _now: DateTime<Utc>,
    ) -> Result<CaseResult> {
        let p = living(txn, case.field("subject_id_number")).await?.map_err(refused)?;
        Ok(CaseResult::from([
            ("confirmation_number".into(), case.document_number("HJQR")),
            ("household_number".into(), p.household_number),
            ("purpose".into(), case.field("purpose").to_string()),
        ]))
    }
}

/// `household.id_card_expedited`: the green channel itself, so only for an employee of a
/// private enterprise on record.
pub struct IdCardExpedited {
    /// Asks liaison about the employer.
    pub employment: super::green::Employment,
}

#[onething_platform::async_trait]
impl MatterRules for IdCardExpedited {
    fn code(&self) -> &'static str {
        "household.id_card_expedited"
    }

    async fn verify(&self, case: &mut CaseRecord) -> Result<Option<Refusal>> {
        // The employee applies for their own card: asked for anyone else, the register is not
        // consulted at all (a relative learns nothing of where someone works).
        // Compared as ID numbers (a trailing x is an X), as `subject_for` compares them.
        let own = onething_platform::ids::CitizenId::parse(case.field("subject_id_number"))
            .is_ok_and(|id| id.expose() == case.applicant.identifier);
        if !own {
            return Ok(Some(Refusal::new(
                Reason::HouseholdNotGreenChannel,
                "the green channel is applied for by the employee, for their own card",
            )));
        }
        let employee = case.applicant.identifier.clone();
        self.employment.admit(case, &employee).await
    }

    async fn check_intake(&self, txn: &DatabaseTransaction, case: &CaseRecord) -> Result<Option<Refusal>> {
        living_subject(txn, case).await
    }

    async fn on_approve(
        &self,
        txn: &DatabaseTransaction,
        _events: &mut Vec<OutgoingEvent>,
        case: &CaseRecord,
        _now: DateTime<Utc>,
    ) -> Result<CaseResult> {
        living(txn, case.field("subject_id_number")).await?.map_err(refused)?;
        let mut result = case.result.clone();
        result.insert("id_card_application_number".into(), case.document_number("SFZJJ"));
        Ok(result)
    }
}
