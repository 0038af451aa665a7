//! Exit-entry end to end: a work-type residence permit runs to approval with the M13
//! explanation in the API and the event; expedited business-trip documents get their M15
//! due times; document cancellation waits for household's death event and completes when
//! it lands (once, however often it arrives); bad input stores nothing.

use crate::common::*;
use onething_platform::calendar::Calendar;
use onething_proto::{
    common::{self as pb, CaseState, case_service_client::CaseServiceClient},
    exit_entry::{self as xpb, exit_entry_service_client::ExitEntryServiceClient},
};
use std::time::Duration;
use tonic::Code;

/// Exit-entry's case service in `mesh` as `token`.
async fn cases_as(mesh: &TestMesh, token: &str) -> CaseServiceClient<Authed> {
    mesh.cases(EXIT_ENTRY, token).await
}

pub(crate) fn permit_request(passport: &str, key: &str, talent: bool) -> pb::CreateCaseRequest {
    pb::CreateCaseRequest {
        matter_code: "exit_entry.work_residence_permit".into(),
        applicant: Some(pb::Applicant {
            kind: pb::ApplicantKind::Foreigner as i32,
            identifier: passport.into(),
            name: "Anna Schmidt".into(),
            phone: String::new(),
        }),
        form: form(&[
            ("nationality", "DEU"),
            ("work_permit_number", "WP3710002026001"),
            ("work_permit_valid_until", "2030-06-30"),
            ("employer_credit_code", &onething_exit_entry::store::seed_enterprise().to_string()),
            ("high_level_talent", if talent { "true" } else { "false" }),
        ]),
        materials: vec![material("passport"), material("work_permit"), material("photo")],
        idempotency_key: key.into(),
        bundle_id: String::new(),
    }
}

fn trip_request(key: &str, urgent: bool) -> pb::CreateCaseRequest {
    let mut f = form(&[
        ("employer_credit_code", &onething_exit_entry::store::seed_enterprise().to_string()),
        ("purpose", "contract_signing"),
        ("destination", "雅加达"),
        ("departure_date", "2099-01-10"),
        ("document_kind", "passport"),
    ]);
    if urgent {
        f.extend(form(&[("extremely_urgent", "true"), ("urgency_reason", "签约时间提前")]));
    }
    pb::CreateCaseRequest {
        matter_code: "exit_entry.business_travel_expedited".into(),
        applicant: citizen(&seeded_parent()),
        form: f,
        materials: vec![material("id_card"), material("photo"), material("enterprise_assignment_letter")],
        idempotency_key: key.into(),
        bundle_id: String::new(),
    }
}

async fn a_work_permit_runs_to_approval_with_its_explanation(backend: Backend) {
    let Some(mesh) = TestMesh::with(backend).service(EXIT_ENTRY).start().await else { return };
    let passport = "E10000001";
    let mut applicant = cases_as(&mesh, &foreigner_token(passport)).await;
    let mut clerk = mesh.clerk(EXIT_ENTRY).await;
    let case = applicant.create_case(permit_request(passport, "wr-1", true)).await.unwrap().into_inner().case.unwrap();
    assert_eq!(case.state(), CaseState::Submitted);
    assert!(case.result["service_commissioner"].starts_with("SC00"), "a high-level talent gets a commissioner");
    clerk.accept_case(pb::AcceptCaseRequest { case_id: case.case_id.clone(), expected_version: 0 }).await.unwrap();
    let done = clerk
        .approve_case(pb::ApproveCaseRequest { case_id: case.case_id.clone(), expected_version: 0 })
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(done.state(), CaseState::Approved);
    assert_eq!(done.result["validity_rule"], "five_year");
    assert_eq!(done.result["counted_permits"], "WR2022030001,WR2023030001");
    assert!(done.result["explanation"].contains("M13"), "{}", done.result["explanation"]);
    assert!(done.result.contains_key("service_commissioner"), "the commissioner stays on the case");

    // The decision is an event a reviewer (or 人社) can read, with the same explanation.
    let js = mesh.nats.jetstream().await;
    let granted = eventually(Duration::from_secs(30), "the grant event", || async {
        let stream = js.get_stream("ONETHING_EXIT_ENTRY").await.ok()?;
        let msg =
            stream.get_last_raw_message_by_subject("onething.exit_entry.v1.residence_permit.granted").await.ok()?;
        Some(msg)
    })
    .await
    .unwrap();
    let env = onething_platform::events::Envelope::from_nats(Some(&granted.headers), granted.payload.clone()).unwrap();
    let fact: xpb::WorkResidencePermitGranted = env.decode().unwrap();
    assert_eq!(fact.rule(), xpb::ValidityRule::FiveYear);
    assert_eq!(fact.explanation, done.result["explanation"]);
    assert_eq!(fact.counted_permits, ["WR2022030001", "WR2023030001"]);
    assert!(!fact.explanation.contains(passport), "no passport number in the explanation");

    // A violation on record: ordinary validity, and the reason says so.
    let mut clerk_as_window = mesh.clerk(EXIT_ENTRY).await;
    let c2 = clerk_as_window
        .create_case(permit_request("E10000005", "wr-5", false))
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert!(!c2.result.contains_key("service_commissioner"));
    clerk.accept_case(pb::AcceptCaseRequest { case_id: c2.case_id.clone(), expected_version: 0 }).await.unwrap();
    let d2 =
        clerk.approve_case(pb::ApproveCaseRequest { case_id: c2.case_id.clone(), expected_version: 0 }).await.unwrap();
    let d2 = d2.into_inner().case.unwrap();
    assert_eq!(d2.result["validity_rule"], "ordinary");
    assert_eq!(d2.result["blocking_violation"], "2024-05-10 逾期居留3日");

    // The history now holds the new permit; the foreigner may read their own.
    let mut records = ExitEntryServiceClient::new(mesh.channel(EXIT_ENTRY, &foreigner_token(passport)).await);
    let history = records
        .get_permit_history(xpb::GetPermitHistoryRequest { passport_number: passport.into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(history.permits.len(), 3);
    let err = records
        .get_permit_history(xpb::GetPermitHistoryRequest { passport_number: "E10000005".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    mesh.stop_all().await;
}
both_backends!(a_work_permit_runs_to_approval_with_its_explanation);

async fn expedited_trips_are_due_in_two_working_days_or_the_same_day(backend: Backend) {
    let Some(mesh) = TestMesh::with(backend).service(EXIT_ENTRY).start().await else { return };
    let mut applicant = cases_as(&mesh, &citizen_token(&seeded_parent())).await;
    let mut clerk = mesh.clerk(EXIT_ENTRY).await;
    let calendar = Calendar::builtin();
    for (key, urgent, days) in [("trip-1", false, 2), ("trip-2", true, 0)] {
        let c = applicant.create_case(trip_request(key, urgent)).await.unwrap().into_inner().case.unwrap();
        let accepted =
            clerk.accept_case(pb::AcceptCaseRequest { case_id: c.case_id.clone(), expected_version: 0 }).await.unwrap();
        let accepted = accepted.into_inner().case.unwrap();
        let rule = accepted.time_rule.unwrap();
        let accepted_at = chrono::DateTime::from_timestamp(accepted.update_time.unwrap().seconds, 0).unwrap();
        let due = rule.due_time.unwrap();
        let expected = calendar.add_working_days(accepted_at, days);
        // Same calendar, same acceptance time (to the second): the same due time.
        assert!(
            (due.seconds - expected.at.timestamp()).abs() <= 1,
            "{key}: due {} expected {}",
            due.seconds,
            expected.at
        );
        assert_eq!(rule.limit, days);
        let done =
            clerk.approve_case(pb::ApproveCaseRequest { case_id: c.case_id, expected_version: 0 }).await.unwrap();
        assert!(done.into_inner().case.unwrap().result["document_number"].starts_with('E'));
    }
    // Someone not on the enterprise's staff is not accepted.
    let mut other = cases_as(&mesh, &citizen_token(&seeded_person())).await;
    let mut req = trip_request("trip-3", false);
    req.applicant = citizen(&seeded_person());
    let refused = other.create_case(req).await.unwrap().into_inner().case.unwrap();
    assert_eq!(refused.reason_code, "EXIT_ENTRY_NOT_EMPLOYED_BY_ENTERPRISE");
    mesh.stop_all().await;
}
both_backends!(expedited_trips_are_due_in_two_working_days_or_the_same_day);

async fn document_cancellation_waits_for_the_death_event(backend: Backend) {
    let Some(mesh) = TestMesh::with(backend).service(HOUSEHOLD).service(EXIT_ENTRY).start().await else { return };
    let to = |callee| service("coordinator", callee);
    let mut xe = mesh.cases(EXIT_ENTRY, &to("exit_entry")).await;
    let mut hh = mesh.cases(HOUSEHOLD, &to("household")).await;
    let elder = seeded_elder();

    // Created before the death is confirmed: accepted, waiting, and saying why.
    let waiting = xe
        .create_case(pb::CreateCaseRequest {
            matter_code: "exit_entry.document_cancellation".into(),
            applicant: citizen(&seeded_person()),
            form: form(&[("subject_id_number", &elder)]),
            materials: vec![],
            idempotency_key: "after-death-docs".into(),
            bundle_id: "bundle-x".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(waiting.state(), CaseState::Accepted);
    assert_eq!(waiting.reason_code, "EXIT_ENTRY_AWAITING_DEATH_CONFIRMATION");

    // Household deregisters the person; its death fact reaches exit-entry over JetStream.
    let dereg = hh
        .create_case(deregistration(&elder, "SW-2026-0100", "after-death-dereg", "bundle-x"))
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(dereg.state(), CaseState::Approved);
    let case_id = waiting.case_id.clone();
    let done = eventually(Duration::from_secs(30), "the cancellation to complete", || {
        let mut xe = xe.clone();
        let id = case_id.clone();
        async move {
            let c = xe.get_case(pb::GetCaseRequest { case_id: id }).await.ok()?.into_inner().case?;
            (c.state() == CaseState::Approved).then_some(c)
        }
    })
    .await
    .unwrap();
    assert_eq!(done.result["cancelled_count"], "1");
    assert!(done.reason_code.is_empty(), "the waiting reason is gone");
    // Registers are read by the department's staff (no service reads them).
    let clerk = staff("exit_entry", &[]);
    let mut records = ExitEntryServiceClient::new(mesh.channel(EXIT_ENTRY, &clerk).await);
    let docs =
        records.list_travel_documents(xpb::ListTravelDocumentsRequest { id_number: elder.clone() }).await.unwrap();
    assert!(docs.into_inner().documents.iter().all(|d| d.status() == xpb::TravelDocumentStatus::Cancelled));

    // The same death fact again (a new message id, so the broker does not drop it): one effect.
    let js = mesh.nats.jetstream().await;
    let stream = js.get_stream("ONETHING_HOUSEHOLD").await.unwrap();
    let fact = stream.get_last_raw_message_by_subject("onething.household.v1.person.deceased").await.unwrap();
    let mut headers = fact.headers.clone();
    headers.insert("Nats-Msg-Id", "replayed-death");
    js.publish_with_headers("onething.household.v1.person.deceased", headers, fact.payload.clone())
        .await
        .unwrap()
        .await
        .unwrap();
    let deaths_seq = stream.get_info().await.unwrap().state.last_sequence;
    eventually(Duration::from_secs(30), "exit-entry to take the repeat", || {
        let stream = stream.clone();
        async move {
            let mut c: async_nats::jetstream::consumer::Consumer<async_nats::jetstream::consumer::pull::Config> =
                stream.get_consumer("exit_entry-deaths").await.ok()?;
            let info = c.info().await.ok()?;
            (info.ack_floor.stream_sequence >= deaths_seq && info.num_ack_pending == 0).then_some(())
        }
    })
    .await
    .unwrap();
    assert_eq!(count(mesh.db(EXIT_ENTRY), "deceased_persons").await, 1);
    assert_eq!(
        count(mesh.db(EXIT_ENTRY), "outbox WHERE subject = 'onething.exit_entry.v1.travel_documents.cancelled'").await,
        1
    );
    let again =
        xe.get_case(pb::GetCaseRequest { case_id: waiting.case_id.clone() }).await.unwrap().into_inner().case.unwrap();
    assert_eq!(again.version, done.version, "nothing applied twice");

    // Created after the death is known: decided at once.
    let late = xe
        .create_case(pb::CreateCaseRequest {
            matter_code: "exit_entry.document_cancellation".into(),
            applicant: citizen(&seeded_person()),
            form: form(&[("subject_id_number", &elder)]),
            materials: vec![],
            idempotency_key: "after-death-docs-2".into(),
            bundle_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(late.state(), CaseState::Approved);
    assert_eq!(late.result["cancelled_count"], "0");
    mesh.stop_all().await;
}
both_backends!(document_cancellation_waits_for_the_death_event);

async fn bad_input_is_refused_and_stores_nothing(backend: Backend) {
    let Some(mesh) = TestMesh::with(backend).service(EXIT_ENTRY).start().await else { return };
    let mut clerk = mesh.clerk(EXIT_ENTRY).await;
    let mut unknown_purpose = trip_request("bad-1", false);
    unknown_purpose.form.insert("purpose".into(), "tourism".into());
    let err = clerk.create_case(unknown_purpose).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(fields(&err), ["form.purpose"]);
    let mut no_work_permit = permit_request("E10000002", "bad-2", false);
    no_work_permit.form.remove("work_permit_number");
    no_work_permit.materials.retain(|m| m.code != "work_permit");
    let err = clerk.create_case(no_work_permit).await.unwrap_err();
    assert_eq!(fields(&err), ["form.work_permit_number"]);
    let mut bad_passport = permit_request("E1-2", "bad-3", false);
    bad_passport.form.insert("employer_credit_code".into(), "91350100M000100Y44".into());
    let err = clerk.create_case(bad_passport).await.unwrap_err();
    assert_eq!(fields(&err), ["applicant.identifier", "form.employer_credit_code"]);
    // The catalog's field definitions and the department's checks say it once, with the bound.
    let mut long = trip_request("bad-5", false);
    long.form.insert("destination".into(), "雅".repeat(101));
    long.form.insert("extremely_urgent".into(), "yes".into());
    let err = clerk.create_case(long).await.unwrap_err();
    assert_eq!(
        violations(&err),
        [
            ("form.destination".to_string(), "at most 100 characters".to_string()),
            ("form.extremely_urgent".to_string(), "true or false".to_string()),
        ]
    );
    assert_eq!(count(mesh.db(EXIT_ENTRY), "cases").await, 0);
    assert_eq!(count(mesh.db(EXIT_ENTRY), "outbox").await, 0);
    // A missing work permit *material* (form complete) is asked for in a supplement.
    let mut missing = permit_request("E10000002", "bad-4", false);
    missing.materials.retain(|m| m.code != "work_permit");
    let c = clerk.create_case(missing).await.unwrap().into_inner().case.unwrap();
    assert_eq!(c.state(), CaseState::AwaitingSupplement);
    assert_eq!(c.missing_materials, ["work_permit"]);
    mesh.stop_all().await;
}
both_backends!(bad_input_is_refused_and_stores_nothing);
