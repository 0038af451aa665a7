//! Household as a [`Department`]: intake conditions against the registry and the effect of
//! each matter's approval (a new person and ID number, a deceased mark, a collective
//! household, a residence permit, certificates), with the domain events others act on.

use crate::{
    domain,
    store::{household, person, person::PersonStatus, residence_permit},
};
use chrono::{DateTime, NaiveDate, Utc};
use onething_platform::reason::Reason;
use onething_platform::{
    cases::{ApplicantRecord, CaseRecord, CaseResult, Department, Form, Refusal},
    catalog::Matter,
    db::is_unique_violation,
    error::{Error, FieldViolation, Kind, Result},
    events::OutgoingEvent,
    ids::{CitizenId, CreditCode},
};
use onething_proto::household as pb;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseTransaction, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
};

/// Department name and event namespace.
pub const DEPARTMENT: &str = "household";

/// The household department's rules.
#[derive(Debug, Clone, Default)]
pub struct Household;

impl Department for Household {
    fn matters(&self) -> &'static [&'static str] {
        &[
            "household.birth_registration",
            "household.certificate",
            "household.info_confirmation",
            "household.residence_permit",
            "household.deregistration",
            "household.collective_household",
            "household.id_card_expedited",
        ]
    }

    fn name(&self) -> &'static str {
        DEPARTMENT
    }

    fn validate(&self, matter: &Matter, applicant: Option<&ApplicantRecord>, form: &Form) -> Vec<FieldViolation> {
        domain::validate(matter, applicant, form)
    }

    async fn check_intake(&self, txn: &DatabaseTransaction, case: &CaseRecord) -> Result<Option<Refusal>> {
        let refusal = match case.matter_code.as_str() {
            "household.birth_registration" => {
                let cert = case.field("birth_certificate_number");
                let registered =
                    person::Entity::find().filter(person::Column::BirthCertificateNumber.eq(cert)).count(txn).await?;
                if registered > 0 {
                    Some(Refusal::new(
                        Reason::HouseholdBirthAlreadyRegistered,
                        "this birth certificate was already registered",
                    ))
                } else {
                    living(txn, case.field("parent_id_number")).await?.err()
                }
            }
            "household.certificate" => subject_for(txn, case).await?.err(),
            "household.info_confirmation" | "household.id_card_expedited" => match subject_for(txn, case).await? {
                Ok(subject) if subject.status != PersonStatus::Active => Some(deceased()),
                Ok(_) => None,
                Err(r) => Some(r),
            },
            "household.deregistration" => match deregistration_subject(txn, case).await? {
                Err(r) => Some(r),
                Ok(p) if p.status != PersonStatus::Active => Some(deceased()),
                Ok(p) if case.field("death_date") < p.birth_date.as_str() => Some(Refusal::new(
                    Reason::HouseholdDeathBeforeBirth,
                    "the date of death is before the date of birth",
                )),
                Ok(_) => None,
            },
            "household.residence_permit" => residence_refusal(case),
            "household.collective_household" => {
                let code = CreditCode::parse(&case.applicant.identifier)
                    .map_err(|_| Error::internal(anyhow::anyhow!("stored credit code does not parse")))?;
                if !code.region().starts_with(domain::LOCAL_PREFIX) {
                    Some(Refusal::new(
                        Reason::HouseholdEnterpriseNotLocal,
                        "the enterprise is not registered in Weihai",
                    ))
                } else {
                    let existing = household::Entity::find()
                        .filter(household::Column::CreditCode.eq(code.as_str()))
                        .count(txn)
                        .await?;
                    (existing > 0).then(|| {
                        Refusal::new(
                            Reason::HouseholdCollectiveExists,
                            "the enterprise already has a collective household",
                        )
                    })
                }
            }
            _ => None,
        };
        Ok(refusal)
    }

    async fn on_approve(
        &self,
        txn: &DatabaseTransaction,
        events: &mut Vec<OutgoingEvent>,
        case: &CaseRecord,
    ) -> Result<CaseResult> {
        let now = Utc::now();
        let mut result = CaseResult::new();
        match case.matter_code.as_str() {
            "household.birth_registration" => register_birth(txn, events, case, now, &mut result).await?,
            "household.certificate" => {
                result.insert("certificate_number".into(), case.document_number("HJZM"));
            }
            "household.info_confirmation" => {
                let p = living(txn, case.field("subject_id_number")).await?.map_err(refused)?;
                result.insert("confirmation_number".into(), case.document_number("HJQR"));
                result.insert("household_number".into(), p.household_number);
                result.insert("purpose".into(), case.field("purpose").to_string());
            }
            "household.residence_permit" => issue_residence_permit(txn, case, now, &mut result).await?,
            "household.deregistration" => deregister(txn, events, case, now, &mut result).await?,
            "household.collective_household" => {
                establish_collective_household(txn, events, case, now, &mut result).await?
            }
            "household.id_card_expedited" => {
                living(txn, case.field("subject_id_number")).await?.map_err(refused)?;
                result.insert("id_card_application_number".into(), case.document_number("SFZJJ"));
            }
            other => {
                return Err(Error::internal(anyhow::anyhow!("no approval effect for {other}")));
            }
        }
        Ok(result)
    }
}

/// A birth (出生登记): the child gets an ID number in the parent's household; `person.born`.
async fn register_birth(
    txn: &DatabaseTransaction,
    events: &mut Vec<OutgoingEvent>,
    case: &CaseRecord,
    now: DateTime<Utc>,
    result: &mut CaseResult,
) -> Result<()> {
    let parent = living(txn, case.field("parent_id_number")).await?.map_err(refused)?;
    let home = household::Entity::find_by_id(parent.household_number.clone())
        .one(txn)
        .await?
        .ok_or_else(|| Error::internal(anyhow::anyhow!("a person's household is missing")))?;
    let born = parse_date(case.field("birth_date"))?;
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
    events.push(
        OutgoingEvent::new(
            "onething.household.v1.person.born",
            format!("persons/{}", id.expose()),
            &pb::PersonBorn {
                id_number: id.expose().to_string(),
                birth_date: case.field("birth_date").to_string(),
                household_number: home.household_number.clone(),
                case_id: case.id.clone(),
                occur_time: Some(onething_platform::cases::timestamp(now)),
            },
        )
        .of_new_subject(),
    );
    tracing::info!(case_id = %case.id, new_id = %id, "birth registered");
    result.insert("new_id_number".into(), id.expose().to_string());
    result.insert("household_number".into(), home.household_number);
    Ok(())
}

/// A residence permit (居住证), valid for twelve months.
async fn issue_residence_permit(
    txn: &DatabaseTransaction,
    case: &CaseRecord,
    now: DateTime<Utc>,
    result: &mut CaseResult,
) -> Result<()> {
    let number = case.document_number("JZZ");
    let valid_until = (now.date_naive() + chrono::Months::new(12)).format("%Y-%m-%d").to_string();
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
    result.insert("residence_permit_number".into(), number);
    result.insert("valid_until".into(), valid_until);
    Ok(())
}

/// A deregistration on death (死亡注销): the person marked deceased; `person.deceased`.
async fn deregister(
    txn: &DatabaseTransaction,
    events: &mut Vec<OutgoingEvent>,
    case: &CaseRecord,
    now: DateTime<Utc>,
    result: &mut CaseResult,
) -> Result<()> {
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
            occur_time: Some(onething_platform::cases::timestamp(now)),
        },
    ));
    result.insert("deregistration_number".into(), case.document_number("HKZX"));
    Ok(())
}

/// An enterprise's collective household (集体户): a new household number;
/// `collective_household.established`.
async fn establish_collective_household(
    txn: &DatabaseTransaction,
    events: &mut Vec<OutgoingEvent>,
    case: &CaseRecord,
    now: DateTime<Utc>,
    result: &mut CaseResult,
) -> Result<()> {
    let code = CreditCode::parse(&case.applicant.identifier)
        .map_err(|_| Error::internal(anyhow::anyhow!("stored credit code does not parse")))?;
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
                occur_time: Some(onething_platform::cases::timestamp(now)),
            },
        )
        .of_new_subject(),
    );
    result.insert("household_number".into(), number);
    Ok(())
}

/// The person a death is reported for, when the report may be taken: entered at a
/// household window (the clerk has seen the death certificate), or sent by a living member
/// of the person's household. Anyone else — a stranger, an enterprise, a relative in
/// another household applying online — gets one refusal, whatever the registry holds: a
/// death reported by anyone would end a stranger's registration and, through the death
/// fact, their passport and driving licence.
async fn deregistration_subject(
    txn: &DatabaseTransaction,
    case: &CaseRecord,
) -> Result<std::result::Result<person::Model, Refusal>> {
    let at_window = onething_platform::idempotency::sent_by_staff_of(&case.idempotency_key, DEPARTMENT);
    if !at_window {
        return subject_for(txn, case).await;
    }
    Ok(find_person(txn, case.field("subject_id_number")).await?.ok_or_else(not_in_registry))
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

fn residence_refusal(case: &CaseRecord) -> Option<Refusal> {
    let id = CitizenId::parse(&case.applicant.identifier).ok()?;
    if domain::is_local(&id) {
        return Some(Refusal::new(
            Reason::HouseholdAlreadyLocal,
            "a resident registered in Weihai needs no residence permit",
        ));
    }
    let since = NaiveDate::parse_from_str(case.field("residence_since"), "%Y-%m-%d").ok()?;
    (!domain::resided_long_enough(since, Utc::now().date_naive()))
        .then(|| Refusal::new(Reason::HouseholdResidenceTooShort, "a residence permit needs six months of residence"))
}

fn parse_date(s: &str) -> Result<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| Error::internal(anyhow::anyhow!("stored date does not parse")))
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

async fn next_household_number(txn: &DatabaseTransaction, region: &str) -> Result<String> {
    // Registrations in one region take numbers one after the other (the unique index stays
    // the guard against another database writer).
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
