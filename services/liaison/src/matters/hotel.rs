//! 旅馆业特种行业许可 (M23): a clerk reviews the application, with an on-site inspection as
//! a special procedure, and decides.

use chrono::{DateTime, Utc};
use onething_platform::{
    cases::{ApplicantRecord, CaseRecord, CaseResult, MatterRules},
    catalog::form::FormCheck,
    error::Result,
    events::OutgoingEvent,
};
use sea_orm::DatabaseTransaction;

/// `liaison.hotel_special_trade_licence`.
pub struct HotelSpecialTradeLicence;

#[onething_platform::async_trait]
impl MatterRules for HotelSpecialTradeLicence {
    fn code(&self) -> &'static str {
        "liaison.hotel_special_trade_licence"
    }

    fn check_form(&self, f: &mut FormCheck<'_>, applicant: Option<&ApplicantRecord>, _now: DateTime<Utc>) {
        super::by_the_enterprise(f, applicant);
        f.rule("rooms", |r| r.parse::<u32>().is_ok_and(|r| (1..=5000).contains(&r)), "a whole number from 1 to 5000");
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
