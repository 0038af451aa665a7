//! The mesh under test: a nats-server with JetStream on a free port, a fresh PostgreSQL
//! database per service, and every service as its own process (`onething serve <svc>`),
//! so the report can give each its CPU and memory. Everything is stopped and dropped on
//! drop, also when the benchmark fails half-way.

use anyhow::{Context as _, bail};
use onething_platform::events::nats_server::{NatsServerProcess, NatsServerSpec};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use std::{
    net::TcpListener,
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

/// The services of the mesh, each started as its own process.
pub const SERVICES: [&str; 6] = onething_platform::service_kind::SERVICE_NAMES;

/// A free TCP port on loopback.
///
/// # Errors
/// No port could be bound.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A nats-server with JetStream in a temporary store, on a port it picks; killed on drop.
pub struct Nats {
    process: NatsServerProcess,
    /// Client URL.
    pub url: String,
    _store: tempfile::TempDir,
}

impl Nats {
    /// Starts `bin`, syncing its store every `sync_interval`, and waits until JetStream
    /// answers.
    ///
    /// # Errors
    /// As [`NatsServerProcess::start`].
    pub async fn start(bin: &Path, sync_interval: &str) -> anyhow::Result<Self> {
        let store = tempfile::tempdir().context("a folder for the JetStream store")?;
        let process = NatsServerProcess::start(NatsServerSpec::open(bin, store.path(), sync_interval)).await?;
        Ok(Self { url: process.url(), process, _store: store })
    }

    /// Its process id (0 while killed).
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Kills it with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts it again on its port and store, and waits until JetStream answers.
    ///
    /// # Errors
    /// As [`NatsServerProcess::restart`].
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.process.restart().await
    }
}

/// Databases made for one run on a PostgreSQL server, dropped (forcibly) on drop.
pub struct Databases {
    admin_url: String,
    /// (label, database name) of each database made.
    made: Vec<(String, String)>,
}

impl Databases {
    /// An empty set on the server whose maintenance database is `admin_url`.
    pub fn new(admin_url: &str) -> Self {
        Self { admin_url: admin_url.to_string(), made: Vec::new() }
    }

    /// Creates a fresh database and returns its URL.
    ///
    /// # Errors
    /// The server is unreachable or refuses to create it.
    pub async fn create(&mut self, admin: &DatabaseConnection, label: &str) -> anyhow::Result<String> {
        let name = format!("onething_bench_{label}_{}", uuid::Uuid::now_v7().simple());
        admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.context("CREATE DATABASE")?;
        self.made.push((label.to_string(), name.clone()));
        Ok(onething_platform::db::database_url(&self.admin_url, &name))
    }

    /// The URL of the database made under `label`.
    pub fn url(&self, label: &str) -> Option<String> {
        self.made
            .iter()
            .find(|(l, _)| l == label)
            .map(|(_, name)| onething_platform::db::database_url(&self.admin_url, name))
    }

    /// (label, database name) of the databases made so far.
    pub fn made(&self) -> &[(String, String)] {
        &self.made
    }
}

impl Drop for Databases {
    fn drop(&mut self) {
        let names = std::mem::take(&mut self.made).into_iter().map(|(_, name)| name).collect();
        onething_platform::db::drop_databases_blocking(&self.admin_url, names);
    }
}

/// One running service process.
pub struct Process {
    /// Process name: the service's, with `-2`, `-3` … for its further replicas.
    pub name: String,
    /// Which of [`SERVICES`] it runs.
    service: usize,
    /// gRPC endpoint, `http://127.0.0.1:port`.
    pub endpoint: String,
    child: Option<Child>,
}

impl Process {
    /// Its process id (0 while killed).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    fn port(&self) -> u16 {
        self.endpoint.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(0)
    }
}

/// The six services, each its own process (the coordinator in one or more replicas);
/// killed on drop.
pub struct Services {
    /// The processes, in [`SERVICES`] order, a service's replicas together.
    pub all: Vec<Process>,
    exe: std::path::PathBuf,
    urls: Vec<String>,
    nats_url: String,
    keys: onething_platform::auth::DevKeys,
    /// The development issuers' trust list: the load's business licences verify.
    trust_list: std::path::PathBuf,
    logs: std::path::PathBuf,
    /// The gRPC port of each service's first process, by [`SERVICES`] index: the peers
    /// the departments' callers are given.
    ports: Vec<u16>,
}

impl Services {
    /// Starts every service with its database from `urls` (same order as [`SERVICES`]),
    /// NATS at `nats_url`, the development keys in `keys`, logs under `logs`, and waits
    /// until each reports SERVING.
    ///
    /// # Errors
    /// A process that cannot start, exits, or is not serving within 60 seconds (its log
    /// file is named).
    pub async fn start(
        exe: &Path,
        urls: &[String],
        nats_url: &str,
        keys: &onething_platform::auth::DevKeys,
        logs: &Path,
    ) -> anyhow::Result<Self> {
        Self::start_with(exe, urls, nats_url, keys, logs, 1).await
    }

    /// As [`Services::start`], with `coordinators` coordinator replicas (processes sharing
    /// its database), named `coordinator`, `coordinator-2` ….
    ///
    /// # Errors
    /// As [`Services::start`].
    pub async fn start_with(
        exe: &Path,
        urls: &[String],
        nats_url: &str,
        keys: &onething_platform::auth::DevKeys,
        logs: &Path,
        coordinators: usize,
    ) -> anyhow::Result<Self> {
        Self::start_of(exe, urls, nats_url, keys, logs, coordinators, None).await
    }

    /// Service `only` alone (its database `url`), as [`Services::start`] starts it.
    ///
    /// # Errors
    /// As [`Services::start`].
    pub async fn start_one(
        exe: &Path,
        only: &str,
        url: &str,
        nats_url: &str,
        keys: &onething_platform::auth::DevKeys,
        logs: &Path,
    ) -> anyhow::Result<Self> {
        let urls: Vec<String> =
            SERVICES.iter().map(|s| if *s == only { url.to_string() } else { String::new() }).collect();
        Self::start_of(exe, &urls, nats_url, keys, logs, 1, Some(only)).await
    }

    async fn start_of(
        exe: &Path,
        urls: &[String],
        nats_url: &str,
        keys: &onething_platform::auth::DevKeys,
        logs: &Path,
        coordinators: usize,
        only: Option<&str>,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(logs).with_context(|| format!("creating {}", logs.display()))?;
        let mut all = Vec::new();
        for (service, name) in SERVICES.iter().enumerate().filter(|(_, n)| only.is_none_or(|o| o == **n)) {
            let replicas = if *name == "coordinator" { coordinators.max(1) } else { 1 };
            for r in 1..=replicas {
                let name = if r == 1 { (*name).to_string() } else { format!("{name}-{r}") };
                let endpoint = format!("http://127.0.0.1:{}", free_port()?);
                all.push(Process { name, service, endpoint, child: None });
            }
        }
        let ports = SERVICES
            .iter()
            .enumerate()
            .map(|(i, _)| all.iter().find(|p| p.service == i).map_or(0, Process::port))
            .collect();
        let mut me = Self {
            all,
            exe: exe.to_path_buf(),
            urls: urls.to_vec(),
            nats_url: nats_url.to_string(),
            keys: keys.clone(),
            trust_list: onething_platform::elicence::ensure_dev_issuers(keys.folder())?.trust_list,
            logs: logs.to_path_buf(),
            ports,
        };
        for i in 0..me.all.len() {
            me.all[i].child = Some(me.spawn(i)?);
        }
        for i in 0..me.all.len() {
            me.wait(i).await?;
        }
        Ok(me)
    }

    /// Process `i` of [`Services::all`] as a new process, its log appended to.
    fn spawn(&self, i: usize) -> anyhow::Result<Child> {
        let p = &self.all[i];
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.logs.join(format!("{}.log", p.name)))?;
        let mut cmd = Command::new(&self.exe);
        cmd.arg("serve")
            .arg(SERVICES[p.service])
            .env("ONETHING_GRPC_ADDR", format!("127.0.0.1:{}", p.port()))
            .env("ONETHING_DATABASE_URL", &self.urls[p.service])
            .env("ONETHING_NATS__URL", &self.nats_url)
            .env("ONETHING_AUTH__JWKS_FILE", &self.keys.jwks)
            .env("ONETHING_AUTH__SIGNING_KEY_FILE", &self.keys.signing_key)
            .env("ONETHING_ELICENCE__TRUST_LIST_FILE", &self.trust_list)
            .env("ONETHING_LOG__FORMAT", "json")
            .env("ONETHING_METRICS_ADDR", "")
            // The mesh under test wants the services' own trace export off, whatever the shell has.
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        for (j, peer) in SERVICES.iter().enumerate() {
            if *peer != "coordinator" && *peer != "supervision" {
                cmd.env(
                    format!("ONETHING_PEERS__{}", peer.to_ascii_uppercase()),
                    format!("http://127.0.0.1:{}", self.ports[j]),
                );
            }
        }
        cmd.spawn().with_context(|| format!("starting {} serve {}", self.exe.display(), p.name))
    }

    async fn wait(&mut self, i: usize) -> anyhow::Result<()> {
        let log = self.logs.join(format!("{}.log", self.all[i].name));
        wait_serving(&mut self.all[i], &log).await
    }

    fn index(&self, name: &str) -> anyhow::Result<usize> {
        self.all.iter().position(|p| p.name == name).with_context(|| format!("no process {name}"))
    }

    /// The processes' names, in start order.
    pub fn names(&self) -> Vec<String> {
        self.all.iter().map(|p| p.name.clone()).collect()
    }

    /// The endpoints of every process of service `service` (its replicas).
    pub fn endpoints(&self, service: &str) -> Vec<String> {
        self.all.iter().filter(|p| SERVICES[p.service] == service).map(|p| p.endpoint.clone()).collect()
    }

    /// Kills process `name` with SIGKILL, as a crash would.
    ///
    /// # Errors
    /// No such process.
    pub fn kill(&mut self, name: &str) -> anyhow::Result<()> {
        let i = self.index(name)?;
        if let Some(mut c) = self.all[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        Ok(())
    }

    /// Starts service `name` again, as before, and waits until it is serving.
    ///
    /// # Errors
    /// As [`Services::start`].
    pub async fn restart(&mut self, name: &str) -> anyhow::Result<()> {
        self.kill(name)?;
        let i = self.index(name)?;
        self.all[i].child = Some(self.spawn(i)?);
        self.wait(i).await
    }

    /// The endpoint of service `name`.
    pub fn endpoint(&self, name: &str) -> Option<&str> {
        self.all.iter().find(|p| p.name == name).map(|p| p.endpoint.as_str())
    }
}

async fn wait_serving(p: &mut Process, log: &Path) -> anyhow::Result<()> {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
    for _ in 0..600 {
        if let Some(c) = p.child.as_mut()
            && let Some(status) = c.try_wait()?
        {
            bail!("{} exited ({status}); see {}", p.name, log.display());
        }
        if let Ok(ch) = tonic::transport::Endpoint::from_shared(p.endpoint.clone())?.connect().await
            && let Ok(r) = HealthClient::new(ch).check(HealthCheckRequest { service: String::new() }).await
            && r.into_inner().status() == ServingStatus::Serving
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{} was not serving after 60 s; see {}", p.name, log.display())
}

impl Drop for Services {
    fn drop(&mut self) {
        for p in &mut self.all {
            if let Some(mut c) = p.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}
