//! Liaison's tables — enterprises with their liaison officers (M8), filed seals, enterprise
//! requests — and its migrator (platform tables first). Migrations make tables only;
//! development data is [`seed`].

pub mod entities;
pub mod import;
pub mod seed;
pub use seed::{DevRecords, SEED_NON_LOCAL_EMPLOYEE, seed_chemicals, seed_logistics};

use entities::{employee, enterprise, request, seal};

onething_platform::migrator!(
    /// Liaison's migrator.
    Migrator,
    [
        onething_platform::tables!("m20261129_400001_liaison_tables", [enterprise, seal, request]),
        // Development data came here until 2026-12-08; it is `onething seed` now.
        onething_platform::store::dev_data::Retired("m20261129_400002_liaison_seed"),
        onething_platform::store::RescopeKeys {
            name: "m20261202_400003_request_keys_by_caller",
            table: "enterprise_requests",
            // The enterprise most likely sent it (a clerk's entries cannot be told apart).
            scope_sql: "('enterprise:' || credit_code)",
        },
        onething_platform::store::AddColumns {
            name: "m20261208_400004_request_escalation",
            table: "enterprise_requests",
            columns: |s| {
                [request::Column::Escalated, request::Column::EscalationNote]
                    .into_iter()
                    .map(|c| s.get_column_def::<request::Entity>(c))
                    .collect()
            },
        },
        onething_platform::store::AddColumns {
            name: "m20261208_400005_enterprise_ownership",
            table: "enterprises",
            columns: |s| vec![s.get_column_def::<enterprise::Entity>(enterprise::Column::Ownership)],
        },
        onething_platform::tables!("m20261208_400006_employees", [employee]),
        onething_platform::store::dev_data::Retired("m20261208_400007_liaison_staff_seed"),
    ]
);
