//! Idempotent consumer: a durable JetStream pull consumer whose handler runs in a database
//! transaction that also records the event id in the inbox ([`super::idempotent`]): a
//! redelivered event finds its id and does nothing. Failures are redelivered with backoff;
//! what can never apply goes to the dead letters ([`super::dlq`]).

use super::{
    cloudevents::Envelope,
    dlq::{give_up, is_permanent},
    idempotent::{Outcome, handle_batch, handle_one, prune_inbox},
    outbox::Outbox,
};
use crate::telemetry;
use async_nats::jetstream::{self, AckKind, consumer::pull};
use futures::StreamExt;
use sea_orm::{DatabaseConnection, DatabaseTransaction};
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

/// Consumes `spec` until `shutdown` or until the message stream breaks (the caller
/// reconnects).
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
        let first = tokio::select! {
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
                Some(first) => first,
                None => anyhow::bail!("message stream ended"),
            },
        };
        let (msgs, broken) = received(gather(first, &mut messages, spec.batch).await, &lag);
        let (msgs, events) = decode(js, delivery, &spec.name, msgs).await;
        let results = match events.as_slice() {
            [] => Vec::new(),
            [(event, span)] => vec![handle_one(db, &spec.name, handler, event).instrument(span.clone()).await],
            more => handle_batch(db, &spec.name, handler, more).await,
        };
        let applied = settle(js, delivery, &spec.name, &msgs, &events, results).await;
        // A handler may have written events (a waiting case decided): send them now.
        if let (true, Some(o)) = (applied, outbox) {
            o.wake();
        }
        if let Some(e) = broken {
            return Err(e.into());
        }
    }
}

/// The messages of a delivery up to the first broken one (the rest is redelivered after
/// reconnecting), with that breakage; `lag` follows what each says is still pending.
fn received<E>(
    delivered: Vec<Result<jetstream::Message, E>>,
    lag: &prometheus_client::metrics::gauge::Gauge,
) -> (Vec<jetstream::Message>, Option<E>) {
    let mut msgs = Vec::with_capacity(delivered.len());
    for m in delivered {
        match m {
            Ok(msg) => {
                if let Ok(info) = msg.info() {
                    lag.set(info.pending as i64);
                }
                msgs.push(msg);
            }
            Err(e) => return (msgs, Some(e)),
        }
    }
    (msgs, None)
}

/// The `first` delivery and, for a batched consumer, what arrives within [`BATCH_LINGER`]
/// after it (up to `batch`): one transaction for several events even under light load.
async fn gather<T, S: futures::Stream<Item = T> + Unpin>(first: T, messages: &mut S, batch: usize) -> Vec<T> {
    let mut delivered = vec![first];
    let until = tokio::time::Instant::now() + BATCH_LINGER;
    while delivered.len() < batch {
        match tokio::time::timeout_at(until, messages.next()).await {
            Ok(Some(m)) => delivered.push(m),
            // The stream ended or time is up: handle what came; an ended stream shows again
            // at the next read.
            Ok(None) | Err(_) => break,
        }
    }
    delivered
}

/// Counts one message of `consumer` on `subject` with its outcome.
pub(super) fn count_consumed(consumer: &str, subject: &str, outcome: &str) {
    crate::metrics::metrics()
        .events_consumed
        .get_or_create(&crate::metrics::ConsumeLabels {
            consumer: consumer.to_string(),
            subject: subject.to_string(),
            outcome: outcome.into(),
        })
        .inc();
}

/// The messages that are events, each with its event and span (same order); a message that
/// is no event goes to the dead letters at once.
async fn decode(
    js: &jetstream::Context,
    delivery: &Delivery,
    consumer: &str,
    delivered: Vec<jetstream::Message>,
) -> (Vec<jetstream::Message>, Vec<(Envelope, tracing::Span)>) {
    let (mut msgs, mut events) = (Vec::with_capacity(delivered.len()), Vec::with_capacity(delivered.len()));
    for msg in delivered {
        match Envelope::from_nats(msg.headers.as_ref(), msg.payload.clone()) {
            Ok(event) => {
                let span = consume_span(&msg, &event, consumer);
                events.push((event, span));
                msgs.push(msg);
            }
            Err(e) => {
                give_up(js, delivery, consumer, &msg, &format!("undecodable event: {e}")).await;
            }
        }
    }
    (msgs, events)
}

/// Acknowledges each handled message, or schedules its redelivery with backoff, or (for a
/// failure trying again cannot mend, or one past `max_deliver` that is not passing) gives
/// it to the dead letters. Says whether any event was applied.
async fn settle(
    js: &jetstream::Context,
    delivery: &Delivery,
    consumer: &str,
    msgs: &[jetstream::Message],
    events: &[(Envelope, tracing::Span)],
    results: Vec<anyhow::Result<Outcome>>,
) -> bool {
    let mut applied = false;
    for ((msg, (event, _)), result) in msgs.iter().zip(events).zip(results) {
        let e = match result {
            Ok(outcome) => {
                let label = match outcome {
                    Outcome::Applied => "applied",
                    Outcome::Duplicate => "duplicate",
                    Outcome::Known => "known",
                };
                count_consumed(consumer, &msg.subject, label);
                applied |= outcome == Outcome::Applied;
                if let Err(e) = msg.ack().await {
                    // The effect is committed; a redelivery will be recognised as a duplicate.
                    tracing::warn!(consumer, error = %e, "ack failed");
                }
                continue;
            }
            Err(e) => e,
        };
        let delivered = msg.info().map_or(1, |i| i.delivered);
        // A good event at a bad moment (the database away, a peer down) is retried for as
        // long as that lasts, never dead-lettered.
        let exhausted = delivered >= i64::from(delivery.settings.max_deliver) && !crate::error::is_retryable(&e);
        if is_permanent(&e) || exhausted {
            give_up(js, delivery, consumer, msg, &format!("{e:#}")).await;
        } else {
            count_consumed(consumer, &msg.subject, "failed");
            let delay = delivery.retry_delay(delivered);
            let error = crate::ids::scrub(&format!("{e:#}"));
            tracing::warn!(consumer, event_id = %event.id, delivered, retry_in_ms = delay.as_millis() as u64, %error, "handler failed; redelivery later");
            let _ = msg.ack_with(AckKind::Nak(Some(delay))).await;
        }
    }
    applied
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
