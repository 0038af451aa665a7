//! Idempotent consumer: a durable JetStream pull consumer whose handler runs in a database
//! transaction that also records the event id in the inbox. A redelivered event finds its id
//! and does nothing. [`handle_one`] is public so tests drive a handler without sleeping.

use super::{cloudevents::Envelope, outbox::Outbox};
use crate::{store::inbox, telemetry};
use async_nats::jetstream::{self, AckKind, consumer::pull};
use chrono::Utc;
use futures::StreamExt;
use sea_orm::{ActiveValue::Set, DatabaseConnection, DatabaseTransaction, EntityTrait};
use std::{future::Future, time::Duration};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// What to consume: a durable consumer on a stream, with subject filters.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    /// Durable name; also the inbox key, so two replicas share one inbox entry per event.
    pub name: String,
    /// Stream name, e.g. `ONETHING_HOUSEHOLD`.
    pub stream: String,
    /// Subjects to receive, e.g. `onething.household.v1.case.>`.
    pub filter_subjects: Vec<String>,
}

/// The effect of an event, applied inside the inbox transaction.
pub trait Handler: Send + Sync + 'static {
    /// Applies `event` using `txn`. An error rolls the transaction back and the event is
    /// redelivered later; a handler that does not recognise an event returns `Ok(())`.
    fn handle(&self, txn: &DatabaseTransaction, event: &Envelope) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// What [`handle_one`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The effect was applied and the event recorded.
    Applied,
    /// The event was handled before; nothing was done.
    Duplicate,
}

/// Handles one event exactly once for `consumer`: inbox insert and effect in one transaction.
///
/// # Errors
/// The handler or the database failed; nothing was committed.
pub async fn handle_one<H: Handler>(
    db: &DatabaseConnection,
    consumer: &str,
    handler: &H,
    event: &Envelope,
) -> anyhow::Result<Outcome> {
    let txn = crate::db::begin_write(db).await?;
    let inserted = inbox::Entity::insert(inbox::ActiveModel {
        consumer: Set(consumer.to_string()),
        event_id: Set(event.id.clone()),
        handled_at: Set(Utc::now()),
    })
    .on_conflict_do_nothing_on([inbox::Column::Consumer, inbox::Column::EventId])
    .exec_without_returning(&txn)
    .await?;
    if !matches!(inserted, sea_orm::TryInsertResult::Inserted(n) if n > 0) {
        txn.rollback().await?;
        return Ok(Outcome::Duplicate);
    }
    handler.handle(&txn, event).await?;
    txn.commit().await?;
    Ok(Outcome::Applied)
}

/// Consumes `spec` until `shutdown`, reconnecting after errors. Each message: decode the
/// envelope (poison messages are terminated, never retried), [`handle_one`], wake `outbox`
/// (the handler may have written events), then ack; a failed handler gets a delayed redelivery.
pub async fn run<H: Handler>(
    js: jetstream::Context,
    db: DatabaseConnection,
    spec: ConsumerSpec,
    handler: H,
    outbox: Option<Outbox>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(200);
    while !shutdown.is_cancelled() {
        match consume(&js, &db, &spec, &handler, outbox.as_ref(), &shutdown).await {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(consumer = %spec.name, error = %format!("{e:#}"), "consumer interrupted; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

async fn consume<H: Handler>(
    js: &jetstream::Context,
    db: &DatabaseConnection,
    spec: &ConsumerSpec,
    handler: &H,
    outbox: Option<&Outbox>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let stream = js.get_stream(&spec.stream).await?;
    let mut consumer: jetstream::consumer::Consumer<pull::Config> = stream
        .get_or_create_consumer(
            &spec.name,
            pull::Config {
                durable_name: Some(spec.name.clone()),
                filter_subjects: spec.filter_subjects.clone(),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                ..Default::default()
            },
        )
        .await?;
    let mut messages = consumer.messages().await?;
    let lag = crate::metrics::metrics()
        .consumer_lag
        .get_or_create_owned(&crate::metrics::ConsumerLabels { consumer: spec.name.clone() });
    // Each delivery tells how many are still pending; while idle the consumer's info does.
    let mut idle = tokio::time::interval(Duration::from_secs(15));
    loop {
        let msg = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = idle.tick() => {
                if let Ok(info) = consumer.info().await {
                    lag.set(info.num_pending as i64);
                }
                continue;
            }
            next = messages.next() => match next {
                Some(m) => m?,
                None => anyhow::bail!("message stream ended"),
            },
        };
        if let Ok(info) = msg.info() {
            lag.set(info.pending as i64);
        }
        let event = match Envelope::from_nats(msg.headers.as_ref(), msg.payload.clone()) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(consumer = %spec.name, subject = %msg.subject, error = %e, "poison message terminated");
                let _ = msg.ack_with(AckKind::Term).await;
                continue;
            }
        };
        let span = tracing::info_span!(
            "event.consume",
            otel.kind = "consumer",
            messaging.system = "nats",
            messaging.operation = "process",
            messaging.destination.name = %msg.subject,
            messaging.message.id = %event.id,
            messaging.consumer.group.name = %spec.name,
            case_id = tracing::field::Empty,
            bundle_id = tracing::field::Empty,
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
        );
        telemetry::set_remote_parent(&span, event.traceparent.as_deref());
        telemetry::record_event_subject(&span, &event.subject);
        telemetry::stamp(&span);
        let result = handle_one(db, &spec.name, handler, &event).instrument(span).await;
        let outcome = match &result {
            Ok(Outcome::Applied) => "applied",
            Ok(Outcome::Duplicate) => "duplicate",
            Err(_) => "failed",
        };
        crate::metrics::metrics()
            .events_consumed
            .get_or_create(&crate::metrics::ConsumeLabels {
                consumer: spec.name.clone(),
                subject: msg.subject.to_string(),
                outcome: outcome.into(),
            })
            .inc();
        match result {
            Ok(outcome) => {
                // A handler may have written events (a waiting case decided): send them now.
                if let (Outcome::Applied, Some(o)) = (outcome, outbox) {
                    o.wake();
                }
                if let Err(e) = msg.ack().await {
                    // The effect is committed; a redelivery will be recognised as a duplicate.
                    tracing::warn!(consumer = %spec.name, error = %e, "ack failed");
                }
            }
            Err(e) => {
                tracing::warn!(consumer = %spec.name, event_id = %event.id, error = %format!("{e:#}"), "handler failed; redelivery later");
                let _ = msg.ack_with(AckKind::Nak(Some(Duration::from_secs(2)))).await;
            }
        }
    }
}
