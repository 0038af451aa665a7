//! The measures' promises, end to end with a clock the test moves: an approved step that may
//! not stand alone is revoked when its bundle fails; 容缺 inside the saga (the bundle
//! completes provisionally, then either way); clocks from receipt with warnings in
//! proportion to the limit; 一次性告知 with the supplement's own deadline; a bundle waiting on
//! its applicant is paused; the decisions' own steps (on-site inspection, inspection result,
//! 交钥匙 in order).

use crate::bundles::{case_of, finished, inspect_on_site, operating, submit};
use crate::common::*;
use onething_proto::{
    common::{self as cpb, CaseState},
    coordinator::{self as pb, BundleState, StepState, bundle_service_client::BundleServiceClient},
    supervision as spb,
    vehicle::{self as vpb, ProxyState, vehicle_service_client::VehicleServiceClient},
};
use std::time::Duration;
use tonic::Code;

const WAIT: Duration = Duration::from_secs(60);

/// A mesh whose business sweeps run every 200 ms, so a deadline the clock passes is acted on
/// at once.
pub(crate) fn swept(backend: Backend) -> MeshBuilder {
    TestMesh::with(backend).settings(|_, s| s.sweep_interval_ms = 200)
}

/// The bundle `id` once `ok` holds of it.
async fn bundle_when(
    c: &BundleServiceClient<Authed>,
    id: &str,
    what: &str,
    ok: impl Fn(&pb::Bundle) -> bool,
) -> pb::Bundle {
    eventually(WAIT, what, || {
        let mut c = c.clone();
        let id = id.to_string();
        let ok = &ok;
        async move {
            let b = c.get_bundle(pb::GetBundleRequest { bundle_id: id }).await.ok()?.into_inner().bundle?;
            ok(&b).then_some(b)
        }
    })
    .await
    .unwrap()
}

fn step<'a>(b: &'a pb::Bundle, id: &str) -> &'a pb::BundleStep {
    b.steps.iter().find(|s| s.step_id == id).unwrap()
}

/// The case `id` at `clients`'s department once `ok` holds of it.
async fn case_when(
    clients: &CaseServiceClient<Authed>,
    id: &str,
    what: &str,
    ok: impl Fn(&cpb::Case) -> bool,
) -> cpb::Case {
    eventually(WAIT, what, || {
        let mut c = clients.clone();
        let id = id.to_string();
        let ok = &ok;
        async move {
            let case = c.get_case(cpb::GetCaseRequest { case_id: id }).await.ok()?.into_inner().case?;
            ok(&case).then_some(case)
        }
    })
    .await
    .unwrap()
}

async fn accept(clerk: &mut CaseServiceClient<Authed>, id: &str) {
    clerk.accept_case(cpb::AcceptCaseRequest { case_id: id.into(), expected_version: 0 }).await.case();
}

async fn approve(clerk: &mut CaseServiceClient<Authed>, id: &str) -> cpb::Case {
    clerk.approve_case(cpb::ApproveCaseRequest { case_id: id.into(), expected_version: 0 }).await.case()
}

/// 企业准营: the precursor filing is approved long before the hotel licence is refused; the
/// filing may not stand alone, so its approval is revoked and the bundle shows each outcome.
/// The licence needs its on-site inspection, and a failed one refuses the approval.
async fn an_approved_filing_is_revoked_when_the_hotel_is_refused(backend: Backend) {
    let Some(w) = swept(backend).departments().coordinators(1).start().await else { return };
    let chem = onething_liaison::store::seed_chemicals().to_string();
    let as_chem = w.bundles(&enterprise_token(&chem)).await;
    let b = as_chem.clone().submit_bundle(operating(&chem, "revoke-1")).await.bundle();
    let (hotel, filing) = (
        case_of(&mut as_chem.clone(), &b.bundle_id, "hotel_licence").await,
        case_of(&mut as_chem.clone(), &b.bundle_id, "precursor_filing").await,
    );
    let mut clerk = w.clerk(LIAISON).await;
    accept(&mut clerk, &filing).await;
    assert_eq!(approve(&mut clerk, &filing).await.state(), CaseState::Approved);
    bundle_when(&as_chem, &b.bundle_id, "the filing approved", |b| {
        step(b, "precursor_filing").state() == StepState::Done
    })
    .await;

    accept(&mut clerk, &hotel).await;
    let no_inspection =
        clerk.approve_case(cpb::ApproveCaseRequest { case_id: hotel.clone(), expected_version: 0 }).await;
    let err = no_inspection.unwrap_err();
    assert_eq!(
        (err.code(), reason_of(&err).as_str()),
        (Code::FailedPrecondition, "LIAISON_ON_SITE_INSPECTION_REQUIRED")
    );
    inspect_on_site(&mut clerk, &hotel, false).await;
    let failed = clerk.approve_case(cpb::ApproveCaseRequest { case_id: hotel.clone(), expected_version: 0 }).await;
    assert_eq!(failed.unwrap_err().code(), Code::FailedPrecondition, "a failed inspection grants no licence");
    clerk
        .reject_case(cpb::RejectCaseRequest {
            case_id: hotel.clone(),
            reason_code: "LIAISON_FIRE_SAFETY_FAILED".into(),
            reason_text: "消防通道堵塞".into(),
            expected_version: 0,
        })
        .await
        .case();

    let done = finished(&mut as_chem.clone(), &b.bundle_id).await;
    assert_eq!(done.state(), BundleState::Failed);
    assert_eq!(step(&done, "hotel_licence").state(), StepState::Refused);
    assert_eq!(step(&done, "precursor_filing").state(), StepState::Revoked, "the approved filing may not stand");
    let revoked = clerk.get_case(cpb::GetCaseRequest { case_id: filing }).await.case();
    assert_eq!((revoked.state(), revoked.reason_code.as_str()), (CaseState::Revoked, "BUNDLE_STEP_REFUSED"));
    w.stop_all().await;
}
both_backends!(an_approved_filing_is_revoked_when_the_hotel_is_refused);

/// 容缺 in the saga: a hotel licence approved while its security plan is owed completes the
/// bundle provisionally, showing what is owed and by when. The plan arriving completes it;
/// its deadline passing revokes the licence and fails the bundle, whose approved filing is
/// revoked in turn.
async fn a_provisional_licence_completes_the_bundle_either_way(backend: Backend) {
    let Some(w) = swept(backend).departments().coordinators(1).start().await else { return };
    let chem = onething_liaison::store::seed_chemicals().to_string();
    let as_chem = w.bundles(&enterprise_token(&chem)).await;
    let mut clerk = w.clerk(LIAISON).await;
    let mut provisional = Vec::new();
    for key in ["owed-supplied", "owed-missed"] {
        let mut req = operating(&chem, key);
        req.materials.retain(|m| m.code != "security_plan");
        let b = as_chem.clone().submit_bundle(req).await.bundle();
        let hotel = case_of(&mut as_chem.clone(), &b.bundle_id, "hotel_licence").await;
        let filing = case_of(&mut as_chem.clone(), &b.bundle_id, "precursor_filing").await;
        for case in [&hotel, &filing] {
            accept(&mut clerk, case).await;
        }
        inspect_on_site(&mut clerk, &hotel, true).await;
        assert_eq!(approve(&mut clerk, &hotel).await.state(), CaseState::ApprovedProvisionally);
        approve(&mut clerk, &filing).await;
        let b = bundle_when(&as_chem, &b.bundle_id, "the provisional completion", |b| {
            b.state() == BundleState::CompletedProvisionally
        })
        .await;
        let owed = step(&b, "hotel_licence");
        assert_eq!(owed.state(), StepState::Provisional);
        assert_eq!(owed.owed_materials, ["security_plan"]);
        assert!(owed.owed_by.is_some(), "by when the plan is owed");
        provisional.push((b.bundle_id, hotel, filing));
    }
    // The plan arrives: the licence is final and the bundle complete.
    let (supplied, hotel, _) = &provisional[0];
    w.cases(LIAISON, &enterprise_token(&chem))
        .await
        .supply_materials(cpb::SupplyMaterialsRequest {
            case_id: hotel.clone(),
            materials: vec![material("security_plan")],
            expected_version: 0,
        })
        .await
        .case();
    let b = bundle_when(&as_chem, supplied, "completion", |b| b.state() == BundleState::Completed).await;
    assert_eq!(step(&b, "hotel_licence").state(), StepState::Done);

    // The other misses its deadline (ten working days): the licence is revoked, the bundle
    // fails and the approved filing that may not stand alone is revoked as well.
    w.clock.advance(chrono::Duration::days(30));
    let (missed, hotel, filing) = &provisional[1];
    let b = bundle_when(&as_chem, missed, "the compensation", |b| {
        b.state() == BundleState::Failed && step(b, "precursor_filing").state() == StepState::Revoked
    })
    .await;
    assert_eq!(step(&b, "hotel_licence").state(), StepState::Refused);
    let licence = clerk.get_case(cpb::GetCaseRequest { case_id: hotel.clone() }).await.case();
    assert_eq!((licence.state(), licence.reason_code.as_str()), (CaseState::Revoked, "CASE_OWED_MATERIAL_OVERDUE"));
    let filing = clerk.get_case(cpb::GetCaseRequest { case_id: filing.clone() }).await.case();
    assert_eq!(filing.state(), CaseState::Revoked);
    let completed = as_chem.clone().get_bundle(pb::GetBundleRequest { bundle_id: supplied.clone() }).await.bundle();
    assert_eq!(completed.state(), BundleState::Completed, "the completed bundle is not touched");
    w.stop_all().await;
}
both_backends!(a_provisional_licence_completes_the_bundle_either_way);

/// M16: a precursor filing is decided within 24 hours of the application, whoever accepts
/// it when: the clock runs from receipt, the warning comes in the last quarter (six hours),
/// not on arrival, and a filing left unaccepted goes overdue and gets one 督办 notice.
async fn the_clock_runs_from_receipt(backend: Backend) {
    let Some(w) = swept(backend).service(LIAISON).service(ServiceKind::Supervision).start().await else { return };
    let chem = onething_liaison::store::seed_chemicals().to_string();
    let filing = w
        .cases(LIAISON, &enterprise_token(&chem))
        .await
        .create_case(crate::liaison::case(
            "liaison.precursor_chemical_filing",
            &chem,
            &[
                ("chemical", "acetone"),
                ("quantity_kg", "100"),
                ("purpose", "purchase"),
                ("counterparty_credit_code", "91350100M000100Y43"),
            ],
            &["purchase_contract", "qualification_certificate"],
            "m16-1",
        ))
        .await
        .case();
    assert_eq!(filing.state(), CaseState::Submitted);
    let rule = filing.time_rule.unwrap();
    let (received, due, warn) =
        (filing.create_time.unwrap().seconds, rule.due_time.unwrap().seconds, rule.warn_time.unwrap().seconds);
    assert_eq!(due - received, 24 * 3600, "due 24 hours after the application");
    assert_eq!(due - warn, 6 * 3600, "warned in the last quarter of its time");

    let mut sup = w.supervision(&staff("supervision", &["inspector"])).await;
    let id = filing.case_id.clone();
    let state_at = |after: i64| {
        let mut sup = sup.clone();
        let id = id.clone();
        async move {
            let at = prost_types::Timestamp { seconds: received + after, nanos: 0 };
            let items = sup.list_deadlines(spb::ListDeadlinesRequest { at: Some(at) }).await.answer().items;
            items.iter().find(|i| i.id == id).map(|i| i.deadline_state())
        }
    };
    eventually(WAIT, "supervision to follow the filing", || async {
        let mut s = sup.clone();
        let at = prost_types::Timestamp { seconds: received + 20 * 3600, nanos: 0 };
        let items = s.list_deadlines(spb::ListDeadlinesRequest { at: Some(at) }).await.ok()?.into_inner().items;
        items.iter().any(|i| i.id == filing.case_id).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(state_at(60).await, None, "normal on arrival: not listed");
    assert_eq!(state_at(20 * 3600).await, Some(spb::DeadlineState::Warning));
    assert_eq!(state_at(25 * 3600).await, Some(spb::DeadlineState::Overdue));
    // The day passes with the filing still waiting for a clerk: one 督办 notice.
    w.clock.advance(chrono::Duration::hours(25));
    let js = w.nats.jetstream().await;
    let notice = eventually(WAIT, "the 督办 notice", || async {
        let s = js.get_stream("ONETHING_SUPERVISION").await.ok()?;
        s.get_last_raw_message_by_subject("onething.supervision.v1.notice.issued").await.ok()
    })
    .await
    .unwrap();
    let notice: spb::NoticeIssued = prost::Message::decode(notice.payload).unwrap();
    assert_eq!((notice.kind.as_str(), notice.id.as_str()), ("case", filing.case_id.as_str()));
    let _ = sup.list_deadlines(spb::ListDeadlinesRequest { at: None }).await.answer();
    w.stop_all().await;
}
both_backends!(the_clock_runs_from_receipt);

/// 一次性告知: what is missing is asked for all at once, with its own deadline; a partial
/// answer is refused naming the rest; the whole one lets intake run again; a supplement
/// never given closes the case as not accepted once its deadline passes.
async fn missing_materials_are_asked_for_at_once(backend: Backend) {
    let Some(w) = swept(backend).service(EXIT_ENTRY).start().await else { return };
    let passport = "E10000077";
    let mut foreigner = w.cases(EXIT_ENTRY, &foreigner_token(passport)).await;
    let mut asked = Vec::new();
    for key in ["once-1", "once-2"] {
        let mut req = crate::exit_entry::permit_request(passport, key, false);
        req.materials.retain(|m| m.code == "passport");
        let c = foreigner.create_case(req).await.case();
        assert_eq!(c.state(), CaseState::AwaitingSupplement);
        assert_eq!(c.reason_code, "CASE_SUPPLEMENT_REQUESTED");
        assert_eq!(c.missing_materials, ["work_permit", "photo"], "everything missing, at once");
        assert!(c.time_rule.unwrap().supplement_due_time.is_some());
        asked.push(c.case_id);
    }
    let supply = |id: &str, codes: &[&str]| cpb::SupplyMaterialsRequest {
        case_id: id.into(),
        materials: codes.iter().map(|c| material(c)).collect(),
        expected_version: 0,
    };
    let partial = foreigner.supply_materials(supply(&asked[0], &["photo"])).await.unwrap_err();
    assert_eq!((partial.code(), reason_of(&partial).as_str()), (Code::InvalidArgument, "CASE_MATERIALS_STILL_MISSING"));
    assert_eq!(violations(&partial), [("materials".to_string(), "still missing: work_permit".to_string())]);
    // Only what was asked for, by a reference that is a document (not a script or a file).
    let unasked = foreigner.supply_materials(supply(&asked[0], &["photo", "work_permit", "passport"])).await;
    assert_eq!(violations(&unasked.unwrap_err())[0].0, "materials[2].code");
    for uri in ["javascript:alert(1)", "file:///etc/passwd", "elicence://photo/ 1"] {
        let mut bad = supply(&asked[0], &["photo", "work_permit"]);
        bad.materials[0].document_uri = uri.into();
        let err = foreigner.supply_materials(bad).await.unwrap_err();
        assert_eq!(violations(&err)[0].0, "materials[0].document_uri", "{uri}");
    }
    let whole = foreigner.supply_materials(supply(&asked[0], &["photo", "work_permit"])).await.case();
    assert_eq!(whole.state(), CaseState::Submitted, "received again: a clerk accepts it");
    assert!(whole.missing_materials.is_empty());

    // The other is never supplied: five working days later it is not accepted.
    w.clock.advance(chrono::Duration::days(15));
    let clerk = w.clerk(EXIT_ENTRY).await;
    let closed =
        case_when(&clerk, &asked[1], "the supplement deadline", |c| c.state() != CaseState::AwaitingSupplement).await;
    assert_eq!((closed.state(), closed.reason_code.as_str()), (CaseState::NotAccepted, "CASE_SUPPLEMENT_OVERDUE"));
    let first = clerk.clone().get_case(cpb::GetCaseRequest { case_id: asked[0].clone() }).await.case();
    assert_eq!(first.state(), CaseState::Submitted, "the supplied one is not touched");
    w.stop_all().await;
}
both_backends!(missing_materials_are_asked_for_at_once);

/// A bundle whose step waits on the applicant (补正) is paused: supervision issues no 督办
/// for it, however late the clock; supplied, it resumes and its due time has moved.
async fn a_bundle_waiting_on_its_applicant_is_paused(backend: Backend) {
    let Some(w) = swept(backend).everything().start().await else { return };
    let mut as_outsider = w.bundles(&citizen_token(OUTSIDER)).await;
    let b = as_outsider
        .submit_bundle(submit(
            "school_enrollment",
            crate::bundles::citizen_applicant(OUTSIDER),
            &[("residence_address", "威海市环翠区某处"), ("residence_since", "2025-01-01")],
            &["id_card", "residence_proof", "photo"],
            &["residence_permit"],
            "paused-1",
        ))
        .await
        .bundle();
    let due_before = b.due_time.unwrap().seconds;
    let _ = w.supervision(&staff("supervision", &["inspector"])).await;
    let case = case_of(&mut as_outsider, &b.bundle_id, "residence_permit").await;
    let mut clerk = w.clerk(HOUSEHOLD).await;
    accept(&mut clerk, &case).await;
    // Eight working days on, the clerk asks for a clearer residence proof.
    w.clock.advance(chrono::Duration::days(11));
    clerk
        .request_supplement(cpb::RequestSupplementRequest {
            case_id: case.clone(),
            material_codes: vec!["residence_proof".into()],
            reason_text: "居住证明不清晰".into(),
            expected_version: 0,
        })
        .await
        .case();
    let paused = bundle_when(&as_outsider, &b.bundle_id, "the pause", |b| b.waiting_on_applicant).await;
    assert!(step(&paused, "residence_permit").waiting_on_applicant);
    assert_eq!(step(&paused, "residence_permit").owed_materials, ["residence_proof"]);
    // Supervision has both the bundle and its case as paused before the clock moves on.
    let sup_db = w.db(ServiceKind::Supervision).clone();
    let watched_paused = format!("tracked WHERE paused AND id IN ('{}', '{case}')", b.bundle_id);
    eventually(WAIT, "supervision to see the pause", || {
        let (db, sql) = (sup_db.clone(), watched_paused.clone());
        async move { (count(&db, &sql).await == 2).then_some(()) }
    })
    .await
    .unwrap();

    // Past the bundle's due time (ten working days), no 督办 while it waits on the applicant:
    // neither for the bundle nor for its case (several sweeps run meanwhile).
    w.clock.advance(chrono::Duration::days(5));
    let js = w.nats.jetstream().await;
    let notices = |id: String| {
        let js = js.clone();
        async move {
            let all = on_subject(&js, "ONETHING_SUPERVISION", "onething.supervision.v1.notice.issued").await;
            all.into_iter().filter_map(|p| <spb::NoticeIssued as prost::Message>::decode(p).ok()).find(|n| n.id == id)
        }
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(notices(b.bundle_id.clone()).await.is_none() && notices(case.clone()).await.is_none());

    // Supplied: the bundle resumes with its due time moved by the working days it waited, so
    // it is not late yet; once that later due time passes, it gets its notice.
    w.cases(HOUSEHOLD, &citizen_token(OUTSIDER))
        .await
        .supply_materials(cpb::SupplyMaterialsRequest {
            case_id: case.clone(),
            materials: vec![material("residence_proof")],
            expected_version: 0,
        })
        .await
        .case();
    let resumed = bundle_when(&as_outsider, &b.bundle_id, "the resumption", |b| !b.waiting_on_applicant).await;
    let moved = resumed.due_time.unwrap().seconds;
    assert!(moved > due_before + 86400, "the pause moved the bundle's due time: {due_before} → {moved}");
    w.clock.advance(chrono::Duration::days(60));
    eventually(WAIT, "the bundle's notice once it is late", || notices(b.bundle_id.clone())).await.unwrap();
    w.stop_all().await;
}
both_backends!(a_bundle_waiting_on_its_applicant_is_paused);

/// An inspection passes or fails (with its defects); a 交钥匙 booking is decided only after
/// its proxy steps, in order, reached the inspection; a 容缺 approval revoked puts the next
/// inspection date back.
async fn inspections_pass_or_fail_and_proxy_steps_come_first(backend: Backend) {
    let Some(w) = swept(backend).service(VEHICLE).start().await else { return };
    let owner = citizen_token(&seeded_parent());
    let station = staff("vehicle", &["clerk", "approver"]);
    let mut cases = w.cases(VEHICLE, &owner).await;
    let mut ops = VehicleServiceClient::new(w.channel(VEHICLE, &station).await);
    let book = |key: &str, time: &str, proxy: bool| {
        let mut r = crate::vehicle::booking(key, "2099-03-04", time);
        if proxy {
            r.form.insert("proxy".into(), "true".into());
        }
        r
    };
    let result = |id: &str, passed: bool, defects: &[&str]| vpb::RecordInspectionResultRequest {
        case_id: id.into(),
        passed,
        defects: defects.iter().map(|d| (*d).to_string()).collect(),
    };
    // 容缺: approved while the tax certificate is owed, the next inspection moves; missed,
    // the approval is revoked and the date is what it was before.
    let due_of = |ops: &VehicleServiceClient<Authed>| {
        let mut ops = ops.clone();
        async move {
            let vs = ops
                .list_vehicles(vpb::ListVehiclesRequest { owner_identifier: seeded_parent() })
                .await
                .answer()
                .vehicles;
            vs.into_iter().find(|v| v.plate == "鲁K12345").unwrap().inspection_due
        }
    };
    let before = due_of(&ops).await;
    let mut owed = book("owed-9", "11:00", false);
    owed.materials.retain(|m| m.code != "vehicle_tax_certificate");
    let owed = cases.create_case(owed).await.case();
    let provisional = ops.record_inspection_result(result(&owed.case_id, true, &[])).await.answer().case.unwrap();
    assert_eq!(provisional.state(), CaseState::ApprovedProvisionally);
    assert_ne!(due_of(&ops).await, before, "the approval moved the next inspection");
    w.clock.advance(chrono::Duration::days(40));
    let station_cases = w.cases(VEHICLE, &station).await;
    let revoked = case_when(&station_cases, &owed.case_id, "the revocation", |c| c.state() == CaseState::Revoked).await;
    assert_eq!(revoked.reason_code, "CASE_OWED_MATERIAL_OVERDUE");
    assert_eq!(due_of(&ops).await, before, "back to the date before this approval");

    // A failed inspection names its defects, and rejects the booking with them; a passed
    // one has none; neither outcome comes from the bare approve or reject.
    let failing = cases.create_case(book("fail-1", "09:00", false)).await.case();
    let err = ops.record_inspection_result(result(&failing.case_id, false, &[])).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = ops.record_inspection_result(result(&failing.case_id, true, &["制动距离超标"])).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "a pass with defects");
    let mut approver = w.cases(VEHICLE, &station).await;
    let bare = approver
        .approve_case(cpb::ApproveCaseRequest { case_id: failing.case_id.clone(), expected_version: 0 })
        .await
        .unwrap_err();
    let bare_fail = approver
        .reject_case(cpb::RejectCaseRequest {
            case_id: failing.case_id.clone(),
            reason_code: "VEHICLE_INSPECTION_FAILED".into(),
            reason_text: "没有缺陷".into(),
            expected_version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!((bare.code(), reason_of(&bare).as_str()), (Code::FailedPrecondition, "VEHICLE_INSPECTION_NOT_RECORDED"));
    assert_eq!(violations(&bare_fail)[0].0, "reason_code", "only the mesh sets a code it declares");
    let failed = ops.record_inspection_result(result(&failing.case_id, false, &["制动距离超标"])).await.answer();
    let failed = failed.case.unwrap();
    assert_eq!((failed.state(), failed.reason_code.as_str()), (CaseState::Rejected, "VEHICLE_INSPECTION_FAILED"));
    assert!(failed.reason_text.contains("制动距离超标"));
    assert_eq!(
        (failed.result["inspection_result"].as_str(), failed.result["defects"].as_str()),
        ("failed", "制动距离超标")
    );

    // 交钥匙: no result before the station has inspected the vehicle.
    let proxy = cases.create_case(book("proxy-1", "10:00", true)).await.case();
    let early = ops.record_inspection_result(result(&proxy.case_id, true, &[])).await.unwrap_err();
    assert_eq!((early.code(), reason_of(&early).as_str()), (Code::FailedPrecondition, "VEHICLE_PROXY_NOT_INSPECTED"));
    for state in [ProxyState::HandedOver, ProxyState::Inspecting, ProxyState::Inspected] {
        ops.advance_proxy_inspection(vpb::AdvanceProxyInspectionRequest {
            case_id: proxy.case_id.clone(),
            state: state as i32,
        })
        .await
        .answer();
    }
    let passed = ops.record_inspection_result(result(&proxy.case_id, true, &[])).await.answer().case.unwrap();
    assert_eq!(passed.state(), CaseState::Approved);
    assert_eq!(passed.result["inspection_result"], "passed");

    w.stop_all().await;
}
both_backends!(inspections_pass_or_fail_and_proxy_steps_come_first);
