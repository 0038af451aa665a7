//! Household's own tables — the registry of persons and households, residence permits, and
//! the applicant notification queue — and its migrator (platform tables first).

pub mod household;
pub mod notification;
pub mod person;
use person::PersonStatus;
pub mod residence_permit;

use onething_platform::ids::CitizenId;
use sea_orm_migration::{
    prelude::*,
    schema::*,
    sea_orm::{ActiveValue::Set, EntityTrait},
};

/// Household's migrator.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut m = onething_platform::store::migrations();
        m.push(Box::new(M20261129CreateRegistry));
        m.push(Box::new(M20261129SeedRegistry));
        m.push(Box::new(M20261129IndexCreditCode));
        m
    }
}

struct M20261129CreateRegistry;

impl MigrationName for M20261129CreateRegistry {
    fn name(&self) -> &str {
        "m20261129_100001_household_registry"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M20261129CreateRegistry {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("households")
                .if_not_exists()
                .col(string("household_number").primary_key())
                .col(string("kind"))
                .col(string("region_code"))
                .col(string("address"))
                .col(string("credit_code"))
                .col(timestamp_with_time_zone("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("persons")
                .if_not_exists()
                .col(string("id_number").primary_key())
                .col(string("name"))
                .col(string("birth_date"))
                .col(string("sex"))
                .col(string("household_number"))
                .col(string("status"))
                .col(string_null("death_date"))
                .col(string_null("birth_certificate_number").unique_key())
                .col(timestamp_with_time_zone("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("residence_permits")
                .if_not_exists()
                .col(string("permit_number").primary_key())
                .col(string("id_number"))
                .col(string("address"))
                .col(string("valid_until"))
                .col(string("case_id"))
                .col(timestamp_with_time_zone("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("notifications")
                .if_not_exists()
                .col(big_pk_auto("id"))
                .col(string_uniq("event_id"))
                .col(string("case_id"))
                .col(string("matter_code"))
                .col(string("state"))
                .col(string("phone"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone_null("sent_at"))
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in ["notifications", "residence_permits", "persons", "households"] {
            m.drop_table(Table::drop().table(t).if_exists().to_owned()).await?;
        }
        Ok(())
    }
}

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

/// An index on the enterprise of a collective household: intake asks whether the enterprise
/// has one already, which without it reads every household.
struct M20261129IndexCreditCode;

impl MigrationName for M20261129IndexCreditCode {
    fn name(&self) -> &str {
        "m20261129_100003_households_credit_code"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M20261129IndexCreditCode {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_index(
            Index::create()
                .name("households_credit_code")
                .table("households")
                .col("credit_code")
                .if_not_exists()
                .to_owned(),
        )
        .await
    }
}
