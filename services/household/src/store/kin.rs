//! Kinship on record (亲属关系): who is a close relative (近亲属) of whom, as the registry
//! knows it. A death may be reported online by a member of the person's household or by a
//! close relative on record. Each relation is stored both ways (a parent's `child` row and
//! the child's `parent` row). Personal data throughout.

use sea_orm::entity::prelude::*;

/// One relation: `relative_id_number` is the `relation` of `id_number`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "kin")]
pub struct Model {
    /// The person.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id_number: String,
    /// Their relative.
    #[sea_orm(primary_key, auto_increment = false)]
    pub relative_id_number: String,
    /// What the relative is to the person.
    pub relation: Kinship,
    /// The ground it was recorded on: a case id, or `seed` for development data.
    pub source: String,
    /// When it was recorded.
    pub created_at: DateTimeUtc,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// What a relative is to a person: the close relatives (近亲属) of the Civil Code, Art. 1045.
/// Stored by name; an unknown stored name fails the read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)", rename_all = "snake_case")]
pub enum Kinship {
    /// 配偶.
    Spouse,
    /// 父母.
    Parent,
    /// 子女.
    Child,
    /// 兄弟姐妹.
    Sibling,
    /// 祖父母、外祖父母.
    Grandparent,
    /// 孙子女、外孙子女.
    Grandchild,
}

impl Kinship {
    /// The same relation seen from the relative: a parent's child is the child's parent.
    pub fn inverse(self) -> Self {
        match self {
            Self::Spouse => Self::Spouse,
            Self::Parent => Self::Child,
            Self::Child => Self::Parent,
            Self::Sibling => Self::Sibling,
            Self::Grandparent => Self::Grandchild,
            Self::Grandchild => Self::Grandparent,
        }
    }
}

/// The two rows recording that `relative` is the `relation` of `person`, on `source`'s ground.
pub fn both_ways(person: &str, relative: &str, relation: Kinship, source: &str, now: DateTimeUtc) -> [ActiveModel; 2] {
    use sea_orm::ActiveValue::Set;
    let row = |a: &str, b: &str, r: Kinship| ActiveModel {
        id_number: Set(a.to_string()),
        relative_id_number: Set(b.to_string()),
        relation: Set(r),
        source: Set(source.to_string()),
        created_at: Set(now),
    };
    [row(person, relative, relation), row(relative, person, relation.inverse())]
}

/// Whether `relative` is a close relative of `person` on record.
///
/// # Errors
/// A database failure.
pub async fn is_close_relative(db: &impl ConnectionTrait, person: &str, relative: &str) -> Result<bool, DbErr> {
    Ok(Entity::find_by_id((person.to_string(), relative.to_string())).one(db).await?.is_some())
}
