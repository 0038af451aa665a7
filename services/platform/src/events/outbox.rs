//! Transactional outbox: [`Outbox::enqueue`] writes an event in the caller's transaction, so
//! the event exists exactly when the state change does. The [`Relay`] publishes unsent rows
//! to JetStream in order with `Nats-Msg-Id` = event id (a publish repeated after a crash is
//! dropped by the broker) and marks them sent once acknowledged (many at once, a moment
//! later; until then it remembers which went). NATS down: rows wait.
//!
//! A transaction that creates the thing its events are about (a new case, a new bundle)
//! may hand its rows to the relay after committing ([`Outbox::enqueue_new`]): the relay
//! publishes them without reading them back. No older event of a new thing can be waiting,
//! and a later one is written only after this commit, when reading the outbox finds these
//! rows too and publishes them first: each thing's events still leave in order.

use super::cloudevents::{Envelope, OutgoingEvent};
use crate::{config::OutboxSettings, store::outbox as row, telemetry};
use async_nats::jetstream;
use chrono::Utc;
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait},
};
use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The producing side of a service: writes events into its outbox.
#[derive(Clone, Debug)]
pub struct Outbox {
    source: String,
    signals: Arc<Signals>,
}

/// What writers tell the relay.
#[derive(Debug, Default)]
struct Signals {
    /// Wakes the relay.
    wake: Notify,
    /// Rows were committed that the relay must read from the outbox.
    read_wanted: AtomicBool,
    /// Committed rows handed over ([`NewEvents::hand_over`]), to publish without reading.
    handed: Mutex<Vec<row::Model>>,
}

/// Rows of new things' events written in a transaction not yet committed: after the
/// commit, [`NewEvents::hand_over`] gives them to the relay. Dropped instead (the
/// transaction rolled back, or the commit failed), nothing is handed over; rows that did
/// commit are then found when the relay next reads the outbox (at the latest one poll
/// interval later).
#[must_use = "hand the rows to the relay after the commit"]
#[derive(Debug)]
pub struct NewEvents {
    rows: Vec<row::Model>,
    signals: Arc<Signals>,
}

impl NewEvents {
    /// The event ids, in order.
    pub fn ids(&self) -> Vec<String> {
        self.rows.iter().map(|r| r.event_id.clone()).collect()
    }

    /// Gives the committed rows to the relay. Call only after the commit succeeded.
    pub fn hand_over(self) {
        if self.rows.is_empty() {
            return;
        }
        if let Ok(mut handed) = self.signals.handed.lock() {
            handed.extend(self.rows);
        } else {
            // Never poisoned in practice; read them back instead.
            self.signals.read_wanted.store(true, Ordering::Release);
        }
        self.signals.wake.notify_one();
    }
}

impl Outbox {
    /// An outbox whose events carry `ce-source` = `/onething/<service>`.
    pub fn new(service: &str) -> Self {
        Self { source: format!("/onething/{service}"), signals: Arc::new(Signals::default()) }
    }

    /// Writes `event` in `txn` (any connection; pass the transaction of the state change).
    /// The current span's trace context is stored with it. Returns the event id.
    ///
    /// # Errors
    /// The database refused the insert; the caller's transaction should roll back.
    pub async fn enqueue<C: ConnectionTrait>(&self, txn: &C, event: OutgoingEvent) -> Result<String, sea_orm::DbErr> {
        let mut ids = self.enqueue_all(txn, vec![event]).await?;
        Ok(ids.pop().unwrap_or_default())
    }

    /// Writes `events`, in this order, with one statement (a state change that emits
    /// several events costs one round trip, not one per event). Returns their ids.
    ///
    /// # Errors
    /// As [`Outbox::enqueue`].
    pub async fn enqueue_all<C: ConnectionTrait>(
        &self,
        txn: &C,
        events: Vec<OutgoingEvent>,
    ) -> Result<Vec<String>, sea_orm::DbErr> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self.rows(events);
        let ids = rows.iter().map(|r| r.event_id.clone()).collect();
        // Sequence numbers follow the order of the rows in one multi-row insert.
        row::Entity::insert_many(rows.into_iter().map(active)).exec_without_returning(txn).await?;
        Ok(ids)
    }

    /// Writes `events` like [`Outbox::enqueue_all`], for a transaction that creates the
    /// thing they are about (every event's `ce-subject` new in it): after the commit,
    /// [`NewEvents::hand_over`] gives them to the relay, which publishes them without
    /// reading them back. Never for events of something that existed before the
    /// transaction: an older event of it could still be waiting and would be overtaken.
    ///
    /// # Errors
    /// As [`Outbox::enqueue`].
    pub async fn enqueue_new<C: ConnectionTrait>(
        &self,
        txn: &C,
        events: Vec<OutgoingEvent>,
    ) -> Result<NewEvents, sea_orm::DbErr> {
        let mut rows = self.rows(events);
        if !rows.is_empty() {
            let mut seqs =
                row::Entity::insert_many(rows.iter().cloned().map(active)).exec_with_returning_keys(txn).await?;
            // Numbers are taken in the order of the rows; RETURNING's order is not promised.
            seqs.sort_unstable();
            if seqs.len() != rows.len() {
                return Err(sea_orm::DbErr::Custom("outbox insert returned no sequence numbers".into()));
            }
            for (r, seq) in rows.iter_mut().zip(seqs) {
                r.seq = seq;
            }
        }
        Ok(NewEvents { rows, signals: self.signals.clone() })
    }

    /// The rows of `events`, stamped now with this outbox's source and the current trace.
    fn rows(&self, events: Vec<OutgoingEvent>) -> Vec<row::Model> {
        let now = Utc::now();
        let traceparent = telemetry::current_traceparent();
        events
            .into_iter()
            .map(|event| row::Model {
                seq: 0,
                event_id: uuid::Uuid::now_v7().to_string(),
                subject: event.subject,
                ce_type: event.ce_type,
                ce_source: self.source.clone(),
                ce_subject: event.ce_subject,
                ce_time: now,
                traceparent: traceparent.clone(),
                payload: event.payload,
                created_at: now,
                sent_at: None,
                attempts: 0,
            })
            .collect()
    }

    /// Tells the relay that rows were committed; call after the transaction commits.
    pub fn wake(&self) {
        self.signals.read_wanted.store(true, Ordering::Release);
        self.signals.wake.notify_one();
    }
}

/// A row to insert: the sequence number is the database's.
fn active(r: row::Model) -> row::ActiveModel {
    row::ActiveModel {
        event_id: Set(r.event_id),
        subject: Set(r.subject),
        ce_type: Set(r.ce_type),
        ce_source: Set(r.ce_source),
        ce_subject: Set(r.ce_subject),
        ce_time: Set(r.ce_time),
        traceparent: Set(r.traceparent),
        payload: Set(r.payload),
        created_at: Set(r.created_at),
        sent_at: Set(None),
        attempts: Set(0),
        ..Default::default()
    }
}

/// Publishes outbox rows to JetStream.
pub struct Relay {
    db: DatabaseConnection,
    js: jetstream::Context,
    signals: Arc<Signals>,
    settings: OutboxSettings,
    department: String,
    replicas: usize,
    /// Published rows not yet marked sent: marked together a moment later, one statement
    /// for many publishes, and left out of the next rounds meanwhile. (Not a "published up
    /// to" mark: transactions commit out of sequence order, so a lower row can appear after
    /// a higher one went.) A crash before marking republishes them, which JetStream drops as
    /// duplicates (the event id is the message id) and consumers would ignore anyway.
    unmarked: std::sync::Mutex<Vec<i64>>,
}

/// How long published rows may wait to be marked sent.
const MARK_EVERY: Duration = Duration::from_millis(200);

impl Relay {
    /// A relay for `outbox`'s rows in `db`, ensuring `department`'s stream before publishing.
    pub fn new(
        outbox: &Outbox,
        db: DatabaseConnection,
        js: jetstream::Context,
        department: &str,
        replicas: usize,
        settings: OutboxSettings,
    ) -> Self {
        Self {
            db,
            js,
            signals: outbox.signals.clone(),
            settings,
            department: department.to_string(),
            replicas,
            unmarked: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Publishes one batch of unsent rows read from the outbox, with the rows handed over
    /// meanwhile, in sequence order, and notes the acknowledged ones to be marked sent.
    /// Returns how many were sent. Public so tests can drive the relay step by step.
    ///
    /// # Errors
    /// The database failed, or NATS did not acknowledge a publish (the rows stay unsent).
    pub async fn publish_pending(&self) -> anyhow::Result<usize> {
        self.publish(true).await
    }

    /// Publishes only the rows handed over since the last round ([`NewEvents::hand_over`]),
    /// without reading the outbox. Public so tests can drive the relay step by step.
    ///
    /// # Errors
    /// As [`Relay::publish_pending`].
    pub async fn publish_handed(&self) -> anyhow::Result<usize> {
        self.publish(false).await
    }

    async fn publish(&self, read: bool) -> anyhow::Result<usize> {
        let unmarked = self.unmarked.lock().map_err(|_| anyhow::anyhow!("unmarked rows poisoned"))?.clone();
        // At most a batch of handed rows a round, like a read; the rest wait for the next.
        let handed: Vec<row::Model> = {
            let mut h = self.signals.handed.lock().map_err(|_| anyhow::anyhow!("handed rows poisoned"))?;
            let n = h.len().min(self.settings.batch_size as usize);
            h.drain(..n).collect()
        };
        let mut rows = if read {
            let mut query = row::Entity::find().filter(row::Column::SentAt.is_null());
            if !unmarked.is_empty() {
                query = query.filter(row::Column::Seq.is_not_in(unmarked.clone()));
            }
            query.order_by_asc(row::Column::Seq).limit(self.settings.batch_size).all(&self.db).await?
        } else {
            Vec::new()
        };
        // A handed row the outbox read also returned, or one already published, goes once.
        let known: std::collections::HashSet<i64> = rows.iter().map(|r| r.seq).chain(unmarked).collect();
        rows.extend(handed.into_iter().filter(|r| !known.contains(&r.seq)));
        if rows.is_empty() {
            return Ok(0);
        }
        rows.sort_by_key(|r| r.seq);
        // Pipeline the publishes, then collect the acks in order.
        let mut pending = Vec::with_capacity(rows.len());
        let mut failure = None;
        for r in &rows {
            let envelope = Envelope {
                id: r.event_id.clone(),
                source: r.ce_source.clone(),
                ce_type: r.ce_type.clone(),
                subject: r.ce_subject.clone(),
                time: r.ce_time,
                traceparent: r.traceparent.clone(),
                data: r.payload.clone().into(),
            };
            let span = tracing::info_span!(
                "outbox.publish",
                otel.kind = "producer",
                messaging.system = "nats",
                messaging.operation = "publish",
                messaging.destination.name = %r.subject,
                messaging.message.id = %r.event_id,
                case_id = tracing::field::Empty,
                bundle_id = tracing::field::Empty,
            );
            telemetry::join_event(&span, r.traceparent.as_deref(), &r.ce_subject);
            let publish = self.js.publish_with_headers(r.subject.clone(), envelope.to_headers(), envelope.data.clone());
            match tracing::Instrument::instrument(publish, span).await {
                Ok(ack) => pending.push((r.seq, ack)),
                Err(e) => {
                    failure = Some(anyhow::Error::new(e).context("publishing to JetStream"));
                    break;
                }
            }
        }
        let mut sent = std::collections::HashSet::with_capacity(pending.len());
        for (seq, ack) in pending {
            match ack.await {
                Ok(_) => {
                    sent.insert(seq);
                }
                Err(e) => {
                    failure.get_or_insert_with(|| anyhow::Error::new(e).context("waiting for JetStream ack"));
                }
            }
        }
        let m = crate::metrics::metrics();
        for r in &rows {
            // Both series of a subject exist from its first round: a first failure then
            // shows as a rise from 0 (rate() sees it), and the dashboard shows 0, not nothing.
            let labels = crate::metrics::SubjectLabels { subject: r.subject.clone() };
            let published = m.events_published.get_or_create_owned(&labels);
            let failed = m.events_publish_failed.get_or_create_owned(&labels);
            if sent.contains(&r.seq) {
                published.inc();
            } else if failure.is_some() {
                failed.inc();
            }
        }
        self.unmarked.lock().map_err(|_| anyhow::anyhow!("unmarked rows poisoned"))?.extend(&sent);
        if let Some(e) = failure {
            let unsent: Vec<i64> = rows.iter().map(|r| r.seq).filter(|s| !sent.contains(s)).collect();
            row::Entity::update_many()
                .col_expr(row::Column::Attempts, Expr::col(row::Column::Attempts).add(Expr::value(1)))
                .filter(row::Column::Seq.is_in(unsent))
                .exec(&self.db)
                .await?;
            return Err(e);
        }
        Ok(sent.len())
    }

    /// Marks the published rows sent, in one statement.
    ///
    /// # Errors
    /// The database failed; the rows stay noted and are marked next time.
    pub async fn mark_sent(&self) -> anyhow::Result<usize> {
        let seqs = std::mem::take(&mut *self.unmarked.lock().map_err(|_| anyhow::anyhow!("unmarked rows poisoned"))?);
        if seqs.is_empty() {
            return Ok(0);
        }
        let marked = row::Entity::update_many()
            .col_expr(row::Column::SentAt, Expr::value(Utc::now()))
            .filter(row::Column::Seq.is_in(seqs.clone()))
            .exec(&self.db)
            .await;
        if let Err(e) = marked {
            if let Ok(mut u) = self.unmarked.lock() {
                u.extend(seqs);
            }
            return Err(e.into());
        }
        Ok(seqs.len())
    }

    /// Number of rows not yet acknowledged by JetStream.
    ///
    /// # Errors
    /// The database failed.
    pub async fn backlog(&self) -> anyhow::Result<u64> {
        use sea_orm::PaginatorTrait;
        Ok(row::Entity::find().filter(row::Column::SentAt.is_null()).count(&self.db).await?)
    }

    /// Sets the outbox gauges: rows not yet acknowledged and the age of the oldest.
    ///
    /// # Errors
    /// The database failed.
    pub async fn record_backlog(&self) -> anyhow::Result<()> {
        let oldest = row::Entity::find()
            .filter(row::Column::SentAt.is_null())
            .order_by_asc(row::Column::Seq)
            .one(&self.db)
            .await?;
        let age = oldest.map_or(0, |r| Ord::max((Utc::now() - r.created_at).num_seconds(), 0));
        let labels = crate::metrics::ServiceLabels { service: self.department.clone() };
        let backlog = self.backlog().await? as i64;
        let m = crate::metrics::metrics();
        m.outbox_backlog.get_or_create(&labels).set(backlog);
        m.outbox_oldest_age.get_or_create(&labels).set(age);
        Ok(())
    }

    /// Runs until `shutdown`: publishes whenever woken or every poll interval, backs off
    /// while NATS is unavailable, prunes old sent rows. On shutdown, one last attempt.
    pub async fn run(self, shutdown: CancellationToken) {
        let poll = Duration::from_millis(Ord::max(self.settings.poll_interval_ms, 10));
        let mut backoff = Duration::from_millis(100);
        let mut stream_ready = false;
        let mut last_prune = tokio::time::Instant::now();
        let mut last_gauges: Option<tokio::time::Instant> = None;
        let mut gauges_stale = true;
        let mut last_mark = tokio::time::Instant::now();
        // The outbox is read when a writer asks (`wake`), every poll interval (rows of
        // other replicas, rows whose writer did not hand them over), and after a full
        // batch; woken only by handed-over rows, the relay publishes just those.
        let mut last_read: Option<tokio::time::Instant> = None;
        let mut full = false;
        loop {
            if !stream_ready {
                match super::nats::ensure_stream(&self.js, &self.department, self.replicas).await {
                    Ok(()) => stream_ready = true,
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "stream not ready; outbox waits")
                    }
                }
            }
            let mut delay = poll;
            if stream_ready {
                let read = self.signals.read_wanted.swap(false, Ordering::AcqRel)
                    || full
                    || last_read.is_none_or(|t| t.elapsed() >= poll);
                if read {
                    last_read = Some(tokio::time::Instant::now());
                }
                match self.publish(read).await {
                    Ok(n) => {
                        gauges_stale |= n > 0;
                        backoff = Duration::from_millis(100);
                        full = n as u64 >= self.settings.batch_size;
                        if full {
                            delay = Duration::ZERO;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), retry_in_ms = backoff.as_millis() as u64, "outbox relay failed; rows kept");
                        delay = backoff;
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                        stream_ready = false;
                    }
                }
            }
            if !stream_ready {
                // Handed rows unsent are in the outbox: read them back once NATS is there.
                if let Ok(mut handed) = self.signals.handed.lock() {
                    handed.clear();
                }
                self.signals.read_wanted.store(true, Ordering::Release);
            }
            // Published rows are marked sent together, at most MARK_EVERY after publishing.
            if self.unmarked.lock().is_ok_and(|u| !u.is_empty()) {
                let waited = last_mark.elapsed();
                if waited >= MARK_EVERY {
                    if let Err(e) = self.mark_sent().await {
                        tracing::warn!(error = %format!("{e:#}"), "marking outbox rows sent failed; retrying");
                    }
                    last_mark = tokio::time::Instant::now();
                }
                delay = delay.min(MARK_EVERY.saturating_sub(waited).max(Duration::from_millis(10)));
            } else {
                last_mark = tokio::time::Instant::now();
            }
            // At most every second after publishing, every 5 seconds while stuck or idle.
            let due = if gauges_stale { Duration::from_secs(1) } else { Duration::from_secs(5) };
            if last_gauges.is_none_or(|t| t.elapsed() >= due) {
                gauges_stale = false;
                if let Err(e) = self.record_backlog().await {
                    tracing::warn!(error = %format!("{e:#}"), "reading the outbox backlog failed");
                }
                last_gauges = Some(tokio::time::Instant::now());
            }
            if last_prune.elapsed() > Duration::from_secs(600) {
                self.prune().await;
                last_prune = tokio::time::Instant::now();
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.signals.wake.notified() => {}
                _ = tokio::time::sleep(delay) => {}
            }
        }
        // Drain: whatever committed before shutdown gets one more chance to leave now.
        match tokio::time::timeout(Duration::from_secs(5), self.publish_pending()).await {
            Ok(Ok(n)) if n > 0 => tracing::info!(sent = n, "outbox drained at shutdown"),
            Ok(Err(e)) => {
                tracing::warn!(error = %format!("{e:#}"), "outbox not drained; rows stay for the next start")
            }
            _ => {}
        }
        if let Err(e) = self.mark_sent().await {
            tracing::warn!(error = %format!("{e:#}"), "published rows not marked sent; they go again (as duplicates) next start");
        }
    }

    /// Deletes sent rows written more than `retain_sent_hours` ago (by creation time, which
    /// is indexed; rows are sent moments after they are written). A row still waiting for
    /// NATS stays however old it is. Returns how many went. Public so tests can call it.
    ///
    /// # Errors
    /// The database failed; nothing was deleted.
    pub async fn prune_sent(&self) -> anyhow::Result<u64> {
        let cutoff = Utc::now() - chrono::Duration::hours(self.settings.retain_sent_hours as i64);
        Ok(row::Entity::delete_many()
            .filter(row::Column::CreatedAt.lt(cutoff))
            .filter(row::Column::SentAt.is_not_null())
            .exec(&self.db)
            .await?
            .rows_affected)
    }

    async fn prune(&self) {
        if let Err(e) = self.prune_sent().await {
            tracing::warn!(error = %e, "pruning sent outbox rows failed");
        }
    }
}
