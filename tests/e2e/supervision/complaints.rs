//! Complaints through their steps, ratings and their follow-up, the 办不成事 window, and a
//! random inspection draw anyone can re-draw.

use super::*;

async fn complaints_ratings_and_the_draw(backend: Backend) {
    let Some(mesh) = TestMesh::with(backend).service(HOUSEHOLD).start().await else { return };
    let Some(sdb) = TestDb::fresh(backend).await else { return };
    let js = mesh.nats.jetstream().await;
    for d in ["exit_entry", "vehicle", "liaison", "coordinator"] {
        ensure_stream(&js, d, 1).await.unwrap();
    }
    let sup = start_supervision(&sdb, &mesh.nats, "", &[("household", mesh.service(HOUSEHOLD).endpoint())]).await;
    let inspector = staff("supervision", &["inspector"]);
    let mut c = SupervisionServiceClient::new(connect_as(&sup.endpoint(), Some(&inspector)).await);

    // 投诉举报: 受理 → 核查 → 处置 → 反馈 → 整改, each with its deadline.
    let complaint = c
        .submit_complaint(pb::SubmitComplaintRequest {
            channel: pb::Channel::Channel12389 as i32,
            department: "vehicle".into(),
            summary: "检测站乱收费".into(),
            idempotency_key: "c-1".into(),
            contact: "13712345678".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .complaint
        .unwrap();
    assert!(complaint.next_step_due.is_some());
    let err = c
        .advance_complaint(pb::AdvanceComplaintRequest {
            complaint_id: complaint.complaint_id.clone(),
            step: pb::ComplaintStep::Replied as i32,
            note: "x".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "steps in order");
    for step in [
        pb::ComplaintStep::Verified,
        pb::ComplaintStep::Handled,
        pb::ComplaintStep::Replied,
        pb::ComplaintStep::Rectified,
    ] {
        let after = c
            .advance_complaint(pb::AdvanceComplaintRequest {
                complaint_id: complaint.complaint_id.clone(),
                step: step as i32,
                note: "已办理".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .complaint
            .unwrap();
        assert_eq!(after.step(), step);
        assert_eq!(after.next_step_due.is_some(), step != pb::ComplaintStep::Rectified);
    }
    let err = c
        .submit_complaint(pb::SubmitComplaintRequest {
            channel: 0,
            department: "vehicle".into(),
            summary: "x".into(),
            idempotency_key: "c-2".into(),
            contact: "13712345678".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "unknown channel");

    // 好差评: a finished case rated 1 by its applicant; the follow-up and the fix.
    let mut cases = mesh.coordinator_cases(HOUSEHOLD).await;
    let done = cases.create_case(certificate_request("rate-1")).await.unwrap().into_inner().case.unwrap();
    let open = cases.create_case(residence_request("rate-2")).await.unwrap().into_inner().case.unwrap();
    eventually(Duration::from_secs(30), "supervision to see the cases", || {
        let db = sup.db.clone();
        async move { (count(&db, "tracked WHERE kind = 'case'").await == 2).then_some(()) }
    })
    .await
    .unwrap();
    let rate = |id: &str, score: u32| pb::RateRequest {
        target_kind: "case".into(),
        target_id: id.into(),
        department: "household".into(),
        score,
    };
    let mut owner =
        SupervisionServiceClient::new(connect_as(&sup.endpoint(), Some(&citizen_token(&seeded_person()))).await);
    assert_eq!(owner.rate(rate(&done.case_id, 6)).await.unwrap_err().code(), Code::InvalidArgument);
    let mut stranger =
        SupervisionServiceClient::new(connect_as(&sup.endpoint(), Some(&citizen_token(&seeded_parent()))).await);
    assert_eq!(stranger.rate(rate(&done.case_id, 1)).await.unwrap_err().code(), Code::PermissionDenied, "not theirs");
    let mut outsider = SupervisionServiceClient::new(connect_as(&sup.endpoint(), Some(&citizen_token(OUTSIDER))).await);
    assert_eq!(
        outsider.rate(rate(&open.case_id, 4)).await.unwrap_err().code(),
        Code::FailedPrecondition,
        "not finished"
    );
    let bad = owner.rate(rate(&done.case_id, 1)).await.unwrap().into_inner().rating.unwrap();
    assert!(bad.bad && bad.fix_due.is_some());
    assert_eq!(owner.rate(rate(&done.case_id, 5)).await.unwrap_err().code(), Code::AlreadyExists);
    let fixed = c
        .record_fix(pb::RecordFixRequest {
            rating_id: bad.rating_id.clone(), note: "回访并退还多收费用".into()
        })
        .await
        .unwrap()
        .into_inner()
        .rating
        .unwrap();
    assert_eq!(fixed.fix_note, "回访并退还多收费用");

    // 双随机: the draw is published with its seed and inputs; drawing again from them gives
    // the same list; nobody is drawn more than twice a year.
    let candidates: Vec<pb::DrawCandidate> =
        [("91371000MA3D00001B", "D"), ("91371002MA3C00005X", "A"), ("91350100M000100Y43", "C")]
            .iter()
            .map(|(c, k)| pb::DrawCandidate { credit_code: (*c).into(), risk_class: (*k).into() })
            .collect();
    let request = |seed| pb::DrawInspectionsRequest {
        year: 2026,
        seed,
        count: 2,
        candidates: candidates.clone(),
        inspectors: vec!["P1".into(), "P2".into(), "P3".into()],
        inspectors_per_target: 2,
    };
    let first = c.draw_inspections(request(42)).await.unwrap().into_inner();
    let published = eventually(Duration::from_secs(30), "the published draw", || async {
        let s = js.get_stream("ONETHING_SUPERVISION").await.ok()?;
        let m = s.get_last_raw_message_by_subject("onething.supervision.v1.inspections.drawn").await.ok()?;
        Envelope::from_nats(Some(&m.headers), m.payload.clone()).ok()?.decode::<pb::InspectionsDrawn>().ok()
    })
    .await
    .unwrap();
    let again = onething_supervision::domain::draw(
        published.seed,
        published.count as usize,
        &published.candidates.iter().map(|c| (c.credit_code.clone(), c.risk_class.clone())).collect::<Vec<_>>(),
        &published
            .prior_this_year
            .iter()
            .filter_map(|p| p.split_once('='))
            .map(|(c, n)| (c.to_string(), n.parse().unwrap()))
            .collect(),
        &published.inspectors,
        published.inspectors_per_target as usize,
    );
    let got: Vec<(String, Vec<String>)> =
        first.inspections.iter().map(|i| (i.credit_code.clone(), i.inspectors.clone())).collect();
    assert_eq!(again.inspections, got, "anyone re-draws the same list");
    let second = c.draw_inspections(request(43)).await.unwrap().into_inner();
    let mut per: std::collections::BTreeMap<String, u32> = Default::default();
    for d in [&first, &second] {
        for i in &d.inspections {
            *per.entry(i.credit_code.clone()).or_default() += 1;
        }
    }
    let mut at_cap: Vec<String> = per.iter().filter(|(_, n)| **n >= 2).map(|(c, _)| c.clone()).collect();
    at_cap.sort();
    let third = c.draw_inspections(request(44)).await.unwrap().into_inner();
    let mut capped = third.capped.clone();
    capped.sort();
    assert_eq!(capped, at_cap, "those drawn twice this year are left out");
    assert!(third.inspections.iter().all(|i| !at_cap.contains(&i.credit_code)));
    for i in &third.inspections {
        *per.entry(i.credit_code.clone()).or_default() += 1;
    }
    assert!(per.values().all(|n| *n <= 2), "the annual cap: {per:?}");
    sup.stop().await;
    mesh.stop_all().await;
    let _ = cpb::CaseState::Approved;
}
both_backends!(complaints_ratings_and_the_draw);
