//! The coordinator's tables: bundles and their steps. A bundle and its steps change
//! together under the bundle's version (optimistic concurrency), so any replica can
//! advance any bundle.

use sea_orm_migration::{prelude::*, schema::*};

/// A bundle application.
pub mod bundle {
    use sea_orm::entity::prelude::*;

    /// One bundle. Applicant fields are personal data.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "bundles")]
    pub struct Model {
        /// Bundle id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// Bundle code.
        pub code: String,
        /// Where the bundle stands.
        pub state: crate::saga::BundleState,
        /// Who applied.
        pub applicant_kind: onething_platform::store::case::ApplicantKind,
        /// Applicant identifier.
        pub applicant_identifier: String,
        /// Applicant name.
        pub applicant_name: String,
        /// Applicant phone.
        pub applicant_phone: String,
        /// The one form.
        pub form: onething_platform::store::json::Fields,
        /// The one set of materials.
        pub materials: onething_platform::store::json::Materials,
        /// Client key.
        #[sea_orm(unique)]
        pub idempotency_key: String,
        /// Bundle due time.
        pub due_at: DateTimeUtc,
        /// Version of the aggregate (bundle and steps).
        pub version: i64,
        /// Submitted.
        pub created_at: DateTimeUtc,
        /// Last change.
        pub updated_at: DateTimeUtc,
        /// W3C `traceparent` of the submit: every later drive of the bundle joins this
        /// trace, so one bundle is one trace.
        pub traceparent: Option<String>,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A step of a bundle.
pub mod step {
    use sea_orm::entity::prelude::*;

    /// One step.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "bundle_steps")]
    pub struct Model {
        /// Bundle.
        #[sea_orm(primary_key, auto_increment = false)]
        pub bundle_id: String,
        /// Step id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub step_id: String,
        /// Matter code.
        pub matter_code: String,
        /// Department.
        pub department: String,
        /// Where the step stands.
        pub state: crate::saga::Step,
        /// The department's case id, once created.
        pub case_id: String,
        /// The case's state name, as last known.
        pub case_state: String,
        /// The case version last applied (older events are ignored).
        pub case_version: i64,
        /// Why it waits or was refused.
        pub reason: String,
        /// Result fields of the case; empty until the coordinator has them.
        pub result: onething_platform::store::json::Fields,
        /// Failed attempts to reach the department.
        pub attempts: i32,
        /// Not before this time is the department tried again.
        pub next_attempt_at: DateTimeUtc,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The coordinator's migrator.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut m = onething_platform::store::migrations();
        m.push(Box::new(CreateTables));
        m.push(Box::new(AddTraceparent));
        m.push(Box::new(DueStepsIndex));
        m.push(Box::new(onething_platform::store::RescopeKeys {
            name: "m20261202_500004_bundle_keys_by_caller",
            table: "bundles",
            // The applicant most likely sent it (a clerk's entries cannot be told apart).
            scope_sql: "(applicant_kind || ':' || applicant_identifier)",
        }));
        m
    }
}

struct CreateTables;

impl MigrationName for CreateTables {
    fn name(&self) -> &str {
        "m20261129_500001_coordinator_tables"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateTables {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("bundles")
                .if_not_exists()
                .col(string("id").primary_key())
                .col(string("code"))
                .col(string("state"))
                .col(string("applicant_kind"))
                .col(string("applicant_identifier"))
                .col(string("applicant_name"))
                .col(string("applicant_phone"))
                .col(text("form"))
                .col(text("materials"))
                .col(string_uniq("idempotency_key"))
                .col(timestamp_with_time_zone("due_at"))
                .col(big_integer("version"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("bundle_steps")
                .if_not_exists()
                .col(string("bundle_id"))
                .col(string("step_id"))
                .col(string("matter_code"))
                .col(string("department"))
                .col(string("state"))
                .col(string("case_id"))
                .col(string("case_state"))
                .col(big_integer("case_version"))
                .col(text("reason"))
                .col(text("result"))
                .col(integer("attempts"))
                .col(timestamp_with_time_zone("next_attempt_at"))
                .primary_key(Index::create().col("bundle_id").col("step_id"))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in ["bundle_steps", "bundles"] {
            m.drop_table(Table::drop().table(t).if_exists().to_owned()).await?;
        }
        Ok(())
    }
}

struct AddTraceparent;

impl MigrationName for AddTraceparent {
    fn name(&self) -> &str {
        "m20261129_500002_bundle_traceparent"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddTraceparent {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(Table::alter().table("bundles").add_column(string_null("traceparent")).to_owned()).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(Table::alter().table("bundles").drop_column("traceparent").to_owned()).await
    }
}

struct DueStepsIndex;

impl MigrationName for DueStepsIndex {
    fn name(&self) -> &str {
        "m20261129_500003_due_steps_index"
    }
}

/// The driver looks for steps by state and due time many times a second under load; without
/// an index that is a scan of every step ever made.
#[async_trait::async_trait]
impl MigrationTrait for DueStepsIndex {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_index(
            Index::create()
                .name("bundle_steps_due")
                .table("bundle_steps")
                .col("state")
                .col("next_attempt_at")
                .if_not_exists()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("bundles_by_applicant")
                .table("bundles")
                .col("applicant_identifier")
                .col("created_at")
                .if_not_exists()
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(Index::drop().name("bundles_by_applicant").table("bundles").to_owned()).await?;
        m.drop_index(Index::drop().name("bundle_steps_due").table("bundle_steps").to_owned()).await
    }
}
