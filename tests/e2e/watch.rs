//! Supervision watches every deadline it keeps, and the departments hear of its 督办: a
//! complaint's next step (the complaint carries its complainant's contact, masked in events
//! and rebuilt on replay from its sealed event), a bad review's fix, an enterprise request
//! (handed up from the district to the city bureau, 上下贯通, when the district does not handle
//! it in time), and a case — each noticed once, listed for the department's clerks.

use crate::{common::*, measures::swept};
use onething_proto::{
    common as cpb,
    liaison::{self as lpb, liaison_service_client::LiaisonServiceClient},
    supervision::{self as spb},
};
use prost_types::Timestamp;
use std::time::Duration;
use tonic::Code;

const WAIT: Duration = Duration::from_secs(60);

/// The notice about `kind`/`id` (for the deadline `due`, when given) the department of
/// `cases` lists, once there is one.
async fn listed(cases: &CaseServiceClient<Authed>, kind: &str, id: &str, due: Option<Timestamp>) -> cpb::Notice {
    eventually(WAIT, "the department's notice", || {
        let mut c = cases.clone();
        let (kind, id) = (kind.to_string(), id.to_string());
        async move {
            let list = c.list_notices(cpb::ListNoticesRequest { page_size: 100 }).await.ok()?.into_inner().notices;
            list.into_iter().find(|n| n.kind == kind && n.id == id && due.is_none_or(|d| n.due_time == Some(d)))
        }
    })
    .await
    .unwrap()
}

/// How many notices about `id` (for the deadline `due`, when given) supervision published.
async fn notices_about(js: &async_nats::jetstream::Context, id: &str, due: Option<Timestamp>) -> usize {
    on_subject(js, "ONETHING_SUPERVISION", "onething.supervision.v1.notice.issued")
        .await
        .into_iter()
        .filter_map(|p| <spb::NoticeIssued as prost::Message>::decode(p).ok())
        .filter(|n| n.id == id && due.is_none_or(|d| n.due_time == Some(d)))
        .count()
}

/// A complaint about vehicle carries its contact: in full for supervision staff with
/// `personal_data`, masked for other staff, the complainant and in the event, whose
/// personal part is sealed; a retry naming another contact under the same key is refused. Its next step's deadline
/// passing gets one 督办 notice, which vehicle's clerks see; a supervision rebuilt from the
/// streams into an empty database has the complaint back, summary and contact included.
async fn a_complaint_is_watched_and_rebuilt(backend: Backend) {
    let Some(mut w) = swept(backend).service(VEHICLE).service(ServiceKind::Supervision).start().await else { return };
    let complain = |key: &str| spb::SubmitComplaintRequest {
        channel: spb::Channel::Online as i32,
        department: "vehicle".into(),
        summary: "检测站乱收费".into(),
        idempotency_key: key.into(),
        contact: "13712345678".into(),
    };
    let mut citizen = w.supervision(&citizen_token(&seeded_person())).await;
    let mut no_contact = complain("w-0");
    no_contact.contact = "call me".into();
    let err = citizen.submit_complaint(no_contact).await.unwrap_err();
    assert_eq!((err.code(), fields(&err)), (Code::InvalidArgument, vec!["contact".to_string()]));
    let mine = citizen.submit_complaint(complain("w-1")).await.answer().complaint.unwrap();
    assert_eq!(mine.contact, "137****5678", "the complainant's answer is masked");
    let mut corrected = complain("w-1");
    corrected.contact = "13900001111".into();
    let err = citizen.submit_complaint(corrected).await.unwrap_err();
    assert_eq!(reason_of(&err), "SUPERVISION_IDEMPOTENCY_KEY_REUSED", "a changed contact is not dropped silently");
    let js = w.nats.jetstream().await;
    let events = eventually(WAIT, "the complaint's event", || async {
        let all = on_subject(&js, "ONETHING_SUPERVISION", "onething.supervision.v1.complaint.accepted").await;
        (!all.is_empty()).then_some(all)
    })
    .await
    .unwrap();
    let event: spb::ComplaintChanged = prost::Message::decode(events[0].clone()).unwrap();
    assert_eq!(event.contact_masked, "137****5678");
    let raw = String::from_utf8_lossy(&events[0]).to_string();
    assert!(!raw.contains("13712345678") && !raw.contains("乱收费"), "nothing personal in the clear");

    // Three working days on, nobody verified it: one 督办, to vehicle.
    w.clock.advance(chrono::Duration::days(7));
    let clerk = w.clerk(VEHICLE).await;
    let notice = listed(&clerk, "complaint", &mine.complaint_id, None).await;
    assert!(notice.due_time.is_some() && notice.issue_time.is_some());
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(notices_about(&js, &mine.complaint_id, None).await, 1, "noticed once");

    // The contact in the staff's answers: masked without personal_data, in full with it.
    for (roles, step, contact) in [
        (&["inspector"][..], spb::ComplaintStep::Verified, "137****5678"),
        (&["inspector", "personal_data"][..], spb::ComplaintStep::Handled, "13712345678"),
    ] {
        let mut s = w.supervision(&staff("supervision", roles)).await;
        let advanced = s
            .advance_complaint(spb::AdvanceComplaintRequest {
                complaint_id: mine.complaint_id.clone(),
                step: step as i32,
                note: "已核查".into(),
            })
            .await
            .answer()
            .complaint
            .unwrap();
        assert_eq!(advanced.contact, contact, "{roles:?}");
    }

    // Replayed into an empty database under a new consumer suffix: the complaint is back,
    // with what only the sealed part carried.
    w.stop(ServiceKind::Supervision).await;
    let replay_db = TestDb::fresh(backend).await.unwrap();
    let mut s = w.settings(ServiceKind::Supervision);
    s.database_url = replay_db.url.clone();
    s.consumer_suffix = "-replay".into();
    let rebuilt = start_named("supervision", s).await;
    let row = eventually(WAIT, "the rebuilt complaint", || {
        let db = rebuilt.db.clone();
        let id = mine.complaint_id.clone();
        async move {
            use sea_orm::EntityTrait;
            onething_supervision::store::complaint::Entity::find_by_id(id).one(&db).await.ok().flatten()
        }
    })
    .await
    .unwrap();
    assert_eq!((row.summary.as_str(), row.contact.as_str()), ("检测站乱收费", "13712345678"));
    rebuilt.stop().await;
    w.restart(ServiceKind::Supervision).await;
    w.stop_all().await;
}
both_backends!(a_complaint_is_watched_and_rebuilt);

/// 上下贯通: a district request not handled in time is handed up to the city bureau with the
/// city's own deadline; a clerk may hand one up at once. When the city's deadline passes too,
/// supervision issues one 督办, which liaison's clerks see.
async fn a_late_request_goes_up_to_the_city_and_is_noticed(backend: Backend) {
    let Some(w) = swept(backend).service(LIAISON).service(ServiceKind::Supervision).start().await else { return };
    let code = onething_liaison::store::seed_logistics().to_string();
    let mut ent = LiaisonServiceClient::new(w.channel(LIAISON, &enterprise_token(&code)).await);
    let mut clerk = LiaisonServiceClient::new(w.channel(LIAISON, &staff("liaison", &["clerk"])).await);
    let submit = |key: &str| lpb::SubmitRequestRequest {
        credit_code: code.clone(),
        channel: lpb::Channel::LiaisonRoom as i32,
        category: "traffic_logistics".into(),
        description: "园区道路货车通行受限，请求协调".into(),
        idempotency_key: key.into(),
    };
    // A clerk hands one up at once, with a reason.
    let r = ent.submit_request(submit("up-1")).await.answer().request.unwrap();
    assert_eq!(r.tier(), lpb::Tier::District);
    let no_note = clerk
        .escalate_request(lpb::EscalateRequestRequest { request_id: r.request_id.clone(), note: String::new() })
        .await;
    assert_eq!(no_note.unwrap_err().code(), Code::InvalidArgument);
    let up = clerk
        .escalate_request(lpb::EscalateRequestRequest {
            request_id: r.request_id.clone(), note: "涉及多区协调".into()
        })
        .await
        .answer()
        .request
        .unwrap();
    assert_eq!((up.tier(), up.unit.as_str(), up.escalated), (lpb::Tier::City, "3710", true));
    assert!(up.due_time.unwrap().seconds > r.due_time.unwrap().seconds, "the city's own deadline");
    let again = clerk
        .escalate_request(lpb::EscalateRequestRequest { request_id: r.request_id.clone(), note: "再次".into() })
        .await;
    assert_eq!(again.unwrap_err().code(), Code::FailedPrecondition, "a city request goes no higher");

    // Another is left alone: past the district's five working days it goes up by itself.
    let late = ent.submit_request(submit("up-2")).await.answer().request.unwrap();
    w.clock.advance(chrono::Duration::days(9));
    let read = |id: String| {
        let mut c = clerk.clone();
        async move { c.get_request(lpb::GetRequestRequest { request_id: id }).await.ok()?.into_inner().request }
    };
    let handed_up = eventually(WAIT, "the automatic hand-up", || async {
        read(late.request_id.clone()).await.filter(|r| r.escalated)
    })
    .await
    .unwrap();
    assert_eq!((handed_up.tier(), handed_up.flagged), (lpb::Tier::City, true));
    assert!(handed_up.flag_reason.contains("district"), "{}", handed_up.flag_reason);

    // The city's ten working days pass too: one 督办 for the city's deadline, on liaison's
    // list (the district's, if supervision saw it pass before the hand-up, is another).
    w.clock.advance(chrono::Duration::days(20));
    let cases = w.clerk(LIAISON).await;
    let city_due = handed_up.due_time;
    listed(&cases, "request", &late.request_id, city_due).await;
    let js = w.nats.jetstream().await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(notices_about(&js, &late.request_id, city_due).await, 1, "noticed once for its deadline");
    w.stop_all().await;
}
both_backends!(a_late_request_goes_up_to_the_city_and_is_noticed);

/// A case past its due time gets one 督办 notice, and the department's clerks find it in
/// their list and among the cases under notice; a bad review's fix not made in time does too.
async fn an_overdue_case_is_marked_for_its_clerks(backend: Backend) {
    let Some(w) = swept(backend).service(HOUSEHOLD).service(ServiceKind::Supervision).start().await else { return };
    let mut applicant = w.cases(HOUSEHOLD, &citizen_token(OUTSIDER)).await;
    let mut req = residence_request("late-1");
    req.materials.push(material("photo"));
    let case = applicant.create_case(req).await.case();
    // A certificate issued at once, rated badly by its owner: a fix is due in five days.
    let owner = citizen_token(&seeded_person());
    let certificate = w.cases(HOUSEHOLD, &owner).await.create_case(certificate_request("late-2")).await.case();
    let rater = w.supervision(&owner).await;
    let rating = eventually(WAIT, "supervision to see the certificate finished", || {
        let mut r = rater.clone();
        let id = certificate.case_id.clone();
        async move {
            let req = spb::RateRequest {
                target_kind: "case".into(),
                target_id: id,
                department: "household".into(),
                score: 1,
            };
            r.rate(req).await.ok().map(|a| a.into_inner().rating.unwrap())
        }
    })
    .await
    .unwrap();
    assert!(rating.bad);
    w.clock.advance(chrono::Duration::days(30));
    let clerk = w.clerk(HOUSEHOLD).await;
    let notice = listed(&clerk, "case", &case.case_id, None).await;
    assert!(notice.issue_time.is_some());
    let under = clerk
        .clone()
        .list_cases(cpb::ListCasesRequest { under_notice: true, ..Default::default() })
        .await
        .answer()
        .cases;
    assert_eq!(under.len(), 1);
    assert_eq!(under[0].case_id, case.case_id);
    assert!(under[0].notice_time.is_some());
    listed(&clerk, "rating", &rating.rating_id, None).await;
    // A citizen does not read the department's notices.
    let denied = applicant.list_notices(cpb::ListNoticesRequest { page_size: 10 }).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    w.stop_all().await;
}
both_backends!(an_overdue_case_is_marked_for_its_clerks);

/// A database made before notices were kept per deadline upgrades in place: the notices a
/// department kept stay, and a second one for the same item (its next deadline) fits; items
/// supervision had noticed are not noticed again for the same due time.
async fn notices_upgrade_to_one_per_deadline(backend: Backend) {
    use onething_platform::store::notice;
    use onething_supervision::store::{Migrator as SupervisionMigrator, tracked};
    use sea_orm::{ActiveModelTrait, ConnectionTrait, EntityTrait, IntoActiveModel};
    use sea_orm_migration::MigratorTrait;
    /// Applies `M`'s migrations up to and including `last`.
    async fn migrate_until<M: MigratorTrait>(db: &sea_orm::DatabaseConnection, last: &str) {
        let n = M::migrations().iter().position(|m| m.name() == last).expect("a known migration") + 1;
        M::up(db, Some(u32::try_from(n).unwrap())).await.unwrap();
    }
    let Some(test_db) = TestDb::fresh(backend).await else { return };
    let db = onething_platform::db::connect(&test_db.url).await.unwrap();
    migrate_until::<SupervisionMigrator>(&db, "m20261208_600005_complaint_contact").await;
    let due = chrono::Utc::now() - chrono::Duration::days(1);
    // Rows in the old shapes: a notice keyed by item alone, a tracked item noticed before
    // the due time noticed was kept.
    let insert = |table: &str, columns: &[&str], values: Vec<sea_orm::Value>| {
        let mut q = sea_orm::sea_query::Query::insert();
        q.into_table(sea_orm::sea_query::Alias::new(table))
            .columns(columns.iter().map(|c| sea_orm::sea_query::Alias::new(*c)))
            .values_panic(values.into_iter().map(Into::into));
        db.get_database_backend().build(&q)
    };
    let rows = [
        insert(
            "notices",
            &["kind", "item_id", "due_at", "issued_at"],
            vec!["case".into(), "c-1".into(), due.into(), due.into()],
        ),
        insert(
            "tracked",
            &["kind", "id", "department", "code", "due_at", "paused", "closed", "last_state", "version", "notice_sent"],
            vec![
                "case".into(),
                "c-1".into(),
                "household".into(),
                "household.residence_permit".into(),
                due.into(),
                false.into(),
                false.into(),
                "submitted".into(),
                1i64.into(),
                true.into(),
            ],
        ),
    ];
    for row in rows {
        db.execute_raw(row).await.unwrap();
    }
    SupervisionMigrator::up(&db, None).await.unwrap();

    let kept = notice::Entity::find().all(&db).await.unwrap();
    assert_eq!(kept.len(), 1, "the department's notices stay");
    let mut next = kept[0].clone().into_active_model();
    next.issued_at = sea_orm::Set(due + chrono::Duration::days(3));
    next.insert(&db).await.expect("a second notice for the item's next deadline fits");
    let item = tracked::Entity::find_by_id(("case".to_string(), "c-1".to_string())).one(&db).await.unwrap().unwrap();
    assert_eq!(item.noticed_due.map(|t| t.timestamp()), Some(due.timestamp()), "noticed for the due time it has");
}
both_backends!(notices_upgrade_to_one_per_deadline);
