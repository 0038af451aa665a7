//! `onething.vehicle.v1.VehicleService`: stations and availability, vehicles of an owner,
//! rescheduling a booking, and the steps of a 交钥匙 proxy inspection.

use crate::{
    domain, matters, slots,
    store::entities::{proxy, station, vehicle},
};
use chrono::NaiveDate;
use onething_platform::reason::Reason;
use onething_platform::{
    auth::Principal,
    authz::{self, ROLE_CLERK},
    cases::{CaseApi, timestamp},
    db::begin_write,
    error::{Error, Result},
    events::{Outbox, OutgoingEvent},
    lifecycle::State,
    store::case::ApplicantKind,
};
use onething_proto::vehicle::{self as pb, ProxyState, vehicle_service_server::VehicleService};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, TransactionTrait,
};
use tonic::{Request, Response, Status};

/// The vehicle API.
#[derive(Clone)]
pub struct Operations {
    db: DatabaseConnection,
    cases: CaseApi,
    outbox: Outbox,
}

impl Operations {
    /// Operations over vehicle's database, its cases and its outbox.
    pub fn new(db: DatabaseConnection, cases: CaseApi, outbox: Outbox) -> Self {
        Self { db, cases, outbox }
    }
}

fn is_station_staff(p: &Principal) -> bool {
    p.is_staff_of(matters::DEPARTMENT)
}

async fn reschedule(
    me: &Operations,
    p: &Principal,
    r: pb::RescheduleBookingRequest,
) -> Result<pb::RescheduleBookingResponse> {
    // Who may move a booking at all is decided before the request is looked at.
    let clerk = is_station_staff(p) && p.has_role(ROLE_CLERK);
    authz::check(p.kind.is_applicant() || clerk, p, "RescheduleBooking", &r.case_id)?;
    let date = NaiveDate::parse_from_str(&r.slot_date, "%Y-%m-%d")
        .map_err(|_| Error::invalid_field(Reason::VehicleInvalidRequest, "slot_date", "a date as YYYY-MM-DD"))?;
    let time = domain::parse_time(&r.slot_time)
        .ok_or_else(|| Error::invalid_field(Reason::VehicleInvalidRequest, "slot_time", "a time as HH:MM"))?;
    let txn = begin_write(&me.db).await?;
    // An unknown booking and another's answer alike to an applicant.
    let case =
        authz::hide_missing(me.cases.load_in(&txn, &r.case_id).await, clerk, p, "RescheduleBooking", &r.case_id)?;
    let owner = authz::is_applicant(p, case.applicant.kind, &case.applicant.identifier);
    authz::check(owner || clerk, p, "RescheduleBooking", &r.case_id)?;
    if case.matter_code != matters::BOOKING || case.state != State::Accepted {
        return Err(Error::failed_precondition(Reason::VehicleNotReschedulable, "only an accepted booking can move"));
    }
    let station = slots::station(&txn, case.field("station_id")).await?;
    let now = me.cases.clock().now();
    slots::check_slot(&station, date, time, "slot_time", now)?;
    slots::reserve(&txn, &station, &r.slot_date, &r.slot_time).await?;
    slots::release(&txn, &station.station_id, case.field("slot_date"), case.field("slot_time")).await?;
    me.cases
        .amend_in(&txn, &r.case_id, |c| {
            c.form.insert("slot_date".into(), r.slot_date.clone());
            c.form.insert("slot_time".into(), r.slot_time.clone());
            c.result.insert("booking".into(), format!("{} {} {}", station.name, r.slot_date, r.slot_time));
            Ok(())
        })
        .await?;
    me.outbox
        .enqueue(
            &txn,
            OutgoingEvent::new(
                "onething.vehicle.v1.booking.rescheduled",
                format!("cases/{}", r.case_id),
                &pb::BookingRescheduled {
                    case_id: r.case_id.clone(),
                    station_id: station.station_id.clone(),
                    slot_date: r.slot_date.clone(),
                    slot_time: r.slot_time.clone(),
                    occur_time: Some(timestamp(now)),
                },
            ),
        )
        .await?;
    txn.commit().await?;
    me.outbox.wake();
    Ok(pb::RescheduleBookingResponse { station_id: station.station_id, slot_date: r.slot_date, slot_time: r.slot_time })
}

async fn advance_proxy(
    me: &Operations,
    p: &Principal,
    r: pb::AdvanceProxyInspectionRequest,
) -> Result<pb::AdvanceProxyInspectionResponse> {
    authz::check(is_station_staff(p), p, "AdvanceProxyInspection", &r.case_id)?;
    let wanted = ProxyState::try_from(r.state).unwrap_or(ProxyState::Unspecified);
    let txn = me.db.begin().await?;
    let current = proxy::Entity::find_by_id(r.case_id.clone())
        .one(&txn)
        .await?
        .ok_or_else(|| Error::not_found(Reason::VehicleNoProxyInspection, "this booking is not a proxy inspection"))?;
    let now_state = ProxyState::from_str_name(&current.state).unwrap_or(ProxyState::Unspecified);
    if domain::next_proxy_state(now_state) != Some(wanted) {
        return Err(Error::failed_precondition(
            Reason::VehicleProxyOutOfOrder,
            format!(
                "after {} comes {:?}",
                now_state.as_str_name(),
                domain::next_proxy_state(now_state).map(|s| s.as_str_name())
            ),
        ));
    }
    let now = me.cases.clock().now();
    proxy::Entity::update(proxy::ActiveModel {
        case_id: Set(r.case_id.clone()),
        state: Set(wanted.as_str_name().into()),
        updated_at: Set(now),
    })
    .exec(&txn)
    .await?;
    me.outbox
        .enqueue(
            &txn,
            OutgoingEvent::new(
                "onething.vehicle.v1.proxy_inspection.advanced",
                format!("cases/{}", r.case_id),
                &pb::ProxyInspectionAdvanced {
                    case_id: r.case_id.clone(),
                    state: wanted as i32,
                    occur_time: Some(timestamp(now)),
                },
            ),
        )
        .await?;
    txn.commit().await?;
    me.outbox.wake();
    Ok(pb::AdvanceProxyInspectionResponse { state: wanted as i32, fee_yuan: 0 })
}

#[tonic::async_trait]
impl VehicleService for Operations {
    async fn list_stations(
        &self,
        r: Request<pb::ListStationsRequest>,
    ) -> Result<Response<pb::ListStationsResponse>, Status> {
        authz::principal(&r)?;
        let stations = station::Entity::find()
            .order_by_asc(station::Column::StationId)
            .all(&self.db)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(pb::ListStationsResponse {
            stations: stations
                .into_iter()
                .map(|s| pb::Station {
                    station_id: s.station_id,
                    name: s.name,
                    opens: s.opens,
                    closes: s.closes,
                    slot_minutes: u32::try_from(s.slot_minutes).unwrap_or(0),
                    capacity_per_slot: u32::try_from(s.capacity_per_slot).unwrap_or(0),
                })
                .collect(),
        }))
    }

    async fn get_availability(
        &self,
        r: Request<pb::GetAvailabilityRequest>,
    ) -> Result<Response<pb::GetAvailabilityResponse>, Status> {
        authz::principal(&r)?;
        let r = r.into_inner();
        NaiveDate::parse_from_str(&r.date, "%Y-%m-%d")
            .map_err(|_| Error::invalid_field(Reason::VehicleInvalidRequest, "date", "a date as YYYY-MM-DD"))?;
        let station = slots::station(&self.db, &r.station_id).await.map_err(|_| {
            Error::invalid_field(Reason::VehicleUnknownStation, "station_id", "no such inspection station")
        })?;
        let slots = slots::availability(&self.db, &station, &r.date).await?;
        Ok(Response::new(pb::GetAvailabilityResponse {
            slots: slots.into_iter().map(|(time, free)| pb::SlotAvailability { time, free }).collect(),
        }))
    }

    async fn list_vehicles(
        &self,
        r: Request<pb::ListVehiclesRequest>,
    ) -> Result<Response<pb::ListVehiclesResponse>, Status> {
        let p = authz::principal(&r)?;
        let owner = r.into_inner().owner_identifier.trim().to_ascii_uppercase();
        // Station staff and supervision with personal_data look owners up; an owner sees their own vehicles,
        // of their own kind (a passport number equal to an ID number is another owner).
        let own_kind = p.applicant().filter(|(_, id)| *id == owner).map(|(k, _)| ApplicantKind::from_proto(k));
        let reads = authz::reads_register(&p, matters::DEPARTMENT);
        authz::check(reads || own_kind.is_some(), &p, "ListVehicles", "vehicles")?;
        let mut q = vehicle::Entity::find().filter(vehicle::Column::OwnerIdentifier.eq(owner));
        if let (Some(kind), false) = (own_kind, reads) {
            q = q.filter(vehicle::Column::OwnerKind.eq(kind));
        }
        let vehicles = q.order_by_asc(vehicle::Column::Plate).all(&self.db).await.map_err(Error::from)?;
        Ok(Response::new(pb::ListVehiclesResponse {
            vehicles: vehicles
                .into_iter()
                .map(|v| pb::Vehicle {
                    plate: v.plate,
                    owner_kind: v.owner_kind.to_string(),
                    owner_identifier: v.owner_identifier,
                    vehicle_type: v.vehicle_type,
                    inspection_due: v.inspection_due,
                })
                .collect(),
        }))
    }

    async fn reschedule_booking(
        &self,
        r: Request<pb::RescheduleBookingRequest>,
    ) -> Result<Response<pb::RescheduleBookingResponse>, Status> {
        let p = authz::principal(&r)?;
        Ok(Response::new(reschedule(self, &p, r.into_inner()).await?))
    }

    async fn advance_proxy_inspection(
        &self,
        r: Request<pb::AdvanceProxyInspectionRequest>,
    ) -> Result<Response<pb::AdvanceProxyInspectionResponse>, Status> {
        let p = authz::principal(&r)?;
        Ok(Response::new(advance_proxy(self, &p, r.into_inner()).await?))
    }

    async fn record_inspection_result(
        &self,
        r: Request<pb::RecordInspectionResultRequest>,
    ) -> Result<Response<pb::RecordInspectionResultResponse>, Status> {
        let p = authz::principal(&r)?;
        Ok(Response::new(record_result(self, &p, r.into_inner()).await?))
    }
}

/// Longest list of defects, and longest defect, in characters.
const MAX_DEFECTS: usize = 20;
const MAX_DEFECT_CHARS: usize = 100;

/// The station's result of an inspection: an approval when it passed (the matter's own
/// preconditions apply: a 交钥匙 vehicle inspected first), a rejection with the defects
/// when it failed.
async fn record_result(
    me: &Operations,
    p: &Principal,
    r: pb::RecordInspectionResultRequest,
) -> Result<pb::RecordInspectionResultResponse> {
    authz::check(
        is_station_staff(p) && p.has_role(onething_platform::authz::ROLE_APPROVER),
        p,
        "RecordInspectionResult",
        &r.case_id,
    )?;
    let defects: Vec<String> = r.defects.iter().map(|d| d.trim().to_string()).filter(|d| !d.is_empty()).collect();
    if r.passed && !defects.is_empty() {
        return Err(Error::invalid_field(
            Reason::VehicleInvalidRequest,
            "defects",
            "a passed inspection has no defects",
        ));
    }
    let bad = (!r.passed && defects.is_empty())
        || defects.len() > MAX_DEFECTS
        || defects.iter().any(|d| d.chars().count() > MAX_DEFECT_CHARS || d.contains(';'));
    if bad {
        return Err(Error::invalid_field(
            Reason::VehicleInvalidRequest,
            "defects",
            format!(
                "a failed inspection names its defects: 1 to {MAX_DEFECTS}, each at most {MAX_DEFECT_CHARS} characters without ';'"
            ),
        ));
    }
    let booking = me.cases.get(p, &r.case_id).await?;
    if booking.matter_code != matters::BOOKING {
        return Err(Error::failed_precondition(Reason::VehicleNotABooking, "not an inspection booking"));
    }
    // The result is recorded on an accepted booking (one awaiting a supplement is not being
    // inspected), so a failure always keeps its defects.
    if booking.state != State::Accepted {
        return Err(Error::failed_precondition(
            Reason::CaseIllegalTransition,
            format!("an inspection result is recorded on an accepted booking, not a {} one", booking.state),
        ));
    }
    const RPC: &str = "RecordInspectionResult";
    let case = if r.passed {
        me.cases
            .approve_with(p, (RPC, &[(matters::booking::INSPECTION_RESULT, matters::booking::PASSED)]), &r.case_id, 0)
            .await?
    } else {
        let list = defects.join("; ");
        let text = format!("defects: {list}");
        let recorded = [
            (matters::booking::INSPECTION_RESULT, matters::booking::FAILED),
            (matters::booking::DEFECTS, list.as_str()),
        ];
        me.cases
            .reject_with(p, (RPC, &recorded), &r.case_id, (Reason::VehicleInspectionFailed.as_str(), &text), 0)
            .await?
    };
    Ok(pb::RecordInspectionResultResponse { case: Some(case.to_proto()) })
}
