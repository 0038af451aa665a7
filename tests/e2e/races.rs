//! The saga's races, each played out the same way every run by the controllable test
//! department (tests/e2e/test_department.rs) standing in for liaison and vehicle behind a
//! real coordinator, real NATS and a real database: an event that overtakes its CreateCase
//! answer, a withdrawal while a CreateCase is in flight, and a department that hangs while
//! other bundles go on, also when more bundles wait on it than it may have calls in flight;
//! and a watcher on one replica woken by a change another replica committed.

use crate::bundles::{enterprise_applicant, finished, operating, submit};
use crate::common::*;
use crate::test_department::TestDepartment;
use onething_platform::events::nats::ensure_stream;
use onething_proto::{
    common::CaseState,
    coordinator::{self as pb, BundleState, StepState, bundle_service_client::BundleServiceClient},
};
use std::time::Duration;

struct Stage {
    _nats: NatsServer,
    _db: TestDb,
    dept: TestDepartment,
    coordinator: Running,
    js: async_nats::jetstream::Context,
    /// The coordinator's settings, for a second replica.
    settings: onething_platform::config::Settings,
}

/// NATS with every department's stream, the test department as all of them, a coordinator.
async fn stage(backend: Backend) -> Option<Stage> {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    for d in onething_platform::service_kind::DEPARTMENT_NAMES {
        ensure_stream(&js, d, 1).await.unwrap();
    }
    let dept = TestDepartment::start(js.clone()).await;
    let db = TestDb::fresh(backend).await?;
    let mut s = test_settings(&db.url, &nats.url());
    for d in onething_platform::service_kind::DEPARTMENT_NAMES {
        s.peers.insert(d.into(), dept.url());
    }
    let coordinator = start_named("coordinator", s.clone()).await;
    Some(Stage { _nats: nats, _db: db, dept, coordinator, js, settings: s })
}

fn company() -> String {
    onething_platform::ids::CreditCode::complete("91371002MA3C00123").unwrap().to_string()
}

async fn applicant(st: &Stage, code: &str) -> BundleServiceClient<Authed> {
    BundleServiceClient::new(connect_as(&st.coordinator.endpoint(), Some(&enterprise_token(code))).await)
}

/// 企业开办 with its vehicle check: a liaison filing and a vehicle verification at once.
fn opening_with_vehicle(code: &str, key: &str) -> pb::SubmitBundleRequest {
    submit(
        "enterprise_opening",
        enterprise_applicant(code),
        &[("seal_kinds", "official,finance"), ("engraving_company", "威海示例刻章店")],
        &["business_licence", "seal_imprints"],
        &["vehicle_verification"],
        key,
    )
}

fn step(b: &pb::Bundle, id: &str) -> StepState {
    b.steps.iter().find(|s| s.step_id == id).map(|s| s.state()).unwrap()
}

/// Vehicle answers "accepted", but before that answer is recorded its own consumer
/// approves the case and says so in an event: the step follows the event, not the older
/// answer, and the bundle completes.
async fn an_event_that_overtakes_the_create_answer_counts(backend: Backend) {
    let Some(st) = stage(backend).await else { return };
    let code = company();
    let mut c = applicant(&st, &code).await;
    st.dept.hold("vehicle");
    let b = c.submit_bundle(opening_with_vehicle(&code, "race-1")).await.unwrap().into_inner().bundle.unwrap();
    let case = st.dept.case_in("vehicle").await;
    st.dept.advance(&case, CaseState::Approved).await;
    // The coordinator has taken the event (acknowledged it) while the answer is held.
    let stream = st.js.get_stream("ONETHING_VEHICLE").await.unwrap();
    eventually(Duration::from_secs(30), "the coordinator to take the event", || async {
        let mut consumer: async_nats::jetstream::consumer::Consumer<async_nats::jetstream::consumer::pull::Config> =
            stream.get_consumer("coordinator-vehicle-cases").await.ok()?;
        let info = consumer.info().await.ok()?;
        (info.ack_floor.stream_sequence == 1 && info.num_ack_pending == 0).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(st.dept.waiting("vehicle"), 1, "the answer is still held");
    st.dept.release("vehicle");
    let done = finished(&mut c, &b.bundle_id).await;
    assert_eq!(done.state(), BundleState::Completed);
    assert_eq!(step(&done, "vehicle_verification"), StepState::Done);
    assert_eq!(st.dept.calls("CreateCase", "vehicle"), [case], "one case, created once");
    st.coordinator.stop().await;
}
both_backends!(an_event_that_overtakes_the_create_answer_counts);

/// The applicant withdraws while vehicle's CreateCase is in flight: the step is cancelled
/// at once, and the case created a moment later is withdrawn in turn, not orphaned.
async fn a_case_created_after_the_withdrawal_is_withdrawn(backend: Backend) {
    let Some(st) = stage(backend).await else { return };
    let code = company();
    let mut c = applicant(&st, &code).await;
    st.dept.hold("vehicle");
    let b = c.submit_bundle(opening_with_vehicle(&code, "race-2")).await.unwrap().into_inner().bundle.unwrap();
    let case = st.dept.case_in("vehicle").await;
    let withdrawn = c.withdraw_bundle(pb::WithdrawBundleRequest { bundle_id: b.bundle_id.clone() }).await.unwrap();
    assert_eq!(withdrawn.into_inner().bundle.unwrap().state(), BundleState::Withdrawn);
    st.dept.release("vehicle");
    eventually(Duration::from_secs(30), "the late case withdrawn", || async {
        (st.dept.calls("WithdrawCase", "vehicle") == [case.clone()]).then_some(())
    })
    .await
    .unwrap();
    let done = finished(&mut c, &b.bundle_id).await;
    assert_eq!(step(&done, "vehicle_verification"), StepState::Cancelled);
    st.coordinator.stop().await;
}
both_backends!(a_case_created_after_the_withdrawal_is_withdrawn);

/// Vehicle hangs on a retried CreateCase (the driver's sweep is driving it); meanwhile a
/// liaison-only bundle whose first call failed is retried by the same sweep and completes
/// while vehicle's call still hangs (a serial sweep would hold it for vehicle's whole call
/// timeout). Then vehicle answers, approves, and its bundle completes too.
async fn a_hung_department_delays_only_its_own_steps(backend: Backend) {
    let Some(st) = stage(backend).await else { return };
    let code = company();
    let mut c = applicant(&st, &code).await;
    st.dept.fail_next("vehicle", 1);
    let a = c.submit_bundle(opening_with_vehicle(&code, "race-3a")).await.unwrap().into_inner().bundle.unwrap();
    eventually(Duration::from_secs(30), "vehicle's first call to fail", || async {
        (!st.dept.calls("CreateCase", "vehicle").is_empty()).then_some(())
    })
    .await
    .unwrap();
    st.dept.hold("vehicle");
    // The retry comes from the driver's sweep, and hangs there.
    eventually(Duration::from_secs(30), "vehicle's retry to hang", || async {
        (st.dept.waiting("vehicle") == 1).then_some(())
    })
    .await
    .unwrap();
    let other = onething_platform::ids::CreditCode::complete("91371002MA3C00456").unwrap().to_string();
    let mut o = applicant(&st, &other).await;
    st.dept.fail_next("liaison", 1);
    let b = o.submit_bundle(operating(&other, "race-3b")).await.unwrap().into_inner().bundle.unwrap();
    let done = finished(&mut o, &b.bundle_id).await;
    assert_eq!(done.state(), BundleState::Completed);
    assert!(st.dept.calls("CreateCase", "liaison").iter().any(String::is_empty), "its first call failed");
    assert_eq!(st.dept.waiting("vehicle"), 1, "completed while vehicle's call still hangs");
    st.dept.release("vehicle");
    // Vehicle accepted it; its approval comes as an event.
    let case = st.dept.case_in("vehicle").await;
    st.dept.advance(&case, CaseState::Approved).await;
    assert_eq!(finished(&mut c, &a.bundle_id).await.state(), BundleState::Completed);
    st.coordinator.stop().await;
}
both_backends!(a_hung_department_delays_only_its_own_steps);

/// Vehicle hangs on every call while more bundles need it than it may have calls in flight:
/// it holds exactly its own share ([`DEPARTMENT_CALLS`]), the rest are turned back to try
/// later, and a liaison-only bundle retried by the driver's sweep completes meanwhile.
async fn more_bundles_than_a_hung_department_may_hold(backend: Backend) {
    use onething_coordinator::engine::DEPARTMENT_CALLS;
    let Some(st) = stage(backend).await else { return };
    let code = company();
    let mut c = applicant(&st, &code).await;
    st.dept.hold("vehicle");
    for i in 0..DEPARTMENT_CALLS + 4 {
        c.submit_bundle(opening_with_vehicle(&code, &format!("race-4-{i}"))).await.unwrap();
    }
    eventually(Duration::from_secs(30), "vehicle's share of calls to hang", || async {
        (st.dept.waiting("vehicle") == DEPARTMENT_CALLS).then_some(())
    })
    .await
    .unwrap();
    // The calls turned back as busy are tried again soon, never counted as failed attempts
    // (which would push them back up to 30 s).
    let db = onething_platform::db::connect(&st._db.url).await.unwrap();
    let busy = "bundle_steps WHERE step_id = 'vehicle_verification' AND reason = 'vehicle busy; retrying'";
    eventually(Duration::from_secs(30), "the turned-back steps said busy", || async {
        (count(&db, busy).await == 4).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(count(&db, "bundle_steps WHERE step_id = 'vehicle_verification' AND attempts > 0").await, 0);
    let other = onething_platform::ids::CreditCode::complete("91371002MA3C00789").unwrap().to_string();
    let mut o = applicant(&st, &other).await;
    st.dept.fail_next("liaison", 1);
    let b = o.submit_bundle(operating(&other, "race-4b")).await.unwrap().into_inner().bundle.unwrap();
    let done = finished(&mut o, &b.bundle_id).await;
    assert_eq!(done.state(), BundleState::Completed);
    assert_eq!(st.dept.waiting("vehicle"), DEPARTMENT_CALLS, "never more than its share, all still hanging");
    st.dept.release("vehicle");
    st.coordinator.stop().await;
}
both_backends!(more_bundles_than_a_hung_department_may_hold);

/// A bundle watched on one replica changes on another: the replica that committed the
/// change rings the bundle's doorbell over NATS, and the watcher on the other replica sends
/// the new state. A replica takes [`WATCHERS_PER_BUNDLE`] watchers of a bundle; a client
/// that goes away gives its place back.
async fn a_watcher_on_another_replica_sees_the_change_and_ends_with_its_client(backend: Backend) {
    use futures::StreamExt;
    use onething_coordinator::watch::{DOORBELL, WATCHERS_PER_BUNDLE};
    let Some(st) = stage(backend).await else { return };
    // B reads a bundle by itself only every ten minutes: within this test only a ring wakes it.
    let quiet = onething_platform::config::Settings { watch_fallback_ms: 600_000, ..st.settings.clone() };
    let other = start_named("coordinator", quiet).await;
    let code = company();
    let mut on_a = applicant(&st, &code).await;
    let mut on_b = BundleServiceClient::new(connect_as(&other.endpoint(), Some(&enterprise_token(&code))).await);
    st.dept.hold("vehicle");
    let b = on_a.submit_bundle(opening_with_vehicle(&code, "watch-1")).await.unwrap().into_inner().bundle.unwrap();
    st.dept.case_in("vehicle").await;
    let mut rings = st.js.client().subscribe(format!("{DOORBELL}.{}", b.bundle_id)).await.unwrap();
    st.js.client().flush().await.unwrap();
    let watch = pb::WatchBundleRequest { bundle_id: b.bundle_id.clone() };
    let mut watching = on_b.watch_bundle(watch.clone()).await.unwrap().into_inner();
    let first = watching.message().await.unwrap().unwrap().bundle.unwrap();
    assert_eq!(st.dept.waiting("vehicle"), 1, "vehicle's answer is still held");
    // Vehicle answers the call replica A made; A records it and rings.
    st.dept.release("vehicle");
    let rang = tokio::time::timeout(Duration::from_secs(30), rings.next()).await.unwrap().unwrap();
    assert_eq!(rang.payload.as_ref(), b"", "a ring carries nothing but its subject");
    let next = tokio::time::timeout(Duration::from_secs(30), watching.message()).await.unwrap().unwrap().unwrap();
    let next = next.bundle.unwrap();
    assert!(next.version > first.version, "the watcher on B sent A's change");
    assert_eq!(st.dept.calls("CreateCase", "vehicle").len(), 1, "only A called vehicle: B learned it by the ring");

    // As many watchers as a replica takes, then no more; gone with their clients.
    let mut more = Vec::new();
    for _ in 1..WATCHERS_PER_BUNDLE {
        let mut s = on_b.watch_bundle(watch.clone()).await.unwrap().into_inner();
        s.message().await.unwrap().unwrap();
        more.push(s);
    }
    let err = on_b.watch_bundle(watch.clone()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    drop(more);
    drop(watching);
    eventually(Duration::from_secs(30), "the watchers' places given back", || {
        let (mut c, watch) = (on_b.clone(), watch.clone());
        async move { c.watch_bundle(watch).await.ok().map(drop) }
    })
    .await
    .unwrap();
    other.stop().await;
    st.coordinator.stop().await;
}
both_backends!(a_watcher_on_another_replica_sees_the_change_and_ends_with_its_client);
