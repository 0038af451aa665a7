//! Transactional outbox: [`Outbox::enqueue`] writes an event in the caller's transaction, so
//! the event exists exactly when the state change does. The [`Relay`] publishes unsent rows
//! to JetStream in order with `Nats-Msg-Id` = event id (a publish repeated after a crash is
//! dropped by the broker) and marks them sent once acknowledged (many at once, a moment
//! later; until then it remembers which went). NATS down: rows wait.
//!
//! An event too large for the broker is refused in the writer's transaction
//! ([`EVENT_TOO_LARGE`]), so it never reaches the relay; a row that still cannot be published
//! is quarantined by the relay (see `relay`).
//!
//! A transaction that creates the thing its events are about (a new case, a new bundle)
//! may hand its rows to the relay after committing ([`Outbox::enqueue_new`]): the relay
//! publishes them without reading them back. No older event of a new thing can be waiting,
//! and a later one is written only after this commit, when reading the outbox finds these
//! rows too and publishes them first: each thing's events still leave in order.

use super::cloudevents::{Envelope, OutgoingEvent};
use crate::reason::Reason;
use crate::{store::outbox as row, telemetry};
use chrono::Utc;
use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait};
use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, Ordering},
};
use tokio::sync::Notify;

/// The reason, in a `DbErr::Custom` and then in the caller's error, of an event refused
/// because it would not fit the broker's payload limit.
pub const EVENT_TOO_LARGE: &str = Reason::EventTooLarge.as_str();

/// The producing side of a service: writes events into its outbox.
#[derive(Clone, Debug)]
pub struct Outbox {
    source: String,
    pub(super) signals: Arc<Signals>,
    max_event_bytes: usize,
}

/// What writers tell the relay.
#[derive(Debug, Default)]
pub(super) struct Signals {
    /// Wakes the relay.
    pub(super) wake: Notify,
    /// Rows were committed that the relay must read from the outbox.
    pub(super) read_wanted: AtomicBool,
    /// Committed rows handed over ([`NewEvents::hand_over`]), to publish without reading.
    pub(super) handed: Mutex<Vec<row::Model>>,
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
    /// Events larger than the default `outbox.max_event_bytes` are refused.
    pub fn new(service: &str) -> Self {
        Self {
            source: format!("/onething/{service}"),
            signals: Arc::new(Signals::default()),
            max_event_bytes: crate::config::OutboxSettings::default().max_event_bytes,
        }
    }

    /// The same outbox refusing events larger than `max` bytes (payload and headers).
    pub fn with_max_event_bytes(mut self, max: usize) -> Self {
        self.max_event_bytes = max;
        self
    }

    /// Writes `event` in `txn` (any connection; pass the transaction of the state change).
    /// The current span's trace context is stored with it. Returns the event id.
    ///
    /// # Errors
    /// The database refused the insert, or the event is larger than the broker accepts
    /// (`DbErr::Custom` starting with [`EVENT_TOO_LARGE`], which the caller's error turns
    /// into INVALID_ARGUMENT); the caller's transaction should roll back.
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
        let rows = self.rows(events)?;
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
        let mut rows = self.rows(events)?;
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
    ///
    /// # Errors
    /// An event larger than this outbox accepts ([`EVENT_TOO_LARGE`]).
    fn rows(&self, events: Vec<OutgoingEvent>) -> Result<Vec<row::Model>, sea_orm::DbErr> {
        let now = Utc::now();
        let traceparent = telemetry::current_traceparent();
        let rows: Vec<row::Model> = events
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
                stream_seq: None,
            })
            .collect();
        for r in &rows {
            let size = envelope(r).wire_size();
            if size > self.max_event_bytes {
                return Err(sea_orm::DbErr::Custom(format!(
                    "{EVENT_TOO_LARGE}: a {} event of {size} bytes exceeds the limit of {} bytes",
                    r.ce_type, self.max_event_bytes
                )));
            }
        }
        Ok(rows)
    }

    /// Tells the relay that rows were committed; call after the transaction commits.
    pub fn wake(&self) {
        self.signals.read_wanted.store(true, Ordering::Release);
        self.signals.wake.notify_one();
    }
}

/// The CloudEvent of an outbox row.
pub(super) fn envelope(r: &row::Model) -> Envelope {
    Envelope {
        id: r.event_id.clone(),
        source: r.ce_source.clone(),
        ce_type: r.ce_type.clone(),
        subject: r.ce_subject.clone(),
        time: r.ce_time,
        traceparent: r.traceparent.clone(),
        data: r.payload.clone().into(),
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
        stream_seq: Set(None),
        ..Default::default()
    }
}
