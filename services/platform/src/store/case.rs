//! The case row of the shared lifecycle. Every department database has this table; its
//! department rules keep their own tables beside it.

use sea_orm::entity::prelude::*;

/// One case (办件). JSON columns are stored as text so SQLite and PostgreSQL agree.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "cases")]
pub struct Model {
    /// Case id (UUID v7 text).
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// Catalog code of the matter.
    pub matter_code: String,
    /// Owning department.
    pub department: String,
    /// Lifecycle state, [`crate::lifecycle::State::as_str`].
    pub state: String,
    /// `citizen` or `enterprise`.
    pub applicant_kind: String,
    /// Citizen ID number or credit code. Personal data.
    pub applicant_identifier: String,
    /// Applicant name. Personal data.
    pub applicant_name: String,
    /// Applicant phone. Personal data.
    pub applicant_phone: String,
    /// Form fields, JSON object of strings.
    pub form: String,
    /// Materials, JSON array of `{code, document_uri}`.
    pub materials: String,
    /// Missing or owed material codes, JSON array.
    pub missing_materials: String,
    /// Reason code of the last refusal.
    pub reason_code: String,
    /// Reason text of the last decision.
    pub reason_text: String,
    /// Result fields, JSON object of strings.
    pub result: String,
    /// `immediate`, `working_days` or `clock_hours`.
    pub time_unit: String,
    /// Committed limit in that unit.
    pub time_limit: i32,
    /// Due time, once accepted.
    pub due_at: Option<DateTimeUtc>,
    /// Set while the clock is paused.
    pub paused_since: Option<DateTimeUtc>,
    /// Due time computed without holiday data.
    pub due_provisional: bool,
    /// Green-channel case, handled first.
    pub priority: bool,
    /// Client idempotency key.
    #[sea_orm(unique)]
    pub idempotency_key: String,
    /// Bundle id, or empty.
    pub bundle_id: String,
    /// Optimistic concurrency version.
    pub version: i64,
    /// Created.
    pub created_at: DateTimeUtc,
    /// Last changed.
    pub updated_at: DateTimeUtc,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
