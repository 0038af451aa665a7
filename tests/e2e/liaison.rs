//! Liaison end to end: each matter's happy path and refusal; the hotel licence's clock
//! pause during the on-site inspection; the precursor filing due 24 hours after acceptance;
//! an enterprise request through 办 → 评 → 访 → 督 → 责; the completion rate over a known set;
//! bad input stores nothing.

use crate::common::*;
use onething_liaison::store::{seed_chemicals, seed_logistics};
use onething_platform::{calendar::Calendar, catalog::TimeUnit};
use onething_proto::{
    common::{self as pb, CaseState, case_service_client::CaseServiceClient},
    liaison::{self as lpb, Channel, RequestState, liaison_service_client::LiaisonServiceClient},
};
use prost_types::Timestamp;
use tonic::Code;
use tonic_types::StatusExt;

fn enterprise(code: &str) -> Option<pb::Applicant> {
    Some(pb::Applicant {
        kind: pb::ApplicantKind::Enterprise as i32,
        identifier: code.into(),
        name: "威海示例企业".into(),
        phone: String::new(),
    })
}

pub(crate) fn case(
    matter: &str,
    code: &str,
    fields: &[(&str, &str)],
    materials: &[&str],
    key: &str,
) -> pb::CreateCaseRequest {
    // As the enterprise's e-licence wallet gives them: verified where the matter weighs them.
    verified(pb::CreateCaseRequest {
        matter_code: matter.into(),
        applicant: enterprise(code),
        form: form(fields),
        materials: materials.iter().map(|m| material(m)).collect(),
        idempotency_key: key.into(),
        bundle_id: String::new(),
    })
}

async fn each_matter_and_its_refusal(backend: Backend) {
    let Some(mesh) = TestMesh::with(backend).service(LIAISON).start().await else { return };
    let logistics = seed_logistics().to_string();
    let chemicals = seed_chemicals().to_string();
    let mut as_logistics = CaseServiceClient::new(mesh.channel(LIAISON, &enterprise_token(&logistics)).await);
    let mut as_chemicals = CaseServiceClient::new(mesh.channel(LIAISON, &enterprise_token(&chemicals)).await);
    let mut clerk = CaseServiceClient::new(mesh.channel(LIAISON, &staff("liaison", &["clerk", "approver"])).await);
    let get = |r: tonic::Response<pb::CreateCaseResponse>| r.into_inner().case.unwrap();

    // 公章刻制备案: done when complete; a kind already on file is refused.
    let seals = ["business_licence", "seal_imprints"];
    let filed = get(as_logistics
        .create_case(case(
            "liaison.seal_engraving_filing",
            &logistics,
            &[("seal_kinds", "contract,invoice"), ("engraving_company", "威海示例刻章店")],
            &seals,
            "seal-1",
        ))
        .await
        .unwrap());
    assert_eq!(filed.state(), CaseState::Approved);
    assert!(filed.result["filing_number"].starts_with("GZBA"));
    let again = get(as_logistics
        .create_case(case(
            "liaison.seal_engraving_filing",
            &logistics,
            &[("seal_kinds", "official"), ("engraving_company", "威海示例刻章店")],
            &seals,
            "seal-2",
        ))
        .await
        .unwrap());
    assert_eq!(again.reason_code, "LIAISON_SEAL_ALREADY_FILED");

    // 企业印章注销: every active seal; then there is nothing left to cancel.
    let doc = ["deregistration_or_bankruptcy_document"];
    let cancelled = get(as_chemicals
        .create_case(case("liaison.seal_cancellation", &chemicals, &[("reason", "bankruptcy")], &doc, "cancel-1"))
        .await
        .unwrap());
    assert_eq!((cancelled.state(), cancelled.result["cancelled_seals"].as_str()), (CaseState::Approved, "2"));
    let none = get(as_chemicals
        .create_case(case("liaison.seal_cancellation", &chemicals, &[("reason", "bankruptcy")], &doc, "cancel-2"))
        .await
        .unwrap());
    assert_eq!(none.reason_code, "LIAISON_NO_ACTIVE_SEALS");

    // 易制毒化学品备案 (M16): due exactly 24 hours after acceptance; the unqualified are refused.
    let precursor = |code: &str, key: &str| {
        case(
            "liaison.precursor_chemical_filing",
            code,
            &[
                ("chemical", "acetone"),
                ("quantity_kg", "500"),
                ("purpose", "purchase"),
                ("counterparty_credit_code", "91350100M000100Y43"),
            ],
            &["purchase_contract", "qualification_certificate"],
            key,
        )
    };
    let c = get(as_chemicals.create_case(precursor(&chemicals, "pc-1")).await.unwrap());
    let accepted = clerk
        .accept_case(pb::AcceptCaseRequest { case_id: c.case_id.clone(), expected_version: 0 })
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    let rule = accepted.time_rule.unwrap();
    let at = accepted.create_time.unwrap();
    let due = rule.due_time.unwrap();
    assert_eq!((due.seconds - at.seconds, due.nanos), (24 * 3600, at.nanos), "due 24 clock hours after receipt (M16)");
    let unqualified = get(as_logistics.create_case(precursor(&logistics, "pc-2")).await.unwrap());
    assert_eq!(unqualified.reason_code, "LIAISON_NOT_QUALIFIED");

    // 旅馆业特种行业许可: the on-site inspection pauses the clock; the due time moves by the
    // working days it stood still. Three days of inspection are simulated by moving the
    // pause start back in the database.
    let hotel_materials = ["business_licence", "premises_certificate", "fire_safety_certificate", "security_plan"];
    let h = get(as_logistics
        .create_case(case(
            "liaison.hotel_special_trade_licence",
            &logistics,
            &[("hotel_name", "威海海景酒店"), ("address", "威海市环翠区海滨路1号"), ("rooms", "120")],
            &hotel_materials,
            "hotel-1",
        ))
        .await
        .unwrap());
    let accepted = clerk
        .accept_case(pb::AcceptCaseRequest { case_id: h.case_id.clone(), expected_version: 0 })
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    let due_before = accepted.time_rule.unwrap().due_time.unwrap().seconds;
    let paused = clerk
        .start_special_procedure(pb::StartSpecialProcedureRequest {
            case_id: h.case_id.clone(),
            procedure: "on_site_inspection".into(),
            expected_version: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(paused.state(), CaseState::SpecialProcedure);
    let since = chrono::Utc::now() - chrono::Duration::days(3);
    {
        use sea_orm::{ConnectionTrait, Statement, Value};
        let sql = "UPDATE cases SET paused_since = $1 WHERE id = $2";
        let sql = if backend == Backend::Sqlite { sql.replace("$1", "?").replace("$2", "?") } else { sql.into() };
        mesh.db(LIAISON)
            .execute_raw(Statement::from_sql_and_values(
                mesh.db(LIAISON).get_database_backend(),
                sql,
                [Value::from(since), Value::from(h.case_id.clone())],
            ))
            .await
            .unwrap();
    }
    let resumed = clerk
        .end_special_procedure(pb::EndSpecialProcedureRequest {
            case_id: h.case_id.clone(),
            outcome: "现场核查合格".into(),
            expected_version: 0,
            passed: true,
        })
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(resumed.state(), CaseState::Accepted);
    let due_after = resumed.time_rule.unwrap().due_time.unwrap().seconds;
    let expected = Calendar::builtin().extend(
        chrono::DateTime::from_timestamp(due_before, 0).unwrap(),
        TimeUnit::WorkingDays,
        since,
        chrono::DateTime::from_timestamp(resumed.update_time.unwrap().seconds, 0).unwrap(),
    );
    assert_eq!(due_after, expected.at.timestamp(), "moved by the working days lost");
    assert!(due_after >= due_before);
    let licensed = clerk
        .approve_case(pb::ApproveCaseRequest { case_id: h.case_id, expected_version: 0 })
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert!(licensed.result["licence_number"].starts_with("TZHY"));
    // A refused licence.
    let h2 = get(as_logistics
        .create_case(case(
            "liaison.hotel_special_trade_licence",
            &logistics,
            &[("hotel_name", "威海某宾馆"), ("address", "威海市环翠区某路2号"), ("rooms", "8")],
            &hotel_materials,
            "hotel-2",
        ))
        .await
        .unwrap());
    clerk.accept_case(pb::AcceptCaseRequest { case_id: h2.case_id.clone(), expected_version: 0 }).await.unwrap();
    let rejected = clerk
        .reject_case(pb::RejectCaseRequest {
            case_id: h2.case_id,
            reason_code: "LIAISON_FIRE_SAFETY_FAILED".into(),
            reason_text: "消防不合格".into(),
            expected_version: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(rejected.state(), CaseState::Rejected);
    mesh.stop_all().await;
}
both_backends!(each_matter_and_its_refusal);

fn submit(code: &str, category: &str, key: &str) -> lpb::SubmitRequestRequest {
    lpb::SubmitRequestRequest {
        credit_code: code.into(),
        channel: Channel::LiaisonRoom as i32,
        category: category.into(),
        description: "园区道路货车通行受限，请求协调".into(),
        idempotency_key: key.into(),
    }
}

async fn the_closed_loop_and_the_completion_rate(backend: Backend) {
    let Some(mesh) = TestMesh::with(backend).service(LIAISON).settings(|_, s| s.sweep_interval_ms = 200).start().await
    else {
        return;
    };
    let code = seed_logistics().to_string();
    let mut ent = LiaisonServiceClient::new(mesh.channel(LIAISON, &enterprise_token(&code)).await);
    let mut clerk = LiaisonServiceClient::new(mesh.channel(LIAISON, &staff("liaison", &["clerk"])).await);
    let mut inspector = LiaisonServiceClient::new(mesh.channel(LIAISON, &staff("supervision", &["inspector"])).await);
    let req = |r: lpb::EnterpriseRequest| r;

    // 办 → 评 (bad) → 督 (flagged) → 访 (unresolved) → 责.
    let r = req(ent
        .submit_request(submit(&code, "traffic_logistics", "loop-1"))
        .await
        .unwrap()
        .into_inner()
        .request
        .unwrap());
    assert_eq!((r.tier(), r.unit.as_str()), (lpb::Tier::District, "371000"));
    let id = r.request_id.clone();
    clerk
        .handle_request(lpb::HandleRequestRequest {
            request_id: id.clone(), note: "已协调交警调整通行时段".into()
        })
        .await
        .unwrap();
    let rated = ent
        .rate_request(lpb::RateRequestRequest { request_id: id.clone(), rating: 2 })
        .await
        .unwrap()
        .into_inner()
        .request
        .unwrap();
    assert_eq!(rated.state(), RequestState::BadlyRated);
    assert!(rated.flagged && rated.flag_reason.is_empty(), "the flag's reason is the department's");
    let seen = clerk.get_request(lpb::GetRequestRequest { request_id: id.clone() }).await.unwrap().into_inner();
    assert!(seen.request.unwrap().flag_reason.contains("bad rating"));
    let visited = clerk
        .record_visit(lpb::RecordVisitRequest {
            request_id: id.clone(),
            resolved: false,
            note: "回访：问题仍未解决".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .request
        .unwrap();
    assert_eq!(visited.state(), RequestState::Visited);
    let err = clerk
        .assign_responsibility(lpb::AssignResponsibilityRequest { request_id: id.clone(), note: "x".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "a clerk does not assign responsibility");
    let owned = inspector
        .assign_responsibility(lpb::AssignResponsibilityRequest {
            request_id: id.clone(),
            note: "环翠分局交警大队负责".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .request
        .unwrap();
    assert_eq!(owned.state(), RequestState::ResponsibilityAssigned);
    // Every step was an event, and the flag one more.
    let js = mesh.nats.jetstream().await;
    let subjects = ["submitted", "handled", "badly_rated", "flagged", "visited", "responsibility_assigned"];
    eventually(std::time::Duration::from_secs(30), "the loop's events", || async {
        let s = js.get_stream("ONETHING_LIAISON").await.ok()?;
        for sub in subjects {
            s.get_last_raw_message_by_subject(&format!("onething.liaison.v1.enterprise_request.{sub}")).await.ok()?;
        }
        Some(())
    })
    .await
    .unwrap();

    // A known set: district unit — 9 more requests, 8 handled, of which 7 rated well;
    // city unit — 2 requests, both handled. With the first (responsibility), the district
    // unit has 10 received and 8 completed; the city unit 2 of 2.
    let mut never_handled = String::new();
    for i in 0..9 {
        let r = ent
            .submit_request(submit(&code, "security_protection", &format!("set-{i}")))
            .await
            .unwrap()
            .into_inner()
            .request
            .unwrap();
        if i == 8 {
            never_handled = r.request_id.clone();
        }
        if i < 8 {
            clerk
                .handle_request(lpb::HandleRequestRequest {
                    request_id: r.request_id.clone(), note: "已处理".into()
                })
                .await
                .unwrap();
        }
        if i < 7 {
            ent.rate_request(lpb::RateRequestRequest { request_id: r.request_id, rating: 5 }).await.unwrap();
        }
    }
    for i in 0..2 {
        let r = ent
            .submit_request(submit(&code, "economic_crime", &format!("city-{i}")))
            .await
            .unwrap()
            .into_inner()
            .request
            .unwrap();
        assert_eq!(r.unit, "3710");
        clerk
            .handle_request(lpb::HandleRequestRequest { request_id: r.request_id, note: "已处理".into() })
            .await
            .unwrap();
    }
    let now = chrono::Utc::now();
    let period = lpb::GetCompletionRateRequest {
        period_start: Some(Timestamp { seconds: (now - chrono::Duration::hours(1)).timestamp(), nanos: 0 }),
        period_end: Some(Timestamp { seconds: (now + chrono::Duration::hours(1)).timestamp(), nanos: 0 }),
    };
    let rate = inspector.get_completion_rate(period).await.unwrap().into_inner();
    let unit = |u: &str| rate.units.iter().find(|x| x.unit == u).unwrap().clone();
    let district = unit("371000");
    assert_eq!((district.received, district.completed, district.meets_target), (10, 8, false));
    assert!((district.rate - 0.8).abs() < 1e-9);
    let city = unit("3710");
    assert_eq!((city.received, city.completed, city.meets_target), (2, 2, true));
    let overall = rate.overall.unwrap();
    assert_eq!((overall.received, overall.completed), (12, 10));

    // 督 for lateness: the service's sweep flags the one never handled once the clock has
    // passed its due time, and only once however often it sweeps.
    let flagged = |id: String| {
        let mut inspector = inspector.clone();
        async move {
            let r = inspector.get_request(lpb::GetRequestRequest { request_id: id }).await.ok()?.into_inner().request?;
            r.flagged.then_some(r)
        }
    };
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert!(flagged(never_handled.clone()).await.is_none(), "not late yet");
    mesh.clock.advance(chrono::Duration::days(30));
    let late =
        eventually(std::time::Duration::from_secs(30), "the late request flagged", || flagged(never_handled.clone()))
            .await
            .unwrap();
    // A district request: handed up to the city bureau (上下贯通) with the city's deadline.
    assert_eq!(late.flag_reason, "not handled in time by the district bureau: handed up to the city bureau");
    assert_eq!((late.tier(), late.unit.as_str(), late.escalated), (lpb::Tier::City, "3710", true));
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let flags =
        count(mesh.db(LIAISON), "outbox WHERE subject = 'onething.liaison.v1.enterprise_request.flagged'").await;
    assert_eq!(flags, 2, "the bad rating's flag and the lateness flag, each once");
    mesh.stop_all().await;
}
both_backends!(the_closed_loop_and_the_completion_rate);

async fn bad_requests_are_refused(backend: Backend) {
    let Some(mesh) = TestMesh::with(backend).service(LIAISON).start().await else { return };
    let code = seed_logistics().to_string();
    let mut ent = LiaisonServiceClient::new(mesh.channel(LIAISON, &enterprise_token(&code)).await);
    let reason = |s: &tonic::Status| s.get_error_details().error_info().map(|i| i.reason.clone()).unwrap_or_default();
    let field = |s: &tonic::Status| {
        s.get_error_details().bad_request().map(|b| b.field_violations[0].field.clone()).unwrap_or_default()
    };
    let err = ent.submit_request(submit("91371000MA3D0000XX", "traffic_logistics", "b-1")).await.unwrap_err();
    assert_eq!((err.code(), field(&err).as_str()), (Code::InvalidArgument, "credit_code"));
    let err = ent.submit_request(submit(&code, "astrology", "b-2")).await.unwrap_err();
    assert_eq!((err.code(), field(&err).as_str()), (Code::InvalidArgument, "category"));
    let err = ent.submit_request(submit(&seed_chemicals().to_string(), "traffic_logistics", "b-3")).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "an enterprise asks for itself");
    assert_eq!(count(mesh.db(LIAISON), "enterprise_requests").await, 0);
    // Ratings: outside 1–5, before handling, someone else's.
    let r = ent.submit_request(submit(&code, "traffic_logistics", "b-4")).await.unwrap().into_inner().request.unwrap();
    let err =
        ent.rate_request(lpb::RateRequestRequest { request_id: r.request_id.clone(), rating: 6 }).await.unwrap_err();
    assert_eq!((err.code(), reason(&err).as_str()), (Code::InvalidArgument, "LIAISON_INVALID_RATING"));
    let err =
        ent.rate_request(lpb::RateRequestRequest { request_id: r.request_id.clone(), rating: 4 }).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "not handled yet");
    let mut clerk = LiaisonServiceClient::new(mesh.channel(LIAISON, &staff("liaison", &["clerk"])).await);
    clerk
        .handle_request(lpb::HandleRequestRequest { request_id: r.request_id.clone(), note: "已处理".into() })
        .await
        .unwrap();
    let mut other =
        LiaisonServiceClient::new(mesh.channel(LIAISON, &enterprise_token(&seed_chemicals().to_string())).await);
    let err =
        other.rate_request(lpb::RateRequestRequest { request_id: r.request_id.clone(), rating: 1 }).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let still = ent
        .get_request(lpb::GetRequestRequest { request_id: r.request_id })
        .await
        .unwrap()
        .into_inner()
        .request
        .unwrap();
    assert_eq!((still.state(), still.rating), (RequestState::Handled, 0), "nothing changed");
    // A malformed credit code on a matter: INVALID_ARGUMENT, nothing stored.
    let mut cases = CaseServiceClient::new(mesh.channel(LIAISON, &service("coordinator", "liaison")).await);
    let err = cases
        .create_case(case(
            "liaison.seal_engraving_filing",
            "91371000MA3D0000XX",
            &[("seal_kinds", "official"), ("engraving_company", "x")],
            &["business_licence", "seal_imprints"],
            "b-5",
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(count(mesh.db(LIAISON), "cases").await, 0);
    mesh.stop_all().await;
}
both_backends!(bad_requests_are_refused);
