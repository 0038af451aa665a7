//! What must hold after the chaos: every accepted bundle completed; each department holds
//! one case per step, and exactly the cases the coordinator recorded; every outbox drained
//! and nothing quarantined; every event a service committed is in its stream, none twice.

use crate::bench::mesh::{self, Databases};
use async_nats::jetstream::{self, consumer::pull};
use futures::StreamExt;
use onething_platform::events::nats::stream_name;
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    time::Duration,
};

/// What the checks found, line by line.
#[derive(Debug)]
pub struct Found {
    /// Whether everything held.
    pub ok: bool,
    /// What was checked and what it showed.
    pub lines: Vec<String>,
}

impl Found {
    fn good(&mut self, line: String) {
        self.lines.push(format!("ok: {line}"));
    }

    /// Records something that must not be.
    pub fn bad(&mut self, line: String) {
        self.ok = false;
        self.lines.push(format!("FAILED: {line}"));
    }
}

async fn strings(db: &DatabaseConnection, sql: &str, columns: &[&str]) -> anyhow::Result<Vec<Vec<String>>> {
    let rows = db.query_all_raw(Statement::from_string(db.get_database_backend(), sql.to_string())).await?;
    rows.iter()
        .map(|r| columns.iter().map(|c| Ok(r.try_get::<String>("", c)?)).collect::<anyhow::Result<Vec<String>>>())
        .collect()
}

async fn number(db: &DatabaseConnection, sql: &str) -> anyhow::Result<i64> {
    let row = db.query_one_raw(Statement::from_string(db.get_database_backend(), sql.to_string())).await?;
    Ok(row.map(|r| r.try_get::<i64>("", "n")).transpose()?.unwrap_or(0))
}

/// Runs every check (waiting up to three minutes for the mesh to finish its work).
///
/// # Errors
/// A database or NATS that cannot be read.
pub async fn everything(dbs: &Databases, nats_url: &str, accepted: &[String]) -> anyhow::Result<Found> {
    let mut found = Found { ok: true, lines: Vec::new() };
    let mut conns = BTreeMap::new();
    for s in mesh::SERVICES {
        let url = dbs.url(s).ok_or_else(|| anyhow::anyhow!("no database for {s}"))?;
        conns.insert(s, onething_platform::db::connect(&url).await?);
    }
    let js = jetstream::new(async_nats::connect(nats_url).await?);
    bundles_completed(&mut found, &conns, accepted).await?;
    one_case_per_step(&mut found, &conns).await?;
    every_event_once(&mut found, &conns, &js).await?;
    supervision_tracked(&mut found, &conns).await?;
    no_dead_letters(&mut found, &js).await?;
    Ok(found)
}

/// Every service's database, by service.
type Conns = BTreeMap<&'static str, DatabaseConnection>;

/// Every accepted bundle completes (waiting up to three minutes), and nothing waits in an
/// outbox or its quarantine.
async fn bundles_completed(found: &mut Found, conns: &Conns, accepted: &[String]) -> anyhow::Result<()> {
    let coordinator = &conns["coordinator"];
    // Every accepted bundle completes, and nothing waits in an outbox.
    let until = tokio::time::Instant::now() + Duration::from_secs(180);
    let (mut open, mut unsent) = (Vec::new(), 0);
    while tokio::time::Instant::now() < until {
        let states: HashMap<String, String> = strings(coordinator, "SELECT id, state FROM bundles", &["id", "state"])
            .await?
            .into_iter()
            .map(|r| (r[0].clone(), r[1].clone()))
            .collect();
        open = accepted
            .iter()
            .filter(|id| states.get(*id).is_none_or(|s| s != "completed"))
            .map(|id| format!("{id}={}", states.get(id).map_or("missing", String::as_str)))
            .collect();
        unsent = 0;
        for db in conns.values() {
            unsent += number(db, "SELECT COUNT(*) AS n FROM outbox WHERE sent_at IS NULL").await?;
        }
        if open.is_empty() && unsent == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    if open.is_empty() {
        found.good(format!("all {} accepted bundles completed", accepted.len()));
    } else {
        found.bad(format!(
            "{} of {} accepted bundles did not complete: {}",
            open.len(),
            accepted.len(),
            open.iter().take(10).cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    let all = number(coordinator, "SELECT COUNT(*) AS n FROM bundles").await?;
    if all as usize != accepted.len() {
        found.bad(format!("the coordinator holds {all} bundles, {} were accepted", accepted.len()));
    }
    if unsent == 0 {
        found.good("every outbox drained".into());
    } else {
        found.bad(format!("{unsent} events still unsent"));
    }
    for (s, db) in conns {
        let dead = number(db, "SELECT COUNT(*) AS n FROM outbox_dead").await?;
        if dead > 0 {
            found.bad(format!("{s}: {dead} events quarantined"));
        }
    }
    Ok(())
}

/// One case per step at each department, and the very cases the coordinator recorded.
async fn one_case_per_step(found: &mut Found, conns: &Conns) -> anyhow::Result<()> {
    let coordinator = &conns["coordinator"];
    // One case per step at each department, and the very cases the coordinator recorded.
    for dept in onething_platform::service_kind::DEPARTMENT_NAMES {
        let db = &conns[dept];
        let doubled = strings(
            db,
            "SELECT bundle_id, matter_code FROM cases WHERE bundle_id <> '' GROUP BY bundle_id, matter_code HAVING COUNT(*) > 1",
            &["bundle_id", "matter_code"],
        )
        .await?;
        let held: BTreeSet<String> = strings(db, "SELECT id FROM cases WHERE bundle_id <> ''", &["id"])
            .await?
            .into_iter()
            .map(|r| r[0].clone())
            .collect();
        let recorded: BTreeSet<String> = strings(
            coordinator,
            &format!("SELECT case_id FROM bundle_steps WHERE department = '{dept}' AND case_id <> ''"),
            &["case_id"],
        )
        .await?
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
        if !doubled.is_empty() {
            found.bad(format!("{dept}: {} steps have more than one case", doubled.len()));
        } else if held != recorded {
            let orphans = held.difference(&recorded).count();
            let unknown = recorded.difference(&held).count();
            found.bad(format!("{dept}: {orphans} cases no step recorded, {unknown} recorded cases missing"));
        } else {
            found.good(format!("{dept}: {} cases, one per step, each the step's", held.len()));
        }
    }
    Ok(())
}

/// Every committed event in its stream, once.
async fn every_event_once(found: &mut Found, conns: &Conns, js: &jetstream::Context) -> anyhow::Result<()> {
    // Every committed event in its stream, once.
    for (s, db) in conns {
        let committed: BTreeSet<String> = strings(db, "SELECT event_id FROM outbox", &["event_id"])
            .await?
            .into_iter()
            .map(|r| r[0].clone())
            .collect();
        let messages = stream_ids(js, &stream_name(s)).await?;
        let distinct: BTreeSet<&String> = messages.iter().map(|m| &m.ce_id).collect();
        let missing = committed.iter().filter(|id| !distinct.contains(id)).count();
        let twice = messages.len() - distinct.len();
        if missing > 0 || twice > 0 {
            // Which repeats, and how they came: the reconciliation republishes under a
            // message id naming the loss it repairs; the relay under the event id.
            let mut seen = BTreeSet::new();
            let repeats: Vec<String> = messages
                .iter()
                .filter(|m| !seen.insert(&m.ce_id))
                .take(5)
                .map(|m| format!("{} {} (message id {}, sequence {})", m.ce_type, m.ce_id, m.msg_id, m.seq))
                .collect();
            found.bad(format!(
                "{}: {missing} committed events missing, {twice} in it twice; first repeats: {}",
                stream_name(s),
                repeats.join("; ")
            ));
        } else {
            found.good(format!("{}: all {} committed events, none twice", stream_name(s), committed.len()));
        }
    }
    Ok(())
}

/// Supervision (among the subscribers, the one that reads every stream) tracks every case
/// and bundle, once each (waiting up to a minute).
async fn supervision_tracked(found: &mut Found, conns: &Conns) -> anyhow::Result<()> {
    let coordinator = &conns["coordinator"];
    // Consumers applied what the streams hold: supervision tracks every case and bundle
    // (and is, among the subscribers, the one that reads every stream), once each by key.
    let sup = &conns["supervision"];
    let until = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut want = (0, 0);
    let mut tracked = (0, 0);
    while tokio::time::Instant::now() < until {
        want = (0, number(coordinator, "SELECT COUNT(*) AS n FROM bundles").await?);
        for dept in onething_platform::service_kind::DEPARTMENT_NAMES {
            want.0 += number(&conns[dept], "SELECT COUNT(*) AS n FROM cases").await?;
        }
        tracked = (
            number(sup, "SELECT COUNT(*) AS n FROM tracked WHERE kind = 'case'").await?,
            number(sup, "SELECT COUNT(*) AS n FROM tracked WHERE kind = 'bundle'").await?,
        );
        if tracked == want {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    if tracked == want {
        found.good(format!("supervision tracks all {} cases and {} bundles", want.0, want.1));
    } else {
        found.bad(format!("supervision tracks {tracked:?} (cases, bundles) of {want:?}"));
    }
    Ok(())
}

/// A good event at a bad moment is retried, never dead-lettered.
async fn no_dead_letters(found: &mut Found, js: &jetstream::Context) -> anyhow::Result<()> {
    // A good event at a bad moment is retried, never dead-lettered.
    let letters = match js.get_stream(onething_platform::events::nats::DLQ_STREAM).await {
        Ok(mut s) => s.info().await?.state.messages,
        Err(_) => 0,
    };
    if letters == 0 {
        found.good("no dead letters".into());
    } else {
        found.bad(format!("{letters} events dead-lettered"));
    }
    Ok(())
}

/// One message of a stream, as the checks see it.
struct Seen {
    ce_id: String,
    ce_type: String,
    msg_id: String,
    seq: u64,
}

/// Every message of `stream`, in order.
async fn stream_ids(js: &jetstream::Context, stream: &str) -> anyhow::Result<Vec<Seen>> {
    let Ok(s) = js.get_stream(stream).await else { return Ok(Vec::new()) };
    let total = s.clone().info().await?.state.messages as usize;
    let consumer = s
        .create_consumer(pull::Config {
            deliver_policy: jetstream::consumer::DeliverPolicy::All,
            ack_policy: jetstream::consumer::AckPolicy::None,
            ..Default::default()
        })
        .await?;
    let mut seen = Vec::with_capacity(total);
    while seen.len() < total {
        let mut batch = consumer.fetch().max_messages(500).expires(Duration::from_secs(2)).messages().await?;
        let before = seen.len();
        while let Some(m) = batch.next().await {
            let m = m.map_err(|e| anyhow::anyhow!("{e}"))?;
            let header =
                |name: &str| m.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.to_string()).unwrap_or_default();
            let seq = m.info().map(|i| i.stream_sequence).unwrap_or_default();
            seen.push(Seen { ce_id: header("ce-id"), ce_type: header("ce-type"), msg_id: header("Nats-Msg-Id"), seq });
        }
        if seen.len() == before {
            break;
        }
    }
    Ok(seen)
}
