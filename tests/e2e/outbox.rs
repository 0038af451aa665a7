//! Nothing is lost: cases created while NATS is down wait in the outbox and are all
//! published, once each, after NATS comes back.

use crate::common::*;
use std::{collections::BTreeSet, time::Duration};

async fn outbox_survives_a_nats_outage(backend: Backend) {
    let Some(mut mesh) = TestMesh::with(backend).service(HOUSEHOLD).start().await else {
        return;
    };
    let mut cases = mesh.coordinator_cases(HOUSEHOLD).await;
    for i in 0..5 {
        cases.create_case(certificate_request(&format!("before-{i}"))).await.unwrap();
    }
    let js = mesh.nats.jetstream().await;
    // Each 即办 certificate is three transitions: submitted, accepted, approved.
    assert_eq!(read_stream(&js, 15).await.len(), 15);
    // The relay marks what it published a moment later, many rows at once.
    eventually(Duration::from_secs(30), "the published rows marked sent", || async {
        (count_unsent(mesh.db(HOUSEHOLD)).await == 0).then_some(())
    })
    .await
    .unwrap();

    mesh.nats.stop();
    // Intake goes on without the broker.
    for i in 0..5 {
        cases.create_case(certificate_request(&format!("during-{i}"))).await.expect("intake works while NATS is down");
    }
    let db = mesh.db(HOUSEHOLD).clone();
    let waiting = count_unsent(&db).await;
    assert_eq!(waiting, 15, "the events wait in the outbox");

    mesh.nats.restart().await;
    let js = mesh.nats.jetstream().await;
    let msgs = read_stream(&js, 30).await;
    let ids: BTreeSet<String> =
        msgs.iter().map(|m| m.headers.as_ref().unwrap().get("ce-id").unwrap().as_str().to_string()).collect();
    assert_eq!(msgs.len(), 30, "every event published");
    assert_eq!(ids.len(), 30, "none twice");
    eventually(Duration::from_secs(30), "an empty outbox", || {
        let db = db.clone();
        async move { (count_unsent(&db).await == 0).then_some(()) }
    })
    .await
    .unwrap();
    mesh.stop_all().await;
}
both_backends!(outbox_survives_a_nats_outage);

async fn count_unsent(db: &sea_orm::DatabaseConnection) -> i64 {
    count(db, "outbox WHERE sent_at IS NULL").await
}

/// A publish repeated after a crash (row published, process died before marking it sent)
/// is dropped by JetStream's dedup on `Nats-Msg-Id`.
async fn a_repeated_relay_publish_is_deduplicated(backend: Backend) {
    use sea_orm::{ConnectionTrait, Statement};
    let Some(mut mesh) = TestMesh::with(backend).service(HOUSEHOLD).start().await else {
        return;
    };
    let mut cases = mesh.coordinator_cases(HOUSEHOLD).await;
    cases.create_case(certificate_request("once")).await.unwrap();
    let js = mesh.nats.jetstream().await;
    assert_eq!(read_stream(&js, 3).await.len(), 3);
    eventually(Duration::from_secs(30), "the rows marked sent", || async {
        (count_unsent(mesh.db(HOUSEHOLD)).await == 0).then_some(())
    })
    .await
    .unwrap();
    // Mark every row unsent, as if the relay had crashed before recording the acks, and
    // restart: the relay finds them again.
    let db = mesh.db(HOUSEHOLD).clone();
    db.execute_raw(Statement::from_string(db.get_database_backend(), "UPDATE outbox SET sent_at = NULL"))
        .await
        .unwrap();
    {
        mesh.stop(HOUSEHOLD).await;
        mesh.restart(HOUSEHOLD).await;
    };
    let db = mesh.db(HOUSEHOLD);
    let relay_done = eventually(Duration::from_secs(30), "the relay to re-send", || async {
        (count_unsent(db).await == 0).then_some(())
    });
    relay_done.await.unwrap();
    let info = js.get_stream("ONETHING_HOUSEHOLD").await.unwrap().get_info().await.unwrap();
    assert_eq!(info.state.messages, 3, "the broker dropped the repeats");
    mesh.stop_all().await;
}
both_backends!(a_repeated_relay_publish_is_deduplicated);

/// The events of one state change are written with one statement and still leave in the
/// order they happened (a 即办 case: submitted, accepted, approved).
async fn events_of_one_change_leave_in_order(backend: Backend) {
    let Some(mesh) = TestMesh::with(backend).service(HOUSEHOLD).start().await else {
        return;
    };
    let mut cases = mesh.coordinator_cases(HOUSEHOLD).await;
    cases.create_case(certificate_request("in-order")).await.unwrap();
    let js = mesh.nats.jetstream().await;
    let subjects: Vec<String> = read_stream(&js, 3).await.iter().map(|m| m.subject.to_string()).collect();
    assert_eq!(
        subjects,
        [
            "onething.household.v1.case.submitted",
            "onething.household.v1.case.accepted",
            "onething.household.v1.case.approved"
        ]
    );
    mesh.stop_all().await;
}
both_backends!(events_of_one_change_leave_in_order);

/// Transactions commit out of sequence order: an event whose row has a lower sequence
/// number but commits after later rows were published still leaves. (PostgreSQL: SQLite's
/// writers wait for each other, so there the order cannot invert.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_committed_late_with_a_lower_sequence_is_not_lost() {
    use onething_platform::events::{Outbox, OutgoingEvent};
    use sea_orm::TransactionTrait;
    let Some(mesh) = TestMesh::with(Backend::Postgres).service(HOUSEHOLD).start().await else {
        return;
    };
    let db = mesh.db(HOUSEHOLD).clone();
    // A transaction takes its sequence number now and commits later.
    let slow = db.begin().await.unwrap();
    let late = OutgoingEvent::new(
        "onething.household.v1.case.approved",
        "cases/late",
        &onething_proto::common::CaseStateChanged { case_id: "late".into(), ..Default::default() },
    );
    let late_id = Outbox::new("household").enqueue(&slow, late).await.unwrap();
    // Meanwhile a case is created, published and marked sent.
    mesh.coordinator_cases(HOUSEHOLD).await.create_case(certificate_request("overtaking")).await.unwrap();
    let js = mesh.nats.jetstream().await;
    assert_eq!(read_stream(&js, 3).await.len(), 3);
    eventually(Duration::from_secs(30), "the later rows marked sent", || async {
        (count(&db, "outbox WHERE sent_at IS NOT NULL").await == 3).then_some(())
    })
    .await
    .unwrap();
    slow.commit().await.unwrap();
    let ids: Vec<String> = read_stream(&js, 4)
        .await
        .iter()
        .map(|m| m.headers.as_ref().unwrap().get("ce-id").unwrap().as_str().to_string())
        .collect();
    assert!(ids.contains(&late_id), "{ids:?}");
    mesh.stop_all().await;
}

/// Pruning deletes sent rows written longer ago than the retention, and nothing else: not a
/// recent sent row, not an old row still waiting for NATS.
async fn pruning_keeps_recent_and_unsent_rows(backend: Backend) {
    use onething_platform::events::{Outbox, OutgoingEvent, Relay};
    use sea_orm::{ConnectionTrait, Statement, TransactionTrait};
    let Some(test_db) = TestDb::fresh(backend).await else { return };
    let db =
        onething_platform::db::connect_and_migrate::<onething_household::store::Migrator>(&test_db.url).await.unwrap();
    let nats = NatsServer::start().await;
    let outbox = Outbox::new("household");
    let txn = db.begin().await.unwrap();
    for name in ["old-sent", "old-unsent", "new-sent"] {
        let e = OutgoingEvent::new(
            "onething.household.v1.case.approved",
            format!("cases/{name}"),
            &onething_proto::common::CaseStateChanged { case_id: name.into(), ..Default::default() },
        );
        outbox.enqueue(&txn, e).await.unwrap();
    }
    txn.commit().await.unwrap();
    let set = |sql: String| {
        let db = db.clone();
        async move { db.execute_raw(Statement::from_string(db.get_database_backend(), sql)).await.unwrap() }
    };
    let (old, recent) = (chrono::Utc::now() - chrono::Duration::hours(48), chrono::Utc::now());
    let at = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M:%S%.6f+00:00").to_string();
    set(format!(
        "UPDATE outbox SET created_at = '{}', sent_at = '{}' WHERE ce_subject = 'cases/old-sent'",
        at(old),
        at(old)
    ))
    .await;
    set(format!("UPDATE outbox SET created_at = '{}' WHERE ce_subject = 'cases/old-unsent'", at(old))).await;
    set(format!("UPDATE outbox SET sent_at = '{}' WHERE ce_subject = 'cases/new-sent'", at(recent))).await;
    let relay = Relay::new(&outbox, db.clone(), nats.jetstream().await, "household", 1, Default::default());
    assert_eq!(relay.prune_sent().await.unwrap(), 1);
    assert_eq!(count(&db, "outbox WHERE ce_subject = 'cases/old-sent'").await, 0);
    assert_eq!(count(&db, "outbox").await, 2, "the recent sent row and the old unsent one stay");
}
both_backends!(pruning_keeps_recent_and_unsent_rows);

/// An outbox and its relay (publishing up to `batch` rows a round) on a fresh household
/// database, driven step by step.
async fn relay_alone(
    backend: Backend,
    batch: u64,
) -> Option<(
    TestDb,
    sea_orm::DatabaseConnection,
    NatsServer,
    onething_platform::events::Outbox,
    onething_platform::events::Relay,
)> {
    use onething_platform::events::{Outbox, Relay};
    let test_db = TestDb::fresh(backend).await?;
    let db =
        onething_platform::db::connect_and_migrate::<onething_household::store::Migrator>(&test_db.url).await.unwrap();
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    onething_platform::events::nats::ensure_stream(&js, "household", 1).await.unwrap();
    let outbox = Outbox::new("household");
    let settings = onething_platform::config::OutboxSettings { batch_size: batch, ..Default::default() };
    let relay = Relay::new(&outbox, db.clone(), js, "household", 1, settings);
    Some((test_db, db, nats, outbox, relay))
}

/// The event of case `id` reaching `state`.
fn case_event(id: &str, state: &str) -> onething_platform::events::OutgoingEvent {
    onething_platform::events::OutgoingEvent::new(
        format!("onething.household.v1.case.{state}"),
        format!("cases/{id}"),
        &onething_proto::common::CaseStateChanged { case_id: id.into(), ..Default::default() },
    )
}

/// (subject, ce-subject) of every message on household's stream.
async fn on_stream(nats: &NatsServer, expect: usize) -> Vec<(String, String)> {
    read_stream(&nats.jetstream().await, expect)
        .await
        .iter()
        .map(|m| (m.subject.to_string(), m.headers.as_ref().unwrap().get("ce-subject").unwrap().as_str().to_string()))
        .collect()
}

/// The events of a new case, handed to the relay after the commit, are published without
/// reading the outbox, in order, a batch a round, once, and marked sent; rows of a
/// rolled-back transaction are never handed over nor published.
async fn handed_over_events_leave_without_reading_the_outbox(backend: Backend) {
    use sea_orm::TransactionTrait;
    let Some((_test_db, db, nats, outbox, relay)) = relay_alone(backend, 2).await else { return };
    let txn = db.begin().await.unwrap();
    let events = ["submitted", "accepted", "approved"].map(|s| case_event("new-1", s)).to_vec();
    let new = outbox.enqueue_new(&txn, events).await.unwrap();
    assert_eq!(new.ids().len(), 3);
    txn.commit().await.unwrap();
    new.hand_over();
    let undone = db.begin().await.unwrap();
    let gone = outbox.enqueue_new(&undone, vec![case_event("undone", "submitted")]).await.unwrap();
    undone.rollback().await.unwrap();
    drop(gone);

    assert_eq!(relay.publish_handed().await.unwrap(), 2, "a batch");
    assert_eq!(relay.publish_handed().await.unwrap(), 1, "the rest");
    assert_eq!(relay.publish_pending().await.unwrap(), 0, "read back, nothing is left to send");
    assert_eq!(relay.mark_sent().await.unwrap(), 3);
    assert_eq!(count(&db, "outbox WHERE sent_at IS NULL").await, 0);
    let subjects: Vec<String> = on_stream(&nats, 3).await.into_iter().map(|(s, _)| s).collect();
    assert_eq!(
        subjects,
        [
            "onething.household.v1.case.submitted",
            "onething.household.v1.case.accepted",
            "onething.household.v1.case.approved"
        ]
    );
}
both_backends!(handed_over_events_leave_without_reading_the_outbox);

/// A case's later event, read from the outbox, never overtakes its first events when their
/// hand-over comes late: reading finds those committed rows too and sends them first, and
/// the late hand-over sends nothing twice.
async fn a_late_hand_over_is_not_overtaken(backend: Backend) {
    use sea_orm::TransactionTrait;
    let Some((_test_db, db, nats, outbox, relay)) = relay_alone(backend, 256).await else { return };
    let txn = db.begin().await.unwrap();
    let created = outbox.enqueue_new(&txn, vec![case_event("late-1", "submitted")]).await.unwrap();
    txn.commit().await.unwrap();
    // Not handed over yet; the case changes again and that change is read back.
    let txn = db.begin().await.unwrap();
    outbox.enqueue(&txn, case_event("late-1", "accepted")).await.unwrap();
    txn.commit().await.unwrap();
    outbox.wake();
    assert_eq!(relay.publish_pending().await.unwrap(), 2);
    created.hand_over();
    assert_eq!(relay.publish_handed().await.unwrap(), 0, "already sent");
    let states: Vec<String> = on_stream(&nats, 2).await.into_iter().map(|(s, _)| s).collect();
    assert_eq!(states, ["onething.household.v1.case.submitted", "onething.household.v1.case.accepted"]);
    let info = nats.jetstream().await.get_stream("ONETHING_HOUSEHOLD").await.unwrap().get_info().await.unwrap();
    assert_eq!(info.state.messages, 2, "nothing twice");
}
both_backends!(a_late_hand_over_is_not_overtaken);

/// A round given up half way (its broker stopped answering) keeps the acks it already had:
/// those rows are marked sent and never published again. A marking given up half way (the
/// database busy) keeps its rows to mark next time.
async fn an_abandoned_round_or_marking_keeps_what_went(backend: Backend) {
    use futures::StreamExt;
    use sea_orm::{ConnectionTrait, TransactionTrait};
    let Some((_test_db, db, nats, outbox, relay)) = relay_alone(backend, 256).await else { return };
    // A subject answered by no stream but heard by a listener that never replies: a publish
    // there waits for an ack that does not come (a broker that went quiet).
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut quiet = client.subscribe("onething.quiet.v1.case.submitted").await.unwrap();
    client.flush().await.unwrap();
    let hanging = onething_platform::events::OutgoingEvent::new(
        "onething.quiet.v1.case.submitted",
        "cases/one",
        &onething_proto::common::CaseStateChanged { case_id: "one".into(), ..Default::default() },
    );
    // One aggregate, so two waves: the first acked, the second waits for ever.
    let txn = db.begin().await.unwrap();
    outbox.enqueue(&txn, case_event("one", "submitted")).await.unwrap();
    outbox.enqueue(&txn, hanging).await.unwrap();
    txn.commit().await.unwrap();
    let round = tokio::time::timeout(Duration::from_secs(3), relay.publish_pending()).await;
    assert!(round.is_err(), "the round waits for the quiet ack: {round:?}");
    assert!(quiet.next().await.is_some(), "the second wave was sent");
    assert_eq!(on_stream(&nats, 1).await.len(), 1);

    // The database busy: the marking waits, and is given up.
    let blocker = db.begin().await.unwrap();
    blocker.execute_unprepared("UPDATE outbox SET attempts = attempts").await.unwrap();
    let marking = tokio::time::timeout(Duration::from_millis(500), relay.mark_sent()).await;
    assert!(marking.is_err(), "the marking waits for the lock: {marking:?}");
    blocker.rollback().await.unwrap();

    assert_eq!(relay.mark_sent().await.unwrap(), 1, "the acked row is still remembered");
    assert_eq!(count(&db, "outbox WHERE sent_at IS NOT NULL AND stream_seq = 1").await, 1);
    drop(quiet);
    client.flush().await.unwrap();
    // Quiet no more (no listener: the publish fails at once); the acked row is not sent again.
    assert!(relay.publish_pending().await.is_err());
    let info = nats.jetstream().await.get_stream("ONETHING_HOUSEHOLD").await.unwrap().get_info().await.unwrap();
    assert_eq!(info.state.messages, 1, "nothing twice");
}
both_backends!(an_abandoned_round_or_marking_keeps_what_went);
