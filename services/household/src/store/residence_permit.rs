//! A residence permit (居住证) issued to a non-local resident.

use sea_orm::entity::prelude::*;

/// One residence permit.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "residence_permits")]
pub struct Model {
    /// Permit number.
    #[sea_orm(primary_key, auto_increment = false)]
    pub permit_number: String,
    /// Holder's ID number.
    pub id_number: String,
    /// Residence address. Personal data.
    pub address: String,
    /// Last day of validity, YYYY-MM-DD.
    pub valid_until: String,
    /// Case that issued it.
    pub case_id: String,
    /// When it was issued.
    pub created_at: DateTimeUtc,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
