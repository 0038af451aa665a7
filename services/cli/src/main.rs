//! `onething`: run the whole mesh in one process for development (`onething dev`), mint
//! development tokens (`onething token`), client commands for cases and the registry, and
//! the benchmark (`onething bench`).

mod bench;
mod bundle;
mod chaos;
mod client;
mod dev;
mod elicence;
mod events;
mod import;
mod outbox;
mod seed;
mod supervise;

use clap::{Parser, Subcommand};

/// onething — apply once, several police departments each do their part.
#[derive(Parser)]
#[command(name = "onething", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every service in one process, each on its own port with its own database.
    Dev(dev::DevArgs),
    /// Run one service (the container entrypoint): defaults, then ONETHING_CONFIG, then
    /// ONETHING_… variables.
    Serve(dev::ServeArgs),
    /// Cases of a department (create, get, list, clerk actions).
    Case(client::CaseArgs),
    /// Household registry and shortcuts (register a birth, look up a person).
    Household(client::HouseholdArgs),
    /// Mint a development token signed with the key `onething dev` made.
    Token(client::TokenArgs),
    /// Make a service's signing key and print its JWK, scoped to that service alone.
    Key(client::KeyArgs),
    /// Import a file of reference data into a department (persons, vehicles, enterprises …).
    Import(import::ImportArgs),
    /// Put a service's development data into its database (`--remove`: delete exactly it).
    Seed(seed::SeedArgs),
    /// Development e-licences (电子证照): issue, revoke, verify.
    Elicence(elicence::ElicenceArgs),
    /// Apply for a bundle (一件事) once: one form, one set of materials.
    Apply(bundle::ApplyArgs),
    /// Follow a bundle: status, or a live view of each step.
    Bundle(bundle::BundleArgs),
    /// The event contract, live events, replays.
    Events(events::EventsArgs),
    /// Write the authorisation table (services/platform/src/policy.rs) into a copy of
    /// docs/security.md read from standard input, to standard output.
    PolicyDoc,
    /// Print docs/errors.md (every reason code, services/platform/src/reason.rs) to
    /// standard output.
    ErrorsDoc,
    /// Print docs/reference-data.md (every department's import kinds and columns) to
    /// standard output.
    ReferenceDoc,
    /// A service's outbox: quarantined events (list, retry, drop) and reconciliation.
    Outbox(outbox::OutboxArgs),
    /// Supervision: KPIs, checking published random draws.
    Supervision(supervise::SupervisionArgs),
    /// Chaos: the mesh as processes, bundles flowing, every part killed in turn; then
    /// checks nothing was lost or doubled (`make chaos`).
    Chaos(chaos::ChaosArgs),
    /// Benchmark: bundle throughput and latency through the whole mesh on PostgreSQL,
    /// beside what the broker and the database allow (`make bench`).
    Bench(bench::BenchArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Dev(args) => dev::run(args).await,
        Command::Serve(args) => dev::serve(args).await,
        Command::Case(args) => client::case(args).await,
        Command::Household(args) => client::household(args).await,
        Command::Token(args) => client::token(args),
        Command::Key(args) => client::key(args),
        Command::Import(args) => import::import(args).await,
        Command::Seed(args) => seed::seed(args).await,
        Command::Elicence(args) => elicence::elicence(args),
        Command::Apply(args) => bundle::apply(args).await,
        Command::Bundle(args) => bundle::bundle(args).await,
        Command::Events(args) => events::events(args).await,
        Command::PolicyDoc => {
            let doc = std::io::read_to_string(std::io::stdin())?;
            let out = onething_platform::policy::splice(&doc)
                .ok_or_else(|| anyhow::anyhow!("the table's markers are missing from the input"))?;
            print!("{out}");
            Ok(())
        }
        Command::ErrorsDoc => {
            print!("{}", onething_platform::reason::markdown());
            Ok(())
        }
        Command::ReferenceDoc => {
            print!("{}", onething_platform::import::markdown(&import::departments()));
            Ok(())
        }
        Command::Outbox(args) => outbox::outbox(args).await,
        Command::Supervision(args) => supervise::supervision(args).await,
        Command::Bench(args) => bench::run(args).await,
        Command::Chaos(args) => chaos::run(args).await,
    }
}
