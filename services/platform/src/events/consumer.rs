//! Idempotent consumer: a durable JetStream pull consumer whose handler runs in a database
//! transaction that also records the event id in the inbox. A redelivered event finds its id
//! and does nothing. [`handle_one`] is public so tests drive a handler without sleeping.

use super::{cloudevents::Envelope, outbox::Outbox};
use crate::{store::inbox, telemetry};
use anyhow::Context as _;
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
    /// Up to this many events are handled in one transaction ([`handle_batch`]: when one
    /// fails, each is handled on its own), gathered for at most [`BATCH_LINGER`] after the
    /// first: for consumers off the applicant's critical path. 1: an event at once, in a
    /// transaction of its own; also for handlers that lock rows another consumer also
    /// locks, where batches could deadlock.
    pub batch: usize,
}

/// How long a batched consumer waits for more events after the first one of a batch.
pub const BATCH_LINGER: Duration = Duration::from_millis(50);

/// The effect of an event, applied inside the inbox transaction.
pub trait Handler: Send + Sync + 'static {
    /// Applies `event` using `txn`. An error rolls the transaction back and the event is
    /// redelivered later; a handler that does not recognise an event returns `Ok(())`.
    fn handle(&self, txn: &DatabaseTransaction, event: &Envelope) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Applies several events, none seen before by this consumer, in delivery order, in one
    /// transaction ([`handle_batch`]); each comes with its consume span. The default applies
    /// them one by one with [`Handler::handle`], each in its span; a handler may do better
    /// (read what the whole batch needs at once, write it at once). An error undoes the
    /// batch, whose events are then handled one by one.
    fn handle_many(
        &self,
        txn: &DatabaseTransaction,
        events: &[&(Envelope, tracing::Span)],
    ) -> impl Future<Output = anyhow::Result<()>> + Send {
        async move {
            for (event, span) in events.iter().map(|pair| (&pair.0, &pair.1)) {
                self.handle(txn, event).instrument(span.clone()).await?;
            }
            Ok(())
        }
    }

    /// Whether handling events may write events to the outbox, so the relay is woken after
    /// each applied batch. The default: yes. A handler that never does (a projection, a
    /// queue of its own) says no and spares the relay a look at an empty outbox each time.
    fn writes_events(&self) -> bool {
        true
    }

    /// Told, after the transaction that applied `event` committed, that it did: for what
    /// must only follow a commit (waking those who watch the state it changed). The
    /// default: nothing.
    fn committed(&self, _event: &Envelope) {}

    /// Whether this service's state already reflects `event`, so handling it would change
    /// nothing now or at any later delivery: it is then acknowledged without a transaction
    /// or an inbox entry (outcome `known`). Asked by [`handle_one`] only. The default: no.
    fn already_applied(
        &self,
        _db: &DatabaseConnection,
        _event: &Envelope,
    ) -> impl Future<Output = anyhow::Result<bool>> + Send {
        async { Ok(false) }
    }
}

/// What [`handle_one`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The effect was applied and the event recorded.
    Applied,
    /// The event was handled before; nothing was done.
    Duplicate,
    /// The handler's state already reflected the event ([`Handler::already_applied`]);
    /// nothing was written.
    Known,
}

/// Handles one event exactly once for `consumer`: inbox insert and effect in one transaction
/// (nothing at all when [`Handler::already_applied`] says the state has it), retried at
/// once up to three times when the handler lost a concurrency race.
///
/// # Errors
/// The handler or the database failed (also after the retries); nothing was committed.
pub async fn handle_one<H: Handler>(
    db: &DatabaseConnection,
    consumer: &str,
    handler: &H,
    event: &Envelope,
) -> anyhow::Result<Outcome> {
    // A failing check is no answer: the event is then handled the ordinary way.
    if handler.already_applied(db, event).await.unwrap_or(false) {
        return Ok(Outcome::Known);
    }
    // A handler that lost an optimistic-concurrency race (ABORTED) tries again at once in a
    // fresh transaction; waiting for a redelivery would add seconds for nothing.
    let mut attempt = 0;
    loop {
        attempt += 1;
        match handle_once(db, consumer, handler, event).await {
            Err(e) if attempt < 4 && is_conflict(&e) => continue,
            other => return other,
        }
    }
}

/// Whether a handler's error is a lost concurrency race worth an immediate retry.
fn is_conflict(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<crate::error::Error>().is_some_and(|e| e.kind() == crate::error::Kind::Aborted))
}

async fn handle_once<H: Handler>(
    db: &DatabaseConnection,
    consumer: &str,
    handler: &H,
    event: &Envelope,
) -> anyhow::Result<Outcome> {
    let txn = crate::db::begin_write(db).await?;
    let outcome = handle_in(&txn, consumer, handler, event).await?;
    match outcome {
        Outcome::Applied => {
            txn.commit().await?;
            handler.committed(event);
        }
        Outcome::Duplicate | Outcome::Known => txn.rollback().await?,
    }
    Ok(outcome)
}

/// The inbox insert and, for an event not seen before, its effect, in `txn`.
async fn handle_in<H: Handler>(
    txn: &DatabaseTransaction,
    consumer: &str,
    handler: &H,
    event: &Envelope,
) -> anyhow::Result<Outcome> {
    let inserted = inbox::Entity::insert(inbox::ActiveModel {
        consumer: Set(consumer.to_string()),
        event_id: Set(event.id.clone()),
        handled_at: Set(Utc::now()),
    })
    .on_conflict_do_nothing_on([inbox::Column::Consumer, inbox::Column::EventId])
    .exec_without_returning(txn)
    .await?;
    if !matches!(inserted, sea_orm::TryInsertResult::Inserted(n) if n > 0) {
        return Ok(Outcome::Duplicate);
    }
    handler.handle(txn, event).await?;
    Ok(Outcome::Applied)
}

/// Handles several events in one transaction: one inbox insert for all of them (those
/// already in the inbox, or repeated within the batch, are duplicates), then
/// [`Handler::handle_many`] with the new ones, then one commit. When any of them fails, or
/// the commit does, the whole batch is undone and every event is handled on its own with
/// [`handle_one`] (the inbox makes that safe), so a failing event is retried and redelivered
/// alone.
pub async fn handle_batch<H: Handler>(
    db: &DatabaseConnection,
    consumer: &str,
    handler: &H,
    events: &[(Envelope, tracing::Span)],
) -> Vec<anyhow::Result<Outcome>> {
    let together = async {
        let txn = crate::db::begin_write(db).await?;
        let mut fresh = record_new(&txn, consumer, events.iter().map(|(e, _)| e.id.as_str())).await?;
        let mut out = Vec::with_capacity(events.len());
        let mut new = Vec::with_capacity(events.len());
        for pair in events {
            // `remove`: the same event twice in one batch is applied once.
            if fresh.remove(pair.0.id.as_str()) {
                new.push(pair);
                out.push(Outcome::Applied);
            } else {
                out.push(Outcome::Duplicate);
            }
        }
        if !new.is_empty() {
            handler.handle_many(&txn, &new).await?;
        }
        txn.commit().await?;
        for (event, _) in &new {
            handler.committed(event);
        }
        anyhow::Ok(out)
    };
    if let Ok(out) = together.await {
        return out.into_iter().map(Ok).collect();
    }
    let mut results = Vec::with_capacity(events.len());
    for (event, span) in events {
        results.push(handle_one(db, consumer, handler, event).instrument(span.clone()).await);
    }
    results
}

/// Records `ids` in `consumer`'s inbox with one statement; returns those not there before.
async fn record_new<'a>(
    txn: &DatabaseTransaction,
    consumer: &str,
    ids: impl Iterator<Item = &'a str>,
) -> anyhow::Result<std::collections::HashSet<String>> {
    let now = Utc::now();
    let rows: Vec<inbox::ActiveModel> = ids
        .map(|id| inbox::ActiveModel {
            consumer: Set(consumer.to_string()),
            event_id: Set(id.to_string()),
            handled_at: Set(now),
        })
        .collect();
    let inserted = inbox::Entity::insert_many(rows)
        .on_conflict_do_nothing_on([inbox::Column::Consumer, inbox::Column::EventId])
        .exec_with_returning_keys(txn)
        .await?;
    Ok(match inserted {
        sea_orm::TryInsertResult::Inserted(keys) => keys.into_iter().map(|(_, id)| id).collect(),
        sea_orm::TryInsertResult::Empty | sea_orm::TryInsertResult::Conflicted => Default::default(),
    })
}

/// How a consumer treats messages it cannot apply, and how long it remembers applied ones.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The consuming service: its dead letters go to `onething.dlq.<service>.<consumer>`.
    pub service: String,
    /// Replicas of the dead-letter stream, should this consumer create it.
    pub replicas: usize,
    /// Redelivery, dead letters, inbox horizon.
    pub settings: crate::config::ConsumerSettings,
}

impl Delivery {
    /// The delay before redelivery `delivered` + 1 of a failing message: the backoff
    /// doubling (×1, ×2, ×4 …) from `retry_backoff_ms`, at most a minute.
    pub fn retry_delay(&self, delivered: i64) -> Duration {
        let base = Duration::from_millis(self.settings.retry_backoff_ms.max(1));
        let step = delivered.clamp(1, 16) as u32 - 1;
        base.saturating_mul(1 << step).min(Duration::from_secs(60))
    }
}

/// Consumes `spec` until `shutdown`, reconnecting after errors. Each message: decode the
/// envelope, [`handle_one`], wake `outbox` (the handler may have written events), then ack.
/// A failed handler gets a redelivery after a growing delay ([`Delivery::retry_delay`]);
/// an undecodable message, a payload the handler cannot decode, or one still failing at its
/// `max_deliver`-th delivery goes to the dead-letter stream and is acknowledged there, so
/// the messages behind it keep flowing.
pub async fn run<H: Handler>(
    js: jetstream::Context,
    db: DatabaseConnection,
    spec: ConsumerSpec,
    handler: H,
    outbox: Option<Outbox>,
    delivery: Delivery,
    shutdown: CancellationToken,
) {
    // Reported from the start, at 0, so the dead-letter alert's query has a series.
    let _ = crate::metrics::metrics()
        .events_dead_lettered
        .get_or_create(&crate::metrics::ConsumerLabels { consumer: spec.name.clone() });
    let mut backoff = Duration::from_millis(200);
    let mut told_waiting = false;
    while !shutdown.is_cancelled() {
        match consume(&js, &db, &spec, &handler, outbox.as_ref(), &delivery, &shutdown).await {
            Ok(()) => break,
            // Another service's stream that its service has not made yet (the mesh starting):
            // expected, so said once, quietly.
            Err(e) if e.downcast_ref::<StreamMissing>().is_some() => {
                if !told_waiting {
                    tracing::info!(consumer = %spec.name, stream = %spec.stream, "waiting for the stream to be created by its service");
                    told_waiting = true;
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
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

/// The durable consumer of `spec`, created, or updated when an earlier version made it with
/// other settings (an upgrade changing filters or ack settings takes effect).
async fn durable(
    stream: &jetstream::stream::Stream,
    spec: &ConsumerSpec,
) -> anyhow::Result<jetstream::consumer::Consumer<pull::Config>> {
    let config = pull::Config {
        durable_name: Some(spec.name.clone()),
        filter_subjects: spec.filter_subjects.clone(),
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        ack_wait: Duration::from_secs(30),
        // Unbounded at the broker: the consumer bounds redelivery itself and puts what it
        // gives up on into the dead-letter stream. A broker bound would drop a message
        // silently when the dead-letter stream could not be written.
        max_deliver: -1,
        ..Default::default()
    };
    let consumer: jetstream::consumer::Consumer<pull::Config> =
        stream.get_or_create_consumer(&spec.name, config.clone()).await?;
    let have = &consumer.cached_info().config;
    let mut filters = have.filter_subjects.clone();
    if filters.is_empty() && !have.filter_subject.is_empty() {
        filters.push(have.filter_subject.clone());
    }
    let (mut want, mut got) = (spec.filter_subjects.clone(), filters);
    want.sort();
    got.sort();
    let max_deliver = if have.max_deliver <= 0 { -1 } else { have.max_deliver };
    if want != got || have.ack_wait != config.ack_wait || max_deliver != -1 || have.ack_policy != config.ack_policy {
        tracing::info!(consumer = %spec.name, "durable consumer settings changed; updating");
        return Ok(stream.update_consumer(config).await?);
    }
    Ok(consumer)
}

/// Deletes `consumer`'s inbox rows older than the horizon. Returns how many went.
///
/// # Errors
/// The database failed; nothing was deleted.
pub async fn prune_inbox(db: &DatabaseConnection, consumer: &str, retain_hours: u64) -> anyhow::Result<u64> {
    use sea_orm::{ColumnTrait, QueryFilter};
    let cutoff = Utc::now() - chrono::Duration::hours(retain_hours as i64);
    Ok(inbox::Entity::delete_many()
        .filter(inbox::Column::Consumer.eq(consumer))
        .filter(inbox::Column::HandledAt.lt(cutoff))
        .exec(db)
        .await?
        .rows_affected)
}

/// Puts `msg` into the dead-letter stream with its original headers and payload, and the
/// consumer, the reason, where it came from and how often it was delivered.
///
/// # Errors
/// NATS did not take it; the caller leaves the message to be redelivered.
pub async fn dead_letter(
    js: &jetstream::Context,
    delivery: &Delivery,
    consumer: &str,
    msg: &jetstream::Message,
    reason: &str,
) -> anyhow::Result<()> {
    // The original headers but the broker's own (Nats-Expected-…, Nats-Rollup … would make
    // the dead-letter stream refuse the letter).
    let mut headers = async_nats::HeaderMap::new();
    for (name, values) in msg.headers.iter().flat_map(|h| h.iter()) {
        let key: &str = name.as_ref();
        if !key.to_ascii_lowercase().starts_with("nats-") {
            for v in values {
                headers.append(key, v.as_str());
            }
        }
    }
    let (stream, seq, delivered) =
        msg.info().map(|i| (i.stream.to_string(), i.stream_sequence, i.delivered)).unwrap_or_default();
    // One reason line, bounded (a header holds no line breaks), and no number in it whole:
    // a database error may quote an ID number.
    let reason: String =
        crate::ids::scrub(reason).chars().map(|c| if c.is_control() { ' ' } else { c }).take(512).collect();
    headers.insert("onething-dlq-consumer", consumer);
    headers.insert("onething-dlq-reason", reason.as_str());
    headers.insert("onething-dlq-stream", stream.as_str());
    headers.insert("onething-dlq-sequence", seq.to_string().as_str());
    headers.insert("onething-dlq-subject", msg.subject.as_str());
    headers.insert("onething-dlq-deliveries", delivered.to_string().as_str());
    // Several consumers may give up on one event: each letter is its own message.
    headers.insert(async_nats::header::NATS_MESSAGE_ID, format!("{consumer}:{stream}:{seq}").as_str());
    let subject = super::nats::dlq_subject(&delivery.service, consumer);
    let ack = match js.publish_with_headers(subject.clone(), headers.clone(), msg.payload.clone()).await {
        Ok(ack) => ack.await,
        Err(e) => return Err(anyhow::Error::new(e).context("publishing a dead letter")),
    };
    if ack.is_err() {
        // Most likely the dead-letter stream is not there yet: make it, then once more.
        super::nats::ensure_dlq_stream(js, delivery.replicas).await?;
        js.publish_with_headers(subject, headers, msg.payload.clone())
            .await
            .context("publishing a dead letter")?
            .await
            .context("waiting for the dead letter's ack")?;
    }
    crate::metrics::metrics()
        .events_dead_lettered
        .get_or_create_owned(&crate::metrics::ConsumerLabels { consumer: consumer.to_string() })
        .inc();
    tracing::error!(consumer, stream = %stream, stream_sequence = seq, deliveries = delivered, reason = %reason, "message moved to the dead-letter stream");
    Ok(())
}

/// Whether a handler's error can never go away by trying again: the event does not decode
/// (its payload, through [`Envelope::decode`] or prost directly, or a header it needs). An
/// event of a type the handler does not know yet is not: a newer release may be rolling out.
fn is_permanent(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<prost::DecodeError>().is_some()
            || c.downcast_ref::<super::EnvelopeError>()
                .is_some_and(|x| !matches!(x, super::EnvelopeError::OtherType(_)))
    })
}

/// Dead-letters `msg` and acknowledges it (terminated); when the dead-letter stream cannot
/// be written, leaves it to be redelivered later instead, so nothing is lost.
async fn give_up(js: &jetstream::Context, delivery: &Delivery, consumer: &str, msg: &jetstream::Message, reason: &str) {
    match dead_letter(js, delivery, consumer, msg, reason).await {
        Ok(()) => {
            if let Err(e) = msg.ack_with(AckKind::Term).await {
                tracing::warn!(consumer, error = %e, "terminating a dead-lettered message failed; it may come once more");
            }
        }
        Err(e) => {
            tracing::warn!(consumer, error = %format!("{e:#}"), "dead-letter stream unavailable; message kept for redelivery");
            let _ = msg.ack_with(AckKind::Nak(Some(delivery.retry_delay(16)))).await;
        }
    }
}

async fn consume<H: Handler>(
    js: &jetstream::Context,
    db: &DatabaseConnection,
    spec: &ConsumerSpec,
    handler: &H,
    outbox: Option<&Outbox>,
    delivery: &Delivery,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let stream = js.get_stream(&spec.stream).await.map_err(|e| match e.kind() {
        jetstream::context::GetStreamErrorKind::JetStream(j)
            if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
        {
            anyhow::Error::new(StreamMissing)
        }
        _ => anyhow::Error::new(e),
    })?;
    let mut consumer = durable(&stream, spec).await?;
    let mut messages = consumer.messages().await?;
    let lag = crate::metrics::metrics()
        .consumer_lag
        .get_or_create_owned(&crate::metrics::ConsumerLabels { consumer: spec.name.clone() });
    // Each delivery tells how many are still pending; while idle the consumer's info does.
    let mut idle = tokio::time::interval(Duration::from_secs(15));
    // The inbox forgets what is past the duplicate horizon, checked now and then.
    let mut prune = tokio::time::interval(Duration::from_secs(600));
    loop {
        let delivered = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = prune.tick() => {
                match prune_inbox(db, &spec.name, delivery.settings.inbox_retain_hours).await {
                    Ok(n) if n > 0 => tracing::info!(consumer = %spec.name, pruned = n, "old inbox rows deleted"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(consumer = %spec.name, error = %format!("{e:#}"), "pruning the inbox failed"),
                }
                continue;
            }
            _ = idle.tick() => {
                if let Ok(info) = consumer.info().await {
                    lag.set(info.num_pending as i64);
                }
                continue;
            }
            next = messages.next() => match next {
                Some(first) => vec![first],
                None => anyhow::bail!("message stream ended"),
            },
        };
        // A batched consumer gathers what arrives within BATCH_LINGER after the first event
        // (up to `spec.batch`): one transaction for several events even under light load.
        let mut delivered = delivered;
        if spec.batch > 1 {
            let until = tokio::time::Instant::now() + BATCH_LINGER;
            while delivered.len() < spec.batch {
                match tokio::time::timeout_at(until, messages.next()).await {
                    Ok(Some(m)) => delivered.push(m),
                    // The stream ended or time is up: handle what came; an ended stream
                    // shows again at the next read.
                    Ok(None) | Err(_) => break,
                }
            }
        }
        // The messages, and beside them (same order) their events with their spans.
        let (mut msgs, mut events) = (Vec::with_capacity(delivered.len()), Vec::with_capacity(delivered.len()));
        let mut broken = None;
        for m in delivered {
            let msg = match m {
                Ok(msg) => msg,
                Err(e) => {
                    // Handle what came before it; the rest is redelivered after reconnecting.
                    broken = Some(e);
                    break;
                }
            };
            if let Ok(info) = msg.info() {
                lag.set(info.pending as i64);
            }
            match Envelope::from_nats(msg.headers.as_ref(), msg.payload.clone()) {
                Ok(event) => {
                    let span = consume_span(&msg, &event, &spec.name);
                    events.push((event, span));
                    msgs.push(msg);
                }
                Err(e) => {
                    crate::metrics::metrics()
                        .events_consumed
                        .get_or_create(&crate::metrics::ConsumeLabels {
                            consumer: spec.name.clone(),
                            subject: msg.subject.to_string(),
                            outcome: "dead_lettered".into(),
                        })
                        .inc();
                    give_up(js, delivery, &spec.name, &msg, &format!("undecodable event: {e}")).await;
                }
            }
        }
        let results = match events.as_slice() {
            [] => Vec::new(),
            [(event, span)] => vec![handle_one(db, &spec.name, handler, event).instrument(span.clone()).await],
            more => handle_batch(db, &spec.name, handler, more).await,
        };
        let mut applied = false;
        for ((msg, (event, _)), result) in msgs.iter().zip(&events).zip(results) {
            let outcome = match &result {
                Ok(Outcome::Applied) => "applied",
                Ok(Outcome::Duplicate) => "duplicate",
                Ok(Outcome::Known) => "known",
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
                    applied |= outcome == Outcome::Applied;
                    if let Err(e) = msg.ack().await {
                        // The effect is committed; a redelivery will be recognised as a duplicate.
                        tracing::warn!(consumer = %spec.name, error = %e, "ack failed");
                    }
                }
                Err(e) => {
                    let delivered = msg.info().map_or(1, |i| i.delivered);
                    // A good event at a bad moment (the database away, a peer down) is
                    // retried for as long as that lasts, never dead-lettered.
                    let exhausted =
                        delivered >= i64::from(delivery.settings.max_deliver) && !crate::error::is_retryable(&e);
                    if is_permanent(&e) || exhausted {
                        give_up(js, delivery, &spec.name, msg, &format!("{e:#}")).await;
                    } else {
                        let delay = delivery.retry_delay(delivered);
                        let error = crate::ids::scrub(&format!("{e:#}"));
                        tracing::warn!(consumer = %spec.name, event_id = %event.id, delivered, retry_in_ms = delay.as_millis() as u64, %error, "handler failed; redelivery later");
                        let _ = msg.ack_with(AckKind::Nak(Some(delay))).await;
                    }
                }
            }
        }
        // A handler may have written events (a waiting case decided): send them now.
        if let (true, Some(o)) = (applied, outbox) {
            o.wake();
        }
        if let Some(e) = broken {
            return Err(e.into());
        }
    }
}

/// The consumer's stream does not exist (yet).
#[derive(Debug)]
struct StreamMissing;

impl std::fmt::Display for StreamMissing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stream not found")
    }
}

impl std::error::Error for StreamMissing {}

/// The consumer span of one event, a child of the span that published it.
fn consume_span(msg: &jetstream::Message, event: &Envelope, consumer: &str) -> tracing::Span {
    let span = tracing::info_span!(
        "event.consume",
        otel.kind = "consumer",
        messaging.system = "nats",
        messaging.operation = "process",
        messaging.destination.name = %msg.subject,
        messaging.message.id = %event.id,
        messaging.consumer.group.name = %consumer,
        case_id = tracing::field::Empty,
        bundle_id = tracing::field::Empty,
    );
    telemetry::join_event(&span, event.traceparent.as_deref(), &event.subject);
    span
}
