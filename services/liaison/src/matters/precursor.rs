//! 易制毒化学品购买/运输备案 (M16): a qualified enterprise's filing, decided within 24 clock
//! hours.

use crate::store::entities::enterprise;
use chrono::{DateTime, Utc};
use onething_platform::{
    cases::{ApplicantRecord, CaseRecord, CaseResult, MatterRules, Refusal},
    catalog::form::FormCheck,
    error::Result,
    events::OutgoingEvent,
    reason::Reason,
};
use sea_orm::{DatabaseTransaction, EntityTrait};

/// `liaison.precursor_chemical_filing`.
pub struct PrecursorChemicalFiling;

#[onething_platform::async_trait]
impl MatterRules for PrecursorChemicalFiling {
    fn code(&self) -> &'static str {
        "liaison.precursor_chemical_filing"
    }

    fn check_form(&self, f: &mut FormCheck<'_>, applicant: Option<&ApplicantRecord>, _now: DateTime<Utc>) {
        super::by_the_enterprise(f, applicant);
        f.rule(
            "quantity_kg",
            |q| q.parse::<f64>().is_ok_and(|q| q > 0.0 && q <= 100_000.0),
            "more than 0, at most 100000",
        );
    }

    async fn check_intake(&self, txn: &DatabaseTransaction, case: &CaseRecord) -> Result<Option<Refusal>> {
        let qualified = enterprise::Entity::find_by_id(case.applicant.identifier.clone())
            .one(txn)
            .await?
            .is_some_and(|e| e.precursor_qualified);
        Ok((!qualified).then(|| {
            Refusal::new(Reason::LiaisonNotQualified, "the enterprise holds no precursor chemical qualification")
        }))
    }

    async fn on_approve(
        &self,
        _txn: &DatabaseTransaction,
        _events: &mut Vec<OutgoingEvent>,
        case: &CaseRecord,
        _now: DateTime<Utc>,
    ) -> Result<CaseResult> {
        let mut result = case.result.clone();
        result.insert("filing_number".into(), case.document_number("YZD"));
        Ok(result)
    }
}
