//! The nats-server of a test: the pinned binary with JetStream on a port it picks and
//! reports, a temporary store, open or with the users and permissions of
//! `deploy/nats/dev.conf`; killed and restarted on the same port and store as after a crash.

use onething_platform::events::nats_server::{NatsConfig, NatsServerProcess, NatsServerSpec, ProbeUser};
use std::path::PathBuf;

/// The pinned nats-server: `NATS_SERVER_BIN`, else the one `make tools` installs.
pub fn nats_server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("NATS_SERVER_BIN") {
        return PathBuf::from(p);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    root.join(".tools/py/bin/nats-server")
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

/// The `NATS_<USER>_PASSWORD` variables deploy/nats/auth.conf reads, for every user.
pub fn nats_password_env() -> Vec<(String, String)> {
    NATS_USERS.iter().map(|u| (format!("NATS_{}_PASSWORD", u.to_ascii_uppercase()), nats_password(u))).collect()
}

/// A nats-server with JetStream owned by one test.
pub struct NatsServer {
    process: NatsServerProcess,
    _store: tempfile::TempDir,
}

impl NatsServer {
    /// Starts a server with a temporary JetStream store, no authentication, synced as
    /// nats-server does by default (the tests that concern durability say otherwise).
    ///
    /// # Panics
    /// When the pinned binary is missing (run `make tools`) or the server does not come up.
    pub async fn start() -> Self {
        let store = tempfile::tempdir().expect("temporary store");
        let spec = NatsServerSpec::open(&nats_server_bin(), store.path(), "2m");
        Self::launch(spec, store).await
    }

    /// Starts a server with the users and permissions of `deploy/nats/dev.conf`.
    ///
    /// # Panics
    /// As [`NatsServer::start`].
    pub async fn start_secured() -> Self {
        let store = tempfile::tempdir().expect("temporary store");
        let conf = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/nats/dev.conf");
        let mut spec = NatsServerSpec::open(&nats_server_bin(), store.path(), "2m");
        spec.config = NatsConfig::File(conf);
        spec.env = nats_password_env();
        spec.probe = ProbeUser { user: "household".into(), password: nats_password("household") };
        Self::launch(spec, store).await
    }

    async fn launch(spec: NatsServerSpec, store: tempfile::TempDir) -> Self {
        let process = NatsServerProcess::start(spec).await.unwrap_or_else(|e| panic!("nats-server: {e:#}"));
        Self { process, _store: store }
    }

    /// The client URL.
    pub fn url(&self) -> String {
        self.process.url()
    }

    /// Stops the server (as a crash would: SIGKILL).
    pub fn stop(&mut self) {
        self.process.kill();
    }

    /// Starts it again on the same port with the same store.
    ///
    /// # Panics
    /// When it does not come back.
    pub async fn restart(&mut self) {
        self.process.restart().await.unwrap_or_else(|e| panic!("nats-server did not restart: {e:#}"));
    }

    /// A JetStream context on this server.
    pub async fn jetstream(&self) -> async_nats::jetstream::Context {
        async_nats::jetstream::new(async_nats::connect(self.url()).await.expect("connect to test nats"))
    }
}

/// A free TCP port on loopback, for the few processes that cannot pick one and report it
/// (the routes of a NATS cluster name each other's ports up front; Prometheus). Another
/// process may take it before it is bound: everything else binds port 0.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on loopback")
}
