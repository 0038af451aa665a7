//! Exit-entry's development data ([`DevData`]): synthetic permit histories, a violation,
//! travel documents, a staff link and two service commissioners (no real person), put in by
//! `onething seed exit_entry` and `onething dev`, never by a migration.

use super::entities::{commissioner, permit, staff, travel_document, violation};
use onething_platform::{
    ids::{CitizenId, CreditCode},
    store::dev_data::{DevData, insert_new},
};
use sea_orm::{ActiveValue::Set, ColumnTrait, DatabaseTransaction, DbErr, EntityTrait, PaginatorTrait, QueryFilter};

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

/// The seeded service commissioners: officer id, name.
const COMMISSIONERS: [(&str, &str); 2] = [("SC001", "王专员"), ("SC002", "李专员")];

/// Exit-entry's development data.
pub struct DevRecords;

#[onething_platform::async_trait]
impl DevData for DevRecords {
    async fn put(&self, db: &DatabaseTransaction) -> Result<u64, DbErr> {
        let mut added = 0;
        for (passport, permits, offence) in FOREIGNERS {
            for (number, from, until) in permits.iter() {
                let row = permit::ActiveModel {
                    permit_number: Set((*number).into()),
                    passport_number: Set((*passport).into()),
                    kind: Set("work".into()),
                    valid_from: Set((*from).into()),
                    valid_until: Set((*until).into()),
                    case_id: Set(String::new()),
                };
                added += insert_new(db, row).await?;
            }
            // A violation has no natural key: put in unless the same one is there.
            if let Some((date, summary)) = offence
                && violation::Entity::find().filter(is_seeded(passport, date, summary)).count(db).await? == 0
            {
                let row = violation::ActiveModel {
                    passport_number: Set((*passport).into()),
                    date: Set((*date).into()),
                    summary: Set((*summary).into()),
                    ..Default::default()
                };
                violation::Entity::insert(row).exec_without_returning(db).await?;
                added += 1;
            }
        }
        for (region, birth, seq, docs) in TRAVELLERS {
            let id = seed_citizen(region, birth, *seq);
            for (number, kind, until) in docs.iter() {
                let row = travel_document::ActiveModel {
                    document_number: Set((*number).into()),
                    id_number: Set(id.expose().into()),
                    kind: Set((*kind).into()),
                    valid_until: Set((*until).into()),
                    status: Set(onething_platform::store::case::Standing::Active),
                };
                added += insert_new(db, row).await?;
            }
        }
        let link = staff::ActiveModel {
            credit_code: Set(seed_enterprise().as_str().into()),
            id_number: Set(seed_citizen("371002", "1990-03-15", 11).expose().into()),
        };
        added += insert_new(db, link).await?;
        for (officer, name) in COMMISSIONERS {
            let row =
                commissioner::ActiveModel { officer_id: Set(officer.into()), name: Set(name.into()), assigned: Set(0) };
            added += insert_new(db, row).await?;
        }
        Ok(added)
    }

    async fn remove(&self, db: &DatabaseTransaction) -> Result<u64, DbErr> {
        let mut deleted = 0;
        let permits: Vec<&str> = FOREIGNERS.iter().flat_map(|(_, p, _)| p.iter().map(|(n, ..)| *n)).collect();
        deleted += permit::Entity::delete_many()
            .filter(permit::Column::PermitNumber.is_in(permits))
            .exec(db)
            .await?
            .rows_affected;
        for (passport, _, offence) in FOREIGNERS {
            if let Some((date, summary)) = offence {
                deleted += violation::Entity::delete_many()
                    .filter(is_seeded(passport, date, summary))
                    .exec(db)
                    .await?
                    .rows_affected;
            }
        }
        let documents: Vec<&str> = TRAVELLERS.iter().flat_map(|(.., d)| d.iter().map(|(n, ..)| *n)).collect();
        deleted += travel_document::Entity::delete_many()
            .filter(travel_document::Column::DocumentNumber.is_in(documents))
            .exec(db)
            .await?
            .rows_affected;
        deleted += staff::Entity::delete_many()
            .filter(staff::Column::CreditCode.eq(seed_enterprise().as_str()))
            .filter(staff::Column::IdNumber.eq(seed_citizen("371002", "1990-03-15", 11).expose()))
            .exec(db)
            .await?
            .rows_affected;
        let officers: Vec<&str> = COMMISSIONERS.iter().map(|(o, _)| *o).collect();
        deleted += commissioner::Entity::delete_many()
            .filter(commissioner::Column::OfficerId.is_in(officers))
            .exec(db)
            .await?
            .rows_affected;
        Ok(deleted)
    }
}

/// The seeded violation of `passport`.
fn is_seeded(passport: &str, date: &str, summary: &str) -> sea_orm::Condition {
    sea_orm::Condition::all()
        .add(violation::Column::PassportNumber.eq(passport))
        .add(violation::Column::Date.eq(date))
        .add(violation::Column::Summary.eq(summary))
}
