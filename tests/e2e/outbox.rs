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
    let Some(mesh) = Mesh::start(backend).await else {
        return;
    };
    let mut cases = mesh.cases().await;
    cases.create_case(certificate_request("once")).await.unwrap();
    let js = mesh.nats.jetstream().await;
    assert_eq!(read_stream(&js, 3).await.len(), 3);
    // Mark every row unsent, as if the relay had crashed before recording the acks.
    let db = &mesh.household.db;
    db.execute_raw(Statement::from_string(db.get_database_backend(), "UPDATE outbox SET sent_at = NULL"))
        .await
        .unwrap();
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
