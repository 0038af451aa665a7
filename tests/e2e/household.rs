//! Household end to end: a birth registration completes, assigns a valid ID number, and its
//! CloudEvents land on JetStream with the right headers and decodable payloads; health and
//! reflection answer.

use crate::common::*;
use onething_platform::ids::CitizenId;
use onething_proto::{
    common::{CaseState, CaseStateChanged},
    household::{GetPersonRequest, PersonBorn},
};

async fn birth_registration_completes_and_publishes(backend: Backend) {
    let Some(mesh) = TestMesh::with(backend).service(HOUSEHOLD).start().await else {
        return;
    };
    let mut cases = mesh.coordinator_cases(HOUSEHOLD).await;
    let case = cases
        .create_case(birth_request("birth-1", "Q3710021001"))
        .await
        .expect("birth registration accepted")
        .into_inner()
        .case
        .expect("a case");
    assert_eq!(case.state(), CaseState::Approved);
    assert_eq!(case.version, 3, "submitted, accepted, approved");
    let new_id = CitizenId::parse(&case.result["new_id_number"]).expect("a valid ID number");
    assert_eq!(new_id.region(), "371002");
    assert_eq!(new_id.birth_date().to_string(), "2026-11-01");
    assert_eq!(new_id.sequence() % 2, 1, "a boy gets an odd sequence code");

    // The child is in the registry.
    let mut registry = HouseholdServiceClient::new(mesh.channel(HOUSEHOLD, &staff("household", &["clerk"])).await);
    let person = registry
        .get_person(GetPersonRequest { id_number: new_id.expose().into() })
        .await
        .unwrap()
        .into_inner()
        .person
        .unwrap();
    assert_eq!(person.name, "王小明");
    assert_eq!(person.household_number, "371002000001");

    // Three case transitions and the birth fact, as CloudEvents on JetStream.
    let js = mesh.nats.jetstream().await;
    let msgs = read_stream(&js, 4).await;
    let subjects: Vec<&str> = msgs.iter().map(|m| m.subject.as_str()).collect();
    assert_eq!(
        subjects,
        [
            "onething.household.v1.case.submitted",
            "onething.household.v1.case.accepted",
            "onething.household.v1.person.born",
            "onething.household.v1.case.approved",
        ]
    );
    for m in &msgs {
        let h = m.headers.as_ref().expect("headers");
        assert_eq!(h.get("ce-specversion").unwrap().as_str(), "1.0");
        assert_eq!(h.get("ce-source").unwrap().as_str(), "/onething/household");
        assert_eq!(h.get("content-type").unwrap().as_str(), "application/protobuf");
        assert_eq!(h.get("Nats-Msg-Id").unwrap().as_str(), h.get("ce-id").unwrap().as_str());
        assert!(chrono::DateTime::parse_from_rfc3339(h.get("ce-time").unwrap().as_str()).is_ok());
        let tp = h.get("traceparent").expect("trace context travels with the event").as_str();
        assert_eq!(tp.split('-').count(), 4, "W3C traceparent: {tp}");
    }
    let approved =
        onething_platform::events::Envelope::from_nats(msgs[3].headers.as_ref(), msgs[3].payload.clone()).unwrap();
    assert_eq!(approved.ce_type, "onething.common.v1.CaseStateChanged");
    assert_eq!(approved.subject, format!("cases/{}", case.case_id));
    let changed: CaseStateChanged = approved.decode().unwrap();
    assert_eq!(changed.case_id, case.case_id);
    assert_eq!(changed.to_state(), CaseState::Approved);
    assert_eq!(changed.from_state(), CaseState::Accepted);
    assert_eq!(changed.version, 3);
    let born =
        onething_platform::events::Envelope::from_nats(msgs[2].headers.as_ref(), msgs[2].payload.clone()).unwrap();
    let born: PersonBorn = born.decode().unwrap();
    assert_eq!(born.id_number, new_id.expose());
    assert_eq!(born.case_id, case.case_id);

    // One transaction's events share one trace.
    let traces: std::collections::BTreeSet<String> = msgs
        .iter()
        .map(|m| {
            m.headers.as_ref().unwrap().get("traceparent").unwrap().as_str().split('-').nth(1).unwrap().to_string()
        })
        .collect();
    assert_eq!(traces.len(), 1, "one request, one trace");

    // A second child of the same parent, born the same day, gets the next boy's code.
    let second = cases.create_case(birth_request("birth-2", "Q3710021002")).await.unwrap().into_inner().case.unwrap();
    let second_id = CitizenId::parse(&second.result["new_id_number"]).unwrap();
    assert_eq!(second_id.sequence(), new_id.sequence() + 2);
    mesh.stop_all().await;
}
both_backends!(birth_registration_completes_and_publishes);

async fn a_retried_create_returns_the_first_case(backend: Backend) {
    let Some(mesh) = TestMesh::with(backend).service(HOUSEHOLD).start().await else {
        return;
    };
    let mut cases = mesh.coordinator_cases(HOUSEHOLD).await;
    let first = cases.create_case(certificate_request("same-key")).await.unwrap().into_inner().case.unwrap();
    let again = cases.create_case(certificate_request("same-key")).await.unwrap().into_inner().case.unwrap();
    assert_eq!(first.case_id, again.case_id);
    assert_eq!(count(mesh.db(HOUSEHOLD), "cases").await, 1);
    // The birth certificate number is registered once, whatever the key.
    cases.create_case(birth_request("b-1", "Q3710029999")).await.unwrap();
    let dup = cases.create_case(birth_request("b-2", "Q3710029999")).await.unwrap().into_inner().case.unwrap();
    assert_eq!(dup.state(), CaseState::NotAccepted);
    assert_eq!(dup.reason_code, "HOUSEHOLD_BIRTH_ALREADY_REGISTERED");
    mesh.stop_all().await;
}
both_backends!(a_retried_create_returns_the_first_case);

async fn clerk_review_with_supplement(backend: Backend) {
    use onething_proto::common::*;
    let Some(mesh) = TestMesh::with(backend).service(HOUSEHOLD).start().await else {
        return;
    };
    // The applicant themself (the coordinator acts only on its bundles' cases).
    let mut cases = mesh.cases(HOUSEHOLD, &citizen_token(OUTSIDER)).await;
    let mut clerk = mesh.clerk(HOUSEHOLD).await;
    // A non-local resident (Beijing ID) applies for a residence permit without the photo (容缺).
    let created = cases.create_case(residence_request("rp-1")).await.unwrap().into_inner().case.unwrap();
    assert_eq!(created.state(), CaseState::Submitted);
    let id = created.case_id.clone();
    let accepted = clerk
        .accept_case(AcceptCaseRequest { case_id: id.clone(), expected_version: created.version })
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(accepted.state(), CaseState::Accepted);
    assert!(accepted.time_rule.as_ref().unwrap().due_time.is_some());
    // A stale version is refused.
    let stale = clerk
        .accept_case(AcceptCaseRequest { case_id: id.clone(), expected_version: created.version })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), tonic::Code::Aborted);
    let asked = clerk
        .request_supplement(RequestSupplementRequest {
            case_id: id.clone(),
            material_codes: vec!["residence_proof".into()],
            reason_text: "证明不清晰".into(),
            expected_version: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(asked.state(), CaseState::AwaitingSupplement);
    assert!(asked.time_rule.as_ref().unwrap().paused_since.is_some());
    let supplied = cases
        .supply_materials(SupplyMaterialsRequest {
            case_id: id.clone(),
            materials: vec![material("residence_proof")],
            expected_version: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(supplied.state(), CaseState::Accepted);
    // 一次性告知: asked once, the case is decided on what it has.
    let again = clerk
        .request_supplement(RequestSupplementRequest {
            case_id: id.clone(),
            material_codes: vec!["id_card".into()],
            reason_text: "再补一次".into(),
            expected_version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(
        (again.code(), reason_of(&again).as_str()),
        (tonic::Code::FailedPrecondition, "CASE_SUPPLEMENT_ALREADY_ASKED")
    );
    let approved = clerk
        .approve_case(ApproveCaseRequest { case_id: id.clone(), expected_version: 0 })
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(approved.state(), CaseState::ApprovedProvisionally, "the photo is still owed");
    assert_eq!(approved.missing_materials, vec!["photo".to_string()]);
    assert!(approved.result.contains_key("residence_permit_number"));
    let done = cases
        .supply_materials(SupplyMaterialsRequest {
            case_id: id.clone(),
            materials: vec![material("photo")],
            expected_version: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(done.state(), CaseState::Approved);
    assert_eq!(count(mesh.db(HOUSEHOLD), "residence_permits").await, 1);
    // The clerk's queue lists it.
    let list = clerk
        .list_cases(ListCasesRequest { page_size: 10, state: CaseState::Approved as i32, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.cases.len(), 1);
    mesh.stop_all().await;
}
both_backends!(clerk_review_with_supplement);

async fn deregistration_marks_the_person_deceased(backend: Backend) {
    use onething_proto::common::*;
    let Some(mesh) = TestMesh::with(backend).service(HOUSEHOLD).start().await else {
        return;
    };
    let mut cases = mesh.coordinator_cases(HOUSEHOLD).await;
    let elder = seeded_elder();
    let req = deregistration(&elder, "SW-2026-0001", "dereg-1", "bundle-1");
    let case = cases.create_case(req.clone()).await.unwrap().into_inner().case.unwrap();
    assert_eq!(case.state(), CaseState::Approved);
    // Deregistering again is refused at intake.
    let mut again = req;
    again.idempotency_key = "dereg-2".into();
    let second = cases.create_case(again).await.unwrap().into_inner().case.unwrap();
    assert_eq!(second.state(), CaseState::NotAccepted);
    assert_eq!(second.reason_code, "HOUSEHOLD_PERSON_DECEASED");
    let js = mesh.nats.jetstream().await;
    let msgs = read_stream(&js, 6).await;
    let dead = msgs
        .iter()
        .find(|m| m.subject.as_str() == "onething.household.v1.person.deceased")
        .expect("death fact published");
    let env = onething_platform::events::Envelope::from_nats(dead.headers.as_ref(), dead.payload.clone()).unwrap();
    let fact: onething_proto::household::PersonDeceased = env.decode().unwrap();
    assert_eq!(fact.id_number, elder);
    assert_eq!(fact.death_date, "2026-11-20");
    mesh.stop_all().await;
}
both_backends!(deregistration_marks_the_person_deceased);

async fn enterprise_collective_household(backend: Backend) {
    use onething_proto::common::*;
    let Some(mesh) = TestMesh::with(backend).service(HOUSEHOLD).start().await else {
        return;
    };
    let mut cases = mesh.coordinator_cases(HOUSEHOLD).await;
    let code = onething_platform::ids::CreditCode::complete("91371002MA3C00001").unwrap();
    let req = |key: &str| {
        verified(CreateCaseRequest {
            matter_code: "household.collective_household".into(),
            applicant: Some(Applicant {
                kind: ApplicantKind::Enterprise as i32,
                identifier: code.to_string(),
                name: "威海示例科技有限公司".into(),
                phone: String::new(),
            }),
            form: form(&[
                ("legal_representative_id_number", &seeded_parent()),
                ("premises_address", "威海市环翠区示例园区1号"),
            ]),
            materials: vec![
                material("business_licence"),
                material("legal_representative_id_card"),
                material("premises_property_certificate"),
            ],
            idempotency_key: key.into(),
            bundle_id: String::new(),
        })
    };
    let case = cases.create_case(req("ch-1")).await.unwrap().into_inner().case.unwrap();
    assert_eq!(case.state(), CaseState::Approved, "three materials suffice (M12), no human step");
    assert_eq!(case.result["household_number"], "371002000003");
    // The first request repeated (its answer lost): its rule would now refuse it, yet it is
    // answered with the case it made, and nothing more is written.
    let households = count(mesh.db(HOUSEHOLD), "households").await;
    let again = cases.create_case(req("ch-1")).await.unwrap().into_inner().case.unwrap();
    assert_eq!((again.case_id.as_str(), again.state()), (case.case_id.as_str(), CaseState::Approved));
    assert_eq!(again.result["household_number"], "371002000003");
    assert_eq!(count(mesh.db(HOUSEHOLD), "households").await, households);
    let second = cases.create_case(req("ch-2")).await.unwrap().into_inner().case.unwrap();
    assert_eq!(second.reason_code, "HOUSEHOLD_COLLECTIVE_EXISTS");
    mesh.stop_all().await;
}
both_backends!(enterprise_collective_household);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_serving_and_reflection_lists_the_services() {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let Some(mesh) = TestMesh::with(Backend::Sqlite).service(HOUSEHOLD).start().await else {
        return;
    };
    let channel =
        tonic::transport::Channel::from_shared(mesh.service(HOUSEHOLD).endpoint()).unwrap().connect().await.unwrap();
    let mut health = HealthClient::new(channel.clone());
    for service in ["", "onething.common.v1.CaseService", "onething.household.v1.HouseholdService"] {
        let status = health.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
        assert_eq!(status.status(), ServingStatus::Serving, "{service}");
    }
    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection.server_reflection_info(futures::stream::iter([request])).await.unwrap().into_inner();
    let response = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("no service list")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in
        ["onething.common.v1.CaseService", "onething.household.v1.HouseholdService", "grpc.health.v1.Health"]
    {
        assert!(names.contains(&expected.to_string()), "{expected} missing from {names:?}");
    }
    mesh.stop_all().await;
}

async fn confirmation_certificate_and_green_channel(backend: Backend) {
    use onething_proto::common::*;
    // Liaison holds the enterprise register household asks about green-channel employers.
    let Some(mesh) = TestMesh::with(backend).service(HOUSEHOLD).service(LIAISON).start().await else {
        return;
    };
    let mut cases = mesh.coordinator_cases(HOUSEHOLD).await;
    let mut clerk = mesh.clerk(HOUSEHOLD).await;
    let create = |matter: &str, subject: &str, extra: &[(&str, &str)], key: &str| {
        let mut f = form(&[("subject_id_number", subject)]);
        f.extend(form(extra));
        CreateCaseRequest {
            matter_code: matter.into(),
            applicant: citizen(subject),
            form: f,
            materials: vec![],
            idempotency_key: key.into(),
            bundle_id: String::new(),
        }
    };
    // 户籍信息确认 for retirement: decided at once, with the household it confirms.
    let conf = cases
        .create_case(create("household.info_confirmation", &seeded_person(), &[("purpose", "retirement")], "conf-1"))
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(conf.state(), CaseState::Approved);
    assert_eq!(conf.result["household_number"], "371002000002");
    assert!(conf.result["confirmation_number"].starts_with("HJQR"));
    // A member of the same household may ask (a parent for a child's school enrollment);
    // someone of another household may not.
    let mut for_spouse =
        create("household.info_confirmation", &seeded_spouse(), &[("purpose", "school_enrollment")], "conf-2");
    for_spouse.applicant = citizen(&seeded_parent());
    let ok = cases.create_case(for_spouse).await.unwrap().into_inner().case.unwrap();
    assert_eq!(ok.state(), CaseState::Approved);
    let mut for_stranger = create("household.certificate", &seeded_person(), &[("purpose", "就业")], "cert-2");
    for_stranger.applicant = citizen(&seeded_parent());
    let refused = cases.create_case(for_stranger).await.unwrap().into_inner().case.unwrap();
    assert_eq!(refused.reason_code, "HOUSEHOLD_NOT_SAME_HOUSEHOLD");
    // A person not in the registry gets no certificate: not accepted, with the reason.
    let stranger = OUTSIDER;
    let cert = cases
        .create_case(create("household.certificate", stranger, &[("purpose", "就业")], "cert-1"))
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(cert.state(), CaseState::NotAccepted);
    assert_eq!(cert.reason_code, "HOUSEHOLD_PERSON_NOT_FOUND");
    // 居民身份证加急: green-channel cases head the clerk's queue even when newer.
    let ordinary = cases.create_case(residence_request("rp-queue")).await.unwrap().into_inner().case.unwrap();
    let mut expedited = create(
        "household.id_card_expedited",
        &seeded_parent(),
        &[("employer_credit_code", &onething_liaison::store::seed_logistics().to_string())],
        "id-fast-1",
    );
    expedited.materials = vec![material("employment_proof"), material("photo")];
    let fast = cases.create_case(expedited).await.unwrap().into_inner().case.unwrap();
    assert_eq!(fast.state(), CaseState::Submitted, "a clerk reviews it");
    let queue = clerk
        .list_cases(ListCasesRequest { state: CaseState::Submitted as i32, ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .cases;
    let order: Vec<&str> = queue.iter().map(|c| c.case_id.as_str()).collect();
    assert_eq!(order, [fast.case_id.as_str(), ordinary.case_id.as_str()]);
    clerk.accept_case(AcceptCaseRequest { case_id: fast.case_id.clone(), expected_version: 0 }).await.unwrap();
    let issued = clerk
        .approve_case(ApproveCaseRequest { case_id: fast.case_id.clone(), expected_version: 0 })
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(issued.state(), CaseState::Approved);
    assert!(issued.result.contains_key("id_card_application_number"));
    // Residence permits: not for Weihai residents, not before six months of residence.
    let mut local = residence_request("rp-local");
    local.applicant = citizen(&seeded_parent());
    let refused = cases.create_case(local).await.unwrap().into_inner().case.unwrap();
    assert_eq!(refused.reason_code, "HOUSEHOLD_ALREADY_LOCAL");
    let mut recent = residence_request("rp-recent");
    let last_month = (chrono::Utc::now() - chrono::Duration::days(30)).format("%Y-%m-%d").to_string();
    recent.form.insert("residence_since".into(), last_month);
    let refused = cases.create_case(recent).await.unwrap().into_inner().case.unwrap();
    assert_eq!(refused.reason_code, "HOUSEHOLD_RESIDENCE_TOO_SHORT");
    // Paging walks the whole list.
    let first = clerk.list_cases(ListCasesRequest { page_size: 1, ..Default::default() }).await.unwrap().into_inner();
    assert_eq!(first.cases.len(), 1);
    let second = clerk
        .list_cases(ListCasesRequest { page_size: 10, page_token: first.next_page_token.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.cases.len() + second.cases.len(), 8);
    assert!(second.next_page_token.is_empty());
    mesh.stop_all().await;
}
both_backends!(confirmation_certificate_and_green_channel);

/// Household numbers are a sequence per region: enterprises registering at once each get
/// their own number, and none of them sees a conflict (no ABORTED reaches the caller).
async fn concurrent_collective_households_get_distinct_numbers(backend: Backend) {
    use onething_proto::common::*;
    let Some(mesh) = TestMesh::with(backend).service(HOUSEHOLD).start().await else {
        return;
    };
    let cases = mesh.coordinator_cases(HOUSEHOLD).await;
    let mut calls = Vec::new();
    for i in 0..8 {
        let mut cases = cases.clone();
        let code = onething_platform::ids::CreditCode::complete(&format!("91371002MA3D0001{i}")).unwrap();
        calls.push(tokio::spawn(async move {
            cases
                .create_case(verified(CreateCaseRequest {
                    matter_code: "household.collective_household".into(),
                    applicant: Some(Applicant {
                        kind: ApplicantKind::Enterprise as i32,
                        identifier: code.to_string(),
                        name: format!("威海并发示例企业{i}"),
                        phone: String::new(),
                    }),
                    form: form(&[
                        ("legal_representative_id_number", &seeded_parent()),
                        ("premises_address", "威海市环翠区示例园区2号"),
                    ]),
                    materials: vec![
                        material("business_licence"),
                        material("legal_representative_id_card"),
                        material("premises_property_certificate"),
                    ],
                    idempotency_key: format!("concurrent-ch-{i}"),
                    bundle_id: String::new(),
                }))
                .await
        }));
    }
    let mut numbers = std::collections::BTreeSet::new();
    for call in calls {
        let case = call.await.unwrap().expect("no conflict reaches the caller").into_inner().case.unwrap();
        assert_eq!(case.state(), CaseState::Approved);
        numbers.insert(case.result["household_number"].clone());
    }
    assert_eq!(numbers.len(), 8, "{numbers:?}");
    assert!(numbers.iter().all(|n| n.starts_with("371002")), "{numbers:?}");
    mesh.stop_all().await;
}
both_backends!(concurrent_collective_households_get_distinct_numbers);

/// A department starts only with rules for exactly its catalog matters: a catalog with a
/// household matter household has no rules for stops household at start, naming the code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalog_matter_without_rules_stops_the_start() {
    let builtin =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../services/platform/catalog.toml")).unwrap();
    let extra = "\n[[matters]]\ncode = \"household.unheard_of\"\nname = \"未知事项\"\ndepartment = \"household\"\n\
                 handling = \"review\"\ntime_unit = \"working_days\"\ntime_limit = 1\n";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("catalog.toml");
    std::fs::write(&file, format!("{builtin}{extra}")).unwrap();
    let db = TestDb::fresh(Backend::Sqlite).await.unwrap();
    let nats = NatsServer::start().await;
    let mut settings = test_settings(&db.url, &nats.url());
    settings.catalog_file = file.display().to_string();
    let err = onething_household::build(settings).await.err().expect("household must not start");
    assert!(format!("{err:#}").contains("household.unheard_of"), "{err:#}");
}
