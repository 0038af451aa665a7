//! Vehicle's tables — stations and their slots, vehicles, driving licences, proxy
//! inspections — with synthetic seed data, and its migrator (platform tables and the death
//! projection first).

pub mod entities;

use entities::{licence, station, vehicle};
use onething_platform::ids::{CitizenId, CreditCode};
use onething_platform::store::case::ApplicantKind;
use sea_orm_migration::{
    prelude::*,
    schema::*,
    sea_orm::{ActiveValue::Set, EntityTrait},
};

/// Vehicle's migrator.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut m = onething_platform::store::migrations();
        m.push(onething_platform::facts::deceased_migration());
        m.push(Box::new(CreateTables));
        m.push(Box::new(Seed));
        m
    }
}

struct CreateTables;

impl MigrationName for CreateTables {
    fn name(&self) -> &str {
        "m20261129_300001_vehicle_tables"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateTables {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let tables = [
            Table::create()
                .table("stations")
                .if_not_exists()
                .col(string("station_id").primary_key())
                .col(string("name"))
                .col(string("opens"))
                .col(string("closes"))
                .col(integer("slot_minutes"))
                .col(integer("capacity_per_slot"))
                .to_owned(),
            Table::create()
                .table("slots")
                .if_not_exists()
                .col(string("station_id"))
                .col(string("date"))
                .col(string("time"))
                .col(integer("capacity"))
                .col(integer("booked"))
                .primary_key(Index::create().col("station_id").col("date").col("time"))
                .to_owned(),
            Table::create()
                .table("vehicles")
                .if_not_exists()
                .col(string("plate").primary_key())
                .col(string("owner_kind"))
                .col(string("owner_identifier"))
                .col(string("vehicle_type"))
                .col(string("inspection_due"))
                .to_owned(),
            Table::create()
                .table("driving_licences")
                .if_not_exists()
                .col(string("licence_number").primary_key())
                .col(string("id_number"))
                .col(string("class"))
                .col(string("status"))
                .to_owned(),
            Table::create()
                .table("proxy_inspections")
                .if_not_exists()
                .col(string("case_id").primary_key())
                .col(string("state"))
                .col(timestamp_with_time_zone("updated_at"))
                .to_owned(),
        ];
        for t in tables {
            m.create_table(t).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in ["proxy_inspections", "driving_licences", "vehicles", "slots", "stations"] {
            m.drop_table(Table::drop().table(t).if_exists().to_owned()).await?;
        }
        Ok(())
    }
}

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
