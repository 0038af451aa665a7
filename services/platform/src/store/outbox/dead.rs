//! The outbox quarantine: rows the relay gave up publishing (too large for the broker, or
//! failing `outbox.max_attempts` times while the broker took other rows), kept with why, for an
//! operator to retry or drop (`onething outbox list|retry|drop`).

use sea_orm::entity::prelude::*;

/// One quarantined event: the outbox row as it was, and why it left.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "outbox_dead")]
pub struct Model {
    /// Its sequence number in the outbox.
    #[sea_orm(primary_key, auto_increment = false)]
    pub seq: i64,
    /// CloudEvents id.
    pub event_id: String,
    /// NATS subject.
    pub subject: String,
    /// CloudEvents `type`.
    pub ce_type: String,
    /// CloudEvents `source`.
    pub ce_source: String,
    /// CloudEvents `subject`.
    pub ce_subject: String,
    /// CloudEvents `time`.
    pub ce_time: DateTimeUtc,
    /// W3C trace context of the transaction that wrote the row.
    pub traceparent: Option<String>,
    /// Protobuf payload.
    pub payload: Vec<u8>,
    /// When the row was written.
    pub created_at: DateTimeUtc,
    /// Failed publication attempts.
    pub attempts: i32,
    /// Why it was quarantined (no personal data: sizes, broker errors).
    #[sea_orm(column_type = "Text")]
    pub reason: String,
    /// When it was quarantined.
    pub dead_at: DateTimeUtc,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
