//! Liaison as a [`Department`]: seal engraving filing (done when complete), seal
//! cancellation on deregistration or bankruptcy, the hotel special-trade licence (clerk
//! review with an on-site inspection), and the precursor chemical filing decided within 24
//! clock hours (M16).

use crate::{
    domain,
    store::entities::{enterprise, seal},
};
use onething_platform::reason::Reason;
use onething_platform::{
    cases::{ApplicantRecord, CaseRecord, CaseResult, Department, Form, Refusal},
    catalog::Matter,
    error::{Error, FieldViolation, Result},
    events::OutgoingEvent,
};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, DatabaseTransaction, EntityTrait, PaginatorTrait, QueryFilter,
    sea_query::{Expr, OnConflict},
};

/// Department name and event namespace.
pub const DEPARTMENT: &str = "liaison";

/// The liaison department's rules.
#[derive(Debug, Clone, Default)]
pub struct Liaison;

fn kinds(case: &CaseRecord) -> Vec<String> {
    case.field("seal_kinds").split(',').map(|k| k.trim().to_string()).filter(|k| !k.is_empty()).collect()
}

impl Department for Liaison {
    fn matters(&self) -> &'static [&'static str] {
        &[
            "liaison.seal_engraving_filing",
            "liaison.seal_cancellation",
            "liaison.hotel_special_trade_licence",
            "liaison.precursor_chemical_filing",
        ]
    }

    fn name(&self) -> &'static str {
        DEPARTMENT
    }

    fn validate(&self, matter: &Matter, applicant: Option<&ApplicantRecord>, form: &Form) -> Vec<FieldViolation> {
        domain::validate(matter, applicant, form)
    }

    async fn check_intake(&self, txn: &DatabaseTransaction, case: &CaseRecord) -> Result<Option<Refusal>> {
        let code = case.applicant.identifier.clone();
        Ok(match case.matter_code.as_str() {
            "liaison.seal_engraving_filing" => {
                let filed = seal::Entity::find()
                    .filter(seal::Column::CreditCode.eq(code))
                    .filter(seal::Column::Kind.is_in(kinds(case)))
                    .filter(seal::Column::Status.eq(onething_platform::store::case::Standing::Active))
                    .count(txn)
                    .await?;
                (filed > 0).then(|| {
                    Refusal::new(Reason::LiaisonSealAlreadyFiled, "a seal of this kind is already filed and active")
                })
            }
            "liaison.seal_cancellation" => {
                let active = seal::Entity::find()
                    .filter(seal::Column::CreditCode.eq(code))
                    .filter(seal::Column::Status.eq(onething_platform::store::case::Standing::Active))
                    .count(txn)
                    .await?;
                (active == 0)
                    .then(|| Refusal::new(Reason::LiaisonNoActiveSeals, "the enterprise has no active seal on file"))
            }
            "liaison.precursor_chemical_filing" => {
                let qualified =
                    enterprise::Entity::find_by_id(code).one(txn).await?.is_some_and(|e| e.precursor_qualified);
                (!qualified).then(|| {
                    Refusal::new(
                        Reason::LiaisonNotQualified,
                        "the enterprise holds no precursor chemical qualification",
                    )
                })
            }
            _ => None,
        })
    }

    async fn on_approve(
        &self,
        txn: &DatabaseTransaction,
        _events: &mut Vec<OutgoingEvent>,
        case: &CaseRecord,
    ) -> Result<CaseResult> {
        let code = case.applicant.identifier.clone();
        let mut result = case.result.clone();
        match case.matter_code.as_str() {
            "liaison.seal_engraving_filing" => {
                // A new enterprise (企业开办) is on record from its first filing.
                enterprise::Entity::insert(enterprise::ActiveModel {
                    credit_code: Set(code.clone()),
                    name: Set(case.applicant.name.clone()),
                    legal_representative: Set(String::new()),
                    address: Set(String::new()),
                    park: Set(String::new()),
                    liaison_officer: Set(String::new()),
                    precursor_qualified: Set(false),
                })
                .on_conflict_do_nothing()
                .exec_without_returning(txn)
                .await?;
                // Each kind filed (again) is active under this case: one upsert for all.
                let mut filed = kinds(case);
                filed.sort();
                filed.dedup();
                let seals = filed.into_iter().map(|kind| seal::ActiveModel {
                    credit_code: Set(code.clone()),
                    kind: Set(kind),
                    status: Set(onething_platform::store::case::Standing::Active),
                    case_id: Set(case.id.clone()),
                });
                seal::Entity::insert_many(seals)
                    .on_conflict(
                        OnConflict::columns([seal::Column::CreditCode, seal::Column::Kind])
                            .update_columns([seal::Column::Status, seal::Column::CaseId])
                            .to_owned(),
                    )
                    .exec_without_returning(txn)
                    .await?;
                result.insert("filing_number".into(), case.document_number("GZBA"));
            }
            "liaison.seal_cancellation" => {
                let n = seal::Entity::update_many()
                    .col_expr(seal::Column::Status, Expr::value(onething_platform::store::case::Standing::Cancelled))
                    .filter(seal::Column::CreditCode.eq(code))
                    .filter(seal::Column::Status.eq(onething_platform::store::case::Standing::Active))
                    .exec(txn)
                    .await?
                    .rows_affected;
                result.insert("cancelled_seals".into(), n.to_string());
            }
            "liaison.hotel_special_trade_licence" => {
                result.insert("licence_number".into(), case.document_number("TZHY"));
            }
            "liaison.precursor_chemical_filing" => {
                result.insert("filing_number".into(), case.document_number("YZD"));
            }
            other => return Err(Error::internal(anyhow::anyhow!("no approval effect for {other}"))),
        }
        Ok(result)
    }
}
