//! 驾驶证注销 (M23): on a death household confirmed, every active driving licence of the
//! person is cancelled, each with a `driving_licence.cancelled` fact; automatic, and
//! waiting until the death arrives.

use crate::store::entities::licence;
use chrono::{DateTime, Utc};
use onething_platform::{
    cases::{CaseRecord, CaseResult, MatterRules, timestamp},
    error::Result,
    events::OutgoingEvent,
    facts,
    reason::Reason,
    store::case::Standing,
};
use onething_proto::vehicle as pb;
use sea_orm::{ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, sea_query::Expr};

/// `vehicle.driving_licence_cancellation`.
pub struct DrivingLicenceCancellation;

#[onething_platform::async_trait]
impl MatterRules for DrivingLicenceCancellation {
    fn code(&self) -> &'static str {
        super::LICENCE_CANCELLATION
    }

    async fn on_intake(&self, txn: &DatabaseTransaction, case: &mut CaseRecord, _now: DateTime<Utc>) -> Result<()> {
        Ok(facts::wait_for_death(txn, case, Reason::VehicleAwaitingDeathConfirmation).await?)
    }

    async fn ready(&self, txn: &DatabaseTransaction, case: &CaseRecord) -> Result<bool> {
        Ok(facts::subject_deceased(txn, case).await?)
    }

    async fn on_approve(
        &self,
        txn: &DatabaseTransaction,
        events: &mut Vec<OutgoingEvent>,
        case: &CaseRecord,
        now: DateTime<Utc>,
    ) -> Result<CaseResult> {
        let subject = case.field(facts::SUBJECT_FIELD).to_ascii_uppercase();
        let active = licence::Entity::find()
            .filter(licence::Column::IdNumber.eq(subject.clone()))
            .filter(licence::Column::Status.eq(Standing::Active))
            .all(txn)
            .await?;
        for l in &active {
            licence::Entity::update_many()
                .col_expr(licence::Column::Status, Expr::value(Standing::Cancelled))
                .filter(licence::Column::LicenceNumber.eq(l.licence_number.clone()))
                .exec(txn)
                .await?;
            events.push(OutgoingEvent::new(
                "onething.vehicle.v1.driving_licence.cancelled",
                format!("cases/{}", case.id),
                &pb::DrivingLicenceCancelled {
                    case_id: case.id.clone(),
                    id_number: subject.clone(),
                    licence_number: l.licence_number.clone(),
                    occur_time: Some(timestamp(now)),
                },
            ));
        }
        let mut result = case.result.clone();
        result.insert("cancelled_count".into(), active.len().to_string());
        Ok(result)
    }
}
