//! What departments learn (issue 25): exit-entry's registrars record a violation (the
//! five-year rule, M13, reads it), household's correct a registry entry; each with its
//! ground, checked by the rules an import checks, audited, and told in an event written
//! with the change; nothing written for a bad request or another caller.

use crate::common::*;
use onething_proto::{
    exit_entry::{self as epb, exit_entry_service_client::ExitEntryServiceClient},
    household as hpb,
};
use prost::Message as _;
use tonic::Code;
use tonic_types::StatusExt as _;

fn reason(err: &tonic::Status) -> String {
    err.get_error_details().error_info().map(|i| i.reason.clone()).unwrap_or_default()
}

fn field(err: &tonic::Status) -> String {
    err.get_error_details().bad_request().map(|b| b.field_violations[0].field.clone()).unwrap_or_default()
}

async fn registrars_record_what_they_learn(backend: Backend) {
    let Some(mesh) = TestMesh::with(backend).service(HOUSEHOLD).service(EXIT_ENTRY).start().await else {
        return;
    };
    let js = mesh.nats.jetstream().await;
    let registrar = staff("exit_entry", &["registrar"]);
    let mut records = ExitEntryServiceClient::new(mesh.channel(EXIT_ENTRY, &registrar).await);
    let violation = |passport: &str, date: &str| epb::RecordViolationRequest {
        passport_number: passport.into(),
        date: date.into(),
        summary: "非法就业".into(),
        ground: "威公(出入境)行罚决字〔2026〕101号".into(),
    };
    let before = count(mesh.db(EXIT_ENTRY), "foreigner_violations").await;
    // Refused, nothing written: a malformed passport, a date ahead, no ground, a clerk.
    let err = records.record_violation(violation("E1", "2026-03-01")).await.unwrap_err();
    assert_eq!(
        (err.code(), reason(&err).as_str(), field(&err).as_str()),
        (Code::InvalidArgument, "EXIT_ENTRY_INVALID_PASSPORT", "passport_number")
    );
    let err = records.record_violation(violation("E10000001", "2099-01-01")).await.unwrap_err();
    assert_eq!((reason(&err).as_str(), field(&err).as_str()), ("EXIT_ENTRY_INVALID_VIOLATION", "date"));
    let err = records
        .record_violation(epb::RecordViolationRequest { ground: String::new(), ..violation("E10000001", "2026-03-01") })
        .await
        .unwrap_err();
    assert_eq!(field(&err), "ground");
    let mut clerk =
        ExitEntryServiceClient::new(mesh.channel(EXIT_ENTRY, &staff("exit_entry", &["clerk", "approver"])).await);
    let err = clerk.record_violation(violation("E10000001", "2026-03-01")).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(count(mesh.db(EXIT_ENTRY), "foreigner_violations").await, before, "nothing written");
    // Recorded once, with its event; the same again records nothing more.
    let first = records.record_violation(violation("E10000001", "2026-03-01")).await.unwrap().into_inner();
    assert!(first.recorded);
    let again = records.record_violation(violation("e10000001", "2026-03-01")).await.unwrap().into_inner();
    assert!(!again.recorded);
    let history = records
        .get_permit_history(epb::GetPermitHistoryRequest { passport_number: "E10000001".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(history.violations.len(), 1, "the five-year rule will see it");
    let events = eventually(std::time::Duration::from_secs(30), "violation.recorded", || async {
        let all = on_subject(&js, "ONETHING_EXIT_ENTRY", "onething.exit_entry.v1.violation.recorded").await;
        (!all.is_empty()).then_some(all)
    })
    .await
    .unwrap();
    assert_eq!(events.len(), 1);
    let e = epb::ViolationRecorded::decode(events[0].clone()).unwrap();
    assert_eq!((e.passport_number.as_str(), e.date.as_str()), ("E10000001", "2026-03-01"));
    assert!(e.recorded_by.starts_with("exit_entry:"), "{}", e.recorded_by);
    assert_eq!(e.ground, "威公(出入境)行罚决字〔2026〕101号");

    // A registry correction.
    let mut registrar = registry(&mesh, &staff("household", &["registrar"])).await;
    let spouse = seeded_spouse();
    let correction = |name: Option<&str>| hpb::CorrectPersonRequest {
        id_number: spouse.clone(),
        name: name.map(str::to_string),
        ground: "户籍档案核对 2026-12-08".into(),
        ..Default::default()
    };
    let fixed = registrar.correct_person(correction(Some("李秀瑛"))).await.unwrap().into_inner();
    assert_eq!(fixed.corrected_fields, ["name"]);
    assert_eq!(fixed.person.unwrap().name, "李秀瑛");
    let err = registrar.correct_person(correction(Some("李秀瑛"))).await.unwrap_err();
    assert_eq!((err.code(), reason(&err).as_str()), (Code::FailedPrecondition, "HOUSEHOLD_NOTHING_TO_CORRECT"));
    // Checked as an import checks it: a death before birth, an unknown household, a name too
    // long, an unknown person, a clerk.
    let dead_early = hpb::CorrectPersonRequest {
        status: Some("deceased".into()),
        death_date: Some("1980-01-01".into()),
        ..correction(None)
    };
    let err = registrar.correct_person(dead_early).await.unwrap_err();
    assert_eq!(
        (err.code(), reason(&err).as_str(), field(&err).as_str()),
        (Code::InvalidArgument, "HOUSEHOLD_INVALID_CORRECTION", "status"),
        "a death is deregistration's"
    );
    let moved = hpb::CorrectPersonRequest { household_number: Some("371002999999".into()), ..correction(None) };
    let err = registrar.correct_person(moved).await.unwrap_err();
    assert_eq!((err.code(), reason(&err).as_str()), (Code::FailedPrecondition, "HOUSEHOLD_NOT_FOUND"));
    let err = registrar.correct_person(correction(Some(&"名".repeat(65)))).await.unwrap_err();
    assert_eq!(field(&err), "name");
    let unknown = onething_household::store::seed_id("371002", "1970-01-01", 7).unwrap().expose().to_string();
    let err = registrar
        .correct_person(hpb::CorrectPersonRequest { id_number: unknown, ..correction(Some("某")) })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let mut clerk = registry(&mesh, &staff("household", &["clerk"])).await;
    assert_eq!(clerk.correct_person(correction(Some("某某"))).await.unwrap_err().code(), Code::PermissionDenied);
    let name = count(mesh.db(HOUSEHOLD), &format!("persons WHERE id_number = '{spouse}' AND name = '李秀瑛'")).await;
    assert_eq!(name, 1, "only the good correction stood");
    let events = eventually(std::time::Duration::from_secs(30), "person.corrected", || async {
        let all = on_subject(&js, "ONETHING_HOUSEHOLD", "onething.household.v1.person.corrected").await;
        (!all.is_empty()).then_some(all)
    })
    .await
    .unwrap();
    assert_eq!(events.len(), 1, "one event, for the one correction");
    let e = hpb::PersonCorrected::decode(events[0].clone()).unwrap();
    assert_eq!(
        (e.corrected_fields.as_slice(), e.ground.as_str()),
        (&["name".to_string()][..], "户籍档案核对 2026-12-08")
    );
    mesh.stop_all().await;
}
both_backends!(registrars_record_what_they_learn);
