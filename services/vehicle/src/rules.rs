//! Vehicle as a [`Department`]: inspection bookings that hold a slot (M14, with 交钥匙 and
//! 容缺), enterprise vehicle verification, and driving licence cancellation once household
//! confirms a death.

use crate::{
    domain, slots,
    store::entities::{licence, proxy, vehicle},
};
use chrono::{Months, NaiveDate, Utc};
use onething_platform::reason::Reason;
use onething_platform::{
    cases::{ApplicantRecord, CaseRecord, CaseResult, Department, Form, Refusal, timestamp},
    catalog::Matter,
    error::{Error, FieldViolation, Result},
    events::OutgoingEvent,
    facts,
    lifecycle::State,
};
use onething_proto::vehicle::{self as pb, ProxyState};
use sea_orm::{ActiveValue::Set, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, sea_query::Expr};

/// Department name and event namespace.
pub const DEPARTMENT: &str = "vehicle";
const BOOKING: &str = "vehicle.inspection_booking";

/// The vehicle department's rules.
#[derive(Debug, Clone, Default)]
pub struct Vehicle;

impl Department for Vehicle {
    fn matters(&self) -> &'static [&'static str] {
        &[
            "vehicle.inspection_booking",
            "vehicle.enterprise_vehicle_verification",
            "vehicle.driving_licence_cancellation",
        ]
    }

    fn name(&self) -> &'static str {
        DEPARTMENT
    }

    fn validate(&self, matter: &Matter, applicant: Option<&ApplicantRecord>, form: &Form) -> Vec<FieldViolation> {
        domain::validate(matter, applicant, form, Utc::now())
    }

    async fn check_intake(&self, txn: &DatabaseTransaction, case: &CaseRecord) -> Result<Option<Refusal>> {
        if case.matter_code != BOOKING {
            return Ok(None);
        }
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

    async fn on_intake(&self, txn: &DatabaseTransaction, case: &mut CaseRecord) -> Result<()> {
        match case.matter_code.as_str() {
            BOOKING => {
                let station = slots::station(txn, case.field("station_id")).await?;
                let (date, time) = if case.field("walk_in") == "true" {
                    slots::reserve_walk_in(txn, &station).await?
                } else {
                    let (date, time) = (case.field("slot_date").to_string(), case.field("slot_time").to_string());
                    let d = NaiveDate::parse_from_str(&date, "%Y-%m-%d")
                        .map_err(|_| Error::internal(anyhow::anyhow!("validated date")))?;
                    let t =
                        domain::parse_time(&time).ok_or_else(|| Error::internal(anyhow::anyhow!("validated time")))?;
                    slots::check_slot(&station, d, t, "form.slot_time")?;
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
                        updated_at: Set(Utc::now()),
                    })
                    .exec_without_returning(txn)
                    .await?;
                    case.result.insert("proxy_fee_yuan".into(), "0".into());
                }
            }
            "vehicle.driving_licence_cancellation"
                if !facts::is_deceased(txn, case.field("subject_id_number")).await? =>
            {
                case.reason_code = Reason::VehicleAwaitingDeathConfirmation.into();
                case.reason_text = "waiting for household to confirm the death".into();
            }
            _ => {}
        }
        Ok(())
    }

    async fn ready(&self, txn: &DatabaseTransaction, case: &CaseRecord) -> Result<bool> {
        Ok(match case.matter_code.as_str() {
            "vehicle.driving_licence_cancellation" => facts::is_deceased(txn, case.field("subject_id_number")).await?,
            _ => true,
        })
    }

    async fn after_change(&self, txn: &DatabaseTransaction, case: &CaseRecord, from: State) -> Result<()> {
        // A withdrawn or cancelled booking gives its place back.
        if case.matter_code == BOOKING && from.is_open() && matches!(case.state, State::Withdrawn | State::Cancelled) {
            slots::release(txn, case.field("station_id"), case.field("slot_date"), case.field("slot_time")).await?;
        }
        Ok(())
    }

    async fn on_approve(
        &self,
        txn: &DatabaseTransaction,
        events: &mut Vec<OutgoingEvent>,
        case: &CaseRecord,
    ) -> Result<CaseResult> {
        let now = Utc::now();
        let mut result = case.result.clone();
        match case.matter_code.as_str() {
            BOOKING => {
                // The station passed the vehicle: the next inspection is due in two years.
                let plate = case.field("plate").to_uppercase();
                let next = now.date_naive().checked_add_months(Months::new(24)).unwrap_or(now.date_naive()).to_string();
                vehicle::Entity::update_many()
                    .col_expr(vehicle::Column::InspectionDue, Expr::value(next.clone()))
                    .filter(vehicle::Column::Plate.eq(plate))
                    .exec(txn)
                    .await?;
                result.insert("inspection_result".into(), "passed".into());
                result.insert("next_inspection_due".into(), next);
            }
            "vehicle.enterprise_vehicle_verification" => {
                let fleet = vehicle::Entity::find()
                    .filter(vehicle::Column::OwnerIdentifier.eq(case.applicant.identifier.clone()))
                    .all(txn)
                    .await?;
                let today = now.date_naive().to_string();
                let overdue = fleet.iter().filter(|v| v.inspection_due < today).count();
                result.insert("vehicle_count".into(), fleet.len().to_string());
                result.insert("plates".into(), fleet.iter().map(|v| v.plate.as_str()).collect::<Vec<_>>().join(","));
                result.insert("inspection_overdue_count".into(), overdue.to_string());
            }
            "vehicle.driving_licence_cancellation" => {
                let subject = case.field("subject_id_number").to_ascii_uppercase();
                let active = licence::Entity::find()
                    .filter(licence::Column::IdNumber.eq(subject.clone()))
                    .filter(licence::Column::Status.eq(onething_platform::store::case::Standing::Active))
                    .all(txn)
                    .await?;
                for l in &active {
                    licence::Entity::update_many()
                        .col_expr(
                            licence::Column::Status,
                            Expr::value(onething_platform::store::case::Standing::Cancelled),
                        )
                        .filter(licence::Column::LicenceNumber.eq(l.licence_number.clone()))
                        .exec(txn)
                        .await?;
                    events.push(OutgoingEvent::new(
                        "onething.vehicle.v1.driving_licence.cancelled",
                        format!("cases/{}", case.id),
                        &pb::DrivingLicenceCancelled {
                            case_id: case.id.clone(),
                            id_number: subject.clone(),
                            licence_number: l.licence_number.clone(),
                            occur_time: Some(timestamp(now)),
                        },
                    ));
                }
                result.insert("cancelled_count".into(), active.len().to_string());
            }
            other => return Err(Error::internal(anyhow::anyhow!("no approval effect for {other}"))),
        }
        Ok(result)
    }
}
