//! A 督办 notice supervision issued to this department: for a case, a complaint, a bad
//! review's fix or an enterprise request past its due time. Kept for the department's clerks.

use sea_orm::entity::prelude::*;

/// One notice.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "notices")]
pub struct Model {
    /// What is late: `case`, `complaint`, `rating`, `request`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub kind: String,
    /// Its id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub item_id: String,
    /// When supervision issued the notice (one item may get one per deadline it misses).
    #[sea_orm(primary_key, auto_increment = false)]
    pub issued_at: DateTimeUtc,
    /// When it was due.
    pub due_at: Option<DateTimeUtc>,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
