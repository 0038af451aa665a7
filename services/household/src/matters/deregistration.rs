//! 户口注销 on death (M23): the person is marked deceased and `person.deceased` tells every
//! department that acts on a death (vehicle, exit-entry, 社保, 民政).

use super::{deceased, find_person, living, not_in_registry, refused, subject_for};
use crate::store::{kin, person, person::PersonStatus};
use chrono::{DateTime, Utc};
use onething_platform::{
    calendar::date_in_china,
    cases::{ApplicantRecord, CaseRecord, CaseResult, MatterRules, Refusal, timestamp},
    catalog::form::FormCheck,
    error::Result,
    events::OutgoingEvent,
    reason::Reason,
};
use onething_proto::household as pb;
use sea_orm::{ActiveValue::Set, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter};

/// `household.deregistration`.
pub struct Deregistration;

#[onething_platform::async_trait]
impl MatterRules for Deregistration {
    fn code(&self) -> &'static str {
        "household.deregistration"
    }

    fn check_form(&self, f: &mut FormCheck<'_>, _applicant: Option<&ApplicantRecord>, now: DateTime<Utc>) {
        f.past_date("death_date", date_in_china(now));
    }

    async fn check_intake(&self, txn: &DatabaseTransaction, case: &CaseRecord) -> Result<Option<Refusal>> {
        Ok(match subject(txn, case).await? {
            Err(r) => Some(r),
            Ok(p) if p.status != PersonStatus::Active => Some(deceased()),
            Ok(p) if case.field("death_date") < p.birth_date.as_str() => {
                Some(Refusal::new(Reason::HouseholdDeathBeforeBirth, "the date of death is before the date of birth"))
            }
            Ok(_) => None,
        })
    }

    async fn on_approve(
        &self,
        txn: &DatabaseTransaction,
        events: &mut Vec<OutgoingEvent>,
        case: &CaseRecord,
        now: DateTime<Utc>,
    ) -> Result<CaseResult> {
        let p = living(txn, case.field("subject_id_number")).await?.map_err(refused)?;
        person::Entity::update_many()
            .set(person::ActiveModel {
                status: Set(PersonStatus::Deceased),
                death_date: Set(Some(case.field("death_date").to_string())),
                ..Default::default()
            })
            .filter(person::Column::IdNumber.eq(p.id_number.clone()))
            .filter(person::Column::Status.eq(PersonStatus::Active))
            .exec(txn)
            .await?;
        events.push(OutgoingEvent::new(
            "onething.household.v1.person.deceased",
            format!("persons/{}", p.id_number),
            &pb::PersonDeceased {
                id_number: p.id_number.clone(),
                death_date: case.field("death_date").to_string(),
                case_id: case.id.clone(),
                occur_time: Some(timestamp(now)),
                // The ground subscribers act on (a pension stopped): verified, and by whom.
                evidence: onething_platform::cases::evidence_of(case),
            },
        ));
        Ok(CaseResult::from([("deregistration_number".into(), case.document_number("HKZX"))]))
    }
}

/// The person a death is reported for, when the report may be taken: entered at a
/// household window (the clerk has seen the death certificate, or acts on a hospital's
/// notification), or sent by a living member of the person's household or a close relative
/// on record ([`kin`]). Anyone else — a stranger, an enterprise, a relative the registry does
/// not know — gets one refusal, whatever the registry holds: a death reported by anyone
/// would end a stranger's registration and, through the death fact, their passport and
/// driving licence.
async fn subject(txn: &DatabaseTransaction, case: &CaseRecord) -> Result<std::result::Result<person::Model, Refusal>> {
    let at_window = onething_platform::idempotency::sent_by_staff_of(&case.idempotency_key, super::DEPARTMENT);
    if at_window {
        return Ok(find_person(txn, case.field("subject_id_number")).await?.ok_or_else(not_in_registry));
    }
    let not_kin = || {
        Refusal::new(
            Reason::HouseholdNotRelative,
            "a death is reported by a member of the person's household or a close relative on record",
        )
    };
    Ok(match subject_for(txn, case).await? {
        // Nobody reports their own death.
        Ok(p) if p.id_number == case.applicant.identifier => Err(not_kin()),
        Err(r) if r.reason_code == Reason::HouseholdNotSameHousehold => {
            let subject = case.field("subject_id_number");
            // A living relative: a deceased person's account reports nothing.
            let living_applicant =
                find_person(txn, &case.applicant.identifier).await?.is_some_and(|a| a.status == PersonStatus::Active);
            let relative = case.applicant.kind == onething_proto::common::ApplicantKind::Citizen
                && living_applicant
                && kin::is_close_relative(txn, subject, &case.applicant.identifier).await?;
            match find_person(txn, subject).await? {
                Some(p) if relative => Ok(p),
                _ => Err(not_kin()),
            }
        }
        other => other,
    })
}
