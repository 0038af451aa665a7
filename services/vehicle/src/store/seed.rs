//! Vehicle's development data ([`DevData`]): synthetic stations, vehicles and driving
//! licences (no real person), put in by `onething seed vehicle` and `onething dev`, never by
//! a migration.

use super::entities::{licence, station, vehicle};
use onething_platform::{
    ids::{CitizenId, CreditCode},
    store::{
        case::ApplicantKind,
        dev_data::{DevData, insert_new},
    },
};
use sea_orm::{ActiveValue::Set, ColumnTrait, DatabaseTransaction, DbErr, EntityTrait, QueryFilter};

/// Seeded stations: id, name, opens, closes, slot minutes, vehicles per slot.
pub const STATIONS: &[(&str, &str, &str, &str, i32, i32)] = &[
    ("WH-HC-01", "环翠区机动车检测站", "08:30", "17:00", 30, 3),
    ("WH-JQ-02", "经区机动车检测站", "09:00", "16:30", 30, 1),
];

/// A seeded citizen (the same synthetic people household seeds).
pub fn seed_citizen(region: &str, birth: &str, seq: u16) -> CitizenId {
    let date = chrono::NaiveDate::parse_from_str(birth, "%Y-%m-%d").expect("seed date");
    CitizenId::assign(region, date, seq).expect("seed ID")
}

/// The enterprise with a registered fleet in the seed.
pub fn seed_fleet_owner() -> CreditCode {
    CreditCode::complete("91371000MA3D00001").expect("valid seed credit code")
}

/// The seeded vehicles: plate, owner kind, owner, type, inspection due.
fn vehicles() -> [(&'static str, ApplicantKind, String, &'static str, &'static str); 4] {
    let parent = seed_citizen("371002", "1990-03-15", 11).expose().to_string();
    let fleet = seed_fleet_owner().as_str().to_string();
    [
        ("鲁K12345", ApplicantKind::Citizen, parent.clone(), "small_car", "2026-12-31"),
        ("鲁KD23456", ApplicantKind::Citizen, parent, "small_car", "2027-06-30"),
        ("鲁K80001", ApplicantKind::Enterprise, fleet.clone(), "truck", "2026-10-31"),
        ("鲁K80002", ApplicantKind::Enterprise, fleet, "truck", "2027-03-31"),
    ]
}

/// The seeded driving licence holders (in China the licence number is the holder's ID number).
fn holders() -> [String; 2] {
    [seed_citizen("371002", "1990-03-15", 11), seed_citizen("371003", "1949-09-09", 62)]
        .map(|id| id.expose().to_string())
}

/// Vehicle's development data.
pub struct DevRecords;

#[onething_platform::async_trait]
impl DevData for DevRecords {
    async fn put(&self, db: &DatabaseTransaction) -> Result<u64, DbErr> {
        let mut added = 0;
        for (id, name, opens, closes, minutes, capacity) in STATIONS {
            let row = station::ActiveModel {
                station_id: Set((*id).into()),
                name: Set((*name).into()),
                opens: Set((*opens).into()),
                closes: Set((*closes).into()),
                slot_minutes: Set(*minutes),
                capacity_per_slot: Set(*capacity),
            };
            added += insert_new(db, row).await?;
        }
        for (plate, kind, owner, vtype, due) in vehicles() {
            let row = vehicle::ActiveModel {
                plate: Set(plate.into()),
                owner_kind: Set(kind),
                owner_identifier: Set(owner),
                vehicle_type: Set(vtype.into()),
                inspection_due: Set(due.into()),
            };
            added += insert_new(db, row).await?;
        }
        for id in holders() {
            let row = licence::ActiveModel {
                licence_number: Set(id.clone()),
                id_number: Set(id),
                class: Set("C1".into()),
                status: Set(onething_platform::store::case::Standing::Active),
            };
            added += insert_new(db, row).await?;
        }
        Ok(added)
    }

    async fn remove(&self, db: &DatabaseTransaction) -> Result<u64, DbErr> {
        let stations: Vec<&str> = STATIONS.iter().map(|s| s.0).collect();
        let plates: Vec<&str> = vehicles().iter().map(|v| v.0).collect();
        let mut deleted = station::Entity::delete_many()
            .filter(station::Column::StationId.is_in(stations))
            .exec(db)
            .await?
            .rows_affected;
        deleted +=
            vehicle::Entity::delete_many().filter(vehicle::Column::Plate.is_in(plates)).exec(db).await?.rows_affected;
        deleted += licence::Entity::delete_many()
            .filter(licence::Column::LicenceNumber.is_in(holders()))
            .exec(db)
            .await?
            .rows_affected;
        Ok(deleted)
    }
}
