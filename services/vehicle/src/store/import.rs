//! What vehicle imports from the vehicle registry and its stations (docs/reference-data.md):
//! vehicles, driving licences, inspection stations and their slots, each row checked with the
//! rules requests are checked with.

use super::entities::{licence, slot, station, vehicle};
use chrono::{DateTime, Utc};
use onething_platform::{
    ids::{CitizenId, CreditCode, Plate},
    import::{Applied, Column, ImportKind, Row, date, one_of, required, text, upsert, value},
    store::case::{ApplicantKind, Standing},
};
use sea_orm::{DatabaseTransaction, DbErr};

/// The kinds vehicle imports.
pub fn kinds() -> Vec<Box<dyn ImportKind>> {
    vec![Box::new(Vehicles), Box::new(Licences), Box::new(Stations), Box::new(Slots)]
}

fn citizen(row: &Row, column: &str) -> Result<String, String> {
    CitizenId::parse(value(row, column))
        .map(|id| id.expose().to_string())
        .map_err(|e| format!("{column}: not a citizen ID number ({e})"))
}

/// A time of day, HH:MM.
fn time(row: &Row, column: &str) -> Result<(), String> {
    let v = value(row, column);
    chrono::NaiveTime::parse_from_str(v, "%H:%M")
        .ok()
        .filter(|t| t.format("%H:%M").to_string() == v)
        .map(|_| ())
        .ok_or_else(|| format!("{column}: a time as HH:MM"))
}

/// A whole number in `range`.
fn count(row: &Row, column: &str, range: std::ops::RangeInclusive<i32>) -> Result<i32, String> {
    value(row, column)
        .parse::<i32>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| format!("{column}: a whole number from {} to {}", range.start(), range.end()))
}

fn station_id(row: &Row) -> Result<(), String> {
    let v = value(row, "station_id");
    if v.is_empty() || v.len() > 32 || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err("station_id: 1 to 32 letters, digits and hyphens".into());
    }
    Ok(())
}

/// `vehicles`: one registered motor vehicle.
struct Vehicles;

const VEHICLE_COLUMNS: &[Column] = &[
    Column { name: "plate", required: true, description: "号牌: a civil plate, e.g. 鲁K12345" },
    Column { name: "owner_kind", required: true, description: "`citizen` or `enterprise`" },
    Column { name: "owner", required: true, description: "the owner's citizen ID number, or credit code" },
    Column {
        name: "vehicle_type",
        required: true,
        description: "`small_car`, `truck`, `bus`, `motorcycle` or `trailer`",
    },
    Column { name: "inspection_due", required: true, description: "next inspection due, YYYY-MM-DD" },
];

#[onething_platform::async_trait]
impl ImportKind for Vehicles {
    fn name(&self) -> &'static str {
        "vehicles"
    }
    fn description(&self) -> &'static str {
        "a registered motor vehicle"
    }
    fn columns(&self) -> &'static [Column] {
        VEHICLE_COLUMNS
    }
    fn key(&self, row: &Row) -> String {
        Plate::parse(value(row, "plate")).map(|p| p.expose().to_string()).unwrap_or_default()
    }
    fn check(&self, row: &Row, _now: DateTime<Utc>) -> Result<(), String> {
        required(row, VEHICLE_COLUMNS)?;
        Plate::parse(value(row, "plate")).map_err(|e| format!("plate: not a plate ({e})"))?;
        one_of(row, "owner_kind", &["citizen", "enterprise"])?;
        if value(row, "owner_kind") == "citizen" {
            citizen(row, "owner")?;
        } else {
            CreditCode::parse(value(row, "owner")).map_err(|e| format!("owner: not a credit code ({e})"))?;
        }
        one_of(row, "vehicle_type", &["small_car", "truck", "bus", "motorcycle", "trailer"])?;
        date(row, "inspection_due").map(|_| ())
    }
    async fn store(&self, txn: &DatabaseTransaction, rows: &[Row], _now: DateTime<Utc>) -> Result<Applied, DbErr> {
        let records = rows
            .iter()
            .map(|r| {
                let citizen_owner = value(r, "owner_kind") == "citizen";
                vehicle::Model {
                    plate: self.key(r),
                    owner_kind: if citizen_owner { ApplicantKind::Citizen } else { ApplicantKind::Enterprise },
                    owner_identifier: value(r, "owner").to_ascii_uppercase(),
                    vehicle_type: value(r, "vehicle_type").into(),
                    inspection_due: value(r, "inspection_due").into(),
                }
            })
            .collect();
        let how = upsert::Keyed::<vehicle::Entity> {
            column: vehicle::Column::Plate,
            of: |m| m.plate.clone(),
            key: |m| m.plate.clone(),
            // An inspection passed here moved the due date on: the later date stands.
            keep: |old, new| {
                if old.inspection_due > new.inspection_due {
                    new.inspection_due.clone_from(&old.inspection_due);
                }
            },
        };
        upsert::upsert(txn, &how, records).await
    }
}

/// `driving_licences`: one driving licence (its number is the holder's ID number).
struct Licences;

const LICENCE_COLUMNS: &[Column] = &[
    Column {
        name: "id_number",
        required: true,
        description: "the holder's citizen ID number, also the licence's number",
    },
    Column { name: "class", required: true, description: "准驾车型, e.g. `C1`, `B2`, `A1`: at most 8 characters" },
    Column { name: "status", required: false, description: "`active` (default) or `cancelled`" },
];

#[onething_platform::async_trait]
impl ImportKind for Licences {
    fn name(&self) -> &'static str {
        "driving_licences"
    }
    fn description(&self) -> &'static str {
        "a driving licence"
    }
    fn columns(&self) -> &'static [Column] {
        LICENCE_COLUMNS
    }
    fn key(&self, row: &Row) -> String {
        value(row, "id_number").to_ascii_uppercase()
    }
    fn check(&self, row: &Row, _now: DateTime<Utc>) -> Result<(), String> {
        required(row, LICENCE_COLUMNS)?;
        citizen(row, "id_number")?;
        let class = value(row, "class");
        if class.len() > 8 || !class.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err("class: at most 8 letters and digits".into());
        }
        one_of(row, "status", &["active", "cancelled"])
    }
    async fn store(&self, txn: &DatabaseTransaction, rows: &[Row], _now: DateTime<Utc>) -> Result<Applied, DbErr> {
        let records = rows
            .iter()
            .map(|r| licence::Model {
                licence_number: self.key(r),
                id_number: self.key(r),
                class: value(r, "class").to_ascii_uppercase(),
                status: if value(r, "status") == "cancelled" { Standing::Cancelled } else { Standing::Active },
            })
            .collect();
        let how = upsert::Keyed::<licence::Entity> {
            column: licence::Column::LicenceNumber,
            of: |m| m.licence_number.clone(),
            key: |m| m.licence_number.clone(),
            // A licence this department cancelled stays cancelled.
            keep: |old, new| {
                if old.status == Standing::Cancelled {
                    new.status = Standing::Cancelled;
                }
            },
        };
        upsert::upsert(txn, &how, records).await
    }
}

/// `stations`: one inspection station.
struct Stations;

const STATION_COLUMNS: &[Column] = &[
    Column { name: "station_id", required: true, description: "1 to 32 letters, digits and hyphens" },
    Column { name: "name", required: true, description: "at most 100 characters" },
    Column { name: "opens", required: true, description: "HH:MM" },
    Column { name: "closes", required: true, description: "HH:MM, after opens" },
    Column { name: "slot_minutes", required: true, description: "minutes per slot, 5 to 240" },
    Column { name: "capacity_per_slot", required: true, description: "vehicles per slot, 1 to 100" },
];

#[onething_platform::async_trait]
impl ImportKind for Stations {
    fn name(&self) -> &'static str {
        "stations"
    }
    fn description(&self) -> &'static str {
        "an inspection station and its opening hours"
    }
    fn columns(&self) -> &'static [Column] {
        STATION_COLUMNS
    }
    fn key(&self, row: &Row) -> String {
        value(row, "station_id").to_string()
    }
    fn check(&self, row: &Row, _now: DateTime<Utc>) -> Result<(), String> {
        required(row, STATION_COLUMNS)?;
        station_id(row)?;
        text(row, "name", 100)?;
        time(row, "opens")?;
        time(row, "closes")?;
        if value(row, "closes") <= value(row, "opens") {
            return Err("closes: after opens".into());
        }
        count(row, "slot_minutes", 5..=240)?;
        count(row, "capacity_per_slot", 1..=100).map(|_| ())
    }
    async fn store(&self, txn: &DatabaseTransaction, rows: &[Row], _now: DateTime<Utc>) -> Result<Applied, DbErr> {
        let records = rows
            .iter()
            .map(|r| station::Model {
                station_id: self.key(r),
                name: value(r, "name").into(),
                opens: value(r, "opens").into(),
                closes: value(r, "closes").into(),
                slot_minutes: count(r, "slot_minutes", 5..=240).unwrap_or(30),
                capacity_per_slot: count(r, "capacity_per_slot", 1..=100).unwrap_or(1),
            })
            .collect();
        let how = upsert::Keyed::<station::Entity> {
            column: station::Column::StationId,
            of: |m| m.station_id.clone(),
            key: |m| m.station_id.clone(),
            keep: |_, _| {},
        };
        upsert::upsert(txn, &how, records).await
    }
}

/// `slots`: the places of one slot of one station on one day.
struct Slots;

const SLOT_COLUMNS: &[Column] = &[
    Column { name: "station_id", required: true, description: "the station" },
    Column { name: "date", required: true, description: "the day, YYYY-MM-DD" },
    Column { name: "time", required: true, description: "the slot's start, HH:MM" },
    Column {
        name: "capacity",
        required: true,
        description: "places, 0 to 100 (the places already booked stay booked)",
    },
];

#[onething_platform::async_trait]
impl ImportKind for Slots {
    fn name(&self) -> &'static str {
        "slots"
    }
    fn description(&self) -> &'static str {
        "the places of one inspection slot"
    }
    fn columns(&self) -> &'static [Column] {
        SLOT_COLUMNS
    }
    fn key(&self, row: &Row) -> String {
        format!("{}|{}|{}", value(row, "station_id"), value(row, "date"), value(row, "time"))
    }
    fn check(&self, row: &Row, _now: DateTime<Utc>) -> Result<(), String> {
        required(row, SLOT_COLUMNS)?;
        station_id(row)?;
        date(row, "date")?;
        time(row, "time")?;
        count(row, "capacity", 0..=100).map(|_| ())
    }
    async fn store(&self, txn: &DatabaseTransaction, rows: &[Row], _now: DateTime<Utc>) -> Result<Applied, DbErr> {
        use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _, sea_query::Expr};
        let mut applied = Applied::default();
        for r in rows {
            let capacity = count(r, "capacity", 0..=100).unwrap_or(0);
            let (station, date, time) = (value(r, "station_id"), value(r, "date"), value(r, "time"));
            let new = slot::ActiveModel {
                station_id: sea_orm::ActiveValue::Set(station.into()),
                date: sea_orm::ActiveValue::Set(date.into()),
                time: sea_orm::ActiveValue::Set(time.into()),
                capacity: sea_orm::ActiveValue::Set(capacity),
                booked: sea_orm::ActiveValue::Set(0),
            };
            let inserted = slot::Entity::insert(new).on_conflict_do_nothing().exec_without_returning(txn).await?;
            if matches!(inserted, sea_orm::TryInsertResult::Inserted(n) if n > 0) {
                applied.added += 1;
                continue;
            }
            // Its places only, the row locked (bookings are the department's, taken meanwhile
            // perhaps); never fewer places than booked.
            let key = (station.to_string(), date.to_string(), time.to_string());
            let Some(held) = sea_orm::QuerySelect::lock_exclusive(slot::Entity::find_by_id(key)).one(txn).await? else {
                continue;
            };
            let places = capacity.max(held.booked);
            if places == held.capacity {
                applied.unchanged += 1;
                continue;
            }
            slot::Entity::update_many()
                .col_expr(slot::Column::Capacity, Expr::value(places))
                .filter(slot::Column::StationId.eq(station))
                .filter(slot::Column::Date.eq(date))
                .filter(slot::Column::Time.eq(time))
                .exec(txn)
                .await?;
            applied.updated += 1;
        }
        Ok(applied)
    }
}
