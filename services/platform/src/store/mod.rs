//! Tables every service has: the case table of the shared lifecycle, the transactional
//! outbox, and the consumer inbox. A service's migrator lists [`migrations`] first, then its own.

pub mod case;
pub mod inbox;
pub mod json;
pub mod outbox;

use sea_orm_migration::{prelude::*, schema::*};

/// The platform's migrations, in order.
pub fn migrations() -> Vec<Box<dyn MigrationTrait>> {
    vec![
        Box::new(M20261129CreatePlatformTables),
        Box::new(M20261129OutboxPendingIndex),
        Box::new(RescopeKeys {
            name: "m20261202_000003_case_keys_by_caller",
            table: "cases",
            // Keys of the coordinator's steps were its own; any other most likely the applicant's.
            scope_sql: "(CASE WHEN idempotency_key LIKE 'bundle:%' THEN 'service:coordinator' \
                        ELSE applicant_kind || ':' || applicant_identifier END)",
        }),
        Box::new(M20261202OutboxQuarantine),
    ]
}

/// The outbox keeps each sent event's stream sequence (the reconciliation checks it is
/// still there), quarantines rows it cannot publish in `outbox_dead`, and the inbox is
/// pruned by age per consumer.
struct M20261202OutboxQuarantine;

impl MigrationName for M20261202OutboxQuarantine {
    fn name(&self) -> &str {
        "m20261202_000004_outbox_quarantine"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M20261202OutboxQuarantine {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(Table::alter().table("outbox").add_column(big_integer_null("stream_seq")).to_owned()).await?;
        m.create_table(
            Table::create()
                .table("outbox_dead")
                .if_not_exists()
                .col(big_integer("seq").primary_key())
                .col(string("event_id"))
                .col(string("subject"))
                .col(string("ce_type"))
                .col(string("ce_source"))
                .col(string("ce_subject"))
                .col(timestamp_with_time_zone("ce_time"))
                .col(string_null("traceparent"))
                .col(blob("payload"))
                .col(timestamp_with_time_zone("created_at"))
                .col(integer("attempts"))
                .col(text("reason"))
                .col(timestamp_with_time_zone("dead_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("inbox_handled_at")
                .table("inbox")
                .col("consumer")
                .col("handled_at")
                .if_not_exists()
                .to_owned(),
        )
        .await
    }
}

/// Scopes the idempotency keys of `table`'s rows by caller, once (see
/// [`crate::idempotency::rescope_sql`]): every store with a key has one of these.
pub struct RescopeKeys {
    /// Migration name.
    pub name: &'static str,
    /// Table with an `idempotency_key` column.
    pub table: &'static str,
    /// SQL text expression of a row's caller scope.
    pub scope_sql: &'static str,
}

impl MigrationName for RescopeKeys {
    fn name(&self) -> &str {
        self.name
    }
}

#[async_trait::async_trait]
impl MigrationTrait for RescopeKeys {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.get_connection().execute_unprepared(&crate::idempotency::rescope_sql(self.table, self.scope_sql)).await?;
        Ok(())
    }
}

/// The relay's index: only rows not yet sent, in sequence order, so its "next unsent rows"
/// query is a plain index scan. (On `(sent_at, seq)` PostgreSQL chose a bitmap scan, which
/// re-read every row marked sent since the last vacuum on every call — thousands under load
/// — as a bitmap scan never marks index entries of dead rows to be skipped.) No index may
/// lead with `sent_at`, or the planner takes it again for `sent_at IS NULL`: pruning finds
/// old rows by `created_at`.
struct M20261129OutboxPendingIndex;

impl MigrationName for M20261129OutboxPendingIndex {
    fn name(&self) -> &str {
        "m20261129_000002_outbox_pending_index"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M20261129OutboxPendingIndex {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // A partial index: the same statement on PostgreSQL and SQLite.
        m.get_connection()
            .execute_unprepared("CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (seq) WHERE sent_at IS NULL")
            .await?;
        m.drop_index(Index::drop().name("outbox_unsent").table("outbox").if_exists().to_owned()).await?;
        m.create_index(
            Index::create().name("outbox_created_at").table("outbox").col("created_at").if_not_exists().to_owned(),
        )
        .await
    }
}

struct M20261129CreatePlatformTables;

impl MigrationName for M20261129CreatePlatformTables {
    fn name(&self) -> &str {
        "m20261129_000001_platform_tables"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M20261129CreatePlatformTables {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("outbox")
                .if_not_exists()
                .col(big_pk_auto("seq"))
                .col(string_uniq("event_id"))
                .col(string("subject"))
                .col(string("ce_type"))
                .col(string("ce_source"))
                .col(string("ce_subject"))
                .col(timestamp_with_time_zone("ce_time"))
                .col(string_null("traceparent"))
                .col(blob("payload"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone_null("sent_at"))
                .col(integer("attempts").default(0))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create().name("outbox_unsent").table("outbox").col("sent_at").col("seq").if_not_exists().to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("inbox")
                .if_not_exists()
                .col(string("consumer"))
                .col(string("event_id"))
                .col(timestamp_with_time_zone("handled_at"))
                .primary_key(Index::create().col("consumer").col("event_id"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("cases")
                .if_not_exists()
                .col(string("id").primary_key())
                .col(string("matter_code"))
                .col(string("department"))
                .col(string("state"))
                .col(string("applicant_kind"))
                .col(string("applicant_identifier"))
                .col(string("applicant_name"))
                .col(string("applicant_phone"))
                .col(text("form"))
                .col(text("materials"))
                .col(text("missing_materials"))
                .col(string("reason_code"))
                .col(text("reason_text"))
                .col(text("result"))
                .col(string("time_unit"))
                .col(integer("time_limit"))
                .col(timestamp_with_time_zone_null("due_at"))
                .col(timestamp_with_time_zone_null("paused_since"))
                .col(boolean("due_provisional"))
                .col(boolean("priority"))
                .col(string_uniq("idempotency_key"))
                .col(string("bundle_id"))
                .col(big_integer("version"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("cases_queue")
                .table("cases")
                .col("priority")
                .col("created_at")
                .if_not_exists()
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in ["cases", "inbox", "outbox"] {
            m.drop_table(Table::drop().table(t).if_exists().to_owned()).await?;
        }
        Ok(())
    }
}
