//! Household's own tables — the registry of persons and households, kinship, residence
//! permits, and the applicant notification queue — and its migrator (platform tables
//! first). Migrations make tables only; development data is [`seed`].

pub mod household;
pub mod import;
pub mod kin;
pub mod notification;
pub mod person;
pub mod residence_permit;
pub mod seed;
pub use seed::{DevRegistry, SEED, SEED_KIN, SeedMember, seed_id};

use onething_platform::store::Indexes;
use sea_orm_migration::prelude::*;

onething_platform::migrator!(
    /// Household's migrator.
    Migrator,
    [
        onething_platform::tables!("m20261129_100001_household_registry", [household, person, residence_permit, notification]),
        // Development data came here until 2026-12-08; it is `onething seed` now.
        onething_platform::store::dev_data::Retired("m20261129_100002_household_seed"),
        // Intake asks whether the enterprise of a collective household has one already,
        // which without an index reads every household.
        Indexes {
            name: "m20261129_100003_households_credit_code",
            create: || vec![Index::create().name("households_credit_code").table("households").col("credit_code").to_owned()],
        },
        // M24: a death may be reported by a close relative on record, not only a member of
        // the person's household.
        onething_platform::tables!("m20261208_100004_household_kin", [kin]),
        onething_platform::store::dev_data::Retired("m20261208_100005_household_seed_kin"),
    ]
);
