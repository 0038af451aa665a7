//! One service under test, started in the test's runtime on port 0 with the test keys.

use crate::{
    db::{Backend, TestDb},
    identity::{auth_settings, dev_keys},
    nats::{NatsServer, nats_password},
};
use onething_platform::config::{NatsSettings, Settings};
use tokio_util::sync::CancellationToken;

/// Settings of a service under test: port 0, the given database and NATS, the test keys.
pub fn test_settings(db_url: &str, nats_url: &str) -> Settings {
    let mut s = Settings {
        grpc_addr: "127.0.0.1:0".into(),
        database_url: db_url.into(),
        nats: NatsSettings { url: nats_url.into(), ..Default::default() },
        shutdown_grace_seconds: 5,
        auth: auth_settings(),
        ..Default::default()
    };
    s.outbox.poll_interval_ms = 100;
    s.elicence.trust_list_file = crate::identity::dev_issuers().trust_list.display().to_string();
    s
}

/// A service running in the test's runtime.
pub struct Running {
    /// Its name, e.g. `household` (the audience of service tokens sent to it).
    pub name: &'static str,
    /// Its gRPC address.
    pub addr: std::net::SocketAddr,
    /// Its `/metrics` address, when its settings asked for one (`127.0.0.1:0` picks a port).
    pub metrics: Option<std::net::SocketAddr>,
    /// Its database (household's own; the test inspects it to prove nothing was written).
    pub db: sea_orm::DatabaseConnection,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    stopped: bool,
}

impl Running {
    /// A placeholder for a service that is not running (its address port is 0).
    pub fn stopped() -> Self {
        Self::stopped_at("127.0.0.1:0".parse().expect("address"))
    }

    /// A placeholder for a service that is not running, and listened at `addr`.
    pub fn stopped_at(addr: std::net::SocketAddr) -> Self {
        Self {
            name: "stopped",
            addr,
            metrics: None,
            db: sea_orm::DatabaseConnection::default(),
            stop: CancellationToken::new(),
            task: tokio::spawn(async { Ok(()) }),
            stopped: true,
        }
    }

    /// Whether this is a placeholder of a stopped service.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// `http://addr` for a tonic client.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the service gracefully and waits for it.
    ///
    /// # Panics
    /// When the service failed.
    pub async fn stop(self) {
        self.stop.cancel();
        self.task.await.expect("service task").expect("service stopped with an error");
    }
}

/// Starts household on `db_url` and `nats_url`.
///
/// # Panics
/// When it cannot start.
pub async fn start_household(db_url: &str, nats_url: &str) -> Running {
    start_household_with(test_settings(db_url, nats_url)).await
}

/// Starts household with `settings`.
///
/// # Panics
/// When it cannot start.
pub async fn start_household_with(settings: Settings) -> Running {
    start_service(onething_household::build(settings)).await
}

/// Starts household on a fresh SQLite database, connected to `nats` as its own NATS user
/// (`NatsServer::start_secured`).
///
/// # Panics
/// When it cannot start.
pub async fn start_household_as_its_user(nats: &NatsServer) -> (TestDb, Running) {
    let db = TestDb::fresh(Backend::Sqlite).await.expect("database");
    let mut settings = test_settings(&db.url, &nats.url());
    settings.nats.user = "household".into();
    settings.nats.password = nats_password("household");
    let household = start_household_with(settings).await;
    (db, household)
}

/// Starts exit-entry on `db_url` and `nats_url`.
///
/// # Panics
/// When it cannot start.
pub async fn start_exit_entry(db_url: &str, nats_url: &str) -> Running {
    start_service(onething_exit_entry::build(test_settings(db_url, nats_url))).await
}

/// Starts vehicle on `db_url` and `nats_url`.
///
/// # Panics
/// When it cannot start.
pub async fn start_vehicle(db_url: &str, nats_url: &str) -> Running {
    start_service(onething_vehicle::build(test_settings(db_url, nats_url))).await
}

/// Starts liaison on `db_url` and `nats_url`.
///
/// # Panics
/// When it cannot start.
pub async fn start_liaison(db_url: &str, nats_url: &str) -> Running {
    start_service(onething_liaison::build(test_settings(db_url, nats_url))).await
}

/// Starts service `name` (a department or `coordinator`) with `settings`.
///
/// # Panics
/// When it cannot start, or for an unknown name.
pub async fn start_named(name: &str, settings: Settings) -> Running {
    start_named_with(name, settings, true).await
}

/// As [`start_named`]; `seeded`: with the service's development data.
///
/// # Panics
/// When it cannot start, or for an unknown name.
pub async fn start_named_with(name: &str, settings: Settings, seeded: bool) -> Running {
    match name {
        "household" => start_built(onething_household::build(settings), seeded).await,
        "exit_entry" => start_built(onething_exit_entry::build(settings), seeded).await,
        "vehicle" => start_built(onething_vehicle::build(settings), seeded).await,
        "liaison" => start_built(onething_liaison::build(settings), seeded).await,
        "coordinator" | "supervision" => {
            let mut settings = settings;
            settings.auth.signing_key_file = dev_keys().signing_key.display().to_string();
            if name == "coordinator" {
                start_service(onething_coordinator::build(settings)).await
            } else {
                start_service(onething_supervision::build(settings)).await
            }
        }
        other => panic!("no service {other}"),
    }
}

/// Runs a service being built by `build` in the test's runtime, with its development data
/// (as `onething dev` runs it).
///
/// # Panics
/// When it cannot start.
pub async fn start_service(
    build: impl std::future::Future<Output = anyhow::Result<onething_platform::runtime::Service>>,
) -> Running {
    start_built(build, true).await
}

/// As [`start_service`], without development data: as production starts it.
///
/// # Panics
/// When it cannot start.
pub async fn start_service_unseeded(
    build: impl std::future::Future<Output = anyhow::Result<onething_platform::runtime::Service>>,
) -> Running {
    start_built(build, false).await
}

/// The development data of service `name`, if it keeps any.
pub fn dev_data(name: &str) -> Option<&'static dyn onething_platform::store::dev_data::DevData> {
    match name {
        "household" => Some(&onething_household::store::DevRegistry),
        "exit_entry" => Some(&onething_exit_entry::store::DevRecords),
        "vehicle" => Some(&onething_vehicle::store::DevRecords),
        "liaison" => Some(&onething_liaison::store::DevRecords),
        _ => None,
    }
}

async fn start_built(
    build: impl std::future::Future<Output = anyhow::Result<onething_platform::runtime::Service>>,
    seeded: bool,
) -> Running {
    init_telemetry();
    let app = build.await.unwrap_or_else(|e| panic!("service starts: {e:#}"));
    if let Some(data) = dev_data(app.name()).filter(|_| seeded) {
        onething_platform::store::dev_data::apply(app.db(), data, false).await.expect("development data");
    }
    let (name, addr, metrics) = (app.name(), app.grpc_addr(), app.metrics_addr());
    let db = app.db().clone();
    let stop = CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(stop.clone()));
    Running { name, addr, metrics, db, stop, task, stopped: false }
}

/// Installs telemetry once per test process so spans have trace ids.
pub fn init_telemetry() {
    let log = onething_platform::config::LogSettings { format: "pretty".into(), filter: "warn".into() };
    std::mem::forget(onething_platform::telemetry::init("onething-tests", &log));
}
