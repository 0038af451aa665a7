//! Vehicle's tables — stations and their slots, vehicles, driving licences, proxy
//! inspections — and its migrator (platform tables and the death projection first).
//! Migrations make tables only; development data is [`seed`].

pub mod entities;
pub mod import;
pub mod seed;
pub use seed::{DevRecords, STATIONS, seed_citizen, seed_fleet_owner};

use entities::{licence, proxy, slot, station, vehicle};

onething_platform::migrator!(
    /// Vehicle's migrator (the death projection's table first).
    Migrator,
    [
        onething_platform::facts::DECEASED_TABLE,
        onething_platform::tables!("m20261129_300001_vehicle_tables", [station, slot, vehicle, licence, proxy]),
        // Development data came here until 2026-12-08; it is `onething seed` now.
        onething_platform::store::dev_data::Retired("m20261129_300002_vehicle_seed"),
    ]
);
