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
use sea_orm::{ActiveValue::Set, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter};
use std::collections::HashMap;

/// Durable name of the notifier.
pub const NOTIFIER: &str = "household-notifier";

/// The notifier's consumer: the case transitions of household an applicant is told about.
pub fn notifier_spec() -> ConsumerSpec {
    ConsumerSpec {
        name: NOTIFIER.into(),
        stream: stream_name(crate::matters::DEPARTMENT),
        // Only the states worth telling: the others would be delivered to be ignored.
        filter_subjects: State::ALL
            .into_iter()
            .filter(|s| worth_telling(*s))
            .map(|s| format!("onething.household.v1.case.{}", s.as_str()))
            .collect(),
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

/// What an event asks of the notifier: the case to tell about and the state it reached.
fn to_tell(event: &Envelope) -> anyhow::Result<Option<(CaseStateChanged, State)>> {
    if event.ce_type != <CaseStateChanged as prost::Name>::full_name() {
        return Ok(None);
    }
    let changed: CaseStateChanged = event.decode()?;
    let Some(state) = CaseState::try_from(changed.to_state).ok().and_then(State::from_proto) else {
        return Ok(None);
    };
    Ok(worth_telling(state).then_some((changed, state)))
}

/// The notification of `event` about case `row`, or `None` when the applicant left no phone.
fn notification(
    event: &Envelope,
    changed: CaseStateChanged,
    state: State,
    row: case::Model,
) -> anyhow::Result<Option<notification::ActiveModel>> {
    let c = CaseRecord::from_model(row);
    if c.applicant.phone.is_empty() {
        return Ok(None);
    }
    Ok(Some(notification::ActiveModel {
        event_id: Set(event.id.clone()),
        case_id: Set(c.id),
        matter_code: Set(changed.matter_code),
        state: Set(state.as_str().into()),
        phone: Set(c.applicant.phone),
        created_at: Set(chrono::Utc::now()),
        sent_at: Set(None),
        ..Default::default()
    }))
}

impl Handler for Notifier {
    /// It queues notifications; it never writes events.
    fn writes_events(&self) -> bool {
        false
    }

    async fn handle(&self, txn: &DatabaseTransaction, event: &Envelope) -> anyhow::Result<()> {
        let Some((changed, state)) = to_tell(event)? else {
            return Ok(());
        };
        let Some(row) = case::Entity::find_by_id(changed.case_id.clone()).one(txn).await? else {
            anyhow::bail!("case of an event is not in this database");
        };
        if let Some(n) = notification(event, changed, state, row)? {
            notification::Entity::insert(n).exec_without_returning(txn).await?;
        }
        Ok(())
    }

    /// The batch's cases read with one query, its notifications written with one insert.
    async fn handle_many(
        &self,
        txn: &DatabaseTransaction,
        events: &[&(Envelope, tracing::Span)],
    ) -> anyhow::Result<()> {
        let mut wanted = Vec::with_capacity(events.len());
        for (event, _) in events.iter().map(|p| (&p.0, &p.1)) {
            if let Some((changed, state)) = to_tell(event)? {
                wanted.push((event, changed, state));
            }
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let ids: std::collections::BTreeSet<String> = wanted.iter().map(|(_, c, _)| c.case_id.clone()).collect();
        let cases: HashMap<String, case::Model> = case::Entity::find()
            .filter(case::Column::Id.is_in(ids))
            .all(txn)
            .await?
            .into_iter()
            .map(|m| (m.id.clone(), m))
            .collect();
        let mut rows = Vec::with_capacity(wanted.len());
        for (event, changed, state) in wanted {
            let Some(row) = cases.get(&changed.case_id) else {
                anyhow::bail!("case of an event is not in this database");
            };
            rows.extend(notification(event, changed, state, row.clone())?);
        }
        if !rows.is_empty() {
            notification::Entity::insert_many(rows).exec_without_returning(txn).await?;
        }
        Ok(())
    }
}
