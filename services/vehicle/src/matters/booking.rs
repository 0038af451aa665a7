//! 机动车检验预约 (M14): a booking holds a slot of a station's grid (or a walk-in place),
//! never overbooked; 交钥匙 proxy inspections are free and done by the station's staff;
//! non-core materials may be owed (容缺). A withdrawn or cancelled booking gives its slot
//! back; an approval means the vehicle passed and moves its next inspection two years on.

use crate::{
    domain, slots,
    store::entities::{proxy, vehicle},
};
use chrono::{DateTime, Months, NaiveDate, Utc};
use onething_platform::{
    calendar::date_in_china,
    cases::{ApplicantRecord, CaseRecord, CaseResult, MatterRules, Refusal},
    catalog::form::FormCheck,
    error::{Error, Result},
    events::OutgoingEvent,
    lifecycle::State,
    reason::Reason,
};
use onething_proto::vehicle::ProxyState;
use sea_orm::{ActiveValue::Set, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, sea_query::Expr};

/// `vehicle.inspection_booking`.
pub struct InspectionBooking;

/// The result field keeping the inspection due date an approval replaced.
const PREVIOUS_DUE: &str = "previous_inspection_due";
/// The result field with the station's recorded outcome: [`PASSED`] or [`FAILED`].
pub const INSPECTION_RESULT: &str = "inspection_result";
/// The vehicle passed its inspection.
pub const PASSED: &str = "passed";
/// The vehicle failed it (the defects are in the result's `defects`).
pub const FAILED: &str = "failed";
/// The result field listing a failed inspection's defects, separated by "; ".
pub const DEFECTS: &str = "defects";

async fn set_inspection_due(txn: &DatabaseTransaction, plate: &str, due: &str) -> Result<()> {
    vehicle::Entity::update_many()
        .col_expr(vehicle::Column::InspectionDue, Expr::value(due.to_string()))
        .filter(vehicle::Column::Plate.eq(plate.to_string()))
        .exec(txn)
        .await?;
    Ok(())
}

#[onething_platform::async_trait]
impl MatterRules for InspectionBooking {
    fn code(&self) -> &'static str {
        super::BOOKING
    }

    /// A booked slot, unless walking in, with a valid date and time not yet begun.
    fn check_form(&self, f: &mut FormCheck<'_>, _applicant: Option<&ApplicantRecord>, now: DateTime<Utc>) {
        if f.flag("walk_in") {
            return;
        }
        let time = f.value("slot_time").map(domain::parse_time);
        // A malformed date the catalog reports; a missing one needs the walk-in hint.
        if f.value("slot_date").is_none() {
            f.refuse("slot_date", "a date as YYYY-MM-DD (or walk_in=true)");
        }
        if !matches!(time, Some(Some(_))) {
            f.refuse("slot_time", "a time as HH:MM (or walk_in=true)");
        }
        if let (Some(d), Some(Some(t))) = (f.date("slot_date"), time)
            && domain::has_begun(d, t, now)
        {
            f.refuse("slot_date", "the slot lies in the past");
        }
    }

    async fn check_intake(&self, txn: &DatabaseTransaction, case: &CaseRecord) -> Result<Option<Refusal>> {
        let plate = case.field("plate").to_uppercase();
        // The owner is a kind and an identifier; an unknown plate and another's answer alike,
        // so a booking tells no one which plates are registered.
        let kind = onething_platform::store::case::ApplicantKind::from_proto(case.applicant.kind);
        Ok(match vehicle::Entity::find_by_id(plate).one(txn).await? {
            Some(v) if v.owner_kind == kind && v.owner_identifier == case.applicant.identifier => None,
            _ => {
                Some(Refusal::new(Reason::VehicleNotOwner, "no vehicle with this plate is registered to the applicant"))
            }
        })
    }

    async fn on_intake(&self, txn: &DatabaseTransaction, case: &mut CaseRecord, now: DateTime<Utc>) -> Result<()> {
        let station = slots::station(txn, case.field("station_id")).await?;
        let (date, time) = if case.field("walk_in") == "true" {
            slots::reserve_walk_in(txn, &station, now).await?
        } else {
            let (date, time) = (case.field("slot_date").to_string(), case.field("slot_time").to_string());
            let d = NaiveDate::parse_from_str(&date, "%Y-%m-%d")
                .map_err(|_| Error::internal(anyhow::anyhow!("validated date")))?;
            let t = domain::parse_time(&time).ok_or_else(|| Error::internal(anyhow::anyhow!("validated time")))?;
            slots::check_slot(&station, d, t, "form.slot_time", now)?;
            slots::reserve(txn, &station, &date, &time).await?;
            (date, time)
        };
        case.form.insert("slot_date".into(), date.clone());
        case.form.insert("slot_time".into(), time.clone());
        case.result.insert("booking".into(), format!("{} {date} {time}", station.name));
        if case.field("proxy") == "true" {
            // 交钥匙: the station does everything, free of charge.
            proxy::Entity::insert(proxy::ActiveModel {
                case_id: Set(case.id.clone()),
                state: Set(ProxyState::Booked.as_str_name().into()),
                updated_at: Set(now),
            })
            .exec_without_returning(txn)
            .await?;
            case.result.insert("proxy_fee_yuan".into(), "0".into());
        }
        Ok(())
    }

    async fn after_change(&self, txn: &DatabaseTransaction, case: &CaseRecord, from: State) -> Result<()> {
        // A withdrawn or cancelled booking gives its place back, and so does one rejected
        // without an inspection (the vehicle never came): a failed inspection used its place.
        let uninspected_rejection = case.state == State::Rejected && !case.result.contains_key(INSPECTION_RESULT);
        if from.is_open() && (matches!(case.state, State::Withdrawn | State::Cancelled) || uninspected_rejection) {
            slots::release(txn, case.field("station_id"), case.field("slot_date"), case.field("slot_time")).await?;
        }
        Ok(())
    }

    /// A booking is approved only through the station's recorded result (a passed
    /// inspection); a 交钥匙 booking once the station has the vehicle inspected: its proxy
    /// steps in order up to `INSPECTED` (M14: staff do everything, one after the other).
    async fn before_approve(&self, txn: &DatabaseTransaction, case: &CaseRecord) -> Result<()> {
        if case.result.get(INSPECTION_RESULT).map(String::as_str) != Some(PASSED) {
            return Err(Error::failed_precondition(
                Reason::VehicleInspectionNotRecorded,
                "the station records the inspection's result (RecordInspectionResult)",
            ));
        }
        if case.field("proxy") != "true" {
            return Ok(());
        }
        let state = proxy::Entity::find_by_id(case.id.clone())
            .one(txn)
            .await?
            .and_then(|p| ProxyState::from_str_name(&p.state))
            .unwrap_or(ProxyState::Unspecified);
        if matches!(state, ProxyState::Inspected | ProxyState::Returned) {
            return Ok(());
        }
        Err(Error::failed_precondition(
            Reason::VehicleProxyNotInspected,
            format!("the proxy inspection is at {}: hand over and inspect first", state.as_str_name()),
        ))
    }

    async fn on_approve(
        &self,
        txn: &DatabaseTransaction,
        _events: &mut Vec<OutgoingEvent>,
        case: &CaseRecord,
        now: DateTime<Utc>,
    ) -> Result<CaseResult> {
        // The station passed the vehicle: the next inspection is due in two years.
        let plate = case.field("plate").to_uppercase();
        let previous = vehicle::Entity::find_by_id(plate.clone()).one(txn).await?.map(|v| v.inspection_due);
        let today = date_in_china(now);
        let next = today.checked_add_months(Months::new(24)).unwrap_or(today).to_string();
        set_inspection_due(txn, &plate, &next).await?;
        let mut result = case.result.clone();
        result.insert("next_inspection_due".into(), next);
        // What a revocation puts back.
        result.insert(PREVIOUS_DUE.into(), previous.unwrap_or_default());
        Ok(result)
    }

    /// The approval revoked: the next inspection falls due when it did before.
    async fn on_revoke(
        &self,
        txn: &DatabaseTransaction,
        _events: &mut Vec<OutgoingEvent>,
        case: &CaseRecord,
        _now: DateTime<Utc>,
    ) -> Result<()> {
        // Only the date this approval set goes back: a later approval's date stands.
        let (Some(previous), Some(set)) =
            (case.result.get(PREVIOUS_DUE).filter(|p| !p.is_empty()), case.result.get("next_inspection_due"))
        else {
            return Ok(());
        };
        vehicle::Entity::update_many()
            .col_expr(vehicle::Column::InspectionDue, Expr::value(previous.clone()))
            .filter(vehicle::Column::Plate.eq(case.field("plate").to_uppercase()))
            .filter(vehicle::Column::InspectionDue.eq(set.clone()))
            .exec(txn)
            .await?;
        Ok(())
    }
}
