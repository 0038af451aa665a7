//! 旅馆业特种行业许可 (M23): a clerk reviews the application, with an on-site inspection as
//! a special procedure, and decides: no licence without an inspection recorded as passed.

use chrono::{DateTime, Utc};
use onething_platform::{
    cases::{ApplicantRecord, CaseRecord, CaseResult, MatterRules, procedure_outcome},
    catalog::form::FormCheck,
    error::{Error, Result},
    events::OutgoingEvent,
    reason::Reason,
};
use sea_orm::DatabaseTransaction;

/// `liaison.hotel_special_trade_licence`.
pub struct HotelSpecialTradeLicence;

/// The special procedure a hotel licence needs.
pub const ON_SITE_INSPECTION: &str = "on_site_inspection";

#[onething_platform::async_trait]
impl MatterRules for HotelSpecialTradeLicence {
    fn code(&self) -> &'static str {
        "liaison.hotel_special_trade_licence"
    }

    fn check_form(&self, f: &mut FormCheck<'_>, applicant: Option<&ApplicantRecord>, _now: DateTime<Utc>) {
        super::by_the_enterprise(f, applicant);
        f.rule("rooms", |r| r.parse::<u32>().is_ok_and(|r| (1..=5000).contains(&r)), "a whole number from 1 to 5000");
    }

    /// The licence needs the on-site inspection (special procedure `on_site_inspection`)
    /// to have ended passed.
    async fn before_approve(&self, _txn: &DatabaseTransaction, case: &CaseRecord) -> Result<()> {
        match procedure_outcome(case, ON_SITE_INSPECTION) {
            Some(true) => Ok(()),
            Some(false) => Err(Error::failed_precondition(
                Reason::LiaisonOnSiteInspectionRequired,
                "the on-site inspection failed: reject the application, or inspect again",
            )),
            None => Err(Error::failed_precondition(
                Reason::LiaisonOnSiteInspectionRequired,
                "no on-site inspection is recorded: start and end the special procedure on_site_inspection",
            )),
        }
    }

    async fn on_approve(
        &self,
        _txn: &DatabaseTransaction,
        _events: &mut Vec<OutgoingEvent>,
        case: &CaseRecord,
        _now: DateTime<Utc>,
    ) -> Result<CaseResult> {
        let mut result = case.result.clone();
        result.insert("licence_number".into(), case.document_number("TZHY"));
        Ok(result)
    }
}
