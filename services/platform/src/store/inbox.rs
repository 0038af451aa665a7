//! The inbox row: an event a consumer has handled, written in the same transaction as the
//! handler's effect, so a redelivered event is recognised and does nothing.

use sea_orm::entity::prelude::*;

/// One handled event.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "inbox")]
pub struct Model {
    /// Durable consumer name.
    #[sea_orm(primary_key, auto_increment = false)]
    pub consumer: String,
    /// CloudEvents id of the handled event.
    #[sea_orm(primary_key, auto_increment = false)]
    pub event_id: String,
    /// When it was handled.
    pub handled_at: DateTimeUtc,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
