//! NATS started with deploy/nats/dev.conf (users and permissions of the generated
//! deploy/nats/auth.conf): a service publishes its own facts and nothing else, and uses only
//! its own durable consumers; an outside department's user reads only the subjects
//! deploy/nats/departments.toml entitles it to, through consumers of its own, and can
//! publish nothing, read no single message, and touch nobody else's consumer or inbox.
//! Every consumer the mesh creates has its permission in auth.conf (and no permission is
//! left for a consumer nobody creates), and the whole mesh runs on its own users.

use crate::common::*;
use async_nats::{
    ConnectOptions, Event, ServerError,
    jetstream::{self, consumer::pull},
};
use futures::StreamExt;
use onething_platform::events::{
    ConsumerSpec,
    nats::{ensure_stream, inbox_prefix},
};
use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};
use tokio::sync::Mutex;

const HOUSEHOLD: &str = "ONETHING_HOUSEHOLD";
const BORN: &str = "onething.household.v1.person.born";
const DECEASED: &str = "onething.household.v1.person.deceased";
/// 社保's consumer of births, as departments.toml names it.
const SS_BORN: &str = "social_security-household-v1-person-born";
const SS_DECEASED: &str = "social_security-household-v1-person-deceased";
const SERVICES: [&str; 6] = onething_platform::service_kind::SERVICE_NAMES;

fn auth_conf() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/nats/auth.conf");
    std::fs::read_to_string(path).expect("deploy/nats/auth.conf")
}

/// The users of auth.conf, in order.
fn conf_users(conf: &str) -> Vec<String> {
    conf.lines()
        .filter_map(|l| l.trim().strip_prefix("{ user: "))
        .map(|rest| rest.split(',').next().unwrap_or_default().to_string())
        .collect()
}

/// The subjects `user` may publish to (its allow list), from auth.conf.
fn allowed(conf: &str, user: &str) -> Vec<String> {
    let head = format!("  {}_PERMISSIONS = {{", user.to_ascii_uppercase());
    let start = conf.find(&head).unwrap_or_else(|| panic!("no permissions of {user} in auth.conf"));
    let block = &conf[start + head.len()..];
    let end = block.find("_PERMISSIONS = {").or_else(|| block.find("  users = [")).unwrap_or(block.len());
    let block = &block[..end];
    // The allow list comes before the deny list.
    let allow = block.split("deny").next().unwrap_or_default();
    allow.lines().filter_map(|l| l.trim().strip_prefix('"')?.strip_suffix('"')).map(str::to_string).collect()
}

/// The durable consumers (stream, name) `user` may create, from auth.conf.
fn permitted_consumers(conf: &str, user: &str) -> BTreeSet<(String, String)> {
    allowed(conf, user)
        .iter()
        .filter_map(|s| s.strip_prefix("$JS.API.CONSUMER.CREATE."))
        .map(|rest| {
            let mut t = rest.split('.');
            (t.next().unwrap_or_default().to_string(), t.next().unwrap_or_default().to_string())
        })
        .collect()
}

/// A connection as `user`, with its own inbox prefix, that records the server's errors.
async fn connect_user(nats: &NatsServer, user: &str) -> (async_nats::Client, Arc<Mutex<Vec<String>>>) {
    let errors = Arc::new(Mutex::new(Vec::new()));
    let sink = errors.clone();
    let client = ConnectOptions::with_user_and_password(user.into(), nats_password(user))
        .custom_inbox_prefix(inbox_prefix(user))
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

/// JetStream as `user`; refused requests get no answer, so give up on one after a second
/// rather than the default five.
async fn js_as(nats: &NatsServer, user: &str) -> (async_nats::Client, jetstream::Context, Arc<Mutex<Vec<String>>>) {
    let (client, errors) = connect_user(nats, user).await;
    let mut js = jetstream::new(client.clone());
    js.set_timeout(Duration::from_secs(1));
    (client, js, errors)
}

async fn messages(js: &jetstream::Context, stream: &str) -> u64 {
    js.get_stream(stream).await.unwrap().get_info().await.unwrap().state.messages
}

/// The pull consumer of `spec`, configured as the idempotent consumer does.
fn pull_config(spec: &ConsumerSpec) -> pull::Config {
    pull::Config {
        durable_name: Some(spec.name.clone()),
        filter_subjects: spec.filter_subjects.clone(),
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        ..Default::default()
    }
}

/// Creates `spec`'s consumer as its service would.
async fn create_as_service(js: &jetstream::Context, spec: &ConsumerSpec) {
    js.get_stream(&spec.stream)
        .await
        .unwrap()
        .get_or_create_consumer::<pull::Config>(&spec.name, pull_config(spec))
        .await
        .unwrap_or_else(|e| panic!("creating {}: {e}", spec.name));
}

/// A pull request for one message of `consumer` on household's stream: refused requests
/// get no answer, so this is an error for anyone but the consumer's owner.
async fn pull_one(
    client: &async_nats::Client,
    consumer: &str,
) -> Result<async_nats::Message, async_nats::RequestError> {
    let request = async_nats::Request::new()
        .payload(r#"{"batch":1,"expires":500000000}"#.into())
        .timeout(Some(Duration::from_secs(1)));
    client.send_request(format!("$JS.API.CONSUMER.MSG.NEXT.{HOUSEHOLD}.{consumer}"), request).await
}

/// Waits for the server to have told `errors` of a permissions violation naming `what`.
async fn violation_reported(errors: &Arc<Mutex<Vec<String>>>, what: &str) {
    let what = what.to_lowercase();
    eventually(Duration::from_secs(10), &format!("the server to report the violation on {what}"), || {
        let (errors, what) = (errors.clone(), what.clone());
        async move {
            errors.lock().await.iter().any(|t| t.contains("permissions violation") && t.contains(&what)).then_some(())
        }
    })
    .await
    .unwrap();
}

#[test]
fn the_harness_knows_every_user_of_auth_conf() {
    let conf = auth_conf();
    assert_eq!(conf_users(&conf), NATS_USERS, "tests/lib.rs NATS_USERS against deploy/nats/auth.conf");
    for user in conf_users(&conf) {
        let allow = allowed(&conf, &user);
        assert!(
            allow.iter().all(|s| !s.starts_with("_INBOX") && s != ">" && !s.starts_with("$JS.API.CONSUMER.DURABLE.")),
            "{user}: {allow:?}"
        );
        // Besides its inbox, only the coordinator hears one core subject (in no stream):
        // its replicas' bundle doorbell (services/coordinator/src/watch.rs).
        let heard = if user == "coordinator" { ", \"onething.watch.coordinator.*\"" } else { "" };
        assert!(
            conf.contains(&format!("{user}_PERMISSIONS = {{", user = user.to_ascii_uppercase()))
                && conf.contains(&format!("subscribe = {{ allow = [\"_INBOX.{user}.>\"{heard}] }}")),
            "{user} subscribes to its own inbox alone"
        );
        if !SERVICES.contains(&user.as_str()) {
            // A department publishes on no onething subject and reads no single message.
            assert!(
                allow.iter().all(|s| !s.starts_with("onething.") && !s.contains(".MSG.GET.") && !s.contains("DIRECT"))
            );
            for (stream, name) in permitted_consumers(&conf, &user) {
                assert!(name.starts_with(&format!("{user}-")), "{user} creates {name} on {stream}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_confined_to_their_subjects() {
    let nats = NatsServer::start_secured().await;
    let (_db, household) = start_household_as_its_user(&nats).await;

    // Household, as its own user, publishes its facts through the outbox.
    let mut cases = CaseServiceClientExt::coordinator(&household).await;
    cases.create_case(birth_request("perm-birth", "Q3710027001")).await.unwrap();
    let (ss, ss_js, ss_errors) = js_as(&nats, "social_security").await;
    // 社保 reads the birth through its own consumer of births, and only the birth: the case
    // events of the same registration are not for it.
    let read = eventually(Duration::from_secs(30), "social security to read the birth", || async {
        let stream = ss_js.get_stream(HOUSEHOLD).await.ok()?;
        let consumer: jetstream::consumer::Consumer<pull::Config> = stream
            .get_or_create_consumer(
                SS_BORN,
                pull::Config { durable_name: Some(SS_BORN.into()), filter_subject: BORN.into(), ..Default::default() },
            )
            .await
            .ok()?;
        let mut batch = consumer.fetch().max_messages(10).expires(Duration::from_millis(500)).messages().await.ok()?;
        let mut subjects = Vec::new();
        while let Some(Ok(m)) = batch.next().await {
            m.ack().await.ok()?;
            subjects.push(m.subject.to_string());
        }
        (!subjects.is_empty()).then_some(subjects)
    })
    .await
    .unwrap();
    assert_eq!(read, [BORN]);
    // Its consumer of deaths, too (none yet).
    let stream = ss_js.get_stream(HOUSEHOLD).await.unwrap();
    let deaths: jetstream::consumer::Consumer<pull::Config> = stream
        .get_or_create_consumer(
            SS_DECEASED,
            pull::Config {
                durable_name: Some(SS_DECEASED.into()),
                filter_subject: DECEASED.into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(deaths.cached_info().num_pending, 0);

    // The vehicle stream exists (created by its own user), so a stray publish would land there.
    let (_, vehicle_js, _) = js_as(&nats, "vehicle").await;
    ensure_stream(&vehicle_js, "vehicle", 1).await.unwrap();

    // Household publishing on vehicle's subject is refused.
    let (_, mut hh_js, hh_errors) = js_as(&nats, "household").await;
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

    // A department can publish nothing.
    let before = messages(&hh_js, HOUSEHOLD).await;
    ss.publish("onething.household.v1.case.approved", "forged".into()).await.unwrap();
    ss.flush().await.unwrap();
    let acked = match ss_js.publish(DECEASED, "forged".into()).await {
        Ok(ack) => ack.await.is_ok(),
        Err(_) => false,
    };
    assert!(!acked);
    assert_eq!(messages(&hh_js, HOUSEHOLD).await, before, "nothing forged reached the stream");
    // … nor touch a service's consumer or stream.
    let hijack = stream
        .create_consumer(pull::Config {
            durable_name: Some(onething_household::events::NOTIFIER.into()),
            ..Default::default()
        })
        .await;
    assert!(hijack.is_err(), "social security cannot (re)configure household's consumer");
    assert!(ss_js.delete_stream(HOUSEHOLD).await.is_err());

    violation_reported(&ss_errors, "publish to \"onething.household.v1.case.approved\"").await;
    violation_reported(&hh_errors, "publish to \"onething.vehicle.v1.case.approved\"").await;
    household.stop().await;
}

/// A secured server with household running as its own user (its notifier consumer in
/// place), one birth in its stream, and the coordinator's and supervision's consumers of the
/// household stream created by their users, with nothing delivered from them yet.
async fn household_with_consumers() -> (NatsServer, TestDb, Running) {
    let nats = NatsServer::start_secured().await;
    let (db, household) = start_household_as_its_user(&nats).await;
    let mut cases = CaseServiceClientExt::coordinator(&household).await;
    cases.create_case(birth_request("perm-birth", "Q3710027001")).await.unwrap();
    let (_, hh_js, _) = js_as(&nats, "household").await;
    eventually(Duration::from_secs(30), "the birth in household's stream", || async {
        (hh_js.get_stream(HOUSEHOLD).await.ok()?.get_info().await.ok()?.state.messages >= 4).then_some(())
    })
    .await
    .unwrap();
    let (_, coordinator, _) = js_as(&nats, "coordinator").await;
    create_as_service(&coordinator, &onething_coordinator::events::case_events_spec("household")).await;
    let (_, supervision, _) = js_as(&nats, "supervision").await;
    create_as_service(&supervision, &onething_supervision::projection::spec("household")).await;
    (nats, db, household)
}

/// Nothing was delivered from the coordinator's and supervision's consumers: a refused pull
/// took no message from them.
async fn services_consumers_untouched(nats: &NatsServer) {
    for (user, name) in [("coordinator", "coordinator-household-cases"), ("supervision", "supervision-household")] {
        let (_, js, _) = js_as(nats, user).await;
        let info = js.get_stream(HOUSEHOLD).await.unwrap().consumer_info(name).await.unwrap();
        assert_eq!(info.delivered.stream_sequence, 0, "{name} delivered nothing");
        assert_eq!(info.num_ack_pending, 0, "{name}");
        assert!(info.num_pending > 0, "{name} still holds its events");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_department_reads_its_entitled_subjects_alone() {
    let (nats, _db, household) = household_with_consumers().await;
    let (ss, ss_js, ss_errors) = js_as(&nats, "social_security").await;
    let stream = ss_js.get_stream(HOUSEHOLD).await.unwrap();
    let case_events = "onething.household.v1.case.approved";

    // No consumer filtered on another subject: not under its births consumer's name, nor
    // under a name of its own for that subject, nor with the filter left out of the create
    // subject (a list of filters, or none).
    for config in [
        pull::Config { durable_name: Some(SS_BORN.into()), filter_subject: case_events.into(), ..Default::default() },
        pull::Config {
            durable_name: Some("social_security-household-v1-case-approved".into()),
            filter_subject: case_events.into(),
            ..Default::default()
        },
        pull::Config { durable_name: Some(SS_BORN.into()), filter_subjects: vec![BORN.into()], ..Default::default() },
        pull::Config { durable_name: Some(SS_BORN.into()), ..Default::default() },
        pull::Config { filter_subject: BORN.into(), ..Default::default() },
    ] {
        let what =
            format!("{:?} filtered on {:?}{:?}", config.durable_name, config.filter_subject, config.filter_subjects);
        assert!(stream.create_consumer(config).await.is_err(), "social security created {what}");
    }
    // The create subject it may use names the filter; JetStream holds the request to it.
    let create = format!("CONSUMER.CREATE.{HOUSEHOLD}.{SS_BORN}.{BORN}");
    for (config, code) in [
        // Another filter in the request than in the subject.
        (serde_json::json!({ "name": SS_BORN, "durable_name": SS_BORN, "filter_subject": case_events }), 10131),
        // A list of filters beside the subject's.
        (
            serde_json::json!({ "name": SS_BORN, "durable_name": SS_BORN, "filter_subjects": ["onething.household.v1.case.>"] }),
            10137,
        ),
    ] {
        let answer: serde_json::Value = ss_js
            .request(create.clone(), &serde_json::json!({ "stream_name": HOUSEHOLD, "config": config }))
            .await
            .unwrap();
        assert_eq!(answer["error"]["err_code"], code, "{answer}");
    }
    // The legacy durable create names no filter: refused outright.
    let legacy: Result<serde_json::Value, _> = ss_js
        .request(
            format!("CONSUMER.DURABLE.CREATE.{HOUSEHOLD}.{SS_BORN}"),
            &serde_json::json!({ "stream_name": HOUSEHOLD, "config": { "durable_name": SS_BORN } }),
        )
        .await;
    assert!(legacy.is_err(), "{legacy:?}");

    // No service's consumer: not reconfigured, read or pulled from.
    for name in ["coordinator-household-cases", "supervision-household", onething_household::events::NOTIFIER] {
        let takeover =
            stream.create_consumer(pull::Config { durable_name: Some(name.into()), ..Default::default() }).await;
        assert!(takeover.is_err(), "social security took over {name}");
        assert!(stream.consumer_info(name).await.is_err(), "social security read {name}'s information");
        assert!(pull_one(&ss, name).await.is_err(), "social security pulled from {name}");
    }
    services_consumers_untouched(&nats).await;

    // No single message of the stream, by sequence or through direct get.
    assert!(stream.get_raw_message(1).await.is_err(), "MSG.GET");
    assert!(stream.direct_get(1).await.is_err(), "DIRECT.GET");
    assert!(stream.direct_get_last_for_subject(BORN).await.is_err(), "DIRECT.GET by subject");

    // No one else's inbox, nor any inbox at all but its own.
    let mut everyone = ss.subscribe("_INBOX.>").await.unwrap();
    let mut households = ss.subscribe("_INBOX.household.>").await.unwrap();
    let mut facts = ss.subscribe("onething.>").await.unwrap();
    ss.flush().await.unwrap();
    violation_reported(&ss_errors, "subscription to \"_INBOX.>\"").await;
    violation_reported(&ss_errors, "subscription to \"_INBOX.household.>\"").await;
    violation_reported(&ss_errors, "subscription to \"onething.>\"").await;
    // Household's replies (a JetStream answer, a publish ack) and facts reach none of them.
    let (_, hh_js, _) = js_as(&nats, "household").await;
    hh_js.query_account().await.unwrap();
    let mut cases = CaseServiceClientExt::coordinator(&household).await;
    cases.create_case(birth_request("perm-birth-2", "Q3710027002")).await.unwrap();
    for (what, sub) in
        [("_INBOX.>", &mut everyone), ("_INBOX.household.>", &mut households), ("onething.>", &mut facts)]
    {
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(1500), sub.next()).await {
            panic!("social security received {} through {what}", m.subject);
        }
    }
    // Its own inbox works: it still reads its births.
    let born: jetstream::consumer::Consumer<pull::Config> = stream
        .get_or_create_consumer(
            SS_BORN,
            pull::Config { durable_name: Some(SS_BORN.into()), filter_subject: BORN.into(), ..Default::default() },
        )
        .await
        .unwrap();
    let got = eventually(Duration::from_secs(30), "both births", || async {
        (born.clone().info().await.ok()?.num_pending == 2).then_some(())
    })
    .await;
    assert!(got.is_ok());

    // Another department has consumers of its own only: 医保 cannot use 社保's.
    let (mi, mi_js, _) = js_as(&nats, "medical_insurance").await;
    let mi_stream = mi_js.get_stream(HOUSEHOLD).await.unwrap();
    assert!(mi_stream.consumer_info(SS_BORN).await.is_err());
    assert!(pull_one(&mi, SS_BORN).await.is_err(), "medical insurance pulled from social security's consumer");
    // … and a department of another mandate gets no births at all.
    let (_, mr_js, _) = js_as(&nats, "market_regulation").await;
    let mr_stream = mr_js.get_stream(HOUSEHOLD).await.unwrap();
    let births = mr_stream
        .create_consumer(pull::Config {
            durable_name: Some("market_regulation-household-v1-person-born".into()),
            filter_subject: BORN.into(),
            ..Default::default()
        })
        .await;
    assert!(births.is_err(), "market regulation is not entitled to births");
    household.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_uses_its_own_consumers_alone() {
    let (nats, _db, household) = household_with_consumers().await;
    let (vehicle, vehicle_js, _) = js_as(&nats, "vehicle").await;
    // Its own consumer of deaths, as the service creates it.
    create_as_service(&vehicle_js, &onething_platform::facts::deceased_spec("vehicle")).await;
    let stream = vehicle_js.get_stream(HOUSEHOLD).await.unwrap();
    // Not exit-entry's, the coordinator's, supervision's or household's: not created,
    // reconfigured, read or pulled from.
    for name in [
        "exit_entry-deaths",
        "coordinator-household-cases",
        "supervision-household",
        onething_household::events::NOTIFIER,
    ] {
        let spec = ConsumerSpec {
            name: name.into(),
            stream: HOUSEHOLD.into(),
            filter_subjects: vec![DECEASED.into()],
            batch: 1,
        };
        assert!(stream.create_consumer(pull_config(&spec)).await.is_err(), "vehicle created or reconfigured {name}");
        assert!(stream.consumer_info(name).await.is_err(), "vehicle read {name}'s information");
        assert!(pull_one(&vehicle, name).await.is_err(), "vehicle pulled from {name}");
    }
    services_consumers_untouched(&nats).await;
    // Nor a department's consumer.
    assert!(pull_one(&vehicle, SS_BORN).await.is_err());
    // Nor a consumer under its own name on a stream it does not read.
    let (_, liaison_js, _) = js_as(&nats, "liaison").await;
    ensure_stream(&liaison_js, "liaison", 1).await.unwrap();
    assert!(vehicle_js.get_stream("ONETHING_LIAISON").await.is_err(), "vehicle does not read liaison's stream");
    let own_name = onething_platform::events::nats::stream_name("liaison");
    let mut spec = onething_platform::facts::deceased_spec("vehicle");
    spec.stream = own_name.clone();
    spec.filter_subjects = vec!["onething.liaison.v1.case.approved".into()];
    let elsewhere = vehicle_js.create_consumer_on_stream(pull_config(&spec), own_name).await;
    assert!(elsewhere.is_err(), "vehicle created its consumer on liaison's stream");
    household.stop().await;
}

/// The consumers on every stream of `js`, as (stream, name).
async fn consumers_on(js: &jetstream::Context) -> BTreeSet<(String, String)> {
    let mut all = BTreeSet::new();
    for s in SERVICES {
        let stream = onething_platform::events::nats::stream_name(s);
        let names: Vec<String> =
            js.get_stream(&stream).await.unwrap().consumer_names().filter_map(|n| async { n.ok() }).collect().await;
        all.extend(names.into_iter().map(|n| (stream.clone(), n)));
    }
    all
}

/// Each service started alone, on a server without authentication where every stream
/// exists, creates exactly the consumers auth.conf lets its user create: a consumer added
/// to the code without its permission fails here, and so does a permission for a consumer
/// no longer created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_consumer_the_mesh_creates_is_in_auth_conf() {
    let conf = auth_conf();
    let mut created = BTreeMap::new();
    for service in SERVICES {
        let nats = NatsServer::start().await;
        let js = nats.jetstream().await;
        for s in SERVICES {
            ensure_stream(&js, s, 1).await.unwrap();
        }
        let db = TestDb::fresh(Backend::Sqlite).await.unwrap();
        let running = start_named(service, test_settings(&db.url, &nats.url())).await;
        let expected = permitted_consumers(&conf, service);
        let seen = eventually(Duration::from_secs(30), &format!("{service}'s consumers"), || async {
            let seen = consumers_on(&js).await;
            seen.is_superset(&expected).then_some(seen)
        })
        .await;
        // Consumers start together: a moment more shows any that auth.conf does not know.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = consumers_on(&js).await;
        running.stop().await;
        let seen = seen.unwrap_or_else(|_| now.clone());
        assert_eq!(now, seen, "{service} kept creating consumers");
        assert_eq!(now, expected, "{service}'s consumers against its permissions in deploy/nats/auth.conf");
        created.insert(service, now);
    }
    eprintln!("consumers by service: {created:?}");
    // Only the services' own consumers: no department permission names a service's consumer.
    let ours: BTreeSet<_> = created.values().flatten().collect();
    for user in conf_users(&conf).iter().filter(|u| !SERVICES.contains(&u.as_str())) {
        assert!(permitted_consumers(&conf, user).iter().all(|c| !ours.contains(c)), "{user}");
    }
}

/// The whole mesh, each service as its own NATS user with its own inbox: every consumer is
/// created, and the ones of household's stream read and ack its events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mesh_runs_on_its_own_users() {
    let conf = auth_conf();
    let nats = NatsServer::start_secured().await;
    let (mut running, mut dbs) = (Vec::new(), Vec::new());
    for service in SERVICES {
        let db = TestDb::fresh(Backend::Sqlite).await.unwrap();
        let mut settings = test_settings(&db.url, &nats.url());
        settings.nats.user = service.into();
        settings.nats.password = nats_password(service);
        running.push(start_named(service, settings).await);
        dbs.push(db);
    }
    let mut cases = CaseServiceClientExt::coordinator(&running[0]).await;
    cases.create_case(birth_request("mesh-birth", "Q3710027003")).await.unwrap();
    let mut checked = Vec::new();
    for service in SERVICES {
        let (_, js, _) = js_as(&nats, service).await;
        for (stream, name) in permitted_consumers(&conf, service) {
            // These receive the birth's case events: each must have pulled and acked them.
            let reads_cases =
                ["household-notifier", "coordinator-household-cases", "supervision-household"].contains(&name.as_str());
            eventually(Duration::from_secs(60), &format!("{name} to consume {stream}"), || {
                let (js, stream, name) = (js.clone(), stream.clone(), name.clone());
                async move {
                    let info = js.get_stream(&stream).await.ok()?.consumer_info(&name).await.ok()?;
                    let acked = !reads_cases || info.ack_floor.stream_sequence > 0;
                    (acked && info.num_pending == 0 && info.num_ack_pending == 0).then_some(())
                }
            })
            .await
            .unwrap();
            checked.push(name);
        }
    }
    eprintln!("consumers at work: {checked:?}");
    assert_eq!(checked.len(), 17, "{checked:?}");
    for r in running.into_iter().rev() {
        r.stop().await;
    }
}
