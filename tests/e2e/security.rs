//! Every RPC of every service, called by the wrong people: no token, an expired token, a
//! token signed by another key, a token for another issuer, staff of another department,
//! staff without the role, another applicant. Each gets the right code, and nothing in
//! the service's database changes.

use crate::common::*;
use onething_platform::auth::{Principal, SubjectKind};
use onething_proto::{common as pb, household as hpb};
use tonic::Code;

/// The RPCs of household: the shared case service and the registry.
const RPCS: [&str; 12] = [
    "CreateCase",
    "GetCase",
    "ListCases",
    "AcceptCase",
    "RequestSupplement",
    "SupplyMaterials",
    "ApproveCase",
    "RejectCase",
    "WithdrawCase",
    "CancelCase",
    "GetPerson",
    "GetHousehold",
];

/// Who calls, with which token, and what each RPC must answer them.
type Expectation<'a> = (&'a str, &'a str, Vec<(&'a str, Code)>);

/// Calls `rpc` on the target case as `token`; returns the status code (Ok for success).
async fn call(mesh: &TestMesh, token: Option<&str>, rpc: &str, case_id: &str) -> Code {
    let endpoint = mesh.service(HOUSEHOLD).endpoint();
    let mut c = CaseServiceClient::new(connect_as(&endpoint, token).await);
    let mut r = HouseholdServiceClient::new(connect_as(&endpoint, token).await);
    let id = case_id.to_string();
    let result = match rpc {
        "CreateCase" => c.create_case(residence_request("sec-create")).await.map(|_| ()),
        "GetCase" => c.get_case(pb::GetCaseRequest { case_id: id }).await.map(|_| ()),
        "ListCases" => c.list_cases(pb::ListCasesRequest::default()).await.map(|_| ()),
        "AcceptCase" => c.accept_case(pb::AcceptCaseRequest { case_id: id, expected_version: 0 }).await.map(|_| ()),
        "RequestSupplement" => c
            .request_supplement(pb::RequestSupplementRequest {
                case_id: id,
                material_codes: vec!["residence_proof".into()],
                reason_text: String::new(),
                expected_version: 0,
            })
            .await
            .map(|_| ()),
        "SupplyMaterials" => c
            .supply_materials(pb::SupplyMaterialsRequest {
                case_id: id,
                materials: vec![material("photo")],
                expected_version: 0,
            })
            .await
            .map(|_| ()),
        "ApproveCase" => c.approve_case(pb::ApproveCaseRequest { case_id: id, expected_version: 0 }).await.map(|_| ()),
        "RejectCase" => c
            .reject_case(pb::RejectCaseRequest {
                case_id: id,
                reason_code: "SECURITY_TEST".into(),
                reason_text: String::new(),
                expected_version: 0,
            })
            .await
            .map(|_| ()),
        "WithdrawCase" => {
            c.withdraw_case(pb::WithdrawCaseRequest { case_id: id, reason_text: String::new() }).await.map(|_| ())
        }
        "CancelCase" => {
            c.cancel_case(pb::CancelCaseRequest { case_id: id, reason_code: "SECURITY_TEST".into() }).await.map(|_| ())
        }
        "GetPerson" => r.get_person(hpb::GetPersonRequest { id_number: seeded_person() }).await.map(|_| ()),
        "GetHousehold" => {
            r.get_household(hpb::GetHouseholdRequest { household_number: "371002000002".into() }).await.map(|_| ())
        }
        other => panic!("no call for {other}"),
    };
    match result {
        Ok(()) => Code::Ok,
        Err(s) => s.code(),
    }
}

/// Everything the service stores, to prove a refused call changed nothing.
async fn snapshot(mesh: &TestMesh) -> (i64, i64, i64, i64) {
    let db = mesh.db(HOUSEHOLD);
    (
        count(db, "cases").await,
        count(db, "outbox").await,
        count(db, "persons").await,
        count(db, "cases WHERE version > 2").await,
    )
}

fn claims(p: Principal) -> onething_platform::auth::Claims {
    p.into_claims(&auth_settings(), 3600)
}

fn vehicle_staff() -> Principal {
    Principal {
        sub: "vehicle-staff".into(),
        kind: SubjectKind::Staff,
        dept: "vehicle".into(),
        roles: vec!["clerk".into(), "approver".into()],
        id_number: String::new(),
        credit_code: String::new(),
        passport_number: String::new(),
        actor: None,
    }
}

async fn every_rpc_refuses_the_wrong_callers(backend: Backend) {
    let Some(mesh) = TestMesh::with(backend).service(HOUSEHOLD).start().await else { return };
    // The target: a residence permit case, accepted by a clerk (version 2).
    let case = mesh
        .coordinator_cases(HOUSEHOLD)
        .await
        .create_case(residence_request("target"))
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    mesh.clerk(HOUSEHOLD)
        .await
        .accept_case(pb::AcceptCaseRequest { case_id: case.case_id.clone(), expected_version: 0 })
        .await
        .unwrap();
    let before = snapshot(&mesh).await;

    let minter = minter();
    let mut expired = claims(vehicle_staff());
    expired.dept = "household".into();
    expired.exp = 1_000_000;
    expired.iat = 999_000;
    let mut foreign_issuer = claims(vehicle_staff());
    foreign_issuer.dept = "household".into();
    foreign_issuer.iss = "some-other-sso".into();
    let other_key = {
        let dir = tempfile::tempdir().unwrap();
        let keys = onething_platform::auth::ensure_dev_keys(dir.path()).unwrap();
        onething_platform::auth::Minter::load(&keys.signing_key, auth_settings())
            .unwrap()
            .mint(Principal { dept: "household".into(), ..vehicle_staff() }, 3600)
            .unwrap()
    };
    let unauthenticated: Vec<(&str, Option<String>)> = vec![
        ("no token", None),
        ("garbage", Some("not-a-jwt".into())),
        ("expired", Some(minter.sign(&expired).unwrap())),
        ("wrong signature", Some(other_key)),
        ("wrong issuer", Some(minter.sign(&foreign_issuer).unwrap())),
    ];
    for (who, token) in &unauthenticated {
        for rpc in RPCS {
            assert_eq!(call(&mesh, token.as_deref(), rpc, &case.case_id).await, Code::Unauthenticated, "{who} → {rpc}");
        }
    }

    // Authenticated but not allowed.
    let vehicle = token(vehicle_staff());
    let household_clerk_only = staff("household", &["clerk"]);
    let household_approver_only = staff("household", &["approver"]);
    let another_applicant = citizen_token(&seeded_parent());
    let supervision = staff("supervision", &["inspector"]);
    let denied = Code::PermissionDenied;
    let expectations: Vec<Expectation> = vec![
        ("another department", &vehicle, RPCS.iter().map(|r| (*r, denied)).collect()),
        (
            "clerk without approver",
            &household_clerk_only,
            vec![("ApproveCase", denied), ("RejectCase", denied), ("WithdrawCase", denied), ("CancelCase", denied)],
        ),
        (
            "approver without clerk",
            &household_approver_only,
            vec![
                ("CreateCase", denied),
                ("AcceptCase", denied),
                ("RequestSupplement", denied),
                ("SupplyMaterials", denied),
                ("WithdrawCase", denied),
                ("CancelCase", denied),
            ],
        ),
        (
            "another applicant",
            &another_applicant,
            vec![
                ("CreateCase", denied),
                ("GetCase", denied),
                ("AcceptCase", denied),
                ("RequestSupplement", denied),
                ("SupplyMaterials", denied),
                ("ApproveCase", denied),
                ("RejectCase", denied),
                ("WithdrawCase", denied),
                ("CancelCase", denied),
                ("GetPerson", denied),
                ("GetHousehold", denied),
            ],
        ),
        (
            "supervision",
            &supervision,
            vec![
                ("CreateCase", denied),
                ("AcceptCase", denied),
                ("RequestSupplement", denied),
                ("SupplyMaterials", denied),
                ("ApproveCase", denied),
                ("RejectCase", denied),
                ("WithdrawCase", denied),
                ("CancelCase", denied),
            ],
        ),
    ];
    for (who, token, rpcs) in &expectations {
        for (rpc, code) in rpcs {
            assert_eq!(call(&mesh, Some(token), rpc, &case.case_id).await, *code, "{who} → {rpc}");
        }
    }
    assert_eq!(snapshot(&mesh).await, before, "no refused call changed anything");

    // What they may do: supervision and the household clerk read; another applicant's list
    // holds only their own cases; the applicant reads their case and may withdraw it.
    assert_eq!(call(&mesh, Some(&supervision), "GetCase", &case.case_id).await, Code::Ok);
    assert_eq!(call(&mesh, Some(&supervision), "ListCases", &case.case_id).await, Code::Ok);
    assert_eq!(call(&mesh, Some(&household_clerk_only), "GetPerson", "").await, Code::Ok);
    let theirs =
        mesh.cases(HOUSEHOLD, &another_applicant).await.list_cases(pb::ListCasesRequest::default()).await.unwrap();
    assert!(theirs.into_inner().cases.is_empty(), "another applicant sees none of these cases");
    let owner = citizen_token(OUTSIDER);
    assert_eq!(call(&mesh, Some(&owner), "GetCase", &case.case_id).await, Code::Ok);
    let own_list = mesh.cases(HOUSEHOLD, &owner).await.list_cases(pb::ListCasesRequest::default()).await.unwrap();
    assert_eq!(own_list.into_inner().cases.len(), 1);
    assert_eq!(call(&mesh, Some(&owner), "WithdrawCase", &case.case_id).await, Code::Ok);
    // A citizen may read their own registry record, and not apply in someone else's name.
    let parent = citizen_token(&seeded_parent());
    let mut r = HouseholdServiceClient::new(mesh.channel(HOUSEHOLD, &parent).await);
    r.get_person(hpb::GetPersonRequest { id_number: seeded_parent() }).await.unwrap();
    r.get_household(hpb::GetHouseholdRequest { household_number: "371002000001".into() }).await.unwrap();
    mesh.stop_all().await;
}
both_backends!(every_rpc_refuses_the_wrong_callers);

/// Idempotency keys are the caller's: another applicant sending the same key makes a case
/// of their own and learns nothing of the first (no answer with it, no "already used").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_does_not_leak_another_applicants_case() {
    let Some(mesh) = TestMesh::with(Backend::Sqlite).service(HOUSEHOLD).start().await else { return };
    let mut owner = mesh.cases(HOUSEHOLD, &citizen_token(OUTSIDER)).await;
    let first = owner.create_case(residence_request("shared-key")).await.unwrap().into_inner().case.unwrap();
    let mut other = mesh.cases(HOUSEHOLD, &citizen_token(&seeded_person())).await;
    let mut req = certificate_request("shared-key");
    req.matter_code = "household.residence_permit".into();
    req.materials = vec![material("id_card"), material("residence_proof")];
    req.form = form(&[("residence_address", "威海市环翠区某处"), ("residence_since", "2025-01-01")]);
    let theirs = other.create_case(req).await.unwrap().into_inner().case.unwrap();
    assert_ne!(theirs.case_id, first.case_id, "the same key of another caller is another request");
    assert_eq!(theirs.applicant.as_ref().unwrap().identifier, seeded_person());
    assert_eq!(theirs.idempotency_key, "shared-key", "the caller sees their own key");
    // The owner's retry still finds the owner's case.
    let again = owner.create_case(residence_request("shared-key")).await.unwrap().into_inner().case.unwrap();
    assert_eq!(again.case_id, first.case_id);
    mesh.stop_all().await;
}

/// Input limits: a message over 1 MiB is refused before it is read; pages are bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_requests_are_refused() {
    let Some(mesh) = TestMesh::with(Backend::Sqlite).service(HOUSEHOLD).start().await else { return };
    let mut cases = mesh.coordinator_cases(HOUSEHOLD).await;
    let mut huge = certificate_request("huge");
    huge.form.insert("purpose".into(), "就".repeat(700_000));
    let err = cases.create_case(huge).await.unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
    let mut long = certificate_request("long");
    long.form.insert("purpose".into(), "x".repeat(2000));
    let err = cases.create_case(long).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(count(mesh.db(HOUSEHOLD), "cases").await, 0);
    let page =
        mesh.clerk(HOUSEHOLD).await.list_cases(pb::ListCasesRequest { page_size: 100_000, ..Default::default() }).await;
    assert!(page.is_ok(), "a large page size is clamped, not an error");
    mesh.stop_all().await;
}

/// The SSO rotates its key: the new key is added to the mounted JWKS, then the old one is
/// removed. A running service honours the new key and refuses the old one without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_jwks_is_honoured_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    let keys_of = |path: &std::path::Path| -> Vec<serde_json::Value> {
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        v["keys"].as_array().cloned().unwrap()
    };
    let old_keys = keys_of(&dev_keys().jwks);
    std::fs::write(&jwks, serde_json::json!({ "keys": old_keys }).to_string()).unwrap();
    let new = onething_platform::auth::ensure_dev_keys(&dir.path().join("new")).unwrap();
    let mut settings_new = auth_settings();
    settings_new.jwks_file = new.jwks.display().to_string();
    let by_new = onething_platform::auth::Minter::load(&new.signing_key, settings_new)
        .unwrap()
        .mint(staff_principal("household", &["clerk"]), 600)
        .unwrap();
    let by_old = staff("household", &["clerk"]);

    let nats = NatsServer::start().await;
    let db = TestDb::fresh(Backend::Sqlite).await.unwrap();
    let mut settings = test_settings(&db.url, &nats.url());
    settings.auth.jwks_file = jwks.display().to_string();
    settings.auth.jwks_reload_seconds = 1;
    let household = start_household_with(settings).await;
    let get = |token: String| {
        let endpoint = household.endpoint();
        async move {
            let mut c = pb::case_service_client::CaseServiceClient::new(connect_as(&endpoint, Some(&token)).await);
            c.get_case(pb::GetCaseRequest { case_id: "nope".into() }).await.map(|_| ()).unwrap_err().code()
        }
    };
    assert_eq!(get(by_old.clone()).await, Code::NotFound, "the old key verifies");
    assert_eq!(get(by_new.clone()).await, Code::Unauthenticated, "the new key is not published yet");

    let both: Vec<serde_json::Value> = old_keys.iter().cloned().chain(keys_of(&new.jwks)).collect();
    std::fs::write(&jwks, serde_json::json!({ "keys": both }).to_string()).unwrap();
    eventually(std::time::Duration::from_secs(10), "the new key to verify", || {
        let get = get(by_new.clone());
        async move { (get.await == Code::NotFound).then_some(()) }
    })
    .await
    .unwrap();
    assert_eq!(get(by_old.clone()).await, Code::NotFound, "both keys during the rotation");

    std::fs::write(&jwks, serde_json::json!({ "keys": keys_of(&new.jwks) }).to_string()).unwrap();
    eventually(std::time::Duration::from_secs(10), "the old key to fail", || {
        let get = get(by_old.clone());
        async move { (get.await == Code::Unauthenticated).then_some(()) }
    })
    .await
    .unwrap();
    assert_eq!(get(by_new).await, Code::NotFound);
    household.stop().await;
}
