//! Exit-entry's tables — foreigners' residence permits and violations, citizens' travel
//! documents, enterprise staff links (M15), service commissioners (M13) — and its migrator
//! (platform tables and the death projection first). Migrations make tables only;
//! development data is [`seed`].

pub mod entities;
pub mod import;
pub mod seed;
pub use seed::{DevRecords, FOREIGNERS, TRAVELLERS, seed_citizen, seed_enterprise};

use entities::{commissioner, permit, staff, travel_document, violation};

onething_platform::migrator!(
    /// Exit-entry's migrator (the death projection's table first).
    Migrator,
    [
        onething_platform::facts::DECEASED_TABLE,
        onething_platform::tables!("m20261129_200001_exit_entry_tables", [permit, violation, travel_document, staff, commissioner]),
        // Development data came here until 2026-12-08; it is `onething seed` now.
        onething_platform::store::dev_data::Retired("m20261129_200002_exit_entry_seed"),
        // A violation is on record once (recorded twice at once, imported again).
        onething_platform::store::Indexes {
            name: "m20261208_200003_violations_once",
            create: || {
                vec![
                    sea_orm_migration::prelude::Index::create()
                        .name("foreigner_violations_once")
                        .table("foreigner_violations")
                        .col("passport_number")
                        .col("date")
                        .col("summary")
                        .unique()
                        .to_owned(),
                ]
            },
        },
    ]
);
