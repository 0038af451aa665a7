//! Bad input gets a clear error and leaves nothing behind: the right gRPC code, a stable
//! reason in ErrorInfo, field violations in BadRequest, no row and no event written, and
//! the service keeps serving.

use crate::common::*;
use onething_proto::common::{self as pb, CaseState};
use tonic::Code;
use tonic_types::StatusExt;

fn reason(s: &tonic::Status) -> String {
    s.get_error_details().error_info().map(|i| i.reason.clone()).unwrap_or_default()
}

async fn bad_input_is_refused_and_stores_nothing(backend: Backend) {
    let Some(mesh) = TestMesh::with(backend).service(HOUSEHOLD).start().await else {
        return;
    };
    let mut cases = mesh.coordinator_cases(HOUSEHOLD).await;
    let mut clerk = mesh.clerk(HOUSEHOLD).await;
    let db = mesh.db(HOUSEHOLD).clone();

    // A malformed ID number (wrong check digit) in the applicant and in the form.
    let mut bad = birth_request("bad-1", "Q3710021001");
    let mut wrong = seeded_parent();
    let last = if wrong.ends_with('1') { '2' } else { '1' };
    wrong.pop();
    wrong.push(last);
    bad.applicant = citizen(&wrong);
    bad.form.insert("parent_id_number".into(), wrong.clone());
    let err = cases.create_case(bad).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(reason(&err), "CASE_INVALID_REQUEST");
    assert_eq!(fields(&err), ["applicant.identifier", "form.parent_id_number"]);
    assert!(!err.message().contains(&wrong), "the error does not echo the ID number");

    // An unknown matter.
    let mut unknown = certificate_request("bad-2");
    unknown.matter_code = "household.moon_landing".into();
    let err = cases.create_case(unknown).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(reason(&err), "CASE_UNKNOWN_MATTER");
    assert_eq!(fields(&err), ["matter_code"]);

    // A matter of another department.
    let mut other = certificate_request("bad-3");
    other.matter_code = "vehicle.inspection_booking".into();
    let err = cases.create_case(other).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // A material that belongs to no step of the matter, and a missing key.
    let mut stray = certificate_request("");
    stray.materials = vec![material("passport")];
    let err = cases.create_case(stray).await.unwrap_err();
    assert_eq!(fields(&err), ["idempotency_key", "materials[0].code"]);

    assert_eq!(count(&db, "cases").await, 0, "nothing stored");
    assert_eq!(count(&db, "outbox").await, 0, "no event written");

    // A missing required material is not an error: the case waits for a supplement that
    // names it (一次性告知), with its own deadline.
    let mut missing = birth_request("missing-1", "Q3710021005");
    missing.materials.clear();
    let case = cases.create_case(missing).await.unwrap().into_inner().case.unwrap();
    assert_eq!(case.state(), CaseState::AwaitingSupplement);
    assert_eq!(case.reason_code, "CASE_SUPPLEMENT_REQUESTED");
    assert_eq!(case.missing_materials, vec!["birth_medical_certificate".to_string()]);
    assert!(case.time_rule.unwrap().supplement_due_time.is_some());
    assert_eq!(count(&db, "persons WHERE birth_certificate_number = 'Q3710021005'").await, 0);

    // Approving a rejected case fails the precondition and changes nothing.
    let mut outsider = residence_request("rp-reject");
    outsider.materials.push(material("photo"));
    let c = cases.create_case(outsider).await.unwrap().into_inner().case.unwrap();
    clerk.accept_case(pb::AcceptCaseRequest { case_id: c.case_id.clone(), expected_version: 0 }).await.unwrap();
    let bad_code = clerk
        .reject_case(pb::RejectCaseRequest {
            case_id: c.case_id.clone(),
            reason_code: "not upper".into(),
            reason_text: String::new(),
            expected_version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(bad_code.code(), Code::InvalidArgument);
    let rejected = clerk
        .reject_case(pb::RejectCaseRequest {
            case_id: c.case_id.clone(),
            reason_code: "HOUSEHOLD_PROOF_INVALID".into(),
            reason_text: "证明无效".into(),
            expected_version: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    let outbox_before = count(&db, "outbox").await;
    let err = clerk
        .approve_case(pb::ApproveCaseRequest { case_id: c.case_id.clone(), expected_version: 0 })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(reason(&err), "CASE_ILLEGAL_TRANSITION");
    let after =
        clerk.get_case(pb::GetCaseRequest { case_id: c.case_id.clone() }).await.unwrap().into_inner().case.unwrap();
    assert_eq!(after.state(), CaseState::Rejected);
    assert_eq!(after.version, rejected.version);
    assert_eq!(count(&db, "outbox").await, outbox_before);
    assert_eq!(count(&db, "residence_permits").await, 0, "the refused approval had no effect");

    // Unknown case (NOT_FOUND to the department's staff; to anyone else it answers as
    // another's case would, PERMISSION_DENIED), bad paging.
    let err = clerk.get_case(pb::GetCaseRequest { case_id: "nope".into() }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(reason(&err), "CASE_NOT_FOUND");
    let err = cases.get_case(pb::GetCaseRequest { case_id: "nope".into() }).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = clerk.list_cases(pb::ListCasesRequest { page_size: -1, ..Default::default() }).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = clerk
        .list_cases(pb::ListCasesRequest { page_token: "garbage".into(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // Still serving.
    cases.create_case(certificate_request("after-errors")).await.expect("the service keeps running");
    mesh.stop_all().await;
}
both_backends!(bad_input_is_refused_and_stores_nothing);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_lookups_validate_their_input() {
    use onething_proto::household::{GetHouseholdRequest, GetPersonRequest};
    let Some(mesh) = TestMesh::with(Backend::Sqlite).service(HOUSEHOLD).start().await else {
        return;
    };
    let mut registry = HouseholdServiceClient::new(mesh.channel(HOUSEHOLD, &staff("household", &["clerk"])).await);
    let err = registry.get_person(GetPersonRequest { id_number: "12345".into() }).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(fields(&err), ["id_number"]);
    let err = registry.get_person(GetPersonRequest { id_number: "11010519491231002X".into() }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let h = registry
        .get_household(GetHouseholdRequest { household_number: "371002000001".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(h.members.len(), 3);
    mesh.stop_all().await;
}

/// A repeated CreateCase (the coordinator retrying, a client resending) is answered with the
/// case the first one made and writes nothing more; the same key for another application is
/// refused with FAILED_PRECONDITION and writes nothing either.
async fn a_repeated_create_is_answered_with_its_case(backend: Backend) {
    let Some(mesh) = TestMesh::with(backend).service(HOUSEHOLD).start().await else {
        return;
    };
    let mut cases = mesh.coordinator_cases(HOUSEHOLD).await;
    let db = mesh.db(HOUSEHOLD).clone();
    let first = cases.create_case(certificate_request("again-1")).await.unwrap().into_inner().case.unwrap();
    assert_eq!(first.state(), CaseState::Approved, "a certificate is issued at once");
    let its_events = format!("outbox WHERE ce_subject = 'cases/{}'", first.case_id);
    let written = (count(&db, "cases").await, count(&db, &its_events).await);
    assert!(written.1 > 0, "the first request wrote its events");

    let again = cases.create_case(certificate_request("again-1")).await.unwrap().into_inner().case.unwrap();
    assert_eq!((again.case_id.as_str(), again.version), (first.case_id.as_str(), first.version));
    let other = cases.create_case(residence_request("again-1")).await.unwrap_err();
    assert_eq!(other.code(), Code::FailedPrecondition);
    assert_eq!(reason(&other), "CASE_IDEMPOTENCY_KEY_REUSED");
    assert_eq!((count(&db, "cases").await, count(&db, &its_events).await), written, "nothing more written");
}
both_backends!(a_repeated_create_is_answered_with_its_case);

/// Sets `column` of the rows of `table` matching `filter` to `value` (a hand edit, or a
/// row a newer version wrote), and gives back what it was.
pub(crate) async fn overwrite(
    db: &sea_orm::DatabaseConnection,
    table: &str,
    column: &str,
    filter: &str,
    value: &str,
) -> String {
    use sea_orm::ConnectionTrait as _;
    let q = |sql: String| sea_orm::Statement::from_string(db.get_database_backend(), sql);
    let row = db.query_one_raw(q(format!("SELECT {column} FROM {table} WHERE {filter}"))).await.unwrap().unwrap();
    let was: String = row.try_get("", column).unwrap();
    db.execute_raw(q(format!("UPDATE {table} SET {column} = '{value}' WHERE {filter}"))).await.unwrap();
    was
}

/// A stored state, kind or status the code does not know, or JSON that is not its shape,
/// fails the read with INTERNAL,
/// never read as some default; put back, the row reads again and the service kept serving.
async fn an_unknown_stored_value_is_an_error_not_a_default(backend: Backend) {
    use onething_proto::household::GetPersonRequest;
    let Some(mesh) = TestMesh::with(backend).service(HOUSEHOLD).start().await else {
        return;
    };
    let db = mesh.db(HOUSEHOLD).clone();
    let mut clerk = mesh.clerk(HOUSEHOLD).await;
    let c = mesh
        .coordinator_cases(HOUSEHOLD)
        .await
        .create_case(certificate_request("unknown-value"))
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    let get = pb::GetCaseRequest { case_id: c.case_id.clone() };
    let this_case = format!("id = '{}'", c.case_id);
    for column in ["state", "time_unit", "applicant_kind", "form", "materials", "missing_materials", "result"] {
        let was = overwrite(&db, "cases", column, &this_case, "archived").await;
        let err = clerk.get_case(get.clone()).await.unwrap_err();
        assert_eq!(err.code(), Code::Internal, "cases.{column}: {err:?}");
        assert!(!err.message().contains(&seeded_parent()), "no personal data in the error");
        overwrite(&db, "cases", column, &this_case, &was).await;
        clerk.get_case(get.clone()).await.expect("the row reads again");
    }
    let mut registry = HouseholdServiceClient::new(mesh.channel(HOUSEHOLD, &staff("household", &["clerk"])).await);
    let person = format!("id_number = '{}'", seeded_parent());
    let was = overwrite(&db, "persons", "status", &person, "missing").await;
    let err = registry.get_person(GetPersonRequest { id_number: seeded_parent() }).await.unwrap_err();
    assert_eq!(err.code(), Code::Internal, "persons.status: {err:?}");
    overwrite(&db, "persons", "status", &person, &was).await;
    registry.get_person(GetPersonRequest { id_number: seeded_parent() }).await.expect("the row reads again");
    mesh.stop_all().await;
}
both_backends!(an_unknown_stored_value_is_an_error_not_a_default);
