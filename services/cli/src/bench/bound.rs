//! The bound: what the broker and the database allow on this machine, measured in the same
//! run as the mesh. JetStream: persisted publishes acknowledged per second (file storage,
//! de-duplication ids and CloudEvents-sized headers, as the outbox relay sends them).
//! PostgreSQL: committed single-row write transactions per second. Each is measured at a
//! few concurrencies and the best is taken: the most the part allows.

use super::procs::{self, Sample};
use anyhow::Context as _;
use async_nats::{HeaderMap, jetstream};
use futures::{StreamExt, stream::FuturesUnordered};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DbBackend, Statement};
use serde::Serialize;
use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

/// One measurement of a part.
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    /// When it was measured: before or after the mesh ran (the best of both counts, so
    /// a moment of a slow disk or a busy neighbour does not make the bound look low).
    pub when: &'static str,
    /// Concurrent publishers or connections.
    pub concurrency: usize,
    /// Operations per second.
    pub per_second: f64,
    /// The whole machine's CPU while measuring, in percent of one core (200 is both
    /// cores of two): whether the part had the processors to itself and used them.
    pub machine_cpu_percent: f64,
    /// The whole machine's CPU per operation, milliseconds: what an acknowledged publish
    /// or a commit costs this machine when nothing else runs (the server, the client and
    /// the kernel together).
    pub cpu_ms_per_operation: f64,
}

impl Throughput {
    /// A measurement of `ops` operations over `secs` seconds, between machine samples
    /// `before` and `after`.
    fn new(when: &'static str, concurrency: usize, ops: u64, secs: f64, before: &Sample, after: &Sample) -> Self {
        let cpu = super::load::machine_cpu(&procs::usage(&[], before, after));
        let per_second = ops as f64 / secs.max(1e-3);
        Self {
            when,
            concurrency,
            per_second,
            machine_cpu_percent: cpu,
            cpu_ms_per_operation: (super::load::cpu_ms_each(cpu, per_second) * 1e4).round() / 1e4,
        }
    }
}

/// Acknowledged JetStream publishes per second, `publishers` at a time each keeping
/// `window` publishes in flight, for `for_`; the best of the given concurrencies.
///
/// # Errors
/// NATS unreachable or JetStream refusing the stream.
pub async fn jetstream(
    url: &str,
    concurrencies: &[usize],
    for_: Duration,
    when: &'static str,
) -> anyhow::Result<Vec<Throughput>> {
    let client = async_nats::connect(url).await.context("connecting to NATS")?;
    let js = jetstream::new(client);
    let mut out = Vec::new();
    for (round, &publishers) in concurrencies.iter().enumerate() {
        let name = format!("BENCH_BOUND_{round}");
        js.create_stream(jetstream::stream::Config {
            name: name.clone(),
            subjects: vec![format!("bench.bound.{round}.>")],
            storage: jetstream::stream::StorageType::File,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .context("creating the bound stream")?;
        let acked = Arc::new(AtomicU64::new(0));
        let sampled = procs::sample(&[]);
        let start = Instant::now();
        let mut tasks = Vec::new();
        for p in 0..publishers {
            let (js, acked) = (js.clone(), acked.clone());
            tasks.push(tokio::spawn(async move {
                let payload = bytes::Bytes::from(vec![b'x'; 320]);
                let mut inflight = FuturesUnordered::new();
                let mut n = 0u64;
                while start.elapsed() < for_ {
                    while inflight.len() < 64 {
                        n += 1;
                        let publish = js
                            .publish_with_headers(format!("bench.bound.{round}.p{p}"), headers(p, n), payload.clone())
                            .await?;
                        inflight.push(publish.into_future());
                    }
                    if let Some(ack) = inflight.next().await {
                        ack?;
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                }
                while let Some(ack) = inflight.next().await {
                    ack?;
                    acked.fetch_add(1, Ordering::Relaxed);
                }
                anyhow::Ok(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        let secs = start.elapsed().as_secs_f64();
        let ops = acked.load(Ordering::Relaxed);
        out.push(Throughput::new(when, publishers, ops, secs, &sampled, &procs::sample(&[])));
        js.delete_stream(&name).await.context("deleting the bound stream")?;
    }
    Ok(out)
}

/// Headers the size of an outbox event's: a CloudEvents context and a de-duplication id.
fn headers(publisher: usize, n: u64) -> HeaderMap {
    let mut h = HeaderMap::new();
    let id = format!("{publisher}-{n}-{}", uuid::Uuid::now_v7());
    h.insert("Nats-Msg-Id", id.as_str());
    h.insert("ce-specversion", "1.0");
    h.insert("ce-id", id.as_str());
    h.insert("ce-source", "/onething/bench");
    h.insert("ce-type", "onething.common.v1.CaseStateChanged");
    h.insert("ce-subject", "cases/0190d7a4-0000-7000-8000-000000000000");
    h.insert("ce-time", "2026-11-29T10:00:00Z");
    h.insert("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    h.insert("content-type", "application/protobuf");
    h
}

/// Committed single-row write transactions per second on the database at `url`, with
/// `connections` concurrent connections, for `for_`; one result per concurrency.
///
/// # Errors
/// The database is unreachable or refuses the table.
pub async fn postgres(
    url: &str,
    concurrencies: &[usize],
    for_: Duration,
    when: &'static str,
) -> anyhow::Result<Vec<Throughput>> {
    let mut out = Vec::new();
    for &connections in concurrencies {
        let mut opts = ConnectOptions::new(url.to_string());
        opts.sqlx_logging(false).max_connections(connections as u32).min_connections(connections as u32);
        let db = Database::connect(opts).await.context("connecting to the bound database")?;
        db.execute_unprepared(
            "CREATE TABLE IF NOT EXISTS bound (seq BIGSERIAL PRIMARY KEY, event_id TEXT NOT NULL, \
             payload BYTEA NOT NULL, created_at TIMESTAMPTZ NOT NULL)",
        )
        .await?;
        let committed = Arc::new(AtomicU64::new(0));
        let sampled = procs::sample(&[]);
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..connections {
            let (db, committed) = (db.clone(), committed.clone());
            tasks.push(tokio::spawn(async move {
                while start.elapsed() < for_ {
                    db.execute_raw(Statement::from_sql_and_values(
                        DbBackend::Postgres,
                        "INSERT INTO bound (event_id, payload, created_at) VALUES ($1, $2, now())",
                        [uuid::Uuid::now_v7().to_string().into(), vec![b'x'; 320].into()],
                    ))
                    .await?;
                    committed.fetch_add(1, Ordering::Relaxed);
                }
                anyhow::Ok(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        let secs = start.elapsed().as_secs_f64();
        let ops = committed.load(Ordering::Relaxed);
        out.push(Throughput::new(when, connections, ops, secs, &sampled, &procs::sample(&[])));
        db.close().await.ok();
    }
    Ok(out)
}

/// The best of several measurements (0 when there are none).
pub fn best(of: &[Throughput]) -> f64 {
    best_of(of).map_or(0.0, |t| t.per_second)
}

/// The measurement with the most operations per second.
pub fn best_of(of: &[Throughput]) -> Option<&Throughput> {
    of.iter().max_by(|a, b| a.per_second.total_cmp(&b.per_second))
}
