//! Hostile callers inside the network, as issue 20 found them: a citizen steering an
//! enterprise's bundle with its step key, forged case events for a step, a passport number
//! equal to a citizen's ID number, and staff reading bundles that are not theirs.

use crate::{
    bundles::{
        approve_operating, case_of, citizen_applicant, enterprise_applicant, finished, opening, operating, submit,
    },
    common::*,
};
use onething_household::store::person::PersonStatus;
use onething_proto::{
    common::{self as cpb, CaseState, CaseStateChanged},
    coordinator::{self as pb, BundleState, StepState},
};
use std::time::Duration;
use tonic::Code;

/// Waits until the coordinator's consumer of `stream` has nothing pending or unacknowledged.
async fn drained(js: &async_nats::jetstream::Context, stream: &str) {
    eventually(Duration::from_secs(30), "the coordinator to take every event", || async {
        let s = js.get_stream(stream).await.ok()?;
        let names: Vec<String> =
            futures::StreamExt::collect::<Vec<_>>(s.consumer_names()).await.into_iter().flatten().collect();
        let ours: Vec<String> = names.into_iter().filter(|n| n.starts_with("coordinator-")).collect();
        if ours.is_empty() {
            return None;
        }
        for name in ours {
            let c: async_nats::jetstream::consumer::PullConsumer = s.get_consumer(&name).await.ok()?;
            let info = c.cached_info();
            if info.num_pending > 0 || info.num_ack_pending > 0 {
                return None;
            }
        }
        Some(())
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_citizen_cannot_steer_an_enterprise_bundle() {
    let Some(w) = TestMesh::with(Backend::Sqlite).departments().coordinators(1).start().await else { return };
    let chem = onething_liaison::store::seed_chemicals().to_string();
    let mut as_chem = w.bundles_at(0, &enterprise_token(&chem)).await;
    let b = as_chem.submit_bundle(operating(&chem, "hostile-operate")).await.unwrap().into_inner().bundle.unwrap();
    let hotel = case_of(&mut as_chem, &b.bundle_id, "hotel_licence").await;
    let step_key = format!("bundle:{}:hotel_licence", b.bundle_id);

    // The attack of the issue: a case of the citizen's own, put into the enterprise's bundle.
    let mut as_citizen = w.cases(HOUSEHOLD, &citizen_token(OUTSIDER)).await;
    let cases_before = count(w.db(HOUSEHOLD), "cases").await;
    for (bundle_id, key) in [
        (b.bundle_id.clone(), step_key.clone()),
        (b.bundle_id.clone(), "mine".into()),
        (String::new(), step_key.clone()),
    ] {
        let mut req = residence_request(&key);
        req.bundle_id = bundle_id;
        req.materials.clear(); // materials missing: it would be refused at once
        let err = as_citizen.create_case(req).await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    }
    assert_eq!(count(w.db(HOUSEHOLD), "cases").await, cases_before, "nothing written");

    // Forged events for the step: from another department's stream, naming another
    // department, or naming a case the step did not create.
    let js = async_nats::jetstream::new(async_nats::connect(w.nats.url()).await.unwrap());
    let forged = |dept: &str, case_id: &str, to: CaseState| CaseStateChanged {
        case_id: case_id.into(),
        matter_code: "liaison.hotel_licence".into(),
        department: dept.into(),
        to_state: to as i32,
        reason_code: "CASE_MISSING_MATERIALS".into(),
        version: 99,
        idempotency_key: step_key.clone(),
        bundle_id: b.bundle_id.clone(),
        applicant_kind: cpb::ApplicantKind::Enterprise as i32,
        ..Default::default()
    };
    let household = forged("household", "forged-case", CaseState::NotAccepted);
    crate::supervision::publish(&js, "household", "onething.household.v1.case.not_accepted", &household).await;
    let as_household = forged("household", &hotel, CaseState::Rejected);
    crate::supervision::publish(&js, "liaison", "onething.liaison.v1.case.rejected", &as_household).await;
    let other_case = forged("liaison", "another-case", CaseState::Rejected);
    crate::supervision::publish(&js, "liaison", "onething.liaison.v1.case.rejected", &other_case).await;
    drained(&js, "ONETHING_HOUSEHOLD").await;
    drained(&js, "ONETHING_LIAISON").await;

    let now = as_chem.get_bundle(pb::GetBundleRequest { bundle_id: b.bundle_id.clone() }).await.unwrap();
    let now = now.into_inner().bundle.unwrap();
    assert_eq!(now.state(), BundleState::Running);
    let step = now.steps.iter().find(|s| s.step_id == "hotel_licence").unwrap();
    assert_eq!(step.case_id, hotel, "the step still points at its own case");
    assert_eq!(step.state(), StepState::InProgress);
    assert!(step.reason.is_empty(), "{:?}", step.reason);

    // The bundle goes on as if nothing had happened.
    approve_operating(&w, &mut as_chem, &b.bundle_id).await;
    w.stop_all().await;
}

/// A foreign national whose passport number equals a citizen's ID number is someone else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identifier_of_another_kind_is_another_person() {
    let Some(mesh) = TestMesh::with(Backend::Sqlite).service(HOUSEHOLD).start().await else { return };
    let mut citizen = mesh.cases(HOUSEHOLD, &citizen_token(OUTSIDER)).await;
    let case = citizen.create_case(residence_request("kind-1")).await.unwrap().into_inner().case.unwrap();
    let mut foreigner = mesh.cases(HOUSEHOLD, &foreigner_token(OUTSIDER)).await;
    let listed = foreigner.list_cases(cpb::ListCasesRequest::default()).await.unwrap().into_inner();
    assert!(listed.cases.is_empty(), "{:?}", listed.cases.len());
    let id = case.case_id.clone();
    let denied = [
        foreigner.get_case(cpb::GetCaseRequest { case_id: id.clone() }).await.map(|_| ()),
        foreigner
            .supply_materials(cpb::SupplyMaterialsRequest {
                case_id: id.clone(),
                materials: vec![material("photo")],
                expected_version: 0,
            })
            .await
            .map(|_| ()),
        foreigner
            .withdraw_case(cpb::WithdrawCaseRequest { case_id: id.clone(), reason_text: String::new() })
            .await
            .map(|_| ()),
        // An id that does not exist answers the same: nobody learns what exists.
        foreigner.get_case(cpb::GetCaseRequest { case_id: "no-such-case".into() }).await.map(|_| ()),
        foreigner
            .withdraw_case(cpb::WithdrawCaseRequest { case_id: "no-such-case".into(), reason_text: String::new() })
            .await
            .map(|_| ()),
    ];
    for r in denied {
        assert_eq!(r.unwrap_err().code(), Code::PermissionDenied);
    }
    let again = citizen.get_case(cpb::GetCaseRequest { case_id: id }).await.unwrap().into_inner().case.unwrap();
    assert_eq!(again.version, case.version, "nothing changed");
    mesh.stop_all().await;
}

/// Staff see a bundle only where one of its steps is theirs, and only their steps in full;
/// supervision sees every bundle masked unless it holds `personal_data`; a passport number
/// equal to a citizen's ID number lists none of the citizen's bundles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_read_only_what_their_steps_need() {
    let Some(w) = TestMesh::with(Backend::Sqlite).departments().coordinators(1).start().await else { return };
    // 企业开办: liaison, household and vehicle steps, no human step.
    let new_co = onething_platform::ids::CreditCode::complete("91371002MA3C00078").unwrap().to_string();
    let mut as_new_co = w.bundles_at(0, &enterprise_token(&new_co)).await;
    let open = as_new_co
        .submit_bundle(opening(enterprise_applicant(&new_co), "least-open"))
        .await
        .unwrap()
        .into_inner()
        .bundle
        .unwrap();
    let open = finished(&mut as_new_co, &open.bundle_id).await;
    assert_eq!(open.state(), BundleState::Completed);
    // 企业准营: liaison steps only.
    let chem = onething_liaison::store::seed_chemicals().to_string();
    let mut as_chem = w.bundles_at(0, &enterprise_token(&chem)).await;
    let operate = as_chem.submit_bundle(operating(&chem, "least-operate")).await.unwrap().into_inner().bundle.unwrap();
    // A citizen's retirement bundle.
    let relative = seeded_person();
    let retiree = onething_household::store::seed_id("371002", "1985-11-30", 42).unwrap().expose().to_string();
    let retire = submit(
        "retirement",
        citizen_applicant(&relative),
        &[("subject_id_number", &retiree)],
        &[],
        &[],
        "least-retire",
    );
    let retire = w.bundles_at(0, &citizen_token(&relative)).await.submit_bundle(retire).await.unwrap();
    let retire = retire.into_inner().bundle.unwrap();

    let get = |c: &mut pb::bundle_service_client::BundleServiceClient<Authed>, id: &str| {
        let mut c = c.clone();
        let id = id.to_string();
        async move { c.get_bundle(pb::GetBundleRequest { bundle_id: id }).await.map(|r| r.into_inner().bundle.unwrap()) }
    };
    let list = |c: &mut pb::bundle_service_client::BundleServiceClient<Authed>| {
        let mut c = c.clone();
        async move {
            let l = c.list_bundles(pb::ListBundlesRequest { page_size: 100 }).await.unwrap().into_inner();
            l.bundles.into_iter().map(|b| b.bundle_id).collect::<Vec<_>>()
        }
    };

    // A vehicle clerk: the opening (a vehicle step), not the liaison-only bundle.
    let mut vehicle = w.bundles_at(0, &staff("vehicle", &["clerk", "approver"])).await;
    let seen = list(&mut vehicle).await;
    assert!(seen.contains(&open.bundle_id) && !seen.contains(&operate.bundle_id) && !seen.contains(&retire.bundle_id));
    assert_eq!(get(&mut vehicle, &operate.bundle_id).await.unwrap_err().code(), Code::PermissionDenied);
    assert_eq!(get(&mut vehicle, "no-such-bundle").await.unwrap_err().code(), Code::PermissionDenied);
    let theirs = get(&mut vehicle, &open.bundle_id).await.unwrap();
    let who = theirs.applicant.as_ref().unwrap();
    assert_ne!(who.identifier, new_co, "the applicant is masked");
    assert!(who.identifier.contains('*'));
    for s in &theirs.steps {
        let full = open.steps.iter().find(|o| o.step_id == s.step_id).unwrap();
        assert_eq!(s.state, full.state, "every step's state");
        if s.department == "vehicle" {
            assert_eq!((&s.case_id, &s.result), (&full.case_id, &full.result), "their own step in full");
        } else {
            assert!(s.case_id.is_empty() && s.result.is_empty() && s.reason.is_empty(), "{s:?}");
        }
    }

    // Supervision: every bundle, masked, unless it holds personal_data.
    let mut sup = w.bundles_at(0, &staff("supervision", &[])).await;
    let seen = list(&mut sup).await;
    assert!([&open, &operate, &retire].iter().all(|b| seen.contains(&b.bundle_id)));
    let masked = get(&mut sup, &retire.bundle_id).await.unwrap();
    assert_ne!(masked.applicant.as_ref().unwrap().identifier, relative);
    assert!(get(&mut sup, &open.bundle_id).await.unwrap().steps.iter().all(|s| s.result.is_empty()));
    let mut investigator = w.bundles_at(0, &staff("supervision", &["personal_data"])).await;
    assert_eq!(get(&mut investigator, &retire.bundle_id).await.unwrap().applicant.unwrap().identifier, relative);

    // The same identifier of another kind: none of the citizen's bundles.
    let mut foreigner = w.bundles_at(0, &foreigner_token(&relative)).await;
    assert!(list(&mut foreigner).await.is_empty());
    assert_eq!(get(&mut foreigner, &retire.bundle_id).await.unwrap_err().code(), Code::PermissionDenied);
    let withdrawn = foreigner.withdraw_bundle(pb::WithdrawBundleRequest { bundle_id: retire.bundle_id.clone() }).await;
    assert_eq!(withdrawn.unwrap_err().code(), Code::PermissionDenied);
    // Nor does a service on its own account list bundles.
    let mut svc = w.bundles_at(0, &service("supervision", "coordinator")).await;
    let denied = svc.list_bundles(pb::ListBundlesRequest { page_size: 10 }).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    w.stop_all().await;
}

/// Registry requests answer a stranger one way, whether the person asked about exists or
/// not, and an enterprise or a foreign national gets no citizen's registry facts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_requests_tell_strangers_nothing() {
    let Some(mesh) = TestMesh::with(Backend::Sqlite).service(HOUSEHOLD).start().await else { return };
    let unknown = onething_household::store::seed_id("371002", "1970-01-01", 7).unwrap().expose().to_string();
    let refusal = |c: cpb::Case| (c.state(), c.reason_code);
    let expected = (CaseState::NotAccepted, "HOUSEHOLD_NOT_SAME_HOUSEHOLD".to_string());
    // A citizen outside the household: a registered person and an unknown number alike.
    let mut stranger = mesh.cases(HOUSEHOLD, &citizen_token(OUTSIDER)).await;
    for (key, subject) in [("stranger-known", seeded_person()), ("stranger-unknown", unknown)] {
        let mut req = certificate_request(key);
        req.applicant = citizen(OUTSIDER);
        req.form = form(&[("subject_id_number", &subject), ("purpose", "就业")]);
        let c = stranger.create_case(req).await.unwrap().into_inner().case.unwrap();
        assert_eq!(refusal(c), expected, "{key}");
    }
    // An enterprise and a foreign national, for a registered citizen.
    let code = onething_vehicle::store::seed_fleet_owner().to_string();
    let askers = [
        (enterprise_token(&code), cpb::ApplicantKind::Enterprise, code.clone()),
        (foreigner_token("E12345678"), cpb::ApplicantKind::Foreigner, "E12345678".to_string()),
    ];
    for (i, (token, kind, identifier)) in askers.into_iter().enumerate() {
        let mut req = certificate_request(&format!("other-kind-{i}"));
        req.applicant =
            Some(cpb::Applicant { kind: kind as i32, identifier, name: "某某".into(), phone: String::new() });
        match mesh.cases(HOUSEHOLD, &token).await.create_case(req).await {
            Ok(r) => assert_eq!(refusal(r.into_inner().case.unwrap()), expected),
            // The form's rules may refuse the applicant's kind outright: no facts either way.
            Err(e) => assert_eq!(e.code(), Code::InvalidArgument, "{e:?}"),
        }
    }
    mesh.stop_all().await;
}

/// Nobody reports a stranger's death online: a citizen of another household, an enterprise
/// and a foreign national are refused alike (whether the person exists or not), the person
/// stays alive; a member of the household, or a household clerk at the window, may.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_one_reports_a_strangers_death() {
    let Some(mesh) = TestMesh::with(Backend::Sqlite).service(HOUSEHOLD).start().await else { return };
    let expected = (CaseState::NotAccepted, "HOUSEHOLD_NOT_RELATIVE".to_string());
    let unknown = onething_household::store::seed_id("371003", "1950-01-01", 9).unwrap().expose().to_string();
    let code = onething_vehicle::store::seed_fleet_owner().to_string();
    let strangers = [
        (citizen_token(&seeded_person()), cpb::ApplicantKind::Citizen, seeded_person()),
        (enterprise_token(&code), cpb::ApplicantKind::Enterprise, code.clone()),
        (foreigner_token("E12345678"), cpb::ApplicantKind::Foreigner, "E12345678".to_string()),
    ];
    for (i, (token, kind, identifier)) in strangers.into_iter().enumerate() {
        for subject in [seeded_elder(), unknown.clone()] {
            let mut req = deregistration(&subject, &format!("SW-X-{i}"), &format!("kill-{i}-{subject}"), "");
            req.applicant = Some(cpb::Applicant {
                kind: kind as i32,
                identifier: identifier.clone(),
                name: "某某".into(),
                phone: String::new(),
            });
            match mesh.cases(HOUSEHOLD, &token).await.create_case(req).await {
                Ok(r) => {
                    let c = r.into_inner().case.unwrap();
                    assert_eq!((c.state(), c.reason_code), expected);
                }
                Err(e) => assert_eq!(e.code(), Code::InvalidArgument, "{e:?}"),
            }
        }
    }
    let status = |db: &sea_orm::DatabaseConnection| {
        let db = db.clone();
        async move {
            use sea_orm::EntityTrait as _;
            let p = onething_household::store::person::Entity::find_by_id(seeded_elder()).one(&db).await.unwrap();
            p.unwrap().status
        }
    };
    assert_eq!(status(mesh.db(HOUSEHOLD)).await, PersonStatus::Active, "still alive");
    // Her son, in her household, may report it; so may a clerk at the window for anyone.
    let son = mesh.cases(HOUSEHOLD, &citizen_token(&elders_son())).await;
    let mut window = mesh.clerk(HOUSEHOLD).await;
    let mut req = deregistration(&seeded_person(), "SW-W-1", "window-1", "");
    req.applicant = citizen(&seeded_parent()); // a relative in another household, at the window
    let c = window.create_case(req).await.unwrap().into_inner().case.unwrap();
    assert_eq!(c.state(), CaseState::Approved, "{:?}", c.reason_code);
    let c = son.clone().create_case(deregistration(&seeded_elder(), "SW-S-1", "son-1", "")).await.unwrap();
    assert_eq!(c.into_inner().case.unwrap().state(), CaseState::Approved);
    assert_eq!(status(mesh.db(HOUSEHOLD)).await, PersonStatus::Deceased);
    mesh.stop_all().await;
}

/// Inputs that would make an event too large to publish (and so hold up the stream behind
/// it) are refused with field violations and store nothing: a complaint's department is a
/// department of the mesh, a bundle's form has the bounds of a case's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_that_would_block_a_stream_are_refused() {
    use onething_proto::supervision::{self as spb, supervision_service_client::SupervisionServiceClient};
    let nats = NatsServer::start().await;
    let (sup_db, co_db) =
        (TestDb::fresh(Backend::Sqlite).await.unwrap(), TestDb::fresh(Backend::Sqlite).await.unwrap());
    let sup = start_named("supervision", test_settings(&sup_db.url, &nats.url())).await;
    let co = start_named("coordinator", test_settings(&co_db.url, &nats.url())).await;
    let citizen = citizen_token(&seeded_person());
    let mut complaints = SupervisionServiceClient::new(connect_as(&sup.endpoint(), Some(&citizen)).await);
    for department in ["x".repeat(1_000_000), "交警支队".to_string(), String::new()] {
        let err = complaints
            .submit_complaint(spb::SubmitComplaintRequest {
                channel: spb::Channel::Online as i32,
                department,
                summary: "检测站乱收费".into(),
                idempotency_key: "big-1".into(),
                contact: "13712345678".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
    }
    assert_eq!(count(&sup.db, "complaints").await, 0);
    // And supervision's stream goes on: the next complaint's event is published.
    complaints
        .submit_complaint(spb::SubmitComplaintRequest {
            channel: spb::Channel::Online as i32,
            department: "vehicle".into(),
            summary: "检测站乱收费".into(),
            idempotency_key: "fine-1".into(),
            contact: "13712345678".into(),
        })
        .await
        .unwrap();
    let js = nats.jetstream().await;
    eventually(Duration::from_secs(30), "the complaint's event on supervision's stream", || async {
        let info = js.get_stream("ONETHING_SUPERVISION").await.ok()?.get_info().await.ok()?;
        (info.state.messages >= 1).then_some(())
    })
    .await
    .unwrap();
    let mut bundles =
        pb::bundle_service_client::BundleServiceClient::new(connect_as(&co.endpoint(), Some(&citizen)).await);
    let retiree = onething_household::store::seed_id("371002", "1985-11-30", 42).unwrap().expose().to_string();
    let mut req = submit(
        "retirement",
        citizen_applicant(&seeded_person()),
        &[("subject_id_number", &retiree)],
        &[],
        &[],
        "big-2",
    );
    req.form.insert("note".into(), "x".repeat(100_000));
    for i in 0..100 {
        req.form.insert(format!("extra_{i}"), "y".into());
    }
    let err = bundles.submit_bundle(req).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(count(&co.db, "bundles").await, 0);
    assert_eq!(count(&co.db, "outbox").await, 0);
    sup.stop().await;
    co.stop().await;
}
