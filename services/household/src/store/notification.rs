//! An applicant notification (SMS) waiting for the gateway: one per case event worth telling.

use sea_orm::entity::prelude::*;

/// One queued notification.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "notifications")]
pub struct Model {
    /// Queue order.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The event that caused it (unique: one notification per event).
    #[sea_orm(unique)]
    pub event_id: String,
    /// Case id.
    pub case_id: String,
    /// Matter code, for the message template.
    pub matter_code: String,
    /// The case state to announce.
    pub state: String,
    /// Recipient. Personal data.
    pub phone: String,
    /// Queued at.
    pub created_at: DateTimeUtc,
    /// Handed to the SMS gateway at.
    pub sent_at: Option<DateTimeUtc>,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
