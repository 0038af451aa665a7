//! `onething events`: the contract as Markdown, live events, and replays of a stream.

use anyhow::Context as _;
use clap::{Args, Subcommand};
use futures::StreamExt;
use onething_platform::events::{
    Envelope, contract,
    replay::{self, Start},
};
use onething_proto::{common, coordinator, exit_entry, household, liaison, supervision, vehicle};

/// `onething events …`
#[derive(Args)]
pub struct EventsArgs {
    /// NATS URL.
    #[arg(long, global = true, default_value = "nats://127.0.0.1:14222", env = "NATS_URL")]
    nats_url: String,
    /// NATS user. The users of deploy/nats/auth.conf read through their own durable
    /// consumers only, so `tail` and `replay` (a core subscription, an ephemeral consumer)
    /// are for a server without authentication, e.g. `make run`'s.
    #[arg(long, global = true, default_value = "")]
    user: String,
    /// NATS password.
    #[arg(long, global = true, default_value = "", env = "NATS_PASSWORD", hide_env_values = true)]
    password: String,
    #[command(subcommand)]
    command: EventsCommand,
}

#[derive(Subcommand)]
enum EventsCommand {
    /// Print docs/events.md (the contract) to standard output.
    Doc,
    /// Print events as they are published.
    Tail {
        /// Subject filter.
        #[arg(default_value = "onething.>")]
        subject: String,
    },
    /// Re-read a stream.
    Replay {
        /// Stream, e.g. ONETHING_HOUSEHOLD.
        #[arg(long)]
        stream: String,
        /// Subject filter.
        #[arg(long, default_value = ">")]
        subject: String,
        /// From this time (RFC 3339), e.g. 2026-11-29T00:00:00+08:00.
        #[arg(long, conflicts_with = "after")]
        since: Option<String>,
        /// After this stream sequence.
        #[arg(long)]
        after: Option<u64>,
        /// At most this many.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
}

/// The payload of a onething event, decoded by its type, for people to read.
pub fn describe(e: &Envelope) -> String {
    macro_rules! try_types {
        ($($t:ty),*) => {
            $(if e.ce_type == <$t as prost::Name>::full_name() {
                return match e.decode::<$t>() { Ok(m) => format!("{m:?}"), Err(err) => format!("<{err}>") };
            })*
        };
    }
    try_types!(
        common::CaseStateChanged,
        household::PersonBorn,
        household::PersonDeceased,
        household::CollectiveHouseholdEstablished,
        exit_entry::WorkResidencePermitGranted,
        exit_entry::TravelDocumentsCancelled,
        vehicle::DrivingLicenceCancelled,
        vehicle::BookingRescheduled,
        vehicle::ProxyInspectionAdvanced,
        liaison::EnterpriseRequestChanged,
        coordinator::BundleChanged,
        supervision::NoticeIssued,
        supervision::ComplaintChanged,
        supervision::RatingChanged,
        supervision::UnresolvedResolved,
        supervision::InspectionsDrawn
    );
    format!("<{} bytes of {}>", e.data.len(), e.ce_type)
}

fn line(seq: Option<u64>, subject: &str, e: &Envelope) -> String {
    let seq = seq.map(|s| format!("#{s} ")).unwrap_or_default();
    format!("{seq}{} {subject} {} {}", e.time.to_rfc3339(), e.id, describe(e))
}

async fn connect(args: &EventsArgs) -> anyhow::Result<async_nats::Client> {
    let mut opts = async_nats::ConnectOptions::new().name("onething-cli");
    if !args.user.is_empty() {
        opts = opts
            .user_and_password(args.user.clone(), args.password.clone())
            .custom_inbox_prefix(onething_platform::events::nats::inbox_prefix(&args.user));
    }
    opts.connect(args.nats_url.as_str()).await.with_context(|| format!("connecting to {}", args.nats_url))
}

/// Runs `onething events …`.
///
/// # Errors
/// NATS unreachable, an unknown stream, or a malformed time.
pub async fn events(args: EventsArgs) -> anyhow::Result<()> {
    match &args.command {
        EventsCommand::Doc => print!("{}", contract::markdown()),
        EventsCommand::Tail { subject } => {
            let client = connect(&args).await?;
            let mut sub = client.subscribe(subject.clone()).await?;
            while let Some(m) = sub.next().await {
                match Envelope::from_nats(m.headers.as_ref(), m.payload.clone()) {
                    Ok(e) => println!("{}", line(None, m.subject.as_str(), &e)),
                    Err(err) => println!("{} <not a onething event: {err}>", m.subject),
                }
            }
        }
        EventsCommand::Replay { stream, subject, since, after, limit } => {
            let client = connect(&args).await?;
            let js = async_nats::jetstream::new(client);
            let start = match (since, after) {
                (Some(t), _) => {
                    Start::Since(chrono::DateTime::parse_from_rfc3339(t).context("--since is RFC 3339")?.to_utc())
                }
                (None, Some(seq)) => Start::After(*seq),
                (None, None) => Start::All,
            };
            for r in replay::replay(&js, stream, subject, start, *limit).await? {
                println!("{}", line(Some(r.sequence), &r.subject, &r.event));
            }
        }
    }
    Ok(())
}
