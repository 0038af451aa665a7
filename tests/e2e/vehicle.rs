//! Vehicle end to end: bookings never exceed a slot's capacity under concurrent requests
//! to two replicas on one database; 容缺 supplied in time or revoked with its event; the
//! licence cancellation waits for household's death event; bookings walk in, go 交钥匙,
//! move and give their place back; bad input stores nothing.

use crate::common::*;
use onething_proto::{
    common::{self as pb, CaseState, case_service_client::CaseServiceClient},
    vehicle::{self as vpb, ProxyState, vehicle_service_client::VehicleServiceClient},
};
use std::{collections::BTreeMap, time::Duration};
use tonic::Code;
use tonic_types::StatusExt;

const PLATE: &str = "鲁K12345";
const STATION: &str = "WH-HC-01";

pub(crate) fn booking(key: &str, date: &str, time: &str) -> pb::CreateCaseRequest {
    pb::CreateCaseRequest {
        matter_code: "vehicle.inspection_booking".into(),
        applicant: citizen(&seeded_parent()),
        form: form(&[("plate", PLATE), ("station_id", STATION), ("slot_date", date), ("slot_time", time)]),
        materials: vec![material("vehicle_licence"), material("vehicle_tax_certificate")],
        idempotency_key: key.into(),
        bundle_id: String::new(),
    }
}

async fn no_overbooking_across_replicas(backend: Backend) {
    let Some(mut mesh) = TestMesh::with(backend).service(VEHICLE).start().await else { return };
    mesh.start_replica(VEHICLE).await;
    let (first, second) = (mesh.replica(VEHICLE, 0), mesh.replica(VEHICLE, 1));
    let token = service("coordinator", "vehicle");
    let mut tasks = Vec::new();
    for i in 0..12 {
        let endpoint = if i % 2 == 0 { first.endpoint() } else { second.endpoint() };
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = CaseServiceClient::new(connect_as(&endpoint, Some(&token)).await);
            c.create_case(booking(&format!("rush-{i}"), "2099-03-02", "09:00")).await.map(|_| ()).map_err(|s| s.code())
        }));
    }
    let mut ok = 0;
    let mut full = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => ok += 1,
            Err(Code::ResourceExhausted) => full += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((ok, full), (3, 9), "capacity 3: three bookings, nine refusals");
    assert_eq!(count(&first.db, "cases").await, 3);
    assert_eq!(count(&first.db, "slots WHERE booked = 3").await, 1);
    mesh.stop_all().await;
}
both_backends!(no_overbooking_across_replicas);

async fn owed_material_supplied_or_revoked(backend: Backend) {
    let Some(mesh) = TestMesh::with(backend).service(VEHICLE).settings(|_, s| s.sweep_interval_ms = 200).start().await
    else {
        return;
    };
    let mut owner = mesh.cases(VEHICLE, &citizen_token(&seeded_parent())).await;
    let mut station = VehicleServiceClient::new(mesh.channel(VEHICLE, &staff("vehicle", &["clerk", "approver"])).await);
    let mut ids = Vec::new();
    for key in ["owed-1", "owed-2"] {
        let mut req = booking(key, "2099-03-03", "10:00");
        req.materials.retain(|m| m.code != "vehicle_tax_certificate");
        let c = owner.create_case(req).await.unwrap().into_inner().case.unwrap();
        assert_eq!(c.state(), CaseState::Accepted, "accepted with the tax certificate owed (容缺)");
        let d = station
            .record_inspection_result(vpb::RecordInspectionResultRequest {
                case_id: c.case_id.clone(),
                passed: true,
                defects: Vec::new(),
            })
            .await
            .unwrap();
        let d = d.into_inner().case.unwrap();
        assert_eq!(d.state(), CaseState::ApprovedProvisionally);
        assert_eq!(d.missing_materials, ["vehicle_tax_certificate"]);
        assert!(d.time_rule.unwrap().due_time.is_some(), "the owed material has a deadline");
        ids.push(c.case_id);
    }
    // The first supplies in time.
    let done = owner
        .supply_materials(pb::SupplyMaterialsRequest {
            case_id: ids[0].clone(),
            materials: vec![material("vehicle_tax_certificate")],
            expected_version: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(done.state(), CaseState::Approved);
    // The second misses its deadline: the service's own sweep revokes it once the clock
    // has passed it, and not before.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let pending = owner.get_case(pb::GetCaseRequest { case_id: ids[1].clone() }).await.case();
    assert_eq!(pending.state(), CaseState::ApprovedProvisionally, "nothing is late yet");
    mesh.clock.advance(chrono::Duration::days(40));
    let revoked = eventually(Duration::from_secs(30), "the revocation", || {
        let mut owner = owner.clone();
        let id = ids[1].clone();
        async move {
            let c = owner.get_case(pb::GetCaseRequest { case_id: id }).await.ok()?.into_inner().case?;
            (c.state() == CaseState::Revoked).then_some(c)
        }
    })
    .await
    .unwrap();
    assert_eq!(revoked.reason_code, "CASE_OWED_MATERIAL_OVERDUE");
    let js = mesh.nats.jetstream().await;
    eventually(Duration::from_secs(30), "the revoked event", || async {
        let s = js.get_stream("ONETHING_VEHICLE").await.ok()?;
        s.get_last_raw_message_by_subject("onething.vehicle.v1.case.revoked").await.ok()
    })
    .await
    .unwrap();
    mesh.stop_all().await;
}
both_backends!(owed_material_supplied_or_revoked);

/// The cancellation of `subject`'s driving licence after their death, asked by a relative.
fn licence_cancellation(subject: &str, key: &str) -> pb::CreateCaseRequest {
    pb::CreateCaseRequest {
        matter_code: "vehicle.driving_licence_cancellation".into(),
        applicant: citizen(&seeded_person()),
        form: form(&[("subject_id_number", subject)]),
        materials: vec![],
        idempotency_key: key.into(),
        bundle_id: String::new(),
    }
}

/// Household and vehicle, with the coordinator's clients of each.
async fn deaths(backend: Backend) -> Option<(TestMesh, CaseServiceClient<Authed>, CaseServiceClient<Authed>)> {
    let mesh = TestMesh::with(backend).service(HOUSEHOLD).service(VEHICLE).start().await?;
    let v = mesh.coordinator_cases(VEHICLE).await;
    let hh = mesh.coordinator_cases(HOUSEHOLD).await;
    Some((mesh, v, hh))
}

async fn licence_cancellation_waits_for_the_death_event(backend: Backend) {
    let Some((mesh, mut v, mut hh)) = deaths(backend).await else { return };
    let elder = seeded_elder();
    let waiting = v.create_case(licence_cancellation(&elder, "lic-1")).await.unwrap().into_inner().case.unwrap();
    assert_eq!(waiting.state(), CaseState::Accepted);
    assert_eq!(waiting.reason_code, "VEHICLE_AWAITING_DEATH_CONFIRMATION");
    // No approver cancels a living person's licence ahead of the death fact.
    let early = mesh
        .cases(VEHICLE, &staff("vehicle", &["approver"]))
        .await
        .approve_case(pb::ApproveCaseRequest { case_id: waiting.case_id.clone(), expected_version: 0 })
        .await
        .unwrap_err();
    assert_eq!((early.code(), reason_of(&early).as_str()), (Code::FailedPrecondition, "CASE_NOT_READY"));
    hh.create_case(deregistration(&elder, "SW-2026-0200", "lic-dereg", "")).await.unwrap();
    let id = waiting.case_id.clone();
    // The coordinator reads only its bundles' cases; vehicle's staff read these.
    let reader = mesh.cases(VEHICLE, &staff("vehicle", &[])).await;
    let done = eventually(Duration::from_secs(30), "the licence cancellation", || {
        let mut v = reader.clone();
        let id = id.clone();
        async move {
            let c = v.get_case(pb::GetCaseRequest { case_id: id }).await.ok()?.into_inner().case?;
            (c.state() == CaseState::Approved).then_some(c)
        }
    })
    .await
    .unwrap();
    assert_eq!(done.result["cancelled_count"], "1");
    // The fact again under a new message id: recorded once, decided once.
    let js = mesh.nats.jetstream().await;
    let stream = js.get_stream("ONETHING_HOUSEHOLD").await.unwrap();
    let fact = stream.get_last_raw_message_by_subject("onething.household.v1.person.deceased").await.unwrap();
    let mut headers = fact.headers.clone();
    headers.insert("Nats-Msg-Id", "replayed-death-v");
    js.publish_with_headers("onething.household.v1.person.deceased", headers, fact.payload.clone())
        .await
        .unwrap()
        .await
        .unwrap();
    let last = stream.get_info().await.unwrap().state.last_sequence;
    eventually(Duration::from_secs(30), "vehicle to take the repeat", || {
        let stream = stream.clone();
        async move {
            let mut c: async_nats::jetstream::consumer::Consumer<async_nats::jetstream::consumer::pull::Config> =
                stream.get_consumer("vehicle-deaths").await.ok()?;
            let info = c.info().await.ok()?;
            (info.ack_floor.stream_sequence >= last && info.num_ack_pending == 0).then_some(())
        }
    })
    .await
    .unwrap();
    assert_eq!(
        count(mesh.db(VEHICLE), "outbox WHERE subject = 'onething.vehicle.v1.driving_licence.cancelled'").await,
        1
    );
    let again = reader
        .clone()
        .get_case(pb::GetCaseRequest { case_id: waiting.case_id })
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(again.version, done.version);
    mesh.stop_all().await;
}
both_backends!(licence_cancellation_waits_for_the_death_event);

/// A waiting cancellation asked for a supplement when the death fact came is decided as soon
/// as the supplement arrives (the fact's sweep passed it by while it waited).
async fn a_supplied_case_whose_fact_came_is_decided(backend: Backend) {
    let Some((mesh, mut v, mut hh)) = deaths(backend).await else { return };
    let elder = seeded_elder();
    let waiting = v.create_case(licence_cancellation(&elder, "lic-s")).await.unwrap().into_inner().case.unwrap();
    mesh.cases(VEHICLE, &staff("vehicle", &["clerk"]))
        .await
        .request_supplement(pb::RequestSupplementRequest {
            case_id: waiting.case_id.clone(),
            material_codes: vec!["death_certificate".into()],
            reason_text: "请补死亡证明".into(),
            expected_version: 0,
        })
        .await
        .unwrap();
    hh.create_case(deregistration(&elder, "SW-2026-0210", "lic-s-dereg", "")).await.unwrap();
    let db = mesh.db(VEHICLE).clone();
    eventually(Duration::from_secs(30), "vehicle to record the death", || {
        let db = db.clone();
        async move { (count(&db, "deceased_persons").await == 1).then_some(()) }
    })
    .await
    .unwrap();
    let supplied = mesh
        .cases(VEHICLE, &citizen_token(&seeded_person()))
        .await
        .supply_materials(pb::SupplyMaterialsRequest {
            case_id: waiting.case_id,
            materials: vec![material("death_certificate")],
            expected_version: 0,
        })
        .await
        .case();
    assert_eq!(supplied.state(), CaseState::Approved, "decided with the supply, not left waiting");
    mesh.stop_all().await;
}
both_backends!(a_supplied_case_whose_fact_came_is_decided);

async fn bookings_walk_in_go_proxy_move_and_give_back(backend: Backend) {
    let Some(mesh) = TestMesh::with(backend).service(VEHICLE).settings(|_, s| s.sweep_interval_ms = 200).start().await
    else {
        return;
    };
    let owner_token = citizen_token(&seeded_parent());
    let staff_token = staff("vehicle", &["clerk", "approver"]);
    let mut owner = mesh.cases(VEHICLE, &owner_token).await;
    let mut ops = VehicleServiceClient::new(mesh.channel(VEHICLE, &owner_token).await);
    let mut station_ops = VehicleServiceClient::new(mesh.channel(VEHICLE, &staff_token).await);

    // 交钥匙: free, tracked step by step until the vehicle is back.
    let mut proxy = booking("proxy-1", "2099-03-04", "08:30");
    proxy.form.insert("proxy".into(), "true".into());
    let c = owner.create_case(proxy).await.unwrap().into_inner().case.unwrap();
    assert_eq!(c.result["proxy_fee_yuan"], "0");
    for state in [ProxyState::HandedOver, ProxyState::Inspecting, ProxyState::Inspected, ProxyState::Returned] {
        let r = station_ops
            .advance_proxy_inspection(vpb::AdvanceProxyInspectionRequest {
                case_id: c.case_id.clone(),
                state: state as i32,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((r.state(), r.fee_yuan), (state, 0));
    }
    let err = station_ops
        .advance_proxy_inspection(vpb::AdvanceProxyInspectionRequest {
            case_id: c.case_id.clone(),
            state: ProxyState::Inspecting as i32,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let err = ops
        .advance_proxy_inspection(vpb::AdvanceProxyInspectionRequest {
            case_id: c.case_id.clone(),
            state: ProxyState::Returned as i32,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "the owner does not run the station");

    // Reschedule, then withdraw: the places follow.
    let b = owner.create_case(booking("move-1", "2099-03-05", "09:00")).await.unwrap().into_inner().case.unwrap();
    ops.reschedule_booking(vpb::RescheduleBookingRequest {
        case_id: b.case_id.clone(),
        slot_date: "2099-03-05".into(),
        slot_time: "11:00".into(),
    })
    .await
    .unwrap();
    let free = |slots: Vec<vpb::SlotAvailability>, t: &str| slots.into_iter().find(|s| s.time == t).unwrap().free;
    let day = ops
        .get_availability(vpb::GetAvailabilityRequest { station_id: STATION.into(), date: "2099-03-05".into() })
        .await
        .unwrap();
    let day = day.into_inner().slots;
    assert_eq!((free(day.clone(), "09:00"), free(day, "11:00")), (3, 2));
    owner
        .withdraw_case(pb::WithdrawCaseRequest { case_id: b.case_id.clone(), reason_text: String::new() })
        .await
        .unwrap();
    let day = ops
        .get_availability(vpb::GetAvailabilityRequest { station_id: STATION.into(), date: "2099-03-05".into() })
        .await
        .unwrap();
    assert_eq!(free(day.into_inner().slots, "11:00"), 3, "a withdrawn booking gives its place back");
    // So does one the approver rejects uninspected (the vehicle never came).
    let no_show =
        owner.create_case(booking("noshow-1", "2099-03-05", "11:00")).await.unwrap().into_inner().case.unwrap();
    mesh.cases(VEHICLE, &staff("vehicle", &["approver"]))
        .await
        .reject_case(pb::RejectCaseRequest {
            case_id: no_show.case_id,
            reason_code: "VEHICLE_NO_SHOW".into(),
            reason_text: "未到站".into(),
            expected_version: 0,
        })
        .await
        .unwrap();
    let day = ops
        .get_availability(vpb::GetAvailabilityRequest { station_id: STATION.into(), date: "2099-03-05".into() })
        .await
        .unwrap();
    assert_eq!(free(day.into_inner().slots, "11:00"), 3, "a no-show gives its place back");

    // 随到随检: a walk-in gets today's next free slot, or a clear answer when the day is over.
    let mut walk_in = booking("walk-1", "", "");
    walk_in.form = form(&[("plate", PLATE), ("station_id", STATION), ("walk_in", "true")]);
    match owner.create_case(walk_in).await {
        Ok(r) => assert!(r.into_inner().case.unwrap().form.contains_key("slot_time")),
        Err(s) => assert_eq!(s.get_error_details().error_info().unwrap().reason, "VEHICLE_NO_WALK_IN_CAPACITY"),
    }

    // Enterprise vehicle verification: automatic, the fleet and its overdue inspections.
    let fleet = onething_vehicle::store::seed_fleet_owner().to_string();
    let mut enterprise = mesh.cases(VEHICLE, &enterprise_token(&fleet)).await;
    let v = enterprise
        .create_case(pb::CreateCaseRequest {
            matter_code: "vehicle.enterprise_vehicle_verification".into(),
            applicant: Some(pb::Applicant {
                kind: pb::ApplicantKind::Enterprise as i32,
                identifier: fleet.clone(),
                name: "威海示例物流有限公司".into(),
                phone: String::new(),
            }),
            form: form(&[]),
            materials: vec![],
            idempotency_key: "fleet-1".into(),
            bundle_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(v.state(), CaseState::Approved);
    assert_eq!(v.result["vehicle_count"], "2");
    assert_eq!(v.result["plates"], "鲁K80001,鲁K80002");
    mesh.stop_all().await;
}
both_backends!(bookings_walk_in_go_proxy_move_and_give_back);

async fn bad_bookings_are_refused_and_store_nothing(backend: Backend) {
    let Some(mesh) = TestMesh::with(backend).service(VEHICLE).settings(|_, s| s.sweep_interval_ms = 200).start().await
    else {
        return;
    };
    let mut c = mesh.cases(VEHICLE, &service("coordinator", "vehicle")).await;
    let check = |s: tonic::Status| {
        let d = s.get_error_details();
        (
            s.code(),
            d.error_info().map(|i| i.reason.clone()).unwrap_or_default(),
            d.bad_request().map(|b| b.field_violations[0].field.clone()).unwrap_or_default(),
        )
    };
    let mut bad_plate = booking("bad-1", "2099-03-02", "09:00");
    bad_plate.form.insert("plate".into(), "鲁K1234O".into());
    assert_eq!(
        check(c.create_case(bad_plate).await.unwrap_err()),
        (Code::InvalidArgument, "CASE_INVALID_REQUEST".into(), "form.plate".into())
    );
    let mut unknown = booking("bad-2", "2099-03-02", "09:00");
    unknown.form.insert("station_id".into(), "WH-NOWHERE".into());
    assert_eq!(
        check(c.create_case(unknown).await.unwrap_err()),
        (Code::InvalidArgument, "VEHICLE_UNKNOWN_STATION".into(), "form.station_id".into())
    );
    let past = booking("bad-3", "2020-01-06", "09:00");
    assert_eq!(
        check(c.create_case(past).await.unwrap_err()),
        (Code::InvalidArgument, "CASE_INVALID_REQUEST".into(), "form.slot_date".into())
    );
    let late = booking("bad-4", "2099-03-02", "17:30");
    assert_eq!(
        check(c.create_case(late).await.unwrap_err()),
        (Code::InvalidArgument, "VEHICLE_SLOT_OUTSIDE_HOURS".into(), "form.slot_time".into())
    );
    let off_grid = booking("bad-5", "2099-03-02", "09:10");
    assert_eq!(check(c.create_case(off_grid).await.unwrap_err()).1, "VEHICLE_SLOT_OUTSIDE_HOURS");
    assert_eq!(count(mesh.db(VEHICLE), "cases").await, 0);
    assert_eq!(count(mesh.db(VEHICLE), "outbox").await, 0);
    assert_eq!(count(mesh.db(VEHICLE), "slots WHERE booked > 0").await, 0);
    // Someone else's vehicle: a well-formed application, not accepted.
    let mut other = booking("bad-6", "2099-03-02", "09:00");
    other.applicant = citizen(&seeded_person());
    let refused = c.create_case(other).await.unwrap().into_inner().case.unwrap();
    assert_eq!(refused.reason_code, "VEHICLE_NOT_OWNER");
    assert_eq!(count(mesh.db(VEHICLE), "slots WHERE booked > 0").await, 0, "a refused booking holds no place");
    mesh.stop_all().await;
}
both_backends!(bad_bookings_are_refused_and_store_nothing);

/// A licence cancellation being created while the death is confirmed does not miss it: the
/// confirmation waits for the transaction that checked for it, then finds the case waiting.
/// (The creation is played by hand here, to hold its transaction open: it checks, the death
/// event is delivered meanwhile, then it writes a waiting case and commits.) PostgreSQL:
/// on SQLite writers already wait for each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_death_confirmed_while_a_case_checks_for_it_is_not_missed() {
    use sea_orm::{ActiveModelTrait, EntityTrait, IntoActiveModel, TransactionTrait};
    let Some((mesh, mut v, mut hh)) = deaths(Backend::Postgres).await else { return };
    let elder = seeded_elder();
    let other = onething_household::store::seed_id("371082", "1995-02-28", 82).unwrap().expose().to_string();
    // A waiting case about someone else, as the template of the row the creation writes.
    let template =
        v.create_case(licence_cancellation(&other, "race-template")).await.unwrap().into_inner().case.unwrap();
    assert_eq!(template.state(), CaseState::Accepted);

    // The creation checks: no death confirmed yet.
    let creation = mesh.db(VEHICLE).begin().await.unwrap();
    assert!(!onething_platform::facts::is_deceased(&creation, &elder).await.unwrap());
    // Household confirms the death; vehicle's consumer receives it while the creation is open.
    hh.create_case(deregistration(&elder, "SW-2026-0400", "race-dereg", "")).await.unwrap();
    let js = mesh.nats.jetstream().await;
    let stream = js.get_stream("ONETHING_HOUSEHOLD").await.unwrap();
    eventually(Duration::from_secs(30), "vehicle to receive the death", || {
        let stream = stream.clone();
        async move {
            let fact = stream.get_last_raw_message_by_subject("onething.household.v1.person.deceased").await.ok()?;
            let mut c: async_nats::jetstream::consumer::Consumer<async_nats::jetstream::consumer::pull::Config> =
                stream.get_consumer("vehicle-deaths").await.ok()?;
            let info = c.info().await.ok()?;
            (info.delivered.stream_sequence >= fact.sequence).then_some(())
        }
    })
    .await
    .unwrap();
    // The creation writes its case, waiting for the death it did not find, and commits.
    let row = onething_platform::store::case::Entity::find_by_id(template.case_id.clone())
        .one(&creation)
        .await
        .unwrap()
        .unwrap();
    onething_platform::store::case::Model {
        id: "race-case".into(),
        idempotency_key: "race-case".into(),
        form: row.form.iter().map(|(k, v)| (k.clone(), v.replace(&other, &elder))).collect::<BTreeMap<_, _>>().into(),
        ..row
    }
    .into_active_model()
    .reset_all()
    .insert(&creation)
    .await
    .unwrap();
    creation.commit().await.unwrap();

    let reader = mesh.cases(VEHICLE, &staff("vehicle", &[])).await;
    let done = eventually(Duration::from_secs(30), "the case decided by the death", || {
        let mut v = reader.clone();
        async move {
            let c = v.get_case(pb::GetCaseRequest { case_id: "race-case".into() }).await.ok()?.into_inner().case?;
            (c.state() == CaseState::Approved).then_some(c)
        }
    })
    .await
    .unwrap();
    assert_eq!(done.result["cancelled_count"], "1");
    mesh.stop_all().await;
}
