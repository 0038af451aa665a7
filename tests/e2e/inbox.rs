//! Nothing applied twice: the same event delivered twice queues one applicant notification,
//! both through the public handle-one function and through a real JetStream redelivery.

use crate::common::*;
use async_nats::jetstream::consumer::pull;
use onething_household::events::{NOTIFIER, Notifier};
use onething_platform::events::{Envelope, Outcome, consumer::handle_one};
use std::time::Duration;

async fn the_same_event_twice_has_one_effect(backend: Backend) {
    let Some(mesh) = Mesh::start(backend).await else {
        return;
    };
    let mut cases = mesh.cases().await;
    cases.create_case(certificate_request("notify-1")).await.unwrap();
    let db = mesh.household.db.clone();
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
    mesh.household.stop().await;
}
both_backends!(the_same_event_twice_has_one_effect);
