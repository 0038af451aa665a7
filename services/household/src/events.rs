//! What household consumes: its own case events, to queue one notification (SMS) to the
//! applicant per event worth telling. The inbox makes a redelivered event queue nothing.

use crate::store::notification;
use onething_platform::{
    cases::CaseRecord,
    events::{ConsumerSpec, Envelope, Handler, nats::stream_name},
    lifecycle::State,
    store::case,
};
use onething_proto::common::{CaseState, CaseStateChanged};
use sea_orm::{ActiveValue::Set, DatabaseTransaction, EntityTrait};

/// Durable name of the notifier.
pub const NOTIFIER: &str = "household-notifier";

/// The notifier's consumer: every case transition of household.
pub fn notifier_spec() -> ConsumerSpec {
    ConsumerSpec {
        name: NOTIFIER.into(),
        stream: stream_name(crate::rules::DEPARTMENT),
        filter_subjects: vec!["onething.household.v1.case.>".into()],
        // Notifications are only added: batches are safe.
        batch: 64,
    }
}

/// Queues applicant notifications from case events.
#[derive(Debug, Clone, Default)]
pub struct Notifier;

/// States the applicant is told about.
fn worth_telling(s: State) -> bool {
    !matches!(s, State::Submitted | State::Withdrawn)
}

impl Handler for Notifier {
    async fn handle(&self, txn: &DatabaseTransaction, event: &Envelope) -> anyhow::Result<()> {
        if event.ce_type != <CaseStateChanged as prost::Name>::full_name() {
            return Ok(());
        }
        let changed: CaseStateChanged = event.decode()?;
        let Some(state) = CaseState::try_from(changed.to_state).ok().and_then(State::from_proto) else {
            return Ok(());
        };
        if !worth_telling(state) {
            return Ok(());
        }
        let Some(row) = case::Entity::find_by_id(changed.case_id.clone()).one(txn).await? else {
            anyhow::bail!("case of an event is not in this database");
        };
        let c = CaseRecord::from_model(row).map_err(|e| anyhow::anyhow!("{e}"))?;
        if c.applicant.phone.is_empty() {
            return Ok(());
        }
        notification::Entity::insert(notification::ActiveModel {
            event_id: Set(event.id.clone()),
            case_id: Set(c.id),
            matter_code: Set(changed.matter_code),
            state: Set(state.as_str().into()),
            phone: Set(c.applicant.phone),
            created_at: Set(chrono::Utc::now()),
            sent_at: Set(None),
            ..Default::default()
        })
        .exec_without_returning(txn)
        .await?;
        Ok(())
    }
}
