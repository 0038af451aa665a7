//! One bad message stops nothing. On the producing side, an event the broker can never take
//! is quarantined and the rows behind it are published; an event too large for the broker
//! is refused before its transaction commits. On the consuming side, an undecodable message,
//! a payload the handler cannot decode and an event whose handling keeps failing go to the
//! dead-letter stream while the events behind them are applied. An event the broker lost
//! after acknowledging it is published again by the reconciliation and applied once.
//! Upgrades keep an operator's stream limits and update durable consumers; the inbox forgets
//! what is past its horizon.

use crate::common::*;
use async_nats::jetstream::{self, consumer::pull};
use futures::StreamExt;
use onething_platform::{
    config::{ConsumerSettings, OutboxSettings},
    events::{
        ConsumerSpec, Envelope, Handler, Outbox, Reconciler, Relay,
        consumer::{self, Delivery},
        idempotent,
        nats::{DLQ_STREAM, ensure_stream},
        quarantine,
    },
};
use onething_proto::common::CaseStateChanged;
use sea_orm::{DatabaseConnection, DatabaseTransaction, TransactionTrait};
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio_util::sync::CancellationToken;

const HOUSEHOLD: &str = "ONETHING_HOUSEHOLD";

/// A fresh household database, a nats-server with household's stream.
async fn parts(backend: Backend) -> Option<(TestDb, DatabaseConnection, NatsServer, jetstream::Context)> {
    let test_db = TestDb::fresh(backend).await?;
    let db =
        onething_platform::db::connect_and_migrate::<onething_household::store::Migrator>(&test_db.url).await.unwrap();
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    ensure_stream(&js, "household", 1).await.unwrap();
    Some((test_db, db, nats, js))
}

fn case_event(id: &str, state: &str, note: &str) -> onething_platform::events::OutgoingEvent {
    onething_platform::events::OutgoingEvent::new(
        format!("onething.household.v1.case.{state}"),
        format!("cases/{id}"),
        &CaseStateChanged { case_id: id.into(), reason_code: note.into(), ..Default::default() },
    )
}

async fn enqueue(db: &DatabaseConnection, outbox: &Outbox, events: Vec<onething_platform::events::OutgoingEvent>) {
    let txn = db.begin().await.unwrap();
    for e in events {
        outbox.enqueue(&txn, e).await.unwrap();
    }
    txn.commit().await.unwrap();
}

/// (NATS subject, ce-subject) of every message on household's stream, once `expect` are there.
async fn on_stream(js: &jetstream::Context, expect: usize) -> Vec<(String, String)> {
    read_stream(js, expect)
        .await
        .iter()
        .map(|m| (m.subject.to_string(), m.headers.as_ref().unwrap().get("ce-subject").unwrap().as_str().to_string()))
        .collect()
}

async fn an_oversized_row_is_quarantined_and_the_rows_behind_it_flow(backend: Backend) {
    let Some((_test_db, db, _nats, js)) = parts(backend).await else { return };
    // An outbox that would let anything in: the rows an older release wrote, or a broker
    // configured with a smaller max_payload than the outbox assumes.
    let outbox = Outbox::new("household").with_max_event_bytes(usize::MAX);
    let settings = OutboxSettings { max_attempts: 3, ..Default::default() };
    let relay = Relay::new(&outbox, db.clone(), js.clone(), "household", 1, settings);
    let big = "x".repeat(1_100_000);
    enqueue(
        &db,
        &outbox,
        vec![
            case_event("a", "submitted", ""),
            case_event("big", "submitted", &big),
            case_event("big", "accepted", ""),
            case_event("b", "submitted", ""),
        ],
    )
    .await;
    relay.publish_pending().await.unwrap();
    relay.mark_sent().await.unwrap();
    assert_eq!(relay.publish_pending().await.unwrap(), 0, "the quarantined aggregate's later row waits");
    let published = on_stream(&js, 2).await;
    assert_eq!(
        published,
        [
            ("onething.household.v1.case.submitted".to_string(), "cases/a".to_string()),
            ("onething.household.v1.case.submitted".to_string(), "cases/b".to_string()),
        ],
        "the other aggregates flow, in outbox order"
    );
    let dead = quarantine::list(&db, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].ce_subject, "cases/big");
    assert!(dead[0].reason.contains("max_payload"), "the reason says why: {}", dead[0].reason);
    assert!(dead[0].payload_bytes > 1_000_000);
    assert_eq!(count(&db, "outbox WHERE sent_at IS NULL").await, 1, "only its own aggregate's row waits");

    // An operator retries it: back under its own sequence number; still too large, so
    // quarantined again, and dropped for good.
    assert!(quarantine::retry(&db, dead[0].seq).await.unwrap());
    assert!(!quarantine::retry(&db, dead[0].seq).await.unwrap(), "moved once");
    assert_eq!(count(&db, &format!("outbox WHERE seq = {} AND sent_at IS NULL", dead[0].seq)).await, 1);
    let round = relay.publish_pending().await;
    assert!(round.is_err(), "a round that published nothing says why");
    assert_eq!(quarantine::count(&db).await.unwrap(), 1);
    assert!(quarantine::drop(&db, dead[0].seq).await.unwrap());
    assert_eq!(quarantine::count(&db).await.unwrap(), 0);
    // Dropped: the aggregate's later event goes.
    relay.record_backlog().await.unwrap();
    assert_eq!(relay.publish_pending().await.unwrap(), 1);
    relay.mark_sent().await.unwrap();
    let published = on_stream(&js, 3).await;
    assert_eq!(published[2], ("onething.household.v1.case.accepted".to_string(), "cases/big".to_string()));
    assert_eq!(count(&db, "outbox_dead").await + count(&db, "outbox WHERE sent_at IS NULL").await, 0);

    // The outbox as the services build it refuses such an event before the commit, with a
    // stable reason, and the transaction writes nothing.
    let strict = Outbox::new("household");
    let txn = db.begin().await.unwrap();
    let err = strict.enqueue(&txn, case_event("big2", "submitted", &big)).await.unwrap_err();
    txn.rollback().await.unwrap();
    let status = tonic::Status::from(onething_platform::error::Error::from(err));
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let reason = tonic_types::StatusExt::get_error_details(&status).error_info().map(|i| i.reason.clone());
    assert_eq!(reason.as_deref(), Some("EVENT_TOO_LARGE"), "{status:?}");
    assert_eq!(count(&db, "outbox WHERE ce_subject = 'cases/big2'").await, 0);
}
both_backends!(an_oversized_row_is_quarantined_and_the_rows_behind_it_flow);

/// Only a row's own failures count towards its quarantine: a full stream refuses every row
/// alike and quarantines none; a row whose subject no stream takes is counted only in the
/// rounds where the broker took other rows, and then quarantined.
async fn only_a_rows_own_failures_count(backend: Backend) {
    let Some((_test_db, db, _nats, js)) = parts(backend).await else { return };
    let outbox = Outbox::new("household");
    let settings = OutboxSettings { max_attempts: 3, ..Default::default() };
    let relay = Relay::new(&outbox, db.clone(), js.clone(), "household", 1, settings);
    // An operator's tight limit: the stream takes two messages, then refuses new ones.
    let mut config = js.get_stream(HOUSEHOLD).await.unwrap().get_info().await.unwrap().config;
    config.max_messages = 2;
    config.discard = jetstream::stream::DiscardPolicy::New;
    js.update_stream(&config).await.unwrap();
    let ids = ["f1", "f2", "f3", "f4", "f5"];
    enqueue(&db, &outbox, ids.iter().map(|id| case_event(id, "submitted", "")).collect()).await;
    assert_eq!(relay.publish_pending().await.unwrap(), 2, "the stream takes two");
    relay.mark_sent().await.unwrap();
    for _ in 0..5 {
        assert!(relay.publish_pending().await.is_err(), "a full stream takes nothing");
    }
    assert_eq!(quarantine::count(&db).await.unwrap(), 0, "a full stream is no row's fault");
    assert_eq!(count(&db, "outbox WHERE sent_at IS NULL AND attempts = 0").await, 3, "nothing counted");
    // The operator makes room: everything waiting goes.
    config.max_messages = -1;
    js.update_stream(&config).await.unwrap();
    assert_eq!(relay.publish_pending().await.unwrap(), 3);
    relay.mark_sent().await.unwrap();

    // A row no stream takes (say an event type an older release named differently).
    let stray = onething_platform::events::OutgoingEvent::new(
        "onething.nowhere.v1.case.submitted",
        "cases/stray",
        &CaseStateChanged { case_id: "stray".into(), ..Default::default() },
    );
    enqueue(&db, &outbox, vec![stray]).await;
    for _ in 0..4 {
        assert!(relay.publish_pending().await.is_err(), "alone, it is not counted");
    }
    assert_eq!(count(&db, "outbox WHERE ce_subject = 'cases/stray' AND attempts = 0").await, 1);
    // With others going beside it, each round counts, and the third quarantines it.
    for (round, id) in ["g1", "g2", "g3"].iter().enumerate() {
        enqueue(&db, &outbox, vec![case_event(id, "submitted", "")]).await;
        assert_eq!(relay.publish_pending().await.unwrap(), 1, "round {round}: the good row goes");
        relay.mark_sent().await.unwrap();
    }
    let dead = quarantine::list(&db, 10).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!((dead[0].ce_subject.as_str(), dead[0].attempts), ("cases/stray", 3));
    assert_eq!(count(&db, "outbox WHERE sent_at IS NULL").await, 0);
    assert_eq!(on_stream(&js, 8).await.len(), 8, "every other row went");
}
both_backends!(only_a_rows_own_failures_count);

/// A handler recording what it applied; it cannot decode what is not a `CaseStateChanged`
/// and fails, every time, on events whose reason is `fail`.
#[derive(Clone, Default)]
struct Recorder {
    applied: Arc<Mutex<Vec<String>>>,
    failures: Arc<Mutex<usize>>,
    flaky: Arc<Mutex<usize>>,
}

impl Handler for Recorder {
    async fn handle(&self, _txn: &DatabaseTransaction, event: &Envelope) -> anyhow::Result<()> {
        let change: CaseStateChanged = event.decode()?;
        if change.reason_code == "fail" {
            *self.failures.lock().unwrap() += 1;
            anyhow::bail!("this one always fails");
        }
        // A good event at a bad moment: the database (say) away for five deliveries.
        if change.reason_code == "flaky" {
            let mut f = self.flaky.lock().unwrap();
            *f += 1;
            if *f <= 5 {
                let e = onething_platform::error::Error::new(
                    onething_platform::error::Kind::Unavailable,
                    onething_platform::reason::Reason::DatabaseUnavailable,
                    "the database is away",
                );
                return Err(anyhow::Error::new(e));
            }
        }
        self.applied.lock().unwrap().push(change.case_id);
        Ok(())
    }
}

fn spec(name: &str) -> ConsumerSpec {
    ConsumerSpec {
        name: name.into(),
        stream: HOUSEHOLD.into(),
        filter_subjects: vec!["onething.household.v1.case.>".into()],
        batch: 1,
    }
}

fn delivery() -> Delivery {
    Delivery {
        service: "household".into(),
        replicas: 1,
        settings: ConsumerSettings { max_deliver: 3, retry_backoff_ms: 50, inbox_retain_hours: 72 },
    }
}

fn start_consumer(js: &jetstream::Context, db: &DatabaseConnection, name: &str, h: &Recorder) -> CancellationToken {
    let stop = CancellationToken::new();
    tokio::spawn(consumer::run(js.clone(), db.clone(), spec(name), h.clone(), None, delivery(), stop.clone()));
    stop
}

/// Every message of the dead-letter stream, once `expect` are there.
async fn dead_letters(js: &jetstream::Context, expect: usize) -> Vec<jetstream::Message> {
    eventually(Duration::from_secs(30), "dead letters", || async {
        let stream = js.get_stream(DLQ_STREAM).await.ok()?;
        let info = stream.get_info().await.ok()?;
        if (info.state.messages as usize) < expect {
            return None;
        }
        let consumer = stream.create_consumer(pull::Config::default()).await.ok()?;
        let mut batch = consumer.fetch().max_messages(expect).messages().await.ok()?;
        let mut out = Vec::new();
        while let Some(Ok(m)) = batch.next().await {
            out.push(m);
        }
        (out.len() >= expect).then_some(out)
    })
    .await
    .unwrap()
}

async fn poison_messages_go_to_the_dead_letter_stream_and_the_rest_apply(backend: Backend) {
    let Some((_test_db, db, _nats, js)) = parts(backend).await else { return };
    // An operator's limit on the stream survives a restart of the service.
    let mut stream = js.get_stream(HOUSEHOLD).await.unwrap();
    let mut config = stream.info().await.unwrap().config.clone();
    config.max_age = Duration::from_secs(30 * 24 * 3600);
    js.update_stream(&config).await.unwrap();
    ensure_stream(&js, "household", 1).await.unwrap();
    let kept = js.get_stream(HOUSEHOLD).await.unwrap().get_info().await.unwrap().config;
    assert_eq!(kept.max_age, Duration::from_secs(30 * 24 * 3600), "the operator's max_age is kept");
    // A durable consumer left by an older release, with other settings: updated on start.
    stream
        .create_consumer(pull::Config {
            durable_name: Some("poison-test".into()),
            filter_subject: "onething.household.v1.>".into(),
            ack_wait: Duration::from_secs(5),
            ..Default::default()
        })
        .await
        .unwrap();

    let h = Recorder::default();
    let stop = start_consumer(&js, &db, "poison-test", &h);
    let outbox = Outbox::new("household");
    let relay = Relay::new(&outbox, db.clone(), js.clone(), "household", 1, OutboxSettings::default());
    // No CloudEvents headers at all; a payload that is no CaseStateChanged; one that always
    // fails; then good events.
    js.publish("onething.household.v1.case.submitted", "not an event".into()).await.unwrap().await.unwrap();
    enqueue(&db, &outbox, vec![case_event("poison", "submitted", ""), case_event("fails", "submitted", "fail")]).await;
    relay.publish_pending().await.unwrap();
    let sent = read_stream(&js, 3).await;
    let mut headers = sent[1].headers.clone().unwrap();
    headers.insert("ce-id", "garbled-1");
    headers.insert("Nats-Msg-Id", "garbled-1");
    let garbled = bytes::Bytes::from_static(b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff");
    js.publish_with_headers("onething.household.v1.case.submitted", headers, garbled).await.unwrap().await.unwrap();
    enqueue(
        &db,
        &outbox,
        vec![
            case_event("good-1", "submitted", ""),
            case_event("good-2", "accepted", ""),
            case_event("flaky", "submitted", "flaky"),
        ],
    )
    .await;
    relay.publish_pending().await.unwrap();

    let letters = dead_letters(&js, 3).await;
    let reasons: Vec<(String, String)> = letters
        .iter()
        .map(|m| {
            let h = m.headers.as_ref().unwrap();
            assert_eq!(h.get("onething-dlq-consumer").unwrap().as_str(), "poison-test");
            assert_eq!(h.get("onething-dlq-stream").unwrap().as_str(), HOUSEHOLD);
            assert_eq!(m.subject.as_str(), "onething.dlq.household.poison-test");
            let id = h.get("ce-id").map(|v| v.as_str().to_string()).unwrap_or_default();
            (id, h.get("onething-dlq-deliveries").unwrap().as_str().to_string())
        })
        .collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(reasons.iter().any(|(id, n)| id.is_empty() && n == "1"), "the headerless message, at once");
    assert!(reasons.iter().any(|(id, n)| id == "garbled-1" && n == "1"), "the garbled payload, at once");
    let failing = reasons.iter().find(|(id, _)| !id.is_empty() && id != "garbled-1").expect("the failing event");
    assert_eq!(failing.1, "3", "after max_deliver deliveries");
    assert_eq!(*h.failures.lock().unwrap(), 3);
    eventually(Duration::from_secs(30), "the good events applied", || async {
        (h.applied.lock().unwrap().len() == 4).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(*h.applied.lock().unwrap(), ["poison", "good-1", "good-2", "flaky"]);
    assert_eq!(*h.flaky.lock().unwrap(), 6, "retried past max_deliver while the failure was passing, then applied");
    assert_eq!(
        js.get_stream(DLQ_STREAM).await.unwrap().get_info().await.unwrap().state.messages,
        3,
        "not dead-lettered"
    );
    // The original payload travels with the letter, byte for byte.
    assert!(letters.iter().any(|m| m.payload.as_ref() == b"not an event"));

    let durable: jetstream::consumer::Consumer<pull::Config> =
        js.get_stream(HOUSEHOLD).await.unwrap().get_consumer("poison-test").await.unwrap();
    let config = durable.cached_info().config.clone();
    assert_eq!(config.filter_subjects, ["onething.household.v1.case.>"], "the durable consumer was updated");
    assert_ne!(config.ack_wait, Duration::from_secs(5));
    stop.cancel();
}
both_backends!(poison_messages_go_to_the_dead_letter_stream_and_the_rest_apply);

async fn events_the_broker_lost_are_published_again_and_applied_once(backend: Backend) {
    let Some((_test_db, db, _nats, js)) = parts(backend).await else { return };
    let h = Recorder::default();
    let stop = start_consumer(&js, &db, "reconcile-test", &h);
    let outbox = Outbox::new("household");
    let relay = Relay::new(&outbox, db.clone(), js.clone(), "household", 1, OutboxSettings::default());
    enqueue(&db, &outbox, (1..=5).map(|i| case_event(&format!("c{i}"), "submitted", "")).collect()).await;
    relay.publish_pending().await.unwrap();
    assert_eq!(relay.mark_sent().await.unwrap(), 5);
    eventually(Duration::from_secs(30), "five applied", || async {
        (h.applied.lock().unwrap().len() == 5).then_some(())
    })
    .await
    .unwrap();
    let reconciler = Reconciler::new(db.clone(), js.clone(), "household", &OutboxSettings::default());
    let clean = reconciler.reconcile(None).await.unwrap();
    assert_eq!((clean.checked, clean.republished), (5, 0), "nothing missing, nothing sent");

    // The broker loses two acknowledged events.
    let stream = js.get_stream(HOUSEHOLD).await.unwrap();
    assert!(stream.delete_message(2).await.unwrap());
    assert!(stream.delete_message(4).await.unwrap());
    let done = reconciler.reconcile(None).await.unwrap();
    assert_eq!((done.checked, done.republished), (5, 2));
    let again = reconciler.reconcile(None).await.unwrap();
    assert_eq!(again.republished, 0, "republished once: their new places are recorded");

    let msgs = read_stream(&js, 5).await;
    let mut ids: Vec<String> =
        msgs.iter().map(|m| m.headers.as_ref().unwrap().get("ce-id").unwrap().to_string()).collect();
    assert_eq!(msgs.len(), 5, "three kept and two back");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5, "each event once in the stream");
    // The consumer saw the two again and applied nothing twice.
    eventually(Duration::from_secs(30), "the repeats acknowledged", || async {
        let mut c: jetstream::consumer::Consumer<pull::Config> = stream.get_consumer("reconcile-test").await.ok()?;
        let info = c.info().await.ok()?;
        (info.ack_floor.stream_sequence == 7 && info.num_ack_pending == 0).then_some(())
    })
    .await
    .unwrap();
    let mut applied = h.applied.lock().unwrap().clone();
    applied.sort();
    assert_eq!(applied, ["c1", "c2", "c3", "c4", "c5"]);
    stop.cancel();
}
both_backends!(events_the_broker_lost_are_published_again_and_applied_once);

async fn the_inbox_forgets_past_its_horizon(backend: Backend) {
    use sea_orm::{ConnectionTrait, Statement};
    let Some((_test_db, db, _nats, _js)) = parts(backend).await else { return };
    let h = Recorder::default();
    for id in ["old", "new"] {
        let env = Envelope {
            id: id.into(),
            source: "test".into(),
            ce_type: "onething.common.v1.CaseStateChanged".into(),
            subject: format!("cases/{id}"),
            time: chrono::Utc::now(),
            traceparent: None,
            data: prost::Message::encode_to_vec(&CaseStateChanged { case_id: id.into(), ..Default::default() }).into(),
        };
        idempotent::handle_one(&db, "prune-test", &h, &env).await.unwrap();
    }
    let old = (chrono::Utc::now() - chrono::Duration::hours(100)).to_rfc3339();
    let sql = format!("UPDATE inbox SET handled_at = '{old}' WHERE event_id = 'old'");
    db.execute_raw(Statement::from_string(db.get_database_backend(), sql)).await.unwrap();
    assert_eq!(idempotent::prune_inbox(&db, "other-consumer", 72).await.unwrap(), 0, "another consumer's rows stay");
    assert_eq!(idempotent::prune_inbox(&db, "prune-test", 72).await.unwrap(), 1);
    assert_eq!(count(&db, "inbox WHERE consumer = 'prune-test'").await, 1);
}
both_backends!(the_inbox_forgets_past_its_horizon);

/// Messages on household's stream now.
async fn stream_messages(js: &jetstream::Context) -> u64 {
    js.get_stream(HOUSEHOLD).await.unwrap().get_info().await.unwrap().state.messages
}

/// The reconciliation runs by itself: when it starts, when the NATS server it talks to was
/// restarted, and every interval — each time putting back what the broker lost.
async fn the_reconciliation_runs_at_start_after_a_restart_and_on_its_interval(backend: Backend) {
    let Some((_test_db, db, mut nats, js)) = parts(backend).await else { return };
    let outbox = Outbox::new("household");
    let relay = Relay::new(&outbox, db.clone(), js.clone(), "household", 1, OutboxSettings::default());
    enqueue(&db, &outbox, (1..=4).map(|i| case_event(&format!("r{i}"), "submitted", "")).collect()).await;
    relay.publish_pending().await.unwrap();
    assert_eq!(relay.mark_sent().await.unwrap(), 4);
    let back_to = |n: u64, what: &'static str| {
        let js = js.clone();
        async move {
            eventually(Duration::from_secs(30), what, || async { (stream_messages(&js).await == n).then_some(()) })
                .await
                .unwrap()
        }
    };
    // Lost while the service was away: found when it starts.
    let stream = js.get_stream(HOUSEHOLD).await.unwrap();
    assert!(stream.delete_message(1).await.unwrap());
    let only_triggers = OutboxSettings { reconcile_interval_seconds: 0, ..Default::default() };
    let stop = CancellationToken::new();
    let running = tokio::spawn(Reconciler::new(db.clone(), js.clone(), "household", &only_triggers).run(stop.clone()));
    back_to(4, "the start's reconciliation").await;
    // Lost in a restart of the broker: found once the client sees the new server.
    assert!(stream.delete_message(2).await.unwrap());
    nats.restart().await;
    back_to(4, "the reconciliation after the restart").await;
    stop.cancel();
    running.await.unwrap();
    // Lost while nothing restarted: found by the interval.
    let every_second = OutboxSettings { reconcile_interval_seconds: 1, ..Default::default() };
    let stop = CancellationToken::new();
    let running = tokio::spawn(Reconciler::new(db.clone(), js.clone(), "household", &every_second).run(stop.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(js.get_stream(HOUSEHOLD).await.unwrap().delete_message(3).await.unwrap());
    back_to(4, "the interval's reconciliation").await;
    stop.cancel();
    running.await.unwrap();
    let msgs = read_stream(&js, 4).await;
    let mut ids: Vec<String> =
        msgs.iter().map(|m| m.headers.as_ref().unwrap().get("ce-id").unwrap().to_string()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4, "each event once");
}
both_backends!(the_reconciliation_runs_at_start_after_a_restart_and_on_its_interval);

/// `onething outbox` as an operator runs it in a pod, against the service's own database
/// and broker from its configuration: list, retry, drop, reconcile.
async fn the_outbox_commands_list_retry_drop_and_reconcile(backend: Backend) {
    let Some((test_db, db, nats, js)) = parts(backend).await else { return };
    let outbox = Outbox::new("household").with_max_event_bytes(usize::MAX);
    let relay = Relay::new(&outbox, db.clone(), js.clone(), "household", 1, OutboxSettings::default());
    let big = "x".repeat(1_100_000);
    enqueue(&db, &outbox, vec![case_event("ok", "submitted", ""), case_event("big", "submitted", &big)]).await;
    relay.publish_pending().await.unwrap();
    relay.mark_sent().await.unwrap();
    let cli = |args: &[&str]| {
        let mut command = tokio::process::Command::new(crate::bench::onething_binary());
        command
            .args(["outbox", "--service", "household"])
            .args(args)
            .env("ONETHING_DATABASE_URL", &test_db.url)
            .env("ONETHING_NATS__URL", nats.url())
            .env_remove("ONETHING_CONFIG");
        async move {
            let out = command.output().await.unwrap();
            let said = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
            (out.status.success(), said)
        }
    };
    let (ok, listed) = cli(&["list", "--json"]).await;
    assert!(ok, "{listed}");
    let row: serde_json::Value = serde_json::from_str(listed.lines().next().unwrap()).unwrap();
    assert_eq!(row["ce_subject"], "cases/big");
    assert!(row["reason"].as_str().unwrap().contains("max_payload"));
    assert!(!listed.contains("xxxxxxxx"), "no payload shown");
    let seq = row["seq"].as_i64().unwrap().to_string();
    let (ok, said) = cli(&["retry", &seq]).await;
    assert!(ok && said.contains("back in the outbox"), "{said}");
    let (ok, said) = cli(&["retry", &seq]).await;
    assert!(!ok && said.contains("not quarantined"), "{said}");
    assert!(relay.publish_pending().await.is_err(), "still too large");
    assert_eq!(quarantine::count(&db).await.unwrap(), 1, "quarantined again");
    let (ok, said) = cli(&["drop", &seq]).await;
    assert!(ok && said.contains("dropped"), "{said}");
    assert_eq!(quarantine::count(&db).await.unwrap() + count(&db, "outbox WHERE sent_at IS NULL").await as u64, 0);
    // A lost event, put back on demand.
    assert!(js.get_stream(HOUSEHOLD).await.unwrap().delete_message(1).await.unwrap());
    let (ok, said) = cli(&["reconcile"]).await;
    assert!(ok && said.contains("checked 1 sent event(s); published 1 again"), "{said}");
    assert_eq!(stream_messages(&js).await, 1);
}
both_backends!(the_outbox_commands_list_retry_drop_and_reconcile);
