//! Household's own tables — the registry of persons and households, residence permits, and
//! the applicant notification queue — and its migrator (platform tables first).

pub mod household;
pub mod kin;
pub mod notification;
pub mod person;
use person::PersonStatus;
pub mod residence_permit;

use onething_platform::ids::CitizenId;
use onething_platform::store::Indexes;
use sea_orm_migration::{
    prelude::*,
    sea_orm::{ActiveValue::Set, EntityTrait},
};

onething_platform::migrator!(
    /// Household's migrator.
    Migrator,
    [
        onething_platform::tables!("m20261129_100001_household_registry", [household, person, residence_permit, notification]),
        M20261129SeedRegistry,
        // Intake asks whether the enterprise of a collective household has one already,
        // which without an index reads every household.
        Indexes {
            name: "m20261129_100003_households_credit_code",
            create: || vec![Index::create().name("households_credit_code").table("households").col("credit_code").to_owned()],
        },
        // M24: a death may be reported by a close relative on record, not only a member of
        // the person's household.
        onething_platform::tables!("m20261208_100004_household_kin", [kin]),
        M20261208SeedKin,
    ]
);

/// Synthetic, valid registry data for development and tests. No real person is described.
struct M20261129SeedRegistry;

impl MigrationName for M20261129SeedRegistry {
    fn name(&self) -> &str {
        "m20261129_100002_household_seed"
    }
}

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

#[async_trait::async_trait]
impl MigrationTrait for M20261129SeedRegistry {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        let now = chrono::Utc::now();
        for (number, region, address, members) in SEED {
            household::Entity::insert(household::ActiveModel {
                household_number: Set((*number).into()),
                kind: Set(household::HouseholdKind::Family),
                region_code: Set((*region).into()),
                address: Set((*address).into()),
                credit_code: Set(String::new()),
                created_at: Set(now),
            })
            .exec_without_returning(db)
            .await?;
            for (name, birth, sex, seq) in members.iter() {
                let id = seed_id(region, birth, *seq)
                    .ok_or_else(|| DbErr::Custom(format!("seed member of {number} has an invalid ID")))?;
                person::Entity::insert(person::ActiveModel {
                    id_number: Set(id.expose().into()),
                    name: Set((*name).into()),
                    birth_date: Set((*birth).into()),
                    sex: Set((*sex).into()),
                    household_number: Set((*number).into()),
                    status: Set(PersonStatus::Active),
                    death_date: Set(None),
                    birth_certificate_number: Set(None),
                    created_at: Set(now),
                })
                .exec_without_returning(db)
                .await?;
            }
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        person::Entity::delete_many().exec(db).await?;
        household::Entity::delete_many().exec(db).await?;
        Ok(())
    }
}

/// Synthetic kinship between seeded persons ([`SEED_KIN`]), for development and tests.
struct M20261208SeedKin;

impl MigrationName for M20261208SeedKin {
    fn name(&self) -> &str {
        "m20261208_100005_household_seed_kin"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M20261208SeedKin {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        let id = |(region, birth, seq): (&str, &str, u16)| {
            seed_id(region, birth, seq)
                .map(|id| id.expose().to_string())
                .ok_or_else(|| DbErr::Custom("a seeded relative has an invalid ID".into()))
        };
        let now = chrono::Utc::now();
        for (person, relative, relation) in SEED_KIN {
            kin::Entity::insert_many(kin::both_ways(&id(*person)?, &id(*relative)?, *relation, "seed", now))
                .exec_without_returning(db)
                .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // Only what this seeded: relations recorded by real births stay.
        use sea_orm_migration::sea_orm::{ColumnTrait as _, QueryFilter as _};
        kin::Entity::delete_many().filter(kin::Column::Source.eq("seed")).exec(m.get_connection()).await?;
        Ok(())
    }
}
