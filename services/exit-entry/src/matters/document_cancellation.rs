//! 出入境证件注销 on death: a deceased citizen's travel documents are cancelled once household
//! confirms the death; automatic, and waiting until the death arrives;
//! `travel_documents.cancelled`.

use crate::store::entities::travel_document;
use chrono::{DateTime, Utc};
use onething_platform::{
    cases::{CaseRecord, CaseResult, MatterRules, timestamp},
    error::Result,
    events::OutgoingEvent,
    facts,
    reason::Reason,
    store::case::Standing,
};
use onething_proto::exit_entry as pb;
use sea_orm::{ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, sea_query::Expr};

/// `exit_entry.document_cancellation`.
pub struct DocumentCancellation;

#[onething_platform::async_trait]
impl MatterRules for DocumentCancellation {
    fn code(&self) -> &'static str {
        super::DOCUMENT_CANCELLATION
    }

    async fn on_intake(&self, txn: &DatabaseTransaction, case: &mut CaseRecord, _now: DateTime<Utc>) -> Result<()> {
        Ok(facts::wait_for_death(txn, case, Reason::ExitEntryAwaitingDeathConfirmation).await?)
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
        let cancelled = travel_document::Entity::update_many()
            .col_expr(travel_document::Column::Status, Expr::value(Standing::Cancelled))
            .filter(travel_document::Column::IdNumber.eq(subject.clone()))
            .filter(travel_document::Column::Status.eq(Standing::Active))
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
        let mut result = case.result.clone();
        result.insert("cancelled_count".into(), cancelled.to_string());
        Ok(result)
    }
}
