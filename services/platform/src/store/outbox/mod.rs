//! The outbox row: an event written in the same transaction as the state change it reports,
//! published later by the relay; and [`dead`], the quarantine of rows that could not be.

use sea_orm::entity::prelude::*;

pub mod dead;

/// One outgoing event.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "outbox")]
pub struct Model {
    /// Publication order.
    #[sea_orm(primary_key)]
    pub seq: i64,
    /// CloudEvents id, also the `Nats-Msg-Id` (broker-side dedup).
    #[sea_orm(unique)]
    pub event_id: String,
    /// NATS subject.
    pub subject: String,
    /// CloudEvents `type`: the payload's proto full name.
    pub ce_type: String,
    /// CloudEvents `source`.
    pub ce_source: String,
    /// CloudEvents `subject` (the resource, e.g. `cases/…`).
    pub ce_subject: String,
    /// CloudEvents `time`.
    pub ce_time: DateTimeUtc,
    /// W3C trace context of the transaction that wrote the row.
    pub traceparent: Option<String>,
    /// Protobuf payload.
    pub payload: Vec<u8>,
    /// When the row was written.
    pub created_at: DateTimeUtc,
    /// When JetStream acknowledged it; `None` while unsent.
    pub sent_at: Option<DateTimeUtc>,
    /// Failed publication attempts.
    #[sea_orm(default_value = 0)]
    pub attempts: i32,
    /// The stream sequence JetStream acknowledged it at: the reconciliation checks that the
    /// message there is still this event.
    pub stream_seq: Option<i64>,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
