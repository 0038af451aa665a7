//! Supervision end to end: deadlines across a holiday with one 督办 notice; a paused case
//! is not overdue; a complaint through every step; a bad review with its follow-up; KPIs
//! over a fixed scenario, the same after wiping the database and replaying the streams;
//! the random draw reproduced from its published seed, the annual cap respected.

use crate::common::*;
use chrono::{DateTime, TimeZone, Utc};
use onething_platform::{
    calendar::{Calendar, china},
    catalog::TimeUnit,
    events::{Envelope, OutgoingEvent, nats::ensure_stream},
};
use onething_proto::{
    common::{self as cpb, CaseState, CaseStateChanged},
    liaison::{EnterpriseRequestChanged, RequestState},
    supervision::{self as pb, supervision_service_client::SupervisionServiceClient},
};
use std::time::Duration;
use tonic::Code;

mod complaints;

fn cst(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
    china().with_ymd_and_hms(y, m, d, h, 0, 0).unwrap().with_timezone(&Utc)
}

/// `msg` as the CloudEvent its department would publish on `subject`.
fn envelope<M: prost::Message + prost::Name>(source: &str, subject: &str, msg: &M) -> Envelope {
    let e = OutgoingEvent::new(subject, "test", msg);
    Envelope {
        id: uuid::Uuid::now_v7().to_string(),
        source: format!("/onething/{source}"),
        ce_type: e.ce_type,
        subject: e.ce_subject,
        time: Utc::now(),
        traceparent: None,
        data: e.payload.into(),
    }
}

/// Publishes `msg` as a CloudEvent on `subject`, as its department would.
pub(crate) async fn publish<M: prost::Message + prost::Name>(
    js: &async_nats::jetstream::Context,
    source: &str,
    subject: &str,
    msg: &M,
) {
    let env = envelope(source, subject, msg);
    js.publish_with_headers(subject.to_string(), env.to_headers(), env.data.clone()).await.unwrap().await.unwrap();
}

fn case_event(
    id: &str,
    dept: &str,
    to: CaseState,
    version: i64,
    due: Option<DateTime<Utc>>,
    at: DateTime<Utc>,
) -> CaseStateChanged {
    CaseStateChanged {
        case_id: id.into(),
        matter_code: format!("{dept}.some_matter"),
        department: dept.into(),
        to_state: to as i32,
        version,
        due_time: due.map(onething_platform::cases::timestamp),
        occur_time: Some(onething_platform::cases::timestamp(at)),
        ..Default::default()
    }
}

/// The sealer of a test supervision (from the development signing key, as the service).
fn sealer() -> std::sync::Arc<onething_platform::seal::Sealer> {
    let key = dev_keys().signing_key.display().to_string();
    std::sync::Arc::new(onething_platform::seal::Sealer::from_file(&key, onething_supervision::SEAL_PURPOSE).unwrap())
}

fn ops(db: &sea_orm::DatabaseConnection) -> onething_supervision::ops::Supervision {
    onething_supervision::ops::Supervision::from_parts(onething_supervision::ops::Parts {
        db: db.clone(),
        outbox: onething_platform::events::Outbox::new("supervision"),
        calendar: std::sync::Arc::new(Calendar::builtin()),
        peers: Default::default(),
        identity: service_identity("supervision"),
        clock: onething_platform::clock::Clock::system(),
        sealer: sealer(),
    })
}

async fn start_supervision(db: &TestDb, nats: &NatsServer, suffix: &str, peers: &[(&str, String)]) -> Running {
    let mut s = test_settings(&db.url, &nats.url());
    s.consumer_suffix = suffix.into();
    for (k, v) in peers {
        s.peers.insert((*k).into(), v.clone());
    }
    start_named("supervision", s).await
}

/// A fresh database, NATS with the streams supervision reads, supervision on both.
async fn supervision_alone(backend: Backend) -> Option<(TestDb, NatsServer, async_nats::jetstream::Context, Running)> {
    let db = TestDb::fresh(backend).await?;
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    for d in ["household", "exit_entry", "vehicle", "liaison", "coordinator"] {
        ensure_stream(&js, d, 1).await.unwrap();
    }
    let sup = start_supervision(&db, &nats, "", &[]).await;
    Some((db, nats, js, sup))
}

async fn deadlines_and_one_notice(backend: Backend) {
    let Some((_db, _nats, js, sup)) = supervision_alone(backend).await else { return };
    // Accepted on 30 September 2026 with two working days: National Day (1–7 October) lies
    // between, so it is due at the close of 9 October.
    let accepted = cst(2026, 9, 30, 9);
    let due = Calendar::builtin().due(accepted, TimeUnit::WorkingDays, 2).at;
    assert_eq!(due, cst(2026, 10, 9, 17));
    publish(
        &js,
        "household",
        "onething.household.v1.case.accepted",
        &case_event("late-1", "household", CaseState::Accepted, 2, Some(due), accepted),
    )
    .await;
    // Another case waits for a supplement: its clock is paused, whatever the date.
    publish(
        &js,
        "household",
        "onething.household.v1.case.accepted",
        &case_event("paused-1", "household", CaseState::Accepted, 2, Some(cst(2026, 9, 1, 17)), accepted),
    )
    .await;
    publish(
        &js,
        "household",
        "onething.household.v1.case.awaiting_supplement",
        &case_event("paused-1", "household", CaseState::AwaitingSupplement, 3, None, accepted),
    )
    .await;
    eventually(Duration::from_secs(30), "the projection", || {
        let db = sup.db.clone();
        async move {
            (count(&db, "tracked WHERE paused = TRUE").await == 1 && count(&db, "tracked").await == 2).then_some(())
        }
    })
    .await
    .unwrap();
    let s = ops(&sup.db);
    assert!(s.late(cst(2026, 10, 5, 12)).await.unwrap().is_empty(), "a holiday is not a warning");
    assert!(s.late(cst(2026, 10, 8, 12)).await.unwrap().is_empty(), "more than a day left");
    let warned = s.late(cst(2026, 10, 9, 8)).await.unwrap();
    assert_eq!((warned.len(), warned[0].deadline_state()), (1, pb::DeadlineState::Warning));
    let overdue = s.late(cst(2026, 10, 9, 18)).await.unwrap();
    assert_eq!((overdue[0].id.as_str(), overdue[0].deadline_state()), ("late-1", pb::DeadlineState::Overdue));
    assert_eq!(s.issue_notices(cst(2026, 10, 9, 18)).await.unwrap(), 1);
    assert_eq!(s.issue_notices(cst(2026, 10, 12, 9)).await.unwrap(), 0, "one notice, not one a minute");
    assert_eq!(count(&sup.db, "unresolved WHERE source = 'case_overdue'").await, 1, "it reached the 办不成事 window");
    let mut c =
        SupervisionServiceClient::new(connect_as(&sup.endpoint(), Some(&staff("supervision", &["inspector"]))).await);
    let listed = c
        .list_deadlines(pb::ListDeadlinesRequest {
            at: Some(onething_platform::cases::timestamp(cst(2026, 10, 9, 18))),
        })
        .await
        .unwrap();
    assert_eq!(listed.into_inner().items.len(), 1, "the paused case is not listed");
    sup.stop().await;
}
both_backends!(deadlines_and_one_notice);

/// Two replicas issuing 督办 notices at the same moment (two connection pools on one
/// database, as two pods): each overdue case gets one notice and one event, not two.
async fn one_notice_across_replicas(backend: Backend) {
    let Some((db, _nats, js, sup)) = supervision_alone(backend).await else { return };
    let accepted = cst(2026, 9, 30, 9);
    let due = Calendar::builtin().due(accepted, TimeUnit::WorkingDays, 2).at;
    for i in 0..12 {
        let event = case_event(&format!("late-{i}"), "household", CaseState::Accepted, 2, Some(due), accepted);
        publish(&js, "household", "onething.household.v1.case.accepted", &event).await;
    }
    eventually(Duration::from_secs(30), "the projection", || {
        let db = sup.db.clone();
        async move { (count(&db, "tracked").await == 12).then_some(()) }
    })
    .await
    .unwrap();
    let other = onething_platform::db::connect(&db.url).await.unwrap();
    let (a, b) = (ops(&sup.db), ops(&other));
    let now = cst(2026, 10, 12, 9);
    let (x, y) = tokio::join!(a.issue_notices(now), b.issue_notices(now));
    assert_eq!(x.unwrap() + y.unwrap(), 12, "one notice per overdue case");
    assert_eq!(count(&sup.db, "outbox WHERE subject = 'onething.supervision.v1.notice.issued'").await, 12);
    assert_eq!(count(&sup.db, "unresolved WHERE source = 'case_overdue'").await, 12);
    sup.stop().await;
}
both_backends!(one_notice_across_replicas);

async fn kpis_replay_to_the_same_answer(backend: Backend) {
    let Some(db) = TestDb::fresh(backend).await else { return };
    let Some(db2) = TestDb::fresh(backend).await else { return };
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    for d in onething_platform::service_kind::SERVICE_NAMES {
        ensure_stream(&js, d, 1).await.unwrap();
    }
    let t0 = cst(2026, 11, 2, 9);
    // Household: three cases finished in November (two by their due time), one open and late.
    let cases = [("k1", 1, 20), ("k2", 5, 20), ("k3", 25, 20)];
    for (id, closed_day, due_day) in cases {
        publish(
            &js,
            "household",
            "onething.household.v1.case.accepted",
            &case_event(id, "household", CaseState::Accepted, 2, Some(cst(2026, 11, due_day, 17)), t0),
        )
        .await;
        publish(
            &js,
            "household",
            "onething.household.v1.case.approved",
            &case_event(id, "household", CaseState::Approved, 3, None, cst(2026, 11, closed_day + 1, 10)),
        )
        .await;
    }
    publish(
        &js,
        "household",
        "onething.household.v1.case.accepted",
        &case_event("k4", "household", CaseState::Accepted, 2, Some(cst(2026, 11, 10, 17)), t0),
    )
    .await;
    // Liaison: four requests; two completed, one ended in a responsibility record, one open.
    let req = |id: &str, s: RequestState| EnterpriseRequestChanged {
        request_id: id.into(),
        unit: "371000".into(),
        state: s as i32,
        occur_time: Some(onething_platform::cases::timestamp(t0)),
        ..Default::default()
    };
    for (id, steps) in [
        ("r1", vec![RequestState::Submitted, RequestState::Handled, RequestState::Closed]),
        ("r2", vec![RequestState::Submitted, RequestState::Handled]),
        (
            "r3",
            vec![
                RequestState::Submitted,
                RequestState::Handled,
                RequestState::BadlyRated,
                RequestState::Visited,
                RequestState::ResponsibilityAssigned,
            ],
        ),
        ("r4", vec![RequestState::Submitted]),
    ] {
        for s in steps {
            publish(&js, "liaison", "onething.liaison.v1.enterprise_request.changed", &req(id, s)).await;
        }
    }
    // Ratings, as supervision published them: 5 and 3 for household.
    for (id, score) in [("g1", 5), ("g2", 3)] {
        let r = pb::RatingChanged {
            rating_id: id.into(),
            target_kind: "case".into(),
            target_id: format!("k-{id}"),
            department: "household".into(),
            score,
            fixed: false,
            occur_time: Some(onething_platform::cases::timestamp(t0)),
        };
        publish(&js, "supervision", "onething.supervision.v1.rating.submitted", &r).await;
    }
    let first = start_supervision(&db, &nats, "", &[]).await;
    let settled = |db: sea_orm::DatabaseConnection| async move {
        let tracked = count(&db, "tracked WHERE kind IN ('case', 'bundle')").await;
        let requests_watched = count(&db, "tracked WHERE kind = 'request'").await;
        (tracked == 4 && requests_watched == 4 && count(&db, "requests").await == 4 && count(&db, "ratings").await == 2)
            .then_some(())
    };
    eventually(Duration::from_secs(30), "the projection", || settled(first.db.clone())).await.unwrap();
    let (from, to, at) = (cst(2026, 11, 1, 0), cst(2026, 12, 1, 0), cst(2026, 11, 29, 12));
    let k = ops(&first.db).compute_kpis(from, to, at).await.unwrap();
    let household = k.iter().find(|d| d.department == "household").unwrap();
    assert_eq!((household.cases_finished, household.cases_on_time, household.overdue_now), (3, 2, 1));
    assert!((household.on_time_rate - 2.0 / 3.0).abs() < 1e-9);
    assert_eq!((household.ratings, household.satisfaction), (2, 4.0));
    let liaison = k.iter().find(|d| d.department == "liaison").unwrap();
    assert_eq!((liaison.requests_received, liaison.requests_completed), (4, 2));
    assert!((liaison.request_completion_rate - 0.5).abs() < 1e-9);
    let late = ops(&first.db).late(at).await.unwrap();
    first.stop().await;

    // Wipe: a new, empty database, consumers under a new suffix read every stream again.
    let second = start_supervision(&db2, &nats, "-replay", &[]).await;
    eventually(Duration::from_secs(30), "the replay", || settled(second.db.clone())).await.unwrap();
    assert_eq!(ops(&second.db).compute_kpis(from, to, at).await.unwrap(), k, "the same KPIs");
    assert_eq!(ops(&second.db).late(at).await.unwrap(), late, "the same overdue list");
    second.stop().await;
}
both_backends!(kpis_replay_to_the_same_answer);

/// A batch of events moves supervision's records exactly as the same events one by one:
/// cases with transitions out of order and repeated, a bundle completed, a failed one
/// entering the 办不成事 window; then a batch mixing in a 督办 notice (handled event by event).
async fn a_batch_projects_as_one_by_one(backend: Backend) {
    use onething_platform::events::idempotent::{handle_batch, handle_one};
    use onething_proto::coordinator::{BundleChanged, BundleState};
    use onething_supervision::{
        projection::Projection,
        store::{Migrator, tracked, unresolved},
    };
    use sea_orm::{EntityTrait, QueryOrder};
    let Some(a) = TestDb::fresh(backend).await else { return };
    let Some(b) = TestDb::fresh(backend).await else { return };
    let one = onething_platform::db::connect_and_migrate::<Migrator>(&a.url).await.unwrap();
    let many = onething_platform::db::connect_and_migrate::<Migrator>(&b.url).await.unwrap();
    let projection = Projection { calendar: std::sync::Arc::new(Calendar::builtin()), sealer: sealer() };
    let t0 = cst(2026, 11, 2, 9);
    let case = |id: &str, to: CaseState, v: i64| {
        envelope(
            "household",
            "onething.household.v1.case.changed",
            &case_event(id, "household", to, v, Some(cst(2026, 11, 20, 17)), t0),
        )
    };
    let bundle = |id: &str, state: BundleState| {
        envelope(
            "coordinator",
            "onething.coordinator.v1.bundle.changed",
            &BundleChanged {
                bundle_id: id.into(),
                code: "enterprise_opening".into(),
                state: state as i32,
                step_outcomes: vec!["seal=REFUSED".into()],
                occur_time: Some(onething_platform::cases::timestamp(t0)),
                ..Default::default()
            },
        )
    };
    let notice = envelope(
        "supervision",
        "onething.supervision.v1.notice.issued",
        &pb::NoticeIssued {
            kind: "case".into(),
            id: "c2".into(),
            department: "household".into(),
            ..Default::default()
        },
    );
    // A kind of event the projection does not follow rides along in a batch.
    let mut unfollowed = case("c9", CaseState::Accepted, 2);
    unfollowed.ce_type = "onething.household.v1.PersonRegistered".into();
    let first = vec![
        unfollowed,
        case("c1", CaseState::Submitted, 1),
        case("c1", CaseState::Accepted, 2),
        case("c2", CaseState::Accepted, 2),
        case("c1", CaseState::Approved, 4),
        case("c1", CaseState::Accepted, 3), // late: older than what came before
        case("c2", CaseState::Submitted, 1),
        bundle("b1", BundleState::Running),
        bundle("b1", BundleState::Completed),
        bundle("b2", BundleState::Failed),
    ];
    let second = vec![case("c3", CaseState::Accepted, 2), notice, case("c2", CaseState::Approved, 3)];
    for (round, batch) in (1..).zip([first, second]) {
        for e in &batch {
            assert_eq!(
                handle_one(&one, "s", &projection, e).await.unwrap(),
                onething_platform::events::Outcome::Applied
            );
        }
        let spans: Vec<(Envelope, tracing::Span)> = batch.into_iter().map(|e| (e, tracing::Span::none())).collect();
        for r in handle_batch(&many, "s", &projection, &spans).await {
            assert_eq!(r.unwrap(), onething_platform::events::Outcome::Applied);
        }
        let rows = |db: sea_orm::DatabaseConnection| async move {
            let t = tracked::Entity::find()
                .order_by_asc(tracked::Column::Kind)
                .order_by_asc(tracked::Column::Id)
                .all(&db)
                .await
                .unwrap();
            let u = unresolved::Entity::find().order_by_asc(unresolved::Column::Id).all(&db).await.unwrap();
            (t, u)
        };
        // Taken together (one inbox insert, one time), not event by event after a failure.
        assert_eq!(count(&many, "(SELECT DISTINCT handled_at FROM inbox) AS batches").await, round);
        let (expected, got) = (rows(one.clone()).await, rows(many.clone()).await);
        assert_eq!(got, expected);
        assert!(!expected.1.is_empty(), "the failed bundle is in the window");
    }
    let t = tracked::Entity::find_by_id(("case".to_string(), "c1".to_string())).one(&many).await.unwrap().unwrap();
    assert_eq!((t.version, t.last_state.as_str(), t.closed), (4, "approved", true));
    assert_eq!(count(&many, "tracked").await, 5);
}
both_backends!(a_batch_projects_as_one_by_one);

/// Supervision started before the other services made their streams (a mesh starting):
/// its consumers say once, at info, that they wait, with no warning, and take the events
/// once the streams exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_wait_quietly_for_streams_not_made_yet() {
    use onething_platform::{config::LogSettings, telemetry};
    let spans = SpanSink::default();
    let logs = LogSink::default();
    let settings = LogSettings { format: "json".into(), filter: "info".into() };
    let _guard = telemetry::init_capturing("streams-test", &settings, spans, logs.clone())
        .expect("this test must install telemetry first: run it with cargo nextest (one process per test)");
    let Some(db) = TestDb::fresh(Backend::Sqlite).await else { return };
    let nats = NatsServer::start().await;
    let supervision = start_supervision(&db, &nats, "", &[]).await;
    let text = || String::from_utf8_lossy(&logs.0.lock().unwrap()).to_string();
    eventually(Duration::from_secs(30), "the consumers to say they wait", || async {
        text().contains("waiting for the stream to be created by its service").then_some(())
    })
    .await
    .unwrap();
    let js = nats.jetstream().await;
    ensure_stream(&js, "household", 1).await.unwrap();
    let t0 = cst(2026, 11, 2, 9);
    publish(
        &js,
        "household",
        "onething.household.v1.case.accepted",
        &case_event("w1", "household", CaseState::Accepted, 2, Some(cst(2026, 11, 20, 17)), t0),
    )
    .await;
    eventually(Duration::from_secs(30), "the event taken", || async {
        (count(&supervision.db, "tracked").await == 1).then_some(())
    })
    .await
    .unwrap();
    let log = text();
    let waiting =
        log.lines().filter(|l| l.contains("waiting for the stream") && l.contains("supervision-household")).count();
    assert_eq!(waiting, 1, "said once per consumer");
    assert!(!log.lines().any(|l| l.contains("\"WARN\"") && l.contains("consumer")), "no warnings: {log}");
    supervision.stop().await;
}
