//! A household (户): family or enterprise collective.

use sea_orm::entity::prelude::*;

/// One household.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "households")]
pub struct Model {
    /// Household number: region code and a six-digit sequence.
    #[sea_orm(primary_key, auto_increment = false)]
    pub household_number: String,
    /// Family or collective.
    pub kind: HouseholdKind,
    /// Six-digit region code.
    pub region_code: String,
    /// Registered address. Personal data for a family household.
    pub address: String,
    /// Credit code of the owning enterprise, or empty.
    pub credit_code: String,
    /// When it was established.
    pub created_at: DateTimeUtc,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// A household's kind, stored by name (`family`, `collective`); an unknown stored name fails
/// the read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)", rename_all = "snake_case")]
pub enum HouseholdKind {
    /// 家庭户.
    Family,
    /// 集体户 (e.g. an enterprise's collective household).
    Collective,
}
