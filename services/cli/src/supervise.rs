//! `onething supervision`: KPIs, and re-running a published random draw to check it.

use crate::client::{channel, explain};
use anyhow::Context as _;
use clap::{Args, Subcommand};
use onething_platform::events::replay::{Start, replay};
use onething_proto::supervision::{self as pb, supervision_service_client::SupervisionServiceClient};

/// `onething supervision …`
#[derive(Args)]
pub struct SupervisionArgs {
    /// gRPC address of supervision.
    #[arg(long, global = true, default_value = "http://127.0.0.1:18065", env = "ONETHING_SUPERVISION")]
    addr: String,
    /// Bearer token (see `onething token`).
    #[arg(long, global = true, env = "ONETHING_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// KPIs per department over a period (RFC 3339 times).
    Kpis {
        /// Start, e.g. 2026-11-01T00:00:00+08:00.
        #[arg(long)]
        from: String,
        /// End (exclusive).
        #[arg(long)]
        to: String,
    },
    /// Re-runs every published draw (双随机) from its seed and inputs and checks the result.
    Redraw {
        /// NATS URL.
        #[arg(long, default_value = "nats://127.0.0.1:14222", env = "NATS_URL")]
        nats_url: String,
    },
}

fn ts(s: &str) -> anyhow::Result<prost_types::Timestamp> {
    let t = chrono::DateTime::parse_from_rfc3339(s).with_context(|| format!("{s} is not RFC 3339"))?;
    Ok(prost_types::Timestamp { seconds: t.timestamp(), nanos: 0 })
}

/// Runs `onething supervision …`.
///
/// # Errors
/// Connection failures, refused requests (explained), malformed times.
pub async fn supervision(args: SupervisionArgs) -> anyhow::Result<()> {
    match args.command {
        Command::Kpis { from, to } => {
            let mut c = SupervisionServiceClient::new(channel(&args.addr, args.token.as_deref()).await?);
            let r = c
                .get_kpis(pb::GetKpisRequest { period_start: Some(ts(&from)?), period_end: Some(ts(&to)?), at: None })
                .await
                .map_err(explain)?
                .into_inner();
            println!(
                "{:<12} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9}",
                "department", "finished", "on time", "overdue", "ratings", "satisf.", "requests"
            );
            for d in r.departments {
                println!(
                    "{:<12} {:>8} {:>7.0}% {:>8} {:>8} {:>8.2} {:>4}/{:<4}",
                    d.department,
                    d.cases_finished,
                    d.on_time_rate * 100.0,
                    d.overdue_now,
                    d.ratings,
                    d.satisfaction,
                    d.requests_completed,
                    d.requests_received
                );
            }
        }
        Command::Redraw { nats_url } => {
            let js =
                async_nats::jetstream::new(async_nats::connect(nats_url.as_str()).await.context("connecting to NATS")?);
            let draws =
                replay(&js, "ONETHING_SUPERVISION", "onething.supervision.v1.inspections.drawn", Start::All, 10_000)
                    .await?;
            for r in draws {
                let d: pb::InspectionsDrawn = r.event.decode()?;
                let again = onething_supervision::domain::draw(
                    d.seed,
                    usize::try_from(d.count).unwrap_or(0),
                    &d.candidates.iter().map(|c| (c.credit_code.clone(), c.risk_class.clone())).collect::<Vec<_>>(),
                    &d.prior_this_year
                        .iter()
                        .filter_map(|p| p.split_once('='))
                        .map(|(c, n)| (c.to_string(), n.parse().unwrap_or(0)))
                        .collect(),
                    &d.inspectors,
                    usize::try_from(d.inspectors_per_target.max(1)).unwrap_or(1),
                );
                let published: Vec<(String, Vec<String>)> =
                    d.inspections.iter().map(|i| (i.credit_code.clone(), i.inspectors.clone())).collect();
                let verdict = if again.inspections == published { "reproduced" } else { "DIFFERS" };
                println!("draw {} seed {} year {}: {verdict}", d.draw_id, d.seed, d.year);
                for (code, team) in &again.inspections {
                    println!("  {code}  {}", team.join(", "));
                }
            }
        }
    }
    Ok(())
}
