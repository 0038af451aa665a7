//! Test harness for the end-to-end suite: a throwaway nats-server with JetStream per test
//! (stoppable and restartable on the same port and store), a fresh database per test
//! (SQLite file or a new PostgreSQL database), and services started in-process on port 0.

use anyhow::{Context as _, bail};
use onething_platform::{
    auth::{AuthSettings, DevKeys, Minter, Principal, SubjectKind},
    config::{NatsSettings, Settings},
};
use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::OnceLock,
    time::Duration,
};
use tokio_util::sync::CancellationToken;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in a temporary folder.
    Sqlite,
    /// A fresh database on the local PostgreSQL server.
    Postgres,
}

/// The pinned nats-server: `NATS_SERVER_BIN`, else the one `make tools` installs.
pub fn nats_server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("NATS_SERVER_BIN") {
        return PathBuf::from(p);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    root.join(".tools/py/bin/nats-server")
}

/// A free TCP port on the loopback interface.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("no free port on loopback")
}

/// A nats-server with JetStream owned by one test.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    store: tempfile::TempDir,
    secured: bool,
}

/// The password a test gives NATS user `user` of deploy/nats/auth.conf.
pub fn nats_password(user: &str) -> String {
    format!("test-{user}-password")
}

/// The NATS users of deploy/nats/auth.conf: the services, then the outside departments of
/// deploy/nats/departments.toml (`nats_permissions` checks the two lists agree).
pub const NATS_USERS: [&str; 11] = [
    "household",
    "exit_entry",
    "vehicle",
    "liaison",
    "coordinator",
    "supervision",
    "social_security",
    "medical_insurance",
    "market_regulation",
    "education",
    "civil_affairs",
];

impl NatsServer {
    /// Starts a server on a free port with a temporary JetStream store, no authentication.
    ///
    /// # Panics
    /// When the pinned binary is missing (run `make tools`) or the server does not come up.
    pub async fn start() -> Self {
        Self::launch(false).await
    }

    /// Starts a server with the users and permissions of `deploy/nats/dev.conf`.
    ///
    /// # Panics
    /// As [`NatsServer::start`].
    pub async fn start_secured() -> Self {
        Self::launch(true).await
    }

    async fn launch(secured: bool) -> Self {
        let store = tempfile::tempdir().expect("temporary store");
        let mut s = Self { child: None, port: free_port(), store, secured };
        s.spawn().await.expect("nats-server did not start");
        s
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let bin = nats_server_bin();
        if !bin.exists() {
            bail!("{} is missing: run `make tools`", bin.display());
        }
        let mut cmd = Command::new(&bin);
        if self.secured {
            let conf = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/nats/dev.conf");
            cmd.arg("-c").arg(conf);
            for user in NATS_USERS {
                cmd.env(format!("NATS_{}_PASSWORD", user.to_ascii_uppercase()), nats_password(user));
            }
        }
        let child = cmd
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        self.child = Some(child);
        // Household may ask $JS.API.INFO, so it serves as the readiness probe.
        let opts = || {
            if self.secured {
                async_nats::ConnectOptions::with_user_and_password("household".into(), nats_password("household"))
                    .custom_inbox_prefix(onething_platform::events::nats::inbox_prefix("household"))
            } else {
                async_nats::ConnectOptions::new()
            }
        };
        for _ in 0..100 {
            if let Ok(c) = opts().connect(self.url()).await {
                // JetStream answers once the server has loaded its store.
                if async_nats::jetstream::new(c).query_account().await.is_ok() {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("nats-server on port {} did not answer", self.port)
    }

    /// The client URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops the server (as a crash would: SIGKILL).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port with the same store.
    ///
    /// # Panics
    /// When it does not come back.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await.expect("nats-server did not restart");
    }

    /// A JetStream context on this server.
    pub async fn jetstream(&self) -> async_nats::jetstream::Context {
        async_nats::jetstream::new(async_nats::connect(self.url()).await.expect("connect to test nats"))
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A database owned by one test; a PostgreSQL database is dropped with it.
pub struct TestDb {
    /// sea-orm URL.
    pub url: String,
    pg_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

/// URL of the PostgreSQL server's maintenance database (`ONETHING_TEST_PG` overrides).
pub fn pg_admin_url() -> String {
    std::env::var("ONETHING_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

impl TestDb {
    /// A fresh database, or `None` when PostgreSQL is unreachable outside CI.
    ///
    /// # Panics
    /// When PostgreSQL is unreachable and `CI` is set: CI must not silently skip.
    pub async fn fresh(backend: Backend) -> Option<Self> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temporary folder");
                let url = onething_platform::config::sqlite_url(&dir.path().join("test.db"));
                Some(Self { url, pg_name: None, _dir: Some(dir) })
            }
            Backend::Postgres => {
                let admin = match onething_platform::db::connect(&pg_admin_url()).await {
                    Ok(db) => db,
                    Err(e) if std::env::var_os("CI").is_some() => {
                        panic!("PostgreSQL unreachable in CI: {e:#}")
                    }
                    Err(e) => {
                        eprintln!("SKIPPED: PostgreSQL unreachable ({e:#}); set CI to make this fail");
                        return None;
                    }
                };
                let name = format!("onething_t_{}", uuid::Uuid::now_v7().simple());
                use sea_orm::ConnectionTrait;
                admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.expect("CREATE DATABASE");
                let url = onething_platform::db::database_url(&pg_admin_url(), &name);
                Some(Self { url, pg_name: Some(name), _dir: None })
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(name) = self.pg_name.take() {
            onething_platform::db::drop_databases_blocking(&pg_admin_url(), vec![name]);
        }
    }
}

/// The development key pair of this test process (made once, in a temporary folder).
pub fn dev_keys() -> &'static DevKeys {
    static KEYS: OnceLock<(DevKeys, tempfile::TempDir)> = OnceLock::new();
    &KEYS
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("key folder");
            (onething_platform::auth::ensure_dev_keys(dir.path()).expect("dev keys"), dir)
        })
        .0
}

/// Auth settings that trust [`dev_keys`].
pub fn auth_settings() -> AuthSettings {
    AuthSettings { jwks_file: dev_keys().jwks.display().to_string(), ..Default::default() }
}

/// Signs tokens with [`dev_keys`].
pub fn minter() -> Minter {
    Minter::load(&dev_keys().signing_key, auth_settings()).expect("minter")
}

/// A one-hour token for `p`.
pub fn token(p: Principal) -> String {
    minter().mint(p, 3600).expect("mint")
}

fn principal(sub: &str, kind: SubjectKind, dept: &str, roles: &[&str]) -> Principal {
    Principal {
        sub: sub.into(),
        kind,
        dept: dept.into(),
        roles: roles.iter().map(|r| (*r).to_string()).collect(),
        id_number: String::new(),
        credit_code: String::new(),
        passport_number: String::new(),
        actor: None,
    }
}

/// The identity of service `name`, signing with the development key.
pub fn service_identity(name: &str) -> onething_platform::auth::ServiceIdentity {
    let settings = onething_platform::auth::AuthSettings {
        signing_key_file: dev_keys().signing_key.display().to_string(),
        ..auth_settings()
    };
    onething_platform::auth::ServiceIdentity::load(name, &settings).expect("service identity")
}

/// Staff of `dept` with `roles`, as a principal (to sign with another key or issuer).
pub fn staff_principal(dept: &str, roles: &[&str]) -> Principal {
    principal(&format!("{dept}-staff"), SubjectKind::Staff, dept, roles)
}

/// Staff of `dept` with `roles`.
pub fn staff(dept: &str, roles: &[&str]) -> String {
    token(staff_principal(dept, roles))
}

/// A token of our service `name` (e.g. `coordinator`) addressed to service `callee`.
pub fn service(name: &str, callee: &str) -> String {
    minter().mint_to(principal(name, SubjectKind::Service, name, &[]), callee, 3600).expect("mint")
}

/// A citizen with ID number `id`.
pub fn citizen_token(id: &str) -> String {
    let mut p = principal(&format!("citizen-{}", &id[id.len().saturating_sub(4)..]), SubjectKind::Citizen, "", &[]);
    p.id_number = id.into();
    token(p)
}

/// An enterprise with credit code `code`, as a principal (to sign with another key or issuer).
pub fn enterprise_principal(code: &str) -> Principal {
    let mut p = principal(&format!("enterprise-{code}"), SubjectKind::Enterprise, "", &[]);
    p.credit_code = code.into();
    p
}

/// An enterprise with credit code `code`.
pub fn enterprise_token(code: &str) -> String {
    token(enterprise_principal(code))
}

/// Adds `authorization: Bearer …` to every request.
#[derive(Clone)]
pub struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl Bearer {
    /// With `token`; `None` sends no header at all.
    pub fn new(token: Option<&str>) -> Self {
        Self(token.map(|t| format!("Bearer {t}").parse().expect("ASCII token")))
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// A channel whose requests carry `token`.
pub type Authed = tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Bearer>;

/// Connects to `endpoint` as `token`.
///
/// # Panics
/// When the service is not there.
pub async fn connect_as(endpoint: &str, token: Option<&str>) -> Authed {
    let channel = tonic::transport::Channel::from_shared(endpoint.to_string())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    tonic::service::interceptor::InterceptedService::new(channel, Bearer::new(token))
}

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
    s
}

/// A service running in the test's runtime.
pub struct Running {
    /// Its name, e.g. `household` (the audience of service tokens sent to it).
    pub name: &'static str,
    /// Its gRPC address.
    pub addr: std::net::SocketAddr,
    /// Its database (household's own; the test inspects it to prove nothing was written).
    pub db: sea_orm::DatabaseConnection,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// A placeholder for a service that is not running (its address port is 0).
    pub fn stopped() -> Self {
        Self {
            name: "stopped",
            addr: "127.0.0.1:0".parse().expect("address"),
            db: sea_orm::DatabaseConnection::default(),
            stop: CancellationToken::new(),
            task: tokio::spawn(async { Ok(()) }),
        }
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
    match name {
        "household" => start_service(onething_household::build(settings)).await,
        "exit_entry" => start_service(onething_exit_entry::build(settings)).await,
        "vehicle" => start_service(onething_vehicle::build(settings)).await,
        "liaison" => start_service(onething_liaison::build(settings)).await,
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

/// Runs a service being built by `build` in the test's runtime.
///
/// # Panics
/// When it cannot start.
pub async fn start_service(
    build: impl std::future::Future<Output = anyhow::Result<onething_platform::runtime::Service>>,
) -> Running {
    init_telemetry();
    let app = build.await.unwrap_or_else(|e| panic!("service starts: {e:#}"));
    let (name, addr) = (app.name(), app.grpc_addr());
    let db = app.db().clone();
    let stop = CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(stop.clone()));
    Running { name, addr, db, stop, task }
}

/// Installs telemetry once per test process so spans have trace ids.
pub fn init_telemetry() {
    let log = onething_platform::config::LogSettings { format: "pretty".into(), filter: "warn".into() };
    std::mem::forget(onething_platform::telemetry::init("onething-tests", &log));
}

/// Polls `check` every 50 ms until it returns `Some`, for at most `limit`.
/// Waiting is not timing: no test asserts how long anything took.
///
/// # Errors
/// When `limit` passes first.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("gave up waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Collects every exported span, for tests that inspect what traces carry.
#[derive(Clone, Default, Debug)]
pub struct SpanSink(pub std::sync::Arc<std::sync::Mutex<Vec<opentelemetry_sdk::trace::SpanData>>>);

impl opentelemetry_sdk::trace::SpanExporter for SpanSink {
    async fn export(&self, batch: Vec<opentelemetry_sdk::trace::SpanData>) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.lock().expect("span sink").extend(batch);
        Ok(())
    }
}

/// Collects every log line, for tests that inspect what logs carry.
#[derive(Clone, Default, Debug)]
pub struct LogSink(pub std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log sink").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogSink {
    type Writer = LogSink;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// A foreign national with passport `passport`.
pub fn foreigner_token(passport: &str) -> String {
    token(Principal {
        sub: format!("foreigner-{passport}"),
        kind: SubjectKind::Foreigner,
        dept: String::new(),
        roles: vec![],
        id_number: String::new(),
        credit_code: String::new(),
        passport_number: passport.into(),
        actor: None,
    })
}

/// `GET path` at `addr` (`host:port`) over HTTP/1.1: the status code and the body; `None`
/// when nothing listens, nothing answers within 5 seconds, or the answer is not HTTP.
pub async fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    tokio::time::timeout(Duration::from_secs(5), http_get_once(addr, path)).await.ok()?
}

async fn http_get_once(addr: &str, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut conn = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\nConnection: close\r\n\r\n");
    conn.write_all(request.as_bytes()).await.ok()?;
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).await.ok()?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let body = &raw[split + 4..];
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok())?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked { dechunk(body)? } else { body.to_vec() };
    String::from_utf8(body).ok().map(|b| (status, b))
}

/// The body of a chunked transfer encoding.
fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line = rest.windows(2).position(|w| w == b"\r\n")?;
        let size = String::from_utf8_lossy(&rest[..line]).to_string();
        let size = usize::from_str_radix(size.split(';').next().unwrap_or_default().trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        let start = line + 2;
        out.extend_from_slice(rest.get(start..start + size)?);
        rest = rest.get(start + size + 2..)?;
    }
}
