//! Slot reservations. A slot row counts its bookings; a booking takes a place with one
//! conditional `UPDATE … SET booked = booked + 1 WHERE booked < capacity`, so concurrent
//! requests, on one replica or several sharing the database, never book more than the
//! capacity (SQLite serialises writers; PostgreSQL re-checks the condition on the row it
//! waited for).

use crate::{
    domain,
    store::entities::{slot, station},
};
use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use onething_platform::error::{Error, Kind, Result};
use onething_platform::reason::Reason;
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    sea_query::{Expr, ExprTrait},
};

/// A station by id.
///
/// # Errors
/// INVALID_ARGUMENT (`VEHICLE_UNKNOWN_STATION`) for an unknown id.
pub async fn station<C: ConnectionTrait>(db: &C, id: &str) -> Result<station::Model> {
    station::Entity::find_by_id(id.to_string()).one(db).await?.ok_or_else(|| {
        Error::invalid_field(Reason::VehicleUnknownStation, "form.station_id", "no such inspection station")
    })
}

fn hours(s: &station::Model) -> (NaiveTime, NaiveTime) {
    (domain::parse_time(&s.opens).unwrap_or(NaiveTime::MIN), domain::parse_time(&s.closes).unwrap_or(NaiveTime::MIN))
}

/// Checks that a slot lies on the station's grid and has not begun at `now`.
///
/// # Errors
/// INVALID_ARGUMENT: `VEHICLE_SLOT_OUTSIDE_HOURS`, or `VEHICLE_SLOT_IN_PAST`.
pub fn check_slot(s: &station::Model, date: NaiveDate, time: NaiveTime, field: &str, now: DateTime<Utc>) -> Result<()> {
    let (opens, closes) = hours(s);
    let minutes = u32::try_from(s.slot_minutes).unwrap_or(30);
    if !domain::slot_fits(opens, closes, minutes, time) {
        return Err(Error::invalid_field(
            Reason::VehicleSlotOutsideHours,
            field,
            format!("slots start every {minutes} minutes between {} and {}", s.opens, s.closes),
        ));
    }
    if domain::has_begun(date, time, now) {
        return Err(Error::invalid_field(Reason::VehicleSlotInPast, field, "the slot lies in the past"));
    }
    Ok(())
}

/// Takes a place on a slot.
///
/// # Errors
/// RESOURCE_EXHAUSTED (`VEHICLE_SLOT_FULL`) when every place is taken.
pub async fn reserve<C: ConnectionTrait>(db: &C, s: &station::Model, date: &str, time: &str) -> Result<()> {
    slot::Entity::insert(slot::ActiveModel {
        station_id: Set(s.station_id.clone()),
        date: Set(date.into()),
        time: Set(time.into()),
        capacity: Set(s.capacity_per_slot),
        booked: Set(0),
    })
    .on_conflict_do_nothing_on([slot::Column::StationId, slot::Column::Date, slot::Column::Time])
    .exec_without_returning(db)
    .await?;
    let taken = slot::Entity::update_many()
        .col_expr(slot::Column::Booked, Expr::col(slot::Column::Booked).add(1))
        .filter(slot::Column::StationId.eq(s.station_id.clone()))
        .filter(slot::Column::Date.eq(date))
        .filter(slot::Column::Time.eq(time))
        .filter(Expr::col(slot::Column::Booked).lt(Expr::col(slot::Column::Capacity)))
        .exec(db)
        .await?;
    if taken.rows_affected == 0 {
        return Err(Error::new(Kind::ResourceExhausted, Reason::VehicleSlotFull, "every place of this slot is booked"));
    }
    Ok(())
}

/// Gives a place back.
///
/// # Errors
/// A database failure.
pub async fn release<C: ConnectionTrait>(db: &C, station_id: &str, date: &str, time: &str) -> Result<()> {
    slot::Entity::update_many()
        .col_expr(slot::Column::Booked, Expr::col(slot::Column::Booked).sub(1))
        .filter(slot::Column::StationId.eq(station_id))
        .filter(slot::Column::Date.eq(date))
        .filter(slot::Column::Time.eq(time))
        .filter(slot::Column::Booked.gt(0))
        .exec(db)
        .await?;
    Ok(())
}

/// Places left per slot of a station on `date`.
///
/// # Errors
/// A database failure.
pub async fn availability<C: ConnectionTrait>(db: &C, s: &station::Model, date: &str) -> Result<Vec<(String, u32)>> {
    let taken = slot::Entity::find()
        .filter(slot::Column::StationId.eq(s.station_id.clone()))
        .filter(slot::Column::Date.eq(date))
        .all(db)
        .await?;
    let (opens, closes) = hours(s);
    Ok(domain::slots(opens, closes, u32::try_from(s.slot_minutes).unwrap_or(30))
        .into_iter()
        .map(|t| {
            let time = t.format("%H:%M").to_string();
            let booked = taken.iter().find(|x| x.time == time).map_or(0, |x| x.booked);
            (time, u32::try_from(s.capacity_per_slot - booked).unwrap_or(0))
        })
        .collect())
}

/// The first slot of today at or after `now` with a free place (随到随检), reserved.
///
/// # Errors
/// RESOURCE_EXHAUSTED (`VEHICLE_NO_WALK_IN_CAPACITY`) when the rest of today is full.
pub async fn reserve_walk_in<C: ConnectionTrait>(
    db: &C,
    s: &station::Model,
    now: DateTime<Utc>,
) -> Result<(String, String)> {
    let today = onething_platform::calendar::date_in_china(now);
    let date = today.format("%Y-%m-%d").to_string();
    for (time, free) in availability(db, s, &date).await? {
        let start = domain::parse_time(&time).unwrap_or(NaiveTime::MIN);
        if free == 0 || domain::has_begun(today, start, now) {
            continue;
        }
        match reserve(db, s, &date, &time).await {
            Ok(()) => return Ok((date, time)),
            Err(e) if e.kind() == Kind::ResourceExhausted => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Error::new(Kind::ResourceExhausted, Reason::VehicleNoWalkInCapacity, "no place left today; book a later day"))
}
