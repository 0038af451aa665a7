//! Household's development data ([`DevData`]): synthetic, valid households, persons and
//! kinship (no real person is described), put in by `onething seed household` and
//! `onething dev`, never by a migration.

use super::{household, kin, person, person::PersonStatus};
use onething_platform::{
    ids::CitizenId,
    store::dev_data::{DevData, insert_new},
};
use sea_orm::{ActiveValue::Set, ColumnTrait, DatabaseTransaction, DbErr, EntityTrait, QueryFilter};

/// A seeded household: number, region, address, members (name, birth date, sex, sequence).
type SeedHousehold =
    (&'static str, &'static str, &'static str, &'static [(&'static str, &'static str, &'static str, u16)]);

/// The seeded households. The first member of the first household is the sample parent of
/// the README (`onething household person` prints every seeded ID number).
pub const SEED: &[SeedHousehold] = &[
    (
        "371002000001",
        "371002",
        "山东省威海市环翠区示例路1号",
        &[("王建国", "1990-03-15", "M", 11), ("李秀英", "1991-07-02", "F", 22), ("王德福", "1958-01-20", "M", 31)],
    ),
    (
        "371002000002",
        "371002",
        "山东省威海市环翠区示例路2号",
        &[("赵海燕", "1985-11-30", "F", 42), ("孙明", "1983-05-09", "M", 51)],
    ),
    (
        "371003000001",
        "371003",
        "山东省威海市文登区示例街3号",
        &[("刘桂兰", "1949-09-09", "F", 62), ("周强", "1976-12-12", "M", 71)],
    ),
    ("371082000001", "371082", "山东省威海市荣成市示例巷4号", &[("陈静", "1995-02-28", "F", 82)]),
];

/// A seeded member by region, birth date and sequence ([`seed_id`]).
pub type SeedMember = (&'static str, &'static str, u16);

/// Seeded kinship (person, relative, what the relative is), by (region, birth date,
/// sequence): 刘桂兰's son 周强 lives with her, her granddaughter 陈静 in Rongcheng (she may
/// report her grandmother's death as a close relative on record); 王德福 is 王建国's father.
pub const SEED_KIN: &[(SeedMember, SeedMember, kin::Kinship)] = &[
    (("371003", "1949-09-09", 62), ("371003", "1976-12-12", 71), kin::Kinship::Child),
    (("371003", "1949-09-09", 62), ("371082", "1995-02-28", 82), kin::Kinship::Grandchild),
    (("371002", "1990-03-15", 11), ("371002", "1958-01-20", 31), kin::Kinship::Parent),
];

/// The ID number of a seeded member.
pub fn seed_id(region: &str, birth_date: &str, seq: u16) -> Option<CitizenId> {
    let date = chrono::NaiveDate::parse_from_str(birth_date, "%Y-%m-%d").ok()?;
    CitizenId::assign(region, date, seq).ok()
}

/// Household's development data.
pub struct DevRegistry;

#[onething_platform::async_trait]
impl DevData for DevRegistry {
    async fn put(&self, db: &DatabaseTransaction) -> Result<u64, DbErr> {
        let now = chrono::Utc::now();
        let mut added = 0;
        for (number, region, address, members) in SEED {
            let home = household::ActiveModel {
                household_number: Set((*number).into()),
                kind: Set(household::HouseholdKind::Family),
                region_code: Set((*region).into()),
                address: Set((*address).into()),
                credit_code: Set(String::new()),
                created_at: Set(now),
            };
            added += insert_new(db, home).await?;
            for (name, birth, sex, seq) in members.iter() {
                let id = member_id((region, birth, *seq))?;
                let someone = person::ActiveModel {
                    id_number: Set(id),
                    name: Set((*name).into()),
                    birth_date: Set((*birth).into()),
                    sex: Set((*sex).into()),
                    household_number: Set((*number).into()),
                    status: Set(PersonStatus::Active),
                    death_date: Set(None),
                    birth_certificate_number: Set(None),
                    created_at: Set(now),
                };
                added += insert_new(db, someone).await?;
            }
        }
        for (person, relative, relation) in SEED_KIN {
            for row in kin::both_ways(&member_id(*person)?, &member_id(*relative)?, *relation, "seed", now) {
                added += insert_new(db, row).await?;
            }
        }
        Ok(added)
    }

    async fn remove(&self, db: &DatabaseTransaction) -> Result<u64, DbErr> {
        let numbers: Vec<&str> = SEED.iter().map(|(number, ..)| *number).collect();
        let mut ids = Vec::new();
        for (_, region, _, members) in SEED {
            for (_, birth, _, seq) in members.iter() {
                ids.push(member_id((region, birth, *seq))?);
            }
        }
        let mut deleted =
            kin::Entity::delete_many().filter(kin::Column::Source.eq("seed")).exec(db).await?.rows_affected;
        deleted +=
            person::Entity::delete_many().filter(person::Column::IdNumber.is_in(ids)).exec(db).await?.rows_affected;
        deleted += household::Entity::delete_many()
            .filter(household::Column::HouseholdNumber.is_in(numbers))
            .exec(db)
            .await?
            .rows_affected;
        Ok(deleted)
    }
}

/// The ID number of a seeded member.
fn member_id((region, birth, seq): SeedMember) -> Result<String, DbErr> {
    seed_id(region, birth, seq)
        .map(|id| id.expose().to_string())
        .ok_or_else(|| DbErr::Custom(format!("a seeded member born {birth} has an invalid ID")))
}
