//! No personal data in logs or spans: a full run through household — every matter, clerk
//! actions, refusals, malformed input, denied and unauthenticated calls — with every log
//! line (debug level, JSON) and every span captured, and none of the test data's ID
//! numbers, names, phone numbers or addresses found in them.

use crate::common::*;
use onething_platform::{config::LogSettings, telemetry};
use onething_proto::{common as pb, household as hpb};

fn render_spans(sink: &SpanSink) -> String {
    let spans = sink.0.lock().unwrap();
    let mut out = String::new();
    for s in spans.iter() {
        out.push_str(&format!("span {} {:?}\n", s.name, s.status));
        for kv in &s.attributes {
            out.push_str(&format!("  {}={}\n", kv.key, kv.value));
        }
        for e in s.events.iter() {
            out.push_str(&format!("  event {}\n", e.name));
            for kv in &e.attributes {
                out.push_str(&format!("    {}={}\n", kv.key, kv.value));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_personal_data_in_logs_or_spans() {
    let spans = SpanSink::default();
    let logs = LogSink::default();
    let settings = LogSettings { format: "json".into(), filter: "debug".into() };
    let _guard = telemetry::init_capturing("pii-test", &settings, spans.clone(), logs.clone())
        .expect("this test must install telemetry first: run it with cargo nextest (one process per test)");

    let Some(mesh) = TestMesh::with(Backend::Sqlite).service(HOUSEHOLD).start().await else { return };
    let mut cases = mesh.coordinator_cases(HOUSEHOLD).await;
    let mut clerk = mesh.clerk(HOUSEHOLD).await;
    let outsider = OUTSIDER;
    let phone = "13912345678";
    let address = "威海市环翠区隐私路88号";

    // Birth registration by the parent, with a phone number.
    let mut birth = birth_request("pii-birth", "Q3710020001");
    if let Some(a) = birth.applicant.as_mut() {
        a.phone = phone.into();
    }
    let mut as_parent = mesh.cases(HOUSEHOLD, &citizen_token(&seeded_parent())).await;
    let born = as_parent.create_case(birth).await.unwrap().into_inner().case.unwrap();
    let new_id = born.result["new_id_number"].clone();

    // A clerk-reviewed residence permit with supplement and 容缺.
    let mut request = residence_request("pii-rp");
    request.form.insert("residence_address".into(), address.into());
    if let Some(a) = request.applicant.as_mut() {
        a.phone = phone.into();
    }
    let rp = cases.create_case(request).await.unwrap().into_inner().case.unwrap();
    let id = rp.case_id.clone();
    clerk.accept_case(pb::AcceptCaseRequest { case_id: id.clone(), expected_version: 0 }).await.unwrap();
    clerk
        .request_supplement(pb::RequestSupplementRequest {
            case_id: id.clone(),
            material_codes: vec!["residence_proof".into()],
            reason_text: "证明不清晰".into(),
            expected_version: 0,
        })
        .await
        .unwrap();
    mesh.cases(HOUSEHOLD, &citizen_token(OUTSIDER))
        .await
        .supply_materials(pb::SupplyMaterialsRequest {
            case_id: id.clone(),
            materials: vec![material("residence_proof")],
            expected_version: 0,
        })
        .await
        .unwrap();
    clerk.approve_case(pb::ApproveCaseRequest { case_id: id.clone(), expected_version: 0 }).await.unwrap();

    // Deregistration and its death fact; a collective household; refusals.
    let elder = seeded_elder();
    cases.create_case(deregistration(&elder, "SW-PII-0001", "pii-dereg", "")).await.unwrap();
    let code = onething_platform::ids::CreditCode::complete("91371002MA3C00002").unwrap().to_string();
    cases
        .create_case(verified(pb::CreateCaseRequest {
            matter_code: "household.collective_household".into(),
            applicant: Some(pb::Applicant {
                kind: pb::ApplicantKind::Enterprise as i32,
                identifier: code.clone(),
                name: "威海隐私科技有限公司".into(),
                phone: phone.into(),
            }),
            form: form(&[("legal_representative_id_number", &seeded_parent()), ("premises_address", address)]),
            materials: vec![
                material("business_licence"),
                material("legal_representative_id_card"),
                material("premises_property_certificate"),
            ],
            idempotency_key: "pii-ch".into(),
            bundle_id: String::new(),
        }))
        .await
        .unwrap();
    let mut stranger = certificate_request("pii-cert");
    stranger.applicant = citizen(outsider);
    stranger.form.insert("subject_id_number".into(), outsider.into());
    cases.create_case(stranger).await.unwrap();
    // Malformed input, a denial, no token.
    let mut malformed = birth_request("pii-bad", "Q3710020002");
    let mut wrong = seeded_parent();
    wrong.pop();
    wrong.push(if seeded_parent().ends_with('1') { '2' } else { '1' });
    malformed.form.insert("parent_id_number".into(), wrong.clone());
    assert!(cases.create_case(malformed).await.is_err());
    let mut other = mesh.cases(HOUSEHOLD, &citizen_token(&seeded_person())).await;
    assert!(other.get_case(pb::GetCaseRequest { case_id: id.clone() }).await.is_err());
    assert!(
        CaseServiceClient::new(connect_as(&mesh.service(HOUSEHOLD).endpoint(), None).await)
            .get_case(pb::GetCaseRequest { case_id: id.clone() })
            .await
            .is_err()
    );
    registry(&mesh, &staff("household", &["clerk"]))
        .await
        .get_person(hpb::GetPersonRequest { id_number: new_id.clone() })
        .await
        .unwrap();
    // Let the notifier handle the events (it reads phone numbers).
    let db = mesh.db(HOUSEHOLD).clone();
    eventually(std::time::Duration::from_secs(30), "notifications", || {
        let db = db.clone();
        async move { (count(&db, "notifications").await >= 6).then_some(()) }
    })
    .await
    .unwrap();
    mesh.stop_all().await;
    telemetry::flush();

    let log_text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let span_text = render_spans(&spans);
    assert!(log_text.lines().count() > 20, "logs were captured");
    assert!(
        span_text.contains("CaseService/CreateCase") && span_text.contains("outbox.publish"),
        "spans were captured: {}",
        &span_text[..span_text.len().min(2000)]
    );
    assert!(log_text.contains("permission denied"), "the denial left an audit line");
    let personal = [
        seeded_parent(),
        seeded_person(),
        elder,
        outsider.to_string(),
        new_id,
        wrong,
        phone.to_string(),
        "13800001111".to_string(),
        address.to_string(),
        "王建国".into(),
        "王小明".into(),
        "张三".into(),
        "赵海燕".into(),
    ];
    for secret in &personal {
        for (what, text) in [("logs", &log_text), ("spans", &span_text)] {
            if let Some(at) = text.find(secret.as_str()) {
                let line = text[..at].rsplit('\n').next().unwrap_or("");
                panic!("personal data in {what}: …{line}<here>");
            }
        }
    }
}

/// The same check over full bundle runs: every department and the coordinator, the saga's
/// calls and events, a refused bundle and its compensation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_personal_data_in_a_full_bundle_run() {
    use crate::bundles::{after_death, citizen_with_phone, finished, newborn};
    use onething_proto::coordinator::BundleState;
    let spans = SpanSink::default();
    let logs = LogSink::default();
    let settings = LogSettings { format: "json".into(), filter: "debug".into() };
    let _guard = telemetry::init_capturing("pii-bundles", &settings, spans.clone(), logs.clone())
        .expect("this test must install telemetry first: run it with cargo nextest (one process per test)");
    let Some(w) = TestMesh::with(Backend::Sqlite).departments().coordinators(1).start().await else { return };
    let relative = elders_son();
    let elder = seeded_elder();
    let parent = seeded_parent();
    let phone = "13712345678";
    let applicant = |id: &str, name: &str| citizen_with_phone(id, name, phone);
    let mut as_relative = w.bundles_at(0, &citizen_token(&relative)).await;
    let b = as_relative
        .submit_bundle(after_death(applicant(&relative, "周强"), &elder, "SW-2026-0700", "pii-death"))
        .await
        .unwrap()
        .into_inner()
        .bundle
        .unwrap();
    assert_eq!(finished(&mut as_relative, &b.bundle_id).await.state(), BundleState::Completed);
    let mut bundle_ids = vec![b.bundle_id.clone()];
    let mut as_parent = w.bundles_at(0, &citizen_token(&parent)).await;
    let b = as_parent
        .submit_bundle(newborn(applicant(&parent, "王建国"), &parent, ("王小明", "M"), "Q3710020700", "pii-born"))
        .await
        .unwrap()
        .into_inner()
        .bundle
        .unwrap();
    let born = finished(&mut as_parent, &b.bundle_id).await;
    bundle_ids.push(b.bundle_id.clone());
    let child = born.steps[0].result["new_id_number"].clone();
    // A refused bundle: an unknown person.
    let b = as_relative
        .submit_bundle(after_death(applicant(&relative, "周强"), OUTSIDER, "SW-2026-0701", "pii-refused"))
        .await
        .unwrap()
        .into_inner()
        .bundle
        .unwrap();
    assert_eq!(finished(&mut as_relative, &b.bundle_id).await.state(), BundleState::Failed);
    bundle_ids.push(b.bundle_id.clone());
    w.stop_all().await;
    telemetry::flush();

    let log_text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let span_text = render_spans(&spans);
    assert!(
        span_text.contains("BundleService/SubmitBundle") && span_text.contains("event.consume"),
        "spans were captured"
    );
    for secret in [
        relative,
        elder,
        parent,
        child,
        OUTSIDER.to_string(),
        phone.to_string(),
        "周强".into(),
        "王建国".into(),
        "王小明".into(),
    ] {
        for (what, text) in [("logs", &log_text), ("spans", &span_text)] {
            if let Some(at) = text.find(secret.as_str()) {
                let line = text[..at].rsplit('\n').next().unwrap_or("");
                panic!("personal data in {what}: …{line}<here>");
            }
        }
    }
    assert_one_trace_per_bundle(&spans, &bundle_ids);
}

/// Each bundle is one trace: every drive of it, its submit, the department case it created,
/// the events published and consumed for it share one trace id, and no two bundles share one.
fn assert_one_trace_per_bundle(sink: &SpanSink, bundle_ids: &[String]) {
    let spans = sink.0.lock().unwrap();
    let mut seen = Vec::new();
    for id in bundle_ids {
        let drives: Vec<_> = spans
            .iter()
            .filter(|s| {
                s.name == "bundle.drive"
                    && s.attributes.iter().any(|kv| kv.key.as_str() == "bundle_id" && kv.value.as_str() == id.as_str())
            })
            .collect();
        assert!(!drives.is_empty(), "bundle {id} was driven");
        let trace = drives[0].span_context.trace_id();
        assert!(
            drives.iter().all(|s| s.span_context.trace_id() == trace),
            "every drive of bundle {id} joins its trace"
        );
        let names: Vec<&str> =
            spans.iter().filter(|s| s.span_context.trace_id() == trace).map(|s| s.name.as_ref()).collect();
        for wanted in [
            "onething.coordinator.v1.BundleService/SubmitBundle",
            "onething.common.v1.CaseService/CreateCase",
            "outbox.publish",
            "event.consume",
        ] {
            assert!(names.contains(&wanted), "bundle {id}'s trace has {wanted}: {names:?}");
        }
        assert!(!seen.contains(&trace), "bundle {id} has a trace of its own");
        seen.push(trace);
    }
}
