//! Vehicle's tables — stations and their slots, vehicles, driving licences, proxy
//! inspections — with synthetic seed data, and its migrator (platform tables and the death
//! projection first).

pub mod entities;

use entities::{licence, proxy, slot, station, vehicle};
use onething_platform::ids::{CitizenId, CreditCode};
use onething_platform::store::case::ApplicantKind;
use sea_orm_migration::{
    prelude::*,
    sea_orm::{ActiveValue::Set, EntityTrait},
};

onething_platform::migrator!(
    /// Vehicle's migrator (the death projection's table first).
    Migrator,
    [
        onething_platform::facts::DECEASED_TABLE,
        onething_platform::tables!("m20261129_300001_vehicle_tables", [station, slot, vehicle, licence, proxy]),
        Seed,
    ]
);

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

struct Seed;

impl MigrationName for Seed {
    fn name(&self) -> &str {
        "m20261129_300002_vehicle_seed"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Seed {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        for (id, name, opens, closes, minutes, capacity) in STATIONS {
            station::Entity::insert(station::ActiveModel {
                station_id: Set((*id).into()),
                name: Set((*name).into()),
                opens: Set((*opens).into()),
                closes: Set((*closes).into()),
                slot_minutes: Set(*minutes),
                capacity_per_slot: Set(*capacity),
            })
            .exec_without_returning(db)
            .await?;
        }
        let parent = seed_citizen("371002", "1990-03-15", 11);
        let elder = seed_citizen("371003", "1949-09-09", 62);
        let fleet = seed_fleet_owner();
        let vehicles = [
            ("鲁K12345", ApplicantKind::Citizen, parent.expose(), "small_car", "2026-12-31"),
            ("鲁KD23456", ApplicantKind::Citizen, parent.expose(), "small_car", "2027-06-30"),
            ("鲁K80001", ApplicantKind::Enterprise, fleet.as_str(), "truck", "2026-10-31"),
            ("鲁K80002", ApplicantKind::Enterprise, fleet.as_str(), "truck", "2027-03-31"),
        ];
        for (plate, kind, owner, vtype, due) in vehicles {
            vehicle::Entity::insert(vehicle::ActiveModel {
                plate: Set(plate.into()),
                owner_kind: Set(kind),
                owner_identifier: Set(owner.into()),
                vehicle_type: Set(vtype.into()),
                inspection_due: Set(due.into()),
            })
            .exec_without_returning(db)
            .await?;
        }
        // In China the licence number is the holder's ID number.
        for (id, class) in [(&parent, "C1"), (&elder, "C1")] {
            licence::Entity::insert(licence::ActiveModel {
                licence_number: Set(id.expose().into()),
                id_number: Set(id.expose().into()),
                class: Set(class.into()),
                status: Set(onething_platform::store::case::Standing::Active),
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
