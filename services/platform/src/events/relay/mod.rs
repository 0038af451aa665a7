//! The relay: publishes outbox rows to JetStream with `Nats-Msg-Id` = event id (a publish
//! repeated after a crash is dropped by the broker) and marks them sent once acknowledged
//! (many at once, a moment later; until then it remembers which went), with the stream
//! sequence of each ack. NATS down: rows wait.
//!
//! One bad row stops nothing: a round publishes its rows in waves (runs of consecutive rows
//! with at most one row per aggregate, `ce-subject`), each wave pipelined; an aggregate
//! whose row failed to publish or to be acknowledged sends nothing more this round, so its
//! events never overtake each other, while the other aggregates' rows go. A row the broker
//! can never take (larger than its `max_payload` or the stream's limit), or one failing
//! `max_attempts` times while the broker takes other rows, moves to the quarantine (`outbox_dead`); its aggregate's later rows
//! wait for an operator's retry or drop, and every other aggregate's rows flow.

mod round;
mod run;

use super::outbox::{Outbox, Signals, envelope};
use crate::{config::OutboxSettings, store::outbox as row, telemetry};
use async_nats::jetstream;
use chrono::Utc;
use round::{Failed, Fault, waves};
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{CaseStatement, Expr, ExprTrait},
};
use std::{
    collections::HashSet,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Publishes outbox rows to JetStream.
pub struct Relay {
    db: DatabaseConnection,
    js: jetstream::Context,
    signals: Arc<Signals>,
    settings: OutboxSettings,
    department: String,
    replicas: usize,
    /// Published rows not yet marked sent, with the stream sequence of their ack: marked
    /// together a moment later, one statement for many publishes, and left out of the next
    /// rounds meanwhile. (Not a "published up to" mark: transactions commit out of sequence
    /// order, so a lower row can appear after a higher one went.) A crash before marking
    /// republishes them, which JetStream drops as duplicates (the event id is the message
    /// id) and consumers would ignore anyway.
    unmarked: std::sync::Mutex<Vec<(i64, u64)>>,
}

/// The longest a relay round, a marking or a gauge reading may take before it is given up.
const ROUND_LIMIT: Duration = Duration::from_secs(30);

/// The longest one publish may take to be sent, or its ack to come.
const CALL_LIMIT: Duration = Duration::from_secs(10);

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
        let rows = self.round_rows(read).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let (sent, failed) = self.publish_rows(&rows).await;
        count_round(&rows, &sent, &failed);
        let n = sent.len();
        if failed.is_empty() {
            return Ok(n);
        }
        // Rows left behind are in the outbox: the next round reads them again.
        self.read_back();
        // A failure that may be the row's own counts only when the broker took other rows
        // this round; when nothing went, the broker is away or refusing everything (a full
        // stream answers its info but takes nothing), and that is no row's fault.
        let mut first = None;
        for f in failed {
            let counts = match f.fault {
                Fault::Permanent => true,
                Fault::Row => n > 0,
                Fault::Broker => false,
            };
            if counts {
                self.failed_attempt(f.row, &f.error, f.fault == Fault::Permanent).await?;
            }
            first.get_or_insert(f.error);
        }
        match first {
            Some(e) if n == 0 => Err(e),
            _ => Ok(n),
        }
    }

    /// The rows of one round, in sequence order: those handed over by writers (at most a
    /// batch), with a batch read from the outbox when `read`; none twice, none already
    /// published, none of an aggregate held in the quarantine.
    async fn round_rows(&self, read: bool) -> anyhow::Result<Vec<row::Model>> {
        let unmarked: Vec<i64> =
            self.unmarked.lock().map_err(|_| anyhow::anyhow!("unmarked rows poisoned"))?.iter().map(|u| u.0).collect();
        // At most a batch of handed rows a round, like a read; the rest wait for the next.
        let handed: Vec<row::Model> = {
            let mut h = self.signals.handed.lock().map_err(|_| anyhow::anyhow!("handed rows poisoned"))?;
            let n = h.len().min(self.settings.batch_size as usize);
            h.drain(..n).collect()
        };
        // An aggregate with a quarantined event publishes nothing more until an operator
        // retries or drops it: its events never overtake each other. Asked every round, so
        // a row another replica quarantined holds this one's rows at once.
        let mut rows = if read {
            let mut query = row::Entity::find().filter(row::Column::SentAt.is_null());
            if !unmarked.is_empty() {
                query = query.filter(row::Column::Seq.is_not_in(unmarked.clone()));
            }
            query
                .filter(row::Column::CeSubject.not_in_subquery(super::quarantine::aggregates()))
                .order_by_asc(row::Column::Seq)
                .limit(self.settings.batch_size)
                .all(&self.db)
                .await?
        } else {
            Vec::new()
        };
        // A handed row the outbox read also returned, or one already published, goes once.
        let mut known: HashSet<i64> = rows.iter().map(|r| r.seq).chain(unmarked.iter().copied()).collect();
        let handed: Vec<row::Model> = handed.into_iter().filter(|r| known.insert(r.seq)).collect();
        if !handed.is_empty() {
            // Handed rows are of new aggregates (`Outbox::enqueue_new`), but an earlier row of
            // one may have been quarantined since, here or by another replica.
            rows.extend(handed);
            let held = super::quarantine::held(&self.db, rows.iter().map(|r| r.ce_subject.as_str())).await?;
            rows.retain(|r| !held.contains(&r.ce_subject));
        }
        rows.sort_by_key(|r| r.seq);
        Ok(rows)
    }

    /// Publishes `rows` (in sequence order) wave by wave (see [`waves`]); an aggregate with
    /// a failed row publishes nothing more this round. Each ack is noted to be marked sent
    /// as it comes, so a round given up half way (the broker gone quiet) keeps what went.
    /// Returns the acknowledged rows with their stream sequences, and the failed ones.
    async fn publish_rows<'a>(&self, rows: &'a [row::Model]) -> (Vec<(i64, u64)>, Vec<Failed<'a>>) {
        let waves = waves(rows);
        let max_payload = self.js.client().server_info().max_payload;
        let mut blocked: HashSet<&str> = HashSet::new();
        let (mut sent, mut failed) = (Vec::with_capacity(rows.len()), Vec::new());
        for wave in waves {
            // Pipeline the wave's publishes, then collect the acks in order.
            let mut pending = Vec::with_capacity(wave.len());
            for r in wave {
                if blocked.contains(r.ce_subject.as_str()) {
                    continue;
                }
                let envelope = envelope(r);
                let size = envelope.wire_size();
                if max_payload > 0 && size > max_payload {
                    blocked.insert(r.ce_subject.as_str());
                    let error = anyhow::anyhow!("{size} bytes exceed the broker's max_payload of {max_payload}");
                    failed.push(Failed { row: r, error, fault: Fault::Permanent });
                    continue;
                }
                let span = publish_span(r);
                let publish = self.js.publish_with_headers(r.subject.clone(), envelope.to_headers(), envelope.data);
                // The client bounds its own waits; these bounds hold even when it does not
                // (a connection lost mid-publish), so a round always ends.
                let sending = tracing::Instrument::instrument(publish, span);
                match bounded(sending, "publishing to JetStream", "the publish was not sent").await {
                    Ok(ack) => pending.push((r, ack)),
                    Err((error, fault)) => {
                        blocked.insert(r.ce_subject.as_str());
                        failed.push(Failed { row: r, error, fault });
                    }
                }
            }
            for (r, ack) in pending {
                match bounded(ack.into_future(), "waiting for JetStream ack", "no JetStream ack").await {
                    Ok(ack) => {
                        self.note_sent(r.seq, ack.sequence);
                        sent.push((r.seq, ack.sequence));
                    }
                    Err((error, fault)) => {
                        blocked.insert(r.ce_subject.as_str());
                        failed.push(Failed { row: r, error, fault });
                    }
                }
            }
        }
        (sent, failed)
    }

    /// Notes row `seq`, acknowledged at `stream_seq`, to be marked sent.
    fn note_sent(&self, seq: i64, stream_seq: u64) {
        // A poisoned lock means a panic elsewhere; the row is then republished and dropped
        // as a duplicate, as after a crash.
        if let Ok(mut unmarked) = self.unmarked.lock() {
            unmarked.push((seq, stream_seq));
        }
    }

    /// After a failed or abandoned round: the rows handed over since are forgotten and the
    /// next round reads the outbox, oldest first, so a later handed row of an aggregate never
    /// goes before its earlier row that failed (both are in the outbox).
    fn read_back(&self) {
        if let Ok(mut handed) = self.signals.handed.lock() {
            handed.clear();
        }
        self.signals.read_wanted.store(true, Ordering::Release);
    }

    /// Counts a failed attempt of `r`; quarantines it when trying again cannot help or it
    /// has now failed `max_attempts` times.
    async fn failed_attempt(&self, r: &row::Model, error: &anyhow::Error, permanent: bool) -> anyhow::Result<()> {
        let attempts = r.attempts.saturating_add(1);
        if permanent || attempts >= self.settings.max_attempts as i32 {
            return self.quarantine(r, attempts, &format!("{error:#}")).await;
        }
        row::Entity::update_many()
            .col_expr(row::Column::Attempts, Expr::col(row::Column::Attempts).add(Expr::value(1)))
            .filter(row::Column::Seq.eq(r.seq))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Moves `r` from the outbox to the quarantine, in one transaction.
    async fn quarantine(&self, r: &row::Model, attempts: i32, reason: &str) -> anyhow::Result<()> {
        if !super::quarantine::quarantine(&self.db, r, attempts, reason).await? {
            return Ok(()); // Another replica published it meanwhile.
        }
        let labels = crate::metrics::ServiceLabels { service: self.department.clone() };
        crate::metrics::metrics().outbox_quarantined.get_or_create(&labels).inc();
        tracing::error!(
            seq = r.seq,
            event_id = %r.event_id,
            subject = %r.subject,
            attempts,
            reason,
            "outbox row quarantined; the rows behind it flow (onething outbox list)"
        );
        Ok(())
    }

    /// Marks the published rows sent, with their stream sequences, in one statement.
    ///
    /// # Errors
    /// The database failed; the rows stay noted and are marked next time.
    pub async fn mark_sent(&self) -> anyhow::Result<usize> {
        // Copied, not taken: rows leave the list only once marked, so a marking given up
        // half way (an error, a timeout) leaves them to be marked next time.
        let rows = self.unmarked.lock().map_err(|_| anyhow::anyhow!("unmarked rows poisoned"))?.clone();
        if rows.is_empty() {
            return Ok(0);
        }
        let mut stream_seq = CaseStatement::new();
        for (seq, at) in &rows {
            stream_seq = stream_seq.case(Expr::col(row::Column::Seq).eq(*seq), Expr::value(*at as i64));
        }
        row::Entity::update_many()
            .col_expr(row::Column::SentAt, Expr::value(Utc::now()))
            .col_expr(row::Column::StreamSeq, stream_seq.into())
            .filter(row::Column::Seq.is_in(rows.iter().map(|r| r.0)))
            .exec(&self.db)
            .await?;
        let done: HashSet<i64> = rows.iter().map(|r| r.0).collect();
        self.unmarked.lock().map_err(|_| anyhow::anyhow!("unmarked rows poisoned"))?.retain(|r| !done.contains(&r.0));
        Ok(rows.len())
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
        let dead = super::quarantine::count(&self.db).await? as i64;
        m.outbox_dead.get_or_create(&labels).set(dead);
        Ok(())
    }
}

/// Counts a round's rows in `events_published` and `events_publish_failed` by subject.
fn count_round(rows: &[row::Model], sent: &[(i64, u64)], failed: &[Failed<'_>]) {
    let m = crate::metrics::metrics();
    let failed_seqs: HashSet<i64> = failed.iter().map(|f| f.row.seq).collect();
    let sent_seqs: HashSet<i64> = sent.iter().map(|s| s.0).collect();
    for r in rows {
        // Both series of a subject exist from its first round: a first failure then
        // shows as a rise from 0 (rate() sees it), and the dashboard shows 0, not nothing.
        let labels = crate::metrics::SubjectLabels { subject: r.subject.clone() };
        let published = m.events_published.get_or_create_owned(&labels);
        let failed = m.events_publish_failed.get_or_create_owned(&labels);
        if sent_seqs.contains(&r.seq) {
            published.inc();
        } else if failed_seqs.contains(&r.seq) {
            failed.inc();
        }
    }
}

/// Awaits a publish step for at most [`CALL_LIMIT`]; a failure comes with whose fault it is
/// (`doing` names the step, `late` what did not happen in time: the broker's fault).
async fn bounded<T>(
    call: impl Future<Output = Result<T, jetstream::context::PublishError>>,
    doing: &'static str,
    late: &str,
) -> Result<T, (anyhow::Error, Fault)> {
    match tokio::time::timeout(CALL_LIMIT, call).await {
        Ok(Ok(done)) => Ok(done),
        Ok(Err(e)) => {
            let fault = Fault::of(&e);
            Err((anyhow::Error::new(e).context(doing), fault))
        }
        Err(_) => Err((anyhow::anyhow!("{late} within {} s", CALL_LIMIT.as_secs()), Fault::Broker)),
    }
}

/// The producer span of publishing `r`, a child of the span that wrote it.
fn publish_span(r: &row::Model) -> tracing::Span {
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
    span
}
