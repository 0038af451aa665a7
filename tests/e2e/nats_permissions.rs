//! NATS started with deploy/nats/dev.conf: a service publishes its own facts and nothing
//! else; the outside departments' user reads every stream and can publish nothing, nor
//! touch the services' consumers.

use crate::common::*;
use async_nats::{ConnectOptions, Event, ServerError, jetstream};
use std::{sync::Arc, time::Duration};
use tokio::sync::Mutex;

/// A connection as `user` that records the server's errors.
async fn connect_user(nats: &NatsServer, user: &str) -> (async_nats::Client, Arc<Mutex<Vec<String>>>) {
    let errors = Arc::new(Mutex::new(Vec::new()));
    let sink = errors.clone();
    let client = ConnectOptions::with_user_and_password(user.into(), nats_password(user))
        .event_callback(move |e| {
            let sink = sink.clone();
            async move {
                if let Event::ServerError(ServerError::Other(text)) = e {
                    sink.lock().await.push(text.to_lowercase());
                }
            }
        })
        .connect(nats.url())
        .await
        .expect("connect as user");
    (client, errors)
}

async fn messages(js: &jetstream::Context, stream: &str) -> u64 {
    js.get_stream(stream).await.unwrap().get_info().await.unwrap().state.messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_confined_to_their_subjects() {
    let nats = NatsServer::start_secured().await;
    let db = TestDb::fresh(Backend::Sqlite).await.unwrap();
    let mut settings = test_settings(&db.url, &nats.url());
    settings.nats.user = "household".into();
    settings.nats.password = nats_password("household");
    let household = start_household_with(settings).await;

    // Household, as its own user, publishes its facts through the outbox.
    let mut cases = CaseServiceClientExt::coordinator(&household).await;
    cases.create_case(birth_request("perm-birth", "Q3710027001")).await.unwrap();
    let (external, external_errors) = connect_user(&nats, "external").await;
    let mut ext_js = jetstream::new(external.clone());
    // Refused requests get no answer; do not wait the default five seconds for each.
    ext_js.set_timeout(Duration::from_secs(1));
    let read = eventually(Duration::from_secs(30), "the external user to read the birth", || async {
        let stream = ext_js.get_stream("ONETHING_HOUSEHOLD").await.ok()?;
        let consumer: jetstream::consumer::Consumer<jetstream::consumer::pull::Config> = stream
            .get_or_create_consumer(
                "external",
                jetstream::consumer::pull::Config { durable_name: Some("external".into()), ..Default::default() },
            )
            .await
            .ok()?;
        let mut batch = consumer.fetch().max_messages(10).expires(Duration::from_millis(500)).messages().await.ok()?;
        let mut n = 0;
        while let Some(Ok(m)) = futures::StreamExt::next(&mut batch).await {
            m.ack().await.ok()?;
            n += 1;
        }
        (n >= 4).then_some(n)
    })
    .await
    .unwrap();
    assert_eq!(read, 4, "submitted, accepted, person.born, approved");

    // The vehicle stream exists (created by its own user), so a stray publish would land there.
    let (vehicle, _) = connect_user(&nats, "vehicle").await;
    let vehicle_js = jetstream::new(vehicle);
    onething_platform::events::nats::ensure_stream(&vehicle_js, "vehicle", 1).await.unwrap();

    // Household publishing on vehicle's subject is refused.
    let (hh, hh_errors) = connect_user(&nats, "household").await;
    let mut hh_js = jetstream::new(hh.clone());
    hh_js.set_timeout(Duration::from_millis(500));
    let stray = hh_js.publish("onething.vehicle.v1.case.approved", "forged".into()).await;
    let acked = match stray {
        Ok(ack) => ack.await.is_ok(),
        Err(_) => false,
    };
    assert!(!acked, "no ack for a publish outside household's subjects");
    assert_eq!(messages(&vehicle_js, "ONETHING_VEHICLE").await, 0);
    // Nor may household manage another department's stream.
    assert!(hh_js.delete_stream("ONETHING_VEHICLE").await.is_err());

    // The external user can publish nothing.
    let before = messages(&ext_js, "ONETHING_HOUSEHOLD").await;
    external.publish("onething.household.v1.case.approved", "forged".into()).await.unwrap();
    external.flush().await.unwrap();
    let acked = match ext_js.publish("onething.household.v1.person.deceased", "forged".into()).await {
        Ok(ack) => ack.await.is_ok(),
        Err(_) => false,
    };
    assert!(!acked);
    assert_eq!(messages(&ext_js, "ONETHING_HOUSEHOLD").await, before, "nothing forged reached the stream");
    // … nor touch a service's consumer or stream.
    let stream = ext_js.get_stream("ONETHING_HOUSEHOLD").await.unwrap();
    let hijack = stream
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some(onething_household::events::NOTIFIER.into()),
            ..Default::default()
        })
        .await;
    assert!(hijack.is_err(), "the external user cannot (re)configure household's consumer");
    assert!(ext_js.delete_stream("ONETHING_HOUSEHOLD").await.is_err());

    eventually(Duration::from_secs(10), "the server to report the violations", || {
        let (e, h) = (external_errors.clone(), hh_errors.clone());
        async move {
            let seen = |v: &[String]| v.iter().any(|t| t.contains("permissions violation"));
            (seen(&e.lock().await) && seen(&h.lock().await)).then_some(())
        }
    })
    .await
    .unwrap();
    household.stop().await;
}
