//! 因公出国(境)证件加急 (M15): staff of an enterprise travelling for a meeting, negotiation,
//! contract or Belt and Road project get their document within 2 working days, the same
//! working day when extremely urgent.

use crate::store::entities::{staff, travel_document};
use chrono::{DateTime, Months, Utc};
use onething_platform::{
    calendar::date_in_china,
    cases::{ApplicantRecord, CaseRecord, CaseResult, MatterRules, Refusal},
    catalog::{Matter, TimeUnit, form::FormCheck},
    error::Result,
    events::OutgoingEvent,
    reason::Reason,
    store::case::Standing,
};
use onething_proto::common::ApplicantKind;
use sea_orm::{ActiveValue::Set, ColumnTrait, DatabaseTransaction, EntityTrait, PaginatorTrait, QueryFilter};

/// `exit_entry.business_travel_expedited`.
pub struct BusinessTravelExpedited;

#[onething_platform::async_trait]
impl MatterRules for BusinessTravelExpedited {
    fn code(&self) -> &'static str {
        "exit_entry.business_travel_expedited"
    }

    /// A citizen applies, departing today or later, with a reason when extremely urgent.
    fn check_form(&self, f: &mut FormCheck<'_>, applicant: Option<&ApplicantRecord>, now: DateTime<Utc>) {
        f.applicant_kind(applicant, ApplicantKind::Citizen, "a citizen");
        f.not_past("departure_date", date_in_china(now));
        let urgent = f.flag("extremely_urgent");
        f.required_if("urgency_reason", urgent, "when extremely urgent");
    }

    /// M15's same working day when extremely urgent.
    fn time_limit(&self, matter: &Matter, case: &CaseRecord) -> (TimeUnit, u32) {
        if case.field("extremely_urgent") == "true" {
            (TimeUnit::WorkingDays, 0)
        } else {
            (matter.time_unit, matter.time_limit)
        }
    }

    async fn check_intake(&self, txn: &DatabaseTransaction, case: &CaseRecord) -> Result<Option<Refusal>> {
        let employed = staff::Entity::find()
            .filter(staff::Column::CreditCode.eq(case.field("employer_credit_code").to_ascii_uppercase()))
            .filter(staff::Column::IdNumber.eq(case.applicant.identifier.clone()))
            .count(txn)
            .await?;
        Ok((employed == 0).then(|| {
            Refusal::new(
                Reason::ExitEntryNotEmployedByEnterprise,
                "the applicant is not on record as staff of the enterprise",
            )
        }))
    }

    /// An expedited travel document (passport, 港澳通行证 or other).
    async fn on_approve(
        &self,
        txn: &DatabaseTransaction,
        _events: &mut Vec<OutgoingEvent>,
        case: &CaseRecord,
        now: DateTime<Utc>,
    ) -> Result<CaseResult> {
        let today = date_in_china(now);
        let kind = case.field("document_kind");
        let (prefix, years) = match kind {
            "passport" => ("E", 10),
            "hk_macao_permit" => ("C", 10),
            _ => ("L", 5),
        };
        let number = case.document_number(prefix);
        let until = today.checked_add_months(Months::new(12 * years)).unwrap_or(today).to_string();
        travel_document::Entity::insert(travel_document::ActiveModel {
            document_number: Set(number.clone()),
            id_number: Set(case.applicant.identifier.clone()),
            kind: Set(kind.into()),
            valid_until: Set(until.clone()),
            status: Set(Standing::Active),
        })
        .exec_without_returning(txn)
        .await?;
        let mut result = case.result.clone();
        result.insert("document_number".into(), number);
        result.insert("document_kind".into(), kind.into());
        result.insert("valid_until".into(), until);
        Ok(result)
    }
}
