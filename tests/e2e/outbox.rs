//! Nothing is lost: cases created while NATS is down wait in the outbox and are all
//! published, once each, after NATS comes back.

use crate::common::*;
use std::{collections::BTreeSet, time::Duration};

async fn outbox_survives_a_nats_outage(backend: Backend) {
    let Some(mut mesh) = Mesh::start(backend).await else {
        return;
    };
    let mut cases = mesh.cases().await;
    for i in 0..5 {
        cases.create_case(certificate_request(&format!("before-{i}"))).await.unwrap();
    }
    let js = mesh.nats.jetstream().await;
    // Each 即办 certificate is three transitions: submitted, accepted, approved.
    assert_eq!(read_stream(&js, 15).await.len(), 15);
    // The relay marks what it published a moment later, many rows at once.
    eventually(Duration::from_secs(30), "the published rows marked sent", || async {
        (count_unsent(&mesh.household.db).await == 0).then_some(())
    })
    .await
    .unwrap();

    mesh.nats.stop();
    // Intake goes on without the broker.
    for i in 0..5 {
        cases.create_case(certificate_request(&format!("during-{i}"))).await.expect("intake works while NATS is down");
    }
    let db = mesh.household.db.clone();
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
    mesh.household.stop().await;
}
both_backends!(outbox_survives_a_nats_outage);

async fn count_unsent(db: &sea_orm::DatabaseConnection) -> i64 {
    count(db, "outbox WHERE sent_at IS NULL").await
}

/// A publish repeated after a crash (row published, process died before marking it sent)
/// is dropped by JetStream's dedup on `Nats-Msg-Id`.
async fn a_repeated_relay_publish_is_deduplicated(backend: Backend) {
    use sea_orm::{ConnectionTrait, Statement};
    let Some(mut mesh) = Mesh::start(backend).await else {
        return;
    };
    let mut cases = mesh.cases().await;
    cases.create_case(certificate_request("once")).await.unwrap();
    let js = mesh.nats.jetstream().await;
    assert_eq!(read_stream(&js, 3).await.len(), 3);
    eventually(Duration::from_secs(30), "the rows marked sent", || async {
        (count_unsent(&mesh.household.db).await == 0).then_some(())
    })
    .await
    .unwrap();
    // Mark every row unsent, as if the relay had crashed before recording the acks, and
    // restart: the relay finds them again.
    let db = mesh.household.db.clone();
    db.execute_raw(Statement::from_string(db.get_database_backend(), "UPDATE outbox SET sent_at = NULL"))
        .await
        .unwrap();
    mesh.restart_household().await;
    let db = &mesh.household.db;
    let relay_done = eventually(Duration::from_secs(30), "the relay to re-send", || async {
        (count_unsent(db).await == 0).then_some(())
    });
    relay_done.await.unwrap();
    let info = js.get_stream("ONETHING_HOUSEHOLD").await.unwrap().get_info().await.unwrap();
    assert_eq!(info.state.messages, 3, "the broker dropped the repeats");
    mesh.household.stop().await;
}
both_backends!(a_repeated_relay_publish_is_deduplicated);

/// The events of one state change are written with one statement and still leave in the
/// order they happened (a 即办 case: submitted, accepted, approved).
async fn events_of_one_change_leave_in_order(backend: Backend) {
    let Some(mesh) = Mesh::start(backend).await else {
        return;
    };
    let mut cases = mesh.cases().await;
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
    mesh.household.stop().await;
}
both_backends!(events_of_one_change_leave_in_order);

/// Transactions commit out of sequence order: an event whose row has a lower sequence
/// number but commits after later rows were published still leaves. (PostgreSQL: SQLite's
/// writers wait for each other, so there the order cannot invert.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_committed_late_with_a_lower_sequence_is_not_lost() {
    use onething_platform::events::{Outbox, OutgoingEvent};
    use sea_orm::TransactionTrait;
    let Some(mesh) = Mesh::start(Backend::Postgres).await else {
        return;
    };
    let db = mesh.household.db.clone();
    // A transaction takes its sequence number now and commits later.
    let slow = db.begin().await.unwrap();
    let late = OutgoingEvent::new(
        "onething.household.v1.case.approved",
        "cases/late",
        &onething_proto::common::CaseStateChanged { case_id: "late".into(), ..Default::default() },
    );
    let late_id = Outbox::new("household").enqueue(&slow, late).await.unwrap();
    // Meanwhile a case is created, published and marked sent.
    mesh.cases().await.create_case(certificate_request("overtaking")).await.unwrap();
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
    mesh.household.stop().await;
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
