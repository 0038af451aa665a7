//! 外国人工作类居留许可 (M13): a foreigner with a valid work permit applies here directly; the
//! validity is decided on the permit history and offences (five years on a third application
//! after two consecutive permits of a year or more and a clean record), with the explanation
//! a reviewer reads; high-level talent get a service commissioner.

use super::stored_date;
use crate::{
    domain::{self, Offence, Prior, Rule},
    store::entities::{commissioner, permit, violation},
};
use chrono::{DateTime, Utc};
use onething_platform::{
    calendar::date_in_china,
    cases::{ApplicantRecord, CaseRecord, CaseResult, MatterRules, Refusal, timestamp},
    catalog::form::FormCheck,
    error::{Error, Result},
    events::OutgoingEvent,
    reason::Reason,
};
use onething_proto::{common::ApplicantKind, exit_entry as pb};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder,
    sea_query::{Expr, ExprTrait},
};

/// `exit_entry.work_residence_permit`.
pub struct WorkResidencePermit;

#[onething_platform::async_trait]
impl MatterRules for WorkResidencePermit {
    fn code(&self) -> &'static str {
        "exit_entry.work_residence_permit"
    }

    /// A foreign national applies; the shape of foreign identifiers.
    fn check_form(&self, f: &mut FormCheck<'_>, applicant: Option<&ApplicantRecord>, _now: DateTime<Utc>) {
        f.applicant_kind(applicant, ApplicantKind::Foreigner, "a foreign national");
        f.rule(
            "nationality",
            |v| v.len() == 3 && v.chars().all(|c| c.is_ascii_uppercase()),
            "ISO 3166 alpha-3, e.g. DEU",
        );
        f.rule(
            "work_permit_number",
            |v| (6..=30).contains(&v.len()) && v.chars().all(|c| c.is_ascii_alphanumeric()),
            "6 to 30 letters and digits",
        );
    }

    async fn check_intake(&self, _txn: &DatabaseTransaction, case: &CaseRecord) -> Result<Option<Refusal>> {
        // M13: a valid work permit is what lets the applicant apply here directly.
        let expired = stored_date(case.field("work_permit_valid_until"))? < date_in_china(case.created_at);
        Ok(expired.then(|| Refusal::new(Reason::ExitEntryWorkPermitExpired, "the work permit has expired")))
    }

    async fn on_intake(&self, txn: &DatabaseTransaction, case: &mut CaseRecord, _now: DateTime<Utc>) -> Result<()> {
        if case.field("high_level_talent") != "true" {
            return Ok(());
        }
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
        Ok(())
    }

    async fn on_approve(
        &self,
        txn: &DatabaseTransaction,
        events: &mut Vec<OutgoingEvent>,
        case: &CaseRecord,
        now: DateTime<Utc>,
    ) -> Result<CaseResult> {
        let passport = case.applicant.identifier.clone();
        let (history, offences) = record_of(txn, &passport).await?;
        let until = stored_date(case.field("work_permit_valid_until"))?;
        let v = domain::decide_validity(date_in_china(now), until, &history, &offences);
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
        let mut result = case.result.clone();
        result.insert("permit_number".into(), number);
        result.insert("valid_from".into(), v.from.to_string());
        result.insert("valid_until".into(), v.until.to_string());
        result.insert("validity_rule".into(), rule.as_str_name().trim_start_matches("VALIDITY_RULE_").to_lowercase());
        result.insert("explanation".into(), v.explanation);
        result.insert("counted_permits".into(), v.counted.join(","));
        if let Some(b) = v.blocking {
            result.insert("blocking_violation".into(), b);
        }
        Ok(result)
    }
}

/// The work-type permits the passport held and the violations on its record.
async fn record_of(txn: &DatabaseTransaction, passport: &str) -> Result<(Vec<Prior>, Vec<Offence>)> {
    let history = permit::Entity::find()
        .filter(permit::Column::PassportNumber.eq(passport))
        .filter(permit::Column::Kind.eq("work"))
        .all(txn)
        .await?
        .into_iter()
        .map(|p| {
            Ok(Prior {
                from: stored_date(&p.valid_from)?,
                until: stored_date(&p.valid_until)?,
                number: p.permit_number,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let offences = violation::Entity::find()
        .filter(violation::Column::PassportNumber.eq(passport))
        .all(txn)
        .await?
        .into_iter()
        .map(|v| Ok(Offence { date: stored_date(&v.date)?, summary: v.summary }))
        .collect::<Result<Vec<_>>>()?;
    Ok((history, offences))
}
