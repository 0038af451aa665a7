//! Nothing applied twice: the same event delivered twice queues one applicant notification,
//! through the public handle-one function, through a real JetStream redelivery, and through
//! a batch (one transaction for several events) that holds a failing event.

use crate::common::*;
use async_nats::jetstream::consumer::pull;
use onething_household::events::{NOTIFIER, Notifier};
use onething_platform::events::{
    Envelope, Handler, Outcome,
    idempotent::{handle_batch, handle_one},
};
use std::time::Duration;

async fn the_same_event_twice_has_one_effect(backend: Backend) {
    let Some(mesh) = TestMesh::with(backend).service(HOUSEHOLD).start().await else {
        return;
    };
    let mut cases = mesh.coordinator_cases(HOUSEHOLD).await;
    cases.create_case(certificate_request("notify-1")).await.unwrap();
    let db = mesh.db(HOUSEHOLD).clone();
    // accepted and approved are told to the applicant; submitted is not.
    eventually(Duration::from_secs(30), "two notifications", || {
        let db = db.clone();
        async move { (count(&db, "notifications").await == 2).then_some(()) }
    })
    .await
    .unwrap();

    // Redeliver the approved event through NATS under a new message id, so the broker's
    // dedup does not catch it: only the inbox stands between it and a second SMS.
    let js = mesh.nats.jetstream().await;
    let msgs = read_stream(&js, 3).await;
    let approved = msgs.iter().find(|m| m.subject.as_str().ends_with(".case.approved")).unwrap();
    let mut headers = approved.headers.clone().unwrap();
    headers.insert("Nats-Msg-Id", "redelivery-1");
    js.publish_with_headers(approved.subject.clone(), headers, approved.payload.clone()).await.unwrap().await.unwrap();
    let stream = js.get_stream("ONETHING_HOUSEHOLD").await.unwrap();
    eventually(Duration::from_secs(30), "the notifier to take the redelivery", || {
        let stream = stream.clone();
        async move {
            let mut consumer: async_nats::jetstream::consumer::Consumer<pull::Config> =
                stream.get_consumer(NOTIFIER).await.ok()?;
            let info = consumer.info().await.ok()?;
            (info.ack_floor.stream_sequence == 4 && info.num_ack_pending == 0).then_some(())
        }
    })
    .await
    .unwrap();
    assert_eq!(count(&db, "notifications").await, 2, "the redelivered event queued nothing");

    // The same through the public function, with no broker in between: an event the
    // notifier has not seen is applied once, then recognised.
    let mut env = Envelope::from_nats(approved.headers.as_ref(), approved.payload.clone()).unwrap();
    env.id = "direct-1".into();
    assert_eq!(handle_one(&db, NOTIFIER, &Notifier, &env).await.unwrap(), Outcome::Applied);
    assert_eq!(handle_one(&db, NOTIFIER, &Notifier, &env).await.unwrap(), Outcome::Duplicate);
    assert_eq!(count(&db, "notifications").await, 3);
    mesh.stop_all().await;
}
both_backends!(the_same_event_twice_has_one_effect);

async fn a_batch_applies_each_event_once_and_a_failing_one_alone(backend: Backend) {
    let Some(mesh) = TestMesh::with(backend).service(HOUSEHOLD).start().await else {
        return;
    };
    let mut cases = mesh.coordinator_cases(HOUSEHOLD).await;
    cases.create_case(certificate_request("batch-1")).await.unwrap();
    let db = mesh.db(HOUSEHOLD).clone();
    let js = mesh.nats.jetstream().await;
    let msgs = read_stream(&js, 3).await;
    let approved = msgs.iter().find(|m| m.subject.as_str().ends_with(".case.approved")).unwrap();
    let event = |id: &str| {
        let mut e = Envelope::from_nats(approved.headers.as_ref(), approved.payload.clone()).unwrap();
        e.id = id.into();
        (e, tracing::Span::none())
    };
    // The notifier took the case's accepted and approved events already.
    eventually(Duration::from_secs(30), "two notifications", || {
        let db = db.clone();
        async move { (count(&db, "notifications").await == 2).then_some(()) }
    })
    .await
    .unwrap();
    let inbox_before = count(&db, "inbox").await;

    // A payload that does not decode fails the handler: the batch is undone and each event
    // is handled on its own, so the good ones apply once and only the bad one fails.
    let mut broken = event("b-broken");
    broken.0.data = bytes::Bytes::from_static(b"\xff\xff not protobuf");
    let batch = [event("b-1"), broken, event("b-2"), event("b-1")];
    let results = handle_batch(&db, NOTIFIER, &Notifier, &batch).await;
    let outcomes: Vec<Option<Outcome>> = results.iter().map(|r| r.as_ref().ok().copied()).collect();
    assert_eq!(outcomes, [Some(Outcome::Applied), None, Some(Outcome::Applied), Some(Outcome::Duplicate)]);
    assert_eq!(count(&db, "notifications").await, 4, "two new events, two notifications");
    assert_eq!(count(&db, "inbox").await, inbox_before + 2, "nothing of the failed event was kept");

    // Without a failure the batch commits at once; delivered again, nothing happens.
    let again = handle_batch(&db, NOTIFIER, &Notifier, &[event("b-1"), event("b-2"), event("b-3")]).await;
    let outcomes: Vec<Outcome> = again.into_iter().map(Result::unwrap).collect();
    assert_eq!(outcomes, [Outcome::Duplicate, Outcome::Duplicate, Outcome::Applied]);
    assert_eq!(count(&db, "notifications").await, 5);

    // The same event twice within one batch is applied once; a batch of events all seen
    // before writes nothing.
    let twice = handle_batch(&db, NOTIFIER, &Notifier, &[event("b-4"), event("b-4")]).await;
    let outcomes: Vec<Outcome> = twice.into_iter().map(Result::unwrap).collect();
    assert_eq!(outcomes, [Outcome::Applied, Outcome::Duplicate]);
    let seen = handle_batch(&db, NOTIFIER, &Notifier, &[event("b-3"), event("b-4")]).await;
    let outcomes: Vec<Outcome> = seen.into_iter().map(Result::unwrap).collect();
    assert_eq!(outcomes, [Outcome::Duplicate, Outcome::Duplicate]);
    assert_eq!(count(&db, "notifications").await, 6);

    // A handler that already reflects an event acknowledges it without writing anything.
    struct Known;
    impl Handler for Known {
        async fn handle(&self, _: &sea_orm::DatabaseTransaction, _: &Envelope) -> anyhow::Result<()> {
            anyhow::bail!("a known event is not handled")
        }
        async fn already_applied(&self, _: &sea_orm::DatabaseConnection, _: &Envelope) -> anyhow::Result<bool> {
            Ok(true)
        }
    }
    assert_eq!(handle_one(&db, "known", &Known, &event("k-1").0).await.unwrap(), Outcome::Known);
    assert_eq!(count(&db, "inbox WHERE consumer = 'known'").await, 0);
    mesh.stop_all().await;
}
both_backends!(a_batch_applies_each_event_once_and_a_failing_one_alone);
