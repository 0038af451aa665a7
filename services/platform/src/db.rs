//! Database: connect with sea-orm to SQLite (the embedded default) or PostgreSQL (production)
//! from one URL, and run a service's migrations. The same entities and migrations serve both.

use crate::config::DatabaseSettings;
use anyhow::Context as _;
use sea_orm::{ConnectOptions, Database, DatabaseConnection};
use sea_orm_migration::MigratorTrait;
use std::time::Duration;

/// Connects to `url` and applies `M`'s pending migrations.
///
/// SQLite files are created with their folder, in WAL mode with a busy timeout so several
/// connections (and several replicas in tests) can write without `database is locked`.
///
/// # Errors
/// An unreachable server, a bad URL, or a failed migration.
pub async fn connect_and_migrate<M: MigratorTrait>(url: &str) -> anyhow::Result<DatabaseConnection> {
    connect_and_migrate_with::<M>(url, &DatabaseSettings::default()).await
}

/// [`connect_and_migrate`] with the pool size, session timeouts and TLS of `settings`.
///
/// # Errors
/// As [`connect_and_migrate`], or an unknown `ssl_mode`.
pub async fn connect_and_migrate_with<M: MigratorTrait>(
    url: &str,
    settings: &DatabaseSettings,
) -> anyhow::Result<DatabaseConnection> {
    let db = connect_with(url, settings).await?;
    if url.starts_with("postgres") {
        migrate_locked::<M>(url, settings).await?;
    } else {
        M::up(&db, None).await.context("applying migrations")?;
    }
    Ok(db)
}

/// Several replicas starting at once migrate one at a time: a session advisory lock on one
/// dedicated connection is held while the migrations run.
async fn migrate_locked<M: MigratorTrait>(url: &str, settings: &DatabaseSettings) -> anyhow::Result<()> {
    use sea_orm::{ConnectionTrait, Statement};
    // A migration may rewrite a large table: no statement timeout on this one connection.
    let settings = DatabaseSettings { statement_timeout_ms: 0, ..settings.clone() };
    let mut opts = postgres_options(url, &settings)?;
    opts.max_connections(1).min_connections(1);
    let single = Database::connect(opts).await.context("connecting to migrate")?;
    let lock = |sql: &str| Statement::from_string(single.get_database_backend(), sql.to_string());
    // The key is arbitrary but fixed: every onething service uses it for its own database.
    single.execute_raw(lock("SELECT pg_advisory_lock(727272)")).await.context("taking the migration lock")?;
    let migrated = M::up(&single, None).await.context("applying migrations");
    let _ = single.execute_raw(lock("SELECT pg_advisory_unlock(727272)")).await;
    single.close().await.ok();
    migrated
}

/// Connects to `url` without migrating.
///
/// # Errors
/// As [`connect_and_migrate`].
pub async fn connect(url: &str) -> anyhow::Result<DatabaseConnection> {
    connect_with(url, &DatabaseSettings::default()).await
}

/// [`connect`] with the pool size, session timeouts and TLS of `settings`.
///
/// # Errors
/// As [`connect`], or an unknown `ssl_mode`.
pub async fn connect_with(url: &str, settings: &DatabaseSettings) -> anyhow::Result<DatabaseConnection> {
    let mut opts =
        if url.starts_with("postgres") { postgres_options(url, settings)? } else { ConnectOptions::new(url) };
    // A pooled connection used within the last seconds is handed out as it is: pinging it
    // on every checkout (the default) costs a round trip per statement. One idle longer,
    // which a server restart, a proxy or a firewall may have dropped, is pinged first.
    opts.sqlx_logging(false)
        .acquire_timeout(Duration::from_secs(10))
        .test_before_acquire_if_idle_for(Duration::from_secs(10));
    if url.starts_with("sqlite:") {
        if let Some(path) = sqlite_path(url)
            && let Some(dir) = std::path::Path::new(&path).parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        opts.max_connections(settings.max_connections.clamp(1, 8)).map_sqlx_sqlite_opts(|o| {
            o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(10))
                .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                .create_if_missing(true)
        });
    } else {
        opts.max_connections(settings.max_connections.max(1));
    }
    Database::connect(opts).await.context("connecting to the database")
}

/// The options of a PostgreSQL pool: session timeouts set at connect (`options` of the
/// startup packet, no extra round trip) and TLS as configured.
///
/// # Errors
/// An unknown `ssl_mode`, or a root certificate with a mode that does not verify.
fn postgres_options(url: &str, settings: &DatabaseSettings) -> anyhow::Result<ConnectOptions> {
    use sea_orm::sqlx::postgres::PgSslMode;
    let mode: Option<PgSslMode> = match settings.ssl_mode.as_str() {
        "" => None,
        m => Some(m.parse().map_err(|_| anyhow::anyhow!("database.ssl_mode {m:?} is not a PostgreSQL sslmode"))?),
    };
    // Only verify-ca and verify-full check the server's certificate: a root certificate with
    // any other mode would look like verification and be none.
    if !settings.ssl_root_cert.is_empty() && !matches!(mode, Some(PgSslMode::VerifyCa | PgSslMode::VerifyFull)) {
        anyhow::bail!(
            "database.ssl_root_cert needs ssl_mode verify-ca or verify-full (the certificate is not checked otherwise)"
        );
    }
    let mut session = Vec::new();
    if settings.statement_timeout_ms > 0 {
        session.push(("statement_timeout", settings.statement_timeout_ms.to_string()));
    }
    if settings.idle_in_transaction_timeout_ms > 0 {
        session.push(("idle_in_transaction_session_timeout", settings.idle_in_transaction_timeout_ms.to_string()));
    }
    let root = settings.ssl_root_cert.clone();
    let mut opts = ConnectOptions::new(url);
    opts.sqlx_logging(false).map_sqlx_postgres_opts(move |o| {
        let o = o.options(session.clone());
        let o = match mode {
            Some(m) => o.ssl_mode(m),
            None => o,
        };
        if root.is_empty() { o } else { o.ssl_root_cert(&root) }
    });
    Ok(opts)
}

fn sqlite_path(url: &str) -> Option<String> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then(|| path.to_string())
}

/// Whether an error from the database is a unique-constraint violation (both backends).
pub fn is_unique_violation(e: &sea_orm::DbErr) -> bool {
    matches!(e.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_)))
}

/// Begins a transaction that will write. On SQLite it takes the write lock at `BEGIN`
/// (`BEGIN IMMEDIATE`): a deferred transaction that reads and then writes while another
/// connection commits fails at once with `SQLITE_BUSY`, whatever the busy timeout.
/// PostgreSQL ignores the mode.
///
/// # Errors
/// The database refused to begin.
pub async fn begin_write(db: &DatabaseConnection) -> Result<sea_orm::DatabaseTransaction, sea_orm::DbErr> {
    use sea_orm::{SqliteTransactionMode, TransactionOptions, TransactionTrait};
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..Default::default()
    })
    .await
}

/// Makes concurrent transactions that take the same `name` wait for each other until the
/// holder ends: those assigning from one sequence (e.g. the next household number of a
/// region), instead of both reading the same last number and one failing on the unique
/// index; or a check and a change that must not miss each other (a case asking whether a
/// death is confirmed while the confirmation arrives). PostgreSQL: a transaction-scoped
/// advisory lock on the name's hash. SQLite: nothing to do, as [`begin_write`] already
/// holds the database.
///
/// # Errors
/// The database refused the lock.
pub async fn lock_named(txn: &sea_orm::DatabaseTransaction, name: &str) -> Result<(), sea_orm::DbErr> {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    if txn.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_advisory_xact_lock(hashtext($1))",
        [name.into()],
    ))
    .await
    .map(|_| ())
}

/// The URL of database `name` on the server of `server_url` (same credentials and options).
pub fn database_url(server_url: &str, name: &str) -> String {
    let (base, query) = server_url.split_once('?').unwrap_or((server_url, ""));
    let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
    if query.is_empty() { format!("{base}/{name}") } else { format!("{base}/{name}?{query}") }
}

/// Drops PostgreSQL databases `names` (forcibly: open connections are ended) through the
/// maintenance database at `admin_url`, blocking until done; for `Drop` implementations of
/// throwaway databases (tests, the benchmark), which cannot await. Failures are ignored:
/// what is left is only a leftover database.
pub fn drop_databases_blocking(admin_url: &str, names: Vec<String>) {
    if names.is_empty() {
        return;
    }
    let url = admin_url.to_string();
    // A small runtime on its own thread: the caller may be inside another runtime.
    let _ = std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        rt.block_on(async {
            if let Ok(admin) = connect(&url).await {
                use sea_orm::ConnectionTrait;
                for name in names {
                    let _ = admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
                }
            }
        });
    })
    .join();
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
