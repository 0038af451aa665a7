//! Tables every service has: the case table of the shared lifecycle, the transactional
//! outbox, and the consumer inbox. A service's migrator lists [`migrations`] first, then its own.

pub mod case;
pub mod dev_data;
pub mod inbox;
pub mod json;
pub mod migrate;
pub mod notice;
pub mod outbox;

pub use migrate::{AddColumns, Indexes, Sql, Tables};
use sea_orm_migration::prelude::*;

/// The platform's migrations, in order.
pub fn migrations() -> Vec<Box<dyn MigrationTrait>> {
    vec![
        Box::new(crate::tables!("m20261129_000001_platform_tables", [outbox, inbox, case])),
        // The relay's index: only rows not yet sent, in sequence order, so its "next unsent
        // rows" query is a plain index scan. (On `(sent_at, seq)` PostgreSQL chose a bitmap
        // scan, which re-read every row marked sent since the last vacuum on every call —
        // thousands under load — as a bitmap scan never marks index entries of dead rows to
        // be skipped.) No index may lead with `sent_at`, or the planner takes it again for
        // `sent_at IS NULL`: pruning finds old rows by `created_at`. A partial index reads
        // the same on PostgreSQL and SQLite.
        Box::new(Sql {
            name: "m20261129_000002_outbox_pending_index",
            statements: &[
                "CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (seq) WHERE sent_at IS NULL",
                "DROP INDEX IF EXISTS outbox_unsent",
                "CREATE INDEX IF NOT EXISTS outbox_created_at ON outbox (created_at)",
            ],
        }),
        Box::new(RescopeKeys {
            name: "m20261202_000003_case_keys_by_caller",
            table: "cases",
            // Keys of the coordinator's steps were its own; any other most likely the applicant's.
            scope_sql: "(CASE WHEN idempotency_key LIKE 'bundle:%' THEN 'service:coordinator' \
                        ELSE applicant_kind || ':' || applicant_identifier END)",
        }),
        // The outbox keeps each sent event's stream sequence (the reconciliation checks it
        // is still there) and quarantines rows it cannot publish in `outbox_dead`; the inbox
        // is pruned by age per consumer.
        Box::new(AddColumns {
            name: "m20261202_000004_outbox_quarantine",
            table: "outbox",
            columns: |s| vec![s.get_column_def::<outbox::Entity>(outbox::Column::StreamSeq)],
        }),
        Box::new(crate::tables!("m20261204_000005_outbox_dead", [outbox::dead])),
        Box::new(Indexes {
            name: "m20261204_000006_platform_indexes",
            create: || {
                vec![
                    Index::create()
                        .name("inbox_handled_at")
                        .table("inbox")
                        .col("consumer")
                        .col("handled_at")
                        .to_owned(),
                    Index::create().name("cases_queue").table("cases").col("priority").col("created_at").to_owned(),
                ]
            },
        }),
        // Time rules from receipt (M16's 24 hours count from the application): when a case
        // was accepted, when it is close to due, a supplement's own deadline, and when
        // supervision issued a 督办 notice for it.
        Box::new(AddColumns {
            name: "m20261208_000007_case_time_rules",
            table: "cases",
            columns: |s| {
                [case::Column::AcceptedAt, case::Column::WarnAt, case::Column::SupplementDueAt, case::Column::NoticeAt]
                    .into_iter()
                    .map(|c| s.get_column_def::<case::Entity>(c))
                    .collect()
            },
        }),
        Box::new(crate::tables!("m20261208_000008_notices", [notice])),
        // One notice per deadline an item misses, not one per item: the key gains the
        // time of issue.
        Box::new(NoticesPerDeadline),
        // 一次性告知: a clerk asks for a supplement once.
        Box::new(AddColumns {
            name: "m20261208_000010_case_supplement_asked",
            table: "cases",
            columns: |s| vec![s.get_column_def::<case::Entity>(case::Column::SupplementAsked)],
        }),
        // M24: what was found about a case's e-licence materials.
        Box::new(AddColumns {
            name: "m20261208_000011_case_evidence",
            table: "cases",
            columns: |s| vec![s.get_column_def::<case::Entity>(case::Column::Evidence)],
        }),
    ]
}

/// Rebuilds the notices table keyed by (kind, item, time of issue), keeping its rows.
struct NoticesPerDeadline;

impl MigrationName for NoticesPerDeadline {
    fn name(&self) -> &str {
        "m20261208_000009_notices_per_deadline"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for NoticesPerDeadline {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        // Copied aside rather than renamed (a renamed PostgreSQL table keeps its key's
        // name, which the new table needs); the new one is made from the entity, as a
        // fresh database gets it.
        db.execute_unprepared("CREATE TABLE notices_by_item AS SELECT * FROM notices").await?;
        db.execute_unprepared("DROP TABLE notices").await?;
        let schema = sea_orm::Schema::new(m.get_database_backend());
        m.create_table(schema.create_table_from_entity(notice::Entity)).await?;
        db.execute_unprepared(
            "INSERT INTO notices (kind, item_id, issued_at, due_at) \
             SELECT kind, item_id, issued_at, due_at FROM notices_by_item",
        )
        .await?;
        db.execute_unprepared("DROP TABLE notices_by_item").await?;
        Ok(())
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
