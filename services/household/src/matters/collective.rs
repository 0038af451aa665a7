//! 企业集体户设立 (M12): three materials suffice — business licence, the legal
//! representative's ID card, the property certificate of the fixed premises; a Weihai
//! enterprise gets one collective household; `collective_household.established`.

use super::conflict_is_retry;
use crate::{domain, store::household};
use chrono::{DateTime, Utc};
use onething_platform::{
    cases::{ApplicantRecord, CaseRecord, CaseResult, MatterRules, Refusal, timestamp},
    catalog::form::FormCheck,
    error::{Error, Result},
    events::OutgoingEvent,
    ids::CreditCode,
    reason::Reason,
};
use onething_proto::{common::ApplicantKind, household as pb};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseTransaction, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
};

/// `household.collective_household`.
pub struct CollectiveHousehold;

fn credit_code(case: &CaseRecord) -> Result<CreditCode> {
    CreditCode::parse(&case.applicant.identifier)
        .map_err(|_| Error::internal(anyhow::anyhow!("stored credit code does not parse")))
}

#[onething_platform::async_trait]
impl MatterRules for CollectiveHousehold {
    fn code(&self) -> &'static str {
        "household.collective_household"
    }

    fn check_form(&self, f: &mut FormCheck<'_>, applicant: Option<&ApplicantRecord>, _now: DateTime<Utc>) {
        f.applicant_kind(applicant, ApplicantKind::Enterprise, "an enterprise");
    }

    async fn check_intake(&self, txn: &DatabaseTransaction, case: &CaseRecord) -> Result<Option<Refusal>> {
        let code = credit_code(case)?;
        if !code.region().starts_with(domain::LOCAL_PREFIX) {
            return Ok(Some(Refusal::new(
                Reason::HouseholdEnterpriseNotLocal,
                "the enterprise is not registered in Weihai",
            )));
        }
        let existing =
            household::Entity::find().filter(household::Column::CreditCode.eq(code.as_str())).count(txn).await?;
        Ok((existing > 0).then(|| {
            Refusal::new(Reason::HouseholdCollectiveExists, "the enterprise already has a collective household")
        }))
    }

    async fn on_approve(
        &self,
        txn: &DatabaseTransaction,
        events: &mut Vec<OutgoingEvent>,
        case: &CaseRecord,
        now: DateTime<Utc>,
    ) -> Result<CaseResult> {
        let code = credit_code(case)?;
        let number = next_household_number(txn, code.region()).await?;
        let inserted = household::Entity::insert(household::ActiveModel {
            household_number: Set(number.clone()),
            kind: Set(household::HouseholdKind::Collective),
            region_code: Set(code.region().to_string()),
            address: Set(case.field("premises_address").to_string()),
            credit_code: Set(code.as_str().to_string()),
            created_at: Set(now),
        })
        .exec_without_returning(txn)
        .await;
        conflict_is_retry(inserted)?;
        events.push(
            OutgoingEvent::new(
                "onething.household.v1.collective_household.established",
                format!("households/{number}"),
                &pb::CollectiveHouseholdEstablished {
                    household_number: number.clone(),
                    credit_code: code.as_str().to_string(),
                    case_id: case.id.clone(),
                    occur_time: Some(timestamp(now)),
                },
            )
            .of_new_subject(),
        );
        Ok(CaseResult::from([("household_number".into(), number)]))
    }
}

/// The next household number of `region`. Registrations in one region take numbers one
/// after the other (the unique index stays the guard against another database writer).
async fn next_household_number(txn: &DatabaseTransaction, region: &str) -> Result<String> {
    onething_platform::db::lock_named(txn, &format!("household_number:{region}")).await?;
    let last = household::Entity::find()
        // A range, not LIKE: PostgreSQL walks the primary key for it under any collation.
        .filter(household::Column::HouseholdNumber.between(format!("{region}000000"), format!("{region}999999")))
        .order_by_desc(household::Column::HouseholdNumber)
        .one(txn)
        .await?;
    let next = last.and_then(|h| h.household_number.get(6..).and_then(|s| s.parse::<u32>().ok())).map_or(1, |n| n + 1);
    Ok(format!("{region}{next:06}"))
}
