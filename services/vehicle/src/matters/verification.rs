//! 企业车辆信息核查 (M23): the vehicles registered to an enterprise's credit code, and how
//! many are overdue for inspection; automatic.

use crate::store::entities::vehicle;
use chrono::{DateTime, Utc};
use onething_platform::{
    calendar::date_in_china,
    cases::{ApplicantRecord, CaseRecord, CaseResult, MatterRules},
    catalog::form::FormCheck,
    error::Result,
    events::OutgoingEvent,
};
use onething_proto::common::ApplicantKind;
use sea_orm::{ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter};

/// `vehicle.enterprise_vehicle_verification`.
pub struct EnterpriseVehicleVerification;

#[onething_platform::async_trait]
impl MatterRules for EnterpriseVehicleVerification {
    fn code(&self) -> &'static str {
        "vehicle.enterprise_vehicle_verification"
    }

    fn check_form(&self, f: &mut FormCheck<'_>, applicant: Option<&ApplicantRecord>, _now: DateTime<Utc>) {
        f.applicant_kind(applicant, ApplicantKind::Enterprise, "the enterprise");
    }

    async fn on_approve(
        &self,
        txn: &DatabaseTransaction,
        _events: &mut Vec<OutgoingEvent>,
        case: &CaseRecord,
        now: DateTime<Utc>,
    ) -> Result<CaseResult> {
        let fleet = vehicle::Entity::find()
            .filter(vehicle::Column::OwnerIdentifier.eq(case.applicant.identifier.clone()))
            .all(txn)
            .await?;
        let today = date_in_china(now).to_string();
        let overdue = fleet.iter().filter(|v| v.inspection_due < today).count();
        let mut result = case.result.clone();
        result.insert("vehicle_count".into(), fleet.len().to_string());
        result.insert("plates".into(), fleet.iter().map(|v| v.plate.as_str()).collect::<Vec<_>>().join(","));
        result.insert("inspection_overdue_count".into(), overdue.to_string());
        Ok(result)
    }
}
