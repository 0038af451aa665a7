//! `onething outbox`: the operator's view of a service's outbox quarantine (rows the relay
//! gave up publishing), and a reconciliation on demand. It reads the service's own
//! configuration, as `onething serve` does (in its pod: `kubectl exec … -- onething outbox
//! list --service vehicle`).

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use onething_platform::events::{Reconciler, quarantine};

/// Options of `onething outbox`.
#[derive(Args)]
pub struct OutboxArgs {
    /// The service whose outbox this is (its configuration is read as `serve` reads it).
    #[arg(long, value_enum)]
    service: onething_platform::service_kind::ServiceKind,
    #[command(subcommand)]
    command: OutboxCommand,
}

#[derive(Subcommand)]
enum OutboxCommand {
    /// The quarantined rows: sequence, type, aggregate, size, attempts, reason.
    List {
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u64,
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Put quarantined rows back into the outbox (same sequence and event id); the relay
    /// publishes them next. Fix the cause first (e.g. the broker's max_payload).
    Retry {
        /// Sequence numbers, as `list` shows them.
        #[arg(required = true)]
        seq: Vec<i64>,
    },
    /// Delete quarantined rows for good: their events are never published.
    Drop {
        /// Sequence numbers, as `list` shows them.
        #[arg(required = true)]
        seq: Vec<i64>,
    },
    /// Check that every retained sent event is in the stream; publish again what is missing.
    Reconcile {
        /// Only events written in the last this many minutes (0: every retained row).
        #[arg(long, default_value_t = 0)]
        minutes: u64,
    },
}

/// Runs `onething outbox`.
///
/// # Errors
/// Bad configuration, an unreachable database or broker, or a sequence number that is not
/// quarantined (the others of the same command are still done).
pub async fn outbox(args: OutboxArgs) -> anyhow::Result<()> {
    let name = args.service.name();
    let settings = crate::dev::service_settings(args.service)?;
    let db = onething_platform::db::connect_with(&settings.database_url, &settings.database).await?;
    match args.command {
        OutboxCommand::List { limit, json } => {
            let rows = quarantine::list(&db, limit).await?;
            if json {
                for r in &rows {
                    println!("{}", serde_json::to_string(r)?);
                }
            } else {
                println!(
                    "{:>8}  {:<24}  {:<40}  {:>9}  {:>8}  reason",
                    "seq", "quarantined", "type", "bytes", "attempts"
                );
                for r in &rows {
                    println!(
                        "{:>8}  {:<24}  {:<40}  {:>9}  {:>8}  {}",
                        r.seq,
                        r.dead_at.get(..19).unwrap_or(&r.dead_at),
                        r.ce_type,
                        r.payload_bytes,
                        r.attempts,
                        r.reason
                    );
                }
                eprintln!("{} quarantined row(s) of {name}", rows.len());
            }
            Ok(())
        }
        OutboxCommand::Retry { seq } => each(&seq, "back in the outbox", |s| quarantine::retry(&db, s)).await,
        OutboxCommand::Drop { seq } => each(&seq, "dropped", |s| quarantine::drop(&db, s)).await,
        OutboxCommand::Reconcile { minutes } => {
            let client = onething_platform::events::nats::connect(&settings.nats, &format!("onething-{name}-outbox"))
                .await
                .context("connecting to NATS")?;
            let js = async_nats::jetstream::new(client);
            let since = (minutes > 0).then(|| chrono::Utc::now() - chrono::Duration::minutes(minutes as i64));
            let done = Reconciler::new(db, js, name, &settings.outbox).reconcile(since).await?;
            println!("checked {} sent event(s); published {} again", done.checked, done.republished);
            if done.unchecked > 0 {
                bail!(
                    "{} event(s) could not be checked (the broker did not answer for them); run it again",
                    done.unchecked
                );
            }
            Ok(())
        }
    }
}

/// Applies `op` to every sequence number, saying what happened to each.
async fn each<F, Fut>(seqs: &[i64], done: &str, op: F) -> anyhow::Result<()>
where
    F: Fn(i64) -> Fut,
    Fut: Future<Output = Result<bool, sea_orm::DbErr>>,
{
    let mut missing = Vec::new();
    for &s in seqs {
        if op(s).await? {
            println!("{s}: {done}");
        } else {
            missing.push(s.to_string());
        }
    }
    if !missing.is_empty() {
        bail!("not quarantined: {}", missing.join(", "));
    }
    Ok(())
}
