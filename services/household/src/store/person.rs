//! A person in the household registry. Personal data throughout.

use sea_orm::entity::prelude::*;

/// One registered person.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "persons")]
pub struct Model {
    /// 18-digit citizen ID number.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id_number: String,
    /// Full name.
    pub name: String,
    /// Date of birth, YYYY-MM-DD.
    pub birth_date: String,
    /// `M` or `F`.
    pub sex: String,
    /// Household number.
    pub household_number: String,
    /// Living or deceased.
    pub status: PersonStatus,
    /// Date of death, YYYY-MM-DD.
    pub death_date: Option<String>,
    /// Birth medical certificate number, for persons registered at birth (unique).
    #[sea_orm(unique)]
    pub birth_certificate_number: Option<String>,
    /// When the record was created.
    pub created_at: DateTimeUtc,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// Whether a registered person lives, stored by name (`active`, `deceased`); an unknown
/// stored name fails the read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)", rename_all = "snake_case")]
pub enum PersonStatus {
    /// Living and registered.
    Active,
    /// Deregistered after death.
    Deceased,
}
