//! Household's matters, one plug-in each ([`MatterRules`]), registered in [`department`]:
//! birth registration, registry certificates and confirmations, the residence permit, the
//! deregistration on death, the enterprise's collective household and the expedited ID card.
//! Lookups in the registry that several matters share live here.

mod birth;
mod collective;
mod deregistration;
mod facts;
pub mod green;
mod residence;

use crate::store::{person, person::PersonStatus};
use onething_platform::{
    cases::{CaseRecord, Department, Refusal},
    db::is_unique_violation,
    error::{Error, Kind, Result},
    ids::CitizenId,
    reason::Reason,
};
use sea_orm::{DatabaseTransaction, EntityTrait};

/// Department name and event namespace.
pub const DEPARTMENT: &str = "household";

/// Household and the rules of each of its matters; `employment` asks liaison for the green
/// channels (M12).
pub fn department(employment: green::Employment) -> Department {
    Department::new(DEPARTMENT)
        .with(birth::BirthRegistration)
        .with(facts::Certificate)
        .with(facts::InfoConfirmation)
        .with(residence::ResidencePermit { employment: employment.clone() })
        .with(deregistration::Deregistration)
        .with(collective::CollectiveHousehold)
        .with(facts::IdCardExpedited { employment })
}

/// The subject of a registry request (`subject_id_number`), when the applicant may have
/// its facts: a citizen asking about themself or a member of their household (a parent
/// confirming a child's registration for school). Anyone else gets one refusal, whether
/// the subject exists or not, so the answer tells a stranger nothing about the registry.
async fn subject_for(
    txn: &DatabaseTransaction,
    case: &CaseRecord,
) -> Result<std::result::Result<person::Model, Refusal>> {
    let not_theirs = || {
        Refusal::new(
            Reason::HouseholdNotSameHousehold,
            "registry facts are given to the person or a member of their household",
        )
    };
    if case.applicant.kind != onething_proto::common::ApplicantKind::Citizen {
        return Ok(Err(not_theirs()));
    }
    let subject = find_person(txn, case.field("subject_id_number")).await?;
    let applicant = find_person(txn, &case.applicant.identifier).await?;
    Ok(match (applicant, subject) {
        (_, Some(s)) if s.id_number == case.applicant.identifier => Ok(s),
        (Some(a), Some(s)) if a.status == PersonStatus::Active && a.household_number == s.household_number => Ok(s),
        _ if CitizenId::parse(case.field("subject_id_number"))
            .is_ok_and(|id| id.expose() == case.applicant.identifier) =>
        {
            Err(not_in_registry())
        }
        _ => Err(not_theirs()),
    })
}

fn deceased() -> Refusal {
    Refusal::new(Reason::HouseholdPersonDeceased, "the person's registration was cancelled")
}

fn not_in_registry() -> Refusal {
    Refusal::new(Reason::HouseholdPersonNotFound, "the person is not in the household registry")
}

/// The living person with `id_number`, or the refusal that says why not.
async fn living(txn: &DatabaseTransaction, id_number: &str) -> Result<std::result::Result<person::Model, Refusal>> {
    Ok(match find_person(txn, id_number).await? {
        None => Err(not_in_registry()),
        Some(p) if p.status != PersonStatus::Active => Err(deceased()),
        Some(p) => Ok(p),
    })
}

async fn find_person(txn: &DatabaseTransaction, id_number: &str) -> Result<Option<person::Model>> {
    let Ok(id) = CitizenId::parse(id_number) else {
        return Ok(None);
    };
    Ok(person::Entity::find_by_id(id.expose().to_string()).one(txn).await?)
}

/// A registry fact changed between intake and approval.
fn refused(r: Refusal) -> Error {
    Error::failed_precondition(r.reason_code, r.reason_text)
}

/// A number (ID number, household number) another writer took meanwhile: the case service
/// retries the whole intake.
fn conflict_is_retry(r: std::result::Result<impl Sized, sea_orm::DbErr>) -> Result<()> {
    match r {
        Ok(_) => Ok(()),
        Err(e) if is_unique_violation(&e) => Err(Error::new(
            Kind::Aborted,
            Reason::HouseholdConcurrentAssignment,
            "a concurrent registration took the same number; retry",
        )),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests;
