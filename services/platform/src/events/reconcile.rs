//! Reconciliation: the outbox does not trust an acknowledgement alone. JetStream
//! acknowledges a publish before it reaches the disk (it syncs on `sync_interval`), so a
//! power cut or an OS crash of a server can lose acknowledged messages. Sent rows are kept
//! for `outbox.retain_sent_hours` with the stream sequence of their ack; the [`Reconciler`]
//! checks that the message at that sequence is still the row's event and publishes the
//! missing ones again — after it sees the broker restart (a new server id), every
//! `reconcile_interval_seconds` over the last `reconcile_window_minutes`, and on
//! `onething outbox reconcile` over every retained row. Subscribers drop a repeat by its
//! `ce-id` (their inbox); a republished event comes after newer events of its aggregate.

use crate::{config::OutboxSettings, store::outbox as row};
use async_nats::jetstream::{self, stream::RawMessageErrorKind};
use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect, sea_query::Expr};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Rows read, and messages checked at once, per step.
const PAGE: u64 = 500;
const CONCURRENT_CHECKS: usize = 32;

/// What one reconciliation found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Sent rows checked against the stream.
    pub checked: u64,
    /// Of those, missing from the stream and published again.
    pub republished: u64,
    /// Of those, not checked: the broker did not answer for them (tried again next time).
    pub unchecked: u64,
}

/// What the stream holds: its sequence range and whether its own limits remove messages.
#[derive(Clone, Copy)]
struct Bounds {
    expired_before: Option<DateTime<Utc>>,
    /// `max_msgs` or `max_bytes`: the oldest messages go.
    trims: bool,
    /// `max_msgs_per_subject`: any older message of a subject may go, so a message not
    /// found is not taken as lost (this check cannot tell the two apart).
    trims_anywhere: bool,
    first: u64,
    last: u64,
}

impl Bounds {
    fn of(info: &jetstream::stream::Info) -> Self {
        let c = &info.config;
        Self {
            expired_before: (!c.max_age.is_zero())
                .then(|| Utc::now() - chrono::Duration::from_std(c.max_age).unwrap_or(chrono::Duration::MAX)),
            trims: c.max_messages > 0 || c.max_bytes > 0,
            trims_anywhere: c.max_messages_per_subject > 0,
            first: info.state.first_sequence,
            last: info.state.last_sequence,
        }
    }
}

/// Whether the message `r` was acknowledged at is no longer `r`'s event (and the stream's
/// own limits did not remove it).
async fn is_missing(stream: &jetstream::stream::Stream, r: &row::Model, b: Bounds) -> anyhow::Result<bool> {
    let at = r.stream_seq.unwrap_or_default() as u64;
    let sent = r.sent_at.unwrap_or(r.created_at);
    if b.expired_before.is_some_and(|t| sent < t) || (b.trims && at < b.first) {
        return Ok(false);
    }
    if at > b.last || at < b.first {
        return Ok(true);
    }
    match stream.get_raw_message(at).await {
        Ok(m) => Ok(m.headers.get("ce-id").is_none_or(|id| id.as_str() != r.event_id)),
        Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => Ok(!b.trims_anywhere),
        Err(e) => Err(anyhow::Error::new(e).context("reading a message of the stream")),
    }
}

/// Checks a service's sent events against its stream and republishes what is missing.
pub struct Reconciler {
    db: DatabaseConnection,
    js: jetstream::Context,
    department: String,
    window: Duration,
    interval: Duration,
}

impl Reconciler {
    /// A reconciler of `department`'s outbox in `db`.
    pub fn new(db: DatabaseConnection, js: jetstream::Context, department: &str, settings: &OutboxSettings) -> Self {
        Self {
            db,
            js,
            department: department.to_string(),
            window: Duration::from_secs(settings.reconcile_window_minutes.saturating_mul(60)),
            interval: Duration::from_secs(settings.reconcile_interval_seconds),
        }
    }

    /// Checks the sent rows written since `since` (`None`: every retained row) and
    /// publishes again, in sequence order, each whose message is no longer in the stream.
    /// A message the stream's own limits removed (older than its `max_age`, or trimmed by
    /// `max_msgs`/`max_bytes`) is not missing.
    ///
    /// # Errors
    /// NATS or the database failed; what was republished before stays republished.
    pub async fn reconcile(&self, since: Option<DateTime<Utc>>) -> anyhow::Result<Reconciled> {
        let stream = self.js.get_stream(super::nats::stream_name(&self.department)).await?;
        let mut done = Reconciled::default();
        let mut after = i64::MIN;
        loop {
            let mut query = row::Entity::find()
                .filter(row::Column::SentAt.is_not_null())
                .filter(row::Column::StreamSeq.is_not_null())
                .filter(row::Column::Seq.gt(after));
            if let Some(since) = since {
                query = query.filter(row::Column::SentAt.gte(since));
            }
            let rows = query.order_by_asc(row::Column::Seq).limit(PAGE).all(&self.db).await?;
            let Some(tail) = rows.last() else { break };
            after = tail.seq;
            // The stream's state read after the page: every row of the page was marked sent
            // before, so its message lies within these bounds unless it was lost.
            let bounds = Bounds::of(&stream.get_info().await?);
            // Chunks joined in turn rather than a buffered stream: the stream's closure is
            // not general enough over lifetimes for a spawned task.
            for chunk in rows.chunks(CONCURRENT_CHECKS) {
                let mut checks = Vec::with_capacity(chunk.len());
                for r in chunk {
                    checks.push(is_missing(&stream, r, bounds));
                }
                let answers = futures::future::join_all(checks).await;
                for (r, missing) in chunk.iter().zip(answers) {
                    done.checked += 1;
                    match missing {
                        Ok(true) => {
                            self.republish(r).await?;
                            done.republished += 1;
                        }
                        Ok(false) => {}
                        // One message that cannot be read stops no other check.
                        Err(e) => {
                            done.unchecked += 1;
                            tracing::warn!(seq = r.seq, error = %format!("{e:#}"), "cannot check an event against the stream");
                        }
                    }
                }
            }
        }
        if done.republished > 0 {
            let labels = crate::metrics::ServiceLabels { service: self.department.clone() };
            crate::metrics::metrics().outbox_republished.get_or_create(&labels).inc_by(done.republished);
            tracing::warn!(
                stream = %stream.cached_info().config.name,
                checked = done.checked,
                republished = done.republished,
                "acknowledged events were missing from the stream; published again"
            );
        }
        Ok(done)
    }

    /// Publishes `r` again under a new message id (the broker may still remember the old
    /// one in its duplicate window and would drop it), named after the loss it repairs, so
    /// replicas reconciling the same loss at once publish it once; records where it now is.
    async fn republish(&self, r: &row::Model) -> anyhow::Result<()> {
        let envelope = super::outbox::envelope(r);
        let mut headers = envelope.to_headers();
        let id = format!("{}:again:{}", r.event_id, r.stream_seq.unwrap_or_default());
        headers.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
        let ack = self.js.publish_with_headers(r.subject.clone(), headers, envelope.data).await?.await?;
        row::Entity::update_many()
            .col_expr(row::Column::StreamSeq, Expr::value(ack.sequence as i64))
            .filter(row::Column::Seq.eq(r.seq))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Runs until `shutdown`: reconciles the recent window when the NATS server the client
    /// talks to changes (a restart), and every interval.
    pub async fn run(self, shutdown: CancellationToken) {
        let client = self.js.client();
        let mut server = client.server_info().server_id;
        // Once at start too: the broker may have lost writes while this process was away
        // (a power cut takes both down).
        let mut due_at = Some(tokio::time::Instant::now());
        let mut backoff = Duration::from_secs(1);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            let now = client.server_info().server_id;
            let connected = client.connection_state() == async_nats::connection::State::Connected;
            if connected && !now.is_empty() && now != server {
                tracing::info!("NATS server changed; checking recently sent events are in the stream");
                server = now;
                due_at = Some(tokio::time::Instant::now());
            }
            if !self.interval.is_zero() && due_at.is_none() {
                due_at = Some(tokio::time::Instant::now() + self.interval);
            }
            if !connected || due_at.is_none_or(|at| tokio::time::Instant::now() < at) {
                continue;
            }
            let since = Utc::now() - chrono::Duration::from_std(self.window).unwrap_or(chrono::Duration::MAX);
            let outcome = tokio::select! {
                _ = shutdown.cancelled() => return,
                outcome = self.reconcile(Some(since)) => outcome,
            };
            match outcome {
                Ok(done) if done.unchecked == 0 => {
                    due_at = None;
                    backoff = Duration::from_secs(1);
                }
                // Tried again later, waiting longer each time (the server may not answer
                // JetStream yet).
                other => {
                    if let Err(e) = other {
                        tracing::warn!(error = %format!("{e:#}"), "reconciling the outbox failed; retrying");
                    }
                    due_at = Some(tokio::time::Instant::now() + backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                }
            }
        }
    }
}
