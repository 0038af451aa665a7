//! The coordinator's tables: bundles and their steps. A bundle and its steps change
//! together under the bundle's version (optimistic concurrency), so any replica can
//! advance any bundle.

use onething_platform::store::{AddColumns, Indexes, RescopeKeys};
use sea_orm_migration::prelude::Index;

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
        /// A step waits on the applicant (a supplement): the bundle's clock is paused.
        #[sea_orm(default_value = false)]
        pub waiting: bool,
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
        #[sea_orm(column_type = "Text")]
        pub reason: String,
        /// Result fields of the case; empty until the coordinator has them.
        pub result: onething_platform::store::json::Fields,
        /// Failed attempts to reach the department.
        pub attempts: i32,
        /// Not before this time is the department tried again.
        pub next_attempt_at: DateTimeUtc,
        /// The case's due time while it is open (moved by its pauses); unset before the case.
        pub due_at: Option<DateTimeUtc>,
        /// Materials owed (容缺) or asked for in a supplement.
        #[sea_orm(default_value = "[]")]
        pub owed: onething_platform::store::json::Texts,
        /// By when they must come.
        pub owed_by: Option<DateTimeUtc>,
        /// The case waits on the applicant (a supplement is asked for).
        #[sea_orm(default_value = false)]
        pub waiting: bool,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

onething_platform::migrator!(
    /// The coordinator's migrator.
    Migrator,
    [
        onething_platform::tables!("m20261129_500001_coordinator_tables", [bundle, step]),
        AddColumns {
            name: "m20261129_500002_bundle_traceparent",
            table: "bundles",
            columns: |s| vec![s.get_column_def::<bundle::Entity>(bundle::Column::Traceparent)],
        },
        // The driver looks for steps by state and due time many times a second under load;
        // without an index that is a scan of every step ever made.
        Indexes {
            name: "m20261129_500003_due_steps_index",
            create: || {
                vec![
                    Index::create().name("bundle_steps_due").table("bundle_steps").col("state").col("next_attempt_at").to_owned(),
                    Index::create()
                        .name("bundles_by_applicant")
                        .table("bundles")
                        .col("applicant_identifier")
                        .col("created_at")
                        .to_owned(),
                ]
            },
        },
        RescopeKeys {
            name: "m20261202_500004_bundle_keys_by_caller",
            table: "bundles",
            // The applicant most likely sent it (a clerk's entries cannot be told apart).
            scope_sql: "(applicant_kind || ':' || applicant_identifier)",
        },
        AddColumns {
            name: "m20261208_500005_bundle_time_rules",
            table: "bundles",
            columns: |s| vec![s.get_column_def::<bundle::Entity>(bundle::Column::Waiting)],
        },
        AddColumns {
            name: "m20261208_500006_step_time_rules",
            table: "bundle_steps",
            columns: |s| {
                [step::Column::DueAt, step::Column::Owed, step::Column::OwedBy, step::Column::Waiting]
                    .into_iter()
                    .map(|c| s.get_column_def::<step::Entity>(c))
                    .collect()
            },
        },
    ]
);
