//! The mesh under test: a nats-server with JetStream on a free port, a fresh PostgreSQL
//! database per service, and every service as its own process (`onething serve <svc>`),
//! so the report can give each its CPU and memory. Everything is stopped and dropped on
//! drop, also when the benchmark fails half-way.

use anyhow::{Context as _, bail};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use std::{
    net::TcpListener,
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

/// The services of the mesh, each started as its own process.
pub const SERVICES: [&str; 6] = ["household", "exit_entry", "vehicle", "liaison", "coordinator", "supervision"];

/// A free TCP port on loopback.
///
/// # Errors
/// No port could be bound.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A nats-server with JetStream in a temporary store; killed on drop.
pub struct Nats {
    child: Child,
    /// Client URL.
    pub url: String,
    _store: tempfile::TempDir,
}

impl Nats {
    /// Starts `bin` on a free port and waits until JetStream answers.
    ///
    /// # Errors
    /// The binary is missing or the server does not come up within 10 seconds.
    pub async fn start(bin: &Path) -> anyhow::Result<Self> {
        if !bin.exists() {
            bail!("{} is missing: run `make tools` (or pass --nats-server)", bin.display());
        }
        let store = tempfile::tempdir().context("a folder for the JetStream store")?;
        let port = free_port()?;
        let child = Command::new(bin)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let me = Self { child, url: format!("nats://127.0.0.1:{port}"), _store: store };
        for _ in 0..200 {
            if let Ok(c) = async_nats::connect(&me.url).await
                && async_nats::jetstream::new(c).query_account().await.is_ok()
            {
                return Ok(me);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("nats-server did not answer at {}", me.url)
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
        Ok(database_url(&self.admin_url, &name))
    }

    /// (label, database name) of the databases made so far.
    pub fn made(&self) -> &[(String, String)] {
        &self.made
    }
}

/// The URL of database `name` on the server of `admin_url`.
pub fn database_url(admin_url: &str, name: &str) -> String {
    let (base, query) = admin_url.split_once('?').map_or((admin_url, ""), |(b, q)| (b, q));
    let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
    if query.is_empty() { format!("{base}/{name}") } else { format!("{base}/{name}?{query}") }
}

impl Drop for Databases {
    fn drop(&mut self) {
        if self.made.is_empty() {
            return;
        }
        let url = self.admin_url.clone();
        let names: Vec<String> = std::mem::take(&mut self.made).into_iter().map(|(_, name)| name).collect();
        // Drop runs outside async: a small runtime on its own thread does the cleanup.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async {
                if let Ok(admin) = onething_platform::db::connect(&url).await {
                    for name in names {
                        let _ = admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
                    }
                }
            });
        })
        .join();
    }
}

/// One running service process.
pub struct Process {
    /// Service name.
    pub name: String,
    /// gRPC endpoint, `http://127.0.0.1:port`.
    pub endpoint: String,
    child: Child,
}

impl Process {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// The six services, each its own process; killed on drop.
pub struct Services {
    /// The processes, in [`SERVICES`] order.
    pub all: Vec<Process>,
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
        std::fs::create_dir_all(logs).with_context(|| format!("creating {}", logs.display()))?;
        let ports: Vec<u16> = SERVICES.iter().map(|_| free_port()).collect::<anyhow::Result<_>>()?;
        let mut me = Self { all: Vec::new() };
        for (i, name) in SERVICES.iter().enumerate() {
            let log = std::fs::File::create(logs.join(format!("{name}.log")))?;
            let mut cmd = Command::new(exe);
            cmd.arg("serve")
                .arg(name)
                .env("ONETHING_GRPC_ADDR", format!("127.0.0.1:{}", ports[i]))
                .env("ONETHING_DATABASE_URL", &urls[i])
                .env("ONETHING_NATS__URL", nats_url)
                .env("ONETHING_AUTH__JWKS_FILE", &keys.jwks)
                .env("ONETHING_AUTH__SIGNING_KEY_FILE", &keys.signing_key)
                .env("ONETHING_LOG__FORMAT", "json")
                .env("ONETHING_METRICS_ADDR", "")
                // The benchmark wants the services' own trace export off, whatever the shell has.
                .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
                .stdout(Stdio::from(log.try_clone()?))
                .stderr(Stdio::from(log));
            for (j, peer) in SERVICES.iter().enumerate() {
                if *peer != "coordinator" && *peer != "supervision" {
                    cmd.env(
                        format!("ONETHING_PEERS__{}", peer.to_ascii_uppercase()),
                        format!("http://127.0.0.1:{}", ports[j]),
                    );
                }
            }
            let child = cmd.spawn().with_context(|| format!("starting {} serve {name}", exe.display()))?;
            me.all.push(Process {
                name: (*name).to_string(),
                endpoint: format!("http://127.0.0.1:{}", ports[i]),
                child,
            });
        }
        for p in &mut me.all {
            wait_serving(p, &logs.join(format!("{}.log", p.name))).await?;
        }
        Ok(me)
    }

    /// The endpoint of service `name`.
    pub fn endpoint(&self, name: &str) -> Option<&str> {
        self.all.iter().find(|p| p.name == name).map(|p| p.endpoint.as_str())
    }
}

async fn wait_serving(p: &mut Process, log: &Path) -> anyhow::Result<()> {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
    for _ in 0..600 {
        if let Some(status) = p.child.try_wait()? {
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
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_keep_the_server_and_the_options() {
        assert_eq!(
            database_url("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(database_url("postgres://u@h/postgres?sslmode=disable", "x"), "postgres://u@h/x?sslmode=disable");
    }
}
