//! 公章刻制备案 and 企业印章注销 (M23): a filing is accepted when complete and makes each
//! filed kind active (a new enterprise is on record from its first filing); a cancellation
//! on deregistration or bankruptcy ends every active seal.

use crate::{
    domain,
    store::entities::{enterprise, seal},
};
use chrono::{DateTime, Utc};
use onething_platform::{
    cases::{ApplicantRecord, CaseRecord, CaseResult, MatterRules, Refusal},
    catalog::form::FormCheck,
    error::Result,
    events::OutgoingEvent,
    reason::Reason,
    store::case::Standing,
};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, DatabaseTransaction, EntityTrait, PaginatorTrait, QueryFilter,
    sea_query::{Expr, OnConflict},
};

fn kinds(case: &CaseRecord) -> Vec<String> {
    case.field("seal_kinds").split(',').map(|k| k.trim().to_string()).filter(|k| !k.is_empty()).collect()
}

/// `liaison.seal_engraving_filing`.
pub struct SealEngravingFiling;

#[onething_platform::async_trait]
impl MatterRules for SealEngravingFiling {
    fn code(&self) -> &'static str {
        "liaison.seal_engraving_filing"
    }

    fn check_form(&self, f: &mut FormCheck<'_>, applicant: Option<&ApplicantRecord>, _now: DateTime<Utc>) {
        super::by_the_enterprise(f, applicant);
        f.rule(
            "seal_kinds",
            |k| k.split(',').all(|x| domain::SEAL_KINDS.contains(&x.trim())),
            &format!("comma separated, of {}", domain::SEAL_KINDS.join(", ")),
        );
    }

    async fn check_intake(&self, txn: &DatabaseTransaction, case: &CaseRecord) -> Result<Option<Refusal>> {
        let filed = seal::Entity::find()
            .filter(seal::Column::CreditCode.eq(case.applicant.identifier.clone()))
            .filter(seal::Column::Kind.is_in(kinds(case)))
            .filter(seal::Column::Status.eq(Standing::Active))
            .count(txn)
            .await?;
        Ok((filed > 0)
            .then(|| Refusal::new(Reason::LiaisonSealAlreadyFiled, "a seal of this kind is already filed and active")))
    }

    async fn on_approve(
        &self,
        txn: &DatabaseTransaction,
        _events: &mut Vec<OutgoingEvent>,
        case: &CaseRecord,
        _now: DateTime<Utc>,
    ) -> Result<CaseResult> {
        let code = case.applicant.identifier.clone();
        // A new enterprise (企业开办) is on record from its first filing.
        enterprise::Entity::insert(enterprise::ActiveModel {
            credit_code: Set(code.clone()),
            name: Set(case.applicant.name.clone()),
            legal_representative: Set(String::new()),
            address: Set(String::new()),
            park: Set(String::new()),
            liaison_officer: Set(String::new()),
            precursor_qualified: Set(false),
            // The register of record (市场监管) says; a filing does not.
            ownership: sea_orm::ActiveValue::NotSet,
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
            status: Set(Standing::Active),
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
        let mut result = case.result.clone();
        result.insert("filing_number".into(), case.document_number("GZBA"));
        Ok(result)
    }

    /// The filing revoked: the seals this case filed are cancelled again.
    async fn on_revoke(
        &self,
        txn: &DatabaseTransaction,
        _events: &mut Vec<OutgoingEvent>,
        case: &CaseRecord,
        _now: DateTime<Utc>,
    ) -> Result<()> {
        seal::Entity::update_many()
            .col_expr(seal::Column::Status, Expr::value(Standing::Cancelled))
            .filter(seal::Column::CaseId.eq(case.id.clone()))
            .filter(seal::Column::Status.eq(Standing::Active))
            .exec(txn)
            .await?;
        Ok(())
    }
}

/// `liaison.seal_cancellation`.
pub struct SealCancellation;

#[onething_platform::async_trait]
impl MatterRules for SealCancellation {
    fn code(&self) -> &'static str {
        "liaison.seal_cancellation"
    }

    fn check_form(&self, f: &mut FormCheck<'_>, applicant: Option<&ApplicantRecord>, _now: DateTime<Utc>) {
        super::by_the_enterprise(f, applicant);
    }

    async fn check_intake(&self, txn: &DatabaseTransaction, case: &CaseRecord) -> Result<Option<Refusal>> {
        let active = seal::Entity::find()
            .filter(seal::Column::CreditCode.eq(case.applicant.identifier.clone()))
            .filter(seal::Column::Status.eq(Standing::Active))
            .count(txn)
            .await?;
        Ok((active == 0)
            .then(|| Refusal::new(Reason::LiaisonNoActiveSeals, "the enterprise has no active seal on file")))
    }

    async fn on_approve(
        &self,
        txn: &DatabaseTransaction,
        _events: &mut Vec<OutgoingEvent>,
        case: &CaseRecord,
        _now: DateTime<Utc>,
    ) -> Result<CaseResult> {
        let n = seal::Entity::update_many()
            .col_expr(seal::Column::Status, Expr::value(Standing::Cancelled))
            .filter(seal::Column::CreditCode.eq(case.applicant.identifier.clone()))
            .filter(seal::Column::Status.eq(Standing::Active))
            .exec(txn)
            .await?
            .rows_affected;
        let mut result = case.result.clone();
        result.insert("cancelled_seals".into(), n.to_string());
        Ok(result)
    }
}
