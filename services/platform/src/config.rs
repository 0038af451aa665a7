//! Configuration: defaults, then an optional TOML file, then `ONETHING_…` environment
//! variables (nested keys joined by `__`, e.g. `ONETHING_NATS__URL`). Standard
//! `OTEL_*` variables are read by the telemetry module as OpenTelemetry defines them.

use anyhow::Context as _;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use std::path::{Path, PathBuf};

/// Prefix of every onething environment variable.
pub const ENV_PREFIX: &str = "ONETHING_";

/// `ONETHING_…` variables that are not service settings: the config file, and the CLI's
/// server addresses and token.
const NOT_SETTINGS: &[&str] = &["CONFIG", "ADDR", "TOKEN", "COORDINATOR", "SUPERVISION"];

/// Settings every service has.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address the gRPC server binds, e.g. `0.0.0.0:18061`; port 0 picks a free one. Default
    /// ports stay below Linux's ephemeral range (32768–60999), where a service's own
    /// outgoing connections could already hold them.
    pub grpc_addr: String,
    /// Address of the Prometheus `GET /metrics` endpoint, e.g. `0.0.0.0:9464`; empty: none.
    pub metrics_addr: String,
    /// sea-orm database URL: `sqlite://path/file.db?mode=rwc` or `postgres://…`.
    pub database_url: String,
    /// Database pool and session limits, and PostgreSQL TLS.
    pub database: DatabaseSettings,
    /// NATS connection.
    pub nats: NatsSettings,
    /// Logging.
    pub log: LogSettings,
    /// Outbox relay tuning.
    pub outbox: OutboxSettings,
    /// Event consumers: redelivery, dead letters, the inbox.
    pub consumers: ConsumerSettings,
    /// Seconds to finish in-flight work after SIGTERM before stopping anyway.
    pub shutdown_grace_seconds: u64,
    /// Path of the catalog (事项清单) file; empty means the one built into the binary.
    pub catalog_file: String,
    /// Folder with extra working-day calendar year files (`<year>.toml`); empty: built-in years only.
    pub calendar_dir: String,
    /// Token verification.
    pub auth: crate::auth::AuthSettings,
    /// TLS of the gRPC server; mTLS when a client CA is given.
    pub tls: TlsSettings,
    /// Appended to every durable consumer name. Change it, with an empty database, to
    /// rebuild a service's projections by replaying its streams from the start.
    pub consumer_suffix: String,
    /// gRPC addresses of the services this one calls, by name (e.g. `household` →
    /// `http://household:18061`).
    pub peers: std::collections::BTreeMap<String, String>,
    /// File of the secret sealing the personal data this service's own events carry so it
    /// can rebuild its records from them (supervision's complaints); empty: derived from
    /// `auth.signing_key_file`. Keep it when that key rotates, or older events stay sealed.
    pub seal_key_file: String,
    /// Milliseconds between the business sweeps (revoking overdue 容缺 approvals, flagging
    /// late enterprise requests, issuing 督办 notices). Deadlines are minutes to days long;
    /// a minute is soon enough.
    pub sweep_interval_ms: u64,
    /// Milliseconds a `WatchBundle` stream (coordinator) waits for its bundle's ring before
    /// reading the bundle anyway: rings are hints over core NATS, and one lost while NATS was
    /// away is made good by this read.
    pub watch_fallback_ms: u64,
    /// E-licences (电子证照, M24): which issuers are trusted.
    pub elicence: ElicenceSettings,
    /// The business clock every rule reads; the system clock unless a test or a
    /// demonstration moves it. Not configuration: never read from a file or the environment.
    #[serde(skip)]
    pub clock: crate::clock::Clock,
}

/// TLS of the gRPC server. Empty `cert_file`: plain HTTP/2 (inside a mesh that encrypts).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM certificate chain of this service.
    pub cert_file: String,
    /// PEM private key of this service.
    pub key_file: String,
    /// PEM CA that client certificates must chain to; set, it makes TLS mutual.
    pub client_ca_file: String,
    /// PEM CA that the peers' server certificates must chain to. Set, every peer is called
    /// over TLS (`https://` addresses), presenting `cert_file`/`key_file` as the client
    /// certificate (so the certificate needs both server and client authentication usages).
    pub peer_ca_file: String,
}

/// Database pool and session settings. PostgreSQL only, except `max_connections`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// Connections in this process's pool. Mind the server's `max_connections`: replicas ×
    /// this (a PgBouncer in front when that is too many).
    pub max_connections: u32,
    /// PostgreSQL `statement_timeout` of every session, in milliseconds (0: none): a runaway
    /// query is cancelled instead of holding a connection and its locks.
    pub statement_timeout_ms: u64,
    /// PostgreSQL `idle_in_transaction_session_timeout`, in milliseconds (0: none): a session
    /// left in an open transaction (a stuck process) is ended, releasing its locks.
    pub idle_in_transaction_timeout_ms: u64,
    /// PostgreSQL `sslmode`: `disable`, `prefer`, `require`, `verify-ca` or `verify-full`;
    /// empty: whatever the URL says (libpq's default, `prefer`).
    pub ssl_mode: String,
    /// PEM root certificate the server's certificate must chain to (`verify-ca`, `verify-full`).
    pub ssl_root_cert: String,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            max_connections: 16,
            statement_timeout_ms: 30_000,
            idle_in_transaction_timeout_ms: 60_000,
            ssl_mode: String::new(),
            ssl_root_cert: String::new(),
        }
    }
}

/// NATS connection settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NatsSettings {
    /// Server URL(s), comma separated.
    pub url: String,
    /// Path of a `.creds` file (NATS decentralised auth), if any.
    pub credentials_file: String,
    /// User name, if user/password authentication is used.
    pub user: String,
    /// Password for `user`.
    pub password: String,
    /// Replicas of the streams this service creates (3 in a production cluster).
    pub stream_replicas: usize,
    /// TLS to the servers: required (the connection fails rather than fall back to plain).
    pub tls_required: bool,
    /// PEM CA the servers' certificates must chain to (implies TLS).
    pub tls_ca_file: String,
    /// PEM client certificate, for servers that verify clients (with `tls_key_file`).
    pub tls_cert_file: String,
    /// PEM key of `tls_cert_file`.
    pub tls_key_file: String,
}

/// Logging settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `json` (production) or `pretty` (development).
    pub format: String,
    /// `tracing` filter directives when `RUST_LOG` is unset.
    pub filter: String,
}

/// Outbox relay settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OutboxSettings {
    /// How often the relay looks for unsent rows when nothing woke it (milliseconds).
    pub poll_interval_ms: u64,
    /// Rows published per round.
    pub batch_size: u64,
    /// Sent rows written more than this many hours ago are deleted; until then the
    /// reconciliation can find them missing from the stream and publish them again.
    pub retain_sent_hours: u64,
    /// A row whose publication failed this many times moves to the quarantine
    /// (`outbox_dead`, `onething outbox list`), and the rows behind it flow.
    pub max_attempts: u32,
    /// Largest event (payload and headers) accepted into the outbox: a transaction whose
    /// event would not fit the broker's `max_payload` fails before it commits.
    pub max_event_bytes: usize,
    /// How often the relay checks that recently sent events are in their stream (seconds;
    /// also after it sees the broker restart). 0: only on `onething outbox reconcile`.
    pub reconcile_interval_seconds: u64,
    /// How far back the periodic check looks (minutes): longer than the broker's
    /// `sync_interval`, the window a crash can lose.
    pub reconcile_window_minutes: u64,
}

/// E-licence settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ElicenceSettings {
    /// The trust list (JSON, [`crate::elicence::TrustList`]): the issuers whose keys may sign
    /// which kinds, and where each publishes its revocation list. Empty: no issuer is
    /// trusted, so no e-licence verifies and every matter that could be decided on one goes
    /// to a clerk (or, where the catalog requires one, is not accepted).
    pub trust_list_file: String,
}

/// Consumer settings: redelivery, dead letters, the inbox.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ConsumerSettings {
    /// Deliveries of a message whose handling keeps failing before it goes to the
    /// dead-letter stream (`ONETHING_DLQ`).
    pub max_deliver: u32,
    /// First redelivery delay (milliseconds); each further one waits longer, up to 60 s.
    pub retry_backoff_ms: u64,
    /// Inbox rows (event ids already applied) older than this are deleted: past it no
    /// duplicate can arrive (redeliveries end within minutes, the outbox republishes for
    /// `outbox.retain_sent_hours`). Must be longer than that.
    pub inbox_retain_hours: u64,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        Self { max_deliver: 8, retry_backoff_ms: 1000, inbox_retain_hours: 72 }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            grpc_addr: "127.0.0.1:18061".into(),
            metrics_addr: String::new(),
            database_url: "sqlite://.data/onething.db?mode=rwc".into(),
            database: DatabaseSettings::default(),
            nats: NatsSettings::default(),
            log: LogSettings::default(),
            outbox: OutboxSettings::default(),
            consumers: ConsumerSettings::default(),
            shutdown_grace_seconds: 20,
            catalog_file: String::new(),
            calendar_dir: String::new(),
            auth: Default::default(),
            tls: TlsSettings::default(),
            peers: Default::default(),
            consumer_suffix: String::new(),
            seal_key_file: String::new(),
            sweep_interval_ms: 60_000,
            watch_fallback_ms: 5_000,
            elicence: ElicenceSettings::default(),
            clock: crate::clock::Clock::system(),
        }
    }
}

impl Default for NatsSettings {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".into(),
            credentials_file: String::new(),
            user: String::new(),
            password: String::new(),
            stream_replicas: 1,
            tls_required: false,
            tls_ca_file: String::new(),
            tls_cert_file: String::new(),
            tls_key_file: String::new(),
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        Self { format: "pretty".into(), filter: "info".into() }
    }
}

impl Default for OutboxSettings {
    fn default() -> Self {
        Self {
            poll_interval_ms: 500,
            batch_size: 256,
            retain_sent_hours: 24,
            max_attempts: 10,
            // NATS's default max_payload is 1 MiB, headers included; room for the headers.
            max_event_bytes: 1024 * 1024 - 4096,
            reconcile_interval_seconds: 300,
            reconcile_window_minutes: 30,
        }
    }
}

impl Settings {
    /// Development defaults of one service: its own port, its own SQLite file under
    /// `data_dir`, and the services it calls on their development ports.
    pub fn for_service(service: &str, port: u16, data_dir: &Path) -> Self {
        let calls = crate::service_kind::ServiceKind::parse(service).map_or(&[][..], |k| k.calls());
        Self {
            grpc_addr: format!("127.0.0.1:{port}"),
            database_url: sqlite_url(&data_dir.join(format!("{service}.db"))),
            peers: calls.iter().map(|k| (k.name().to_string(), k.dev_endpoint())).collect(),
            ..Self::default()
        }
    }
}

/// The sea-orm URL of a SQLite file, created if missing.
pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

/// Loads `T`: `defaults`, overlaid by the TOML `file` (or the file named by
/// `ONETHING_CONFIG` when `file` is `None`), overlaid by `ONETHING_…` variables from `env`.
///
/// # Errors
/// An unreadable or malformed file, or a value of the wrong type or an unknown key
/// (in the file or in an `ONETHING_…` variable) — naming the key, never its value.
pub fn load<T>(defaults: T, file: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> anyhow::Result<T>
where
    T: Serialize + DeserializeOwned,
{
    let mut value = toml::Value::try_from(defaults).context("serialising defaults")?;
    let env: Vec<(String, String)> = env.into_iter().collect();
    let file: Option<PathBuf> = file
        .map(Path::to_path_buf)
        .or_else(|| env.iter().find(|(k, _)| k == "ONETHING_CONFIG").map(|(_, v)| PathBuf::from(v)));
    if let Some(path) = file {
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading config file {}", path.display()))?;
        let overlay: toml::Value =
            toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))?;
        merge(&mut value, overlay);
    }
    for (key, raw) in env {
        let Some(rest) = key.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if NOT_SETTINGS.contains(&rest) || is_service_link(rest, &raw) {
            continue;
        }
        let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        set_path(&mut value, &path, scalar(&raw));
    }
    value.try_into().context("invalid configuration")
}

/// Reads [`Settings`] for a service from the process environment on top of `defaults`.
///
/// # Errors
/// As [`load`].
pub fn load_settings(defaults: Settings, file: Option<&Path>) -> anyhow::Result<Settings> {
    let settings = load(defaults, file, std::env::vars())?;
    settings.check()?;
    Ok(settings)
}

impl Settings {
    /// Settings that contradict each other.
    ///
    /// # Errors
    /// The inbox forgets events before the outbox stops republishing them (a republished
    /// event would be applied twice), or no publication attempt is allowed.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.consumers.inbox_retain_hours <= self.outbox.retain_sent_hours {
            anyhow::bail!(
                "consumers.inbox_retain_hours ({}) must exceed outbox.retain_sent_hours ({}): an event republished \
                 by the reconciliation would otherwise be applied twice",
                self.consumers.inbox_retain_hours,
                self.outbox.retain_sent_hours
            );
        }
        if self.outbox.max_attempts == 0 || self.consumers.max_deliver == 0 {
            anyhow::bail!("outbox.max_attempts and consumers.max_deliver must be at least 1");
        }
        Ok(())
    }
}

/// Whether `name=value` (an environment variable without the `ONETHING_` prefix) is a
/// Kubernetes service-link variable. The kubelet injects, for every Service of the namespace
/// (e.g. `onething-household`), `ONETHING_HOUSEHOLD_SERVICE_HOST` (an address),
/// `…_SERVICE_PORT` and `…_SERVICE_PORT_<PORT NAME>` (numbers), `…_PORT` and
/// `…_PORT_<n>_<PROTO>` (`tcp://address:port`), and `…_PORT_<n>_<PROTO>_ADDR|_PORT|_PROTO`.
/// Name and value must both have that shape: no setting does (nested settings use `__`), so
/// such a variable is skipped while a mistyped setting stays an error.
fn is_service_link(name: &str, value: &str) -> bool {
    let parts: Vec<&str> = name.split('_').collect();
    if name.contains("__") || parts.iter().any(|p| p.is_empty()) {
        return false;
    }
    let is_proto = |p: &str| matches!(p, "TCP" | "UDP" | "SCTP");
    let is_port = |p: &str| p.parse::<u16>().is_ok();
    let is_url = value.starts_with("tcp://") || value.starts_with("udp://") || value.starts_with("sctp://");
    let is_host = value.parse::<std::net::IpAddr>().is_ok();
    // From 0: a Service named `onething` gives ONETHING_SERVICE_HOST, ONETHING_PORT, ….
    (0..parts.len()).any(|i| match &parts[i..] {
        ["SERVICE", "HOST"] => is_host,
        ["SERVICE", "PORT", ..] => is_port(value),
        ["PORT"] => is_url,
        ["PORT", n, proto] => is_port(n) && is_proto(proto) && is_url,
        ["PORT", n, proto, "ADDR"] => is_port(n) && is_proto(proto) && is_host,
        ["PORT", n, proto, "PORT"] => is_port(n) && is_proto(proto) && is_port(value),
        ["PORT", n, proto, "PROTO"] => is_port(n) && is_proto(proto) && !value.is_empty(),
        _ => false,
    })
}

fn merge(base: &mut toml::Value, overlay: toml::Value) {
    match (base, overlay) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

fn set_path(value: &mut toml::Value, path: &[String], leaf: toml::Value) {
    let Some((head, rest)) = path.split_first() else {
        return;
    };
    let toml::Value::Table(table) = value else {
        return;
    };
    if rest.is_empty() {
        // Keep the default's type: a string field stays a string even when the text looks numeric.
        let leaf = match (table.get(head), &leaf) {
            (Some(toml::Value::String(_)), v) if !v.is_str() => toml::Value::String(raw_text(v)),
            _ => leaf,
        };
        table.insert(head.clone(), leaf);
    } else {
        let child = table.entry(head.clone()).or_insert_with(|| toml::Value::Table(Default::default()));
        set_path(child, rest, leaf);
    }
}

fn scalar(raw: &str) -> toml::Value {
    if let Ok(i) = raw.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    match raw {
        "true" => toml::Value::Boolean(true),
        "false" => toml::Value::Boolean(false),
        _ => toml::Value::String(raw.to_string()),
    }
}

fn raw_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
    }

    #[test]
    fn defaults_then_file_then_env() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "grpc_addr = \"0.0.0.0:9000\"\n[nats]\nurl = \"nats://file:4222\"\nstream_replicas = 3\n",
        )
        .unwrap();
        let s = load(
            Settings::default(),
            Some(&file),
            env(&[("ONETHING_NATS__URL", "nats://env:4222"), ("ONETHING_LOG__FORMAT", "json"), ("OTHER", "x")]),
        )
        .unwrap();
        assert_eq!(s.grpc_addr, "0.0.0.0:9000");
        assert_eq!(s.nats.url, "nats://env:4222");
        assert_eq!(s.nats.stream_replicas, 3);
        assert_eq!(s.log.format, "json");
        assert_eq!(s.shutdown_grace_seconds, 20);
    }

    #[test]
    fn env_numbers_and_numeric_strings() {
        let s = load(
            Settings::default(),
            None,
            env(&[("ONETHING_SHUTDOWN_GRACE_SECONDS", "5"), ("ONETHING_NATS__PASSWORD", "1234")]),
        )
        .unwrap();
        assert_eq!(s.shutdown_grace_seconds, 5);
        assert_eq!(s.nats.password, "1234");
    }

    #[test]
    fn kubernetes_service_links_are_not_settings() {
        let links = [
            ("ONETHING_HOUSEHOLD_SERVICE_HOST", "10.96.0.12"),
            ("ONETHING_HOUSEHOLD_SERVICE_PORT", "18061"),
            ("ONETHING_HOUSEHOLD_SERVICE_PORT_GRPC", "18061"),
            ("ONETHING_HOUSEHOLD_PORT", "tcp://10.96.0.12:18061"),
            ("ONETHING_HOUSEHOLD_PORT_18061_TCP", "tcp://10.96.0.12:18061"),
            ("ONETHING_HOUSEHOLD_PORT_18061_TCP_PROTO", "tcp"),
            ("ONETHING_HOUSEHOLD_PORT_18061_TCP_PORT", "18061"),
            ("ONETHING_HOUSEHOLD_PORT_18061_TCP_ADDR", "10.96.0.12"),
            ("ONETHING_EXIT_ENTRY_PORT_9462_TCP_ADDR", "10.96.0.13"),
            ("ONETHING_COORDINATOR_SERVICE_PORT_METRICS", "9460"),
            ("ONETHING_SERVICE_HOST", "10.96.0.9"),
            ("ONETHING_PORT", "tcp://10.96.0.9:80"),
            ("ONETHING_PORT_80_TCP_ADDR", "10.96.0.9"),
            ("ONETHING_DNS_PORT_53_UDP", "udp://[fd00::a]:53"),
            ("ONETHING_DNS_SERVICE_HOST", "fd00::a"),
        ];
        let s = load(Settings::default(), None, env(&links)).unwrap();
        assert_eq!(s, Settings::default());
        let typos = [
            ("ONETHING_GRPC_ADDRR", "0.0.0.0:1"),
            ("ONETHING_NATS__PORT", "tcp://1.2.3.4:5"),
            ("ONETHING_METRICS_PORT", "9464"),
            ("ONETHING_HOUSEHOLD_PORT_18061_TCPX", "tcp://1.2.3.4:5"),
            ("ONETHING_DB_SERVICE_HOST", "db.example"),
            ("ONETHING_HOUSEHOLD_PORT_18061_UDP_ADDR", "not-an-address"),
        ];
        for (typo, value) in typos {
            assert!(load(Settings::default(), None, env(&[(typo, value)])).is_err(), "{typo} must stay an error");
        }
        // In a file nothing is skipped: a link-shaped key is a typo there.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "household_port = \"tcp://10.96.0.12:18061\"\n").unwrap();
        assert!(load(Settings::default(), Some(&file), env(&[])).is_err());
    }

    #[test]
    fn unknown_key_is_an_error() {
        let err = load(Settings::default(), None, env(&[("ONETHING_NATS__URLL", "x")])).unwrap_err();
        assert!(format!("{err:#}").contains("urll"), "{err:#}");
    }
}
