//! Exit-entry as a [`Department`]: the work-type residence permit decided on the permit
//! history (M13) with a service commissioner for high-level talent, expedited documents for
//! enterprise business trips (M15), and travel documents cancelled once household confirms
//! a death.

use crate::{
    domain::{self, Offence, Prior, Rule},
    store::entities::{commissioner, permit, staff, travel_document, violation},
};
use chrono::{DateTime, Local, Months, NaiveDate, Utc};
use onething_platform::reason::Reason;
use onething_platform::{
    cases::{ApplicantRecord, CaseRecord, CaseResult, Department, Form, Refusal, timestamp},
    catalog::{Matter, TimeUnit},
    error::{Error, FieldViolation, Result},
    events::OutgoingEvent,
    facts,
};
use onething_proto::exit_entry as pb;
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, DatabaseTransaction, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    sea_query::{Expr, ExprTrait},
};

/// Department name and event namespace.
pub const DEPARTMENT: &str = "exit_entry";

/// The exit-entry department's rules.
#[derive(Debug, Clone, Default)]
pub struct ExitEntry;

fn date(s: &str) -> Result<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| Error::internal(anyhow::anyhow!("stored date does not parse")))
}

impl Department for ExitEntry {
    fn matters(&self) -> &'static [&'static str] {
        &[
            "exit_entry.work_residence_permit",
            "exit_entry.business_travel_expedited",
            "exit_entry.document_cancellation",
        ]
    }

    fn name(&self) -> &'static str {
        DEPARTMENT
    }

    fn validate(&self, matter: &Matter, applicant: Option<&ApplicantRecord>, form: &Form) -> Vec<FieldViolation> {
        domain::validate(matter, applicant, form)
    }

    fn time_limit(&self, matter: &Matter, case: &CaseRecord) -> (TimeUnit, u32) {
        domain::time_limit(matter, &case.form)
    }

    async fn check_intake(&self, txn: &DatabaseTransaction, case: &CaseRecord) -> Result<Option<Refusal>> {
        Ok(match case.matter_code.as_str() {
            "exit_entry.work_residence_permit" => {
                // M13: a valid work permit is what lets the applicant apply here directly.
                (date(case.field("work_permit_valid_until"))? < Local::now().date_naive())
                    .then(|| Refusal::new(Reason::ExitEntryWorkPermitExpired, "the work permit has expired"))
            }
            "exit_entry.business_travel_expedited" => {
                let employed = staff::Entity::find()
                    .filter(staff::Column::CreditCode.eq(case.field("employer_credit_code").to_ascii_uppercase()))
                    .filter(staff::Column::IdNumber.eq(case.applicant.identifier.clone()))
                    .count(txn)
                    .await?;
                (employed == 0).then(|| {
                    Refusal::new(
                        Reason::ExitEntryNotEmployedByEnterprise,
                        "the applicant is not on record as staff of the enterprise",
                    )
                })
            }
            _ => None,
        })
    }

    async fn on_intake(&self, txn: &DatabaseTransaction, case: &mut CaseRecord) -> Result<()> {
        match case.matter_code.as_str() {
            "exit_entry.work_residence_permit" if case.field("high_level_talent") == "true" => {
                // M13 服务专员: the least loaded commissioner takes the case.
                let officer = commissioner::Entity::find()
                    .order_by_asc(commissioner::Column::Assigned)
                    .order_by_asc(commissioner::Column::OfficerId)
                    .one(txn)
                    .await?
                    .ok_or_else(|| Error::internal(anyhow::anyhow!("no service commissioner on record")))?;
                commissioner::Entity::update_many()
                    .col_expr(commissioner::Column::Assigned, Expr::col(commissioner::Column::Assigned).add(1))
                    .filter(commissioner::Column::OfficerId.eq(officer.officer_id.clone()))
                    .exec(txn)
                    .await?;
                case.result.insert("service_commissioner".into(), format!("{} {}", officer.officer_id, officer.name));
            }
            "exit_entry.document_cancellation" if !facts::is_deceased(txn, case.field("subject_id_number")).await? => {
                case.reason_code = Reason::ExitEntryAwaitingDeathConfirmation.into();
                case.reason_text = "waiting for household to confirm the death".into();
            }
            _ => {}
        }
        Ok(())
    }

    async fn ready(&self, txn: &DatabaseTransaction, case: &CaseRecord) -> Result<bool> {
        Ok(match case.matter_code.as_str() {
            "exit_entry.document_cancellation" => facts::is_deceased(txn, case.field("subject_id_number")).await?,
            _ => true,
        })
    }

    async fn on_approve(
        &self,
        txn: &DatabaseTransaction,
        events: &mut Vec<OutgoingEvent>,
        case: &CaseRecord,
    ) -> Result<CaseResult> {
        let now = Utc::now();
        let mut result = case.result.clone();
        match case.matter_code.as_str() {
            "exit_entry.work_residence_permit" => {
                grant_work_residence_permit(txn, events, case, now, &mut result).await?
            }
            "exit_entry.business_travel_expedited" => issue_travel_document(txn, case, now, &mut result).await?,
            "exit_entry.document_cancellation" => cancel_travel_documents(txn, events, case, now, &mut result).await?,
            other => return Err(Error::internal(anyhow::anyhow!("no approval effect for {other}"))),
        }
        Ok(result)
    }
}

/// A work-type residence permit for a foreign employee: its validity decided from the
/// permit history and offences (five years or ordinary); `residence_permit.granted`.
async fn grant_work_residence_permit(
    txn: &DatabaseTransaction,
    events: &mut Vec<OutgoingEvent>,
    case: &CaseRecord,
    now: DateTime<Utc>,
    result: &mut CaseResult,
) -> Result<()> {
    let today = now.date_naive();
    let passport = case.applicant.identifier.clone();
    let history = permit::Entity::find()
        .filter(permit::Column::PassportNumber.eq(passport.clone()))
        .filter(permit::Column::Kind.eq("work"))
        .all(txn)
        .await?
        .into_iter()
        .map(|p| Ok(Prior { from: date(&p.valid_from)?, until: date(&p.valid_until)?, number: p.permit_number }))
        .collect::<Result<Vec<_>>>()?;
    let offences = violation::Entity::find()
        .filter(violation::Column::PassportNumber.eq(passport.clone()))
        .all(txn)
        .await?
        .into_iter()
        .map(|v| Ok(Offence { date: date(&v.date)?, summary: v.summary }))
        .collect::<Result<Vec<_>>>()?;
    let v = domain::decide_validity(today, date(case.field("work_permit_valid_until"))?, &history, &offences);
    let number = case.document_number("WR");
    permit::Entity::insert(permit::ActiveModel {
        permit_number: Set(number.clone()),
        passport_number: Set(passport),
        kind: Set("work".into()),
        valid_from: Set(v.from.to_string()),
        valid_until: Set(v.until.to_string()),
        case_id: Set(case.id.clone()),
    })
    .exec_without_returning(txn)
    .await?;
    let rule = match v.rule {
        Rule::FiveYear => pb::ValidityRule::FiveYear,
        Rule::Ordinary => pb::ValidityRule::Ordinary,
    };
    events.push(OutgoingEvent::new(
        "onething.exit_entry.v1.residence_permit.granted",
        format!("permits/{number}"),
        &pb::WorkResidencePermitGranted {
            case_id: case.id.clone(),
            permit_number: number.clone(),
            valid_from: v.from.to_string(),
            valid_until: v.until.to_string(),
            rule: rule as i32,
            explanation: v.explanation.clone(),
            counted_permits: v.counted.clone(),
            blocking_violation: v.blocking.clone().unwrap_or_default(),
            occur_time: Some(timestamp(now)),
        },
    ));
    result.insert("permit_number".into(), number);
    result.insert("valid_from".into(), v.from.to_string());
    result.insert("valid_until".into(), v.until.to_string());
    result.insert("validity_rule".into(), rule.as_str_name().trim_start_matches("VALIDITY_RULE_").to_lowercase());
    result.insert("explanation".into(), v.explanation);
    result.insert("counted_permits".into(), v.counted.join(","));
    if let Some(b) = v.blocking {
        result.insert("blocking_violation".into(), b);
    }
    Ok(())
}

/// An expedited travel document for business travel (passport, 港澳通行证 or other).
async fn issue_travel_document(
    txn: &DatabaseTransaction,
    case: &CaseRecord,
    now: DateTime<Utc>,
    result: &mut CaseResult,
) -> Result<()> {
    let today = now.date_naive();
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
        status: Set(onething_platform::store::case::Standing::Active),
    })
    .exec_without_returning(txn)
    .await?;
    result.insert("document_number".into(), number);
    result.insert("document_kind".into(), kind.into());
    result.insert("valid_until".into(), until);
    Ok(())
}

/// The travel documents of a deceased person cancelled; `travel_documents.cancelled`.
async fn cancel_travel_documents(
    txn: &DatabaseTransaction,
    events: &mut Vec<OutgoingEvent>,
    case: &CaseRecord,
    now: DateTime<Utc>,
    result: &mut CaseResult,
) -> Result<()> {
    let subject = case.field("subject_id_number").to_ascii_uppercase();
    let cancelled = travel_document::Entity::update_many()
        .col_expr(travel_document::Column::Status, Expr::value(onething_platform::store::case::Standing::Cancelled))
        .filter(travel_document::Column::IdNumber.eq(subject.clone()))
        .filter(travel_document::Column::Status.eq(onething_platform::store::case::Standing::Active))
        .exec(txn)
        .await?
        .rows_affected;
    events.push(OutgoingEvent::new(
        "onething.exit_entry.v1.travel_documents.cancelled",
        format!("cases/{}", case.id),
        &pb::TravelDocumentsCancelled {
            case_id: case.id.clone(),
            id_number: subject,
            cancelled_count: u32::try_from(cancelled).unwrap_or(u32::MAX),
            occur_time: Some(timestamp(now)),
        },
    ));
    result.insert("cancelled_count".into(), cancelled.to_string());
    Ok(())
}
