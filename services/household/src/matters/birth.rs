//! 出生登记 (M23): a parent registers the child, who gets a new ID number in the parent's
//! household; `person.born` tells 医保, 社保 and 教育.

use super::{conflict_is_retry, living, refused};
use crate::{
    domain,
    store::{household, kin, person, person::PersonStatus},
};
use chrono::{DateTime, NaiveDate, Utc};
use onething_platform::{
    cases::{ApplicantRecord, CaseRecord, CaseResult, MatterRules, Refusal, timestamp},
    catalog::form::FormCheck,
    error::{Error, Result},
    events::OutgoingEvent,
    ids::CitizenId,
    reason::Reason,
};
use onething_proto::{common::ApplicantKind, household as pb};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseTransaction, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
};

/// `household.birth_registration`.
pub struct BirthRegistration;

#[onething_platform::async_trait]
impl MatterRules for BirthRegistration {
    fn code(&self) -> &'static str {
        "household.birth_registration"
    }

    fn check_form(&self, f: &mut FormCheck<'_>, applicant: Option<&ApplicantRecord>, now: DateTime<Utc>) {
        f.past_date("birth_date", onething_platform::calendar::date_in_china(now));
        f.applicant_kind(applicant, ApplicantKind::Citizen, "a citizen");
        // A parent registers the child: naming someone else would add a child to a
        // stranger's household.
        let parent = f.value("parent_id_number").and_then(|p| CitizenId::parse(p).ok());
        if let (Some(a), Some(parent)) = (applicant, parent)
            && a.kind == ApplicantKind::Citizen
            && parent.expose() != a.identifier
        {
            f.refuse("parent_id_number", "must be the applicant: a parent registers the child");
        }
    }

    async fn check_intake(&self, txn: &DatabaseTransaction, case: &CaseRecord) -> Result<Option<Refusal>> {
        let cert = case.field("birth_certificate_number");
        let registered =
            person::Entity::find().filter(person::Column::BirthCertificateNumber.eq(cert)).count(txn).await?;
        if registered > 0 {
            return Ok(Some(Refusal::new(
                Reason::HouseholdBirthAlreadyRegistered,
                "this birth certificate was already registered",
            )));
        }
        Ok(living(txn, case.field("parent_id_number")).await?.err())
    }

    async fn on_approve(
        &self,
        txn: &DatabaseTransaction,
        events: &mut Vec<OutgoingEvent>,
        case: &CaseRecord,
        now: DateTime<Utc>,
    ) -> Result<CaseResult> {
        let parent = living(txn, case.field("parent_id_number")).await?.map_err(refused)?;
        let home = household::Entity::find_by_id(parent.household_number.clone())
            .one(txn)
            .await?
            .ok_or_else(|| Error::internal(anyhow::anyhow!("a person's household is missing")))?;
        let born = NaiveDate::parse_from_str(case.field("birth_date"), "%Y-%m-%d")
            .map_err(|_| Error::internal(anyhow::anyhow!("stored date does not parse")))?;
        let id = assign_id(txn, &home.region_code, born, case.field("child_sex")).await?;
        let inserted = person::Entity::insert(person::ActiveModel {
            id_number: Set(id.expose().to_string()),
            name: Set(case.field("child_name").to_string()),
            birth_date: Set(case.field("birth_date").to_string()),
            sex: Set(case.field("child_sex").to_string()),
            household_number: Set(home.household_number.clone()),
            status: Set(PersonStatus::Active),
            death_date: Set(None),
            birth_certificate_number: Set(Some(case.field("birth_certificate_number").to_string())),
            created_at: Set(now),
        })
        .exec_without_returning(txn)
        .await;
        conflict_is_retry(inserted)?;
        // The parent who registered the child is on record as such (the child's close
        // relative, who may one day report a death in the family).
        kin::Entity::insert_many(kin::both_ways(id.expose(), &parent.id_number, kin::Kinship::Parent, &case.id, now))
            .exec_without_returning(txn)
            .await?;
        events.push(
            OutgoingEvent::new(
                "onething.household.v1.person.born",
                format!("persons/{}", id.expose()),
                &pb::PersonBorn {
                    id_number: id.expose().to_string(),
                    birth_date: case.field("birth_date").to_string(),
                    household_number: home.household_number.clone(),
                    case_id: case.id.clone(),
                    occur_time: Some(timestamp(now)),
                },
            )
            .of_new_subject(),
        );
        tracing::info!(case_id = %case.id, new_id = %id, "birth registered");
        let mut result = CaseResult::new();
        result.insert("new_id_number".into(), id.expose().to_string());
        result.insert("household_number".into(), home.household_number);
        Ok(result)
    }
}

/// A new ID number in `region` for a child born on `born`: the next free sequence code of
/// the right parity. Births of one region and date take codes one after the other; should
/// another writer still take the same one, the unique index refuses and the loser retries.
async fn assign_id(txn: &DatabaseTransaction, region: &str, born: NaiveDate, sex: &str) -> Result<CitizenId> {
    let prefix = format!("{region}{}", born.format("%Y%m%d"));
    onething_platform::db::lock_named(txn, &format!("id_number:{prefix}")).await?;
    let highest = person::Entity::find()
        // A range, not LIKE: PostgreSQL walks the primary key for it under any collation.
        .filter(person::Column::IdNumber.between(format!("{prefix}000"), format!("{prefix}999X")))
        .order_by_desc(person::Column::IdNumber)
        .one(txn)
        .await?
        .and_then(|p| CitizenId::parse(&p.id_number).ok())
        .map(|id| id.sequence());
    let seq = domain::next_sequence(highest, sex).ok_or_else(|| {
        Error::failed_precondition(
            Reason::HouseholdIdSequenceExhausted,
            "no sequence code left for this region and date",
        )
    })?;
    CitizenId::assign(region, born, seq).map_err(|e| Error::internal(anyhow::anyhow!("assigning an ID number: {e}")))
}
