//! Exit-entry's tables — foreigners' residence permits and violations, citizens' travel
//! documents, enterprise staff links (M15), service commissioners (M13) — with synthetic
//! seed data, and its migrator (platform tables and the death projection first).

pub mod entities;

use entities::{commissioner, permit, staff, travel_document, violation};
use onething_platform::ids::{CitizenId, CreditCode};
use sea_orm_migration::{
    prelude::*,
    sea_orm::{ActiveValue::Set, EntityTrait},
};

onething_platform::migrator!(
    /// Exit-entry's migrator (the death projection's table first).
    Migrator,
    [
        onething_platform::facts::DECEASED_TABLE,
        onething_platform::tables!("m20261129_200001_exit_entry_tables", [permit, violation, travel_document, staff, commissioner]),
        Seed,
    ]
);

/// A seeded permit or document: number, kind or first day, last day.
type Row3 = (&'static str, &'static str, &'static str);

/// A seeded foreigner: passport, work permits (number, from, until), a violation (date, summary).
type SeedForeigner = (&'static str, &'static [Row3], Option<(&'static str, &'static str)>);

/// A seeded traveller: region, birth date, sequence, documents (number, kind, valid until).
type SeedTraveller = (&'static str, &'static str, u16, &'static [Row3]);

/// Seeded foreigners, by passport, each with the history one five-year case needs.
pub const FOREIGNERS: &[SeedForeigner] = &[
    // Two consecutive permits of a year or more, clean record: five years.
    ("E10000001", &[("WR2022030001", "2022-03-01", "2023-02-28"), ("WR2023030001", "2023-03-01", "2025-02-28")], None),
    // One permit only.
    ("E10000002", &[("WR2024010002", "2024-01-01", "2025-12-31")], None),
    // The second lasted half a year.
    ("E10000003", &[("WR2023010003", "2023-01-01", "2023-12-31"), ("WR2024010003", "2024-01-01", "2024-06-30")], None),
    // A year's gap between the two.
    ("E10000004", &[("WR2021010004", "2021-01-01", "2021-12-31"), ("WR2023010004", "2023-01-01", "2023-12-31")], None),
    // Eligible history, but a violation on record.
    (
        "E10000005",
        &[("WR2022030005", "2022-03-01", "2023-02-28"), ("WR2023030005", "2023-03-01", "2025-02-28")],
        Some(("2024-05-10", "逾期居留3日")),
    ),
    // A first application (a high-level talent in the tests).
    ("E10000006", &[], None),
];

/// The enterprise whose staff take expedited business trips in the seed.
pub fn seed_enterprise() -> CreditCode {
    CreditCode::complete("91371000MA3D00001").expect("valid seed credit code")
}

/// A seeded citizen: region, birth date, sequence (the same synthetic people household seeds).
pub fn seed_citizen(region: &str, birth: &str, seq: u16) -> CitizenId {
    let date = chrono::NaiveDate::parse_from_str(birth, "%Y-%m-%d").expect("seed date");
    CitizenId::assign(region, date, seq).expect("seed ID")
}

/// Citizens with travel documents.
pub const TRAVELLERS: &[SeedTraveller] = &[
    (
        "371002",
        "1990-03-15",
        11,
        &[("E88880001", "passport", "2033-05-01"), ("C88880001", "hk_macao_permit", "2030-01-01")],
    ),
    ("371003", "1949-09-09", 62, &[("E88880002", "passport", "2029-08-08")]),
];

struct Seed;

impl MigrationName for Seed {
    fn name(&self) -> &str {
        "m20261129_200002_exit_entry_seed"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Seed {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        for (passport, permits, offence) in FOREIGNERS {
            for (number, from, until) in permits.iter() {
                permit::Entity::insert(permit::ActiveModel {
                    permit_number: Set((*number).into()),
                    passport_number: Set((*passport).into()),
                    kind: Set("work".into()),
                    valid_from: Set((*from).into()),
                    valid_until: Set((*until).into()),
                    case_id: Set(String::new()),
                })
                .exec_without_returning(db)
                .await?;
            }
            if let Some((date, summary)) = offence {
                violation::Entity::insert(violation::ActiveModel {
                    passport_number: Set((*passport).into()),
                    date: Set((*date).into()),
                    summary: Set((*summary).into()),
                    ..Default::default()
                })
                .exec_without_returning(db)
                .await?;
            }
        }
        for (region, birth, seq, docs) in TRAVELLERS {
            let id = seed_citizen(region, birth, *seq);
            for (number, kind, until) in docs.iter() {
                travel_document::Entity::insert(travel_document::ActiveModel {
                    document_number: Set((*number).into()),
                    id_number: Set(id.expose().into()),
                    kind: Set((*kind).into()),
                    valid_until: Set((*until).into()),
                    status: Set(onething_platform::store::case::Standing::Active),
                })
                .exec_without_returning(db)
                .await?;
            }
        }
        staff::Entity::insert(staff::ActiveModel {
            credit_code: Set(seed_enterprise().as_str().into()),
            id_number: Set(seed_citizen("371002", "1990-03-15", 11).expose().into()),
        })
        .exec_without_returning(db)
        .await?;
        for (officer, name) in [("SC001", "王专员"), ("SC002", "李专员")] {
            commissioner::Entity::insert(commissioner::ActiveModel {
                officer_id: Set(officer.into()),
                name: Set(name.into()),
                assigned: Set(0),
            })
            .exec_without_returning(db)
            .await?;
        }
        Ok(())
    }

    async fn down(&self, _m: &SchemaManager) -> Result<(), DbErr> {
        Ok(())
    }
}
