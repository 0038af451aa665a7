//! NATS connection and JetStream streams: one stream per department capturing
//! `onething.<department>.>`, created (or updated) idempotently.

use crate::config::NatsSettings;
use anyhow::Context as _;
use async_nats::jetstream::{self, stream};
use std::time::Duration;

/// Window in which JetStream drops a second message with the same `Nats-Msg-Id`.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// The stream of a department, e.g. `ONETHING_HOUSEHOLD` for `household`.
pub fn stream_name(department: &str) -> String {
    format!("ONETHING_{}", department.replace('-', "_").to_ascii_uppercase())
}

/// The subject namespace of a department, e.g. `onething.household` (exit-entry: `onething.exit_entry`).
pub fn subject_root(department: &str) -> String {
    format!("onething.{}", department.replace('-', "_"))
}

/// The inbox prefix of NATS user `user`, `_INBOX.<user>`: every reply to it (JetStream API
/// answers, publish acks, pulled messages) arrives under `_INBOX.<user>.>`, the only inbox
/// deploy/nats/auth.conf lets that user subscribe to, so no user reads another's replies.
pub fn inbox_prefix(user: &str) -> String {
    format!("_INBOX.{user}")
}

/// Connects to NATS. Returns at once even when the server is down: the client keeps
/// retrying in the background, and the outbox holds events until it is back.
///
/// With a CA (or `tls_required`) the connection is TLS or nothing; a client certificate is
/// presented when one is configured. With a user, replies come to that user's own inbox
/// prefix ([`inbox_prefix`]); without one (no authentication, or a `.creds` file, whose
/// permissions are the issuer's business), to the default `_INBOX`.
///
/// # Errors
/// A malformed URL, an unreadable credentials or TLS file, or a certificate without its key.
pub async fn connect(settings: &NatsSettings, client_name: &str) -> anyhow::Result<async_nats::Client> {
    let mut opts = async_nats::ConnectOptions::new()
        .name(client_name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(5));
    let tls = settings.tls_required
        || !settings.tls_ca_file.is_empty()
        || !settings.tls_cert_file.is_empty()
        || !settings.tls_key_file.is_empty();
    if tls {
        // Any TLS setting means TLS or nothing; the files are read now, so a wrong path
        // stops the start instead of failing every reconnect in the background.
        for f in [&settings.tls_ca_file, &settings.tls_cert_file, &settings.tls_key_file] {
            if !f.is_empty() {
                std::fs::metadata(f).with_context(|| format!("reading NATS TLS file {f}"))?;
            }
        }
        if settings.tls_cert_file.is_empty() != settings.tls_key_file.is_empty() {
            anyhow::bail!("nats.tls_cert_file and nats.tls_key_file go together");
        }
        opts = opts.require_tls(true);
    }
    if !settings.tls_ca_file.is_empty() {
        opts = opts.add_root_certificates(settings.tls_ca_file.clone().into());
    }
    if !settings.tls_cert_file.is_empty() {
        opts = opts.add_client_certificate(settings.tls_cert_file.clone().into(), settings.tls_key_file.clone().into());
    }
    if !settings.credentials_file.is_empty() {
        opts = opts.credentials_file(&settings.credentials_file).await.context("reading NATS credentials file")?;
    } else if !settings.user.is_empty() {
        // async-nats makes every inbox from this prefix: the request multiplexer behind
        // JetStream API calls and publish acks subscribes to `<prefix>.<id>.*`, a pull
        // consumer's messages come to `<prefix>.<id>`.
        opts = opts
            .user_and_password(settings.user.clone(), settings.password.clone())
            .custom_inbox_prefix(inbox_prefix(&settings.user));
    }
    let servers: Vec<&str> = settings.url.split(',').map(str::trim).filter(|u| !u.is_empty()).collect();
    opts.connect(servers).await.context("connecting to NATS")
}

/// The dead-letter stream: consumers put there, under `onething.dlq.<service>.<consumer>`,
/// each message they gave up on, with its original headers and why.
pub const DLQ_STREAM: &str = "ONETHING_DLQ";

/// The dead-letter subject of `consumer` of `service`.
pub fn dlq_subject(service: &str, consumer: &str) -> String {
    format!("onething.dlq.{}.{consumer}", service.replace('-', "_"))
}

/// Creates the department's stream if it does not exist, or updates what onething decides
/// (subjects, duplicate window, replicas) and nothing else: limits an operator set on the
/// stream (`max_age`, `max_bytes`, `max_msgs`, …) are kept. Unchanged, nothing is sent.
///
/// # Errors
/// NATS unreachable or JetStream refusing the configuration.
pub async fn ensure_stream(js: &jetstream::Context, department: &str, replicas: usize) -> anyhow::Result<()> {
    ensure(js, stream_name(department), format!("{}.>", subject_root(department)), replicas).await
}

/// Creates the dead-letter stream ([`DLQ_STREAM`]) when it is missing.
///
/// # Errors
/// As [`ensure_stream`].
pub async fn ensure_dlq_stream(js: &jetstream::Context, replicas: usize) -> anyhow::Result<()> {
    // Created when missing, never updated: its limits are the operators' (a service may
    // not change them, so none can shorten another's dead letters), and it keeps letters
    // 30 days by default, since they hold events' payloads.
    if js.get_stream(DLQ_STREAM).await.is_ok() {
        return Ok(());
    }
    let config = stream::Config {
        name: DLQ_STREAM.to_string(),
        subjects: vec!["onething.dlq.>".to_string()],
        duplicate_window: DUPLICATE_WINDOW,
        num_replicas: replicas.max(1),
        max_age: DLQ_MAX_AGE,
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        ..Default::default()
    };
    js.get_or_create_stream(config).await.context("creating the dead-letter stream")?;
    Ok(())
}

/// How long the dead-letter stream keeps a letter unless an operator says otherwise.
pub const DLQ_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);

async fn ensure(js: &jetstream::Context, name: String, subject: String, replicas: usize) -> anyhow::Result<()> {
    match js.get_stream(&name).await {
        Ok(mut existing) => {
            let current = existing.info().await.context("reading stream")?.config.clone();
            let mut merged = current.clone();
            merged.subjects = vec![subject];
            merged.duplicate_window = DUPLICATE_WINDOW;
            merged.num_replicas = replicas.max(1);
            if merged != current {
                js.update_stream(&merged).await.context("updating stream")?;
            }
        }
        Err(_) => {
            let config = stream::Config {
                name,
                subjects: vec![subject],
                duplicate_window: DUPLICATE_WINDOW,
                num_replicas: replicas.max(1),
                storage: stream::StorageType::File,
                retention: stream::RetentionPolicy::Limits,
                ..Default::default()
            };
            js.get_or_create_stream(config).await.context("creating stream")?;
        }
    }
    Ok(())
}
