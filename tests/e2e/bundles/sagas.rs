//! Each bundle from submit to completed; after_death waits for the deregistration; a refused
//! step fails the bundle and withdraws what cannot stand alone; a department that is down
//! delays, never loses and never duplicates a step; two coordinator replicas; the same
//! submit twice; bad input creates nothing anywhere; an unknown stored state is an error.

use super::*;
use onething_proto::{
    common as cpb,
    coordinator::{self as pb, BundleState, StepState},
};
use std::time::Duration;
use tonic::Code;
use tonic_types::StatusExt;

async fn every_bundle_completes(backend: Backend) {
    let Some(w) = TestMesh::with(backend).departments().coordinators(1).start().await else { return };
    let parent = seeded_parent();
    let mut as_parent = w.bundles_at(0, &citizen_token(&parent)).await;

    // 新生儿出生: the child gets an ID number.
    let b = as_parent
        .submit_bundle(newborn(citizen_applicant(&parent), &parent, ("王小雨", "F"), "Q3710020300", "b-newborn"))
        .await
        .unwrap()
        .into_inner()
        .bundle
        .unwrap();
    let b = finished(&mut as_parent, &b.bundle_id).await;
    assert_eq!(b.state(), BundleState::Completed, "{:?}", steps(&b));
    let child = b.steps[0].result["new_id_number"].clone();
    assert_eq!(child.len(), 18);

    // 教育入学 for that child (a local family: the registry confirmation).
    let b = as_parent
        .submit_bundle(submit(
            "school_enrollment",
            citizen_applicant(&parent),
            &[("child_id_number", &child)],
            &[],
            &["info_confirmation"],
            "b-school",
        ))
        .await
        .unwrap()
        .into_inner()
        .bundle
        .unwrap();
    let b = finished(&mut as_parent, &b.bundle_id).await;
    assert_eq!(b.state(), BundleState::Completed, "{:?}", steps(&b));
    assert_eq!(b.steps[0].result["purpose"], "school_enrollment");

    // 教育入学 for a non-local family: a residence permit, reviewed by a household clerk.
    let mut as_outsider = w.bundles_at(0, &citizen_token(OUTSIDER)).await;
    let b = as_outsider
        .submit_bundle(submit(
            "school_enrollment",
            citizen_applicant(OUTSIDER),
            &[("residence_address", "威海市环翠区某处"), ("residence_since", "2025-01-01")],
            &["id_card", "residence_proof", "photo"],
            &["residence_permit"],
            "b-school-2",
        ))
        .await
        .unwrap()
        .into_inner()
        .bundle
        .unwrap();
    let case = case_of(&mut as_outsider, &b.bundle_id, "residence_permit").await;
    let mut hh_clerk = w.cases(HOUSEHOLD, &staff("household", &["clerk", "approver"])).await;
    hh_clerk.accept_case(cpb::AcceptCaseRequest { case_id: case.clone(), expected_version: 0 }).await.unwrap();
    hh_clerk.approve_case(cpb::ApproveCaseRequest { case_id: case, expected_version: 0 }).await.unwrap();
    let b = finished(&mut as_outsider, &b.bundle_id).await;
    assert_eq!(b.state(), BundleState::Completed, "{:?}", steps(&b));
    assert!(b.steps[0].result.contains_key("residence_permit_number"), "the step's result reaches the bundle");

    // 退休: the retiree confirms his own registration.
    let retiree = onething_household::store::seed_id("371002", "1958-01-20", 31).unwrap().expose().to_string();
    let mut as_retiree = w.bundles_at(0, &citizen_token(&retiree)).await;
    let b = as_retiree
        .submit_bundle(submit(
            "retirement",
            citizen_applicant(&retiree),
            &[("subject_id_number", &retiree)],
            &[],
            &[],
            "b-retire",
        ))
        .await
        .unwrap()
        .into_inner()
        .bundle
        .unwrap();
    assert_eq!(finished(&mut as_retiree, &b.bundle_id).await.state(), BundleState::Completed);

    // 企业开办: three departments, no human step.
    let new_co = onething_platform::ids::CreditCode::complete("91371002MA3C00077").unwrap().to_string();
    let mut as_new_co = w.bundles_at(0, &enterprise_token(&new_co)).await;
    let b = as_new_co
        .submit_bundle(opening(enterprise_applicant(&new_co), "b-open"))
        .await
        .unwrap()
        .into_inner()
        .bundle
        .unwrap();
    let b = finished(&mut as_new_co, &b.bundle_id).await;
    assert_eq!(b.state(), BundleState::Completed, "{:?}", steps(&b));
    assert_eq!(b.steps.iter().map(|s| s.department.as_str()).collect::<Vec<_>>(), ["liaison", "household", "vehicle"]);

    // 企业准营: a hotel licence (inspected and approved by a liaison clerk) and a precursor filing.
    let chem = onething_liaison::store::seed_chemicals().to_string();
    let mut as_chem = w.bundles_at(0, &enterprise_token(&chem)).await;
    let b = as_chem.submit_bundle(operating(&chem, "b-operate")).await.unwrap().into_inner().bundle.unwrap();
    approve_operating(&w, &mut as_chem, &b.bundle_id).await;

    // 企业注销: seals cancelled, the fleet checked.
    let logistics = onething_liaison::store::seed_logistics().to_string();
    let mut as_logistics = w.bundles_at(0, &enterprise_token(&logistics)).await;
    let b = as_logistics
        .submit_bundle(submit(
            "enterprise_deregistration",
            enterprise_applicant(&logistics),
            &[("reason", "deregistration")],
            &["deregistration_or_bankruptcy_document"],
            &[],
            "b-dereg",
        ))
        .await
        .unwrap()
        .into_inner()
        .bundle
        .unwrap();
    let b = finished(&mut as_logistics, &b.bundle_id).await;
    assert_eq!(b.state(), BundleState::Completed, "{:?}", steps(&b));
    assert_eq!(b.steps[1].result["vehicle_count"], "2");

    // 公民身后: deregistration first, then the licence and the travel documents.
    let elder = onething_household::store::seed_id("371003", "1949-09-09", 62).unwrap().expose().to_string();
    // Reported by her son, who lives in her household.
    let relative = elders_son();
    let mut as_relative = w.bundles_at(0, &citizen_token(&relative)).await;
    let b = as_relative
        .submit_bundle(after_death(citizen_applicant(&relative), &elder, "SW-2026-0300", "b-death"))
        .await
        .unwrap()
        .into_inner()
        .bundle
        .unwrap();
    assert_eq!(
        steps(&b)[1..],
        [("driving_licence".to_string(), StepState::Blocked), ("travel_documents".to_string(), StepState::Blocked)],
        "they wait for the death fact"
    );
    let b = finished(&mut as_relative, &b.bundle_id).await;
    assert_eq!(b.state(), BundleState::Completed, "{:?}", steps(&b));
    assert_eq!(
        (b.steps[1].result["cancelled_count"].as_str(), b.steps[2].result["cancelled_count"].as_str()),
        ("1", "1")
    );
    // The cancellations were created after the deregistration was approved.
    let mut hh = w.cases(HOUSEHOLD, &service("coordinator", "household")).await;
    let mut v = w.cases(VEHICLE, &service("coordinator", "vehicle")).await;
    let dereg = hh
        .get_case(cpb::GetCaseRequest { case_id: b.steps[0].case_id.clone() })
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    let licence = v
        .get_case(cpb::GetCaseRequest { case_id: b.steps[1].case_id.clone() })
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert!(licence.create_time.unwrap().seconds >= dereg.update_time.unwrap().seconds);
    w.stop_all().await;
}
both_backends!(every_bundle_completes);

async fn a_refused_step_withdraws_what_cannot_stand_alone(backend: Backend) {
    let Some(w) = TestMesh::with(backend).departments().coordinators(1).start().await else { return };
    let chem = onething_liaison::store::seed_chemicals().to_string();
    let mut as_chem = w.bundles_at(0, &enterprise_token(&chem)).await;
    let b = as_chem.submit_bundle(operating(&chem, "refused-1")).await.unwrap().into_inner().bundle.unwrap();
    let hotel = case_of(&mut as_chem, &b.bundle_id, "hotel_licence").await;
    let precursor = case_of(&mut as_chem, &b.bundle_id, "precursor_filing").await;
    let mut clerk = w.cases(LIAISON, &staff("liaison", &["clerk", "approver"])).await;
    clerk.accept_case(cpb::AcceptCaseRequest { case_id: hotel.clone(), expected_version: 0 }).await.unwrap();
    clerk
        .reject_case(cpb::RejectCaseRequest {
            case_id: hotel,
            reason_code: "LIAISON_FIRE_SAFETY_FAILED".into(),
            reason_text: "消防不合格".into(),
            expected_version: 0,
        })
        .await
        .unwrap();
    let b = finished(&mut as_chem, &b.bundle_id).await;
    assert_eq!(b.state(), BundleState::Failed);
    assert_eq!(
        steps(&b),
        [("hotel_licence".into(), StepState::Refused), ("precursor_filing".into(), StepState::Cancelled)]
    );
    let c = clerk.get_case(cpb::GetCaseRequest { case_id: precursor }).await.unwrap().into_inner().case.unwrap();
    assert_eq!(c.state(), cpb::CaseState::Cancelled, "the department's case was withdrawn too");

    // A refused first step of after_death: the rest never start.
    let relative = seeded_person();
    let mut as_relative = w.bundles_at(0, &citizen_token(&relative)).await;
    let b = as_relative
        .submit_bundle(after_death(citizen_applicant(&relative), OUTSIDER, "SW-2026-0301", "refused-2"))
        .await
        .unwrap()
        .into_inner()
        .bundle
        .unwrap();
    let b = finished(&mut as_relative, &b.bundle_id).await;
    assert_eq!(b.state(), BundleState::Failed);
    // Not in the applicant's household nor a relative on record (nor in the registry: the
    // answer is the same).
    assert_eq!(b.steps[0].reason, "HOUSEHOLD_NOT_RELATIVE");
    assert_eq!(
        steps(&b)[1..],
        [("driving_licence".into(), StepState::Skipped), ("travel_documents".into(), StepState::Skipped)]
    );
    assert_eq!(count(w.db(VEHICLE), "cases").await, 0);
    assert_eq!(count(w.db(EXIT_ENTRY), "cases").await, 0);
    w.stop_all().await;
}
both_backends!(a_refused_step_withdraws_what_cannot_stand_alone);

async fn a_department_that_is_down_only_delays(backend: Backend) {
    let Some(mut w) = TestMesh::with(backend).departments().coordinators(1).start().await else { return };
    w.stop(VEHICLE).await;
    let logistics = onething_liaison::store::seed_logistics().to_string();
    let mut c = w.bundles_at(0, &enterprise_token(&logistics)).await;
    let b = c
        .submit_bundle(submit(
            "enterprise_deregistration",
            enterprise_applicant(&logistics),
            &[("reason", "deregistration")],
            &["deregistration_or_bankruptcy_document"],
            &[],
            "down-1",
        ))
        .await
        .expect("accepted while vehicle is down")
        .into_inner()
        .bundle
        .unwrap();
    // The applicant sees which part waits, and why.
    let waiting = eventually(Duration::from_secs(30), "the vehicle step to wait", || {
        let mut c = c.clone();
        let id = b.bundle_id.clone();
        async move {
            let b = c.get_bundle(pb::GetBundleRequest { bundle_id: id }).await.ok()?.into_inner().bundle?;
            let s = b.steps.iter().find(|s| s.step_id == "vehicle_verification")?.clone();
            (s.state() == StepState::Pending && s.reason.contains("vehicle unavailable")).then_some(b)
        }
    })
    .await
    .unwrap();
    assert_eq!(waiting.state(), BundleState::Running);
    w.restart(VEHICLE).await;
    let done = finished(&mut c, &b.bundle_id).await;
    assert_eq!(done.state(), BundleState::Completed, "{:?}", steps(&done));
    assert_eq!(count(w.db(VEHICLE), "cases").await, 1, "created once");
    assert_eq!(count(w.db(LIAISON), "cases").await, 1);
    w.stop_all().await;
}
both_backends!(a_department_that_is_down_only_delays);

async fn two_replicas_and_one_key(backend: Backend) {
    let Some(w) = TestMesh::with(backend).departments().coordinators(2).start().await else { return };
    let relative = seeded_person();
    let token = citizen_token(&relative);
    let mut ids = Vec::new();
    // Four retirement-like bundles through both replicas, each sent twice with one key.
    let retiree = onething_household::store::seed_id("371002", "1985-11-30", 42).unwrap().expose().to_string();
    for i in 0..4 {
        let req = submit(
            "retirement",
            citizen_applicant(&relative),
            &[("subject_id_number", &retiree)],
            &[],
            &[],
            &format!("twice-{i}"),
        );
        let mut first = w.bundles_at(i % 2, &token).await;
        let mut second = w.bundles_at((i + 1) % 2, &token).await;
        let a = first.submit_bundle(req.clone()).await.unwrap().into_inner().bundle.unwrap();
        let b = second.submit_bundle(req).await.unwrap().into_inner().bundle.unwrap();
        assert_eq!(a.bundle_id, b.bundle_id, "one key, one bundle");
        ids.push(a.bundle_id);
    }
    // The same caller's same key for another application is refused and makes nothing.
    let other = submit(
        "retirement",
        citizen_applicant(&relative),
        &[("subject_id_number", &seeded_parent())],
        &[],
        &[],
        "twice-0",
    );
    let err = w.bundles_at(1, &token).await.submit_bundle(other).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert_eq!(
        err.get_error_details().error_info().map(|i| i.reason.clone()).as_deref(),
        Some("COORDINATOR_IDEMPOTENCY_KEY_REUSED")
    );
    let mut c = w.bundles_at(0, &token).await;
    for id in &ids {
        assert_eq!(finished(&mut c, id).await.state(), BundleState::Completed);
    }
    assert_eq!(count(w.db(COORDINATOR), "bundles").await, 4);
    assert_eq!(count(w.db(HOUSEHOLD), "cases").await, 4, "each step created once");
    // Watching a finished bundle streams it once and ends.
    let mut stream = c.watch_bundle(pb::WatchBundleRequest { bundle_id: ids[0].clone() }).await.unwrap().into_inner();
    let first = stream.message().await.unwrap().unwrap().bundle.unwrap();
    assert_eq!(first.state(), BundleState::Completed);
    assert!(stream.message().await.unwrap().is_none());
    w.stop_all().await;
}
both_backends!(two_replicas_and_one_key);

async fn bad_bundles_create_nothing_anywhere(backend: Backend) {
    let Some(w) = TestMesh::with(backend).departments().coordinators(1).start().await else { return };
    let relative = elders_son();
    let mut c = w.bundles_at(0, &citizen_token(&relative)).await;
    let elder = onething_household::store::seed_id("371003", "1949-09-09", 62).unwrap().expose().to_string();
    let good = || after_death(citizen_applicant(&relative), &elder, "SW-2026-0400", "bad-x");
    let mut unknown = good();
    unknown.code = "moon_landing".into();
    let err = c.submit_bundle(unknown).await.unwrap_err();
    assert_eq!(
        (err.code(), err.get_error_details().error_info().unwrap().reason.as_str()),
        (Code::InvalidArgument, "COORDINATOR_UNKNOWN_BUNDLE")
    );
    let mut missing = good();
    missing.materials.clear();
    assert_eq!(fields(&c.submit_bundle(missing).await.unwrap_err()), ["materials"]);
    let mut stray = good();
    stray.materials.push(material("passport"));
    assert_eq!(fields(&c.submit_bundle(stray).await.unwrap_err()), ["materials[1].code"]);
    let mut malformed = good();
    malformed.form.insert("subject_id_number".into(), "37100319490909062X".into());
    malformed.applicant = citizen_applicant("11010519491231002Y");
    assert_eq!(
        fields(&c.submit_bundle(malformed).await.unwrap_err()),
        ["applicant.identifier", "form.subject_id_number"]
    );
    // The catalog's field definitions bound every form field, with the bound named.
    let mut long = good();
    long.form.insert("death_certificate_number".into(), "S".repeat(33));
    long.form.insert("death_date".into(), "09/09/2026".into());
    let err = c.submit_bundle(long).await.unwrap_err();
    assert_eq!(
        violations(&err),
        [
            ("form.death_certificate_number".to_string(), "at most 32 characters".to_string()),
            ("form.death_date".to_string(), "a date as YYYY-MM-DD".to_string()),
        ]
    );
    let err = c
        .submit_bundle(submit("after_death", citizen_applicant(&seeded_parent()), &[], &[], &[], "bad-y"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    // A value off the step's matter's list (the catalog's form of liaison.seal_cancellation)
    // is refused at submit, on the bundle field it came from, not later by the department.
    let off_list = submit(
        "enterprise_deregistration",
        enterprise_applicant(onething_liaison::store::seed_logistics().as_str()),
        &[("reason", "boredom")],
        &[],
        &[],
        "bad-z",
    );
    let err = c.submit_bundle(off_list).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(fields(&err).contains(&"form.reason".to_string()), "{err:?}");
    let mut other = good();
    other.applicant = citizen_applicant(&seeded_parent());
    assert_eq!(c.submit_bundle(other).await.unwrap_err().code(), Code::PermissionDenied, "in someone else's name");
    assert_eq!(count(w.db(COORDINATOR), "bundles").await, 0);
    for d in ServiceKind::DEPARTMENTS {
        assert_eq!(count(w.db(d), "cases").await, 0, "{}", d.name());
    }
    w.stop_all().await;
}
both_backends!(bad_bundles_create_nothing_anywhere);

/// A bundle or step state the code does not know (a hand edit, a newer version's row) fails
/// the read with INTERNAL, never read as running or pending; put back, it reads again.
async fn an_unknown_stored_state_is_an_error_not_a_default(backend: Backend) {
    let Some(w) = TestMesh::with(backend).departments().coordinators(1).start().await else { return };
    let relative = seeded_person();
    let retiree = onething_household::store::seed_id("371002", "1985-11-30", 42).unwrap().expose().to_string();
    let req =
        submit("retirement", citizen_applicant(&relative), &[("subject_id_number", &retiree)], &[], &[], "unknown-1");
    let mut c = w.bundles_at(0, &citizen_token(&relative)).await;
    let id = c.submit_bundle(req).await.unwrap().into_inner().bundle.unwrap().bundle_id;
    // Finished first, so no driver or consumer writes the rows while the test edits them.
    finished(&mut c, &id).await;
    let db = w.db(COORDINATOR);
    let get = pb::GetBundleRequest { bundle_id: id.clone() };
    for (table, filter) in [
        ("bundles", format!("id = '{id}'")),
        (
            "bundle_steps",
            format!(
                "bundle_id = '{id}' AND step_id = (SELECT MIN(step_id) FROM bundle_steps WHERE bundle_id = '{id}')"
            ),
        ),
    ] {
        let columns: &[&str] =
            if table == "bundles" { &["state", "applicant_kind", "form", "materials"] } else { &["state", "result"] };
        for column in columns {
            let was = crate::errors::overwrite(db, table, column, &filter, "archived").await;
            let err = c.get_bundle(get.clone()).await.unwrap_err();
            assert_eq!(err.code(), Code::Internal, "{table}.{column}: {err:?}");
            crate::errors::overwrite(db, table, column, &filter, &was).await;
            c.get_bundle(get.clone()).await.expect("the row reads again");
        }
    }
    w.stop_all().await;
}
both_backends!(an_unknown_stored_state_is_an_error_not_a_default);
