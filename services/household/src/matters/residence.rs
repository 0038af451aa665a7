//! 居住证 (M12, M23): a non-local resident who has lived here long enough gets a permit valid
//! for twelve months, after a clerk's review.

use crate::{domain, store::residence_permit};
use chrono::{DateTime, NaiveDate, Utc};
use onething_platform::{
    calendar::date_in_china,
    cases::{ApplicantRecord, CaseRecord, CaseResult, MatterRules, Refusal},
    catalog::{Matter, TimeUnit, form::FormCheck},
    error::Result,
    events::OutgoingEvent,
    ids::CitizenId,
    reason::Reason,
};
use onething_proto::common::ApplicantKind;
use sea_orm::{ActiveValue::Set, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter};

/// `household.residence_permit`, with M12's green channel for an applicant who names a
/// private employer on record.
pub struct ResidencePermit {
    /// Asks liaison about the employer.
    pub employment: super::green::Employment,
}

#[onething_platform::async_trait]
impl MatterRules for ResidencePermit {
    fn code(&self) -> &'static str {
        "household.residence_permit"
    }

    /// An applicant naming an employer asks for the green channel: admitted, or handled in
    /// the ordinary way with the reason noted in result `green_channel_refused` (the permit
    /// is what they apply for; the channel is its speed). UNAVAILABLE when the register
    /// cannot be asked.
    async fn verify(&self, case: &mut CaseRecord) -> Result<Option<Refusal>> {
        if case.field("employer_credit_code").is_empty() {
            return Ok(None);
        }
        // The register out of reach is an error to retry (nothing stored), not a refusal:
        // an outage of ours must not cost an entitled applicant the channel.
        // The permit's holder is its applicant: no other person's employment counts.
        let holder = case.applicant.identifier.clone();
        if let Some(refusal) = self.employment.admit(case, &holder).await? {
            case.result.insert(super::green::GREEN_CHANNEL_REFUSED.into(), refusal.reason_text);
        }
        Ok(None)
    }

    /// The green channel's committed time, when the catalog gives one.
    fn time_limit(&self, matter: &Matter, case: &CaseRecord) -> (TimeUnit, u32) {
        match matter.green_channel_time_limit {
            Some(limit) if super::green::in_green_channel(case) => (matter.time_unit, limit),
            _ => (matter.time_unit, matter.time_limit),
        }
    }

    fn check_form(&self, f: &mut FormCheck<'_>, applicant: Option<&ApplicantRecord>, now: DateTime<Utc>) {
        f.applicant_kind(applicant, ApplicantKind::Citizen, "a citizen");
        f.past_date("residence_since", date_in_china(now));
    }

    async fn check_intake(&self, _txn: &DatabaseTransaction, case: &CaseRecord) -> Result<Option<Refusal>> {
        let Ok(id) = CitizenId::parse(&case.applicant.identifier) else { return Ok(None) };
        if domain::is_local(&id) {
            return Ok(Some(Refusal::new(
                Reason::HouseholdAlreadyLocal,
                "a resident registered in Weihai needs no residence permit",
            )));
        }
        let Ok(since) = NaiveDate::parse_from_str(case.field("residence_since"), "%Y-%m-%d") else { return Ok(None) };
        // Long enough on the day the application was received.
        Ok((!domain::resided_long_enough(since, date_in_china(case.created_at))).then(|| {
            Refusal::new(Reason::HouseholdResidenceTooShort, "a residence permit needs six months of residence")
        }))
    }

    async fn on_approve(
        &self,
        txn: &DatabaseTransaction,
        _events: &mut Vec<OutgoingEvent>,
        case: &CaseRecord,
        now: DateTime<Utc>,
    ) -> Result<CaseResult> {
        let number = case.document_number("JZZ");
        let valid_until = (date_in_china(now) + chrono::Months::new(12)).format("%Y-%m-%d").to_string();
        residence_permit::Entity::insert(residence_permit::ActiveModel {
            permit_number: Set(number.clone()),
            id_number: Set(case.applicant.identifier.clone()),
            address: Set(case.field("residence_address").to_string()),
            valid_until: Set(valid_until.clone()),
            case_id: Set(case.id.clone()),
            created_at: Set(now),
        })
        .exec_without_returning(txn)
        .await?;
        let mut result = case.result.clone();
        result.insert("residence_permit_number".into(), number);
        result.insert("valid_until".into(), valid_until);
        Ok(result)
    }

    /// The approval revoked: the permit it issued is no longer on the register.
    async fn on_revoke(
        &self,
        txn: &DatabaseTransaction,
        _events: &mut Vec<OutgoingEvent>,
        case: &CaseRecord,
        _now: DateTime<Utc>,
    ) -> Result<()> {
        residence_permit::Entity::delete_many()
            .filter(residence_permit::Column::CaseId.eq(case.id.clone()))
            .exec(txn)
            .await?;
        Ok(())
    }
}
